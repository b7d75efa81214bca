//! `monitor tasks`: the task table as the `tasks` document's input.

use report::{TaskSlots, TaskSource, TaskSummary};

use crate::task::{self, TaskTable};

/// The task table of the stopped kernel, as plain summaries.
pub struct KernelTasks<'a>(pub &'a TaskTable);

impl TaskSlots for KernelTasks<'_> {
    fn pid_in_slot(&self, slot: usize) -> Option<u32> {
        self.0.slots.get(slot)?.as_ref().map(|t| t.pid)
    }
}

impl TaskSource for KernelTasks<'_> {
    fn current_slot(&self) -> usize {
        task::current()
    }
    fn task(&self, slot: usize) -> Option<TaskSummary> {
        let t = self.0.slots.get(slot)?.as_ref()?;
        // Task 0 has no parent.
        let parent_pid = (slot != 0).then(|| self.pid_in_slot(t.parent)).flatten();
        Some(TaskSummary {
            pid: t.pid,
            parent_pid,
            state: t.state,
            program: report::value::Name::new(t.name.as_str()),
            end_code: t.end_code,
            end_data: t.end_data,
            brk: t.brk,
            killed_by: t.killed,
            faults: t.faults.into(),
        })
    }
}
