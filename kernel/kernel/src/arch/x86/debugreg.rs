//! The debug registers: DR0-DR3 (linear addresses), DR6 (what hit), DR7 (what is armed).
//!
//! The gdb stub uses them for hardware breakpoints and watchpoints. The addresses are
//! linear, so a watchpoint on a user task's page fires only for accesses through that
//! task's slot (never through the kernel's identity map of the same frame).

use core::arch::asm;

use x86::debugregs::{self, Dr6};

/// How many address registers there are (DR0-DR3).
pub const SLOTS: usize = 4;

/// EFLAGS.TF: trap after the next instruction (single-step).
pub const EFLAGS_TF: u32 = 1 << 8;
/// EFLAGS.RF: do not raise an instruction-breakpoint fault for the next instruction
/// (set when resuming at an address DR0-DR3 still watch, or it would fault again).
pub const EFLAGS_RF: u32 = 1 << 16;

/// What a debug register watches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Condition {
    /// Instruction fetch (a hardware breakpoint; a fault: it reports before executing).
    Execute,
    /// Data writes (a trap: it reports after the writing instruction).
    Write,
    /// Data reads or writes (x86 has no read-only condition).
    ReadWrite,
}

/// One armed debug register: condition and length in bytes (1, 2 or 4, with the
/// address aligned to it; 1 for `Execute`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Watch {
    pub addr: u32,
    pub condition: Condition,
    pub len: u32,
}

/// DR7 bit layout (Intel SDM vol. 3, 18.2.4).
mod dr7 {
    /// G0: the global-enable bit of DR0; Gn is bit 2n+1.
    pub const GLOBAL_ENABLE_0: u32 = 1 << 1;
    /// Bits per slot in the enable field (Ln, Gn).
    pub const ENABLE_BITS_PER_SLOT: u32 = 2;
    /// R/W0 starts at bit 16; each slot has 4 bits (R/W, LEN).
    pub const CONTROL_SHIFT: u32 = 16;
    pub const CONTROL_BITS_PER_SLOT: u32 = 4;
    /// R/W encodings.
    pub const RW_EXECUTE: u32 = 0b00;
    pub const RW_WRITE: u32 = 0b01;
    pub const RW_READ_WRITE: u32 = 0b11;
    /// LEN encodings (shifted by 2 within the slot's nibble).
    pub const LEN_SHIFT: u32 = 2;
    pub const LEN_1: u32 = 0b00;
    pub const LEN_2: u32 = 0b01;
    pub const LEN_4: u32 = 0b11;
    /// Bit 10 always reads as 1.
    pub const RESERVED_1: u32 = 1 << 10;
}

/// Whether a watch can live in one debug register.
pub const fn is_encodable(watch: &Watch) -> bool {
    match watch.condition {
        Condition::Execute => watch.len == 1,
        Condition::Write | Condition::ReadWrite => {
            matches!(watch.len, 1 | 2 | 4) && watch.addr.is_multiple_of(watch.len)
        }
    }
}

/// The DR7 value that arms `slots` (global enables, so nothing clears them on a
/// hardware task switch such as the double-fault task gate).
pub const fn dr7_value(slots: &[Option<Watch>; SLOTS]) -> u32 {
    let mut value = dr7::RESERVED_1;
    let mut i = 0;
    while i < SLOTS {
        if let Some(watch) = slots[i] {
            let rw = match watch.condition {
                Condition::Execute => dr7::RW_EXECUTE,
                Condition::Write => dr7::RW_WRITE,
                Condition::ReadWrite => dr7::RW_READ_WRITE,
            };
            let len = match watch.len {
                2 => dr7::LEN_2,
                4 => dr7::LEN_4,
                _ => dr7::LEN_1,
            };
            let slot = i as u32;
            value |= dr7::GLOBAL_ENABLE_0 << (slot * dr7::ENABLE_BITS_PER_SLOT);
            value |= (rw | len << dr7::LEN_SHIFT)
                << (dr7::CONTROL_SHIFT + slot * dr7::CONTROL_BITS_PER_SLOT);
        }
        i += 1;
    }
    value
}

// A write watch of 4 bytes in DR1 and an instruction breakpoint in DR3.
const _: () = assert!(
    dr7_value(&[
        None,
        Some(Watch {
            addr: 0x1000,
            condition: Condition::Write,
            len: 4
        }),
        None,
        Some(Watch {
            addr: 0x2000,
            condition: Condition::Execute,
            len: 1
        }),
    ]) == 0x00D0_0488
);
const _: () = assert!(dr7_value(&[None; SLOTS]) == dr7::RESERVED_1);

/// What DR6 says about the last #DB.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Status {
    /// Bit n: DRn's condition was met (also for disarmed slots: mask with what is armed).
    pub hit_slots: u8,
    /// BS: a single-step trap (EFLAGS.TF).
    pub single_step: bool,
}

/// Reads DR6 and clears it (the CPU never clears it by itself).
pub fn take_status() -> Status {
    // SAFETY: reading DR6 has no side effect at CPL 0.
    let dr6 = unsafe { debugregs::dr6() };
    // SAFETY: writing 0 only clears the sticky status bits (the CPU forces the reserved
    // ones), so the next #DB reports only its own causes.
    unsafe { debugregs::dr6_write(Dr6::empty()) };
    let slot_bits = Dr6::B0 | Dr6::B1 | Dr6::B2 | Dr6::B3;
    Status {
        hit_slots: (dr6 & slot_bits).bits() as u8,
        single_step: dr6.contains(Dr6::BS),
    }
}

/// Loads DR0-DR3 and DR7 from `slots` (an empty set disarms everything).
pub fn load(slots: &[Option<Watch>; SLOTS]) {
    // Disarm first so no half-loaded slot can fire.
    write_dr7(dr7::RESERVED_1);
    for (i, slot) in slots.iter().enumerate() {
        let addr = slot.map_or(0, |w| w.addr) as usize;
        // SAFETY: an address register only matters once DR7 arms it; CPL is 0.
        unsafe {
            match i {
                0 => debugregs::dr0_write(addr),
                1 => debugregs::dr1_write(addr),
                2 => debugregs::dr2_write(addr),
                _ => debugregs::dr3_write(addr),
            }
        }
    }
    write_dr7(dr7_value(slots));
}

/// Disarms every debug register (DR7 only; the addresses stay).
pub fn disarm() {
    write_dr7(dr7::RESERVED_1);
}

fn write_dr7(value: u32) {
    // SAFETY: DR7 only arms breakpoints on linear addresses; a #DB they raise goes
    // through the IDT like any exception (to the stub, or to a crash report). GD (general
    // detect) stays clear, so later DR accesses do not fault.
    unsafe { debugregs::dr7_write(debugregs::Dr7(value as usize)) };
}

/// Executes `int3`: a #BP from here (the boot's `gdb=wait` stop).
pub fn breakpoint_trap() {
    // SAFETY: `int3` raises #BP, whose handler returns here (the IDT handles vector 3).
    unsafe { asm!("int3", options(nomem, nostack)) };
}
