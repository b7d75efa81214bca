//! The 8253/8254 programmable interval timer, channel 0: the periodic tick on IRQ 0.

use x86::io::outb;

/// The PIT's input clock in Hz (Linux 0.11 uses 1193180 for `LATCH`).
pub const INPUT_HZ: u32 = 1_193_182;

const CHANNEL0_DATA: u16 = 0x40;
const MODE_COMMAND: u16 = 0x43;
/// Channel 0, low byte then high byte, mode 3 (square wave), binary: Linux 0.11's 0x36.
const CHANNEL0_SQUARE_WAVE_LOHI: u8 = 0x36;
/// The 16-bit reload register; 0 means 65536.
const MAX_DIVISOR: u32 = 0x1_0000;

/// Programs channel 0 to interrupt `hz` times a second (the kernel uses 100, like 0.11's
/// `HZ`). Returns the divisor used; `hz` is clamped to what the 16-bit divisor can do
/// (about 19 Hz .. 1.19 MHz).
pub fn init(hz: u32) -> u32 {
    let divisor = (INPUT_HZ / hz.max(1)).clamp(1, MAX_DIVISOR);
    // Truncation to 16 bits is intended: 65536 is written as 0.
    let reload = divisor as u16;
    super::cpu::without_interrupts(|| {
        // SAFETY: the documented mode/command sequence on the PIT ports.
        unsafe {
            outb(MODE_COMMAND, CHANNEL0_SQUARE_WAVE_LOHI);
            outb(CHANNEL0_DATA, reload as u8);
            outb(CHANNEL0_DATA, (reload >> 8) as u8);
        }
    });
    divisor
}
