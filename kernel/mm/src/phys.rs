//! The small interface between the paging logic and the machine: physical memory and the TLB.
//!
//! The kernel implements it over its identity map (`kernel/kernel/src/arch/x86/phys.rs`);
//! host tests use [`SimRam`](crate::sim::SimRam), a RAM array indexed by address.

use crate::addr::{Frame, LinearAddr, PhysAddr};
use crate::entry::Entry;

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
    fn invalidate_page(&mut self, _page: LinearAddr) {
        self.flush_tlb();
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
