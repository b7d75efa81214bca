//! TEMPORARY (arch smoke tests only; the lead replaces this file): a minimal trap dispatch.

use core::sync::atomic::{AtomicU32, Ordering};

use crate::arch::x86::gdt::{USER_CS, USER_DS};
use crate::arch::x86::idt::{self, IRQ_BASE, IRQ_COUNT, SYSCALL_VECTOR};
use crate::arch::x86::trap_entry::TrapFrame;
use crate::arch::x86::{crash, pic, qemu_exit};

/// Timer ticks so far.
pub static TICKS: AtomicU32 = AtomicU32::new(0);
/// Timer ticks that interrupted ring 3.
static USER_TICKS: AtomicU32 = AtomicU32::new(0);
/// Which of the smoke user program's system calls have run (1, 2, 3).
static USER_STAGE: AtomicU32 = AtomicU32::new(0);

/// The value the first system call returns, which the user program echoes back in ebx.
const SYSCALL_RETURN_MARK: u32 = 0x55;

/// Called by the trap entry code for every vector.
pub extern "C" fn dispatch(frame: &mut TrapFrame) {
    const IRQ_FIRST: u32 = IRQ_BASE as u32;
    const IRQ_LAST: u32 = (IRQ_BASE + IRQ_COUNT - 1) as u32;
    const SYSCALL: u32 = SYSCALL_VECTOR as u32;
    const GP: u32 = idt::vector::GENERAL_PROTECTION as u32;
    const PF: u32 = idt::vector::PAGE_FAULT as u32;
    match frame.vector {
        IRQ_FIRST..=IRQ_LAST => {
            let irq = (frame.vector - IRQ_FIRST) as u8;
            if pic::check_spurious(irq) {
                return;
            }
            if irq == pic::TIMER_IRQ {
                TICKS.fetch_add(1, Ordering::SeqCst);
                if frame.from_user() {
                    USER_TICKS.fetch_add(1, Ordering::SeqCst);
                }
            }
            pic::eoi(irq);
        }
        SYSCALL => user_syscall(frame),
        GP if frame.from_user() && USER_STAGE.load(Ordering::SeqCst) == 3 => {
            println!("smoke user: #GP at offset 0x4000000: the 64 MiB segment limit is enforced");
            println!("SMOKE PASS user");
            qemu_exit::exit(abi::qemu_exit::PASS);
        }
        PF if frame.from_user() && USER_STAGE.load(Ordering::SeqCst) == 3 => {
            println!(
                "smoke user: #PF at linear {:#x}: the segment limit was NOT enforced (QEMU TCG)",
                crate::arch::x86::cpu::read_cr2()
            );
            println!("SMOKE PASS user");
            qemu_exit::exit(abi::qemu_exit::PASS);
        }
        _ => crash::report_and_exit(frame, "unexpected exception", Some((0, "smoke"))),
    }
}

/// The smoke user program's three system calls (eax = 1, 2, 3), checked in order.
fn user_syscall(frame: &mut TrapFrame) {
    let stage = USER_STAGE.load(Ordering::SeqCst);
    let selectors_ok = frame.from_user()
        && frame.code_selector() == USER_CS
        && frame.user_stack().map(|(ss, _)| ss) == Some(USER_DS);
    if !selectors_ok {
        crash::report_and_exit(frame, "smoke: syscall without user selectors", None);
    }
    match (stage, frame.eax) {
        (0, 1) => {
            println!(
                "smoke user: syscall 1 from cs={:#x} ss:esp={:x?}",
                frame.cs,
                frame.user_stack()
            );
            frame.eax = SYSCALL_RETURN_MARK;
        }
        (1, 2) if frame.ebx == SYSCALL_RETURN_MARK => {
            println!(
                "smoke user: syscall 2, return value came back in ebx; read below the limit ok"
            );
        }
        (3, 4) => {
            println!("smoke user: read at offset 0x4000000 did not fault: the segment limit was NOT enforced (QEMU TCG)");
            println!("SMOKE PASS user");
            qemu_exit::exit(abi::qemu_exit::PASS);
        }
        (2, 3) | (3, 3) => {
            // Returns how many timer ticks hit ring 3; the program spins until one has.
            frame.eax = USER_TICKS.load(Ordering::SeqCst);
            if frame.eax != 0 && stage == 2 {
                println!("smoke user: {} timer tick(s) interrupted ring 3", frame.eax);
            }
        }
        _ => crash::report_and_exit(frame, "smoke: unexpected system call", None),
    }
    if stage < 3 && !(stage == 2 && frame.eax == 0) {
        USER_STAGE.store(stage + 1, Ordering::SeqCst);
    }
}
