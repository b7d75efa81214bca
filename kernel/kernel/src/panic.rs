//! The panic handler: report on the console and exit QEMU with `CRASH`.

use core::fmt::Write;
use core::panic::PanicInfo;

use crate::arch::x86::{crash, qemu_exit};
use crate::console;

#[panic_handler]
fn panic(info: &PanicInfo<'_>) -> ! {
    // A panic while already crashing (e.g. inside a crash report) exits without printing.
    if crash::enter_crash() {
        let mut out = console::crash_writer();
        let _ = write!(out, "\nKERNEL PANIC: {}", info.message());
        let _ = match info.location() {
            Some(location) => writeln!(out, " at {}:{}", location.file(), location.line()),
            None => writeln!(out, " at <unknown location>"),
        };
        let mut name = crate::task::Name::new("?");
        if let Some(pid) = crate::task::describe_current(&mut name) {
            let _ = writeln!(out, "  current task: pid {pid} ({})", name.as_str());
        }
    }
    qemu_exit::exit(abi::qemu_exit::CRASH)
}
