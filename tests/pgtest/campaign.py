"""campaign: randomized failure-injection runs of the kernel, each drawn from one seed.

A run is a workload (a ktest scenario or the demo), a memory size, one to three
allocation sites with random Linux-style knobs (probability, interval, times, space),
the kernel's random seed for them, and sometimes a swap disk. The kernel boots with
those settings on its command line (fail.SITE=..., failseed=...) and runs the workload
to its end. A run passes when the kernel survived and cleaned up: no crash, no hang,
checkmm clean, every frame and swap slot back. The workload itself may fail (it met the
injected failures: a fork returned ENOMEM, a task was killed by oom): that is the
point, and not a failure of the run.

scripts/campaign is the command line; tests/test_campaign.py runs the fixed-seed one.
"""

import hashlib
import random
import time
from dataclasses import dataclass
from pathlib import Path

from .machine import Machine, SwapDisk
from .status import STATUS_FAIL, STATUS_PASS, crashed, verdict_lines

SITES = ["copy_page_tables", "page_table", "un_wp_page", "do_no_page", "fork_task_struct", "execve"]
WORKLOADS = [
    "cow-parent-exits-first", "cow-child-exits-first", "cow-both-write", "fork-of-fork",
    "demand-zero", "exec-sharing", "write-verify", "oom-recovery", "exit-frees",
    "failnth-fork", "failnth-cow", "demo",
]
MEMORY = ["16M", "32M", "64M"]
# The verdicts that blame the workload, not the kernel: init failed (it met the injected
# failures), and, when init died early, its children outlived it (the kernel killed and
# collected them). Every other FAIL line (checkmm, lost frames or swap slots, boot) is the
# kernel's.
WORKLOAD_LINES = ("VERDICT: FAIL init did not exit with 0", )
OUTLIVED = "tasks outlived init"
DEFAULT_TIMEOUT_S = 90.0
# The campaign scripts/test runs: reproducible, short.
FIXED_SEED, FIXED_RUNS = 1, 16


def seeds(base, runs):
    """The seeds of a campaign: `base * 1000 + i` for i < runs."""
    return [base * 1000 + i for i in range(runs)]


def draw(seed):
    """The run that `seed` stands for (deterministic: the same seed, the same run)."""
    rng = random.Random(int(hashlib.sha256(str(seed).encode()).hexdigest()[:16], 16))
    workload = rng.choice(WORKLOADS)
    mem = rng.choice(MEMORY)
    words = []
    for site in rng.sample(SITES, rng.randint(1, 3)):
        interval = rng.choice([1, 1, 2, 3, 5, 10])
        probability = rng.choice([1, 5, 10, 25, 50, 100])
        space = rng.choice([0, 0, 4096, 65536, 1 << 20])
        times = rng.choice([-1, 1, 2, 5, 20])
        words.append(f"fail.{site}={interval},{probability},{space},{times}")
    words.append(f"failseed={rng.randrange(1, 2**32)}")
    swap = rng.random() < 0.25
    init = "init=demo" if workload == "demo" else f"init=ktest arg={workload}"
    return {
        "seed": seed,
        "workload": workload,
        "mem": mem,
        "swap": "8M" if swap else None,
        "cmdline": f"{init} {' '.join(words)} onexit=exit log=events",
    }


def replay_command(seed):
    return f"scripts/campaign --replay {seed}"


@dataclass
class Outcome:
    ok: bool
    reason: str
    status: int  # QEMU's exit status, None when it hung
    console: str
    seconds: float


def judge(status, console, timeout):
    """(ok, reason) for a run that ended with QEMU `status` (None: killed at `timeout`)."""
    verdicts = verdict_lines(console)
    if status is None:
        return False, f"hung: no verdict after {timeout:g} s"
    if crashed(status, console):
        return False, "the kernel crashed"
    if status not in (STATUS_PASS, STATUS_FAIL) or not verdicts:
        return False, f"QEMU status {status} without a verdict"
    bad = [
        v for v in verdicts
        if v.startswith("VERDICT: FAIL") and not v.startswith(WORKLOAD_LINES) and not v.endswith(OUTLIVED)
    ]
    if bad:
        return False, bad[0]
    return True, "workload failed as injected" if status == STATUS_FAIL else "workload passed"


def execute(run, workdir, timeout=DEFAULT_TIMEOUT_S, accel="tcg"):
    """Boots the run (no gdb stub, no QMP) in `workdir` and judges it."""
    workdir = Path(workdir)
    swap = SwapDisk(run["swap"]) if run["swap"] else None
    machine = Machine(workdir, run["cmdline"], mem=run["mem"], swap=swap, stub=None, qmp=(),
                      accel=accel)
    start = time.monotonic()
    try:
        machine.start()
        status = machine.wait(timeout)
    finally:
        machine.close()
        if machine.swap_path is not None:
            machine.swap_path.unlink(missing_ok=True)
    console = machine.console_text()
    ok, reason = judge(status, console, timeout)
    return Outcome(ok, reason, status, console, time.monotonic() - start)
