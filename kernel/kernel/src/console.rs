//! The kernel console on COM2, with `print!`/`println!`; COM1 stays free for a gdb stub.
//!
//! Output goes through an [`IrqMutex`], so printing from an interrupt handler cannot
//! deadlock against the code it interrupted; the crash path uses [`crash_writer`], which
//! does not take the lock at all. Declare this module first with `#[macro_use]` (or call
//! the macros as `crate::println!`).

use core::fmt::{self, Write};

use crate::arch::x86::serial::SerialPort;
use crate::arch::x86::sync::IrqMutex;

static CONSOLE: IrqMutex<SerialPort> = IrqMutex::new(SerialPort::com2());

/// Programs COM2. Output written before this is dropped. Returns whether a UART answered.
pub fn init() -> bool {
    CONSOLE.lock().init()
}

/// Writes bytes, turning each `\n` into `\r\n` (what a terminal on the other end wants).
pub fn write_bytes(bytes: &[u8]) {
    write_translated(&mut CONSOLE.lock(), bytes);
}

/// Writes formatted text (the `print!` macros end here), under one lock hold so the
/// pieces of one message are not interleaved with an interrupt handler's output.
pub fn write_fmt(args: fmt::Arguments<'_>) {
    let mut port = CONSOLE.lock();
    // The writer never fails; an error could only come from a `Display` impl.
    let _ = Translating(&mut port).write_fmt(args);
}

/// A console writer for crash reports: a separate handle on COM2 that ignores the
/// console lock (the crashed code may hold it forever). Only for the crash and panic
/// paths, after which nothing else runs; output may interleave with a half-written line.
pub fn crash_writer() -> CrashWriter {
    CrashWriter(SerialPort::for_crash())
}

/// See [`crash_writer`].
pub struct CrashWriter(SerialPort);

impl Write for CrashWriter {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        write_translated(&mut self.0, text.as_bytes());
        Ok(())
    }
}

/// `fmt::Write` over a locked port, with newline translation.
struct Translating<'a>(&'a mut SerialPort);

impl Write for Translating<'_> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        write_translated(self.0, text.as_bytes());
        Ok(())
    }
}

fn write_translated(port: &mut SerialPort, bytes: &[u8]) {
    let mut lines = bytes.split(|&byte| byte == b'\n');
    if let Some(first) = lines.next() {
        port.write_bytes(first);
    }
    for line in lines {
        port.write_bytes(b"\r\n");
        port.write_bytes(line);
    }
}

/// Prints to the console (COM2).
#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => {
        $crate::console::write_fmt(::core::format_args!($($arg)*))
    };
}

/// Prints a line to the console (COM2).
#[macro_export]
macro_rules! println {
    () => {
        $crate::console::write_bytes(b"\n")
    };
    ($($arg:tt)*) => {
        $crate::console::write_fmt(::core::format_args!(
            "{}\n",
            ::core::format_args!($($arg)*)
        ))
    };
}
