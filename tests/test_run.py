"""test_run: scripts/run as a user runs it (issue 13's fixes): a taken --http-port refused
before booting, an inspector that dies said so on the terminal, --allow-write reaching
the inspector, Ctrl-C after a PASS exiting 0, inspector.log without colour codes, the
ktest list, an injected oom kill named as injected, and no test tools installed.

Two interactive runs (the console on scripts/run's stdout, Ctrl-C sent as the terminal
sends it: SIGINT to the run's process group) carry most checks, to keep boots few."""

import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
from pgtest import paths, procs, scenarios
from pgtest.check import check
from pgtest.inspector import request

pytestmark = pytest.mark.timeout(180)

RUN = str(paths.REPO / "scripts" / "run")
# A run's own output appears within seconds; the boot and the workload under TCG on a
# loaded machine take longer.
BOOT_TIMEOUT_S = 120.0
INSPECTOR_EXIT_S = 20.0
JSON = {"Content-Type": "application/json"}


class Run:
    """scripts/run in its own process group, its stdout and stderr read as they come."""

    def __init__(self, args):
        self.process = procs.spawn([RUN, "--no-build", *args], stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   env=dict(os.environ, TERM="dumb"))
        self._chunks = []
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for chunk in iter(lambda: self.process.stdout.read1(4096), b""):
            with self._lock:
                self._chunks.append(chunk)

    def text(self):
        with self._lock:
            # The kernel's console lines end in CR LF.
            return b"".join(self._chunks).decode(errors="replace").replace("\r\n", "\n")

    def wait_for(self, pattern, timeout=BOOT_TIMEOUT_S):
        """The first match of `pattern` in the output; fails with the output's end."""
        deadline = time.monotonic() + timeout
        while True:
            match = re.search(pattern, self.text(), re.MULTILINE)
            if match:
                return match
            if self.process.poll() is not None or time.monotonic() > deadline:
                self._reader.join(timeout=2)
                match = re.search(pattern, self.text(), re.MULTILINE)
                if match:
                    return match
                raise AssertionError(f"scripts/run never printed /{pattern}/ (status "
                                     f"{self.process.poll()}):\n{self.text()[-2500:]}")
            time.sleep(0.1)

    def ctrl_c(self, timeout=30):
        """SIGINT to the run's group, as the terminal's Ctrl-C; its exit status."""
        os.killpg(self.process.pid, signal.SIGINT)
        try:
            status = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"scripts/run still runs {timeout} s after Ctrl-C:\n{self.text()[-2500:]}") from None
        self._reader.join(timeout=5)
        return status

    def close(self):
        procs.stop(self.process)


@pytest.fixture
def runs(built):
    check(paths.INSPECTOR.is_file(), f"{paths.INSPECTOR} is missing: cargo build -p inspector")
    started = []

    def start(*args):
        run = Run(args)
        started.append(run)
        return run

    yield start
    for run in started:
        run.close()


def ports():
    """(--gdb-port, --http-port) that are free now."""
    return ["--gdb-port", str(procs.free_port()), "--http-port", str(procs.free_port())]


def post_fail(http_port):
    status, body, _ = request(f"http://127.0.0.1:{http_port}/api/v1/fail", "POST", b'{"seed": 7}', JSON)
    return status, body


def test_ktest_list_allow_write_clean_log_and_ctrl_c_after_pass(runs):
    """init=ktest with no argument lists every scenario with its description and passes;
    --allow-write reaches the inspector (a POST is answered, not refused with 403); its
    log has no ANSI escapes; Ctrl-C after the PASS exits 0 and says which verdict it saw."""
    args = ports()
    http_port = args[3]
    run = runs("--no-swap", "--allow-write", *args, "--cmdline", "init=ktest")
    run.wait_for(r"^VERDICT: PASS")
    out = run.text()
    listed = dict(re.findall(r"ktest\[1\]:\s{2,}([a-z0-9-]+)\s+\*?\s*(\S.*)$", out, re.MULTILINE))
    for name in scenarios.SCENARIOS:
        check(len(listed.get(name, "")) > 10, f"the ktest list has no description for {name}: {listed}")

    status, body = post_fail(http_port)
    check(status == 200 and json.loads(body).get("seed") == 7,
          f"POST /api/v1/fail with --allow-write: {status} {body[:300]!r}")

    log_path = run.wait_for(r"\(log: (\S+)\)").group(1)
    log = Path(log_path).read_bytes()
    check(log.strip(), f"{log_path} is empty: nothing to check for colour codes")
    check(b"\x1b" not in log, f"{log_path} has ANSI escapes: {log[:300]!r}")

    status = run.ctrl_c()
    out = run.text()
    check(status == 0 and "stopped without a verdict" not in out
          and "QEMU was stopped after the kernel's verdict" in out
          and "the kernel reported PASS" in out,
          f"Ctrl-C after the PASS: status {status}:\n{out[-1500:]}")


def test_injected_oom_without_allow_write_and_inspector_death(runs):
    """An oom kill of an injected failure says so and names the site; the kernel's record
    of injected failures ends the run; without --allow-write a POST is 403; when the
    inspector dies the terminal says so at once and the run exits 1."""
    args = ports()
    http_port = args[3]
    run = runs("--no-swap", *args, "--cmdline", "init=hello fail.do_no_page=1,100,0,1")
    run.wait_for(r"^VERDICT: ")
    out = run.text()
    check(re.search(r"^oom: out of memory \(injected: a failure at site do_no_page, not a real "
                    r"shortage\), killing pid 1 \(hello\)", out, re.MULTILINE),
          f"no injected oom line:\n{out[-1500:]}")
    check(re.search(r"^run: injected failures \(failseed 0\): do_no_page failed 1 of \d+ calls$",
                    out, re.MULTILINE),
          f"no record of the injected failure:\n{out[-1500:]}")
    check("VERDICT: FAIL init did not exit with 0 (killed by signal 11)" in out,
          f"the verdict of init killed by the injected oom:\n{out[-800:]}")

    status, body = post_fail(http_port)
    check(status == 403 and b"writes_disabled" in body, f"POST without --allow-write: {status} {body[:300]!r}")

    pid = int(run.wait_for(r"inspector \(gdb proxy and HTTP/JSON, pid (\d+)\)").group(1))
    os.kill(pid, signal.SIGKILL)
    run.wait_for(rf"^run: the inspector \(pid {pid}\) has exited", timeout=INSPECTOR_EXIT_S)
    status = run.ctrl_c()
    out = run.text()
    check(status == 1 and "failing the run: the inspector died while the kernel ran (killed by signal 9" in out,
          f"the run after the inspector died: status {status}:\n{out[-1500:]}")


def test_a_taken_http_port_is_refused_before_booting(built, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        console = tmp_path / "console.log"
        status, out, err, timed_out = procs.run(
            [RUN, "--no-build", "--no-swap", "--gdb-port", str(procs.free_port()), "--http-port", str(port),
             "--headless", str(console)], timeout=60)
    check(not timed_out and status == 1 and f"port {port} on 127.0.0.1 is taken" in err
          and "--http-port" in err and "booting" not in out and not console.exists(),
          f"scripts/run on a taken --http-port {port}: status {status}\n{out}\n{err}")


def test_run_installs_no_test_tools(tmp_path):
    """scripts/run (its build, its setup) installs what running needs, never the test
    tools: with a target directory of its own and no venv, it creates none. (cargo is a
    stub that stops the build, after setup, once it is reached.)"""
    stub = tmp_path / "bin"
    stub.mkdir()
    reached = tmp_path / "cargo.log"
    (stub / "cargo").write_text(f'#!/bin/sh\necho "$@" >> {reached}\nexit 3\n')
    (stub / "cargo").chmod(0o755)
    target = tmp_path / "target"
    env = dict(os.environ, PATH=f"{stub}:{os.environ['PATH']}", CARGO_TARGET_DIR=str(target))
    status, out, err, _ = procs.run([RUN, "--no-swap", "--headless", str(tmp_path / "c.log")],
                                            timeout=120, env=env)
    check(reached.exists() and "build" in reached.read_text(),
          f"scripts/run never reached the build: status {status}\n{out}\n{err}")
    check(not (target / "test-venv").exists() and "test tools" not in out + err,
          f"scripts/run installed the test tools:\n{out}\n{err}")
