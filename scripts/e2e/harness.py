"""harness: one QEMU per test (COM1 on a loopback port, COM2 console in a file, QMP),
real gdb in batch mode or under a pty, and process-group clean-up.

Every child (QEMU, gdb) runs in its own session; `Machine.stop` and `kill_group` kill the
whole group, and the registry `PROCESSES` lets the runner kill everything on Ctrl-C.
"""

import os
import pty
import re
import select
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

from . import qmp

REPO = Path(__file__).resolve().parent.parent.parent
TARGET_DIR = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
KERNEL = TARGET_DIR / "i586-unknown-linux-gnu" / "release" / "kernel"
# The stepping build (scripts/build --debug-build): unoptimised, locals readable.
STEPPING_KERNEL = TARGET_DIR / "i586-unknown-linux-gnu" / "stepping" / "kernel"
IMAGE = TARGET_DIR / "userimage.img"
GDB_SCRIPT = REPO / "gdb" / "pgkernel.py"
KILL_GRACE_S = 1.0


class TestFailure(AssertionError):
    """A failed check: the message says what was expected and what came."""


def check(condition, message):
    if not condition:
        raise TestFailure(message)


class Processes:
    """Process groups alive right now, so that Ctrl-C or a crash of the runner kills all."""

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
            kill_group(pgid)
            raise TestFailure("interrupted")

    def remove(self, pgid):
        with self._lock:
            self._groups.discard(pgid)

    def kill_all(self):
        """Kills every group, and every group a test thread starts from now on."""
        with self._lock:
            self.stopping = True
            groups = list(self._groups)
        for pgid in groups:
            kill_group(pgid)


PROCESSES = Processes()


def kill_group(pgid, grace=0.0):
    """SIGTERM, then SIGKILL after `grace` seconds, a whole process group."""
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
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


def free_port():
    """A loopback TCP port that was free a moment ago (bind port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Machine:
    """A QEMU running the kernel. `stub` is "kernel" (the in-kernel stub on COM1) or
    "qemu" (QEMU's own gdbstub, for developing the harness without the kernel stub)."""

    def __init__(self, workdir, cmdline, stub="kernel", mem="32M", wait_gdb=False,
                 accel="tcg", qemu_bin=None, kernel=KERNEL, image=IMAGE, swap=None):
        self.workdir = Path(workdir)
        self.cmdline = cmdline
        self.stub = stub
        self.mem = mem
        self.wait_gdb = wait_gdb
        self.accel = accel
        self.qemu_bin = qemu_bin or os.environ.get("QEMU", "qemu-system-i386")
        self.kernel = kernel
        self.image = image
        # A swap disk image (scripts/mkswap), attached as the primary IDE master.
        self.swap = swap
        self.console = self.workdir / "console.log"
        self.stderr_path = self.workdir / "qemu.stderr"
        self.qmp_path = self.workdir / "qmp.sock"
        self.port = None
        self.process = None
        self._qmp = None

    def command(self):
        cmdline = self.cmdline
        gdb_dev = []
        if self.stub == "kernel":
            if self.wait_gdb:
                cmdline += " gdb=wait"
            # nodelay: without it each stub reply waits ~40 ms for a delayed ACK.
            com1 = f"tcp:127.0.0.1:{self.port},server=on,wait=off,nodelay=on"
        else:
            com1 = "null"
            gdb_dev = ["-gdb", f"tcp:127.0.0.1:{self.port}"] + (["-S"] if self.wait_gdb else [])
        return [
            self.qemu_bin,
            "-kernel", str(self.kernel), "-initrd", str(self.image),
            "-m", self.mem, "-accel", self.accel,
            "-display", "none", "-monitor", "none",
            "-serial", com1, "-serial", f"file:{self.console}",
            "-qmp", f"unix:{self.qmp_path},server=on,wait=off",
            "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04",
            "-no-reboot",
            "-append", cmdline,
        ] + gdb_dev + self.disk_args()

    def disk_args(self):
        if self.swap is None:
            return []
        path = str(self.swap).replace(",", ",,")
        return ["-drive", f"file={path},format=raw,if=ide,index=0,media=disk"]

    def start(self, attempts=5):
        for _ in range(attempts):
            self.port = free_port()
            if self.qmp_path.exists():
                self.qmp_path.unlink()
            with open(self.stderr_path, "wb") as err:
                self.process = subprocess.Popen(
                    self.command(), stdin=subprocess.DEVNULL, stdout=err, stderr=err,
                    start_new_session=True)
            PROCESSES.add(self.process.pid)
            try:
                self._qmp = qmp.connect(self.qmp_path, self.process, timeout=10)
                return self
            except qmp.QmpError:
                self.stop()
                text = self.stderr_text()
                if "in use" not in text:  # a port race is retried, anything else is not
                    raise TestFailure(f"QEMU did not start: {text.strip()[-500:]}")
        raise TestFailure("QEMU could not get a free port")

    def stderr_text(self):
        try:
            return self.stderr_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def console_text(self):
        try:
            return self.console.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def wait_console(self, pattern, timeout=20.0):
        """Waits until the console matches the regex `pattern`; returns the match."""
        deadline = time.monotonic() + timeout
        regex = re.compile(pattern, re.M)
        while True:
            match = regex.search(self.console_text())
            if match:
                return match
            if self.process.poll() is not None:
                raise TestFailure(f"QEMU exited ({self.process.returncode}) before the console "
                                  f"showed /{pattern}/")
            if time.monotonic() > deadline:
                raise TestFailure(f"the console did not show /{pattern}/ within {timeout:g} s")
            time.sleep(0.05)

    def hmp(self, command):
        """A human-monitor command through QMP (e.g. `gva2gpa 0x...`, `info tlb`)."""
        return self._qmp.hmp(command)

    def alive(self):
        return self.process is not None and self.process.poll() is None

    def stop(self):
        if self._qmp is not None:
            self._qmp.close()
            self._qmp = None
        if self.process is not None:
            if self.process.poll() is None:
                kill_group(self.process.pid, KILL_GRACE_S)
            self.process.wait()
            PROCESSES.remove(self.process.pid)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


class GdbResult:
    def __init__(self, status, out, err, timed_out):
        self.status = status
        self.out = out
        self.err = err
        self.timed_out = timed_out

    def section(self, name):
        """The output between `echo <<name>>` markers (see gdb_commands)."""
        match = re.search(rf"<<{re.escape(name)}>>\n(.*?)<</{re.escape(name)}>>", self.out, re.S)
        if not match:
            raise TestFailure(f"gdb output has no section {name!r}:\n{self.tail()}")
        return match.group(1)

    def tail(self, lines=25):
        text = (self.out + "\n--- stderr ---\n" + self.err).splitlines()
        return "\n".join(text[-lines:])


def section(name, *commands):
    """gdb commands whose output run_gdb's result returns with `.section(name)`."""
    return [f"echo <<{name}>>\\n", *commands, f"echo <</{name}>>\\n"]


def monitor(command):
    """A gdb command running `monitor COMMAND` with its output on stdout (gdb prints the
    stub's console output on stderr in batch mode)."""
    return f"python print(gdb.execute({('monitor ' + command)!r}, to_string=True), end='')"


def gdb_base_args(kernel=KERNEL):
    return ["gdb", "-batch", "-nx", "-x", str(GDB_SCRIPT),
            "-ex", "set pagination off", "-ex", "set confirm off",
            "-ex", "set width 0", "-ex", "set style enabled off", str(kernel)]


def run_gdb(port, commands, timeout=40.0, attach=True, quit_status=0, kernel=KERNEL):
    """Runs gdb in batch mode: attach to 127.0.0.1:port, run `commands`, `quit N`."""
    args = gdb_base_args(kernel)
    pre = [f"target remote 127.0.0.1:{port}"] if attach else []
    for command in pre + list(commands) + [f"quit {quit_status}"]:
        args += ["-ex", command]
    env = dict(os.environ, TERM="dumb")
    process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, start_new_session=True, env=env,
                               cwd=REPO)
    PROCESSES.add(process.pid)
    timed_out = False
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        kill_group(process.pid, KILL_GRACE_S)
        out, err = process.communicate()
    finally:
        if process.poll() is None:
            kill_group(process.pid)
            process.wait()
        PROCESSES.remove(process.pid)
    result = GdbResult(process.returncode, out.decode(errors="replace"),
                       err.decode(errors="replace"), timed_out)
    if timed_out:
        raise TestFailure(f"gdb timed out after {timeout:g} s:\n{result.tail()}")
    return result


class PtyGdb:
    """Interactive gdb under a pseudo-terminal (for Ctrl-C: the pty turns 0x03 into SIGINT)."""

    def __init__(self, port, kernel=KERNEL):
        args = ["gdb", "-nx", "-q", "-x", str(GDB_SCRIPT),
                "-ex", "set pagination off", "-ex", "set confirm off",
                "-ex", "set style enabled off", "-ex", "set width 0",
                "-ex", f"target remote 127.0.0.1:{port}", str(kernel)]
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child: gdb, in the session pty.fork made for it
            os.chdir(REPO)
            os.environ["TERM"] = "dumb"
            try:
                os.execvp(args[0], args)
            finally:
                os._exit(127)
        PROCESSES.add(self.pid)
        self.buffer = ""

    def read_until(self, pattern, timeout=20.0):
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            match = regex.search(self.buffer)
            if match:
                consumed = self.buffer[:match.end()]
                self.buffer = self.buffer[match.end():]
                return consumed
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TestFailure(f"gdb (pty) did not print /{pattern}/ within {timeout:g} s; "
                                  f"last output: {self.buffer[-800:]!r}")
            ready, _, _ = select.select([self.fd], [], [], min(remaining, 0.2))
            if ready:
                try:
                    data = os.read(self.fd, 65536)
                except OSError:
                    data = b""
                if not data:
                    raise TestFailure(f"gdb (pty) exited; last output: {self.buffer[-800:]!r}")
                self.buffer += data.decode(errors="replace").replace("\r\n", "\n")

    def send(self, text):
        os.write(self.fd, text.encode())

    def close(self):
        try:
            os.close(self.fd)
        except OSError:
            pass
        kill_group(self.pid, KILL_GRACE_S)
        try:
            os.waitpid(self.pid, 0)
        except ChildProcessError:
            pass
        PROCESSES.remove(self.pid)
