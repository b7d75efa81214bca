//! What the gdb stub needs from the machine besides COM1 and the debug registers: its own
//! stack, its packet buffer, and byte writes to physical memory while the kernel is stopped.

use core::arch::asm;
use core::marker::PhantomData;
use core::sync::atomic::{AtomicBool, Ordering};

use super::{stack_top, HwCell, Stack};

/// The stub's stack. A stop can come deep inside a task's 4 KiB kernel stack (a
/// breakpoint in `do_wp_page` during a fault); `gdbstub` and the monitor commands need
/// more than what is left there, so every entry into the stub switches to this one.
/// Unoptimised (`cfg(unoptimized)`, the stepping build) a stop and a few monitor commands
/// already take about 41 KiB of it: four times the room there.
pub const STUB_STACK_SIZE: usize = if cfg!(unoptimized) {
    256 * 1024
} else {
    64 * 1024
};

static STUB_STACK: HwCell<Stack<STUB_STACK_SIZE>> = HwCell::new(Stack::new());

/// Set while code runs on the stub's stack (a nested entry must not reuse it).
static ON_STUB_STACK: AtomicBool = AtomicBool::new(false);

/// Bytes [`on_stub_stack`] reserves below the stub stack's top: the argument at the
/// bottom, the saved `esp` at the top ([`SAVED_ESP_OFFSET`]), padding between, so that
/// `esp` is 16-byte aligned at the call (the i386 System V ABI).
const SWITCH_FRAME: u32 = 16;
/// Where the old `esp` is kept, above the new `esp`.
const SAVED_ESP_OFFSET: u32 = 12;

/// Proof that the kernel is stopped: the holder runs inside the stub, in a trap handler
/// with interrupts off on the only CPU, so the interrupted code (whatever locks it holds)
/// does not run again before the handler returns. Only [`on_stub_stack`] runs code for
/// which [`Stopped::here`] gives one; it cannot leave the CPU (not `Send`), and every use
/// checks again that the stub is still running ([`Stopped::check`]), so one kept past the
/// stub's return stops the kernel with a message instead of reading a running kernel.
pub struct Stopped {
    _not_send: PhantomData<*mut ()>,
}

impl Stopped {
    /// The proof, when the caller runs inside the stub; `None` anywhere else.
    pub fn here() -> Option<Stopped> {
        (ON_STUB_STACK.load(Ordering::Acquire) && !super::cpu::interrupts_enabled()).then_some(
            Stopped {
                _not_send: PhantomData,
            },
        )
    }

    /// Panics unless the stub still runs (the proof is used where it was made).
    pub fn check(&self) {
        assert!(
            ON_STUB_STACK.load(Ordering::Acquire) && !super::cpu::interrupts_enabled(),
            "a Stopped proof used outside the gdb stub"
        );
    }
}

/// Runs `f` on the stub's stack, with interrupts off (as they are in every trap handler),
/// handing it the proof that the kernel is stopped. A nested call (a trap taken while the
/// stub runs) runs `f` on the current stack instead: the stub's own lock then turns it
/// away quickly.
pub fn on_stub_stack<F: FnOnce(&Stopped)>(f: F) {
    assert!(
        !super::cpu::interrupts_enabled(),
        "the stub runs with interrupts off"
    );
    let stopped = Stopped {
        _not_send: PhantomData,
    };
    if ON_STUB_STACK.swap(true, Ordering::Acquire) {
        f(&stopped);
        return;
    }
    run_on_stub_stack(move || f(&stopped));
    ON_STUB_STACK.store(false, Ordering::Release);
}

/// The switch to the stub's stack and back (ON_STUB_STACK is set: the stack is ours).
fn run_on_stub_stack<F: FnOnce()>(f: F) {
    let mut closure = Some(f);
    let top = stack_top(&STUB_STACK) - SWITCH_FRAME;
    // SAFETY: the stub stack is a static used by nobody else (ON_STUB_STACK), its top is
    // 16-byte aligned; the old `esp` is kept on the new stack and restored after the call;
    // `trampoline::<F>` is an `extern "C"` function taking one pointer, to `closure`, which
    // lives on the old stack (still mapped) until the call returns. Interrupts are off,
    // so nothing else runs on either stack meanwhile. The C ABI's clobbers are declared.
    unsafe {
        asm!(
            "movl %esp, %edx",
            "movl %ecx, %esp",
            "movl %edx, {saved}(%esp)",
            "movl %eax, (%esp)",
            "calll {trampoline}",
            "movl {saved}(%esp), %esp",
            trampoline = sym trampoline::<F>,
            saved = const SAVED_ESP_OFFSET,
            in("ecx") top,
            in("eax") &mut closure as *mut Option<F>,
            clobber_abi("C"),
            options(att_syntax)
        );
    }
}

/// Calls the closure [`on_stub_stack`] handed over.
extern "C" fn trampoline<F: FnOnce()>(closure: *mut Option<F>) {
    // SAFETY: `on_stub_stack` passes a pointer to its own live local, used by no one else
    // until this call returns.
    if let Some(f) = unsafe { (*closure).take() } {
        f();
    }
}

/// Size of the stub's packet buffer: the longest packet it accepts, framing included,
/// which is also the `PacketSize` it advertises to gdb.
pub const PACKET_BUFFER_SIZE: usize = 16384;

static PACKET_BUFFER: HwCell<[u8; PACKET_BUFFER_SIZE]> = HwCell::new([0; PACKET_BUFFER_SIZE]);

/// The stub's packet buffer, for a new `gdbstub` state machine that will live in `slot`;
/// whatever `slot` holds (the previous borrower) is dropped first.
///
/// `gdbstub` keeps a `&'static mut` to its buffer and drops it when a call fails, so a
/// new state machine needs the same buffer again. The stub keeps its one state machine in
/// one `Option`, which it passes here: the previous loan ended when that machine was
/// dropped here, or when the call that failed consumed it.
pub fn packet_buffer<M>(slot: &mut Option<M>) -> &'static mut [u8] {
    *slot = None;
    // SAFETY: a static that only this function hands out; its previous borrower was the
    // machine in `slot`, gone now (dropped above, or consumed by a failed call).
    unsafe { &mut *PACKET_BUFFER.get() }
}

/// Writes `bytes` to physical memory at `addr` through the identity map (a debugger's
/// memory write or breakpoint), while the kernel is `stopped`. Panics unless
/// `[addr, addr + len)` lies in the identity map (RAM below HIGH_MEMORY).
///
/// What the write does to a Rust object there is the debugger user's business (as with
/// any debugger): the kernel keeps no reference into user frames, and the stopped code
/// sees the new bytes when it resumes.
pub fn write_physical(stopped: &Stopped, addr: u32, bytes: &[u8]) {
    stopped.check();
    super::phys::check_identity(addr, bytes.len());
    // SAFETY: the range is identity-mapped RAM (checked above), and the kernel is stopped
    // (the proof, checked above), so no code runs that could be reading or writing those
    // bytes meanwhile; volatile so the write is never elided.
    unsafe {
        let dst = addr as *mut u8;
        for (i, &b) in bytes.iter().enumerate() {
            dst.add(i).write_volatile(b);
        }
    }
}
