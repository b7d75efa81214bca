//! Kernel-stack context switch, and the initial stack of a new task.
//!
//! A task that is not running is parked inside [`switch`]: its kernel stack holds, from
//! its saved `esp` upwards, a [`SwitchFrame`] (`eflags`, `edi`, `esi`, `ebx`, `ebp`, return
//! address). Switching back pops it and returns into whatever called `switch`.
//!
//! A new task has never called `switch`, so [`prepare_new_stack`] fakes one:
//!
//! ```text
//! stack_top ->  +------------------------+
//!               | TrapFrame (76 bytes)   |  gs at the lowest address ... user_ss at the top
//!               +------------------------+ <- frame (what trap_return pops)
//!               | return addr = trap_return |
//!               | ebp = 0                |
//!               | ebx = 0                |
//!               | esi = 0                |
//!               | edi = 0                |
//!               | eflags = 0x2 (IF = 0)  |
//!  returned esp ->+----------------------+
//! ```
//!
//! `switch(&mut prev_esp, returned_esp)` then pops the zeros, "returns" to `trap_return`,
//! which pops the frame and `iret`s: to ring 3 when `frame.cs` is `USER_CS` (the new
//! task's LDT must be loaded and TSS `esp0` set to `stack_top` by then). Interrupts stay
//! off until the `iret` loads `frame.eflags`.

use core::arch::naked_asm;
use core::mem::size_of;

use super::cpu;
use super::trap_entry::{trap_return_address, TrapFrame};

/// What [`switch`] leaves on a parked task's stack, lowest address first.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct SwitchFrame {
    pub eflags: u32,
    pub edi: u32,
    pub esi: u32,
    pub ebx: u32,
    pub ebp: u32,
    /// Where `switch` returns to.
    pub return_address: u32,
}

/// Saves the callee-saved registers and `eflags` on the current stack, stores `esp` to
/// `*save_esp`, loads `next_esp` and restores the same set from there, then returns on
/// the other task's stack (into its own call of `switch`, or into `trap_return`).
///
/// The caller usually disables interrupts around it; each side's `eflags`, IF included,
/// travels with its stack.
///
/// # Safety
/// `save_esp` must be writable; `next_esp` must be the value a previous `switch` stored
/// (of a task parked in `switch`) or one returned by [`prepare_new_stack`], with that
/// stack still alive. The next task's LDT, TSS `esp0` and CR3 are the caller's business.
#[unsafe(naked)]
pub unsafe extern "C" fn switch(save_esp: *mut u32, next_esp: u32) {
    naked_asm!(
        // cdecl: 4(%esp) = save_esp, 8(%esp) = next_esp; eax/edx are caller-saved.
        "movl 4(%esp), %eax",
        "movl 8(%esp), %edx",
        "pushl %ebp",
        "pushl %ebx",
        "pushl %esi",
        "pushl %edi",
        "pushfl",
        "movl %esp, (%eax)",
        "movl %edx, %esp",
        "popfl",
        "popl %edi",
        "popl %esi",
        "popl %ebx",
        "popl %ebp",
        "ret",
        options(att_syntax)
    )
}

/// Builds a new task's initial kernel stack below `stack_top` (see the module docs) and
/// returns the `esp` to hand to [`switch`]. The whole `frame` is copied, `user_esp` and
/// `user_ss` included (ignored by the `iret` when `frame.cs` is a ring-0 selector).
///
/// # Safety
/// `[stack_top - 100, stack_top)` must be writable memory owned by the new task (its
/// kernel stack), 4-byte aligned, not in use by the running code.
pub unsafe fn prepare_new_stack(stack_top: u32, frame: &TrapFrame) -> u32 {
    let frame_address = stack_top - size_of::<TrapFrame>() as u32;
    let switch_address = frame_address - size_of::<SwitchFrame>() as u32;
    let switch_frame = SwitchFrame {
        eflags: cpu::EFLAGS_RESERVED_1,
        edi: 0,
        esi: 0,
        ebx: 0,
        ebp: 0,
        return_address: trap_return_address(),
    };
    // SAFETY: the caller guarantees both ranges are the new task's writable, aligned
    // kernel stack and that nothing else uses it.
    unsafe {
        (frame_address as *mut TrapFrame).write(*frame);
        (switch_address as *mut SwitchFrame).write(switch_frame);
    }
    switch_address
}
