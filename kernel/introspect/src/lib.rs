//! The introspection descriptor: what the kernel publishes in its own RAM so that a reader
//! outside the machine (the host inspector, through QEMU's RAM file) finds the paging
//! state and reads it consistently without stopping the kernel, as Linux publishes
//! VMCOREINFO for crash and makedumpfile and a seqcount for the vDSO's readers.
//!
//! One definition of the layout for both sides. The kernel keeps one [`Descriptor`] in a
//! static and writes it; the inspector maps guest RAM and reads the same type at the
//! physical address that the [`Locator`] (always at [`LOCATOR_ADDR`]) or the ELF symbol
//! [`DESCRIPTOR_SYMBOL`] names. Every field is an [`AtomicU32`] (64-bit values are two of
//! them, [`Split64`]): no pointers, no `usize`, no padding, so the layout is the same on
//! i386 and on the host (the `const` assertions below check the sizes on both), and a
//! reader may load any field while the kernel stores it.
//!
//! The protocol (kernel/docs/introspection.md says it for readers in other languages):
//! - the descriptor holds the state itself where Rust's layout is not fixed (task
//!   summaries, the fault ring, the failure-injection state, counters) and the physical
//!   addresses of the plain arrays it does not copy (`mem_map`'s counts, the free-frame
//!   bitmap, the swap bitmap; the page directory and tables are wherever their entries
//!   say);
//! - [`Descriptor::seq`] is a sequence count: the kernel makes it odd before it changes
//!   any of that state and even after ([`Descriptor::begin_write`],
//!   [`Descriptor::end_write`]); a reader copies what it needs between two equal, even
//!   readings ([`Descriptor::read_begin`], [`Descriptor::read_retry`]) and otherwise tries
//!   again. Writers never wait for readers;
//! - the fault ring is also readable record by record without the count: each record
//!   carries its own sequence number, written last ([`FaultRing::push`], [`FaultRing::get`]).
#![no_std]
#![forbid(unsafe_code)]

#[cfg(test)]
extern crate std;

use core::sync::atomic::{fence, AtomicU32, Ordering};

use mm::addr::{NR_TASKS, PDES_PER_TASK};
use mm::inject::Injector;
use mm::mem_map::MemMap;
use mm::memory::{AllocSite, MmCounters};
use mm::swap::SwapMap;

/// A 32-bit word of the descriptor.
pub type Word = AtomicU32;

/// Where the [`Locator`] is, physically, in every kernel build (linker.ld puts the
/// `.introspect` section there, and the kernel refuses to boot if it moved).
pub const LOCATOR_ADDR: u32 = 0x0010_1000;
/// The ELF symbol of the kernel's [`Descriptor`] (`#[no_mangle]`).
pub const DESCRIPTOR_SYMBOL: &str = "PGKERNEL_DESCRIPTOR";
/// The ELF symbol of the kernel's [`Locator`].
pub const LOCATOR_SYMBOL: &str = "PGKERNEL_LOCATOR";
/// The locator's first two words: "PGKLOCAT" in little-endian bytes.
pub const LOCATOR_MAGIC: [u32; 2] = magic(b"PGKLOCAT");
/// The descriptor's first two words: "PGKDESCR".
pub const DESCRIPTOR_MAGIC: [u32; 2] = magic(b"PGKDESCR");
/// The layout version: raised on every change of any type in this crate.
pub const VERSION: u32 = 1;
/// Bytes of the build id kept (the GNU build-id note of the kernel ELF, SHA-1: 20).
pub const BUILD_ID_LEN: usize = 20;
/// Bytes of a task name, NUL-padded (abi's longest name and its NUL).
pub const NAME_LEN: usize = abi::MAX_NAME_LEN + 1;
/// Faults the ring keeps. The demo takes about 8,700 faults in 3 to 5 s; at its peak
/// (memhog touching memory) 900 in 10 ms, 2,200 in 50 ms, 4,000 in 100 ms (measured at
/// 32 MiB under TCG by polling the ring every millisecond from the RAM file). A reader
/// polling every 50 ms needs at most 27 % of the ring (docs/introspection.md).
pub const FAULT_RING_LEN: usize = 8192;
/// Allocation sites (mm's [`AllocSite::ALL`]).
pub const SITES: usize = AllocSite::ALL.len();
/// How many of the ring's faults `monitor faults` lists (the most recent; its answers
/// cross a 115200-baud line), and so the inspector's `faults` from the RAM file.
pub const FAULT_LOG_LEN: usize = 64;

const fn magic(bytes: &[u8; 8]) -> [u32; 2] {
    [
        u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]),
        u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]),
    ]
}

const fn word() -> Word {
    AtomicU32::new(0)
}

/// Stores a word for a reader outside the machine (relaxed: the sequence count orders).
fn put(w: &Word, value: u32) {
    w.store(value, Ordering::Relaxed);
}

/// Loads a word (relaxed: the sequence count orders).
fn get(w: &Word) -> u32 {
    w.load(Ordering::Relaxed)
}

/// A 64-bit value as two words (low first). Torn reads are caught by the sequence count.
#[repr(C)]
pub struct Split64 {
    pub lo: Word,
    pub hi: Word,
}

impl Split64 {
    pub const fn new() -> Split64 {
        Split64 {
            lo: word(),
            hi: word(),
        }
    }
    pub fn store(&self, value: u64) {
        put(&self.lo, value as u32);
        put(&self.hi, (value >> 32) as u32);
    }
    pub fn load(&self) -> u64 {
        u64::from(get(&self.lo)) | u64::from(get(&self.hi)) << 32
    }
}

impl Default for Split64 {
    fn default() -> Self {
        Split64::new()
    }
}

// ---------------------------------------------------------------------------------------
// The locator
// ---------------------------------------------------------------------------------------

/// The fixed-address record that names the descriptor, for a reader without the ELF.
#[repr(C)]
pub struct Locator {
    /// [`LOCATOR_MAGIC`], in the kernel image from the start.
    pub magic: [Word; 2],
    pub version: Word,
    /// The descriptor's physical address; 0 until the kernel published it (early boot).
    pub descriptor: Word,
    /// `size_of::<Descriptor>()`.
    pub size: Word,
}

impl Locator {
    /// The locator as it sits in the kernel image: magic and version set, no descriptor.
    pub const fn new() -> Locator {
        Locator {
            magic: [
                AtomicU32::new(LOCATOR_MAGIC[0]),
                AtomicU32::new(LOCATOR_MAGIC[1]),
            ],
            version: AtomicU32::new(VERSION),
            descriptor: word(),
            size: AtomicU32::new(core::mem::size_of::<Descriptor>() as u32),
        }
    }

    /// Kernel: names the descriptor (after it was published).
    pub fn point_to(&self, descriptor_addr: u32) {
        self.descriptor.store(descriptor_addr, Ordering::Release);
    }

    /// Reader: the descriptor's physical address, or why there is none.
    pub fn descriptor_addr(&self) -> Result<u32, LayoutError> {
        let magic = [get(&self.magic[0]), get(&self.magic[1])];
        if magic != LOCATOR_MAGIC {
            return Err(LayoutError::NoLocator { found: magic });
        }
        check_version_and_size(get(&self.version), get(&self.size))?;
        match self.descriptor.load(Ordering::Acquire) {
            0 => Err(LayoutError::NotPublished),
            addr => Ok(addr),
        }
    }
}

impl Default for Locator {
    fn default() -> Self {
        Locator::new()
    }
}

fn check_version_and_size(version: u32, size: u32) -> Result<(), LayoutError> {
    if version != VERSION {
        return Err(LayoutError::Version {
            found: version,
            expected: VERSION,
        });
    }
    let expected = core::mem::size_of::<Descriptor>() as u32;
    if size != expected {
        return Err(LayoutError::Size {
            found: size,
            expected,
        });
    }
    Ok(())
}

/// Why a reader cannot use what it found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayoutError {
    /// No locator magic at [`LOCATOR_ADDR`] (not this kernel, or not booted yet).
    NoLocator { found: [u32; 2] },
    /// The kernel has not published its descriptor yet (early boot).
    NotPublished,
    /// No descriptor magic at the address.
    NoDescriptor { found: [u32; 2] },
    /// Another layout version (another kernel build, older or newer).
    Version { found: u32, expected: u32 },
    /// The size the kernel wrote is not this layout's.
    Size { found: u32, expected: u32 },
}

impl core::fmt::Display for LayoutError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            LayoutError::NoLocator { found } => write!(
                f,
                "no introspection locator at {LOCATOR_ADDR:#x} (found {:#010x} {:#010x}): not this kernel, or not booted yet",
                found[0], found[1]
            ),
            LayoutError::NotPublished => {
                f.write_str("the kernel has not published its descriptor yet (early boot)")
            }
            LayoutError::NoDescriptor { found } => write!(
                f,
                "no introspection descriptor there (found {:#010x} {:#010x})",
                found[0], found[1]
            ),
            LayoutError::Version { found, expected } => write!(
                f,
                "descriptor layout version {found}, this reader knows version {expected}"
            ),
            LayoutError::Size { found, expected } => write!(
                f,
                "descriptor of {found} bytes, this reader's layout has {expected}"
            ),
        }
    }
}

// ---------------------------------------------------------------------------------------
// The descriptor
// ---------------------------------------------------------------------------------------

/// What identifies the kernel build and the boot.
#[repr(C)]
pub struct Header {
    /// [`DESCRIPTOR_MAGIC`], written last when the kernel publishes.
    pub magic: [Word; 2],
    pub version: Word,
    /// `size_of::<Descriptor>()`.
    pub size: Word,
    /// The kernel ELF's GNU build-id (its first [`BUILD_ID_LEN`] bytes), to tell builds apart.
    pub build_id: [Word; BUILD_ID_LEN / 4],
    /// Bytes of `build_id` that are meaningful (0: the build had no build-id note).
    pub build_id_len: Word,
    /// A value drawn at boot (the time-stamp counter, mixed), to tell boots apart.
    pub boot_id: Split64,
}

/// What the kernel decided at boot and never changes afterwards (swap excepted: its
/// addresses are set once when a disk is accepted).
#[repr(C)]
pub struct Layout {
    pub page_size: Word,
    /// Task slots (0.12 `NR_TASKS`).
    pub nr_tasks: Word,
    /// 0.11 `LOW_MEM`: the first frame `mem_map` counts.
    pub low_mem: Word,
    /// The first frame paging may hand out (0.11 `start_mem`).
    pub start_mem: Word,
    /// 0.11 `HIGH_MEMORY`: the end of the RAM the kernel manages.
    pub high_memory: Word,
    /// The physical address of the page directory (0.11 `pg_dir`).
    pub pg_dir: Word,
    /// Directory entries of the kernel's identity map, and the frames of its tables.
    pub kernel_pdes: Word,
    pub kernel_tables: [Word; PDES_PER_TASK],
    /// `mem_map`: the physical address of its counts (one byte per frame from LOW_MEM),
    /// the array's length, and how many of them this machine uses (0.11 `PAGING_PAGES`).
    pub mem_map: Word,
    pub mem_map_len: Word,
    pub nr_pages: Word,
    /// The free-frame index: bit `i % 32` of word `i / 32` set when frame index `i` is
    /// free; and its summary (bit `w` set when word `w` is not zero).
    pub free_bits: Word,
    pub free_bits_words: Word,
    pub free_summary: Word,
    pub free_summary_words: Word,
    /// `get_free_page`'s search: 0 the bitmap, 1 0.11's linear scan (`alloc=scan`).
    pub frame_search: Word,
}

/// The swap device's state (0.12 `swap.c`).
#[repr(C)]
pub struct SwapState {
    /// 1 once `init_swapping` accepted a disk.
    pub present: Word,
    /// The physical address of the slot bitmap (bit n set: slot n free) and its words.
    pub bitmap: Word,
    pub bitmap_words: Word,
    pub nr_slots: Word,
    pub nr_free: Word,
    /// `swap_out`'s clock hand and the thrash guard (D20).
    pub clock_dir: Word,
    pub clock_page: Word,
    pub drops_since_progress: Word,
    /// written out, dropped, read in, write errors, read errors, double frees.
    pub counters: [Split64; 6],
}

/// One failure site's knobs and counters (mm's `SiteState`).
#[repr(C)]
pub struct SiteState {
    pub probability: Word,
    pub interval: Word,
    /// `times` as an i32's bits (-1: unlimited).
    pub times: Word,
    pub space: Word,
    pub task_filter: Word,
    pub count: Word,
    pub space_left: Word,
    /// `times_left` as an i32's bits.
    pub times_left: Word,
    pub calls: Split64,
    pub fired: Split64,
}

impl SiteState {
    const fn new() -> SiteState {
        SiteState {
            probability: word(),
            interval: word(),
            times: word(),
            space: word(),
            task_filter: word(),
            count: word(),
            space_left: word(),
            times_left: word(),
            calls: Split64::new(),
            fired: Split64::new(),
        }
    }
}

/// Failure injection (mm's `Injector`).
#[repr(C)]
pub struct InjectState {
    pub seed: Split64,
    /// The generator's state (xorshift64*).
    pub rng: Split64,
    /// The slot allocations are made for.
    pub current: Word,
    /// The last injected failure: 0 none; else `1 | site << 8 | by_fail_nth << 16`.
    pub last: Word,
    pub last_slot: Word,
    pub sites: [SiteState; SITES],
    /// Per slot: `fail_nth`, and `make_it_fail` (0/1).
    pub fail_nth: [Word; NR_TASKS],
    pub make_it_fail: [Word; NR_TASKS],
}

/// What changes under the paging lock besides the tables and arrays themselves.
#[repr(C)]
pub struct PagingState {
    /// `mem_map`'s free frames (0.11 counts its zeros).
    pub nr_free: Word,
    /// mm's `MmCounters`: frames handed out and failed allocations by site, frames freed.
    pub allocations: [Word; SITES],
    pub failures: [Word; SITES],
    pub frees: Word,
    pub swap: SwapState,
    pub inject: InjectState,
}

/// A task's run state (0.11 `TASK_RUNNING`, `TASK_INTERRUPTIBLE`, `TASK_ZOMBIE`): the
/// documents' definition (`report`), which the kernel's task table keeps and the
/// descriptor publishes as [`task_state_code`].
pub use report::TaskState;

/// Every state, in the order of the published codes.
pub const TASK_STATES: [TaskState; 4] = [
    TaskState::Runnable,
    TaskState::Waiting,
    TaskState::Sleeping,
    TaskState::Zombie,
];

/// A state's published code (0 is an empty slot).
pub const fn task_state_code(state: TaskState) -> u32 {
    match state {
        TaskState::Runnable => 1,
        TaskState::Waiting => 2,
        TaskState::Sleeping => 3,
        TaskState::Zombie => 4,
    }
}

/// The state a published code names (`None`: 0, an empty slot, or an unknown code).
pub fn task_state_from_code(code: u32) -> Option<TaskState> {
    TASK_STATES.get(code.checked_sub(1)? as usize).copied()
}

/// One task slot, as published.
#[repr(C)]
pub struct TaskEntry {
    /// [`task_state_code`]; 0: no task in the slot.
    pub state: Word,
    pub pid: Word,
    /// The parent's slot (0: the kernel).
    pub parent: Word,
    /// The program's name, NUL-padded.
    pub name: [Word; NAME_LEN / 4],
    pub end_code: Word,
    pub end_data: Word,
    pub brk: Word,
    pub start_stack: Word,
    /// The task page (its kernel stack), a frame the kernel holds; 0 for task 0.
    pub task_page: Word,
    pub exit_status: Word,
    /// The signal `kill` set, plus one (0: none).
    pub killed: Word,
    /// Page faults since the program started: zero page, loaded, shared, COW copied,
    /// COW made writable, swapped in (abi's `FaultCounts`, in its order).
    pub faults: [Word; 6],
}

impl TaskEntry {
    const fn new() -> TaskEntry {
        TaskEntry {
            state: word(),
            pid: word(),
            parent: word(),
            name: [const { word() }; NAME_LEN / 4],
            end_code: word(),
            end_data: word(),
            brk: word(),
            start_stack: word(),
            task_page: word(),
            exit_status: word(),
            killed: word(),
            faults: [const { word() }; 6],
        }
    }
}

/// The task table (0.11 `task[NR_TASKS]`), as published.
#[repr(C)]
pub struct TaskTable {
    /// The running task's slot.
    pub current: Word,
    pub entries: [TaskEntry; NR_TASKS],
}

/// What the fault handler did about one fault: mm's definition (`mm::fault`), whose
/// [`FaultAction::index`] is the published code.
pub use mm::fault::FaultAction;

/// One remembered fault: the record `monitor faults` documents (`report`), so the ring,
/// the monitor and a reader outside the machine share one definition. The ring keeps its
/// sequence number in 32 bits and the error code's low byte (the architectural bits P,
/// W/R, U/S, RSVD, I/D).
pub use report::FaultRecord;

fn action_from_index(index: u32) -> Option<FaultAction> {
    FaultAction::ALL.get(index as usize).copied()
}

/// A record's place in the ring.
#[repr(C)]
pub struct FaultSlot {
    /// The record's sequence number, written last; 0 while it is being written.
    pub seq: Word,
    pub pid: Word,
    pub linear: Word,
    pub eip: Word,
    /// `error_code | action << 8 | by_kernel << 16`.
    pub info: Word,
}

impl FaultSlot {
    const fn new() -> FaultSlot {
        FaultSlot {
            seq: word(),
            pid: word(),
            linear: word(),
            eip: word(),
            info: word(),
        }
    }
}

/// The recent page faults and the totals since boot.
#[repr(C)]
pub struct FaultRing {
    /// The sequence number the next fault gets (0 or 1 before the first).
    pub next_seq: Word,
    /// Faults since boot, by [`FaultAction::index`].
    pub totals: [Split64; FaultAction::ALL.len()],
    /// Fault `seq` is at `records[seq % FAULT_RING_LEN]`.
    pub records: [FaultSlot; FAULT_RING_LEN],
}

/// Everything the kernel publishes (see the crate docs for the protocol).
#[repr(C)]
pub struct Descriptor {
    pub header: Header,
    /// The sequence count: odd while the kernel changes anything below.
    pub seq: Word,
    /// Non-zero while the gdb stub holds the kernel stopped (the state is then frozen,
    /// possibly in the middle of a change: the count may be odd).
    pub stopped: Word,
    /// How many times the stub has stopped the kernel since boot.
    pub stops: Word,
    pub layout: Layout,
    pub paging: PagingState,
    pub tasks: TaskTable,
    pub faults: FaultRing,
}

// The layout is the same on every target: only words, no padding. These sizes are part
// of the documented format (docs/introspection.md); a change raises VERSION.
const _: () = {
    use core::mem::size_of;
    assert!(size_of::<Split64>() == 8);
    assert!(size_of::<Locator>() == 20);
    assert!(size_of::<Header>() == 48);
    assert!(size_of::<Layout>() == 4 * (15 + PDES_PER_TASK));
    assert!(size_of::<SwapState>() == 4 * 8 + 8 * 6);
    assert!(size_of::<SiteState>() == 48);
    assert!(size_of::<InjectState>() == 8 + 8 + 12 + 48 * SITES + 8 * NR_TASKS);
    assert!(size_of::<TaskEntry>() == 4 * (3 + NAME_LEN / 4 + 7 + 6));
    assert!(size_of::<FaultSlot>() == 20);
    assert!(size_of::<FaultRing>() == 4 + 8 * 9 + 20 * FAULT_RING_LEN);
    assert!(NAME_LEN.is_multiple_of(4) && BUILD_ID_LEN.is_multiple_of(4));
};

/// The layout values, as plain numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LayoutValue {
    pub page_size: u32,
    pub nr_tasks: u32,
    pub low_mem: u32,
    pub start_mem: u32,
    pub high_memory: u32,
    pub pg_dir: u32,
    pub kernel_pdes: u32,
    pub kernel_tables: [u32; PDES_PER_TASK],
    pub mem_map: u32,
    pub mem_map_len: u32,
    pub nr_pages: u32,
    pub free_bits: u32,
    pub free_bits_words: u32,
    pub free_summary: u32,
    pub free_summary_words: u32,
    pub frame_search: u32,
}

/// The header, as plain values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeaderValue {
    pub build_id: [u8; BUILD_ID_LEN],
    pub build_id_len: usize,
    pub boot_id: u64,
}

impl HeaderValue {
    /// The meaningful bytes of the build id.
    pub fn build_id(&self) -> &[u8] {
        &self.build_id[..self.build_id_len.min(BUILD_ID_LEN)]
    }
}

impl Descriptor {
    /// An unpublished descriptor (all zero: it lives in .bss).
    pub const fn new() -> Descriptor {
        Descriptor {
            header: Header {
                magic: [word(), word()],
                version: word(),
                size: word(),
                build_id: [const { word() }; BUILD_ID_LEN / 4],
                build_id_len: word(),
                boot_id: Split64::new(),
            },
            seq: word(),
            stopped: word(),
            stops: word(),
            layout: Layout {
                page_size: word(),
                nr_tasks: word(),
                low_mem: word(),
                start_mem: word(),
                high_memory: word(),
                pg_dir: word(),
                kernel_pdes: word(),
                kernel_tables: [const { word() }; PDES_PER_TASK],
                mem_map: word(),
                mem_map_len: word(),
                nr_pages: word(),
                free_bits: word(),
                free_bits_words: word(),
                free_summary: word(),
                free_summary_words: word(),
                frame_search: word(),
            },
            paging: PagingState {
                nr_free: word(),
                allocations: [const { word() }; SITES],
                failures: [const { word() }; SITES],
                frees: word(),
                swap: SwapState {
                    present: word(),
                    bitmap: word(),
                    bitmap_words: word(),
                    nr_slots: word(),
                    nr_free: word(),
                    clock_dir: word(),
                    clock_page: word(),
                    drops_since_progress: word(),
                    counters: [const { Split64::new() }; 6],
                },
                inject: InjectState {
                    seed: Split64::new(),
                    rng: Split64::new(),
                    current: word(),
                    last: word(),
                    last_slot: word(),
                    sites: [const { SiteState::new() }; SITES],
                    fail_nth: [const { word() }; NR_TASKS],
                    make_it_fail: [const { word() }; NR_TASKS],
                },
            },
            tasks: TaskTable {
                current: word(),
                entries: [const { TaskEntry::new() }; NR_TASKS],
            },
            faults: FaultRing {
                next_seq: word(),
                totals: [const { Split64::new() }; FaultAction::ALL.len()],
                records: [const { FaultSlot::new() }; FAULT_RING_LEN],
            },
        }
    }

    // -- the writer (the kernel) --------------------------------------------------------

    /// Kernel: the layout, then the header with the magic last (Release), so a reader
    /// that sees the magic sees everything published before it.
    pub fn publish(&self, layout: &LayoutValue, build_id: &[u8], boot_id: u64) {
        let l = &self.layout;
        put(&l.page_size, layout.page_size);
        put(&l.nr_tasks, layout.nr_tasks);
        put(&l.low_mem, layout.low_mem);
        put(&l.start_mem, layout.start_mem);
        put(&l.high_memory, layout.high_memory);
        put(&l.pg_dir, layout.pg_dir);
        put(&l.kernel_pdes, layout.kernel_pdes);
        for (w, &v) in l.kernel_tables.iter().zip(&layout.kernel_tables) {
            put(w, v);
        }
        put(&l.mem_map, layout.mem_map);
        put(&l.mem_map_len, layout.mem_map_len);
        put(&l.nr_pages, layout.nr_pages);
        put(&l.free_bits, layout.free_bits);
        put(&l.free_bits_words, layout.free_bits_words);
        put(&l.free_summary, layout.free_summary);
        put(&l.free_summary_words, layout.free_summary_words);
        put(&l.frame_search, layout.frame_search);
        let h = &self.header;
        let n = build_id.len().min(BUILD_ID_LEN);
        let mut bytes = [0u8; BUILD_ID_LEN];
        bytes[..n].copy_from_slice(&build_id[..n]);
        for (w, chunk) in h.build_id.iter().zip(bytes.chunks_exact(4)) {
            put(
                w,
                u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]),
            );
        }
        put(&h.build_id_len, n as u32);
        h.boot_id.store(boot_id);
        put(&h.version, VERSION);
        put(&h.size, core::mem::size_of::<Descriptor>() as u32);
        put(&h.magic[0], DESCRIPTOR_MAGIC[0]);
        h.magic[1].store(DESCRIPTOR_MAGIC[1], Ordering::Release);
    }

    /// Kernel: the start of a change. Returns whether this call made the count odd (the
    /// outermost of nested changes did; an inner one finds it odd already and leaves it):
    /// pass the answer to [`end_write`](Self::end_write).
    ///
    /// Sound on one CPU with interrupts: if an interrupt handler's change runs between the
    /// load and the increment, it leaves the count even again, and the increment then
    /// makes it odd as intended.
    pub fn begin_write(&self) -> bool {
        if self.seq.load(Ordering::Relaxed) & 1 != 0 {
            return false;
        }
        self.seq.fetch_add(1, Ordering::Relaxed);
        // The odd count is visible before any store of the change (crossbeam's SeqLock).
        fence(Ordering::Release);
        true
    }

    /// Kernel: the end of a change begun by [`begin_write`](Self::begin_write).
    pub fn end_write(&self, owner: bool) {
        if owner {
            // Release: every store of the change is visible before the even count.
            self.seq.fetch_add(1, Ordering::Release);
        }
    }

    /// Kernel: the stub took (`true`) or released the kernel.
    pub fn set_stopped(&self, stopped: bool) {
        if stopped {
            self.stops.fetch_add(1, Ordering::Relaxed);
        }
        self.stopped.store(stopped as u32, Ordering::Release);
    }

    // -- the reader (outside the machine) -----------------------------------------------

    /// Reader: checks the magic, version and size, and returns the header.
    pub fn header(&self) -> Result<HeaderValue, LayoutError> {
        let h = &self.header;
        let magic = [
            h.magic[0].load(Ordering::Acquire),
            h.magic[1].load(Ordering::Acquire),
        ];
        if magic != DESCRIPTOR_MAGIC {
            return Err(if magic == [0, 0] {
                LayoutError::NotPublished
            } else {
                LayoutError::NoDescriptor { found: magic }
            });
        }
        check_version_and_size(get(&h.version), get(&h.size))?;
        let mut build_id = [0u8; BUILD_ID_LEN];
        for (chunk, w) in build_id.chunks_exact_mut(4).zip(&h.build_id) {
            chunk.copy_from_slice(&get(w).to_le_bytes());
        }
        Ok(HeaderValue {
            build_id,
            build_id_len: (get(&h.build_id_len) as usize).min(BUILD_ID_LEN),
            boot_id: h.boot_id.load(),
        })
    }

    /// Reader: the layout (fixed after boot; no sequence count needed).
    pub fn layout(&self) -> LayoutValue {
        let l = &self.layout;
        let mut kernel_tables = [0; PDES_PER_TASK];
        for (v, w) in kernel_tables.iter_mut().zip(&l.kernel_tables) {
            *v = get(w);
        }
        LayoutValue {
            page_size: get(&l.page_size),
            nr_tasks: get(&l.nr_tasks),
            low_mem: get(&l.low_mem),
            start_mem: get(&l.start_mem),
            high_memory: get(&l.high_memory),
            pg_dir: get(&l.pg_dir),
            kernel_pdes: get(&l.kernel_pdes),
            kernel_tables,
            mem_map: get(&l.mem_map),
            mem_map_len: get(&l.mem_map_len),
            nr_pages: get(&l.nr_pages),
            free_bits: get(&l.free_bits),
            free_bits_words: get(&l.free_bits_words),
            free_summary: get(&l.free_summary),
            free_summary_words: get(&l.free_summary_words),
            frame_search: get(&l.frame_search),
        }
    }

    /// Reader: the count before a copy; `None` while a change is in progress (odd).
    pub fn read_begin(&self) -> Option<u32> {
        let seq = self.seq.load(Ordering::Acquire);
        (seq & 1 == 0).then_some(seq)
    }

    /// Reader: whether what was copied since `read_begin` returned `start` may be torn
    /// (the count moved): then copy again.
    pub fn read_retry(&self, start: u32) -> bool {
        // The copy's loads happen before the second load of the count.
        fence(Ordering::Acquire);
        self.seq.load(Ordering::Relaxed) != start
    }

    /// Reader: the count now (odd: a change in progress, or frozen mid-change).
    pub fn seq_now(&self) -> u32 {
        self.seq.load(Ordering::Acquire)
    }

    /// Reader: whether the stub holds the kernel stopped, and how often it has.
    pub fn stopped(&self) -> (bool, u32) {
        (
            self.stopped.load(Ordering::Acquire) != 0,
            self.stops.load(Ordering::Relaxed),
        )
    }

    /// Reader: copies with `copy` between two equal, even counts, at most `tries` times.
    /// `copy` must only load (it runs again on a retry).
    pub fn read_consistent<T>(&self, tries: u32, mut copy: impl FnMut(&Self) -> T) -> Read<T> {
        let mut retries = 0;
        while retries < tries {
            let Some(start) = self.read_begin() else {
                retries += 1;
                core::hint::spin_loop();
                continue;
            };
            let value = copy(self);
            if !self.read_retry(start) {
                return Read::Consistent {
                    value,
                    seq: start,
                    retries,
                };
            }
            retries += 1;
        }
        Read::Changing { retries }
    }
}

impl Default for Descriptor {
    fn default() -> Self {
        Descriptor::new()
    }
}

/// What [`Descriptor::read_consistent`] got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Read<T> {
    /// A copy no change overlapped, consistent at count `seq`.
    Consistent { value: T, seq: u32, retries: u32 },
    /// The kernel kept changing (or stayed frozen mid-change) for every try.
    Changing { retries: u32 },
}

// ---------------------------------------------------------------------------------------
// The writer's copies of mm's state
// ---------------------------------------------------------------------------------------
//
// Here rather than in the kernel, and not generic, so that these copies are compiled as
// this crate is: the stepping build optimises it (Cargo.toml), because they run at the
// deepest point of the kernel's 4 KiB task stacks (when a lock's guard drops) and nobody
// steps through them.

impl PagingState {
    /// Kernel: the paging scalars (free frames, counters, swap), inside a change. `swap`
    /// comes with the physical address of its bitmap (where the kernel keeps it).
    pub fn store(&self, map: &MemMap, counters: &MmCounters, swap: Option<(&SwapMap, u32)>) {
        put(&self.nr_free, map.nr_free() as u32);
        for site in AllocSite::ALL {
            put(
                &self.allocations[site.index()],
                counters.allocations[site.index()],
            );
            put(
                &self.failures[site.index()],
                counters.failures[site.index()],
            );
        }
        put(&self.frees, counters.frees);
        let s = &self.swap;
        match swap {
            Some((swap, bitmap_addr)) => {
                put(&s.bitmap, bitmap_addr);
                put(&s.bitmap_words, swap.bitmap().len() as u32);
                put(&s.nr_slots, swap.nr_slots());
                put(&s.nr_free, swap.nr_free());
                let (dir, page) = swap.clock();
                put(&s.clock_dir, dir as u32);
                put(&s.clock_page, page as u32);
                put(&s.drops_since_progress, swap.drops_since_progress());
                let c = &swap.counters;
                let counters = [
                    c.written_out,
                    c.dropped,
                    c.read_in,
                    c.write_errors,
                    c.read_errors,
                    c.double_frees,
                ];
                for (w, v) in s.counters.iter().zip(counters) {
                    w.store(v);
                }
                put(&s.present, 1);
            }
            None => put(&s.present, 0),
        }
    }
}

impl InjectState {
    /// Kernel: what changed in the failure-injection state since the last store, inside
    /// a change.
    pub fn store(&self, policy: &mut Injector) {
        let changes = policy.take_changes();
        if changes.global {
            self.seed.store(policy.seed());
            self.rng.store(policy.rng_state());
            put(&self.current, policy.current() as u32);
        }
        // `last` is a public field (no change record): always.
        match policy.last {
            Some(last) => {
                put(
                    &self.last,
                    1 | (last.site.index() as u32) << 8 | u32::from(last.by_fail_nth) << 16,
                );
                put(&self.last_slot, last.slot as u32);
            }
            None => put(&self.last, 0),
        }
        for site in AllocSite::ALL
            .into_iter()
            .filter(|s| changes.sites & (1 << s.index()) != 0)
        {
            let s = policy.site(site);
            let w = &self.sites[site.index()];
            put(&w.probability, s.attr.probability.into());
            put(&w.interval, s.attr.interval);
            put(&w.times, s.attr.times as u32);
            put(&w.space, s.attr.space);
            put(&w.task_filter, s.attr.task_filter.into());
            put(&w.count, s.count());
            put(&w.space_left, s.space_left());
            put(&w.times_left, s.times_left() as u32);
            w.calls.store(s.calls);
            w.fired.store(s.fired);
        }
        for slot in (0..NR_TASKS).filter(|&n| changes.tasks & (1 << n) != 0) {
            if let Ok(t) = policy.task(slot) {
                put(&self.fail_nth[slot], t.fail_nth);
                put(&self.make_it_fail[slot], t.make_it_fail.into());
            }
        }
    }
}

impl InjectState {
    /// Reader: the failure-injection state as `fail` shows it (kernel/report's input).
    pub fn load(&self) -> report::FailState {
        use report::inputs::{LastFailure, SiteState as Site, TaskFailState};
        let mut state = report::FailState {
            seed: self.seed.load(),
            sites: [Site::default(); SITES],
            tasks: [TaskFailState::default(); NR_TASKS],
            last: None,
        };
        for (out, w) in state.sites.iter_mut().zip(&self.sites) {
            *out = Site {
                probability: get(&w.probability).min(100) as u8,
                interval: get(&w.interval),
                times: get(&w.times) as i32,
                times_left: get(&w.times_left) as i32,
                space: get(&w.space),
                filter: get(&w.task_filter) != 0,
                calls: w.calls.load(),
                fired: w.fired.load(),
            };
        }
        for (slot, out) in state.tasks.iter_mut().enumerate() {
            *out = TaskFailState {
                make_it_fail: get(&self.make_it_fail[slot]) != 0,
                fail_nth: get(&self.fail_nth[slot]),
            };
        }
        let last = get(&self.last);
        if last & 1 != 0 {
            state.last = AllocSite::ALL
                .get(((last >> 8) & 0xff) as usize)
                .map(|&site| LastFailure {
                    site,
                    slot: (get(&self.last_slot) as usize).min(NR_TASKS - 1),
                    by_fail_nth: (last >> 16) & 1 != 0,
                });
        }
        state
    }
}

// ---------------------------------------------------------------------------------------
// Task entries
// ---------------------------------------------------------------------------------------

/// One published task, as plain values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TaskValue {
    pub state: TaskState,
    pub pid: u32,
    pub parent: u32,
    pub name: [u8; NAME_LEN],
    pub end_code: u32,
    pub end_data: u32,
    pub brk: u32,
    pub start_stack: u32,
    pub task_page: u32,
    pub exit_status: u32,
    pub killed: Option<u32>,
    pub faults: abi::FaultCounts,
}

impl TaskValue {
    /// The name up to its first NUL (`?` when it is not UTF-8).
    pub fn name(&self) -> &str {
        let len = self.name.iter().position(|&b| b == 0).unwrap_or(NAME_LEN);
        core::str::from_utf8(&self.name[..len]).unwrap_or("?")
    }
}

/// Stores `value` unless the word holds it already; returns whether it changed.
fn update(w: &Word, value: u32) -> bool {
    let changed = get(w) != value;
    if changed {
        put(w, value);
    }
    changed
}

impl TaskEntry {
    /// Kernel: publishes `task` (`None`: the slot is empty). Returns whether anything
    /// changed; only changed words are stored.
    pub fn store(&self, task: Option<&TaskValue>) -> bool {
        let Some(t) = task else {
            return self.store_empty();
        };
        let name_len = t.name.iter().position(|&b| b == 0).unwrap_or(NAME_LEN);
        // `|` and not `||`: every field is stored.
        self.store_state(t.state)
            | update(&self.pid, t.pid)
            | update(&self.parent, t.parent)
            | self.store_name(&t.name[..name_len])
            | update(&self.end_code, t.end_code)
            | update(&self.end_data, t.end_data)
            | update(&self.brk, t.brk)
            | update(&self.start_stack, t.start_stack)
            | update(&self.task_page, t.task_page)
            | update(&self.exit_status, t.exit_status)
            | self.store_killed(t.killed)
            | self.store_faults(&t.faults)
    }

    /// Kernel: the slot is empty.
    pub fn store_empty(&self) -> bool {
        update(&self.state, 0)
    }

    /// Kernel: the run state.
    pub fn store_state(&self, state: TaskState) -> bool {
        update(&self.state, task_state_code(state))
    }

    /// Kernel: a plain word of the entry (pid, parent, end_code...), `field` one of them.
    pub fn store_word(field: &Word, value: u32) -> bool {
        update(field, value)
    }

    /// Kernel: the name, cut to `NAME_LEN - 1` bytes and NUL-padded, a word at a time
    /// (no copy of the name is built: a kernel under TCG pays for every byte moved).
    pub fn store_name(&self, name: &[u8]) -> bool {
        let name = &name[..name.len().min(NAME_LEN - 1)];
        let mut changed = false;
        for (i, w) in self.name.iter().enumerate() {
            let byte = |k: usize| name.get(i * 4 + k).copied().unwrap_or(0);
            changed |= update(w, u32::from_le_bytes([byte(0), byte(1), byte(2), byte(3)]));
        }
        changed
    }

    /// Kernel: the signal `kill` set, if any.
    pub fn store_killed(&self, killed: Option<u32>) -> bool {
        update(&self.killed, killed.map_or(0, |s| s.wrapping_add(1)))
    }

    /// Kernel: the fault counts.
    pub fn store_faults(&self, faults: &abi::FaultCounts) -> bool {
        let mut changed = false;
        for (w, v) in self.faults.iter().zip(faults.to_words()) {
            changed |= update(w, v);
        }
        changed
    }

    /// Reader: the task in the slot, `None` when empty (or the state code is unknown).
    pub fn load(&self) -> Option<TaskValue> {
        let state = task_state_from_code(get(&self.state))?;
        let mut name = [0u8; NAME_LEN];
        for (chunk, w) in name.chunks_exact_mut(4).zip(&self.name) {
            chunk.copy_from_slice(&get(w).to_le_bytes());
        }
        Some(TaskValue {
            state,
            pid: get(&self.pid),
            parent: get(&self.parent),
            name,
            end_code: get(&self.end_code),
            end_data: get(&self.end_data),
            brk: get(&self.brk),
            start_stack: get(&self.start_stack),
            task_page: get(&self.task_page),
            exit_status: get(&self.exit_status),
            killed: get(&self.killed).checked_sub(1),
            faults: abi::FaultCounts::from_words(core::array::from_fn(|i| get(&self.faults[i]))),
        })
    }
}

/// A name as the descriptor keeps it: the first `NAME_LEN - 1` bytes, NUL-padded.
pub fn name_bytes(name: &str) -> [u8; NAME_LEN] {
    let mut out = [0u8; NAME_LEN];
    let n = name.len().min(NAME_LEN - 1);
    out[..n].copy_from_slice(&name.as_bytes()[..n]);
    out
}

// ---------------------------------------------------------------------------------------
// The fault ring
// ---------------------------------------------------------------------------------------

impl FaultRing {
    /// Kernel: remembers a fault (its `seq` is assigned here) and counts it; returns the
    /// sequence number. The caller holds a change open ([`Descriptor::begin_write`]).
    pub fn push(&self, mut rec: FaultRecord) -> u32 {
        let seq = get(&self.next_seq).max(1);
        rec.seq = seq.into();
        let slot = &self.records[seq as usize % FAULT_RING_LEN];
        // Invalidate first: a reader of the old record sees it change (seq 0) before
        // any of its fields does.
        put(&slot.seq, 0);
        fence(Ordering::Release);
        put(&slot.pid, rec.pid);
        put(&slot.linear, rec.linear);
        put(&slot.eip, rec.eip);
        put(
            &slot.info,
            (rec.error_code & 0xff)
                | (rec.action.index() as u32) << 8
                | u32::from(rec.by_kernel) << 16,
        );
        slot.seq.store(seq, Ordering::Release);
        let total = &self.totals[rec.action.index()];
        total.store(total.load() + 1);
        self.next_seq.store(seq.wrapping_add(1), Ordering::Release);
        seq
    }

    /// The sequence number the next fault will get.
    pub fn next_seq(&self) -> u32 {
        self.next_seq.load(Ordering::Acquire).max(1)
    }

    /// Fault `seq`, if the ring still holds it whole (checked against its own sequence
    /// number before and after the copy, so it is never torn).
    pub fn get(&self, seq: u32) -> Option<FaultRecord> {
        if seq == 0 {
            return None;
        }
        let slot = &self.records[seq as usize % FAULT_RING_LEN];
        if slot.seq.load(Ordering::Acquire) != seq {
            return None;
        }
        let (pid, linear, eip, info) = (
            get(&slot.pid),
            get(&slot.linear),
            get(&slot.eip),
            get(&slot.info),
        );
        fence(Ordering::Acquire);
        if get(&slot.seq) != seq {
            return None;
        }
        Some(FaultRecord {
            seq: seq.into(),
            pid,
            linear,
            error_code: info & 0xff,
            eip,
            by_kernel: (info >> 16) & 1 != 0,
            action: action_from_index((info >> 8) & 0xff)?,
        })
    }

    /// Calls `f` for the last `n` faults the ring holds whole, oldest first (a record
    /// overwritten or being written meanwhile is left out).
    pub fn recent(&self, n: usize, mut f: impl FnMut(&FaultRecord)) {
        let next = self.next_seq();
        let first = next
            .saturating_sub(n.min(FAULT_RING_LEN) as u32)
            .max(self.oldest_seq());
        for seq in first..next {
            if let Some(r) = self.get(seq) {
                f(&r);
            }
        }
    }

    /// The oldest sequence number the ring can still hold.
    pub fn oldest_seq(&self) -> u32 {
        self.next_seq().saturating_sub(FAULT_RING_LEN as u32).max(1)
    }

    /// Faults since boot, by [`FaultAction::index`].
    pub fn totals(&self) -> [u64; FaultAction::ALL.len()] {
        let mut out = [0; FaultAction::ALL.len()];
        for (o, t) in out.iter_mut().zip(&self.totals) {
            *o = t.load();
        }
        out
    }
}

#[cfg(test)]
mod tests;
