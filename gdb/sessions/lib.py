"""lib.py: the helpers a scripted gdb session uses, running inside gdb's Python.

scripts/session loads it after gdb/pgkernel.py and before the session file:

    gdb -batch -nx -x gdb/pgkernel.py -x gdb/sessions/lib.py \\
        -ex 'target remote 127.0.0.1:PORT' -x gdb/sessions/NAME.py KERNEL

gdb runs every sourced Python file in the same `__main__` namespace; this file also
registers that namespace as the module `lib`, so a session says `from lib import *`
(or `import lib`) and gets these very functions, with their state, without loading them
twice. Standard library only, gdb 13 or later (no gdb.execute_mi, no gdb.interrupt).

What a session calls:
  log(msg)                  a `## msg` line in the session log
  show(cmd)                 a monitor command's text answer, logged for the reader
  mon(cmd) / mon_json(cmd)  a monitor command's text / its --json document
  break_at(func, pid=None)  a breakpoint on a kernel function by its plain name
                            (pg-break's resolution); pid: stop only in that task
  watch_u32(addr)           a hardware write watchpoint on a 32-bit word (a PTE, a PDE)
  cont()                    continue until the kernel stops; returns a Stop
  run_until(bp, ...)        continue until bp (one or a tuple) is hit
  finish_frame()            run until the current kernel function returns
  current_pid(), free_frames(), checkmm(), expect_clean(where), walk(addr, pid),
  tasks(), fail_state(), read_u32(linear), caller_var(name)
  run_to_end()              break at the end of the run (kernel::run::Run::finish):
                            every task gone, checkmm clean, every free frame back
  check(cond, msg)          fail the session with msg unless cond
  verdict(ok, msg)          print `SESSION PASS|FAIL <name>: <msg>` and quit gdb (0 / 1)
  session(main)             run main(), turn its return value or its failure into the verdict
"""

import os
import sys
import traceback

import gdb

# pgkernel_core (the decoders) lives in gdb/, one level up; gdb/pgkernel.py usually put
# it on the path already.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import pgkernel_core as core

# The session's name, for the verdict line (scripts/session sets it).
NAME = os.environ.get("PG_SESSION_NAME", "session")
# The function whose entry is the end of a run: every task gone, verdict not yet printed.
END_OF_RUN = "kernel::run::Run::finish"

__all__ = [
    "NAME",
    "SessionFailure",
    "Stop",
    "break_at",
    "caller_var",
    "check",
    "checkmm",
    "cont",
    "current_pid",
    "delete_all",
    "expect_clean",
    "fail_state",
    "finish_frame",
    "fork_child",
    "free_frames",
    "hexa",
    "log",
    "mon",
    "mon_json",
    "read_u32",
    "run_to_end",
    "run_until",
    "session",
    "show",
    "tasks",
    "verdict",
    "walk",
    "watch_u32",
]


class SessionFailure(Exception):
    """A check of the session failed: the message is the verdict's."""


def check(condition, message):
    if not condition:
        raise SessionFailure(message)


def hexa(value):
    return f"0x{value:08x}"


# --- output -----------------------------------------------------------------------------
def log(message):
    """A line of the session log, marked `##` so it stands out among gdb's own lines."""
    for line in str(message).splitlines() or [""]:
        gdb.write(f"## {line}\n")
    gdb.flush()


def mon(command):
    """The text a monitor command answers. gdb prints monitor output on stderr in batch
    mode; to_string=True captures it instead."""
    try:
        return gdb.execute(f"monitor {command}", to_string=True)
    except gdb.error as error:
        raise SessionFailure(f"monitor {command}: {error}") from None


def show(command):
    """Runs a monitor command and copies its text answer into the log."""
    text = mon(command)
    gdb.write(f"(gdb) monitor {command}\n{text}")
    if not text.endswith("\n"):
        gdb.write("\n")
    gdb.flush()
    return text


def mon_json(command):
    """The --json document of a monitor command; an error document fails the session."""
    text = mon(f"{command} --json")
    try:
        doc = core.extract_json(text)
    except ValueError:
        raise SessionFailure(f"monitor {command} --json answered no JSON: {text.strip()[:200]}") from None
    if isinstance(doc, dict) and doc.get("error"):
        raise SessionFailure(f"monitor {command}: {doc['error'].get('message')}")
    return doc


# --- kernel state -----------------------------------------------------------------------
def current_pid():
    """The pid of the task whose context gdb has selected (gdb thread id = pid + 1)."""
    try:
        return selected_pid()  # noqa: F821 (gdb/pgkernel.py)
    except gdb.GdbError as error:
        raise SessionFailure(str(error)) from None


def free_frames():
    return mon_json("showmem")["free"]


def checkmm():
    return mon_json("checkmm")


def expect_clean(where):
    """checkmm must be clean; returns its document."""
    doc = checkmm()
    check(doc["ok"], f"checkmm {where}: {doc['mismatch_count']} mismatches, first: "
                     f"{doc['mismatches'][0]['message'] if doc['mismatches'] else '?'}")
    return doc


def walk(addr, pid=None):
    """monitor walk: ADDR linear, or an offset in task `pid`'s segment."""
    return mon_json(f"walk 0x{addr:x}" + (f" --task {pid}" if pid is not None else ""))


def tasks():
    """{pid: row of monitor tasks --json}."""
    return {row["pid"]: row for row in mon_json("tasks")["tasks"]}


def fail_state():
    """monitor fail --json: per-site settings and counters, marked tasks, the last failure."""
    doc = mon_json("fail")
    doc["by_site"] = {site["name"]: site for site in doc["sites"]}
    return doc


def read_u32(linear):
    """A word of memory at a linear address (any task's: task n's offset o is n*64 MiB + o)."""
    data = gdb.selected_inferior().read_memory(linear, 4)
    return int.from_bytes(bytes(data), "little")


def caller_var(name, depth=4):
    """A variable of the nearest frame (inlined ones included) that has it, as an int:
    the faulting `linear` of page_fault while stopped in do_wp_page, for example. A frame
    where it is optimized out is passed over for an older one."""
    frame = gdb.newest_frame()
    for _ in range(depth + 1):
        if frame is None:
            break
        try:
            value = frame.read_var(name)
        except (ValueError, gdb.error):
            frame = frame.older()
            continue
        if value.is_optimized_out:              # e.g. an argument at a function's entry
            frame = frame.older()
            continue
        value_type = value.type.strip_typedefs()
        if value_type.code == gdb.TYPE_CODE_STRUCT:  # a newtype: LinearAddr(u32)...
            value = value[value_type.fields()[0]]
        return int(value) & core.U32
    raise SessionFailure(f"no frame near the stop has a variable '{name}'")


# --- breakpoints and running -------------------------------------------------------------
def break_at(function, pid=None):
    """A breakpoint at the entry of a kernel function named as pg-break takes it
    (`do_wp_page`, `sys_fork`, `Run::finish`); with pid, it stops only in that task
    (gdb/pgkernel.py's pg_break_at, at the first instruction)."""
    check("pg_break_at" in globals(), "gdb/pgkernel.py is not loaded (it resolves function names)")
    try:
        made = pg_break_at(function, pid, entry=True, quiet=True)  # noqa: F821 (pgkernel.py)
    except gdb.GdbError as error:
        raise SessionFailure(str(error)) from None
    if len(made) != 1:
        for breakpoint, _, _ in made:
            breakpoint.delete()
        raise SessionFailure(f"{function} names {len(made)} functions: "
                             f"{', '.join(name for _, name, _ in made)}; give more of its path")
    breakpoint, full, addr = made[0]
    breakpoint.label = function
    log(f"breakpoint {breakpoint.number}: {full} at {hexa(addr)}"
        + (f", in pid {pid} only" if pid is not None else ""))
    return breakpoint


def watch_u32(addr):
    """A hardware write watchpoint on the 32-bit word at kernel address `addr` (the
    kernel identity-maps RAM, so a PTE's physical address is its kernel address)."""
    watchpoint = watch_word(addr)  # noqa: F821 (gdb/pgkernel.py: pg-watch's)
    log(f"watchpoint {watchpoint.number}: writes to the word at {hexa(addr)}")
    return watchpoint


def delete_all():
    for breakpoint in gdb.breakpoints():
        breakpoint.delete()


class Stop:
    """Why the kernel stopped: `breakpoints` (the gdb.Breakpoint objects hit, empty for a
    signal), `signal` (e.g. "SIGTRAP", "SIGINT"; None at a breakpoint), `pid` (the task
    gdb selected), `pc`."""

    def __init__(self, event):
        self.breakpoints = list(getattr(event, "breakpoints", []) or [])
        self.signal = getattr(event, "stop_signal", None)
        self.pid = current_pid()
        try:
            self.pc = int(gdb.selected_frame().pc())
        except gdb.error:
            self.pc = None

    def hit(self, breakpoint):
        return any(b is breakpoint or b.number == breakpoint.number for b in self.breakpoints)

    def __str__(self):
        if self.breakpoints:
            what = ", ".join(f"breakpoint {b.number}" for b in self.breakpoints)
        else:
            what = f"signal {self.signal}"
        pc = f" at {hexa(self.pc)}" if self.pc is not None else ""
        return f"{what} in pid {self.pid}{pc}"


_stop_events = []
gdb.events.stop.connect(_stop_events.append)


def cont():
    """Continues the kernel until it stops (a breakpoint, a watchpoint, a signal) and
    returns the Stop. There is no timeout here: gdb 13 has no gdb.interrupt, and an
    `interrupt` posted from another thread does not stop the kernel in batch mode, so
    scripts/session's limit on the whole session (then a FAIL with the log) is the one."""
    del _stop_events[:]
    try:
        gdb.execute("continue")
    except gdb.error as error:
        raise SessionFailure(f"continue failed: {error}") from None
    check(_stop_events, "continue returned without a stop event (did the connection close?)")
    return Stop(_stop_events[-1])


def run_until(breakpoints, allow=()):
    """Continues until one of `breakpoints` (one, or a tuple) is hit; returns the Stop.
    Stops at the breakpoints in `allow` are skipped; any other stop fails the session."""
    if not isinstance(breakpoints, (tuple, list)):
        breakpoints = (breakpoints,)
    while True:
        stop = cont()
        if any(stop.hit(b) for b in breakpoints):
            return stop
        if any(stop.hit(b) for b in allow):
            continue
        raise SessionFailure(f"unexpected stop: {stop}")


def finish_frame():
    """Runs until the kernel function gdb stopped in returns to its caller (inlined frames
    are part of the function they were inlined into). The other breakpoints are disabled
    meanwhile, so nothing else stops the kernel on the way. Returns (eax, edx) after the
    return: where i386 code returns a value of up to 8 bytes."""
    frame = gdb.newest_frame()
    while frame.type() == gdb.INLINE_FRAME:
        frame = frame.older()
    name = frame.name() or hexa(int(frame.pc()))
    caller = frame.older()
    check(caller is not None, f"{name} has no caller to return to")
    back = FrameReturnBreakpoint(caller)  # noqa: F821 (gdb/pgkernel.py)
    others = [b for b in gdb.breakpoints() if b.enabled and b is not back]
    for other in others:
        other.enabled = False
    try:
        try:
            stop = cont()
        except SessionFailure as failure:
            # gdb could not plant the return breakpoint: its unwinding from this stop is
            # wrong (a watchpoint stop, a function that never returns).
            raise SessionFailure(f"finishing {name}: {failure} (return address "
                                 f"{hexa(int(caller.pc()))} from gdb's unwinding)") from None
        check(stop.hit(back), f"finishing {name}: unexpected stop: {stop}")
    finally:
        back.delete()
        for other in others:
            if other.is_valid():
                other.enabled = True
    selected = gdb.selected_frame()
    return (int(selected.read_register("eax")) & core.U32,
            int(selected.read_register("edx")) & core.U32)


def fork_child(parent=1):
    """Runs until task `parent` forks, through the end of its sys_fork, and returns the
    child's pid (exactly one new task must exist)."""
    fork = break_at("sys_fork", pid=parent)
    run_until(fork)
    before = set(tasks())
    finish_frame()
    fork.delete()
    new = set(tasks()) - before
    check(len(new) == 1, f"pid {parent}'s fork made {len(new)} tasks, not 1: {sorted(new)}")
    return new.pop()


def run_to_end():
    """Deletes every breakpoint, runs the kernel to the end of the run (Run::finish, before
    the verdict is printed) and checks what the kernel's verdict checks: checkmm clean and
    every free frame back (the run's own baseline, read from Run). Returns a summary."""
    delete_all()
    end = break_at(END_OF_RUN)
    run_until(end)
    try:
        # A static (an AtomicU32), so that it is readable whatever the optimiser did with
        # Run::finish's `self`.
        baseline = read_u32(int(gdb.parse_and_eval("&kernel::run::BASELINE_FREE")))
    except gdb.error as error:
        raise SessionFailure(f"cannot read the run's baseline (kernel::run::BASELINE_FREE): {error}") from None
    doc = expect_clean("at the end of the run")
    free = free_frames()
    check(free == baseline, f"at the end of the run {free} frames are free, {baseline} before init "
                            f"({baseline - free} leaked)")
    left = [pid for pid in tasks() if pid != 0]
    check(not left, f"tasks still alive at the end of the run: {left}")
    end.delete()
    log(f"end of the run: checkmm clean ({doc['frames']} frames), {free} frames free as before init")
    return f"checkmm clean and {free} free frames back at the end"


# --- the verdict ------------------------------------------------------------------------
def verdict(ok, message):
    """Prints the one verdict line and quits gdb with 0 (pass) or 1 (fail). gdb detaches
    on quit: the kernel goes on (with no breakpoint left) and prints its own verdict."""
    try:
        delete_all()
    except gdb.error:
        pass
    word = "PASS" if ok else "FAIL"
    gdb.write(f"SESSION {word} {NAME}: {' '.join(str(message).split())}\n")
    gdb.flush()
    gdb.execute(f"quit {0 if ok else 1}")


def session(main):
    """Runs main(); its return value is the PASS message, a SessionFailure the FAIL
    message, any other exception a FAIL with its traceback in the log."""
    try:
        message = main()
    except SessionFailure as failure:
        verdict(False, failure)
    except KeyboardInterrupt:
        verdict(False, "interrupted")
    except Exception as error:  # noqa: BLE001 (a bug in the session or a gdb error: still one verdict)
        log(traceback.format_exc())
        verdict(False, f"{type(error).__name__}: {error}")
    else:
        verdict(True, message or "done")


# Sessions read exact output: no pager, no line wrapping, no colour, no questions.
for _setting in ("pagination off", "width 0", "height 0", "confirm off", "style enabled off",
                 "print pretty off"):
    gdb.execute(f"set {_setting}")

sys.modules.setdefault("lib", sys.modules[__name__])
