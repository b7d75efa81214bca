//! Typed system-call wrappers: `Result<_, Errno>` instead of negative `eax` values.

use core::fmt;

use abi::{debug_op, errno, nr, FaultCounts, MemInfo, PageInfo, MAX_ARG_LEN, MAX_NAME_LEN};

use crate::raw::{syscall0, syscall1, syscall2, syscall3};

/// A task id. Signed because `waitpid` takes -1 for "any child".
pub type Pid = i32;

/// An error number returned by the kernel (positive, see [`abi::errno`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Errno(pub i32);

impl Errno {
    pub const EPERM: Self = Self(errno::EPERM);
    pub const ENOENT: Self = Self(errno::ENOENT);
    pub const ESRCH: Self = Self(errno::ESRCH);
    pub const E2BIG: Self = Self(errno::E2BIG);
    pub const ECHILD: Self = Self(errno::ECHILD);
    pub const EAGAIN: Self = Self(errno::EAGAIN);
    pub const ENOMEM: Self = Self(errno::ENOMEM);
    pub const EFAULT: Self = Self(errno::EFAULT);
    pub const EINVAL: Self = Self(errno::EINVAL);
    pub const ENOSYS: Self = Self(errno::ENOSYS);

    /// Splits a raw return value into a value and an error.
    pub fn result(ret: i32) -> Result<u32, Errno> {
        if ret < 0 {
            Err(Errno(-ret))
        } else {
            Ok(ret as u32)
        }
    }

    /// The raw value the kernel returns for this error (`-errno`).
    pub const fn as_return(self) -> i32 {
        -self.0
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", errno::name(self.0), self.0)
    }
}

/// Which side of a `fork` this is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Forked {
    /// The new task.
    Child,
    /// The calling task; the child's pid.
    Parent(Pid),
}

/// Ends the task with `code` (the low 8 bits reach the parent's `waitpid`).
pub fn exit(code: i32) -> ! {
    // SAFETY: `exit` takes no pointer and does not return.
    unsafe {
        syscall1(nr::EXIT, code as u32);
    }
    // The kernel never returns from exit; should it, a fault is better than going on.
    loop {
        core::hint::spin_loop();
    }
}

/// `fork()`: the child gets a copy-on-write copy of the caller's address space.
pub fn fork() -> Result<Forked, Errno> {
    // SAFETY: no pointer; the child resumes here with a copy of this stack.
    let ret = unsafe { syscall0(nr::FORK) };
    match Errno::result(ret)? {
        0 => Ok(Forked::Child),
        child => Ok(Forked::Parent(child as Pid)),
    }
}

/// `write(fd, buf)`: fd 1 and 2 are the console. Returns the bytes written.
pub fn write(fd: u32, buf: &[u8]) -> Result<usize, Errno> {
    // SAFETY: `buf` is a valid slice for the whole call.
    let ret = unsafe { syscall3(nr::WRITE, fd, buf.as_ptr() as u32, buf.len() as u32) };
    Errno::result(ret).map(|n| n as usize)
}

/// `waitpid(pid, &status, options)`: `pid` -1 waits for any child. Returns the pid
/// reaped (0 with [`abi::WNOHANG`] when no child has exited yet) and its status
/// (decode it with [`abi::wait_status`]).
pub fn waitpid(pid: Pid, options: u32) -> Result<(Pid, u32), Errno> {
    let mut status = 0u32;
    // SAFETY: `status` is a valid `u32` on this stack for the whole call.
    let ret = unsafe {
        syscall3(
            nr::WAITPID,
            pid as u32,
            &mut status as *mut u32 as u32,
            options,
        )
    };
    Errno::result(ret).map(|reaped| (reaped as Pid, status))
}

/// `execve(name, arg)`: replaces the program by `name` from the image, with `arg`
/// as its argument string. Only returns on failure, with the error.
pub fn execve(name: &str, arg: &str) -> Errno {
    let mut name_buf = [0u8; MAX_NAME_LEN + 1];
    let mut arg_buf = [0u8; MAX_ARG_LEN + 1];
    // Longer names cannot be in the image; longer arguments cannot be carried.
    if name.len() > MAX_NAME_LEN {
        return Errno::ENOENT;
    }
    if arg.len() > MAX_ARG_LEN {
        return Errno::E2BIG;
    }
    name_buf[..name.len()].copy_from_slice(name.as_bytes());
    arg_buf[..arg.len()].copy_from_slice(arg.as_bytes());
    // SAFETY: both buffers are NUL-terminated and live for the whole call; on
    // success the call does not return to this program at all.
    let ret = unsafe {
        syscall2(
            nr::EXECVE,
            name_buf.as_ptr() as u32,
            arg_buf.as_ptr() as u32,
        )
    };
    match Errno::result(ret) {
        Err(error) => error,
        // A successful execve never returns; a kernel that did return gets told.
        Ok(_) => Errno::ENOSYS,
    }
}

/// The caller's pid.
pub fn getpid() -> Pid {
    // SAFETY: no pointer.
    unsafe { syscall0(nr::GETPID) }
}

/// The parent's pid (1 once the parent has exited: orphans go to task 1).
pub fn getppid() -> Pid {
    // SAFETY: no pointer.
    unsafe { syscall0(nr::GETPPID) }
}

/// Terminates `pid` as if by SIGKILL.
pub fn kill(pid: Pid) -> Result<(), Errno> {
    // SAFETY: no pointer.
    Errno::result(unsafe { syscall1(nr::KILL, pid as u32) }).map(|_| ())
}

/// Sets the break to `addr` (0 only asks for it) and returns the new break. A break
/// the kernel did not move to `addr` is reported as `ENOMEM`.
pub fn brk(addr: usize) -> Result<usize, Errno> {
    // SAFETY: no pointer is dereferenced; memory beyond the break is not used by any
    // Rust object (see `mem::grow_break`).
    let new = Errno::result(unsafe { syscall1(nr::BRK, addr as u32) })? as usize;
    if addr != 0 && new != addr {
        return Err(Errno::ENOMEM);
    }
    Ok(new)
}

/// Gives the processor to another task.
pub fn yield_now() {
    // SAFETY: no pointer.
    unsafe {
        syscall0(nr::YIELD);
    }
}

/// Sleeps for `ticks` timer ticks (100 Hz).
pub fn sleep(ticks: u32) {
    // SAFETY: no pointer.
    unsafe {
        syscall1(nr::SLEEP, ticks);
    }
}

/// The argument string given to `execve` (or `arg=` on the kernel command line),
/// copied into `buf`. An argument that is not UTF-8 is `EINVAL`.
pub fn getarg(buf: &mut [u8]) -> Result<&str, Errno> {
    // SAFETY: `buf` is valid for `buf.len()` bytes for the whole call.
    let ret = unsafe { syscall2(nr::GETARG, buf.as_mut_ptr() as u32, buf.len() as u32) };
    let len = (Errno::result(ret)? as usize).min(buf.len());
    core::str::from_utf8(&buf[..len]).map_err(|_| Errno::EINVAL)
}

/// The kernel's memory figures and the caller's fault counts.
pub fn meminfo() -> Result<MemInfo, Errno> {
    let mut info = MemInfo::default();
    // SAFETY: `info` is a valid, writable `MemInfo` for the whole call.
    let ret = unsafe { syscall1(nr::MEMINFO, &mut info as *mut MemInfo as u32) };
    Errno::result(ret).map(|_| info)
}

/// The caller's fault counts (from [`meminfo`]).
pub fn faults() -> Result<FaultCounts, Errno> {
    meminfo().map(|info| info.faults)
}

/// What the caller's page tables say about its address `addr`.
pub fn pageinfo(addr: usize) -> Result<PageInfo, Errno> {
    let mut info = PageInfo::default();
    // SAFETY: `info` is a valid, writable `PageInfo` for the whole call; `addr` is
    // only looked up, never accessed.
    let ret = unsafe { syscall2(nr::PAGEINFO, addr as u32, &mut info as *mut PageInfo as u32) };
    Errno::result(ret).map(|_| info)
}

/// Runs the kernel's memory consistency check; returns the number of mismatches.
pub fn checkmm() -> Result<u32, Errno> {
    // SAFETY: no pointer.
    Errno::result(unsafe { syscall0(nr::CHECKMM) })
}

/// A kernel-side test operation ([`abi::debug_op`]); returns the raw result, since
/// some operations are expected to fail with a given `-errno`.
pub fn debug(op: u32, arg: u32) -> i32 {
    // SAFETY: the debug operations validate `arg` themselves (a KERNEL_WRITE goes
    // through the kernel's `verify_area`); a test that targets its own memory knows it.
    unsafe { syscall2(nr::DEBUG, op, arg) }
}

/// The number of free frames, cheaply (`debug(FREE_FRAMES)`).
pub fn free_frames() -> Result<u32, Errno> {
    Errno::result(debug(debug_op::FREE_FRAMES, 0))
}
