//! `exit`, `waitpid` and `kill`: 0.11 `do_exit`, `sys_waitpid`, `release`.
//!
//! `do_exit` releases the task's whole slot with `free_page_tables` at once; the task
//! page (its kernel stack, which `do_exit` is still running on) goes back to `mem_map`
//! only when the parent collects the status (0.11 `release`).

use abi::errno::{ECHILD, EFAULT, EINVAL, EPERM, ESRCH};
use abi::{wait_status, WNOHANG};
use core::sync::atomic::{AtomicU32, Ordering};

use mm::addr::{Frame, PAGE_SIZE};
use mm::process;
use mm::PhysMem;

use super::sched::{schedule, sleep_in, wake};
use super::{current, tasks, TaskState, TaskTable};
use crate::kevent;
use crate::paging::paging;
use crate::syscall::Errno;
use crate::uaccess;

/// The slot orphans are given to: init, as in 0.11 (`task[1]`).
const INIT_SLOT: usize = 1;

/// 0.11 `do_exit(code)`: frees the slot's pages and page tables, hands the children to
/// init, becomes a zombie, wakes the parent and schedules away for good.
pub fn do_exit(status: u32) -> ! {
    let slot = current();
    assert!(slot != 0, "the kernel's task 0 cannot exit");
    let freed = process::do_exit(&mut paging().mm, slot);
    if let Some(first) = freed.first_bad_free {
        // 0.11 panics in free_page; this kernel survives a corrupted table (D4).
        println!(
            "exit: {} references could not be freed (first: {first})",
            freed.bad_frees
        );
    }
    let (pid, name) = {
        let mut t = tasks();
        // Orphans go to init, as in 0.11, while init lives; once init is gone they go to
        // the kernel, whose idle loop collects them (a campaign run found orphans handed
        // to an init that had been killed by oom, never collected: a hang).
        let init_alive = t.slots[INIT_SLOT]
            .as_ref()
            .is_some_and(|init| init.state != TaskState::Zombie);
        let new_parent = if slot == INIT_SLOT || !init_alive {
            0
        } else {
            INIT_SLOT
        };
        let mut orphan_zombie = false;
        for s in 1..t.slots.len() {
            if let Some(child) = t.slots[s].as_mut().filter(|c| c.parent == slot) {
                child.parent = new_parent;
                orphan_zombie |= child.state == TaskState::Zombie;
            }
        }
        if orphan_zombie {
            wake(&mut t, new_parent);
        }
        let task = t.get_mut(slot);
        task.state = TaskState::Zombie;
        task.exit_status = status;
        let (pid, name, parent) = (task.pid, task.name, task.parent);
        wake(&mut t, parent);
        (pid, name)
    };
    if wait_status::if_exited(status) {
        kevent!(
            "exit: pid {pid} ({}) exited with code {}: freed {} pages, {} page tables{}",
            name.as_str(),
            wait_status::exit_code(status),
            freed.pages,
            freed.page_tables,
            SwapSlots(freed.swap_entries)
        );
    } else {
        kevent!(
            "exit: pid {pid} ({}) killed by signal {}: freed {} pages, {} page tables{}",
            name.as_str(),
            wait_status::term_signal(status),
            freed.pages,
            freed.page_tables,
            SwapSlots(freed.swap_entries)
        );
    }
    schedule();
    unreachable!("a zombie was scheduled");
}

/// ", N swap slots" when a release freed any.
struct SwapSlots(u32);

impl core::fmt::Display for SwapSlots {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        if self.0 != 0 {
            write!(f, " and {} swap slots", self.0)?;
        }
        Ok(())
    }
}

/// 0.11 `release(p)`: frees a zombie's task page and its slot; returns (pid, status).
pub fn release(t: &mut TaskTable, slot: usize) -> (u32, u32) {
    let task = t.slots[slot].take().expect("releasing an empty slot");
    // Children still pointing at the released slot (a zombie init's) go to the kernel.
    for child in t.slots.iter_mut().flatten().filter(|c| c.parent == slot) {
        child.parent = 0;
    }
    debug_assert_eq!(task.state, TaskState::Zombie);
    let mut p = paging();
    crate::arch::x86::context::forget_stack(slot);
    if let Some(page) = task.task_page {
        note_stack_use(&p.mm.phys, page);
        process::release(&mut p.mm, page).expect("task page is counted");
    }
    crate::paging::injector().release_task(slot);
    (task.pid, task.exit_status)
}

/// The deepest any task's kernel stack has gone, in bytes (of one 4 KiB task page).
static DEEPEST_STACK: AtomicU32 = AtomicU32::new(0);

/// How deep the task page's stack went: the page came zero-filled from
/// `get_free_page`, so the bytes below the deepest push are still zero.
fn note_stack_use(phys: &impl PhysMem, page: Frame) {
    let mut word = [0u8; 4];
    // The first word holds the stack canary.
    let untouched = (4..PAGE_SIZE)
        .step_by(4)
        .take_while(|&off| {
            phys.read_bytes(page.addr().offset(off), &mut word);
            word == [0; 4]
        })
        .count() as u32
        * 4;
    DEEPEST_STACK.fetch_max(PAGE_SIZE - 4 - untouched, Ordering::Relaxed);
}

/// The deepest kernel stack use seen so far, in bytes.
pub fn deepest_stack_use() -> u32 {
    DEEPEST_STACK.load(Ordering::Relaxed)
}

/// `waitpid(pid, status, options)`: pid -1 waits for any child. The status pointer is
/// checked before a child is collected, so a bad pointer loses no status.
pub fn sys_waitpid(pid: i32, status_ptr: u32, options: u32) -> Result<u32, Errno> {
    if options & !WNOHANG != 0 {
        return Err(Errno(EINVAL));
    }
    if status_ptr != 0 {
        uaccess::check_range(status_ptr, 4).map_err(|_| Errno(EFAULT))?;
    }
    let me = current();
    loop {
        let mut t = tasks();
        let mut found_child = false;
        let mut zombie = None;
        for (slot, task) in t.user_tasks() {
            if task.parent == me && (pid == -1 || task.pid == pid as u32) {
                found_child = true;
                if task.state == TaskState::Zombie {
                    zombie = Some(slot);
                    break;
                }
            }
        }
        if let Some(slot) = zombie {
            let (child_pid, status) = release(&mut t, slot);
            drop(t);
            if status_ptr != 0 {
                uaccess::copy_to_user(status_ptr, &status.to_le_bytes())?;
            }
            return Ok(child_pid);
        }
        if !found_child {
            return Err(Errno(ECHILD));
        }
        if options & WNOHANG != 0 {
            return Ok(0);
        }
        drop(t);
        sleep_in(TaskState::Waiting);
        exit_if_killed();
    }
}

/// `kill(pid)`: the task dies of SIGKILL at its next return to user mode (at once if it
/// is the caller).
pub fn sys_kill(pid: u32) -> Result<u32, Errno> {
    let me = current();
    let mut t = tasks();
    let slot = t.slot_of_pid(pid).ok_or(Errno(ESRCH))?;
    if slot == 0 {
        return Err(Errno(EPERM));
    }
    if t.get(slot).state == TaskState::Zombie {
        return Ok(0);
    }
    if slot == me {
        drop(t);
        do_exit(wait_status::killed(abi::signal::SIGKILL));
    }
    t.get_mut(slot).killed = Some(abi::signal::SIGKILL);
    wake(&mut t, slot);
    Ok(0)
}

/// Exits the current task if someone killed it (checked on every return to user mode).
pub fn exit_if_killed() {
    let killed = tasks().get(current()).killed;
    if let Some(signal) = killed {
        do_exit(wait_status::killed(signal));
    }
}
