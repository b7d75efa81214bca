//! Architecture layer: everything that touches the CPU or devices directly (i386 only).

// The layer is the kernel's whole interface to the hardware; a given kernel build uses
// only part of it (the smoke tests less than the real kernel), so unused items are fine.
#[allow(dead_code)]
pub mod x86;
