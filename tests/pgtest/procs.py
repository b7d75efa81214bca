"""procs: every child process (QEMU, gdb, the inspector) in its own process group, stopped
as a group, and all of them killed on the way out whatever way the runner ends.

- `spawn` starts a child in a new session (so its group is its pid) and records it; on
  Linux it runs under `setpriv --pdeathsig KILL`, so a runner killed outright (SIGKILL, a
  crashed pytest worker) still takes its children with it.
- `stop` kills a child's group (SIGTERM, then SIGKILL after a grace period) and reaps it.
- `REGISTRY.kill_all` kills every recorded group; it runs at interpreter exit and on
  SIGTERM/SIGHUP once `install_signal_handlers` was called. Once stopping, a child
  started late is killed at once and `Interrupted` raised.
"""

import atexit
import os
import shutil
import signal
import socket
import subprocess
import threading
import time

# After SIGTERM, how long a group gets before SIGKILL.
KILL_GRACE_S = 1.0
# A parent-death signal for every child (util-linux; absent elsewhere: then only the
# registry and the process groups clean up).
_SETPRIV = shutil.which("setpriv")
PDEATHSIG_PREFIX = [_SETPRIV, "--pdeathsig", "KILL", "--"] if _SETPRIV else []


class Interrupted(RuntimeError):
    """The runner is stopping: no new process may start."""


def kill_group(pgid, grace=0.0, sig=signal.SIGTERM):
    """`sig` (SIGTERM), then SIGKILL after `grace` seconds if still alive, to a group."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return
    if sig == signal.SIGKILL:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.02)
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


class Registry:
    """The process groups alive right now, so that an interrupt or a crash kills all."""

    def __init__(self):
        self._lock = threading.Lock()
        self._groups = set()
        self.stopping = False

    def add(self, pgid):
        """Records a new group; once stopping, a group started late is killed at once."""
        with self._lock:
            self._groups.add(pgid)
            late = self.stopping
        if late:
            kill_group(pgid, sig=signal.SIGKILL)
            raise Interrupted("interrupted")

    def remove(self, pgid):
        with self._lock:
            self._groups.discard(pgid)

    def kill_all(self):
        """Kills every group, and every group started from now on."""
        with self._lock:
            self.stopping = True
            groups = list(self._groups)
        for pgid in groups:
            kill_group(pgid, sig=signal.SIGKILL)


REGISTRY = Registry()
atexit.register(REGISTRY.kill_all)


def spawn(args, *, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
          stderr=subprocess.DEVNULL, cwd=None, env=None):
    """Starts `args` in its own session (process group = its pid), recorded in REGISTRY."""
    if REGISTRY.stopping:
        raise Interrupted("interrupted")
    process = subprocess.Popen(PDEATHSIG_PREFIX + list(args), stdin=stdin, stdout=stdout,
                               stderr=stderr, cwd=cwd, env=env, start_new_session=True)
    REGISTRY.add(process.pid)
    return process


def stop(process, grace=KILL_GRACE_S, sig=signal.SIGTERM):
    """Kills the process's group unless it has ended, reaps it, forgets it."""
    if process.poll() is None:
        kill_group(process.pid, grace, sig)
    process.wait()
    REGISTRY.remove(process.pid)


def run(args, timeout, *, merge_output=False, cwd=None, env=None):
    """Runs `args` to its end (its group killed after `timeout` seconds): returns
    (status, stdout, stderr, timed_out) with the output decoded."""
    process = spawn(args, stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT if merge_output else subprocess.PIPE,
                    cwd=cwd, env=env)
    timed_out = False
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        kill_group(process.pid, KILL_GRACE_S)
        out, err = process.communicate()
    finally:
        stop(process)
    return (process.returncode, out.decode(errors="replace"),
            (err or b"").decode(errors="replace"), timed_out)


def install_signal_handlers():
    """SIGTERM and SIGHUP kill every child, then end the runner as Ctrl-C would (so
    `finally` blocks and fixture finalizers still run); Ctrl-C works even when the
    runner was started in the background, where SIGINT comes ignored."""
    def handler(signum, _frame):
        REGISTRY.kill_all()
        raise KeyboardInterrupt(f"signal {signum}")
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, handler)
    signal.signal(signal.SIGINT, signal.default_int_handler)


def free_port():
    """A loopback TCP port that was free a moment ago (bind port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_is_free(port):
    """Whether 127.0.0.1:port can be bound now (as a server would)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True
