//! The page-fault entry (0.11 `mm/page.s`) and the other exceptions of user tasks.
//!
//! `page.s` pushes CR2 and the error code and calls `do_no_page` when bit 0 (P) is clear,
//! `do_wp_page` when it is set. This module does the same, then books the outcome: the
//! task's fault counts, the fault log, and `oom()` or a kill when the fault cannot be
//! resolved. A page fault in ring 0 is a kernel bug (see D9 in `uaccess.rs`).

use abi::errno::EFAULT;
use abi::wait_status;
use mm::addr::{slot_base, LinearAddr, NR_TASKS};
use mm::memory::{fault_code, NoPageError, NoPageOutcome, WpError, WpOutcome};
use mm::{FaultContext, ProgramPages};

use crate::arch::x86::{cpu, crash, idt, trap_entry::TrapFrame};
use crate::faultlog::{self, FaultAction, FaultRecord};
use crate::kfault;
use crate::paging::{paging, ImageProgram, Paging};
use crate::syscall::Errno;
use crate::task::exit::do_exit;
use crate::task::{current, tasks, Name};

/// Why a fault could not be resolved.
enum Unresolved {
    /// No memory: 0.11 `oom()`.
    OutOfMemory,
    /// An illegal access: the task dies of SIGSEGV.
    Illegal,
}

/// The #PF handler.
pub fn page_fault(frame: &mut TrapFrame) {
    let linear = LinearAddr::new(cpu::read_cr2());
    if !frame.from_user() {
        crash_in_kernel(frame, "page fault in kernel mode");
    }
    // `monitor catch pagefault`: gdb sees the fault before do_no_page/do_wp_page does.
    crate::gdb::on_page_fault(frame, linear);
    let code = frame.error_code;
    let result = if code & fault_code::PRESENT == 0 {
        resolve_no_page(code, linear)
    } else {
        resolve_wp_page(code, linear)
    };
    finish(result, code, linear, frame.eip, false);
}

/// Books a fault's outcome; kills the task when it could not be resolved.
fn finish(
    result: Result<FaultAction, (Unresolved, &'static str)>,
    code: u32,
    linear: LinearAddr,
    eip: u32,
    by_kernel: bool,
) {
    let pid = crate::task::current_pid();
    let action = match result {
        Ok(action) => action,
        Err((Unresolved::OutOfMemory, _)) => FaultAction::OutOfMemory,
        Err((Unresolved::Illegal, _)) => FaultAction::Killed,
    };
    faultlog::record(FaultRecord {
        seq: 0,
        pid,
        linear: linear.as_u32(),
        error_code: code,
        eip,
        by_kernel,
        action,
    });
    kfault!(
        "fault: pid {pid} {} at {linear} (error {code:#x}: {}{}{}) eip {eip:#x}: {}",
        if by_kernel {
            "kernel access"
        } else {
            "page fault"
        },
        if code & fault_code::PRESENT != 0 {
            "protection"
        } else {
            "not present"
        },
        if code & fault_code::WRITE != 0 {
            ", write"
        } else {
            ", read"
        },
        if code & fault_code::USER != 0 {
            ", user"
        } else {
            ", kernel"
        },
        action.name()
    );
    match result {
        Ok(_) => {}
        Err((Unresolved::OutOfMemory, _)) => oom(),
        Err((Unresolved::Illegal, why)) => {
            println!("pid {pid}: {why} at linear {linear} (eip {eip:#x}): killed (SIGSEGV)");
            do_exit(wait_status::killed(abi::signal::SIGSEGV));
        }
    }
}

/// `do_no_page` for the current task at `linear`, with its program and the other tasks
/// running the same program (0.11 `share_page`'s candidates).
fn resolve_no_page(
    code: u32,
    linear: LinearAddr,
) -> Result<FaultAction, (Unresolved, &'static str)> {
    let slot = current();
    let mut t = tasks();
    let task = t.get(slot);
    let program = task.program.map(ImageProgram);
    let mut peers = [LinearAddr::default(); NR_TASKS];
    let mut nr_peers = 0;
    for (other_slot, other) in t.user_tasks() {
        if other_slot != slot
            && other.state != crate::task::TaskState::Zombie
            && task.same_program(other)
        {
            peers[nr_peers] = slot_base(other_slot);
            nr_peers += 1;
        }
    }
    let ctx = FaultContext {
        base: slot_base(slot),
        program: program.as_ref().map(|p| p as &dyn ProgramPages),
        peers: &peers[..nr_peers],
    };
    let result = {
        let mut p = paging();
        let Paging { mm, policy } = &mut *p;
        mm.do_no_page(code, linear, &ctx, policy)
    };
    let faults = &mut t.get_mut(slot).faults;
    match result {
        Ok(NoPageOutcome::ZeroPage(_)) => {
            faults.demand_zero += 1;
            Ok(FaultAction::ZeroPage)
        }
        Ok(NoPageOutcome::Loaded(_)) => {
            faults.loaded += 1;
            Ok(FaultAction::Loaded)
        }
        Ok(NoPageOutcome::Shared(_)) => {
            faults.shared += 1;
            Ok(FaultAction::Shared)
        }
        Ok(NoPageOutcome::AlreadyPresent(_)) => Ok(FaultAction::Spurious),
        Ok(NoPageOutcome::SwappedIn(_)) => {
            faults.swapped_in += 1;
            Ok(FaultAction::SwappedIn)
        }
        Err(NoPageError::SwapIn(mm::swap::SwapInError::OutOfMemory(_))) => {
            Err((Unresolved::OutOfMemory, "out of memory"))
        }
        Err(NoPageError::SwapIn(e)) => {
            println!("do_no_page: {e}");
            Err((
                Unresolved::Illegal,
                "the page could not be read back from swap",
            ))
        }
        Err(NoPageError::OutOfMemory(_))
        | Err(NoPageError::Share(mm::memory::ShareError::OutOfMemory(_))) => {
            Err((Unresolved::OutOfMemory, "out of memory"))
        }
        Err(NoPageError::OutsideTask(_)) => {
            Err((Unresolved::Illegal, "page fault outside the task's slot"))
        }
        Err(e) => {
            println!("do_no_page: {e}");
            Err((Unresolved::Illegal, "do_no_page refused the mapping"))
        }
    }
}

/// `do_wp_page` for the current task.
fn resolve_wp_page(
    code: u32,
    linear: LinearAddr,
) -> Result<FaultAction, (Unresolved, &'static str)> {
    let slot = current();
    let result = {
        let mut p = paging();
        let Paging { mm, policy } = &mut *p;
        mm.do_wp_page(code, linear, slot_base(slot), policy)
    };
    book_wp(slot, result)
}

/// Counts a write-protect outcome for the task in `slot`.
fn book_wp(
    slot: usize,
    result: Result<WpOutcome, WpError>,
) -> Result<FaultAction, (Unresolved, &'static str)> {
    let mut t = tasks();
    let faults = &mut t.get_mut(slot).faults;
    match result {
        Ok(WpOutcome::Copied { .. }) => {
            faults.cow_copied += 1;
            Ok(FaultAction::CowCopied)
        }
        Ok(WpOutcome::MadeWritable(_)) => {
            faults.cow_made_writable += 1;
            Ok(FaultAction::CowMadeWritable)
        }
        Ok(WpOutcome::AlreadyWritable(_)) | Ok(WpOutcome::Retry) => Ok(FaultAction::Spurious),
        Err(WpError::OutOfMemory(_)) => Err((Unresolved::OutOfMemory, "out of memory")),
        Err(WpError::NotAWrite(_)) => Err((Unresolved::Illegal, "protection fault on a read")),
        Err(WpError::OutsideTask(_)) => Err((
            Unresolved::Illegal,
            "write-protect fault outside the task's slot",
        )),
        Err(WpError::NotMapped(_)) => Err((
            Unresolved::Illegal,
            "write-protect fault on an unmapped page",
        )),
        Err(e @ WpError::DirectoryProtection(..)) => {
            println!("do_wp_page: {e}");
            Err((
                Unresolved::Illegal,
                "write fault under a damaged directory entry",
            ))
        }
        Err(e @ WpError::Corrupt(_)) => {
            println!("do_wp_page: {e}");
            Err((Unresolved::Illegal, "corrupted mem_map in do_wp_page"))
        }
    }
}

/// Makes the current task's page at `page` present before the kernel touches it, as the
/// task's own access would (D9). Out of memory kills the task, as in 0.11.
pub fn kernel_touch(page: LinearAddr) -> Result<(), Errno> {
    if paging().mm.translate(page).is_some() {
        return Ok(());
    }
    let code = fault_code::USER;
    let result = resolve_no_page(code, page);
    if matches!(result, Err((Unresolved::Illegal, _))) {
        return Err(Errno(EFAULT));
    }
    finish(result, code, page, 0, true);
    Ok(())
}

/// 0.11 `write_verify` on the current task's page, booked like a write-protect fault.
pub fn kernel_write_verify(page: LinearAddr) -> Result<(), Errno> {
    let slot = current();
    let result = {
        let mut p = paging();
        let Paging { mm, policy } = &mut *p;
        mm.write_verify(page, policy)
    };
    let code = fault_code::PRESENT | fault_code::WRITE | fault_code::USER;
    match result {
        Ok(None) => Ok(()),
        Ok(Some(outcome)) => {
            let booked = book_wp(slot, Ok(outcome));
            finish(booked, code, page, 0, true);
            Ok(())
        }
        Err(WpError::OutOfMemory(_)) => {
            finish(
                Err((Unresolved::OutOfMemory, "out of memory")),
                code,
                page,
                0,
                true,
            );
            Ok(())
        }
        Err(_) => Err(Errno(EFAULT)),
    }
}

/// 0.11 `oom()`: "out of memory", and the current task dies of SIGSEGV.
pub fn oom() -> ! {
    let (pid, name) = {
        let t = tasks();
        let task = t.get(current());
        (task.pid, task.name)
    };
    println!("oom: out of memory, killing pid {pid} ({})", name.as_str());
    do_exit(wait_status::killed(abi::signal::SIGSEGV));
}

/// Any other exception from user mode: the task dies of SIGSEGV (0.11 sends SIGSEGV for
/// most traps), the kernel goes on.
pub fn user_exception(frame: &TrapFrame) -> ! {
    let (pid, name) = {
        let t = tasks();
        let task = t.get(current());
        (task.pid, task.name)
    };
    println!(
        "pid {pid} ({}): {} (vector {}, error code {:#x}) at eip {:#x}: killed (SIGSEGV)",
        name.as_str(),
        idt::vector_name(frame.vector),
        frame.vector,
        frame.error_code,
        frame.eip
    );
    do_exit(wait_status::killed(abi::signal::SIGSEGV));
}

/// Reports an exception in ring 0 and stops the machine (status CRASH).
pub fn crash_in_kernel(frame: &TrapFrame, reason: &str) -> ! {
    let mut name = Name::new("?");
    let pid = crate::task::describe_current(&mut name);
    crash::report_and_exit(frame, reason, pid.map(|p| (p, name.as_str())))
}
