//! The debugger's `monitor` commands: parses gdb's `monitor LINE` and answers in text or JSON.
//!
//! The gdb stub calls [`run`] with the paging state and the task table of the stopped
//! kernel. The paging views, the parser, the help and the error answers are the pure
//! `report` (host-tested over a simulated RAM); this module adds what only the kernel
//! knows: the task table (`tasks`), the fault log (`faults`), the stub's `catch pagefault`
//! switch, and the inputs of `checkmm`. Nothing here takes the paging or task-table locks
//! (the stopped code may hold them) or allocates; see docs/monitor.md for every command.

mod faults;
mod tasks;

use core::fmt::{self, Write};

use mm::addr::{Frame, NR_TASKS};
use mm::check::SCRATCH_LEN;
use mm::CheckInput;
use report::{self, Command, CommandName, Json, MonitorError, Request, TaskSlots};
use spin::Mutex;

use crate::task::TaskTable;

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

/// The task table as `report` sees it: which pid lives in which slot.
struct Slots<'a>(&'a TaskTable);

impl TaskSlots for Slots<'_> {
    fn pid_in_slot(&self, slot: usize) -> Option<u32> {
        self.0.slots.get(slot)?.as_ref().map(|t| t.pid)
    }
}

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
    let slots = Slots(ctx.tasks);
    match command {
        Command::Help => report::help(json, None, out),
        Command::DumpPgd(filter) => report::dumppgd(ctx.mm, &slots, &filter, json, out),
        Command::DumpPt { index } => report::dumppt(ctx.mm, &slots, index, json, out),
        Command::Walk { addr, task } => report::walk(ctx.mm, &slots, addr, task, json, out),
        Command::ShowMem => report::showmem(ctx.mm, &slots, json, out),
        Command::CheckMm => checkmm(ctx, json, out),
        Command::Tasks => tasks::render(ctx.mm, ctx.tasks, json, out),
        Command::Faults => faults::render(json, out),
        Command::Catch { pagefault } => catch(ctx, pagefault, json, out),
        Command::Fail(command) => report::inject::fail(ctx.policy, &slots, command, json, out),
        Command::FailNth { pid, n } => {
            report::inject::failnth(ctx.policy, &slots, pid, n, json, out)
        }
        Command::Corrupt(command) => report::inject::corrupt(ctx.mm, &slots, command, json, out),
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
    report::checkmm(ctx.mm, &input, &mut scratch[..], json, out)
}

/// `catch [pagefault [on|off]]`: sets or shows the stub's switch.
fn catch(
    ctx: &mut Context<'_>,
    setting: Option<bool>,
    json: bool,
    out: &mut dyn Write,
) -> fmt::Result {
    let previous = *ctx.catch_pagefault;
    if let Some(on) = setting {
        *ctx.catch_pagefault = on;
    }
    let now = *ctx.catch_pagefault;
    let word = |on: bool| if on { "on" } else { "off" };
    if json {
        let mut j = Json::new(out);
        j.begin_document(CommandName::Catch)?;
        j.field_bool("pagefault", now)?;
        j.field_bool("previous", previous)?;
        j.field_bool("changed", now != previous)?;
        return j.end_document();
    }
    match setting {
        None => writeln!(out, "catch pagefault: {}", word(now))?,
        Some(_) => writeln!(
            out,
            "catch pagefault: {} (was {})",
            word(now),
            word(previous)
        )?,
    }
    if now {
        writeln!(
            out,
            "every page fault stops into gdb before do_no_page/do_wp_page handles it"
        )?;
    }
    Ok(())
}
