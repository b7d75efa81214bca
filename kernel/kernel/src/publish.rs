//! What the kernel publishes in its introspection descriptor (kernel/introspect), and the
//! one sequence count that tells a reader outside the machine when it may trust a copy.
//!
//! The count is owned here and moved only by a [`Section`]: the paging lock opens one
//! when its holder first asks for `&mut` (`paging::PagingGuard`), the task-table lock
//! likewise (`task::TasksGuard`), a fault record opens one, the stub's own writes open
//! one. Sections nest: the outermost makes the count odd and even again, so an operation
//! that holds the task table while it changes the paging state (fork, the release of a
//! zombie) is one change for a reader. Everything a reader reads is changed inside a
//! section; at every even count the published state is one the kernel really was in
//! between operations (`checkmm` clean, checked by the inspector's never-torn test).
//!
//! The per-lock state is published when its guard drops, still inside the section: the
//! paging scalars (free frames, counters, swap, failure injection) and the task entries
//! (only words that changed are stored).

use introspect::{FaultRecord, LayoutValue, TaskEntry, BUILD_ID_LEN};
use mm::addr::{LOW_MEM, NR_TASKS, PAGE_SIZE, PDES_PER_TASK};
use mm::memory::FrameSearch;

use core::ops::{Deref, DerefMut};
use core::sync::atomic::{AtomicU32, Ordering};

use crate::arch::x86::cpu;
use crate::arch::x86::phys::KernelPhys;
use crate::arch::x86::published::{self, PGKERNEL_DESCRIPTOR as DESCRIPTOR, PGKERNEL_LOCATOR};
use crate::arch::x86::sync::StopLockGuard;
use crate::paging::Paging;
use crate::task::TaskTable;
use mm::inject::Injector;
use mm::Mm;

/// A change a reader must not see half-done: the count is odd while the outermost
/// section lives.
#[must_use = "the change ends when the section drops"]
pub struct Section {
    owner: bool,
}

/// How many sections are open, nested ones included (an interrupt's section opens and
/// closes on top of the interrupted code's): a reader window ([`open_reader_window`]) may end
/// the outermost only when it is the only one.
static OPEN_SECTIONS: AtomicU32 = AtomicU32::new(0);

/// Opens a section (nested ones leave the count alone).
pub fn section() -> Section {
    OPEN_SECTIONS.fetch_add(1, Ordering::Relaxed);
    Section {
        owner: DESCRIPTOR.begin_write(),
    }
}

impl Drop for Section {
    fn drop(&mut self) {
        DESCRIPTOR.end_write(self.owner);
        OPEN_SECTIONS.fetch_sub(1, Ordering::Relaxed);
    }
}

/// `mm::PhysMem::open_reader_window`: the paging state is between two operations, and
/// the paging code is about to only read it and write the swap disk for a while
/// (`swap_out`'s scan and write, from a page fault's first allocation). When the paging
/// guard's section is the only one open (a page fault's: not a fork, which holds the task
/// table too), the state is published and the count made even until
/// [`close_reader_window`], so a reader outside the machine can copy it meanwhile: under
/// TCG a 4 KiB PIO write is most of a swapping fault, and without the window memhog's
/// swapping keeps the count odd 99% of the time. False when another section is open.
pub fn open_reader_window(mm: &Mm<KernelPhys>) -> bool {
    if OPEN_SECTIONS.load(Ordering::Relaxed) != 1 {
        return false;
    }
    debug_assert!(
        DESCRIPTOR.seq_now() & 1 != 0,
        "the one open section owns the count"
    );
    publish_mm(mm);
    OPEN_SECTIONS.store(0, Ordering::Relaxed);
    DESCRIPTOR.end_write(true);
    true
}

/// `mm::PhysMem::close_reader_window`: the paging code changes the state again; the
/// paging guard's section goes on.
pub fn close_reader_window() {
    OPEN_SECTIONS.store(1, Ordering::Relaxed);
    // An interrupt's section always ends before the interrupted code resumes, so the
    // count is even here and this section owns it again.
    let owner = DESCRIPTOR.begin_write();
    assert!(owner, "a section was left open across a reader window");
}

/// A locked state the descriptor publishes: its first `&mut` opens a [`Section`]; when the
/// guard drops, `publish` copies the state into the descriptor and the section ends,
/// before the lock is released. Read-only use leaves the count alone.
pub struct PublishingGuard<T: 'static> {
    // Drop order: the section ends before the lock is released.
    section: Option<Section>,
    guard: StopLockGuard<'static, T>,
    publish: fn(&mut T),
}

impl<T: 'static> PublishingGuard<T> {
    pub fn new(guard: StopLockGuard<'static, T>, publish: fn(&mut T)) -> Self {
        PublishingGuard {
            section: None,
            guard,
            publish,
        }
    }
}

impl<T: 'static> Deref for PublishingGuard<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.guard
    }
}

impl<T: 'static> DerefMut for PublishingGuard<T> {
    fn deref_mut(&mut self) -> &mut T {
        if self.section.is_none() {
            self.section = Some(section());
        }
        &mut self.guard
    }
}

impl<T: 'static> Drop for PublishingGuard<T> {
    fn drop(&mut self) {
        if self.section.is_some() {
            (self.publish)(&mut self.guard);
        }
    }
}

/// A value that differs from boot to boot: the time-stamp counter (the host's, under
/// TCG), mixed by splitmix64 so that close boots give unrelated ids.
fn boot_id() -> u64 {
    let mut z = cpu::rdtsc().wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (z ^ (z >> 31)) | 1
}

/// Publishes the layout of the paging state (once, right after `paging::init`) and
/// points the locator at the descriptor. Stops the boot if the linker moved the locator.
pub fn init(paging: &Paging) {
    assert!(
        published::locator_in_place(),
        "the introspection locator is not at {:#x} (linker.ld)",
        introspect::LOCATOR_ADDR
    );
    let mm = &paging.mm;
    let mut kernel_tables = [0; PDES_PER_TASK];
    for (t, f) in kernel_tables.iter_mut().zip(mm.kernel_tables()) {
        *t = f.as_u32();
    }
    let map = &mm.mem_map;
    let layout = LayoutValue {
        page_size: PAGE_SIZE,
        nr_tasks: NR_TASKS as u32,
        low_mem: LOW_MEM,
        start_mem: map.start_mem(),
        high_memory: map.high_memory(),
        pg_dir: mm.pg_dir().as_u32(),
        kernel_pdes: mm.kernel_pdes() as u32,
        kernel_tables,
        mem_map: map.all_counts().as_ptr() as u32,
        mem_map_len: map.all_counts().len() as u32,
        nr_pages: map.nr_pages() as u32,
        free_bits: map.free_bits().as_ptr() as u32,
        free_bits_words: map.free_bits().len() as u32,
        free_summary: map.free_summary().as_ptr() as u32,
        free_summary_words: map.free_summary().len() as u32,
        frame_search: match mm.frame_search {
            FrameSearch::Bitmap => 0,
            FrameSearch::LinearScan0_11 => 1,
        },
    };
    let mut id = [0u8; BUILD_ID_LEN];
    let id_len = published::build_id(&mut id);
    {
        let _change = section();
        publish_paging(paging);
    }
    DESCRIPTOR.publish(&layout, &id[..id_len], boot_id());
    PGKERNEL_LOCATOR.point_to(published::descriptor_addr());
}

/// The paging scalars: called by the paging guard, inside its section, when it drops.
pub fn publish_paging(p: &Paging) {
    publish_mm(&p.mm);
}

/// The paging scalars of `mm` (free frames, counters, swap), inside a section.
fn publish_mm(mm: &Mm<KernelPhys>) {
    // The kernel's identity map: a pointer is the physical address.
    let swap = mm.swap.as_ref().map(|s| (s, s.bitmap().as_ptr() as u32));
    DESCRIPTOR.paging.store(&mm.mem_map, &mm.counters, swap);
}

/// The failure-injection state (what changed since the last time): called by the
/// injector guard, inside its section, when it drops.
pub fn publish_injector(policy: &mut Injector) {
    DESCRIPTOR.paging.inject.store(policy);
}

/// The entries of the slots in `dirty` (bit n: slot n), the fault counts of those in
/// `dirty_faults`, and the current slot: called by the task-table guard, inside its
/// section, when it drops. Only what changed is stored.
pub fn publish_tasks(t: &TaskTable, dirty: u64, dirty_faults: u64) {
    let d = &DESCRIPTOR.tasks;
    d.current
        .store(crate::task::current() as u32, Ordering::Relaxed);
    for n in Bits(dirty_faults) {
        if let (Some(Some(task)), Some(e)) = (t.slots.get(n), d.entries.get(n)) {
            e.store_faults(&task.faults);
        }
    }
    for n in Bits(dirty) {
        let (Some(slot), Some(e)) = (t.slots.get(n), d.entries.get(n)) else {
            break;
        };
        let Some(task) = slot else {
            e.store_empty();
            continue;
        };
        // Field by field into the entry: no intermediate copy (under TCG every byte a
        // copy moves costs a `rep movsb` iteration, on every fault).
        let word = TaskEntry::store_word;
        e.store_state(task.state);
        word(&e.pid, task.pid);
        word(&e.parent, task.parent as u32);
        e.store_name(task.name.as_str().as_bytes());
        word(&e.end_code, task.end_code);
        word(&e.end_data, task.end_data);
        word(&e.brk, task.brk);
        word(&e.start_stack, task.start_stack);
        word(&e.task_page, task.task_page.map_or(0, |f| f.as_u32()));
        word(&e.exit_status, task.exit_status);
        e.store_killed(task.killed);
        e.store_faults(&task.faults);
    }
}

/// The set bits of a mask, lowest first.
struct Bits(u64);

impl Iterator for Bits {
    type Item = usize;
    fn next(&mut self) -> Option<usize> {
        if self.0 == 0 {
            return None;
        }
        let n = self.0.trailing_zeros() as usize;
        self.0 &= self.0 - 1;
        Some(n)
    }
}

/// Remembers a fault in the descriptor's ring; returns its sequence number.
pub fn record_fault(rec: FaultRecord) -> u32 {
    let _change = section();
    DESCRIPTOR.faults.push(rec)
}

/// The descriptor's fault ring (the monitor's `faults` and the verdict read it).
pub fn fault_ring() -> &'static introspect::FaultRing {
    &DESCRIPTOR.faults
}

/// The stub took the kernel (`true`) or gave it back.
pub fn set_stopped(stopped: bool) {
    DESCRIPTOR.set_stopped(stopped);
}
