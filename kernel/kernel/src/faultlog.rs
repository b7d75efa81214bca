//! The recent page faults: a ring of records (task, address, error code, eip, action)
//! that the debugger's `monitor faults` and the console read.

use spin::Mutex;

/// How many faults are remembered.
pub const FAULT_LOG_LEN: usize = 64;

/// What the fault handler did about one fault (decided by `mm::fault`).
pub use mm::fault::FaultAction;

/// One remembered fault: the record `monitor faults` documents (kernel/report), so the log
/// and its readers share one layout.
pub use report::FaultRecord;

/// Every action, in a fixed order (the index into the totals).
const ACTIONS: [FaultAction; 9] = FaultAction::ALL;

struct FaultLog {
    records: [Option<FaultRecord>; FAULT_LOG_LEN],
    next_seq: u64,
    /// Faults since boot, by action (index in `ACTIONS`).
    totals: [u64; ACTIONS.len()],
}

static LOG: Mutex<FaultLog> = Mutex::new(FaultLog {
    records: [None; FAULT_LOG_LEN],
    next_seq: 1,
    totals: [0; ACTIONS.len()],
});

/// Remembers a fault and returns its sequence number.
pub fn record(mut rec: FaultRecord) -> u64 {
    let mut log = LOG.lock();
    rec.seq = log.next_seq;
    log.next_seq += 1;
    if let Some(i) = ACTIONS.iter().position(|&a| a == rec.action) {
        log.totals[i] += 1;
    }
    let index = (rec.seq as usize) % FAULT_LOG_LEN;
    log.records[index] = Some(rec);
    rec.seq
}

/// Calls `f` for the remembered faults, oldest first.
pub fn for_each(mut f: impl FnMut(&FaultRecord)) {
    let log = LOG.lock();
    let mut records: [Option<FaultRecord>; FAULT_LOG_LEN] = log.records;
    drop(log);
    records.sort_unstable_by_key(|r| r.map_or(0, |r| r.seq));
    records.iter().flatten().for_each(|r| f(r));
}

/// The log's lock is held: the debugger stopped the kernel inside [`record`] (or in a
/// reader), and waiting for the lock would hang the stopped machine.
#[derive(Clone, Copy, Debug)]
pub struct LogBusy;

/// [`for_each`] for the debugger: never waits for the lock, and copies nothing (the
/// 64-record copy `for_each` makes is too much for a 4 KiB kernel stack under a stopped
/// kernel). Records are stored at `seq % FAULT_LOG_LEN`, so walking the last
/// `FAULT_LOG_LEN` sequence numbers visits them oldest first.
pub fn try_for_each(mut f: impl FnMut(&FaultRecord)) -> Result<(), LogBusy> {
    let log = LOG.try_lock().ok_or(LogBusy)?;
    let first = log.next_seq.saturating_sub(FAULT_LOG_LEN as u64).max(1);
    for seq in first..log.next_seq {
        if let Some(r) = log.records[(seq as usize) % FAULT_LOG_LEN]
            .as_ref()
            .filter(|r| r.seq == seq)
        {
            f(r);
        }
    }
    Ok(())
}

/// [`totals`] for the debugger: never waits for the lock.
pub fn try_totals(mut f: impl FnMut(FaultAction, u64)) -> Result<(), LogBusy> {
    let totals = LOG.try_lock().ok_or(LogBusy)?.totals;
    for (action, n) in ACTIONS.iter().zip(totals) {
        f(*action, n);
    }
    Ok(())
}

/// Calls `f` with each action and how many faults ended that way since boot.
pub fn totals(mut f: impl FnMut(FaultAction, u64)) {
    let totals = LOG.lock().totals;
    for (action, n) in ACTIONS.iter().zip(totals) {
        f(*action, n);
    }
}
