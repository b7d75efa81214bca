//! Console output: `print!`, `println!` and `say!` (a line prefixed with the program name and pid), one `write` per line.
//!
//! Several tasks print at once; formatting a whole line before the single `write`
//! keeps their lines from interleaving mid-line.

use core::fmt::{self, Write};

use crate::{getpid, write};

/// File descriptor of the console.
pub const STDOUT: u32 = 1;
/// Bytes gathered before a `write`: longer lines are written in pieces.
const LINE_CAPACITY: usize = 256;

/// A line being formatted; writes itself out when full and when flushed.
struct LineBuffer {
    bytes: [u8; LINE_CAPACITY],
    len: usize,
}

impl LineBuffer {
    const fn new() -> Self {
        Self {
            bytes: [0; LINE_CAPACITY],
            len: 0,
        }
    }

    fn flush(&mut self) {
        let mut pending = &self.bytes[..self.len];
        while !pending.is_empty() {
            match write(STDOUT, pending) {
                Ok(0) | Err(_) => break, // Nowhere else to report a console failure.
                Ok(written) => pending = &pending[written.min(pending.len())..],
            }
        }
        self.len = 0;
    }
}

impl Write for LineBuffer {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        for &byte in text.as_bytes() {
            if self.len == LINE_CAPACITY {
                self.flush();
            }
            self.bytes[self.len] = byte;
            self.len += 1;
        }
        Ok(())
    }
}

/// Writes formatted text to the console (what `print!` expands to).
pub fn print_args(args: fmt::Arguments<'_>) {
    let mut line = LineBuffer::new();
    // LineBuffer's write_str never fails.
    let _ = line.write_fmt(args);
    line.flush();
}

/// Writes `name[pid]: ` + the text + a newline (what `say!` expands to).
pub fn say_args(args: fmt::Arguments<'_>) {
    let mut line = LineBuffer::new();
    let _ = writeln!(
        line,
        "{}[{}]: {}",
        crate::rt::program_name(),
        getpid(),
        args
    );
    line.flush();
}

/// Prints to the console.
#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => { $crate::console::print_args(format_args!($($arg)*)) };
}

/// Prints a line to the console.
#[macro_export]
macro_rules! println {
    () => { $crate::console::print_args(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::console::print_args(format_args!("{}\n", format_args!($($arg)*))) };
}

/// Prints a line prefixed with the program's name and pid, e.g. `hello[3]: ...`.
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => { $crate::console::say_args(format_args!($($arg)*)) };
}
