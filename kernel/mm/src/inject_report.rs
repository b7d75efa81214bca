//! The monitor's failure-injection and corruption commands (`fail`, `failnth`,
//! `corrupt`): their arguments and their answers in text and JSON, over the pure
//! [`Injector`] and [`Mm`], so they are host-tested like the rest of `report`.

use core::fmt::{self, Write};

use crate::addr::{Frame, LinearAddr, ENTRIES_PER_TABLE, TASK_SIZE};
use crate::corrupt::CorruptError;
use crate::inject::{site_by_name, FaultAttr, InjectError, Injector};
use crate::memory::{AllocSite, Mm};
use crate::phys::PhysMem;
use crate::report::{
    number_u32, parse_number, unexpected, value_of, Command, CommandName, Failure, Json,
    ParseError, TaskSlots,
};

/// What `fail` was asked to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailCommand {
    /// Every site, the seed, the marked tasks.
    Show,
    /// Change some knobs of a site (the others keep their values).
    Configure { site: AllocSite, patch: AttrPatch },
    /// Disable a site (probability 0).
    Off { site: AllocSite },
    /// Restart the random choice from this seed.
    Seed(u64),
    /// Mark (or unmark) a task for sites with `filter=on` (Linux's make-it-fail).
    Task { pid: u32, make_it_fail: bool },
}

/// Knobs given on a `fail SITE` line; `None` keeps the current value.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AttrPatch {
    pub probability: Option<u8>,
    pub interval: Option<u32>,
    pub times: Option<i32>,
    pub space: Option<u32>,
    pub filter: Option<bool>,
}

impl AttrPatch {
    fn apply(&self, attr: FaultAttr) -> FaultAttr {
        FaultAttr {
            probability: self.probability.unwrap_or(attr.probability),
            interval: self.interval.unwrap_or(attr.interval),
            times: self.times.unwrap_or(attr.times),
            space: self.space.unwrap_or(attr.space),
            task_filter: self.filter.unwrap_or(attr.task_filter),
        }
    }
}

/// What `corrupt` was asked to break.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CorruptCommand {
    /// Flip bit `bit` of the PTE of `addr` (linear, or an offset in `task`'s segment).
    Pte {
        addr: u32,
        bit: u32,
        task: Option<u32>,
    },
    /// Flip bit `bit` of directory entry `index`.
    Pde { index: usize, bit: u32 },
    /// Add `delta` to the count of `frame`.
    Count { frame: u32, delta: i32 },
    /// Take a free frame that nothing maps.
    Leak,
}

const FAIL: CommandName = CommandName::Fail;
const FAILNTH: CommandName = CommandName::FailNth;
const CORRUPT: CommandName = CommandName::Corrupt;

fn on_off<'a>(
    command: CommandName,
    what: &'static str,
    text: &'a str,
) -> Result<bool, ParseError<'a>> {
    match text {
        "on" | "1" => Ok(true),
        "off" | "0" => Ok(false),
        _ => Err(ParseError::BadWord {
            command,
            what,
            text,
        }),
    }
}

fn end<'a>(
    command: CommandName,
    words: &mut dyn Iterator<Item = &'a str>,
) -> Result<(), ParseError<'a>> {
    match words.next() {
        Some(word) => Err(unexpected(command, word)),
        None => Ok(()),
    }
}

/// `fail [SITE [off | KNOB=VALUE...] | seed N | task PID on|off]`.
pub fn parse_fail<'a>(
    words: &mut dyn Iterator<Item = &'a str>,
) -> Result<FailCommand, ParseError<'a>> {
    let Some(first) = words.next() else {
        return Ok(FailCommand::Show);
    };
    match first {
        "seed" => {
            let text = value_of(FAIL, "N after seed", words)?;
            let seed = parse_number(text).ok_or(ParseError::BadNumber {
                command: FAIL,
                what: "seed",
                text,
            })?;
            end(FAIL, words)?;
            Ok(FailCommand::Seed(seed))
        }
        "task" => {
            let text = value_of(FAIL, "PID after task", words)?;
            let pid = number_u32(FAIL, "PID", text)?;
            let setting = value_of(FAIL, "on or off after the PID", words)?;
            let make_it_fail = on_off(FAIL, "make-it-fail (on or off)", setting)?;
            end(FAIL, words)?;
            Ok(FailCommand::Task { pid, make_it_fail })
        }
        word if word.starts_with("--") => Err(unexpected(FAIL, word)),
        name => {
            let site = site_by_name(name).map_err(|_| ParseError::BadWord {
                command: FAIL,
                what: "site (copy_page_tables, page_table, un_wp_page, do_no_page, fork_task_struct, execve)",
                text: name,
            })?;
            let mut patch = AttrPatch::default();
            let mut any = false;
            while let Some(word) = words.next() {
                if word == "off" && !any {
                    end(FAIL, words)?;
                    return Ok(FailCommand::Off { site });
                }
                let Some((key, value)) = word.split_once('=') else {
                    return Err(unexpected(FAIL, word));
                };
                any = true;
                match key {
                    "probability" => {
                        let p = number_u32(FAIL, "probability", value)?;
                        if p > 100 {
                            return Err(ParseError::OutOfRange {
                                command: FAIL,
                                what: "probability",
                                text: value,
                                limit: "a percentage, 0 to 100",
                            });
                        }
                        patch.probability = Some(p as u8);
                    }
                    "interval" => patch.interval = Some(number_u32(FAIL, "interval", value)?),
                    "space" => patch.space = Some(number_u32(FAIL, "space", value)?),
                    "times" => {
                        patch.times = Some(if value == "-1" {
                            -1
                        } else {
                            let t = number_u32(FAIL, "times", value)?;
                            i32::try_from(t).map_err(|_| ParseError::OutOfRange {
                                command: FAIL,
                                what: "times",
                                text: value,
                                limit: "-1 (unlimited) or 0 to 2147483647",
                            })?
                        });
                    }
                    "filter" => patch.filter = Some(on_off(FAIL, "filter (on or off)", value)?),
                    _ => {
                        return Err(ParseError::BadWord {
                            command: FAIL,
                            what: "knob (probability, interval, times, space, filter)",
                            text: word,
                        })
                    }
                }
            }
            Ok(FailCommand::Configure { site, patch })
        }
    }
}

/// `failnth PID [N]`.
pub fn parse_failnth<'a>(
    words: &mut dyn Iterator<Item = &'a str>,
) -> Result<Command, ParseError<'a>> {
    let text = value_of(FAILNTH, "PID", words)?;
    let pid = number_u32(FAILNTH, "PID", text)?;
    let n = match words.next() {
        None => None,
        Some(word) if word.starts_with("--") => return Err(unexpected(FAILNTH, word)),
        Some(word) => Some(number_u32(FAILNTH, "N", word)?),
    };
    end(FAILNTH, words)?;
    Ok(Command::FailNth { pid, n })
}

/// `corrupt pte ADDR BIT [--task PID] | pde INDEX BIT | count FRAME DELTA | leak`.
pub fn parse_corrupt<'a>(
    words: &mut dyn Iterator<Item = &'a str>,
) -> Result<CorruptCommand, ParseError<'a>> {
    let what = value_of(CORRUPT, "what to corrupt (pte, pde, count or leak)", words)?;
    let bit = |words: &mut dyn Iterator<Item = &'a str>| -> Result<u32, ParseError<'a>> {
        let text = value_of(CORRUPT, "BIT", words)?;
        let bit = number_u32(CORRUPT, "BIT", text)?;
        if bit > 31 {
            return Err(ParseError::OutOfRange {
                command: CORRUPT,
                what: "BIT",
                text,
                limit: "0 to 31",
            });
        }
        Ok(bit)
    };
    match what {
        "pte" => {
            let mut addr = None;
            let mut task = None;
            let mut bit_value = None;
            while let Some(word) = words.next() {
                if word == "--task" {
                    let text = value_of(CORRUPT, "PID after --task", words)?;
                    task = Some(number_u32(CORRUPT, "PID", text)?);
                } else if word.starts_with("--") {
                    return Err(unexpected(CORRUPT, word));
                } else if addr.is_none() {
                    addr = Some(number_u32(CORRUPT, "ADDR", word)?);
                } else if bit_value.is_none() {
                    let mut one = core::iter::once(word);
                    bit_value = Some(bit(&mut one)?);
                } else {
                    return Err(unexpected(CORRUPT, word));
                }
            }
            let addr = addr.ok_or(ParseError::MissingArgument {
                command: CORRUPT,
                what: "ADDR",
            })?;
            let bit = bit_value.ok_or(ParseError::MissingArgument {
                command: CORRUPT,
                what: "BIT",
            })?;
            if task.is_some() && addr >= TASK_SIZE {
                return Err(ParseError::OutOfRange {
                    command: CORRUPT,
                    what: "ADDR",
                    text: "with --task",
                    limit: "an offset below 0x04000000",
                });
            }
            Ok(CorruptCommand::Pte { addr, bit, task })
        }
        "pde" => {
            let text = value_of(CORRUPT, "INDEX", words)?;
            let index = number_u32(CORRUPT, "INDEX", text)? as usize;
            if index >= ENTRIES_PER_TABLE {
                return Err(ParseError::OutOfRange {
                    command: CORRUPT,
                    what: "INDEX",
                    text,
                    limit: "0 to 1023",
                });
            }
            let bit = bit(words)?;
            end(CORRUPT, words)?;
            Ok(CorruptCommand::Pde { index, bit })
        }
        "count" => {
            let text = value_of(CORRUPT, "FRAME", words)?;
            let frame = number_u32(CORRUPT, "FRAME", text)?;
            let text = value_of(CORRUPT, "DELTA (+N or -N)", words)?;
            let (sign, digits) = match text.as_bytes().first() {
                Some(b'-') => (-1, &text[1..]),
                Some(b'+') => (1, &text[1..]),
                _ => (1, text),
            };
            let magnitude = number_u32(CORRUPT, "DELTA", digits)?;
            if magnitude > 255 {
                return Err(ParseError::OutOfRange {
                    command: CORRUPT,
                    what: "DELTA",
                    text,
                    limit: "-255 to +255",
                });
            }
            end(CORRUPT, words)?;
            Ok(CorruptCommand::Count {
                frame,
                delta: sign * magnitude as i32,
            })
        }
        "leak" => {
            end(CORRUPT, words)?;
            Ok(CorruptCommand::Leak)
        }
        other => Err(ParseError::BadWord {
            command: CORRUPT,
            what: "what to corrupt (pte, pde, count or leak)",
            text: other,
        }),
    }
}

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
                return crate::report::error(json, FAIL, &InjectAnswerError::Inject(e), out);
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
                return crate::report::error(json, FAIL, &InjectAnswerError::NoSuchTask(pid), out);
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
        (1..crate::addr::NR_TASKS).filter_map(|slot| {
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
        return crate::report::error(json, FAILNTH, &InjectAnswerError::NoSuchTask(pid), out);
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
        |e: InjectAnswerError, out: &mut dyn Write| crate::report::error(json, CORRUPT, &e, out);
    let (what, target, change) = match command {
        CorruptCommand::Pte { addr, bit, task } => {
            let linear = match task {
                None => addr,
                Some(pid) => match slots.slot_of_pid(pid) {
                    Some(slot) => crate::addr::slot_base(slot).as_u32() + addr,
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
