//! The page-fault entry (0.11 `mm/page.s`) and the other exceptions of user tasks.
//!
//! `page.s` pushes CR2 and the error code and calls `do_no_page` when bit 0 (P) is clear,
//! `do_wp_page` when it is set: `mm::fault::page_fault` does that and says what the
//! outcome means. This module reads CR2, gives it the task's context, books the outcome
//! (the task's fault counts, the fault log) and acts on it: the task returns, or dies in
//! `oom()` or of SIGSEGV. A page fault in ring 0 is a kernel bug (see D9 in `uaccess.rs`).

use core::sync::atomic::{AtomicBool, Ordering};

use abi::errno::{EFAULT, ENOMEM};
use abi::wait_status;
use mm::addr::{slot_base, LinearAddr};
use mm::fault::{fault_code, Fault, Peers, UserAccessError, Verdict};
use mm::memory::OutOfMemory;
use mm::{FaultContext, Mm, ProgramPages};

use crate::arch::x86::{cpu, crash, idt, phys::KernelPhys, trap_entry::TrapFrame};
use crate::faultlog::{self, FaultRecord};
use crate::kfault;
use crate::paging::{paging, ImageProgram, KernelPolicy, Paging};
use crate::syscall::Errno;
use crate::task::exit::do_exit;
use crate::task::{current, tasks, Name, TaskState};

/// Set while the kernel stores into the current task's memory the 0.11 way
/// (`compat=D9`): a page fault in ring 0 inside the task's slot is then that store's, and
/// is handled as 0.11 handles it, not reported as a kernel bug.
static KERNEL_STORE: AtomicBool = AtomicBool::new(false);

/// The #PF handler.
pub fn page_fault(frame: &mut TrapFrame) {
    let linear = LinearAddr::new(cpu::read_cr2());
    if !frame.from_user() {
        if KERNEL_STORE.load(Ordering::Relaxed) && in_current_slot(linear) {
            return kernel_store_fault(frame, linear);
        }
        crash_in_kernel(frame, "page fault in kernel mode");
    }
    // `monitor catch pagefault`: gdb sees the fault before do_no_page/do_wp_page does.
    crate::gdb::on_page_fault(frame, linear);
    let error_code = frame.error_code;
    let fault = with_fault_context(|mm, ctx, policy| {
        mm::fault::page_fault(mm, error_code, linear, ctx, policy)
    });
    finish(fault, frame.eip);
}

/// Whether `linear` lies in the running task's 64 MiB slot.
fn in_current_slot(linear: LinearAddr) -> bool {
    let slot = current();
    slot != 0 && linear.as_u32().wrapping_sub(slot_base(slot).as_u32()) < mm::addr::TASK_SIZE
}

/// D9 (`compat=D9`): the kernel's store into the task's memory faulted on an absent page,
/// as 0.11's `put_fs_byte` does: `page.s` runs `do_no_page` (or `do_wp_page`) for the
/// task, and the store resumes; an unresolved fault kills the task as in user mode.
fn kernel_store_fault(frame: &mut TrapFrame, linear: LinearAddr) {
    let error_code = frame.error_code;
    let mut fault = with_fault_context(|mm, ctx, policy| {
        mm::fault::page_fault(mm, error_code, linear, ctx, policy)
    });
    fault.by_kernel = true;
    if !fault.verdict.is_resolved() {
        // The task dies inside the store; the next task is not storing.
        KERNEL_STORE.store(false, Ordering::Relaxed);
    }
    finish(fault, frame.eip);
}

/// Runs `store` with ring-0 page faults in the current task's slot handled as 0.11
/// handles them (D9, `compat=D9`).
pub fn kernel_store<T>(store: impl FnOnce() -> T) -> T {
    KERNEL_STORE.store(true, Ordering::Relaxed);
    let result = store();
    KERNEL_STORE.store(false, Ordering::Relaxed);
    result
}

/// 0.11's `verify_area` for one page of the current task (D9, `compat=D9`):
/// `write_verify` alone (`mm::fault::write_verify_page`).
pub fn write_verify_page(page: LinearAddr) -> Result<(), Errno> {
    settle(with_fault_context(|mm, _ctx, policy| {
        mm::fault::write_verify_page(mm, page, policy, &mut |f| book(f, 0))
    }))
}

/// D21 (`compat=D21`): in 0.11 the kernel reaches user memory through `fs`, whose limit is
/// the task's segment; a system call's access past it raises #GP in the kernel, and
/// `die("general protection")` kills the task with SIGSEGV. This kernel checks the range
/// first and returns EFAULT.
pub fn die_past_segment(ptr: u32, len: u32) -> ! {
    let (pid, name) = current_pid_and_name();
    println!(
        "general protection: 0000 (pid {pid} ({}): a system call reached offset {ptr:#x} + {len:#x}, past the 64 MiB segment: 0.11's die(), compat=D21): killed (SIGSEGV)",
        name.as_str()
    );
    do_exit(wait_status::killed(abi::signal::SIGSEGV));
}

/// Runs `f` on the paging state with the current task's fault context: its segment base,
/// its program, and the tasks running the same program (0.11 `share_page`'s candidates).
fn with_fault_context<R>(
    f: impl FnOnce(&mut Mm<KernelPhys>, &FaultContext<'_>, &mut KernelPolicy) -> R,
) -> R {
    let slot = current();
    let (program, peers) = {
        let t = tasks();
        let task = t.get(slot);
        let peers = Peers::of(slot, |other| {
            t.slots[other]
                .as_ref()
                .is_some_and(|o| o.state != TaskState::Zombie && task.same_program(o))
        });
        (task.program.map(ImageProgram), peers)
    };
    let ctx = FaultContext {
        base: slot_base(slot),
        program: program.as_ref().map(|p| p as &dyn ProgramPages),
        peers: peers.as_slice(),
    };
    let mut p = paging();
    let Paging { mm, policy } = &mut *p;
    f(mm, &ctx, policy)
}

/// Books a fault: the task's counts, the fault log and (`log=faults`) the console.
fn book(fault: &Fault, eip: u32) {
    let action = fault.verdict.action();
    let pid = {
        let mut t = tasks();
        let slot = current();
        // Only the counts change: only they are published again.
        action.count_in(t.faults_mut(slot));
        t.get(slot).pid
    };
    let (linear, code) = (fault.linear, fault.error_code);
    faultlog::record(FaultRecord {
        seq: 0,
        pid,
        linear: linear.as_u32(),
        error_code: code,
        eip,
        by_kernel: fault.by_kernel,
        action,
    });
    kfault!(
        "fault: pid {pid} {} at {linear} (error {code:#x}: {}{}{}) eip {eip:#x}: {}",
        if fault.by_kernel {
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
}

/// Books a fault and acts on its verdict: the access goes on, `oom()`, or SIGSEGV.
fn finish(fault: Fault, eip: u32) {
    if let Verdict::Illegal(why) = fault.verdict {
        if let Some(detail) = why.detail() {
            println!("{detail}");
        }
    }
    book(&fault, eip);
    match fault.verdict {
        Verdict::Resolved(_) => {}
        Verdict::OutOfMemory(cause) => oom(cause),
        Verdict::Illegal(why) => {
            let pid = crate::task::current_pid();
            println!(
                "pid {pid}: {} at linear {} (eip {eip:#x}): killed (SIGSEGV)",
                why.why(),
                fault.linear
            );
            do_exit(wait_status::killed(abi::signal::SIGSEGV));
        }
    }
}

/// What an access to the current task's memory by the kernel came to: a fault that was
/// not resolved kills the task (this never returns then); the rest become error numbers.
fn settle(result: Result<(), UserAccessError>) -> Result<(), Errno> {
    match result {
        Ok(()) => Ok(()),
        Err(UserAccessError::Fault(fault)) => {
            finish(fault, 0);
            unreachable!("an unresolved fault kills the task")
        }
        Err(UserAccessError::BadAddress) => Err(Errno(EFAULT)),
        Err(UserAccessError::Unsettled) => Err(Errno(ENOMEM)),
    }
}

/// D9 before the kernel reads the current task's `page`: faults it in as the task's own
/// access would (`mm::fault::touch_for_read`).
pub fn touch_for_read(page: LinearAddr) -> Result<(), Errno> {
    settle(with_fault_context(|mm, ctx, policy| {
        mm::fault::touch_for_read(mm, page, ctx, policy, &mut |f| book(f, 0))
    }))
}

/// 0.11 `verify_area` for one page of the current task (`mm::fault::verify_page`).
pub fn verify_page(page: LinearAddr) -> Result<(), Errno> {
    settle(with_fault_context(|mm, ctx, policy| {
        mm::fault::verify_page(mm, page, ctx, policy, &mut |f| book(f, 0))
    }))
}

/// 0.11 `oom()`: "out of memory", and the current task dies of SIGSEGV. When the failed
/// allocation was injected (`fail`, `failnth`, `fail.SITE=`), the message says so and
/// names the site: memory is not short, the fault-injection settings chose this.
pub fn oom(cause: OutOfMemory) -> ! {
    let (pid, name) = current_pid_and_name();
    if cause.injected {
        println!(
            "oom: out of memory (injected: a failure at site {}, not a real shortage), killing pid {pid} ({})",
            cause.site.name(),
            name.as_str()
        );
    } else {
        println!("oom: out of memory, killing pid {pid} ({})", name.as_str());
    }
    do_exit(wait_status::killed(abi::signal::SIGSEGV));
}

/// The running task's pid and program name, for the messages of a kill.
fn current_pid_and_name() -> (u32, Name) {
    let t = tasks();
    let task = t.get(current());
    (task.pid, task.name)
}

/// Any other exception from user mode: the task dies of SIGSEGV (0.11 sends SIGSEGV for
/// most traps), the kernel goes on.
pub fn user_exception(frame: &TrapFrame) -> ! {
    let (pid, name) = current_pid_and_name();
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
