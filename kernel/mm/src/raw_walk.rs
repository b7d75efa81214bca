//! Read-only walks over any physical memory with no `mem_map`: post-mortem decoding of a page directory.
//!
//! When the kernel cannot answer (wedged, panicked), the host inspector reads physical
//! memory through QEMU and decodes it here, with the same [`Entry`] and [`Walk`] the
//! kernel's monitor uses, so there is one decoder. Nothing here writes, and a frame's
//! `mem_map` count is unknown (`None`): `mem_map` lives in kernel memory, not in the
//! page tables.

use crate::addr::{Frame, LinearAddr, PhysAddr, ENTRIES_PER_TABLE};
use crate::entry::Entry;
use crate::phys::PhysMem;
use crate::walk::{decode_walk, Walk};

/// Reading physical memory, nothing else (a debugger's view of a machine).
pub trait PhysRead {
    /// The aligned 32-bit word at `addr`.
    fn read_u32(&self, addr: PhysAddr) -> u32;

    /// Entry `index` of the table (or directory) in `table`.
    fn read_entry(&self, table: Frame, index: usize) -> Entry {
        Entry(self.read_u32(table.addr().offset(index as u32 * 4)))
    }
}

/// Every [`PhysMem`] can be read.
impl<P: PhysMem> PhysRead for P {
    fn read_u32(&self, addr: PhysAddr) -> u32 {
        PhysMem::read_u32(self, addr)
    }
}

/// Walks `linear` through the page directory at `pg_dir`, as [`crate::Mm::walk`] does,
/// but with every count unknown. A page table at or above `high_memory` is not read
/// (the walk stops at the PTE with no entry), as the monitor refuses to read outside RAM.
pub fn walk<R: PhysRead + ?Sized>(
    mem: &R,
    pg_dir: Frame,
    high_memory: u32,
    linear: LinearAddr,
) -> Walk {
    let pde = mem.read_entry(pg_dir, linear.dir_index());
    let table = (pde.frame().as_u32() < high_memory).then(|| pde.frame());
    decode_walk(linear, pde, table, |t, i| mem.read_entry(t, i))
}

/// Present entries of the page table in `table`.
pub fn present_entries<R: PhysRead + ?Sized>(mem: &R, table: Frame) -> usize {
    (0..ENTRIES_PER_TABLE)
        .filter(|&i| mem.read_entry(table, i).is_present())
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::USER_RW;
    use crate::sim::SimRam;
    use crate::walk::WalkStop;

    #[test]
    fn walks_like_the_kernel_without_counts() {
        let mut ram = SimRam::new(0x40_0000);
        let dir = Frame::from_addr(0x1000).unwrap();
        let table = Frame::from_addr(0x2000).unwrap();
        let page = Frame::from_addr(0x3000).unwrap();
        ram.write_entry(dir, 16, Entry::new(table, USER_RW));
        ram.write_entry(table, 1, Entry::new(page, USER_RW));
        ram.write_entry(table, 2, Entry(42 << 1));

        let w = walk(&ram, dir, 0x40_0000, LinearAddr::new(0x0400_1abc));
        assert_eq!(w.pde_index, 16);
        assert_eq!(w.pte_index, 1);
        assert_eq!(w.frame, Some((page, None)));
        assert_eq!(w.physical(), Some(0x3abc));
        assert_eq!(w.stop, None);

        let w = walk(&ram, dir, 0x40_0000, LinearAddr::new(0x0400_2000));
        assert_eq!(w.stop, Some(WalkStop::SwappedOut { slot: 42 }));
        let w = walk(&ram, dir, 0x40_0000, LinearAddr::new(0x0400_3000));
        assert_eq!(w.stop, Some(WalkStop::NotMapped));
        let w = walk(&ram, dir, 0x40_0000, LinearAddr::new(0x0800_0000));
        assert_eq!(w.stop, Some(WalkStop::NoPageTable));
        assert_eq!(present_entries(&ram, table), 1);
    }

    #[test]
    fn a_table_beyond_memory_is_not_read() {
        let mut ram = SimRam::new(0x10_0000);
        let dir = Frame::from_addr(0x1000).unwrap();
        ram.write_entry(
            dir,
            1,
            Entry::new(Frame::from_addr(0xfff0_0000).unwrap(), USER_RW),
        );
        let w = walk(&ram, dir, 0x10_0000, LinearAddr::new(0x0040_0000));
        assert_eq!(w.pte, None);
        assert_eq!(w.stop, None);
        assert_eq!(w.frame, None);
    }
}
