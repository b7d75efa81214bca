//! The kernel as a `gdbstub` target: threads, registers, linear memory, breakpoints,
//! resume actions, the memory map and `monitor` commands.

use core::convert::Infallible;
use core::fmt;

use gdbstub::common::{Signal, Tid};
use gdbstub::target::ext::base::multithread::{
    MultiThreadBase, MultiThreadResume, MultiThreadResumeOps, MultiThreadSchedulerLocking,
    MultiThreadSchedulerLockingOps, MultiThreadSingleStep, MultiThreadSingleStepOps,
};
use gdbstub::target::ext::base::BaseOps;
use gdbstub::target::ext::breakpoints::{
    Breakpoints as BreakpointsExt, BreakpointsOps, HwBreakpoint, HwBreakpointOps, HwWatchpoint,
    HwWatchpointOps, SwBreakpoint, SwBreakpointOps, WatchKind,
};
use gdbstub::target::ext::memory_map::{MemoryMap, MemoryMapOps};
use gdbstub::target::ext::monitor_cmd::{ConsoleOutput, MonitorCmd, MonitorCmdOps};
use gdbstub::target::ext::thread_extra_info::{ThreadExtraInfo, ThreadExtraInfoOps};
use gdbstub::target::{Target, TargetError, TargetResult};
use gdbstub_arch::x86::reg::X86CoreRegs;
use gdbstub_arch::x86::X86_SSE;
use mm::addr::LinearAddr;
use rsp::LineBuffer;

use super::breakpoints::Breakpoints;
use super::{frozen, memory, regs, stopped, threads};
use crate::arch::x86::debugreg::{EFLAGS_RF, EFLAGS_TF};
use crate::arch::x86::trap_entry::{TrapFrame, KERNEL_FRAME_SIZE};

/// gdb's error codes (errno values, as gdbserver uses them).
mod errno {
    /// Bad address: unmapped or refused memory.
    pub const EFAULT: u8 = 14;
    /// No such thread.
    pub const ESRCH: u8 = 3;
}

/// The memory map gdb gets: all of the 4 GiB linear space is "RAM", so gdb sends every
/// address and the stub decides (an unmapped page is an error reply, not a fault).
const MEMORY_MAP_XML: &str = concat!(
    r#"<?xml version="1.0"?>"#,
    r#"<!DOCTYPE memory-map PUBLIC "+//IDN gnu.org//DTD GDB Memory Map V1.0//EN" "http://sourceware.org/gdb/gdb-memory-map.dtd">"#,
    r#"<memory-map><memory type="ram" start="0x0" length="0x100000000"/></memory-map>"#
);

/// The state captured when the kernel stops.
pub struct Stopped {
    /// The stopping trap frame as gdb edits it (written back on resume).
    pub frame: TrapFrame,
    /// The frame as it was, to write back only what gdb changed.
    pub original: TrapFrame,
    /// Where the frame is on the kernel stack.
    pub frame_addr: u32,
    /// The slot of the task that was running.
    pub slot: usize,
    /// Stopped by an instruction breakpoint in a debug register: resume with RF.
    pub resume_flag: bool,
}

/// The kernel as `gdbstub` sees it.
pub struct KernelTarget {
    /// Set while the kernel is stopped in the stub.
    pub stopped: Option<Stopped>,
    pub breakpoints: Breakpoints,
    /// The thread gdb asked to single-step on the coming resume.
    step_request: Option<Tid>,
    /// The slot whose frame has TF set by the stub (a step under way).
    pub step_armed: Option<usize>,
    /// `monitor catch pagefault`: stop at every page fault before it is handled.
    pub catch_pagefault: bool,
    /// After a short read: the address where `gdbstub`'s next chunk of the same `m`
    /// request starts (it must read as nothing, not as later bytes).
    read_continuation: Option<u32>,
}

impl KernelTarget {
    pub const fn new() -> KernelTarget {
        KernelTarget {
            stopped: None,
            breakpoints: Breakpoints::new(),
            step_request: None,
            step_armed: None,
            catch_pagefault: false,
            read_continuation: None,
        }
    }

    /// Forgets everything a debugging session set up (memory must be lifted).
    pub fn end_session(&mut self) {
        self.breakpoints.clear();
        self.step_request = None;
        self.catch_pagefault = false;
        self.read_continuation = None;
        self.disarm_step();
    }

    /// Captures the stopping frame.
    pub fn begin_stop(&mut self, frame: &mut TrapFrame, slot: usize, resume_flag: bool) {
        self.disarm_step_in(frame, slot);
        self.step_request = None;
        self.read_continuation = None;
        self.stopped = Some(Stopped {
            frame: *frame,
            original: *frame,
            frame_addr: frame as *const TrapFrame as u32,
            slot,
            resume_flag,
        });
    }

    /// Writes back what gdb changed in the stopping frame and applies the resume actions
    /// (TF for a step, RF after an instruction breakpoint).
    pub fn end_stop(&mut self, frame: &mut TrapFrame) {
        let Some(stop) = self.stopped.take() else {
            return;
        };
        let edited = regs::frame_words(&stop.frame);
        let original = regs::frame_words(&stop.original);
        let mut words = regs::frame_words(frame);
        // A ring-0 frame has no user esp/ss: those words belong to the interrupted code.
        let len = if frame.from_user() {
            regs::FRAME_WORDS
        } else {
            KERNEL_FRAME_SIZE / 4
        };
        for i in 0..len {
            if edited[i] != original[i] {
                words[i] = edited[i];
            }
        }
        *frame = regs::frame_from_words(words);
        if stop.resume_flag {
            frame.eflags |= EFLAGS_RF;
        }
        let Some(step) = self.step_request.take() else {
            return;
        };
        let stopped = stopped();
        let f = frozen(&stopped);
        match threads::slot_of_tid(f.tasks, step) {
            Some(slot) if slot == stop.slot => {
                frame.eflags |= EFLAGS_TF;
                self.step_armed = Some(slot);
            }
            // Another thread: it steps when it runs again (a user task when it next
            // returns to user mode; task 0 inside `context::switch`, whose `popfl`
            // loads TF: the step ends one instruction after it, still in `switch`).
            Some(slot) if self.set_saved_tf(slot, true) => self.step_armed = Some(slot),
            Some(_) | None => {}
        }
    }

    /// Sets or clears TF in the saved state of a switched-out task (a user task's user
    /// frame, task 0's switch frame); false if there is none.
    fn set_saved_tf(&self, slot: usize, on: bool) -> bool {
        let stopped = stopped();
        let f = frozen(&stopped);
        let mm = &f.paging.mm;
        let apply = |eflags: u32| {
            if on {
                eflags | EFLAGS_TF
            } else {
                eflags & !EFLAGS_TF
            }
        };
        if slot == 0 {
            if crate::task::current() == 0 {
                return false;
            }
            return regs::update_switch_eflags(mm, crate::task::saved_esp(0), apply);
        }
        let Some(addr) = self.user_frame_addr(slot) else {
            return false;
        };
        let mut saved = regs::read_frame(mm, addr);
        let eflags = apply(saved.eflags);
        if eflags != saved.eflags {
            saved.eflags = eflags;
            regs::write_frame(addr, &saved);
        }
        true
    }

    /// Takes back a TF the stub set (in the stopping frame, if that task's, and in the
    /// task's saved user frame).
    fn disarm_step_in(&mut self, frame: &mut TrapFrame, slot: usize) {
        if self.step_armed == Some(slot) {
            frame.eflags &= !EFLAGS_TF;
        }
        self.disarm_step();
    }

    fn disarm_step(&mut self) {
        if let Some(slot) = self.step_armed.take() {
            self.set_saved_tf(slot, false);
        }
    }

    /// The user frame at the top of a user task's page (not task 0's).
    fn user_frame_addr(&self, slot: usize) -> Option<u32> {
        if slot == 0 {
            return None;
        }
        let stopped = stopped();
        let f = frozen(&stopped);
        let top = f.tasks.slots.get(slot)?.as_ref()?.kernel_stack_top()?;
        let addr = regs::user_frame_addr(top);
        regs::in_ram(&f.paging.mm, addr, regs::FRAME_WORDS * 4).then_some(addr)
    }

    /// The slot gdb's `tid` names.
    fn slot(&self, tid: Tid) -> TargetResult<usize, Self> {
        threads::slot_of_tid(frozen(&stopped()).tasks, tid).ok_or(TargetError::Errno(errno::ESRCH))
    }

    /// The running task's slot (the one stopped, or running now).
    pub fn current_slot(&self) -> usize {
        self.stopped
            .as_ref()
            .map_or_else(crate::task::current, |s| s.slot)
    }

    /// The running task's thread id.
    pub fn current_tid(&self) -> Tid {
        threads::tid_of_slot(frozen(&stopped()).tasks, self.current_slot()).unwrap_or(Tid::MIN)
    }
}

impl Target for KernelTarget {
    type Arch = X86_SSE;
    type Error = Infallible;

    fn base_ops(&mut self) -> BaseOps<'_, Self::Arch, Self::Error> {
        BaseOps::MultiThread(self)
    }

    fn support_breakpoints(&mut self) -> Option<BreakpointsOps<'_, Self>> {
        Some(self)
    }

    fn support_monitor_cmd(&mut self) -> Option<MonitorCmdOps<'_, Self>> {
        Some(self)
    }

    fn support_memory_map(&mut self) -> Option<MemoryMapOps<'_, Self>> {
        Some(self)
    }

    /// Keep acknowledgements: over a serial line a damaged packet is then sent again
    /// (the stub NAKs it) instead of being lost.
    fn use_no_ack_mode(&self) -> bool {
        false
    }
}

impl MultiThreadBase for KernelTarget {
    fn read_registers(&mut self, out: &mut X86CoreRegs, tid: Tid) -> TargetResult<(), Self> {
        let slot = self.slot(tid)?;
        if let Some(stop) = self.stopped.as_ref().filter(|s| s.slot == slot) {
            *out = regs::from_frame(&stop.frame, stop.frame_addr, slot);
            return Ok(());
        }
        let stopped = stopped();
        let f = frozen(&stopped);
        let mm = &f.paging.mm;
        if slot == 0 {
            *out = regs::from_switch_frame(mm, crate::task::saved_esp(0))
                .ok_or(TargetError::Errno(errno::EFAULT))?;
            return Ok(());
        }
        let addr = self
            .user_frame_addr(slot)
            .ok_or(TargetError::Errno(errno::EFAULT))?;
        *out = regs::from_frame(&regs::read_frame(mm, addr), addr, slot);
        Ok(())
    }

    fn write_registers(&mut self, new: &X86CoreRegs, tid: Tid) -> TargetResult<(), Self> {
        let slot = self.slot(tid)?;
        if let Some(stop) = self.stopped.as_mut().filter(|s| s.slot == slot) {
            regs::apply_to_frame(new, &mut stop.frame, slot);
            return Ok(());
        }
        let stopped = stopped();
        let f = frozen(&stopped);
        let mm = &f.paging.mm;
        if slot == 0 {
            return if regs::apply_to_switch_frame(mm, new, crate::task::saved_esp(0)) {
                Ok(())
            } else {
                Err(TargetError::Errno(errno::EFAULT))
            };
        }
        let addr = self
            .user_frame_addr(slot)
            .ok_or(TargetError::Errno(errno::EFAULT))?;
        let mut frame = regs::read_frame(mm, addr);
        regs::apply_to_frame(new, &mut frame, slot);
        regs::write_frame(addr, &frame);
        Ok(())
    }

    fn read_addrs(&mut self, start: u32, data: &mut [u8], _tid: Tid) -> TargetResult<usize, Self> {
        // gdbstub reads a long `m` in chunks and appends them: after a short chunk, the
        // following ones must come back empty or the reply would splice distant bytes.
        if self.read_continuation == Some(start) {
            self.read_continuation = Some(start.wrapping_add(data.len() as u32));
            return Ok(0);
        }
        let n = memory::read(&frozen(&stopped()).paging.mm, start, data);
        self.read_continuation = (n < data.len()).then(|| start.wrapping_add(data.len() as u32));
        if n == 0 {
            return Err(TargetError::Errno(errno::EFAULT));
        }
        Ok(n)
    }

    fn write_addrs(&mut self, start: u32, data: &[u8], _tid: Tid) -> TargetResult<(), Self> {
        self.read_continuation = None;
        memory::write(&frozen(&stopped()).paging.mm, start, data).map_err(|e| {
            note!("gdb: memory write refused: {e}");
            TargetError::Errno(errno::EFAULT)
        })
    }

    fn list_active_threads(
        &mut self,
        thread_is_active: &mut dyn FnMut(Tid),
    ) -> Result<(), Self::Error> {
        threads::for_each(
            frozen(&stopped()).tasks,
            self.current_slot(),
            thread_is_active,
        );
        Ok(())
    }

    fn support_resume(&mut self) -> Option<MultiThreadResumeOps<'_, Self>> {
        Some(self)
    }

    fn support_thread_extra_info(&mut self) -> Option<ThreadExtraInfoOps<'_, Self>> {
        Some(self)
    }
}

impl MultiThreadResume for KernelTarget {
    fn resume(&mut self) -> Result<(), Self::Error> {
        // The stop loop sees the state machine running and returns from the trap.
        Ok(())
    }

    fn clear_resume_actions(&mut self) -> Result<(), Self::Error> {
        self.step_request = None;
        Ok(())
    }

    fn set_resume_action_continue(
        &mut self,
        _tid: Tid,
        _signal: Option<Signal>,
    ) -> Result<(), Self::Error> {
        // Signals are not delivered: a stop for a page fault (catch pagefault) resumes
        // into the normal fault handling whatever signal gdb passes.
        Ok(())
    }

    fn support_single_step(&mut self) -> Option<MultiThreadSingleStepOps<'_, Self>> {
        Some(self)
    }

    fn support_scheduler_locking(&mut self) -> Option<MultiThreadSchedulerLockingOps<'_, Self>> {
        Some(self)
    }
}

impl MultiThreadSingleStep for KernelTarget {
    fn set_resume_action_step(
        &mut self,
        tid: Tid,
        _signal: Option<Signal>,
    ) -> Result<(), Self::Error> {
        self.step_request = Some(tid);
        Ok(())
    }
}

impl MultiThreadSchedulerLocking for KernelTarget {
    fn set_resume_action_scheduler_lock(&mut self) -> Result<(), Self::Error> {
        // One CPU, and the scheduler is the kernel's: the other tasks run as they would.
        Ok(())
    }
}

impl ThreadExtraInfo for KernelTarget {
    fn thread_extra_info(&self, tid: Tid, buf: &mut [u8]) -> Result<usize, Self::Error> {
        let stopped = stopped();
        let tasks = frozen(&stopped).tasks;
        Ok(match threads::slot_of_tid(tasks, tid) {
            Some(slot) => threads::describe(tasks, slot, self.current_slot(), buf),
            None => 0,
        })
    }
}

impl BreakpointsExt for KernelTarget {
    fn support_sw_breakpoint(&mut self) -> Option<SwBreakpointOps<'_, Self>> {
        Some(self)
    }
    fn support_hw_breakpoint(&mut self) -> Option<HwBreakpointOps<'_, Self>> {
        Some(self)
    }
    fn support_hw_watchpoint(&mut self) -> Option<HwWatchpointOps<'_, Self>> {
        Some(self)
    }
}

impl SwBreakpoint for KernelTarget {
    fn add_sw_breakpoint(&mut self, addr: u32, _kind: usize) -> TargetResult<bool, Self> {
        self.breakpoints
            .insert(&frozen(&stopped()).paging.mm, addr)
            .map_err(|e| {
                let hint = if LinearAddr::new(addr).slot() == 0 {
                    " (hbreak uses a debug register instead)"
                } else {
                    ""
                };
                note!("gdb: breakpoint refused: {e}{hint}");
                TargetError::Errno(errno::EFAULT)
            })
    }

    fn remove_sw_breakpoint(&mut self, addr: u32, _kind: usize) -> TargetResult<bool, Self> {
        Ok(self.breakpoints.remove(addr))
    }
}

impl HwBreakpoint for KernelTarget {
    fn add_hw_breakpoint(&mut self, addr: u32, _kind: usize) -> TargetResult<bool, Self> {
        if LinearAddr::new(addr).slot() != 0 {
            // User code runs in segments with a non-zero base, and QEMU's TCG (7.2)
            // matches a DR instruction breakpoint against eip instead of the linear
            // address: it takes the hit for one of its own and crashes. Data watchpoints
            // and `break` (int3) are fine there.
            note!(
                "gdb: hbreak at {addr:#010x} refused: an instruction breakpoint in a user \
                 slot crashes QEMU's TCG (segment base != 0); use break"
            );
            return Ok(false);
        }
        Ok(self.breakpoints.insert_hw_break(addr))
    }

    fn remove_hw_breakpoint(&mut self, addr: u32, _kind: usize) -> TargetResult<bool, Self> {
        Ok(self.breakpoints.remove_hw_break(addr))
    }
}

impl HwWatchpoint for KernelTarget {
    fn add_hw_watchpoint(
        &mut self,
        addr: u32,
        len: u32,
        kind: WatchKind,
    ) -> TargetResult<bool, Self> {
        Ok(self.breakpoints.insert_watch(addr, len, kind))
    }

    fn remove_hw_watchpoint(
        &mut self,
        addr: u32,
        len: u32,
        kind: WatchKind,
    ) -> TargetResult<bool, Self> {
        Ok(self.breakpoints.remove_watch(addr, len, kind))
    }
}

impl MemoryMap for KernelTarget {
    fn memory_map_xml(
        &self,
        offset: u64,
        length: usize,
        buf: &mut [u8],
    ) -> TargetResult<usize, Self> {
        let xml = MEMORY_MAP_XML.as_bytes();
        let start = usize::try_from(offset).map_or(xml.len(), |o| o.min(xml.len()));
        let n = length.min(buf.len()).min(xml.len() - start);
        buf[..n].copy_from_slice(&xml[start..start + n]);
        Ok(n)
    }
}

/// How much monitor output goes into one `O` packet at most.
const MONITOR_CHUNK: usize = 1024;

/// `fmt::Write` into gdb's console, a line (or [`MONITOR_CHUNK`] bytes) per `O` packet.
struct ConsoleWriter<'a, 'b> {
    out: &'a mut ConsoleOutput<'b>,
    buf: LineBuffer<MONITOR_CHUNK>,
}

impl ConsoleWriter<'_, '_> {
    fn finish(&mut self) {
        let out = &mut *self.out;
        self.buf.finish(&mut |chunk| out.write_raw(chunk));
    }
}

impl fmt::Write for ConsoleWriter<'_, '_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let out = &mut *self.out;
        self.buf
            .write(s.as_bytes(), &mut |chunk| out.write_raw(chunk));
        Ok(())
    }
}

impl MonitorCmd for KernelTarget {
    fn handle_monitor_cmd(
        &mut self,
        cmd: &[u8],
        mut out: ConsoleOutput<'_>,
    ) -> Result<(), Self::Error> {
        let mut writer = ConsoleWriter {
            out: &mut out,
            buf: LineBuffer::new(),
        };
        match core::str::from_utf8(cmd) {
            Ok(line) => {
                let stopped = stopped();
                let mut ctx = crate::monitor::Context {
                    stopped: &stopped,
                    catch_pagefault: &mut self.catch_pagefault,
                };
                crate::monitor::run(line.trim(), &mut ctx, &mut writer);
            }
            Err(_) => {
                let _ = fmt::Write::write_str(&mut writer, "monitor: the command is not UTF-8\n");
            }
        }
        writer.finish();
        Ok(())
    }
}
