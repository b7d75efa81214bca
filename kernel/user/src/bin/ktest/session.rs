//! Workloads for the scripted gdb sessions (`gdb/sessions/`): alone they pass quietly;
//! a session injects failures from gdb while they run, and they check from user space
//! that each failure was handled (an error, or a child killed by oom) and nothing leaked.

use user::abi::{errno, signal};
use user::check::{spawn_code, wait_child, Failed, OrFail, Outcome, PageView, Status};
use user::mem::{grow_break, touch_stack, Region, PAGE_SIZE};
use user::{check, check_eq, fork, free_frames, say, Forked};

use crate::util::wait_until;
use crate::STACK_PAGES;

/// The most fork attempts fork-retry makes (each failed one was one more allocation).
const MAX_TRIES: u32 = 64;
/// Pages of the buffer cow-race shares between parent and child.
const RACE_PAGES: usize = 8;
/// Word 0 of race page `i` before the fork, and what each side writes there.
const fn race_initial(page: usize) -> u32 {
    0x5e55_0000 | page as u32
}
const fn race_parent(page: usize) -> u32 {
    0x9a9a_0000 | page as u32
}
const fn race_child(page: usize) -> u32 {
    0xc4c4_0000 | page as u32
}

/// fork-retry: forks until fork succeeds. Alone, the first fork does; the session
/// failnth_fork makes attempt N fail at its Nth allocation. Each failure must be EAGAIN
/// (0.11 `copy_process`) and leave the free-frame count where it was.
pub fn fork_retry() -> Outcome {
    // Three page tables' worth of address space, so that fork allocates several tables.
    let region = grow_break(9 << 20).or_fail("brk")?;
    for offset in [0, 4 << 20, 8 << 20] {
        region.write(offset, 1);
    }
    touch_stack(STACK_PAGES);
    let baseline = free_frames().or_fail("free frames")?;
    for attempt in 1..=MAX_TRIES {
        match fork() {
            Ok(Forked::Child) => user::exit(0),
            Ok(Forked::Parent(child)) => {
                check_eq!(
                    wait_child(child)?,
                    Status::exited(0),
                    "the child of the fork that succeeded"
                );
                say!("fork succeeded at attempt {attempt}");
                return Ok(());
            }
            Err(e) => {
                check!(
                    e.0 == errno::EAGAIN,
                    "fork attempt {attempt} (0.11 copy_process returns EAGAIN): {e}"
                );
                check_eq!(
                    free_frames().or_fail("free frames")?,
                    baseline,
                    "free frames after failed fork {attempt}"
                );
                say!("attempt {attempt}: fork returned {e}; trying again");
            }
        }
    }
    say!("CHECK FAILED: fork never succeeded in {MAX_TRIES} attempts");
    Err(Failed)
}

/// cow-race: parent and child write their own word into each page of a buffer they share
/// copy-on-write, in turn: the parent writes the even pages first, the child the odd
/// ones, and before a page the other side writes first each waits until that side's copy
/// has left the shared frame to it alone (count 1). Alone, both end with their own words;
/// the session cow_copy_fails makes the child's copy of page 1 fail: the child is killed
/// by oom() (SIGSEGV; its frames go, so the parent's waits end) and the parent must still
/// read its own word in every page.
pub fn cow_race() -> Outcome {
    touch_stack(STACK_PAGES);
    let region = grow_break(RACE_PAGES * PAGE_SIZE).or_fail("brk")?;
    for page in 0..RACE_PAGES {
        region.write(page * PAGE_SIZE, race_initial(page));
    }
    let child = spawn_code(|| {
        touch_stack(STACK_PAGES);
        race_writes(&region, true)?;
        Ok(0)
    })?;
    touch_stack(STACK_PAGES);
    race_writes(&region, false)?;
    let status = wait_child(child)?;
    if status == Status::killed(signal::SIGSEGV) {
        say!("the child was killed (out of memory); the parent's {RACE_PAGES} pages are intact");
    } else {
        check_eq!(status, Status::exited(0), "the child");
        say!("both sides wrote their own words into all {RACE_PAGES} pages");
    }
    Ok(())
}

/// One side of cow-race: writes its word into every page in turn, then reads them back.
fn race_writes(region: &Region, child: bool) -> Outcome {
    let (who, word): (&str, fn(usize) -> u32) = if child {
        ("child", race_child)
    } else {
        ("parent", race_parent)
    };
    for page in 0..RACE_PAGES {
        if (page % 2 == 1) != child {
            let addr = region.page_addr(page);
            wait_until(
                format_args!("{who}: the other side writes race page {page} first"),
                || Ok(PageView::of(addr)?.count == 1),
            )?;
        }
        region.write(page * PAGE_SIZE, word(page));
    }
    for page in 0..RACE_PAGES {
        check_eq!(
            region.read(page * PAGE_SIZE),
            word(page),
            "{who}: word 0 of race page {page}"
        );
    }
    Ok(())
}
