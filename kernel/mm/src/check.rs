//! `checkmm`: verifies that `mem_map` agrees with every page table (the invariants at the
//! end of the semantics note) and names every mismatch: which frame or entry, expected, found.
//!
//! Like Linux's "bad page state" and `check_mm`, it recounts every reference from
//! scratch (page-table entries, directory entries, the kernel's own frames) and compares.

use crate::addr::{Frame, LinearAddr, ENTRIES_PER_TABLE, NR_TASKS, PDES_PER_TASK};
use crate::entry::{Entry, EntryFlags, KERNEL_RW, USER_RW};
use crate::mem_map::USED;
use crate::memory::Mm;
use crate::phys::PhysMem;
use crate::view::PagingView;
use core::fmt;

/// `u16` words of scratch beyond the frame counts that give one bit per swap slot.
pub const SWAP_SCRATCH_WORDS: usize = (crate::swap::SWAP_BITS / 16) as usize;
/// A scratch length that always suffices: every frame count, and every swap slot.
pub const SCRATCH_LEN: usize = crate::addr::MAX_PAGING_PAGES + SWAP_SCRATCH_WORDS;

/// Marks a scratch count as "this frame is a page table".
const TABLE_MARK: u16 = 0x8000;

/// Counts one more reference in a scratch entry, keeping its page-table mark.
fn add_reference(entry: &mut u16) {
    let marked = *entry & TABLE_MARK;
    *entry = (*entry & !TABLE_MARK).saturating_add(1).min(!TABLE_MARK) | marked;
}

/// One violated invariant, precise enough to find the culprit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mismatch {
    /// Invariant 1: `mem_map` holds `found`, the page tables and kernel references add
    /// up to `expected`. `expected == 0` is a leak; `found == 0` a mapped free frame.
    Count {
        frame: Frame,
        expected: u32,
        found: u8,
    },
    /// Invariant 2: a present user entry maps a frame `mem_map` does not hand out
    /// (at/above HIGH_MEMORY, or in the reserved memory below `start_mem`).
    BadFrame {
        linear: LinearAddr,
        frame: Frame,
    },
    /// Invariant 3: the free counter or the free index disagrees with the counts.
    FreeCount {
        counter: u32,
        counted: u32,
    },
    FreeIndex {
        frame: Frame,
    },
    /// Invariant 4: a page-table frame with `owners` directory entries and `mappings`
    /// page-table entries referencing it (expected: one owner, no mapping).
    TableOwnership {
        frame: Frame,
        owners: u32,
        mappings: u32,
    },
    /// Invariant 5: a writable user entry maps a frame whose count is above 1.
    WritableShared {
        linear: LinearAddr,
        frame: Frame,
        count: u8,
    },
    /// Invariant 6/8: a directory entry in the slot of a task that does not exist.
    DeadSlot {
        pde_index: usize,
        slot: usize,
        entry: Entry,
    },
    /// Invariant 6: an entry of the kernel's identity map differs from what it must be.
    KernelMapping {
        linear: LinearAddr,
        expected: Entry,
        found: Entry,
    },
    /// A user directory or table entry without the user/writable bits the kernel always
    /// sets (0.11's flags 7 on tables).
    EntryFlags {
        linear: LinearAddr,
        entry: Entry,
        level: Level,
    },
    /// Invariant 7: a swap entry names a slot that is free, or not on the device.
    SwapSlotNotInUse {
        linear: LinearAddr,
        entry: Entry,
        slot: u32,
    },
    /// Invariant 7: two entries name the same slot (0.12 never shares a slot).
    SwapSlotShared {
        linear: LinearAddr,
        slot: u32,
    },
    /// Invariant 7: a slot is in use but no entry names it (leaked).
    SwapSlotLeaked {
        slot: u32,
    },
    /// Invariant 7: a swap entry while no swap is configured.
    UnexpectedSwapEntry {
        linear: LinearAddr,
        entry: Entry,
    },
    /// A frame the kernel holds (a task structure) that `mem_map` does not cover.
    BadKernelReference {
        frame: Frame,
    },
}

/// The level of a page-table structure, for messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Directory,
    Table,
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Mismatch::Count {
                frame,
                expected,
                found,
            } => {
                write!(
                    f,
                    "frame {frame}: mem_map count {found}, page tables and kernel hold {expected}"
                )?;
                if expected == 0 {
                    f.write_str(" (leaked)")
                } else if found == 0 {
                    f.write_str(" (mapped but free)")
                } else {
                    Ok(())
                }
            }
            Mismatch::BadFrame { linear, frame } => {
                write!(
                    f,
                    "linear {linear} maps frame {frame}, which paging does not hand out"
                )
            }
            Mismatch::FreeCount { counter, counted } => {
                write!(
                    f,
                    "free counter says {counter} free frames, mem_map has {counted}"
                )
            }
            Mismatch::FreeIndex { frame } => {
                write!(
                    f,
                    "frame {frame}: free index disagrees with its mem_map count"
                )
            }
            Mismatch::TableOwnership {
                frame,
                owners,
                mappings,
            } => write!(
                f,
                "page table {frame}: {owners} directory entries and {mappings} page mappings \
                 reference it (expected 1 and 0)"
            ),
            Mismatch::WritableShared {
                linear,
                frame,
                count,
            } => write!(
                f,
                "linear {linear} maps frame {frame} writable, but its count is {count} \
                 (copy-on-write broken)"
            ),
            Mismatch::DeadSlot {
                pde_index,
                slot,
                entry,
            } => write!(
                f,
                "directory entry {pde_index} ({entry:?}) belongs to slot {slot}, which has no task"
            ),
            Mismatch::KernelMapping {
                linear,
                expected,
                found,
            } => write!(
                f,
                "kernel identity map at {linear}: expected {:#010x}, found {:#010x}",
                expected.raw(),
                found.raw()
            ),
            Mismatch::EntryFlags {
                linear,
                entry,
                level,
            } => write!(
                f,
                "{} entry for {linear} has flags {} (expected P RW US)",
                match level {
                    Level::Directory => "directory",
                    Level::Table => "page-table",
                },
                entry.describe()
            ),
            Mismatch::SwapSlotNotInUse {
                linear,
                entry,
                slot,
            } => write!(
                f,
                "linear {linear} holds swap entry {:#010x} for slot {slot}, which is not in use",
                entry.raw()
            ),
            Mismatch::SwapSlotShared { linear, slot } => {
                write!(
                    f,
                    "linear {linear} names swap slot {slot}, already named by another entry"
                )
            }
            Mismatch::SwapSlotLeaked { slot } => {
                write!(
                    f,
                    "swap slot {slot} is in use but no entry names it (leaked)"
                )
            }
            Mismatch::UnexpectedSwapEntry { linear, entry } => write!(
                f,
                "linear {linear} holds swap entry {:#010x} but no swap is configured",
                entry.raw()
            ),
            Mismatch::BadKernelReference { frame } => {
                write!(
                    f,
                    "kernel reference to frame {frame}, which mem_map does not cover"
                )
            }
        }
    }
}

/// What the check needs to know besides the page tables.
pub struct CheckInput<'a> {
    /// Bit n set: task slot n has a live task (slot 0, the kernel, is implied).
    pub live_slots: u64,
    /// Frames the kernel itself holds references to (task structures...).
    pub kernel_refs: &'a [Frame],
}

/// The tally of a check.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CheckSummary {
    /// Frames whose count was compared.
    pub frames: u32,
    pub present_pdes: u32,
    pub present_ptes: u32,
    pub kernel_refs: u32,
    /// Swap entries found (each names one slot in use).
    pub swap_entries: u32,
    pub mismatches: u32,
}

impl CheckSummary {
    pub fn is_clean(&self) -> bool {
        self.mismatches == 0
    }
}

impl<P: PhysMem> Mm<P> {
    /// Runs every check over this state ([`check_mm`]).
    pub fn check_mm(
        &self,
        input: &CheckInput<'_>,
        scratch: &mut [u16],
        report: &mut dyn FnMut(Mismatch),
    ) -> CheckSummary {
        check_mm(self, input, scratch, report)
    }
}

/// Runs every check over `view`. `scratch` needs one `u16` per frame `mem_map` covers (a
/// static buffer in the kernel: no allocation); each mismatch goes to `report` as it is
/// found. A view that does not know `mem_map` has every count taken as 0.
pub fn check_mm<V: PagingView + ?Sized>(
    view: &V,
    input: &CheckInput<'_>,
    scratch: &mut [u16],
    report: &mut dyn FnMut(Mismatch),
) -> CheckSummary {
    let nr_pages = view.nr_pages();
    assert!(scratch.len() >= nr_pages, "checkmm scratch too small");
    let (refs, rest) = scratch.split_at_mut(nr_pages);
    refs.fill(0);
    // One bit per swap slot, when the scratch is long enough (SCRATCH_LEN is): finds
    // slots named twice and slots leaked. Without it only the totals are compared.
    let mut slots_seen =
        (rest.len() >= SWAP_SCRATCH_WORDS).then(|| &mut rest[..SWAP_SCRATCH_WORDS]);
    if let Some(seen) = slots_seen.as_deref_mut() {
        seen.fill(0);
    }
    let mut summary = CheckSummary::default();
    let mut emit = |m: Mismatch, summary: &mut CheckSummary| {
        summary.mismatches += 1;
        report(m);
    };
    let start_mem = view.start_mem();

    check_kernel_slot(view, &mut summary, &mut emit);

    for dir in PDES_PER_TASK..ENTRIES_PER_TABLE {
        let pde = view.pde(dir);
        let dir_linear = LinearAddr::from_indices(dir, 0);
        if !pde.is_present() {
            if pde.raw() != 0 {
                emit(
                    Mismatch::EntryFlags {
                        linear: dir_linear,
                        entry: pde,
                        level: Level::Directory,
                    },
                    &mut summary,
                );
            }
            continue;
        }
        summary.present_pdes += 1;
        let slot = dir / PDES_PER_TASK;
        if input.live_slots & (1 << slot) == 0 {
            emit(
                Mismatch::DeadSlot {
                    pde_index: dir,
                    slot,
                    entry: pde,
                },
                &mut summary,
            );
        }
        if pde.flags() & USER_RW != USER_RW {
            emit(
                Mismatch::EntryFlags {
                    linear: dir_linear,
                    entry: pde,
                    level: Level::Directory,
                },
                &mut summary,
            );
        }
        let table = pde.frame();
        match view.map_nr(table) {
            Some(i) if table.as_u32() >= start_mem => {
                add_reference(&mut refs[i]);
                refs[i] |= TABLE_MARK;
                // A second owner shows up as a count above 1 in the table pass below.
            }
            _ => {
                emit(
                    Mismatch::BadFrame {
                        linear: dir_linear,
                        frame: table,
                    },
                    &mut summary,
                );
                continue;
            }
        }
        for index in 0..ENTRIES_PER_TABLE {
            let pte = view.read_entry(table, index);
            let linear = LinearAddr::from_indices(dir, index);
            if !pte.is_present() {
                if pte.is_swap() {
                    summary.swap_entries += 1;
                    check_swap_entry(
                        view,
                        linear,
                        pte,
                        slots_seen.as_deref_mut(),
                        &mut summary,
                        &mut emit,
                    );
                }
                continue;
            }
            summary.present_ptes += 1;
            if !pte.is_user() {
                emit(
                    Mismatch::EntryFlags {
                        linear,
                        entry: pte,
                        level: Level::Table,
                    },
                    &mut summary,
                );
            }
            let frame = pte.frame();
            match view.map_nr(frame) {
                Some(i) if frame.as_u32() >= start_mem => {
                    add_reference(&mut refs[i]);
                }
                _ => {
                    emit(Mismatch::BadFrame { linear, frame }, &mut summary);
                    continue;
                }
            }
            if pte.is_writable() {
                if let Some(count) = view.count(frame).filter(|&c| c > 1) {
                    emit(
                        Mismatch::WritableShared {
                            linear,
                            frame,
                            count,
                        },
                        &mut summary,
                    );
                }
            }
        }
    }

    if let Some(nr_slots) = view.swap_slots() {
        match slots_seen.as_deref() {
            Some(seen) => {
                for slot in 1..nr_slots {
                    let named = seen[slot as usize / 16] & (1 << (slot % 16)) != 0;
                    if view.swap_in_use(slot) && !named {
                        emit(Mismatch::SwapSlotLeaked { slot }, &mut summary);
                    }
                }
            }
            None if summary.swap_entries < view.swap_used() => {
                // Without the per-slot bits the leaked slot cannot be named.
                emit(Mismatch::SwapSlotLeaked { slot: 0 }, &mut summary);
            }
            None => {}
        }
    }

    for &frame in input.kernel_refs {
        summary.kernel_refs += 1;
        match view.map_nr(frame) {
            Some(i) if frame.as_u32() >= start_mem => {
                add_reference(&mut refs[i]);
            }
            _ => emit(Mismatch::BadKernelReference { frame }, &mut summary),
        }
    }

    // Page tables: exactly one owning directory entry, no page mappings. A table frame
    // also mapped as a page shows up here; the counts were summed into one number, so
    // recount this table's owners precisely.
    for (i, &r) in refs.iter().enumerate() {
        if r & TABLE_MARK != 0 && r & !TABLE_MARK != 1 {
            let frame = view.frame_of(i);
            let owners = owners_of_table(view, frame);
            emit(
                Mismatch::TableOwnership {
                    frame,
                    owners,
                    mappings: u32::from(r & !TABLE_MARK) - owners.min(u32::from(r & !TABLE_MARK)),
                },
                &mut summary,
            );
        }
    }

    let mut counted_free = 0u32;
    for (i, &references) in refs.iter().enumerate() {
        let found = view.map_count(i).unwrap_or(0);
        let frame = view.frame_of(i);
        summary.frames += 1;
        if found == 0 {
            counted_free += 1;
        }
        let expected = if frame.as_u32() < start_mem {
            // Reserved memory keeps USED; references to it were reported as BadFrame.
            u32::from(USED)
        } else {
            u32::from(references & !TABLE_MARK)
        };
        if u32::from(found) != expected {
            emit(
                Mismatch::Count {
                    frame,
                    expected,
                    found,
                },
                &mut summary,
            );
        }
    }
    if counted_free != view.nr_free() {
        emit(
            Mismatch::FreeCount {
                counter: view.nr_free(),
                counted: counted_free,
            },
            &mut summary,
        );
    }
    let out_of_sync =
        (0..view.nr_pages()).find(|&i| view.free_bit(i) != (view.map_count(i).unwrap_or(0) == 0));
    if let Some(i) = out_of_sync {
        emit(
            Mismatch::FreeIndex {
                frame: view.frame_of(i),
            },
            &mut summary,
        );
    }
    summary
}

/// Invariant 7 for one swap entry: it names a slot in use, named by no other entry.
fn check_swap_entry<V: PagingView + ?Sized>(
    view: &V,
    linear: LinearAddr,
    entry: Entry,
    seen: Option<&mut [u16]>,
    summary: &mut CheckSummary,
    emit: &mut dyn FnMut(Mismatch, &mut CheckSummary),
) {
    if view.swap_slots().is_none() {
        emit(Mismatch::UnexpectedSwapEntry { linear, entry }, summary);
        return;
    }
    let slot = entry.swap_slot();
    if !view.swap_in_use(slot) {
        emit(
            Mismatch::SwapSlotNotInUse {
                linear,
                entry,
                slot,
            },
            summary,
        );
        return;
    }
    if let Some(seen) = seen {
        let (word, bit) = (slot as usize / 16, 1u16 << (slot % 16));
        if seen[word] & bit != 0 {
            emit(Mismatch::SwapSlotShared { linear, slot }, summary);
        }
        seen[word] |= bit;
    }
}

/// Slot 0: the identity map must be intact, and nothing else may be mapped there.
fn check_kernel_slot<V: PagingView + ?Sized>(
    view: &V,
    summary: &mut CheckSummary,
    emit: &mut dyn FnMut(Mismatch, &mut CheckSummary),
) {
    let high = view.high_memory();
    let accessed_dirty = EntryFlags::ACCESSED | EntryFlags::DIRTY;
    for dir in 0..PDES_PER_TASK {
        let pde = view.pde(dir);
        let linear = LinearAddr::from_indices(dir, 0);
        let Some(table) = (dir < view.kernel_pdes()).then(|| view.kernel_table(dir)) else {
            if pde.raw() != 0 {
                emit(
                    Mismatch::KernelMapping {
                        linear,
                        expected: Entry::EMPTY,
                        found: pde,
                    },
                    summary,
                );
            }
            continue;
        };
        summary.present_pdes += u32::from(pde.is_present());
        let expected = Entry::new(table, KERNEL_RW);
        if pde.without_flags(accessed_dirty) != expected {
            emit(
                Mismatch::KernelMapping {
                    linear,
                    expected,
                    found: pde,
                },
                summary,
            );
            continue;
        }
        for index in 0..ENTRIES_PER_TABLE {
            let linear = LinearAddr::from_indices(dir, index);
            let found = view.read_entry(table, index);
            let expected = if linear.as_u32() < high {
                Entry::new(Frame::containing(linear.as_u32()), KERNEL_RW)
            } else {
                Entry::EMPTY
            };
            summary.present_ptes += u32::from(found.is_present());
            if found.without_flags(accessed_dirty) != expected {
                emit(
                    Mismatch::KernelMapping {
                        linear,
                        expected,
                        found,
                    },
                    summary,
                );
            }
        }
    }
}

/// How many directory entries outside slot 0 point at `table`.
fn owners_of_table<V: PagingView + ?Sized>(view: &V, table: Frame) -> u32 {
    (PDES_PER_TASK..ENTRIES_PER_TABLE)
        .filter(|&d| {
            let e = view.pde(d);
            e.is_present() && e.frame() == table
        })
        .count() as u32
}

/// The slot numbers set in a live-slot mask, for callers building [`CheckInput`].
pub fn live_slot_mask(slots: impl IntoIterator<Item = usize>) -> u64 {
    slots
        .into_iter()
        .filter(|&s| s < NR_TASKS)
        .fold(0, |m, s| m | (1 << s))
}
