//! The live page-fault feed: one poller for all SSE clients. With the RAM file it reads the
//! fault ring the kernel publishes (kernel/docs/introspection.md: 8192 records) every
//! [`RING_POLL`], without stopping the kernel, so in normal use no fault is lost; without
//! it, the stub's fault log (the last 64) every `--poll-ms` while someone listens.
//!
//! One poller for all clients, so a hundred browsers cost the kernel no more than one. It
//! remembers the last [`REMEMBERED`] records, so a client reconnecting with
//! `Last-Event-ID` (or `?since=`) gets what it missed, and a gap for what it no longer
//! knows. Faults the feed never saw are gaps too, and counted ([`Feed::lost`]).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use introspect::FAULT_RING_LEN;
use report::tasks::FaultDoc;
use tokio::sync::broadcast;

use crate::link::LinkHandle;
use crate::live::{ring, Live};

/// How many records the feed remembers for clients that resume: a whole demo (about
/// 17,000 faults with the swap disk) and then some.
pub const REMEMBERED: usize = 4 * FAULT_RING_LEN;
/// How often the ring is read from the RAM file: the demo's peak is 900 faults in 10 ms
/// (introspection.md), so 20 ms use at most a quarter of the ring; it costs the kernel
/// nothing.
pub const RING_POLL: Duration = Duration::from_millis(20);
/// Events a client may fall behind the feed before it is told it lagged: two rings.
const CHANNEL: usize = 2 * FAULT_RING_LEN;

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
    /// Records after `after` and before `upto` were never seen (the log moved on between polls).
    Gap { after: u64, upto: u64 },
    /// The kernel booted again: sequence numbers start again from 1.
    Boot,
}

/// What the feed remembers: the newest events (faults and the gaps between them), and
/// the seq up to which it knows nothing any more.
#[derive(Default)]
struct Recent {
    events: VecDeque<FeedEvent>,
    faults: usize,
    /// Faults up to this seq are not remembered (evicted, or before the feed looked).
    forgotten: u64,
    newest: u64,
}

/// The shared feed.
#[derive(Clone)]
pub struct Feed {
    tx: broadcast::Sender<FeedEvent>,
    recent: Arc<Mutex<Recent>>,
    lost: Arc<AtomicU64>,
}

impl Feed {
    /// Starts the poller: over the ring when `live` is given, else over the stub's log.
    pub fn spawn(
        link: LinkHandle,
        live: Option<Arc<Live>>,
        interval: Duration,
        timeout: Duration,
    ) -> Feed {
        let (tx, _) = broadcast::channel(CHANNEL);
        let feed = Feed {
            tx,
            recent: Arc::new(Mutex::new(Recent::default())),
            lost: Arc::new(AtomicU64::new(0)),
        };
        let poller = feed.clone();
        tokio::spawn(async move {
            match live {
                Some(live) => poller.poll_ring(&live).await,
                None => poller.poll_stub(link, interval, timeout).await,
            }
        });
        feed
    }

    pub fn subscribe(&self) -> broadcast::Receiver<FeedEvent> {
        self.tx.subscribe()
    }

    /// What a client resuming after `after` missed, oldest first: a gap for faults the
    /// feed no longer knows, then the remembered faults and gaps.
    pub fn since(&self, after: u64) -> Vec<FeedEvent> {
        let recent = self.lock();
        let mut out = Vec::new();
        if after < recent.forgotten {
            out.push(FeedEvent::Gap {
                after,
                upto: recent.forgotten + 1,
            });
        }
        out.extend(recent.events.iter().filter_map(|e| match e {
            FeedEvent::Fault { seq, .. } if *seq > after => Some(e.clone()),
            FeedEvent::Gap { after: a, upto } if *upto > after + 1 => Some(FeedEvent::Gap {
                after: after.max(*a),
                upto: *upto,
            }),
            _ => None,
        }));
        out
    }

    /// The newest seq seen.
    pub fn last_seq(&self) -> u64 {
        self.lock().newest
    }

    /// Faults the feed never saw since it started (the sum of its gaps): 0 in normal use
    /// with the RAM file.
    pub fn lost(&self) -> u64 {
        self.lost.load(Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Recent> {
        self.recent.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Remembers an event and sends it to the clients.
    fn publish(&self, event: FeedEvent) {
        {
            let mut recent = self.lock();
            match &event {
                FeedEvent::Fault { seq, .. } => {
                    recent.faults += 1;
                    recent.newest = recent.newest.max(*seq);
                }
                FeedEvent::Gap { upto, .. } => recent.newest = recent.newest.max(upto - 1),
                FeedEvent::Boot => *recent = Recent::default(),
            }
            if !matches!(event, FeedEvent::Boot) {
                recent.events.push_back(event.clone());
            }
            while recent.faults > REMEMBERED {
                match recent.events.pop_front() {
                    Some(FeedEvent::Fault { seq, .. }) => {
                        recent.faults -= 1;
                        recent.forgotten = recent.forgotten.max(seq);
                    }
                    Some(FeedEvent::Gap { upto, .. }) => {
                        recent.forgotten = recent.forgotten.max(upto - 1)
                    }
                    Some(FeedEvent::Boot) | None => break,
                }
            }
        }
        if let FeedEvent::Gap { after, upto } = event {
            self.lost.fetch_add(upto - after - 1, Ordering::Relaxed);
        }
        let _ = self.tx.send(event);
    }

    /// The ring, every [`RING_POLL`], whether anyone listens or not (it costs the kernel
    /// nothing, and a client resuming later finds the whole history).
    async fn poll_ring(&self, live: &Live) {
        let mut boot = None;
        let mut last = 0u32;
        let mut ticker = tokio::time::interval(RING_POLL);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            let Ok(located) = live.located() else {
                continue;
            };
            let history = boot != Some(located.header.boot_id);
            if history {
                if boot.is_some() {
                    self.publish(FeedEvent::Boot);
                }
                boot = Some(located.header.boot_id);
                last = 0;
            }
            let read = ring::since(&located.descriptor().faults, last, usize::MAX);
            if let Some(g) = read.gap {
                let (after, upto) = (u64::from(g.from) - 1, u64::from(g.upto));
                if history {
                    // Faults from before the daemon looked: not lost by the stream, only
                    // unknown to clients that resume from before them.
                    let mut recent = self.lock();
                    recent.forgotten = upto - 1;
                    recent.newest = recent.newest.max(upto - 1);
                } else {
                    self.publish(FeedEvent::Gap { after, upto });
                }
            }
            for r in &read.records {
                last = last.max(r.seq as u32);
                self.publish(FeedEvent::Fault {
                    seq: r.seq,
                    record: FaultDoc::of(r),
                    history,
                });
            }
        }
    }

    /// The stub's log (the last 64), every `interval` while someone listens.
    async fn poll_stub(&self, link: LinkHandle, interval: Duration, timeout: Duration) {
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
                match (seq, record) {
                    (Err((after, upto)), _) => self.publish(FeedEvent::Gap { after, upto }),
                    (Ok(seq), Some(record)) => self.publish(FeedEvent::Fault {
                        seq,
                        record,
                        history,
                    }),
                    (Ok(_), None) => {}
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
