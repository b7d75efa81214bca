//! The two 8259A interrupt controllers: remapped to vectors 0x20..0x2F.
//!
//! The BIOS leaves IRQ 0-7 on vectors 8-15, on top of CPU exceptions; Linux 0.11's
//! setup.s remaps them to 0x20-0x2F exactly as done here.

use x86::io::{inb, outb};

use super::cpu;
use super::idt::IRQ_BASE;

const MASTER_COMMAND: u16 = 0x20;
const MASTER_DATA: u16 = 0x21;
const SLAVE_COMMAND: u16 = 0xA0;
const SLAVE_DATA: u16 = 0xA1;
/// A write to this unused port takes about 1 us: the classic delay between 8259 writes.
const DELAY_PORT: u16 = 0x80;

/// ICW1: initialisation, ICW4 follows, cascade mode, edge-triggered.
const ICW1_INIT_WITH_ICW4: u8 = 0x11;
/// ICW3 (master): a slave on line 2.
const ICW3_MASTER_SLAVE_ON_IRQ2: u8 = 1 << CASCADE_IRQ;
/// ICW3 (slave): its cascade identity, 2.
const ICW3_SLAVE_ID: u8 = CASCADE_IRQ;
/// ICW4: 8086 mode, normal (not automatic) EOI.
const ICW4_8086: u8 = 0x01;
/// OCW2: non-specific end of interrupt.
const OCW2_EOI: u8 = 0x20;
/// OCW3: the next command-port read returns the in-service register.
const OCW3_READ_ISR: u8 = 0x0B;

/// The master line the slave is wired to.
pub const CASCADE_IRQ: u8 = 2;
/// The PIT.
pub const TIMER_IRQ: u8 = 0;
/// COM2 (the console's port).
pub const COM2_IRQ: u8 = 3;
/// COM1 (the gdb stub's line).
pub const COM1_IRQ: u8 = 4;
/// The lowest-priority line of each chip, where spurious interrupts show up.
const MASTER_SPURIOUS_IRQ: u8 = 7;
const SLAVE_SPURIOUS_IRQ: u8 = 15;
/// IRQ lines per chip.
const LINES_PER_CHIP: u8 = 8;
/// All lines masked.
const ALL_MASKED: u8 = 0xFF;
/// The in-service bit of line 7 of a chip.
const LINE7_BIT: u8 = 1 << 7;

/// Writes a byte and waits for the (slow) 8259 to take it.
///
/// # Safety
/// `port` must be one of the 8259 ports and `value` a valid command in sequence.
unsafe fn write_slow(port: u16, value: u8) {
    // SAFETY: the caller guarantees the write is part of a valid 8259 sequence; port
    // 0x80 is the POST-code port, harmless to write.
    unsafe {
        outb(port, value);
        outb(DELAY_PORT, 0);
    }
}

/// Remaps the IRQs to vectors 0x20..0x2F and masks every line except the timer (IRQ 0)
/// and the cascade (IRQ 2). Call with interrupts disabled, after the IDT is loaded.
pub fn init() {
    cpu::without_interrupts(|| {
        // SAFETY: the standard ICW1..ICW4 sequence on the 8259 ports, then the masks.
        unsafe {
            write_slow(MASTER_COMMAND, ICW1_INIT_WITH_ICW4);
            write_slow(SLAVE_COMMAND, ICW1_INIT_WITH_ICW4);
            write_slow(MASTER_DATA, IRQ_BASE);
            write_slow(SLAVE_DATA, IRQ_BASE + LINES_PER_CHIP);
            write_slow(MASTER_DATA, ICW3_MASTER_SLAVE_ON_IRQ2);
            write_slow(SLAVE_DATA, ICW3_SLAVE_ID);
            write_slow(MASTER_DATA, ICW4_8086);
            write_slow(SLAVE_DATA, ICW4_8086);
            outb(
                MASTER_DATA,
                ALL_MASKED & !(1 << TIMER_IRQ) & !(1 << CASCADE_IRQ),
            );
            outb(SLAVE_DATA, ALL_MASKED);
        }
    });
}

/// The data (mask) port of the chip that owns `irq`, and the line's bit there.
fn mask_port_and_bit(irq: u8) -> (u16, u8) {
    assert!(irq < 2 * LINES_PER_CHIP, "IRQ {irq} does not exist");
    if irq < LINES_PER_CHIP {
        (MASTER_DATA, 1 << irq)
    } else {
        (SLAVE_DATA, 1 << (irq - LINES_PER_CHIP))
    }
}

/// Lets `irq` (0..16) through. A slave line also needs [`CASCADE_IRQ`], which `init`
/// leaves unmasked.
pub fn unmask(irq: u8) {
    let (port, bit) = mask_port_and_bit(irq);
    cpu::without_interrupts(|| {
        // SAFETY: read-modify-write of an 8259 mask register, interrupts off so no
        // handler changes it in between.
        unsafe { outb(port, inb(port) & !bit) }
    });
}

/// Blocks `irq` (0..16).
pub fn mask(irq: u8) {
    let (port, bit) = mask_port_and_bit(irq);
    cpu::without_interrupts(|| {
        // SAFETY: as in `unmask`.
        unsafe { outb(port, inb(port) | bit) }
    });
}

/// Acknowledges `irq` (0..16): the chip then delivers lines of equal or lower priority
/// again. A slave IRQ needs an EOI on both chips. Not for a spurious IRQ (see
/// [`check_spurious`]).
pub fn eoi(irq: u8) {
    assert!(irq < 2 * LINES_PER_CHIP, "IRQ {irq} does not exist");
    // SAFETY: a non-specific EOI on the 8259 command ports.
    unsafe {
        if irq >= LINES_PER_CHIP {
            outb(SLAVE_COMMAND, OCW2_EOI);
        }
        outb(MASTER_COMMAND, OCW2_EOI);
    }
}

/// Reads a chip's in-service register.
fn in_service(command_port: u16) -> u8 {
    // SAFETY: OCW3 selects the ISR for the next read of the same command port.
    unsafe {
        outb(command_port, OCW3_READ_ISR);
        inb(command_port)
    }
}

/// Call first for IRQ 7 and 15: returns `true` when the interrupt was spurious (a line
/// that dropped before the CPU acknowledged it; the chip then reports its line 7 with
/// the in-service bit clear). For a spurious IRQ the caller must NOT send [`eoi`]: this
/// function already sent the one needed (to the master, for a spurious IRQ 15, because
/// the master did see a real cascade interrupt). Always `false` for other lines.
pub fn check_spurious(irq: u8) -> bool {
    match irq {
        MASTER_SPURIOUS_IRQ => in_service(MASTER_COMMAND) & LINE7_BIT == 0,
        SLAVE_SPURIOUS_IRQ => {
            let spurious = in_service(SLAVE_COMMAND) & LINE7_BIT == 0;
            if spurious {
                // SAFETY: an EOI to the master for the cascade line it did service.
                unsafe { outb(MASTER_COMMAND, OCW2_EOI) };
            }
            spurious
        }
        _ => false,
    }
}
