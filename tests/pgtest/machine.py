"""machine: one QEMU running the kernel, as every test boots it.

A Machine has a work directory (the console `console.log`, QEMU's `qemu.stderr`, the swap
disk) and a private socket directory under /tmp (unix socket paths must stay short):
- COM1, the kernel's gdb stub, on a free loopback port (`stub="kernel"`), or QEMU's own
  gdbstub on that port with COM1 unused (`stub="qemu"`), or nothing (`stub=None`);
- COM2, the console, in `console.log`;
- QMP sockets by name (`qmp=("tests",)`: the first one is the test's own client,
  `machine.qmp`; more names for daemons: `machine.qmp_path("daemon")`);
- optionally QEMU's gdbstub as well (`qemu_gdb=True`: `machine.qemu_gdb_port`);
- a swap disk (`swap=SwapDisk("32M")`, made fresh by scripts/mkswap);
- **RAM in a file** by default (`ram_file=True`): `-object memory-backend-file,...,
  share=on -machine memory-backend=ram0`, in a private directory under /dev/shm when it
  exists (else $TMPDIR), `machine.ram_path`; the file's offset is the guest physical
  address. The directory goes when QEMU ends (`stop`), at interpreter exit, and any
  directory left by a runner that died is swept at the next boot (its owner pid is in
  its name).
"""

import atexit
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from . import paths, procs, qmp, status
from .check import TestFailure

RAM_DIR_PREFIX = "pgtest-ram-"
SOCKET_DIR_PREFIX = "pgtest-sock-"
# QEMU's start-up: how long until its QMP socket answers.
QMP_CONNECT_TIMEOUT_S = 10.0
PORT_ATTEMPTS = 5
DEFAULT_MEM = "32M"


def _qemu_value(text):
    """A value inside a QEMU option list: a comma is written twice."""
    return str(text).replace(",", ",,")


# --- RAM in a file ------------------------------------------------------------------------
def ram_base():
    """Where RAM files go: /dev/shm (tmpfs, fastest) when usable, else $TMPDIR."""
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK | os.X_OK):
        return shm
    return Path(tempfile.gettempdir())


def _pid_alive(pid):
    """Whether `pid` runs (a zombie, dead but not yet reaped, counts as dead)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        # /proc/PID/stat: "pid (comm) state ...": the state follows the last ')'.
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def sweep_stale_ram_dirs(base=None):
    """Removes RAM directories whose owner (the pid in their name) is dead; returns them."""
    base = Path(base) if base is not None else ram_base()
    removed = []
    try:
        entries = list(base.iterdir())
    except OSError:
        return removed
    for entry in entries:
        match = re.fullmatch(rf"{RAM_DIR_PREFIX}(\d+)-.*", entry.name)
        if match and entry.is_dir() and not _pid_alive(int(match.group(1))):
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
    return removed


_LIVE_RAM_DIRS = set()


def _remove_live_ram_dirs():
    for directory in list(_LIVE_RAM_DIRS):
        shutil.rmtree(directory, ignore_errors=True)
        _LIVE_RAM_DIRS.discard(directory)


atexit.register(_remove_live_ram_dirs)


class RamFile:
    """A private directory holding the guest's RAM file `ram` (created by QEMU); `again`
    makes the same directory anew (a restarted machine keeps its RAM file's path, as it
    keeps its ports, so that a daemon given `--ram` finds the new boot there)."""

    def __init__(self, base=None, again=None):
        base = Path(base) if base is not None else ram_base()
        sweep_stale_ram_dirs(base)
        if again is not None:
            again.mkdir(mode=0o700)
            self.dir = again
        else:
            self.dir = Path(tempfile.mkdtemp(prefix=f"{RAM_DIR_PREFIX}{os.getpid()}-", dir=base))
        _LIVE_RAM_DIRS.add(self.dir)
        self.path = self.dir / "ram"

    def qemu_args(self, mem):
        # size= must equal -m.
        return ["-object", (f"memory-backend-file,id=ram0,size={mem},"
                            f"mem-path={_qemu_value(self.path)},share=on"),
                "-machine", "memory-backend=ram0"]

    def remove(self):
        shutil.rmtree(self.dir, ignore_errors=True)
        _LIVE_RAM_DIRS.discard(self.dir)


# --- the swap disk ------------------------------------------------------------------------
@dataclass(frozen=True)
class SwapDisk:
    """A swap disk made fresh by scripts/mkswap, attached as the primary IDE master (as
    scripts/run --swap does)."""
    size: str = "32M"
    # A header without the SWAP-SPACE signature: a device the kernel must refuse.
    bad_signature: bool = False

    def describe(self):
        return f"swap {self.size}" + (" bad-signature" if self.bad_signature else "")

    def make(self, path):
        """Writes a fresh image at `path` (an old one is replaced)."""
        path = Path(path)
        path.unlink(missing_ok=True)
        command = [sys.executable, str(paths.MKSWAP), str(path), "--size", self.size]
        if self.bad_signature:
            command.append("--bad-signature")
        done = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True, check=False, text=True)
        if done.returncode != 0:
            last = done.stderr.strip().splitlines()[-1:] or [f"status {done.returncode}"]
            raise TestFailure(f"scripts/mkswap failed: {last[0]}")
        return path


def drive_args(path):
    return ["-drive", f"file={_qemu_value(path)},format=raw,if=ide,index=0,media=disk"]


# --- the machine --------------------------------------------------------------------------
class Machine:
    """A QEMU running the kernel; `start()` boots it, `stop()` ends QEMU (the RAM file
    goes), `close()` also removes the socket directory. A stopped machine can be started
    again on the same ports and sockets (a daemon connected to them reconnects)."""

    def __init__(self, workdir, cmdline, *, mem=DEFAULT_MEM, swap=None, stub="kernel",
                 gdb_wait=False, accel="tcg", qmp=("tests",), qemu_gdb=False, ram_file=True,
                 kernel=None, image=None, qemu=None):
        if stub not in ("kernel", "qemu", None):
            raise ValueError(f"stub must be 'kernel', 'qemu' or None, not {stub!r}")
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.cmdline = cmdline
        self.mem = mem
        self.swap = swap
        self.stub = stub
        self.gdb_wait = gdb_wait
        self.accel = accel
        self.qmp_names = tuple(qmp)
        self.want_qemu_gdb = qemu_gdb
        self.use_ram_file = ram_file
        self.kernel = Path(kernel or paths.KERNEL)
        self.image = Path(image or paths.IMAGE)
        self.qemu_bin = qemu or paths.qemu_binary()
        self.console = self.workdir / "console.log"
        self.stderr_path = self.workdir / "qemu.stderr"
        self.swap_path = self.workdir / "swap.img" if swap is not None else None
        self.socket_dir = Path(tempfile.mkdtemp(prefix=SOCKET_DIR_PREFIX))
        self.port = None
        self.qemu_gdb_port = None
        self.process = None
        self.qmp = None
        self.ram = None
        self._ram_dir = None
        self._swap_made = False
        self._started_once = False

    # --- what QEMU runs ---
    @property
    def ram_path(self):
        """The guest's RAM file while QEMU runs (None without ram_file)."""
        return self.ram.path if self.ram is not None else None

    def qmp_path(self, name="tests"):
        return self.socket_dir / f"qmp-{name}.sock"

    def kernel_cmdline(self):
        cmdline = self.cmdline
        if self.stub == "kernel" and self.gdb_wait:
            cmdline += " gdb=wait"
        return cmdline

    def command(self):
        extra = []
        if self.stub == "kernel":
            # nodelay: without it each stub reply waits ~40 ms for a delayed ACK.
            com1 = f"tcp:127.0.0.1:{self.port},server=on,wait=off,nodelay=on"
        else:
            com1 = "null"
            if self.stub == "qemu":
                extra += ["-gdb", f"tcp:127.0.0.1:{self.port}"] + (["-S"] if self.gdb_wait else [])
        if self.qemu_gdb_port is not None:
            extra += ["-gdb", f"tcp:127.0.0.1:{self.qemu_gdb_port}"]
        for name in self.qmp_names:
            extra += ["-qmp", f"unix:{self.qmp_path(name)},server=on,wait=off"]
        if self.swap_path is not None:
            extra += drive_args(self.swap_path)
        if self.ram is not None:
            extra += self.ram.qemu_args(self.mem)
        return [
            self.qemu_bin,
            "-kernel", str(self.kernel), "-initrd", str(self.image),
            "-m", self.mem, "-accel", self.accel,
            "-display", "none", "-monitor", "none",
            # COM1 is the kernel's gdb stub; COM2 the console.
            "-serial", com1, "-serial", f"file:{self.console}",
            "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04",
            "-no-reboot",
            *extra,
            "-append", self.kernel_cmdline(),
        ]

    def describe(self):
        swap = f", {self.swap.describe()}" if self.swap is not None else ""
        return f"-m {self.mem}{swap}: {self.kernel_cmdline()}"

    # --- running ---
    def _choose_ports(self):
        self.port = procs.free_port() if self.stub is not None else None
        self.qemu_gdb_port = procs.free_port() if self.want_qemu_gdb else None

    def start(self):
        """Boots QEMU; with QMP sockets, returns once the first one answers."""
        if self.swap is not None and not self._swap_made:
            self.swap.make(self.swap_path)
            self._swap_made = True
        restart = self._started_once
        for _ in range(PORT_ATTEMPTS):
            if not restart:
                self._choose_ports()
            for name in self.qmp_names:
                self.qmp_path(name).unlink(missing_ok=True)
            self.console.unlink(missing_ok=True)
            if self.use_ram_file:
                self.ram = RamFile(again=self._ram_dir if restart else None)
                self._ram_dir = self.ram.dir
            with open(self.stderr_path, "ab") as err:
                self.process = procs.spawn(self.command(), stdout=err, stderr=err)
            self._started_once = True
            if not self.qmp_names:
                return self
            try:
                self.qmp = qmp.connect(self.qmp_path(self.qmp_names[0]), self.process,
                                       timeout=QMP_CONNECT_TIMEOUT_S)
                return self
            except qmp.QmpError:
                self.stop()
                text = self.stderr_text()
                # A port taken between free_port and QEMU's bind is retried with new ports.
                if "in use" not in text or restart:
                    raise TestFailure(f"QEMU did not start: {text.strip()[-500:]}") from None
        raise TestFailure("QEMU could not get a free port")

    def alive(self):
        return self.process is not None and self.process.poll() is None

    @property
    def returncode(self):
        return None if self.process is None else self.process.poll()

    def wait(self, timeout):
        """Waits for QEMU to exit; returns its status, or None (still running) at timeout."""
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, grace=procs.KILL_GRACE_S):
        """Ends QEMU (its whole group) and removes the RAM file."""
        if self.qmp is not None:
            self.qmp.close()
            self.qmp = None
        if self.process is not None:
            procs.stop(self.process, grace)
        if self.ram is not None:
            self.ram.remove()
            self.ram = None

    def close(self):
        self.stop()
        shutil.rmtree(self.socket_dir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()

    # --- what it says ---
    def stderr_text(self):
        return paths.read_text(self.stderr_path)

    def console_text(self):
        return paths.read_text(self.console)

    def verdicts(self):
        return status.verdict_lines(self.console_text())

    def wait_console(self, pattern, timeout=20.0):
        """Waits until the console matches the regex `pattern` (multi-line); returns the match."""
        deadline = time.monotonic() + timeout
        regex = re.compile(pattern, re.MULTILINE)
        while True:
            match = regex.search(self.console_text())
            if match:
                return match
            if self.process is None or self.process.poll() is not None:
                code = None if self.process is None else self.process.returncode
                raise TestFailure(f"QEMU exited ({code}) before the console showed /{pattern}/")
            if time.monotonic() > deadline:
                raise TestFailure(f"the console did not show /{pattern}/ within {timeout:g} s")
            time.sleep(0.05)

    def hmp(self, command):
        """A human-monitor command through the test's QMP socket."""
        if self.qmp is None:
            raise TestFailure("this machine has no QMP client (qmp=())")
        return self.qmp.hmp(command)
