"""sessions: the scripted gdb sessions of gdb/sessions/: their declarations and one run.

A session file declares a literal SESSION dict (read here without running the file) and
runs inside gdb with gdb/sessions/lib.py. `run_session` boots QEMU as declared, with
`gdb=wait`, runs real gdb in batch mode:

    gdb -batch -nx -x gdb/pgkernel.py -x gdb/sessions/lib.py \\
        -ex 'target remote 127.0.0.1:PORT' -x gdb/sessions/NAME.py KERNEL

and reads the one line `SESSION PASS|FAIL NAME: ...` the session prints. gdb detaches,
the kernel runs to its own end and prints its VERDICT; a session that passed fails after
all when the kernel's verdict is not the one it declares (PASS by default) or QEMU
crashes. The log (gdb's output, then the kernel console) goes to target/sessions/NAME.log
or another directory.
"""

import ast
import shutil
import tempfile
import time
from pathlib import Path

from . import gdb, paths
from .check import TestFailure
from .machine import Machine, SwapDisk
from .status import crashed, verdict_lines

LIB = paths.SESSIONS_DIR / "lib.py"
DEFAULT_LOG_DIR = paths.TARGET_DIR / "sessions"
# What a SESSION dict may say, with the defaults.
DEFAULTS = {
    "cmdline": "init=ktest arg=cow-both-write",  # the kernel command line (gdb=wait is added)
    "mem": "32M",            # guest RAM
    "swap": None,            # a swap disk size ("32M") or None
    "timeout": 120,          # seconds for the whole gdb session
    "kernel_verdict": "PASS",  # what the kernel must print once gdb has detached
    "fast": False,           # part of `scripts/sessions --fast` and scripts/test's run
}
# After gdb quits, how long the kernel may take to reach its own verdict.
KERNEL_END_TIMEOUT = 90.0


class BadSession(Exception):
    pass


def session_files():
    """Every session: gdb/sessions/*.py except lib.py and files starting with `_`."""
    return sorted(p for p in paths.SESSIONS_DIR.glob("*.py") if p != LIB and not p.name.startswith("_"))


def read_declaration(path):
    """The SESSION dict (with the defaults) and the docstring of a session file."""
    tree = ast.parse(path.read_text(), str(path))
    declared = None
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "SESSION" for t in node.targets):
            try:
                declared = ast.literal_eval(node.value)
            except ValueError as error:
                raise BadSession(f"{path.name}: SESSION must be a literal dict ({error})") from None
    if not isinstance(declared, dict):
        raise BadSession(f"{path.name}: no module-level SESSION = {{...}} declaration")
    unknown = set(declared) - set(DEFAULTS)
    if unknown:
        raise BadSession(f"{path.name}: SESSION has unknown keys {sorted(unknown)}")
    spec = dict(DEFAULTS, **declared)
    doc = ast.get_docstring(tree) or ""
    return spec, doc


def summary(doc):
    """The docstring's first sentence after the `NAME.py:` lead, for --list."""
    first = " ".join(doc.strip().split("\n\n")[0].split())
    lead, _, rest = first.partition(": ")
    return rest if lead.endswith(".py") and rest else first


def session_line(output):
    lines = [line for line in output.splitlines()
             if line.startswith(("SESSION PASS ", "SESSION FAIL "))]
    return lines[-1] if lines else None


def kernel_verdict(machine, timeout):
    """The kernel's VERDICT word once it reaches the end of its run (onexit=exit: QEMU then
    leaves with its status), and the line or why there is none."""
    status = machine.wait(timeout)
    console = machine.console_text()
    verdicts = verdict_lines(console)
    if status is None:
        return None, f"the kernel did not reach its verdict within {timeout:g} s after gdb detached"
    if crashed(status, console):
        return "CRASH", "the kernel crashed after gdb detached"
    if not verdicts:
        return None, f"QEMU exited ({status}) without a VERDICT line"
    return verdicts[-1].split()[1], verdicts[-1]


def resolve(name):
    """The session file for NAME (`NAME`, `NAME.py` or a path to it)."""
    name = Path(name.removesuffix(".py")).name
    path = paths.SESSIONS_DIR / f"{name}.py"
    if not path.is_file():
        raise BadSession(f"no session {name} (scripts/session --list)")
    return name, path


def run_session(name, log_dir=None, timeout=None, accel="tcg"):
    """Boots, runs gdb, writes the log; returns (ok, verdict line, log path, seconds)."""
    name, path = resolve(name)
    spec, _ = read_declaration(path)
    timeout = timeout or spec["timeout"]
    log_dir = Path(log_dir or DEFAULT_LOG_DIR)
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
    start = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix=f"session-{name}-"))
    machine = None
    output, line, kernel_note = "", None, ""
    try:
        swap = SwapDisk(spec["swap"]) if spec["swap"] else None
        machine = Machine(work, spec["cmdline"] + " onexit=exit", mem=spec["mem"], swap=swap,
                          gdb_wait=True, accel=accel, qmp=("tests",))
        machine.start()
        args = ["gdb", "-batch", "-nx", "-x", str(paths.GDB_SCRIPT), "-x", str(LIB),
                "-ex", f"target remote 127.0.0.1:{machine.port}", "-x", str(path), str(paths.KERNEL)]
        result = gdb.run_batch(args, timeout, merge_output=True, env=gdb.gdb_env(PG_SESSION_NAME=name))
        output = result.out
        line = session_line(output)
        if result.timed_out:
            line = f"SESSION FAIL {name}: gdb did not finish within {timeout:g} s"
        elif line is None:
            tail = [text for text in output.splitlines() if text.strip()][-1:] or ["(no output)"]
            line = (f"SESSION FAIL {name}: the session ended without a verdict "
                    f"(gdb status {result.status}; last: {tail[0][:160]})")
        elif line.startswith("SESSION PASS") and result.status != 0:
            line = f"SESSION FAIL {name}: gdb exited with {result.status} after a PASS line"
        if line.startswith("SESSION PASS"):
            word, note = kernel_verdict(machine, KERNEL_END_TIMEOUT)
            kernel_note = note
            if word != spec["kernel_verdict"]:
                line = (f"SESSION FAIL {name}: the session passed but the kernel's verdict is "
                        f"{word or 'missing'} (expected {spec['kernel_verdict']}): {note}")
    except (TestFailure, BadSession) as error:
        line = f"SESSION FAIL {name}: {error}"
    finally:
        if machine is not None:
            machine.close()
        seconds = time.monotonic() - start
        console = machine.console_text() if machine is not None else ""
        qemu_err = machine.stderr_text().strip() if machine is not None else ""
        with open(log_path, "w") as log:
            log.write(f"session {name}: {spec['cmdline']} (+ gdb=wait onexit=exit), -m {spec['mem']}"
                      f"{', swap ' + spec['swap'] if spec['swap'] else ''}\n")
            log.write(f"{(line or 'SESSION FAIL ' + name + ': interrupted')}\n")
            if kernel_note:
                log.write(f"kernel: {kernel_note}\n")
            log.write(f"time: {seconds:.1f} s\n\n=== gdb ===\n{output}")
            log.write(f"\n=== kernel console (COM2) ===\n{console}")
            if qemu_err:
                log.write(f"\n=== QEMU stderr ===\n{qemu_err}\n")
        # Everything worth keeping is in the log (the swap image is large and scratch).
        shutil.rmtree(work, ignore_errors=True)
    ok = line is not None and line.startswith("SESSION PASS")
    return ok, line, log_path, seconds
