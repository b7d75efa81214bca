//! The memory steps of a task's life, task *n* in slot *n*: 0.11 `copy_process` and
//! `copy_mem` (`fork`), `do_execve`'s and `do_exit`'s `free_page_tables`, and `release`'s
//! `free_page` of the task page.
//!
//! The kernel (`kernel/kernel/src/task/`) and the simulated kernel of the host tests both
//! run these; the kernel keeps the task table, the registers and the task switch.

use core::fmt;

use abi::errno::EAGAIN;

use crate::addr::{slot_base, Frame, LinearAddr, NR_TASKS, TASK_SIZE};
use crate::mem_map::MapCountError;
use crate::memory::{
    AllocSite, CopiedTables, CopyError, FailurePolicy, FreedTables, Mm, OutOfMemory,
};
use crate::phys::PhysMem;

/// The linear range of a user task's slot; panics on slot 0 or past the table (a kernel
/// bug: the task table hands out slots 1..NR_TASKS).
fn user_slot(slot: usize) -> LinearAddr {
    assert!(
        (1..NR_TASKS).contains(&slot),
        "slot {slot} is not a user slot"
    );
    slot_base(slot)
}

/// 0.11 `copy_process`'s `p = (struct task_struct *) get_free_page()`: the task page
/// (site [`AllocSite::TaskStruct`]).
pub fn get_task_page<P: PhysMem>(
    mm: &mut Mm<P>,
    policy: &mut dyn FailurePolicy,
) -> Result<Frame, OutOfMemory> {
    mm.get_free_page_with(AllocSite::TaskStruct, policy)
}

/// `copy_page_tables` failed; the child's slot was released again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CopyMemError {
    pub error: CopyError,
    /// What the cleanup's `free_page_tables` released (the tables built so far). A bad
    /// reference here means the parent's tables were damaged.
    pub cleanup: FreedTables,
}

/// 0.11 `copy_mem(nr, p)`: the child's slot shares the parent's whole slot copy-on-write
/// (`copy_page_tables(old_data_base, new_data_base, data_limit)`); on failure
/// `free_page_tables(new_data_base, data_limit)` releases what was built, so nothing
/// leaks.
pub fn copy_mem<P: PhysMem>(
    mm: &mut Mm<P>,
    parent_slot: usize,
    child_slot: usize,
    policy: &mut dyn FailurePolicy,
) -> Result<CopiedTables, CopyMemError> {
    let (old_base, new_base) = (slot_base(parent_slot), user_slot(child_slot));
    mm.copy_page_tables(old_base, new_base, TASK_SIZE, policy)
        .map_err(|error| {
            let cleanup = mm
                .free_page_tables(new_base, TASK_SIZE)
                .expect("a user slot is never the kernel's");
            CopyMemError { error, cleanup }
        })
}

/// What fork's memory steps built for the child.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Forked {
    pub task_page: Frame,
    pub copied: CopiedTables,
}

/// Why fork's memory steps failed; nothing is left allocated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ForkError {
    /// No task page.
    TaskPage(OutOfMemory),
    /// `copy_mem` failed (its tables are released, and the task page too).
    CopyMem(CopyMemError),
}

impl ForkError {
    /// The error number fork returns: EAGAIN for both, as 0.11's `copy_process` ("if
    /// (!p) return -EAGAIN", and "if (copy_mem(nr,p)) { ... return -EAGAIN; }", which
    /// replaces the `-ENOMEM` of `copy_mem`).
    pub fn errno(&self) -> i32 {
        match self {
            ForkError::TaskPage(_) | ForkError::CopyMem(_) => EAGAIN,
        }
    }
}

impl fmt::Display for ForkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ForkError::TaskPage(e) => write!(f, "no task page ({e})"),
            ForkError::CopyMem(e) => write!(f, "copy_page_tables failed ({})", e.error),
        }
    }
}

/// 0.11 `copy_process`'s memory: the task page, then `copy_mem`; when `copy_mem` fails
/// the task page is freed again (`free_page((long) p)`).
pub fn copy_process<P: PhysMem>(
    mm: &mut Mm<P>,
    parent_slot: usize,
    child_slot: usize,
    policy: &mut dyn FailurePolicy,
) -> Result<Forked, ForkError> {
    let task_page = get_task_page(mm, policy).map_err(ForkError::TaskPage)?;
    match copy_mem(mm, parent_slot, child_slot, policy) {
        Ok(copied) => Ok(Forked { task_page, copied }),
        Err(e) => {
            mm.free_page(task_page.addr())
                .expect("the task page was just allocated");
            Err(ForkError::CopyMem(e))
        }
    }
}

/// 0.11 `do_execve`'s memory, at the point of no return: the old program's pages and
/// tables go (`free_page_tables` of the slot). Nothing new is mapped (D14): the first
/// instruction fetch faults the program in.
///
/// The failure site [`AllocSite::Execve`] is consulted first, in place of the allocations
/// of 0.11's `copy_strings`: a failure changes nothing and `execve` returns `ENOMEM`.
pub fn do_execve<P: PhysMem>(
    mm: &mut Mm<P>,
    slot: usize,
    policy: &mut dyn FailurePolicy,
) -> Result<FreedTables, OutOfMemory> {
    let base = user_slot(slot);
    if policy.should_fail(AllocSite::Execve) {
        return Err(OutOfMemory {
            site: AllocSite::Execve,
            injected: true,
        });
    }
    Ok(free_slot(mm, base))
}

/// 0.11 `do_exit`'s memory: `free_page_tables` of the task's slot (0.11 frees the code
/// and the data segment, which cover the same slot). The task page stays: the task is
/// still running on it until its parent collects it ([`release`]).
pub fn do_exit<P: PhysMem>(mm: &mut Mm<P>, slot: usize) -> FreedTables {
    free_slot(mm, user_slot(slot))
}

fn free_slot<P: PhysMem>(mm: &mut Mm<P>, base: LinearAddr) -> FreedTables {
    mm.free_page_tables(base, TASK_SIZE)
        .expect("a user slot is always a range free_page_tables accepts")
}

/// 0.11 `release(p)`'s `free_page((long) p)`: the zombie's task page goes back.
pub fn release<P: PhysMem>(mm: &mut Mm<P>, task_page: Frame) -> Result<(), MapCountError> {
    mm.free_page(task_page.addr())
}
