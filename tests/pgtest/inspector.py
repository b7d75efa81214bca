"""inspector: the inspector daemon (target/debug/inspector) started on free ports, and the
HTTP helpers its tests use (JSON GETs, the API's error documents, Server-Sent Events)."""

import json
import shutil
import time
import urllib.error
import urllib.request
from pathlib import Path

from . import paths, procs
from .check import TestFailure, check

START_TIMEOUT_S = 10.0


def private_build(workdir, options):
    """Copies of the kernel ELF and the program image in `workdir`: the daemon reads
    symbols from the ELF QEMU booted, even if the tree is rebuilt meanwhile. Returns
    (kernel, image)."""
    kernel, image = Path(workdir) / "kernel", Path(workdir) / "userimage.img"
    shutil.copy(options.kernel, kernel)
    shutil.copy(options.image, image)
    return kernel, image


class Daemon:
    """The inspector serving the kernel on `target` (COM1's host:port): HTTP on
    127.0.0.1:`http_port`, gdb's proxy on `gdb_listen` ("127.0.0.1:N" or "off"); with
    `ram` (a Machine's `ram_path`) it answers live from the guest's RAM file."""

    def __init__(self, workdir, *, target, http_port, gdb_listen="off", qmp_path=None,
                 kernel=None, ram=None, extra=(), log="daemon.log", binary=None):
        self.workdir = Path(workdir)
        self.args = [str(binary or paths.INSPECTOR), "--target", target,
                     "--gdb-listen", gdb_listen, "--listen", f"127.0.0.1:{http_port}"]
        if qmp_path is not None:
            self.args += ["--qmp", str(qmp_path)]
        if kernel is not None:
            self.args += ["--kernel", str(kernel)]
        if ram is not None:
            self.args += ["--ram", str(ram)]
        self.args += list(extra)
        self.log_path = self.workdir / log
        self.base = f"http://127.0.0.1:{http_port}"
        self.process = None

    def start(self):
        """Starts the daemon and waits until /health answers."""
        with open(self.log_path, "ab") as log:
            self.process = procs.spawn(self.args, stdout=log, stderr=log)
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                get(self.base + "/health")
                return self
            except (OSError, TestFailure):
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise TestFailure(f"the daemon did not start: {self.log_text()[-800:]}") from None
                time.sleep(0.05)

    def log_text(self):
        return paths.read_text(self.log_path)

    def stop(self):
        if self.process is not None:
            procs.stop(self.process)


# The envelope's fields: where and when an answer was taken (answer.rs's Envelope).
ENVELOPE = ("seq", "consistency", "mid_change", "retries", "source")


def document(answer):
    """An answer without its envelope: the monitor's document, to compare across sources."""
    return {k: v for k, v in answer.items() if k not in ENVELOPE}


def request(url, method="GET", body=None, headers=None, timeout=30):
    """(status, body bytes, headers) of an HTTP request; HTTP errors are answers too."""
    req = urllib.request.Request(url, method=method, data=body, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read(), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read(), dict(e.headers)


def get(url, expect=200, **kw):
    """The JSON document of a GET that must answer `expect`."""
    status, body, _ = request(url, **kw)
    check(status == expect, f"GET {url}: {status}, expected {expect}: {body[:300]!r}")
    return json.loads(body)


def error_of(url, status, code, **kw):
    """The API's error document {"error": {"code", "message"}} with `status` and `code`."""
    got, body, _headers = request(url, **kw)
    check(got == status, f"{kw.get('method', 'GET')} {url}: {got}, expected {status}: {body[:300]!r}")
    doc = json.loads(body)
    check(set(doc) == {"error"} and set(doc["error"]) == {"code", "message"}, f"error shape: {doc}")
    check(code is None or doc["error"]["code"] == code, f"error code {doc['error']['code']}, expected {code}")
    return doc


def sse_events(url, count, timeout, headers=None):
    """Reads `count` events (dicts with id/event/data) from an SSE stream."""
    req = urllib.request.Request(url, headers=headers or {})
    events, current = [], {}
    deadline = time.monotonic() + timeout
    with urllib.request.urlopen(req, timeout=timeout) as r:
        check(r.headers.get("content-type", "").startswith("text/event-stream"), "not an event stream")
        while len(events) < count and time.monotonic() < deadline:
            line = r.readline().decode().rstrip("\n")
            if not line:
                if "data" in current:
                    events.append(current)
                current = {}
                continue
            if line.startswith(":"):
                continue
            key, _, value = line.partition(":")
            current[key] = value.lstrip()
    return events
