//! The i386 layer: boot, descriptor tables, traps, context switch, PIC/PIT, serial, crash reports.
//!
//! All of the kernel's `unsafe` lives under this module; the rest of the kernel calls the
//! safe (or narrowly `unsafe`) functions exported here.

pub mod ata;
pub mod boot;
pub mod com1;
pub mod context;
pub mod cpu;
pub mod crash;
pub mod debugger;
pub mod debugreg;
pub mod gdt;
pub mod idt;
mod libc_shims;
pub mod multiboot;
pub mod phys;
pub mod pic;
pub mod pit;
pub mod published;
pub mod qemu_exit;
pub mod selftest;
pub mod serial;
pub mod sync;
pub mod trap_entry;

use core::cell::UnsafeCell;

/// Memory that the CPU itself reads (descriptor tables, TSSs, stacks).
///
/// A plain `static` would be immutable and a `static mut` invites references that alias
/// with the hardware's view; this cell only hands out raw pointers, and every access goes
/// through an `unsafe` block that states why it is exclusive.
#[repr(transparent)]
pub(crate) struct HwCell<T>(UnsafeCell<T>);

// SAFETY: the kernel runs on one CPU; each user of a `HwCell` serialises its accesses
// (boot-time initialisation, or interrupts disabled) and says so at the access.
unsafe impl<T> Sync for HwCell<T> {}

impl<T> HwCell<T> {
    /// Wraps a value.
    pub(crate) const fn new(value: T) -> Self {
        Self(UnsafeCell::new(value))
    }

    /// Raw pointer to the contents (what the hardware is given).
    pub(crate) const fn get(&self) -> *mut T {
        self.0.get()
    }
}

/// A stack as a static: 16-byte aligned so its top is aligned for any calling convention.
#[repr(C, align(16))]
pub(crate) struct Stack<const N: usize>(pub(crate) [u8; N]);

impl<const N: usize> Stack<N> {
    /// A zeroed stack (lives in .bss).
    pub(crate) const fn new() -> Self {
        Self([0; N])
    }
}

/// The top (highest address, exclusive) of a static stack, as a 32-bit linear address.
pub(crate) fn stack_top<const N: usize>(stack: &HwCell<Stack<N>>) -> u32 {
    stack.get() as u32 + N as u32
}
