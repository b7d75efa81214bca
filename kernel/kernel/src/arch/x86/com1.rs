//! COM1 (0x3F8, IRQ 4): the gdb stub's serial line, raw bytes both ways.
//!
//! Receiving raises IRQ 4 (IER data-ready) while the kernel runs; while the kernel is
//! stopped in the stub, interrupts are off and the stub polls instead. Sending always
//! polls (the FIFO drains at line speed; an emulated UART drains at once). No newline
//! translation: this is a binary protocol line, not a console.

use uart_16550::backend::PioBackend;
use uart_16550::spec::registers::IER;
use uart_16550::{BaudRate, Config, Uart16550};

/// COM1's base I/O port (QEMU: the first `-serial`).
pub const COM1_BASE: u16 = 0x3F8;
/// Line speed. Emulated UARTs ignore it; a real peer must agree (gdb: `set serial baud`).
pub const BAUD_RATE: BaudRate = BaudRate::Baud115200;

/// The COM1 UART.
pub struct Com1 {
    uart: Uart16550<PioBackend>,
    ready: bool,
}

impl Com1 {
    /// The port, not yet programmed.
    pub const fn new() -> Com1 {
        // SAFETY: COM1's eight registers are standard PC I/O ports, and only the gdb stub
        // uses COM1 (one `Com1`, behind the stub's lock); the console is on COM2.
        match unsafe { Uart16550::new_port(COM1_BASE) } {
            Ok(uart) => Com1 { uart, ready: false },
            Err(_) => panic!("COM1's registers fit in the I/O space"),
        }
    }

    /// Programs the UART (8N1, FIFO, the data-ready interrupt on). Returns whether a UART
    /// answered; without one, reads find nothing and writes are dropped.
    pub fn init(&mut self) -> bool {
        let config = Config {
            baud_rate: BAUD_RATE,
            interrupts: IER::DATA_READY,
            ..Config::DEFAULT
        };
        self.ready = self.uart.init(config).is_ok();
        self.ready
    }

    /// Whether `init` found a UART.
    pub fn is_ready(&self) -> bool {
        self.ready
    }

    /// A received byte, if one is waiting.
    pub fn try_read(&mut self) -> Option<u8> {
        if !self.ready {
            return None;
        }
        self.uart.try_receive_byte().ok()
    }

    /// Sends `bytes`, waiting for room in the transmit FIFO.
    pub fn write(&mut self, bytes: &[u8]) {
        if self.ready {
            self.uart.send_bytes_exact(bytes);
        }
    }
}

impl Default for Com1 {
    fn default() -> Self {
        Self::new()
    }
}
