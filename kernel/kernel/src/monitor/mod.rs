//! The debugger's `monitor` commands: parses gdb's `monitor LINE` and answers in text or JSON.
//!
//! The gdb stub calls [`run`] with the paging state and the task table of the stopped
//! kernel. The parser and every document (its computation, text and JSON) are the pure
//! `report` crate (host-tested over a simulated RAM); this module only gathers what only
//! the kernel has: the paging state, the task table and the fault log as `report`'s plain
//! inputs, the stub's `catch pagefault` switch, and `checkmm`'s scratch. Nothing here
//! takes the paging or task-table locks (the stopped code may hold them) or allocates;
//! see docs/monitor.md for every command.

mod faults;
mod tasks;

use core::fmt::{self, Write};

use mm::addr::{Frame, NR_TASKS};
use mm::check::SCRATCH_LEN;
use mm::CheckInput;
use report::{emit, Command, CommandName, MonitorError, Request};
use spin::Mutex;

use faults::KernelFaultLog;
use tasks::KernelTasks;

/// What a monitor command may look at (and, for `fail`, `failnth` and `corrupt`,
/// change): the kernel is stopped inside the stub, so these are reached without their
/// locks (see `gdb::frozen`); `catch_pagefault` is the stub's `catch pagefault` switch.
pub struct Context<'a> {
    pub mm: &'a mut mm::Mm<crate::arch::x86::phys::KernelPhys>,
    /// Failure injection (`fail`, `failnth`).
    pub policy: &'a mut mm::inject::Injector,
    pub tasks: &'a crate::task::TaskTable,
    pub catch_pagefault: &'a mut bool,
}

/// `checkmm`'s scratch: one count per frame and one bit per swap slot. The monitor's own
/// (not kcheck's), so `monitor checkmm` works even when gdb stopped the kernel inside
/// `kcheck::run` holding that one.
static SCRATCH: Mutex<[u16; SCRATCH_LEN]> = Mutex::new([0; SCRATCH_LEN]);

/// Runs one monitor command line, writing its output to `out`. Never panics on any line.
pub fn run(line: &str, ctx: &mut Context<'_>, out: &mut dyn Write) {
    // A formatting error can only come from the writer (the stub's packet buffer); the
    // answer is then cut short, and there is no one else to tell.
    let _ = answer(line, ctx, out);
}

fn answer(line: &str, ctx: &mut Context<'_>, out: &mut dyn Write) -> fmt::Result {
    let Request { command, json } = match report::parse(line) {
        Ok(request) => request,
        Err(failure) => return report::parse_failure(&failure, out),
    };
    let tasks = KernelTasks(ctx.tasks);
    let refuse = |name: CommandName, e: &dyn report::Failure, out: &mut dyn Write| {
        report::error(json, name, e, out)
    };
    match command {
        Command::Help => emit(&report::help(None), json, out),
        Command::DumpPgd(filter) => match report::DumpPgd::new(&*ctx.mm, &tasks, &filter) {
            Ok(q) => emit(&q.document(), json, out),
            Err(e) => refuse(CommandName::DumpPgd, &e, out),
        },
        Command::DumpPt { index } => emit(
            &report::DumpPt::new(&*ctx.mm, &tasks, index).document(),
            json,
            out,
        ),
        Command::Walk { addr, task } => match report::walk(&*ctx.mm, &tasks, addr, task) {
            Ok(doc) => emit(&doc, json, out),
            Err(e) => refuse(CommandName::Walk, &e, out),
        },
        Command::ShowMem => match report::ShowMem::new(&*ctx.mm, &tasks) {
            Ok(q) => emit(&q.document(), json, out),
            Err(e) => refuse(CommandName::ShowMem, &e, out),
        },
        Command::CheckMm => checkmm(ctx, json, out),
        Command::Tasks => emit(&report::Tasks::new(&*ctx.mm, &tasks).document(), json, out),
        Command::Faults => match report::Faults::new(&KernelFaultLog) {
            Ok(q) => emit(&q.document(), json, out),
            Err(e) => refuse(CommandName::Faults, &e, out),
        },
        Command::Catch { pagefault } => {
            emit(&report::catch(ctx.catch_pagefault, pagefault), json, out)
        }
        Command::Fail(command) => match report::apply_fail(ctx.policy, &tasks, command) {
            Ok(changed) => {
                let state = report::FailState::of(ctx.policy);
                emit(
                    &report::Fail::new(state, &tasks, changed).document(),
                    json,
                    out,
                )
            }
            Err(e) => refuse(CommandName::Fail, &e, out),
        },
        Command::FailNth { pid, n } => match report::failnth(ctx.policy, &tasks, pid, n) {
            Ok(doc) => emit(&doc, json, out),
            Err(e) => refuse(CommandName::FailNth, &e, out),
        },
        Command::Corrupt(command) => match report::corrupt(ctx.mm, &tasks, command) {
            Ok(doc) => emit(&doc, json, out),
            Err(e) => refuse(CommandName::Corrupt, &e, out),
        },
        Command::Cpu => report::cpu(&crate::arch::x86::cpu::system_registers(), json, out),
    }
}

/// `checkmm` with the kernel's inputs, as `kcheck::run` gathers them.
fn checkmm(ctx: &Context<'_>, json: bool, out: &mut dyn Write) -> fmt::Result {
    let Some(mut scratch) = SCRATCH.try_lock() else {
        let busy = MonitorError::Busy {
            what: "checkmm scratch",
        };
        return report::error(json, CommandName::CheckMm, &busy, out);
    };
    let mut pages = [Frame::default(); NR_TASKS];
    let nr_pages = ctx.tasks.task_pages(&mut pages);
    let input = CheckInput {
        live_slots: ctx.tasks.live_slot_mask(),
        kernel_refs: &pages[..nr_pages],
    };
    match report::CheckMm::new(&*ctx.mm, &input, &mut scratch[..]) {
        Ok(q) => emit(&q.document(), json, out),
        Err(e) => report::error(json, CommandName::CheckMm, &e, out),
    }
}
