"""scenarios: the QEMU scenarios (ktest programs, the demo, memory sizes, deliberate
crashes, swap), each booted once with `onexit=exit` and judged by QEMU's status and the
console (tests/test_qemu.py runs them; scripts/qemu-tests --list lists them).

A scenario passes when QEMU exits with the status it expects (PASS by default, with a
line starting "VERDICT: PASS") and the console has every line of `expect_text`.
"""

from dataclasses import dataclass

from .machine import SwapDisk
from .status import (
    STATUS_CRASH,
    STATUS_FAIL,
    STATUS_PASS,
    VERDICT_PASS,
    describe,
    verdict_lines,
)

# How long one scenario may run before QEMU is killed and the scenario fails.
DEFAULT_TIMEOUT_S = 60.0

SCENARIOS = [
    "cow-parent-exits-first",
    "cow-child-exits-first",
    "cow-both-write",
    "fork-of-fork",
    "demand-zero",
    "exec-sharing",
    "write-verify",
    "oom-recovery",
    "bad-pointer",
    "free-page-tables-guard",
    "exit-frees",
    "code-limit",
    "all",
]
# Scenarios whose outcome depends on the amount of memory: also run at these sizes.
MEMORY_SENSITIVE = ["demand-zero", "oom-recovery"]
DEFAULT_MEM = "32M"
EXTRA_MEMS = ["16M", "64M"]


@dataclass(frozen=True)
class Scenario:
    name: str
    mem: str
    cmdline: str
    # The QEMU status the scenario expects, and console lines that must appear (substrings).
    expect_status: int = STATUS_PASS
    expect_text: tuple = ()
    # A swap disk, or None for a machine without any disk.
    swap: SwapDisk = None

    def describe(self):
        swap = f" [{self.swap.describe()}]" if self.swap else ""
        return f"-m {self.mem:5} {self.cmdline}{swap}"


# Kernel crashes on purpose (ktest kernel-crash-KIND): the report must name the fault
# and the task, and QEMU must exit with the CRASH status, never triple-fault silently.
CRASH_TESTS = {
    "ud2": ("KERNEL CRASH: exception in kernel mode", "#UD invalid opcode", "current task: pid 1 (ktest)"),
    "pagefault": ("KERNEL CRASH: page fault in kernel mode", "cr2=fffff000", "current task: pid 1 (ktest)"),
    "gp": ("KERNEL CRASH: exception in kernel mode", "#GP general protection", "current task: pid 1 (ktest)"),
    "doublefault": ("KERNEL CRASH: double fault", "ss:esp=0010:fffff000"),
    "panic": ("KERNEL PANIC: crash requested", "current task: pid 1 (ktest)"),
    "stackoverflow": ("KERNEL PANIC: kernel stack overflow", "current task: pid 1 (ktest)"),
}


# compat= scenarios: (ktest scenario, compat= value, expected status, console lines). Each
# makes one original of kernel/docs/deviations.md happen under the compat= word of its
# row, and shows what it does.
COMPAT_TESTS = [
    # D1: the kernel's own page table for 4..8 MiB is freed; checkmm (then the verdict) says so.
    ("compat-free-page-tables", "D1", STATUS_FAIL,
     ("free_page_tables(0x00400000, 4 MiB): freed", "kernel identity map at 0x00400000: expected",
      "VERDICT: FAIL")),
    # With every original on, 0.11's free_page panics at the first free frame.
    ("compat-free-page-tables-0.11", "0.11", STATUS_CRASH, ("KERNEL PANIC: trying to free free page",)),
    ("compat-free-page-tables-panic", "D22", STATUS_CRASH,
     ("KERNEL PANIC: Trying to free up swapper memory space",)),
    ("compat-bad-pointer", "D21", STATUS_PASS, ("general protection: 0000",)),
    ("compat-kernel-store", "D9", STATUS_PASS, ("landed in pid 1's",)),
    ("compat-clean-copy", "D18", STATUS_PASS, ("read pid 1's modified word",)),
    ("compat-16mib", "D16", STATUS_PASS, ("as 0.11 caps HIGH_MEMORY",)),
]


def all_scenarios():
    tests = [Scenario(s, DEFAULT_MEM, f"init=ktest arg={s}") for s in SCENARIOS]
    for scenario in MEMORY_SENSITIVE:
        for mem in EXTRA_MEMS:
            tests.append(Scenario(f"{scenario}@{mem}", mem, f"init=ktest arg={scenario}"))
    tests.append(Scenario("demo@16M", "16M", "init=demo"))
    # The demo as scripts/run shows it, with its default swap disk attached.
    tests.append(Scenario("demo@swap", DEFAULT_MEM, "init=demo", swap=SwapDisk("8M")))
    # More RAM than the kernel manages (it uses 64 MiB): it must still boot and pass.
    tests.append(Scenario("boot@128M", "128M", "init=ktest arg=exit-frees"))
    # get_free_page through 0.11's own linear scan (alloc=scan) must behave the same.
    tests.append(Scenario("all@scan", DEFAULT_MEM, "init=ktest arg=all alloc=scan",
                          expect_text=("get_free_page uses 0.11's linear mem_map scan",)))
    for kind, text in CRASH_TESTS.items():
        tests.append(Scenario(f"kernel-crash-{kind}", DEFAULT_MEM, f"init=ktest arg=kernel-crash-{kind}",
                              STATUS_CRASH, text))
    # Swap (Linux 0.12) on a real IDE disk, at the smallest RAM so the workloads stay short.
    for scenario in ("swap-twice-ram", "swap-fork", "swap-exit-frees", "swap-io-errors",
                     "swap-syscall-read-error"):
        tests.append(Scenario(scenario, "16M", f"init=ktest arg={scenario}", swap=SwapDisk("32M")))
    tests.append(Scenario("swap-full", "16M", "init=ktest arg=swap-full", swap=SwapDisk("2M")))
    # A disk without the SWAP-SPACE signature is refused; the kernel runs without swap.
    tests.append(Scenario("swap-bad-signature", DEFAULT_MEM, "init=ktest arg=oom-recovery",
                          swap=SwapDisk("4M", bad_signature=True),
                          expect_text=("swap: refusing the disk: the device has no SWAP-SPACE signature",)))
    # Every earlier scenario must behave the same with a swap disk attached.
    tests.append(Scenario("all@swap", DEFAULT_MEM, "init=ktest arg=all", swap=SwapDisk("32M"),
                          expect_text=("slots of 4 KiB free",)))
    # 0.11's calc_mem, printed as 0.11 prints it (the identity map's table 2 is full).
    tests.append(Scenario("calc-mem", DEFAULT_MEM, "init=ktest arg=calc-mem",
                          expect_text=("pages free (of ", "Pg-dir[2] uses 1024 pages")))
    # The originals' behaviour (compat=, kernel/docs/deviations.md).
    for name, compat, status, text in COMPAT_TESTS:
        row = compat if compat != "0.11" else "D1"
        tests.append(Scenario(name, DEFAULT_MEM, f"init=ktest arg={name} compat={compat}", status,
                              (f"compat: {row}:",) + text))
    # Every original at once: the demo still runs and cleans up (with the swap disk).
    tests.append(Scenario("demo@0.11", DEFAULT_MEM, "init=demo compat=0.11", swap=SwapDisk("8M"),
                          expect_text=("compat: D22:",)))
    # D8: 0.11's un_wp_page order gives the same results (only a debugger sees the order).
    tests.append(Scenario("cow-both-write@D8", DEFAULT_MEM, "init=ktest arg=cow-both-write compat=D8",
                          expect_text=("compat: D8: un_wp_page maps the new page, then copies",)))
    # D19: with every swap write failing for a while, pages go out anyway and come back wrong.
    tests.append(Scenario("swap-compat-lost-write", "16M",
                          "init=ktest arg=swap-compat-lost-write compat=D19", swap=SwapDisk("32M"),
                          expect_text=("came back from the disk without what was written",)))
    # Too little memory: a clear refusal, not a crash.
    tests.append(Scenario("boot@8M", "8M", "init=ktest arg=exit-frees", STATUS_FAIL,
                          ("this kernel needs at least 15 MiB",)))
    return tests


def judge(scenario, status, console, timeout):
    """Why the run failed ("" when it passed): `status` is QEMU's (None: killed at
    `timeout` seconds), `console` the whole console text."""
    lines = console.splitlines()
    verdict = verdict_lines(console)
    if status is None:
        reason = f"timed out after {timeout:g} s"
    elif scenario.expect_status != STATUS_PASS and status == scenario.expect_status:
        missing = [t for t in scenario.expect_text if not any(t in line for line in lines)]
        reason = f"console lacks {missing}" if missing else ""
    elif scenario.expect_status != STATUS_PASS:
        reason = (f"QEMU status {status}, expected {scenario.expect_status} "
                  f"({describe(scenario.expect_status)})")
    elif status == STATUS_PASS and any(line.startswith(VERDICT_PASS) for line in lines):
        missing = [t for t in scenario.expect_text if not any(t in line for line in lines)]
        reason = f"console lacks {missing}" if missing else ""
    elif status == STATUS_PASS:
        reason = f"QEMU status {status} but no line starting '{VERDICT_PASS}'"
    elif status < 0:
        reason = describe(status)
    else:
        reason = f"QEMU status {status} ({describe(status)})"
    if reason and verdict:
        reason += f"; {verdict[-1]}"
    return reason
