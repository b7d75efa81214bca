//! `memcpy`, `memmove`, `memset`, `memcmp`, `bcmp`: what the precompiled `core` and
//! `compiler_builtins` of a linux target expect libc to provide.
//!
//! Copies and fills use `rep movsb`/`rep stosb`: a plain byte loop here could be turned
//! back into a call to `memcpy` by LLVM's idiom recognition, recursing forever. The
//! comparisons use volatile reads for the same reason. `esi` cannot be an `asm!` operand
//! on i386 (LLVM reserves it), so the copies swap it in and out by hand.

use core::arch::asm;

/// Copies `n` bytes from `src` to `dest` (non-overlapping); returns `dest`.
///
/// # Safety
/// The C contract: both ranges valid for `n` bytes and not overlapping.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memcpy(dest: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    // SAFETY: the caller guarantees the ranges; DF is 0 in Rust code (the trap entry
    // clears it), so `rep movsb` copies upwards; esi is restored before the asm ends.
    unsafe {
        asm!(
            "xchgl {source}, %esi",
            "rep movsb",
            "movl {source}, %esi",
            source = inout(reg) src => _,
            inout("edi") dest => _,
            inout("ecx") n => _,
            options(att_syntax, nostack, preserves_flags)
        );
    }
    dest
}

/// Copies `n` bytes from `src` to `dest`; the ranges may overlap. Returns `dest`.
///
/// # Safety
/// The C contract: both ranges valid for `n` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memmove(dest: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    if (dest as usize) <= (src as usize) || (dest as usize) >= (src as usize).wrapping_add(n) {
        // A forward copy never overwrites a source byte before reading it here.
        // SAFETY: same contract as memcpy for this direction.
        return unsafe { memcpy(dest, src, n) };
    }
    if n == 0 {
        return dest;
    }
    // dest overlaps the end of src: copy backwards, from the last byte down (DF = 1).
    // SAFETY: the caller guarantees the ranges; DF is set only inside this asm and
    // cleared before it ends; esi is restored.
    unsafe {
        asm!(
            "xchgl {source}, %esi",
            "std",
            "rep movsb",
            "cld",
            "movl {source}, %esi",
            source = inout(reg) src.add(n - 1) => _,
            inout("edi") dest.add(n - 1) => _,
            inout("ecx") n => _,
            options(att_syntax, nostack)
        );
    }
    dest
}

/// Fills `n` bytes at `dest` with the low byte of `value`; returns `dest`.
///
/// # Safety
/// The C contract: the range valid for `n` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memset(dest: *mut u8, value: i32, n: usize) -> *mut u8 {
    // SAFETY: the caller guarantees the range; DF is 0 in Rust code.
    unsafe {
        asm!(
            "rep stosb",
            inout("edi") dest => _,
            inout("ecx") n => _,
            in("al") value as u8,
            options(att_syntax, nostack, preserves_flags)
        );
    }
    dest
}

/// Compares `n` bytes: <0, 0, >0 as the first differing byte of `a` is below, equal or
/// above that of `b` (unsigned).
///
/// # Safety
/// The C contract: both ranges valid for `n` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    for index in 0..n {
        // SAFETY: index < n, inside both ranges. Volatile keeps LLVM from recognising
        // the loop as `memcmp`/`bcmp` and calling us back.
        let (x, y) = unsafe { (a.add(index).read_volatile(), b.add(index).read_volatile()) };
        if x != y {
            return i32::from(x) - i32::from(y);
        }
    }
    0
}

/// Whether `n` bytes differ (0 = equal), like `memcmp` without the ordering.
///
/// # Safety
/// The C contract: both ranges valid for `n` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    // SAFETY: same contract.
    unsafe { memcmp(a, b, n) }
}

/// Referenced by the precompiled `core` (built with unwinding); never called, because
/// the kernel is built with `panic = "abort"`.
#[unsafe(no_mangle)]
pub extern "C" fn rust_eh_personality() {}
