//! Crash reports: an unexpected exception, a panic, or a double fault, then QEMU exits.
//!
//! Printing goes through [`crate::console::crash_writer`], which bypasses the console
//! lock (the crashed code may hold it). A crash while reporting a crash exits at once.

use core::arch::naked_asm;
use core::fmt::{self, Write};
use core::sync::atomic::{AtomicBool, Ordering};

use super::trap_entry::TrapFrame;
use super::{cpu, gdt, idt, qemu_exit};
use crate::console;

static CRASHING: AtomicBool = AtomicBool::new(false);

/// Page-fault error code bits.
mod page_fault {
    /// 0: the page was not present; 1: a protection violation on a present page.
    pub const PROTECTION: u32 = 1 << 0;
    /// The access was a write.
    pub const WRITE: u32 = 1 << 1;
    /// The access came from ring 3.
    pub const USER: u32 = 1 << 2;
    /// A reserved bit was set in a paging entry.
    pub const RESERVED_BIT: u32 = 1 << 3;
    /// The access was an instruction fetch.
    pub const INSTRUCTION_FETCH: u32 = 1 << 4;
}

/// Selector error code bits (#TS, #NP, #SS, #GP).
mod selector_error {
    /// The fault happened while delivering an external event.
    pub const EXTERNAL: u32 = 1 << 0;
    /// The index is an IDT vector.
    pub const IDT: u32 = 1 << 1;
    /// The index is in the LDT (when not IDT).
    pub const LDT: u32 = 1 << 2;
    /// The index starts at bit 3.
    pub const INDEX_SHIFT: u32 = 3;
}

/// Marks the kernel as crashing; returns `false` if it already was (a nested crash: the
/// caller should exit at once rather than print through a broken state again).
pub fn enter_crash() -> bool {
    cpu::disable_interrupts();
    !CRASHING.swap(true, Ordering::SeqCst)
}

/// Prints a report of `frame` (an exception the kernel cannot handle) and exits QEMU
/// with `abi::qemu_exit::CRASH`. `current` is the running task `(pid, program name)`.
pub fn report_and_exit(frame: &TrapFrame, reason: &str, current: Option<(u32, &str)>) -> ! {
    if enter_crash() {
        // A formatting error cannot be reported anywhere better: ignore it.
        let _ = write_report(&mut console::crash_writer(), frame, reason, current);
    }
    qemu_exit::exit(abi::qemu_exit::CRASH)
}

fn write_report(
    out: &mut impl Write,
    frame: &TrapFrame,
    reason: &str,
    current: Option<(u32, &str)>,
) -> fmt::Result {
    writeln!(out, "\nKERNEL CRASH: {reason}")?;
    write!(
        out,
        "  {} (vector {:#04x}), error code {:#010x}",
        idt::vector_name(frame.vector),
        frame.vector,
        frame.error_code
    )?;
    describe_error_code(out, frame.vector, frame.error_code)?;
    writeln!(out)?;
    writeln!(
        out,
        "  cr0={:08x} cr2={:08x} cr3={:08x}",
        cpu::read_cr0(),
        cpu::read_cr2(),
        cpu::read_cr3()
    )?;
    let (ss, esp) = frame.interrupted_stack();
    writeln!(
        out,
        "  eax={:08x} ebx={:08x} ecx={:08x} edx={:08x}",
        frame.eax, frame.ebx, frame.ecx, frame.edx
    )?;
    writeln!(
        out,
        "  esi={:08x} edi={:08x} ebp={:08x} esp={:08x}",
        frame.esi, frame.edi, frame.ebp, esp
    )?;
    writeln!(
        out,
        "  ds={:04x} es={:04x} fs={:04x} gs={:04x}",
        frame.ds & 0xFFFF,
        frame.es & 0xFFFF,
        frame.fs & 0xFFFF,
        frame.gs & 0xFFFF
    )?;
    writeln!(
        out,
        "  cs:eip={:04x}:{:08x} eflags={:08x} ({})",
        frame.code_selector(),
        frame.eip,
        frame.eflags,
        if frame.from_user() {
            "user mode"
        } else {
            "kernel mode"
        }
    )?;
    if frame.from_user() {
        writeln!(out, "  ss:esp={ss:04x}:{esp:08x} (user stack)")?;
    } else {
        writeln!(out, "  kernel stack: esp0={:08x}", gdt::kernel_stack())?;
    }
    match current {
        Some((pid, name)) => writeln!(out, "  current task: pid {pid} ({name})"),
        None => writeln!(out, "  current task: none"),
    }
}

/// Decodes the error code of #PF and of the selector-reporting exceptions.
fn describe_error_code(out: &mut impl Write, vector: u32, code: u32) -> fmt::Result {
    const PAGE_FAULT: u32 = idt::vector::PAGE_FAULT as u32;
    const INVALID_TSS: u32 = idt::vector::INVALID_TSS as u32;
    const GENERAL_PROTECTION: u32 = idt::vector::GENERAL_PROTECTION as u32;
    match vector {
        PAGE_FAULT => {
            let cause = if code & page_fault::PROTECTION != 0 {
                "protection violation"
            } else {
                "not present"
            };
            let access = if code & page_fault::INSTRUCTION_FETCH != 0 {
                "fetch"
            } else if code & page_fault::WRITE != 0 {
                "write"
            } else {
                "read"
            };
            let mode = if code & page_fault::USER != 0 {
                "user"
            } else {
                "kernel"
            };
            write!(out, ": {cause}, {access}, {mode} mode")?;
            if code & page_fault::RESERVED_BIT != 0 {
                write!(out, ", reserved bit set")?;
            }
            Ok(())
        }
        INVALID_TSS..=GENERAL_PROTECTION => {
            if code == 0 {
                return write!(out, ": no selector");
            }
            let index = code >> selector_error::INDEX_SHIFT;
            if code & selector_error::IDT != 0 {
                write!(out, ": IDT vector {index:#04x}")?;
            } else {
                let table = if code & selector_error::LDT != 0 {
                    "LDT"
                } else {
                    "GDT"
                };
                write!(
                    out,
                    ": {table} index {index} (selector {:#06x})",
                    code & !0x3
                )?;
            }
            if code & selector_error::EXTERNAL != 0 {
                write!(out, ", during an external event")?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Where the double-fault task starts (its TSS `eip`). Runs on its own stack with a
/// fresh state; the error code the CPU pushed for a real #DF sits unused on that stack.
#[unsafe(naked)]
pub(crate) extern "C" fn double_fault_task_entry() -> ! {
    naked_asm!(
        // A zero frame pointer ends backtraces here; the handler never returns.
        "xorl %ebp, %ebp",
        "call {report}",
        "ud2",
        report = sym double_fault_report,
        options(att_syntax)
    )
}

/// Reports the state the CPU saved in the main TSS when it switched to this task.
extern "C" fn double_fault_report() -> ! {
    if enter_crash() {
        let _ = write_double_fault(&mut console::crash_writer());
    }
    qemu_exit::exit(abi::qemu_exit::CRASH)
}

fn write_double_fault(out: &mut impl Write) -> fmt::Result {
    let state = gdt::interrupted_task_state();
    // Copy the packed fields out before formatting (no references into a packed struct).
    let (eip, esp, ebp, eflags) = (state.eip, state.esp, state.ebp, state.eflags);
    let (eax, ebx, ecx, edx, esi, edi) = (
        state.eax, state.ebx, state.ecx, state.edx, state.esi, state.edi,
    );
    let (cs, ss, ds, es, fs, gs, ldtr) = (
        state.cs, state.ss, state.ds, state.es, state.fs, state.gs, state.ldtr,
    );
    writeln!(
        out,
        "\nKERNEL CRASH: double fault (kernel stack overflow or broken esp?)"
    )?;
    writeln!(
        out,
        "  state saved in the TSS when the fault could not be delivered:"
    )?;
    writeln!(
        out,
        "  cs:eip={cs:04x}:{eip:08x} ss:esp={ss:04x}:{esp:08x} ebp={ebp:08x}"
    )?;
    writeln!(
        out,
        "  eax={eax:08x} ebx={ebx:08x} ecx={ecx:08x} edx={edx:08x}"
    )?;
    writeln!(out, "  esi={esi:08x} edi={edi:08x} eflags={eflags:08x}")?;
    writeln!(
        out,
        "  ds={ds:04x} es={es:04x} fs={fs:04x} gs={gs:04x} ldtr={ldtr:04x}"
    )?;
    writeln!(
        out,
        "  cr2={:08x} (last page-fault address) cr3={:08x} esp0={:08x}",
        cpu::read_cr2(),
        cpu::read_cr3(),
        gdt::kernel_stack()
    )
}
