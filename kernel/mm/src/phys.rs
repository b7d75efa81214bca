//! The small interface between the paging logic and the machine: physical memory, the TLB,
//! and the swap disk (0.12 `read_swap_page`/`write_swap_page`).
//!
//! The kernel implements it over its identity map (`kernel/kernel/src/arch/x86/phys.rs`);
//! host tests use [`SimRam`](crate::sim::SimRam), a RAM array indexed by address.

use crate::addr::{Frame, LinearAddr, PhysAddr};
use crate::entry::Entry;
use crate::memory::Mm;
use core::fmt;

/// Why the swap device could not move a page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SwapIoError {
    /// There is no swap device.
    NoDevice,
    /// The slot lies beyond the device.
    OutOfRange(u32),
    /// The device reported an error (or a failure was injected).
    Device,
}

impl fmt::Display for SwapIoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SwapIoError::NoDevice => f.write_str("no swap device"),
            SwapIoError::OutOfRange(slot) => write!(f, "swap slot {slot} beyond the device"),
            SwapIoError::Device => f.write_str("swap device I/O error"),
        }
    }
}

/// Physical memory and TLB control, as the paging code needs them.
pub trait PhysMem {
    /// Reads the aligned 32-bit word at `addr`.
    fn read_u32(&self, addr: PhysAddr) -> u32;
    /// Writes the aligned 32-bit word at `addr`.
    fn write_u32(&mut self, addr: PhysAddr, value: u32);
    /// Fills a frame with zeroes (0.11 `get_free_page`'s `rep stosl`).
    fn zero_frame(&mut self, frame: Frame);
    /// Copies a whole frame (0.11 `copy_page`).
    fn copy_frame(&mut self, from: Frame, to: Frame);
    /// Copies `bytes` to physical memory at `addr` (within one frame).
    fn write_bytes(&mut self, addr: PhysAddr, bytes: &[u8]);
    /// Copies physical memory at `addr` into `out` (within one frame).
    fn read_bytes(&self, addr: PhysAddr, out: &mut [u8]);
    /// Flushes the whole TLB (0.11 `invalidate()`: reload CR3).
    fn flush_tlb(&mut self);
    /// Flushes the TLB entry of one linear page (`invlpg`); the default flushes everything.
    /// D26: the originals reload CR3 for every change (the 386 has no `invlpg`).
    fn invalidate_page(&mut self, _page: LinearAddr) {
        self.flush_tlb();
    }

    /// Pages on the swap device, header page included (0: no device).
    fn swap_pages(&self) -> u32 {
        0
    }
    /// 0.12 `read_swap_page(nr, buffer)`: reads page `slot` of the swap device into `frame`.
    fn swap_read(&mut self, slot: u32, _frame: Frame) -> Result<(), SwapIoError> {
        let _ = slot;
        Err(SwapIoError::NoDevice)
    }
    /// 0.12 `write_swap_page(nr, buffer)`: writes `frame` to page `slot` of the swap device.
    fn swap_write(&mut self, slot: u32, _frame: Frame) -> Result<(), SwapIoError> {
        let _ = slot;
        Err(SwapIoError::NoDevice)
    }

    /// `mm` is between two operations: the state the last one left, nothing half done
    /// (`swap_out` from a page fault's first allocation, see `Mm::begin_operation`), and
    /// the paging code is about to spend a while only reading it and writing the swap
    /// disk (`swap_out`'s scan and its write). A kernel that publishes its state to
    /// readers outside the machine may let them in meanwhile (kernel/kernel/src/publish.rs:
    /// under memory pressure that is most of a fault's time); true when it did, and then
    /// [`close_reader_window`](PhysMem::close_reader_window) comes before the next
    /// change. The default: no.
    fn open_reader_window(mm: &Mm<Self>) -> bool
    where
        Self: Sized,
    {
        let _ = mm;
        false
    }
    /// The paging code changes `mm` again after an opened
    /// [`open_reader_window`](PhysMem::open_reader_window).
    fn close_reader_window(mm: &Mm<Self>)
    where
        Self: Sized,
    {
        let _ = mm;
    }

    /// Reads entry `index` of the table (or directory) in `table`.
    fn read_entry(&self, table: Frame, index: usize) -> Entry {
        Entry(self.read_u32(table.addr().offset(index as u32 * 4)))
    }
    /// Writes entry `index` of the table (or directory) in `table`.
    fn write_entry(&mut self, table: Frame, index: usize, entry: Entry) {
        self.write_u32(table.addr().offset(index as u32 * 4), entry.raw());
    }
}
