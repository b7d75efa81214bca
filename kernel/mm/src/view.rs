//! A read-only view of the paging state: everything `checkmm`, the walks, `show_mem` and
//! the monitor's documents read, and nothing they do not.
//!
//! [`Mm`] implements it over its own state. A host tool implements it over a copy of a
//! machine's memory (the inspector over a RAM file of the running guest, or over QEMU's
//! reads after a crash), given where things are: so the same code computes the same
//! answers inside the kernel and outside it. That is why the view is this small:
//!
//! - memory is read only as aligned 32-bit **physical** words ([`PagingView::read_phys_u32`]),
//!   and only in frames the readers first check lie below `HIGH_MEMORY` (the page
//!   directory, and page tables that [`PagingView::page_table`] accepts);
//! - everything else is a scalar (`pg_dir`, `HIGH_MEMORY`, `start_mem`, the free counter,
//!   the number of swap slots) or one element of an array the kernel keeps (`mem_map`'s
//!   counts, the free-frame bitmap, the identity map's page tables, 0.12's swap bitmap).
//!
//! A view may not know `mem_map` at all (a post-mortem look at page tables alone): its
//! [`PagingView::map_count`] answers `None`, and the readers then report counts as
//! unknown; `checkmm` refuses such a view.

use crate::addr::{Frame, PhysAddr, LOW_MEM, PAGE_SHIFT, PDES_PER_TASK};
use crate::entry::Entry;
use crate::memory::Mm;
use crate::phys::PhysMem;

/// The paging state as its readers see it (see the module documentation).
pub trait PagingView {
    /// The aligned 32-bit word at physical `addr` (a directory or page-table entry).
    fn read_phys_u32(&self, addr: PhysAddr) -> u32;
    /// 0.11 `pg_dir`: the page directory every task shares (what CR3 holds).
    fn pg_dir(&self) -> Frame;
    /// 0.11 `HIGH_MEMORY`: the end of the RAM the kernel uses.
    fn high_memory(&self) -> u32;
    /// 0.11 `start_mem`: the first frame paging hands out; `[LOW_MEM, start_mem)` is reserved.
    fn start_mem(&self) -> u32;
    /// Directory entries of the kernel's identity map (RAM / 4 MiB, rounded up).
    fn kernel_pdes(&self) -> usize;
    /// The identity map's page table for directory entry `dir` (`dir < kernel_pdes()`;
    /// 0.11's `pg0`..`pg3`): what that entry must name.
    fn kernel_table(&self, dir: usize) -> Frame;
    /// `mem_map[index]` (index 0 is the frame at `LOW_MEM`, `index < nr_pages()`);
    /// `None` when this view does not know `mem_map`.
    fn map_count(&self, index: usize) -> Option<u8>;
    /// `mem_map`'s free-frame counter (what `nr_free` says, not a recount).
    fn nr_free(&self) -> u32;
    /// Whether the free-frame bitmap marks `mem_map` index `index` free.
    fn free_bit(&self, index: usize) -> bool;
    /// 0.12's swap device: how many slots it has (the header's slot 0 included); `None`
    /// without swap.
    fn swap_slots(&self) -> Option<u32>;
    /// Whether 0.12's `swap_bitmap` marks `slot` free (bit set); meaningful for
    /// `slot < swap_slots()`.
    fn swap_bit(&self, slot: u32) -> bool;

    /// Entry `index` of the table (or directory) in `table`.
    fn read_entry(&self, table: Frame, index: usize) -> Entry {
        Entry(self.read_phys_u32(table.addr().offset(index as u32 * 4)))
    }
    /// Page-directory entry `index`.
    fn pde(&self, index: usize) -> Entry {
        self.read_entry(self.pg_dir(), index)
    }
    /// The page table directory entry `dir` names, if it is present and names a frame a
    /// page table can be: inside RAM, and (for a task's slot) not in the kernel's reserved
    /// memory. A damaged entry (`monitor corrupt pde`) names anything; reading or writing
    /// through it would stop the kernel or scribble over its own data, so every reader of
    /// page tables goes through this check.
    fn page_table(&self, dir: usize) -> Option<Frame> {
        let pde = self.pde(dir);
        let table = pde.frame().as_u32();
        let allowed =
            table < self.high_memory() && (dir < PDES_PER_TASK || table >= self.start_mem());
        (pde.is_present() && allowed).then(|| pde.frame())
    }
    /// 0.11 `PAGING_PAGES` for this machine: the frames `mem_map` covers.
    fn nr_pages(&self) -> usize {
        (self.high_memory().saturating_sub(LOW_MEM) >> PAGE_SHIFT) as usize
    }
    /// Frames paging hands out (`[start_mem, HIGH_MEMORY)`).
    fn nr_paging_frames(&self) -> usize {
        (self
            .high_memory()
            .saturating_sub(self.start_mem().max(LOW_MEM))
            >> PAGE_SHIFT) as usize
    }
    /// 0.11 `MAP_NR(addr)`: the `mem_map` index of a frame, if `mem_map` covers it.
    fn map_nr(&self, frame: Frame) -> Option<usize> {
        let addr = frame.as_u32();
        (LOW_MEM..self.high_memory())
            .contains(&addr)
            .then(|| ((addr - LOW_MEM) >> PAGE_SHIFT) as usize)
    }
    /// The frame of `mem_map` index `index`.
    fn frame_of(&self, index: usize) -> Frame {
        Frame::containing(LOW_MEM + ((index as u32) << PAGE_SHIFT))
    }
    /// The count of `frame`: `None` when `mem_map` does not cover it (or is not known).
    fn count(&self, frame: Frame) -> Option<u8> {
        self.map_nr(frame).and_then(|i| self.map_count(i))
    }
    /// Whether this view knows `mem_map` (a post-mortem view of page tables may not).
    fn knows_mem_map(&self) -> bool {
        self.nr_pages() == 0 || self.map_count(0).is_some()
    }
    /// Whether swap `slot` is in use: allocated, and not the header's slot 0.
    fn swap_in_use(&self, slot: u32) -> bool {
        self.swap_slots()
            .is_some_and(|n| slot != 0 && slot < n && !self.swap_bit(slot))
    }
    /// Free swap slots, counted in the bitmap.
    fn swap_free(&self) -> u32 {
        let n = self.swap_slots().unwrap_or(0);
        (0..n).filter(|&s| self.swap_bit(s)).count() as u32
    }
    /// Swap slots in use (named by an entry).
    fn swap_used(&self) -> u32 {
        let n = self.swap_slots().unwrap_or(0);
        (1..n).filter(|&s| !self.swap_bit(s)).count() as u32
    }
}

/// The kernel's (and the simulation's) own paging state.
impl<P: PhysMem> PagingView for Mm<P> {
    fn read_phys_u32(&self, addr: PhysAddr) -> u32 {
        self.phys.read_u32(addr)
    }
    fn pg_dir(&self) -> Frame {
        Mm::pg_dir(self)
    }
    fn high_memory(&self) -> u32 {
        self.mem_map.high_memory()
    }
    fn start_mem(&self) -> u32 {
        self.mem_map.start_mem()
    }
    fn kernel_pdes(&self) -> usize {
        Mm::kernel_pdes(self)
    }
    fn kernel_table(&self, dir: usize) -> Frame {
        self.kernel_tables().get(dir).copied().unwrap_or_default()
    }
    fn map_count(&self, index: usize) -> Option<u8> {
        self.mem_map.counts().get(index).copied()
    }
    fn nr_free(&self) -> u32 {
        self.mem_map.nr_free() as u32
    }
    fn free_bit(&self, index: usize) -> bool {
        self.mem_map.is_marked_free(index)
    }
    fn swap_slots(&self) -> Option<u32> {
        self.swap.as_ref().map(|s| s.nr_slots())
    }
    fn swap_bit(&self, slot: u32) -> bool {
        self.swap.as_ref().is_some_and(|s| s.is_free(slot))
    }
}
