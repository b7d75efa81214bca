//! Software page walks and usage counts: `walk` (one address), 0.12 `show_mem`, per-slot usage.
//!
//! These only read: they never fault a page in, never change an entry or a count, so the
//! debugger and the system calls can look at any address safely.

use crate::addr::{
    slot_base, Frame, LinearAddr, PhysAddr, ENTRIES_PER_TABLE, NR_TASKS, PAGE_SIZE, PDES_PER_TASK,
};
use crate::entry::Entry;
use crate::memory::Mm;
use crate::phys::PhysMem;
use crate::view::PagingView;

/// Where a walk stopped, when it did not reach a present page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WalkStop {
    /// The page-directory entry is not present: no page table.
    NoPageTable,
    /// The page-table entry is zero: never mapped (the next access is a not-present fault).
    NotMapped,
    /// The page-table entry is not present but not zero: a 0.12 swap entry.
    SwappedOut { slot: u32 },
}

/// The result of walking one linear address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Walk {
    pub linear: LinearAddr,
    pub pde_index: usize,
    pub pde: Entry,
    pub pte_index: usize,
    /// The page-table entry, when the page table exists.
    pub pte: Option<Entry>,
    /// The frame and its `mem_map` count (`None` for frames `mem_map` does not cover).
    pub frame: Option<(Frame, Option<u8>)>,
    /// Why the walk stopped before a present page, if it did.
    pub stop: Option<WalkStop>,
}

impl Walk {
    /// The physical address the linear address translates to.
    pub fn physical(&self) -> Option<u32> {
        self.frame
            .map(|(f, _)| f.as_u32() | self.linear.page_offset())
    }
}

/// Pages and page tables one task slot holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SlotUsage {
    /// Present pages.
    pub pages: u32,
    /// Present pages whose frame is shared (count above 1).
    pub shared_pages: u32,
    /// Page tables.
    pub page_tables: u32,
    /// Non-present, non-zero entries (swap entries).
    pub swapped: u32,
}

/// The frame totals of 0.12 `show_mem`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FrameTotals {
    /// Frames `mem_map` hands out (`[start_mem, HIGH_MEMORY)`).
    pub paging_frames: u32,
    /// What the free counter says.
    pub free_frames: u32,
    /// Frames with a count above 1.
    pub shared_frames: u32,
    /// 0.12's "shared pages": the sum of (count - 1) over shared frames.
    pub shared_references: u32,
    /// Frames reserved below `start_mem` (count `USED`).
    pub reserved_frames: u32,
}

/// 0.12 `show_mem`: the whole picture of frame use ([`FrameTotals`] and each slot).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemStats {
    pub paging_frames: u32,
    pub free_frames: u32,
    pub shared_frames: u32,
    pub shared_references: u32,
    pub reserved_frames: u32,
    /// Per task slot (index = slot; slot 0 is the kernel's identity map).
    pub slots: [SlotUsage; NR_TASKS],
}

impl<P: PhysMem> Mm<P> {
    /// Walks `linear` through the page directory and its page table, in software
    /// ([`walk`] over this state).
    pub fn walk(&self, linear: LinearAddr) -> Walk {
        walk(self, linear)
    }

    /// Pages and page tables of task slot `slot` ([`slot_usage`] over this state).
    pub fn slot_usage(&self, slot: usize) -> SlotUsage {
        slot_usage(self, slot)
    }

    /// 0.12 `show_mem` ([`show_mem`] over this state).
    pub fn show_mem(&self) -> MemStats {
        show_mem(self)
    }
}

/// Walks `linear` through the page directory and its page table, in software.
/// A damaged directory entry's "table" is not read (see [`PagingView::page_table`]): the
/// walk then ends with no PTE and no stop reason.
pub fn walk<V: PagingView + ?Sized>(view: &V, linear: LinearAddr) -> Walk {
    let pde_index = linear.dir_index();
    let table = view.page_table(pde_index);
    let mut walk = decode_walk(linear, view.pde(pde_index), table, |t, i| {
        view.read_entry(t, i)
    });
    if let Some((frame, _)) = walk.frame {
        walk.frame = Some((frame, view.count(frame)));
    }
    walk
}

/// A present page a debugger reached by a walk (gdb's `m` and `M`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Page {
    /// The physical address the linear address translates to.
    pub phys: u32,
    /// The page-table entry and its physical address.
    pub pte: Entry,
    pub pte_addr: u32,
}

/// Why a debugger's walk reached no page it may touch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoPage {
    /// No page table, or no page: an access would fault.
    NotMapped,
    /// The entry names a frame beyond RAM (a corrupted entry).
    OutsideRam(Frame),
}

/// Walks `linear` to a present frame inside RAM, for a debugger: the kernel's gdb stub,
/// and the inspector's proxy answering gdb's reads from the RAM file of a stopped kernel
/// (the same walk over another view, so the same bytes and the same refusals).
pub fn translate<V: PagingView + ?Sized>(view: &V, linear: u32) -> Result<Page, NoPage> {
    let walk = walk(view, LinearAddr::new(linear));
    let (Some(pte), Some((frame, _))) = (walk.pte, walk.frame) else {
        return Err(NoPage::NotMapped);
    };
    if frame.as_u32() >= view.high_memory() {
        return Err(NoPage::OutsideRam(frame));
    }
    const ENTRY_BYTES: u32 = 4;
    Ok(Page {
        phys: frame.as_u32() | walk.linear.page_offset(),
        pte,
        pte_addr: walk.pde.frame().as_u32() + walk.pte_index as u32 * ENTRY_BYTES,
    })
}

/// A debugger's read of `[linear, linear + out.len())`, up to the first page [`translate`]
/// refuses; `copy` fills a piece from physical memory (inside one page, inside RAM).
/// Returns how many bytes were read.
pub fn read_linear<V: PagingView + ?Sized>(
    view: &V,
    linear: u32,
    out: &mut [u8],
    mut copy: impl FnMut(PhysAddr, &mut [u8]),
) -> usize {
    let mut done = 0;
    while done < out.len() {
        let at = linear.wrapping_add(done as u32);
        let Ok(page) = translate(view, at) else { break };
        let in_page = (PAGE_SIZE - at % PAGE_SIZE) as usize;
        let n = in_page.min(out.len() - done);
        copy(PhysAddr::new(page.phys), &mut out[done..done + n]);
        done += n;
        // The last page of the address space: do not wrap around to 0.
        if at.checked_add(n as u32).is_none() {
            break;
        }
    }
    done
}

/// Pages and page tables of task slot `slot`.
pub fn slot_usage<V: PagingView + ?Sized>(view: &V, slot: usize) -> SlotUsage {
    let mut usage = SlotUsage::default();
    let first = slot_base(slot).dir_index();
    for dir in first..first + PDES_PER_TASK {
        if !view.pde(dir).is_present() {
            continue;
        }
        usage.page_tables += 1;
        // A damaged entry counts as a table, but its "table" is not read (D17: 0.12's
        // show_mem loops forever on one).
        let Some(table) = view.page_table(dir) else {
            continue;
        };
        for index in 0..ENTRIES_PER_TABLE {
            let pte = view.read_entry(table, index);
            if pte.is_present() {
                usage.pages += 1;
                if view.count(pte.frame()).is_some_and(|c| c > 1) {
                    usage.shared_pages += 1;
                }
            } else if pte.is_swap() {
                usage.swapped += 1;
            }
        }
    }
    usage
}

/// The frame totals of 0.12 `show_mem` (no per-slot figures: see [`show_mem`]).
pub fn frame_totals<V: PagingView + ?Sized>(view: &V) -> FrameTotals {
    let mut t = FrameTotals {
        paging_frames: view.nr_paging_frames() as u32,
        free_frames: view.nr_free(),
        ..FrameTotals::default()
    };
    let start = view.start_mem();
    for index in 0..view.nr_pages() {
        if view.frame_of(index).as_u32() < start {
            t.reserved_frames += 1;
        } else if let Some(count) = view.map_count(index).filter(|&c| c > 1) {
            t.shared_frames += 1;
            t.shared_references += u32::from(count - 1);
        }
    }
    t
}

/// 0.12 `show_mem`, without its endless loop on a bad directory entry.
pub fn show_mem<V: PagingView + ?Sized>(view: &V) -> MemStats {
    let mut slots = [SlotUsage::default(); NR_TASKS];
    for (slot, usage) in slots.iter_mut().enumerate().skip(1) {
        *usage = slot_usage(view, slot);
    }
    let t = frame_totals(view);
    MemStats {
        paging_frames: t.paging_frames,
        free_frames: t.free_frames,
        shared_frames: t.shared_frames,
        shared_references: t.shared_references,
        reserved_frames: t.reserved_frames,
        slots,
    }
}

/// The walk of `linear` from its directory entry `pde`, reading the page table `table`
/// (`None`: not to be read) with `read`; frames come with no count.
pub(crate) fn decode_walk(
    linear: LinearAddr,
    pde: Entry,
    table: Option<Frame>,
    read: impl FnOnce(Frame, usize) -> Entry,
) -> Walk {
    let pte_index = linear.table_index();
    let mut walk = Walk {
        linear,
        pde_index: linear.dir_index(),
        pde,
        pte_index,
        pte: None,
        frame: None,
        stop: None,
    };
    if !pde.is_present() {
        walk.stop = Some(WalkStop::NoPageTable);
        return walk;
    }
    let Some(table) = table else {
        return walk;
    };
    let pte = read(table, pte_index);
    walk.pte = Some(pte);
    if pte.is_present() {
        walk.frame = Some((pte.frame(), None));
    } else if pte.is_swap() {
        walk.stop = Some(WalkStop::SwappedOut {
            slot: pte.swap_slot(),
        });
    } else {
        walk.stop = Some(WalkStop::NotMapped);
    }
    walk
}
