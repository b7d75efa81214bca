//! The IDT: a gate for every one of the 256 vectors, double fault through a task gate.
//!
//! All gates are 32-bit interrupt gates (the CPU clears IF on entry, so a handler never
//! nests unless it re-enables interrupts), with DPL 0 so user code cannot `int` them,
//! except:
//! - [`SYSCALL_VECTOR`] 0x80, `int3` (3) and `into` (4): DPL 3, callable from user mode
//!   (Linux 0.11 `set_system_gate` for the same vectors);
//! - [`vector::DOUBLE_FAULT`] 8: a task gate to the double-fault TSS, so the handler gets
//!   a fresh stack and a known-good state even when the fault came from a broken `esp`
//!   or a kernel stack overflow (an interrupt gate would fault again and triple-fault).

use x86::dtables::{self, DescriptorTablePointer};

use super::gdt::{DF_TSS_SEL, KERNEL_CS};
use super::trap_entry::{self, VECTOR_COUNT};
use super::HwCell;

/// The system-call vector (Linux: `int $0x80`).
pub const SYSCALL_VECTOR: u8 = 0x80;
/// First vector of the remapped 8259 IRQs (IRQ n is vector `IRQ_BASE + n`).
pub const IRQ_BASE: u8 = 0x20;
/// Number of 8259 IRQ lines (master + slave).
pub const IRQ_COUNT: u8 = 16;

/// Exception vectors.
pub mod vector {
    pub const DIVIDE_ERROR: u8 = 0;
    pub const DEBUG: u8 = 1;
    pub const NMI: u8 = 2;
    pub const BREAKPOINT: u8 = 3;
    pub const OVERFLOW: u8 = 4;
    pub const BOUND_RANGE: u8 = 5;
    pub const INVALID_OPCODE: u8 = 6;
    pub const DEVICE_NOT_AVAILABLE: u8 = 7;
    pub const DOUBLE_FAULT: u8 = 8;
    pub const INVALID_TSS: u8 = 10;
    pub const SEGMENT_NOT_PRESENT: u8 = 11;
    pub const STACK_FAULT: u8 = 12;
    pub const GENERAL_PROTECTION: u8 = 13;
    pub const PAGE_FAULT: u8 = 14;
    pub const X87_FLOATING_POINT: u8 = 16;
    pub const ALIGNMENT_CHECK: u8 = 17;
    pub const MACHINE_CHECK: u8 = 18;
    /// Vectors below this are reserved for CPU exceptions.
    pub const EXCEPTION_COUNT: u8 = 32;
}

/// Gate descriptor bits (in the high 32 bits of the 8-byte gate).
mod gate {
    pub const PRESENT: u32 = 1 << 15;
    pub const DPL_SHIFT: u32 = 13;
    /// Type 0xE: 32-bit interrupt gate (clears IF).
    pub const TYPE_INTERRUPT_32: u32 = 0xE << 8;
    /// Type 0x5: task gate (offset unused).
    pub const TYPE_TASK: u32 = 0x5 << 8;
    pub const KERNEL_DPL: u8 = 0;
    pub const USER_DPL: u8 = 3;
}

/// A 32-bit interrupt gate to `handler` in the kernel code segment.
const fn interrupt_gate(handler: u32, dpl: u8) -> u64 {
    let low = (handler & 0xFFFF) | ((KERNEL_CS as u32) << 16);
    let high = (handler & 0xFFFF_0000)
        | gate::PRESENT
        | ((dpl as u32) << gate::DPL_SHIFT)
        | gate::TYPE_INTERRUPT_32;
    ((high as u64) << 32) | low as u64
}

/// A task gate to the TSS `tss_selector`.
const fn task_gate(tss_selector: u16) -> u64 {
    let low = (tss_selector as u32) << 16;
    let high = gate::PRESENT | gate::TYPE_TASK;
    ((high as u64) << 32) | low as u64
}

// Linux 0.11 `_set_gate(.., 14, 0, addr)` with addr 0 gives 0x00008e00_00080000.
const _: () = assert!(interrupt_gate(0, 0) == 0x0000_8e00_0008_0000);
const _: () = assert!(interrupt_gate(0x0012_3456, 3) == 0x0012_ee00_0008_3456);
const _: () = assert!(task_gate(0x28) == 0x0000_8500_0028_0000);

static IDT: HwCell<[u64; VECTOR_COUNT]> = HwCell::new([0; VECTOR_COUNT]);

/// The IDTR value for the first `entries` gates.
fn idt_pointer(entries: usize) -> DescriptorTablePointer<u64> {
    DescriptorTablePointer {
        limit: (entries * 8 - 1) as u16,
        base: IDT.get().cast::<u64>(),
    }
}

/// Fills every gate and loads the IDT. Call after [`super::gdt::init`] (the gates name
/// its selectors) and before enabling interrupts.
pub fn init() {
    let idt = IDT.get();
    for number in 0..=u8::MAX {
        let entry = match number {
            vector::DOUBLE_FAULT => task_gate(DF_TSS_SEL),
            SYSCALL_VECTOR | vector::BREAKPOINT | vector::OVERFLOW => {
                interrupt_gate(trap_entry::stub_address(number), gate::USER_DPL)
            }
            _ => interrupt_gate(trap_entry::stub_address(number), gate::KERNEL_DPL),
        };
        // SAFETY: boot time: the IDT is not loaded yet (or is being refilled with equal
        // values), so no interrupt reads a half-written gate; index < 256.
        unsafe {
            idt.cast::<u64>()
                .add(usize::from(number))
                .write_volatile(entry)
        };
    }
    // SAFETY: every gate is valid and the table is a static, so the IDTR stays valid.
    unsafe { dtables::lidt(&idt_pointer(VECTOR_COUNT)) };
}

/// Loads an IDTR that covers only vectors `0..entries` (test hook for a real double
/// fault: a vector past the limit raises #GP, whose own gate is then out of reach).
///
/// # Safety
/// Every vector `>= entries` then raises #GP instead of reaching its handler.
pub(crate) unsafe fn load_truncated(entries: usize) {
    // SAFETY: the caller accepts the consequences; the table itself stays valid.
    unsafe { dtables::lidt(&idt_pointer(entries)) };
}

/// A name for a vector, for messages.
pub fn vector_name(vector: u32) -> &'static str {
    const IRQ_FIRST: u32 = IRQ_BASE as u32;
    const IRQ_LAST: u32 = (IRQ_BASE + IRQ_COUNT - 1) as u32;
    const SYSCALL: u32 = SYSCALL_VECTOR as u32;
    match vector {
        0 => "#DE divide error",
        1 => "#DB debug",
        2 => "NMI",
        3 => "#BP breakpoint",
        4 => "#OF overflow",
        5 => "#BR bound range exceeded",
        6 => "#UD invalid opcode",
        7 => "#NM device not available",
        8 => "#DF double fault",
        9 => "coprocessor segment overrun",
        10 => "#TS invalid TSS",
        11 => "#NP segment not present",
        12 => "#SS stack-segment fault",
        13 => "#GP general protection",
        14 => "#PF page fault",
        16 => "#MF x87 floating-point error",
        17 => "#AC alignment check",
        18 => "#MC machine check",
        19 => "#XM SIMD floating-point",
        20 => "#VE virtualization",
        21 => "#CP control protection",
        15 | 22..=31 => "reserved exception",
        IRQ_FIRST..=IRQ_LAST => "hardware interrupt",
        SYSCALL => "system call",
        _ => "unassigned vector",
    }
}
