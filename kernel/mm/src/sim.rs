//! A simulated physical memory for host tests and host tools: a RAM array plus TLB counters.

extern crate std;
use std::vec;
use std::vec::Vec;

use crate::addr::{Frame, LinearAddr, PhysAddr, PAGE_SIZE};
use crate::phys::{PhysMem, SwapIoError};

/// A simulated swap disk: pages of bytes, plus switches that make I/O fail.
#[derive(Clone)]
pub struct SimDisk {
    pub pages: Vec<[u8; PAGE_SIZE as usize]>,
    /// Every read fails while set.
    pub fail_reads: bool,
    /// Every write fails while set.
    pub fail_writes: bool,
    pub reads: u64,
    pub writes: u64,
}

impl SimDisk {
    /// A disk of `pages` pages carrying a 0.12 swap header: every slot but 0 free.
    pub fn formatted(pages: u32) -> SimDisk {
        let mut disk = SimDisk {
            pages: vec![[0; PAGE_SIZE as usize]; pages as usize],
            fail_reads: false,
            fail_writes: false,
            reads: 0,
            writes: 0,
        };
        disk.pages[0] = crate::swap::format_header(pages);
        disk
    }
}

/// RAM as a byte array; address `a` is `bytes[a]`.
#[derive(Clone)]
pub struct SimRam {
    bytes: Vec<u8>,
    /// How many full TLB flushes the paging code asked for.
    pub tlb_flushes: u64,
    /// How many single-page invalidations it asked for.
    pub page_invalidations: u64,
    /// The swap disk, if any.
    pub disk: Option<SimDisk>,
}

impl SimRam {
    /// `size` bytes of zeroed RAM (a multiple of the page size).
    pub fn new(size: u32) -> SimRam {
        assert_eq!(size % PAGE_SIZE, 0, "RAM size must be whole pages");
        SimRam {
            bytes: vec![0; size as usize],
            tlb_flushes: 0,
            page_invalidations: 0,
            disk: None,
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
    fn swap_pages(&self) -> u32 {
        self.disk.as_ref().map_or(0, |d| d.pages.len() as u32)
    }
    fn swap_read(&mut self, slot: u32, frame: Frame) -> Result<(), SwapIoError> {
        let disk = self.disk.as_mut().ok_or(SwapIoError::NoDevice)?;
        if disk.fail_reads {
            return Err(SwapIoError::Device);
        }
        let page = *disk
            .pages
            .get(slot as usize)
            .ok_or(SwapIoError::OutOfRange(slot))?;
        disk.reads += 1;
        self.write_bytes(frame.addr(), &page);
        Ok(())
    }
    fn swap_write(&mut self, slot: u32, frame: Frame) -> Result<(), SwapIoError> {
        let mut page = [0u8; PAGE_SIZE as usize];
        self.read_bytes(frame.addr(), &mut page);
        let disk = self.disk.as_mut().ok_or(SwapIoError::NoDevice)?;
        if disk.fail_writes {
            return Err(SwapIoError::Device);
        }
        *disk
            .pages
            .get_mut(slot as usize)
            .ok_or(SwapIoError::OutOfRange(slot))? = page;
        disk.writes += 1;
        Ok(())
    }
}
