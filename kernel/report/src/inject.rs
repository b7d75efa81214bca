//! The monitor's failure-injection and corruption commands (`fail`, `failnth`,
//! `corrupt`): their arguments and their answers in text and JSON, over the pure
//! [`Injector`] and [`Mm`], so they are host-tested like the rest of the crate.

use core::fmt::{self, Write};

use mm::addr::{Frame, LinearAddr};
use mm::corrupt::CorruptError;
use mm::inject::{FaultAttr, InjectError, Injector};
use mm::memory::{AllocSite, Mm};
use mm::phys::PhysMem;

use crate::command::{CorruptCommand, FailCommand, Failure, CORRUPT, FAIL, FAILNTH};
use crate::monitor::{Json, TaskSlots};

/// Refusals of a well-formed `fail`/`failnth`/`corrupt` line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InjectAnswerError {
    NoSuchTask(u32),
    Inject(InjectError),
    Corrupt(CorruptError),
}

impl fmt::Display for InjectAnswerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InjectAnswerError::NoSuchTask(pid) => write!(f, "no task with pid {pid}"),
            InjectAnswerError::Inject(e) => write!(f, "{e}"),
            InjectAnswerError::Corrupt(e) => write!(f, "{e}"),
        }
    }
}

impl Failure for InjectAnswerError {
    fn kind(&self) -> &'static str {
        match self {
            InjectAnswerError::NoSuchTask(_) => "no_such_task",
            InjectAnswerError::Inject(_) => "bad_argument",
            InjectAnswerError::Corrupt(_) => "refused",
        }
    }
    fn shows_usage(&self) -> bool {
        false
    }
}

/// `fail ...`: changes what was asked, then shows every site.
pub fn fail(
    injector: &mut Injector,
    slots: &dyn TaskSlots,
    command: FailCommand,
    json: bool,
    out: &mut dyn Write,
) -> fmt::Result {
    let changed: Option<&str> = match command {
        FailCommand::Show => None,
        FailCommand::Configure { site, patch } => {
            let attr = patch.apply(injector.site(site).attr);
            if let Err(e) = injector.configure(site, attr) {
                return crate::monitor::error(json, FAIL, &InjectAnswerError::Inject(e), out);
            }
            Some(site.name())
        }
        FailCommand::Off { site } => {
            let attr = FaultAttr {
                probability: 0,
                ..injector.site(site).attr
            };
            injector
                .configure(site, attr)
                .expect("probability 0 is valid");
            Some(site.name())
        }
        FailCommand::Seed(seed) => {
            injector.set_seed(seed);
            Some("seed")
        }
        FailCommand::Task { pid, make_it_fail } => {
            let Some(slot) = slots.slot_of_pid(pid).filter(|&s| s != 0) else {
                return crate::monitor::error(json, FAIL, &InjectAnswerError::NoSuchTask(pid), out);
            };
            injector
                .task_mut(slot)
                .expect("a slot of the table")
                .make_it_fail = make_it_fail;
            Some("task")
        }
    };
    show_fail(injector, slots, changed, json, out)
}

fn show_fail(
    injector: &Injector,
    slots: &dyn TaskSlots,
    changed: Option<&str>,
    json: bool,
    out: &mut dyn Write,
) -> fmt::Result {
    let marked = || {
        (1..mm::addr::NR_TASKS).filter_map(|slot| {
            let t = injector.task(slot).ok()?;
            let pid = slots.pid_in_slot(slot)?;
            (t.make_it_fail || t.fail_nth != 0).then_some((pid, slot, *t))
        })
    };
    if json {
        let mut j = Json::new(out);
        j.begin_document(FAIL)?;
        match changed {
            Some(what) => j.field_str("changed", what)?,
            None => j.field_null("changed")?,
        }
        j.field_uint("seed", injector.seed())?;
        j.key("sites")?;
        j.begin_array()?;
        for site in AllocSite::ALL {
            let s = injector.site(site);
            j.begin_object()?;
            j.field_str("name", site.name())?;
            j.field_uint("probability", s.attr.probability.into())?;
            j.field_uint("interval", s.attr.interval.into())?;
            j.field_int("times", s.attr.times.into())?;
            j.field_int("times_left", injector.times_left(site).into())?;
            j.field_uint("space", s.attr.space.into())?;
            j.field_bool("filter", s.attr.task_filter)?;
            j.field_uint("calls", s.calls)?;
            j.field_uint("fired", s.fired)?;
            j.end_object()?;
        }
        j.end_array()?;
        j.key("tasks")?;
        j.begin_array()?;
        for (pid, slot, t) in marked() {
            j.begin_object()?;
            j.field_uint("pid", pid.into())?;
            j.field_uint("slot", slot as u64)?;
            j.field_bool("make_it_fail", t.make_it_fail)?;
            j.field_uint("fail_nth", t.fail_nth.into())?;
            j.end_object()?;
        }
        j.end_array()?;
        match injector.last {
            None => j.field_null("last")?,
            Some(last) => {
                j.key("last")?;
                j.begin_object()?;
                j.field_str("site", last.site.name())?;
                j.field_opt_uint("pid", slots.pid_in_slot(last.slot).map(u64::from))?;
                j.field_bool("by_fail_nth", last.by_fail_nth)?;
                j.end_object()?;
            }
        }
        return j.end_document();
    }
    if let Some(what) = changed {
        writeln!(out, "fail: {what} changed")?;
    }
    writeln!(out, "failure injection (seed {}):", injector.seed())?;
    writeln!(
        out,
        "  {:<18} {:>5} {:>8} {:>6} {:>6} {:>8} {:>6} {:>8} {:>6}",
        "site", "prob%", "interval", "times", "left", "space", "filter", "calls", "fired"
    )?;
    for site in AllocSite::ALL {
        let s = injector.site(site);
        writeln!(
            out,
            "  {:<18} {:>5} {:>8} {:>6} {:>6} {:>8} {:>6} {:>8} {:>6}",
            site.name(),
            s.attr.probability,
            s.attr.interval,
            s.attr.times,
            injector.times_left(site),
            s.attr.space,
            if s.attr.task_filter { "on" } else { "off" },
            s.calls,
            s.fired
        )?;
    }
    for (pid, slot, t) in marked() {
        writeln!(
            out,
            "  pid {pid} (slot {slot}): make-it-fail {}, fail-nth {}",
            if t.make_it_fail { "on" } else { "off" },
            t.fail_nth
        )?;
    }
    if let Some(last) = injector.last {
        let pid = slots.pid_in_slot(last.slot);
        writeln!(
            out,
            "  last injected failure: {} for {}{}",
            last.site.name(),
            match pid {
                Some(pid) => PidText(Some(pid)),
                None => PidText(None),
            },
            if last.by_fail_nth { " (fail-nth)" } else { "" }
        )?;
    }
    Ok(())
}

struct PidText(Option<u32>);

impl fmt::Display for PidText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(pid) => write!(f, "pid {pid}"),
            None => f.write_str("a task that has exited"),
        }
    }
}

/// `failnth PID [N]`.
pub fn failnth(
    injector: &mut Injector,
    slots: &dyn TaskSlots,
    pid: u32,
    n: Option<u32>,
    json: bool,
    out: &mut dyn Write,
) -> fmt::Result {
    let Some(slot) = slots.slot_of_pid(pid).filter(|&s| s != 0) else {
        return crate::monitor::error(json, FAILNTH, &InjectAnswerError::NoSuchTask(pid), out);
    };
    let task = injector.task_mut(slot).expect("a slot of the table");
    let previous = task.fail_nth;
    if let Some(n) = n {
        task.fail_nth = n;
    }
    let now = task.fail_nth;
    if json {
        let mut j = Json::new(out);
        j.begin_document(FAILNTH)?;
        j.field_uint("pid", pid.into())?;
        j.field_uint("slot", slot as u64)?;
        j.field_uint("fail_nth", now.into())?;
        j.field_uint("previous", previous.into())?;
        return j.end_document();
    }
    match (n, now) {
        (_, 0) => writeln!(
            out,
            "failnth: pid {pid}: no failure pending (was {previous})"
        ),
        (_, n) => writeln!(
            out,
            "failnth: pid {pid}: its allocation number {n} from now on will fail (was {previous})"
        ),
    }
}

/// `corrupt ...`: makes the change and says what it changed.
pub fn corrupt<P: PhysMem>(
    mm: &mut Mm<P>,
    slots: &dyn TaskSlots,
    command: CorruptCommand,
    json: bool,
    out: &mut dyn Write,
) -> fmt::Result {
    let refuse =
        |e: InjectAnswerError, out: &mut dyn Write| crate::monitor::error(json, CORRUPT, &e, out);
    let (what, target, change) = match command {
        CorruptCommand::Pte { addr, bit, task } => {
            let linear = match task {
                None => addr,
                Some(pid) => match slots.slot_of_pid(pid) {
                    Some(slot) => mm::addr::slot_base(slot).as_u32() + addr,
                    None => return refuse(InjectAnswerError::NoSuchTask(pid), out),
                },
            };
            match mm.corrupt_pte_bit(LinearAddr::new(linear), bit) {
                Ok(c) => ("pte", linear, Some((bit, c))),
                Err(e) => return refuse(InjectAnswerError::Corrupt(e), out),
            }
        }
        CorruptCommand::Pde { index, bit } => match mm.corrupt_pde_bit(index, bit) {
            Ok(c) => ("pde", index as u32, Some((bit, c))),
            Err(e) => return refuse(InjectAnswerError::Corrupt(e), out),
        },
        CorruptCommand::Count { frame, delta } => {
            match mm.corrupt_count(Frame::containing(frame), delta) {
                Ok(c) => ("count", frame & !0xfff, Some((0, c))),
                Err(e) => return refuse(InjectAnswerError::Corrupt(e), out),
            }
        }
        CorruptCommand::Leak => match mm.corrupt_leak_frame() {
            Ok(frame) => ("leak", frame.as_u32(), None),
            Err(e) => return refuse(InjectAnswerError::Corrupt(e), out),
        },
    };
    if json {
        let mut j = Json::new(out);
        j.begin_document(CORRUPT)?;
        j.field_str("what", what)?;
        match what {
            "pde" => j.field_uint("index", target.into())?,
            "pte" => j.field_hex("linear", target)?,
            _ => j.field_hex("frame", target)?,
        }
        if let Some((bit, c)) = change {
            if what != "count" {
                j.field_uint("bit", bit.into())?;
                j.field_hex("old", c.old)?;
                j.field_hex("new", c.new)?;
            } else {
                j.field_uint("old", c.old.into())?;
                j.field_uint("new", c.new.into())?;
            }
        }
        return j.end_document();
    }
    match (what, change) {
        ("pte", Some((bit, c))) => writeln!(
            out,
            "corrupt: bit {bit} of the PTE of {target:#010x}: {:#010x} -> {:#010x}",
            c.old, c.new
        ),
        ("pde", Some((bit, c))) => writeln!(
            out,
            "corrupt: bit {bit} of directory entry {target}: {:#010x} -> {:#010x}",
            c.old, c.new
        ),
        ("count", Some((_, c))) => writeln!(
            out,
            "corrupt: mem_map count of frame {target:#010x}: {} -> {}",
            c.old, c.new
        ),
        _ => writeln!(
            out,
            "corrupt: leaked frame {target:#010x} (count 1, mapped nowhere)"
        ),
    }?;
    writeln!(out, "  run 'monitor checkmm' to see it named")
}
