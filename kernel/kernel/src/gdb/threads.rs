//! Tasks as gdb threads: thread id = pid + 1 (gdb reserves 0), one thread per task.

use core::fmt::Write;

use gdbstub::common::Tid;

use crate::task::TaskTable;

/// The gdb thread id of the task with `pid`.
pub fn tid_of_pid(pid: u32) -> Tid {
    // pid + 1 >= 1; a pid is far below usize::MAX.
    Tid::new(pid as usize + 1).unwrap_or(Tid::MIN)
}

/// The slot of the task gdb calls `tid`.
pub fn slot_of_tid(tasks: &TaskTable, tid: Tid) -> Option<usize> {
    let pid = u32::try_from(tid.get() - 1).ok()?;
    tasks.slot_of_pid(pid)
}

/// The thread id of the task in `slot`.
pub fn tid_of_slot(tasks: &TaskTable, slot: usize) -> Option<Tid> {
    tasks.slots.get(slot)?.as_ref().map(|t| tid_of_pid(t.pid))
}

/// Calls `f` with every task's thread id, the running task's first (gdb picks the first
/// thread when it attaches, and it should land where the kernel stopped).
pub fn for_each(tasks: &TaskTable, current: usize, mut f: impl FnMut(Tid)) {
    if let Some(tid) = tid_of_slot(tasks, current) {
        f(tid);
    }
    for (slot, task) in tasks.slots.iter().enumerate() {
        if let Some(task) = task.as_ref().filter(|_| slot != current) {
            f(tid_of_pid(task.pid));
        }
    }
}

/// A writer into a byte buffer that drops what does not fit.
struct Truncating<'a> {
    buf: &'a mut [u8],
    len: usize,
}

impl Write for Truncating<'_> {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let room = self.buf.len() - self.len;
        let n = s.len().min(room);
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

/// gdb's "extra info" for the task in `slot` (`info threads`): "pid 3 ktest, slot 2,
/// runnable". Returns the bytes written.
pub fn describe(tasks: &TaskTable, slot: usize, current: usize, buf: &mut [u8]) -> usize {
    let Some(task) = tasks.slots.get(slot).and_then(|t| t.as_ref()) else {
        return 0;
    };
    let mut out = Truncating { buf, len: 0 };
    // Truncating never fails.
    let _ = write!(
        out,
        "pid {} {}, slot {}, {}",
        task.pid,
        task.name.as_str(),
        slot,
        task.state.name()
    );
    if slot == current {
        let _ = write!(out, ", current");
    }
    out.len
}
