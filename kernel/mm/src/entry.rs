//! Page-directory and page-table entries: the flag bits and one decoder for every front end.

use crate::addr::{Frame, PAGE_SIZE};
use core::fmt;

bitflags::bitflags! {
    /// The low flag bits of an i386 PDE/PTE (0.12 `include/linux/mm.h` names the first five).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct EntryFlags: u32 {
        /// 0.12 `PAGE_PRESENT`.
        const PRESENT = 1 << 0;
        /// 0.12 `PAGE_RW`.
        const WRITABLE = 1 << 1;
        /// 0.12 `PAGE_USER`.
        const USER = 1 << 2;
        const WRITE_THROUGH = 1 << 3;
        const CACHE_DISABLE = 1 << 4;
        /// 0.12 `PAGE_ACCESSED`.
        const ACCESSED = 1 << 5;
        /// 0.12 `PAGE_DIRTY`.
        const DIRTY = 1 << 6;
        /// PDE: 4 MiB page (never set by this kernel).
        const HUGE = 1 << 7;
        const GLOBAL = 1 << 8;
    }
}

/// Flags of a user page or a user page table: 0.11's magic `7` (present, writable, user).
pub const USER_RW: EntryFlags = EntryFlags::PRESENT
    .union(EntryFlags::WRITABLE)
    .union(EntryFlags::USER);
/// Flags of a kernel identity-map entry: present, writable, supervisor only.
pub const KERNEL_RW: EntryFlags = EntryFlags::PRESENT.union(EntryFlags::WRITABLE);

/// One raw page-directory or page-table entry.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Entry(pub u32);

impl Entry {
    /// The empty (not present, zero) entry.
    pub const EMPTY: Entry = Entry(0);

    /// An entry mapping `frame` with `flags`.
    pub const fn new(frame: Frame, flags: EntryFlags) -> Entry {
        Entry(frame.as_u32() | flags.bits())
    }
    pub const fn raw(self) -> u32 {
        self.0
    }
    pub const fn flags(self) -> EntryFlags {
        EntryFlags::from_bits_truncate(self.0 & (PAGE_SIZE - 1))
    }
    /// The frame named by bits 31..12 (meaningful only when present).
    pub const fn frame(self) -> Frame {
        Frame::containing(self.0)
    }
    pub const fn is_present(self) -> bool {
        self.0 & EntryFlags::PRESENT.bits() != 0
    }
    pub const fn is_writable(self) -> bool {
        self.0 & EntryFlags::WRITABLE.bits() != 0
    }
    pub const fn is_user(self) -> bool {
        self.0 & EntryFlags::USER.bits() != 0
    }
    pub const fn is_dirty(self) -> bool {
        self.0 & EntryFlags::DIRTY.bits() != 0
    }
    /// Not present but not zero: 0.12 stores a swap entry (`slot << 1`) here.
    pub const fn is_swap(self) -> bool {
        self.0 != 0 && !self.is_present()
    }
    /// 0.12's swap slot of a swap entry.
    pub const fn swap_slot(self) -> u32 {
        self.0 >> 1
    }
    /// 0.11 `try_to_share`'s test `(pte & 0x41) == 1`: present and clean.
    pub const fn is_present_and_clean(self) -> bool {
        self.0 & (EntryFlags::PRESENT.bits() | EntryFlags::DIRTY.bits())
            == EntryFlags::PRESENT.bits()
    }
    pub const fn with_flags(self, flags: EntryFlags) -> Entry {
        Entry(self.0 | flags.bits())
    }
    pub const fn without_flags(self, flags: EntryFlags) -> Entry {
        Entry(self.0 & !flags.bits())
    }
    /// The decoded flag letters, e.g. `P RW US A D` or `- RO SV`.
    pub fn describe(self) -> FlagLetters {
        FlagLetters(self)
    }
}

/// [`Entry::describe`]: flags as short letters, the form every front end prints.
pub struct FlagLetters(Entry);

impl fmt::Display for FlagLetters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let e = self.0;
        if e.is_swap() {
            return write!(f, "swap slot {}", e.swap_slot());
        }
        if !e.is_present() {
            return f.write_str("not present");
        }
        f.write_str("P")?;
        f.write_str(if e.is_writable() { " RW" } else { " RO" })?;
        f.write_str(if e.is_user() { " US" } else { " SV" })?;
        let fl = e.flags();
        for (flag, name) in [
            (EntryFlags::WRITE_THROUGH, " PWT"),
            (EntryFlags::CACHE_DISABLE, " PCD"),
            (EntryFlags::ACCESSED, " A"),
            (EntryFlags::DIRTY, " D"),
            (EntryFlags::HUGE, " PS"),
            (EntryFlags::GLOBAL, " G"),
        ] {
            if fl.contains(flag) {
                f.write_str(name)?;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Entry({:#010x}: {})", self.0, self.describe())
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::string::ToString;

    #[test]
    fn magic_seven_is_user_rw() {
        assert_eq!(USER_RW.bits(), 7);
        assert_eq!(KERNEL_RW.bits(), 3);
    }

    #[test]
    fn decodes_flags_and_swap_entries() {
        let e = Entry(0x0034_5067);
        assert_eq!(e.frame().as_u32(), 0x0034_5000);
        assert_eq!(e.describe().to_string(), "P RW US A D");
        assert!(!e.is_present_and_clean());
        assert!(Entry(0x0034_5005).is_present_and_clean());
        assert_eq!(Entry(0x0034_5005).describe().to_string(), "P RO US");
        assert_eq!(Entry(42 << 1).describe().to_string(), "swap slot 42");
        assert_eq!(Entry::EMPTY.describe().to_string(), "not present");
    }
}
