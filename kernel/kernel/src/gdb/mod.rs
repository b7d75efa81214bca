//! The in-kernel gdb stub on COM1: `gdbstub` driven by the UART interrupt, so the kernel
//! runs until gdb interrupts it or a breakpoint, watchpoint or step stops it.
//!
//! How a stop works: the stop comes inside a trap (IRQ 4 for gdb's Ctrl-C or its first
//! packet, #BP, #DB, a page fault under `catch pagefault`, or the boot's `gdb=wait`).
//! The stub captures that trap's frame and loops, interrupts off, polling COM1 and
//! answering gdb, until gdb resumes or detaches; then it writes back the registers gdb
//! changed and returns from the trap. The whole kernel is stopped meanwhile, possibly in
//! the middle of holding the paging or task-table lock, so the stub reads that state
//! without locks ([`frozen`]).
//!
//! Every entry runs on the stub's own stack, lifts breakpoints out of memory (and
//! disarms the debug registers) while the stub runs, and plants them again on the way
//! out. Bytes from COM1 go through [`rsp::Framer`] first: `gdbstub` only ever sees whole,
//! checksummed packets. A `gdbstub` error on a packet (a malformed one) gets an error
//! reply and a fresh `gdbstub` state machine, and nothing else changes: the kernel goes
//! on, the session keeps its breakpoints. gdb's handshake (`qSupported:...`) in the
//! middle of a session means a new gdb (the old one was killed without detaching): the
//! session starts afresh, every breakpoint removed.
//!
//! Modes: *detached* (no session; the kernel runs, the first packet stops it),
//! *running* (a session; gdb waits for a stop reply) and *stopped* (the kernel is in the
//! stop loop).
//!
//! What gdb sees: one thread per task, thread id = pid + 1 (`info threads` names them,
//! "pid 3 ktest, slot 2, runnable"); registers as `regs.rs` explains (for a user task,
//! `eip` and `esp` are linear, the rest raw); memory by linear address as `memory.rs`
//! explains (writes and `int3`s refused on shared frames); a memory map that calls all
//! of the 4 GiB "RAM", so gdb asks for any address and the stub answers or errs.
//!
//! Limits:
//! - The FPU and SSE registers read as 0; segment registers, and `esp` of a ring-0
//!   frame, cannot be written; signals gdb passes on resume are ignored.
//! - Stepping a task that is not the stopped one arms TF in its saved state: the step
//!   ends when it next runs (task 0: inside `context::switch`). A step in user mode may
//!   let an interrupt, and other tasks, run first, as on the real machine.
//! - `break` needs the page present (the stub never demand-loads) and not shared;
//!   `hbreak` only in the kernel's slot (QEMU's TCG crashes on DR instruction
//!   breakpoints in code with a segment base); watchpoints work everywhere. An `int3` a
//!   task inherits by `fork` is taken out when the child reaches it, and gdb cannot put
//!   it back while the frame is shared.
//! - No breakpoints on the stub's own way in (trap entry, `trap::dispatch`, this module):
//!   an `int3` there recurses.
//! - While stopped, timer ticks are not counted (one is delivered on resume).
//! - The lock-free view may show an update the stopped code had half done.

/// Prints a line on the console from inside the stub. The stopped code may hold the
/// console lock (a breakpoint on `println!`'s path), where `println!` would panic; so,
/// like a crash report, this writes through `console::crash_writer`, which takes no
/// lock: nothing else runs while the stub does, and at worst the note lands in the
/// middle of a line the stopped code had begun.
macro_rules! note {
    ($($arg:tt)*) => {{
        // The crash writer never fails.
        let _ = core::fmt::Write::write_fmt(
            &mut $crate::console::crash_writer(),
            format_args!("{}\n", format_args!($($arg)*)),
        );
    }};
}

mod breakpoints;
mod conn;
mod memory;
mod regs;
mod target;
mod threads;

use core::sync::atomic::{AtomicBool, Ordering};

use gdbstub::common::Signal;
use gdbstub::stub::state_machine::GdbStubStateMachine;
use gdbstub::stub::{GdbStubBuilder, MultiThreadStopReason};
use mm::addr::LinearAddr;
use rsp::{Event, Framer};
use spin::Mutex;

use self::breakpoints::{Hit, HwUse};
use self::conn::{with_link, Com1Conn};
use self::target::KernelTarget;
use crate::arch::x86::debugger::Stopped;
use crate::arch::x86::trap_entry::TrapFrame;
use crate::arch::x86::{debugger, debugreg, idt, pic};
use crate::cmdline::GdbMode;
use crate::paging::Paging;
use crate::task::TaskTable;

/// The `gdbstub` state machine over COM1.
type Machine = GdbStubStateMachine<'static, KernelTarget, Com1Conn>;

/// Where the stub stands (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Detached,
    Running,
    Stopped,
}

/// The kernel state a stop can look at: read without the locks, because the stopped
/// code may hold them (see `paging::paging_while_stopped`).
pub struct Frozen<'a> {
    pub paging: &'a Paging,
    pub tasks: &'a TaskTable,
}

/// The paging state and the task table, for code that runs inside the stub (the proof
/// that the kernel is stopped bounds the references).
pub fn frozen(stopped: &Stopped) -> Frozen<'_> {
    Frozen {
        paging: crate::paging::paging_while_stopped(stopped)
            .expect("the stub starts after paging::init"),
        tasks: crate::task::tasks_while_stopped(stopped),
    }
}

/// The proof that the kernel is stopped, for code that `gdbstub` calls (the target's
/// methods), which runs only inside the stub.
pub fn stopped() -> Stopped {
    Stopped::here().expect("gdbstub runs only inside the stub")
}

/// The stub: `gdbstub`, the target, the framer and the mode.
struct Stub {
    /// `None` only between a failed call and its replacement.
    machine: Option<Machine>,
    target: KernelTarget,
    framer: Framer<{ debugger::PACKET_BUFFER_SIZE }>,
    mode: Mode,
    /// Packets handled by the current state machine (0: a fresh session).
    packets: u32,
    /// `gdbstub` failures (packets it could not handle, stops it could not report).
    errors: u32,
}

static STUB: Mutex<Option<Stub>> = Mutex::new(None);
/// Whether the stub is up (COM1 programmed, IRQ 4 on).
static ENABLED: AtomicBool = AtomicBool::new(false);
/// The boot's `gdb=wait` stop is due (the next kernel `int3` is it).
static BOOT_WAIT: AtomicBool = AtomicBool::new(false);

/// A fresh `gdbstub` state machine (idle: it takes gdb's first packet as an attach), in
/// `slot`, where the previous one (the only other holder of the packet buffer) is
/// dropped first.
fn new_machine(slot: &mut Option<Machine>, target: &mut KernelTarget) {
    let buffer = debugger::packet_buffer(slot);
    *slot = GdbStubBuilder::new(Com1Conn)
        .with_packet_buffer(buffer)
        .build()
        .ok()
        .and_then(|stub| stub.run_state_machine(target).ok());
}

/// Starts the stub on COM1 unless `gdb=off`; says so on the console.
pub fn init(mode: GdbMode) {
    if mode == GdbMode::Off {
        println!("gdb: stub off (gdb=off); COM1 untouched");
        return;
    }
    if !with_link(|link| link.init()).unwrap_or(false) {
        println!("gdb: no UART answers on COM1: stub off");
        return;
    }
    let mut target = KernelTarget::new();
    let mut machine = None;
    new_machine(&mut machine, &mut target);
    if machine.is_none() {
        println!("gdb: the gdbstub state machine did not start: stub off");
        return;
    }
    *STUB.lock() = Some(Stub {
        machine,
        target,
        framer: Framer::new(),
        mode: Mode::Detached,
        packets: 0,
        errors: 0,
    });
    ENABLED.store(true, Ordering::SeqCst);
    pic::unmask(pic::COM1_IRQ);
    println!(
        "gdb: stub on COM1 ({:#x}, IRQ {}): attach with `target remote` to QEMU's first -serial{}",
        crate::arch::x86::com1::COM1_BASE,
        pic::COM1_IRQ,
        if mode == GdbMode::Wait {
            " (gdb=wait: stopping before init runs)"
        } else {
            ""
        }
    );
}

/// `gdb=wait`: stops the kernel here until gdb attaches and continues.
pub fn wait_for_debugger() {
    if !ENABLED.load(Ordering::SeqCst) {
        return;
    }
    println!("gdb: waiting for gdb on COM1 (gdb=wait)");
    BOOT_WAIT.store(true, Ordering::SeqCst);
    debugreg::breakpoint_trap();
}

/// IRQ 4: bytes from gdb. Stops the kernel here for gdb's first packet or its Ctrl-C.
pub fn on_uart_interrupt(frame: &mut TrapFrame) {
    if !ENABLED.load(Ordering::Relaxed) {
        return;
    }
    debugger::on_stub_stack(|stopped| {
        with_link(|link| link.drain_uart());
        let Some(mut guard) = STUB.try_lock() else {
            return;
        };
        let Some(stub) = guard.as_mut() else { return };
        stub.target.breakpoints.lift(&frozen(stopped).paging.mm);
        stub.pump(frame);
        stub.target.breakpoints.plant(&frozen(stopped).paging.mm);
    });
}

/// #DB and #BP: returns whether the stub took it (a breakpoint, watchpoint or step of
/// the session); if not, the kernel handles it as before.
pub fn on_debug_exception(frame: &mut TrapFrame) -> bool {
    const DEBUG: u32 = idt::vector::DEBUG as u32;
    // The status must be read and cleared on every #DB, the stub's or not.
    let status = (frame.vector == DEBUG).then(debugreg::take_status);
    if !ENABLED.load(Ordering::Relaxed) {
        return false;
    }
    let mut handled = false;
    debugger::on_stub_stack(|stopped| {
        let Some(mut guard) = STUB.try_lock() else {
            // The stub itself, on its way in before it disarmed the debug registers
            // (gdb watches something the entry path touches): only the stub arms them,
            // and a data watchpoint is a trap (the access is done), so just go on.
            handled = status.is_some_and(|s| s.hit_slots != 0);
            return;
        };
        let Some(stub) = guard.as_mut() else { return };
        stub.target.breakpoints.lift(&frozen(stopped).paging.mm);
        handled = match status {
            Some(status) => stub.on_debug_trap(frame, status),
            None => stub.on_breakpoint_trap(frame, stopped),
        };
        stub.target.breakpoints.plant(&frozen(stopped).paging.mm);
    });
    handled
}

/// A user page fault, before it is handled: stops into gdb under `catch pagefault`.
pub fn on_page_fault(frame: &mut TrapFrame, linear: LinearAddr) {
    if !ENABLED.load(Ordering::Relaxed) {
        return;
    }
    debugger::on_stub_stack(|stopped| {
        let Some(mut guard) = STUB.try_lock() else {
            return;
        };
        let Some(stub) = guard.as_mut() else { return };
        if stub.mode != Mode::Running || !stub.target.catch_pagefault {
            return;
        }
        stub.target.breakpoints.lift(&frozen(stopped).paging.mm);
        let mut note = NoteBuffer::new();
        let _ = core::fmt::Write::write_fmt(
            &mut note,
            format_args!(
                "catch pagefault: pid {} at linear {linear} (error code {:#x}), eip {:#010x}\n",
                stub.current_pid(stopped),
                frame.error_code,
                regs::linear_eip(frame, crate::task::current())
            ),
        );
        with_link(|link| link.send_console(note.as_bytes()));
        let tid = stub.target.current_tid();
        stub.stop(
            frame,
            MultiThreadStopReason::SignalWithThread {
                tid,
                signal: Signal::SIGSEGV,
            },
            false,
        );
        stub.target.breakpoints.plant(&frozen(stopped).paging.mm);
    });
}

impl Stub {
    fn current_pid(&self, stopped: &Stopped) -> u32 {
        let f = frozen(stopped);
        f.tasks
            .slots
            .get(self.target.current_slot())
            .and_then(|t| t.as_ref())
            .map_or(0, |t| t.pid)
    }

    /// Handles the received bytes waiting in the ring; enters the stop loop when one of
    /// them stops the kernel.
    fn pump(&mut self, frame: &mut TrapFrame) {
        while let Some(byte) = with_link(|link| link.next_byte()).flatten() {
            self.handle_byte(byte);
            if self.mode == Mode::Stopped {
                self.stop_loop(frame, false);
            }
        }
    }

    /// A #DB: a hardware breakpoint or watchpoint, or the end of a step.
    fn on_debug_trap(&mut self, frame: &mut TrapFrame, status: debugreg::Status) -> bool {
        if self.mode != Mode::Running {
            return false;
        }
        let tid = self.target.current_tid();
        // Only the task the stub armed: a program may set TF itself (it then gets the
        // #DB as before).
        let stepping = self.target.step_armed == Some(crate::task::current());
        let (reason, resume_flag) = match self.target.breakpoints.hardware_hit(status.hit_slots) {
            Some((_, HwUse::Break)) => (MultiThreadStopReason::HwBreak(tid), true),
            Some((addr, HwUse::Watch { kind, .. })) => {
                (MultiThreadStopReason::Watch { tid, kind, addr }, false)
            }
            // The end of a step: reported as SIGTRAP *with* the thread (T05thread:..),
            // not gdbstub's DoneStep (S05): gdb resumed every thread ("vCont;s:t;c"), and
            // without a thread id it would guess which one stopped.
            None if status.single_step && stepping => (
                MultiThreadStopReason::SignalWithThread {
                    tid,
                    signal: Signal::SIGTRAP,
                },
                false,
            ),
            None => return false,
        };
        self.stop(frame, reason, resume_flag);
        true
    }

    /// A #BP: one of gdb's `int3`s, or the boot's `gdb=wait`.
    fn on_breakpoint_trap(&mut self, frame: &mut TrapFrame, stopped: &Stopped) -> bool {
        if !frame.from_user() && BOOT_WAIT.swap(false, Ordering::SeqCst) {
            // No session yet: wait in the stop loop for gdb's first packet.
            self.mode = Mode::Stopped;
            self.stop_loop(frame, false);
            return true;
        }
        let slot = crate::task::current();
        // The `int3` was the byte before `eip`.
        let linear = regs::linear_eip(frame, slot).wrapping_sub(1);
        let phys = memory::translate(&frozen(stopped).paging.mm, linear)
            .ok()
            .map(|p| p.phys);
        match self.target.breakpoints.classify(linear, phys) {
            Hit::Ours if self.mode == Mode::Running => {
                frame.eip = frame.eip.wrapping_sub(1);
                let tid = self.target.current_tid();
                self.stop(frame, MultiThreadStopReason::SwBreak(tid), false);
                true
            }
            Hit::Ours => {
                // No session to report to (cannot happen while the session's state and
                // mode agree): drop the breakpoint and run the original instruction.
                self.target.breakpoints.remove(linear);
                frame.eip = frame.eip.wrapping_sub(1);
                true
            }
            Hit::Foreign => {
                // Not for this task (it shares the frame since a fork): run the original
                // instruction; the frame is shared, so the breakpoint stays out of memory
                // (see breakpoints.rs).
                frame.eip = frame.eip.wrapping_sub(1);
                true
            }
            Hit::NotOurs => false,
        }
    }

    /// Reports a stop to gdb and waits in the stop loop.
    fn stop(&mut self, frame: &mut TrapFrame, reason: MultiThreadStopReason<u32>, rf: bool) {
        let Some(machine) = self.machine.take() else {
            self.rebuild();
            return;
        };
        let result = match machine {
            GdbStubStateMachine::Running(m) => m.report_stop(&mut self.target, reason),
            other => {
                // Not waiting for a stop reply: nothing to report.
                self.machine = Some(other);
                return;
            }
        };
        match result {
            Ok(machine) => {
                self.machine = Some(machine);
                self.settle();
                if self.mode == Mode::Stopped {
                    self.stop_loop(frame, rf);
                }
            }
            Err(_) => {
                // gdb never hears of this stop: end the session, so that no breakpoint
                // stays planted where the kernel is about to resume.
                self.errors += 1;
                note!("gdb: a stop could not be reported: the session ends");
                self.end_session();
            }
        }
    }

    /// The kernel is stopped: answers gdb until it resumes or detaches.
    fn stop_loop(&mut self, frame: &mut TrapFrame, resume_flag: bool) {
        self.mode = Mode::Stopped;
        // A reader of the introspection descriptor reads the frozen state as it is.
        crate::publish::set_stopped(true);
        self.target
            .begin_stop(frame, crate::task::current(), resume_flag);
        while self.mode == Mode::Stopped {
            let Some(byte) = with_link(|link| link.next_byte()).flatten() else {
                core::hint::spin_loop();
                continue;
            };
            self.handle_byte(byte);
        }
        self.target.end_stop(frame);
        crate::publish::set_stopped(false);
    }

    /// One received byte through the framer.
    fn handle_byte(&mut self, byte: u8) {
        let Some(event) = self.framer.push(byte) else {
            return;
        };
        match event {
            Event::Packet(packet) => {
                let mut raw = [0u8; debugger::PACKET_BUFFER_SIZE];
                let len = packet.raw().len();
                raw[..len].copy_from_slice(packet.raw());
                self.on_packet(&raw[..len]);
            }
            Event::Ack => {}
            Event::Nak => {
                with_link(|link| link.retransmit());
            }
            Event::BadChecksum | Event::Overlong => {
                with_link(|link| link.nak());
            }
            Event::Interrupt => self.on_interrupt(),
        }
    }

    /// A whole packet from gdb.
    fn on_packet(&mut self, raw: &[u8]) {
        // gdb's handshake: it always offers its features (a bare `qSupported` is not a
        // new gdb, just a malformed packet).
        const HANDSHAKE: &[u8] = b"qSupported:";
        let body = &raw[1..raw.len() - (rsp::FRAMING_BYTES - 1)];
        if body.starts_with(HANDSHAKE) && self.packets > 0 {
            // A new gdb (the old one was killed without detaching).
            self.reset();
        }
        self.packets += 1;
        with_link(|link| link.begin_packet());
        for &byte in raw {
            let Some(machine) = self.machine.take() else {
                self.rebuild();
                return;
            };
            let result = match machine {
                GdbStubStateMachine::Idle(m) => m.incoming_data(&mut self.target, byte),
                GdbStubStateMachine::Running(m) => m.incoming_data(&mut self.target, byte),
                GdbStubStateMachine::CtrlCInterrupt(m) => {
                    m.interrupt_handled(&mut self.target, None::<MultiThreadStopReason<u32>>)
                }
                GdbStubStateMachine::Disconnected(m) => Ok(m.return_to_idle()),
            };
            match result {
                Ok(machine) => self.machine = Some(machine),
                Err(_) => {
                    with_link(|link| link.finish_failed_packet(b"E01"));
                    self.failed();
                    return;
                }
            }
        }
        self.settle();
    }

    /// Brings `mode` in line with the state machine after it handled something.
    fn settle(&mut self) {
        match &self.machine {
            // Idle means stopped, for gdb: a first packet stops the kernel (attach).
            Some(GdbStubStateMachine::Idle(_)) => self.mode = Mode::Stopped,
            Some(GdbStubStateMachine::Running(_)) => {
                if self.mode == Mode::Stopped || self.mode == Mode::Detached {
                    self.mode = Mode::Running;
                }
            }
            Some(GdbStubStateMachine::Disconnected(_)) => self.detach(),
            Some(GdbStubStateMachine::CtrlCInterrupt(_)) | None => {}
        }
    }

    /// gdb detached (or killed the session): everything off, the kernel runs on.
    fn detach(&mut self) {
        self.target.end_session();
        if let Some(GdbStubStateMachine::Disconnected(m)) = self.machine.take() {
            self.machine = Some(m.return_to_idle());
        }
        self.packets = 0;
        self.mode = Mode::Detached;
        with_link(|link| link.forget_replies());
    }

    /// Ctrl-C from gdb.
    fn on_interrupt(&mut self) {
        if self.mode == Mode::Stopped {
            return;
        }
        if self.mode == Mode::Detached && !self.prime() {
            return;
        }
        let Some(machine) = self.machine.take() else {
            self.rebuild();
            return;
        };
        let result = match machine {
            GdbStubStateMachine::Running(m) => m.incoming_data(&mut self.target, rsp::INTERRUPT),
            other => {
                self.machine = Some(other);
                return;
            }
        };
        let result = match result {
            Ok(GdbStubStateMachine::CtrlCInterrupt(m)) => {
                let tid = self.target.current_tid();
                m.interrupt_handled(
                    &mut self.target,
                    Some(MultiThreadStopReason::SignalWithThread {
                        tid,
                        signal: Signal::SIGINT,
                    }),
                )
            }
            other => other,
        };
        match result {
            Ok(machine) => {
                self.machine = Some(machine);
                self.settle();
            }
            Err(_) => self.failed(),
        }
    }

    /// A Ctrl-C with no session (gdb's session failed while the kernel ran, and it is
    /// still waiting for a stop): puts a fresh state machine into the running state, as
    /// if gdb had sent `vCont;c`, without letting gdb see the acknowledgement.
    fn prime(&mut self) -> bool {
        const CONTINUE: &[u8] = b"vCont;c";
        let mut packet = [0u8; CONTINUE.len() + rsp::FRAMING_BYTES];
        let mut len = 0;
        rsp::write_packet(CONTINUE, |b| {
            packet[len] = b;
            len += 1;
        });
        with_link(|link| link.set_muted(true));
        for &byte in &packet[..len] {
            let Some(machine) = self.machine.take() else {
                break;
            };
            self.machine = match machine {
                GdbStubStateMachine::Idle(m) => m.incoming_data(&mut self.target, byte).ok(),
                other => Some(other),
            };
        }
        with_link(|link| link.set_muted(false));
        let running = matches!(self.machine, Some(GdbStubStateMachine::Running(_)));
        if running {
            self.packets += 1;
            self.mode = Mode::Running;
        } else if self.machine.is_none() {
            self.rebuild();
        }
        running
    }

    /// A `gdbstub` call failed on a packet (the state machine is gone; gdb got an error
    /// reply). gdb is still there and still believes in its breakpoints, so only
    /// `gdbstub` starts afresh: breakpoints, watchpoints and `catch` stay, a stopped
    /// kernel stays stopped, and a running one stays in a session that can report its
    /// next stop (gdb waits for one).
    fn failed(&mut self) {
        self.errors += 1;
        note!(
            "gdb: gdbstub failed on a packet ({} so far): it restarts, the session's breakpoints stay",
            self.errors
        );
        let running = self.mode == Mode::Running;
        self.restart_machine();
        if running && !self.prime() {
            self.end_session();
        }
    }

    /// A new gdb's handshake in the middle of a session (the old gdb was killed without
    /// detaching): the new one knows nothing of the old breakpoints, so a fresh session.
    fn reset(&mut self) {
        self.end_session();
        self.packets = 0;
    }

    /// A fresh `gdbstub` state machine; the session's own state is left as it is.
    fn restart_machine(&mut self) {
        new_machine(&mut self.machine, &mut self.target);
        with_link(|link| link.forget_replies());
    }

    /// Ends the session: every breakpoint, watchpoint, step and `catch` off, a fresh
    /// state machine; a running kernel runs on detached (a stopped one stays stopped for
    /// the gdb that is talking to it).
    fn end_session(&mut self) {
        self.target.end_session();
        self.restart_machine();
        if self.mode == Mode::Running {
            self.mode = Mode::Detached;
        }
    }

    /// The state machine went missing (a failed call nobody replaced): a fresh one,
    /// ending the session, since there is no telling what gdb was told.
    fn rebuild(&mut self) {
        self.end_session();
        self.packets = 0;
    }
}

/// A small formatting buffer for the stub's own console notes.
struct NoteBuffer {
    bytes: [u8; NOTE_SIZE],
    len: usize,
}

/// The longest note the stub prints into gdb's console.
const NOTE_SIZE: usize = 160;

impl NoteBuffer {
    fn new() -> NoteBuffer {
        NoteBuffer {
            bytes: [0; NOTE_SIZE],
            len: 0,
        }
    }
    fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

impl core::fmt::Write for NoteBuffer {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let n = s.len().min(NOTE_SIZE - self.len);
        self.bytes[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}
