//! The kernel's paging state: RAM sizing, the identity map and the one `Mm` (0.11's
//! `mem_init` and `head.s` `setup_paging`), behind a lock.

use core::sync::atomic::{AtomicU32, Ordering};

use mm::addr::{Frame, LOW_MEM, MAX_HIGH_MEMORY, PAGE_SIZE, PDE_SPAN};
use mm::compat::Compat;
use mm::inject::Injector;
use mm::memory::FrameSearch;
use mm::Mm;
use spin::Once;

use crate::arch::x86::debugger::Stopped;
use crate::arch::x86::multiboot::BootInfo;
use crate::arch::x86::phys::KernelPhys;
use crate::arch::x86::sync::StopLock;
use crate::publish::{self, PublishingGuard};

/// The least RAM the kernel runs with: the Linux 0.11 machine had 16 MiB, and `qemu -m 16M`
/// reports 128 KiB less (the firmware keeps the top for its tables), so the bar is 15 MiB.
pub const MIN_RAM: u32 = 15 << 20;

/// The paging state and the failure policy every allocation consults.
pub struct Paging {
    pub mm: Mm<KernelPhys>,
    /// Failure injection (Linux's knobs, per-task fail-nth): consulted by every
    /// allocation of the paging code before it changes anything.
    pub policy: KernelPolicy,
}

static PAGING: Once<StopLock<Paging>> = Once::new();

/// The failure-injection state, behind its own lock, taken only for each decision and
/// each change: a debugger stopped anywhere in the paging code (a breakpoint in
/// `do_wp_page`, with the paging lock held) can still set `monitor failnth` or `fail`
/// for the allocation that comes next.
static INJECTOR: Once<StopLock<Injector>> = Once::new();

/// The paging code's failure policy: each decision asks the [`Injector`] under its lock.
pub struct KernelPolicy;

impl mm::FailurePolicy for KernelPolicy {
    fn should_fail(&mut self, site: mm::AllocSite) -> bool {
        injector().should_fail_at(site)
    }
}

/// The locked injector: what changed is published when the guard drops.
pub type InjectorGuard = PublishingGuard<Injector>;

/// Locks the failure-injection state (taking it twice is a kernel bug: stops with a
/// message).
pub fn injector() -> InjectorGuard {
    try_injector().expect("failure-injection state locked twice")
}

/// Locks the failure-injection state, or `None` when it is held (the debugger stopped
/// the kernel inside a decision): the monitor answers Busy then.
pub fn try_injector() -> Option<InjectorGuard> {
    let guard = INJECTOR
        .get()
        .expect("failure injection used before paging::init")
        .try_lock()?;
    Some(PublishingGuard::new(guard, |i| {
        publish::publish_injector(i)
    }))
}

/// The failure-injection state as the gdb stub reads it, without the lock.
pub fn injector_while_stopped(stopped: &Stopped) -> Option<&Injector> {
    Some(INJECTOR.get()?.peek(stopped))
}

/// The locked paging state: the paging scalars are published when the guard drops.
pub type PagingGuard = PublishingGuard<Paging>;

/// `compat=`: the rows whose original behaviour is on, set once at boot ([`init`]); the
/// same value as `Mm::compat`, readable without the paging lock (the fault handler and
/// the user-memory checks need it where the lock may be held or must not be taken).
static COMPAT: AtomicU32 = AtomicU32::new(0);

/// The rows of the deviations table whose original behaviour is on.
pub fn compat() -> Compat {
    Compat::from_bits_truncate(COMPAT.load(Ordering::Relaxed))
}

/// 0.11's `HIGH_MEMORY` cap (D16, `compat=D16`).
const HIGH_MEMORY_0_11: u32 = 16 << 20;

/// Locks the paging state. Re-entering (a fault inside the paging code) is a kernel bug
/// and stops the kernel with a message instead of deadlocking.
pub fn paging() -> PagingGuard {
    try_paging().expect("paging state locked twice (a fault inside the paging code?)")
}

/// Locks the paging state, or `None` when it is held: the gdb stub's monitor, changing
/// the state of a stopped kernel (`fail`, `failnth`, `corrupt`), answers Busy then
/// rather than write under the stopped holder's feet.
pub fn try_paging() -> Option<PagingGuard> {
    let guard = PAGING
        .get()
        .expect("paging used before paging::init")
        .try_lock()?;
    Some(PublishingGuard::new(guard, |p| publish::publish_paging(p)))
}

/// The paging state as the gdb stub reads it, without taking the lock: the code that
/// holds the lock may be the code the debugger stopped (a breakpoint in `do_wp_page`).
/// It may be half-way through an update it had not finished. `None` before [`init`].
pub fn paging_while_stopped(stopped: &Stopped) -> Option<&Paging> {
    Some(PAGING.get()?.peek(stopped))
}

/// Why the machine cannot run the kernel.
#[derive(Debug)]
pub enum MemoryError {
    TooLittleRam { found: u64 },
    ReservedTooLarge { start_mem: u32, high: u32 },
}

impl core::fmt::Display for MemoryError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            MemoryError::TooLittleRam { found } => write!(
                f,
                "only {} KiB of RAM: this kernel needs at least {} MiB (run QEMU with -m 16M or more)",
                found / 1024,
                MIN_RAM >> 20
            ),
            MemoryError::ReservedTooLarge { start_mem, high } => write!(
                f,
                "kernel and image end at {start_mem:#x}, leaving no paging memory below {high:#x}"
            ),
        }
    }
}

/// What `init` decided, for the boot messages.
pub struct Layout {
    pub ram_end: u64,
    pub high_memory: u32,
    pub start_mem: u32,
    pub pg_dir: u32,
}

/// Sizes RAM, builds the page directory and the identity map in the frames right after
/// `reserved_end` (the kernel image and boot modules), sets up `mem_map` for the rest
/// (0.11 `mem_init(main_memory_start, memory_end)`) and turns paging on.
pub fn init(
    boot: &BootInfo,
    ram_end: u64,
    reserved_end: u32,
    linear_scan: bool,
    compat: Compat,
    policy: Injector,
) -> Result<Layout, MemoryError> {
    COMPAT.store(compat.bits(), Ordering::Relaxed);
    if ram_end < MIN_RAM as u64 {
        return Err(MemoryError::TooLittleRam {
            found: ram_end.saturating_sub(LOW_MEM as u64),
        });
    }
    // D16: 0.11 caps HIGH_MEMORY at 16 MiB; here the identity map fills task 0's slot.
    if ram_end > MAX_HIGH_MEMORY as u64 {
        println!(
            "memory: {} MiB of RAM, using the first {} MiB (the kernel's identity map must fit \
             in task 0's 64 MiB slot, as in Linux 0.11's layout)",
            ram_end >> 20,
            MAX_HIGH_MEMORY >> 20
        );
    }
    let cap = if compat.contains(Compat::D16) {
        if ram_end > HIGH_MEMORY_0_11 as u64 {
            println!("memory: using the first 16 MiB, as 0.11 caps HIGH_MEMORY (compat=D16)");
        }
        HIGH_MEMORY_0_11
    } else {
        MAX_HIGH_MEMORY
    };
    let high = (ram_end.min(cap as u64) as u32) & !(PAGE_SIZE - 1);
    // The directory and the identity map's tables: one table per 4 MiB of RAM, right after
    // the kernel and the image (D24: 0.11's directory is at physical 0).
    let pg_dir = reserved_end.next_multiple_of(PAGE_SIZE);
    let nr_tables = high.div_ceil(PDE_SPAN);
    let mut tables = [Frame::default(); mm::addr::PDES_PER_TASK];
    for (i, table) in tables.iter_mut().take(nr_tables as usize).enumerate() {
        *table = Frame::containing(pg_dir + PAGE_SIZE * (1 + i as u32));
    }
    let start_mem = pg_dir + PAGE_SIZE * (1 + nr_tables);
    if start_mem >= high {
        return Err(MemoryError::ReservedTooLarge { start_mem, high });
    }
    // [0, high) is RAM below the 64 MiB the identity map covers, identity-mapped now
    // (paging is off) and after enable_paging below.
    let phys = KernelPhys::take(boot, high);
    let mut mm = Mm::new(
        phys,
        Frame::containing(pg_dir),
        &tables[..nr_tables as usize],
        start_mem,
        high,
    );
    if linear_scan || compat.contains(Compat::D3) {
        mm.frame_search = FrameSearch::LinearScan0_11;
    }
    mm.compat = compat;
    // Mm::new identity-mapped [0, high), which holds the kernel, its stacks and the
    // tables themselves (enable_paging checks).
    crate::arch::x86::phys::enable_paging(&mm);
    INJECTOR.call_once(|| StopLock::new(policy));
    publish::publish_injector(&mut injector());
    PAGING.call_once(|| {
        StopLock::new(Paging {
            mm,
            policy: KernelPolicy,
        })
    });
    publish::init(&paging());
    Ok(Layout {
        ram_end,
        high_memory: high,
        start_mem,
        pg_dir,
    })
}

/// The program image, as `do_no_page` reads it.
pub struct ImageProgram(pub image::Program<'static>);

impl mm::ProgramPages for ImageProgram {
    fn end_data(&self) -> u32 {
        self.0.end_data
    }
    fn page_bytes(&self, offset: u32) -> &[u8] {
        let start = (offset as usize).min(self.0.data.len());
        let end = (start + PAGE_SIZE as usize).min(self.0.data.len());
        &self.0.data[start..end]
    }
}

/// 0.12 `init_swapping`: looks for a disk on the primary IDE bus and swaps to it when its
/// first page carries the `SWAP-SPACE` signature; otherwise says why and goes on without.
pub fn init_swap(enabled: bool) {
    if !enabled {
        println!("swap: off (swap=off)");
        return;
    }
    let disk = match crate::arch::x86::ata::probe() {
        Ok(disk) => disk,
        Err(e) => {
            println!("swap: no swap disk ({e}); running without swap");
            return;
        }
    };
    println!(
        "swap: disk '{}', {} KiB ({} pages) on the primary IDE master",
        disk.model(),
        disk.pages() * (PAGE_SIZE / 1024),
        disk.pages()
    );
    let mut p = paging();
    p.mm.phys.attach_swap_disk(disk);
    match p.mm.init_swapping() {
        Ok(free) => println!(
            "swap: {free} slots of 4 KiB free (0.12 swap bitmap, SWAP-SPACE signature found)"
        ),
        Err(e) => println!("swap: refusing the disk: {e}; running without swap"),
    }
}
