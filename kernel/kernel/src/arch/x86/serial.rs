//! The console's UART: COM2 (0x2F8) through `uart_16550`. COM1 is left alone (reserved
//! for a gdb stub).

use core::sync::atomic::{AtomicBool, Ordering};

use uart_16550::backend::PioBackend;
use uart_16550::{BaudRate, Config, Uart16550};

/// COM2's base I/O port (QEMU: the second `-serial`).
pub const COM2_BASE: u16 = 0x2F8;
/// Line speed. Emulated UARTs ignore it; real ones need the peer to agree.
pub const BAUD_RATE: BaudRate = BaudRate::Baud115200;

/// Set once COM2 has been programmed, so a crash-time port skips re-initialising it
/// (that would clear the transmit FIFO and lose the last bytes before the crash).
static COM2_INITIALIZED: AtomicBool = AtomicBool::new(false);

/// COM2 as an output device. Before [`SerialPort::init`] succeeds, writes are dropped.
pub struct SerialPort {
    uart: Uart16550<PioBackend>,
    ready: bool,
}

impl SerialPort {
    /// The COM2 port (not yet initialised).
    pub const fn com2() -> SerialPort {
        // SAFETY: COM2's eight registers are standard PC I/O ports, and the kernel uses
        // COM2 only through the console (one SerialPort behind its lock, plus the
        // crash path's, which runs when nothing else will ever run again).
        match unsafe { Uart16550::new_port(COM2_BASE) } {
            Ok(uart) => SerialPort { uart, ready: false },
            Err(_) => panic!("COM2's registers fit in the I/O space"),
        }
    }

    /// Programs the UART (8N1, FIFO, no interrupts). Returns whether a UART answered.
    pub fn init(&mut self) -> bool {
        let config = Config {
            baud_rate: BAUD_RATE,
            ..Config::DEFAULT
        };
        self.ready = self.uart.init(config).is_ok();
        if self.ready {
            COM2_INITIALIZED.store(true, Ordering::SeqCst);
        }
        self.ready
    }

    /// Whether `init` succeeded.
    pub fn is_ready(&self) -> bool {
        self.ready
    }

    /// Sends raw bytes, waiting for room in the FIFO.
    pub fn write_bytes(&mut self, bytes: &[u8]) {
        if self.ready {
            self.uart.send_bytes_exact(bytes);
        }
    }

    /// A second handle on COM2 for the crash path, which must print even if the console
    /// lock is held by the code that crashed. Initialises the UART only if nobody has.
    pub(crate) fn for_crash() -> SerialPort {
        let mut port = SerialPort::com2();
        if COM2_INITIALIZED.load(Ordering::SeqCst) {
            // The hardware is set up (with the FIFO, as `com2()`'s driver state assumes).
            port.ready = true;
        } else {
            port.init();
        }
        port
    }
}
