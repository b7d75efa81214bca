//! The ring-3 runtime every user program links: system calls, console output, startup, panic handling and memory helpers.
//!
//! Each program runs in its own 64 MiB segment (Linux 0.11's LDT segments), linked at
//! address 0 by `link.ld`; the kernel starts it at `_start` with `esp` at
//! [`abi::USER_STACK_TOP`] and no arguments on the stack (they come from
//! [`getarg`]). A program is a `fn main() -> i32` declared with [`entry!`]:
//!
//! ```ignore
//! #![cfg_attr(target_arch = "x86", no_std)]
//! #![no_main]
//! #![cfg(target_arch = "x86")] // empty on the host, as this crate (README "Tests")
//! user::entry!(main);
//! fn main() -> i32 {
//!     user::say!("hello");
//!     0
//! }
//! ```
// Built for i586-unknown-linux-gnu only; on any other target (the host's `cargo clippy
// --workspace`) the crate is empty (README "Tests": lints), as its 32-bit asm cannot build there.
#![no_std]
#![cfg(target_arch = "x86")]

pub mod check;
pub mod console;
pub mod mem;
pub mod raw;
pub mod rt;
mod sys;

pub use abi;
pub use sys::*;

/// Declares the program's `fn main() -> i32` and its `_start`: `_start` calls it with
/// the program name set for [`say!`] and exits with its return value.
#[macro_export]
macro_rules! entry {
    ($main:path) => {
        /// Called by `_start`: runs `main` under the runtime.
        extern "C" fn __user_main() -> i32 {
            $crate::rt::start(env!("CARGO_BIN_NAME"), $main)
        }

        // `_start` in its own section, which link.ld places first (address 0). The
        // frame pointer is cleared so a debugger's backtrace stops here; `main`'s
        // value goes to `exit` in case `rt::start` ever returns.
        core::arch::global_asm!(
            ".pushsection .text._start, \"ax\", @progbits",
            ".globl _start",
            ".type _start, @function",
            "_start:",
            "xor ebp, ebp",
            "call {main}",
            "mov ebx, eax",
            "mov eax, {exit}",
            "int 0x80",
            "ud2",
            ".size _start, . - _start",
            ".popsection",
            main = sym __user_main,
            exit = const $crate::abi::nr::EXIT,
        );
    };
}
