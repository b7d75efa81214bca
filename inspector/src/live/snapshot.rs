//! A snapshot: a copy of what the kernel publishes (kernel/introspect) and of the arrays
//! and page tables it names, taken from the RAM file between two equal, even readings of
//! the descriptor's sequence count (or while the kernel is stopped), and the read-only
//! view (`PagingView`, `TaskSource`, `FaultSource`) that kernel/report computes every
//! document from: the live sibling of `postmortem::QemuView`.
//!
//! A snapshot copies only what its documents read ([`Parts`]); a read of anything it did
//! not copy is remembered ([`Snapshot::missed`]) so that the caller takes a fuller one
//! instead of answering from an incomplete copy.

use std::collections::HashMap;
use std::sync::atomic::{fence, AtomicBool, Ordering};

use introspect::{LayoutValue, TaskValue};
use mm::addr::{Frame, LinearAddr, PhysAddr, NR_TASKS, PAGE_SIZE};
use mm::view::PagingView;
use report::{FailState, FaultRecord, FaultSource, LogBusy, TaskSlots, TaskSource, TaskSummary};
use serde::Serialize;
use utoipa::ToSchema;

use super::descriptor::Located;
use super::LiveError;

/// Which page tables a snapshot copies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tables {
    /// The directory only.
    None,
    /// The table of one directory entry.
    One(usize),
    /// The table that maps `offset` in the segment of the task `pid` (its slot found in
    /// the same copy of the task table; none when there is no such task).
    Task { pid: u32, offset: u32 },
    /// Every table the directory names (that a reader would accept: `page_table`).
    All,
}

/// What a snapshot copies besides the directory, `mem_map`, the bitmaps, the scalars and
/// the task table (always: they are small).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Parts {
    pub tables: Tables,
    /// The last `faults` records of the ring and its totals.
    pub faults: Option<usize>,
    /// The failure-injection state.
    pub inject: bool,
}

impl Parts {
    /// Everything (the recorder's and the never-torn test's snapshots).
    pub const ALL: Parts = Parts {
        tables: Tables::All,
        faults: Some(introspect::FAULT_LOG_LEN),
        inject: true,
    };
    pub const fn tables(tables: Tables) -> Parts {
        Parts {
            tables,
            faults: None,
            inject: false,
        }
    }
}

/// How a snapshot is consistent.
#[derive(Serialize, ToSchema, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Consistency {
    /// Copied between two equal, even readings of the sequence count: a state the kernel
    /// was in between two of its operations.
    Consistent,
    /// Copied while the gdb stub held the kernel stopped (the descriptor's `stopped`),
    /// as it is: in the middle of a change when `mid_change`.
    Stopped,
    /// Copied while QEMU had the VM paused, as it is.
    Paused,
    /// The kernel kept changing through every retry: copied during a brief QMP
    /// `stop`/`cont` at an even count.
    BriefStopQemu,
    /// The kernel kept changing through every retry: copied during a brief stop by the
    /// stub (where interrupts are on, so never inside a change).
    BriefStopStub,
}

/// When a snapshot was taken: the count it is consistent at and how.
#[derive(Serialize, ToSchema, Clone, Copy, Debug, PartialEq, Eq)]
pub struct Moment {
    /// The descriptor's sequence count the copy is consistent at.
    pub seq: u32,
    pub consistency: Consistency,
    /// The count was odd: the kernel is stopped in the middle of a change, and the copy
    /// shows it half done (as the stub's monitor does).
    pub mid_change: bool,
    /// Copies discarded because the count moved (or was odd) before this one.
    pub retries: u32,
}

/// 0.12's swap bitmap as copied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SwapCopy {
    pub nr_slots: u32,
    pub bitmap: Vec<u32>,
}

/// The ring's recent records and totals as copied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FaultsCopy {
    pub capacity: usize,
    pub totals: [u64; report::FaultAction::ALL.len()],
    /// Oldest first.
    pub records: Vec<FaultRecord>,
}

/// A copy of the published state (see the module documentation).
#[derive(Debug)]
pub struct Snapshot {
    pub moment: Moment,
    pub boot_id: u64,
    /// The stub's stop count when the copy was taken (a live query must not move it).
    pub stops: u32,
    pub layout: LayoutValue,
    dir: Vec<u32>,
    tables: HashMap<u32, Vec<u32>>,
    mem_map: Vec<u8>,
    free_bits: Vec<u32>,
    nr_free: u32,
    swap: Option<SwapCopy>,
    current: usize,
    tasks: Vec<Option<TaskValue>>,
    faults: Option<FaultsCopy>,
    fail: Option<FailState>,
    missed: AtomicBool,
}

/// The count and the stop flag around a copy.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Mark {
    seq: u32,
    stopped: bool,
    stops: u32,
}

fn mark(loc: &Located) -> Mark {
    let d = loc.descriptor();
    let (stopped, stops) = d.stopped();
    Mark {
        seq: d.seq_now(),
        stopped,
        stops,
    }
}

/// Why no snapshot came out of the retries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Changing {
    pub retries: u32,
    /// The count was odd at every try (a kernel frozen mid-change without the stub's
    /// flag: a paused VM, or a stop the inspector does not know of).
    pub always_odd: bool,
}

impl Snapshot {
    /// Copies `parts` between two equal, even readings of the count, or while the stub
    /// holds the kernel (then as it is, even mid-change), trying at most `tries` times.
    pub fn take(
        loc: &Located,
        parts: &Parts,
        tries: u32,
    ) -> Result<Result<Snapshot, Changing>, LiveError> {
        let mut always_odd = true;
        for retries in 0..tries {
            let before = mark(loc);
            let frozen = before.stopped;
            if before.seq & 1 != 0 && !frozen {
                std::hint::spin_loop();
                std::thread::yield_now();
                continue;
            }
            always_odd &= before.seq & 1 != 0;
            let copy = copy(loc, parts)?;
            // The copy's loads happen before the second reading (Descriptor::read_retry).
            fence(Ordering::Acquire);
            let after = mark(loc);
            let consistency = if frozen && after == before {
                Consistency::Stopped
            } else if !frozen && after.seq == before.seq {
                Consistency::Consistent
            } else {
                std::thread::yield_now();
                continue;
            };
            return Ok(Ok(copy.dated(before, consistency, retries)));
        }
        Ok(Err(Changing {
            retries: tries,
            always_odd,
        }))
    }

    /// Copies `parts` while the stub holds the kernel for the caller (an
    /// [`Op::Hold`](crate::link::Op::Hold)): as it is, at the stop the stub made.
    pub fn take_held(
        loc: &Located,
        parts: &Parts,
        retries: u32,
    ) -> Result<Option<Snapshot>, LiveError> {
        Ok(match Snapshot::take(loc, parts, 4)? {
            Ok(snap) if snap.moment.consistency == Consistency::Stopped => {
                let m = snap.moment;
                Some(Snapshot {
                    moment: Moment {
                        consistency: Consistency::BriefStopStub,
                        retries: retries + m.retries,
                        ..m
                    },
                    ..snap
                })
            }
            _ => None,
        })
    }

    /// Copies `parts` as they are: the caller knows the machine is not running (QEMU has
    /// it paused, from before this call to after it).
    pub fn take_frozen(
        loc: &Located,
        parts: &Parts,
        consistency: Consistency,
        retries: u32,
    ) -> Result<Snapshot, LiveError> {
        let before = mark(loc);
        Ok(copy(loc, parts)?.dated(before, consistency, retries))
    }

    /// The copy, dated: the count it was taken at and how it is consistent.
    fn dated(mut self, m: Mark, consistency: Consistency, retries: u32) -> Snapshot {
        if m.seq & 1 != 0 {
            // Stopped inside a change: the scalars the kernel publishes when it leaves the
            // change (kernel/kernel/src/publish.rs) still say what they said before it,
            // while mem_map itself is as the kernel has it now. The free counter is then
            // what mem_map's zeros say, which is what the kernel's own counter holds
            // between its updates of the two (get_free_page, free_page).
            let paging = self.nr_pages().min(self.mem_map.len());
            self.nr_free = self.mem_map[..paging].iter().filter(|&&c| c == 0).count() as u32;
        }
        self.moment = Moment {
            seq: m.seq,
            consistency,
            mid_change: m.seq & 1 != 0,
            retries,
        };
        self.stops = m.stops;
        self
    }

    /// Whether a document read something this snapshot did not copy (then its answer
    /// must not be used: take one with more parts).
    pub fn missed(&self) -> bool {
        self.missed.load(Ordering::Relaxed)
    }

    /// The page tables copied, by the directory index that names them (for tests and the
    /// recorder).
    pub fn table_frames(&self) -> impl Iterator<Item = u32> + '_ {
        self.tables.keys().copied()
    }

    /// `mem_map`'s counts (index 0: the frame at LOW_MEM).
    pub fn mem_map_counts(&self) -> &[u8] {
        &self.mem_map
    }

    /// The tasks as published, by slot.
    pub fn tasks(&self) -> &[Option<TaskValue>] {
        &self.tasks
    }

    /// What `checkmm` needs besides the paging state: the live slots (not zombies: their
    /// tables are gone) and the task pages the kernel holds, as `kcheck` gathers them.
    pub fn check_input_parts(&self) -> (u64, Vec<Frame>) {
        let mut live = 0u64;
        let mut pages = Vec::new();
        for (slot, t) in self.tasks.iter().enumerate() {
            let Some(t) = t else { continue };
            if slot != 0 && t.state != report::TaskState::Zombie {
                live |= 1 << slot;
            }
            if t.task_page != 0 {
                pages.push(Frame::containing(t.task_page));
            }
        }
        (live, pages)
    }

    /// The failure-injection state (with [`Parts::inject`]).
    pub fn fail_state(&self) -> Option<FailState> {
        if self.fail.is_none() {
            self.missed.store(true, Ordering::Relaxed);
        }
        self.fail
    }

    fn miss<T: Default>(&self) -> T {
        self.missed.store(true, Ordering::Relaxed);
        T::default()
    }
}

fn outside(what: &'static str, addr: u32, loc: &Located) -> LiveError {
    LiveError::OutsideFile {
        what,
        addr,
        len: loc.ram.len(),
    }
}

/// One copy of `parts`, not yet dated (no consistency check here).
fn copy(loc: &Located, parts: &Parts) -> Result<Snapshot, LiveError> {
    let d = loc.descriptor();
    let l = &loc.layout;
    let ram = &loc.ram;
    let mut dir = vec![0u32; 1024];
    ram.copy_words(l.pg_dir, &mut dir)
        .ok_or_else(|| outside("the page directory", l.pg_dir, loc))?;
    let mut c = Snapshot {
        moment: Moment {
            seq: 0,
            consistency: Consistency::Consistent,
            mid_change: false,
            retries: 0,
        },
        boot_id: loc.header.boot_id,
        stops: 0,
        layout: *l,
        dir,
        tables: HashMap::new(),
        mem_map: ram
            .copy_bytes(l.mem_map, l.nr_pages as usize)
            .ok_or_else(|| outside("mem_map", l.mem_map, loc))?,
        free_bits: vec![0u32; l.free_bits_words as usize],
        nr_free: d.paging.nr_free.load(Ordering::Relaxed),
        swap: None,
        current: d.tasks.current.load(Ordering::Relaxed) as usize,
        tasks: d.tasks.entries.iter().map(|e| e.load()).collect(),
        faults: None,
        fail: None,
        missed: AtomicBool::new(false),
    };
    ram.copy_words(l.free_bits, &mut c.free_bits)
        .ok_or_else(|| outside("the free-frame bitmap", l.free_bits, loc))?;
    let s = &d.paging.swap;
    if s.present.load(Ordering::Relaxed) != 0 {
        let addr = s.bitmap.load(Ordering::Relaxed);
        let words = s.bitmap_words.load(Ordering::Relaxed) as usize;
        let nr_slots = s.nr_slots.load(Ordering::Relaxed);
        let mut bitmap = vec![0u32; words.min(1 << 16)];
        // A swap map that does not fit (a torn or damaged one) reads as no swap; the
        // count then discards a torn copy.
        if u64::from(nr_slots) <= 32 * words as u64 && ram.copy_words(addr, &mut bitmap).is_some() {
            c.swap = Some(SwapCopy { nr_slots, bitmap });
        }
    }
    // The tables, chosen by the check every reader applies (`page_table`), here over the
    // directory alone.
    let wanted: Vec<usize> = match parts.tables {
        Tables::None => vec![],
        Tables::One(i) => vec![i],
        Tables::Task { pid, offset } => c
            .slot_of_pid(pid)
            .map(|slot| LinearAddr::new(mm::addr::slot_base(slot).as_u32().wrapping_add(offset)))
            .map(|linear| vec![linear.dir_index()])
            .unwrap_or_default(),
        Tables::All => (0..1024).collect(),
    };
    for i in wanted {
        if let Some(frame) = c.page_table(i) {
            let frame = frame.as_u32();
            if frame != l.pg_dir && !c.tables.contains_key(&frame) {
                let mut words = vec![0u32; (PAGE_SIZE / 4) as usize];
                ram.copy_words(frame, &mut words)
                    .ok_or_else(|| outside("a page table", frame, loc))?;
                c.tables.insert(frame, words);
            }
        }
    }
    if let Some(n) = parts.faults {
        let ring = &d.faults;
        let mut records = Vec::with_capacity(n);
        ring.recent(n, |r| records.push(*r));
        c.faults = Some(FaultsCopy {
            capacity: n,
            totals: ring.totals(),
            records,
        });
    }
    if parts.inject {
        c.fail = Some(d.paging.inject.load());
    }
    Ok(c)
}

impl PagingView for Snapshot {
    fn read_phys_u32(&self, addr: PhysAddr) -> u32 {
        let a = addr.as_u32();
        let frame = a & !(PAGE_SIZE - 1);
        let index = ((a & (PAGE_SIZE - 1)) / 4) as usize;
        if frame == self.layout.pg_dir {
            return self.dir[index];
        }
        match self.tables.get(&frame) {
            Some(words) => words[index],
            None => self.miss(),
        }
    }
    crate::layout_view_methods!(layout);
    fn map_count(&self, index: usize) -> Option<u8> {
        self.mem_map.get(index).copied()
    }
    fn nr_free(&self) -> u32 {
        self.nr_free
    }
    fn free_bit(&self, index: usize) -> bool {
        self.free_bits
            .get(index / 32)
            .is_some_and(|w| w & (1 << (index % 32)) != 0)
    }
    fn swap_slots(&self) -> Option<u32> {
        self.swap.as_ref().map(|s| s.nr_slots)
    }
    fn swap_bit(&self, slot: u32) -> bool {
        self.swap.as_ref().is_some_and(|s| {
            s.bitmap
                .get((slot / 32) as usize)
                .is_some_and(|w| w & (1 << (slot % 32)) != 0)
        })
    }
}

impl TaskSlots for Snapshot {
    fn pid_in_slot(&self, slot: usize) -> Option<u32> {
        self.tasks.get(slot)?.as_ref().map(|t| t.pid)
    }
}

impl TaskSource for Snapshot {
    fn current_slot(&self) -> usize {
        self.current.min(NR_TASKS - 1)
    }
    fn task(&self, slot: usize) -> Option<TaskSummary> {
        let t = self.tasks.get(slot)?.as_ref()?;
        // Task 0 has no parent (as the kernel's monitor says).
        let parent_pid = (slot != 0)
            .then(|| self.pid_in_slot(t.parent as usize))
            .flatten();
        Some(TaskSummary {
            pid: t.pid,
            parent_pid,
            state: t.state,
            program: report::value::Name::new(t.name()),
            end_code: t.end_code,
            end_data: t.end_data,
            brk: t.brk,
            killed_by: t.killed,
            faults: t.faults.into(),
        })
    }
}

impl FaultSource for Snapshot {
    fn capacity(&self) -> usize {
        self.faults
            .as_ref()
            .map_or_else(|| self.miss(), |f| f.capacity)
    }
    fn totals(&self) -> Result<[u64; report::FaultAction::ALL.len()], LogBusy> {
        Ok(self
            .faults
            .as_ref()
            .map_or_else(|| self.miss(), |f| f.totals))
    }
    fn each(&self, f: &mut dyn FnMut(&FaultRecord)) -> Result<(), LogBusy> {
        match &self.faults {
            Some(copy) => copy.records.iter().for_each(f),
            None => self.missed.store(true, Ordering::Relaxed),
        }
        Ok(())
    }
}
