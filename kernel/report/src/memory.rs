//! The frame documents: `checkmm` (does `mem_map` agree with every page table?) and
//! `showmem` (frame totals, pages per task, shared frames), over any [`PagingView`].

use core::cell::RefCell;
use core::fmt::{self, Display};
use core::ops::ControlFlow;

use mm::addr::{slot_base, Frame, NR_TASKS, PDES_PER_TASK};
use mm::check::{CheckInput, CheckSummary, Level, Mismatch};
use mm::view::PagingView;
use serde::Serialize;

#[cfg(feature = "std")]
use serde::Deserialize;

use crate::command::MonitorError;
use crate::inputs::TaskSlots;
use crate::text::count;
use crate::value::{command_tag, Hex, Items, SchemaVersion, Source};

/// `checkmm` lists at most this many mismatches (a wrecked `mem_map` could yield one per
/// frame, thousands of lines over the serial link); the rest are counted.
pub const MAX_LISTED_MISMATCHES: u32 = 256;
/// `showmem` lists at most this many frames with a count above 1; the rest are counted.
pub const MAX_LISTED_SHARED: u32 = 64;

// ---------------------------------------------------------------------------------------
// checkmm
// ---------------------------------------------------------------------------------------

command_tag!(
    /// `"checkmm"`.
    CheckMmCommand = "checkmm"
);

/// The level of an entry in an `entry_flags` mismatch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "std", derive(Deserialize))]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum LevelDoc {
    Directory,
    Table,
}

/// One mismatch: its `kind`, its own fields, and `message` (the text line).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[cfg_attr(feature = "std", derive(Deserialize))]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum MismatchDoc {
    /// `mem_map` holds `found`, the page tables and the kernel hold `expected`.
    Count {
        frame: Hex,
        expected: u32,
        found: u8,
        message: MismatchText,
    },
    /// A present entry maps a frame paging does not hand out.
    BadFrame {
        linear: Hex,
        frame: Hex,
        message: MismatchText,
    },
    /// The free counter disagrees with the counts.
    FreeCount {
        counter: u32,
        counted: u32,
        message: MismatchText,
    },
    /// The free-frame bitmap disagrees with the frame's count.
    FreeIndex { frame: Hex, message: MismatchText },
    /// A page table with other than one owning PDE, or also mapped as a page.
    TableOwnership {
        frame: Hex,
        owners: u32,
        mappings: u32,
        message: MismatchText,
    },
    /// A writable user entry maps a frame with count above 1 (COW broken).
    WritableShared {
        linear: Hex,
        frame: Hex,
        count: u8,
        message: MismatchText,
    },
    /// A directory entry in the slot of no live task.
    DeadSlot {
        pde_index: u32,
        slot: u32,
        entry: Hex,
        message: MismatchText,
    },
    /// The kernel's identity map differs from what it must be.
    KernelMapping {
        linear: Hex,
        expected: Hex,
        found: Hex,
        message: MismatchText,
    },
    /// A user entry without the bits the kernel always sets.
    EntryFlags {
        linear: Hex,
        entry: Hex,
        level: LevelDoc,
        message: MismatchText,
    },
    /// A swap entry names a slot that is free or beyond the device.
    SwapSlotNotInUse {
        linear: Hex,
        entry: Hex,
        slot: u32,
        message: MismatchText,
    },
    /// Two entries name the same slot.
    SwapSlotShared {
        linear: Hex,
        slot: u32,
        message: MismatchText,
    },
    /// A slot in use that no entry names (0: not identifiable).
    SwapSlotLeaked { slot: u32, message: MismatchText },
    /// A swap entry while no swap is configured.
    UnexpectedSwapEntry {
        linear: Hex,
        entry: Hex,
        message: MismatchText,
    },
    /// A frame the kernel holds that `mem_map` does not cover.
    BadKernelReference { frame: Hex, message: MismatchText },
}

impl MismatchDoc {
    /// The document of `m`, its message rendered from `m` itself.
    pub fn of(m: &Mismatch) -> MismatchDoc {
        let message = MismatchText::Of(*m);
        let hex = |f: Frame| Hex(f.as_u32());
        match *m {
            Mismatch::Count {
                frame,
                expected,
                found,
            } => MismatchDoc::Count {
                frame: hex(frame),
                expected,
                found,
                message,
            },
            Mismatch::BadFrame { linear, frame } => MismatchDoc::BadFrame {
                linear: Hex(linear.as_u32()),
                frame: hex(frame),
                message,
            },
            Mismatch::FreeCount { counter, counted } => MismatchDoc::FreeCount {
                counter,
                counted,
                message,
            },
            Mismatch::FreeIndex { frame } => MismatchDoc::FreeIndex {
                frame: hex(frame),
                message,
            },
            Mismatch::TableOwnership {
                frame,
                owners,
                mappings,
            } => MismatchDoc::TableOwnership {
                frame: hex(frame),
                owners,
                mappings,
                message,
            },
            Mismatch::WritableShared {
                linear,
                frame,
                count,
            } => MismatchDoc::WritableShared {
                linear: Hex(linear.as_u32()),
                frame: hex(frame),
                count,
                message,
            },
            Mismatch::DeadSlot {
                pde_index,
                slot,
                entry,
            } => MismatchDoc::DeadSlot {
                pde_index: pde_index as u32,
                slot: slot as u32,
                entry: Hex(entry.raw()),
                message,
            },
            Mismatch::KernelMapping {
                linear,
                expected,
                found,
            } => MismatchDoc::KernelMapping {
                linear: Hex(linear.as_u32()),
                expected: Hex(expected.raw()),
                found: Hex(found.raw()),
                message,
            },
            Mismatch::EntryFlags {
                linear,
                entry,
                level,
            } => MismatchDoc::EntryFlags {
                linear: Hex(linear.as_u32()),
                entry: Hex(entry.raw()),
                level: match level {
                    Level::Directory => LevelDoc::Directory,
                    Level::Table => LevelDoc::Table,
                },
                message,
            },
            Mismatch::SwapSlotNotInUse {
                linear,
                entry,
                slot,
            } => MismatchDoc::SwapSlotNotInUse {
                linear: Hex(linear.as_u32()),
                entry: Hex(entry.raw()),
                slot,
                message,
            },
            Mismatch::SwapSlotShared { linear, slot } => MismatchDoc::SwapSlotShared {
                linear: Hex(linear.as_u32()),
                slot,
                message,
            },
            Mismatch::SwapSlotLeaked { slot } => MismatchDoc::SwapSlotLeaked { slot, message },
            Mismatch::UnexpectedSwapEntry { linear, entry } => MismatchDoc::UnexpectedSwapEntry {
                linear: Hex(linear.as_u32()),
                entry: Hex(entry.raw()),
                message,
            },
            Mismatch::BadKernelReference { frame } => MismatchDoc::BadKernelReference {
                frame: hex(frame),
                message,
            },
        }
    }

    /// The text line (without `checkmm: `).
    pub fn message(&self) -> &MismatchText {
        match self {
            MismatchDoc::Count { message, .. }
            | MismatchDoc::BadFrame { message, .. }
            | MismatchDoc::FreeCount { message, .. }
            | MismatchDoc::FreeIndex { message, .. }
            | MismatchDoc::TableOwnership { message, .. }
            | MismatchDoc::WritableShared { message, .. }
            | MismatchDoc::DeadSlot { message, .. }
            | MismatchDoc::KernelMapping { message, .. }
            | MismatchDoc::EntryFlags { message, .. }
            | MismatchDoc::SwapSlotNotInUse { message, .. }
            | MismatchDoc::SwapSlotShared { message, .. }
            | MismatchDoc::SwapSlotLeaked { message, .. }
            | MismatchDoc::UnexpectedSwapEntry { message, .. }
            | MismatchDoc::BadKernelReference { message, .. } => message,
        }
    }
}

/// A mismatch's message: rendered from the mismatch in the kernel, the text itself once
/// parsed.
#[derive(Clone, Debug)]
pub enum MismatchText {
    Of(Mismatch),
    #[cfg(feature = "std")]
    Owned(std::string::String),
}

impl Display for MismatchText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MismatchText::Of(m) => write!(f, "{m}"),
            #[cfg(feature = "std")]
            MismatchText::Owned(s) => f.write_str(s),
        }
    }
}

/// Two messages are equal when they read the same.
impl PartialEq for MismatchText {
    fn eq(&self, other: &MismatchText) -> bool {
        match (self, other) {
            (MismatchText::Of(a), MismatchText::Of(b)) => a == b,
            #[cfg(feature = "std")]
            (a, b) => std::string::ToString::to_string(a) == std::string::ToString::to_string(b),
        }
    }
}

impl Serialize for MismatchText {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(feature = "std")]
impl<'de> Deserialize<'de> for MismatchText {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<MismatchText, D::Error> {
        std::string::String::deserialize(d).map(MismatchText::Owned)
    }
}

#[cfg(feature = "schema")]
impl schemars::JsonSchema for MismatchText {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "MismatchText".into()
    }
    fn inline_schema() -> bool {
        true
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({ "type": "string", "description": "the text line, without 'checkmm: '" })
    }
}

/// `checkmm --json`: every mismatch (the first 256) and the tally.
#[derive(Debug, Serialize)]
#[cfg_attr(feature = "std", derive(Deserialize, Clone, PartialEq))]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct CheckMmDoc<'a> {
    pub command: CheckMmCommand,
    pub schema: SchemaVersion,
    /// The first 256 mismatches, as found.
    pub mismatches: Items<'a, MismatchDoc>,
    /// Mismatches not listed.
    pub omitted: u32,
    /// No mismatch.
    pub ok: bool,
    pub mismatch_count: u32,
    /// `mem_map` counts compared.
    pub frames: u32,
    /// Entries checked.
    pub present_pdes: u32,
    pub present_ptes: u32,
    /// Kernel-held frames (task structures) counted.
    pub kernel_refs: u32,
    /// Swap entries found.
    pub swap_entries: u32,
}

/// A `checkmm` over a view with the caller's scratch (one `u16` per frame `mem_map`
/// covers, plus the swap bits: `mm::check::SCRATCH_LEN` always suffices).
///
/// The check runs once for the tally (the document's counts come first in its text and
/// matter most), and again as the mismatches are written: the two runs see the same
/// state, since nothing changes while the kernel is stopped or a snapshot is read.
pub struct CheckMm<'v, V: ?Sized> {
    view: &'v V,
    input: &'v CheckInput<'v>,
    scratch: RefCell<&'v mut [u16]>,
    summary: CheckSummary,
}

impl<'v, V: PagingView + ?Sized> CheckMm<'v, V> {
    /// Runs the check; refuses too small a scratch and a view that does not know
    /// `mem_map`.
    pub fn new(
        view: &'v V,
        input: &'v CheckInput<'v>,
        scratch: &'v mut [u16],
    ) -> Result<CheckMm<'v, V>, MonitorError> {
        let needed = view.nr_pages();
        if scratch.len() < needed {
            return Err(MonitorError::ScratchTooSmall {
                needed,
                given: scratch.len(),
            });
        }
        if !view.knows_mem_map() {
            return Err(MonitorError::NoMemMap);
        }
        let summary = mm::check::check_mm(view, input, scratch, &mut |_| {});
        Ok(CheckMm {
            view,
            input,
            scratch: RefCell::new(scratch),
            summary,
        })
    }

    /// The tally of the check.
    pub fn summary(&self) -> CheckSummary {
        self.summary
    }

    pub fn document(&self) -> CheckMmDoc<'_> {
        let s = self.summary;
        CheckMmDoc {
            command: CheckMmCommand,
            schema: SchemaVersion,
            mismatches: Items::Lazy(self),
            omitted: s.mismatches.saturating_sub(MAX_LISTED_MISMATCHES),
            ok: s.is_clean(),
            mismatch_count: s.mismatches,
            frames: s.frames,
            present_pdes: s.present_pdes,
            present_ptes: s.present_ptes,
            kernel_refs: s.kernel_refs,
            swap_entries: s.swap_entries,
        }
    }
}

impl<V: PagingView + ?Sized> Source<MismatchDoc> for CheckMm<'_, V> {
    fn each(&self, f: &mut dyn FnMut(&MismatchDoc) -> ControlFlow<()>) {
        // A document being written is not re-entered, so the scratch is free here.
        let Ok(mut scratch) = self.scratch.try_borrow_mut() else {
            return;
        };
        let mut listed = 0;
        let mut stopped = false;
        mm::check::check_mm(self.view, self.input, &mut scratch, &mut |m| {
            if stopped || listed >= MAX_LISTED_MISMATCHES {
                return;
            }
            listed += 1;
            stopped = f(&MismatchDoc::of(&m)).is_break();
        });
    }
}

/// The tally line: `OK (...)` or `MISMATCH (...; N mismatches)`. Also the summary the
/// kernel prints at the end of a run.
pub struct SummaryText<'a>(pub &'a CheckSummary);

impl Display for SummaryText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0;
        write!(
            f,
            "{} ({}, {}, {}",
            if s.is_clean() { "OK" } else { "MISMATCH" },
            count(s.frames, "frame", "frames"),
            count(s.present_pdes, "directory entry", "directory entries"),
            count(s.present_ptes, "page-table entry", "page-table entries"),
        )?;
        // The frames the kernel holds for tasks (their task structures): only worth a
        // word when there are tasks.
        if s.kernel_refs > 0 {
            write!(f, ", {}", count(s.kernel_refs, "task page", "task pages"))?;
        }
        if s.swap_entries > 0 {
            write!(
                f,
                ", {}",
                count(s.swap_entries, "swap entry", "swap entries")
            )?;
        }
        f.write_str(" checked")?;
        if !s.is_clean() {
            write!(f, "; {}", count(s.mismatches, "mismatch", "mismatches"))?;
        }
        f.write_str(")")
    }
}

impl Display for CheckMmDoc<'_> {
    fn fmt(&self, out: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.mismatches
            .try_each(&mut |m| writeln!(out, "checkmm: {}", m.message()))?;
        if self.omitted > 0 {
            let noun = if self.omitted == 1 {
                "mismatch"
            } else {
                "mismatches"
            };
            writeln!(out, "checkmm: ... and {} more {noun}", self.omitted)?;
        }
        let summary = CheckSummary {
            frames: self.frames,
            present_pdes: self.present_pdes,
            present_ptes: self.present_ptes,
            kernel_refs: self.kernel_refs,
            swap_entries: self.swap_entries,
            mismatches: self.mismatch_count,
        };
        writeln!(out, "checkmm: {}", SummaryText(&summary))
    }
}

// ---------------------------------------------------------------------------------------
// showmem
// ---------------------------------------------------------------------------------------

command_tag!(
    /// `"showmem"`.
    ShowMemCommand = "showmem"
);

/// The pages of one task slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "std", derive(Deserialize))]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct SlotPagesDoc {
    /// The pid in the slot (null: page tables but no task, a leak).
    pub pid: Option<u32>,
    pub slot: u32,
    /// Present pages, of which with a count above 1, page tables, swap entries.
    pub pages: u32,
    pub shared_pages: u32,
    pub page_tables: u32,
    pub swapped: u32,
}

/// A frame with a count above 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "std", derive(Deserialize))]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct SharedFrameDoc {
    pub frame: Hex,
    pub count: u8,
}

/// The swap device's slots.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "std", derive(Deserialize))]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct SwapDoc {
    pub slots: u32,
    pub used: u32,
    pub free: u32,
}

/// `showmem --json`: 0.12's `show_mem`, better.
#[derive(Debug, Serialize)]
#[cfg_attr(feature = "std", derive(Deserialize, Clone, PartialEq))]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ShowMemDoc<'a> {
    pub command: ShowMemCommand,
    pub schema: SchemaVersion,
    /// End of RAM; first frame paging hands out.
    pub high_memory: Hex,
    pub start_mem: Hex,
    /// Frames in `[start_mem, HIGH_MEMORY)`.
    pub paging_frames: u32,
    /// Of those, count 0 (the free counter) / not 0.
    pub free: u32,
    pub used: u32,
    /// Frames with a count above 1.
    pub shared_frames: u32,
    /// 0.12's "shared pages": the sum of (count - 1).
    pub shared_references: u32,
    /// Frames between LOW_MEM and `start_mem` (count `USED`).
    pub reserved: u32,
    /// Slots 1..63 with a task or page tables.
    pub tasks: Items<'a, SlotPagesDoc>,
    /// At most 64, in frame order.
    pub shared: Items<'a, SharedFrameDoc>,
    /// Shared frames not listed.
    pub shared_omitted: u32,
    /// Null: no swap.
    pub swap: Option<SwapDoc>,
}

/// A `showmem` over a view.
pub struct ShowMem<'v, V: ?Sized> {
    view: &'v V,
    tasks: &'v dyn TaskSlots,
}

/// Whether slot `slot` holds any directory entry (a task's, or a leftover).
fn slot_has_tables<V: PagingView + ?Sized>(view: &V, slot: usize) -> bool {
    let first = slot_base(slot).dir_index();
    (first..first + PDES_PER_TASK).any(|d| view.pde(d).raw() != 0)
}

impl<'v, V: PagingView + ?Sized> ShowMem<'v, V> {
    /// Refuses a view that does not know `mem_map`.
    pub fn new(view: &'v V, tasks: &'v dyn TaskSlots) -> Result<ShowMem<'v, V>, MonitorError> {
        if !view.knows_mem_map() {
            return Err(MonitorError::NoMemMap);
        }
        Ok(ShowMem { view, tasks })
    }

    pub fn document(&self) -> ShowMemDoc<'_> {
        let view = self.view;
        let t = mm::walk::frame_totals(view);
        ShowMemDoc {
            command: ShowMemCommand,
            schema: SchemaVersion,
            high_memory: Hex(view.high_memory()),
            start_mem: Hex(view.start_mem()),
            paging_frames: t.paging_frames,
            free: t.free_frames,
            used: t.paging_frames - t.free_frames.min(t.paging_frames),
            shared_frames: t.shared_frames,
            shared_references: t.shared_references,
            reserved: t.reserved_frames,
            tasks: Items::Lazy(self),
            shared: Items::Lazy(self),
            shared_omitted: t.shared_frames.saturating_sub(MAX_LISTED_SHARED),
            swap: view.swap_slots().map(|slots| SwapDoc {
                slots,
                used: view.swap_used(),
                free: view.swap_free(),
            }),
        }
    }
}

impl<V: PagingView + ?Sized> Source<SlotPagesDoc> for ShowMem<'_, V> {
    fn each(&self, f: &mut dyn FnMut(&SlotPagesDoc) -> ControlFlow<()>) {
        for slot in 1..NR_TASKS {
            let pid = self.tasks.pid_in_slot(slot);
            if pid.is_none() && !slot_has_tables(self.view, slot) {
                continue;
            }
            let u = mm::walk::slot_usage(self.view, slot);
            let row = SlotPagesDoc {
                pid,
                slot: slot as u32,
                pages: u.pages,
                shared_pages: u.shared_pages,
                page_tables: u.page_tables,
                swapped: u.swapped,
            };
            if f(&row).is_break() {
                return;
            }
        }
    }
}

impl<V: PagingView + ?Sized> Source<SharedFrameDoc> for ShowMem<'_, V> {
    fn each(&self, f: &mut dyn FnMut(&SharedFrameDoc) -> ControlFlow<()>) {
        let start = self.view.start_mem();
        let mut listed = 0;
        for i in 0..self.view.nr_pages() {
            let frame = self.view.frame_of(i);
            let Some(count) = self.view.map_count(i) else {
                continue;
            };
            if count <= 1 || frame.as_u32() < start {
                continue;
            }
            if listed == MAX_LISTED_SHARED
                || f(&SharedFrameDoc {
                    frame: Hex(frame.as_u32()),
                    count,
                })
                .is_break()
            {
                return;
            }
            listed += 1;
        }
    }
}

impl Display for ShowMemDoc<'_> {
    fn fmt(&self, out: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            out,
            "frames: {} for paging ({}..{}): {} free, {} used, {} shared \
             ({}); {} reserved below start_mem",
            self.paging_frames,
            self.start_mem,
            self.high_memory,
            self.free,
            self.used,
            self.shared_frames,
            count(
                self.shared_references,
                "extra reference",
                "extra references"
            ),
            self.reserved
        )?;
        match self.swap {
            Some(swap) => writeln!(
                out,
                "swap: {} slots, {} in use, {} free",
                swap.slots, swap.used, swap.free
            )?,
            None => writeln!(out, "swap: none")?,
        }
        writeln!(
            out,
            "{:>5}  {:>4}  {:>6}  {:>6}  {:>6}  {:>7}",
            "pid", "slot", "pages", "shared", "tables", "swapped"
        )?;
        let mut rows = 0;
        self.tasks.try_each(&mut |u| {
            rows += 1;
            match u.pid {
                Some(pid) => write!(out, "{pid:>5}")?,
                None => write!(out, "{:>5}", "-")?,
            }
            writeln!(
                out,
                "  {:>4}  {:>6}  {:>6}  {:>6}  {:>7}",
                u.slot, u.pages, u.shared_pages, u.page_tables, u.swapped
            )
        })?;
        if rows == 0 {
            writeln!(out, "(no user task)")?;
        }
        if self.shared_frames == 0 {
            return writeln!(out, "no frame is mapped more than once");
        }
        writeln!(out, "frames with a count above 1 ({}):", self.shared_frames)?;
        self.shared
            .try_each(&mut |s| writeln!(out, "  {}  count {}", s.frame, s.count))?;
        if self.shared_omitted > 0 {
            writeln!(out, "  ... and {} more", self.shared_omitted)?;
        }
        Ok(())
    }
}
