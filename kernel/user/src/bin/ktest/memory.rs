//! Memory-accounting scenarios: demand-zero pages, frames returned at exit, recovery from out-of-memory.

use core::fmt;

use user::abi::{signal, WNOHANG};
use user::check::{
    expect_exit, expect_killed, spawn, spawn_code, wait_child, CowDelta, Failed, OrFail, Outcome,
    PageView, Status,
};
use user::mem::{grow_break, page_align_down, stack_pointer, touch_stack, MIB, PAGE_SIZE};
use user::{
    check, check_eq, execve, exit, faults, fork, free_frames, getpid, getppid, kill, say, sleep,
    waitpid, Errno, Forked, Pid,
};

use crate::util::{reap_children, ReapPolicy};
use crate::STACK_PAGES;

/// Pages the deep-stack step uses below the current stack pointer.
const DEEP_STACK_PAGES: usize = 32;
/// Stack pages that may already be present below the current frame, besides the
/// [`STACK_PAGES`] ktest preloaded (frames of the callers, rounding).
const STACK_SLACK_PAGES: usize = 4;
/// Megabytes a child touches in exit-frees.
const EXIT_FREES_MIB: usize = 2;
/// The most children a fork storm makes (the kernel has 64 task slots).
const MAX_STORM_CHILDREN: usize = 64;
/// Ticks the storm master waits after each fork, so the child touches its memory
/// before the next one is made.
const STORM_PACE_TICKS: u32 = 2;
/// Ticks between a storm child's checks of whether its master is gone.
const STORM_POLL_TICKS: u32 = 5;
/// Exit code of a storm child whose break could not grow.
const STORM_CHILD_NO_BREAK: i32 = 3;

/// The word demand-zero writes at byte `offset` of its region.
const fn pattern(offset: usize) -> u32 {
    0x5a00_0000 ^ offset as u32
}

/// demand-zero: pages above the break and below the stack are mapped, zero-filled,
/// by the first access (0.11's `do_no_page` -> `get_empty_page`).
pub fn demand_zero() -> Outcome {
    let free_before = free_frames().or_fail("debug(FREE_FRAMES)")?;
    let before = faults().or_fail("meminfo")?;
    let region = grow_break(MIB).or_fail("brk(+1 MiB)")?;
    let pages = region.pages();
    say!(
        "break grown by 1 MiB at {:#x}: {pages} pages",
        region.start()
    );
    for page in [0, pages / 2, pages - 1] {
        let view = PageView::of(region.page_addr(page))?;
        check!(
            !view.present,
            "page {page} of the new break area is present before any access ({view:?})"
        );
    }

    // Reads: each first read of a page is a demand-zero fault.
    for page in 0..pages {
        let first = region.read(page * PAGE_SIZE);
        let last = region.read((page + 1) * PAGE_SIZE - 4);
        check!(
            first == 0 && last == 0,
            "page {page} reads {first:#x}/{last:#x}, not zero"
        );
    }
    let after_reads = faults().or_fail("meminfo")?;
    let zero_faults = after_reads.demand_zero - before.demand_zero;
    say!("read {pages} pages: all zero, {zero_faults} demand-zero faults");
    check!(
        zero_faults >= pages as u32,
        "demand-zero faults for {pages} pages read (expected at least {pages}, found {zero_faults})"
    );

    // Writes: the pages are present and writable, no fault at all.
    for offset in (0..region.len()).step_by(4) {
        region.write(offset, pattern(offset));
    }
    if let Some(offset) = (0..region.len())
        .step_by(4)
        .find(|&offset| region.read(offset) != pattern(offset))
    {
        check_eq!(
            region.read(offset),
            pattern(offset),
            "word at offset {offset:#x} of the break area"
        );
    }
    let after_writes = faults().or_fail("meminfo")?;
    check_eq!(
        after_writes.demand_zero,
        after_reads.demand_zero,
        "demand-zero faults while writing pages already present"
    );
    check_eq!(
        CowDelta::between(&after_reads, &after_writes),
        CowDelta {
            copied: 0,
            made_writable: 0
        },
        "copy-on-write faults while writing fresh zero pages"
    );
    let free_after = free_frames().or_fail("debug(FREE_FRAMES)")?;
    let used = free_before.saturating_sub(free_after);
    say!("pattern written and verified; free frames {free_before} -> {free_after}");
    check!(
        used >= pages as u32,
        "frames used by {pages} touched pages (expected at least {pages}, found {used})"
    );

    // Deep stack: pages below what the program used so far are demand-zero too.
    let probe = page_align_down(stack_pointer()) - (STACK_PAGES + STACK_SLACK_PAGES) * PAGE_SIZE;
    let view = PageView::of(probe)?;
    check!(
        !view.present,
        "stack page {probe:#x} is present before the deep-stack touch ({view:?})"
    );
    let before_stack = faults().or_fail("meminfo")?;
    touch_stack(DEEP_STACK_PAGES);
    let after_stack = faults().or_fail("meminfo")?;
    let stack_faults = after_stack.demand_zero - before_stack.demand_zero;
    let expected = (DEEP_STACK_PAGES - STACK_PAGES - STACK_SLACK_PAGES) as u32;
    say!("{DEEP_STACK_PAGES} pages of stack used: {stack_faults} demand-zero faults");
    check!(
        stack_faults >= expected,
        "demand-zero faults of the deep stack (expected at least {expected}, found {stack_faults})"
    );
    let view = PageView::of(probe)?;
    check_eq!(
        view,
        PageView::private(view.frame),
        "stack page {probe:#x} after the deep-stack touch"
    );
    Ok(())
}

/// exit-frees: a child touches 2 MiB and exits; every frame it used comes back.
pub fn exit_frees() -> Outcome {
    let before = free_frames().or_fail("debug(FREE_FRAMES)")?;
    say!("{before} frames free; a child touches {EXIT_FREES_MIB} MiB and exits");
    let child = spawn(|| {
        let region = grow_break(EXIT_FREES_MIB * MIB).or_fail("brk")?;
        region.touch_pages(getpid() as u32);
        let free = free_frames().or_fail("debug(FREE_FRAMES)")?;
        let pages = region.pages() as u32;
        check!(
            before.saturating_sub(free) >= pages,
            "frames in use after touching {pages} pages (expected at least {pages} fewer than {before} free, found {free})"
        );
        say!("touched {pages} pages, {free} frames free; exiting");
        Ok(())
    })?;
    expect_exit(child, 0, "the child")?;
    let after = free_frames().or_fail("debug(FREE_FRAMES)")?;
    check_eq!(after, before, "free frames after the child exited");
    say!("free frames back to {after}");
    Ok(())
}

/// How a fork storm stopped.
#[derive(Clone, Copy)]
enum StormEnd {
    /// fork failed with EAGAIN: no memory for the child or no task slot (0.11 says EAGAIN
    /// for both).
    ForkRefused,
    /// oom() killed one of the children.
    ChildKilled,
    /// The storm reached its own limit first.
    Limit,
}

impl fmt::Display for StormEnd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::ForkRefused => "fork failed with EAGAIN (no memory, or the task table full)",
            Self::ChildKilled => "the kernel killed a child (out of memory)",
            Self::Limit => "the storm's own limit was reached",
        })
    }
}

/// A storm child: touches 1 MiB, then sleeps until killed or until its master is gone.
fn storm_child(master: Pid) -> ! {
    match grow_break(MIB) {
        Ok(region) => region.touch_pages(getpid() as u32),
        Err(_) => exit(STORM_CHILD_NO_BREAK),
    }
    // Orphaned (the master was killed by oom): nobody will kill us, leave.
    while getppid() == master {
        sleep(STORM_POLL_TICKS);
    }
    exit(0)
}

/// The storm master: forks children that each hold 1 MiB until fork fails or a
/// child is killed, then kills and reaps them all.
fn storm_master() -> Result<i32, Failed> {
    let me = getpid();
    let mut children: [Option<Pid>; MAX_STORM_CHILDREN] = [None; MAX_STORM_CHILDREN];
    let mut made = 0;
    let end = loop {
        if made == MAX_STORM_CHILDREN {
            break StormEnd::Limit;
        }
        match waitpid(-1, WNOHANG) {
            // Nothing has ended yet (ECHILD before the first fork).
            Ok((0, _)) | Err(Errno::ECHILD) => {}
            Err(error) => {
                check!(
                    false,
                    "waitpid(-1, WNOHANG) (expected a status or none, found {error})"
                );
            }
            Ok((pid, status)) => {
                let status = Status(status);
                say!("storm child {pid}: {status}");
                children
                    .iter_mut()
                    .filter(|slot| **slot == Some(pid))
                    .for_each(|slot| *slot = None);
                check!(
                    status.signal().is_some(),
                    "storm child {pid} ended on its own ({status})"
                );
                break StormEnd::ChildKilled;
            }
        }
        match fork() {
            Ok(Forked::Child) => storm_child(me),
            Ok(Forked::Parent(pid)) => {
                children[made] = Some(pid);
                made += 1;
                sleep(STORM_PACE_TICKS);
            }
            Err(Errno::EAGAIN) => break StormEnd::ForkRefused,
            Err(error) => {
                check!(
                    false,
                    "fork in the storm (expected a child or EAGAIN, found {error})"
                );
            }
        }
    };
    say!(
        "storm ended after {made} children: {end}; free frames {}",
        free_frames().unwrap_or(0)
    );
    for pid in children.iter().flatten() {
        // A child oom killed meanwhile is a zombie: ESRCH or success are both fine.
        let _ = kill(*pid);
    }
    for pid in children.iter().flatten() {
        let status = wait_child(*pid)?;
        check!(
            status == Status::exited(0) || status.signal().is_some(),
            "storm child {pid} (expected killed or exited with 0, found {status})"
        );
    }
    Ok(0)
}

/// oom-recovery: memhog is killed by oom() and its frames come back; a fork storm
/// runs into EAGAIN or oom kills; afterwards every frame is back and fork works.
pub fn oom_recovery() -> Outcome {
    let baseline = free_frames().or_fail("debug(FREE_FRAMES)")?;
    say!("baseline: {baseline} free frames; a child execs memhog");
    let hog = spawn(|| {
        let error = execve("memhog", "");
        say!("CHECK FAILED: execve(memhog) (expected success, found {error})");
        Err(Failed)
    })?;
    expect_killed(hog, signal::SIGSEGV, "memhog (out of memory)")?;
    check_eq!(
        free_frames().or_fail("debug(FREE_FRAMES)")?,
        baseline,
        "free frames after memhog was killed"
    );
    say!("memhog was killed by oom; free frames back to {baseline}");

    say!("fork storm: children of 1 MiB each until memory or task slots run out");
    let master = spawn_code(storm_master)?;
    let status = wait_child(master)?;
    if status == Status::killed(signal::SIGSEGV) {
        say!("the storm master itself was killed by oom; its children leave on their own");
    } else {
        check_eq!(status, Status::exited(0), "the storm master");
    }
    reap_children(ReapPolicy::MayBeKilled)?;
    check_eq!(
        free_frames().or_fail("debug(FREE_FRAMES)")?,
        baseline,
        "free frames after the storm"
    );
    let child = spawn(|| Ok(()))?;
    expect_exit(child, 0, "a fork after the storm")?;
    check_eq!(
        free_frames().or_fail("debug(FREE_FRAMES)")?,
        baseline,
        "free frames after one more fork"
    );
    say!("free frames back to {baseline}; fork works again");
    Ok(())
}
