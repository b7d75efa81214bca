//! The paging state straight from the RAM file, for a kernel that is stopped (the stub
//! holds it, or QEMU paused the VM): nothing changes, so no copy and no sequence count.
//! The gdb proxy walks it with `mm`'s debugger walk to answer `m` packets as the stub would.

use introspect::{Descriptor, LayoutValue};
use mm::addr::{PhysAddr, LOW_MEM, PAGE_SHIFT};
use mm::view::PagingView;

use super::ram::Ram;
use super::Located;

/// The [`PagingView`] methods a view answers from the layout the kernel published
/// (`self.$field`, a [`LayoutValue`]): one definition for every view over it.
#[macro_export]
macro_rules! layout_view_methods {
    ($field:ident) => {
        fn pg_dir(&self) -> mm::addr::Frame {
            mm::addr::Frame::containing(self.$field.pg_dir)
        }
        fn high_memory(&self) -> u32 {
            self.$field.high_memory
        }
        fn start_mem(&self) -> u32 {
            self.$field.start_mem
        }
        fn kernel_pdes(&self) -> usize {
            self.$field.kernel_pdes as usize
        }
        fn kernel_table(&self, dir: usize) -> mm::addr::Frame {
            mm::addr::Frame::containing(self.$field.kernel_tables.get(dir).copied().unwrap_or(0))
        }
    };
}

/// [`PagingView`] over the mapped RAM of a stopped kernel. Reads outside the file read
/// as zero (an empty entry: a walk stops rather than inventing a mapping).
pub struct RamView<'a> {
    ram: &'a Ram,
    layout: &'a LayoutValue,
    descriptor: &'a Descriptor,
}

impl<'a> RamView<'a> {
    pub fn new(located: &'a Located) -> RamView<'a> {
        RamView {
            ram: &located.ram,
            layout: &located.layout,
            descriptor: located.descriptor(),
        }
    }

    /// The bytes at physical `[addr, addr + out.len())` (inside RAM: `mm`'s walk checked).
    pub fn copy(&self, addr: PhysAddr, out: &mut [u8]) {
        match self.ram.copy_bytes(addr.as_u32(), out.len()) {
            Some(bytes) => out.copy_from_slice(&bytes),
            None => out.fill(0),
        }
    }

    fn word(&self, addr: u32) -> u32 {
        self.ram.word(addr).unwrap_or(0)
    }

    fn bit(&self, base: u32, index: u32) -> bool {
        self.word(base.wrapping_add(4 * (index / 32))) & (1 << (index % 32)) != 0
    }
}

impl PagingView for RamView<'_> {
    fn read_phys_u32(&self, addr: PhysAddr) -> u32 {
        self.word(addr.as_u32())
    }
    crate::layout_view_methods!(layout);
    fn map_count(&self, index: usize) -> Option<u8> {
        let frames = (self.layout.high_memory.saturating_sub(LOW_MEM) >> PAGE_SHIFT) as usize;
        if index >= frames.min(self.layout.mem_map_len as usize) {
            return None;
        }
        let at = self.layout.mem_map.wrapping_add(index as u32);
        self.ram.copy_bytes(at, 1).map(|b| b[0])
    }
    fn nr_free(&self) -> u32 {
        self.descriptor
            .paging
            .nr_free
            .load(std::sync::atomic::Ordering::Relaxed)
    }
    fn free_bit(&self, index: usize) -> bool {
        self.bit(self.layout.free_bits, index as u32)
    }
    fn swap_slots(&self) -> Option<u32> {
        use std::sync::atomic::Ordering::Relaxed;
        let swap = &self.descriptor.paging.swap;
        (swap.present.load(Relaxed) != 0).then(|| swap.nr_slots.load(Relaxed))
    }
    fn swap_bit(&self, slot: u32) -> bool {
        let bitmap = self
            .descriptor
            .paging
            .swap
            .bitmap
            .load(std::sync::atomic::Ordering::Relaxed);
        self.bit(bitmap, slot)
    }
}
