//! The recorder: takes snapshots of the kernel into the history (history.rs) and serves it under `/api/v1/history` for the web view.
//!
//! With the RAM file (`--ram`, the live source of `live/`) a snapshot is a copy taken
//! between two equal, even readings of the kernel's sequence count, without stopping
//! it: the recorder takes one every `--live-ms` (50: the page can show 20 moments a
//! second) while someone looks, and none while the count has not moved. While gdb
//! holds the kernel stopped the copy is the state as it is (half-done inside a change),
//! said by the moment's `consistent: false`. When the kernel kept changing through
//! every retry the tick is skipped: the recorder never stops the kernel itself while
//! the live source answers.
//!
//! Without it (no RAM file, or one the live source refuses) the snapshots come through
//! the stub, and each stops the kernel (the directory, the tables, mem_map, the task
//! table and the fault log in one stop, about half a second over the serial line), so
//! the recorder takes them only while someone looks (a history request in the last
//! [`VIEWER_GRACE`]) and at most every `--history-ms`. The kernel's identity map (slot
//! 0's tables) is read once per boot and reused while its directory entries do not
//! change.
//!
//! `GET /api/v1/history/live?after=M` is what the page polls: it waits until a moment
//! newer than M exists and answers the changes from M to it in one delta (or the whole
//! newest moment when M is no longer kept), so a slow client skips frames instead of
//! falling behind.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use mm::addr::{ENTRIES_PER_TABLE, LOW_MEM, PAGE_SIZE, PDES_PER_TASK};
use mm::Entry;
use report::{DumpPgdDoc, FaultsDoc, ShowMemDoc, TasksDoc};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use utoipa::{IntoParams, ToSchema};

use crate::answer::{parse_document, Reply};
use crate::api::{self, hex, App};
use crate::error::{ApiError, ErrorBody};
use crate::history::{
    fault_docs_schema, task_doc_or_null_schema, task_docs_schema, Delta, Event, FaultRow, History,
    HistoryError, Limits, Snapshot, TaskRow,
};
use crate::link::{Op, OpResult};
use crate::live;
use crate::params::{parse_number, Params};

/// How long after the last history request the stub source keeps recording.
pub const VIEWER_GRACE: Duration = Duration::from_secs(10);
/// Live copies are tried in this many rounds of `live::TRIES`, this far apart, before
/// the live source's brief QMP stop.
const LIVE_ROUNDS: u32 = 8;
const LIVE_ROUND_PAUSE: Duration = Duration::from_millis(1);
/// How long the live source may be unusable before the stub takes the snapshots.
const LIVE_GRACE: Duration = Duration::from_secs(5);
/// How often the recorder runs checkmm over a live copy.
const CHECKMM_EVERY: Duration = Duration::from_secs(1);
/// The faults a live moment keeps (the stub's `faults` gives 64): a step holds at most
/// this many, and one with more says how many it dropped (faults_since_boot).
const LIVE_FAULTS_KEPT: usize = 512;
/// While gdb holds the kernel stopped its count does not move, but gdb may write its
/// memory (`set var`): a stopped kernel is copied again this often.
const STOPPED_RECHECK: Duration = Duration::from_millis(500);
/// How long a request waits for the first snapshot of a boot.
const READY_WAIT: Duration = Duration::from_secs(2);
/// The longest a live request may wait for a new moment.
const MAX_WAIT: Duration = Duration::from_secs(5);
/// Steps one answer lists at most (the page asks again for more).
const MAX_LISTED: usize = 512;

/// What the recorder knows of the current boot.
struct Inner {
    /// Which boot the history holds: counted by the recorder, one more at each new boot
    /// (the link reconnected, or the RAM file holds another boot id).
    boot: u64,
    /// The link's connection count and the live boot id the history began with.
    connects: u64,
    live_boot: Option<u64>,
    /// The live count, stop flag and stop count of the last live snapshot, and when it
    /// was taken (the same again: nothing to copy, see [`STOPPED_RECHECK`]).
    live_mark: Option<((u32, bool, u32), Instant)>,
    live_counts: LiveCounts,
    /// checkmm over the newest consistent live copy (its JSON document), and when.
    checkmm: Option<(serde_json::Value, Instant)>,
    /// Where the last snapshot came from.
    source: &'static str,
    history: Option<History>,
    /// The page directory's frame, and slot 0's tables by directory index (raw PDE, table).
    pg_dir: Option<u32>,
    kernel_tables: BTreeMap<u16, (u32, crate::history::Table)>,
    /// Where mem_map's counts are (linear = physical in the identity map), and how many.
    counts: Option<(u32, u32, u32)>,
    /// The tables the next snapshot reads (directory index, frame): the last directory's.
    plan: Vec<(u16, u32)>,
    last_error: Option<String>,
    snapshots: u64,
}

/// The recorder and its history.
pub struct Recorder {
    state: Mutex<Inner>,
    /// One snapshot at a time (the loop's, or a request's first).
    taking: tokio::sync::Mutex<()>,
    newest: watch::Sender<(u64, u64)>,
    last_viewer: Mutex<Option<Instant>>,
    /// Since when the live source has not been usable (None: it answers).
    live_unusable_since: Mutex<Option<Instant>>,
    started: Instant,
    /// Between stub snapshots, and between live ones.
    interval: Duration,
    live_interval: Duration,
    limits: Limits,
}

/// How the live snapshots were consistent (the web view's and the bench's figures: a
/// brief stop pauses the VM for a copy, the stub's stop count does not move).
#[derive(Clone, Copy, Debug, Default, Serialize, ToSchema)]
pub struct LiveCounts {
    /// Between two equal, even readings of the count: the kernel never paused.
    pub consistent: u64,
    /// While gdb (the stub) held the kernel stopped, or QEMU had the VM paused.
    pub stopped: u64,
    /// During a brief stop (QMP's or the stub's); the recorder takes none itself.
    pub brief_stop: u64,
    /// The kernel changed through every try: a moment of the faults logged since (the
    /// fault ring), the paging state as of the last copy.
    pub faults_only: u64,
    /// The same, and no fault came either: the tick is skipped.
    pub changing: u64,
}

impl LiveCounts {
    fn count(&mut self, c: live::Consistency) {
        match c {
            live::Consistency::Consistent => self.consistent += 1,
            live::Consistency::Stopped | live::Consistency::Paused => self.stopped += 1,
            live::Consistency::BriefStopQemu | live::Consistency::BriefStopStub => {
                self.brief_stop += 1;
            }
        }
    }
}

/// Why no live snapshot was taken.
enum LiveMiss {
    /// No RAM file, or one the live source cannot use now: the stub may answer.
    Unusable(String),
    /// The kernel kept changing through every retry: wait for the next tick.
    Changing,
}

impl Recorder {
    pub fn new(interval: Duration, live_interval: Duration, limits: Limits) -> Arc<Recorder> {
        let (newest, _) = watch::channel((0, 0));
        Arc::new(Recorder {
            state: Mutex::new(Inner {
                boot: 0,
                connects: 0,
                live_boot: None,
                live_mark: None,
                live_counts: LiveCounts::default(),
                checkmm: None,
                source: "stub",
                history: None,
                pg_dir: None,
                kernel_tables: BTreeMap::new(),
                counts: None,
                plan: Vec::new(),
                last_error: None,
                snapshots: 0,
            }),
            newest,
            taking: tokio::sync::Mutex::new(()),
            last_viewer: Mutex::new(None),
            live_unusable_since: Mutex::new(None),
            started: Instant::now(),
            interval,
            live_interval,
            limits,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A viewer asked: keep recording.
    fn touch(&self) {
        *self.last_viewer.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
    }

    fn viewer_recent(&self) -> bool {
        self.last_viewer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some_and(|t| t.elapsed() < VIEWER_GRACE)
    }

    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// Runs forever: while someone looks, a live snapshot every `live_interval`, or
    /// (without a usable RAM file) a stub snapshot every `interval`.
    pub async fn run(self: Arc<Recorder>, app: Arc<App>) {
        let tick = if app.live.is_some() {
            self.live_interval.min(self.interval)
        } else {
            self.interval
        };
        let mut ticker = tokio::time::interval(tick);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_stub: Option<Instant> = None;
        loop {
            ticker.tick().await;
            if !self.viewer_recent() {
                continue;
            }
            let stub_due = last_stub.is_none_or(|t| t.elapsed() >= self.interval);
            let result = self.snapshot(&app, stub_due).await;
            tracing::trace!(
                "recorder tick: {:?}",
                result.as_ref().map_err(|e| &e.message)
            );
            match result {
                Ok(Some("stub")) => last_stub = Some(Instant::now()),
                Ok(_) => {}
                Err(e) => {
                    if stub_due {
                        last_stub = Some(Instant::now());
                    }
                    self.lock().last_error = Some(e.message);
                }
            }
        }
    }

    /// Takes one snapshot now, live when the RAM file answers, else through the stub
    /// when `stub_ok` (a new boot starts a new history first); the source it used.
    async fn snapshot(&self, app: &App, stub_ok: bool) -> Result<Option<&'static str>, ApiError> {
        let _one = self.taking.lock().await;
        self.snapshot_taking(app, stub_ok).await
    }

    /// [`snapshot`](Self::snapshot) with `taking` held.
    async fn snapshot_taking(
        &self,
        app: &App,
        stub_ok: bool,
    ) -> Result<Option<&'static str>, ApiError> {
        let connects = app.link.status().connects;
        let unusable = match self.live_snapshot(app, connects).await {
            Ok(None) => return Ok(None),
            Ok(Some(snap)) => {
                *self
                    .live_unusable_since
                    .lock()
                    .unwrap_or_else(|e| e.into_inner()) = None;
                self.take(snap);
                return Ok(Some("live"));
            }
            Err(LiveMiss::Changing) => return Ok(None),
            Err(LiveMiss::Unusable(why)) => why,
        };
        // With a RAM file, a passing failure (the descriptor not published yet at boot,
        // QEMU busy for the boot check) is no reason to stop the kernel: the stub only
        // when the live source has not answered for a while.
        let since = *self
            .live_unusable_since
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert_with(Instant::now);
        if !stub_ok || (app.live.is_some() && since.elapsed() < LIVE_GRACE) {
            return Ok(None);
        }
        if !app.link.status().connected {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "not_connected",
                format!("{unusable}; and the kernel's stub is not connected"),
            ));
        }
        self.boot_check(connects, None);
        let snap = self.stub_snapshot(app).await?;
        self.take(snap);
        Ok(Some("stub"))
    }

    /// A new history when the link reconnected or the RAM file holds another boot (a
    /// live boot id of None: the stub's snapshot, which knows none).
    fn boot_check(&self, connects: u64, live_boot: Option<u64>) {
        let new = {
            let s = self.lock();
            s.history.is_none() && s.boot == 0
                || s.connects != connects
                || live_boot.is_some_and(|b| s.live_boot.is_some_and(|old| old != b))
        };
        if new {
            self.new_boot(connects);
        }
        if live_boot.is_some() {
            self.lock().live_boot = live_boot;
        }
    }

    /// One live snapshot as a moment of the history; None when the kernel's count has
    /// not moved since the last one (nothing changed, nothing copied).
    async fn live_snapshot(&self, app: &App, connects: u64) -> Result<Option<Snapshot>, LiveMiss> {
        let located = app.live_located().await.map_err(|u| match u {
            live::serve::Unavailable::NotConfigured => {
                LiveMiss::Unusable("no RAM file (--ram)".into())
            }
            u => LiveMiss::Unusable(format!("the RAM file: {}", ApiError::from(u).message)),
        })?;
        let mark = {
            let d = located.descriptor();
            let (stopped, stops) = d.stopped();
            (d.seq_now(), stopped, stops)
        };
        let same = {
            let s = self.lock();
            s.history.is_some()
                && s.connects == connects
                && s.live_boot == Some(located.header.boot_id)
                && s.live_mark.is_some_and(|(m, at)| {
                    m == mark && !(mark.1 && at.elapsed() >= STOPPED_RECHECK)
                })
        };
        if same {
            return Ok(None);
        }
        // While memhog faults the kernel changes its state many times a second (the
        // reader windows around swap_out's scan and write are the long gaps): spread
        // the tries over a few milliseconds to land in a gap between two changes.
        let mut snap = None;
        for round in 0..LIVE_ROUNDS {
            match live::Snapshot::take(&located, &live::Parts::ALL, live::TRIES) {
                Ok(Ok(s)) => {
                    snap = Some(s);
                    break;
                }
                Ok(Err(_)) if round + 1 < LIVE_ROUNDS => {
                    tokio::time::sleep(LIVE_ROUND_PAUSE).await;
                }
                Ok(Err(_)) => {}
                Err(e) => return Err(LiveMiss::Unusable(format!("the RAM file: {e}"))),
            }
        }
        let Some(snap) = snap else {
            // No brief stop here (live_snapshot's fallback for a request): when the
            // kernel is inside a change at every try (faults back to back without
            // swapping), QMP's stops land inside one too, and pausing the VM 20 times a
            // second would slow the very thing the page shows. The faults logged since come from the
            // fault ring (it needs no count); the paging state stays the last copy's.
            let moment = self.ring_moment(&located, connects);
            let mut s = self.lock();
            match moment {
                Some(_) => s.live_counts.faults_only += 1,
                None => s.live_counts.changing += 1,
            }
            return moment.map(Some).ok_or(LiveMiss::Changing);
        };
        let moment = from_live(&snap, self.now_ms())
            .map_err(|e| LiveMiss::Unusable(format!("a live snapshot: {}", e.message)))?;
        self.boot_check(connects, Some(snap.boot_id));
        let mut s = self.lock();
        let stopped = snap.moment.consistency == live::Consistency::Stopped;
        s.live_mark = Some(((snap.moment.seq, stopped, snap.stops), Instant::now()));
        s.live_counts.count(snap.moment.consistency);
        // checkmm of a copy: the web view's, so that it never asks the kernel (the
        // answer's fallback stops it when it keeps changing); at most once a second.
        if s.checkmm
            .as_ref()
            .is_none_or(|(_, at)| at.elapsed() >= CHECKMM_EVERY)
        {
            if let Ok(Ok(doc)) = api::live_checkmm_with(&snap, |d| serde_json::to_value(d)) {
                s.checkmm = Some((doc, Instant::now()));
            }
        }
        s.pg_dir = Some(mm::view::PagingView::pg_dir(&snap).as_u32());
        Ok(Some(moment))
    }

    /// The newest moment with the faults the kernel logged since it (read from the fault
    /// ring, which needs no count: each record says whether it is whole): the paging
    /// state stays the newest consistent copy's. None when no fault came.
    fn ring_moment(&self, located: &live::Located, connects: u64) -> Option<Snapshot> {
        let mut snap = {
            let s = self.lock();
            if s.connects != connects || s.live_boot != Some(located.header.boot_id) {
                return None;
            }
            s.history.as_ref()?.latest().clone()
        };
        let after = u32::try_from(snap.last_fault()).ok()?;
        let read = live::ring::since(&located.descriptor().faults, after, LIVE_FAULTS_KEPT);
        if read.records.is_empty() {
            return None;
        }
        snap.faults
            .extend(read.records.iter().map(report::tasks::FaultDoc::of));
        let drop = snap.faults.len().saturating_sub(LIVE_FAULTS_KEPT);
        snap.faults.drain(..drop);
        snap.faults_since_boot = u64::from(read.next.saturating_sub(1));
        snap.time_ms = self.now_ms();
        Some(snap)
    }

    /// Whether the history holds the current boot.
    fn current(&self, app: &App) -> bool {
        let s = self.lock();
        s.history.is_some() && s.connects == app.link.status().connects
    }

    /// A request that needs the history: the first snapshot of a boot is taken for it,
    /// so an answer never waits for the loop (errors are the link's: 503, 504).
    async fn ready(&self, app: &App) -> Result<(), ApiError> {
        self.touch();
        if self.current(app) {
            return Ok(());
        }
        let _one = self.taking.lock().await;
        if self.current(app) {
            return Ok(());
        }
        // A live snapshot may be skipped (the kernel changing at every retry): try again
        // for a while (the caller answers 503 after it, and the page asks again).
        let deadline = Instant::now() + READY_WAIT;
        loop {
            if self.snapshot_taking(app, true).await?.is_some() || Instant::now() >= deadline {
                return Ok(());
            }
            tokio::time::sleep(self.live_interval).await;
        }
    }

    fn new_boot(&self, connects: u64) {
        let mut s = self.lock();
        let boot = s.boot + 1;
        *s = Inner {
            boot,
            connects,
            live_boot: None,
            live_mark: None,
            live_counts: s.live_counts,
            checkmm: None,
            source: s.source,
            history: None,
            pg_dir: None,
            kernel_tables: BTreeMap::new(),
            counts: None,
            plan: Vec::new(),
            last_error: None,
            snapshots: 0,
        };
        drop(s);
        self.newest.send_replace((boot, 0));
    }

    /// Records one snapshot (a new history for the first one of a boot).
    pub fn take(&self, snap: Snapshot) {
        let mut s = self.lock();
        s.snapshots += 1;
        s.last_error = None;
        s.source = snap.source;
        let boot = s.boot;
        let newest = match &mut s.history {
            Some(h) => {
                h.record(snap);
                h.newest()
            }
            None => {
                s.history = Some(History::new(snap, self.limits));
                0
            }
        };
        drop(s);
        self.newest.send_if_modified(|v| {
            let changed = *v != (boot, newest);
            *v = (boot, newest);
            changed
        });
    }

    /// One snapshot through the stub, in one stop of the kernel (a second when the
    /// directory named other tables than the last one: the plan is read again).
    async fn stub_snapshot(&self, app: &App) -> Result<Snapshot, ApiError> {
        let (pg_dir, counts) = self.layout(app).await?;
        for _attempt in 0..2 {
            let plan = self.plan();
            let mut ops = vec![
                Op::ReadMemory {
                    addr: pg_dir,
                    len: PAGE_SIZE,
                },
                Op::ReadMemory {
                    addr: counts.0,
                    len: counts.1,
                },
                Op::Monitor("tasks --json".into()),
                Op::Monitor("faults --json".into()),
            ];
            ops.extend(plan.iter().map(|&(_, table)| Op::ReadMemory {
                addr: table,
                len: PAGE_SIZE,
            }));
            let results = app.link.run(ops, app.timeout * 2).await?;
            let mut it = results.into_iter();
            let directory = words(memory(it.next())?)?;
            let counts_now = memory(it.next())?;
            let tasks = tasks_from(&parse_document::<TasksDoc<'static>>(&monitor_text(
                it.next(),
            )?)?);
            let (faults, faults_since_boot) = faults_from(&parse_document::<FaultsDoc<'static>>(
                &monitor_text(it.next())?,
            )?);
            let mut read = BTreeMap::new();
            for &(dir, table) in &plan {
                read.insert(dir, (table, words(memory(it.next())?)?));
            }
            let high = counts.2;
            let mut tables = BTreeMap::new();
            let mut missing = false;
            let mut s = self.lock();
            for dir in 0..ENTRIES_PER_TABLE {
                let e = Entry(directory[dir]);
                if !e.is_present() || e.frame().as_u32() >= high {
                    continue;
                }
                let key = dir as u16;
                let frame = e.frame().as_u32();
                let kernel = dir < PDES_PER_TASK;
                match read.get(&key) {
                    Some((t, words)) if *t == frame => {
                        if kernel {
                            s.kernel_tables.insert(key, (directory[dir], words.clone()));
                        }
                        tables.insert(key, words.clone());
                    }
                    _ => match s.kernel_tables.get(&key) {
                        Some((raw, words)) if kernel && *raw == directory[dir] => {
                            tables.insert(key, words.clone());
                        }
                        _ => missing = true,
                    },
                }
            }
            s.pg_dir = Some(pg_dir);
            s.kernel_tables
                .retain(|k, (raw, _)| directory[usize::from(*k)] == *raw);
            // The next plan: every user table this directory names, and kernel tables not yet read.
            s.plan = (0..ENTRIES_PER_TABLE)
                .filter_map(|dir| {
                    let e = Entry(directory[dir]);
                    let key = dir as u16;
                    let known = dir < PDES_PER_TASK
                        && s.kernel_tables
                            .get(&key)
                            .is_some_and(|(r, _)| *r == directory[dir]);
                    (e.is_present() && e.frame().as_u32() < high && !known)
                        .then(|| (key, e.frame().as_u32()))
                })
                .collect();
            drop(s);
            if missing {
                continue;
            }
            return Ok(Snapshot {
                seq: 0,
                time_ms: self.now_ms(),
                consistent: true,
                directory,
                tables,
                counts: counts_now,
                high_memory: high,
                tasks,
                faults,
                faults_since_boot,
                source: "stub",
            });
        }
        Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "busy",
            "the page directory changed under two snapshots in a row",
        ))
    }

    fn plan(&self) -> Vec<(u16, u32)> {
        self.lock().plan.clone()
    }

    /// The page directory's frame and mem_map's place (address, bytes, HIGH_MEMORY),
    /// found once per boot.
    async fn layout(&self, app: &App) -> Result<(u32, (u32, u32, u32)), ApiError> {
        if let (Some(d), Some(c)) = {
            let s = self.lock();
            (s.pg_dir, s.counts)
        } {
            return Ok((d, c));
        }
        let paging = api::paging_static(app)?;
        let offset = api::counts_offset(app, paging).await?;
        let results = app
            .link
            .run(
                vec![
                    Op::Monitor("dumppgd --range 0x0-0x1000 --json".into()),
                    Op::Monitor("showmem --json".into()),
                ],
                app.timeout,
            )
            .await?;
        let mut it = results.into_iter();
        let pg_dir = parse_document::<DumpPgdDoc<'static>>(&monitor_text(it.next())?)?
            .pg_dir
            .0;
        let high = parse_document::<ShowMemDoc<'static>>(&monitor_text(it.next())?)?
            .high_memory
            .0;
        let frames = (high.saturating_sub(LOW_MEM)) / PAGE_SIZE;
        let counts = (paging.addr + offset as u32, frames, high);
        let mut s = self.lock();
        s.pg_dir = Some(pg_dir);
        s.counts = Some(counts);
        Ok((pg_dir, counts))
    }
}

/// A moment of the history from a live snapshot: the raw directory and tables, mem_map,
/// and the task and fault rows computed by kernel/report as the monitor computes
/// `tasks --json` and `faults --json` (the stub path parses those same documents).
/// The tables are those every reader accepts (`PagingView::page_table`: a user slot's
/// entry naming reserved memory, which only `monitor corrupt` makes, reads as no table).
fn from_live(snap: &live::Snapshot, time_ms: u64) -> Result<Snapshot, ApiError> {
    use mm::view::PagingView;
    let mut directory = Box::new([0u32; ENTRIES_PER_TABLE]);
    for (i, e) in directory.iter_mut().enumerate() {
        *e = snap.pde(i).0;
    }
    let mut tables = BTreeMap::new();
    for dir in 0..ENTRIES_PER_TABLE {
        let Some(frame) = snap.page_table(dir) else {
            continue;
        };
        let mut t = Box::new([0u32; ENTRIES_PER_TABLE]);
        for (i, e) in t.iter_mut().enumerate() {
            *e = snap.read_entry(frame, i).0;
        }
        tables.insert(dir as u16, t);
    }
    let counts = (0..snap.nr_pages())
        .map(|i| snap.map_count(i).unwrap_or(0))
        .collect();
    let tasks = tasks_from(&report::Tasks::new(snap, snap).document());
    let faults = report::Faults::new(snap)
        .map_err(|e| ApiError::internal(format!("the live fault log: {e:?}")))?;
    let (mut faults, faults_since_boot) = faults_from(&faults.document());
    let drop = faults.len().saturating_sub(LIVE_FAULTS_KEPT);
    faults.drain(..drop);
    if snap.missed() {
        return Err(ApiError::internal(
            "the live snapshot did not copy everything the history reads",
        ));
    }
    Ok(Snapshot {
        seq: u64::from(snap.moment.seq),
        time_ms,
        consistent: !snap.moment.mid_change,
        directory,
        tables,
        counts,
        high_memory: snap.high_memory(),
        tasks,
        faults,
        faults_since_boot,
        source: "live",
    })
}

fn memory(r: Option<OpResult>) -> Result<Vec<u8>, ApiError> {
    match r {
        Some(OpResult::Memory(m)) => Ok(m),
        _ => Err(ApiError::internal("unexpected link answer (memory)")),
    }
}

/// A monitor answer's text (parse_document makes it its document).
fn monitor_text(r: Option<OpResult>) -> Result<String, ApiError> {
    match r {
        Some(OpResult::Monitor(t)) => Ok(t),
        _ => Err(ApiError::internal("unexpected link answer (monitor)")),
    }
}

/// 4096 bytes as 1024 little-endian entries.
fn words(bytes: Vec<u8>) -> Result<crate::history::Table, ApiError> {
    if bytes.len() != PAGE_SIZE as usize {
        return Err(ApiError::internal(format!(
            "a page read gave {} bytes",
            bytes.len()
        )));
    }
    let mut t = Box::new([0u32; ENTRIES_PER_TABLE]);
    for (i, c) in bytes.chunks_exact(4).enumerate() {
        t[i] = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
    }
    Ok(t)
}

/// The task rows of `tasks --json`, by pid; `current` cleared (see history::TaskRow).
pub fn tasks_from(doc: &TasksDoc<'_>) -> Vec<TaskRow> {
    let mut rows = Vec::new();
    doc.tasks.for_each_until(&mut |t| {
        rows.push(TaskRow {
            current: false,
            ..*t
        });
        std::ops::ControlFlow::Continue(())
    });
    rows.sort_by_key(|t| t.pid);
    rows
}

/// The fault records of `faults --json`, oldest first, and the faults since boot.
pub fn faults_from(doc: &FaultsDoc<'_>) -> (Vec<FaultRow>, u64) {
    let mut rows = Vec::new();
    doc.faults.for_each_until(&mut |f| {
        rows.push(*f);
        std::ops::ControlFlow::Continue(())
    });
    rows.sort_by_key(|f| f.seq);
    (rows, doc.since_boot)
}

// ---- what the endpoints answer ----

fn checkmm_or_null_schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Type};
    OneOfBuilder::new()
        .item(crate::history::report_ref("CheckMmDoc"))
        .item(ObjectBuilder::new().schema_type(Type::Null))
        .into()
}

/// One step, without its changes (they can be many: ask for a diff).
#[derive(Serialize, ToSchema)]
pub struct StepSummary {
    /// The moment this step leads to.
    pub moment: u64,
    /// The kernel's sequence count (0 through the stub, which has none).
    pub seq: u64,
    /// Milliseconds since the inspector started.
    pub time_ms: u64,
    pub consistent: bool,
    pub pdes: usize,
    pub ptes: usize,
    pub counts: usize,
    pub tasks: usize,
    pub faults: usize,
    pub events: Vec<Event>,
}

/// `/api/v1/history`: what is kept, and the steps after `since`.
#[derive(Serialize, ToSchema)]
pub struct HistoryInfo {
    /// Which boot, counted by the inspector: a new one (QEMU restarted, the kernel
    /// rebooted) starts a new history.
    pub boot: u64,
    /// Where the last snapshot came from: `live` (the RAM file, the kernel never
    /// stopped) or `stub` (each snapshot stops the kernel briefly).
    pub source: String,
    /// Kept moments: `oldest..=newest`; null before the first snapshot.
    pub oldest: Option<u64>,
    pub newest: Option<u64>,
    /// Steps folded into the oldest moment to stay within the bounds.
    pub evicted: u64,
    pub bytes: usize,
    pub max_steps: usize,
    pub max_bytes: usize,
    /// Milliseconds between snapshots while someone looks (live ones: `live_interval_ms`,
    /// taken only when the kernel's count moved).
    pub interval_ms: u64,
    pub live_interval_ms: u64,
    /// How the live snapshots since the inspector started were taken.
    pub live: LiveCounts,
    /// checkmm over the newest consistent live copy (at most a second old when the
    /// kernel leaves room for one); null without the live source.
    #[schema(schema_with = checkmm_or_null_schema)]
    pub checkmm: Option<serde_json::Value>,
    pub snapshots: u64,
    pub last_error: Option<String>,
    /// At most 512, oldest first.
    pub steps: Vec<StepSummary>,
}

/// The whole state at one moment. Entries and counts are plain integers (there are
/// thousands); addresses elsewhere are hex strings as in the monitor's documents.
#[derive(Serialize, ToSchema)]
pub struct MomentDoc {
    pub boot: u64,
    pub moment: u64,
    pub seq: u64,
    pub time_ms: u64,
    pub consistent: bool,
    pub source: String,
    /// The page directory's frame (CR3), hex.
    pub pg_dir: Option<String>,
    /// HIGH_MEMORY, hex.
    pub high_memory: String,
    /// 1024 raw directory entries.
    pub directory: Vec<u32>,
    /// The page table (1024 raw entries) of every present directory entry in RAM, by directory index.
    pub tables: BTreeMap<String, Vec<u32>>,
    /// mem_map, one count per frame from LOW_MEM.
    pub counts: Vec<u8>,
    /// The task table (`tasks --json`'s rows), `current` false.
    #[schema(schema_with = task_docs_schema)]
    pub tasks: Vec<TaskRow>,
    /// The last faults up to this moment, oldest first (`faults --json`'s records).
    #[schema(schema_with = fault_docs_schema)]
    pub faults: Vec<FaultRow>,
}

/// A task row before and after (null: no such task).
#[derive(Serialize, ToSchema)]
pub struct TaskChange {
    pub pid: u32,
    #[schema(schema_with = task_doc_or_null_schema)]
    pub old: Option<TaskRow>,
    #[schema(schema_with = task_doc_or_null_schema)]
    pub new: Option<TaskRow>,
}

/// What changed between two moments.
#[derive(Serialize, ToSchema)]
pub struct DeltaDoc {
    pub from: u64,
    pub to: u64,
    /// `[index, old, new]` per directory entry.
    pub pdes: Vec<[u32; 3]>,
    /// `[directory index, table index, old, new]` per page-table entry.
    pub ptes: Vec<[u32; 4]>,
    /// `[frame index from LOW_MEM, old, new]` per mem_map count.
    pub counts: Vec<[u32; 3]>,
    pub tasks: Vec<TaskChange>,
    /// Faults logged in between (forward only), oldest first.
    #[schema(schema_with = fault_docs_schema)]
    pub faults: Vec<FaultRow>,
    /// `[old, new]` frames of mem_map, when its length changed.
    pub counts_len: Option<[u32; 2]>,
}

impl DeltaDoc {
    fn new(from: u64, to: u64, d: Delta) -> DeltaDoc {
        DeltaDoc {
            from,
            to,
            pdes: d
                .pdes
                .iter()
                .map(|(&i, c)| [u32::from(i), c.old, c.new])
                .collect(),
            ptes: d
                .ptes
                .iter()
                .map(|(&(dir, i), c)| [u32::from(dir), u32::from(i), c.old, c.new])
                .collect(),
            counts: d
                .counts
                .iter()
                .map(|(&i, c)| [i, u32::from(c.old), u32::from(c.new)])
                .collect(),
            tasks: d
                .tasks
                .into_iter()
                .map(|(pid, c)| TaskChange {
                    pid,
                    old: c.old,
                    new: c.new,
                })
                .collect(),
            faults: d.faults,
            counts_len: d.counts_len.map(|c| [c.old, c.new]),
        }
    }
}

/// `/api/v1/history/live`: the changes since the moment the page has.
#[derive(Serialize, ToSchema)]
pub struct LiveDoc {
    pub boot: u64,
    pub oldest: u64,
    pub newest: u64,
    /// The page's moment is not kept (or another boot): `moment` holds the newest whole.
    pub reset: bool,
    pub moment: Option<MomentDoc>,
    /// From the page's moment to the newest (null with `reset`, or when nothing changed).
    pub delta: Option<DeltaDoc>,
    /// The steps after the page's moment (at most 512, the newest).
    pub steps: Vec<StepSummary>,
}

fn summary(step: &crate::history::Step) -> StepSummary {
    StepSummary {
        moment: step.moment,
        seq: step.seq,
        time_ms: step.time_ms,
        consistent: step.consistent,
        pdes: step.delta.pdes.len(),
        ptes: step.delta.ptes.len(),
        counts: step.delta.counts.len(),
        tasks: step.delta.tasks.len(),
        faults: step.delta.faults.len(),
        events: step.events.clone(),
    }
}

fn moment_doc(boot: u64, moment: u64, pg_dir: Option<u32>, s: Snapshot) -> MomentDoc {
    MomentDoc {
        boot,
        moment,
        seq: s.seq,
        time_ms: s.time_ms,
        consistent: s.consistent,
        source: s.source.into(),
        pg_dir: pg_dir.map(hex),
        high_memory: hex(s.high_memory),
        directory: s.directory.to_vec(),
        tables: s
            .tables
            .into_iter()
            .map(|(k, t)| (k.to_string(), t.to_vec()))
            .collect(),
        counts: s.counts,
        tasks: s.tasks,
        faults: s.faults,
    }
}

fn not_kept(e: HistoryError) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_kept", e.to_string())
}

fn no_history() -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "no_history",
        "no snapshot yet (the kernel is not connected, or the first one is being taken)",
    )
}

type Shared = State<Arc<App>>;

/// `since` for the list.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // documents the parameters; params::Params reads them
pub struct ListQuery {
    /// List the steps after this moment (default: the newest 512); decimal or 0x hex.
    since: Option<String>,
    /// Indent the JSON.
    pretty: Option<bool>,
}

#[utoipa::path(get, path = "/api/v1/history", tag = "history", params(ListQuery),
    responses((status = 200, body = HistoryInfo), (status = 400, body = ErrorBody)))]
pub async fn list(State(app): Shared, RawQuery(q): RawQuery) -> Result<Reply, ApiError> {
    let params = Params::parse(q.as_deref(), &["since"])?;
    let since = params.number("since")?;
    let r = &app.recorder;
    r.touch();
    let s = r.lock();
    let h = s.history.as_ref();
    let mut steps: Vec<StepSummary> = h
        .map(|h| {
            h.steps()
                .filter(|st| since.is_none_or(|m| st.moment > m))
                .map(summary)
                .collect()
        })
        .unwrap_or_default();
    if since.is_some() {
        steps.truncate(MAX_LISTED);
    } else {
        let skip = steps.len().saturating_sub(MAX_LISTED);
        steps.drain(..skip);
    }
    let info = HistoryInfo {
        boot: s.boot,
        source: s.source.into(),
        oldest: h.map(History::oldest),
        newest: h.map(History::newest),
        evicted: h.map_or(0, |h| h.evicted),
        bytes: h.map_or(0, History::bytes),
        max_steps: r.limits.steps,
        max_bytes: r.limits.bytes,
        interval_ms: r.interval.as_millis() as u64,
        live_interval_ms: r.live_interval.as_millis() as u64,
        live: s.live_counts,
        checkmm: s.checkmm.as_ref().map(|(doc, _)| doc.clone()),
        snapshots: s.snapshots,
        last_error: s.last_error.clone(),
        steps,
    };
    Ok(Reply::new(&info, params.pretty()?))
}

#[utoipa::path(get, path = "/api/v1/history/moments/{moment}", tag = "history",
    params(("moment" = String, Path, description = "a moment number (decimal or 0x hex), or `latest`"), api::PrettyQuery),
    responses((status = 200, body = MomentDoc), (status = 400, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn moment(
    State(app): Shared,
    p: Result<Path<String>, PathRejection>,
    RawQuery(q): RawQuery,
) -> Result<Reply, ApiError> {
    let which = p.map_err(|e| ApiError::bad_request(e.body_text()))?.0;
    let params = Params::parse(q.as_deref(), &[])?;
    let asked = match which.as_str() {
        "latest" => None,
        text => Some(parse_number(text, "moment")?),
    };
    let r = &app.recorder;
    r.ready(&app).await?;
    let s = r.lock();
    let h = s.history.as_ref().ok_or_else(no_history)?;
    let m = asked.unwrap_or_else(|| h.newest());
    let snap = h.at(m).map_err(not_kept)?;
    Ok(Reply::new(
        &moment_doc(s.boot, m, s.pg_dir, snap),
        params.pretty()?,
    ))
}

/// Two moments.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // documents the parameters; params::Params reads them
pub struct DiffQuery {
    /// From this moment (decimal or 0x hex).
    from: String,
    /// To this one (earlier than `from`: the changes undone).
    to: String,
    /// Indent the JSON.
    pretty: Option<bool>,
}

#[utoipa::path(get, path = "/api/v1/history/diff", tag = "history", params(DiffQuery),
    responses((status = 200, body = DeltaDoc), (status = 400, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn diff(State(app): Shared, RawQuery(q): RawQuery) -> Result<Reply, ApiError> {
    let params = Params::parse(q.as_deref(), &["from", "to"])?;
    let moment = |name: &str| {
        params
            .number(name)?
            .ok_or_else(|| ApiError::bad_request(format!("{name}: missing (a moment)")))
    };
    let (from, to) = (moment("from")?, moment("to")?);
    let pretty = params.pretty()?;
    let r = &app.recorder;
    r.ready(&app).await?;
    let s = r.lock();
    let h = s.history.as_ref().ok_or_else(no_history)?;
    let d = h.diff(from, to).map_err(not_kept)?;
    Ok(Reply::new(&DeltaDoc::new(from, to, d), pretty))
}

/// Where the page is.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // documents the parameters; params::Params reads them
pub struct LiveQuery {
    /// The moment the page has (omit: the newest whole); decimal or 0x hex.
    after: Option<String>,
    /// The boot the page's moment belongs to.
    boot: Option<String>,
    /// How long to wait for a newer moment, in milliseconds (at most 5000; default 0).
    wait_ms: Option<String>,
    /// Indent the JSON.
    pretty: Option<bool>,
}

#[utoipa::path(get, path = "/api/v1/history/live", tag = "history", params(LiveQuery),
    responses((status = 200, body = LiveDoc), (status = 400, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn live(State(app): Shared, RawQuery(q): RawQuery) -> Result<Reply, ApiError> {
    let params = Params::parse(q.as_deref(), &["after", "boot", "wait_ms"])?;
    let (after, boot) = (params.number("after")?, params.number("boot")?);
    let wait = Duration::from_millis(params.number("wait_ms")?.unwrap_or(0)).min(MAX_WAIT);
    let pretty = params.pretty()?;
    let r = app.recorder.clone();
    r.ready(&app).await?;
    let mut rx = r.newest.subscribe();
    let behind = |v: &(u64, u64)| match (after, boot) {
        (Some(after), Some(boot)) => boot != v.0 || v.1 > after,
        _ => true,
    };
    // Wait for a newer moment (or the first snapshot of a boot) until the deadline.
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let ready = r.lock().history.is_some() && behind(&rx.borrow_and_update());
        if ready || tokio::time::Instant::now() >= deadline {
            break;
        }
        if tokio::time::timeout_at(deadline, rx.changed())
            .await
            .is_err()
        {
            break;
        }
        r.touch();
    }
    let s = r.lock();
    let h = s.history.as_ref().ok_or_else(no_history)?;
    let (oldest, newest) = (h.oldest(), h.newest());
    let kept = boot == Some(s.boot) && after.is_some_and(|a| a >= oldest && a <= newest);
    let start = if kept {
        after.unwrap_or(newest)
    } else {
        newest
    };
    let mut steps: Vec<StepSummary> = h
        .steps()
        .filter(|st| st.moment > start)
        .map(summary)
        .collect();
    let skip = steps.len().saturating_sub(MAX_LISTED);
    steps.drain(..skip);
    if !kept {
        let snap = h.at(newest).map_err(not_kept)?;
        let recent: Vec<StepSummary> = {
            let all: Vec<_> = h.steps().map(summary).collect();
            let skip = all.len().saturating_sub(MAX_LISTED);
            all.into_iter().skip(skip).collect()
        };
        let doc = LiveDoc {
            boot: s.boot,
            oldest,
            newest,
            reset: true,
            moment: Some(moment_doc(s.boot, newest, s.pg_dir, snap)),
            delta: None,
            steps: recent,
        };
        return Ok(Reply::new(&doc, pretty));
    }
    let delta = if start < newest {
        Some(DeltaDoc::new(
            start,
            newest,
            h.diff(start, newest).map_err(not_kept)?,
        ))
    } else {
        None
    };
    let doc = LiveDoc {
        boot: s.boot,
        oldest,
        newest,
        reset: false,
        moment: None,
        delta,
        steps,
    };
    Ok(Reply::new(&doc, pretty))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_and_fault_rows_come_from_the_monitor_documents() {
        use crate::history::fixtures::{fault, task};
        use report::inputs::FaultAction;
        let mut running = task(2, Some(1), 2, "demo");
        running.current = true;
        let tasks = TasksDoc {
            command: Default::default(),
            schema: Default::default(),
            current_slot: 2,
            tasks: report::value::Items::Owned(vec![running, task(0, None, 0, "kernel")]),
        };
        // Through JSON, as the stub answers.
        let text = serde_json::to_string(&tasks).unwrap();
        let rows = tasks_from(&parse_document::<TasksDoc<'static>>(&text).unwrap());
        assert_eq!(rows.iter().map(|t| t.pid).collect::<Vec<_>>(), vec![0, 2]);
        assert_eq!(rows[1].parent_pid, Some(1));
        assert!(
            rows.iter().all(|t| !t.current),
            "current is no change of state"
        );
        let faults = serde_json::json!({"command": "faults", "schema": report::SCHEMA,
            "capacity": 64, "since_boot": 9, "complete": true,
            "faults": [fault(9, 1, 0x0400_1000, FaultAction::ZeroPage),
                       fault(8, 1, 0x0400_0000, FaultAction::Loaded)],
            "totals": report::tasks::FaultTotals::default()});
        let faults = parse_document::<FaultsDoc<'static>>(&faults.to_string());
        let (rows, since_boot) = faults_from(&faults.unwrap());
        assert_eq!((rows.len(), since_boot), (2, 9));
        assert_eq!((rows[0].seq, rows[0].linear.0), (8, 0x0400_0000));
    }

    #[test]
    fn a_page_read_becomes_its_entries() {
        let mut bytes = vec![0u8; 4096];
        bytes[4..8].copy_from_slice(&0x01fd_d027u32.to_le_bytes());
        let t = words(bytes).unwrap();
        assert_eq!((t[0], t[1]), (0, 0x01fd_d027));
        assert!(words(vec![0; 12]).is_err());
    }
}
