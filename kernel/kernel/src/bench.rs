//! In-kernel measurement loops for `scripts/bench`: warming RAM up, timing the frame
//! allocator against Linux 0.11's scan on the same `mem_map`, COM1's raw transmit rate
//! and a time-stamp mark that outlives a task (the `debug(BENCH_*)` operations).

use abi::bench_alloc;
use abi::bench_mark;
use abi::errno::{EAGAIN, EINVAL};
use mm::addr::MAX_PAGING_PAGES;
use mm::memory::FrameSearch;
use mm::{AllocSite, PhysMem};
use spin::Mutex;

use crate::arch::x86::com1::Com1;
use crate::arch::x86::cpu;
use crate::paging::paging;
use crate::syscall::Errno;

/// Timed pairs per measurement; the median is returned, so a timer tick or a host
/// hiccup inside a few samples does not move the figure.
const SAMPLES: usize = 63;
/// Percent, as `debug(BENCH_ALLOC)` takes it.
const ALL_PERCENT: usize = 100;
/// How many bytes of the transmit pattern go to the UART per call.
const UART_CHUNK: usize = 256;
/// The bytes sent: a counting pattern, in `.rodata` (the kernel stack is one page).
static UART_PATTERN: [u8; UART_CHUNK] = {
    let mut pattern = [0u8; UART_CHUNK];
    let mut i = 0;
    while i < UART_CHUNK {
        pattern[i] = i as u8;
        i += 1;
    }
    pattern
};

/// `mem_map` indices of the frames a measurement took to fill memory (u16: at most
/// `MAX_PAGING_PAGES` = 16128 frames).
static HELD: Mutex<[u16; MAX_PAGING_PAGES]> = Mutex::new([0; MAX_PAGING_PAGES]);
/// `debug(BENCH_MARK, SET)`'s time-stamp counter.
static MARK: Mutex<u64> = Mutex::new(0);

/// `debug(BENCH_WARM)`: every free frame written once, then freed again.
pub fn warm() -> Result<u32, Errno> {
    let mut held = HELD.lock();
    let mut p = paging();
    let mm = &mut p.mm;
    let mut taken = 0;
    while let Some(frame) = mm.mem_map.take_highest_free() {
        mm.phys.zero_frame(frame);
        held[taken] = index_of(&mm.mem_map, frame);
        taken += 1;
    }
    for &index in &held[..taken] {
        let frame = mm.mem_map.frame_of(usize::from(index));
        // Taken just above with count 1: dropping that reference frees it.
        let _ = mm.mem_map.decrement(frame);
    }
    Ok(taken as u32)
}

/// `debug(BENCH_ALLOC, arg)`: see `abi::debug_op::BENCH_ALLOC`.
pub fn alloc(arg: u32) -> Result<u32, Errno> {
    let percent = bench_alloc::percent(arg) as usize;
    if percent >= ALL_PERCENT {
        return Err(Errno(EINVAL));
    }
    let search = if arg & bench_alloc::LINEAR_SCAN != 0 {
        FrameSearch::LinearScan0_11
    } else {
        FrameSearch::Bitmap
    };
    let search_only = arg & bench_alloc::SEARCH_ONLY != 0;

    let mut held = HELD.lock();
    let mut p = paging();
    let mm = &mut p.mm;
    // Fill from the top, as get_free_page itself would: the frames in use gather at the
    // top of memory, which is what 0.11's scan from the top has to walk over.
    let paging_frames = mm.mem_map.nr_paging_frames();
    let in_use = paging_frames - mm.mem_map.nr_free();
    let wanted = paging_frames * percent / ALL_PERCENT;
    let mut taken = 0;
    while in_use + taken < wanted {
        let Some(frame) = mm.mem_map.take_highest_free() else {
            break;
        };
        held[taken] = index_of(&mm.mem_map, frame);
        taken += 1;
    }

    let saved_search = mm.frame_search;
    mm.frame_search = search;
    let mut samples = [0u64; SAMPLES];
    let mut same_order = true;
    for sample in samples.iter_mut() {
        // The order check stays outside the timed window: both searches must name the
        // frame the pair is about to take.
        let expected = mm.mem_map.highest_free_index();
        same_order &= expected == mm.mem_map.scan_highest_free_0_11();
        let started = cpu::rdtsc();
        let found = if search_only {
            match search {
                FrameSearch::Bitmap => mm.mem_map.highest_free_index(),
                FrameSearch::LinearScan0_11 => mm.mem_map.scan_highest_free_0_11(),
            }
        } else {
            match mm.get_free_page(AllocSite::NoPage) {
                Ok(frame) => {
                    // Just allocated with count 1: freeing it cannot fail.
                    let _ = mm.free_page(frame.addr());
                    mm.mem_map.map_nr(frame)
                }
                Err(_) => None,
            }
        };
        *sample = cpu::rdtsc().wrapping_sub(started);
        same_order &= found == expected;
    }
    mm.frame_search = saved_search;

    for &index in &held[..taken] {
        let frame = mm.mem_map.frame_of(usize::from(index));
        // Taken above with count 1: dropping that reference frees it.
        let _ = mm.mem_map.decrement(frame);
    }
    if !same_order {
        crate::println!(
            "bench: the bitmap and 0.11's scan chose different frames at {percent} % in use"
        );
        return Err(Errno(EINVAL));
    }
    samples.sort_unstable();
    Ok(u32::try_from(samples[SAMPLES / 2]).unwrap_or(u32::MAX))
}

/// `debug(BENCH_UART, len)`: `len` bytes of a counting pattern on COM1, as fast as the
/// UART takes them. The caller (scripts/bench) makes sure no gdb session is on the line:
/// the bytes would break its packets.
pub fn uart(len: u32) -> Result<u32, Errno> {
    let mut com1 = Com1::new();
    // Programs COM1 exactly as the stub does (same speed, FIFO, data-ready interrupt),
    // so the stub finds the line as it left it.
    if !com1.init() {
        return Err(Errno(EAGAIN));
    }
    let mut left = len as usize;
    while left > 0 {
        let n = left.min(UART_CHUNK);
        com1.write(&UART_PATTERN[..n]);
        left -= n;
    }
    Ok(len)
}

/// `debug(BENCH_MARK, what)`.
pub fn mark(what: u32) -> Result<u32, Errno> {
    let mut mark = MARK.lock();
    match what {
        bench_mark::SET => {
            *mark = cpu::rdtsc();
            Ok(0)
        }
        bench_mark::LOW => Ok(*mark as u32),
        bench_mark::HIGH => Ok((*mark >> u32::BITS) as u32),
        _ => Err(Errno(EINVAL)),
    }
}

/// The `mem_map` index of a frame `mem_map` just handed out.
fn index_of(map: &mm::MemMap, frame: mm::Frame) -> u16 {
    // Frames from take_highest_free are covered by mem_map, and MAX_PAGING_PAGES < 2^16.
    map.map_nr(frame).map_or(0, |i| i as u16)
}
