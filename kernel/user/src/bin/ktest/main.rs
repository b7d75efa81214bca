//! `ktest`: the in-QEMU memory-management scenarios; `getarg` names one (or `all`), exit status 0 means it passed.
//!
//! ktest runs as task 1 (pid 1), so orphans are reparented to it and it reaps them.
//! Each scenario prints its steps, and `CHECK FAILED: <what> (expected X, found Y)`
//! on the first failed check. Paging facts are asserted through `pageinfo` (frame,
//! map count, writable), `meminfo` (fault counts) and `checkmm`, not only through
//! the values programs read. Children report through their exit status.
// Built for i586-unknown-linux-gnu only; on any other target (the host's `cargo clippy
// --workspace`) the crate is empty (README "Tests": lints), as its 32-bit asm cannot build there.
#![cfg_attr(target_arch = "x86", no_std)]
#![no_main]
#![cfg(target_arch = "x86")]

mod cow;
mod guard;
mod inject;
mod memory;
mod originals;
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

/// One scenario: its name on the command line, what it shows, and its body.
struct Scenario {
    name: &'static str,
    /// One line for the list `init=ktest` prints without an argument.
    about: &'static str,
    run: fn() -> Outcome,
    /// Whether `all` runs it (oom-recovery needs the whole machine to itself).
    in_all: bool,
}

const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "cow-parent-exits-first",
        about: "the parent copies a shared page and exits; the child keeps the original, now counted once",
        run: cow::parent_exits_first,
        in_all: true,
    },
    Scenario {
        name: "cow-child-exits-first",
        about: "the child copies a shared page and exits; the parent's write then only makes it writable",
        run: cow::child_exits_first,
        in_all: true,
    },
    Scenario {
        name: "cow-both-write",
        about: "parent and child write 8 shared pages: 8 copies, 8 made writable, each sees its own values",
        run: cow::both_write,
        in_all: true,
    },
    Scenario {
        name: "fork-of-fork",
        about: "a page mapped three times (fork of a fork) is copied twice, then made writable",
        run: cow::fork_of_fork,
        in_all: true,
    },
    Scenario {
        name: "demand-zero",
        about: "pages above the break and below the stack come zero-filled at the first touch",
        run: memory::demand_zero,
        in_all: true,
    },
    Scenario {
        name: "exec-sharing",
        about: "a second hello takes its pages from the first one's (share_page) instead of loading them",
        run: sharing::exec_sharing,
        in_all: true,
    },
    Scenario {
        name: "write-verify",
        about: "kernel writes into copy-on-write pages break the sharing first (write_verify)",
        run: cow::write_verify,
        in_all: true,
    },
    Scenario {
        name: "oom-recovery",
        about: "memhog and a fork storm run out of memory; oom() kills, every frame comes back",
        run: memory::oom_recovery,
        in_all: false,
    },
    Scenario {
        name: "bad-pointer",
        about: "bad pointers get EFAULT, unknown programs ENOENT; illegal accesses are killed (SIGSEGV)",
        run: guard::bad_pointer,
        in_all: true,
    },
    Scenario {
        name: "free-page-tables-guard",
        about: "free_page_tables refuses the kernel's slot and unaligned addresses",
        run: guard::free_page_tables_guard,
        in_all: true,
    },
    Scenario {
        name: "exit-frees",
        about: "a child touches 2 MiB and exits: every frame it used comes back",
        run: memory::exit_frees,
        in_all: true,
    },
    // The originals' behaviour (kernel/docs/deviations.md): originals.rs.
    Scenario {
        name: "code-limit",
        about: "the code segment ends with the text (0.11 change_ldt): a jump into the program's data is killed",
        run: originals::code_limit,
        in_all: true,
    },
    // compat= scenarios: each makes one original happen (qemu-tests boots each with the
    // compat= word its row names); not in `all`, which runs with the kernel's defaults.
    Scenario {
        name: "compat-free-page-tables",
        about: "compat=D1: free_page_tables(4 MiB) frees the kernel's own page table; checkmm names it",
        run: originals::compat_free_page_tables,
        in_all: false,
    },
    Scenario {
        name: "compat-free-page-tables-0.11",
        about: "compat=0.11: the same call panics at the first free frame (trying to free free page)",
        run: originals::compat_free_page_tables_panics_at_a_free_frame,
        in_all: false,
    },
    Scenario {
        name: "compat-free-page-tables-panic",
        about: "compat=D22: free_page_tables(0) panics (Trying to free up swapper memory space)",
        run: originals::compat_free_page_tables_panics,
        in_all: false,
    },
    Scenario {
        name: "compat-bad-pointer",
        about: "compat=D21: a system call given a buffer past the segment kills the caller (die), no EFAULT",
        run: originals::compat_bad_pointer,
        in_all: false,
    },
    Scenario {
        name: "compat-kernel-store",
        about: "compat=D9: a kernel store faults the page in, shares it, and writes into another task's page",
        run: originals::compat_kernel_store,
        in_all: false,
    },
    Scenario {
        name: "compat-clean-copy",
        about: "compat=D18: a copy-on-write copy mapped clean is shared out as the program's page",
        run: originals::compat_clean_copy,
        in_all: false,
    },
    Scenario {
        name: "compat-16mib",
        about: "compat=D16: HIGH_MEMORY is capped at 16 MiB",
        run: originals::compat_16mib,
        in_all: false,
    },
    // Needs a swap disk (qemu-tests attaches one).
    Scenario {
        name: "swap-compat-lost-write",
        about: "compat=D19: with every swap write failing, pages are swapped out anyway and come back wrong (needs swap)",
        run: swap::compat_lost_write,
        in_all: false,
    },
    Scenario {
        name: "calc-mem",
        about: "0.11's calc_mem (debug CALC_MEM): free frames and the pages of each page table, on the console",
        run: originals::calc_mem,
        in_all: true,
    },
    // Crashes the kernel on purpose: the runner expects the crash report and status.
    Scenario {
        name: "kernel-crash-ud2",
        about: "crashes the kernel on purpose (invalid opcode): the crash report, status 37",
        run: guard::kernel_crash_ud2,
        in_all: false,
    },
    // Crashes the kernel on purpose: the runner expects the crash report and status.
    Scenario {
        name: "kernel-crash-pagefault",
        about: "crashes the kernel on purpose (page fault in ring 0): the crash report, status 37",
        run: guard::kernel_crash_pagefault,
        in_all: false,
    },
    // Crashes the kernel on purpose: the runner expects the crash report and status.
    Scenario {
        name: "kernel-crash-gp",
        about: "crashes the kernel on purpose (general protection): the crash report, status 37",
        run: guard::kernel_crash_gp,
        in_all: false,
    },
    // Crashes the kernel on purpose: the runner expects the crash report and status.
    Scenario {
        name: "kernel-crash-doublefault",
        about: "crashes the kernel on purpose (double fault): the crash report, status 37",
        run: guard::kernel_crash_doublefault,
        in_all: false,
    },
    // Crashes the kernel on purpose: the runner expects the crash report and status.
    Scenario {
        name: "kernel-crash-panic",
        about: "crashes the kernel on purpose (a Rust panic): the crash report, status 37",
        run: guard::kernel_crash_panic,
        in_all: false,
    },
    Scenario {
        name: "kernel-crash-stackoverflow",
        about: "crashes the kernel on purpose (kernel stack overflow): the crash report, status 37",
        run: guard::kernel_crash_stackoverflow,
        in_all: false,
    },
    // Needs a swap disk (qemu-tests attaches one).
    Scenario {
        name: "swap-twice-ram",
        about: "a workload of twice the RAM, every word checked, pages out to the disk and back (needs swap)",
        run: swap::twice_ram,
        in_all: false,
    },
    // Needs a swap disk (qemu-tests attaches one).
    Scenario {
        name: "swap-fork",
        about: "fork while most of the parent is swapped out: each side reads only its own data (needs swap)",
        run: swap::fork_swapped,
        in_all: false,
    },
    // Needs a swap disk (qemu-tests attaches one).
    Scenario {
        name: "swap-exit-frees",
        about: "a task largely swapped out exits: every slot and frame comes back (needs swap)",
        run: swap::exit_frees_slots,
        in_all: false,
    },
    // Needs a swap disk (qemu-tests attaches one).
    Scenario {
        name: "swap-io-errors",
        about: "failing disk writes end in oom(), a failing read kills its task; others keep their data (needs swap)",
        run: swap::io_errors,
        in_all: false,
    },
    // Needs a swap disk (qemu-tests attaches one).
    Scenario {
        name: "swap-syscall-read-error",
        about: "a system call stores into a swapped-out page whose read fails: the task is killed, not given EFAULT (needs swap)",
        run: swap::syscall_read_error,
        in_all: false,
    },
    // Needs a swap disk (qemu-tests attaches one).
    Scenario {
        name: "swap-full",
        about: "a swap disk smaller than the workload: oom() kills the task that needs more (needs swap)",
        run: swap::full_device,
        in_all: false,
    },
    // Failure injection: fail-nth loops.
    Scenario {
        name: "failnth-fork",
        about: "fail-nth over fork, N = 1, 2, ... until it succeeds: each failure leaks nothing",
        run: inject::failnth_fork,
        in_all: true,
    },
    Scenario {
        name: "failnth-cow",
        about: "a child's copy-on-write copy fails (fail-nth 1): oom() kills it, the parent's data survives",
        run: inject::failnth_cow,
        in_all: true,
    },
    // Workloads of the scripted gdb sessions (gdb/sessions/).
    Scenario {
        name: "fork-retry",
        about: "forks until fork succeeds (the workload of the failnth_fork gdb session)",
        run: session::fork_retry,
        in_all: false,
    },
    Scenario {
        name: "cow-race",
        about: "parent and child write a shared buffer in turn (the workload of the cow_copy_fails session)",
        run: session::cow_race,
        in_all: false,
    },
    // The swap benchmark (scripts/bench-swap).
    Scenario {
        name: "swap-bench",
        about: "swap throughput beside a workload that fits in RAM: BENCH lines for scripts/bench-swap (needs swap)",
        run: swap::bench,
        in_all: false,
    },
];

/// The width of the name column in the list.
const NAME_WIDTH: usize = 27;

/// Every scenario with its one-line description, and `all`.
fn list_scenarios() {
    say!("the scenarios (run one with init=ktest arg=NAME):");
    for scenario in SCENARIOS {
        say!(
            "  {:<NAME_WIDTH$}{}{}",
            scenario.name,
            if scenario.in_all { "* " } else { "  " },
            scenario.about
        );
    }
    say!(
        "  {:<NAME_WIDTH$}  every scenario marked * in turn, each in a child of its own",
        "all"
    );
}

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
    let mut arg_buf = [0u8; MAX_ARG_LEN + 1];
    let arg = getarg(&mut arg_buf).unwrap_or("").trim();
    // The originals' scenarios exec ktest into helper roles that must start with nothing
    // of the image present: before the preload below.
    if let Some(code) = originals::peer(arg) {
        return code;
    }
    // Preload every page of ktest and some stack, so that free-frame and fault counts
    // taken by the scenarios are not moved by code or data touched for the first time.
    prefault_image();
    touch_stack(STACK_PAGES);
    if arg == "all" {
        return run_all();
    }
    if arg.is_empty() {
        // Listing the scenarios is what was asked: a success (VERDICT: PASS).
        list_scenarios();
        return 0;
    }
    let Some(scenario) = SCENARIOS.iter().find(|scenario| scenario.name == arg) else {
        say!("unknown scenario '{arg}'");
        list_scenarios();
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
