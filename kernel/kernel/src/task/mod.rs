//! Tasks: 0.11's `task[NR_TASKS]` table, one task per 64 MiB linear slot.
//!
//! Task *n* lives in slot *n*: its LDT code and data segments have base `n * 64 MiB`, the
//! data segment a limit of 64 MiB and the code segment the text's size, exactly as 0.11's
//! `copy_mem` and `change_ldt` set them, so a user offset plus the base is the linear
//! address the seed texts talk about. Slot 0 is the kernel (task 0,
//! the idle loop), whose slot holds the identity map.
//!
//! Each task owns one frame from `get_free_page` (0.11's task page), used here as its
//! kernel stack; the task structure itself sits in the static table so that Rust can
//! keep it safe (D13). The frame counts in `mem_map` like 0.11's task page does.

pub mod exec;
pub mod exit;
pub mod fork;
pub mod sched;

use core::sync::atomic::{AtomicUsize, Ordering};

use abi::FaultCounts;
use core::ops::{Deref, DerefMut};
use mm::addr::{Frame, NR_TASKS, PAGE_SIZE};

use crate::arch::x86::debugger::Stopped;
use crate::arch::x86::gdt::Ldt;
use crate::arch::x86::sync::{StopLock, StopLockGuard};
use crate::publish::{self, Section};

/// A task's run state: the descriptor's definition, so that the kernel and a reader of
/// its published task table agree on the codes.
pub use introspect::TaskState;

/// A fixed-size name (the program's).
#[derive(Clone, Copy)]
pub struct Name {
    bytes: [u8; abi::MAX_NAME_LEN],
    len: usize,
}

impl Name {
    pub fn new(name: &str) -> Name {
        let mut n = Name {
            bytes: [0; abi::MAX_NAME_LEN],
            len: name.len().min(abi::MAX_NAME_LEN),
        };
        n.bytes[..n.len].copy_from_slice(&name.as_bytes()[..n.len]);
        n
    }
    pub fn as_str(&self) -> &str {
        core::str::from_utf8(&self.bytes[..self.len]).unwrap_or("?")
    }
}

/// One task (0.11 `struct task_struct`, the parts this kernel uses).
#[derive(Clone)]
pub struct Task {
    pub pid: u32,
    pub state: TaskState,
    /// The parent's slot (0: the kernel).
    pub parent: usize,
    pub name: Name,
    /// The program it runs (0.11 `executable`), for demand loading and sharing.
    pub program: Option<image::Program<'static>>,
    /// 0.11 `end_code`, `end_data`, `brk`, `start_stack` (offsets in the segment).
    pub end_code: u32,
    pub end_data: u32,
    pub brk: u32,
    pub start_stack: u32,
    /// The argument string of `execve` (read back with `getarg`).
    pub arg: [u8; abi::MAX_ARG_LEN],
    pub arg_len: usize,
    /// The task's LDT: null, code, data (0.11 `ldt[3]`).
    pub ldt: Ldt,
    /// The task page: its kernel stack. `None` for task 0 (the boot stack).
    pub task_page: Option<Frame>,
    /// Page faults since the program started, by outcome.
    pub faults: FaultCounts,
    /// The wait status once a zombie.
    pub exit_status: u32,
    /// Set by `kill`: the signal to die of at the next return to user mode.
    pub killed: Option<u32>,
    /// Ticks left in the time slice (0.11 `counter`).
    pub counter: u32,
    /// The tick to wake at when `Sleeping`.
    pub wake_at: u64,
}

impl Task {
    pub fn arg(&self) -> &[u8] {
        &self.arg[..self.arg_len]
    }
    pub fn set_arg(&mut self, arg: &[u8]) {
        self.arg_len = arg.len().min(abi::MAX_ARG_LEN);
        self.arg[..self.arg_len].copy_from_slice(&arg[..self.arg_len]);
    }
    /// The top of the kernel stack in the task page.
    pub fn kernel_stack_top(&self) -> Option<u32> {
        self.task_page.map(|f| f.as_u32() + PAGE_SIZE)
    }
    /// Whether two tasks run the same program (0.11 compares `executable` inodes).
    pub fn same_program(&self, other: &Task) -> bool {
        match (&self.program, &other.program) {
            (Some(a), Some(b)) => a.data.as_ptr() == b.data.as_ptr(),
            _ => false,
        }
    }
}

/// The task table.
pub struct TaskTable {
    pub slots: [Option<Task>; NR_TASKS],
    /// 0.11 `last_pid`.
    last_pid: u32,
}

impl TaskTable {
    /// The task in `slot`; panics if there is none (a kernel bug).
    pub fn get(&self, slot: usize) -> &Task {
        self.slots[slot].as_ref().expect("no task in slot")
    }
    pub fn get_mut(&mut self, slot: usize) -> &mut Task {
        self.slots[slot].as_mut().expect("no task in slot")
    }
    /// The slot of the task with `pid`.
    pub fn slot_of_pid(&self, pid: u32) -> Option<usize> {
        self.slots
            .iter()
            .position(|t| t.as_ref().is_some_and(|t| t.pid == pid))
    }
    /// Live user tasks (slots 1..), with their slots.
    pub fn user_tasks(&self) -> impl Iterator<Item = (usize, &Task)> {
        self.slots
            .iter()
            .enumerate()
            .skip(1)
            .filter_map(|(s, t)| t.as_ref().map(|t| (s, t)))
    }
    /// 0.11 `find_empty_process`: a new pid and a free slot.
    pub fn find_empty_process(&mut self) -> Option<(usize, u32)> {
        let slot = (1..NR_TASKS).find(|&s| self.slots[s].is_none())?;
        loop {
            self.last_pid = self.last_pid.wrapping_add(1).max(1);
            let pid = self.last_pid;
            if self.slot_of_pid(pid).is_none() {
                return Some((slot, pid));
            }
        }
    }
    /// The frames the kernel holds for tasks (their task pages), for checkmm.
    pub fn task_pages(&self, out: &mut [Frame; NR_TASKS]) -> usize {
        let mut n = 0;
        for page in self.slots.iter().flatten().filter_map(|t| t.task_page) {
            out[n] = page;
            n += 1;
        }
        n
    }
    /// Bit n set for each slot holding a task whose page tables may exist (not zombies:
    /// `do_exit` has freed theirs).
    pub fn live_slot_mask(&self) -> u64 {
        self.user_tasks()
            .filter(|(_, t)| t.state != TaskState::Zombie)
            .fold(0, |m, (s, _)| m | (1 << s))
    }
}

static TASKS: StopLock<TaskTable> = StopLock::new(TaskTable {
    slots: [const { None }; NR_TASKS],
    last_pid: 0,
});

/// The slot of the running task.
static CURRENT: AtomicUsize = AtomicUsize::new(0);

/// The locked task table. The first `&mut` opens a change of the introspection
/// descriptor, which lasts until the guard drops: an operation that changes the paging
/// state while it holds the table (fork, the release of a zombie) is one change for a
/// reader. On drop the changed slots' entries are published: the slot of
/// [`TasksGuard::get_mut`] (the hot paths: a fault's counts, a switch), every slot after
/// any other `&mut` use of the table.
pub struct TasksGuard {
    // Drop order: the section ends before the lock is released.
    section: Option<Section>,
    /// Bit n: slot n may have changed.
    dirty: u64,
    /// Bit n: slot n's fault counts may have changed (and nothing else of it).
    dirty_faults: u64,
    guard: StopLockGuard<'static, TaskTable>,
}

impl TasksGuard {
    /// The task in `slot`, to change (panics if there is none): only that slot is
    /// published again when the guard drops.
    pub fn get_mut(&mut self, slot: usize) -> &mut Task {
        if self.section.is_none() {
            self.section = Some(publish::section());
        }
        self.dirty |= 1 << slot;
        self.guard.get_mut(slot)
    }

    /// The fault counts of the task in `slot`, to change (the fault handler's hot path:
    /// only those six words are published again).
    pub fn faults_mut(&mut self, slot: usize) -> &mut abi::FaultCounts {
        if self.section.is_none() {
            self.section = Some(publish::section());
        }
        self.dirty_faults |= 1 << slot;
        &mut self.guard.get_mut(slot).faults
    }
}

impl Deref for TasksGuard {
    type Target = TaskTable;
    fn deref(&self) -> &TaskTable {
        &self.guard
    }
}

impl DerefMut for TasksGuard {
    fn deref_mut(&mut self) -> &mut TaskTable {
        if self.section.is_none() {
            self.section = Some(publish::section());
        }
        self.dirty = u64::MAX;
        &mut self.guard
    }
}

impl Drop for TasksGuard {
    fn drop(&mut self) {
        if self.section.is_some() {
            publish::publish_tasks(&self.guard, self.dirty, self.dirty_faults & !self.dirty);
        }
    }
}

/// Locks the task table. Taking it twice is a kernel bug and stops with a message.
pub fn tasks() -> TasksGuard {
    // The timer interrupt takes this lock too: kernel code must run with interrupts off.
    assert!(
        !crate::arch::x86::cpu::interrupts_enabled(),
        "task table taken with interrupts on"
    );
    TasksGuard {
        section: None,
        dirty: 0,
        dirty_faults: 0,
        guard: TASKS.try_lock().expect("task table locked twice"),
    }
}

/// The task table as the gdb stub reads it, without taking the lock (the stopped code
/// may hold it, and may be half-way through an update that it had not finished).
pub fn tasks_while_stopped(stopped: &Stopped) -> &TaskTable {
    TASKS.peek(stopped)
}

/// The kernel `esp` slot `slot` saved when it was last switched out (its `SwitchFrame`).
pub fn saved_esp(slot: usize) -> u32 {
    crate::arch::x86::context::saved_esp(slot)
}

/// The running task's slot.
pub fn current() -> usize {
    CURRENT.load(Ordering::Relaxed)
}

/// Installs task 0 (the kernel's idle loop, running on the boot stack).
pub fn init_task0() {
    let mut t = tasks();
    t.slots[0] = Some(Task {
        pid: 0,
        state: TaskState::Runnable,
        parent: 0,
        name: Name::new("kernel"),
        program: None,
        end_code: 0,
        end_data: 0,
        brk: 0,
        start_stack: 0,
        arg: [0; abi::MAX_ARG_LEN],
        arg_len: 0,
        ldt: [0; 3],
        task_page: None,
        faults: FaultCounts::default(),
        exit_status: 0,
        killed: None,
        counter: 0,
        wake_at: 0,
    });
}

/// The running task's pid and program name, for crash reports.
pub fn describe_current(buf: &mut Name) -> Option<u32> {
    let t = TASKS.try_lock()?;
    let task = t.slots[current()].as_ref()?;
    *buf = task.name;
    Some(task.pid)
}

/// The running task's pid.
pub fn current_pid() -> u32 {
    tasks().get(current()).pid
}

/// The word at the bottom of every task page: a kernel stack that grows past its 4 KiB
/// overwrites it, and the next return to user mode reports the overflow by name instead
/// of letting it corrupt the frame below in silence.
pub const STACK_CANARY: u32 = 0x57AC_CA9A;

/// Plants the canary at the bottom of a fresh task page.
pub fn plant_stack_canary(phys: &mut impl mm::PhysMem, page: Frame) {
    phys.write_u32(page.addr(), STACK_CANARY);
}

/// Stops the kernel if the current task's kernel stack overflowed its task page.
pub fn check_stack_canary() {
    let page = {
        let t = tasks();
        t.get(current()).task_page
    };
    if let Some(page) = page {
        let word = mm::PhysMem::read_u32(&crate::paging::paging().mm.phys, page.addr());
        assert!(
            word == STACK_CANARY,
            "kernel stack overflow: the task page {page} of pid {} was written below its bottom",
            current_pid()
        );
    }
}
