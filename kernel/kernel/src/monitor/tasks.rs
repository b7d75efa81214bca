//! `monitor tasks`: every task with its state, slot, program, pages, parent and faults.

use core::fmt::{self, Write};

use abi::FaultCounts;
use mm::Mm;
use report::{self, CommandName, Json};

use crate::arch::x86::phys::KernelPhys;
use crate::task::{self, Task, TaskTable};

/// The fault counts of a task, by outcome, as (JSON key, value).
fn fault_fields(f: &FaultCounts) -> [(&'static str, u32); 6] {
    [
        ("zero_page", f.demand_zero),
        ("loaded", f.loaded),
        ("shared", f.shared),
        ("cow_copied", f.cow_copied),
        ("cow_made_writable", f.cow_made_writable),
        ("swapped_in", f.swapped_in),
    ]
}

/// The pid of a task's parent (task 0 has none).
fn parent_pid(tasks: &TaskTable, slot: usize, t: &Task) -> Option<u32> {
    if slot == 0 {
        return None;
    }
    tasks
        .slots
        .get(t.parent)
        .and_then(|p| p.as_ref())
        .map(|p| p.pid)
}

/// Renders `tasks`. Task 0's pages are the kernel's identity map.
pub fn render(
    mm: &Mm<KernelPhys>,
    tasks: &TaskTable,
    json: bool,
    out: &mut dyn Write,
) -> fmt::Result {
    let current = task::current();
    let all = || {
        tasks
            .slots
            .iter()
            .enumerate()
            .filter_map(|(s, t)| t.as_ref().map(|t| (s, t)))
    };

    if json {
        let mut j = Json::new(out);
        j.begin_document(CommandName::Tasks)?;
        j.field_uint("current_slot", current as u64)?;
        j.key("tasks")?;
        j.begin_array()?;
        for (slot, t) in all() {
            let usage = mm.slot_usage(slot);
            let (start, last) = report::slot_range(slot);
            j.begin_object()?;
            j.field_uint("pid", u64::from(t.pid))?;
            j.field_opt_uint("parent_pid", parent_pid(tasks, slot, t).map(u64::from))?;
            j.field_str("state", t.state.name())?;
            j.field_bool("current", slot == current)?;
            j.field_uint("slot", slot as u64)?;
            j.field_hex("start", start)?;
            j.field_hex("last", last)?;
            j.field_str("program", t.name.as_str())?;
            j.field_hex("end_code", t.end_code)?;
            j.field_hex("end_data", t.end_data)?;
            j.field_hex("brk", t.brk)?;
            j.field_uint("pages", u64::from(usage.pages))?;
            j.field_uint("shared_pages", u64::from(usage.shared_pages))?;
            j.field_uint("page_tables", u64::from(usage.page_tables))?;
            j.field_uint("swapped", u64::from(usage.swapped))?;
            j.field_opt_uint("killed_by", t.killed.map(u64::from))?;
            j.key("faults")?;
            j.begin_object()?;
            for (key, n) in fault_fields(&t.faults) {
                j.field_uint(key, u64::from(n))?;
            }
            j.end_object()?;
            j.end_object()?;
        }
        j.end_array()?;
        return j.end_document();
    }

    writeln!(
        out,
        "{:>5} {:>5}  {:<8} {:>4}  {:<21}  {:>5} {:>6} {:>6}  {:<10}  faults: zero/loaded/shared/cow-copied/cow-writable/swapped-in",
        "pid", "ppid", "state", "slot", "linear range", "pages", "shared", "tables", "program"
    )?;
    for (slot, t) in all() {
        let usage = mm.slot_usage(slot);
        let (start, last) = report::slot_range(slot);
        write!(out, "{:>5} ", t.pid)?;
        match parent_pid(tasks, slot, t) {
            Some(p) => write!(out, "{p:>5}")?,
            None => write!(out, "{:>5}", "-")?,
        }
        write!(
            out,
            "  {:<8} {slot:>4}  {start:#010x}-{last:#010x}  {:>5} {:>6} {:>6}  {:<10} ",
            t.state.name(),
            usage.pages,
            usage.shared_pages,
            usage.page_tables,
            t.name.as_str(),
        )?;
        for (i, (_, n)) in fault_fields(&t.faults).into_iter().enumerate() {
            write!(out, "{}{n}", if i == 0 { " " } else { "/" })?;
        }
        if slot == current {
            write!(out, "  (current)")?;
        }
        if slot == 0 {
            write!(out, "  (pages: the identity map)")?;
        }
        writeln!(out)?;
    }
    Ok(())
}
