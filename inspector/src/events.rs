//! The live page-fault feed: one poller reads the kernel's fault log at a bounded rate while someone listens, and broadcasts new records by sequence number.
//!
//! One poller for all SSE clients, so a hundred browsers cost the kernel no more stops
//! than one. It keeps the records it has seen (the kernel's log keeps 64), so a client
//! reconnecting with `Last-Event-ID` gets what it missed if that is still known.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use report::tasks::FaultDoc;
use tokio::sync::broadcast;

use crate::link::LinkHandle;

/// How many records the feed remembers for clients that resume.
const REMEMBERED: usize = 256;

/// One event for the stream.
#[derive(Clone, Debug)]
pub enum FeedEvent {
    /// A fault record (its `seq` is the SSE id); `history` when it was already in the
    /// log at the first poll (only clients resuming from a seq want those).
    Fault {
        seq: u64,
        record: FaultDoc,
        history: bool,
    },
    /// Records between `after` and `upto` were never seen (the log moved on between polls).
    Gap { after: u64, upto: u64 },
}

/// The shared feed.
#[derive(Clone)]
pub struct Feed {
    tx: broadcast::Sender<FeedEvent>,
    recent: Arc<Mutex<VecDeque<(u64, FaultDoc)>>>,
}

impl Feed {
    /// Starts the poller (idle while nobody listens).
    pub fn spawn(link: LinkHandle, interval: Duration, timeout: Duration) -> Feed {
        let (tx, _) = broadcast::channel(1024);
        let feed = Feed {
            tx,
            recent: Arc::new(Mutex::new(VecDeque::new())),
        };
        let poller = feed.clone();
        tokio::spawn(async move { poller.poll(link, interval, timeout).await });
        feed
    }

    pub fn subscribe(&self) -> broadcast::Receiver<FeedEvent> {
        self.tx.subscribe()
    }

    /// Remembered records with seq above `after`, oldest first.
    pub fn since(&self, after: u64) -> Vec<(u64, FaultDoc)> {
        let recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        recent.iter().filter(|(s, _)| *s > after).cloned().collect()
    }

    /// The newest seq seen.
    pub fn last_seq(&self) -> u64 {
        let recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        recent.back().map_or(0, |(s, _)| *s)
    }

    async fn poll(&self, link: LinkHandle, interval: Duration, timeout: Duration) {
        let mut last: Option<u64> = None;
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            if self.tx.receiver_count() == 0 {
                continue;
            }
            let Ok(text) = link.monitor("faults --json", timeout).await else {
                continue;
            };
            let Ok(doc) = crate::answer::parse_document::<report::FaultsDoc<'static>>(&text) else {
                continue;
            };
            let records = doc.faults.to_vec();
            // The log's content at the first poll is history: remembered for resuming
            // clients, not broadcast as if it had just happened.
            let history = last.is_none();
            for (seq, record) in new_records(&records, &mut last) {
                match seq {
                    Err((after, upto)) => {
                        let _ = self.tx.send(FeedEvent::Gap { after, upto });
                    }
                    Ok(seq) => {
                        let Some(record) = record else { continue };
                        {
                            let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
                            recent.push_back((seq, record));
                            while recent.len() > REMEMBERED {
                                recent.pop_front();
                            }
                        }
                        let _ = self.tx.send(FeedEvent::Fault {
                            seq,
                            record,
                            history,
                        });
                    }
                }
            }
        }
    }
}

/// Picks the records newer than `last` (updating it): `Ok(seq)` for each, and an
/// `Err((after, upto))` first when records between were lost. The first poll only
/// sets `last` when the feed has no history yet, so new listeners see new faults.
#[allow(clippy::type_complexity)]
fn new_records(
    records: &[FaultDoc],
    last: &mut Option<u64>,
) -> Vec<(Result<u64, (u64, u64)>, Option<FaultDoc>)> {
    let seqs = records.iter().map(|r| (r.seq, *r));
    let mut out = Vec::new();
    match *last {
        None => {
            // Everything in the log now counts as history: remember it, emit it (resuming
            // clients may want it), and go on from the newest.
            let mut newest = 0;
            for (seq, r) in seqs {
                newest = newest.max(seq);
                out.push((Ok(seq), Some(r)));
            }
            *last = Some(newest);
        }
        Some(prev) => {
            let mut expected = prev + 1;
            for (seq, r) in seqs.filter(|(s, _)| *s > prev) {
                if seq > expected {
                    out.push((Err((expected - 1, seq)), None));
                }
                expected = seq + 1;
                out.push((Ok(seq), Some(r)));
                *last = Some(seq);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use report::FaultAction;

    fn record(seq: u64) -> FaultDoc {
        FaultDoc::of(&report::FaultRecord {
            seq,
            pid: 1,
            linear: 0x0400_0000,
            error_code: 6,
            eip: 0x1000,
            by_kernel: false,
            action: FaultAction::ZeroPage,
        })
    }

    #[test]
    fn emits_new_records_and_reports_gaps() {
        let mut last = None;
        let first = new_records(&[record(3), record(4)], &mut last);
        assert_eq!(first.len(), 2);
        assert_eq!(last, Some(4));
        let again = new_records(&[record(3), record(4)], &mut last);
        assert!(again.is_empty());
        let later = new_records(&[record(4), record(5), record(9)], &mut last);
        let kinds: Vec<_> = later.iter().map(|(k, _)| *k).collect();
        assert_eq!(kinds, vec![Ok(5), Err((5, 9)), Ok(9)]);
        assert_eq!(last, Some(9));
    }
}
