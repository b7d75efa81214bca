//! What the documents are computed from besides the paging state: plain data and small
//! traits about tasks, the fault log and failure injection.
//!
//! The kernel fills them from its task table, its fault log and its `Injector`; a host
//! tool fills them from a copy of the guest's memory (the summaries the kernel publishes).
//! None of them names a kernel type, so both can.

use core::fmt;

use mm::addr::NR_TASKS;
use mm::inject::Injector;
use mm::memory::AllocSite;
use serde::Serialize;

#[cfg(feature = "std")]
use serde::Deserialize;

use crate::value::Name;

/// Which task lives in which slot: all the paging documents need of the task table.
pub trait TaskSlots {
    /// The pid of the task in `slot`, if any (slot 0: the kernel, pid 0).
    fn pid_in_slot(&self, slot: usize) -> Option<u32>;
    /// The slot of the task with `pid`.
    fn slot_of_pid(&self, pid: u32) -> Option<usize> {
        (0..NR_TASKS).find(|&slot| self.pid_in_slot(slot) == Some(pid))
    }
}

/// A task's scheduling state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "std", derive(Deserialize))]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    /// Ready to run, or running.
    Runnable,
    /// In `waitpid`, until a child exits.
    Waiting,
    /// In `sleep`.
    Sleeping,
    /// Exited; waits for its parent to collect the status.
    Zombie,
}

impl TaskState {
    /// The word the documents use.
    pub const fn name(self) -> &'static str {
        match self {
            TaskState::Runnable => "runnable",
            TaskState::Waiting => "waiting",
            TaskState::Sleeping => "sleeping",
            TaskState::Zombie => "zombie",
        }
    }
}

impl fmt::Display for TaskState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

/// A task's page faults since its program started, by outcome.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "std", derive(Deserialize))]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct FaultCounts {
    /// `do_no_page` mapped a fresh zero-filled page.
    pub zero_page: u32,
    /// `do_no_page` read the page from the program image.
    pub loaded: u32,
    /// `do_no_page` shared the page with another task running the same program.
    pub shared: u32,
    /// `do_wp_page` copied a page shared copy-on-write.
    pub cow_copied: u32,
    /// `do_wp_page` found the count at 1 and only made the page writable.
    pub cow_made_writable: u32,
    /// `do_no_page` read the page back from swap (0.12 `swap_in`).
    pub swapped_in: u32,
}

impl From<abi::FaultCounts> for FaultCounts {
    fn from(f: abi::FaultCounts) -> FaultCounts {
        FaultCounts {
            zero_page: f.demand_zero,
            loaded: f.loaded,
            shared: f.shared,
            cow_copied: f.cow_copied,
            cow_made_writable: f.cow_made_writable,
            swapped_in: f.swapped_in,
        }
    }
}

/// One task, as `tasks` shows it (everything but its pages, which come from the paging
/// state).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TaskSummary {
    pub pid: u32,
    /// The parent's pid (`None` for task 0, or when the parent is gone).
    pub parent_pid: Option<u32>,
    pub state: TaskState,
    /// The program it runs.
    pub program: Name,
    /// 0.11 `end_code`, `end_data`, `brk` (offsets in its segment).
    pub end_code: u32,
    pub end_data: u32,
    pub brk: u32,
    /// The signal it dies of at its next return to user mode.
    pub killed_by: Option<u32>,
    pub faults: FaultCounts,
}

/// The task table as `tasks` reads it.
pub trait TaskSource: TaskSlots {
    /// The slot that was running when the kernel stopped.
    fn current_slot(&self) -> usize;
    /// The task in `slot`, if any.
    fn task(&self, slot: usize) -> Option<TaskSummary>;
}

// ---------------------------------------------------------------------------------------
// The fault log
// ---------------------------------------------------------------------------------------

/// What the fault handler did about one fault: `mm::fault`'s decision, the one list the
/// fault log, the console and the documents name.
pub use mm::fault::FaultAction;

/// An action's id in the documents (`cow_made_writable`).
pub const fn action_id(action: FaultAction) -> &'static str {
    match action {
        FaultAction::ZeroPage => "zero_page",
        FaultAction::Loaded => "loaded_from_image",
        FaultAction::Shared => "shared",
        FaultAction::CowCopied => "cow_copied",
        FaultAction::CowMadeWritable => "cow_made_writable",
        FaultAction::SwappedIn => "swapped_in",
        FaultAction::Spurious => "spurious",
        FaultAction::OutOfMemory => "out_of_memory_killed",
        FaultAction::Killed => "killed",
    }
}

/// The index of `action` in [`FaultAction::ALL`] (the order of the totals).
pub fn action_index(action: FaultAction) -> usize {
    FaultAction::ALL
        .iter()
        .position(|&a| a == action)
        .unwrap_or(0)
}

/// One remembered fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FaultRecord {
    /// Sequence number since boot (1 = the first fault).
    pub seq: u64,
    pub pid: u32,
    /// CR2.
    pub linear: u32,
    /// The #PF error code.
    pub error_code: u32,
    pub eip: u32,
    /// The kernel took the fault on the task's behalf (`verify_area`, reads of user
    /// memory) rather than the CPU.
    pub by_kernel: bool,
    pub action: FaultAction,
}

/// The fault log is locked by the code the debugger stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogBusy;

/// The fault log as `faults` reads it.
pub trait FaultSource {
    /// How many faults the log keeps.
    fn capacity(&self) -> usize;
    /// Faults since boot, by action (index: [`action_index`]).
    fn totals(&self) -> Result<[u64; FaultAction::ALL.len()], LogBusy>;
    /// Calls `f` with each remembered fault, oldest first; `Err` when the log could not
    /// be read (then `f` saw none or part of it).
    fn each(&self, f: &mut dyn FnMut(&FaultRecord)) -> Result<(), LogBusy>;
}

// ---------------------------------------------------------------------------------------
// Failure injection
// ---------------------------------------------------------------------------------------

/// One allocation site's knobs and counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SiteState {
    pub probability: u8,
    pub interval: u32,
    pub times: i32,
    /// Failures it may still inject (-1: unlimited).
    pub times_left: i32,
    pub space: u32,
    pub filter: bool,
    pub calls: u64,
    pub fired: u64,
}

/// One task's failure-injection state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TaskFailState {
    pub make_it_fail: bool,
    pub fail_nth: u32,
}

/// The last injected failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LastFailure {
    pub site: AllocSite,
    pub slot: usize,
    pub by_fail_nth: bool,
}

/// Failure injection as `fail` shows it: plain data, taken from the kernel's `Injector`
/// (or from a copy of it in guest memory).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FailState {
    pub seed: u64,
    /// By [`AllocSite::index`].
    pub sites: [SiteState; AllocSite::ALL.len()],
    /// By slot.
    pub tasks: [TaskFailState; NR_TASKS],
    pub last: Option<LastFailure>,
}

impl FailState {
    /// The state of `injector`.
    pub fn of(injector: &Injector) -> FailState {
        let mut state = FailState {
            seed: injector.seed(),
            sites: [SiteState::default(); AllocSite::ALL.len()],
            tasks: [TaskFailState::default(); NR_TASKS],
            last: injector.last.map(|l| LastFailure {
                site: l.site,
                slot: l.slot,
                by_fail_nth: l.by_fail_nth,
            }),
        };
        for site in AllocSite::ALL {
            let s = injector.site(site);
            state.sites[site.index()] = SiteState {
                probability: s.attr.probability,
                interval: s.attr.interval,
                times: s.attr.times,
                times_left: injector.times_left(site),
                space: s.attr.space,
                filter: s.attr.task_filter,
                calls: s.calls,
                fired: s.fired,
            };
        }
        for (slot, task) in state.tasks.iter_mut().enumerate() {
            if let Ok(t) = injector.task(slot) {
                *task = TaskFailState {
                    make_it_fail: t.make_it_fail,
                    fail_nth: t.fail_nth,
                };
            }
        }
        state
    }
}
