//! The failure-injection and corruption documents (`fail`, `failnth`, `corrupt`): the
//! changes these commands make to the pure [`Injector`] and [`Mm`], and their answers,
//! computed from plain data ([`FailState`]) so a host tool can show the same.

use core::fmt::{self, Display};
use core::ops::ControlFlow;

use mm::addr::{Frame, LinearAddr, NR_TASKS};
use mm::corrupt::CorruptError;
use mm::inject::{FaultAttr, InjectError, Injector};
use mm::memory::{AllocSite, Mm};
use mm::phys::PhysMem;
use serde::Serialize;

#[cfg(feature = "std")]
use serde::Deserialize;

use crate::command::{CorruptCommand, FailCommand, Failure};
use crate::inputs::{FailState, TaskSlots};
use crate::value::{command_tag, Hex, Items, SchemaVersion, Source};

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

/// What a `fail` line changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "std", derive(Deserialize))]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(untagged)]
pub enum Changed {
    /// A site's knobs.
    Site(SiteName),
    /// `seed` or `task`.
    Other(ChangedWhat),
}

/// `seed` or `task`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "std", derive(Deserialize))]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum ChangedWhat {
    Seed,
    Task,
}

impl Display for Changed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Changed::Site(site) => f.write_str(site.0.name()),
            Changed::Other(ChangedWhat::Seed) => f.write_str("seed"),
            Changed::Other(ChangedWhat::Task) => f.write_str("task"),
        }
    }
}

/// An allocation site, by its name (`copy_page_tables`, `un_wp_page`, ...).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SiteName(pub AllocSite);

impl Serialize for SiteName {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.0.name())
    }
}

#[cfg(feature = "std")]
impl<'de> Deserialize<'de> for SiteName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<SiteName, D::Error> {
        let text = std::string::String::deserialize(d)?;
        mm::inject::site_by_name(&text)
            .map(SiteName)
            .map_err(|_| serde::de::Error::custom(format_args!("'{text}' is no allocation site")))
    }
}

#[cfg(feature = "schema")]
impl schemars::JsonSchema for SiteName {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "SiteName".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let names: std::vec::Vec<&str> = AllocSite::ALL.iter().map(|s| s.name()).collect();
        schemars::json_schema!({ "type": "string", "enum": names })
    }
}

/// Applies a `fail` line to `injector`: what it changed (`None`: it only shows).
pub fn apply_fail(
    injector: &mut Injector,
    slots: &dyn TaskSlots,
    command: FailCommand,
) -> Result<Option<Changed>, InjectAnswerError> {
    Ok(match command {
        FailCommand::Show => None,
        FailCommand::Configure { site, patch } => {
            let attr = patch.apply(injector.site(site).attr);
            injector
                .configure(site, attr)
                .map_err(InjectAnswerError::Inject)?;
            Some(Changed::Site(SiteName(site)))
        }
        FailCommand::Off { site } => {
            let attr = FaultAttr {
                probability: 0,
                ..injector.site(site).attr
            };
            injector
                .configure(site, attr)
                .map_err(InjectAnswerError::Inject)?;
            Some(Changed::Site(SiteName(site)))
        }
        FailCommand::Seed(seed) => {
            injector.set_seed(seed);
            Some(Changed::Other(ChangedWhat::Seed))
        }
        FailCommand::Task { pid, make_it_fail } => {
            let slot = slots
                .slot_of_pid(pid)
                .filter(|&s| s != 0)
                .ok_or(InjectAnswerError::NoSuchTask(pid))?;
            let task = injector.task_mut(slot).map_err(InjectAnswerError::Inject)?;
            task.make_it_fail = make_it_fail;
            Some(Changed::Other(ChangedWhat::Task))
        }
    })
}

command_tag!(
    /// `"fail"`.
    FailDocCommand = "fail"
);

/// One allocation site's knobs and counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "std", derive(Deserialize))]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct SiteDoc {
    pub name: SiteName,
    /// Percent, 0 to 100 (0: disabled).
    pub probability: u8,
    /// Only every Nth eligible call may fail.
    pub interval: u32,
    /// Failures at most (-1: unlimited), and how many are left.
    pub times: i32,
    pub times_left: i32,
    /// The budget in bytes before failures start.
    pub space: u32,
    /// Only tasks marked make-it-fail.
    pub filter: bool,
    /// Allocations that reached it (tasks the filter spares included), failures injected.
    pub calls: u64,
    pub fired: u64,
}

/// A task marked make-it-fail or with a fail-nth pending.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "std", derive(Deserialize))]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct MarkedTaskDoc {
    pub pid: u32,
    pub slot: u32,
    pub make_it_fail: bool,
    pub fail_nth: u32,
}

/// The last injected failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "std", derive(Deserialize))]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct LastFailureDoc {
    pub site: SiteName,
    /// Null once the task is gone.
    pub pid: Option<u32>,
    pub by_fail_nth: bool,
}

/// `fail --json`: every site, the seed, the marked tasks, the last injected failure.
#[derive(Debug, Serialize)]
#[cfg_attr(feature = "std", derive(Deserialize, Clone, PartialEq))]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct FailDoc<'a> {
    pub command: FailDocCommand,
    pub schema: SchemaVersion,
    /// What this command changed: a site name, `seed` or `task`.
    pub changed: Option<Changed>,
    /// The random seed.
    pub seed: u64,
    /// Every site, in a fixed order.
    pub sites: [SiteDoc; AllocSite::ALL.len()],
    /// Tasks marked or with a fail-nth pending.
    pub tasks: Items<'a, MarkedTaskDoc>,
    pub last: Option<LastFailureDoc>,
}

/// A `fail` answer over the injection state and the task table.
pub struct Fail<'v> {
    state: FailState,
    slots: &'v dyn TaskSlots,
    changed: Option<Changed>,
}

impl<'v> Fail<'v> {
    pub fn new(state: FailState, slots: &'v dyn TaskSlots, changed: Option<Changed>) -> Fail<'v> {
        Fail {
            state,
            slots,
            changed,
        }
    }

    pub fn document(&self) -> FailDoc<'_> {
        let s = &self.state;
        let sites = AllocSite::ALL.map(|site| {
            let k = s.sites[site.index()];
            SiteDoc {
                name: SiteName(site),
                probability: k.probability,
                interval: k.interval,
                times: k.times,
                times_left: k.times_left,
                space: k.space,
                filter: k.filter,
                calls: k.calls,
                fired: k.fired,
            }
        });
        FailDoc {
            command: FailDocCommand,
            schema: SchemaVersion,
            changed: self.changed,
            seed: s.seed,
            sites,
            tasks: Items::Lazy(self),
            last: s.last.map(|l| LastFailureDoc {
                site: SiteName(l.site),
                pid: self.slots.pid_in_slot(l.slot),
                by_fail_nth: l.by_fail_nth,
            }),
        }
    }
}

impl Source<MarkedTaskDoc> for Fail<'_> {
    fn each(&self, f: &mut dyn FnMut(&MarkedTaskDoc) -> ControlFlow<()>) {
        for slot in 1..NR_TASKS {
            let t = self.state.tasks[slot];
            let Some(pid) = self.slots.pid_in_slot(slot) else {
                continue;
            };
            if !(t.make_it_fail || t.fail_nth != 0) {
                continue;
            }
            let doc = MarkedTaskDoc {
                pid,
                slot: slot as u32,
                make_it_fail: t.make_it_fail,
                fail_nth: t.fail_nth,
            };
            if f(&doc).is_break() {
                return;
            }
        }
    }
}

impl Display for FailDoc<'_> {
    fn fmt(&self, out: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(what) = self.changed {
            writeln!(out, "fail: {what} changed")?;
        }
        writeln!(out, "failure injection (seed {}):", self.seed)?;
        writeln!(
            out,
            "  {:<18} {:>5} {:>8} {:>6} {:>6} {:>8} {:>6} {:>8} {:>6}",
            "site", "prob%", "interval", "times", "left", "space", "filter", "calls", "fired"
        )?;
        for s in &self.sites {
            writeln!(
                out,
                "  {:<18} {:>5} {:>8} {:>6} {:>6} {:>8} {:>6} {:>8} {:>6}",
                s.name.0.name(),
                s.probability,
                s.interval,
                s.times,
                s.times_left,
                s.space,
                if s.filter { "on" } else { "off" },
                s.calls,
                s.fired
            )?;
        }
        self.tasks.try_each(&mut |t| {
            writeln!(
                out,
                "  pid {} (slot {}): make-it-fail {}, fail-nth {}",
                t.pid,
                t.slot,
                if t.make_it_fail { "on" } else { "off" },
                t.fail_nth
            )
        })?;
        if let Some(last) = self.last {
            write!(out, "  last injected failure: {} for ", last.site.0.name())?;
            match last.pid {
                Some(pid) => write!(out, "pid {pid}")?,
                None => write!(out, "a task that has exited")?,
            }
            writeln!(out, "{}", if last.by_fail_nth { " (fail-nth)" } else { "" })?;
        }
        Ok(())
    }
}

command_tag!(
    /// `"failnth"`.
    FailNthCommand = "failnth"
);

/// `failnth PID [N] --json`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "std", derive(Deserialize))]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct FailNthDoc {
    pub command: FailNthCommand,
    pub schema: SchemaVersion,
    /// The task.
    pub pid: u32,
    pub slot: u32,
    /// The setting now (0: none pending) and before this command.
    pub fail_nth: u32,
    pub previous: u32,
}

/// `failnth PID [N]`: sets the task's fail-nth when `n` is given, and says what it is.
pub fn failnth(
    injector: &mut Injector,
    slots: &dyn TaskSlots,
    pid: u32,
    n: Option<u32>,
) -> Result<FailNthDoc, InjectAnswerError> {
    let slot = slots
        .slot_of_pid(pid)
        .filter(|&s| s != 0)
        .ok_or(InjectAnswerError::NoSuchTask(pid))?;
    let task = injector.task_mut(slot).map_err(InjectAnswerError::Inject)?;
    let previous = task.fail_nth;
    if let Some(n) = n {
        task.fail_nth = n;
    }
    Ok(FailNthDoc {
        command: FailNthCommand,
        schema: SchemaVersion,
        pid,
        slot: slot as u32,
        fail_nth: task.fail_nth,
        previous,
    })
}

impl Display for FailNthDoc {
    fn fmt(&self, out: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (pid, previous) = (self.pid, self.previous);
        match self.fail_nth {
            0 => writeln!(
                out,
                "failnth: pid {pid}: no failure pending (was {previous})"
            ),
            n => writeln!(
                out,
                "failnth: pid {pid}: its allocation number {n} from now on will fail (was {previous})"
            ),
        }
    }
}

command_tag!(
    /// `"corrupt"`.
    CorruptDocCommand = "corrupt"
);

/// What a `corrupt` line broke.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "std", derive(Deserialize))]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum CorruptWhat {
    Pte,
    Pde,
    Count,
    Leak,
}

/// A value before or after a corruption: an entry (hex) or a count (integer).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "std", derive(Deserialize))]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(untagged)]
pub enum CorruptValue {
    Entry(Hex),
    Count(u32),
}

impl Display for CorruptValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CorruptValue::Entry(h) => write!(f, "{h}"),
            CorruptValue::Count(n) => write!(f, "{n}"),
        }
    }
}

/// `corrupt ... --json`: what was changed, from what to what.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "std", derive(Deserialize))]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct CorruptDoc {
    pub command: CorruptDocCommand,
    pub schema: SchemaVersion,
    pub what: CorruptWhat,
    /// `pte`: the linear address; `pde`: the directory index; `count`, `leak`: the frame.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub linear: Option<Hex>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub index: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub frame: Option<Hex>,
    /// The flipped bit (`pte`, `pde`).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub bit: Option<u32>,
    /// The value before and after (not for `leak`).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub old: Option<CorruptValue>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub new: Option<CorruptValue>,
}

/// `corrupt ...`: makes the change and says what it changed.
pub fn corrupt<P: PhysMem>(
    mm: &mut Mm<P>,
    slots: &dyn TaskSlots,
    command: CorruptCommand,
) -> Result<CorruptDoc, InjectAnswerError> {
    let mut doc = CorruptDoc {
        command: CorruptDocCommand,
        schema: SchemaVersion,
        what: CorruptWhat::Leak,
        linear: None,
        index: None,
        frame: None,
        bit: None,
        old: None,
        new: None,
    };
    let refused = InjectAnswerError::Corrupt;
    match command {
        CorruptCommand::Pte { addr, bit, task } => {
            let linear = match task {
                None => addr,
                Some(pid) => match slots.slot_of_pid(pid) {
                    Some(slot) => mm::addr::slot_base(slot).as_u32() + addr,
                    None => return Err(InjectAnswerError::NoSuchTask(pid)),
                },
            };
            let c = mm
                .corrupt_pte_bit(LinearAddr::new(linear), bit)
                .map_err(refused)?;
            doc.what = CorruptWhat::Pte;
            doc.linear = Some(Hex(linear));
            doc.bit = Some(bit);
            doc.old = Some(CorruptValue::Entry(Hex(c.old)));
            doc.new = Some(CorruptValue::Entry(Hex(c.new)));
        }
        CorruptCommand::Pde { index, bit } => {
            let c = mm.corrupt_pde_bit(index, bit).map_err(refused)?;
            doc.what = CorruptWhat::Pde;
            doc.index = Some(index as u32);
            doc.bit = Some(bit);
            doc.old = Some(CorruptValue::Entry(Hex(c.old)));
            doc.new = Some(CorruptValue::Entry(Hex(c.new)));
        }
        CorruptCommand::Count { frame, delta } => {
            let c = mm
                .corrupt_count(Frame::containing(frame), delta)
                .map_err(refused)?;
            doc.what = CorruptWhat::Count;
            doc.frame = Some(Hex(frame & !0xfff));
            doc.old = Some(CorruptValue::Count(c.old));
            doc.new = Some(CorruptValue::Count(c.new));
        }
        CorruptCommand::Leak => {
            let frame = mm.corrupt_leak_frame().map_err(refused)?;
            doc.frame = Some(Hex(frame.as_u32()));
        }
    }
    Ok(doc)
}

impl Display for CorruptDoc {
    fn fmt(&self, out: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (bit, old, new) = (
            self.bit.unwrap_or(0),
            self.old.unwrap_or(CorruptValue::Count(0)),
            self.new.unwrap_or(CorruptValue::Count(0)),
        );
        let frame = self.frame.unwrap_or_default();
        match self.what {
            CorruptWhat::Pte => writeln!(
                out,
                "corrupt: bit {bit} of the PTE of {}: {old} -> {new}",
                self.linear.unwrap_or_default()
            ),
            CorruptWhat::Pde => writeln!(
                out,
                "corrupt: bit {bit} of directory entry {}: {old} -> {new}",
                self.index.unwrap_or(0)
            ),
            CorruptWhat::Count => writeln!(
                out,
                "corrupt: mem_map count of frame {frame}: {old} -> {new}"
            ),
            CorruptWhat::Leak => writeln!(
                out,
                "corrupt: leaked frame {frame} (count 1, mapped nowhere)"
            ),
        }?;
        writeln!(out, "  run 'monitor checkmm' to see it named")
    }
}
