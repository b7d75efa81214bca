//! Deliberate faults, for in-QEMU tests of the trap and crash paths.
//!
//! Each function raises its exception and expects the handler never to return (the
//! kernel's dispatch reports unexpected exceptions as crashes); if it did return, the
//! faulting instruction would run again.

use core::arch::asm;

use super::{cpu, idt};

/// A GDT selector past the end of the GDT (index 9 of 6 entries).
const SELECTOR_PAST_GDT: u16 = 9 << 3;
/// IDT entries left visible for [`real_double_fault`]: vectors 0..=8, so #DF (8) is
/// reachable but #GP (13) is not.
const IDT_ENTRIES_UP_TO_DOUBLE_FAULT: usize = 9;

/// `ud2`: #UD (vector 6).
pub fn invalid_opcode() -> ! {
    loop {
        // SAFETY: raises #UD, handled by the IDT.
        unsafe { asm!("ud2", options(att_syntax, nostack)) };
    }
}

/// Loads a selector past the GDT limit into `fs`: #GP with error code 0x48.
pub fn general_protection() -> ! {
    loop {
        // SAFETY: the load faults before `fs` changes; #GP is handled by the IDT.
        unsafe { asm!("movw {0:x}, %fs", in(reg) SELECTOR_PAST_GDT, options(att_syntax, nostack)) };
    }
}

/// `int $8`: enters the double-fault task gate by software (no error code pushed).
pub fn software_double_fault() -> ! {
    loop {
        // SAFETY: vector 8 is a task gate to the double-fault TSS, which never returns.
        unsafe { asm!("int $8", options(att_syntax, nostack)) };
    }
}

/// A real double fault: with the IDT cut after vector 8, `int $0x80` raises #GP (vector
/// past the limit), whose delivery raises #GP again (13 is past the limit too): two
/// contributory faults, so the CPU raises #DF, which goes through the task gate.
pub fn real_double_fault() -> ! {
    cpu::disable_interrupts();
    // SAFETY: the double fault this causes is the point; the handler never returns.
    unsafe { idt::load_truncated(IDT_ENTRIES_UP_TO_DOUBLE_FAULT) };
    loop {
        // SAFETY: see above.
        unsafe { asm!("int $0x80", options(att_syntax, nostack)) };
    }
}

/// Loads `esp` (meant: the top of an unmapped guard page, with paging on) and pushes: the
/// push page-faults, delivering that #PF needs the same broken stack, so the CPU raises
/// #DF, which only a task gate can handle. This is what a kernel stack overflow does.
pub fn stack_overflow_at(esp: u32) -> ! {
    cpu::disable_interrupts();
    loop {
        // SAFETY: the fault is the point; the double-fault task never returns here. The
        // compiler's view of the stack does not matter as nothing after the push runs.
        unsafe {
            asm!(
                "movl {0}, %esp",
                "pushl $0",
                in(reg) esp,
                options(att_syntax)
            )
        };
    }
}

/// Reads the word at `linear` in ring 0: with the address unmapped, a page fault in
/// kernel mode, which the kernel reports as a crash.
pub fn read_linear(linear: u32) -> ! {
    loop {
        // SAFETY: the read either succeeds (nothing changes) or faults, which is the
        // point; the handler for a kernel-mode page fault never returns.
        let value = unsafe { (linear as *const u32).read_volatile() };
        core::hint::black_box(value);
    }
}
