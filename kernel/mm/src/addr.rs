//! Address newtypes and the layout constants of Linux 0.11 (`LOW_MEM`, `TASK_SIZE`, ...).

use core::fmt;

/// Size of a page and of a frame (4 KiB): the i386 two-level paging unit.
pub const PAGE_SIZE: u32 = 4096;
/// log2 of [`PAGE_SIZE`].
pub const PAGE_SHIFT: u32 = 12;
/// Entries in a page directory or a page table.
pub const ENTRIES_PER_TABLE: usize = 1024;
/// Bytes of linear space one page-directory entry covers (4 MiB).
pub const PDE_SPAN: u32 = 0x0040_0000;
/// log2 of [`PDE_SPAN`].
pub const PDE_SHIFT: u32 = 22;
/// 0.11 `LOW_MEM`: frames below 1 MiB belong to the kernel and are never counted.
pub const LOW_MEM: u32 = 0x0010_0000;
/// 0.12 `TASK_SIZE`: the linear slot of one task (64 MiB).
pub const TASK_SIZE: u32 = abi::TASK_SIZE;
/// Page-directory entries per task slot (16).
pub const PDES_PER_TASK: usize = (TASK_SIZE / PDE_SPAN) as usize;
/// 0.12 `NR_TASKS`: 64 slots of 64 MiB fill the 4 GiB linear space.
pub const NR_TASKS: usize = 64;
/// The most RAM the kernel manages: its identity map must fit in task 0's slot.
pub const MAX_HIGH_MEMORY: u32 = TASK_SIZE;
/// 0.11 `PAGING_PAGES` for the largest supported RAM: the length of `mem_map`.
pub const MAX_PAGING_PAGES: usize = ((MAX_HIGH_MEMORY - LOW_MEM) / PAGE_SIZE) as usize;

/// A physical address.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct PhysAddr(u32);

impl PhysAddr {
    pub const fn new(addr: u32) -> Self {
        PhysAddr(addr)
    }
    pub const fn as_u32(self) -> u32 {
        self.0
    }
    /// The frame containing this address.
    pub const fn frame(self) -> Frame {
        Frame(self.0 & !(PAGE_SIZE - 1))
    }
    pub const fn offset(self, bytes: u32) -> PhysAddr {
        PhysAddr(self.0 + bytes)
    }
}

/// A linear address: segment base + offset, before paging (as the seed texts use it).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct LinearAddr(u32);

impl LinearAddr {
    pub const fn new(addr: u32) -> Self {
        LinearAddr(addr)
    }
    pub const fn as_u32(self) -> u32 {
        self.0
    }
    /// Page-directory index: bits 31..22 (0.11 writes `(addr >> 20) & 0xffc` for the byte offset).
    pub const fn dir_index(self) -> usize {
        (self.0 >> PDE_SHIFT) as usize
    }
    /// Page-table index: bits 21..12 (0.11's `(addr >> 10) & 0xffc` byte offset).
    pub const fn table_index(self) -> usize {
        ((self.0 >> PAGE_SHIFT) as usize) & (ENTRIES_PER_TABLE - 1)
    }
    /// Offset inside the page: bits 11..0.
    pub const fn page_offset(self) -> u32 {
        self.0 & (PAGE_SIZE - 1)
    }
    /// The start of the page containing this address.
    pub const fn page_base(self) -> LinearAddr {
        LinearAddr(self.0 & !(PAGE_SIZE - 1))
    }
    /// The task slot (0..63) this address falls in.
    pub const fn slot(self) -> usize {
        (self.0 / TASK_SIZE) as usize
    }
    /// The linear address of directory index `dir` and table index `table`.
    pub const fn from_indices(dir: usize, table: usize) -> LinearAddr {
        LinearAddr(((dir as u32) << PDE_SHIFT) | ((table as u32) << PAGE_SHIFT))
    }
}

/// A physical page frame: a page-aligned physical address.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Frame(u32);

impl Frame {
    /// The frame at `addr`, which must be page aligned.
    pub const fn from_addr(addr: u32) -> Option<Frame> {
        if addr & (PAGE_SIZE - 1) == 0 {
            Some(Frame(addr))
        } else {
            None
        }
    }
    /// The frame containing `addr`.
    pub const fn containing(addr: u32) -> Frame {
        Frame(addr & !(PAGE_SIZE - 1))
    }
    pub const fn addr(self) -> PhysAddr {
        PhysAddr(self.0)
    }
    pub const fn as_u32(self) -> u32 {
        self.0
    }
}

/// The base linear address of task slot `slot` (0.11: `nr * 0x4000000`).
pub const fn slot_base(slot: usize) -> LinearAddr {
    LinearAddr((slot as u32).wrapping_mul(TASK_SIZE))
}

impl fmt::Debug for PhysAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PhysAddr({:#010x})", self.0)
    }
}
impl fmt::Display for PhysAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#010x}", self.0)
    }
}
impl fmt::Debug for LinearAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LinearAddr({:#010x})", self.0)
    }
}
impl fmt::Display for LinearAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#010x}", self.0)
    }
}
impl fmt::Debug for Frame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Frame({:#010x})", self.0)
    }
}
impl fmt::Display for Frame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#010x}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indices_match_the_0_11_shifts() {
        let a = LinearAddr::new(0x0840_3abc);
        assert_eq!(a.dir_index() * 4, ((a.as_u32() >> 20) & 0xffc) as usize);
        assert_eq!(a.table_index() * 4, ((a.as_u32() >> 10) & 0xffc) as usize);
        assert_eq!(a.page_offset(), 0xabc);
        assert_eq!(a.slot(), 2);
        assert_eq!(
            LinearAddr::from_indices(a.dir_index(), a.table_index()),
            a.page_base()
        );
    }

    #[test]
    fn mem_map_length_covers_64_mib() {
        assert_eq!(MAX_PAGING_PAGES, 16128);
        assert_eq!(PDES_PER_TASK, 16);
    }
}
