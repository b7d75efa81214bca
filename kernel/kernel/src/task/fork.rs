//! `fork`: 0.11 `find_empty_process` + `copy_process` + `copy_mem`.
//!
//! The child gets the next free slot, a task page from `get_free_page` and, through
//! `copy_page_tables`, the parent's pages shared copy-on-write. Nothing is copied until
//! one side writes.

use abi::errno::EAGAIN;
use mm::addr::slot_base;
use mm::process::{self, ForkError};

use super::{current, tasks, Task, TaskState};
use crate::arch::x86::{context, trap_entry::TrapFrame};
use crate::kevent;
use crate::paging::{paging, Paging};
use crate::syscall::Errno;

/// `fork()` for the task whose trap frame is `frame`: the child's pid, or an error.
/// Never inlined: gdb sessions break on it (`pg-break sys_fork`), and whether LLVM inlines
/// it into the system-call dispatch otherwise changes with unrelated code.
#[inline(never)]
pub fn sys_fork(frame: &TrapFrame) -> Result<u32, Errno> {
    let parent_slot = current();
    let mut t = tasks();
    // 0.11 find_empty_process: -EAGAIN when the table is full.
    let Some((slot, pid)) = t.find_empty_process() else {
        kevent!(
            "fork: no free task slot (pid {} gets EAGAIN)",
            t.get(parent_slot).pid
        );
        return Err(Errno(EAGAIN));
    };
    let mut p = paging();
    let Paging { mm, policy } = &mut *p;
    // The child inherits make-it-fail, not fail-nth (Linux's dup_task_struct).
    crate::paging::injector().fork_task(parent_slot, slot);
    // 0.11 copy_process + copy_mem: the task page, then the parent's whole slot shared
    // copy-on-write; on failure both are released again.
    let forked = match process::copy_process(mm, parent_slot, slot, policy) {
        Ok(forked) => forked,
        Err(e) => {
            if let ForkError::CopyMem(failed) = e {
                if failed.cleanup.bad_frees != 0 {
                    println!(
                        "fork: cleanup found {} bad references ({:?})",
                        failed.cleanup.bad_frees, failed.cleanup.first_bad_free
                    );
                }
            }
            kevent!(
                "fork: {e} for pid {}: {}",
                t.get(parent_slot).pid,
                abi::errno::name(e.errno())
            );
            return Err(Errno(e.errno()));
        }
    };
    let (task_page, copied) = (forked.task_page, forked.copied);
    super::plant_stack_canary(&mut mm.phys, task_page);
    drop(p);
    let new_base = slot_base(slot);

    let parent = t.get(parent_slot);
    let mut child: Task = parent.clone();
    child.pid = pid;
    child.state = TaskState::Runnable;
    child.parent = parent_slot;
    // 0.11 copies the parent's LDT and sets the new bases: the same limits, here.
    child.ldt = super::exec::change_ldt(slot, parent.end_code);
    child.task_page = Some(task_page);
    child.faults = Default::default();
    child.exit_status = 0;
    child.killed = None;
    child.counter = super::sched::QUANTUM;
    let parent_pid = parent.pid;
    let name = parent.name;

    // The child returns from the same system call with eax = 0.
    let mut child_frame = *frame;
    child_frame.eax = 0;
    {
        let mut p = paging();
        let start_mem = p.mm.mem_map.start_mem();
        context::prepare_task_stack(&mut p.mm.phys, start_mem, slot, task_page, &child_frame);
    }
    t.slots[slot] = Some(child);
    drop(t);
    kevent!(
        "fork: pid {parent_pid} ({}) -> pid {pid} in slot {slot} (linear {:#010x}): {} pages shared copy-on-write, {} page tables",
        name.as_str(),
        new_base.as_u32(),
        copied.pages,
        copied.page_tables
    );
    Ok(pid)
}
