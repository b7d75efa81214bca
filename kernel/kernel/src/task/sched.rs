//! The scheduler: round robin over runnable tasks, driven by the PIT (0.11 `schedule()`,
//! `do_timer`, `sleep_on`/`wake_up`).
//!
//! The kernel is not preemptible, as 0.11: traps run with interrupts off, and a task is
//! switched out only at a point of its own choosing (a blocking system call) or when the
//! timer interrupts user mode or the idle loop.

use core::sync::atomic::{AtomicU64, Ordering};

use mm::addr::NR_TASKS;

use super::{current, tasks, TaskState, TaskTable, CURRENT};
use crate::arch::x86::{context, gdt, trap_entry::TrapFrame};

/// Timer ticks per time slice (0.11 uses the priority, 15).
pub const QUANTUM: u32 = 3;
/// Timer frequency.
pub const HZ: u32 = 100;

/// Ticks since boot (0.11 `jiffies`).
static TICKS: AtomicU64 = AtomicU64::new(0);

pub fn ticks() -> u64 {
    TICKS.load(Ordering::Relaxed)
}

/// The next task to run after `prev`: the next runnable user slot in round-robin order,
/// else task 0 (the idle loop).
fn pick_next(t: &TaskTable, prev: usize) -> usize {
    (1..=NR_TASKS)
        .map(|i| (prev + i) % NR_TASKS)
        .find(|&s| {
            s != 0
                && t.slots[s]
                    .as_ref()
                    .is_some_and(|task| task.state == TaskState::Runnable)
        })
        .unwrap_or(0)
}

/// 0.11 `schedule()`: switches to the next runnable task (or the idle loop), if it is not
/// the current one. Returns when the current task is chosen again.
pub fn schedule() {
    let prev = current();
    let next = {
        let mut t = tasks();
        let next = pick_next(&t, prev);
        if next == prev {
            return;
        }
        let task = t.get_mut(next);
        task.counter = QUANTUM;
        if let Some(top) = task.kernel_stack_top() {
            gdt::set_kernel_stack(top);
            gdt::load_task_ldt(&task.ldt);
        }
        CURRENT.store(next, Ordering::Relaxed);
        // Allocations from now on are made for `next` (fail-nth, the task filter).
        crate::paging::injector().set_current(next);
        next
    };
    // The next task's stack (task page or boot stack) is alive: tasks are reaped only when
    // they are zombies, which never run again (and release forgets the stack). No lock is
    // held.
    context::switch_to(prev, next);
}

/// The timer interrupt (0.11 `do_timer`): wakes sleepers, and ends the time slice of a
/// task interrupted in user mode, or leaves the idle loop when something became runnable.
pub fn timer_tick(frame: &TrapFrame) {
    let now = TICKS.fetch_add(1, Ordering::Relaxed) + 1;
    let slice_over = {
        let mut t = tasks();
        for task in t.slots.iter_mut().flatten() {
            if task.state == TaskState::Sleeping && task.wake_at <= now {
                task.state = TaskState::Runnable;
            }
        }
        let cur = current();
        if cur == 0 {
            true
        } else if frame.from_user() {
            let task = t.get_mut(cur);
            task.counter = task.counter.saturating_sub(1);
            task.counter == 0
        } else {
            false
        }
    };
    if slice_over {
        schedule();
    }
}

/// Puts the current task to sleep in `state` until something makes it runnable, then
/// returns (0.11 `interruptible_sleep_on`).
pub fn sleep_in(state: TaskState) {
    {
        let mut t = tasks();
        t.get_mut(current()).state = state;
    }
    schedule();
}

/// Makes a waiting task runnable.
pub fn wake(t: &mut TaskTable, slot: usize) {
    if let Some(task) = t.slots[slot].as_mut() {
        if matches!(task.state, TaskState::Waiting | TaskState::Sleeping) {
            task.state = TaskState::Runnable;
        }
    }
}
