//! The kernel-state documents: `tasks` (the task table with each slot's pages) and
//! `faults` (the fault log), from the plain inputs of [`crate::inputs`].

use core::fmt::{self, Display};
use core::ops::ControlFlow;

use mm::addr::{slot_base, NR_TASKS, TASK_SIZE};
use mm::memory::fault_code;
use mm::view::PagingView;
use serde::Serialize;

#[cfg(feature = "std")]
use serde::Deserialize;

use crate::command::MonitorError;
use crate::inputs::{
    action_id, FaultAction, FaultCounts, FaultRecord, FaultSource, TaskSource, TaskState,
};
use crate::text::Pad;
use crate::value::{command_tag, Hex, Items, Name, SchemaVersion, Source};

/// The linear range of slot `slot`: `(start, last)`.
pub fn slot_range(slot: usize) -> (u32, u32) {
    let start = slot_base(slot).as_u32();
    (start, start.wrapping_add(TASK_SIZE - 1))
}

// ---------------------------------------------------------------------------------------
// tasks
// ---------------------------------------------------------------------------------------

command_tag!(
    /// `"tasks"`.
    TasksCommand = "tasks"
);

/// One task.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "std", derive(Deserialize))]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct TaskDoc {
    pub pid: u32,
    /// Null for task 0.
    pub parent_pid: Option<u32>,
    pub state: TaskState,
    /// It was running when the kernel stopped.
    pub current: bool,
    /// Its 64 MiB slot and the slot's linear range.
    pub slot: u32,
    pub start: Hex,
    pub last: Hex,
    /// The program it runs.
    pub program: Name,
    /// Offsets in its segment (0.11's fields).
    pub end_code: Hex,
    pub end_data: Hex,
    pub brk: Hex,
    /// Present pages, of which with count above 1, page tables, swap entries.
    pub pages: u32,
    pub shared_pages: u32,
    pub page_tables: u32,
    pub swapped: u32,
    /// The signal it will die of at its next return to user mode.
    pub killed_by: Option<u32>,
    /// Page faults since its program started.
    pub faults: FaultCounts,
}

/// `tasks --json`: every task, task 0 (the kernel, whose pages are the identity map)
/// included.
#[derive(Debug, Serialize)]
#[cfg_attr(feature = "std", derive(Deserialize, Clone, PartialEq))]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct TasksDoc<'a> {
    pub command: TasksCommand,
    pub schema: SchemaVersion,
    /// The slot that was running when the kernel stopped.
    pub current_slot: u32,
    pub tasks: Items<'a, TaskDoc>,
}

/// A `tasks` over a view and a task table.
pub struct Tasks<'v, V: ?Sized> {
    view: &'v V,
    tasks: &'v dyn TaskSource,
}

impl<'v, V: PagingView + ?Sized> Tasks<'v, V> {
    pub fn new(view: &'v V, tasks: &'v dyn TaskSource) -> Tasks<'v, V> {
        Tasks { view, tasks }
    }

    pub fn document(&self) -> TasksDoc<'_> {
        TasksDoc {
            command: TasksCommand,
            schema: SchemaVersion,
            current_slot: self.tasks.current_slot() as u32,
            tasks: Items::Lazy(self),
        }
    }
}

impl<V: PagingView + ?Sized> Source<TaskDoc> for Tasks<'_, V> {
    fn each(&self, f: &mut dyn FnMut(&TaskDoc) -> ControlFlow<()>) {
        let current = self.tasks.current_slot();
        for slot in 0..NR_TASKS {
            let Some(t) = self.tasks.task(slot) else {
                continue;
            };
            let usage = mm::walk::slot_usage(self.view, slot);
            let (start, last) = slot_range(slot);
            let doc = TaskDoc {
                pid: t.pid,
                parent_pid: t.parent_pid,
                state: t.state,
                current: slot == current,
                slot: slot as u32,
                start: Hex(start),
                last: Hex(last),
                program: t.program,
                end_code: Hex(t.end_code),
                end_data: Hex(t.end_data),
                brk: Hex(t.brk),
                pages: usage.pages,
                shared_pages: usage.shared_pages,
                page_tables: usage.page_tables,
                swapped: usage.swapped,
                killed_by: t.killed_by,
                faults: t.faults,
            };
            if f(&doc).is_break() {
                return;
            }
        }
    }
}

impl Display for TasksDoc<'_> {
    fn fmt(&self, out: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            out,
            "{:>5} {:>5}  {:<8} {:>4}  {:<21}  {:>5} {:>6} {:>6}  {:<10}  faults: zero/loaded/shared/cow-copied/cow-writable/swapped-in",
            "pid", "ppid", "state", "slot", "linear range", "pages", "shared", "tables", "program"
        )?;
        self.tasks.try_each(&mut |t| {
            write!(out, "{:>5} ", t.pid)?;
            match t.parent_pid {
                Some(p) => write!(out, "{p:>5}")?,
                None => write!(out, "{:>5}", "-")?,
            }
            let f = &t.faults;
            write!(
                out,
                "  {:<8} {:>4}  {}-{}  {:>5} {:>6} {:>6}  {:<10}  {}/{}/{}/{}/{}/{}",
                t.state,
                t.slot,
                t.start,
                t.last,
                t.pages,
                t.shared_pages,
                t.page_tables,
                t.program,
                f.zero_page,
                f.loaded,
                f.shared,
                f.cow_copied,
                f.cow_made_writable,
                f.swapped_in,
            )?;
            if t.current {
                write!(out, "  (current)")?;
            }
            if t.slot == 0 {
                write!(out, "  (pages: the identity map)")?;
            }
            writeln!(out)
        })
    }
}

// ---------------------------------------------------------------------------------------
// faults
// ---------------------------------------------------------------------------------------

command_tag!(
    /// `"faults"`.
    FaultsCommand = "faults"
);

/// A #PF error code decoded: `not present|protection, read|write, user|kernel mode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FaultCode(pub u32);

impl FaultCode {
    /// Bit 0: a protection violation on a present page (clear: page not present).
    pub fn protection(&self) -> bool {
        self.0 & fault_code::PRESENT != 0
    }
    pub fn write(&self) -> bool {
        self.0 & fault_code::WRITE != 0
    }
    /// Bit 2: the access came from ring 3.
    pub fn user(&self) -> bool {
        self.0 & fault_code::USER != 0
    }
}

impl Display for FaultCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}, {}, {} mode",
            if self.protection() {
                "protection"
            } else {
                "not present"
            },
            if self.write() { "write" } else { "read" },
            if self.user() { "user" } else { "kernel" }
        )
    }
}

impl Serialize for FaultCode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// The words parse back into bits 0 to 2.
#[cfg(feature = "std")]
impl<'de> Deserialize<'de> for FaultCode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<FaultCode, D::Error> {
        let text = std::string::String::deserialize(d)?;
        let bits = |word: &str, set: &str, clear: &str, bit: u32| match word {
            w if w == set => Some(bit),
            w if w == clear => Some(0),
            _ => None,
        };
        let mut words = text.split(", ");
        let code = (|| {
            let p = bits(
                words.next()?,
                "protection",
                "not present",
                fault_code::PRESENT,
            )?;
            let w = bits(words.next()?, "write", "read", fault_code::WRITE)?;
            let u = bits(words.next()?, "user mode", "kernel mode", fault_code::USER)?;
            words.next().is_none().then_some(p | w | u)
        })();
        code.map(FaultCode).ok_or_else(|| {
            serde::de::Error::custom(format_args!("'{text}' is not a decoded #PF error code"))
        })
    }
}

#[cfg(feature = "schema")]
impl schemars::JsonSchema for FaultCode {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "FaultCode".into()
    }
    fn inline_schema() -> bool {
        true
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": "^(not present|protection), (read|write), (user|kernel) mode$"
        })
    }
}

/// An action as its id (`cow_made_writable`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ActionId(pub FaultAction);

impl Serialize for ActionId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(action_id(self.0))
    }
}

#[cfg(feature = "std")]
impl<'de> Deserialize<'de> for ActionId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<ActionId, D::Error> {
        let text = std::string::String::deserialize(d)?;
        FaultAction::ALL
            .into_iter()
            .find(|&a| action_id(a) == text)
            .map(ActionId)
            .ok_or_else(|| serde::de::Error::custom(format_args!("'{text}' is no fault action id")))
    }
}

#[cfg(feature = "schema")]
impl schemars::JsonSchema for ActionId {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "FaultAction".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let ids: std::vec::Vec<&str> = FaultAction::ALL.iter().map(|&a| action_id(a)).collect();
        schemars::json_schema!({ "type": "string", "enum": ids, "description": "what the fault handler did" })
    }
}

/// An action in words (`COW made writable`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ActionText(pub FaultAction);

impl Serialize for ActionText {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.0.name())
    }
}

#[cfg(feature = "std")]
impl<'de> Deserialize<'de> for ActionText {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<ActionText, D::Error> {
        let text = std::string::String::deserialize(d)?;
        FaultAction::ALL
            .into_iter()
            .find(|a| a.name() == text)
            .map(ActionText)
            .ok_or_else(|| serde::de::Error::custom(format_args!("'{text}' is no fault action")))
    }
}

#[cfg(feature = "schema")]
impl schemars::JsonSchema for ActionText {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "ActionText".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let names: std::vec::Vec<&str> = FaultAction::ALL.iter().map(|a| a.name()).collect();
        schemars::json_schema!({ "type": "string", "enum": names })
    }
}

/// One remembered fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "std", derive(Deserialize))]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct FaultDoc {
    /// Sequence number since boot (1 = the first).
    pub seq: u64,
    /// The faulting task.
    pub pid: u32,
    /// CR2; the faulting instruction.
    pub linear: Hex,
    pub eip: Hex,
    /// The #PF error code, and decoded.
    pub error_code: u32,
    pub error: FaultCode,
    /// Its bits 0, 1, 2.
    pub protection: bool,
    pub write: bool,
    pub user_mode: bool,
    /// Taken by the kernel on the task's behalf.
    pub by_kernel: bool,
    /// What the handler did, as an id and in words.
    pub action: ActionId,
    pub action_text: ActionText,
}

impl FaultDoc {
    pub fn of(r: &FaultRecord) -> FaultDoc {
        let code = FaultCode(r.error_code);
        FaultDoc {
            seq: r.seq,
            pid: r.pid,
            linear: Hex(r.linear),
            eip: Hex(r.eip),
            error_code: r.error_code,
            error: code,
            protection: code.protection(),
            write: code.write(),
            user_mode: code.user(),
            by_kernel: r.by_kernel,
            action: ActionId(r.action),
            action_text: ActionText(r.action),
        }
    }
}

/// Faults since boot by action (the ids of [`FaultAction`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "std", derive(Deserialize))]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct FaultTotals {
    pub zero_page: u64,
    pub loaded_from_image: u64,
    pub shared: u64,
    pub cow_copied: u64,
    pub cow_made_writable: u64,
    pub swapped_in: u64,
    pub spurious: u64,
    pub out_of_memory_killed: u64,
    pub killed: u64,
}

impl FaultTotals {
    /// From the totals in [`FaultAction::ALL`] order.
    pub fn of(t: &[u64; FaultAction::ALL.len()]) -> FaultTotals {
        let [zero_page, loaded_from_image, shared, cow_copied, cow_made_writable, swapped_in, spurious, out_of_memory_killed, killed] =
            *t;
        FaultTotals {
            zero_page,
            loaded_from_image,
            shared,
            cow_copied,
            cow_made_writable,
            swapped_in,
            spurious,
            out_of_memory_killed,
            killed,
        }
    }
    /// The totals in [`FaultAction::ALL`] order.
    pub fn by_action(&self) -> [(FaultAction, u64); FaultAction::ALL.len()] {
        let t = [
            self.zero_page,
            self.loaded_from_image,
            self.shared,
            self.cow_copied,
            self.cow_made_writable,
            self.swapped_in,
            self.spurious,
            self.out_of_memory_killed,
            self.killed,
        ];
        let mut out = [(FaultAction::ZeroPage, 0); FaultAction::ALL.len()];
        for (i, action) in FaultAction::ALL.into_iter().enumerate() {
            out[i] = (action, t[i]);
        }
        out
    }
}

/// `faults --json`: the recent page faults and the totals since boot.
#[derive(Debug, Serialize)]
#[cfg_attr(feature = "std", derive(Deserialize, Clone, PartialEq))]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct FaultsDoc<'a> {
    pub command: FaultsCommand,
    pub schema: SchemaVersion,
    /// How many faults the log keeps.
    pub capacity: u32,
    /// All faults since boot.
    pub since_boot: u64,
    /// The remembered faults, oldest first.
    pub faults: Items<'a, FaultDoc>,
    /// The whole log was read.
    pub complete: bool,
    /// Action id -> faults since boot.
    pub totals: FaultTotals,
}

/// A `faults` over a fault log.
pub struct Faults<'v> {
    log: &'v dyn FaultSource,
    totals: FaultTotals,
    complete: bool,
}

impl<'v> Faults<'v> {
    /// The totals first: they tell whether the log can be read at all, before any output.
    pub fn new(log: &'v dyn FaultSource) -> Result<Faults<'v>, MonitorError> {
        let totals = log
            .totals()
            .map_err(|_| MonitorError::Busy { what: "fault log" })?;
        let complete = log.each(&mut |_| {}).is_ok();
        Ok(Faults {
            log,
            totals: FaultTotals::of(&totals),
            complete,
        })
    }

    pub fn document(&self) -> FaultsDoc<'_> {
        FaultsDoc {
            command: FaultsCommand,
            schema: SchemaVersion,
            capacity: self.log.capacity() as u32,
            since_boot: self.totals.by_action().iter().map(|&(_, n)| n).sum(),
            faults: Items::Lazy(self),
            complete: self.complete,
            totals: self.totals,
        }
    }
}

impl Source<FaultDoc> for Faults<'_> {
    fn each(&self, f: &mut dyn FnMut(&FaultDoc) -> ControlFlow<()>) {
        let mut stopped = false;
        let _ = self.log.each(&mut |r| {
            if !stopped {
                stopped = f(&FaultDoc::of(r)).is_break();
            }
        });
    }
}

impl Display for FaultsDoc<'_> {
    fn fmt(&self, out: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            out,
            "recent page faults, oldest first ({} since boot; the log keeps the last {}):",
            self.since_boot, self.capacity
        )?;
        writeln!(
            out,
            "{:>7} {:>5}  {:<10}  {:<10}  {:<6}  {:<36}  action",
            "seq", "pid", "linear", "eip", "by", "error code"
        )?;
        let mut shown = 0u32;
        self.faults.try_each(&mut |r| {
            shown += 1;
            writeln!(
                out,
                "{:>7} {:>5}  {}  {}  {:<6}  {:#04x} {}  {}",
                r.seq,
                r.pid,
                r.linear,
                r.eip,
                if r.by_kernel { "kernel" } else { "cpu" },
                r.error_code,
                Pad(&r.error, 31),
                r.action.0.name()
            )
        })?;
        if !self.complete {
            writeln!(out, "(fault log busy: the list is incomplete)")?;
        } else if shown == 0 {
            writeln!(out, "(none)")?;
        }
        write!(out, "since boot:")?;
        for (i, (action, n)) in self.totals.by_action().into_iter().enumerate() {
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
}
