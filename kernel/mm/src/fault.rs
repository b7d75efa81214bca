//! 0.11 `mm/page.s` and what a fault's outcome means: the dispatch on the error code, the
//! faults the kernel takes on a task's behalf before it touches user memory (D9), and the
//! verdict the kernel acts on (the access goes on, `oom()`, or SIGSEGV).
//!
//! The kernel (`kernel/kernel/src/fault.rs`, `uaccess.rs`) and the simulated kernel of
//! the host tests (`kernel/mm/tests/support`) both run these functions; they keep only
//! what differs between a CPU and a simulation: reading CR2, the task table, printing,
//! and `do_exit`.

use core::fmt;

use abi::FaultCounts;

use crate::addr::{slot_base, LinearAddr, NR_TASKS};
pub use crate::memory::fault_code;
use crate::memory::{
    FailurePolicy, FaultContext, Mm, NoPageError, NoPageOutcome, OutOfMemory, PutPageError,
    ShareError, WpError, WpOutcome,
};
use crate::phys::PhysMem;
use crate::swap::SwapInError;

/// What the fault handler did about one fault (the fault log's action).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultAction {
    /// `do_no_page`: a fresh zero page.
    ZeroPage,
    /// `do_no_page`: read from the program image.
    Loaded,
    /// `do_no_page`: shared with another task running the same program.
    Shared,
    /// `do_wp_page`: the shared page was copied.
    CowCopied,
    /// `do_wp_page`: the count was 1, the page only became writable.
    CowMadeWritable,
    /// `do_no_page` → `swap_in`: read back from the swap device.
    SwappedIn,
    /// The entry was already fine (stale TLB): flushed.
    Spurious,
    /// `oom()` killed the task.
    OutOfMemory,
    /// The access was illegal: the task was killed.
    Killed,
}

impl FaultAction {
    /// Every action, in a fixed order (the index of the fault log's totals).
    pub const ALL: [FaultAction; 9] = [
        FaultAction::ZeroPage,
        FaultAction::Loaded,
        FaultAction::Shared,
        FaultAction::CowCopied,
        FaultAction::CowMadeWritable,
        FaultAction::SwappedIn,
        FaultAction::Spurious,
        FaultAction::OutOfMemory,
        FaultAction::Killed,
    ];

    /// The place in [`FaultAction::ALL`] (the published code of the introspection
    /// descriptor's fault ring).
    pub const fn index(self) -> usize {
        self as usize
    }

    pub fn name(self) -> &'static str {
        match self {
            FaultAction::ZeroPage => "zero page",
            FaultAction::Loaded => "loaded from image",
            FaultAction::Shared => "shared",
            FaultAction::CowCopied => "COW copied",
            FaultAction::CowMadeWritable => "COW made writable",
            FaultAction::SwappedIn => "swapped in",
            FaultAction::Spurious => "spurious",
            FaultAction::OutOfMemory => "out of memory, killed",
            FaultAction::Killed => "killed",
        }
    }

    /// Counts the fault in the task's per-outcome counts (`meminfo`); spurious faults and
    /// kills count nowhere.
    pub fn count_in(self, counts: &mut FaultCounts) {
        let counter = match self {
            FaultAction::ZeroPage => &mut counts.demand_zero,
            FaultAction::Loaded => &mut counts.loaded,
            FaultAction::Shared => &mut counts.shared,
            FaultAction::CowCopied => &mut counts.cow_copied,
            FaultAction::CowMadeWritable => &mut counts.cow_made_writable,
            FaultAction::SwappedIn => &mut counts.swapped_in,
            FaultAction::Spurious | FaultAction::OutOfMemory | FaultAction::Killed => return,
        };
        *counter += 1;
    }
}

/// Where the reason for a kill comes from: what a test of the simulated kernel may expect.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KillCause {
    /// The task's own access is illegal (outside its slot, a protection fault on a read).
    BadAccess,
    /// The swap device failed: the task's page is lost, to it alone.
    DeviceError,
    /// A page table, directory entry or count was damaged (`monitor corrupt`).
    DamagedState,
    /// An invariant of the paging code does not hold: a kernel bug.
    KernelBug,
}

/// Why a fault kills the task with SIGSEGV.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Illegal {
    /// `do_no_page` failed for a reason other than memory.
    NoPage(NoPageError),
    /// `do_wp_page` failed for a reason other than memory.
    WpPage(WpError),
}

impl Illegal {
    /// The phrase of the console's kill message ("pid N: WHY at linear ...").
    pub fn why(&self) -> &'static str {
        match self {
            Illegal::NoPage(NoPageError::OutsideTask(_)) => "page fault outside the task's slot",
            Illegal::NoPage(NoPageError::SwapIn(_)) => "the page could not be read back from swap",
            Illegal::NoPage(_) => "do_no_page refused the mapping",
            Illegal::WpPage(WpError::NotAWrite(_)) => "protection fault on a read",
            Illegal::WpPage(WpError::OutsideTask(_)) => {
                "write-protect fault outside the task's slot"
            }
            Illegal::WpPage(WpError::NotMapped(_)) => "write-protect fault on an unmapped page",
            Illegal::WpPage(WpError::DirectoryProtection(..)) => {
                "write fault under a damaged directory entry"
            }
            Illegal::WpPage(WpError::Corrupt(_)) => "corrupted mem_map in do_wp_page",
            // Resolved as out of memory, never a kill (see `Verdict::from_wp`).
            Illegal::WpPage(WpError::OutOfMemory(_)) => "out of memory",
        }
    }

    /// The error the kernel prints before the kill message, when the phrase alone does
    /// not say what happened (`do_no_page: ...`, `do_wp_page: ...`).
    pub fn detail(&self) -> Option<Detail> {
        match self {
            Illegal::NoPage(NoPageError::OutsideTask(_)) => None,
            Illegal::NoPage(e) => Some(Detail::NoPage(*e)),
            Illegal::WpPage(e @ (WpError::DirectoryProtection(..) | WpError::Corrupt(_))) => {
                Some(Detail::WpPage(*e))
            }
            Illegal::WpPage(_) => None,
        }
    }

    /// Where the reason comes from.
    pub fn cause(&self) -> KillCause {
        match self {
            Illegal::NoPage(NoPageError::OutsideTask(_))
            | Illegal::WpPage(WpError::OutsideTask(_) | WpError::NotAWrite(_)) => {
                KillCause::BadAccess
            }
            Illegal::NoPage(NoPageError::SwapIn(SwapInError::Io(_))) => KillCause::DeviceError,
            Illegal::NoPage(NoPageError::SwapIn(SwapInError::BadEntry(_)))
            | Illegal::NoPage(NoPageError::PutPage(PutPageError::DamagedTable(_)))
            | Illegal::NoPage(NoPageError::Share(ShareError::DamagedTable(_)))
            | Illegal::WpPage(WpError::DirectoryProtection(..) | WpError::Corrupt(_)) => {
                KillCause::DamagedState
            }
            _ => KillCause::KernelBug,
        }
    }
}

/// An error printed before a kill message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Detail {
    NoPage(NoPageError),
    WpPage(WpError),
}

impl fmt::Display for Detail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Detail::NoPage(e) => write!(f, "do_no_page: {e}"),
            Detail::WpPage(e) => write!(f, "do_wp_page: {e}"),
        }
    }
}

/// What a fault comes to: the access goes on, or the task dies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The page is there now (or was): the access is retried.
    Resolved(FaultAction),
    /// No memory: 0.11 `oom()` prints "out of memory" and the task dies of SIGSEGV.
    OutOfMemory(OutOfMemory),
    /// The access cannot be made good: the task dies of SIGSEGV.
    Illegal(Illegal),
}

impl Verdict {
    /// What `do_no_page` came to.
    pub fn from_no_page(result: Result<NoPageOutcome, NoPageError>) -> Verdict {
        match result {
            Ok(NoPageOutcome::ZeroPage(_)) => Verdict::Resolved(FaultAction::ZeroPage),
            Ok(NoPageOutcome::Loaded(_)) => Verdict::Resolved(FaultAction::Loaded),
            Ok(NoPageOutcome::Shared(_)) => Verdict::Resolved(FaultAction::Shared),
            Ok(NoPageOutcome::AlreadyPresent(_)) => Verdict::Resolved(FaultAction::Spurious),
            Ok(NoPageOutcome::SwappedIn(_)) => Verdict::Resolved(FaultAction::SwappedIn),
            Err(
                NoPageError::OutOfMemory(e)
                | NoPageError::SwapIn(SwapInError::OutOfMemory(e))
                | NoPageError::Share(ShareError::OutOfMemory(e))
                | NoPageError::PutPage(PutPageError::OutOfMemory(e)),
            ) => Verdict::OutOfMemory(e),
            Err(e) => Verdict::Illegal(Illegal::NoPage(e)),
        }
    }

    /// What `do_wp_page` (or `write_verify`'s `un_wp_page`) came to.
    pub fn from_wp(result: Result<WpOutcome, WpError>) -> Verdict {
        match result {
            Ok(WpOutcome::Copied { .. }) => Verdict::Resolved(FaultAction::CowCopied),
            Ok(WpOutcome::MadeWritable(_)) => Verdict::Resolved(FaultAction::CowMadeWritable),
            Ok(WpOutcome::AlreadyWritable(_) | WpOutcome::Retry) => {
                Verdict::Resolved(FaultAction::Spurious)
            }
            Err(WpError::OutOfMemory(e)) => Verdict::OutOfMemory(e),
            Err(e) => Verdict::Illegal(Illegal::WpPage(e)),
        }
    }

    /// The fault log's action.
    pub fn action(&self) -> FaultAction {
        match self {
            Verdict::Resolved(action) => *action,
            Verdict::OutOfMemory(_) => FaultAction::OutOfMemory,
            Verdict::Illegal(_) => FaultAction::Killed,
        }
    }

    pub fn is_resolved(&self) -> bool {
        matches!(self, Verdict::Resolved(_))
    }

    /// The signal the task dies of, if it dies (SIGSEGV, as 0.11's `oom()` and `die()`).
    pub fn kill_signal(&self) -> Option<u32> {
        (!self.is_resolved()).then_some(abi::signal::SIGSEGV)
    }
}

/// One fault and what came of it, as the kernel books it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fault {
    pub linear: LinearAddr,
    pub error_code: u32,
    /// The kernel took the fault on the task's behalf (D9: before it touched the task's
    /// memory), not the CPU.
    pub by_kernel: bool,
    pub verdict: Verdict,
}

/// 0.11 `page.s`: a not-present fault (error code bit 0 clear) goes to `do_no_page`, a
/// protection fault to `do_wp_page`. The fault comes back whole, with its verdict, for the
/// kernel to book.
#[inline(never)]
pub fn page_fault<P: PhysMem>(
    mm: &mut Mm<P>,
    error_code: u32,
    linear: LinearAddr,
    ctx: &FaultContext<'_>,
    policy: &mut dyn FailurePolicy,
) -> Fault {
    // The address escapes, so `linear` lives in memory for the whole call and a debugger
    // stopped in do_no_page or do_wp_page reads it in this frame (in a register, the
    // optimizer's debug info loses it across the call).
    core::hint::black_box(&linear);
    // Each path changes nothing before its first allocation (do_no_page's zero page, its
    // loaded page or shared page's table, swap_in's page, un_wp_page's copy): a swap_out
    // that allocation runs may let readers in while it writes (Mm::begin_operation).
    mm.begin_operation();
    let verdict = if error_code & fault_code::PRESENT == 0 {
        Verdict::from_no_page(mm.do_no_page(error_code, linear, ctx, policy))
    } else {
        Verdict::from_wp(mm.do_wp_page(error_code, linear, ctx.base, policy))
    };
    mm.end_operation();
    Fault {
        linear,
        error_code,
        by_kernel: false,
        verdict,
    }
}

/// The error code the kernel's own fault-in carries: a not-present access by the task
/// (D9: the kernel does what the task's own access would).
const KERNEL_TOUCH_CODE: u32 = fault_code::USER;
/// The error code of `write_verify`'s copy-on-write break: a write by the task to a
/// present page.
const WRITE_VERIFY_CODE: u32 = fault_code::PRESENT | fault_code::WRITE | fault_code::USER;

/// D9: the fault the task's own access to `page` would take, taken by the kernel before
/// it touches the page; `None` when the page is present.
pub fn kernel_touch<P: PhysMem>(
    mm: &mut Mm<P>,
    page: LinearAddr,
    ctx: &FaultContext<'_>,
    policy: &mut dyn FailurePolicy,
) -> Option<Fault> {
    if mm.translate(page).is_some() {
        return None;
    }
    let verdict = Verdict::from_no_page(mm.do_no_page(KERNEL_TOUCH_CODE, page, ctx, policy));
    Some(Fault {
        linear: page,
        error_code: KERNEL_TOUCH_CODE,
        by_kernel: true,
        verdict,
    })
}

/// 0.11 `write_verify` on `page`, as a fault: `None` when the page needed nothing (no
/// table, not present, or already writable).
pub fn kernel_write_verify<P: PhysMem>(
    mm: &mut Mm<P>,
    page: LinearAddr,
    policy: &mut dyn FailurePolicy,
) -> Option<Fault> {
    let verdict = match mm.write_verify(page, policy) {
        Ok(None) => return None,
        Ok(Some(outcome)) => Verdict::from_wp(Ok(outcome)),
        Err(e) => Verdict::from_wp(Err(e)),
    };
    Some(Fault {
        linear: page,
        error_code: WRITE_VERIFY_CODE,
        by_kernel: true,
        verdict,
    })
}

/// Rounds `verify_area` may take for one page before giving up (each round can only be
/// undone by `swap_out` evicting the page again while `write_verify` allocates).
/// A refusal the originals do not make (D23): 0.11's `verify_area` never loops.
pub const SETTLE_ROUNDS: u32 = 8;

/// Why the kernel cannot touch a task's page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UserAccessError {
    /// A fault on the way was not resolved: the kernel books it and the task dies.
    Fault(Fault),
    /// The address is no page of the task (`EFAULT`).
    BadAddress,
    /// The page never settled present and writable within [`SETTLE_ROUNDS`] (`ENOMEM`).
    Unsettled,
}

/// Sorts a fault the kernel took on the task's behalf: resolved faults are booked and the
/// access goes on; an unresolved one stops it and, as the same fault of the task's own
/// access would, kills the task (a swap read that failed, `oom()`, a damaged table). Only
/// an address outside the task is the caller's error (`EFAULT`), and the range checks
/// before every access keep it from getting here.
fn book_kernel_fault(
    fault: Option<Fault>,
    book: &mut dyn FnMut(&Fault),
) -> Result<(), UserAccessError> {
    let Some(fault) = fault else {
        return Ok(());
    };
    match fault.verdict {
        Verdict::Resolved(_) => {
            book(&fault);
            Ok(())
        }
        Verdict::Illegal(why) if why.cause() == KillCause::BadAccess => {
            Err(UserAccessError::BadAddress)
        }
        Verdict::Illegal(_) | Verdict::OutOfMemory(_) => Err(UserAccessError::Fault(fault)),
    }
}

/// D9 for a read of the task's `page`: faults it in as the task's access would. Every
/// resolved fault goes to `book`.
pub fn touch_for_read<P: PhysMem>(
    mm: &mut Mm<P>,
    page: LinearAddr,
    ctx: &FaultContext<'_>,
    policy: &mut dyn FailurePolicy,
    book: &mut dyn FnMut(&Fault),
) -> Result<(), UserAccessError> {
    book_kernel_fault(kernel_touch(mm, page, ctx, policy), book)
}

/// 0.11 `verify_area` for one page: faulted in (D9) and passed through `write_verify`
/// until it is present and writable, so that a ring-0 store (which ignores RW: CR0.WP is
/// clear) lands in a private page. With swap, the copy `write_verify` allocates may evict
/// the page again, hence the rounds. Every resolved fault goes to `book`.
pub fn verify_page<P: PhysMem>(
    mm: &mut Mm<P>,
    page: LinearAddr,
    ctx: &FaultContext<'_>,
    policy: &mut dyn FailurePolicy,
    book: &mut dyn FnMut(&Fault),
) -> Result<(), UserAccessError> {
    for _ in 0..SETTLE_ROUNDS {
        book_kernel_fault(kernel_touch(mm, page, ctx, policy), book)?;
        book_kernel_fault(kernel_write_verify(mm, page, policy), book)?;
        if mm
            .pte(page)
            .is_some_and(|(_, _, pte)| pte.is_present() && pte.is_writable())
        {
            return Ok(());
        }
    }
    Err(UserAccessError::Unsettled)
}

/// 0.11 `verify_area` for one page as 0.11 does it (D9, `compat=D9`): `write_verify`
/// alone. A page that is not present is left as it is; the kernel's store into it
/// faults it in from ring 0 afterwards, and that fault may share it read-only with
/// another task, so the store lands in the other task's page (the hole D9 closes).
pub fn write_verify_page<P: PhysMem>(
    mm: &mut Mm<P>,
    page: LinearAddr,
    policy: &mut dyn FailurePolicy,
    book: &mut dyn FnMut(&Fault),
) -> Result<(), UserAccessError> {
    book_kernel_fault(kernel_write_verify(mm, page, policy), book)
}

/// The segment bases of the tasks `share_page` tries for the task in `current`, in 0.11's
/// order: from the last slot down to slot 1 (`for (p = &LAST_TASK ; p > &FIRST_TASK ; --p)`),
/// skipping the task itself; `same_program(slot)` says whether the task in `slot` runs
/// the same program (0.11 compares `executable`).
pub struct Peers {
    bases: [LinearAddr; NR_TASKS],
    len: usize,
}

impl Peers {
    pub fn of(current: usize, mut same_program: impl FnMut(usize) -> bool) -> Peers {
        let mut peers = Peers {
            bases: [LinearAddr::default(); NR_TASKS],
            len: 0,
        };
        for slot in (1..NR_TASKS).rev() {
            if slot != current && same_program(slot) {
                peers.bases[peers.len] = slot_base(slot);
                peers.len += 1;
            }
        }
        peers
    }

    pub fn as_slice(&self) -> &[LinearAddr] {
        &self.bases[..self.len]
    }
}
