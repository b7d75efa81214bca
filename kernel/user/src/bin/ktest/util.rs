//! Helpers of the ktest scenarios: bounded waiting, reaping, checkmm, buffer contents.

use core::fmt;

use user::abi::signal;
use user::check::{Failed, Hex, Outcome, Status};
use user::mem::WORDS_PER_PAGE;
use user::{check, check_eq, checkmm, say, sleep, waitpid, Errno};

use crate::BUFFER;

/// Ticks a task sleeps so that another one, runnable, does its checks first.
pub const SETTLE_TICKS: u32 = 10;
/// The longest a scenario waits for another task to reach a point (10 s at 100 Hz).
pub const WAIT_TIMEOUT_TICKS: u32 = 1000;
/// The pid of task 1, which adopts orphans.
pub const INIT_PID: i32 = 1;

/// Sleeps a tick at a time until `done` says so, for at most [`WAIT_TIMEOUT_TICKS`]
/// (sleeping rather than yielding lets the awaited task run at once).
pub fn wait_until(
    what: fmt::Arguments<'_>,
    mut done: impl FnMut() -> Result<bool, Failed>,
) -> Outcome {
    for _ in 0..WAIT_TIMEOUT_TICKS {
        if done()? {
            return Ok(());
        }
        sleep(1);
    }
    check!(false, "{what} (timed out after {WAIT_TIMEOUT_TICKS} ticks)");
    Ok(())
}

/// What statuses [`reap_children`] accepts.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum ReapPolicy {
    /// Every child must have exited with 0.
    MustExitZero,
    /// Children may also have been killed (SIGKILL by us, SIGSEGV by oom).
    MayBeKilled,
}

/// Waits for every child left until there is none (`ECHILD`), checking each status.
pub fn reap_children(policy: ReapPolicy) -> Outcome {
    let mut result = Ok(());
    loop {
        match waitpid(-1, 0) {
            Ok((pid, status)) => {
                let status = Status(status);
                let accepted = status == Status::exited(0)
                    || (policy == ReapPolicy::MayBeKilled
                        && matches!(status.signal(), Some(signal::SIGKILL | signal::SIGSEGV)));
                if accepted {
                    say!("reaped task {pid}: {status}");
                } else {
                    say!(
                        "CHECK FAILED: task {pid} reaped (expected exited with 0, found {status})"
                    );
                    result = Err(Failed);
                }
            }
            Err(Errno::ECHILD) => return result,
            Err(error) => {
                say!("CHECK FAILED: waitpid(-1) (expected a child or ECHILD, found {error})");
                return Err(Failed);
            }
        }
    }
}

/// Runs the kernel's consistency check and requires no mismatch.
pub fn check_mm() -> Outcome {
    let mismatches = checkmm().map_err(|error| {
        say!("CHECK FAILED: checkmm (expected success, found {error})");
        Failed
    })?;
    check_eq!(mismatches, 0, "checkmm() mismatches");
    Ok(())
}

/// Checks that page `page` of [`BUFFER`] holds `first` in word 0 and `rest` in every
/// other word.
pub fn expect_buffer(page: usize, first: u32, rest: u32, who: &str) -> Outcome {
    check_eq!(
        Hex(BUFFER.read(page, 0)),
        Hex(first),
        "{who}: word 0 of buffer page {page}"
    );
    let wrong = (1..WORDS_PER_PAGE).find(|&index| BUFFER.read(page, index) != rest);
    if let Some(index) = wrong {
        check_eq!(
            Hex(BUFFER.read(page, index)),
            Hex(rest),
            "{who}: word {index} of buffer page {page}"
        );
    }
    Ok(())
}
