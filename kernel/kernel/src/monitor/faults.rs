//! `monitor faults`: the fault log as the `faults` document's input.

use report::{FaultRecord, FaultSource, LogBusy};

use crate::faultlog::{self, FAULT_LOG_LEN};

/// The kernel's fault log, read without waiting for its lock (the stopped code may hold
/// it: the answer is then the `busy` error).
pub struct KernelFaultLog;

impl FaultSource for KernelFaultLog {
    fn capacity(&self) -> usize {
        FAULT_LOG_LEN
    }
    fn totals(&self) -> Result<[u64; report::FaultAction::ALL.len()], LogBusy> {
        let mut totals = [0; report::FaultAction::ALL.len()];
        faultlog::try_totals(|action, n| totals[report::inputs::action_index(action)] = n)
            .map_err(|_| LogBusy)?;
        Ok(totals)
    }
    fn each(&self, f: &mut dyn FnMut(&FaultRecord)) -> Result<(), LogBusy> {
        faultlog::try_for_each(|r| f(r)).map_err(|_| LogBusy)
    }
}
