//! The kernel command line (`qemu -append "..."`): what to run and how to report it.
//!
//! Words are `key=value`; the first word (QEMU passes the kernel's path) and unknown
//! keys are reported and ignored, so a typo never stops a boot silently.

use crate::println;

/// The longest argument string a word may carry (the user's `getarg` limit).
const MAX_ARG: usize = abi::MAX_ARG_LEN;

/// How much the kernel says on the console.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    /// Only the verdict and errors.
    Quiet,
    /// Task events: fork, exec, exit, kills, oom (default).
    Events,
    /// Events and every page fault.
    Faults,
}

/// What to do when the first task (init) has exited and everything is checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnExit {
    /// Stay up, idle (the default: a debugger can still look at the machine).
    Halt,
    /// Leave QEMU through `isa-debug-exit` with the verdict (tests).
    Exit,
}

/// The gdb stub on COM1 (`gdb=`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GdbMode {
    /// Up, waiting for gdb while the kernel runs (the default).
    On,
    /// Up, and the kernel stops at boot until gdb attaches and continues.
    Wait,
    /// Off: COM1 is left alone.
    Off,
}

/// The parsed command line.
pub struct Options {
    /// `init=NAME`: the program task 1 runs (default `demo`).
    init: [u8; abi::MAX_NAME_LEN],
    init_len: usize,
    /// `arg=STRING`: its argument (`getarg`); `_` stands for a space.
    arg: [u8; MAX_ARG],
    arg_len: usize,
    pub log: LogLevel,
    pub on_exit: OnExit,
    /// `alloc=scan`: `get_free_page` uses 0.11's linear scan instead of the bitmap.
    pub linear_scan: bool,
    /// `gdb=on|wait|off`: the gdb stub on COM1.
    pub gdb: GdbMode,
    /// `swap=off`: ignore the swap disk even if one is attached (default on).
    pub swap: bool,
    /// `compat=0.11|D1,D4,...`: the rows of kernel/docs/deviations.md whose original
    /// behaviour is on (several `compat=` words add up).
    pub compat: mm::compat::Compat,
    /// `fail.SITE=interval,probability,space,times[,filter]` (Linux's boot-parameter
    /// form, per site) and `failseed=N`: failure injection from boot.
    injector: mm::inject::Injector,
}

impl Options {
    /// The failure-injection settings the command line asked for.
    pub fn injector(&self) -> mm::inject::Injector {
        self.injector.clone()
    }
    pub fn init(&self) -> &str {
        core::str::from_utf8(&self.init[..self.init_len]).unwrap_or("demo")
    }
    pub fn arg(&self) -> &[u8] {
        &self.arg[..self.arg_len]
    }
}

/// Parses `cmdline`, printing a warning for each word it does not understand.
pub fn parse(cmdline: &str) -> Options {
    let mut opts = Options {
        init: [0; abi::MAX_NAME_LEN],
        init_len: 0,
        arg: [0; MAX_ARG],
        arg_len: 0,
        log: LogLevel::Events,
        on_exit: OnExit::Halt,
        linear_scan: false,
        gdb: GdbMode::On,
        swap: true,
        compat: mm::compat::Compat::empty(),
        injector: mm::inject::Injector::new(0),
    };
    set(&mut opts.init, &mut opts.init_len, b"demo");
    for (position, word) in cmdline.split_ascii_whitespace().enumerate() {
        let Some((key, value)) = word.split_once('=') else {
            if position > 0 {
                println!("cmdline: ignoring '{word}' (expected key=value)");
            }
            continue;
        };
        let ok = match key {
            "init" => {
                value.len() <= abi::MAX_NAME_LEN
                    && set(&mut opts.init, &mut opts.init_len, value.as_bytes())
            }
            "arg" => {
                value.len() <= MAX_ARG && set(&mut opts.arg, &mut opts.arg_len, value.as_bytes())
            }
            "log" => match value {
                "quiet" => set_to(&mut opts.log, LogLevel::Quiet),
                "events" => set_to(&mut opts.log, LogLevel::Events),
                "faults" => set_to(&mut opts.log, LogLevel::Faults),
                _ => false,
            },
            "onexit" => match value {
                "halt" => set_to(&mut opts.on_exit, OnExit::Halt),
                "exit" => set_to(&mut opts.on_exit, OnExit::Exit),
                _ => false,
            },
            "swap" => match value {
                "on" => set_to(&mut opts.swap, true),
                "off" => set_to(&mut opts.swap, false),
                _ => false,
            },
            "gdb" => match value {
                "on" => set_to(&mut opts.gdb, GdbMode::On),
                "wait" => set_to(&mut opts.gdb, GdbMode::Wait),
                "off" => set_to(&mut opts.gdb, GdbMode::Off),
                _ => false,
            },
            "failseed" => value.parse().is_ok_and(|seed| {
                opts.injector.set_seed(seed);
                true
            }),
            key if key.starts_with("fail.") => parse_fail(&mut opts.injector, &key[5..], value),
            "compat" => match mm::compat::Compat::parse(value) {
                Ok(rows) => {
                    opts.compat |= rows;
                    true
                }
                Err(e) => {
                    // Say why: a row that cannot be reproduced has a reason worth reading.
                    println!("cmdline: ignoring '{word}': {e}");
                    true
                }
            },
            "alloc" => match value {
                "scan" => set_to(&mut opts.linear_scan, true),
                "bitmap" => set_to(&mut opts.linear_scan, false),
                _ => false,
            },
            _ => false,
        };
        if !ok {
            println!("cmdline: ignoring '{word}' (unknown key or bad value)");
        }
    }
    // `_` stands for a space, since the command line splits on spaces.
    for b in &mut opts.arg[..opts.arg_len] {
        if *b == b'_' {
            *b = b' ';
        }
    }
    opts
}

fn set(dst: &mut [u8], len: &mut usize, value: &[u8]) -> bool {
    dst[..value.len()].copy_from_slice(value);
    *len = value.len();
    true
}

fn set_to<T>(dst: &mut T, value: T) -> bool {
    *dst = value;
    true
}

/// `fail.SITE=interval,probability,space,times[,filter]`: Linux's
/// `fail_page_alloc=<interval>,<probability>,<space>,<times>` for one site, plus `filter`
/// to fail only tasks marked make-it-fail.
fn parse_fail(injector: &mut mm::inject::Injector, site: &str, value: &str) -> bool {
    let Ok(site) = mm::inject::site_by_name(site) else {
        return false;
    };
    let mut parts = value.split(',');
    let mut next = || parts.next().map(str::trim);
    let (Some(interval), Some(probability), Some(space), Some(times)) =
        (next(), next(), next(), next())
    else {
        return false;
    };
    let filter = match next() {
        None => false,
        Some("filter") => true,
        Some(_) => return false,
    };
    let attr = match (
        interval.parse(),
        probability.parse(),
        space.parse(),
        times.parse(),
    ) {
        (Ok(interval), Ok(probability), Ok(space), Ok(times)) => mm::inject::FaultAttr {
            probability,
            interval,
            times,
            space,
            task_filter: filter,
        },
        _ => return false,
    };
    injector.configure(site, attr).is_ok()
}
