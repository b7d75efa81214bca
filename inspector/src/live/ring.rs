//! The fault ring's records since a sequence number, read from the RAM file without the
//! sequence count (each record carries its own number, kernel/introspect's
//! `FaultRing::get`), with the gap when the reader fell more than the ring behind: the one
//! reader of the ring for the fault stream and the recorder.

use introspect::FaultRing;
use report::FaultRecord;

/// What [`since`] read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RingRead {
    /// The records after `after`, oldest first, each whole.
    pub records: Vec<FaultRecord>,
    /// Faults after `after` that the ring no longer held (or that were being rewritten as
    /// they were read): the sequence numbers `[from, upto)`, lost to this reader.
    pub gap: Option<Gap>,
    /// The sequence number the next fault will get: pass `next - 1` as `after` next time.
    pub next: u32,
}

/// Faults `[from, upto)` were never read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gap {
    pub from: u32,
    pub upto: u32,
}

/// The records with a sequence number above `after` (at most `max` of them, the oldest
/// first: the rest come at the next call).
pub fn since(ring: &FaultRing, after: u32, max: usize) -> RingRead {
    let next = ring.next_seq();
    let oldest = ring.oldest_seq();
    let mut first = after.saturating_add(1).max(1);
    let mut gap = None;
    if first < oldest {
        gap = Some(Gap {
            from: first,
            upto: oldest,
        });
        first = oldest;
    }
    let mut records = Vec::new();
    let mut seq = first;
    while seq < next && records.len() < max {
        match ring.get(seq) {
            Some(r) => records.push(r),
            // Overwritten while we read (the writer lapped us): everything up to the
            // ring's new oldest record is lost.
            None => {
                let oldest = ring.oldest_seq().max(seq + 1);
                gap = Some(Gap {
                    from: gap.map_or(seq, |g| g.from),
                    upto: oldest,
                });
                seq = oldest;
                continue;
            }
        }
        seq += 1;
    }
    RingRead {
        records,
        gap,
        next: if seq < next { seq } else { next },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use introspect::{Descriptor, FaultAction, FAULT_RING_LEN};

    fn push(d: &Descriptor, n: u32) {
        for i in 0..n {
            d.faults.push(FaultRecord {
                seq: 0,
                pid: 1,
                linear: i << 12,
                error_code: 6,
                eip: 0,
                by_kernel: false,
                action: FaultAction::ZeroPage,
            });
        }
    }

    #[test]
    fn reads_what_came_after_and_says_what_was_lost() {
        let d = Box::new(Descriptor::new());
        let r = since(&d.faults, 0, 100);
        assert_eq!((r.records.len(), r.gap, r.next), (0, None, 1));
        push(&d, 10);
        let r = since(&d.faults, 0, 100);
        assert_eq!(r.records.len(), 10);
        assert_eq!(r.records[0].seq, 1);
        assert_eq!(r.next, 11);
        let r = since(&d.faults, 7, 2);
        assert_eq!(r.records.iter().map(|r| r.seq).collect::<Vec<_>>(), [8, 9]);
        assert_eq!(r.next, 10, "the rest next time");
        push(&d, FAULT_RING_LEN as u32 + 5);
        let r = since(&d.faults, 10, usize::MAX);
        let oldest = d.faults.oldest_seq();
        assert_eq!(
            r.gap,
            Some(Gap {
                from: 11,
                upto: oldest
            })
        );
        assert_eq!(r.records.len(), FAULT_RING_LEN);
        assert_eq!(r.records[0].seq, u64::from(oldest));
        assert_eq!(r.next, d.faults.next_seq());
    }
}
