//! Program startup and the pieces a freestanding `no_std` binary must supply: the panic handler and the C memory functions.

use core::arch::asm;
use core::panic::PanicInfo;
use core::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

use crate::{exit, say};

/// Exit code of a program that panicked (as Rust's own test harness uses).
pub const PANIC_EXIT_CODE: i32 = 101;

/// The program's name, set once by [`start`] (a `&'static str` split in two atomics,
/// since there is no safe one-time cell in `core` that is `Sync`).
static NAME_PTR: AtomicPtr<u8> = AtomicPtr::new(core::ptr::null_mut());
static NAME_LEN: AtomicUsize = AtomicUsize::new(0);

/// Runs `main` as program `name` (called by `_start` through [`entry!`](crate::entry)).
pub fn start(name: &'static str, main: fn() -> i32) -> i32 {
    NAME_PTR.store(name.as_ptr().cast_mut(), Ordering::Relaxed);
    NAME_LEN.store(name.len(), Ordering::Relaxed);
    main()
}

/// The program's name ("?" before [`start`]).
pub fn program_name() -> &'static str {
    let ptr = NAME_PTR.load(Ordering::Relaxed);
    if ptr.is_null() {
        return "?";
    }
    let len = NAME_LEN.load(Ordering::Relaxed);
    // SAFETY: `ptr` and `len` were stored together from a `&'static str` in `start`
    // (the only writer, run once before anything reads them); a task has one thread.
    unsafe { core::str::from_utf8_unchecked(core::slice::from_raw_parts(ptr, len)) }
}

#[panic_handler]
fn panic(info: &PanicInfo<'_>) -> ! {
    match info.location() {
        Some(location) => say!("panicked at {location}: {}", info.message()),
        None => say!("panicked: {}", info.message()),
    }
    exit(PANIC_EXIT_CODE)
}

/// Referenced by the precompiled `core` (built with unwinding); never called under
/// `panic = "abort"`.
#[no_mangle]
pub extern "C" fn rust_eh_personality() {}

// The precompiled `compiler_builtins` of a Linux target expects libc's memory
// functions. String instructions do the work: a plain byte loop could be turned back
// into a call to `memcpy` by LLVM, recursing forever. The direction flag is clear on
// entry (System V ABI; the kernel enters ring 3 with DF = 0).

/// # Safety
/// `dest` and `src` are valid for `n` bytes and do not overlap.
#[no_mangle]
pub unsafe extern "C" fn memcpy(dest: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    // SAFETY: the caller guarantees both ranges; `rep movsb` copies exactly `n` bytes.
    // `esi` cannot be an operand (LLVM's base pointer): swap it in and out by hand.
    unsafe {
        asm!(
            "xchg esi, {src}",
            "rep movsb",
            "xchg esi, {src}",
            src = inout(reg) src => _,
            inout("ecx") n => _,
            inout("edi") dest => _,
            options(nostack, preserves_flags)
        );
    }
    dest
}

/// # Safety
/// `dest` and `src` are valid for `n` bytes; they may overlap.
#[no_mangle]
pub unsafe extern "C" fn memmove(dest: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    if (dest as usize).wrapping_sub(src as usize) >= n {
        // The destination starts before the source or after its end: a forward copy
        // never overwrites a byte before reading it.
        // SAFETY: the caller guarantees both ranges.
        return unsafe { memcpy(dest, src, n) };
    }
    // SAFETY: the caller guarantees both ranges; copying backwards from the last byte
    // (DF set, restored right after) handles a destination inside the source.
    unsafe {
        asm!(
            "xchg esi, {src}",
            "std",
            "rep movsb",
            "cld",
            "xchg esi, {src}",
            src = inout(reg) src.add(n - 1) => _,
            inout("ecx") n => _,
            inout("edi") dest.add(n - 1) => _,
            options(nostack)
        );
    }
    dest
}

/// # Safety
/// `dest` is valid for `n` bytes.
#[no_mangle]
pub unsafe extern "C" fn memset(dest: *mut u8, value: i32, n: usize) -> *mut u8 {
    // SAFETY: the caller guarantees the range; `rep stosb` stores exactly `n` bytes.
    unsafe {
        asm!(
            "rep stosb",
            inout("ecx") n => _,
            inout("edi") dest => _,
            in("al") value as u8,
            options(nostack, preserves_flags)
        );
    }
    dest
}

/// # Safety
/// `a` and `b` are valid for `n` bytes.
#[no_mangle]
pub unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    for i in 0..n {
        // SAFETY: the caller guarantees both ranges. Volatile reads keep LLVM from
        // recognising the loop as a call to `memcmp` itself.
        let (x, y) = unsafe { (a.add(i).read_volatile(), b.add(i).read_volatile()) };
        if x != y {
            return i32::from(x) - i32::from(y);
        }
    }
    0
}

/// # Safety
/// `a` and `b` are valid for `n` bytes.
#[no_mangle]
pub unsafe extern "C" fn bcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    // SAFETY: same contract as `memcmp`.
    unsafe { memcmp(a, b, n) }
}
