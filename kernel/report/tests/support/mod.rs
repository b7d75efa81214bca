//! The simulated kernel of `mm`'s integration tests (one definition, included from
//! there) and the monitor's view of its task table.
#![allow(dead_code)]

#[path = "../../../mm/tests/support/mod.rs"]
mod sim;

pub use sim::*;

use mm::addr::NR_TASKS;

/// The monitor's view of the task table for a [`SimKernel`]: pid = 100 + slot for user
/// tasks (pid 0 in slot 0), so a test that mixes pids and slots fails.
pub struct Pids(pub Vec<Option<u32>>);

impl report::monitor::TaskSlots for Pids {
    fn pid_in_slot(&self, slot: usize) -> Option<u32> {
        self.0.get(slot).copied().flatten()
    }
}

/// The [`Pids`] of `k`'s live tasks.
#[allow(dead_code)] // each test binary compiles this module; not all of them use it
pub fn pids(k: &SimKernel) -> Pids {
    Pids(
        (0..NR_TASKS)
            .map(|s| {
                if s == 0 {
                    Some(0)
                } else {
                    k.is_live(s).then_some(100 + s as u32)
                }
            })
            .collect(),
    )
}
