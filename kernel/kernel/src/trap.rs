//! Trap dispatch: every vector the entry code saves a frame for lands here and goes to
//! its handler (0.11 spreads this over `traps.c`, `page.s`, `system_call.s`).

use crate::arch::x86::idt::{self, IRQ_BASE, IRQ_COUNT, SYSCALL_VECTOR};
use crate::arch::x86::pic;
use crate::arch::x86::trap_entry::TrapFrame;
use crate::fault;
use crate::syscall;
use crate::task::{exit, sched};

/// Called by the trap entry code for every vector, with interrupts off.
pub extern "C" fn dispatch(frame: &mut TrapFrame) {
    const IRQ_FIRST: u32 = IRQ_BASE as u32;
    const IRQ_LAST: u32 = (IRQ_BASE + IRQ_COUNT - 1) as u32;
    const SYSCALL: u32 = SYSCALL_VECTOR as u32;
    const PAGE_FAULT: u32 = idt::vector::PAGE_FAULT as u32;
    const DEBUG: u32 = idt::vector::DEBUG as u32;
    const BREAKPOINT: u32 = idt::vector::BREAKPOINT as u32;
    // The gdb stub's breakpoints, watchpoints and steps; any other #DB/#BP as before.
    let for_debugger =
        matches!(frame.vector, DEBUG | BREAKPOINT) && crate::gdb::on_debug_exception(frame);
    match frame.vector {
        _ if for_debugger => {}
        PAGE_FAULT => fault::page_fault(frame),
        0..=31 if frame.from_user() => fault::user_exception(frame),
        0..=31 => fault::crash_in_kernel(frame, "exception in kernel mode"),
        IRQ_FIRST..=IRQ_LAST => {
            let irq = (frame.vector - IRQ_FIRST) as u8;
            if pic::check_spurious(irq) {
                return;
            }
            // Acknowledge first: the timer may switch to another task before returning.
            pic::eoi(irq);
            if irq == pic::TIMER_IRQ {
                sched::timer_tick(frame);
            } else if irq == pic::COM1_IRQ {
                crate::gdb::on_uart_interrupt(frame);
            }
        }
        SYSCALL if frame.from_user() => syscall::dispatch(frame),
        _ if frame.from_user() => fault::user_exception(frame),
        _ => fault::crash_in_kernel(frame, "unexpected interrupt vector in kernel mode"),
    }
    if frame.from_user() {
        crate::task::check_stack_canary();
        exit::exit_if_killed();
    }
}
