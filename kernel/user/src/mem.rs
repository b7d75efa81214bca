//! Memory the tests poke at: page-aligned static buffers, break regions, stack and image prefaulting.
//!
//! Every access here is a real load or store the compiler may not remove or merge
//! (atomics or volatile accesses), because the point of each one is the page fault
//! it may cause.

use core::hint::black_box;
use core::sync::atomic::{AtomicU32, Ordering};

use crate::{brk, Errno};

/// Bytes in a page.
pub const PAGE_SIZE: usize = abi::PAGE_SIZE as usize;
/// 32-bit words in a page.
pub const WORDS_PER_PAGE: usize = PAGE_SIZE / core::mem::size_of::<u32>();
/// One mebibyte.
pub const MIB: usize = 1 << 20;

/// Rounds `addr` up to a page boundary.
pub const fn page_align_up(addr: usize) -> usize {
    (addr + PAGE_SIZE - 1) & !(PAGE_SIZE - 1)
}

/// Rounds `addr` down to a page boundary.
pub const fn page_align_down(addr: usize) -> usize {
    addr & !(PAGE_SIZE - 1)
}

/// One page of words.
type Page = [AtomicU32; WORDS_PER_PAGE];

/// `PAGES` whole pages in a static, page aligned, readable and writable through
/// shared references (atomics: a task has one thread, but the accesses must stay
/// real). A zero-initialised one lands in `.bss`, a [`filled`](Self::filled) one in
/// `.data`.
#[repr(C, align(4096))]
pub struct PageBuffer<const PAGES: usize> {
    pages: [Page; PAGES],
}

impl<const PAGES: usize> PageBuffer<PAGES> {
    /// A buffer of zeros (placed in `.bss`).
    pub const fn zeroed() -> Self {
        Self {
            pages: [const { [const { AtomicU32::new(0) }; WORDS_PER_PAGE] }; PAGES],
        }
    }

    /// A buffer whose every word is `word` (placed in `.data` when `word != 0`).
    pub const fn filled(word: u32) -> Self {
        let mut buffer = Self::zeroed();
        let mut page = 0;
        while page < PAGES {
            let mut index = 0;
            while index < WORDS_PER_PAGE {
                buffer.pages[page][index] = AtomicU32::new(word);
                index += 1;
            }
            page += 1;
        }
        buffer
    }

    /// Number of pages.
    pub const fn pages(&self) -> usize {
        PAGES
    }

    /// The address (offset in the task's segment) of page `page`.
    pub fn page_addr(&self, page: usize) -> usize {
        self.pages[page].as_ptr() as usize
    }

    /// Reads word `index` of page `page`.
    pub fn read(&self, page: usize, index: usize) -> u32 {
        self.pages[page][index].load(Ordering::Relaxed)
    }

    /// Writes word `index` of page `page`.
    pub fn write(&self, page: usize, index: usize, word: u32) {
        self.pages[page][index].store(word, Ordering::Relaxed);
    }

    /// Writes `word` to every word of page `page`.
    pub fn fill_page(&self, page: usize, word: u32) {
        for cell in &self.pages[page] {
            cell.store(word, Ordering::Relaxed);
        }
    }

    /// Writes `word` to every word of every page.
    pub fn fill(&self, word: u32) {
        for page in 0..PAGES {
            self.fill_page(page, word);
        }
    }

    /// The first word of page `page` that is not `word`: `(index, found)`.
    pub fn find_mismatch(&self, page: usize, word: u32) -> Option<(usize, u32)> {
        self.pages[page]
            .iter()
            .map(|cell| cell.load(Ordering::Relaxed))
            .enumerate()
            .find(|&(_, found)| found != word)
    }
}

/// Memory obtained by moving the break up: page-aligned, not used by any Rust object.
#[derive(Debug)]
pub struct Region {
    start: usize,
    len: usize,
}

/// Moves the break up by at least `len` bytes and returns the new memory, starting
/// on a page boundary (the old break is rounded up first). The pages are not present
/// until touched: Linux 0.11's `brk` only moves a limit, `do_no_page` does the rest.
pub fn grow_break(len: usize) -> Result<Region, Errno> {
    let start = page_align_up(brk(0)?);
    let end = start.checked_add(len).ok_or(Errno::ENOMEM)?;
    brk(end)?;
    Ok(Region { start, len })
}

impl Region {
    /// Its first address.
    pub fn start(&self) -> usize {
        self.start
    }

    /// Its length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Number of (whole or partial) pages.
    pub fn pages(&self) -> usize {
        self.len.div_ceil(PAGE_SIZE)
    }

    /// The address of page `page`.
    pub fn page_addr(&self, page: usize) -> usize {
        self.start + page * PAGE_SIZE
    }

    /// The word at byte `offset` (4-aligned) of the region.
    pub fn read(&self, offset: usize) -> u32 {
        assert!(
            offset + 4 <= self.len && offset.is_multiple_of(4),
            "offset {offset:#x} outside the region"
        );
        // SAFETY: the address lies in this region: memory between the old and the new
        // break that `grow_break` handed out once and no Rust object uses; the kernel
        // maps it on demand. Aligned for u32 (page-aligned start, 4-aligned offset).
        unsafe { ((self.start + offset) as *const u32).read_volatile() }
    }

    /// Writes the word at byte `offset` (4-aligned) of the region.
    pub fn write(&self, offset: usize, word: u32) {
        assert!(
            offset + 4 <= self.len && offset.is_multiple_of(4),
            "offset {offset:#x} outside the region"
        );
        // SAFETY: as in `read`; nothing else holds a reference into the region.
        unsafe { ((self.start + offset) as *mut u32).write_volatile(word) }
    }

    /// Writes `word` at the start of every page (one store per page: enough to
    /// fault each page in).
    pub fn touch_pages(&self, word: u32) {
        for page in 0..self.pages() {
            self.write(page * PAGE_SIZE, word);
        }
    }
}

/// Uses `pages` pages of stack below the caller's frame (a recursion of one page per
/// level), so they are present and private before a measurement: later stack use then
/// causes no page fault, copy-on-write or demand-zero.
#[inline(never)]
pub fn touch_stack(pages: usize) {
    if pages == 0 {
        return;
    }
    let mut frame = [0u8; PAGE_SIZE];
    frame[0] = 1;
    frame[PAGE_SIZE - 1] = 1;
    black_box(&mut frame);
    touch_stack(pages - 1);
    // Using the frame after the call keeps the recursion from becoming a loop.
    black_box(&frame);
}

/// The approximate current stack pointer (the address of a local).
#[inline(never)]
pub fn stack_pointer() -> usize {
    let marker = 0u8;
    black_box(&marker) as *const u8 as usize
}

extern "C" {
    /// End of the program's pages (text, rodata, data, bss), from link.ld.
    static __image_end: u8;
    /// End of the program's text, from link.ld.
    static __text_end: u8;
}

/// The end of the program's text (the kernel's `end_code`, 0.11's `a_text`).
pub fn text_end() -> usize {
    // Only the address of the linker-defined symbol is taken, never its value.
    core::ptr::addr_of!(__text_end) as usize
}

/// The page-aligned end of the program's text, data and bss.
pub fn image_end() -> usize {
    // Only the address of the linker-defined symbol is taken, never its value.
    core::ptr::addr_of!(__image_end) as usize
}

/// Reads one byte of every page of the program (text, rodata, data, bss) so that all
/// are present: afterwards running new code or reading new constants faults no page
/// in, and free-frame counts taken by a test stay put. Page 0 is skipped: it holds
/// `_start`, so it is present already (and address 0 is a null pointer to Rust).
pub fn prefault_image() {
    let mut addr = PAGE_SIZE;
    while addr < image_end() {
        // SAFETY: every address below `__image_end` belongs to the program's own
        // text, data or bss, which are readable; a volatile read has no other effect.
        unsafe {
            (addr as *const u8).read_volatile();
        }
        addr += PAGE_SIZE;
    }
}

/// Reads the word at `addr`, whatever it is, for tests that want the fault.
///
/// # Safety
/// A read beyond the 64 MiB segment kills the task (#GP); a read inside it may map
/// a page. The caller expects one of those.
pub unsafe fn peek(addr: usize) -> u32 {
    // SAFETY: delegated to the caller.
    unsafe { (addr as *const u32).read_volatile() }
}
