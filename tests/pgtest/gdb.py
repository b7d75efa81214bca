"""gdb: real gdb against a stub, in batch mode (`run_gdb`, `run_batch`) or interactive
under a pseudo-terminal (`PtyGdb`, for Ctrl-C), each in its own process group."""

import json
import os
import pty
import re
import select
import signal
import time

from . import paths, procs
from .check import TestFailure

# Exact output: no pager, no wrapping, no colour, no questions.
# gdb's prompt, as the interactive sessions wait for it.
PROMPT = r"\(gdb\) "
SETTINGS = ("set pagination off", "set confirm off", "set width 0", "set style enabled off")


class GdbResult:
    def __init__(self, status, out, err, timed_out):
        self.status = status
        self.out = out
        self.err = err
        self.timed_out = timed_out

    def section(self, name):
        """The output between `echo <<name>>` markers (see `section`)."""
        match = re.search(rf"<<{re.escape(name)}>>\n(.*?)<</{re.escape(name)}>>", self.out, re.DOTALL)
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


def base_args(kernel=None, scripts=(paths.GDB_SCRIPT,)):
    """gdb -batch -nx, the scripts (-x), the settings, the kernel's symbols."""
    args = ["gdb", "-batch", "-nx"]
    for script in scripts:
        args += ["-x", str(script)]
    for setting in SETTINGS:
        args += ["-ex", setting]
    return args + [str(kernel or paths.KERNEL)]


def gdb_env(**extra):
    return dict(os.environ, TERM="dumb", **extra)


def run_batch(args, timeout, *, merge_output=False, env=None):
    """Runs a gdb command line to its end; a GdbResult (timed_out set, never raises)."""
    status, out, err, timed_out = procs.run(args, timeout, merge_output=merge_output,
                                            cwd=paths.REPO, env=env or gdb_env())
    return GdbResult(status, out, err, timed_out)


def run_gdb(port, commands, timeout=40.0, attach=True, quit_status=0, kernel=None,
            scripts=(paths.GDB_SCRIPT,)):
    """gdb in batch mode: attach to 127.0.0.1:port, run `commands`, `quit N`."""
    args = base_args(kernel, scripts)
    pre = [f"target remote 127.0.0.1:{port}"] if attach else []
    for command in pre + list(commands) + [f"quit {quit_status}"]:
        args += ["-ex", command]
    result = run_batch(args, timeout)
    if result.timed_out:
        raise TestFailure(f"gdb timed out after {timeout:g} s:\n{result.tail()}")
    return result


class PtyGdb:
    """Interactive gdb under a pseudo-terminal (the pty turns 0x03 into SIGINT)."""

    def __init__(self, port, kernel=None, scripts=(paths.GDB_SCRIPT,)):
        args = ["gdb", "-nx", "-q"]
        for script in scripts:
            args += ["-x", str(script)]
        for setting in SETTINGS:
            args += ["-ex", setting]
        args += ["-ex", f"target remote 127.0.0.1:{port}", str(kernel or paths.KERNEL)]
        args = procs.PDEATHSIG_PREFIX + args
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child: gdb, in the session pty.fork made for it
            try:
                os.chdir(paths.REPO)
                os.environ["TERM"] = "dumb"
                os.execvp(args[0], args)
            finally:
                os._exit(127)
        procs.REGISTRY.add(self.pid)
        self.buffer = ""
        self.closed = False

    def read_until(self, pattern, timeout=20.0):
        """Reads until `pattern` (a regex) appears; returns the text up to its end and
        keeps the rest."""
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

    def command(self, line, timeout=30.0):
        """Runs a gdb command; its output up to the next prompt."""
        self.send(line + "\n")
        return self.read_until(PROMPT, timeout)

    def monitor_json(self, command, timeout=60.0):
        """`monitor COMMAND --json`, parsed (the stub's own document)."""
        out = self.command(f"python print(gdb.execute({('monitor ' + command + ' --json')!r}, to_string=True))",
                           timeout)
        match = re.search(r"^\{.*\}$", out, re.MULTILINE)
        if not match:
            raise TestFailure(f"gdb printed no JSON for monitor {command}: {out[-400:]!r}")
        return json.loads(match.group(0))

    def close(self, kill=False):
        """Ends gdb: SIGTERM then SIGKILL, or with kill=True SIGKILL at once (a gdb that
        dies without detaching)."""
        if self.closed:
            return
        self.closed = True
        if kill:
            procs.kill_group(self.pid, sig=signal.SIGKILL)
        else:
            procs.kill_group(self.pid, procs.KILL_GRACE_S)
        try:
            os.waitpid(self.pid, 0)
        except ChildProcessError:
            pass
        try:
            os.close(self.fd)
        except OSError:
            pass
        procs.REGISTRY.remove(self.pid)
