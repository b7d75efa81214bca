//! The debugger's `monitor` commands (placeholder until the real commands land).
//!
//! The gdb stub calls [`run`] for every `monitor LINE` with the paging state and the
//! task table of the stopped kernel; whatever is written to `out` reaches gdb's console.

use core::fmt::Write;

/// What a monitor command may look at: the kernel is stopped inside the stub, so these
/// are read without their locks (see `gdb::frozen`); `catch_pagefault` is the stub's
/// `catch pagefault` switch.
pub struct Context<'a> {
    pub mm: &'a mm::Mm<crate::arch::x86::phys::KernelPhys>,
    pub tasks: &'a crate::task::TaskTable,
    pub catch_pagefault: &'a mut bool,
}

/// Runs one monitor command line, writing its output to `out`.
pub fn run(line: &str, ctx: &mut Context<'_>, out: &mut dyn Write) {
    let _ = (line, ctx);
    // A formatting error can only come from the writer, which never fails.
    let _ = writeln!(out, "monitor: not yet implemented");
}
