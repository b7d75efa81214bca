"""test_seeds: runs every command of kernel/docs/reading-the-seeds.md and checks the output the
guide shows (tests/pgtest/guide.py says how blocks are written and compared), so the guide
cannot go stale. Each gdb session of the guide boots its own kernel and runs real gdb
under a pseudo-terminal, as a reader types the commands; `sh` blocks run from the root.
`scripts/e2e-tests -k reading --keep DIR` keeps each
session's transcript (DIR/.../transcript-NAME.txt).
"""

import os
import re
import subprocess

import pytest
from pgtest import guide, paths
from pgtest.check import TestFailure, check
from pgtest.gdb import PtyGdb

pytestmark = pytest.mark.timeout(900)

GUIDE_PATH = paths.REPO / "kernel" / "docs" / "reading-the-seeds.md"
# Another guide file in the same format (when writing one): PG_GUIDE=path.
if os.environ.get("PG_GUIDE"):
    GUIDE_PATH = paths.REPO / os.environ["PG_GUIDE"]
KERNELS = {"release": paths.KERNEL, "stepping": paths.STEPPING_KERNEL}
PROMPT = r"\(gdb\) $"
# Per command: a `continue` in the stepping build under swap pressure takes a while.
COMMAND_TIMEOUT = 120.0
SHELL_TIMEOUT = 300.0


def run_gdb_session(ctx, name, attrs, steps):
    """Boots the session's kernel, types each command into gdb, checks each output.
    Returns the problems found (each naming its guide line and showing the output); the
    session goes on after a mismatch, so one run lists every stale block."""
    build = attrs.get("build", "release")
    check(build in KERNELS, f"session {name}: build={build} is not one of {sorted(KERNELS)}")
    kernel = KERNELS[build]
    check(kernel.is_file(), f"{kernel} is missing: run scripts/build"
                            + (" --debug-build" if build == "stepping" else ""))
    machine = ctx.boot(attrs["boot"], mem=attrs.get("mem", "32M"), kernel=kernel,
                       swap=attrs.get("swap"), exit_at_end=attrs.get("exit", "yes") != "no")
    # gdb's `target remote` gives up after 2 s without an answer: attach once the kernel
    # says it waits (a slow boot on a busy machine is not a failure of the guide).
    machine.wait_console(r"^gdb: waiting for gdb", timeout=60)
    gdb = PtyGdb(machine.port, kernel=kernel)
    transcript = []
    problems = []
    try:
        banner = gdb.read_until(PROMPT, timeout=30)
        check("Remote debugging using" in banner and "Connection" not in banner,
              f"session {name}: gdb did not attach:\n{banner[-800:]}")
        for step in steps:
            gdb.send(step.command + "\n")
            text = gdb.read_until(PROMPT, timeout=COMMAND_TIMEOUT)
            # The pty echoes the command; the prompt ends the output.
            output = text.split("\n", 1)[1] if "\n" in text else ""
            output = re.sub(PROMPT, "", output)
            transcript.append(f"(gdb) {step.command}\n{output}")
            problem = guide.check_output(step.expected, output)
            if problem:
                problems.append(f"{GUIDE_PATH.name}:{step.line}: `{step.command}` (session {name}): "
                                f"{problem}\n--- what it printed ---\n{output}")
        gdb.send("detach\n")
        gdb.read_until(PROMPT, timeout=30)
    finally:
        (ctx.workdir / f"transcript-{name}.txt").write_text("".join(transcript))
        gdb.close()
    if attrs.get("exit", "yes") != "no" and not problems:
        machine.wait_console(r"^VERDICT: PASS", timeout=COMMAND_TIMEOUT)
    return problems


def run_shell_block(ctx, block):
    for step in block.steps:
        result = subprocess.run(["sh", "-c", step.command], cwd=paths.REPO, capture_output=True, check=False,
                                text=True, timeout=SHELL_TIMEOUT, stdin=subprocess.DEVNULL,
                                env=dict(os.environ, TERM="dumb"))
        output = result.stdout + result.stderr
        problem = guide.check_output(step.expected, output)
        if problem or result.returncode != 0:
            raise TestFailure(f"{GUIDE_PATH.name}:{step.line}: `{step.command}`: "
                              f"{problem or f'status {result.returncode}'}\n--- output ---\n{output[-3000:]}")


def test_reading_the_seeds(ctx):
    """Every command of kernel/docs/reading-the-seeds.md prints what the guide shows: each
    gdb session in a fresh kernel (the release or the stepping build), each runnable sh
    block from the repository's root."""
    try:
        blocks = guide.parse_guide(GUIDE_PATH.read_text())
        found = guide.sessions(blocks)
    except guide.GuideError as error:
        raise TestFailure(f"{GUIDE_PATH.name}: {error}") from None
    check(found, f"{GUIDE_PATH.name} has no gdb session")
    problems = []
    for name, (attrs, steps) in found.items():
        problems += run_gdb_session(ctx, name, attrs, steps)
    if problems:
        raise TestFailure(f"{len(problems)} commands of the guide print something else:\n"
                          + "\n".join(problems))
    shells = [b for b in blocks if b.kind == "sh" and b.attrs.get("run") == "yes"]
    for block in shells:
        run_shell_block(ctx, block)
    ctx.note(f"{len(found)} gdb sessions, {sum(len(s) for _, s in found.values())} gdb "
                     f"commands, {sum(len(b.steps) for b in shells)} shell commands")
