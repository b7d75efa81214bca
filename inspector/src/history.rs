//! A bounded history of paging snapshots, kept as differences: which entries and counts each step changed, any moment rebuilt, any two compared.
//!
//! The recorder takes consistent snapshots of the kernel (the live source reads them from
//! guest RAM without stopping it) and hands each to [`History::record`]. A snapshot that
//! differs from the last one becomes a *step*: the exact directory entries, page-table
//! entries, `mem_map` counts and task rows it changed (old and new value of each), the
//! faults the kernel logged since, and what those changes mean ([`Event`]: a fork, an
//! exit freeing its slot, a copy-on-write split, a swap-out, ...).
//!
//! Only two full snapshots are kept: the oldest moment (`base`) and the newest
//! (`latest`). Moment `k` is rebuilt by applying steps forward from the base or undoing
//! them backward from the latest, whichever is shorter (each change holds its old value,
//! so a step can be undone). When the history is over its bounds (steps or bytes), the
//! oldest step is folded into the base and dropped.
//!
//! Moments are numbered: moment 0 is the first snapshot, step `k` leads from moment
//! `k - 1` to moment `k`; after eviction the oldest moment is the base's number.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use mm::addr::ENTRIES_PER_TABLE;
use mm::Entry;
use report::inputs::TaskState;
use report::tasks::{FaultDoc, TaskDoc};
use serde::Serialize;
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, OneOfBuilder, Schema, Type};
use utoipa::openapi::{Ref, RefOr};
use utoipa::ToSchema;

/// One page table's entries.
pub type Table = Box<[u32; ENTRIES_PER_TABLE]>;

fn empty_table() -> Table {
    Box::new([0; ENTRIES_PER_TABLE])
}

/// One task as the history follows it: the monitor's own `tasks` row
/// (`report::tasks::TaskDoc`), with `current` always false (which task a snapshot
/// interrupted is not a change of the paging state).
pub type TaskRow = TaskDoc;

/// One fault the kernel logged: the monitor's own `faults` record.
pub type FaultRow = FaultDoc;

/// A task's slot as the directory indexes count it (slots are 0..64).
fn slot_of(t: &TaskRow) -> u16 {
    t.slot as u16
}

/// The OpenAPI schema of a `report` document: a reference to its component (the JSON
/// Schema of kernel/docs/monitor.schema.json, which api.rs adds to the components).
pub fn report_ref(name: &str) -> RefOr<Schema> {
    Ref::from_schema_name(name).into()
}

/// `[TaskDoc]`, `TaskDoc | null`, `[FaultDoc]`, as report_ref.
pub fn task_docs_schema() -> RefOr<Schema> {
    ArrayBuilder::new().items(report_ref("TaskDoc")).into()
}
pub fn task_doc_or_null_schema() -> RefOr<Schema> {
    OneOfBuilder::new()
        .item(report_ref("TaskDoc"))
        .item(ObjectBuilder::new().schema_type(Type::Null))
        .into()
}
pub fn fault_docs_schema() -> RefOr<Schema> {
    ArrayBuilder::new().items(report_ref("FaultDoc")).into()
}

/// One consistent look at the paging state.
#[derive(Clone, Debug, PartialEq)]
pub struct Snapshot {
    /// The kernel's sequence count when it was read.
    pub seq: u64,
    /// When it was taken, in milliseconds (the recorder's clock).
    pub time_ms: u64,
    /// False when it was read while the kernel was in the middle of a change (stopped
    /// by gdb inside one: the state as it is, half-done).
    pub consistent: bool,
    pub directory: Table,
    /// The page table of every present directory entry whose table lies below
    /// `high_memory`, by directory index.
    pub tables: BTreeMap<u16, Table>,
    /// `mem_map`, one count per frame from LOW_MEM.
    pub counts: Vec<u8>,
    pub high_memory: u32,
    /// By pid.
    pub tasks: Vec<TaskRow>,
    /// The fault log's tail when it was read, oldest first.
    pub faults: Vec<FaultRow>,
    /// Faults since boot (the log may have dropped some of them before they were read).
    pub faults_since_boot: u64,
    /// Where it was read: `live` (the RAM file, no stop) or `stub` (one stop).
    pub source: &'static str,
}

impl Snapshot {
    /// Whether directory entry `dir` names a table the snapshot holds.
    fn names_table(&self, dir: usize) -> bool {
        let e = Entry(self.directory[dir]);
        e.is_present() && e.frame().as_u32() < self.high_memory
    }

    /// The newest fault seq it knows.
    pub fn last_fault(&self) -> u64 {
        self.faults.last().map_or(0, |f| f.seq)
    }
}

/// A change of one value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Change<T> {
    pub old: T,
    pub new: T,
}

/// What one step (or a span of steps) changed.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Delta {
    /// Directory entries: index -> change.
    pub pdes: BTreeMap<u16, Change<u32>>,
    /// Page-table entries: (directory index, table index) -> change. A table that
    /// appears or goes counts as all zeros on the other side.
    pub ptes: BTreeMap<(u16, u16), Change<u32>>,
    /// `mem_map` counts: frame index from LOW_MEM -> change.
    pub counts: BTreeMap<u32, Change<u8>>,
    /// Tasks by pid: `None` where the task does not exist.
    pub tasks: BTreeMap<u32, Change<Option<TaskRow>>>,
    /// The faults logged in between, oldest first (only added: a span concatenates).
    pub faults: Vec<FaultRow>,
    /// `mem_map` grew or shrank (another boot): the counts past the shorter one.
    pub counts_len: Option<Change<u32>>,
}

impl Delta {
    pub fn is_empty(&self) -> bool {
        self.pdes.is_empty()
            && self.ptes.is_empty()
            && self.counts.is_empty()
            && self.tasks.is_empty()
            && self.faults.is_empty()
            && self.counts_len.is_none()
    }

    /// Bytes it holds, roughly (the history's memory bound).
    pub fn bytes(&self) -> usize {
        // A BTreeMap node costs about twice its payload.
        2 * (self.pdes.len() * 10 + self.ptes.len() * 12 + self.counts.len() * 6)
            + self.tasks.len() * 160
            + self.faults.len() * 48
            + 64
    }

    /// The differences from `a` to `b`.
    pub fn between(a: &Snapshot, b: &Snapshot) -> Delta {
        let mut d = Delta::default();
        for i in 0..ENTRIES_PER_TABLE {
            if a.directory[i] != b.directory[i] {
                d.pdes.insert(
                    i as u16,
                    Change {
                        old: a.directory[i],
                        new: b.directory[i],
                    },
                );
            }
        }
        let dirs: BTreeSet<u16> = a.tables.keys().chain(b.tables.keys()).copied().collect();
        let zeros = empty_table();
        for dir in dirs {
            let old = a.tables.get(&dir).unwrap_or(&zeros);
            let new = b.tables.get(&dir).unwrap_or(&zeros);
            if old[..] == new[..] {
                continue;
            }
            for (i, (&o, &n)) in old.iter().zip(new.iter()).enumerate() {
                if o != n {
                    d.ptes.insert((dir, i as u16), Change { old: o, new: n });
                }
            }
        }
        if a.counts != b.counts {
            for (i, (&o, &n)) in a.counts.iter().zip(b.counts.iter()).enumerate() {
                if o != n {
                    d.counts.insert(i as u32, Change { old: o, new: n });
                }
            }
            if a.counts.len() != b.counts.len() {
                d.counts_len = Some(Change {
                    old: a.counts.len() as u32,
                    new: b.counts.len() as u32,
                });
                let (longer, grew) = if b.counts.len() > a.counts.len() {
                    (&b.counts, true)
                } else {
                    (&a.counts, false)
                };
                for (i, &c) in longer
                    .iter()
                    .enumerate()
                    .skip(a.counts.len().min(b.counts.len()))
                {
                    let change = if grew {
                        Change { old: 0, new: c }
                    } else {
                        Change { old: c, new: 0 }
                    };
                    d.counts.insert(i as u32, change);
                }
            }
        }
        let pids: BTreeSet<u32> = a
            .tasks
            .iter()
            .chain(b.tasks.iter())
            .map(|t| t.pid)
            .collect();
        for pid in pids {
            let old = a.tasks.iter().find(|t| t.pid == pid).cloned();
            let new = b.tasks.iter().find(|t| t.pid == pid).cloned();
            if old != new {
                d.tasks.insert(pid, Change { old, new });
            }
        }
        let after = a.last_fault();
        d.faults = b.faults.iter().filter(|f| f.seq > after).cloned().collect();
        d
    }

    /// This delta followed by `later`: first old, last new; what ends where it began drops out.
    pub fn then(mut self, later: &Delta) -> Delta {
        fn merge<K: Ord + Copy, T: Clone + PartialEq>(
            into: &mut BTreeMap<K, Change<T>>,
            later: &BTreeMap<K, Change<T>>,
        ) {
            for (k, c) in later {
                match into.get_mut(k) {
                    Some(first) => first.new = c.new.clone(),
                    None => {
                        into.insert(*k, c.clone());
                    }
                }
            }
            into.retain(|_, c| c.old != c.new);
        }
        merge(&mut self.pdes, &later.pdes);
        merge(&mut self.ptes, &later.ptes);
        merge(&mut self.counts, &later.counts);
        merge(&mut self.tasks, &later.tasks);
        self.faults.extend(later.faults.iter().cloned());
        self.counts_len = match (self.counts_len, later.counts_len) {
            (Some(a), Some(b)) if a.old == b.new => None,
            (Some(a), Some(b)) => Some(Change {
                old: a.old,
                new: b.new,
            }),
            (a, b) => a.or(b),
        };
        self
    }

    /// Applies it to `s` (forward: each value becomes `new`; backward: `old`).
    fn apply(&self, s: &mut Snapshot, forward: bool) {
        let pick = |c: &Change<u32>| if forward { c.new } else { c.old };
        for (&i, c) in &self.pdes {
            s.directory[usize::from(i)] = pick(c);
        }
        for (&(dir, i), c) in &self.ptes {
            s.tables.entry(dir).or_insert_with(empty_table)[usize::from(i)] = pick(c);
        }
        // A table exists exactly where a present entry names one in RAM.
        for dir in 0..ENTRIES_PER_TABLE {
            let key = dir as u16;
            if s.names_table(dir) {
                s.tables.entry(key).or_insert_with(empty_table);
            } else {
                s.tables.remove(&key);
            }
        }
        if let Some(len) = self.counts_len {
            let want = if forward { len.new } else { len.old } as usize;
            s.counts.resize(want.max(s.counts.len()), 0);
        }
        for (&i, c) in &self.counts {
            let v = if forward { c.new } else { c.old };
            if let Some(slot) = s.counts.get_mut(i as usize) {
                *slot = v;
            }
        }
        if let Some(len) = self.counts_len {
            s.counts
                .truncate(if forward { len.new } else { len.old } as usize);
        }
        for (&pid, c) in &self.tasks {
            s.tasks.retain(|t| t.pid != pid);
            if let Some(t) = if forward { &c.new } else { &c.old } {
                s.tasks.push(*t);
            }
        }
        s.tasks.sort_by_key(|t| t.pid);
    }
}

/// What a step's changes mean, in the kernel's terms.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Event {
    /// A new task whose parent exists: `fork`. `shared`: the child's present entries
    /// after the step; `write_protected`: the parent's entries read-only on the same frame
    /// as the child's (copy_page_tables' copy-on-write marks), whichever step copied them.
    Fork {
        parent: u32,
        child: u32,
        slot: u16,
        shared: u32,
        write_protected: u32,
    },
    /// A new task without a known parent (task 1 at boot, or its parent already gone).
    TaskAppeared { pid: u32, slot: u16 },
    /// A task became a zombie or disappeared; `free_page_tables` freed `pages` present
    /// entries and `tables` page tables of its slot in this step.
    Exit {
        pid: u32,
        slot: u16,
        pages: u32,
        tables: u32,
    },
    /// The task's program changed (`execve`).
    Exec { pid: u32, program: String },
    /// A fault the kernel logged (its action names the handler): the `faults` record.
    Fault {
        #[schema(schema_with = fault_doc_schema)]
        fault: FaultRow,
    },
    /// Faults that happened in the step but had left the kernel's log before it was read
    /// (the stub's log keeps the last 64).
    FaultsUnseen { count: u64 },
    /// A present entry became a swap entry (0.12 `swap_out` → `try_to_swap_out`).
    SwapOut { dir: u16, index: u16, slot: u32 },
    /// A swap entry became present again (0.12 `swap_in`).
    SwapIn { dir: u16, index: u16 },
    /// A read-only entry got a new frame and became writable (`do_wp_page` → `un_wp_page`
    /// copied the shared page).
    CowCopy {
        dir: u16,
        index: u16,
        old_frame: u32,
        new_frame: u32,
    },
    /// A read-only entry became writable on the same frame (`un_wp_page`, count 1).
    MadeWritable { dir: u16, index: u16, frame: u32 },
    /// Entries whose accessed or dirty bit the MMU set (or swap_out's scan cleared), nothing else.
    Touched { pages: u32 },
    /// Entries that became present (`do_no_page`: zero pages, loads, shared pages) outside a fork.
    Mapped { pages: u32 },
    /// Entries that were cleared outside an exit.
    Unmapped { pages: u32 },
    /// Page tables appeared in a slot that has no task (yet): `fork` is under way, its
    /// copy_page_tables done and the child not yet in the task table.
    SlotWithoutTask { slot: u16, tables: u32, pages: u32 },
    /// Directory entries that appeared / went outside a fork or an exit (page tables).
    TablesChanged { added: u32, removed: u32 },
    /// `mem_map` counts that changed (frames allocated, freed, shared, unshared).
    Counts {
        changed: u32,
        free_before: u32,
        free_after: u32,
    },
}

fn fault_doc_schema() -> RefOr<Schema> {
    report_ref("FaultDoc")
}

fn slot_of_dir(dir: u16) -> u16 {
    dir / mm::addr::PDES_PER_TASK as u16
}

/// After a fork from slot `parent` to slot `child`: the child's present entries, and the
/// parent's entries that are read-only and map the same frame as the child's at the same
/// offset (copy_page_tables' copy-on-write marks).
fn fork_marks(s: &Snapshot, parent: u16, child: u16) -> (u32, u32) {
    let per = mm::addr::PDES_PER_TASK as u16;
    let (mut shared, mut marked) = (0, 0);
    for i in 0..per {
        let Some(ct) = s.tables.get(&(child * per + i)) else {
            continue;
        };
        let pt = s.tables.get(&(parent * per + i));
        for (k, &c) in ct.iter().enumerate() {
            let ce = Entry(c);
            if !ce.is_present() {
                continue;
            }
            shared += 1;
            if let Some(p) = pt.map(|t| Entry(t[k])) {
                if p.is_present() && !p.is_writable() && p.frame() == ce.frame() {
                    marked += 1;
                }
            }
        }
    }
    (shared, marked)
}

/// Reads the events out of one step: `before` and `after` are the moments around it.
pub fn events(before: &Snapshot, after: &Snapshot, d: &Delta) -> Vec<Event> {
    let mut out = Vec::new();
    let mut fork_slots = BTreeSet::new();
    let mut exit_slots = BTreeSet::new();
    for (&pid, c) in &d.tasks {
        match (&c.old, &c.new) {
            (None, Some(t)) => {
                let parent_known = t
                    .parent_pid
                    .is_some_and(|p| before.tasks.iter().any(|x| x.pid == p));
                if parent_known {
                    fork_slots.insert(slot_of(t));
                    let parent = t.parent_pid.unwrap_or(0);
                    let parent_slot = before.tasks.iter().find(|x| x.pid == parent).map(slot_of);
                    // What copy_page_tables left, counted in the state after the step: the
                    // tables may have been copied a step earlier than the task appeared.
                    let (shared, write_protected) = match parent_slot {
                        Some(ps) => fork_marks(after, ps, slot_of(t)),
                        None => (0, 0),
                    };
                    out.push(Event::Fork {
                        parent,
                        child: pid,
                        slot: slot_of(t),
                        shared,
                        write_protected,
                    });
                } else {
                    out.push(Event::TaskAppeared {
                        pid,
                        slot: slot_of(t),
                    });
                }
            }
            (Some(old), new) => {
                let zombie = |t: &TaskRow| t.state == TaskState::Zombie;
                let gone = new.as_ref().is_none_or(zombie) && !zombie(old);
                if gone {
                    let slot = slot_of(old);
                    exit_slots.insert(slot);
                    let pages = d
                        .ptes
                        .iter()
                        .filter(|((dir, _), ch)| {
                            slot_of_dir(*dir) == slot && ch.old != 0 && ch.new == 0
                        })
                        .count() as u32;
                    let tables = d
                        .pdes
                        .iter()
                        .filter(|(dir, ch)| {
                            slot_of_dir(**dir) == slot
                                && Entry(ch.old).is_present()
                                && !Entry(ch.new).is_present()
                        })
                        .count() as u32;
                    out.push(Event::Exit {
                        pid,
                        slot,
                        pages,
                        tables,
                    });
                }
                if let Some(n) = new {
                    if n.program != old.program {
                        out.push(Event::Exec {
                            pid,
                            program: n.program.as_str().to_string(),
                        });
                    }
                }
            }
            (None, None) => {}
        }
    }
    out.extend(d.faults.iter().map(|&fault| Event::Fault { fault }));
    let happened = after
        .faults_since_boot
        .saturating_sub(before.faults_since_boot);
    if happened > d.faults.len() as u64 {
        out.push(Event::FaultsUnseen {
            count: happened - d.faults.len() as u64,
        });
    }
    let mut mapped = 0;
    let mut unmapped = 0;
    let mut touched = 0;
    let ad = mm::EntryFlags::ACCESSED.bits() | mm::EntryFlags::DIRTY.bits();
    for (&(dir, index), c) in &d.ptes {
        let slot = slot_of_dir(dir);
        if fork_slots.contains(&slot) || exit_slots.contains(&slot) {
            continue;
        }
        let (o, n) = (Entry(c.old), Entry(c.new));
        if o.is_present() && n.is_present() && (c.old ^ c.new) & !ad == 0 {
            touched += 1;
        } else if o.is_present() && n.is_swap() {
            out.push(Event::SwapOut {
                dir,
                index,
                slot: n.swap_slot(),
            });
        } else if o.is_swap() && n.is_present() {
            out.push(Event::SwapIn { dir, index });
        } else if o.is_present() && n.is_present() && !o.is_writable() && n.is_writable() {
            if o.frame() == n.frame() {
                out.push(Event::MadeWritable {
                    dir,
                    index,
                    frame: n.frame().as_u32(),
                });
            } else {
                out.push(Event::CowCopy {
                    dir,
                    index,
                    old_frame: o.frame().as_u32(),
                    new_frame: n.frame().as_u32(),
                });
            }
        } else if c.old == 0 && n.is_present() {
            mapped += 1;
        } else if c.new == 0 && c.old != 0 {
            unmapped += 1;
        }
    }
    if mapped > 0 {
        out.push(Event::Mapped { pages: mapped });
    }
    if unmapped > 0 {
        out.push(Event::Unmapped { pages: unmapped });
    }
    if touched > 0 {
        out.push(Event::Touched { pages: touched });
    }
    let (mut added, mut removed) = (0, 0);
    let mut taskless: BTreeMap<u16, u32> = BTreeMap::new();
    for (&dir, c) in &d.pdes {
        let slot = slot_of_dir(dir);
        if fork_slots.contains(&slot) || exit_slots.contains(&slot) {
            continue;
        }
        match (Entry(c.old).is_present(), Entry(c.new).is_present()) {
            (false, true) if slot != 0 && !after.tasks.iter().any(|t| slot_of(t) == slot) => {
                *taskless.entry(slot).or_default() += 1;
            }
            (false, true) => added += 1,
            (true, false) => removed += 1,
            _ => {}
        }
    }
    for (slot, tables) in taskless {
        let per = mm::addr::PDES_PER_TASK as u16;
        let pages = (slot * per..(slot + 1) * per)
            .filter_map(|dir| after.tables.get(&dir))
            .map(|t| t.iter().filter(|&&e| Entry(e).is_present()).count() as u32)
            .sum();
        out.push(Event::SlotWithoutTask {
            slot,
            tables,
            pages,
        });
    }
    if added + removed > 0 {
        out.push(Event::TablesChanged { added, removed });
    }
    if !d.counts.is_empty() {
        let free_before = before.counts.iter().filter(|&&c| c == 0).count() as u32;
        let delta_free: i64 = d
            .counts
            .values()
            .map(|c| i64::from(c.new == 0) - i64::from(c.old == 0))
            .sum();
        out.push(Event::Counts {
            changed: d.counts.len() as u32,
            free_before,
            free_after: (i64::from(free_before) + delta_free).max(0) as u32,
        });
    }
    out
}

/// One step of the history.
#[derive(Clone, Debug, Serialize)]
pub struct Step {
    /// The moment it leads to.
    pub moment: u64,
    pub seq: u64,
    pub time_ms: u64,
    pub consistent: bool,
    pub faults_since_boot: u64,
    pub delta: Delta,
    pub events: Vec<Event>,
}

/// How much history to keep.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub steps: usize,
    pub bytes: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            steps: 4096,
            bytes: 32 << 20,
        }
    }
}

/// Why a moment cannot be given.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum HistoryError {
    #[error("moment {asked} is not kept (the history holds {oldest}..={newest})")]
    NotKept {
        asked: u64,
        oldest: u64,
        newest: u64,
    },
}

/// The history.
pub struct History {
    base: Snapshot,
    base_moment: u64,
    latest: Snapshot,
    steps: VecDeque<Step>,
    bytes: usize,
    limits: Limits,
    /// Steps folded into the base since the start.
    pub evicted: u64,
}

impl History {
    pub fn new(first: Snapshot, limits: Limits) -> History {
        History {
            latest: first.clone(),
            base: first,
            base_moment: 0,
            steps: VecDeque::new(),
            bytes: 0,
            limits,
            evicted: 0,
        }
    }

    /// The oldest moment kept.
    pub fn oldest(&self) -> u64 {
        self.base_moment
    }

    /// The newest moment.
    pub fn newest(&self) -> u64 {
        self.base_moment + self.steps.len() as u64
    }

    /// The newest moment's snapshot.
    pub fn latest(&self) -> &Snapshot {
        &self.latest
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn steps(&self) -> impl Iterator<Item = &Step> {
        self.steps.iter()
    }

    /// The step leading to `moment`.
    pub fn step(&self, moment: u64) -> Option<&Step> {
        let i = moment.checked_sub(self.base_moment + 1)?;
        self.steps.get(usize::try_from(i).ok()?)
    }

    /// Takes a new snapshot: a step when anything changed (returns its moment), else
    /// nothing (the latest snapshot only takes its seq and time).
    pub fn record(&mut self, snap: Snapshot) -> Option<u64> {
        let delta = Delta::between(&self.latest, &snap);
        if delta.is_empty() {
            self.latest.seq = snap.seq;
            self.latest.time_ms = snap.time_ms;
            self.latest.consistent = snap.consistent;
            self.latest.faults_since_boot = snap.faults_since_boot;
            self.latest.source = snap.source;
            return None;
        }
        let events = events(&self.latest, &snap, &delta);
        let moment = self.newest() + 1;
        self.bytes += delta.bytes();
        self.steps.push_back(Step {
            moment,
            seq: snap.seq,
            time_ms: snap.time_ms,
            consistent: snap.consistent,
            faults_since_boot: snap.faults_since_boot,
            delta,
            events,
        });
        self.latest = snap;
        self.evict();
        Some(moment)
    }

    /// Folds the oldest steps into the base until the history is within its limits
    /// (the newest step always stays).
    fn evict(&mut self) {
        while self.steps.len() > 1
            && (self.steps.len() > self.limits.steps || self.bytes > self.limits.bytes)
        {
            let Some(step) = self.steps.pop_front() else {
                break;
            };
            step.delta.apply(&mut self.base, true);
            self.base.seq = step.seq;
            self.base.time_ms = step.time_ms;
            self.base.consistent = step.consistent;
            self.base.faults_since_boot = step.faults_since_boot;
            self.base.faults.extend(step.delta.faults.iter().cloned());
            let keep = self.base.faults.len().saturating_sub(64);
            self.base.faults.drain(..keep);
            self.base_moment = step.moment;
            self.bytes -= step.delta.bytes();
            self.evicted += 1;
        }
    }

    fn check(&self, moment: u64) -> Result<(), HistoryError> {
        if moment < self.oldest() || moment > self.newest() {
            return Err(HistoryError::NotKept {
                asked: moment,
                oldest: self.oldest(),
                newest: self.newest(),
            });
        }
        Ok(())
    }

    /// The state at `moment`, rebuilt from the nearer end. Its `faults` are those the
    /// history holds up to that moment.
    pub fn at(&self, moment: u64) -> Result<Snapshot, HistoryError> {
        self.check(moment)?;
        let from_base = moment - self.oldest();
        let from_latest = self.newest() - moment;
        let mut s;
        if from_base <= from_latest {
            s = self.base.clone();
            for step in self.steps.iter().take(from_base as usize) {
                step.delta.apply(&mut s, true);
            }
        } else {
            s = self.latest.clone();
            for step in self.steps.iter().rev().take(from_latest as usize) {
                step.delta.apply(&mut s, false);
            }
        }
        (s.seq, s.time_ms, s.consistent, s.faults_since_boot) = self.meta(moment);
        s.faults = self.faults_until(moment);
        Ok(s)
    }

    /// The sequence count, time, consistency and fault count of `moment`.
    fn meta(&self, moment: u64) -> (u64, u64, bool, u64) {
        match self.step(moment) {
            Some(step) => (
                step.seq,
                step.time_ms,
                step.consistent,
                step.faults_since_boot,
            ),
            None => (
                self.base.seq,
                self.base.time_ms,
                self.base.consistent,
                self.base.faults_since_boot,
            ),
        }
    }

    /// The faults known up to `moment` (at most the last 64).
    fn faults_until(&self, moment: u64) -> Vec<FaultRow> {
        let mut f = self.base.faults.clone();
        for step in self.steps.iter().take_while(|s| s.moment <= moment) {
            f.extend(step.delta.faults.iter().cloned());
        }
        let keep = f.len().saturating_sub(64);
        f.drain(..keep);
        f
    }

    /// What changed from moment `a` to moment `b` (`a` < `b`: the steps after `a` up to
    /// `b`, composed; `a` > `b`: the same undone).
    pub fn diff(&self, a: u64, b: u64) -> Result<Delta, HistoryError> {
        self.check(a)?;
        self.check(b)?;
        let (lo, hi) = (a.min(b), a.max(b));
        let mut d = Delta::default();
        for step in self
            .steps
            .iter()
            .filter(|s| s.moment > lo && s.moment <= hi)
        {
            d = d.then(&step.delta);
        }
        if a > b {
            d = d.reversed();
        }
        Ok(d)
    }
}

impl Delta {
    /// The same changes undone (faults cannot be un-logged: they go).
    fn reversed(self) -> Delta {
        fn flip<K: Ord, T>(m: BTreeMap<K, Change<T>>) -> BTreeMap<K, Change<T>> {
            m.into_iter()
                .map(|(k, c)| {
                    (
                        k,
                        Change {
                            old: c.new,
                            new: c.old,
                        },
                    )
                })
                .collect()
        }
        Delta {
            pdes: flip(self.pdes),
            ptes: flip(self.ptes),
            counts: flip(self.counts),
            tasks: flip(self.tasks),
            faults: Vec::new(),
            counts_len: self.counts_len.map(|c| Change {
                old: c.new,
                new: c.old,
            }),
        }
    }
}

/// Task rows and fault records for tests (the monitor's documents, filled in).
#[cfg(test)]
pub mod fixtures {
    use super::*;
    use report::inputs::{FaultAction, FaultCounts, FaultRecord};
    use report::value::{Hex, Name};

    pub fn fault(seq: u64, pid: u32, linear: u32, action: FaultAction) -> FaultRow {
        FaultDoc::of(&FaultRecord {
            seq,
            pid,
            linear,
            error_code: 6,
            eip: 0x1000,
            by_kernel: false,
            action,
        })
    }

    pub fn task(pid: u32, parent: Option<u32>, slot: u32, program: &str) -> TaskRow {
        let (start, last) = report::slot_range(slot as usize);
        TaskDoc {
            pid,
            parent_pid: parent,
            state: TaskState::Runnable,
            current: false,
            slot,
            start: Hex(start),
            last: Hex(last),
            program: Name::new(program),
            end_code: Hex(0x3000),
            end_data: Hex(0x4000),
            brk: Hex(0x5000),
            pages: 0,
            shared_pages: 0,
            page_tables: 0,
            swapped: 0,
            killed_by: None,
            faults: FaultCounts::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::{fault, task};
    use super::*;
    use report::inputs::FaultAction;

    const RAM: u32 = 0x0200_0000;
    const USER_RW: u32 = 0x67; // P RW US A D
    const USER_RO: u32 = 0x25; // P RO US A
    const PDE: u32 = 0x27;

    /// A machine with task 1 in slot 1 mapping `pages` pages at the start of its slot.
    fn machine(pages: usize) -> Snapshot {
        let mut s = Snapshot {
            seq: 2,
            time_ms: 0,
            consistent: true,
            directory: empty_table(),
            tables: BTreeMap::new(),
            counts: vec![0; 7936],
            high_memory: RAM,
            tasks: vec![task(0, None, 0, "kernel"), task(1, Some(0), 1, "demo")],
            faults: vec![],
            faults_since_boot: 0,
            source: "stub",
        };
        s.directory[16] = 0x01ff_f000 | PDE;
        let mut t = empty_table();
        for (i, e) in t.iter_mut().enumerate().take(pages) {
            *e = frame(i) | USER_RW;
        }
        s.tables.insert(16, t);
        for i in 0..pages {
            s.counts[count_index(frame(i))] = 1;
        }
        s.counts[count_index(0x01ff_f000)] = 1;
        s
    }

    fn frame(i: usize) -> u32 {
        0x01f0_0000 + (i as u32) * 0x1000
    }

    fn count_index(frame: u32) -> usize {
        ((frame - mm::addr::LOW_MEM) / 0x1000) as usize
    }

    /// What fork does to `s`: task 2 in slot 2, every page shared read-only.
    fn forked(s: &Snapshot) -> Snapshot {
        let mut n = s.clone();
        n.seq += 2;
        n.time_ms += 10;
        n.tasks.push(task(2, Some(1), 2, "demo"));
        n.directory[32] = 0x01ff_e000 | PDE;
        n.counts[count_index(0x01ff_e000)] = 1;
        let parent = n.tables.get_mut(&16).unwrap();
        let mut child = empty_table();
        for i in 0..ENTRIES_PER_TABLE {
            if parent[i] & 1 != 0 {
                parent[i] = (parent[i] & !0xfff) | USER_RO;
                child[i] = parent[i];
                n.counts[count_index(parent[i] & !0xfff)] += 1;
            }
        }
        n.tables.insert(32, child);
        n
    }

    #[test]
    fn a_fork_is_one_step_with_its_cow_marks() {
        let s0 = machine(4);
        let mut h = History::new(s0.clone(), Limits::default());
        let s1 = forked(&s0);
        assert_eq!(h.record(s1.clone()), Some(1));
        let step = h.step(1).unwrap();
        // The parent's four entries became read-only on the same frames; the child's appeared.
        let parent_changes: Vec<_> = step
            .delta
            .ptes
            .iter()
            .filter(|((d, _), _)| *d == 16)
            .collect();
        assert_eq!(parent_changes.len(), 4);
        assert!(parent_changes
            .iter()
            .all(|(_, c)| c.old & 2 != 0 && c.new & 2 == 0 && c.old & !0xfff == c.new & !0xfff));
        assert_eq!(step.delta.ptes.keys().filter(|(d, _)| *d == 32).count(), 4);
        assert_eq!(step.delta.pdes.len(), 1);
        assert_eq!(
            step.delta.counts.len(),
            5,
            "4 pages to count 2, one new table"
        );
        assert_eq!(
            step.events[0],
            Event::Fork {
                parent: 1,
                child: 2,
                slot: 2,
                shared: 4,
                write_protected: 4
            }
        );
        assert!(step.events.iter().any(|e| matches!(e, Event::Counts { changed: 5, free_before, free_after } if free_after + 1 == *free_before)));
    }

    #[test]
    fn a_fork_seen_in_two_steps_still_counts_its_marks() {
        // A snapshot between copy_page_tables and the task's insertion (fork takes the
        // task table after the paging lock): the tables first, the task a step later.
        let s0 = machine(3);
        let done = forked(&s0);
        let mut half = done.clone();
        half.tasks.retain(|t| t.pid != 2);
        let mut h = History::new(s0, Limits::default());
        h.record(half);
        h.record(done);
        assert!(!h
            .step(1)
            .unwrap()
            .events
            .iter()
            .any(|e| matches!(e, Event::Fork { .. })));
        assert!(h.step(1).unwrap().events.contains(&Event::SlotWithoutTask {
            slot: 2,
            tables: 1,
            pages: 3
        }));
        assert_eq!(
            h.step(2).unwrap().events[0],
            Event::Fork {
                parent: 1,
                child: 2,
                slot: 2,
                shared: 3,
                write_protected: 3
            }
        );
    }

    #[test]
    fn nothing_changed_is_no_step() {
        let s0 = machine(3);
        let mut h = History::new(s0.clone(), Limits::default());
        let mut same = s0.clone();
        same.seq = 40;
        same.time_ms = 99;
        assert_eq!(h.record(same), None);
        assert_eq!(h.newest(), 0);
        assert_eq!(h.latest().seq, 40);
    }

    #[test]
    fn a_cow_split_and_a_made_writable_are_named() {
        let s0 = machine(2);
        let s1 = forked(&s0);
        let mut s2 = s1.clone();
        // The child writes page 0: a copy (new frame, writable); the parent's page 1 then has count...
        let child = s2.tables.get_mut(&32).unwrap();
        child[0] = 0x01e0_0000 | USER_RW;
        s2.counts[count_index(frame(0))] -= 1;
        s2.counts[count_index(0x01e0_0000)] = 1;
        s2.faults
            .push(fault(7, 2, 0x0800_0000, FaultAction::CowCopied));
        let mut s3 = s2.clone();
        // The parent writes page 0: count 1 now, only made writable.
        s3.tables.get_mut(&16).unwrap()[0] = frame(0) | USER_RW;
        let mut h = History::new(s0, Limits::default());
        h.record(s1);
        h.record(s2);
        h.record(s3);
        let e2 = &h.step(2).unwrap().events;
        assert!(e2.contains(&Event::CowCopy {
            dir: 32,
            index: 0,
            old_frame: frame(0),
            new_frame: 0x01e0_0000
        }));
        assert!(e2.iter().any(
            |e| matches!(e, Event::Fault { fault } if fault.action.0 == FaultAction::CowCopied)
        ));
        let e3 = &h.step(3).unwrap().events;
        assert_eq!(
            e3,
            &vec![Event::MadeWritable {
                dir: 16,
                index: 0,
                frame: frame(0)
            }]
        );
    }

    #[test]
    fn an_exit_frees_its_slot() {
        let s0 = machine(2);
        let s1 = forked(&s0);
        let mut s2 = s1.clone();
        s2.tasks.retain(|t| t.pid != 2);
        s2.directory[32] = 0;
        s2.tables.remove(&32);
        s2.counts[count_index(0x01ff_e000)] = 0;
        for i in 0..2 {
            s2.counts[count_index(frame(i))] -= 1;
        }
        let mut h = History::new(s0, Limits::default());
        h.record(s1);
        h.record(s2);
        let step = h.step(2).unwrap();
        assert_eq!(
            step.events[0],
            Event::Exit {
                pid: 2,
                slot: 2,
                pages: 2,
                tables: 1
            }
        );
        assert_eq!(step.delta.ptes.len(), 2);
    }

    #[test]
    fn a_swap_out_is_named() {
        let s0 = machine(3);
        let mut s1 = s0.clone();
        s1.tables.get_mut(&16).unwrap()[1] = 42 << 1;
        s1.counts[count_index(frame(1))] = 0;
        let mut h = History::new(s0, Limits::default());
        h.record(s1);
        assert!(h.step(1).unwrap().events.contains(&Event::SwapOut {
            dir: 16,
            index: 1,
            slot: 42
        }));
    }

    #[test]
    fn accessed_and_dirty_bits_alone_are_touches() {
        let s0 = machine(3);
        let mut s1 = s0.clone();
        let t = s1.tables.get_mut(&16).unwrap();
        t[0] &= !0x60; // the swap scan clears A and D
        t[1] |= 0x40;
        let mut h = History::new(s0, Limits::default());
        h.record(s1);
        assert_eq!(h.step(1).unwrap().events, vec![Event::Touched { pages: 1 }]);
    }

    /// A sequence of moments: fork, writes, an exit, more pages.
    fn story() -> Vec<Snapshot> {
        let mut v = vec![machine(3)];
        v.push(forked(&v[0]));
        let mut s = v[1].clone();
        s.tables.get_mut(&32).unwrap()[1] = 0x01d0_0000 | USER_RW;
        s.counts[count_index(frame(1))] -= 1;
        s.counts[count_index(0x01d0_0000)] = 1;
        v.push(s.clone());
        s.tables.get_mut(&16).unwrap()[5] = 0x01c0_0000 | USER_RW;
        s.counts[count_index(0x01c0_0000)] = 1;
        v.push(s.clone());
        s.tasks.retain(|t| t.pid != 2);
        s.directory[32] = 0;
        s.tables.remove(&32);
        v.push(s.clone());
        s.directory[17] = 0x01b0_0000 | PDE;
        let mut t = empty_table();
        t[9] = 0x01a0_0000 | USER_RW;
        s.tables.insert(17, t);
        v.push(s);
        for (i, m) in v.iter_mut().enumerate() {
            m.seq = 2 * i as u64 + 2;
            m.time_ms = 10 * i as u64;
        }
        v
    }

    #[test]
    fn every_moment_is_rebuilt_exactly() {
        let moments = story();
        let mut h = History::new(moments[0].clone(), Limits::default());
        for m in &moments[1..] {
            h.record(m.clone());
        }
        assert_eq!(h.newest(), moments.len() as u64 - 1);
        for (i, want) in moments.iter().enumerate() {
            let got = h.at(i as u64).unwrap();
            assert_eq!(got.directory, want.directory, "moment {i}");
            assert_eq!(got.tables, want.tables, "moment {i}");
            assert_eq!(got.counts, want.counts, "moment {i}");
            assert_eq!(got.tasks, want.tasks, "moment {i}");
            assert_eq!(
                (got.seq, got.time_ms),
                (want.seq, want.time_ms),
                "moment {i}"
            );
        }
        assert!(matches!(
            h.at(99),
            Err(HistoryError::NotKept { asked: 99, .. })
        ));
    }

    #[test]
    fn a_diff_of_two_moments_is_their_difference() {
        let moments = story();
        let mut h = History::new(moments[0].clone(), Limits::default());
        for m in &moments[1..] {
            h.record(m.clone());
        }
        for a in 0..moments.len() {
            for b in 0..moments.len() {
                let composed = h.diff(a as u64, b as u64).unwrap();
                let mut direct = Delta::between(&moments[a], &moments[b]);
                direct.faults.clear();
                let mut composed_no_faults = composed.clone();
                composed_no_faults.faults.clear();
                assert_eq!(composed_no_faults, direct, "{a} -> {b}");
            }
        }
        // The child's writes and exit cancel out from 1 to 4 in slot 2: nothing of it is left.
        let d = h.diff(1, 4).unwrap();
        assert!(d
            .ptes
            .keys()
            .all(|(dir, _)| *dir != 32 || d.pdes.contains_key(&32)));
    }

    #[test]
    fn eviction_keeps_the_bounds_and_the_newest_moments() {
        let moments = story();
        let mut h = History::new(
            moments[0].clone(),
            Limits {
                steps: 2,
                bytes: usize::MAX,
            },
        );
        for m in &moments[1..] {
            h.record(m.clone());
        }
        assert_eq!(h.steps().count(), 2);
        assert_eq!(h.oldest(), moments.len() as u64 - 3);
        assert_eq!(h.evicted, moments.len() as u64 - 3);
        for i in h.oldest()..=h.newest() {
            let got = h.at(i).unwrap();
            assert_eq!(got.tables, moments[i as usize].tables, "moment {i}");
            assert_eq!(got.counts, moments[i as usize].counts, "moment {i}");
        }
        assert!(h.at(0).is_err());
        // A byte bound: each step is bigger than the bound, so only the newest stays.
        let mut h = History::new(
            moments[0].clone(),
            Limits {
                steps: 100,
                bytes: 1,
            },
        );
        for m in &moments[1..] {
            h.record(m.clone());
        }
        assert_eq!(h.steps().count(), 1);
        assert_eq!(
            h.at(h.newest()).unwrap().tables,
            moments.last().unwrap().tables
        );
        assert_eq!(h.bytes(), h.steps().map(|s| s.delta.bytes()).sum::<usize>());
    }

    #[test]
    fn faults_arrive_once_and_are_kept_per_moment() {
        let mut s0 = machine(1);
        s0.faults = vec![fault(1, 1, 0x0400_0000, FaultAction::Loaded)];
        s0.faults_since_boot = 1;
        let mut s1 = s0.clone();
        s1.tables.get_mut(&16).unwrap()[1] = frame(1) | USER_RW;
        s1.counts[count_index(frame(1))] = 1;
        s1.faults
            .push(fault(2, 1, 0x0400_1000, FaultAction::ZeroPage));
        s1.faults_since_boot = 2;
        let mut h = History::new(s0, Limits::default());
        h.record(s1.clone());
        assert_eq!(h.step(1).unwrap().delta.faults.len(), 1);
        assert!(!h
            .step(1)
            .unwrap()
            .events
            .iter()
            .any(|e| matches!(e, Event::FaultsUnseen { .. })));
        assert_eq!(h.at(0).unwrap().faults.len(), 1);
        assert_eq!(h.at(1).unwrap().faults.len(), 2);
        // The same ring read again brings nothing new.
        let mut again = s1.clone();
        again.seq += 2;
        assert_eq!(h.record(again), None);
        // 70 faults of which the log kept the last 64: the step says 6 went unseen.
        let mut busy = s1.clone();
        busy.tables.get_mut(&16).unwrap()[2] = frame(2) | USER_RW;
        busy.faults = (7..=70)
            .map(|n| fault(n, 1, 0x0400_2000, FaultAction::ZeroPage))
            .collect();
        busy.faults_since_boot = 72;
        h.record(busy);
        assert_eq!(h.step(2).unwrap().delta.faults.len(), 64);
        assert!(h
            .step(2)
            .unwrap()
            .events
            .contains(&Event::FaultsUnseen { count: 6 }));
        assert_eq!(h.at(1).unwrap().faults_since_boot, 2);
        assert_eq!(h.at(2).unwrap().faults_since_boot, 72);
    }

    #[test]
    fn a_new_boot_with_another_memory_size_is_followed() {
        let s0 = machine(1);
        let mut s1 = s0.clone();
        s1.counts.truncate(3000);
        let mut h = History::new(s0.clone(), Limits::default());
        h.record(s1.clone());
        assert_eq!(h.at(0).unwrap().counts, s0.counts);
        assert_eq!(h.at(1).unwrap().counts, s1.counts);
    }

    mod random {
        use super::*;
        use proptest::prelude::*;

        /// One random change to a machine: map, unmap, write-protect, swap out, a task
        /// coming or going, a count moving, a table appearing or going.
        fn mutate(s: &mut Snapshot, op: u8, a: usize, b: usize) {
            let dirs: Vec<u16> = s.tables.keys().copied().collect();
            match op % 6 {
                0 | 1 => {
                    if let Some(&dir) = dirs.get(a % dirs.len().max(1)) {
                        let t = s.tables.get_mut(&dir).unwrap();
                        let i = b % ENTRIES_PER_TABLE;
                        t[i] = match op % 3 {
                            0 => frame(a % 200) | USER_RW,
                            1 => frame(b % 200) | USER_RO,
                            _ => ((a as u32) % 500) << 1,
                        };
                    }
                }
                2 => {
                    let i = b % s.counts.len();
                    s.counts[i] = (a % 4) as u8;
                }
                3 => {
                    let dir = (16 + a % 48) as u16;
                    if s.directory[usize::from(dir)] & 1 == 0 {
                        s.directory[usize::from(dir)] =
                            (0x0100_0000 + (a as u32 % 64) * 0x1000) | PDE;
                        let mut t = empty_table();
                        t[b % ENTRIES_PER_TABLE] = frame(b % 100) | USER_RW;
                        s.tables.insert(dir, t);
                    } else {
                        s.directory[usize::from(dir)] = 0;
                        s.tables.remove(&dir);
                    }
                }
                4 => {
                    let pid = 2 + (a % 6) as u32;
                    if s.tasks.iter().any(|t| t.pid == pid) {
                        s.tasks.retain(|t| t.pid != pid);
                    } else {
                        s.tasks.push(task(pid, Some(1), pid, "demo"));
                        s.tasks.sort_by_key(|t| t.pid);
                    }
                }
                _ => {
                    let seq = s.faults.last().map_or(0, |f| f.seq) + 1 + (a % 3) as u64;
                    s.faults
                        .push(fault(seq, 1, b as u32, FaultAction::ZeroPage));
                }
            }
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(64))]
            #[test]
            fn any_story_is_rebuilt_and_diffed_exactly(
                ops in proptest::collection::vec((any::<u8>(), any::<usize>(), any::<usize>(), 1usize..4), 1..40),
                max_steps in 1usize..50,
            ) {
                let mut moments = vec![machine(5)];
                let mut h = History::new(moments[0].clone(), Limits { steps: max_steps, bytes: usize::MAX });
                for (op, a, b, n) in ops {
                    let mut s = moments.last().unwrap().clone();
                    for k in 0..n {
                        mutate(&mut s, op.wrapping_add(k as u8), a.wrapping_add(k), b.wrapping_mul(k + 1));
                    }
                    s.seq += 2;
                    s.time_ms += 5;
                    if h.record(s.clone()).is_some() {
                        moments.push(s);
                    }
                }
                prop_assert_eq!(h.newest(), moments.len() as u64 - 1);
                prop_assert!(h.steps().count() <= max_steps);
                for m in h.oldest()..=h.newest() {
                    let got = h.at(m).unwrap();
                    let want = &moments[m as usize];
                    prop_assert_eq!(&got.directory, &want.directory);
                    prop_assert_eq!(&got.tables, &want.tables);
                    prop_assert_eq!(&got.counts, &want.counts);
                    prop_assert_eq!(&got.tasks, &want.tasks);
                }
                let (lo, hi) = (h.oldest(), h.newest());
                for (a, b) in [(lo, hi), (hi, lo), (lo, (lo + hi) / 2)] {
                    let mut d = h.diff(a, b).unwrap();
                    d.faults.clear();
                    let mut want = Delta::between(&moments[a as usize], &moments[b as usize]);
                    want.faults.clear();
                    prop_assert_eq!(d, want);
                }
                prop_assert_eq!(h.bytes(), h.steps().map(|s| s.delta.bytes()).sum::<usize>());
            }
        }
    }
}
