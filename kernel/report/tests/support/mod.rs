//! The simulated kernel of `mm`'s integration tests (one definition, included from
//! there) and the monitor's view of its task table.
#![allow(dead_code)]

#[path = "../../../mm/tests/support/mod.rs"]
mod sim;

pub use sim::*;

use mm::addr::NR_TASKS;

/// The monitor's view of the task table for a [`SimKernel`]: pid = 100 + slot for user
/// tasks (pid 0 in slot 0), so a test that mixes pids and slots fails.
pub struct Pids(pub Vec<Option<u32>>);

impl report::TaskSlots for Pids {
    fn pid_in_slot(&self, slot: usize) -> Option<u32> {
        self.0.get(slot).copied().flatten()
    }
}

/// The [`Pids`] of `k`'s live tasks.
#[allow(dead_code)] // each test binary compiles this module; not all of them use it
pub fn pids(k: &SimKernel) -> Pids {
    Pids(
        (0..NR_TASKS)
            .map(|s| {
                if s == 0 {
                    Some(0)
                } else {
                    k.is_live(s).then_some(100 + s as u32)
                }
            })
            .collect(),
    )
}

/// The registers of a stop in do_wp_page (values as `monitor cpu` read them in QEMU).
pub const CPU_AT_A_COW_FAULT: report::CpuState = report::CpuState {
    cr0: 0x8000_0011,
    cr2: 0x0bff_fe3c,
    cr3: 0x0021_1000,
    cr4: 0,
    gdtr: report::TableRegister {
        base: 0x0015_72f8,
        limit: 0x2f,
    },
    idtr: report::TableRegister {
        base: 0x0019_6f40,
        limit: 0x7ff,
    },
    ldtr: 0x20,
    tr: 0x18,
};

/// The monitor's answers as the kernel's glue writes them (kernel/kernel/src/monitor):
/// each command's document, emitted as text or JSON, or its error answer.
pub mod answers {
    use std::fmt::{self, Write};

    use mm::check::CheckInput;
    use mm::inject::Injector;
    use mm::memory::Mm;
    use mm::phys::PhysMem;
    use mm::view::PagingView;
    use report::{emit, CommandName, CorruptCommand, FailCommand, FailState, PgdFilter, TaskSlots};

    pub fn help(json: bool, out: &mut dyn Write) -> fmt::Result {
        emit(&report::help(None), json, out)
    }
    pub fn dumppgd<V: PagingView>(
        view: &V,
        tasks: &dyn TaskSlots,
        filter: &PgdFilter,
        json: bool,
        out: &mut dyn Write,
    ) -> fmt::Result {
        match report::DumpPgd::new(view, tasks, filter) {
            Ok(q) => emit(&q.document(), json, out),
            Err(e) => report::error(json, CommandName::DumpPgd, &e, out),
        }
    }
    pub fn dumppt<V: PagingView>(
        view: &V,
        tasks: &dyn TaskSlots,
        index: usize,
        json: bool,
        out: &mut dyn Write,
    ) -> fmt::Result {
        emit(
            &report::DumpPt::new(view, tasks, index).document(),
            json,
            out,
        )
    }
    pub fn walk<V: PagingView>(
        view: &V,
        tasks: &dyn TaskSlots,
        addr: u32,
        task: Option<u32>,
        json: bool,
        out: &mut dyn Write,
    ) -> fmt::Result {
        match report::walk(view, tasks, addr, task) {
            Ok(doc) => emit(&doc, json, out),
            Err(e) => report::error(json, CommandName::Walk, &e, out),
        }
    }
    pub fn showmem<V: PagingView>(
        view: &V,
        tasks: &dyn TaskSlots,
        json: bool,
        out: &mut dyn Write,
    ) -> fmt::Result {
        match report::ShowMem::new(view, tasks) {
            Ok(q) => emit(&q.document(), json, out),
            Err(e) => report::error(json, CommandName::ShowMem, &e, out),
        }
    }
    pub fn checkmm<V: PagingView>(
        view: &V,
        input: &CheckInput<'_>,
        scratch: &mut [u16],
        json: bool,
        out: &mut dyn Write,
    ) -> fmt::Result {
        match report::CheckMm::new(view, input, scratch) {
            Ok(q) => emit(&q.document(), json, out),
            Err(e) => report::error(json, CommandName::CheckMm, &e, out),
        }
    }
    pub fn fail(
        injector: &mut Injector,
        slots: &dyn TaskSlots,
        command: FailCommand,
        json: bool,
        out: &mut dyn Write,
    ) -> fmt::Result {
        match report::apply_fail(injector, slots, command) {
            Ok(changed) => {
                let state = FailState::of(injector);
                emit(
                    &report::Fail::new(state, slots, changed).document(),
                    json,
                    out,
                )
            }
            Err(e) => report::error(json, CommandName::Fail, &e, out),
        }
    }
    pub fn failnth(
        injector: &mut Injector,
        slots: &dyn TaskSlots,
        pid: u32,
        n: Option<u32>,
        json: bool,
        out: &mut dyn Write,
    ) -> fmt::Result {
        match report::failnth(injector, slots, pid, n) {
            Ok(doc) => emit(&doc, json, out),
            Err(e) => report::error(json, CommandName::FailNth, &e, out),
        }
    }
    pub fn corrupt<P: PhysMem>(
        mm: &mut Mm<P>,
        slots: &dyn TaskSlots,
        command: CorruptCommand,
        json: bool,
        out: &mut dyn Write,
    ) -> fmt::Result {
        match report::corrupt(mm, slots, command) {
            Ok(doc) => emit(&doc, json, out),
            Err(e) => report::error(json, CommandName::Corrupt, &e, out),
        }
    }
}
