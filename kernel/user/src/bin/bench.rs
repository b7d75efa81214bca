//! `bench`: the guest half of `scripts/bench`: times page faults, fork, exit and the frame allocator, and sets up the many-task system the debug-link figures need.
//!
//! Arguments:
//! - `mem` (default): prints one `BENCH name=... cycles=...` line per figure, in CPU
//!   cycles (the time-stamp counter, read in ring 3 around each access, so a figure is
//!   the whole fault as the program sees it: trap entry, handler, return), and
//!   `BENCH name=tsc_hz` so the host can convert. Each fault figure is the median of
//!   many faults, so a timer tick inside one does not move it.
//! - `share`: exec'd by `mem`: reads the pages `mem` loaded from the image, which the
//!   kernel then shares (0.11 `share_page`), and prints that figure.
//! - `link`: forks [`SLEEPERS`] tasks that sleep, sends `UART_BYTES` raw bytes on COM1
//!   (`debug(BENCH_UART)`) once the host listens, and sleeps: the host then reads memory
//!   and runs monitor commands through the stubs.
// Built for i586-unknown-linux-gnu only; on any other target (the host's `cargo clippy
// --workspace`) the crate is empty (README "Tests": lints), as its 32-bit asm cannot build there.
#![cfg_attr(target_arch = "x86", no_std)]
#![no_main]
#![cfg(target_arch = "x86")]

use user::abi::{bench_alloc, bench_mark, debug_op, MAX_ARG_LEN};
use user::mem::{grow_break, touch_stack, PageBuffer, Region, MIB, PAGE_SIZE};
use user::{debug, execve, exit, fork, getarg, say, sleep, waitpid, Forked, Pid};

user::entry!(main);

/// Pages of demand-zero and copy-on-write samples (1 MiB).
const FAULT_PAGES: usize = 256;
/// Pages of initialised data loaded from the image, then shared by a second instance.
const IMAGE_PAGES: usize = 32;
/// The extra memory a task touches for the fork and exit slopes.
const SLOPE_MIB: usize = 4;
/// Repetitions of fork and exit timings (the median is printed).
const REPEATS: usize = 9;
/// Memory use at which the allocator is timed, in percent of the paging frames.
const ALLOC_PERCENTS: [u32; 4] = [10, 50, 90, 99];
/// Timer ticks to measure the time-stamp counter's rate over (100 Hz: half a second).
const TSC_TICKS: u32 = 50;
/// Timer interrupts per second (the kernel's HZ).
const HZ: u64 = 100;
/// Tasks that sleep while the host measures the debug link.
const SLEEPERS: usize = 30;
/// Bytes of the raw UART run (the host reads them all).
const UART_BYTES: u32 = 1 << 20;
/// Ticks `link` waits before the UART run: the host has connected long before.
const UART_DELAY_TICKS: u32 = 100;
/// A sleep longer than any benchmark run.
const FOREVER_TICKS: u32 = 1 << 30;
/// Stack pages made present and private before timing, so the timed code faults
/// nothing but what it measures.
const STACK_PAGES: usize = 4;
/// Stack pages written by a forked child before it times anything (breaks COW on them).
const CHILD_STACK_PAGES: usize = 2;

/// The word `IMAGE_DATA` is filled with: anything but 0 (a zero buffer goes to `.bss`).
const IMAGE_WORD: u32 = 0x1a6e_da7a;
/// Pages of non-zero words: in `.data`, so each page comes from the program image.
static IMAGE_DATA: PageBuffer<IMAGE_PAGES> = PageBuffer::filled(IMAGE_WORD);

fn main() -> i32 {
    let mut buf = [0u8; MAX_ARG_LEN];
    let arg = getarg(&mut buf).unwrap_or("");
    match arg {
        "" | "mem" => memory_figures(),
        "share" => {
            touch_stack(STACK_PAGES);
            report("shared_fault", time_reads(&IMAGE_DATA));
            0
        }
        "link" => link(),
        other => {
            say!("unknown argument '{other}': mem, share or link");
            2
        }
    }
}

/// The time-stamp counter.
fn rdtsc() -> u64 {
    // SAFETY: rdtsc only reads a counter; the kernel leaves CR4.TSD clear, so ring 3
    // may execute it. It touches no memory.
    unsafe { core::arch::x86::_rdtsc() }
}

/// Prints a figure for scripts/bench.
fn report(name: &str, cycles: u64) {
    say!("BENCH name={name} cycles={cycles}");
}

/// The median of some samples (sorts them).
fn median(samples: &mut [u64]) -> u64 {
    samples.sort_unstable();
    samples[samples.len() / 2]
}

fn memory_figures() -> i32 {
    touch_stack(STACK_PAGES);
    report_tsc_rate();
    let warmed = debug(debug_op::BENCH_WARM, 0);
    say!("BENCH name=warmed_frames count={warmed}");
    // The allocator first: the later figures leave this task holding memory, and the
    // 10 % point needs most of it free.
    if !allocator_figures() {
        return 1;
    }

    let Ok(region) = grow_break(FAULT_PAGES * PAGE_SIZE) else {
        say!("cannot grow the break by {FAULT_PAGES} pages");
        return 1;
    };
    report("demand_zero_fault", time_writes(&region, 0, FAULT_PAGES));

    // The child copies every page it writes (count 2); after it exits, the parent's
    // pages have count 1 and are only made writable again.
    match fork() {
        Ok(Forked::Child) => {
            touch_stack(CHILD_STACK_PAGES);
            report("cow_copy_fault", time_writes(&region, 0, FAULT_PAGES));
            exit(0);
        }
        Ok(Forked::Parent(pid)) => wait(pid),
        Err(e) => {
            say!("fork: {e}");
            return 1;
        }
    }
    report("cow_count1_fault", time_writes(&region, 0, FAULT_PAGES));

    report("image_load_fault", time_reads(&IMAGE_DATA));
    // A second instance of this program reads the same pages: the kernel shares them.
    match fork() {
        Ok(Forked::Child) => {
            let e = execve("bench", "share");
            say!("execve: {e}");
            exit(1);
        }
        Ok(Forked::Parent(pid)) => wait(pid),
        Err(e) => {
            say!("fork: {e}");
            return 1;
        }
    }

    // Exit: a child that touched SLOPE_MIB more than another one; fork: a parent that
    // touched SLOPE_MIB more than before. The slopes are the cost per MiB.
    let exit_small = time_exit(0);
    let exit_large = time_exit(SLOPE_MIB);
    let fork_small = time_fork();
    let Ok(more) = grow_break(SLOPE_MIB * MIB) else {
        say!("cannot grow the break by {SLOPE_MIB} MiB");
        return 1;
    };
    time_writes(&more, 0, more.pages());
    let fork_large = time_fork();
    say!("BENCH name=exit_base cycles={exit_small}");
    say!("BENCH name=fork_base cycles={fork_small}");
    report(
        "exit_per_mib",
        exit_large.saturating_sub(exit_small) / SLOPE_MIB as u64,
    );
    report(
        "fork_per_mib",
        fork_large.saturating_sub(fork_small) / SLOPE_MIB as u64,
    );
    say!("BENCH name=done");
    0
}

/// Cycles per second of the time-stamp counter, measured against the timer.
fn report_tsc_rate() {
    let ticks_before = debug(debug_op::TICKS, 0) as u32;
    let started = rdtsc();
    sleep(TSC_TICKS);
    let cycles = rdtsc() - started;
    let ticks = (debug(debug_op::TICKS, 0) as u32)
        .wrapping_sub(ticks_before)
        .max(1);
    say!("BENCH name=tsc_hz value={}", cycles * HZ / u64::from(ticks));
}

/// `get_free_page` + `free_page` and the search alone, with the bitmap and with
/// 0.11's scan, at each memory use. False when the kernel found the two orders differ.
fn allocator_figures() -> bool {
    for percent in ALLOC_PERCENTS {
        for (search, flag) in [("bitmap", 0), ("scan", bench_alloc::LINEAR_SCAN)] {
            let pair = debug(debug_op::BENCH_ALLOC, percent | flag);
            let search_only = debug(
                debug_op::BENCH_ALLOC,
                percent | flag | bench_alloc::SEARCH_ONLY,
            );
            if pair < 0 || search_only < 0 {
                say!("BENCH name=alloc percent={percent} search={search} same_order=0");
                return false;
            }
            say!(
                "BENCH name=alloc percent={percent} search={search} same_order=1 pair={pair} search_only={search_only}"
            );
        }
    }
    true
}

/// Writes the first word of pages `first..first + count` of `region`, timing each.
fn time_writes(region: &Region, first: usize, count: usize) -> u64 {
    let mut samples = [0u64; FAULT_PAGES];
    let count = count.min(FAULT_PAGES);
    let mut done = 0;
    for (i, page) in (first..first + count).enumerate() {
        let started = rdtsc();
        region.write(page * PAGE_SIZE, page as u32);
        samples[i] = rdtsc() - started;
        done += 1;
    }
    // A region longer than the sample array is still touched whole (fork slope).
    for page in first + count..region.pages() {
        region.write(page * PAGE_SIZE, page as u32);
    }
    median(&mut samples[..done])
}

/// Reads the first word of every page of `buffer`, timing each.
fn time_reads<const PAGES: usize>(buffer: &PageBuffer<PAGES>) -> u64 {
    let mut samples = [0u64; PAGES];
    for (page, sample) in samples.iter_mut().enumerate() {
        let started = rdtsc();
        core::hint::black_box(buffer.read(page, 0));
        *sample = rdtsc() - started;
    }
    median(&mut samples)
}

/// Waits for a child, which must exit 0.
fn wait(pid: Pid) {
    match waitpid(pid, 0) {
        Ok((_, 0)) => {}
        Ok((_, status)) => say!("child {pid} ended with status {status:#x}"),
        Err(e) => say!("waitpid({pid}): {e}"),
    }
}

/// Median cycles of `fork` as the parent sees it (the child exits at once).
fn time_fork() -> u64 {
    let mut samples = [0u64; REPEATS];
    for sample in samples.iter_mut() {
        let started = rdtsc();
        match fork() {
            Ok(Forked::Child) => exit(0),
            Ok(Forked::Parent(pid)) => {
                *sample = rdtsc() - started;
                wait(pid);
            }
            Err(e) => say!("fork: {e}"),
        }
    }
    median(&mut samples)
}

/// Median cycles from a child's last instruction before `exit` to its parent's return
/// from `waitpid`, for a child that first touched `mib` MiB of fresh memory.
fn time_exit(mib: usize) -> u64 {
    let mut failed = 0;
    let mut samples = [0u64; REPEATS];
    for sample in samples.iter_mut() {
        match fork() {
            Ok(Forked::Child) => {
                if mib > 0 {
                    match grow_break(mib * MIB) {
                        Ok(region) => region.touch_pages(1),
                        Err(_) => exit(1),
                    }
                }
                debug(debug_op::BENCH_MARK, bench_mark::SET);
                exit(0);
            }
            Ok(Forked::Parent(pid)) => {
                wait(pid);
                let ended = rdtsc();
                let low = debug(debug_op::BENCH_MARK, bench_mark::LOW) as u32;
                let high = debug(debug_op::BENCH_MARK, bench_mark::HIGH) as u32;
                let mark = u64::from(high) << u32::BITS | u64::from(low);
                *sample = ended.saturating_sub(mark);
            }
            Err(_) => failed += 1,
        }
    }
    if failed != 0 {
        say!("fork failed while timing exit");
    }
    median(&mut samples)
}

/// The many-task system for the debug-link figures.
fn link() -> i32 {
    for _ in 0..SLEEPERS {
        match fork() {
            Ok(Forked::Child) => loop {
                sleep(FOREVER_TICKS);
            },
            Ok(Forked::Parent(_)) => {}
            Err(e) => {
                say!("fork: {e}");
                return 1;
            }
        }
    }
    say!("BENCH phase=tasks-ready tasks={}", SLEEPERS + 1);
    sleep(UART_DELAY_TICKS);
    say!("BENCH phase=uart-start bytes={UART_BYTES}");
    let sent = debug(debug_op::BENCH_UART, UART_BYTES);
    say!("BENCH phase=uart-done sent={sent}");
    loop {
        sleep(FOREVER_TICKS);
    }
}
