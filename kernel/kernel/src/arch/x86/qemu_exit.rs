//! Leaving QEMU with a status, through its `isa-debug-exit` device.

use super::cpu;

/// The `isa-debug-exit` I/O port (`-device isa-debug-exit,iobase=0xf4,iosize=0x04`).
pub const DEBUG_EXIT_PORT: u16 = 0xF4;

/// Writes `value` to `isa-debug-exit`: QEMU exits with status `value << 1 | 1` (see
/// `abi::qemu_exit`). Without the device (another machine, real hardware) the write is
/// ignored and the CPU halts with interrupts off.
pub fn exit(value: u32) -> ! {
    // SAFETY: a write to the debug-exit port; on a machine without the device the port
    // is unassigned and the write has no effect.
    unsafe { x86::io::outl(DEBUG_EXIT_PORT, value) };
    cpu::halt_forever()
}
