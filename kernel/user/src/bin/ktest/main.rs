//! `ktest`: the in-QEMU memory-management scenarios; `getarg` names one (or `all`), exit status 0 means it passed.
//!
//! ktest runs as task 1 (pid 1), so orphans are reparented to it and it reaps them.
//! Each scenario prints its steps, and `CHECK FAILED: <what> (expected X, found Y)`
//! on the first failed check. Paging facts are asserted through `pageinfo` (frame,
//! map count, writable), `meminfo` (fault counts) and `checkmm`, not only through
//! the values programs read. Children report through their exit status.
#![no_std]
#![no_main]

mod cow;
mod guard;
mod inject;
mod memory;
mod session;
mod sharing;
mod swap;
mod util;

use user::abi::MAX_ARG_LEN;
use user::check::{spawn, wait_child, Outcome, Status};
use user::mem::{prefault_image, touch_stack, PageBuffer};
use user::{getarg, say};

use util::{check_mm, reap_children, ReapPolicy};

user::entry!(main);

/// Pages of the static buffer the copy-on-write scenarios share between tasks.
pub const BUFFER_PAGES: usize = 8;
/// A page-aligned buffer in `.bss`, made present by [`prefault_image`] at start.
pub static BUFFER: PageBuffer<BUFFER_PAGES> = PageBuffer::zeroed();

/// Pages of stack made present and private before measuring anything, so that later
/// stack use adds no fault to the counts under test.
pub const STACK_PAGES: usize = 8;
/// Exit status of a scenario that failed.
const FAILED: i32 = 1;
/// Exit status for an unknown scenario name.
const USAGE: i32 = 2;

/// One scenario: its name on the command line and its body.
struct Scenario {
    name: &'static str,
    run: fn() -> Outcome,
    /// Whether `all` runs it (oom-recovery needs the whole machine to itself).
    in_all: bool,
}

const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "cow-parent-exits-first",
        run: cow::parent_exits_first,
        in_all: true,
    },
    Scenario {
        name: "cow-child-exits-first",
        run: cow::child_exits_first,
        in_all: true,
    },
    Scenario {
        name: "cow-both-write",
        run: cow::both_write,
        in_all: true,
    },
    Scenario {
        name: "fork-of-fork",
        run: cow::fork_of_fork,
        in_all: true,
    },
    Scenario {
        name: "demand-zero",
        run: memory::demand_zero,
        in_all: true,
    },
    Scenario {
        name: "exec-sharing",
        run: sharing::exec_sharing,
        in_all: true,
    },
    Scenario {
        name: "write-verify",
        run: cow::write_verify,
        in_all: true,
    },
    Scenario {
        name: "oom-recovery",
        run: memory::oom_recovery,
        in_all: false,
    },
    Scenario {
        name: "bad-pointer",
        run: guard::bad_pointer,
        in_all: true,
    },
    Scenario {
        name: "free-page-tables-guard",
        run: guard::free_page_tables_guard,
        in_all: true,
    },
    Scenario {
        name: "exit-frees",
        run: memory::exit_frees,
        in_all: true,
    },
    // Crashes the kernel on purpose: the runner expects the crash report and status.
    Scenario {
        name: "kernel-crash-ud2",
        run: guard::kernel_crash_ud2,
        in_all: false,
    },
    // Crashes the kernel on purpose: the runner expects the crash report and status.
    Scenario {
        name: "kernel-crash-pagefault",
        run: guard::kernel_crash_pagefault,
        in_all: false,
    },
    // Crashes the kernel on purpose: the runner expects the crash report and status.
    Scenario {
        name: "kernel-crash-gp",
        run: guard::kernel_crash_gp,
        in_all: false,
    },
    // Crashes the kernel on purpose: the runner expects the crash report and status.
    Scenario {
        name: "kernel-crash-doublefault",
        run: guard::kernel_crash_doublefault,
        in_all: false,
    },
    // Crashes the kernel on purpose: the runner expects the crash report and status.
    Scenario {
        name: "kernel-crash-panic",
        run: guard::kernel_crash_panic,
        in_all: false,
    },
    Scenario {
        name: "kernel-crash-stackoverflow",
        run: guard::kernel_crash_stackoverflow,
        in_all: false,
    },
    // Needs a swap disk (qemu-tests attaches one).
    Scenario {
        name: "swap-twice-ram",
        run: swap::twice_ram,
        in_all: false,
    },
    // Needs a swap disk (qemu-tests attaches one).
    Scenario {
        name: "swap-fork",
        run: swap::fork_swapped,
        in_all: false,
    },
    // Needs a swap disk (qemu-tests attaches one).
    Scenario {
        name: "swap-exit-frees",
        run: swap::exit_frees_slots,
        in_all: false,
    },
    // Needs a swap disk (qemu-tests attaches one).
    Scenario {
        name: "swap-io-errors",
        run: swap::io_errors,
        in_all: false,
    },
    // Needs a swap disk (qemu-tests attaches one).
    Scenario {
        name: "swap-full",
        run: swap::full_device,
        in_all: false,
    },
    // Failure injection: fail-nth loops.
    Scenario {
        name: "failnth-fork",
        run: inject::failnth_fork,
        in_all: true,
    },
    Scenario {
        name: "failnth-cow",
        run: inject::failnth_cow,
        in_all: true,
    },
    // Workloads of the scripted gdb sessions (gdb/sessions/).
    Scenario {
        name: "fork-retry",
        run: session::fork_retry,
        in_all: false,
    },
    Scenario {
        name: "cow-race",
        run: session::cow_race,
        in_all: false,
    },
    // The swap benchmark (scripts/bench-swap).
    Scenario {
        name: "swap-bench",
        run: swap::bench,
        in_all: false,
    },
];

/// Runs one scenario in this task, then reaps every child left (orphans included
/// when this is task 1: each must have exited with 0) and requires checkmm() == 0.
fn run_scenario(scenario: &Scenario) -> Outcome {
    say!("=== {} ===", scenario.name);
    let result = (scenario.run)();
    let reaped = reap_children(ReapPolicy::MustExitZero);
    let consistent = check_mm();
    result.and(reaped).and(consistent)
}

/// Runs every scenario of `all` in a child of its own, one after the other.
fn run_all() -> i32 {
    let mut passed = 0;
    let mut failed = 0;
    for scenario in SCENARIOS.iter().filter(|scenario| scenario.in_all) {
        let status = spawn(|| run_scenario(scenario)).and_then(wait_child);
        // Orphans of the scenario (their parent exited first) come to task 1.
        let orphans = reap_children(ReapPolicy::MustExitZero);
        let ok = status == Ok(Status::exited(0)) && orphans.is_ok();
        match status {
            Ok(status) => say!(
                "all: {} {} ({status})",
                scenario.name,
                if ok { "PASS" } else { "FAIL" }
            ),
            Err(_) => say!("all: {} FAIL (could not run it)", scenario.name),
        }
        if ok {
            passed += 1;
        } else {
            failed += 1;
        }
    }
    let consistent = check_mm();
    say!("all: {passed} passed, {failed} failed");
    if failed == 0 && consistent.is_ok() {
        0
    } else {
        FAILED
    }
}

fn main() -> i32 {
    // Preload every page of ktest and some stack, so that free-frame and fault counts
    // taken by the scenarios are not moved by code or data touched for the first time.
    prefault_image();
    touch_stack(STACK_PAGES);

    let mut arg_buf = [0u8; MAX_ARG_LEN + 1];
    let arg = getarg(&mut arg_buf).unwrap_or("").trim();
    if arg == "all" {
        return run_all();
    }
    let Some(scenario) = SCENARIOS.iter().find(|scenario| scenario.name == arg) else {
        say!("unknown scenario '{arg}'; the scenarios are:");
        for scenario in SCENARIOS {
            say!("  {}", scenario.name);
        }
        say!("  all (every one above except oom-recovery)");
        return USAGE;
    };
    match run_scenario(scenario) {
        Ok(()) => {
            say!("scenario {}: PASS", scenario.name);
            0
        }
        Err(_) => {
            say!("scenario {}: FAIL", scenario.name);
            FAILED
        }
    }
}
