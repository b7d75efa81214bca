//! Deliberate corruption of the paging state, for learning what `checkmm` catches: flip a
//! bit of a page-table or directory entry, raise or lower a frame's `mem_map` count, leak
//! a frame. Nothing in the paging code calls these; the debugger does.

use crate::addr::{Frame, LinearAddr, ENTRIES_PER_TABLE};
use crate::entry::Entry;
use crate::mem_map::MapCountError;
use crate::memory::Mm;
use crate::phys::PhysMem;
use core::fmt;

/// Why a corruption was not made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CorruptError {
    /// Bits 0..=31 only.
    Bit(u32),
    /// No page table covers the address.
    NoPageTable(LinearAddr),
    /// Directory index beyond 1023.
    DirIndex(usize),
    /// `mem_map` does not cover the frame.
    Frame(MapCountError),
    /// The count would leave 0..=255.
    CountRange { frame: Frame, count: u8, delta: i32 },
    /// No free frame to leak.
    NoFreeFrame,
}

impl fmt::Display for CorruptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CorruptError::Bit(b) => write!(f, "bit {b} is not in 0..=31"),
            CorruptError::NoPageTable(a) => write!(f, "no page table covers {a}"),
            CorruptError::DirIndex(i) => write!(f, "directory index {i} is not in 0..=1023"),
            CorruptError::Frame(e) => match e {
                MapCountError::Nonexistent(frame)
                | MapCountError::Free(frame)
                | MapCountError::Reserved(frame)
                | MapCountError::Overflow(frame) => {
                    write!(f, "frame {frame} has no mem_map count (below LOW_MEM or at/above HIGH_MEMORY)")
                }
            },
            CorruptError::CountRange {
                frame,
                count,
                delta,
            } => {
                write!(f, "count of {frame} is {count}: {delta:+} leaves 0..=255")
            }
            CorruptError::NoFreeFrame => f.write_str("no free frame to leak"),
        }
    }
}

/// What a corruption changed: the old and new raw value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Change {
    pub old: u32,
    pub new: u32,
}

impl<P: PhysMem> Mm<P> {
    /// Flips bit `bit` of the page-table entry of `linear` (a TLB flush follows, so the
    /// CPU sees it).
    pub fn corrupt_pte_bit(
        &mut self,
        linear: LinearAddr,
        bit: u32,
    ) -> Result<Change, CorruptError> {
        if bit > 31 {
            return Err(CorruptError::Bit(bit));
        }
        let (table, index, old) = self.pte(linear).ok_or(CorruptError::NoPageTable(linear))?;
        let new = Entry(old.raw() ^ (1 << bit));
        self.phys.write_entry(table, index, new);
        self.phys.flush_tlb();
        Ok(Change {
            old: old.raw(),
            new: new.raw(),
        })
    }

    /// Flips bit `bit` of page-directory entry `index`.
    pub fn corrupt_pde_bit(&mut self, index: usize, bit: u32) -> Result<Change, CorruptError> {
        if bit > 31 {
            return Err(CorruptError::Bit(bit));
        }
        if index >= ENTRIES_PER_TABLE {
            return Err(CorruptError::DirIndex(index));
        }
        let old = self.pde(index);
        let new = Entry(old.raw() ^ (1 << bit));
        self.set_pde(index, new);
        self.phys.flush_tlb();
        Ok(Change {
            old: old.raw(),
            new: new.raw(),
        })
    }

    /// Adds `delta` to a frame's `mem_map` count (without touching any table).
    pub fn corrupt_count(&mut self, frame: Frame, delta: i32) -> Result<Change, CorruptError> {
        let count = self
            .mem_map
            .count(frame)
            .ok_or(CorruptError::Frame(MapCountError::Nonexistent(frame)))?;
        let new = i32::from(count) + delta;
        let new = u8::try_from(new).map_err(|_| CorruptError::CountRange {
            frame,
            count,
            delta,
        })?;
        self.mem_map
            .set_count_for_debugging(frame, new)
            .map_err(CorruptError::Frame)?;
        Ok(Change {
            old: count.into(),
            new: new.into(),
        })
    }

    /// Takes a free frame (count 1) that nothing maps: a leak. Returns the frame.
    pub fn corrupt_leak_frame(&mut self) -> Result<Frame, CorruptError> {
        self.mem_map
            .take_highest_free()
            .ok_or(CorruptError::NoFreeFrame)
    }
}
