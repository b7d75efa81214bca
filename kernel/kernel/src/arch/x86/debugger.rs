//! What the gdb stub needs from the machine besides COM1 and the debug registers: its own
//! stack, its packet buffer, and byte writes to physical memory while the kernel is stopped.

use core::arch::asm;
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

/// Runs `f` on the stub's stack, with interrupts off (as they are in every trap handler).
/// A nested call (a trap taken while the stub runs) runs `f` on the current stack instead:
/// the stub's own lock then turns it away quickly.
pub fn on_stub_stack<F: FnOnce()>(f: F) {
    assert!(
        !super::cpu::interrupts_enabled(),
        "the stub runs with interrupts off"
    );
    if ON_STUB_STACK.swap(true, Ordering::Acquire) {
        f();
        return;
    }
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
    ON_STUB_STACK.store(false, Ordering::Release);
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

/// The stub's packet buffer, for a new `gdbstub` state machine.
///
/// `gdbstub` keeps a `&'static mut` to its buffer and drops it when a call fails, so a
/// new state machine needs the same buffer again.
///
/// # Safety
/// No reference returned by an earlier call may still be alive (the state machine that
/// held it must be gone).
pub unsafe fn packet_buffer() -> &'static mut [u8] {
    // SAFETY: a static that only this function hands out, and the caller guarantees the
    // previous loan ended.
    unsafe { &mut *PACKET_BUFFER.get() }
}

/// Writes `bytes` to physical memory at `addr` through the identity map (a debugger's
/// memory write or breakpoint).
///
/// # Safety
/// `[addr, addr + len)` must be RAM below HIGH_MEMORY (identity-mapped), and the kernel
/// must be stopped in the stub with interrupts off, so no code runs that could be reading
/// or writing those bytes meanwhile. What the write does to a Rust object there is the
/// debugger user's business (as with any debugger): the kernel keeps no reference into
/// user frames, and the stopped code sees the new bytes when it resumes.
pub unsafe fn write_physical(addr: u32, bytes: &[u8]) {
    // SAFETY: the caller guarantees the range is identity-mapped RAM that nothing else
    // touches while the kernel is stopped; volatile so the write is never elided.
    unsafe {
        let dst = addr as *mut u8;
        for (i, &b) in bytes.iter().enumerate() {
            dst.add(i).write_volatile(b);
        }
    }
}
