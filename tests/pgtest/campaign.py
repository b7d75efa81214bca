"""campaign: randomized failure-injection runs of the kernel, each drawn from one seed.

A run is a workload (a ktest scenario or the demo), a memory size, one to three
allocation sites with random Linux-style knobs (probability, interval, times, space),
the kernel's random seed for them, and sometimes a swap disk. The kernel boots with
those settings on its command line (fail.SITE=..., failseed=...) and runs the workload
to its end. A run passes when the kernel survived and cleaned up: no crash, no hang,
checkmm clean, every frame and swap slot back. The workload itself may fail (it met the
injected failures: a fork returned ENOMEM, a task was killed by oom): that is the
point, and not a failure of the run.

A campaign spreads over machines by shards (`shard`: every Nth run of the seed list),
each writing one JSON line per run (`result_record`); `merge` puts the shards' lines
back together and checks that they are exactly the campaign's runs.

scripts/campaign is the command line; tests/test_campaign.py runs the fixed-seed one.
"""

import hashlib
import json
import random
import re
import time
from dataclasses import dataclass
from pathlib import Path

from .machine import Machine, SwapDisk
from .status import (
    STATUS_FAIL,
    STATUS_PASS,
    VERDICT_PASS,
    VERDICT_PREFIX,
    crashed,
    verdict_lines,
)

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


def parse_shard(text):
    """`K/N` -> (K, N) with 1 <= K <= N; ValueError saying what is wrong."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if match is None:
        raise ValueError(f"{text!r} is not K/N (e.g. 2/4: the second of four shards)")
    k, n = int(match[1]), int(match[2])
    if n < 1 or not 1 <= k <= n:
        raise ValueError(f"{text!r}: K must be 1 to N, and N at least 1")
    return k, n


def shard(seed_list, k, n):
    """Shard K of N (1-based): every Nth seed from the Kth. Deterministic, the shards are
    disjoint and together the whole list, and each gets a fair share of it (the draws
    are independent per seed, so no shard collects the slow workloads)."""
    return seed_list[k - 1::n]


def draw(seed):
    """The run that `seed` stands for (deterministic: the same seed, the same run)."""
    rng = random.Random(int(hashlib.sha256(str(seed).encode()).hexdigest()[:16], 16))
    workload = rng.choice(WORKLOADS)
    mem = rng.choice(MEMORY)
    sites = []
    for site in rng.sample(SITES, rng.randint(1, 3)):
        interval = rng.choice([1, 1, 2, 3, 5, 10])
        probability = rng.choice([1, 5, 10, 25, 50, 100])
        space = rng.choice([0, 0, 4096, 65536, 1 << 20])
        times = rng.choice([-1, 1, 2, 5, 20])
        sites.append({"site": site, "interval": interval, "probability": probability,
                      "space": space, "times": times})
    failseed = rng.randrange(1, 2**32)
    swap = rng.random() < 0.25
    init = "init=demo" if workload == "demo" else f"init=ktest arg={workload}"
    words = [f"fail.{s['site']}={s['interval']},{s['probability']},{s['space']},{s['times']}"
             for s in sites]
    return {
        "seed": seed,
        "workload": workload,
        "mem": mem,
        "swap": "8M" if swap else None,
        "sites": sites,
        "failseed": failseed,
        "cmdline": f"{init} {' '.join(words)} failseed={failseed} onexit=exit log=events",
    }


# The keys of a run (draw) that a results line repeats, so that a merge can check them.
RUN_KEYS = ("seed", "workload", "mem", "swap", "sites", "failseed", "cmdline")


def list_line(run):
    """A run as `--list` prints it: the seed and everything drawn from it."""
    swap = f" swap {run['swap']}" if run["swap"] else ""
    return f"{run['seed']}: -m {run['mem']}{swap} {run['cmdline']}"


def replay_command(seed):
    return f"scripts/campaign --replay {seed}"


def result_line(run, ok, reason):
    """The line a campaign prints for a finished run."""
    if ok:
        return f"PASS seed {run['seed']}: {run['workload']} -m {run['mem']} ({reason})"
    return f"FAIL seed {run['seed']}: {run['workload']} -m {run['mem']}: {reason}"


def failure_details(run):
    """The lines under a failing run's result line."""
    return [f"     reproduce: {replay_command(run['seed'])}",
            f"     kernel command line: {run['cmdline']}"]


def summary(results, consoles_note):
    """The end of a campaign's report, for [(run, ok, reason)]: the failing seeds, each
    with its replay command, and the counts. The same for one machine and for merged
    shards."""
    failures = [(run, reason) for run, ok, reason in results if not ok]
    lines = []
    if failures:
        lines.append(f"failing seeds ({consoles_note}):")
        lines += [f"  {replay_command(run['seed'])}    # {run['workload']}: {reason}"
                  for run, reason in sorted(failures, key=lambda f: f[0]["seed"])]
    lines.append(f"{len(results) - len(failures)} passed, {len(failures)} failed")
    return lines


@dataclass
class Outcome:
    ok: bool
    reason: str
    status: int  # QEMU's exit status, None when it hung
    console: str
    seconds: float


def blames_kernel(verdict):
    """Whether a VERDICT line is the kernel's failure rather than the workload's."""
    return (verdict.startswith("VERDICT: FAIL") and not verdict.startswith(WORKLOAD_LINES)
            and not verdict.endswith(OUTLIVED))


def judge(status, console, timeout):
    """(ok, reason) for a run that ended with QEMU `status` (None: killed at `timeout`)."""
    verdicts = verdict_lines(console)
    if status is None:
        return False, f"hung: no verdict after {timeout:g} s"
    if crashed(status, console):
        return False, "the kernel crashed"
    if status not in (STATUS_PASS, STATUS_FAIL) or not verdicts:
        return False, f"QEMU status {status} without a verdict"
    bad = [v for v in verdicts if blames_kernel(v)]
    if bad:
        return False, bad[0]
    return True, "workload failed as injected" if status == STATUS_FAIL else "workload passed"


def result_record(run, outcome, campaign):
    """One JSON-able line of a results file: the campaign (`{"seed", "runs", "shard"}`),
    the run's seed and drawn settings, the verdict, the duration, the replay command."""
    record = {"campaign": campaign}
    record.update({key: run[key] for key in RUN_KEYS})
    record.update({
        "verdict": "PASS" if outcome.ok else "FAIL",
        "reason": outcome.reason,
        "kernel_verdicts": verdict_lines(outcome.console),
        "qemu_status": outcome.status,
        "seconds": round(outcome.seconds, 2),
        "replay": replay_command(run["seed"]),
    })
    return record


class MergeError(ValueError):
    """A results file that cannot be merged (unreadable, not a campaign's lines)."""


def read_results(paths):
    """Every record of the results files, in order; MergeError names the file and line."""
    records = []
    for path in paths:
        try:
            text = Path(path).read_text()
        except OSError as error:
            raise MergeError(f"{path}: {error.strerror or error}") from None
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise MergeError(f"{path}:{number}: not JSON ({error.msg})") from None
            missing = [key for key in ("campaign", *RUN_KEYS, "verdict", "reason") if
                       not isinstance(record, dict) or key not in record]
            if missing:
                raise MergeError(f"{path}:{number}: not a campaign result (no {', '.join(missing)})")
            campaign = record["campaign"]
            if not (isinstance(campaign, dict) and isinstance(campaign.get("seed"), int)
                    and isinstance(campaign.get("runs"), int) and isinstance(record["seed"], int)
                    and record["verdict"] in ("PASS", "FAIL")):
                raise MergeError(f"{path}:{number}: malformed campaign result")
            records.append((f"{path}:{number}", record))
    if not records:
        raise MergeError("no results in " + ", ".join(map(str, paths)))
    return records


def merge(records):
    """(campaign seed, runs, [(run, ok, reason)] by seed, problems) from read_results'
    records. A problem is anything that makes the merge not the campaign's whole report:
    lines of different campaigns, runs missing (a shard that did not finish) or there
    twice with different verdicts, seeds outside the campaign, settings that differ from
    what this checkout draws for the seed (another version's file)."""
    problems = []
    campaigns = {(r["campaign"]["seed"], r["campaign"]["runs"]) for _, r in records}
    if len(campaigns) > 1:
        problems.append("lines of different campaigns (seed, runs): "
                        + ", ".join(f"{s} {n}" for s, n in sorted(campaigns)))
    base, runs = records[0][1]["campaign"]["seed"], records[0][1]["campaign"]["runs"]
    wanted = seeds(base, runs)
    by_seed = {}
    for where, record in records:
        seed = record["seed"]
        if seed not in wanted:
            problems.append(f"{where}: seed {seed} is not one of campaign {base}'s {runs} runs")
            continue
        drawn = draw(seed)
        if any(record[key] != drawn[key] for key in RUN_KEYS):
            problems.append(f"{where}: seed {seed}'s settings are not what this checkout "
                            "draws for it (a results file of another version?)")
            continue
        earlier = by_seed.get(seed)
        if earlier is not None and earlier[1]["verdict"] != record["verdict"]:
            problems.append(f"seed {seed} is there twice with different verdicts ({earlier[0]}, {where})")
        by_seed.setdefault(seed, (where, record))
    missing = [seed for seed in wanted if seed not in by_seed]
    if missing:
        shown = ", ".join(map(str, missing[:10])) + (" ..." if len(missing) > 10 else "")
        problems.append(f"{len(missing)} of the {runs} runs are missing (a shard that did not "
                        f"finish, or a file left out): seeds {shown}")
    results = [(draw(seed), record["verdict"] == "PASS", record["reason"])
               for seed, (_, record) in sorted(by_seed.items())]
    return base, runs, results, problems


def explain(run, outcome):
    """What a replayed run did and why its verdict is what it is: the failures drawn
    for it, the kernel's record of the ones it injected, where the workload met them,
    and each VERDICT line judged as the campaign judges it."""
    lines = [f"replay: seed {run['seed']}: {run['workload']} -m {run['mem']}"
             + (f" with a {run['swap']} swap disk" if run["swap"] else "")]
    for s in run["sites"]:
        times = "unlimited" if s["times"] == -1 else str(s["times"])
        lines.append(f"replay:   armed {s['site']}: probability {s['probability']}%, every "
                     f"{s['interval']} call(s), after {s['space']} bytes, {times} time(s)")
    console_lines = [line.strip() for line in outcome.console.splitlines()]
    record = [line for line in console_lines if line.startswith("run: injected failures")]
    if record:
        lines.append("replay: the kernel's record: " + record[-1].removeprefix("run: "))
    else:
        lines.append("replay: the kernel printed no record of injected failures (the run did not reach its end)")
    met = [line for line in console_lines
           if INJECTION_TRACES.search(line) and not line.startswith(NOT_TRACES)]
    if met:
        lines.append("replay: where the workload met them (the console):")
        lines += [f"replay:   {line}" for line in met[:MAX_TRACES]]
        if len(met) > MAX_TRACES:
            lines.append(f"replay:   ... and {len(met) - MAX_TRACES} more lines")
    for verdict in verdict_lines(outcome.console):
        lines.append(f"replay: {verdict}")
        lines.append(f"replay:   {judge_verdict_line(verdict)}")
    if outcome.ok:
        lines.append("replay: the run PASSES: the kernel survived the injected failures and cleaned up "
                     "(checkmm clean, every frame and swap slot back)"
                     + ("; the workload's FAIL is the expected outcome" if outcome.status == STATUS_FAIL else ""))
    else:
        lines.append(f"replay: the run FAILS: {outcome.reason}")
    return lines


# The console lines that show an injected failure reaching the workload: the kernel's
# kills (an oom of an injected failure says "injected"), failed forks and execs, and the
# checks of the ktest scenarios.
INJECTION_TRACES = re.compile(r"injected|EAGAIN|ENOMEM|killed|CHECK FAILED")
# Lines that match but are shown apart (the record, the verdicts) or only count
# ("page faults since boot: ..., 1 out of memory, killed").
NOT_TRACES = ("run: injected", "run: page faults since boot", VERDICT_PREFIX)
MAX_TRACES = 12


def judge_verdict_line(verdict):
    """Why one VERDICT line is, or is not, the expected outcome of an injected run."""
    if verdict.startswith(VERDICT_PASS):
        return "the workload passed: the injected failures did not stop it"
    if verdict.startswith(WORKLOAD_LINES):
        return ("expected: init met the injected failures (a refused fork or exec, a kill); "
                "the campaign judges the kernel, not the workload")
    if blames_kernel(verdict):
        return "the kernel's failure: injected failures must never leave this behind"
    return ("expected: init ended early, so its children outlived it; the kernel "
            "killed and collected them")


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
