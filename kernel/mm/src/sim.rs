//! A simulated physical memory for host tests and host tools: a RAM array plus TLB counters.

extern crate std;
use core::cell::Cell;
use core::hash::{Hash, Hasher};
use std::collections::hash_map::DefaultHasher;
use std::rc::Rc;
use std::vec;
use std::vec::Vec;

use crate::addr::{Frame, LinearAddr, PhysAddr, PAGE_SIZE};
use crate::memory::Mm;
use crate::phys::{PhysMem, SwapIoError};

/// A test's check of the state a reader window opens on.
pub type WindowCheck = Rc<dyn Fn(&Mm<SimRam>)>;

/// Reader windows (`PhysMem::open_reader_window`) as a host test sees them: none open
/// unless `let_in` is set. While one is open every write to the simulated RAM panics,
/// and when it closes `mem_map`, the free-frame bitmap and the swap bitmap must be as
/// they were when it opened: a reader outside the machine copying meanwhile would
/// otherwise see a change half done.
#[derive(Clone, Default)]
pub struct ReaderWindows {
    pub let_in: bool,
    /// Called with the state each window opens on (a test's checkmm).
    pub on_open: Option<WindowCheck>,
    opened: Cell<u64>,
    /// The open window's fingerprint of what readers see besides RAM.
    open: Cell<Option<u64>>,
}

impl ReaderWindows {
    /// How many windows have opened.
    pub fn opened(&self) -> u64 {
        self.opened.get()
    }
    /// Whether one is open now.
    pub fn is_open(&self) -> bool {
        self.open.get().is_some()
    }
}

/// A hash of the arrays readers read besides page tables: `mem_map`'s counts, the free
/// bitmap and its summary, 0.12's swap bitmap, and the free counters.
fn bookkeeping_fingerprint(mm: &Mm<SimRam>) -> u64 {
    let mut h = DefaultHasher::new();
    mm.mem_map.all_counts().hash(&mut h);
    mm.mem_map.free_bits().hash(&mut h);
    mm.mem_map.free_summary().hash(&mut h);
    mm.mem_map.nr_free().hash(&mut h);
    if let Some(swap) = &mm.swap {
        swap.bitmap().hash(&mut h);
        swap.nr_free().hash(&mut h);
    }
    h.finish()
}

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
    pub reader_windows: ReaderWindows,
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
            reader_windows: ReaderWindows::default(),
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
    /// The range of a write: none while readers are let in.
    #[track_caller]
    fn write_range(&self, addr: PhysAddr, len: usize) -> core::ops::Range<usize> {
        assert!(
            !self.reader_windows.is_open(),
            "a write to {addr} (+{len}) while readers are let in (a reader window is open)"
        );
        self.range(addr, len)
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
        let r = self.write_range(addr, 4);
        self.bytes[r].copy_from_slice(&value.to_le_bytes());
    }
    fn zero_frame(&mut self, frame: Frame) {
        let r = self.write_range(frame.addr(), PAGE_SIZE as usize);
        self.bytes[r].fill(0);
    }
    fn copy_frame(&mut self, from: Frame, to: Frame) {
        let src = self.range(from.addr(), PAGE_SIZE as usize);
        let dst = self.write_range(to.addr(), PAGE_SIZE as usize);
        self.bytes.copy_within(src, dst.start);
    }
    fn write_bytes(&mut self, addr: PhysAddr, bytes: &[u8]) {
        let r = self.write_range(addr, bytes.len());
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
    fn open_reader_window(mm: &Mm<SimRam>) -> bool {
        let windows = &mm.phys.reader_windows;
        if !windows.let_in {
            return false;
        }
        assert!(!windows.is_open(), "a reader window opened twice");
        windows.opened.set(windows.opened.get() + 1);
        if let Some(check) = &windows.on_open {
            check(mm);
        }
        windows.open.set(Some(bookkeeping_fingerprint(mm)));
        true
    }
    #[track_caller]
    fn close_reader_window(mm: &Mm<SimRam>) {
        let windows = &mm.phys.reader_windows;
        let opened_on = windows
            .open
            .take()
            .expect("a reader window closed but not open");
        assert_eq!(
            bookkeeping_fingerprint(mm),
            opened_on,
            "mem_map or a bitmap changed while readers were let in"
        );
    }
}
