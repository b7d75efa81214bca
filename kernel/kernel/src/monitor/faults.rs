//! `monitor faults`: the recent page faults from the fault log and the totals since boot.

use core::fmt::{self, Display, Write};

use report::{self, CommandName, FaultCode, Json, MonitorError, Pad};

use crate::faultlog::{self, FaultAction, FaultRecord, FAULT_LOG_LEN};

/// Room for one total per action; the log has fewer (a new action only needs this raised).
const MAX_ACTIONS: usize = 16;

/// An action's name as a snake_case id for scripts ("COW made writable" ->
/// "cow_made_writable"), derived from `FaultAction::name` so the two never disagree.
struct ActionId(FaultAction);

impl Display for ActionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut gap = false;
        let mut started = false;
        for c in self.0.name().chars() {
            if c.is_ascii_alphanumeric() {
                if gap && started {
                    f.write_char('_')?;
                }
                f.write_char(c.to_ascii_lowercase())?;
                gap = false;
                started = true;
            } else {
                gap = true;
            }
        }
        Ok(())
    }
}

/// Renders `faults`; "fault log busy" when gdb stopped the kernel holding the log's lock.
pub fn render(json: bool, out: &mut dyn Write) -> fmt::Result {
    // The totals first: they tell whether the log can be read at all, before any output.
    let mut totals = [(FaultAction::Spurious, 0u64); MAX_ACTIONS];
    let mut nr_totals = 0;
    let busy = faultlog::try_totals(|action, n| {
        if let Some(slot) = totals.get_mut(nr_totals) {
            *slot = (action, n);
            nr_totals += 1;
        }
    });
    if busy.is_err() {
        let e = MonitorError::Busy { what: "fault log" };
        return report::error(json, CommandName::Faults, &e, out);
    }
    let totals = &totals[..nr_totals];
    let since_boot: u64 = totals.iter().map(|&(_, n)| n).sum();
    // try_for_each reports through a closure that returns nothing: keep the first error.
    let mut result = Ok(());

    if json {
        let mut j = Json::new(out);
        j.begin_document(CommandName::Faults)?;
        j.field_uint("capacity", FAULT_LOG_LEN as u64)?;
        j.field_uint("since_boot", since_boot)?;
        j.key("faults")?;
        j.begin_array()?;
        let read = faultlog::try_for_each(|r| {
            if result.is_ok() {
                result = record_json(&mut j, r);
            }
        });
        result?;
        j.end_array()?;
        j.field_bool("complete", read.is_ok())?;
        j.key("totals")?;
        j.begin_object()?;
        for &(action, n) in totals {
            j.key_display(&ActionId(action))?;
            j.uint(n)?;
        }
        j.end_object()?;
        return j.end_document();
    }

    writeln!(
        out,
        "recent page faults, oldest first ({since_boot} since boot; the log keeps the last {FAULT_LOG_LEN}):"
    )?;
    writeln!(
        out,
        "{:>7} {:>5}  {:<10}  {:<10}  {:<6}  {:<36}  action",
        "seq", "pid", "linear", "eip", "by", "error code"
    )?;
    let mut shown = 0u32;
    let read = faultlog::try_for_each(|r| {
        shown += 1;
        if result.is_ok() {
            result = writeln!(
                out,
                "{:>7} {:>5}  {:#010x}  {:#010x}  {:<6}  {:#04x} {}  {}",
                r.seq,
                r.pid,
                r.linear,
                r.eip,
                if r.by_kernel { "kernel" } else { "cpu" },
                r.error_code,
                Pad(&FaultCode(r.error_code), 31),
                r.action.name()
            );
        }
    });
    result?;
    if read.is_err() {
        writeln!(out, "(fault log busy: the list is incomplete)")?;
    } else if shown == 0 {
        writeln!(out, "(none)")?;
    }
    write!(out, "since boot:")?;
    for (i, &(action, n)) in totals.iter().enumerate() {
        // Semicolons: one action's name has a comma ("out of memory, killed").
        write!(
            out,
            "{} {} {n}",
            if i == 0 { "" } else { ";" },
            action.name()
        )?;
    }
    writeln!(out)
}

fn record_json(j: &mut Json<'_>, r: &FaultRecord) -> fmt::Result {
    let code = FaultCode(r.error_code);
    j.begin_object()?;
    j.field_uint("seq", r.seq)?;
    j.field_uint("pid", u64::from(r.pid))?;
    j.field_hex("linear", r.linear)?;
    j.field_hex("eip", r.eip)?;
    j.field_uint("error_code", u64::from(r.error_code))?;
    j.field_display("error", &code)?;
    j.field_bool("protection", code.protection())?;
    j.field_bool("write", code.write())?;
    j.field_bool("user_mode", code.user())?;
    j.field_bool("by_kernel", r.by_kernel)?;
    j.field_display("action", &ActionId(r.action))?;
    j.field_str("action_text", r.action.name())?;
    j.end_object()
}
