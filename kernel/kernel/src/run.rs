//! What the kernel runs and how a run ends: task 1 from the command line, the idle loop
//! (task 0), and the verdict once every task is gone (checkmm clean, no frame leaked).

use core::sync::atomic::{AtomicU32, Ordering};

use abi::{qemu_exit, wait_status};

use crate::arch::x86::{cpu, qemu_exit::exit as qemu_exit_with};
use crate::cmdline::{OnExit, Options};
use crate::paging::paging;
use crate::task::exit::release;
use crate::task::{sched, tasks, TaskState};
use crate::{faultlog, kcheck};

/// Free frames before task 1 was created: every frame must come back. A static, not a
/// field of [`Run`], so that a debugger at `Run::finish` reads it whatever the optimiser
/// did with `self` (the gdb sessions' end-of-run check).
static BASELINE_FREE: AtomicU32 = AtomicU32::new(0);

fn baseline_free() -> usize {
    BASELINE_FREE.load(Ordering::Relaxed) as usize
}

/// The state of the run, watched by the idle loop.
pub struct Run {
    /// Task 1's wait status, once it has exited.
    init_status: Option<u32>,
    /// Tasks still alive when init exited (they are killed: a scenario must wait for
    /// all its children).
    leftovers: u32,
    on_exit: OnExit,
}

impl Run {
    pub fn new(opts: &Options) -> Run {
        BASELINE_FREE.store(paging().mm.mem_map.nr_free() as u32, Ordering::Relaxed);
        Run {
            init_status: None,
            leftovers: 0,
            on_exit: opts.on_exit,
        }
    }

    /// Task 0's loop: run tasks, reap the ones whose parent is the kernel, and deliver the
    /// verdict once everything is gone.
    pub fn idle_loop(mut self) -> ! {
        loop {
            sched::schedule();
            if self.reap_kernel_children() {
                self.finish();
            }
            cpu::idle_wait();
        }
    }

    /// Collects zombies whose parent is the kernel. True once no user task is left after
    /// init has exited.
    fn reap_kernel_children(&mut self) -> bool {
        let mut t = tasks();
        let zombies: [bool; mm::addr::NR_TASKS] = core::array::from_fn(|s| {
            s != 0
                && t.slots[s]
                    .as_ref()
                    .is_some_and(|task| task.parent == 0 && task.state == TaskState::Zombie)
        });
        for (slot, _) in zombies.iter().enumerate().filter(|(_, &z)| z) {
            let (_pid, status) = release(&mut t, slot);
            if slot == 1 {
                self.init_status = Some(status);
                // Whatever is still alive is killed; the scenario should have waited.
                for s in 2..t.slots.len() {
                    if let Some(task) = t.slots[s].as_mut() {
                        if task.state != TaskState::Zombie && task.killed.is_none() {
                            println!(
                                "run: pid {} ({}, {}) still alive after init exited: killing it",
                                task.pid,
                                task.name.as_str(),
                                task.state.name()
                            );
                            task.killed = Some(abi::signal::SIGKILL);
                            self.leftovers += 1;
                        }
                        sched::wake(&mut t, s);
                    }
                }
            }
        }
        self.init_status.is_some() && t.user_tasks().next().is_none()
    }

    /// Prints the verdict and stops (tests) or idles (interactive runs).
    fn finish(&mut self) -> ! {
        let status = self.init_status.unwrap_or(0);
        let summary = kcheck::run("checkmm");
        let free = paging().mm.mem_map.nr_free();
        println!("run: init exited ({})", describe_status(status));
        println!("run: checkmm {}", report::SummaryText(&summary));
        println!("run: free frames {free}, before init {}", baseline_free());
        println!(
            "run: deepest kernel stack use {} of {} bytes (one task page)",
            crate::task::exit::deepest_stack_use(),
            mm::addr::PAGE_SIZE
        );
        {
            let p = paging();
            if let Some(swap) = p.mm.swap.as_ref() {
                let c = swap.counters;
                println!(
                    "run: swap: {} pages written out, {} clean pages dropped, {} read back, {} write and {} read errors; {} slots in use; disk moved {} KiB",
                    c.written_out,
                    c.dropped,
                    c.read_in,
                    c.write_errors,
                    c.read_errors,
                    swap.nr_used(),
                    (p.mm.phys.swap_bytes_read + p.mm.phys.swap_bytes_written) / 1024
                );
            }
        }
        print!("run: page faults since boot:");
        let mut separator = " ";
        faultlog::totals(|action, n| {
            if n != 0 {
                print!("{separator}{n} {}", action.name());
                separator = ", ";
            }
        });
        println!();
        if crate::log::enabled(crate::log::LogLevel::Faults) {
            println!("run: the last page faults:");
            faultlog::for_each(|r| {
                println!(
                    "  #{:<5} pid {:<3} linear {:#010x} error {:#x} eip {:#010x}{}: {}",
                    r.seq,
                    r.pid,
                    r.linear,
                    r.error_code,
                    r.eip,
                    if r.by_kernel { " (kernel access)" } else { "" },
                    r.action.name()
                );
            });
        }
        {
            // What the failure injection did (fail.SITE=, monitor fail/failnth): a run
            // that met injected failures says so before its verdict, which they explain.
            let injector = crate::paging::injector();
            if injector.was_used() {
                println!(
                    "run: injected failures (failseed {}): {}",
                    injector.seed(),
                    injector.record()
                );
            }
        }
        let mut failures = 0;
        if !(wait_status::if_exited(status) && wait_status::exit_code(status) == 0) {
            println!(
                "VERDICT: FAIL init did not exit with 0 ({})",
                describe_status(status)
            );
            failures += 1;
        }
        if !summary.is_clean() {
            println!(
                "VERDICT: FAIL checkmm found {}",
                report::text::count(summary.mismatches, "mismatch", "mismatches")
            );
            failures += 1;
        }
        if free != baseline_free() {
            println!(
                "VERDICT: FAIL lost some free pages: {} free, {} before ({} leaked)",
                free,
                baseline_free(),
                baseline_free() as i64 - free as i64
            );
            failures += 1;
        }
        let swap_used = paging().mm.swap.as_ref().map_or(0, |s| s.nr_used());
        if swap_used != 0 {
            println!(
                "VERDICT: FAIL lost some swap slots: {swap_used} still in use with no task left"
            );
            failures += 1;
        }
        if self.leftovers != 0 {
            println!("VERDICT: FAIL {} tasks outlived init", self.leftovers);
            failures += 1;
        }
        if failures == 0 {
            println!("VERDICT: PASS (init exited 0, checkmm clean, all {free} free frames back)");
        }
        match self.on_exit {
            OnExit::Exit => qemu_exit_with(if failures == 0 {
                qemu_exit::PASS
            } else {
                qemu_exit::FAIL
            }),
            OnExit::Halt => {
                println!("run: all tasks done; the kernel stays up (idle). Stop QEMU to quit.");
                loop {
                    cpu::idle_wait();
                }
            }
        }
    }
}

/// "code 0" or "killed by signal 11".
fn describe_status(status: u32) -> DescribeStatus {
    DescribeStatus(status)
}

struct DescribeStatus(u32);

impl core::fmt::Display for DescribeStatus {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        if wait_status::if_exited(self.0) {
            write!(f, "exit code {}", wait_status::exit_code(self.0))
        } else {
            write!(f, "killed by signal {}", wait_status::term_signal(self.0))
        }
    }
}
