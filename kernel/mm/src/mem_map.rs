//! `mem_map`: one reference count per frame above LOW_MEM, and the free-frame index that
//! makes `get_free_page` fast while keeping 0.11's allocation order.
//!
//! 0.11 keeps `unsigned char mem_map[PAGING_PAGES]`: 0 = free, n = n references, `USED`
//! (100) = not available for paging (kernel image, buffers). `get_free_page` scans it
//! linearly from the top for a 0. This module keeps the same array and the same answer
//! (the highest free frame) but finds it through a two-level bitmap of free frames in
//! O(words) instead of O(frames); [`MemMap::scan_highest_free_0_11`] is the original scan,
//! kept as the reference that tests and benchmarks compare against.

use crate::addr::{Frame, LOW_MEM, MAX_PAGING_PAGES, PAGE_SHIFT, PAGE_SIZE};
use core::fmt;

/// 0.11 `USED`: the count of frames that paging must never hand out.
pub const USED: u8 = 100;
/// The highest count `mem_map` may hold. 0.11's `unsigned char` wraps silently at 256;
/// here an increment past this is refused (deviation D2 in kernel/docs/deviations.md).
pub const MAX_MAP_COUNT: u8 = u8::MAX;

const BITS: usize = 32;
const FREE_WORDS: usize = MAX_PAGING_PAGES.div_ceil(BITS);
const SUMMARY_WORDS: usize = FREE_WORDS.div_ceil(BITS);

/// Why a `mem_map` operation was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapCountError {
    /// The frame is at or above HIGH_MEMORY (0.11: "trying to free nonexistent page").
    Nonexistent(Frame),
    /// The frame is free: there is no reference to drop or to add to
    /// (0.11: "trying to free free page").
    Free(Frame),
    /// The frame lies between LOW_MEM and the start of paging memory (count USED).
    Reserved(Frame),
    /// Another reference would overflow the count.
    Overflow(Frame),
}

impl fmt::Display for MapCountError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MapCountError::Nonexistent(fr) => write!(f, "trying to free nonexistent page {fr}"),
            MapCountError::Free(fr) => write!(f, "trying to free free page {fr}"),
            MapCountError::Reserved(fr) => write!(f, "frame {fr} is reserved (USED)"),
            MapCountError::Overflow(fr) => write!(f, "mem_map count of {fr} would overflow"),
        }
    }
}

/// The frame reference counts and the free-frame index.
#[derive(Clone)]
pub struct MemMap {
    counts: [u8; MAX_PAGING_PAGES],
    /// 0.11 `PAGING_PAGES` for this machine: frames from LOW_MEM to HIGH_MEMORY.
    nr_pages: usize,
    /// 0.11 `HIGH_MEMORY`.
    high_memory: u32,
    /// The first frame paging may use (0.11 `start_mem`, `main_memory_start`).
    start_mem: u32,
    /// Bit `i % 32` of word `i / 32` is set when frame index `i` is free.
    free_bits: [u32; FREE_WORDS],
    /// Bit `w % 32` of word `w / 32` is set when `free_bits[w]` is not zero.
    summary: [u32; SUMMARY_WORDS],
    nr_free: usize,
}

impl Default for MemMap {
    fn default() -> Self {
        Self::new()
    }
}

impl MemMap {
    /// An empty map managing no memory; [`mem_init`](Self::mem_init) sets it up.
    pub const fn new() -> MemMap {
        MemMap {
            counts: [USED; MAX_PAGING_PAGES],
            nr_pages: 0,
            high_memory: LOW_MEM,
            start_mem: LOW_MEM,
            free_bits: [0; FREE_WORDS],
            summary: [0; SUMMARY_WORDS],
            nr_free: 0,
        }
    }

    /// 0.11 `mem_init(start_mem, end_mem)`: every frame USED, then `[start_mem, end_mem)`
    /// free. Both bounds are rounded to pages (start up, end down) and clamped to
    /// `[LOW_MEM, MAX_HIGH_MEMORY]`.
    pub fn mem_init(&mut self, start_mem: u32, end_mem: u32) {
        let end = (end_mem & !(PAGE_SIZE - 1)).clamp(LOW_MEM, crate::addr::MAX_HIGH_MEMORY);
        let start = start_mem.next_multiple_of(PAGE_SIZE).clamp(LOW_MEM, end);
        // Reset in place: a MemMap is ~18 KiB, too big to build on a kernel stack.
        self.counts.fill(USED);
        self.free_bits.fill(0);
        self.summary.fill(0);
        self.nr_free = 0;
        self.high_memory = end;
        self.start_mem = start;
        self.nr_pages = ((end - LOW_MEM) >> PAGE_SHIFT) as usize;
        let first = ((start - LOW_MEM) >> PAGE_SHIFT) as usize;
        for index in first..self.nr_pages {
            self.counts[index] = 0;
            self.mark_free(index);
        }
    }

    /// 0.11 `MAP_NR(addr)`: the index of a frame, if `mem_map` covers it.
    pub fn map_nr(&self, frame: Frame) -> Option<usize> {
        let addr = frame.as_u32();
        if addr < LOW_MEM || addr >= self.high_memory {
            return None;
        }
        Some(((addr - LOW_MEM) >> PAGE_SHIFT) as usize)
    }

    /// The frame of `mem_map` index `index`.
    pub fn frame_of(&self, index: usize) -> Frame {
        Frame::containing(LOW_MEM + ((index as u32) << PAGE_SHIFT))
    }

    /// The count of `frame`, or `None` when `mem_map` does not cover it.
    pub fn count(&self, frame: Frame) -> Option<u8> {
        self.map_nr(frame).map(|i| self.counts[i])
    }

    /// All counts, index 0 = the frame at LOW_MEM.
    pub fn counts(&self) -> &[u8] {
        &self.counts[..self.nr_pages]
    }

    /// The whole count array, all [`MAX_PAGING_PAGES`] entries (USED past HIGH_MEMORY):
    /// what the kernel's introspection descriptor points a reader outside the machine at.
    pub fn all_counts(&self) -> &[u8; MAX_PAGING_PAGES] {
        &self.counts
    }

    /// The free-frame index: bit `i % 32` of word `i / 32` set when frame index `i` is free.
    pub fn free_bits(&self) -> &[u32] {
        &self.free_bits
    }

    /// The index's summary: bit `w % 32` of word `w / 32` set when `free_bits[w]` is not 0.
    pub fn free_summary(&self) -> &[u32] {
        &self.summary
    }

    /// 0.11 `PAGING_PAGES` for this machine.
    pub fn nr_pages(&self) -> usize {
        self.nr_pages
    }
    /// 0.11 `HIGH_MEMORY`.
    pub fn high_memory(&self) -> u32 {
        self.high_memory
    }
    /// The first frame paging hands out.
    pub fn start_mem(&self) -> u32 {
        self.start_mem
    }
    /// Frames with count 0, kept as a counter.
    pub fn nr_free(&self) -> usize {
        self.nr_free
    }
    /// Frames paging manages: `[start_mem, HIGH_MEMORY)`.
    pub fn nr_paging_frames(&self) -> usize {
        ((self.high_memory - self.start_mem) >> PAGE_SHIFT) as usize
    }

    /// Takes the highest free frame and sets its count to 1: the frame 0.11's
    /// `get_free_page` would choose, found through the bitmap.
    pub fn take_highest_free(&mut self) -> Option<Frame> {
        let index = self.highest_free_index()?;
        self.counts[index] = 1;
        self.mark_used(index);
        Some(self.frame_of(index))
    }

    /// The index of the highest free frame, through the two-level bitmap.
    pub fn highest_free_index(&self) -> Option<usize> {
        let s = self.summary.iter().rposition(|&w| w != 0)?;
        let w = s * BITS + highest_bit(self.summary[s]);
        Some(w * BITS + highest_bit(self.free_bits[w]))
    }

    /// 0.11's own search, kept as the reference: scan `mem_map` from the top down for a 0
    /// (`std; repne; scasb` over `mem_map+PAGING_PAGES-1`). Returns the index it finds.
    pub fn scan_highest_free_0_11(&self) -> Option<usize> {
        (0..self.nr_pages).rev().find(|&i| self.counts[i] == 0)
    }

    /// Takes the frame at `index` (found by the reference scan) and sets its count to 1.
    pub fn take_index(&mut self, index: usize) -> Frame {
        debug_assert_eq!(self.counts[index], 0);
        self.counts[index] = 1;
        self.mark_used(index);
        self.frame_of(index)
    }

    /// Adds a reference to a frame in use (`mem_map[MAP_NR(page)]++`).
    pub fn increment(&mut self, frame: Frame) -> Result<u8, MapCountError> {
        let index = self
            .map_nr(frame)
            .ok_or(MapCountError::Nonexistent(frame))?;
        if frame.as_u32() < self.start_mem {
            return Err(MapCountError::Reserved(frame));
        }
        let count = self.counts[index];
        if count == 0 {
            return Err(MapCountError::Free(frame));
        }
        if count == MAX_MAP_COUNT {
            return Err(MapCountError::Overflow(frame));
        }
        self.counts[index] = count + 1;
        Ok(count + 1)
    }

    /// Whether another reference to `frame` can be added (used before changing any state).
    pub fn can_increment(&self, frame: Frame) -> bool {
        matches!(self.count(frame), Some(c) if c != 0 && c != MAX_MAP_COUNT)
            && frame.as_u32() >= self.start_mem
    }

    /// Drops a reference (`mem_map[MAP_NR(page)]--`); returns the new count. A frame whose
    /// count reaches 0 is free again.
    pub fn decrement(&mut self, frame: Frame) -> Result<u8, MapCountError> {
        let index = self
            .map_nr(frame)
            .ok_or(MapCountError::Nonexistent(frame))?;
        match self.counts[index] {
            0 => Err(MapCountError::Free(frame)),
            1 => {
                self.counts[index] = 0;
                self.mark_free(index);
                Ok(0)
            }
            n => {
                self.counts[index] = n - 1;
                Ok(n - 1)
            }
        }
    }

    /// Overwrites a count, keeping the free index in step. Only for deliberate corruption
    /// by debugging tools: nothing in the paging code calls it.
    pub fn set_count_for_debugging(
        &mut self,
        frame: Frame,
        count: u8,
    ) -> Result<(), MapCountError> {
        let index = self
            .map_nr(frame)
            .ok_or(MapCountError::Nonexistent(frame))?;
        let was_free = self.counts[index] == 0;
        self.counts[index] = count;
        match (was_free, count == 0) {
            (true, false) => self.mark_used(index),
            (false, true) => self.mark_free(index),
            _ => {}
        }
        Ok(())
    }

    /// Whether the free-frame bitmap marks index `index` free (false beyond `nr_pages`).
    pub fn is_marked_free(&self, index: usize) -> bool {
        index < self.nr_pages && self.free_bits[index / BITS] & (1 << (index % BITS)) != 0
    }

    /// Whether the free index agrees with the counts (a check for checkmm and tests):
    /// returns the first index where they disagree, if any.
    pub fn first_index_out_of_sync(&self) -> Option<usize> {
        (0..self.nr_pages).find(|&i| {
            let bit = self.free_bits[i / BITS] & (1 << (i % BITS)) != 0;
            bit != (self.counts[i] == 0)
        })
    }

    fn mark_free(&mut self, index: usize) {
        let w = index / BITS;
        if self.free_bits[w] & (1 << (index % BITS)) == 0 {
            self.nr_free += 1;
        }
        self.free_bits[w] |= 1 << (index % BITS);
        self.summary[w / BITS] |= 1 << (w % BITS);
    }

    fn mark_used(&mut self, index: usize) {
        let w = index / BITS;
        if self.free_bits[w] & (1 << (index % BITS)) != 0 {
            self.nr_free -= 1;
        }
        self.free_bits[w] &= !(1 << (index % BITS));
        if self.free_bits[w] == 0 {
            self.summary[w / BITS] &= !(1 << (w % BITS));
        }
    }
}

/// The position of the highest set bit of a non-zero word.
fn highest_bit(word: u32) -> usize {
    (BITS - 1) - word.leading_zeros() as usize
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;

    fn map(start: u32, end: u32) -> MemMap {
        let mut m = MemMap::new();
        m.mem_init(start, end);
        m
    }

    #[test]
    fn mem_init_marks_reserved_and_free_frames() {
        let m = map(0x0020_0000, 0x0100_0000);
        assert_eq!(m.nr_pages(), 3840, "0.11's PAGING_PAGES for 16 MiB");
        assert_eq!(m.count(Frame::containing(0x0010_0000)), Some(USED));
        assert_eq!(m.count(Frame::containing(0x001f_f000)), Some(USED));
        assert_eq!(m.count(Frame::containing(0x0020_0000)), Some(0));
        assert_eq!(m.count(Frame::containing(0x0100_0000)), None);
        assert_eq!(m.count(Frame::containing(0x000f_f000)), None);
        assert_eq!(m.nr_free(), (0x0100_0000 - 0x0020_0000) / 4096);
    }

    #[test]
    fn allocation_order_is_0_11_order() {
        let mut m = map(0x0020_0000, 0x0080_0000);
        let mut frames = std::vec::Vec::new();
        for _ in 0..10 {
            let reference = m.scan_highest_free_0_11().unwrap();
            let f = m.take_highest_free().unwrap();
            assert_eq!(m.frame_of(reference), f);
            frames.push(f);
        }
        assert_eq!(frames[0].as_u32(), 0x007f_f000, "the top frame first");
        m.decrement(frames[3]).unwrap();
        assert_eq!(
            m.take_highest_free(),
            Some(frames[3]),
            "a freed high frame is reused first"
        );
    }

    #[test]
    fn exhaustion_and_errors() {
        let mut m = map(0x007f_e000, 0x0080_0000);
        let a = m.take_highest_free().unwrap();
        let b = m.take_highest_free().unwrap();
        assert_eq!(m.take_highest_free(), None);
        assert_eq!(m.nr_free(), 0);
        assert_eq!(m.decrement(a), Ok(0));
        assert_eq!(m.decrement(a), Err(MapCountError::Free(a)));
        assert_eq!(m.increment(a), Err(MapCountError::Free(a)));
        let high = Frame::containing(0x0080_0000);
        assert_eq!(m.decrement(high), Err(MapCountError::Nonexistent(high)));
        let reserved = Frame::containing(0x0010_0000);
        assert_eq!(
            m.increment(reserved),
            Err(MapCountError::Reserved(reserved))
        );
        for expected in 2..=MAX_MAP_COUNT {
            assert_eq!(m.increment(b), Ok(expected));
        }
        assert_eq!(
            m.increment(b),
            Err(MapCountError::Overflow(b)),
            "never wraps to 0"
        );
        assert!(!m.can_increment(b));
        assert_eq!(m.first_index_out_of_sync(), None);
    }
}
