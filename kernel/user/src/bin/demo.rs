//! `demo`: a narrated tour of the Linux 0.11 memory management (copy-on-write, demand-zero, sharing, faults, oom), the default init.
// Built for i586-unknown-linux-gnu only; on any other target (the host's `cargo clippy
// --workspace`) the crate is empty (README "Tests": lints), as its 32-bit asm cannot build there.
#![cfg_attr(target_arch = "x86", no_std)]
#![no_main]
#![cfg(target_arch = "x86")]

use user::abi::{signal, MemInfo};
use user::check::{expect_exit, expect_killed, spawn, CowDelta, Failed, OrFail, Outcome, PageView};
use user::mem::{grow_break, peek, prefault_image, touch_stack, PageBuffer, MIB};
use user::{check, check_eq, execve, faults, free_frames, meminfo, say, sleep};

user::entry!(main);

/// Stack pages preloaded at start, so the demo's own footprint stays put.
const STACK_PAGES: usize = 8;
/// The shared variable's value before the fork, and what each side writes.
const INITIAL: u32 = 1000;
const CHILD_VALUE: u32 = 2000;
const PARENT_VALUE: u32 = 3000;
/// Ticks the parent waits so the child's lines come first.
const TURN_TICKS: u32 = 10;
/// Megabytes the demand-zero step touches.
const DEMAND_MIB: usize = 4;
/// An offset beyond the 64 MiB segment.
const OUTSIDE_SEGMENT: usize = 0x0500_0000;

/// The variable parent and child both write: one page of `.data`, alone on its page
/// so the page-table facts printed are about it only.
static VARIABLE: PageBuffer<1> = PageBuffer::filled(INITIAL);

fn show(who: &str, view: &PageView) {
    say!(
        "  {who}: frame {:?}, mapped {} time(s), {}",
        view.frame,
        view.count,
        if view.writable {
            "writable"
        } else {
            "read-only"
        }
    );
}

fn step_cow() -> Outcome {
    user::println!();
    say!("[1] fork and copy-on-write");
    let addr = VARIABLE.page_addr(0);
    let before = PageView::of(addr)?;
    say!(
        "  The variable at {addr:#x} holds {} before fork:",
        VARIABLE.read(0, 0)
    );
    show("parent", &before);
    let child = spawn(|| {
        let shared = PageView::of(addr)?;
        say!("  After fork the child sees the same frame, now read-only and counted twice:");
        show("child", &shared);
        check_eq!(
            shared,
            PageView::shared(before.frame, 2),
            "child: variable page right after fork"
        );
        touch_stack(STACK_PAGES);
        let start = faults().or_fail("meminfo")?;
        VARIABLE.write(0, 0, CHILD_VALUE);
        let end = faults().or_fail("meminfo")?;
        let own = PageView::of(addr)?;
        say!(
            "  The child writes {CHILD_VALUE}: a write-protect fault copies the page (do_wp_page):"
        );
        show("child", &own);
        check_eq!(
            CowDelta::between(&start, &end),
            CowDelta::COPY,
            "child: faults of its write"
        );
        check!(
            own.frame != before.frame,
            "child: still on frame {:?} after writing",
            before.frame
        );
        say!("  child reads {} (its own copy)", VARIABLE.read(0, 0));
        Ok(())
    })?;
    sleep(TURN_TICKS);
    expect_exit(child, 0, "the child")?;
    touch_stack(STACK_PAGES);
    let alone = PageView::of(addr)?;
    say!("  The child has exited; the parent's frame is counted once again, still read-only:");
    show("parent", &alone);
    let start = faults().or_fail("meminfo")?;
    VARIABLE.write(0, 0, PARENT_VALUE);
    let end = faults().or_fail("meminfo")?;
    let own = PageView::of(addr)?;
    say!(
        "  The parent writes {PARENT_VALUE}: count 1, so the page is only made writable, no copy:"
    );
    show("parent", &own);
    check_eq!(
        CowDelta::between(&start, &end),
        CowDelta::MADE_WRITABLE,
        "parent: faults of its write"
    );
    check_eq!(
        own,
        PageView::private(before.frame),
        "parent: variable page after its write"
    );
    say!(
        "  parent reads {} -- each side only ever saw its own value",
        VARIABLE.read(0, 0)
    );
    Ok(())
}

/// Free frames plus the demo's own pages and page tables. With a swap disk the kernel
/// may evict the demo's own pages while a child needs memory (a clean page is dropped, a
/// dirty one written out: either way its frame becomes free), so the frames a child
/// borrowed are compared through this sum, which eviction leaves unchanged.
fn accounted() -> Result<u32, Failed> {
    let info = meminfo().or_fail("meminfo")?;
    Ok(info.free_frames + info.task_pages + info.task_page_tables)
}

fn step_demand_zero(baseline: u32) -> Outcome {
    user::println!();
    say!("[2] demand-zero: a child grows its break by {DEMAND_MIB} MiB and touches it");
    let child = spawn(|| {
        let start = faults().or_fail("meminfo")?;
        let region = grow_break(DEMAND_MIB * MIB).or_fail("brk")?;
        say!("  brk only moved a limit: no page is there until touched");
        region.touch_pages(1);
        let end = faults().or_fail("meminfo")?;
        let free = free_frames().or_fail("debug(FREE_FRAMES)")?;
        let zero_faults = end.demand_zero - start.demand_zero;
        say!(
            "  {} pages touched: {zero_faults} demand-zero faults, {free} frames free now",
            region.pages()
        );
        check!(
            zero_faults >= region.pages() as u32,
            "only {zero_faults} demand-zero faults"
        );
        Ok(())
    })?;
    expect_exit(child, 0, "the demand-zero child")?;
    let free = free_frames().or_fail("debug(FREE_FRAMES)")?;
    say!("  The child exited: free frames back to {free}");
    check_eq!(
        accounted()?,
        baseline,
        "free frames + the demo's own after the demand-zero child"
    );
    Ok(())
}

fn spawn_hello(arg: &'static str) -> Result<i32, Failed> {
    spawn(|| {
        let error = execve("hello", arg);
        say!("execve(hello) failed: {error}");
        Err(Failed)
    })
}

fn step_sharing() -> Outcome {
    user::println!();
    say!("[3] two tasks running the same program share its pages (share_page)");
    say!("  Notice the second hello's 'shared' count: pages taken from the first, not loaded");
    let first = spawn_hello("hold")?;
    sleep(TURN_TICKS);
    let second = spawn_hello("report-shared 8")?;
    expect_exit(second, 0, "the second hello")?;
    expect_exit(first, 0, "the first hello")
}

fn step_bad_access() -> Outcome {
    user::println!();
    say!("[4] a child reads {OUTSIDE_SEGMENT:#x}, beyond its 64 MiB segment");
    let child = spawn(|| {
        // SAFETY: meant to fault: the segment limit raises #GP and the kernel kills us.
        let word = unsafe { peek(OUTSIDE_SEGMENT) };
        say!("  the read returned {word:#x}: it should have been stopped");
        Err(Failed)
    })?;
    expect_killed(
        child,
        signal::SIGSEGV,
        "the child reading beyond its segment",
    )?;
    say!("  The kernel killed it with SIGSEGV; the demo goes on");
    Ok(())
}

/// What one page written to the swap disk costs under TCG, in microseconds: a 4 KiB PIO
/// transfer on QEMU's emulated IDE disk (measured by scripts/bench-swap; see the README).
const SWAP_PAGE_US: u32 = 700;

/// Says why memhog slows down at "0 frames free" when there is a swap disk: it is
/// swapping, and each page costs a transfer on the emulated disk.
fn explain_swap(slots: u32) {
    let tenths_of_s = slots * SWAP_PAGE_US / 100_000;
    say!("  This run has a swap disk ({slots} slots of 4 KiB). When RAM is full, the kernel makes room");
    say!("  by writing memhog's older pages out to it (swap_out; a touch would read one back,");
    say!("  swap_in), so memhog goes on until the disk is full too, and only then comes oom().");
    say!(
        "  Each page out is a 4 KiB transfer on QEMU's emulated PIO disk, about {}.{} ms: the",
        SWAP_PAGE_US / 1000,
        SWAP_PAGE_US % 1000 / 100
    );
    say!(
        "  {slots} slots are {}.{} s of disk transfers alone, so this step takes seconds (under one",
        tenths_of_s / 10,
        tenths_of_s % 10
    );
    say!("  without swap: scripts/run --no-swap).");
}

fn step_oom(baseline: u32) -> Outcome {
    user::println!();
    say!("[5] a child runs memhog, which touches memory until there is none left");
    let before = meminfo().or_fail("meminfo")?;
    let swap = before.swap_slots > 0;
    if swap {
        explain_swap(before.swap_slots);
    }
    let child = spawn(|| {
        let error = execve("memhog", "");
        say!("execve(memhog) failed: {error}");
        Err(Failed)
    })?;
    expect_killed(child, signal::SIGSEGV, "memhog")?;
    let free = free_frames().or_fail("debug(FREE_FRAMES)")?;
    let now = accounted()?;
    say!(
        "  oom() killed memhog with SIGSEGV{}; free frames {free}; with the demo's own, {now} (baseline {baseline})",
        if swap {
            " once RAM and the swap disk were both full"
        } else {
            ""
        }
    );
    if swap {
        say!("  The pause before the kill: with the disk full, each page memhog needed made swap_out");
        say!("  search memory for a clean page to drop, and those came straight back, until the");
        say!("  thrash guard gave up (D20 in kernel/docs/deviations.md): then oom().");
        let after = meminfo().or_fail("meminfo")?;
        let back = after.faults.swapped_in - before.faults.swapped_in;
        let out = after.task_swapped;
        if back + out > 0 {
            say!("  swap_out took pages of the demo's own too: {back} came back in as it touched them (swap_in), {out} are still on the disk");
        }
    }
    check_eq!(now, baseline, "free frames + the demo's own after memhog");
    Ok(())
}

fn main() -> i32 {
    // Load every page of the demo and some stack now, so its own footprint does not
    // change while it compares free-frame counts.
    prefault_image();
    touch_stack(STACK_PAGES);
    let info: MemInfo = match meminfo() {
        Ok(info) => info,
        Err(error) => {
            say!("meminfo failed: {error}");
            return 1;
        }
    };
    let baseline = info.free_frames + info.task_pages + info.task_page_tables;
    say!(
        "Linux 0.11 memory management, live: {} frames of 4 KiB for paging",
        info.paging_frames
    );
    say!(
        "free frames at start: {} (with the demo's own {} pages and {} page tables: {baseline})",
        info.free_frames,
        info.task_pages,
        info.task_page_tables
    );

    let steps: [(&str, Outcome); 5] = [
        ("copy-on-write fork", step_cow()),
        ("demand-zero pages", step_demand_zero(baseline)),
        ("page sharing between two hellos", step_sharing()),
        ("bad access killed", step_bad_access()),
        ("oom kill and recovery", step_oom(baseline)),
    ];

    user::println!();
    say!("[6] summary");
    let free = accounted().unwrap_or(0);
    let mut ok = true;
    for (name, outcome) in &steps {
        say!(
            "  {name}: {}",
            if outcome.is_ok() {
                "as expected"
            } else {
                "FAILED"
            }
        );
        ok &= outcome.is_ok();
    }
    say!("  free frames + the demo's own: {baseline} at start, {free} now");
    if free != baseline {
        say!("  CHECK FAILED: free frames + the demo's own at the end (expected {baseline}, found {free})");
        ok = false;
    }
    say!(
        "{}",
        if ok {
            "everything behaved"
        } else {
            "something did not behave"
        }
    );
    if ok {
        0
    } else {
        1
    }
}
