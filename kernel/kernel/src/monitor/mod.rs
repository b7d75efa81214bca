//! The debugger's `monitor` commands: parses gdb's `monitor LINE` and answers in text or JSON.
//!
//! The gdb stub calls [`run`] with the paging state and the task table of the stopped
//! kernel. The parser and every document (its computation, text and JSON) are the pure
//! `report` crate (host-tested over a simulated RAM); this module only gathers what only
//! the kernel has: the paging state, the task table and the fault log as `report`'s plain
//! inputs, the stub's `catch pagefault` switch, and `checkmm`'s scratch. Reads take no
//! lock (the stopped code may hold them); changes take the paging or injector lock with a
//! try-lock and answer Busy when it is held. Nothing here allocates; see docs/monitor.md
//! for every command.

mod faults;
mod tasks;

use core::fmt::{self, Write};

use mm::addr::{Frame, NR_TASKS};
use mm::check::SCRATCH_LEN;
use mm::CheckInput;
use report::{emit, Command, CommandName, MonitorError, Request};
use spin::Mutex;

use crate::arch::x86::debugger::Stopped;
use crate::paging::Paging;
use crate::task::TaskTable;
use faults::KernelFaultLog;
use tasks::KernelTasks;

/// What a monitor command may look at, and how it may change the kernel: the kernel is
/// stopped inside the stub (`stopped` proves it), so the paging state and the task table
/// are read without their locks (see `gdb::frozen`), and changed (`fail`, `failnth`,
/// `corrupt`) only through their locks (the injector's, the paging lock), taken with a try-lock: when the stopped code
/// holds it, the command answers Busy instead of writing under the holder's `&mut`.
/// `catch_pagefault` is the stub's `catch pagefault` switch.
pub struct Context<'a> {
    pub stopped: &'a Stopped,
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
    let stopped = ctx.stopped;
    let table = crate::task::tasks_while_stopped(stopped);
    let tasks = KernelTasks(table);
    let refuse = |name: CommandName, e: &dyn report::Failure, out: &mut dyn Write| {
        report::error(json, name, e, out)
    };
    let busy = |name: CommandName, what: &'static str, out: &mut dyn Write| {
        report::error(json, name, &MonitorError::Busy { what }, out)
    };
    // Changes go through the locks (a try-lock: Busy when the stopped code holds one), and
    // no reference from the lock-free view is used while one is held.
    let shows_only = matches!(
        command,
        Command::Fail(report::FailCommand::Show) | Command::FailNth { n: None, .. }
    );
    match command {
        Command::Fail(_) | Command::FailNth { .. } if !shows_only => {
            let Some(mut injector) = crate::paging::try_injector() else {
                return busy(
                    command.name(),
                    "failure-injection state (stopped inside a decision; continue past it)",
                    out,
                );
            };
            return injection(&mut injector, &tasks, command, json, out);
        }
        Command::Corrupt(c) => {
            let Some(mut paging) = crate::paging::try_paging() else {
                return busy(
                    CommandName::Corrupt,
                    "paging state (the stopped code holds its lock; continue past it)",
                    out,
                );
            };
            return match report::corrupt(&mut paging.mm, &tasks, c) {
                Ok(doc) => emit(&doc, json, out),
                Err(e) => refuse(CommandName::Corrupt, &e, out),
            };
        }
        _ => {}
    }
    let paging =
        crate::paging::paging_while_stopped(stopped).expect("the stub starts after paging::init");
    let mm = &paging.mm;
    match command {
        Command::Help => emit(&report::help(None), json, out),
        Command::DumpPgd(filter) => match report::DumpPgd::new(mm, &tasks, &filter) {
            Ok(q) => emit(&q.document(), json, out),
            Err(e) => refuse(CommandName::DumpPgd, &e, out),
        },
        Command::DumpPt { index } => emit(
            &report::DumpPt::new(mm, &tasks, index).document(),
            json,
            out,
        ),
        Command::Walk { addr, task } => match report::walk(mm, &tasks, addr, task) {
            Ok(doc) => emit(&doc, json, out),
            Err(e) => refuse(CommandName::Walk, &e, out),
        },
        Command::ShowMem => match report::ShowMem::new(mm, &tasks) {
            Ok(q) => emit(&q.document(), json, out),
            Err(e) => refuse(CommandName::ShowMem, &e, out),
        },
        Command::CheckMm => checkmm(paging, table, json, out),
        Command::Tasks => emit(&report::Tasks::new(mm, &tasks).document(), json, out),
        Command::Faults => match report::Faults::new(&KernelFaultLog) {
            Ok(q) => emit(&q.document(), json, out),
            Err(e) => refuse(CommandName::Faults, &e, out),
        },
        Command::Catch { pagefault } => {
            emit(&report::catch(ctx.catch_pagefault, pagefault), json, out)
        }
        // Showing the failure-injection state: a copy of the lock-free view (the answer
        // takes it `&mut`; a show changes nothing).
        Command::Fail(_) | Command::FailNth { .. } => injection(
            &mut injector_view(stopped).clone(),
            &tasks,
            command,
            json,
            out,
        ),
        Command::Corrupt(_) => unreachable!("corrupt always changes the state"),
        Command::Cpu => report::cpu(&crate::arch::x86::cpu::system_registers(), json, out),
    }
}

/// `fail` and `failnth`: applied to `injector`, answered with its state.
fn injection(
    injector: &mut mm::inject::Injector,
    tasks: &KernelTasks<'_>,
    command: Command,
    json: bool,
    out: &mut dyn Write,
) -> fmt::Result {
    match command {
        Command::Fail(c) => match report::apply_fail(injector, tasks, c) {
            Ok(changed) => {
                let state = report::FailState::of(injector);
                emit(
                    &report::Fail::new(state, tasks, changed).document(),
                    json,
                    out,
                )
            }
            Err(e) => report::error(json, CommandName::Fail, &e, out),
        },
        Command::FailNth { pid, n } => match report::failnth(injector, tasks, pid, n) {
            Ok(doc) => emit(&doc, json, out),
            Err(e) => report::error(json, CommandName::FailNth, &e, out),
        },
        _ => unreachable!("only the failure-injection commands"),
    }
}

/// The failure-injection state as the stopped kernel left it.
fn injector_view(stopped: &Stopped) -> &mm::inject::Injector {
    crate::paging::injector_while_stopped(stopped).expect("the stub starts after paging::init")
}

/// `checkmm` with the kernel's inputs, as `kcheck::run` gathers them.
fn checkmm(paging: &Paging, tasks: &TaskTable, json: bool, out: &mut dyn Write) -> fmt::Result {
    let Some(mut scratch) = SCRATCH.try_lock() else {
        let busy = MonitorError::Busy {
            what: "checkmm scratch",
        };
        return report::error(json, CommandName::CheckMm, &busy, out);
    };
    let mut pages = [Frame::default(); NR_TASKS];
    let nr_pages = tasks.task_pages(&mut pages);
    let input = CheckInput {
        live_slots: tasks.live_slot_mask(),
        kernel_refs: &pages[..nr_pages],
    };
    match report::CheckMm::new(&paging.mm, &input, &mut scratch[..]) {
        Ok(q) => emit(&q.document(), json, out),
        Err(e) => report::error(json, CommandName::CheckMm, &e, out),
    }
}
