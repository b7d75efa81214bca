//! `fork`: 0.11 `find_empty_process` + `copy_process` + `copy_mem`.
//!
//! The child gets the next free slot, a task page from `get_free_page` and, through
//! `copy_page_tables`, the parent's pages shared copy-on-write. Nothing is copied until
//! one side writes.

use abi::errno::{EAGAIN, ENOMEM};
use mm::addr::{slot_base, PAGE_SIZE, TASK_SIZE};
use mm::memory::AllocSite;

use super::{current, tasks, Task, TaskState, SAVED_ESP};
use crate::arch::x86::{context, gdt, trap_entry::TrapFrame};
use crate::kevent;
use crate::paging::{paging, Paging};
use crate::syscall::Errno;

/// `fork()` for the task whose trap frame is `frame`: the child's pid, or an error.
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
    policy.fork_task(parent_slot, slot);
    // 0.11 copy_process: the task page; -EAGAIN when memory is out.
    let task_page = match mm.get_free_page_with(AllocSite::TaskStruct, policy) {
        Ok(frame) => frame,
        Err(e) => {
            kevent!(
                "fork: no task page for pid {} ({e}): EAGAIN",
                t.get(parent_slot).pid
            );
            return Err(Errno(EAGAIN));
        }
    };
    super::plant_stack_canary(&mut mm.phys, task_page);
    // 0.11 copy_mem: share the parent's whole slot copy-on-write.
    let (old_base, new_base) = (slot_base(parent_slot), slot_base(slot));
    let copied = match mm.copy_page_tables(old_base, new_base, TASK_SIZE, policy) {
        Ok(copied) => copied,
        Err(e) => {
            // 0.11: free_page_tables(new_data_base, data_limit); return -ENOMEM. The tables
            // built so far are released, so nothing leaks.
            let freed = mm
                .free_page_tables(new_base, TASK_SIZE)
                .expect("child slot is a user slot");
            if freed.bad_frees != 0 {
                println!(
                    "fork: cleanup found {} bad references ({:?})",
                    freed.bad_frees, freed.first_bad_free
                );
            }
            mm.free_page(task_page.addr())
                .expect("task page was just allocated");
            kevent!(
                "fork: copy_page_tables failed for pid {} ({e}): ENOMEM",
                t.get(parent_slot).pid
            );
            return Err(Errno(ENOMEM));
        }
    };
    drop(p);

    let parent = t.get(parent_slot);
    let mut child: Task = parent.clone();
    child.pid = pid;
    child.state = TaskState::Runnable;
    child.parent = parent_slot;
    child.ldt = gdt::user_ldt(new_base.as_u32(), TASK_SIZE);
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
    // SAFETY: the task page is a fresh, identity-mapped frame that nothing else uses;
    // its top is the child's kernel stack.
    let esp = unsafe { context::prepare_new_stack(task_page.as_u32() + PAGE_SIZE, &child_frame) };
    SAVED_ESP[slot].store(esp, core::sync::atomic::Ordering::Relaxed);
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
