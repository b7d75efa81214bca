//! Software breakpoints (`int3` bytes) and the hardware ones (DR0-DR3).
//!
//! A breakpoint is in memory only while the kernel runs: every entry into the stub lifts
//! them all (so the stub never trips over one, and gdb reads the original bytes) and
//! every exit plants them again. An `int3` goes into the frame the breakpoint's linear
//! address maps, under the same rule as a memory write: never into a frame other tasks
//! share (a text page after `fork`, or shared by `share_page`): gdb then says it cannot
//! insert the breakpoint, and `hbreak` (a debug register, which matches the linear
//! address only) is the way to stop there.

use gdbstub::target::ext::breakpoints::WatchKind;
use mm::Mm;

use super::memory::{self, AccessError};
use crate::arch::x86::debugreg::{self, Condition, Watch, SLOTS};
use crate::arch::x86::phys::KernelPhys;

/// The `int3` opcode.
pub const INT3: u8 = 0xCC;
/// How many software breakpoints the stub keeps.
pub const MAX_SOFTWARE: usize = 64;

/// One software breakpoint.
#[derive(Clone, Copy, Debug)]
struct Software {
    /// Where gdb asked for it.
    linear: u32,
    /// The byte's physical address when it was inserted.
    phys: u32,
    /// The byte the `int3` replaces.
    original: u8,
    /// Whether the `int3` is in memory now.
    planted: bool,
    /// Whether it was in memory while the kernel last ran (a trap that just came in
    /// was caused by it even though the entry has lifted it since).
    active: bool,
}

/// What a debug register is used for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HwUse {
    /// `hbreak`: an instruction breakpoint.
    Break,
    /// One aligned piece of a watched region (gdb's request: start, length, kind).
    Watch {
        start: u32,
        len: u32,
        kind: WatchKind,
    },
}

/// Every breakpoint and watchpoint of the session.
pub struct Breakpoints {
    software: [Option<Software>; MAX_SOFTWARE],
    hardware: [Option<(Watch, HwUse)>; SLOTS],
}

/// What a `#BP` at a linear address was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hit {
    /// One of gdb's breakpoints.
    Ours,
    /// The `int3` of a breakpoint in a frame another task now shares (it forked after
    /// the breakpoint was planted): not meant for this task.
    Foreign,
    /// Not a breakpoint of the stub.
    NotOurs,
}

impl Breakpoints {
    pub const fn new() -> Breakpoints {
        Breakpoints {
            software: [None; MAX_SOFTWARE],
            hardware: [None; SLOTS],
        }
    }

    /// Adds a software breakpoint at `linear` (memory must be lifted: the byte read now
    /// is the original). `Ok(false)`: the table is full.
    pub fn insert(&mut self, mm: &Mm<KernelPhys>, linear: u32) -> Result<bool, AccessError> {
        if self.software.iter().flatten().any(|b| b.linear == linear) {
            return Ok(true);
        }
        let page = memory::writable(mm, linear)?;
        let Some(free) = self.software.iter_mut().find(|b| b.is_none()) else {
            return Ok(false);
        };
        *free = Some(Software {
            linear,
            phys: page.phys,
            original: memory::peek(mm, page.phys),
            planted: false,
            active: false,
        });
        Ok(true)
    }

    /// Removes the software breakpoint at `linear`; false if there is none.
    pub fn remove(&mut self, linear: u32) -> bool {
        match self
            .software
            .iter_mut()
            .find(|b| b.is_some_and(|b| b.linear == linear))
        {
            Some(slot) => {
                *slot = None;
                true
            }
            None => false,
        }
    }

    /// Takes every `int3` out of memory and disarms the debug registers. A breakpoint
    /// whose linear address no longer maps its frame (the task exited, the frame may
    /// belong to someone else now) is forgotten as planted without touching the frame.
    pub fn lift(&mut self, mm: &Mm<KernelPhys>) {
        debugreg::disarm();
        for bp in self.software.iter_mut().flatten().filter(|b| b.planted) {
            bp.planted = false;
            let still_there = memory::translate(mm, bp.linear).is_ok_and(|p| p.phys == bp.phys);
            if still_there && memory::peek(mm, bp.phys) == INT3 {
                memory::poke(bp.phys, &[bp.original]);
            }
        }
    }

    /// Puts every `int3` into memory (where the rule still allows it) and arms the
    /// debug registers.
    pub fn plant(&mut self, mm: &Mm<KernelPhys>) {
        for bp in self.software.iter_mut().flatten().filter(|b| !b.planted) {
            let allowed = memory::writable(mm, bp.linear).is_ok_and(|p| p.phys == bp.phys);
            if allowed {
                memory::poke(bp.phys, &[INT3]);
                bp.planted = true;
            }
            bp.active = allowed;
        }
        debugreg::load(&self.slots());
    }

    /// What the `int3` whose byte is at `linear` (physically `phys`) was.
    pub fn classify(&self, linear: u32, phys: Option<u32>) -> Hit {
        let planted = || self.software.iter().flatten().filter(|b| b.active);
        if planted().any(|b| b.linear == linear) {
            Hit::Ours
        } else if phys.is_some_and(|p| planted().any(|b| b.phys == p)) {
            Hit::Foreign
        } else {
            Hit::NotOurs
        }
    }

    /// The debug registers' contents.
    fn slots(&self) -> [Option<Watch>; SLOTS] {
        self.hardware.map(|h| h.map(|(watch, _)| watch))
    }

    /// Adds a hardware breakpoint; false when all four registers are taken.
    pub fn insert_hw_break(&mut self, linear: u32) -> bool {
        let watch = Watch {
            addr: linear,
            condition: Condition::Execute,
            len: 1,
        };
        if self
            .hardware
            .iter()
            .flatten()
            .any(|&(w, u)| w == watch && u == HwUse::Break)
        {
            return true;
        }
        match self.hardware.iter_mut().find(|h| h.is_none()) {
            Some(slot) => {
                *slot = Some((watch, HwUse::Break));
                true
            }
            None => false,
        }
    }

    /// Removes a hardware breakpoint; false if there is none.
    pub fn remove_hw_break(&mut self, linear: u32) -> bool {
        self.remove_uses(|w, u| u == HwUse::Break && w.addr == linear)
    }

    /// Watches `[start, start + len)`, split into aligned pieces of 4, 2 or 1 bytes, one
    /// debug register each; false (nothing changed) when there are not enough free.
    /// x86 has no read-only condition: a read watchpoint uses read/write (gdb then
    /// ignores the hits that changed the value).
    pub fn insert_watch(&mut self, start: u32, len: u32, kind: WatchKind) -> bool {
        let usage = HwUse::Watch { start, len, kind };
        if self.hardware.iter().flatten().any(|&(_, u)| u == usage) {
            return true;
        }
        let condition = match kind {
            WatchKind::Write => Condition::Write,
            WatchKind::Read | WatchKind::ReadWrite => Condition::ReadWrite,
        };
        let mut pieces = [None; SLOTS];
        let mut count = 0;
        let mut addr = start;
        let end = start as u64 + len as u64;
        while (addr as u64) < end {
            let left = end - addr as u64;
            let size = [4u32, 2, 1]
                .into_iter()
                .find(|&s| addr.is_multiple_of(s) && u64::from(s) <= left)
                .unwrap_or(1);
            if count == SLOTS {
                return false;
            }
            pieces[count] = Some(Watch {
                addr,
                condition,
                len: size,
            });
            count += 1;
            addr = addr.wrapping_add(size);
            if addr == 0 {
                break;
            }
        }
        let free = self.hardware.iter().filter(|h| h.is_none()).count();
        if count == 0 || free < count {
            return false;
        }
        let mut pieces = pieces.into_iter().flatten();
        for slot in self.hardware.iter_mut().filter(|h| h.is_none()) {
            match pieces.next() {
                Some(watch) => *slot = Some((watch, usage)),
                None => break,
            }
        }
        true
    }

    /// Removes a watchpoint gdb inserted with the same arguments.
    pub fn remove_watch(&mut self, start: u32, len: u32, kind: WatchKind) -> bool {
        self.remove_uses(|_, u| u == HwUse::Watch { start, len, kind })
    }

    fn remove_uses(&mut self, matches: impl Fn(Watch, HwUse) -> bool) -> bool {
        let mut found = false;
        for slot in self.hardware.iter_mut() {
            if slot.is_some_and(|(w, u)| matches(w, u)) {
                *slot = None;
                found = true;
            }
        }
        found
    }

    /// What the debug register that hit (lowest set bit of DR6's B0-B3 among the armed
    /// ones) is used for, and the address it watches.
    pub fn hardware_hit(&self, hit_slots: u8) -> Option<(u32, HwUse)> {
        (0..SLOTS)
            .filter(|&i| hit_slots & (1 << i) != 0)
            .find_map(|i| self.hardware[i].map(|(w, u)| (w.addr, u)))
    }

    /// Forgets everything (memory must be lifted).
    pub fn clear(&mut self) {
        self.software = [None; MAX_SOFTWARE];
        self.hardware = [None; SLOTS];
    }
}
