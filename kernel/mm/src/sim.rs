//! A simulated physical memory for host tests and host tools: a RAM array plus TLB counters.

extern crate std;
use std::vec;
use std::vec::Vec;

use crate::addr::{Frame, LinearAddr, PhysAddr, PAGE_SIZE};
use crate::phys::PhysMem;

/// RAM as a byte array; address `a` is `bytes[a]`.
#[derive(Clone)]
pub struct SimRam {
    bytes: Vec<u8>,
    /// How many full TLB flushes the paging code asked for.
    pub tlb_flushes: u64,
    /// How many single-page invalidations it asked for.
    pub page_invalidations: u64,
}

impl SimRam {
    /// `size` bytes of zeroed RAM (a multiple of the page size).
    pub fn new(size: u32) -> SimRam {
        assert_eq!(size % PAGE_SIZE, 0, "RAM size must be whole pages");
        SimRam {
            bytes: vec![0; size as usize],
            tlb_flushes: 0,
            page_invalidations: 0,
        }
    }
    pub fn size(&self) -> u32 {
        self.bytes.len() as u32
    }
    /// The bytes of one frame.
    pub fn frame_bytes(&self, frame: Frame) -> &[u8] {
        let start = frame.as_u32() as usize;
        &self.bytes[start..start + PAGE_SIZE as usize]
    }
    fn range(&self, addr: PhysAddr, len: usize) -> core::ops::Range<usize> {
        let start = addr.as_u32() as usize;
        assert!(
            start + len <= self.bytes.len(),
            "access to {addr} (+{len}) beyond the simulated RAM"
        );
        start..start + len
    }
}

impl PhysMem for SimRam {
    fn read_u32(&self, addr: PhysAddr) -> u32 {
        let r = self.range(addr, 4);
        u32::from_le_bytes(self.bytes[r].try_into().unwrap())
    }
    fn write_u32(&mut self, addr: PhysAddr, value: u32) {
        let r = self.range(addr, 4);
        self.bytes[r].copy_from_slice(&value.to_le_bytes());
    }
    fn zero_frame(&mut self, frame: Frame) {
        let r = self.range(frame.addr(), PAGE_SIZE as usize);
        self.bytes[r].fill(0);
    }
    fn copy_frame(&mut self, from: Frame, to: Frame) {
        let src = self.range(from.addr(), PAGE_SIZE as usize);
        let dst = self.range(to.addr(), PAGE_SIZE as usize);
        self.bytes.copy_within(src, dst.start);
    }
    fn write_bytes(&mut self, addr: PhysAddr, bytes: &[u8]) {
        let r = self.range(addr, bytes.len());
        self.bytes[r].copy_from_slice(bytes);
    }
    fn read_bytes(&self, addr: PhysAddr, out: &mut [u8]) {
        let r = self.range(addr, out.len());
        out.copy_from_slice(&self.bytes[r]);
    }
    fn flush_tlb(&mut self) {
        self.tlb_flushes += 1;
    }
    fn invalidate_page(&mut self, _page: LinearAddr) {
        self.page_invalidations += 1;
    }
}
