//! Guard scenarios: bad pointers and unknown calls refused, faulting tasks killed, kernel memory never freed.

use core::arch::asm;
use core::hint::black_box;

use user::abi::{crash_kind, debug_op, nr, signal, PAGE_SIZE, TASK_SIZE};
use user::check::{expect_exit, expect_killed, spawn, Failed, Outcome};
use user::console::STDOUT;
use user::mem::{peek, MIB};
use user::raw::{syscall0, syscall1, syscall2, syscall3};
use user::{check_eq, debug, execve, say, Errno};

/// An offset far beyond the 64 MiB segment limit.
const BEYOND_LIMIT: u32 = 0x7fff_fff0;
/// Bytes handed to `write` with a bad buffer.
const BAD_LEN: u32 = 32;
/// An offset just beyond the segment: reading it raises #GP in the task.
const OUTSIDE_SEGMENT: usize = 0x0500_0000;
/// A system-call number nothing implements.
const UNKNOWN_SYSCALL: u32 = 999;
/// The first 4 MiB-aligned address of the last task slot: any address there that is
/// not 4 MiB aligned is refused for its alignment, whatever the slot holds.
const LAST_SLOT: u32 = 63 * TASK_SIZE;

/// `a / b` with the `div` instruction (Rust's `/` would panic on zero before dividing).
fn divide(a: u32, b: u32) -> u32 {
    let quotient: u32;
    // SAFETY: `div` only reads its operands and writes eax/edx; with b == 0 it raises
    // #DE, which is what the caller wants the kernel to handle.
    unsafe {
        asm!(
            "div {divisor}",
            divisor = in(reg) b,
            inout("eax") a => quotient,
            inout("edx") 0u32 => _,
            options(nomem, nostack)
        );
    }
    quotient
}

/// bad-pointer: system calls refuse pointers beyond the segment (EFAULT), unknown
/// programs (ENOENT) and unknown calls (ENOSYS); tasks that read beyond their
/// segment, execute `hlt` or divide by zero are killed with SIGSEGV.
pub fn bad_pointer() -> Outcome {
    let efault = Errno::EFAULT.as_return();
    say!("pointers beyond the 64 MiB segment must be refused with EFAULT");
    // SAFETY: the buffer lies wholly beyond the segment; the kernel only reads it, if at all.
    let ret = unsafe { syscall3(nr::WRITE, STDOUT, BEYOND_LIMIT, BAD_LEN) };
    check_eq!(ret, efault, "write(1, {BEYOND_LIMIT:#x}, {BAD_LEN})");
    let crossing = TASK_SIZE - BAD_LEN / 2;
    // SAFETY: write only reads the buffer; the part inside the segment is stack top.
    let ret = unsafe { syscall3(nr::WRITE, STDOUT, crossing, BAD_LEN) };
    check_eq!(
        ret,
        efault,
        "write(1, {crossing:#x}, {BAD_LEN}): a buffer crossing the segment limit"
    );
    // SAFETY: the target lies beyond the segment, where no Rust object lives.
    let ret = unsafe { syscall1(nr::MEMINFO, BEYOND_LIMIT) };
    check_eq!(ret, efault, "meminfo({BEYOND_LIMIT:#x})");
    // SAFETY: as above; the looked-up address 0 is only walked, not accessed.
    let ret = unsafe { syscall2(nr::PAGEINFO, 0, BEYOND_LIMIT) };
    check_eq!(ret, efault, "pageinfo(0, {BEYOND_LIMIT:#x})");
    let child = spawn(|| Ok(()))?;
    // SAFETY: the status pointer lies beyond the segment, where no Rust object lives.
    let ret = unsafe { syscall3(nr::WAITPID, child as u32, BEYOND_LIMIT, 0) };
    check_eq!(ret, efault, "waitpid({child}, {BEYOND_LIMIT:#x}, 0)");
    // The refused call must not have used up the child's status.
    expect_exit(child, 0, "waitpid after the refused one")?;
    let empty_arg = [0u8; 1];
    // SAFETY: execve only reads the name (beyond the segment) and the NUL-terminated
    // local argument; should it succeed, ktest is replaced and the check fails loudly.
    let ret = unsafe { syscall2(nr::EXECVE, BEYOND_LIMIT, empty_arg.as_ptr() as u32) };
    check_eq!(ret, efault, "execve({BEYOND_LIMIT:#x}, \"\")");
    check_eq!(
        execve("no-such-program", ""),
        Errno::ENOENT,
        "execve(\"no-such-program\")"
    );
    // SAFETY: no argument at all.
    let ret = unsafe { syscall0(UNKNOWN_SYSCALL) };
    check_eq!(
        ret,
        Errno::ENOSYS.as_return(),
        "system call {UNKNOWN_SYSCALL}"
    );

    say!("tasks that fault must be killed with SIGSEGV, and ktest goes on");
    let reader = spawn(|| {
        // SAFETY: the read is meant to fault (#GP: beyond the segment limit).
        let word = unsafe { peek(OUTSIDE_SEGMENT) };
        say!("CHECK FAILED: reading {OUTSIDE_SEGMENT:#x} returned {word:#x}");
        Err(Failed)
    })?;
    expect_killed(
        reader,
        signal::SIGSEGV,
        "a read at 0x0500_0000, beyond the segment (#GP)",
    )?;
    let halter = spawn(|| {
        // SAFETY: `hlt` is privileged: in ring 3 it raises #GP, which is the point.
        unsafe { asm!("hlt", options(nomem, nostack)) };
        say!("CHECK FAILED: hlt returned in ring 3");
        Err(Failed)
    })?;
    expect_killed(halter, signal::SIGSEGV, "hlt in ring 3 (#GP)")?;
    let divider = spawn(|| {
        let quotient = divide(1, black_box(0));
        say!("CHECK FAILED: 1 / 0 returned {quotient}");
        Err(Failed)
    })?;
    expect_killed(divider, signal::SIGSEGV, "a division by zero (#DE)")?;
    Ok(())
}

/// free-page-tables-guard: `free_page_tables` refuses the kernel's identity-mapped
/// slot 0 (all of it, where 0.11 refused only address 0: the "BUG" of the seed text)
/// and unaligned addresses. The runner then requires checkmm() == 0.
pub fn free_page_tables_guard() -> Outcome {
    let eperm = Errno::EPERM.as_return();
    for addr in [0, 4 * MIB as u32, 60 * MIB as u32] {
        check_eq!(
            debug(debug_op::FREE_PAGE_TABLES, addr),
            eperm,
            "free_page_tables({addr:#x}, 4 MiB): kernel memory"
        );
        say!("free_page_tables({addr:#x}) refused with EPERM");
    }
    let unaligned = LAST_SLOT + PAGE_SIZE;
    check_eq!(
        debug(debug_op::FREE_PAGE_TABLES, unaligned),
        Errno::EINVAL.as_return(),
        "free_page_tables({unaligned:#x}): not 4 MiB aligned"
    );
    say!("free_page_tables({unaligned:#x}) refused with EINVAL");
    Ok(())
}

/// Asks the kernel to crash itself (`debug(KERNEL_CRASH, kind)`): the test runner expects
/// QEMU's CRASH status and a report naming this task. Returning at all is a failure.
fn kernel_crash(kind: u32) -> Outcome {
    let result = debug(debug_op::KERNEL_CRASH, kind);
    say!("CHECK FAILED: the kernel returned {result} instead of crashing");
    Err(Failed)
}

pub fn kernel_crash_ud2() -> Outcome {
    kernel_crash(crash_kind::INVALID_OPCODE)
}
pub fn kernel_crash_pagefault() -> Outcome {
    kernel_crash(crash_kind::PAGE_FAULT)
}
pub fn kernel_crash_gp() -> Outcome {
    kernel_crash(crash_kind::GENERAL_PROTECTION)
}
pub fn kernel_crash_doublefault() -> Outcome {
    kernel_crash(crash_kind::DOUBLE_FAULT)
}
pub fn kernel_crash_panic() -> Outcome {
    kernel_crash(crash_kind::PANIC)
}
pub fn kernel_crash_stackoverflow() -> Outcome {
    kernel_crash(crash_kind::STACK_OVERFLOW)
}
