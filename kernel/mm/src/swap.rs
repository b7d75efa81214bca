//! Linux 0.12 `mm/swap.c`: the one-page slot bitmap, `get_swap_page`, `swap_free`,
//! `swap_in`, `try_to_swap_out` and the clock scan `swap_out`.
//!
//! A swapped-out page's entry holds `slot << 1` (present bit clear, not zero). Slots are
//! never shared: `copy_page_tables` reads a swapped page back for the parent and leaves the
//! slot to the child, as 0.12 does, so each allocated slot is named by exactly one entry.

use crate::addr::{Frame, LinearAddr, ENTRIES_PER_TABLE, LOW_MEM, PAGE_SIZE, PDES_PER_TASK};
use crate::compat::Compat;
use crate::entry::{Entry, EntryFlags, USER_RW};
use crate::memory::{AllocSite, FailurePolicy, Mm, OutOfMemory};
use crate::phys::{PhysMem, SwapIoError};
use core::fmt;

/// Slots one bitmap page describes (0.12 `SWAP_BITS`: 4096 * 8).
pub const SWAP_BITS: u32 = PAGE_SIZE * 8;
/// The signature mkswap writes at the end of page 0 (0.12 checks `"SWAP-SPACE"`).
pub const SWAP_SIGNATURE: &[u8; 10] = b"SWAP-SPACE";
/// Where the signature starts in page 0.
pub const SIGNATURE_OFFSET: usize = PAGE_SIZE as usize - SWAP_SIGNATURE.len();
/// Slots whose bits would overlap the signature bytes, so are never usable.
pub const MAX_SLOTS: u32 = (SIGNATURE_OFFSET as u32) * 8;

const WORDS: usize = (SWAP_BITS / 32) as usize;

/// Clean pages `swap_out` may drop while no dirty page reaches the disk and no task
/// releases memory, before it gives up (D20). Enough for a task to cycle through a large
/// clean working set; small enough that a full or failing device ends in oom() quickly
/// (each drop costs a reload from the image).
pub const THRASH_DROPS: u32 = 256;

/// The smallest device 0.12 swaps to, in 1 KiB blocks ("Swap device too small").
pub const MIN_SWAP_BLOCKS: u32 = 100;
/// 1 KiB blocks per page.
const BLOCKS_PER_PAGE: u32 = PAGE_SIZE / 1024;

/// Why swapping could not start (0.12 prints "Unable to start swapping: ...").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SwapInitError {
    /// No swap device.
    NoDevice,
    /// The device has fewer than [`MIN_SWAP_BLOCKS`] blocks of 1 KiB (0.12 "Swap device
    /// too small (%d blocks)").
    TooSmall { blocks: u32 },
    /// Page 0 lacks the `SWAP-SPACE` signature.
    NoSignature,
    /// The header could not be read.
    Io(SwapIoError),
    /// No frame to read the header into.
    OutOfMemory,
    /// The header's bitmap is bad (0.12 "Bad swap-space bit-map").
    BadBitmap(BadBitmap),
}

/// What is wrong with a swap header's bitmap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BadBitmap {
    /// Slot 0, the header itself, is marked free.
    HeaderFree,
    /// A slot past the device's end is marked free.
    FreeBeyondDevice { slot: u32, slots: u32 },
    /// No slot is free (0.12 gives up without a word).
    NoFreeSlot,
}

impl fmt::Display for SwapInitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SwapInitError::NoDevice => f.write_str("no swap device"),
            SwapInitError::NoSignature => f.write_str(
                "the device has no SWAP-SPACE signature at byte 4086 of its first page \
                 (format it with scripts/mkswap)",
            ),
            SwapInitError::Io(e) => write!(f, "cannot read the swap header: {e}"),
            SwapInitError::OutOfMemory => f.write_str("no frame to read the swap header into"),
            SwapInitError::TooSmall { blocks } => write!(
                f,
                "swap device too small ({blocks} blocks of 1 KiB; 0.12 needs {MIN_SWAP_BLOCKS})"
            ),
            SwapInitError::BadBitmap(BadBitmap::HeaderFree) => {
                f.write_str("bad swap-space bit-map: slot 0 (the header) is marked free")
            }
            SwapInitError::BadBitmap(BadBitmap::FreeBeyondDevice { slot, slots }) => write!(
                f,
                "bad swap-space bit-map: slot {slot} is marked free but the device has {slots} pages"
            ),
            SwapInitError::BadBitmap(BadBitmap::NoFreeSlot) => {
                f.write_str("bad swap-space bit-map: no slot is free")
            }
        }
    }
}

/// What `swap_free` refused (0.12 prints "Swap-space bad (swap_free())").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SwapFreeError {
    pub slot: u32,
}

/// Counters of swap traffic.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SwapCounters {
    /// Dirty pages written out.
    pub written_out: u64,
    /// Clean pages dropped (reloaded from the image, or zero, on the next fault).
    pub dropped: u64,
    /// Pages read back by `swap_in` or `copy_page_tables`.
    pub read_in: u64,
    /// Writes the device refused (the page stayed in memory).
    pub write_errors: u64,
    /// Reads the device refused.
    pub read_errors: u64,
    /// `swap_free` on a slot already free.
    pub double_frees: u64,
}

/// The swap state: 0.12's `swap_bitmap` plus the clock hand of `swap_out`.
#[derive(Clone)]
pub struct SwapMap {
    /// Bit n set: slot n is free.
    bitmap: [u32; WORDS],
    /// Slots the device has (the header's page included).
    nr_slots: u32,
    nr_free: u32,
    /// `swap_out`'s static `dir_entry` and `page_entry`.
    clock_dir: usize,
    clock_page: usize,
    /// Clean pages dropped since a dirty page was last written out or a task released
    /// memory: the thrash guard of D20.
    drops_since_progress: u32,
    pub counters: SwapCounters,
}

impl SwapMap {
    /// A map from a header page, checked as 0.12's `init_swapping` checks it: a device of
    /// at least [`MIN_SWAP_BLOCKS`], the signature, slot 0 and every slot past the
    /// device's end not free, at least one slot free.
    pub fn from_header(header: &[u8], device_pages: u32) -> Result<SwapMap, SwapInitError> {
        let blocks = device_pages.saturating_mul(BLOCKS_PER_PAGE);
        if blocks < MIN_SWAP_BLOCKS {
            return Err(SwapInitError::TooSmall { blocks });
        }
        if header.len() < PAGE_SIZE as usize
            || &header[SIGNATURE_OFFSET..SIGNATURE_OFFSET + 10] != SWAP_SIGNATURE
        {
            return Err(SwapInitError::NoSignature);
        }
        let nr_slots = device_pages.min(MAX_SLOTS);
        // The bits of the signature bytes are not slots (0.12 zeroes those bytes first).
        if let Some(slot) =
            (nr_slots..MAX_SLOTS).find(|&slot| header[(slot / 8) as usize] & (1 << (slot % 8)) != 0)
        {
            return Err(SwapInitError::BadBitmap(BadBitmap::FreeBeyondDevice {
                slot,
                slots: nr_slots,
            }));
        }
        let mut map = SwapMap {
            bitmap: [0; WORDS],
            nr_slots,
            nr_free: 0,
            clock_dir: PDES_PER_TASK,
            clock_page: 0,
            drops_since_progress: 0,
            counters: SwapCounters::default(),
        };
        for slot in 0..nr_slots {
            if header[(slot / 8) as usize] & (1 << (slot % 8)) != 0 {
                map.bitmap[(slot / 32) as usize] |= 1 << (slot % 32);
                map.nr_free += 1;
            }
        }
        if map.is_free(0) {
            return Err(SwapInitError::BadBitmap(BadBitmap::HeaderFree));
        }
        if map.nr_free == 0 {
            return Err(SwapInitError::BadBitmap(BadBitmap::NoFreeSlot));
        }
        Ok(map)
    }

    pub fn nr_slots(&self) -> u32 {
        self.nr_slots
    }
    /// 0.12's `swap_bitmap`: bit n set when slot n is free.
    pub fn bitmap(&self) -> &[u32] {
        &self.bitmap
    }
    /// `swap_out`'s clock hand: (directory entry, page entry) it resumes at.
    pub fn clock(&self) -> (usize, usize) {
        (self.clock_dir, self.clock_page)
    }
    /// Clean pages dropped since the last progress (the thrash guard of D20).
    pub fn drops_since_progress(&self) -> u32 {
        self.drops_since_progress
    }
    pub fn nr_free(&self) -> u32 {
        self.nr_free
    }
    /// Slots in use (named by an entry).
    pub fn nr_used(&self) -> u32 {
        self.nr_slots - 1 - self.nr_free
    }
    pub fn is_free(&self, slot: u32) -> bool {
        slot < self.nr_slots && self.bitmap[(slot / 32) as usize] & (1 << (slot % 32)) != 0
    }
    /// Whether `slot` is a slot in use (allocated, not the header).
    pub fn in_use(&self, slot: u32) -> bool {
        slot != 0 && slot < self.nr_slots && !self.is_free(slot)
    }

    /// 0.12 `get_swap_page`: the lowest free slot, now in use.
    pub fn get_swap_page(&mut self) -> Option<u32> {
        let slot = self.lowest_free()?;
        self.take(slot);
        Some(slot)
    }

    /// The slot `get_swap_page` would take, left free.
    pub fn lowest_free(&self) -> Option<u32> {
        let word = self.bitmap.iter().position(|&w| w != 0)?;
        Some(word as u32 * 32 + self.bitmap[word].trailing_zeros())
    }

    /// Marks the free `slot` in use (`get_swap_page`'s second half).
    fn take(&mut self, slot: u32) {
        debug_assert!(slot != 0 && self.is_free(slot), "slot {slot} is not free");
        self.bitmap[(slot / 32) as usize] &= !(1 << (slot % 32));
        self.nr_free -= 1;
    }

    /// Memory came back (a task released its pages, or a dirty page reached the disk):
    /// dropping clean pages is worth trying again.
    pub fn note_progress(&mut self) {
        self.drops_since_progress = 0;
    }

    /// 0.12 `swap_free(nr)`: slot 0 is ignored; freeing a free slot is refused.
    pub fn swap_free(&mut self, slot: u32) -> Result<(), SwapFreeError> {
        if slot == 0 {
            return Ok(());
        }
        if slot >= self.nr_slots || self.is_free(slot) {
            self.counters.double_frees += 1;
            return Err(SwapFreeError { slot });
        }
        self.bitmap[(slot / 32) as usize] |= 1 << (slot % 32);
        self.nr_free += 1;
        Ok(())
    }
}

/// A header page as mkswap writes it for a device of `pages` pages: slots 1..pages free,
/// the signature at byte 4086.
pub fn format_header(pages: u32) -> [u8; PAGE_SIZE as usize] {
    let mut header = [0u8; PAGE_SIZE as usize];
    for slot in 1..pages.min(MAX_SLOTS) {
        header[(slot / 8) as usize] |= 1 << (slot % 8);
    }
    header[SIGNATURE_OFFSET..].copy_from_slice(SWAP_SIGNATURE);
    header
}

/// What one `try_to_swap_out` did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Eviction {
    /// Not evicted (not present, shared and dirty, no slot, or the thrash guard).
    Kept,
    /// Clean: the entry was cleared, the frame freed.
    Dropped,
    /// Dirty: written to a slot, the entry names it, the frame freed.
    Written,
    /// Dirty, but the device refused the write: nothing changed.
    WriteFailed,
}

/// Whether readers outside the machine are let in (`PhysMem::open_reader_window`): from
/// the start of a `swap_out` whose operation had changed nothing yet, through its scan
/// (which only reads) and its disk write, until its first change.
struct ReaderWindow(bool);

impl ReaderWindow {
    /// Shuts the readers out before a change (a no-op when they are not in).
    fn close<P: PhysMem>(&mut self, mm: &Mm<P>) {
        if core::mem::take(&mut self.0) {
            P::close_reader_window(mm);
        }
    }
}

/// Why `swap_in` could not bring a page back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SwapInError {
    OutOfMemory(OutOfMemory),
    /// The device failed: the page's data is lost to the task.
    Io(SwapIoError),
    /// The entry does not name a slot in use (corrupted state).
    BadEntry(Entry),
}

impl fmt::Display for SwapInError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SwapInError::OutOfMemory(e) => write!(f, "swap_in: {e}"),
            SwapInError::Io(e) => write!(f, "swap_in: {e}"),
            SwapInError::BadEntry(e) => {
                write!(f, "swap_in: entry {:#010x} names no slot in use", e.raw())
            }
        }
    }
}

impl<P: PhysMem> Mm<P> {
    /// 0.12 `init_swapping`: reads the device's header page and starts swapping.
    pub fn init_swapping(&mut self) -> Result<u32, SwapInitError> {
        let pages = self.phys.swap_pages();
        if pages == 0 {
            return Err(SwapInitError::NoDevice);
        }
        let frame = self
            .get_free_page(AllocSite::NoPage)
            .map_err(|_| SwapInitError::OutOfMemory)?;
        let result = self
            .phys
            .swap_read(0, frame)
            .map_err(SwapInitError::Io)
            .and_then(|()| {
                let mut header = [0u8; PAGE_SIZE as usize];
                self.phys.read_bytes(frame.addr(), &mut header);
                SwapMap::from_header(&header, pages)
            });
        // D25: 0.12 keeps this page as its bitmap; here the bits live in the SwapMap.
        self.free_page(frame.addr())
            .expect("the header frame was just allocated");
        let map = result?;
        let free = map.nr_free();
        self.swap = Some(map);
        Ok(free)
    }

    /// 0.12 `swap_in(table_ptr)`: reads the swapped-out page of `address` back into a new
    /// frame, frees its slot and maps it `page | DIRTY | 7` (it must be written out again
    /// before it can be dropped).
    #[inline(never)]
    pub fn swap_in(
        &mut self,
        address: LinearAddr,
        policy: &mut dyn FailurePolicy,
    ) -> Result<Frame, SwapInError> {
        let Some((table, index, entry)) = self.pte(address) else {
            return Err(SwapInError::BadEntry(Entry::EMPTY));
        };
        let slot = entry.swap_slot();
        // D23: 0.12 warns "swapping in multiply from same page" and maps it anyway.
        if !entry.is_swap() || !self.swap.as_ref().is_some_and(|s| s.in_use(slot)) {
            return Err(SwapInError::BadEntry(entry));
        }
        let page = self
            .get_free_page_with(AllocSite::NoPage, policy)
            .map_err(SwapInError::OutOfMemory)?;
        // get_free_page may have run swap_out, which never touches a swap entry: the entry
        // still names the same slot.
        if let Err(e) = self.phys.swap_read(slot, page) {
            self.free_page(page.addr()).expect("just allocated");
            if let Some(swap) = self.swap.as_mut() {
                swap.counters.read_errors += 1;
            }
            return Err(SwapInError::Io(e));
        }
        let swap = self.swap.as_mut().expect("checked above");
        swap.swap_free(slot).expect("the slot was in use");
        swap.counters.read_in += 1;
        self.phys
            .write_entry(table, index, Entry::new(page, USER_RW | EntryFlags::DIRTY));
        Ok(page)
    }

    /// 0.12 `try_to_swap_out(table_ptr)`: evicts the page of entry `index` of `table`.
    /// A clean page is simply dropped (it reloads from the image, or as a zero page); a
    /// dirty page is written to a free slot only when nobody else maps it (count 1).
    ///
    /// D19: the page is written before its entry changes, so a failed write leaves
    /// everything as it was (0.12 points the entry at the slot first).
    #[inline(never)]
    pub fn try_to_swap_out(&mut self, table: Frame, index: usize, linear: LinearAddr) -> bool {
        matches!(
            self.evict(table, index, linear, true, &mut ReaderWindow(false)),
            Eviction::Dropped | Eviction::Written
        )
    }

    /// `try_to_swap_out`, saying what happened; `may_write` false skips dirty pages. An
    /// open `window` is closed before the first change (and stays open through the
    /// write: nothing has changed until it ends).
    #[inline(never)]
    fn evict(
        &mut self,
        table: Frame,
        index: usize,
        linear: LinearAddr,
        may_write: bool,
        window: &mut ReaderWindow,
    ) -> Eviction {
        let entry = self.phys.read_entry(table, index);
        if !entry.is_present() {
            return Eviction::Kept;
        }
        let page = entry.frame();
        if page.as_u32() < self.mem_map.start_mem().max(LOW_MEM)
            || page.as_u32() >= self.high_memory()
        {
            return Eviction::Kept;
        }
        if !entry.is_dirty() {
            // D20: when no dirty page can go to the disk (device full or failing) and
            // memory holds nothing but dirty pages and the few clean pages the running
            // task needs, 0.12 drops and reloads those forever. After THRASH_DROPS clean
            // drops (or a memory's worth, if less) with no progress, stop: the
            // allocation fails and oom() ends the livelock.
            let limit = (self.mem_map.nr_paging_frames() as u32).min(THRASH_DROPS);
            if let Some(swap) = self.swap.as_mut() {
                if swap.drops_since_progress >= limit {
                    return Eviction::Kept;
                }
                swap.drops_since_progress += 1;
            }
            window.close(self);
            self.phys.write_entry(table, index, Entry::EMPTY);
            self.phys.invalidate_page(linear);
            self.free_page(page.addr())
                .expect("a mapped page is counted");
            if let Some(swap) = self.swap.as_mut() {
                swap.counters.dropped += 1;
            }
            return Eviction::Dropped;
        }
        if !may_write || self.mem_map.count(page) != Some(1) {
            return Eviction::Kept;
        }
        if self.compat.contains(Compat::D19) {
            let Some(slot) = self.swap.as_ref().and_then(SwapMap::lowest_free) else {
                return Eviction::Kept;
            };
            window.close(self);
            self.swap.as_mut().expect("checked above").take(slot);
            // 0.12: "*table_ptr = swap_nr<<1; invalidate(); write_swap_page(swap_nr,
            // (char *) page); free_page(page);": the entry names the slot first, and a
            // write that fails is not noticed: the page's data is lost.
            self.phys.write_entry(table, index, Entry(slot << 1));
            self.phys.invalidate_page(linear);
            let written = self.phys.swap_write(slot, page);
            self.free_page(page.addr())
                .expect("a mapped page is counted");
            let swap = self.swap.as_mut().expect("checked above");
            match written {
                Ok(()) => swap.counters.written_out += 1,
                Err(_) => swap.counters.write_errors += 1,
            }
            swap.note_progress();
            return Eviction::Written;
        }
        // D19: the page reaches the disk before the entry names the slot, and the slot
        // is taken only then (the paging lock is held: nobody else takes it meanwhile),
        // so nothing has changed until the write ends: readers stay in for its duration
        // (the disk's time is most of swapping). A failed write changes only counters,
        // which readers see when they are next published.
        let Some(slot) = self.swap.as_ref().and_then(SwapMap::lowest_free) else {
            return Eviction::Kept;
        };
        let written = self.phys.swap_write(slot, page);
        let swap = self.swap.as_mut().expect("checked above");
        if written.is_err() {
            swap.counters.write_errors += 1;
            return Eviction::WriteFailed;
        }
        window.close(self);
        let swap = self.swap.as_mut().expect("checked above");
        swap.take(slot);
        self.phys.write_entry(table, index, Entry(slot << 1));
        self.phys.invalidate_page(linear);
        self.free_page(page.addr())
            .expect("a mapped page is counted");
        let swap = self.swap.as_mut().expect("checked above");
        swap.counters.written_out += 1;
        swap.note_progress();
        Eviction::Written
    }

    /// 0.12 `swap_out()`: a clock scan over every user page-table entry, resuming where
    /// the last call stopped and never touching task 0's slot, until one page is evicted.
    /// False when a whole round evicted nothing ("Out of swap-memory").
    ///
    /// When the operation that allocates has changed nothing yet (`between_operations`),
    /// readers outside the machine are let in (`PhysMem::open_reader_window`) until the
    /// eviction's first change: the scan only reads, and under memory pressure the scan
    /// and the disk write are most of a fault's time.
    #[inline(never)]
    pub fn swap_out(&mut self) -> bool {
        let Some(swap) = self.swap.as_ref() else {
            return false;
        };
        let (mut dir, mut page) = (swap.clock_dir, swap.clock_page);
        let mut window = ReaderWindow(self.between_operations && P::open_reader_window(self));
        let evicted = self.scan_and_evict(&mut dir, &mut page, &mut window);
        window.close(self);
        let swap = self.swap.as_mut().expect("checked above");
        swap.clock_dir = dir;
        swap.clock_page = page;
        evicted
    }

    /// `swap_out`'s clock scan from (`dir`, `page`), left where it stopped.
    fn scan_and_evict(
        &mut self,
        dir: &mut usize,
        page: &mut usize,
        window: &mut ReaderWindow,
    ) -> bool {
        // After one failed write, only clean pages are tried for the rest of this scan: a
        // failing device is not asked again for every dirty page of memory.
        let mut may_write = true;
        let user_pdes = ENTRIES_PER_TABLE - PDES_PER_TASK;
        for _ in 0..user_pdes * ENTRIES_PER_TABLE + ENTRIES_PER_TABLE {
            if *page >= ENTRIES_PER_TABLE {
                *page = 0;
                *dir = if *dir + 1 >= ENTRIES_PER_TABLE {
                    PDES_PER_TASK
                } else {
                    *dir + 1
                };
            }
            let Some(table) = self.page_table(*dir) else {
                *page = ENTRIES_PER_TABLE;
                continue;
            };
            let index = *page;
            *page += 1;
            let outcome = self.evict(
                table,
                index,
                LinearAddr::from_indices(*dir, index),
                may_write,
                window,
            );
            may_write &= outcome != Eviction::WriteFailed;
            if matches!(outcome, Eviction::Dropped | Eviction::Written) {
                return true;
            }
        }
        false
    }

    /// Frees the slot of a swap entry (0.12 `swap_free(pte >> 1)`), counting a bad one.
    pub(crate) fn free_swap_entry(&mut self, entry: Entry) -> bool {
        match self.swap.as_mut() {
            Some(swap) => swap.swap_free(entry.swap_slot()).is_ok(),
            None => false,
        }
    }
}
