//! Test support shared by `ktest` and `demo`: checks that print `CHECK FAILED`, children, wait statuses, page views.
//!
//! A failed check prints `CHECK FAILED: <what> (expected X, found Y)` and returns
//! [`Failed`]; the message is already on the console, so callers only propagate it.

use core::fmt;

use abi::{page_flags, signal, wait_status, FaultCounts, PageInfo};

use crate::{exit, fork, pageinfo, say, waitpid, Errno, Forked, Pid};

/// A check failed (its message has been printed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Failed;

/// The result of a test step.
pub type Outcome = Result<(), Failed>;

/// Exit code of a child whose checks failed.
pub const CHILD_FAILED: i32 = 1;

/// Fails with `CHECK FAILED: <what>` unless `cond` holds.
#[macro_export]
macro_rules! check {
    ($cond:expr, $($what:tt)+) => {
        if !$cond {
            $crate::say!("CHECK FAILED: {}", format_args!($($what)+));
            return Err($crate::check::Failed);
        }
    };
}

/// Fails with `CHECK FAILED: <what> (expected X, found Y)` unless `found == expected`.
#[macro_export]
macro_rules! check_eq {
    ($found:expr, $expected:expr, $($what:tt)+) => {{
        let found = $found;
        let expected = $expected;
        if found != expected {
            $crate::say!(
                "CHECK FAILED: {} (expected {:?}, found {:?})",
                format_args!($($what)+),
                expected,
                found
            );
            return Err($crate::check::Failed);
        }
    }};
}

/// Turns a system-call error into a failed check.
pub trait OrFail<T> {
    /// `Ok` passes through; `Err(e)` prints `CHECK FAILED: <what> (expected success,
    /// found e)`.
    fn or_fail(self, what: &str) -> Result<T, Failed>;
}

impl<T> OrFail<T> for Result<T, Errno> {
    fn or_fail(self, what: &str) -> Result<T, Failed> {
        self.map_err(|error| {
            say!("CHECK FAILED: {what} (expected success, found {error})");
            Failed
        })
    }
}

/// A `u32` shown in hex by `{:?}` (frames, addresses, patterns).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Hex(pub u32);

impl fmt::Debug for Hex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

impl fmt::Display for Hex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

/// A wait status, shown as "exited with 0" or "killed by signal 11 (SIGSEGV)".
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Status(pub u32);

impl Status {
    /// A normal exit with `code`.
    pub const fn exited(code: i32) -> Self {
        Self(wait_status::exited(code as u32))
    }

    /// Killed by the kernel with `signal`.
    pub const fn killed(signal: u32) -> Self {
        Self(wait_status::killed(signal))
    }

    /// The exit code, if the task exited normally.
    pub const fn exit_code(self) -> Option<i32> {
        if wait_status::if_exited(self.0) {
            Some(wait_status::exit_code(self.0) as i32)
        } else {
            None
        }
    }

    /// The signal that killed the task, if it was killed.
    pub const fn signal(self) -> Option<u32> {
        if wait_status::if_exited(self.0) {
            None
        } else {
            Some(wait_status::term_signal(self.0))
        }
    }
}

impl fmt::Debug for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.exit_code(), self.signal()) {
            (Some(code), _) => write!(f, "exited with {code}"),
            (None, Some(signal::SIGSEGV)) => write!(f, "killed by signal 11 (SIGSEGV)"),
            (None, Some(signal::SIGKILL)) => write!(f, "killed by signal 9 (SIGKILL)"),
            (None, Some(other)) => write!(f, "killed by signal {other}"),
            (None, None) => write!(f, "status {:#x}", self.0),
        }
    }
}

/// Forks a child that runs `body` and exits with 0 when it passes, [`CHILD_FAILED`]
/// otherwise. Returns the child's pid to the parent.
pub fn spawn(body: impl FnOnce() -> Outcome) -> Result<Pid, Failed> {
    spawn_code(|| body().map(|()| 0))
}

/// Forks a child that runs `body` and exits with the code it returns, or
/// [`CHILD_FAILED`] when it fails.
pub fn spawn_code(body: impl FnOnce() -> Result<i32, Failed>) -> Result<Pid, Failed> {
    match fork().or_fail("fork")? {
        Forked::Child => exit(body().unwrap_or(CHILD_FAILED)),
        Forked::Parent(child) => Ok(child),
    }
}

/// Waits for `pid` and returns its status.
pub fn wait_child(pid: Pid) -> Result<Status, Failed> {
    let (reaped, status) = waitpid(pid, 0).or_fail("waitpid")?;
    check_eq!(reaped, pid, "waitpid returned another child");
    Ok(Status(status))
}

/// Waits for `pid` and checks that it exited with `code`.
pub fn expect_exit(pid: Pid, code: i32, what: &str) -> Outcome {
    let status = wait_child(pid)?;
    check_eq!(status, Status::exited(code), "{what}: child {pid}");
    Ok(())
}

/// Waits for `pid` and checks that the kernel killed it with `signal`.
pub fn expect_killed(pid: Pid, signal: u32, what: &str) -> Outcome {
    let status = wait_child(pid)?;
    check_eq!(status, Status::killed(signal), "{what}: child {pid}");
    Ok(())
}

/// The facts about one page a test compares at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageView {
    /// The page-table entry is present.
    pub present: bool,
    /// The page is writable (not write-protected for copy-on-write).
    pub writable: bool,
    /// The physical frame.
    pub frame: Hex,
    /// The frame's `mem_map` count.
    pub count: u32,
}

impl PageView {
    /// What `pageinfo` says about `addr`.
    pub fn of(addr: usize) -> Result<Self, Failed> {
        let info: PageInfo = pageinfo(addr).or_fail("pageinfo")?;
        Ok(Self {
            present: info.flags & page_flags::PRESENT != 0,
            writable: info.flags & page_flags::WRITABLE != 0,
            frame: Hex(info.frame),
            count: info.map_count,
        })
    }

    /// A frame shared copy-on-write by `count` tasks: present, read-only.
    pub const fn shared(frame: Hex, count: u32) -> Self {
        Self {
            present: true,
            writable: false,
            frame,
            count,
        }
    }

    /// A frame only this task maps, still write-protected from an earlier fork.
    pub const fn read_only(frame: Hex) -> Self {
        Self::shared(frame, 1)
    }

    /// A frame only this task maps, writable.
    pub const fn private(frame: Hex) -> Self {
        Self {
            present: true,
            writable: true,
            frame,
            count: 1,
        }
    }
}

/// What the copy-on-write fault handler did between two fault counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CowDelta {
    /// `do_wp_page` copied a shared page.
    pub copied: u32,
    /// `do_wp_page` found the count at 1 and only made the page writable.
    pub made_writable: u32,
}

impl CowDelta {
    /// The copy-on-write work done from `before` to `after`.
    pub fn between(before: &FaultCounts, after: &FaultCounts) -> Self {
        Self {
            copied: after.cow_copied.wrapping_sub(before.cow_copied),
            made_writable: after
                .cow_made_writable
                .wrapping_sub(before.cow_made_writable),
        }
    }

    /// One copy.
    pub const COPY: Self = Self {
        copied: 1,
        made_writable: 0,
    };
    /// One page made writable in place.
    pub const MADE_WRITABLE: Self = Self {
        copied: 0,
        made_writable: 1,
    };
}
