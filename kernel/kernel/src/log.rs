//! How much the kernel narrates: the `log=` level and the macros that honour it.

use core::sync::atomic::{AtomicU8, Ordering};

pub use crate::cmdline::LogLevel;

static LEVEL: AtomicU8 = AtomicU8::new(LogLevel::Events as u8);

/// Sets the level (from the command line).
pub fn set_level(level: LogLevel) {
    LEVEL.store(level as u8, Ordering::Relaxed);
}

/// Whether messages of `level` are printed.
pub fn enabled(level: LogLevel) -> bool {
    LEVEL.load(Ordering::Relaxed) >= level as u8
}

/// A task event (fork, exec, exit, kill, oom): printed unless `log=quiet`.
#[macro_export]
macro_rules! kevent {
    ($($arg:tt)*) => {
        if $crate::log::enabled($crate::log::LogLevel::Events) {
            $crate::println!($($arg)*);
        }
    };
}

/// One page fault: printed with `log=faults`.
#[macro_export]
macro_rules! kfault {
    ($($arg:tt)*) => {
        if $crate::log::enabled($crate::log::LogLevel::Faults) {
            $crate::println!($($arg)*);
        }
    };
}
