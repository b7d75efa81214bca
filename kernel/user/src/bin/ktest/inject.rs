//! Failure-injection scenarios: Linux's fail-nth loop over a system call, proving every
//! allocation it makes fails cleanly (an error or an oom kill, never a leak).

use user::abi::{debug_op, errno, signal};
use user::check::{spawn_code, wait_child, Failed, OrFail, Outcome, Status};
use user::mem::grow_break;
use user::{check, check_eq, checkmm, debug, fork, free_frames, say, Forked};

/// The most allocations a fork of this size can make (task page, page tables, ...).
const MAX_NTH: u32 = 64;

/// failnth-fork: N = 1, 2, ... until fork succeeds: the Nth allocation of the fork fails
/// (task page, then each page table copy_page_tables allocates); after each failure fork
/// returned an error, checkmm is clean and not a frame leaked.
pub fn failnth_fork() -> Outcome {
    // Three page tables' worth of address space, so copy_page_tables allocates several.
    let region = grow_break(9 << 20).or_fail("brk")?;
    for offset in [0, 4 << 20, 8 << 20] {
        region.write(offset, 1);
    }
    let baseline = free_frames().or_fail("free frames")?;
    for n in 1..=MAX_NTH {
        debug(debug_op::FAIL_NTH, n);
        match fork() {
            Ok(Forked::Child) => user::exit(0),
            Ok(Forked::Parent(child)) => {
                debug(debug_op::FAIL_NTH, 0);
                let status = wait_child(child)?;
                check_eq!(
                    status,
                    Status::exited(0),
                    "the child of the fork that succeeded"
                );
                say!(
                    "fork failed cleanly for N = 1..{} and succeeded at N = {n}",
                    n - 1
                );
                check!(
                    n > 2,
                    "fork made fewer allocations than a task page and page tables"
                );
                return Ok(());
            }
            Err(e) => {
                check!(
                    e.0 == errno::EAGAIN,
                    "fork with fail-nth {n} (0.11 copy_process returns EAGAIN): {e}"
                );
                check_eq!(
                    free_frames().or_fail("free frames")?,
                    baseline,
                    "free frames after failed fork {n}"
                );
                check_eq!(
                    checkmm().or_fail("checkmm")?,
                    0,
                    "checkmm after failed fork {n}"
                );
                say!("N = {n}: fork returned {e}; nothing leaked");
            }
        }
    }
    say!("CHECK FAILED: fork never succeeded within {MAX_NTH} injected failures");
    Err(Failed)
}

/// failnth-cow: a child's first write to a shared page fails its copy (fail-nth 1):
/// the child is killed by oom(), the parent's data and every frame survive.
pub fn failnth_cow() -> Outcome {
    let region = grow_break(4096).or_fail("brk")?;
    region.write(0, 0xAAAA);
    let baseline = free_frames().or_fail("free frames")?;
    let child = spawn_code(|| {
        debug(debug_op::FAIL_NTH, 1);
        region.write(0, 0xBBBB);
        say!("CHECK FAILED: the write's copy-on-write copy did not fail");
        Ok(1)
    })?;
    let status = wait_child(child)?;
    check_eq!(
        status,
        Status::killed(signal::SIGSEGV),
        "the child whose COW copy failed"
    );
    check_eq!(region.read(0), 0xAAAA, "the parent's word");
    check_eq!(
        free_frames().or_fail("free frames")?,
        baseline,
        "free frames"
    );
    check_eq!(checkmm().or_fail("checkmm")?, 0, "checkmm");
    say!("the child died in oom(); the parent's page and every frame are intact");
    Ok(())
}
