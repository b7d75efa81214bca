//! Memory by linear address, for gdb: software page walks and the identity map.
//!
//! A read walks the page tables in software (`mm::walk::translate`) and copies from the frame
//! through the identity map, so it never faults, never demand-loads a page and never
//! changes an entry or a `mem_map` count; an unmapped address ends the read there.
//!
//! A write goes to the frame the walk finds, if the debugger may change it: kernel
//! frames (below `start_mem`, or below 1 MiB where `mem_map` keeps no count) and
//! private frames (count 1). A frame with a count above 1 is refused: it is shared
//! copy-on-write after `fork`, or a program page shared by `share_page`, and writing it
//! would silently change what the other tasks see. (Breaking COW for the target task
//! instead would allocate and remap under a kernel that may be stopped half-way through
//! `do_wp_page` itself.) Writing a user page sets its DIRTY bit, as a CPU write would, so
//! that `share_page` never hands the changed page to another task running the program.

use core::fmt;

use mm::addr::{Frame, LinearAddr, PAGE_SIZE};
use mm::entry::EntryFlags;
use mm::walk::NoPage;
use mm::Mm;

use crate::arch::x86::{cpu, debugger, phys::KernelPhys};

/// Why the debugger cannot read or write a linear address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccessError {
    /// No page table, or no page: an access would fault.
    NotMapped { linear: u32 },
    /// The entry names a frame beyond RAM (a corrupted entry).
    OutsideRam { linear: u32, frame: Frame },
    /// The frame is shared (count above 1): a write would change other tasks' memory.
    Shared {
        linear: u32,
        frame: Frame,
        count: u8,
    },
    /// The entry names a free frame (a corrupted entry).
    FreeFrame { linear: u32, frame: Frame },
}

impl fmt::Display for AccessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            AccessError::NotMapped { linear } => write!(f, "linear {linear:#010x} is not mapped"),
            AccessError::OutsideRam { linear, frame } => write!(
                f,
                "linear {linear:#010x} maps {frame}, beyond RAM (a corrupted entry)"
            ),
            AccessError::Shared {
                linear,
                frame,
                count,
            } => write!(
                f,
                "linear {linear:#010x} is in {frame}, shared by {count} mappings \
                 (copy-on-write or share_page): a write would change them all"
            ),
            AccessError::FreeFrame { linear, frame } => write!(
                f,
                "linear {linear:#010x} maps {frame}, a free frame (a corrupted entry)"
            ),
        }
    }
}

pub use mm::walk::Page;

/// Walks `linear` to a present frame inside RAM (`mm`'s debugger walk, which the
/// inspector's proxy also runs over the RAM file).
pub fn translate(mm: &Mm<KernelPhys>, linear: u32) -> Result<Page, AccessError> {
    mm::walk::translate(mm, linear).map_err(|e| match e {
        NoPage::NotMapped => AccessError::NotMapped { linear },
        NoPage::OutsideRam(frame) => AccessError::OutsideRam { linear, frame },
    })
}

/// Whether the debugger may write the page `linear` is in (see the module docs).
pub fn writable(mm: &Mm<KernelPhys>, linear: u32) -> Result<Page, AccessError> {
    let page = translate(mm, linear)?;
    let frame = Frame::containing(page.phys);
    if frame.as_u32() < mm.mem_map.start_mem() {
        // The kernel, its image, low memory: no other task maps these.
        return Ok(page);
    }
    match mm.mem_map.count(frame) {
        Some(0) => Err(AccessError::FreeFrame { linear, frame }),
        Some(count) if count > 1 => Err(AccessError::Shared {
            linear,
            frame,
            count,
        }),
        _ => Ok(page),
    }
}

/// The bytes of `[linear, linear + out.len())`, up to the first unreadable page.
/// Returns how many were read.
pub fn read(mm: &Mm<KernelPhys>, linear: u32, out: &mut [u8]) -> usize {
    mm::walk::read_linear(mm, linear, out, |at, piece| {
        mm::PhysMem::read_bytes(&mm.phys, at, piece)
    })
}

/// Writes `bytes` at `linear`: every page is checked first, so a refused write changes
/// nothing.
pub fn write(mm: &Mm<KernelPhys>, linear: u32, bytes: &[u8]) -> Result<(), AccessError> {
    for_each_page(linear, bytes.len(), |at, _, _| writable(mm, at).map(drop))?;
    for_each_page(linear, bytes.len(), |at, offset, n| {
        let page = writable(mm, at)?;
        poke(page.phys, &bytes[offset..offset + n]);
        if LinearAddr::new(at).slot() != 0 {
            mark_dirty(page, at);
        }
        Ok(())
    })
}

/// Calls `f(linear, offset, len)` for each page-sized piece of `[linear, linear + len)`.
fn for_each_page(
    linear: u32,
    len: usize,
    mut f: impl FnMut(u32, usize, usize) -> Result<(), AccessError>,
) -> Result<(), AccessError> {
    let mut offset = 0;
    while offset < len {
        let at = linear.wrapping_add(offset as u32);
        let n = ((PAGE_SIZE - at % PAGE_SIZE) as usize).min(len - offset);
        f(at, offset, n)?;
        offset += n;
    }
    Ok(())
}

/// Sets the DIRTY bit of a user page the debugger wrote, as the CPU would have.
pub fn mark_dirty(page: Page, linear: u32) {
    if page.pte.is_dirty() {
        return;
    }
    let entry = page.pte.raw() | EntryFlags::DIRTY.bits();
    poke(page.pte_addr, &entry.to_le_bytes());
    cpu::invlpg(linear);
}

/// One byte of physical memory (inside RAM).
pub fn peek(mm: &Mm<KernelPhys>, phys: u32) -> u8 {
    let mut byte = [0u8];
    mm::PhysMem::read_bytes(&mm.phys, mm::PhysAddr::new(phys), &mut byte);
    byte[0]
}

/// Writes physical memory for the debugger (memory writes, breakpoints, saved registers),
/// as one change of the introspection descriptor (a write may set a PTE's dirty bit).
/// Callers have checked `[phys, phys + len)` lies in RAM below HIGH_MEMORY (and the write
/// checks it again).
pub fn poke(phys: u32, bytes: &[u8]) {
    let _change = crate::publish::section();
    debugger::write_physical(&super::stopped(), phys, bytes);
}
