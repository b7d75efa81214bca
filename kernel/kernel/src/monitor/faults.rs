//! `monitor faults`: the fault log as the `faults` document's input.

use report::{FaultRecord, FaultSource, LogBusy};

use crate::faultlog::{self, FAULT_LOG_LEN};

/// The kernel's fault log (the descriptor's ring, read without a lock: it never answers
/// busy).
pub struct KernelFaultLog;

impl FaultSource for KernelFaultLog {
    fn capacity(&self) -> usize {
        FAULT_LOG_LEN
    }
    fn totals(&self) -> Result<[u64; report::FaultAction::ALL.len()], LogBusy> {
        let mut totals = [0; report::FaultAction::ALL.len()];
        faultlog::totals(|action, n| totals[report::inputs::action_index(action)] = n);
        Ok(totals)
    }
    fn each(&self, f: &mut dyn FnMut(&FaultRecord)) -> Result<(), LogBusy> {
        faultlog::for_each(|r| f(r));
        Ok(())
    }
}
