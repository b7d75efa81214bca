//! A small simulated Linux 0.11 kernel over `Mm<SimRam>`, shared by the integration tests:
//! a task table of 64 slots, an MMU that faults, and `checkmm`. Fork, exec, exit, every
//! fault and every kernel access to user memory run the kernel's own memory steps
//! (`mm::process`, `mm::fault`), so the tests exercise what the kernel runs.
//!
//! The layout is 0.11's `head.s`: the page directory at physical 0, the identity-map page
//! tables from 0x1000, paging memory from [`START_MEM`] to the end of the simulated RAM.
#![allow(dead_code)]

use std::rc::Rc;

use abi::errno::{EAGAIN, ENOMEM};
use abi::FaultCounts;
use mm::addr::{slot_base, Frame, LinearAddr, PhysAddr, NR_TASKS, PAGE_SIZE, TASK_SIZE};
use mm::check::live_slot_mask;
use mm::entry::{Entry, EntryFlags};
use mm::fault::{self, fault_code, Fault, FaultAction, KillCause, Peers, UserAccessError, Verdict};
use mm::memory::{AllocSite, CopyError, FailurePolicy, FaultContext, Mm, ProgramPages};
use mm::process::{self, ForkError};
use mm::sim::SimRam;
use mm::{CheckInput, Mismatch, PhysMem};

pub const KIB: u32 = 0x400;
pub const MIB: u32 = 0x10_0000;
/// 0.11 `pg_dir`: the page directory at physical 0.
pub const PG_DIR: Frame = frame(0);
/// `head.s` puts `pg0`..`pg3` right after the directory.
pub const KERNEL_TABLES: [Frame; 4] = [frame(0x1000), frame(0x2000), frame(0x3000), frame(0x4000)];
/// The first frame paging hands out (0.11 `main_memory_start`); [LOW_MEM, START_MEM) is
/// reserved (count USED), as the buffer cache is in 0.11.
pub const START_MEM: u32 = 0x0018_0000;
/// The default simulated RAM.
pub const DEFAULT_RAM: u32 = 4 * MIB;

/// A frame from a page-aligned address (panics otherwise).
pub const fn frame(addr: u32) -> Frame {
    match Frame::from_addr(addr) {
        Some(f) => f,
        None => panic!("unaligned frame"),
    }
}

pub const fn lin(addr: u32) -> LinearAddr {
    LinearAddr::new(addr)
}

/// The linear address of `offset` in task slot `slot`.
pub fn user(slot: usize, offset: u32) -> LinearAddr {
    LinearAddr::new(slot_base(slot).as_u32() + offset)
}

/// A paging state laid out like 0.11 after `head.s` and `mem_init`, over `ram` bytes.
pub fn new_mm(ram: u32) -> Mm<SimRam> {
    Mm::new(SimRam::new(ram), PG_DIR, &KERNEL_TABLES, START_MEM, ram)
}

/// RAM that leaves exactly `frames` frames for paging.
pub const fn ram_with_frames(frames: u32) -> u32 {
    START_MEM + frames * PAGE_SIZE
}

/// Allocates frames (held by the "kernel") until exactly `free` remain; returns them.
pub fn hog_until<P: PhysMem>(mm: &mut Mm<P>, free: usize) -> Vec<Frame> {
    let mut held = Vec::new();
    while mm.mem_map.nr_free() > free {
        held.push(
            mm.get_free_page(AllocSite::TaskStruct)
                .expect("hogging a free frame"),
        );
    }
    assert_eq!(
        mm.mem_map.nr_free(),
        free,
        "cannot hog down to {free} free frames"
    );
    held
}

/// Maps a fresh page holding `fill` at `linear` (allocating its page table if needed).
pub fn map_page<P: PhysMem>(mm: &mut Mm<P>, linear: LinearAddr, fill: u8) -> Frame {
    let page = mm.get_free_page(AllocSite::NoPage).expect("a free frame");
    mm.phys
        .write_bytes(page.addr(), &[fill; PAGE_SIZE as usize]);
    mm.put_page(page, linear, &mut mm::NeverFail)
        .expect("put_page");
    page
}

/// A page of 0x5A bytes at offset 0x3000 of slot 1, shared copy-on-write with slot 2.
pub fn shared_page<P: PhysMem>(mm: &mut Mm<P>) -> Frame {
    let page = map_page(mm, user(1, 0x3000), 0x5A);
    mm.copy_page_tables(slot_base(1), slot_base(2), TASK_SIZE, &mut mm::NeverFail)
        .expect("copy_page_tables");
    page
}

/// The page-table entry of `linear` (panics when the page table is missing).
pub fn pte_of<P: PhysMem>(mm: &Mm<P>, linear: LinearAddr) -> Entry {
    mm.pte(linear).expect("a page table").2
}

/// Overwrites the page-table entry of `linear` (the page table must exist).
pub fn set_pte<P: PhysMem>(mm: &mut Mm<P>, linear: LinearAddr, entry: Entry) {
    let (table, index, _) = mm.pte(linear).expect("a page table");
    mm.phys.write_entry(table, index, entry);
}

pub fn count<P: PhysMem>(mm: &Mm<P>, f: Frame) -> u8 {
    mm.mem_map.count(f).expect("a frame mem_map covers")
}

/// Runs checkmm and returns every mismatch, in the order reported.
pub fn checkmm_of<P: PhysMem>(
    mm: &Mm<P>,
    live_slots: &[usize],
    kernel_refs: &[Frame],
) -> Vec<Mismatch> {
    // Room for the per-slot bits too, so swap slots named twice or leaked are found.
    let mut scratch = vec![0u16; mm.mem_map.nr_pages() + mm::check::SWAP_SCRATCH_WORDS];
    let mut found = Vec::new();
    let input = CheckInput {
        live_slots: live_slot_mask(live_slots.iter().copied()),
        kernel_refs,
    };
    let summary = mm.check_mm(&input, &mut scratch, &mut |m| found.push(m));
    assert_eq!(
        summary.mismatches as usize,
        found.len(),
        "summary disagrees with the report"
    );
    found
}

/// A program image for `do_no_page`: `image` holds the executable's bytes (it may run past
/// `end_data`, like a file with a symbol table after its data); `page_bytes` cuts at
/// `end_data`, as the trait asks.
pub struct Program {
    pub name: &'static str,
    pub image: Vec<u8>,
    pub end_data: u32,
}

impl Program {
    /// A program whose bytes follow a pattern that depends on `seed` and never is 0, with
    /// one more page of non-zero "symbols" after `end_data`.
    pub fn patterned(name: &'static str, seed: u8, end_data: u32) -> Rc<Program> {
        let len = (end_data + PAGE_SIZE) as usize;
        let image = (0..len)
            .map(|i| {
                ((i as u32)
                    .wrapping_mul(31)
                    .wrapping_add(u32::from(seed) * 7)
                    % 251) as u8
                    + 1
            })
            .collect();
        Rc::new(Program {
            name,
            image,
            end_data,
        })
    }
    /// What a task running this program reads at `offset` before writing it.
    pub fn initial_byte(&self, offset: u32) -> u8 {
        if offset < self.end_data {
            self.image[offset as usize]
        } else {
            0
        }
    }
    pub fn initial_word(&self, offset: u32) -> u32 {
        u32::from_le_bytes(core::array::from_fn(|i| {
            self.initial_byte(offset + i as u32)
        }))
    }
}

impl ProgramPages for Program {
    fn end_data(&self) -> u32 {
        self.end_data
    }
    fn page_bytes(&self, offset: u32) -> &[u8] {
        let start = offset as usize;
        let end = (offset + PAGE_SIZE).min(self.end_data) as usize;
        if start >= end {
            &[]
        } else {
            &self.image[start..end]
        }
    }
}

/// The contents a task running `program` (or none) sees at `offset` before writing it.
pub fn initial_word(program: Option<&Program>, offset: u32) -> u32 {
    program.map_or(0, |p| p.initial_word(offset))
}

/// Failure injection: lets `skip` allocations at `site` (any site when `None`) succeed,
/// fails the next one, then disarms.
#[derive(Default)]
pub struct Injector {
    pub armed: bool,
    pub site: Option<AllocSite>,
    pub skip: u32,
    pub injected: u32,
}

impl Injector {
    pub fn fail_after(site: Option<AllocSite>, skip: u32) -> Injector {
        Injector {
            armed: true,
            site,
            skip,
            injected: 0,
        }
    }
}

impl FailurePolicy for Injector {
    fn should_fail(&mut self, site: AllocSite) -> bool {
        if !self.armed || self.site.is_some_and(|s| s != site) {
            return false;
        }
        if self.skip > 0 {
            self.skip -= 1;
            return false;
        }
        self.armed = false;
        self.injected += 1;
        true
    }
}

/// One task of the simulated kernel.
pub struct Task {
    /// 0.11 `current->executable`.
    pub program: Option<Rc<Program>>,
    /// The frame of its task structure (0.11 `copy_process`'s `get_free_page`).
    pub task_struct: Frame,
    /// Its page faults by outcome, booked as the kernel books them (`meminfo`).
    pub faults: FaultCounts,
}

/// Why a simulated system call or access failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SimError {
    /// fork or exec: no memory; the error number the kernel returns.
    NoMemory(i32),
    /// fork: no free task slot (`-EAGAIN`).
    NoSlot,
    /// A fault could not be resolved: the task was killed (0.11 `oom()`, or SIGSEGV).
    Killed,
    /// fork: `copy_page_tables` refused for another reason (cleaned up like ENOMEM).
    Copy(CopyError),
    /// A kernel access: the address is no page of the task (`EFAULT`).
    BadAddress,
    /// A kernel store: the page never settled present and writable (`ENOMEM`).
    Unsettled,
}

/// The simulated kernel: the kernel's task table and hardware, simulated; the memory steps
/// of fork, exec, exit and every fault are the kernel's own (`mm::process`, `mm::fault`).
pub struct SimKernel {
    pub mm: Mm<SimRam>,
    /// Index = slot; slot 0 (the kernel, task 0) is never a user task here.
    pub tasks: Vec<Option<Task>>,
    pub policy: Injector,
    /// Frames the kernel holds for itself (buffers), to shrink free memory.
    pub held: Vec<Frame>,
    /// Tasks killed by faults (out of memory, or illegal).
    pub kills: u32,
    /// Every kill, in order: the fault that caused it.
    pub kill_log: Vec<Fault>,
    /// A test that damaged the tables on purpose: exit may find bad references, and a
    /// fault may be killed for damaged state.
    pub tolerate_bad_frees: bool,
}

impl SimKernel {
    pub fn new(ram: u32) -> SimKernel {
        SimKernel {
            mm: new_mm(ram),
            tasks: (0..NR_TASKS).map(|_| None).collect(),
            policy: Injector::default(),
            held: Vec::new(),
            kills: 0,
            kill_log: Vec::new(),
            tolerate_bad_frees: false,
        }
    }

    pub fn free_frames(&self) -> usize {
        self.mm.mem_map.nr_free()
    }

    pub fn is_live(&self, slot: usize) -> bool {
        self.tasks[slot].is_some()
    }

    pub fn live_slots(&self) -> Vec<usize> {
        (1..NR_TASKS).filter(|&s| self.is_live(s)).collect()
    }

    pub fn program_of(&self, slot: usize) -> Option<Rc<Program>> {
        self.task(slot).program.clone()
    }

    pub fn task(&self, slot: usize) -> &Task {
        self.tasks[slot]
            .as_ref()
            .unwrap_or_else(|| panic!("no task in slot {slot}"))
    }

    fn free_slot(&self) -> Option<usize> {
        (1..NR_TASKS).find(|&s| self.tasks[s].is_none())
    }

    /// A new task with an empty address space.
    pub fn spawn(&mut self, program: Option<Rc<Program>>) -> Result<usize, SimError> {
        let slot = self.free_slot().ok_or(SimError::NoSlot)?;
        let task_struct = process::get_task_page(&mut self.mm, &mut self.policy)
            .map_err(|_| SimError::NoMemory(EAGAIN))?;
        self.tasks[slot] = Some(Task {
            program,
            task_struct,
            faults: FaultCounts::default(),
        });
        Ok(slot)
    }

    /// 0.11 `copy_process` + `copy_mem` (`mm::process::copy_process`, as the kernel's
    /// `sys_fork`).
    pub fn fork(&mut self, parent: usize) -> Result<usize, SimError> {
        let program = self.program_of(parent);
        let slot = self.free_slot().ok_or(SimError::NoSlot)?;
        match process::copy_process(&mut self.mm, parent, slot, &mut self.policy) {
            Ok(forked) => {
                self.tasks[slot] = Some(Task {
                    program,
                    task_struct: forked.task_page,
                    faults: FaultCounts::default(),
                });
                Ok(slot)
            }
            Err(e) => {
                if let ForkError::CopyMem(failed) = e {
                    assert_eq!(
                        failed.cleanup.bad_frees, 0,
                        "cleanup after a failed fork: {failed:?}"
                    );
                    if !matches!(failed.error, CopyError::OutOfMemory(_)) {
                        return Err(SimError::Copy(failed.error));
                    }
                }
                Err(SimError::NoMemory(e.errno()))
            }
        }
    }

    /// 0.11 `do_execve` (`mm::process::do_execve`): releases the slot's pages and runs
    /// `program` from scratch; an injected failure (site execve) changes nothing.
    pub fn exec(&mut self, slot: usize, program: Option<Rc<Program>>) -> Result<(), SimError> {
        let freed = process::do_execve(&mut self.mm, slot, &mut self.policy)
            .map_err(|_| SimError::NoMemory(ENOMEM))?;
        assert_eq!(freed.bad_frees, 0, "exec of slot {slot}: {freed:?}");
        let task = self.tasks[slot].as_mut().expect("live task");
        task.program = program;
        task.faults = FaultCounts::default();
        Ok(())
    }

    /// 0.11 `do_exit` and `release` (`mm::process`): the slot's pages, then the task page.
    pub fn exit(&mut self, slot: usize) {
        assert!(self.is_live(slot), "exit of empty slot {slot}");
        let freed = process::do_exit(&mut self.mm, slot);
        if !self.tolerate_bad_frees {
            assert_eq!(freed.bad_frees, 0, "exit of slot {slot}: {freed:?}");
        }
        let task = self.tasks[slot].take().expect("checked");
        process::release(&mut self.mm, task.task_struct).expect("task structure");
    }

    /// What the kernel does with a fault that killed the task: `do_exit`. A kill the
    /// test cannot have meant (a bad access, a kernel bug; damaged state unless the test
    /// damaged it) fails the test instead.
    fn kill(&mut self, slot: usize, fault: Fault) -> SimError {
        if let Verdict::Illegal(why) = fault.verdict {
            let meant = match why.cause() {
                KillCause::DeviceError => true,
                KillCause::DamagedState => true,
                KillCause::BadAccess | KillCause::KernelBug => false,
            };
            assert!(
                meant,
                "slot {slot}: {} at {} ({why:?})",
                why.why(),
                fault.linear
            );
        }
        self.kill_log.push(fault);
        self.exit(slot);
        self.kills += 1;
        SimError::Killed
    }

    /// The segment bases `share_page` tries for `slot`: the other live tasks running the
    /// same program, in the kernel's order (`mm::fault::Peers`).
    pub fn peers(&self, slot: usize) -> Vec<LinearAddr> {
        let Some(program) = self.task(slot).program.as_ref() else {
            return Vec::new();
        };
        Peers::of(slot, |s| {
            self.tasks[s]
                .as_ref()
                .and_then(|t| t.program.as_ref())
                .is_some_and(|p| Rc::ptr_eq(p, program))
        })
        .as_slice()
        .to_vec()
    }

    /// Runs `f` with the paging state, the task's fault context and the failure policy.
    fn with_context<R>(
        &mut self,
        slot: usize,
        f: impl FnOnce(&mut Mm<SimRam>, &FaultContext<'_>, &mut Injector) -> R,
    ) -> R {
        let program = self.program_of(slot);
        let peers = self.peers(slot);
        let ctx = FaultContext {
            base: slot_base(slot),
            program: program.as_deref().map(|p| p as &dyn ProgramPages),
            peers: &peers,
        };
        f(&mut self.mm, &ctx, &mut self.policy)
    }

    /// Books a fault as the kernel does (the task's counts), and kills the task when the
    /// fault was not resolved.
    fn finish(&mut self, slot: usize, fault: Fault) -> Result<FaultAction, SimError> {
        let action = fault.verdict.action();
        let task = self.tasks[slot].as_mut().expect("live task");
        action.count_in(&mut task.faults);
        if fault.verdict.is_resolved() {
            Ok(action)
        } else {
            Err(self.kill(slot, fault))
        }
    }

    /// A fault of the task's own access: `page.s`'s dispatch (`mm::fault::page_fault`),
    /// booked; an unresolved fault kills the task.
    pub fn page_fault(
        &mut self,
        slot: usize,
        linear: LinearAddr,
        error_code: u32,
    ) -> Result<FaultAction, SimError> {
        let fault = self.with_context(slot, |mm, ctx, policy| {
            fault::page_fault(mm, error_code, linear, ctx, policy)
        });
        self.finish(slot, fault)
    }

    /// A not-present fault of the task at `linear` (error code without P).
    pub fn no_page_fault(
        &mut self,
        slot: usize,
        linear: LinearAddr,
        error_code: u32,
    ) -> Result<FaultAction, SimError> {
        assert_eq!(error_code & fault_code::PRESENT, 0, "a not-present fault");
        self.page_fault(slot, linear, error_code)
    }

    /// 0.11 `write_verify` for one page of the task (`mm::fault::kernel_write_verify`).
    pub fn write_verify(&mut self, slot: usize, linear: LinearAddr) -> Result<(), SimError> {
        let fault = fault::kernel_write_verify(&mut self.mm, linear, &mut self.policy);
        match fault {
            None => Ok(()),
            Some(fault) => self.finish(slot, fault).map(|_| ()),
        }
    }

    /// What the MMU does on an access that succeeds: set ACCESSED, and DIRTY on a write.
    fn mark_access(&mut self, linear: LinearAddr, write: bool) {
        let (table, index, pte) = self.mm.pte(linear).expect("mapped");
        let flags = if write {
            EntryFlags::ACCESSED | EntryFlags::DIRTY
        } else {
            EntryFlags::ACCESSED
        };
        self.mm
            .phys
            .write_entry(table, index, pte.with_flags(flags));
    }

    /// A ring-3 access at `offset` of the task, as the MMU makes it: it faults until the
    /// access can complete (not present, or present, read-only and a write), each fault
    /// going to [`page_fault`](Self::page_fault); then returns the physical address the
    /// MMU translates it to.
    pub fn user_access(
        &mut self,
        slot: usize,
        offset: u32,
        write: bool,
    ) -> Result<PhysAddr, SimError> {
        assert!(offset < TASK_SIZE, "offset {offset:#x} outside the task");
        let linear = user(slot, offset);
        let write_bit = if write { fault_code::WRITE } else { 0 };
        // Under swap pressure an access can take a few faults: a copy-on-write break that
        // raced with swap_out (Retry), then a reload.
        for _ in 0..8 {
            match self.mm.pte(linear) {
                Some((_, _, pte)) if pte.is_present() => {
                    if write && !pte.is_writable() {
                        let code = fault_code::PRESENT | fault_code::WRITE | fault_code::USER;
                        self.page_fault(slot, linear, code)?;
                        continue;
                    }
                    self.mark_access(linear, write);
                    return Ok(self.mm.translate(linear).expect("present"));
                }
                _ => {
                    self.page_fault(slot, linear, write_bit | fault_code::USER)?;
                }
            }
        }
        panic!("the access at {linear} still faults after eight faults");
    }

    pub fn write_byte(&mut self, slot: usize, offset: u32, value: u8) -> Result<(), SimError> {
        let at = self.user_access(slot, offset, true)?;
        self.mm.phys.write_bytes(at, &[value]);
        Ok(())
    }

    pub fn read_byte(&mut self, slot: usize, offset: u32) -> Result<u8, SimError> {
        let at = self.user_access(slot, offset, false)?;
        let mut b = [0u8];
        self.mm.phys.read_bytes(at, &mut b);
        Ok(b[0])
    }

    pub fn write_word(&mut self, slot: usize, offset: u32, value: u32) -> Result<(), SimError> {
        assert_eq!(offset % 4, 0);
        let at = self.user_access(slot, offset, true)?;
        self.mm.phys.write_u32(at, value);
        Ok(())
    }

    pub fn read_word(&mut self, slot: usize, offset: u32) -> Result<u32, SimError> {
        assert_eq!(offset % 4, 0);
        let at = self.user_access(slot, offset, false)?;
        Ok(self.mm.phys.read_u32(at))
    }

    /// The word the task would read at `offset`, without faulting anything in: `None`
    /// when the page is not present.
    pub fn peek_word(&self, slot: usize, offset: u32) -> Option<u32> {
        let linear = user(slot, offset);
        if let Some((_, _, pte)) = self.mm.pte(linear) {
            if pte.is_swap() {
                // Swapped out: the word is on the disk, in the entry's slot.
                let disk = self
                    .mm
                    .phys
                    .disk
                    .as_ref()
                    .expect("a swap entry needs a disk");
                let page = &disk.pages[pte.swap_slot() as usize];
                let at = linear.page_offset() as usize;
                return Some(u32::from_le_bytes(page[at..at + 4].try_into().unwrap()));
            }
        }
        self.mm
            .translate(linear)
            .map(|at| self.mm.phys.read_u32(at))
    }

    /// Gives the simulated machine a swap disk of `pages` pages and starts swapping.
    pub fn with_swap(mut self, pages: u32) -> SimKernel {
        self.mm.phys.disk = Some(mm::sim::SimDisk::formatted(pages));
        self.mm.init_swapping().expect("a formatted disk");
        self
    }

    /// 0.11 `verify_area` for one page without the store that normally follows (a
    /// `read()` that returns 0 bytes): only `write_verify`.
    pub fn verify_area(&mut self, slot: usize, offset: u32) -> Result<(), SimError> {
        self.write_verify(slot, user(slot, offset))
    }

    /// A kernel store into user memory, as the kernel's `copy_to_user` makes it:
    /// `verify_area` for the page (`mm::fault::verify_page`: the page is faulted in as the
    /// task's own access would fault it (D9), then passed through `write_verify`, until it
    /// is present and writable), then a ring-0 store, which ignores RW (CR0.WP = 0).
    ///
    /// 0.11 lets the store itself fault the page in, after `write_verify`: `do_no_page`
    /// may then *share* the page read-only with another task, and the store writes into
    /// the peer's page. Faulting in before `write_verify` closes that hole.
    pub fn kernel_write_word(
        &mut self,
        slot: usize,
        offset: u32,
        value: u32,
    ) -> Result<(), SimError> {
        assert_eq!(offset % 4, 0);
        let linear = user(slot, offset);
        self.kernel_access(slot, |mm, ctx, policy, book| {
            fault::verify_page(mm, linear.page_base(), ctx, policy, book)
        })?;
        self.mark_access(linear, true);
        let at = self.mm.translate(linear).expect("present");
        self.mm.phys.write_u32(at, value);
        Ok(())
    }

    /// A kernel read of user memory, as the kernel's `copy_from_user` makes it: the page
    /// is faulted in as the task's own access would fault it (D9,
    /// `mm::fault::touch_for_read`), then read through the page tables.
    pub fn kernel_read_word(&mut self, slot: usize, offset: u32) -> Result<u32, SimError> {
        assert_eq!(offset % 4, 0);
        let linear = user(slot, offset);
        self.kernel_access(slot, |mm, ctx, policy, book| {
            fault::touch_for_read(mm, linear.page_base(), ctx, policy, book)
        })?;
        let at = self.mm.translate(linear).expect("present");
        Ok(self.mm.phys.read_u32(at))
    }

    /// Runs one of the kernel's accesses to the task's memory (`mm::fault`'s
    /// `verify_page`, `touch_for_read`), then books the faults it took as the kernel does
    /// and turns its outcome into the simulated system call's: an unresolved fault kills
    /// the task.
    fn kernel_access(
        &mut self,
        slot: usize,
        access: impl FnOnce(
            &mut Mm<SimRam>,
            &FaultContext<'_>,
            &mut Injector,
            &mut dyn FnMut(&Fault),
        ) -> Result<(), UserAccessError>,
    ) -> Result<(), SimError> {
        let (result, booked) = self.with_context(slot, |mm, ctx, policy| {
            let mut booked = Vec::new();
            let result = access(mm, ctx, policy, &mut |f: &Fault| booked.push(*f));
            (result, booked)
        });
        for fault in booked {
            self.finish(slot, fault)?;
        }
        match result {
            Ok(()) => Ok(()),
            Err(UserAccessError::Fault(fault)) => {
                self.finish(slot, fault)?;
                unreachable!("an unresolved fault kills the task");
            }
            Err(UserAccessError::BadAddress) => Err(SimError::BadAddress),
            Err(UserAccessError::Unsettled) => Err(SimError::Unsettled),
        }
    }

    /// Frames the kernel itself references: task structures and held frames.
    pub fn kernel_refs(&self) -> Vec<Frame> {
        self.tasks
            .iter()
            .flatten()
            .map(|t| t.task_struct)
            .chain(self.held.iter().copied())
            .collect()
    }

    /// checkmm with the live slots of the task table and the kernel's own frames.
    pub fn checkmm(&self) -> Vec<Mismatch> {
        checkmm_of(&self.mm, &self.live_slots(), &self.kernel_refs())
    }

    #[track_caller]
    pub fn assert_clean(&self) {
        let found = self.checkmm();
        assert!(found.is_empty(), "checkmm: {found:#?}");
    }

    /// Holds frames until exactly `free` remain.
    pub fn hold_until(&mut self, free: usize) {
        let more = hog_until(&mut self.mm, free);
        self.held.extend(more);
    }

    pub fn release_held(&mut self) {
        for f in std::mem::take(&mut self.held) {
            self.mm.free_page(f.addr()).expect("held frame");
        }
    }
}

/// A recording [`PhysMem`]: every operation the paging code performs, in order.
pub struct Recorder {
    pub ram: SimRam,
    pub log: Vec<Op>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Write { addr: PhysAddr, value: u32 },
    Zero(Frame),
    Copy { from: Frame, to: Frame },
    WriteBytes { addr: PhysAddr, len: usize },
    FlushTlb,
    Invalidate(LinearAddr),
}

impl Recorder {
    pub fn new_mm(ram: u32) -> Mm<Recorder> {
        Mm::new(
            Recorder {
                ram: SimRam::new(ram),
                log: Vec::new(),
            },
            PG_DIR,
            &KERNEL_TABLES,
            START_MEM,
            ram,
        )
    }
}

/// Where in the order of its operations `un_wp_page` zeroes the copy, copies the page
/// into it and points the entry at it (indices into the [`Recorder`]'s log), for a page
/// [`shared_page`] made, broken by slot 2; `last` is its last operation.
pub struct UnWpOrder {
    pub zero: usize,
    pub copy: usize,
    pub remap: usize,
    pub last: Op,
    /// The copy's first byte.
    pub copied_byte: u8,
}

/// Runs `un_wp_page` on a shared page with `compat`, recording what it does.
pub fn un_wp_page_order(compat: mm::compat::Compat) -> UnWpOrder {
    let mut mm = Recorder::new_mm(DEFAULT_RAM);
    mm.compat = compat;
    let old = shared_page(&mut mm);
    let (table, index, _) = mm.pte(user(2, 0x3000)).expect("a page table");
    mm.phys.log.clear();
    let outcome = mm
        .un_wp_page(user(2, 0x3000), &mut mm::NeverFail)
        .expect("un_wp_page");
    let mm::memory::WpOutcome::Copied { to, .. } = outcome else {
        panic!("expected a copy, found {outcome:?}");
    };
    let log = &mm.phys.log;
    let at = |wanted: Op| {
        log.iter()
            .position(|op| *op == wanted)
            .unwrap_or_else(|| panic!("no {wanted:?} in {log:?}"))
    };
    let mut byte = [0u8];
    mm.phys.read_bytes(to.addr(), &mut byte);
    UnWpOrder {
        zero: at(Op::Zero(to)),
        copy: at(Op::Copy { from: old, to }),
        remap: at(Op::Write {
            addr: table.addr().offset(index as u32 * 4),
            value: to.as_u32() | 7,
        }),
        last: *log.last().expect("a log"),
        copied_byte: byte[0],
    }
}

impl PhysMem for Recorder {
    fn read_u32(&self, addr: PhysAddr) -> u32 {
        self.ram.read_u32(addr)
    }
    fn write_u32(&mut self, addr: PhysAddr, value: u32) {
        self.log.push(Op::Write { addr, value });
        self.ram.write_u32(addr, value)
    }
    fn zero_frame(&mut self, frame: Frame) {
        self.log.push(Op::Zero(frame));
        self.ram.zero_frame(frame)
    }
    fn copy_frame(&mut self, from: Frame, to: Frame) {
        self.log.push(Op::Copy { from, to });
        self.ram.copy_frame(from, to)
    }
    fn write_bytes(&mut self, addr: PhysAddr, bytes: &[u8]) {
        self.log.push(Op::WriteBytes {
            addr,
            len: bytes.len(),
        });
        self.ram.write_bytes(addr, bytes)
    }
    fn read_bytes(&self, addr: PhysAddr, out: &mut [u8]) {
        self.ram.read_bytes(addr, out)
    }
    fn flush_tlb(&mut self) {
        self.log.push(Op::FlushTlb);
        self.ram.flush_tlb()
    }
    fn invalidate_page(&mut self, page: LinearAddr) {
        self.log.push(Op::Invalidate(page));
        self.ram.invalidate_page(page)
    }
}
