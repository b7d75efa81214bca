//! The recent page faults: the fault ring of the introspection descriptor (task, address,
//! error code, eip, action), which the debugger's `monitor faults`, the console and, from
//! outside the machine, the inspector's fault stream read.
//!
//! The ring keeps [`introspect::FAULT_RING_LEN`] faults, so that a reader polling guest
//! RAM never falls behind; the monitor lists the last [`FAULT_LOG_LEN`] of them (its
//! answers cross a 115200-baud line). Reads need no lock: every record carries its own
//! sequence number, checked before and after the copy, so a reader never sees one half
//! written, even with the kernel stopped inside [`record`].

use crate::publish;

/// How many faults the monitor lists (the most recent).
pub use introspect::FAULT_LOG_LEN;

/// What the fault handler did about one fault (decided by `mm::fault`).
pub use mm::fault::FaultAction;

/// One remembered fault: the record `monitor faults` documents (kernel/report), so the
/// ring, the monitor and the inspector share one layout.
pub use report::FaultRecord;

/// Remembers a fault (its `seq` is assigned here) and returns its sequence number.
pub fn record(rec: FaultRecord) -> u64 {
    publish::record_fault(rec).into()
}

/// Calls `f` for the last [`FAULT_LOG_LEN`] faults the ring holds whole, oldest first.
pub fn for_each(f: impl FnMut(&FaultRecord)) {
    publish::fault_ring().recent(FAULT_LOG_LEN, f);
}

/// Calls `f` with each action and how many faults ended that way since boot.
pub fn totals(mut f: impl FnMut(FaultAction, u64)) {
    let totals = publish::fault_ring().totals();
    for (action, n) in FaultAction::ALL.iter().zip(totals) {
        f(*action, n);
    }
}
