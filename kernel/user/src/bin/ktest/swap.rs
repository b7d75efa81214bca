//! Swap scenarios (Linux 0.12 `mm/swap.c`): a workload larger than RAM with every byte
//! verified, fork with swapped-out pages, exit freeing every slot, device failures and
//! a full device. They need a swap disk (qemu-tests attaches one).

use user::abi::{debug_op, page_flags, signal, swap_fault, MemInfo, PAGE_SIZE};
use user::check::{expect_exit, expect_killed, spawn, spawn_code, Failed, OrFail, Outcome};
use user::mem::{grow_break, Region};
use user::{check, check_eq, debug, meminfo, pageinfo, say};

/// Words per page.
const WORDS: usize = PAGE_SIZE as usize / 4;

/// The word written at word `word` of page `page` by the writer `seed`: every byte of the
/// workload depends on where it is and who wrote it, so a page that comes back from the
/// disk in the wrong place or from the wrong owner is caught.
fn pattern(seed: u32, page: usize, word: usize) -> u32 {
    let mut x = seed ^ ((page as u32) << 12) ^ word as u32;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    x
}

/// FNV-1a over the words, to print one checksum of the whole workload.
fn fnv(hash: u32, word: u32) -> u32 {
    word.to_le_bytes()
        .iter()
        .fold(hash, |h, &b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193))
}

const FNV_START: u32 = 0x811c_9dc5;

/// Fills every word of every page of `region` and returns the checksum of what it wrote.
fn fill(region: &Region, seed: u32) -> u32 {
    let mut sum = FNV_START;
    for page in 0..region.pages() {
        for word in 0..WORDS {
            let value = pattern(seed, page, word);
            region.write(page * PAGE_SIZE as usize + word * 4, value);
            sum = fnv(sum, value);
        }
    }
    sum
}

/// Reads every word back, checks it against the pattern and returns the checksum of
/// what it read.
fn verify(region: &Region, seed: u32, who: &str) -> Result<u32, Failed> {
    let mut sum = FNV_START;
    for page in 0..region.pages() {
        for word in 0..WORDS {
            let found = region.read(page * PAGE_SIZE as usize + word * 4);
            let expected = pattern(seed, page, word);
            check_eq!(found, expected, "{who}: word {word} of page {page}");
            sum = fnv(sum, found);
        }
    }
    Ok(sum)
}

fn swap_stat(which: u32) -> u32 {
    debug(debug_op::SWAP_STATS, which) as u32
}

/// The machine's memory and swap, or a failure when there is no swap device.
fn swap_machine() -> Result<MemInfo, Failed> {
    let info = meminfo().or_fail("meminfo")?;
    check!(
        info.swap_slots > 0,
        "no swap device: boot with a swap disk (scripts/run --swap)"
    );
    say!(
        "{} paging frames ({} KiB), swap {} slots ({} free)",
        info.paging_frames,
        info.paging_frames * 4,
        info.swap_slots,
        info.swap_free
    );
    Ok(info)
}

/// swap-twice-ram: a workload of twice the RAM, written and read back twice, every word
/// checked; pages must have gone out to the disk and come back.
pub fn twice_ram() -> Outcome {
    let info = swap_machine()?;
    let pages = 2 * info.paging_frames as usize;
    let region = grow_break(pages * PAGE_SIZE as usize).or_fail("brk")?;
    let (out0, in0) = (swap_stat(0), swap_stat(2));
    let written = fill(&region, 0x5eed);
    let middle = meminfo().or_fail("meminfo")?;
    say!(
        "{pages} pages written (checksum {written:#010x}); {} of mine are swapped out now",
        middle.task_swapped
    );
    check!(
        middle.task_swapped > 0,
        "no page of a workload twice the RAM is swapped out"
    );
    let read = verify(&region, 0x5eed, "workload")?;
    check_eq!(read, written, "checksum of what was read back");
    say!("every word verified (checksum {read:#010x})");
    let (out, back) = (swap_stat(0) - out0, swap_stat(2) - in0);
    say!("{out} pages written out, {back} read back");
    check!(
        out >= pages as u32 / 2 && back >= pages as u32 / 2,
        "too little swap traffic ({out} out, {back} in)"
    );
    Ok(())
}

/// Pushes most of the caller's pages out to the disk: a child execs memhog, which touches
/// as much memory as the machine has and exits. (A forked child that only touched memory
/// would share the caller's pages copy-on-write, and shared dirty pages are never
/// written out.)
fn push_out(paging_frames: u32) -> Outcome {
    let mib = (paging_frames as usize * PAGE_SIZE as usize).div_ceil(1 << 20);
    let pusher = spawn_code(|| {
        let mut arg = [0u8; 8];
        let arg = format_decimal(mib, &mut arg);
        let error = user::execve("memhog", arg);
        say!("CHECK FAILED: execve(memhog) failed: {error}");
        Err(Failed)
    })?;
    expect_exit(pusher, 0, "memhog, which pushed the parent out")
}

/// `n` in decimal, in `buf`.
fn format_decimal(mut n: usize, buf: &mut [u8; 8]) -> &str {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    core::str::from_utf8(&buf[i..]).unwrap_or("0")
}

/// swap-fork: fork while most of the parent is swapped out; parent and child each write
/// their own pattern over everything and each reads back only its own.
pub fn fork_swapped() -> Outcome {
    let info = swap_machine()?;
    // Three quarters of RAM: after the fork each side writes its own copy, so together
    // they need one and a half times the RAM.
    let pages = 3 * info.paging_frames as usize / 4;
    let region = grow_break(pages * PAGE_SIZE as usize).or_fail("brk")?;
    fill(&region, 1);
    push_out(info.paging_frames)?;
    let swapped = meminfo().or_fail("meminfo")?.task_swapped;
    say!("{swapped} of the parent's {pages} pages are swapped out before the fork");
    check!(swapped > 0, "nothing of the parent was swapped out");
    let child = spawn(|| {
        verify(&region, 1, "child before writing")?;
        fill(&region, 2);
        user::sleep(5);
        verify(&region, 2, "child")?;
        Ok(())
    })?;
    fill(&region, 3);
    verify(&region, 3, "parent")?;
    expect_exit(child, 0, "the child that wrote its own copy")?;
    verify(&region, 3, "parent after the child exited")?;
    say!("parent and child each read only their own data");
    Ok(())
}

/// swap-exit-frees: a child whose pages are largely swapped out exits; every slot and
/// every frame comes back.
pub fn exit_frees_slots() -> Outcome {
    let info = swap_machine()?;
    let child = spawn(|| {
        let region =
            grow_break(3 * info.paging_frames as usize / 2 * PAGE_SIZE as usize).or_fail("brk")?;
        fill(&region, 7);
        let now = meminfo().or_fail("meminfo")?;
        say!(
            "child: {} pages swapped out, {} slots free",
            now.task_swapped,
            now.swap_free
        );
        check!(now.task_swapped > 0, "the child has nothing swapped out");
        Ok(())
    })?;
    expect_exit(child, 0, "the child")?;
    // The parent's own pages may have been dropped or swapped out meanwhile: count what
    // it holds on each side of the comparison.
    let after = meminfo().or_fail("meminfo")?;
    check_eq!(
        after.swap_free + after.task_swapped,
        info.swap_free + info.task_swapped,
        "free swap slots (plus the parent's own) after the child exited"
    );
    check_eq!(
        after.free_frames + after.task_pages + after.task_page_tables,
        info.free_frames + info.task_pages + info.task_page_tables,
        "free frames (plus the parent's own) after the child exited"
    );
    say!(
        "every slot and frame the child used is back ({} slots free, {} frames free)",
        after.swap_free,
        after.free_frames
    );
    Ok(())
}

/// swap-io-errors: a disk that refuses writes leaves a task that needs memory to oom();
/// a disk that refuses one read kills the task whose page it was. The parent's data
/// (partly on the disk) survives both.
pub fn io_errors() -> Outcome {
    let info = swap_machine()?;
    let mine = grow_break(info.paging_frames as usize / 4 * PAGE_SIZE as usize).or_fail("brk")?;
    fill(&mine, 11);

    let writer = spawn(|| {
        debug(debug_op::SWAP_FAULTS, swap_fault::FAIL_WRITES);
        let region =
            grow_break(2 * info.paging_frames as usize * PAGE_SIZE as usize).or_fail("brk")?;
        fill(&region, 12);
        say!("CHECK FAILED: filled twice the RAM with every swap write failing");
        Err(Failed)
    })?;
    expect_killed(
        writer,
        signal::SIGSEGV,
        "the task that needed memory while writes failed",
    )?;
    debug(debug_op::SWAP_FAULTS, 0);
    verify(&mine, 11, "parent after the write failures")?;

    let reader = spawn_code(|| {
        let region =
            grow_break(3 * info.paging_frames as usize / 2 * PAGE_SIZE as usize).or_fail("brk")?;
        fill(&region, 13);
        check!(
            meminfo().or_fail("meminfo")?.task_swapped > 0,
            "nothing swapped out"
        );
        // One read fails; this task's next swap-in is that read.
        debug(
            debug_op::SWAP_FAULTS,
            swap_fault::FAIL_READS | swap_fault::ONCE,
        );
        verify(&region, 13, "reader")?;
        say!("CHECK FAILED: read every swapped page back while a read failed");
        Ok(1)
    })?;
    expect_killed(
        reader,
        signal::SIGSEGV,
        "the task whose page could not be read back",
    )?;
    verify(&mine, 11, "parent after the read failure")?;
    say!("the failing task died; the parent's data is intact");
    Ok(())
}

/// swap-full: with a swap device smaller than the workload, the task that needs more is
/// killed by oom(); the others keep their data and every slot comes back.
pub fn full_device() -> Outcome {
    let info = swap_machine()?;
    let mine = grow_break(64 * PAGE_SIZE as usize).or_fail("brk")?;
    fill(&mine, 21);
    let hog = spawn(|| {
        let pages = (info.paging_frames + info.swap_slots) as usize + 64;
        let region = grow_break(pages * PAGE_SIZE as usize).or_fail("brk")?;
        fill(&region, 22);
        say!("CHECK FAILED: filled more than RAM and swap together");
        Err(Failed)
    })?;
    expect_killed(hog, signal::SIGSEGV, "the task that outgrew RAM and swap")?;
    verify(&mine, 21, "parent")?;
    let after = meminfo().or_fail("meminfo")?;
    check_eq!(
        after.swap_free + after.task_swapped,
        info.swap_free + info.task_swapped,
        "swap slots (plus the parent's own) after the hog died"
    );
    say!("oom killed the hog; {} slots free again", after.swap_free);
    Ok(())
}

/// Timer ticks per second (the kernel's PIT rate).
const HZ: u32 = 100;

/// Ticks since boot.
fn ticks() -> u32 {
    debug(debug_op::TICKS, 0) as u32
}

/// What one benchmark phase measured.
struct Phase {
    pages: usize,
    ticks: u32,
    out: u32,
    back: u32,
    bytes: u32,
}

/// Writes `pages` fresh pages, reads them back (checked), and measures.
fn measure(pages: usize, seed: u32) -> Result<Phase, Failed> {
    let region = grow_break(pages * PAGE_SIZE as usize).or_fail("brk")?;
    let (out0, back0, bytes0) = (swap_stat(0), swap_stat(2), swap_stat(3));
    let start = ticks();
    let written = fill(&region, seed);
    let read = verify(&region, seed, "benchmark")?;
    check_eq!(read, written, "benchmark checksum");
    Ok(Phase {
        pages,
        ticks: (ticks() - start).max(1),
        out: swap_stat(0) - out0,
        back: swap_stat(2) - back0,
        bytes: swap_stat(3).wrapping_sub(bytes0),
    })
}

/// swap-bench: the throughput of a workload that fits in RAM (the reference: demand-zero
/// faults and plain memory traffic) beside one of twice the RAM (every page goes out to
/// the disk and comes back). Prints `BENCH` lines that scripts/bench-swap collects.
pub fn bench() -> Outcome {
    let info = swap_machine()?;
    // Each phase runs in a child of its own, so the second starts from the same state.
    let phases: [(&str, usize); 2] = [
        ("in-ram", info.paging_frames as usize / 2),
        ("twice-ram", 2 * info.paging_frames as usize),
    ];
    for (name, pages) in phases {
        let child = spawn(|| {
            let p = measure(pages, 0xbe4c)?;
            let moved = p.out + p.back;
            say!(
                "BENCH phase={name} pages={} ticks={} pages_per_s={} out={} in={} out_per_s={} in_per_s={} disk_bytes={} bytes_per_page_moved={}",
                p.pages,
                p.ticks,
                // Each page is written once and read once.
                2 * p.pages as u64 * u64::from(HZ) / u64::from(p.ticks),
                p.out,
                p.back,
                u64::from(p.out) * u64::from(HZ) / u64::from(p.ticks),
                u64::from(p.back) * u64::from(HZ) / u64::from(p.ticks),
                p.bytes,
                p.bytes.checked_div(moved).unwrap_or(0)
            );
            Ok(())
        })?;
        expect_exit(child, 0, name)?;
    }
    Ok(())
}

/// swap-syscall-read-error: a system call writes into a page of the task that is on the
/// disk, and the read that would bring it back fails. The task is killed, as when its own
/// access hits the same failure (the pointer is good: not EFAULT).
pub fn syscall_read_error() -> Outcome {
    let info = swap_machine()?;
    let child = spawn_code(|| {
        let region =
            grow_break(3 * info.paging_frames as usize / 2 * PAGE_SIZE as usize).or_fail("brk")?;
        fill(&region, 31);
        let swapped = (0..region.pages()).find(|&page| {
            pageinfo(region.page_addr(page))
                .is_ok_and(|p| p.pte != 0 && p.flags & page_flags::PRESENT == 0)
        });
        let Some(page) = swapped else {
            say!("CHECK FAILED: no page of the region is on the disk");
            return Err(Failed);
        };
        say!("page {page} of the region is on the disk; its next read fails");
        debug(
            debug_op::SWAP_FAULTS,
            swap_fault::FAIL_READS | swap_fault::ONCE,
        );
        let ret = debug(debug_op::KERNEL_WRITE, region.page_addr(page) as u32);
        say!("CHECK FAILED: the kernel's store into the lost page returned {ret}");
        Ok(1)
    })?;
    expect_killed(
        child,
        signal::SIGSEGV,
        "the task whose page the kernel could not read back",
    )?;
    say!("the task died of SIGSEGV, as a failed swap read in user mode kills it");
    Ok(())
}

/// swap-compat-lost-write (compat=D19): 0.12's `try_to_swap_out` points the entry at the
/// slot before it writes the page, and never learns that the write failed: while writes
/// fail, dirty pages are "swapped out" all the same, and what comes back from their
/// slots is not what was written. (The kernel's default keeps such a page in memory,
/// and the task that needs memory dies in oom(): swap-io-errors.)
///
/// The writes fail only for a window of [`LOST_WINDOW`] evictions, well inside the
/// workload: the clock hand is then among the workload's oldest pages, so the pages lost
/// are the workload's, never a stack page of this task or of its parent.
pub fn compat_lost_write() -> Outcome {
    let info = swap_machine()?;
    let frames = info.paging_frames as usize;
    let child = spawn_code(|| {
        let region = grow_break((3 * frames / 2) * PAGE_SIZE as usize).or_fail("brk")?;
        let window = frames + LOST_WINDOW_START..frames + LOST_WINDOW_START + LOST_WINDOW;
        let fill_pages = |pages: core::ops::Range<usize>| {
            for page in pages {
                for word in 0..WORDS {
                    region.write(
                        page * PAGE_SIZE as usize + word * 4,
                        pattern(41, page, word),
                    );
                }
            }
        };
        fill_pages(0..window.start);
        debug(debug_op::SWAP_FAULTS, swap_fault::FAIL_WRITES);
        fill_pages(window.clone());
        debug(debug_op::SWAP_FAULTS, 0);
        fill_pages(window.end..region.pages());
        let lost: usize = (0..region.pages())
            .filter(|&page| region.read(page * PAGE_SIZE as usize) != pattern(41, page, 0))
            .count();
        say!(
            "{lost} of {} pages came back from the disk without what was written \
             (the swap writes failed while {LOST_WINDOW} pages were written)",
            region.pages()
        );
        Ok(if lost > 0 { 0 } else { 1 })
    })?;
    expect_exit(
        child,
        0,
        "the task whose pages went to the disk while its writes failed",
    )?;
    say!("the failed writes lost the pages silently, as 0.12's order does (D19)");
    Ok(())
}

/// Evictions whose write fails in swap-compat-lost-write.
const LOST_WINDOW: usize = 64;
/// Pages past a memory's worth where that window starts.
const LOST_WINDOW_START: usize = 512;
