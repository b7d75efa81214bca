//! The page-table documents: `dumppgd` (the directory), `dumppt` (one table) and `walk`
//! (one address), computed over any [`PagingView`] and rendered as text from the same
//! values the JSON carries.

use core::fmt::{self, Display};
use core::ops::ControlFlow;

use mm::addr::{
    slot_base, Frame, LinearAddr, ENTRIES_PER_TABLE, LOW_MEM, PAGE_SIZE, PDES_PER_TASK, PDE_SPAN,
    TASK_SIZE,
};
use mm::entry::{Entry, EntryFlags};
use mm::view::PagingView;
use mm::walk::WalkStop;
use serde::Serialize;

#[cfg(feature = "std")]
use serde::Deserialize;

use crate::command::{MonitorError, PgdFilter};
use crate::inputs::TaskSlots;
use crate::text::{count, Pad};
use crate::value::{command_tag, Flags, Hex, Hex64, Items, SchemaVersion, Source};

/// Who owns a slot, for the text forms.
pub(crate) struct Owner(pub usize, pub Option<u32>);

impl Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Owner(0, _) => f.write_str("kernel"),
            Owner(slot, Some(pid)) => write!(f, "pid {pid} (slot {slot})"),
            Owner(slot, None) => write!(f, "slot {slot}, no task"),
        }
    }
}

/// Whether the page table a present entry names lies in RAM, so that it may be read (the
/// kernel's physical access stops the machine on anything else, and a corrupted or
/// hand-edited entry can name any frame).
fn table_readable<V: PagingView + ?Sized>(view: &V, table: Frame) -> bool {
    table.as_u32() < view.high_memory()
}

/// Present entries of the page table a present directory entry names; `None` when the
/// table lies outside RAM and was not read.
fn present_ptes<V: PagingView + ?Sized>(view: &V, pde: Entry) -> Option<u32> {
    if !table_readable(view, pde.frame()) {
        return None;
    }
    Some(
        (0..ENTRIES_PER_TABLE)
            .filter(|&i| view.read_entry(pde.frame(), i).is_present())
            .count() as u32,
    )
}

/// The last byte of the 4 MiB directory entry `index` covers.
fn pde_last(index: usize) -> u32 {
    LinearAddr::from_indices(index, 0).as_u32() + (PDE_SPAN - 1)
}

/// An entry's raw value, flags and present bit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "std", derive(Deserialize))]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct EntryDoc {
    pub raw: Hex,
    pub flags: Flags,
    pub present: bool,
}

impl EntryDoc {
    pub fn of(entry: Entry) -> EntryDoc {
        EntryDoc {
            raw: Hex(entry.raw()),
            flags: Flags(entry),
            present: entry.is_present(),
        }
    }
}

// ---------------------------------------------------------------------------------------
// dumppgd
// ---------------------------------------------------------------------------------------

command_tag!(
    /// `"dumppgd"`.
    DumpPgdCommand = "dumppgd"
);

/// A linear range `[start, end)` in a filter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "std", derive(Deserialize))]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct RangeDoc {
    pub start: Hex,
    /// Exclusive; may be 2^32.
    pub end: Hex64,
}

/// The filters `dumppgd` was given.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "std", derive(Deserialize))]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct PgdFilterDoc {
    /// `--task` pid.
    pub task: Option<u32>,
    /// That pid's slot.
    pub slot: Option<u32>,
    pub range: Option<RangeDoc>,
    /// `true` for `--user`, `false` for `--kernel`.
    pub user: Option<bool>,
    /// `true` for `--rw`, `false` for `--ro`.
    pub writable: Option<bool>,
    /// `false` with `--all`.
    pub merged: bool,
}

/// One selected present directory entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "std", derive(Deserialize))]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct PgdEntryDoc {
    /// Directory index 0..1023.
    pub index: u32,
    /// First and last linear address it covers.
    pub start: Hex,
    pub last: Hex,
    /// The page table's frame.
    pub table: Hex,
    pub raw: Hex,
    pub flags: Flags,
    pub present: bool,
    pub user: bool,
    pub writable: bool,
    pub accessed: bool,
    /// The table lies in RAM (else it was not read).
    pub table_readable: bool,
    /// Present entries of its table (null: not read).
    pub present_ptes: Option<u32>,
    /// The task slot (index / 16).
    pub slot: u32,
    /// The pid in that slot (null: no task, a leftover).
    pub pid: Option<u32>,
}

/// One line of the text form: adjacent alike entries merged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "std", derive(Deserialize))]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct PgdRunDoc {
    pub first_index: u32,
    pub last_index: u32,
    pub start: Hex,
    pub last: Hex,
    /// The flag bits every entry of the run has.
    pub flags: Flags,
    /// Present PTEs over the run (null: a table was not read).
    pub present_ptes: Option<u32>,
    /// The first and last entry's page tables.
    pub first_table: Hex,
    pub last_table: Hex,
    /// Each table lies in the frame after the previous one's.
    pub contiguous: bool,
    /// The entry itself, for a run of one (null when merged).
    pub raw: Option<Hex>,
    /// The slot and its pid.
    pub slot: u32,
    pub pid: Option<u32>,
}

/// `dumppgd --json`: the present page-directory entries that pass the filters.
#[derive(Debug, Serialize)]
#[cfg_attr(feature = "std", derive(Deserialize, Clone, PartialEq))]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct DumpPgdDoc<'a> {
    pub command: DumpPgdCommand,
    pub schema: SchemaVersion,
    /// The page directory's frame (CR3).
    pub pg_dir: Hex,
    /// Present entries in the whole directory (before filtering).
    pub present: u32,
    /// Entries not present but not zero (corrupt).
    pub not_present_nonzero: u32,
    pub filter: PgdFilterDoc,
    /// Every selected present entry, never merged.
    pub entries: Items<'a, PgdEntryDoc>,
    /// Length of `entries`.
    pub shown: u32,
    /// The lines of the text form.
    pub runs: Items<'a, PgdRunDoc>,
}

/// The flag bits that decide whether adjacent directory entries merge: accessed and
/// dirty change as the machine runs and say nothing about the mapping.
const MERGE_IGNORED: EntryFlags = EntryFlags::ACCESSED.union(EntryFlags::DIRTY);

/// A `dumppgd` over a view: the entries and runs are generated when the document is
/// written.
pub struct DumpPgd<'v, V: ?Sized> {
    view: &'v V,
    tasks: &'v dyn TaskSlots,
    filter: PgdFilter,
    slot: Option<usize>,
}

impl<'v, V: PagingView + ?Sized> DumpPgd<'v, V> {
    /// `dumppgd` with `filter`; an error when `--task` names no task.
    pub fn new(
        view: &'v V,
        tasks: &'v dyn TaskSlots,
        filter: &PgdFilter,
    ) -> Result<DumpPgd<'v, V>, MonitorError> {
        let slot = match filter.task {
            None => None,
            Some(pid) => Some(
                tasks
                    .slot_of_pid(pid)
                    .ok_or(MonitorError::NoSuchTask { pid })?,
            ),
        };
        Ok(DumpPgd {
            view,
            tasks,
            filter: *filter,
            slot,
        })
    }

    fn selected(&self, index: usize, pde: Entry) -> bool {
        pde.is_present()
            && self.slot.is_none_or(|s| index / PDES_PER_TASK == s)
            && self
                .filter
                .range
                .is_none_or(|r| r.meets(LinearAddr::from_indices(index, 0).as_u32(), PDE_SPAN))
            && self.filter.user.is_none_or(|u| pde.is_user() == u)
            && self.filter.writable.is_none_or(|w| pde.is_writable() == w)
    }

    /// The document.
    pub fn document(&self) -> DumpPgdDoc<'_> {
        let view = self.view;
        let present = (0..ENTRIES_PER_TABLE)
            .filter(|&i| view.pde(i).is_present())
            .count() as u32;
        let not_present_nonzero = (0..ENTRIES_PER_TABLE)
            .filter(|&i| view.pde(i).is_swap())
            .count() as u32;
        let shown = (0..ENTRIES_PER_TABLE)
            .filter(|&i| self.selected(i, view.pde(i)))
            .count() as u32;
        DumpPgdDoc {
            command: DumpPgdCommand,
            schema: SchemaVersion,
            pg_dir: Hex(view.pg_dir().as_u32()),
            present,
            not_present_nonzero,
            filter: PgdFilterDoc {
                task: self.filter.task,
                slot: self.slot.map(|s| s as u32),
                range: self.filter.range.map(|r| RangeDoc {
                    start: Hex(r.start),
                    end: Hex64(r.end),
                }),
                user: self.filter.user,
                writable: self.filter.writable,
                merged: !self.filter.all,
            },
            entries: Items::Lazy(self),
            shown,
            runs: Items::Lazy(self),
        }
    }
}

impl<V: PagingView + ?Sized> Source<PgdEntryDoc> for DumpPgd<'_, V> {
    fn each(&self, f: &mut dyn FnMut(&PgdEntryDoc) -> ControlFlow<()>) {
        for index in 0..ENTRIES_PER_TABLE {
            let pde = self.view.pde(index);
            if !self.selected(index, pde) {
                continue;
            }
            let slot = index / PDES_PER_TASK;
            let entry = PgdEntryDoc {
                index: index as u32,
                start: Hex(LinearAddr::from_indices(index, 0).as_u32()),
                last: Hex(pde_last(index)),
                table: Hex(pde.frame().as_u32()),
                raw: Hex(pde.raw()),
                flags: Flags(pde),
                present: true,
                user: pde.is_user(),
                writable: pde.is_writable(),
                accessed: pde.flags().contains(EntryFlags::ACCESSED),
                table_readable: table_readable(self.view, pde.frame()),
                present_ptes: present_ptes(self.view, pde),
                slot: slot as u32,
                pid: self.tasks.pid_in_slot(slot),
            };
            if f(&entry).is_break() {
                return;
            }
        }
    }
}

impl<V: PagingView + ?Sized> Source<PgdRunDoc> for DumpPgd<'_, V> {
    fn each(&self, f: &mut dyn FnMut(&PgdRunDoc) -> ControlFlow<()>) {
        let merge = !self.filter.all;
        let mut run: Option<(PgdRunDoc, Entry)> = None;
        for index in 0..ENTRIES_PER_TABLE {
            let pde = self.view.pde(index);
            if !self.selected(index, pde) {
                continue;
            }
            let ptes = present_ptes(self.view, pde);
            if let Some((r, first)) = run.as_mut() {
                let last = r.last_index as usize;
                let alike = merge
                    && last + 1 == index
                    && last / PDES_PER_TASK == index / PDES_PER_TASK
                    && first.without_flags(MERGE_IGNORED).flags()
                        == pde.without_flags(MERGE_IGNORED).flags()
                    && r.present_ptes.is_some()
                    && ptes.is_some();
                if alike {
                    r.last_index = index as u32;
                    r.last = Hex(pde_last(index));
                    r.flags = Flags(Entry((r.flags.0.raw() & pde.flags().bits()) | 1));
                    r.contiguous &= pde.frame().as_u32() == r.last_table.0.wrapping_add(PAGE_SIZE);
                    r.last_table = Hex(pde.frame().as_u32());
                    r.present_ptes = r.present_ptes.zip(ptes).map(|(a, b)| a + b);
                    r.raw = None;
                    continue;
                }
                if f(r).is_break() {
                    return;
                }
            }
            let slot = index / PDES_PER_TASK;
            run = Some((
                PgdRunDoc {
                    first_index: index as u32,
                    last_index: index as u32,
                    start: Hex(LinearAddr::from_indices(index, 0).as_u32()),
                    last: Hex(pde_last(index)),
                    // Only the flag bits (and P): the frame is not part of the flags.
                    flags: Flags(Entry(pde.flags().bits() | 1)),
                    present_ptes: ptes,
                    first_table: Hex(pde.frame().as_u32()),
                    last_table: Hex(pde.frame().as_u32()),
                    contiguous: true,
                    raw: Some(Hex(pde.raw())),
                    slot: slot as u32,
                    pid: self.tasks.pid_in_slot(slot),
                },
                pde,
            ));
        }
        if let Some((r, _)) = run {
            let _ = f(&r);
        }
    }
}

impl Display for DumpPgdDoc<'_> {
    fn fmt(&self, out: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            out,
            "page directory at {}: {}",
            self.pg_dir,
            count(self.shown, "present entry", "present entries")
        )?;
        let filtered = self.filter.task.is_some()
            || self.filter.range.is_some()
            || self.filter.user.is_some()
            || self.filter.writable.is_some();
        if let (Some(pid), Some(slot)) = (self.filter.task, self.filter.slot) {
            if slot == 0 {
                write!(out, " for the kernel (slot 0)")?;
            } else {
                write!(out, " for pid {pid} (slot {slot})")?;
            }
        } else if filtered {
            write!(out, " match")?;
        }
        if filtered {
            write!(out, ", of {} in the whole directory", self.present)?;
        }
        if self.not_present_nonzero > 0 {
            write!(
                out,
                "; {} not present but not zero (corrupt?)",
                self.not_present_nonzero
            )?;
        }
        writeln!(out)?;
        writeln!(
            out,
            "{:<9}  {:<21}  {:<22}  {:<10}  {:>5}  {:<22}  flags",
            "index", "linear range", "page table", "raw", "PTEs", "owner"
        )?;
        let mut lines = 0u32;
        self.runs.try_each(&mut |r| {
            lines += 1;
            let owner = Owner(r.slot as usize, r.pid);
            if let Some(raw) = r.raw {
                write!(
                    out,
                    "{:<9}  {}-{}  {}  {}  ",
                    r.first_index,
                    r.start,
                    r.last,
                    Pad(&r.first_table, 22),
                    raw
                )?;
            } else {
                let n = r.last_index - r.first_index + 1;
                let indices = Indices(r.first_index, r.last_index);
                let tables = Tables {
                    first: r.first_table,
                    last: r.last_table,
                    count: n,
                    contiguous: r.contiguous,
                };
                let merged = Merged(n);
                write!(
                    out,
                    "{}  {}-{}  {}  {}  ",
                    Pad(&indices, 9),
                    r.start,
                    r.last,
                    Pad(&tables, 22),
                    Pad(&merged, 10),
                )?;
            }
            match r.present_ptes {
                Some(n) => write!(out, "{n:>5}")?,
                None => write!(out, "{:>5}", "?")?,
            }
            write!(out, "  {}  {}", Pad(&owner, 22), r.flags)?;
            if r.present_ptes.is_none() {
                write!(out, "  (page table beyond HIGH_MEMORY, not read)")?;
            }
            writeln!(out)
        })?;
        if lines == 0 {
            writeln!(out, "(no present entry matches)")?;
        }
        Ok(())
    }
}

struct Indices(u32, u32);
impl Display for Indices {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.0, self.1)
    }
}
/// The page tables of a merged run: a range when they lie one after the other (the
/// identity map's do), else the first and how many more.
struct Tables {
    first: Hex,
    last: Hex,
    count: u32,
    contiguous: bool,
}
impl Display for Tables {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.contiguous {
            write!(f, "{}..{}", self.first, self.last)
        } else {
            write!(f, "{} +{} more", self.first, self.count - 1)
        }
    }
}
struct Merged(u32);
impl Display for Merged {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "({} PDEs)", self.0)
    }
}

// ---------------------------------------------------------------------------------------
// dumppt
// ---------------------------------------------------------------------------------------

command_tag!(
    /// `"dumppt"`.
    DumpPtCommand = "dumppt"
);

/// One non-zero entry of a page table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "std", derive(Deserialize))]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct PtEntryDoc {
    /// Table index 0..1023.
    pub index: u32,
    /// The page's linear address.
    pub linear: Hex,
    pub raw: Hex,
    pub flags: Flags,
    pub present: bool,
    /// The swap slot of a swap entry.
    pub swap_slot: Option<u32>,
    /// The frame of a present entry.
    pub frame: Option<Hex>,
    /// Its `mem_map` count (null: not covered or not known, or not present).
    pub count: Option<u8>,
}

/// `dumppt INDEX --json`: the page table directory entry INDEX names.
#[derive(Debug, Serialize)]
#[cfg_attr(feature = "std", derive(Deserialize, Clone, PartialEq))]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct DumpPtDoc<'a> {
    pub command: DumpPtCommand,
    pub schema: SchemaVersion,
    /// The directory index.
    pub index: u32,
    /// The linear range it covers.
    pub start: Hex,
    pub last: Hex,
    pub slot: u32,
    /// The pid in that slot.
    pub pid: Option<u32>,
    pub pde: EntryDoc,
    /// The page table's frame (null: entry not present).
    pub table: Option<Hex>,
    /// The table exists and lies in RAM (else `entries` is empty).
    pub table_readable: bool,
    /// The non-zero entries, in index order.
    pub entries: Items<'a, PtEntryDoc>,
    /// Present entries and swap entries.
    pub present: u32,
    pub swap: u32,
    /// HIGH_MEMORY, the bound a table must lie under to be read.
    pub high_memory: Hex,
}

/// A `dumppt` over a view.
pub struct DumpPt<'v, V: ?Sized> {
    view: &'v V,
    tasks: &'v dyn TaskSlots,
    index: usize,
}

impl<'v, V: PagingView + ?Sized> DumpPt<'v, V> {
    /// The table directory entry `index` names (`index` is cut to 0..1023).
    pub fn new(view: &'v V, tasks: &'v dyn TaskSlots, index: usize) -> DumpPt<'v, V> {
        DumpPt {
            view,
            tasks,
            index: index.min(ENTRIES_PER_TABLE - 1),
        }
    }

    fn table(&self) -> Option<Frame> {
        let pde = self.view.pde(self.index);
        (pde.is_present() && table_readable(self.view, pde.frame())).then(|| pde.frame())
    }

    pub fn document(&self) -> DumpPtDoc<'_> {
        let pde = self.view.pde(self.index);
        let slot = self.index / PDES_PER_TASK;
        let (mut present, mut swap) = (0, 0);
        if let Some(table) = self.table() {
            for i in 0..ENTRIES_PER_TABLE {
                let pte = self.view.read_entry(table, i);
                present += u32::from(pte.is_present());
                swap += u32::from(pte.is_swap());
            }
        }
        DumpPtDoc {
            command: DumpPtCommand,
            schema: SchemaVersion,
            index: self.index as u32,
            start: Hex(LinearAddr::from_indices(self.index, 0).as_u32()),
            last: Hex(pde_last(self.index)),
            slot: slot as u32,
            pid: self.tasks.pid_in_slot(slot),
            pde: EntryDoc::of(pde),
            table: pde.is_present().then(|| Hex(pde.frame().as_u32())),
            table_readable: self.table().is_some(),
            entries: Items::Lazy(self),
            present,
            swap,
            high_memory: Hex(self.view.high_memory()),
        }
    }
}

impl<V: PagingView + ?Sized> Source<PtEntryDoc> for DumpPt<'_, V> {
    fn each(&self, f: &mut dyn FnMut(&PtEntryDoc) -> ControlFlow<()>) {
        let Some(table) = self.table() else {
            return;
        };
        for i in 0..ENTRIES_PER_TABLE {
            let pte = self.view.read_entry(table, i);
            if pte.raw() == 0 {
                continue;
            }
            let frame = pte.is_present().then(|| pte.frame());
            let entry = PtEntryDoc {
                index: i as u32,
                linear: Hex(LinearAddr::from_indices(self.index, i).as_u32()),
                raw: Hex(pte.raw()),
                flags: Flags(pte),
                present: pte.is_present(),
                swap_slot: pte.is_swap().then(|| pte.swap_slot()),
                frame: frame.map(|f| Hex(f.as_u32())),
                count: frame.and_then(|f| self.view.count(f)),
            };
            if f(&entry).is_break() {
                return;
            }
        }
    }
}

impl Display for DumpPtDoc<'_> {
    fn fmt(&self, out: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            out,
            "PDE {} (linear {}-{}, {}): raw {} {}",
            self.index,
            self.start,
            self.last,
            Owner(self.slot as usize, self.pid),
            self.pde.raw,
            self.pde.flags
        )?;
        let Some(table) = self.table else {
            return writeln!(out, ": no page table");
        };
        if !self.table_readable {
            return writeln!(
                out,
                ": page table {table} lies at/above HIGH_MEMORY {}, not read",
                self.high_memory
            );
        }
        writeln!(out, ", page table {table}")?;
        writeln!(
            out,
            "{:>5}  {:<10}  {:<10}  {:<10}  {:>5}  flags",
            "index", "linear", "raw", "frame", "count"
        )?;
        self.entries.try_each(&mut |e| {
            write!(out, "{:>5}  {}  {}  ", e.index, e.linear, e.raw)?;
            match (e.frame, e.count) {
                (Some(frame), Some(c)) => write!(out, "{frame}  {c:>5}")?,
                (Some(frame), None) => write!(out, "{frame}  {:>5}", "-")?,
                (None, _) => write!(out, "{:<10}  {:>5}", "-", "-")?,
            }
            writeln!(out, "  {}", e.flags)
        })?;
        writeln!(
            out,
            "{} present, {} swap entries, {} empty",
            self.present,
            self.swap,
            ENTRIES_PER_TABLE as u32 - self.present - self.swap
        )
    }
}

// ---------------------------------------------------------------------------------------
// walk
// ---------------------------------------------------------------------------------------

command_tag!(
    /// `"walk"`.
    WalkCommand = "walk"
);

/// The task a `walk --task` is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "std", derive(Deserialize))]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct WalkTaskDoc {
    pub pid: u32,
    pub slot: u32,
    /// The offset in its segment.
    pub offset: Hex,
}

/// A directory entry with its index.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "std", derive(Deserialize))]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct IndexedEntryDoc {
    pub index: u32,
    pub raw: Hex,
    pub flags: Flags,
    pub present: bool,
}

/// A page-table entry with its index; null fields when the table was not read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "std", derive(Deserialize))]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct WalkPteDoc {
    pub index: u32,
    pub raw: Option<Hex>,
    pub flags: Option<Flags>,
    pub present: Option<bool>,
}

/// The level a walk stopped at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "std", derive(Deserialize))]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum WalkLevel {
    Pde,
    Pte,
}

/// Why a walk stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "std", derive(Deserialize))]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// The directory entry is not present.
    NoPageTable,
    /// The directory entry names a table outside RAM (corrupt): not read.
    TableBeyondMemory,
    /// The page-table entry is zero.
    NotMapped,
    /// The page-table entry is a swap entry.
    SwappedOut,
}

/// Where and why a walk stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "std", derive(Deserialize))]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct WalkStopDoc {
    pub level: WalkLevel,
    pub reason: StopReason,
    /// The slot, for `swapped_out`.
    pub swap_slot: Option<u32>,
}

/// `walk ADDR --json`: the software walk of one address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "std", derive(Deserialize))]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct WalkDoc {
    pub command: WalkCommand,
    pub schema: SchemaVersion,
    /// The linear address walked.
    pub linear: Hex,
    /// With `--task`: the task and the offset in its segment.
    pub task: Option<WalkTaskDoc>,
    pub pde: IndexedEntryDoc,
    /// The page table's frame, when the directory entry is present.
    pub table: Option<Hex>,
    pub pte: WalkPteDoc,
    /// The frame, when the page is present.
    pub frame: Option<Hex>,
    /// Its `mem_map` count (null: not covered by `mem_map` or not known, or no frame).
    pub count: Option<u8>,
    /// The physical address the linear address translates to.
    pub physical: Option<Hex>,
    /// Null when the walk reached a page.
    pub stop: Option<WalkStopDoc>,
    /// HIGH_MEMORY and `start_mem`, the bounds the text form explains counts with.
    pub high_memory: Hex,
}

/// `walk`: the software walk of `addr` (linear; with `task`, an offset in that task's
/// segment).
pub fn walk<V: PagingView + ?Sized>(
    view: &V,
    tasks: &dyn TaskSlots,
    addr: u32,
    task: Option<u32>,
) -> Result<WalkDoc, MonitorError> {
    let in_task = match task {
        None => None,
        Some(pid) => {
            let slot = tasks
                .slot_of_pid(pid)
                .ok_or(MonitorError::NoSuchTask { pid })?;
            if addr >= TASK_SIZE {
                // The parser refuses this; a caller building the command by hand may not.
                return Err(MonitorError::OffsetBeyondSegment { offset: addr });
            }
            Some((pid, slot))
        }
    };
    let linear = match in_task {
        Some((_, slot)) => LinearAddr::new(slot_base(slot).as_u32() + addr),
        None => LinearAddr::new(addr),
    };
    let pde_index = linear.dir_index();
    let pde = view.pde(pde_index);
    // Walk only through a table inside RAM: a walk reads whatever the entry names.
    let table_ok = !pde.is_present() || table_readable(view, pde.frame());
    let w = table_ok.then(|| mm::walk::walk(view, linear));
    let pte = w.and_then(|w| w.pte);
    let frame = w.and_then(|w| w.frame);
    let stop = match w.map(|w| w.stop) {
        None => Some((WalkLevel::Pde, StopReason::TableBeyondMemory, None)),
        Some(None) => None,
        Some(Some(WalkStop::NoPageTable)) => Some((WalkLevel::Pde, StopReason::NoPageTable, None)),
        Some(Some(WalkStop::NotMapped)) => Some((WalkLevel::Pte, StopReason::NotMapped, None)),
        Some(Some(WalkStop::SwappedOut { slot })) => {
            Some((WalkLevel::Pte, StopReason::SwappedOut, Some(slot)))
        }
    };
    // A damaged entry whose "table" the walk refused to read (see PagingView::page_table).
    let stop = stop.or_else(|| {
        (pde.is_present() && pte.is_none()).then_some((
            WalkLevel::Pde,
            StopReason::TableBeyondMemory,
            None,
        ))
    });
    Ok(WalkDoc {
        command: WalkCommand,
        schema: SchemaVersion,
        linear: Hex(linear.as_u32()),
        task: in_task.map(|(pid, slot)| WalkTaskDoc {
            pid,
            slot: slot as u32,
            offset: Hex(addr),
        }),
        pde: IndexedEntryDoc {
            index: pde_index as u32,
            raw: Hex(pde.raw()),
            flags: Flags(pde),
            present: pde.is_present(),
        },
        table: pde.is_present().then(|| Hex(pde.frame().as_u32())),
        pte: WalkPteDoc {
            index: linear.table_index() as u32,
            raw: pte.map(|p| Hex(p.raw())),
            flags: pte.map(Flags),
            present: pte.map(|p| p.is_present()),
        },
        frame: frame.map(|(f, _)| Hex(f.as_u32())),
        count: frame.and_then(|(_, c)| c),
        physical: w.and_then(|w| w.physical()).map(Hex),
        stop: stop.map(|(level, reason, swap_slot)| WalkStopDoc {
            level,
            reason,
            swap_slot,
        }),
        high_memory: Hex(view.high_memory()),
    })
}

impl Display for WalkDoc {
    fn fmt(&self, out: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(out, "walk {}", self.linear)?;
        if let Some(t) = self.task {
            write!(out, " (pid {} offset {}, slot {})", t.pid, t.offset, t.slot)?;
        }
        writeln!(out)?;
        write!(
            out,
            "  PDE {:<4}  raw {}  {}",
            self.pde.index, self.pde.raw, self.pde.flags
        )?;
        let Some(table) = self.table else {
            writeln!(out)?;
            return writeln!(out, "  stops at the PDE: not present, no page table");
        };
        writeln!(out, "  -> page table {table}")?;
        let (Some(raw), Some(flags)) = (self.pte.raw, self.pte.flags) else {
            return writeln!(
                out,
                "  stops at the PDE: its page table lies at/above HIGH_MEMORY {} (corrupt entry), not read",
                self.high_memory
            );
        };
        write!(out, "  PTE {:<4}  raw {raw}  {flags}", self.pte.index)?;
        match (self.frame, self.stop) {
            (Some(frame), _) => {
                write!(out, "  -> frame {frame}, mem_map count ")?;
                match self.count {
                    Some(count) => writeln!(out, "{count}")?,
                    None if frame.0 < LOW_MEM => writeln!(out, "- (below LOW_MEM, not counted)")?,
                    None if frame.0 >= self.high_memory.0 => {
                        writeln!(out, "- (at/above HIGH_MEMORY {})", self.high_memory)?
                    }
                    None => writeln!(out, "- (mem_map not known)")?,
                }
                writeln!(out, "  physical {}", self.physical.unwrap_or_default())
            }
            (
                None,
                Some(WalkStopDoc {
                    swap_slot: Some(slot),
                    ..
                }),
            ) => {
                writeln!(out)?;
                writeln!(out, "  stops at the PTE: swap entry (slot {slot})")
            }
            (None, _) => {
                writeln!(out)?;
                writeln!(out, "  stops at the PTE: not mapped (zero entry)")
            }
        }
    }
}
