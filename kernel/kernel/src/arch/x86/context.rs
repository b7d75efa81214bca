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
use core::sync::atomic::{AtomicU32, Ordering};

use mm::addr::{Frame, NR_TASKS, PAGE_SIZE};

use super::cpu;
use super::phys::KernelPhys;
use super::trap_entry::{trap_return_address, TrapFrame};

/// Each slot's saved kernel `esp` while it is switched out: written only by [`switch`]
/// and [`prepare_task_stack`], so [`switch_to`] only ever loads an `esp` that one of them
/// stored; 0 when the slot has no parked stack ([`forget_stack`]).
static SAVED_ESP: [AtomicU32; NR_TASKS] = [const { AtomicU32::new(0) }; NR_TASKS];

/// The kernel `esp` slot `slot` saved when it was last switched out (its `SwitchFrame`),
/// 0 if none.
pub fn saved_esp(slot: usize) -> u32 {
    SAVED_ESP[slot].load(Ordering::Relaxed)
}

/// Switches from the running task (slot `prev`) to the task parked in slot `next`; returns
/// when `prev` is switched back to. The next task's LDT, TSS `esp0` and CR3 are the
/// caller's business. Panics if `next` has no parked stack.
pub fn switch_to(prev: usize, next: usize) {
    let next_esp = SAVED_ESP[next].load(Ordering::Relaxed);
    assert!(next_esp != 0, "switch to slot {next}, which has no stack");
    // SAFETY: `next_esp` was stored by `switch` (a task parked there) or by
    // `prepare_task_stack`, and the stack is alive: a stack is freed only after
    // `forget_stack` cleared its entry (checked above). `SAVED_ESP[prev]` is writable.
    unsafe { switch(SAVED_ESP[prev].as_ptr(), next_esp) }
}

/// Forgets slot `slot`'s parked stack (its task page is about to be freed): switching to
/// it afterwards stops the kernel with a message instead of running on a freed page.
pub fn forget_stack(slot: usize) {
    SAVED_ESP[slot].store(0, Ordering::Relaxed);
}

/// Builds the initial kernel stack of the task in slot `slot` at the top of its fresh task
/// page (see the module docs) and parks it there, so that [`switch_to`] starts it by
/// "returning" into `trap_return` with `frame`. `&mut KernelPhys` is the exclusive right
/// to write physical memory that no Rust object covers; the page must be a paging frame
/// (at or above `start_mem`) and not the running stack's, which is checked.
pub fn prepare_task_stack(
    phys: &mut KernelPhys,
    start_mem: u32,
    slot: usize,
    task_page: Frame,
    frame: &TrapFrame,
) {
    let here = core::ptr::addr_of!(slot) as u32;
    assert!(
        task_page.as_u32() >= start_mem && Frame::containing(here) != task_page,
        "a task stack must be a fresh paging frame ({task_page})"
    );
    phys.check_frame(task_page);
    let stack_top = task_page.as_u32() + PAGE_SIZE;
    // SAFETY: the task page is a paging frame inside the identity map (checked): never a
    // Rust object, and not the running stack (checked); `&mut KernelPhys` excludes any
    // other writer; the top of a page is 4-byte aligned.
    let esp = unsafe { prepare_new_stack(stack_top, frame) };
    SAVED_ESP[slot].store(esp, Ordering::Relaxed);
}

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
unsafe extern "C" fn switch(save_esp: *mut u32, next_esp: u32) {
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
unsafe fn prepare_new_stack(stack_top: u32, frame: &TrapFrame) -> u32 {
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
