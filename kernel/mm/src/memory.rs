//! Linux 0.11 `mm/memory.c`, function by function, over the [`PhysMem`] interface.
//!
//! Every public function here has the name of its 0.11 counterpart. Where this code
//! deliberately behaves differently (a bug fixed, a panic turned into an error, a faster
//! search), the comment says so and names the row of `kernel/docs/deviations.md` (D1, D2...).
//! Errors are typed; the kernel decides what the original's `panic`/`oom()` becomes.

use crate::addr::{
    Frame, LinearAddr, PhysAddr, ENTRIES_PER_TABLE, LOW_MEM, PAGE_SIZE, PDES_PER_TASK, PDE_SPAN,
    TASK_SIZE,
};
use crate::compat::Compat;
use crate::entry::{Entry, EntryFlags, KERNEL_RW, USER_RW};
use crate::mem_map::{MapCountError, MemMap};
use crate::phys::PhysMem;
use core::fmt;

/// 0.11 copies only 160 entries (640 KiB) when it copies task 0's space (`from == 0`).
/// Kept, though no task here is forked from task 0 (D15); the host tests use it.
const TASK0_COPY_ENTRIES: usize = 0xA0;

/// Page-fault error-code bits (Intel SDM vol. 3, 4.7), as `page.s` tests them.
pub mod fault_code {
    /// Set: protection violation on a present page; clear: page not present.
    pub const PRESENT: u32 = 1 << 0;
    /// The access was a write.
    pub const WRITE: u32 = 1 << 1;
    /// The access came from ring 3.
    pub const USER: u32 = 1 << 2;
}

/// Which caller asked for a frame: every allocation in the paging code has its own name,
/// for statistics now and for failure injection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AllocSite {
    /// A page table for the child in `copy_page_tables` (fork).
    CopyPageTables,
    /// A page table for a new mapping (`put_page`, `try_to_share`).
    PageTable,
    /// The private copy in `un_wp_page` (copy-on-write).
    CowCopy,
    /// The page `do_no_page` fills (zero page or loaded from the image).
    NoPage,
    /// A task structure (`fork`).
    TaskStruct,
    /// Memory `execve` needs.
    Execve,
}

impl AllocSite {
    /// Every site, in a fixed order (the index of [`AllocSite::index`]).
    pub const ALL: [AllocSite; 6] = [
        AllocSite::CopyPageTables,
        AllocSite::PageTable,
        AllocSite::CowCopy,
        AllocSite::NoPage,
        AllocSite::TaskStruct,
        AllocSite::Execve,
    ];
    /// The site's stable name (the interface of statistics and failure injection).
    pub const fn name(self) -> &'static str {
        match self {
            AllocSite::CopyPageTables => "copy_page_tables",
            AllocSite::PageTable => "page_table",
            AllocSite::CowCopy => "un_wp_page",
            AllocSite::NoPage => "do_no_page",
            AllocSite::TaskStruct => "fork_task_struct",
            AllocSite::Execve => "execve",
        }
    }
    pub const fn index(self) -> usize {
        self as usize
    }
}

/// Which search `get_free_page` uses. Both return the same frame (the highest free one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameSearch {
    /// The two-level free bitmap (default).
    Bitmap,
    /// 0.11's linear scan of `mem_map` from the top (the reference).
    LinearScan0_11,
}

/// Decides whether an allocation fails on purpose (failure injection); consulted before
/// `get_free_page` changes any state.
pub trait FailurePolicy {
    fn should_fail(&mut self, site: AllocSite) -> bool;
}

/// The policy that never fails.
pub struct NeverFail;
impl FailurePolicy for NeverFail {
    fn should_fail(&mut self, _site: AllocSite) -> bool {
        false
    }
}

/// No free frame (0.11 returns 0 from `get_free_page`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutOfMemory {
    pub site: AllocSite,
    /// The failure was injected, not real exhaustion.
    pub injected: bool,
}

impl fmt::Display for OutOfMemory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "out of memory in {}", self.site.name())?;
        if self.injected {
            f.write_str(" (injected)")?;
        }
        Ok(())
    }
}

/// Why `free_page_tables` refused a range (0.11 panics on the first two).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FreeTablesError {
    /// "free_page_tables called with wrong alignment".
    Misaligned(LinearAddr),
    /// "Trying to free up swapper memory space": the range overlaps task 0's slot, which
    /// holds the kernel's identity map (D1: 0.11 only refuses `from == 0`).
    KernelMemory(LinearAddr),
    /// The range runs past the end of the linear space.
    OutOfRange(LinearAddr, u32),
}

impl fmt::Display for FreeTablesError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FreeTablesError::Misaligned(a) => {
                write!(f, "free_page_tables called with wrong alignment ({a})")
            }
            FreeTablesError::KernelMemory(a) => write!(
                f,
                "trying to free up swapper memory space ({a} is inside the kernel's slot)"
            ),
            FreeTablesError::OutOfRange(a, s) => {
                write!(f, "free_page_tables range {a} + {s:#x} runs past 4 GiB")
            }
        }
    }
}

/// What `free_page_tables` released.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FreedTables {
    pub pages: u32,
    pub page_tables: u32,
    /// Non-present, non-zero entries (0.12 swap entries) whose slots were freed.
    pub swap_entries: u32,
    /// Swap entries naming no slot in use (a corrupted entry; cleared all the same).
    pub bad_swap_entries: u32,
    /// References `free_page` refused (a corrupted table or `mem_map`): 0.11 panics on
    /// the first one; this kernel clears the entry, counts it and goes on (D4).
    pub bad_frees: u32,
    pub first_bad_free: Option<MapCountError>,
}

/// Why `copy_page_tables` failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CopyError {
    Misaligned,
    /// The range runs past the end of the linear space, or the destination is in the
    /// kernel's slot.
    OutOfRange,
    /// "copy_page_tables: already exist" (0.11 panics).
    AlreadyExists(usize),
    /// No frame for a page table (0.11 returns -1). Tables already built stay for the
    /// caller to release with `free_page_tables`, as 0.11's `copy_mem` does.
    OutOfMemory(OutOfMemory),
    /// A page's count cannot take another reference (D2: 0.11 wraps the `u8`).
    CountOverflow(Frame),
    /// The parent maps a frame `mem_map` refuses a reference to (free, reserved or
    /// nonexistent): corrupted state, reported instead of counted.
    BadReference(MapCountError),
    /// A swapped-out page of the parent could not be read back.
    SwapIo(crate::phys::SwapIoError),
}

impl fmt::Display for CopyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CopyError::Misaligned => f.write_str("copy_page_tables called with wrong alignment"),
            CopyError::OutOfRange => f.write_str("copy_page_tables range out of bounds"),
            CopyError::AlreadyExists(d) => {
                write!(f, "copy_page_tables: already exist (directory entry {d})")
            }
            CopyError::OutOfMemory(e) => write!(f, "copy_page_tables: {e}"),
            CopyError::CountOverflow(fr) => write!(f, "copy_page_tables: count of {fr} is full"),
            CopyError::BadReference(e) => write!(f, "copy_page_tables: {e}"),
            CopyError::SwapIo(e) => write!(f, "copy_page_tables: {e}"),
        }
    }
}

/// What `copy_page_tables` built.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CopiedTables {
    pub page_tables: u32,
    /// Present pages now shared copy-on-write.
    pub pages: u32,
    /// Swapped-out pages read back for the parent (the child keeps the slot).
    pub swap_entries: u32,
}

/// Why `put_page` refused (0.11 only warns "Trying to put page %p at %p" and maps anyway).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PutPageError {
    /// The frame is outside `[LOW_MEM, HIGH_MEMORY)` (D5: refused, not mapped).
    BadFrame(Frame),
    /// The frame's count is not 1 (D5: refused, not mapped).
    NotExclusive(Frame, u8),
    /// The page table could not be allocated (0.11 returns 0).
    OutOfMemory(OutOfMemory),
    /// A page is already mapped there (D5: 0.11 overwrites the entry, leaking the frame).
    AlreadyMapped(LinearAddr, Entry),
    /// The entry there is a swap entry (0.12 overwrites it, leaking the slot and losing
    /// the page it holds).
    SwapEntry(LinearAddr, Entry),
    /// The directory entry is present but names no frame a page table can be (damaged).
    DamagedTable(Entry),
}

/// Why no page table could be had for an address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TableError {
    OutOfMemory(OutOfMemory),
    /// A present directory entry naming no valid page table (see [`Mm::page_table`]).
    Damaged(Entry),
}

impl From<OutOfMemory> for TableError {
    fn from(e: OutOfMemory) -> Self {
        TableError::OutOfMemory(e)
    }
}

impl fmt::Display for PutPageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PutPageError::BadFrame(fr) => write!(f, "trying to put page {fr}: no such page"),
            PutPageError::NotExclusive(fr, c) => {
                write!(
                    f,
                    "mem_map disagrees with {fr} at put_page (count {c}, expected 1)"
                )
            }
            PutPageError::OutOfMemory(e) => write!(f, "put_page: {e}"),
            PutPageError::AlreadyMapped(a, e) => {
                write!(f, "put_page: {a} already maps {:#010x}", e.raw())
            }
            PutPageError::SwapEntry(a, e) => write!(
                f,
                "put_page: {a} holds swap slot {} (mapping over it would leak the slot)",
                e.swap_slot()
            ),
            PutPageError::DamagedTable(e) => {
                write!(
                    f,
                    "put_page: directory entry {:#010x} names no valid page table",
                    e.raw()
                )
            }
        }
    }
}

/// What the write-protect fault handler did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WpOutcome {
    /// The page's count was 1: `un_wp_page` only set RW.
    MadeWritable(Frame),
    /// The page was shared: a private copy now replaces it.
    Copied { from: Frame, to: Frame },
    /// The entry was already writable (a stale TLB entry): flushed, nothing else.
    AlreadyWritable(Frame),
    /// The entry changed while a frame was found (swap_out evicted the page): nothing
    /// done; the access faults again and is handled afresh.
    Retry,
}

/// Why a write-protect fault could not be resolved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WpError {
    /// No frame for the copy (0.11 calls `oom()`).
    OutOfMemory(OutOfMemory),
    /// The address is outside the faulting task's slot (0.12 "Bad things happen").
    OutsideTask(LinearAddr),
    /// A protection fault on a read: the page is not the task's (D6: 0.11 treats every
    /// present-page fault as a write).
    NotAWrite(LinearAddr),
    /// The page is not mapped (a write-protect fault cannot be on it).
    NotMapped(LinearAddr),
    /// `mem_map` refused the copy's decrement (corrupted state).
    Corrupt(MapCountError),
    /// The directory entry lacks RW or US (corrupted state): no page-table change helps.
    DirectoryProtection(LinearAddr, Entry),
}

impl fmt::Display for WpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WpError::OutOfMemory(e) => write!(f, "{e}"),
            WpError::OutsideTask(a) => write!(f, "write-protect fault at {a} outside the task"),
            WpError::NotAWrite(a) => write!(f, "protection fault on a read at {a}"),
            WpError::NotMapped(a) => write!(f, "write-protect fault at unmapped {a}"),
            WpError::Corrupt(e) => write!(f, "corrupt mem_map in un_wp_page: {e}"),
            WpError::DirectoryProtection(a, e) => write!(
                f,
                "write fault at {a}: its directory entry {:#010x} is {} (the kernel sets P RW US)",
                e.raw(),
                e.describe()
            ),
        }
    }
}

/// Why `try_to_share` could not complete.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShareError {
    /// No frame for the destination page table (0.11 calls `oom()`).
    OutOfMemory(OutOfMemory),
    /// "try_to_share: to_page already exists" (0.11 panics).
    AlreadyExists(LinearAddr),
    /// The destination's directory entry is damaged (see [`Mm::page_table`]).
    DamagedTable(Entry),
}

/// What `do_no_page` did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoPageOutcome {
    /// A fresh zero page (outside the program image, or no image).
    ZeroPage(Frame),
    /// The page was read from the program image.
    Loaded(Frame),
    /// The page was shared from another task running the same program.
    Shared(Frame),
    /// The entry was already present (a stale TLB entry): flushed, nothing else.
    AlreadyPresent(Frame),
    /// The page was read back from the swap device (0.12 `swap_in`).
    SwappedIn(Frame),
}

impl NoPageOutcome {
    pub fn frame(self) -> Frame {
        match self {
            NoPageOutcome::ZeroPage(f)
            | NoPageOutcome::Loaded(f)
            | NoPageOutcome::Shared(f)
            | NoPageOutcome::AlreadyPresent(f)
            | NoPageOutcome::SwappedIn(f) => f,
        }
    }
}

/// Why `do_no_page` could not map the page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoPageError {
    /// No frame (0.11 calls `oom()`).
    OutOfMemory(OutOfMemory),
    /// The address is outside the faulting task's slot.
    OutsideTask(LinearAddr),
    /// The mapping was refused (a corrupted state; see [`PutPageError`]).
    PutPage(PutPageError),
    /// Sharing found an entry already there.
    Share(ShareError),
    /// The page could not be read back from swap.
    SwapIn(crate::swap::SwapInError),
}

impl fmt::Display for NoPageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NoPageError::OutOfMemory(e) => write!(f, "{e}"),
            NoPageError::OutsideTask(a) => write!(f, "page fault at {a} outside the task"),
            NoPageError::PutPage(e) => write!(f, "{e}"),
            NoPageError::Share(ShareError::OutOfMemory(e)) => write!(f, "share_page: {e}"),
            NoPageError::Share(ShareError::AlreadyExists(a)) => {
                write!(f, "try_to_share: to_page already exists at {a}")
            }
            NoPageError::SwapIn(e) => write!(f, "{e}"),
            NoPageError::Share(ShareError::DamagedTable(e)) => {
                write!(
                    f,
                    "try_to_share: directory entry {:#010x} names no valid page table",
                    e.raw()
                )
            }
        }
    }
}

impl From<OutOfMemory> for NoPageError {
    fn from(e: OutOfMemory) -> Self {
        NoPageError::OutOfMemory(e)
    }
}

/// What a task's program image offers `do_no_page`: 0.11 reads the executable's blocks.
pub trait ProgramPages {
    /// 0.11 `current->end_data`: the end of text + data; pages past it are zero pages.
    fn end_data(&self) -> u32;
    /// The bytes of the page at `offset` (page aligned), cut at `end_data`.
    fn page_bytes(&self, offset: u32) -> &[u8];
}

/// The faulting task, as `do_no_page` and `share_page` need it.
pub struct FaultContext<'a> {
    /// The task's segment base (0.11 `current->start_code`).
    pub base: LinearAddr,
    /// The program the task runs (0.11 `current->executable`), if any.
    pub program: Option<&'a dyn ProgramPages>,
    /// Segment bases of the other tasks running the same program (0.11 `share_page`'s
    /// loop over `task[]` comparing `executable`).
    pub peers: &'a [LinearAddr],
}

/// Call counters of the paging functions, for `show_mem` and the debugger.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MmCounters {
    /// Frames handed out, by [`AllocSite`].
    pub allocations: [u32; AllocSite::ALL.len()],
    /// Allocations that failed, by [`AllocSite`] (real or injected).
    pub failures: [u32; AllocSite::ALL.len()],
    pub frees: u32,
}

/// The paging state: physical memory, `mem_map` and the one page directory of 0.11.
///
/// The functions named after 0.11's are `#[inline(never)]`, so that a debugger can put a
/// breakpoint on `do_wp_page` or `copy_page_tables` in the kernel's release build.
pub struct Mm<P: PhysMem> {
    /// The machine's memory and TLB.
    pub phys: P,
    /// 0.11 `mem_map`.
    pub mem_map: MemMap,
    /// 0.11 `pg_dir`: the page directory every task shares.
    pg_dir: Frame,
    /// The page tables of the kernel's identity map (0.11 `pg0`..`pg3`).
    kernel_tables: [Frame; PDES_PER_TASK],
    /// How many of `kernel_tables` are in use (RAM / 4 MiB, rounded up).
    kernel_pdes: usize,
    /// Which search `get_free_page` uses.
    pub frame_search: FrameSearch,
    pub counters: MmCounters,
    /// 0.12's swap state, once `init_swapping` found a device.
    pub swap: Option<crate::swap::SwapMap>,
    /// The rows of the deviations table whose original behaviour is on (`compat=`).
    pub compat: Compat,
    /// True while the state is the one the last operation left, inside an operation
    /// that has changed nothing yet: from the start of a page fault's handling
    /// ([`Mm::begin_operation`]) until its first allocation returns. A swap write made
    /// then may let readers outside the machine in (`PhysMem::open_reader_window`).
    pub(crate) between_operations: bool,
}

impl<P: PhysMem> Mm<P> {
    /// Sets up the paging state the way 0.11's `head.s` and `mem_init` leave it: the page
    /// directory at `pg_dir` identity-maps `[0, end_mem)` through `kernel_tables` (one per
    /// 4 MiB; all of them lie below `start_mem`), and `mem_map` hands out
    /// `[start_mem, end_mem)`. Entries of the identity map are supervisor-only (D7).
    pub fn new(
        phys: P,
        pg_dir: Frame,
        kernel_tables: &[Frame],
        start_mem: u32,
        end_mem: u32,
    ) -> Mm<P> {
        let mut mem_map = MemMap::new();
        mem_map.mem_init(start_mem, end_mem);
        let high = mem_map.high_memory();
        let kernel_pdes = high.div_ceil(PDE_SPAN) as usize;
        assert!(
            kernel_tables.len() >= kernel_pdes,
            "need one kernel page table per 4 MiB"
        );
        let mut tables = [Frame::default(); PDES_PER_TASK];
        tables[..kernel_pdes].copy_from_slice(&kernel_tables[..kernel_pdes]);
        let mut mm = Mm {
            phys,
            mem_map,
            pg_dir,
            kernel_tables: tables,
            kernel_pdes,
            frame_search: FrameSearch::Bitmap,
            counters: MmCounters::default(),
            swap: None,
            compat: Compat::empty(),
            between_operations: false,
        };
        mm.phys.zero_frame(pg_dir);
        for (dir, &table) in tables[..kernel_pdes].iter().enumerate() {
            mm.phys.zero_frame(table);
            for index in 0..ENTRIES_PER_TABLE {
                let addr = LinearAddr::from_indices(dir, index).as_u32();
                if addr < high {
                    mm.phys.write_entry(
                        table,
                        index,
                        Entry::new(Frame::containing(addr), KERNEL_RW),
                    );
                }
            }
            mm.phys
                .write_entry(pg_dir, dir, Entry::new(table, KERNEL_RW));
        }
        mm
    }

    /// The page directory's frame (what CR3 holds).
    pub fn pg_dir(&self) -> Frame {
        self.pg_dir
    }
    /// 0.11 `HIGH_MEMORY`.
    pub fn high_memory(&self) -> u32 {
        self.mem_map.high_memory()
    }
    /// Page-directory entries used by the kernel's identity map.
    pub fn kernel_pdes(&self) -> usize {
        self.kernel_pdes
    }
    /// The identity map's page tables.
    pub fn kernel_tables(&self) -> &[Frame] {
        &self.kernel_tables[..self.kernel_pdes]
    }

    /// Page-directory entry `index`.
    pub fn pde(&self, index: usize) -> Entry {
        self.phys.read_entry(self.pg_dir, index)
    }
    /// Writes page-directory entry `index` (for the kernel's debugging tools).
    pub fn set_pde(&mut self, index: usize, entry: Entry) {
        self.phys.write_entry(self.pg_dir, index, entry);
    }

    /// The page table directory entry `dir` names, if it is one a page table can be (the
    /// check every reader of page tables goes through: [`PagingView::page_table`]).
    pub fn page_table(&self, dir: usize) -> Option<Frame> {
        crate::view::PagingView::page_table(self, dir)
    }

    /// The page-table entry of `addr`, if its page table exists: (table frame, index, entry).
    pub fn pte(&self, addr: LinearAddr) -> Option<(Frame, usize, Entry)> {
        let table = self.page_table(addr.dir_index())?;
        let index = addr.table_index();
        Some((table, index, self.phys.read_entry(table, index)))
    }

    /// Translates a linear address through the page tables, in software.
    pub fn translate(&self, addr: LinearAddr) -> Option<PhysAddr> {
        let (_, _, pte) = self.pte(addr)?;
        pte.is_present()
            .then(|| pte.frame().addr().offset(addr.page_offset()))
    }

    /// An operation begins from the state the last one left (a page fault's handling):
    /// until its first allocation returns, `swap_out` may let readers outside the machine
    /// see the state (`between_operations`). [`end_operation`](Self::end_operation)
    /// follows. (Two calls, not a closure: a debugger's backtrace through the fault path
    /// keeps the frames it had.)
    pub fn begin_operation(&mut self) {
        self.between_operations = true;
    }

    /// The operation [`begin_operation`](Self::begin_operation) began is over.
    pub fn end_operation(&mut self) {
        self.between_operations = false;
    }

    /// 0.11 `get_free_page`: the highest free frame, count 1, zero-filled; with the
    /// `policy` consulted first so that an injected failure changes nothing.
    ///
    /// D3: the search goes through a bitmap instead of 0.11's linear scan; the frame it
    /// returns is the same (see `mem_map.rs`).
    #[inline(never)]
    pub fn get_free_page_with(
        &mut self,
        site: AllocSite,
        policy: &mut dyn FailurePolicy,
    ) -> Result<Frame, OutOfMemory> {
        if policy.should_fail(site) {
            self.counters.failures[site.index()] += 1;
            return Err(OutOfMemory {
                site,
                injected: true,
            });
        }
        // 0.12: "if (!__res && swap_out()) goto repeat;"
        let frame = loop {
            let found = match self.frame_search {
                FrameSearch::Bitmap => self.mem_map.take_highest_free(),
                FrameSearch::LinearScan0_11 => self
                    .mem_map
                    .scan_highest_free_0_11()
                    .map(|i| self.mem_map.take_index(i)),
            };
            if found.is_some() || !self.swap_out() {
                break found;
            }
        };
        let Some(frame) = frame else {
            self.counters.failures[site.index()] += 1;
            return Err(OutOfMemory {
                site,
                injected: false,
            });
        };
        self.phys.zero_frame(frame);
        self.counters.allocations[site.index()] += 1;
        // The frame is the operation's first change: no reader window from here on (a
        // failed allocation changed nothing).
        self.between_operations = false;
        Ok(frame)
    }

    /// [`get_free_page_with`](Self::get_free_page_with) with no failure injection.
    pub fn get_free_page(&mut self, site: AllocSite) -> Result<Frame, OutOfMemory> {
        self.get_free_page_with(site, &mut NeverFail)
    }

    /// 0.11 `free_page(addr)`: drops one reference. Frames below LOW_MEM are ignored, as
    /// in 0.11; a nonexistent or already free frame is an error (0.11 panics).
    #[inline(never)]
    pub fn free_page(&mut self, addr: PhysAddr) -> Result<(), MapCountError> {
        if addr.as_u32() < LOW_MEM {
            return Ok(());
        }
        if let Err(e) = self.mem_map.decrement(addr.frame()) {
            // D4: 0.11 stops the machine here.
            if self.compat.contains(Compat::D4) {
                match e {
                    MapCountError::Free(_) => panic!("trying to free free page ({e})"),
                    _ => panic!("trying to free nonexistent page ({e})"),
                }
            }
            return Err(e);
        }
        self.counters.frees += 1;
        Ok(())
    }

    /// 0.11 `free_page_tables(from, size)`: releases every page and page table of the
    /// 4 MiB-aligned range, clears the directory entries and flushes the TLB.
    ///
    /// D1: any range that overlaps task 0's slot (the kernel's identity map) is refused,
    /// where 0.11 only refuses `from == 0` (the seed text marks that check "BUG").
    ///
    /// The locals have 0.11's names (gdb, the stepping build): `dir` the directory entry
    /// (an index; 0.11's pointer is 4 times it), `pg_table` its page table, `nr` the entry.
    #[inline(never)]
    pub fn free_page_tables(
        &mut self,
        from: LinearAddr,
        size: u32,
    ) -> Result<FreedTables, FreeTablesError> {
        if from.as_u32() & (PDE_SPAN - 1) != 0 {
            // D22: 0.11 panics.
            if self.compat.contains(Compat::D22) {
                panic!("free_page_tables called with wrong alignment ({from})");
            }
            return Err(FreeTablesError::Misaligned(from));
        }
        // D1: 0.11 refuses only `from == 0` ("if (!from)", marked BUG in the seed text):
        // with compat=D1 a range of the kernel's slot above 0 goes on, and frees the
        // identity map's page tables and the frames they map.
        let kernel_range = if self.compat.contains(Compat::D1) {
            from.as_u32() == 0
        } else {
            from.as_u32() < TASK_SIZE
        };
        if kernel_range {
            if self.compat.contains(Compat::D22) {
                panic!("Trying to free up swapper memory space ({from})");
            }
            return Err(FreeTablesError::KernelMemory(from));
        }
        let count = size.div_ceil(PDE_SPAN) as usize;
        let first = from.dir_index();
        if first + count > ENTRIES_PER_TABLE {
            return Err(FreeTablesError::OutOfRange(from, size));
        }
        let mut freed = FreedTables::default();
        for dir in first..first + count {
            let pde = self.pde(dir);
            if !pde.is_present() {
                continue;
            }
            let Some(pg_table) = self.page_table(dir) else {
                // A damaged entry: its "table" is not read, only the entry is cleared.
                freed.note_bad_free(MapCountError::Nonexistent(pde.frame()));
                self.set_pde(dir, Entry::EMPTY);
                continue;
            };
            for nr in 0..ENTRIES_PER_TABLE {
                let pte = self.phys.read_entry(pg_table, nr);
                if pte.is_present() {
                    match self.free_page(pte.frame().addr()) {
                        Ok(()) => freed.pages += 1,
                        Err(e) => freed.note_bad_free(e),
                    }
                } else if pte.is_swap() {
                    // 0.12: swap_free(pte >> 1).
                    freed.swap_entries += 1;
                    if !self.free_swap_entry(pte) {
                        freed.bad_swap_entries += 1;
                    }
                }
                if pte.raw() != 0 {
                    self.phys.write_entry(pg_table, nr, Entry::EMPTY);
                }
            }
            match self.free_page(pg_table.addr()) {
                Ok(()) => freed.page_tables += 1,
                Err(e) => freed.note_bad_free(e),
            }
            self.set_pde(dir, Entry::EMPTY);
        }
        if let Some(swap) = self.swap.as_mut() {
            swap.note_progress();
        }
        self.phys.flush_tlb();
        Ok(freed)
    }

    /// 0.11 `copy_page_tables(from, to, size)`: gives `to` its own page tables mapping the
    /// same pages as `from`, write-protected on both sides, each page's count raised:
    /// copy-on-write for `fork`.
    ///
    /// The locals have 0.11's names, so that the seed texts' loop can be stepped in gdb
    /// (the stepping build): `from_dir`/`to_dir` walk the directory entries (indices here;
    /// 0.11's pointers are 4 times these, its directory being at 0), `from_page_table`/
    /// `to_page_table` are the two tables, `this_page` the entry being copied and `nr`
    /// its index (0.11 counts `nr` down to 0 while its table pointers move up).
    #[inline(never)]
    pub fn copy_page_tables(
        &mut self,
        from: LinearAddr,
        to: LinearAddr,
        size: u32,
        policy: &mut dyn FailurePolicy,
    ) -> Result<CopiedTables, CopyError> {
        if (from.as_u32() | to.as_u32()) & (PDE_SPAN - 1) != 0 {
            // D22: 0.11 panics.
            if self.compat.contains(Compat::D22) {
                panic!("copy_page_tables called with wrong alignment ({from}, {to})");
            }
            return Err(CopyError::Misaligned);
        }
        let count = size.div_ceil(PDE_SPAN) as usize;
        let (first_from, first_to) = (from.dir_index(), to.dir_index());
        if first_from + count > ENTRIES_PER_TABLE
            || first_to + count > ENTRIES_PER_TABLE
            || to.as_u32() < TASK_SIZE
        {
            return Err(CopyError::OutOfRange);
        }
        // 0.11: "when from == 0 we are copying kernel space for the first fork(): only
        // copy the first 160 pages (640 KiB)".
        let entries = if from.as_u32() == 0 {
            TASK0_COPY_ENTRIES
        } else {
            ENTRIES_PER_TABLE
        };
        let mut copied = CopiedTables::default();
        for (from_dir, to_dir) in (first_from..first_from + count).zip(first_to..) {
            // D12: 0.11 panics "copy_page_tables: already exist".
            if self.pde(to_dir).is_present() {
                return Err(CopyError::AlreadyExists(to_dir));
            }
            let from_pde = self.pde(from_dir);
            if !from_pde.is_present() {
                continue;
            }
            let from_page_table = self.page_table(from_dir).ok_or(CopyError::BadReference(
                MapCountError::Nonexistent(from_pde.frame()),
            ))?;
            let to_page_table = self
                .get_free_page_with(AllocSite::CopyPageTables, policy)
                .map_err(CopyError::OutOfMemory)?;
            self.set_pde(to_dir, Entry::new(to_page_table, USER_RW));
            copied.page_tables += 1;
            for nr in 0..entries {
                let this_page = self.phys.read_entry(from_page_table, nr);
                if this_page.is_swap() {
                    // 0.12: the parent gets the page back in a new frame (dirty), the child
                    // keeps the slot, so a slot is never named twice.
                    let page = self
                        .get_free_page_with(AllocSite::CopyPageTables, policy)
                        .map_err(CopyError::OutOfMemory)?;
                    if let Err(e) = self.phys.swap_read(this_page.swap_slot(), page) {
                        self.free_page(page.addr()).expect("just allocated");
                        return Err(CopyError::SwapIo(e));
                    }
                    if let Some(swap) = self.swap.as_mut() {
                        swap.counters.read_in += 1;
                    }
                    self.phys.write_entry(to_page_table, nr, this_page);
                    let back = Entry::new(page, USER_RW | EntryFlags::DIRTY);
                    self.phys.write_entry(from_page_table, nr, back);
                    copied.swap_entries += 1;
                    continue;
                }
                if !this_page.is_present() {
                    continue;
                }
                let shared = this_page.without_flags(EntryFlags::WRITABLE);
                // 0.11 compares `this_page > LOW_MEM` with the flag bits still set; the
                // frame address says the same thing plainly.
                let counted = this_page.frame().as_u32() >= LOW_MEM;
                if counted {
                    // D11: raise the count before writing either entry, so that a refused
                    // reference leaves the tables consistent for the caller's cleanup (D2).
                    self.mem_map
                        .increment(this_page.frame())
                        .map_err(|e| match e {
                            MapCountError::Overflow(f) => CopyError::CountOverflow(f),
                            other => CopyError::BadReference(other),
                        })?;
                    self.phys.write_entry(from_page_table, nr, shared);
                }
                self.phys.write_entry(to_page_table, nr, shared);
                copied.pages += 1;
            }
        }
        self.phys.flush_tlb();
        Ok(copied)
    }

    /// 0.11 `put_page(page, address)`: maps a frame (count 1) at a linear address with
    /// flags 7, allocating the page table when missing.
    #[inline(never)]
    pub fn put_page(
        &mut self,
        page: Frame,
        address: LinearAddr,
        policy: &mut dyn FailurePolicy,
    ) -> Result<(), PutPageError> {
        // D5: 0.11 only prints a warning for these two and maps the page anyway.
        match self.mem_map.count(page) {
            None => return Err(PutPageError::BadFrame(page)),
            Some(1) => {}
            Some(n) => return Err(PutPageError::NotExclusive(page, n)),
        }
        if let Some((_, _, old)) = self.pte(address) {
            if old.is_present() {
                return Err(PutPageError::AlreadyMapped(address, old));
            }
            // D23: the entry is the only record of its slot: swap it in, never map over it.
            if old.is_swap() {
                return Err(PutPageError::SwapEntry(address, old));
            }
        }
        let table = self.table_for(address, policy).map_err(|e| match e {
            TableError::OutOfMemory(oom) => PutPageError::OutOfMemory(oom),
            TableError::Damaged(pde) => PutPageError::DamagedTable(pde),
        })?;
        self.phys
            .write_entry(table, address.table_index(), Entry::new(page, USER_RW));
        // 0.11: "no need for invalidate": a not-present entry is never in the TLB.
        Ok(())
    }

    /// The page table covering `address`, allocated (site [`AllocSite::PageTable`]) and
    /// installed with flags 7 when missing.
    fn table_for(
        &mut self,
        address: LinearAddr,
        policy: &mut dyn FailurePolicy,
    ) -> Result<Frame, TableError> {
        let dir = address.dir_index();
        let pde = self.pde(dir);
        if pde.is_present() {
            return self.page_table(dir).ok_or(TableError::Damaged(pde));
        }
        let table = self.get_free_page_with(AllocSite::PageTable, policy)?;
        self.set_pde(dir, Entry::new(table, USER_RW));
        Ok(table)
    }

    /// 0.11 `un_wp_page(table_entry)`: makes the write-protected page at `address`
    /// writable for this task: in place when nobody else holds it, else by copying it.
    ///
    /// D8: the copy is made before the entry points at it, as 0.12 does (0.11 remaps
    /// first and copies after, exposing a zero page for a moment).
    #[inline(never)]
    pub fn un_wp_page(
        &mut self,
        address: LinearAddr,
        policy: &mut dyn FailurePolicy,
    ) -> Result<WpOutcome, WpError> {
        let (table, index, pte) = self.pte(address).ok_or(WpError::NotMapped(address))?;
        if !pte.is_present() {
            return Err(WpError::NotMapped(address));
        }
        let old = pte.frame();
        let counted = old.as_u32() >= LOW_MEM;
        if counted && self.mem_map.count(old) == Some(1) {
            self.phys
                .write_entry(table, index, pte.with_flags(EntryFlags::WRITABLE));
            self.phys.invalidate_page(address.page_base());
            return Ok(WpOutcome::MadeWritable(old));
        }
        let new = self
            .get_free_page_with(AllocSite::CowCopy, policy)
            .map_err(WpError::OutOfMemory)?;
        // get_free_page may have run swap_out, which can drop a clean page: if the entry
        // changed, give the frame back and let the access fault again on the new state.
        if self.phys.read_entry(table, index) != pte {
            self.free_page(new.addr()).expect("just allocated");
            return Ok(WpOutcome::Retry);
        }
        if counted {
            if let Err(e) = self.mem_map.decrement(old) {
                // Undo the allocation so that a corrupted count leaks nothing.
                let _ = self.mem_map.decrement(new);
                return Err(WpError::Corrupt(e));
            }
        }
        // D18: the copy holds what the old page held: keep its DIRTY bit. 0.11 maps `new | 7`,
        // so a copy made by `write_verify` with no store after it (a `read()` of 0 bytes)
        // looks clean, and `try_to_share` would hand another task modified data as if it
        // were the program's page.
        let dirty = if self.compat.contains(Compat::D18) {
            EntryFlags::empty()
        } else {
            pte.flags() & EntryFlags::DIRTY
        };
        let copy = Entry::new(new, USER_RW | dirty);
        if self.compat.contains(Compat::D8) {
            // D8, 0.11's order: "*table_entry = new_page | 7; invalidate();
            // copy_page(old_page,new_page);": until the copy, the task's entry names a
            // page of zeroes.
            self.phys.write_entry(table, index, copy);
            self.phys.invalidate_page(address.page_base());
            self.phys.copy_frame(old, new);
        } else {
            self.phys.copy_frame(old, new);
            self.phys.write_entry(table, index, copy);
            self.phys.invalidate_page(address.page_base());
        }
        Ok(WpOutcome::Copied { from: old, to: new })
    }

    /// 0.11 `do_wp_page(error_code, address)`: the write-protect fault of `page.s`
    /// (error code bit 0 set) for the task whose slot starts at `base`.
    #[inline(never)]
    pub fn do_wp_page(
        &mut self,
        error_code: u32,
        address: LinearAddr,
        base: LinearAddr,
        policy: &mut dyn FailurePolicy,
    ) -> Result<WpOutcome, WpError> {
        if !in_slot(address, base) {
            return Err(WpError::OutsideTask(address));
        }
        if error_code & fault_code::WRITE == 0 {
            return Err(WpError::NotAWrite(address));
        }
        // D23: the kernel makes every user directory entry P|RW|US: one without RW or US
        // (damaged on purpose) would fault forever however the page-table entry is set.
        let pde = self.pde(address.dir_index());
        if pde.is_present() && !(pde.is_writable() && pde.is_user()) {
            return Err(WpError::DirectoryProtection(address, pde));
        }
        match self.pte(address) {
            // D10: a stale TLB entry faulted; the entry is fine already.
            Some((_, _, pte)) if pte.is_present() && pte.is_writable() => {
                self.phys.invalidate_page(address.page_base());
                Ok(WpOutcome::AlreadyWritable(pte.frame()))
            }
            _ => self.un_wp_page(address, policy),
        }
    }

    /// 0.11 `write_verify(address)`: before the kernel writes user memory, breaks
    /// copy-on-write by hand, because the 386 ignores RW in ring 0 (CR0.WP is clear).
    /// Returns what `un_wp_page` did, or `None` when the page needed nothing (no page
    /// table, not present, or already writable).
    #[inline(never)]
    pub fn write_verify(
        &mut self,
        address: LinearAddr,
        policy: &mut dyn FailurePolicy,
    ) -> Result<Option<WpOutcome>, WpError> {
        match self.pte(address) {
            Some((_, _, pte)) if pte.is_present() && !pte.is_writable() => {
                self.un_wp_page(address, policy).map(Some)
            }
            _ => Ok(None),
        }
    }

    /// 0.11 `get_empty_page(address)`: a zero page mapped at `address`. 0.11 calls
    /// `oom()` on failure; the error goes to the caller, who does.
    #[inline(never)]
    pub fn get_empty_page(
        &mut self,
        address: LinearAddr,
        policy: &mut dyn FailurePolicy,
    ) -> Result<Frame, NoPageError> {
        let page = self.get_free_page_with(AllocSite::NoPage, policy)?;
        if let Err(e) = self.put_page(page, address, policy) {
            let _ = self.free_page(page.addr());
            return Err(match e {
                PutPageError::OutOfMemory(oom) => NoPageError::OutOfMemory(oom),
                other => NoPageError::PutPage(other),
            });
        }
        Ok(page)
    }

    /// 0.11 `try_to_share(address, p)`: maps the page at offset `offset` of the task at
    /// `from_base` into the task at `to_base`, if it is present and clean (never written:
    /// `(pte & 0x41) == 1`). Both entries become read-only; the count goes up.
    #[inline(never)]
    pub fn try_to_share(
        &mut self,
        offset: u32,
        from_base: LinearAddr,
        to_base: LinearAddr,
        policy: &mut dyn FailurePolicy,
    ) -> Result<bool, ShareError> {
        let from = LinearAddr::new(from_base.as_u32() + offset);
        let to = LinearAddr::new(to_base.as_u32() + offset);
        let Some((from_table, from_index, from_pte)) = self.pte(from) else {
            return Ok(false);
        };
        if !from_pte.is_present_and_clean() {
            return Ok(false);
        }
        let page = from_pte.frame();
        if page.as_u32() < LOW_MEM || page.as_u32() >= self.high_memory() {
            return Ok(false);
        }
        // D2: a page whose count is full is loaded again rather than shared.
        if !self.mem_map.can_increment(page) {
            return Ok(false);
        }
        // D12: 0.11 panics "try_to_share: to_page already exists".
        if let Some((_, _, to_pte)) = self.pte(to) {
            if to_pte.is_present() {
                return Err(ShareError::AlreadyExists(to));
            }
        }
        let to_table = self.table_for(to, policy).map_err(|e| match e {
            TableError::OutOfMemory(oom) => ShareError::OutOfMemory(oom),
            TableError::Damaged(pde) => ShareError::DamagedTable(pde),
        })?;
        // Allocating the table may have run swap_out and dropped the source page.
        if self.phys.read_entry(from_table, from_index) != from_pte {
            return Ok(false);
        }
        let shared = from_pte.without_flags(EntryFlags::WRITABLE);
        self.phys.write_entry(from_table, from_index, shared);
        self.phys.write_entry(to_table, to.table_index(), shared);
        self.phys.flush_tlb();
        self.mem_map
            .increment(page)
            .expect("checked by can_increment");
        Ok(true)
    }

    /// 0.11 `share_page(address)`: tries every other task running the same program.
    #[inline(never)]
    pub fn share_page(
        &mut self,
        offset: u32,
        ctx: &FaultContext<'_>,
        policy: &mut dyn FailurePolicy,
    ) -> Result<Option<Frame>, ShareError> {
        for &peer in ctx.peers {
            if peer == ctx.base {
                continue;
            }
            if self.try_to_share(offset, peer, ctx.base, policy)? {
                let to = LinearAddr::new(ctx.base.as_u32() + offset);
                return Ok(self.pte(to).map(|(_, _, e)| e.frame()));
            }
        }
        Ok(None)
    }

    /// 0.11 `do_no_page(error_code, address)`: the not-present fault of `page.s`. Past the
    /// program's data (or with no program) it maps a zero page; inside, it shares the
    /// page from another task running the program, or reads it from the image.
    #[inline(never)]
    pub fn do_no_page(
        &mut self,
        _error_code: u32,
        address: LinearAddr,
        ctx: &FaultContext<'_>,
        policy: &mut dyn FailurePolicy,
    ) -> Result<NoPageOutcome, NoPageError> {
        if !in_slot(address, ctx.base) {
            return Err(NoPageError::OutsideTask(address));
        }
        let address = address.page_base();
        if let Some((_, _, pte)) = self.pte(address) {
            // D10: a stale TLB entry faulted; 0.11 would put_page over the present
            // entry and leak its frame.
            if pte.is_present() {
                self.phys.invalidate_page(address);
                return Ok(NoPageOutcome::AlreadyPresent(pte.frame()));
            }
            if pte.is_swap() {
                // 0.12: "if (tmp && !(1 & tmp)) { swap_in((unsigned long *) page); return; }"
                return self
                    .swap_in(address, policy)
                    .map(NoPageOutcome::SwappedIn)
                    .map_err(NoPageError::SwapIn);
            }
        }
        let offset = address.as_u32() - ctx.base.as_u32();
        let program = match ctx.program {
            Some(p) if offset < p.end_data() => p,
            _ => {
                return self
                    .get_empty_page(address, policy)
                    .map(NoPageOutcome::ZeroPage)
            }
        };
        if let Some(frame) = self
            .share_page(offset, ctx, policy)
            .map_err(NoPageError::Share)?
        {
            return Ok(NoPageOutcome::Shared(frame));
        }
        let page = self.get_free_page_with(AllocSite::NoPage, policy)?;
        // 0.11 reads four blocks and zeroes what lies past end_data; the frame is already
        // zero-filled, so writing the bytes below end_data is the same.
        let bytes = program.page_bytes(offset);
        let len = bytes
            .len()
            .min(PAGE_SIZE as usize)
            .min((program.end_data() - offset) as usize);
        self.phys.write_bytes(page.addr(), &bytes[..len]);
        if let Err(e) = self.put_page(page, address, policy) {
            let _ = self.free_page(page.addr());
            return Err(match e {
                PutPageError::OutOfMemory(oom) => NoPageError::OutOfMemory(oom),
                other => NoPageError::PutPage(other),
            });
        }
        Ok(NoPageOutcome::Loaded(page))
    }
}

impl<P: PhysMem> Mm<P> {
    /// 0.11 `calc_mem()`: how many frames are free, then for every present directory
    /// entry from 2 up (0.11's loop starts at 2) how many present pages its table maps,
    /// in 0.11's words. 0.11 never calls it; here `debug(CALC_MEM)` prints it. A damaged
    /// directory entry's "table" is not read (see [`Mm::page_table`]): it is named.
    pub fn calc_mem(&self, out: &mut dyn fmt::Write) -> fmt::Result {
        writeln!(
            out,
            "{} pages free (of {})",
            self.mem_map.nr_free(),
            self.mem_map.nr_pages()
        )?;
        for dir in 2..ENTRIES_PER_TABLE {
            let pde = self.pde(dir);
            if !pde.is_present() {
                continue;
            }
            match self.page_table(dir) {
                Some(table) => {
                    let pages = (0..ENTRIES_PER_TABLE)
                        .filter(|&index| self.phys.read_entry(table, index).is_present())
                        .count();
                    writeln!(out, "Pg-dir[{dir}] uses {pages} pages")?;
                }
                None => writeln!(
                    out,
                    "Pg-dir[{dir}] names no valid page table ({:#010x})",
                    pde.raw()
                )?,
            }
        }
        Ok(())
    }
}

impl FreedTables {
    fn note_bad_free(&mut self, e: MapCountError) {
        self.bad_frees += 1;
        self.first_bad_free.get_or_insert(e);
    }
}

/// Whether `address` lies in the 64 MiB slot starting at `base`.
fn in_slot(address: LinearAddr, base: LinearAddr) -> bool {
    address.as_u32().wrapping_sub(base.as_u32()) < TASK_SIZE
}
