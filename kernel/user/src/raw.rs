//! Raw system calls: `int 0x80` with the number in `eax` and arguments in `ebx`, `ecx`, `edx`.
//!
//! They return `eax` as the kernel left it: a value, or `-errno`. They are `unsafe`
//! because the kernel reads and writes memory at the pointers they carry; tests use
//! them directly to hand the kernel bad pointers on purpose.
//!
//! Register use: `esi` cannot be an `asm!` operand on 32-bit x86 (LLVM keeps it as a
//! base pointer), but `ebx` can (it is reserved only on x86-64 and in PIC code, and the
//! programs are static); the kernel's entry saves `ebx`, `ecx` and `edx` (0.11's
//! `system_call` pushes them), yet they are declared clobbered so a kernel that does
//! not restore them costs nothing but a reload.

use core::arch::asm;

/// A system call without arguments.
///
/// # Safety
/// The call must not break the program's memory: see the module documentation.
#[inline(always)]
pub unsafe fn syscall0(nr: u32) -> i32 {
    let ret: i32;
    // SAFETY: `int 0x80` enters the kernel through its system-call gate and returns with
    // `eax` set; it does not use the user stack. The caller vouches for the effects.
    unsafe {
        asm!(
            "int 0x80",
            inlateout("eax") nr => ret,
            lateout("ebx") _,
            lateout("ecx") _,
            lateout("edx") _,
            options(nostack)
        );
    }
    ret
}

/// A system call with one argument.
///
/// # Safety
/// As for [`syscall0`]; `a` may be a pointer the kernel uses.
#[inline(always)]
pub unsafe fn syscall1(nr: u32, a: u32) -> i32 {
    let ret: i32;
    // SAFETY: as in `syscall0`; the caller vouches for the pointer argument.
    unsafe {
        asm!(
            "int 0x80",
            inlateout("eax") nr => ret,
            inlateout("ebx") a => _,
            lateout("ecx") _,
            lateout("edx") _,
            options(nostack)
        );
    }
    ret
}

/// A system call with two arguments.
///
/// # Safety
/// As for [`syscall0`]; `a` and `b` may be pointers the kernel uses.
#[inline(always)]
pub unsafe fn syscall2(nr: u32, a: u32, b: u32) -> i32 {
    let ret: i32;
    // SAFETY: as in `syscall0`; the caller vouches for the pointer arguments.
    unsafe {
        asm!(
            "int 0x80",
            inlateout("eax") nr => ret,
            inlateout("ebx") a => _,
            inlateout("ecx") b => _,
            lateout("edx") _,
            options(nostack)
        );
    }
    ret
}

/// A system call with three arguments.
///
/// # Safety
/// As for [`syscall0`]; `a`, `b` and `c` may be pointers the kernel uses.
#[inline(always)]
pub unsafe fn syscall3(nr: u32, a: u32, b: u32, c: u32) -> i32 {
    let ret: i32;
    // SAFETY: as in `syscall0`; the caller vouches for the pointer arguments.
    unsafe {
        asm!(
            "int 0x80",
            inlateout("eax") nr => ret,
            inlateout("ebx") a => _,
            inlateout("ecx") b => _,
            inlateout("edx") c => _,
            options(nostack)
        );
    }
    ret
}
