"""test_inspector: end-to-end tests of the inspector daemon against the kernel in QEMU.

One machine for the whole module (TCG; COM1 on a free port, two QMP sockets: the
daemon's and the tests', QEMU's own gdbstub on a free port) and target/debug/inspector
on free ports. The tests check every endpoint against the kernel's own monitor output
(real gdb, batch mode, through the daemon's gdb port) and against QEMU's translation;
concurrent clients; gdb attached at the same time; a paused VM and a silent stub (QEMU
answers); the kernel killed and restarted; bad requests; schemathesis against the
served OpenAPI document; every answer against the committed JSON Schema of the
documents (kernel/docs/monitor.schema.json), post-mortem answers against the stub's, and
the parameters (hex numbers, unknown ones, ?pretty) and key order. They run in file order on one xdist worker (the group
"inspector"): the first watches the demo's fault stream, the others start once the demo
has printed its verdict, and the restart comes last. `scripts/inspector-tests` runs these.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path

import pytest
from pgtest import gdb as pg_gdb
from pgtest import paths, procs, rsp, tools
from pgtest.check import check
from pgtest.gdb import PtyGdb
from pgtest.inspector import (
    ENVELOPE,
    Daemon,
    document,
    error_of,
    get,
    private_build,
    request,
    sse_events,
)
from pgtest.machine import Machine
from pgtest.paths import INSPECTOR

# One worker, in order; run while no other test runs (their stub link and timings need it).
pytestmark = [pytest.mark.xdist_group("inspector"), pytest.mark.exclusive, pytest.mark.timeout(300)]
SCHEMATHESIS = Path(shutil.which("st", path=str(Path(sys.executable).parent)) or tools.venv_bin("st"))


class Setup:
    """The machine, the daemon, and the ports the tests talk to."""

    def __init__(self, work, options):
        self.work = Path(work)
        self.kernel, self.image = private_build(self.work, options)
        self.machine = Machine(self.work / "machine", "init=demo", mem="32M", stub="kernel",
                               qmp=("tests", "daemon"), qemu_gdb=True, accel=options.accel,
                               kernel=self.kernel, image=self.image, qemu=options.qemu)
        self.gdb_port = procs.free_port()
        self.http_port = procs.free_port()
        self.base = f"http://127.0.0.1:{self.http_port}"
        self.daemon = None
        self.daemons = []

    @property
    def qmp(self):
        return self.machine.qmp

    def start_qemu(self):
        self.machine.start()

    def stop_qemu(self):
        self.machine.stop()

    def start_daemon(self, *extra, port=None, target=None, log="daemon.log"):
        # The main daemon reads the RAM file (the live source) of whichever QEMU runs.
        daemon = Daemon(self.work, target=target or f"127.0.0.1:{self.machine.port}",
                        http_port=port or self.http_port,
                        gdb_listen=f"127.0.0.1:{self.gdb_port}" if port is None else "off",
                        qmp_path=self.machine.qmp_path("daemon"), kernel=self.kernel,
                        ram=self.machine.ram_path if port is None else None,
                        extra=("--timeout-ms", "8000", "--poll-ms", "300", *extra), log=log)
        self.daemons.append(daemon)
        return daemon.start()

    def wait_console(self, pattern, timeout=60):
        self.machine.wait_console(pattern, timeout)

    def close(self):
        for daemon in reversed(self.daemons):
            daemon.stop()
        self.machine.close()


@pytest.fixture(scope="module")
def s(workdirs, built):
    setup = Setup(workdirs.make("inspector"), built)
    try:
        setup.start_qemu()
        setup.daemon = setup.start_daemon("--allow-write")
        setup.wait_console(r"^init: pid 1", 30)
        yield setup
    finally:
        setup.close()


@pytest.fixture(autouse=True)
def _console_in_reports(request, s):
    """A failed test's report shows the machine's console (see conftest)."""
    request.node.pg_machines = [s.machine]
    # The tests share the machine in order: under xdist they must stay on one worker.
    if getattr(request.config.option, "loadgroup", False) and not request.node.nodeid.endswith("@inspector"):
        pytest.fail("xdist did not keep the inspector's tests together (--dist loadgroup "
                    "ignored: see the pytest pin in tests/requirements.txt)", pytrace=False)


@pytest.fixture
def demo_done(s):
    """The demo has printed its verdict: the machine is idle from here on."""
    s.wait_console(r"^VERDICT", 90)


def strip(doc):
    return document(doc)


def gdb_batch(s, commands, timeout=60):
    """Real gdb through the daemon's proxy; returns {command: monitor JSON}."""
    script = []
    for i, c in enumerate(commands):
        script += pg_gdb.section(str(i), pg_gdb.monitor(c))
    result = pg_gdb.run_gdb(s.gdb_port, script + ["detach"], timeout=timeout, kernel=s.kernel, scripts=())
    out = {}
    for i, c in enumerate(commands):
        match = re.search(rf"<<{i}>>\n(.*?)<</{i}>>", result.out, re.DOTALL)
        check(match, f"gdb gave no output for {c!r}: {result.out[-500:]} {result.err[-500:]!r}")
        out[c] = json.loads(match.group(1))
    return out


def test_sse_live(s):
    events = sse_events(s.base + "/api/v1/faults/stream", 5, 30)
    faults = [e for e in events if e.get("event") == "fault"]
    check(len(faults) >= 3, f"few fault events while the demo runs: {events}")
    for e in faults:
        record = json.loads(e["data"])
        check(int(e["id"]) == record["seq"], f"SSE id {e['id']} is not seq {record['seq']}")
        check(re.fullmatch(r"0x[0-9a-f]{8}", record["linear"]), f"linear {record['linear']}")
    ids = [int(e["id"]) for e in faults]
    check(ids == sorted(ids) and len(set(ids)) == len(ids), f"ids not increasing: {ids}")
    # Resume: Last-Event-ID replays what came after it (as far as the daemon remembers).
    resumed = sse_events(s.base + "/api/v1/faults/stream", 2, 20, {"Last-Event-ID": str(ids[0])})
    check(resumed and int(resumed[0].get("id", 0)) > ids[0], f"resume after {ids[0]}: {resumed[:2]}")


def read_stream_until_idle(url, done, idle_s=8.0):
    """Every SSE event of `url` until `done()` holds and nothing came for `idle_s`."""
    events, current = [], {}
    with urllib.request.urlopen(urllib.request.Request(url), timeout=idle_s) as r:
        while True:
            try:
                line = r.readline().decode().rstrip("\n")
            except TimeoutError:
                check(done(), f"the stream went quiet before the demo ended ({len(events)} events)")
                return events
            if not line:
                if "data" in current:
                    events.append(current)
                current = {}
            elif not line.startswith(":"):
                key, _, value = line.partition(":")
                current[key] = value.lstrip()


def test_sse_loses_nothing(s):
    """The demo's thousands of faults, every one, reach an SSE client (from the fault ring
    in the RAM file, read every 20 ms): seqs 1..N with no gap, and N and the counts by
    action are the kernel's own totals."""
    events = read_stream_until_idle(s.base + "/api/v1/faults/stream?since=0",
                                    lambda: "VERDICT" in s.machine.console_text())
    gaps = [e for e in events if e.get("event") != "fault"]
    faults = [json.loads(e["data"]) for e in events if e.get("event") == "fault"]
    seqs = [f["seq"] for f in faults]
    doc = get(s.base + "/api/v1/faults")
    check(not gaps, f"the stream reported gaps: {gaps[:5]}")
    check(doc["since_boot"] > 1000, f"the demo made only {doc['since_boot']} faults")
    check(seqs == list(range(1, doc["since_boot"] + 1)),
          f"{len(seqs)} fault events (first {seqs[:3]}, last {seqs[-3:]}), the kernel made {doc['since_boot']}")
    by_action = Counter(f["action"] for f in faults)
    totals = {k: v for k, v in doc["totals"].items() if v}
    check(dict(by_action) == totals, f"the stream's counts by action {dict(by_action)} vs the kernel's {totals}")
    st = get(s.base + "/api/v1/status")["fault_stream"]
    check(st == {"from": "ring", "last_seq": doc["since_boot"], "lost": 0}, f"status fault_stream {st}")


def test_status(s, demo_done):
    st = get(s.base + "/api/v1/status")
    check(st["connected"] and st["kernel"] == "running", f"status {st}")
    cr3 = int(re.search(r"CR3=([0-9a-f]+)", s.qmp.hmp("info registers")).group(1), 16)
    check(int(st["cr3"], 16) == cr3, f"CR3 {st['cr3']} vs QEMU {cr3:#x}")
    show = get(s.base + "/api/v1/showmem")
    check(st["high_memory"] == show["high_memory"], f"{st['high_memory']} vs showmem {show['high_memory']}")
    check(get(s.base + "/health")["status"] == "ok", "health")


ENDPOINTS = {
    "tasks --json": "/api/v1/tasks",
    "showmem --json": "/api/v1/showmem",
    "checkmm --json": "/api/v1/checkmm",
    "faults --json": "/api/v1/faults",
    "fail --json": "/api/v1/fail",
    "dumppgd --json": "/api/v1/page-directory",
    "dumppgd --all --json": "/api/v1/page-directory?all=true",
    "dumppgd --task 0 --json": "/api/v1/page-directory?task=0",
    "dumppgd --range 0x400000-0x1000000 --kernel --rw --json": "/api/v1/page-directory?start=0x400000&end=0x1000000&user=false&writable=true",
    "dumppt 0 --json": "/api/v1/page-tables/0",
    "dumppt 7 --json": "/api/v1/page-tables/7",
    "dumppt 100 --json": "/api/v1/page-tables/100",
    "walk 0x12345 --json": "/api/v1/walk?addr=0x12345",
    "walk 0x1000 --task 0 --json": "/api/v1/walk?addr=0x1000&task=0",
    "walk 0x30000000 --json": "/api/v1/walk?addr=0x30000000",
    "walk 0xffffffff --json": "/api/v1/walk?addr=0xffffffff",
}




ACCESSED_DIRTY = 0x60  # an entry's A and D bits


def without_cpu_bits(value):
    """`value` with every entry's accessed and dirty bits cleared: the CPU sets them
    behind the kernel's back (the kernel's own pages too, as the stub's buffers fill), so
    two reads a moment apart may differ in them and nothing else (introspection.md)."""
    if isinstance(value, list):
        return [without_cpu_bits(v) for v in value]
    if not isinstance(value, dict):
        return value
    out = {k: without_cpu_bits(v) for k, v in value.items()}
    if isinstance(out.get("raw"), str) and isinstance(out.get("flags"), str):
        out["raw"] = f"{int(out['raw'], 16) & ~ACCESSED_DIRTY:#010x}"
        out["flags"] = " ".join(f for f in out["flags"].split() if f not in ("A", "D"))
    return out


def test_endpoints_match_monitor(s, demo_done):
    """Every answer, live by default and through the stub, is the monitor's document."""
    monitor = gdb_batch(s, list(ENDPOINTS))
    for command, path in ENDPOINTS.items():
        doc = get(s.base + path)
        check(doc["source"] == "live", f"{path}: source {doc['source']}, expected live (the RAM file)")
        check(without_cpu_bits(strip(doc)) == without_cpu_bits(monitor[command]),
              f"{path} differs from `monitor {command}`:\n{strip(doc)}\n{monitor[command]}")
        # Idle: between two operations (consistent), or held by a stub query of the
        # daemon's own (stopped: queries stop the kernel where interrupts are on, never
        # inside a change).
        check(doc["consistency"] in ("consistent", "stopped") and doc["seq"] % 2 == 0
              and not doc["mid_change"], f"{path}: a live answer of the idle kernel {doc}")
    # source=stub still asks the stub (a small answer: a full table takes seconds at 115200 baud).
    stub = get(s.base + "/api/v1/walk?addr=0x12345&source=stub")
    check(stub["source"] == "stub" and strip(stub) == monitor["walk 0x12345 --json"], "walk?source=stub")


def test_walk_vs_qemu(s, demo_done):
    for addr in [0x0, 0x12345, 0x1000000, 0x1fdf000, 0x30000000, 0xfffff000]:
        doc = get(s.base + f"/api/v1/walk?addr={addr:#x}&verify=qemu")
        check(doc["agree"] is True, f"walk {addr:#x}: ours {doc['physical']} QEMU {doc['qemu']}")
        expected = s.qmp.hmp(f"gva2gpa {addr:#x}").strip()
        ours = doc["physical"]
        check((ours is None and "Unmapped" in expected) or (ours and int(ours, 16) == int(expected.split()[-1], 16)),
              f"walk {addr:#x}: {ours} vs {expected!r}")
        pm = get(s.base + f"/api/v1/walk?addr={addr:#x}&source=qemu")
        check(pm["source"] == "qemu", "post-mortem walk source")
        for key in ("linear", "pde", "table", "frame", "physical", "stop"):
            check(pm[key] == doc[key], f"walk {addr:#x} {key}: qemu {pm[key]} stub {doc[key]}")


def test_page_directory_qemu(s, demo_done):
    stub = get(s.base + "/api/v1/page-directory?all=true")
    pm = get(s.base + "/api/v1/page-directory?source=qemu")
    check(pm["source"] == "qemu" and pm["pg_dir"] == stub["pg_dir"], f"pg_dir {pm['pg_dir']} vs {stub['pg_dir']}")
    fields = ("index", "raw", "table", "flags", "present_ptes")
    a = [{k: e[k] for k in fields} for e in stub["entries"]]
    b = [{k: e[k] for k in fields} for e in pm["entries"]]
    check(a == b, f"entries differ:\n{a}\n{b}")
    pt = get(s.base + "/api/v1/page-tables/0?source=qemu")
    st = get(s.base + "/api/v1/page-tables/0")
    check([e["raw"] for e in pt["entries"]] == [e["raw"] for e in st["entries"]], "page table 0 differs")


def test_mem_map(s, demo_done):
    show = get(s.base + "/api/v1/showmem")
    mm = get(s.base + "/api/v1/mem-map")
    check(mm["source"] == "live" and mm["free"] == show["free"], f"mem_map free {mm['free']} vs showmem {show['free']}")
    stub = get(s.base + "/api/v1/mem-map?source=stub")
    check(stub["source"] == "stub" and stub["counts"] == mm["counts"], "mem_map through the stub differs")
    reserved = (int(show["start_mem"], 16) - 0x100000) // 4096
    check(mm["counts"][:reserved] == [100] * reserved, "reserved frames are not USED")
    part = get(s.base + "/api/v1/mem-map?start=0x200000&end=0x204000")
    check(part["counts"] == mm["counts"][256:260], "a range differs from the whole")
    pm = get(s.base + "/api/v1/mem-map?source=qemu")
    check(pm["source"] == "qemu" and pm["counts"] == mm["counts"], "post-mortem mem_map differs")
    # Every frame dumppt says is mapped has the count the monitor reports.
    pt = get(s.base + "/api/v1/page-tables/7")
    for e in pt["entries"]:
        if e["count"] is not None:
            i = (int(e["frame"], 16) - 0x100000) // 4096
            check(mm["counts"][i] == e["count"], f"frame {e['frame']}: {mm['counts'][i]} vs {e['count']}")


def test_concurrent_clients(s, demo_done):
    paths = ["/api/v1/tasks", "/api/v1/walk?addr=0x12345", "/api/v1/showmem", "/api/v1/page-tables/1",
             "/api/v1/status", "/api/v1/checkmm"]
    expected = {p: strip(get(s.base + p)) for p in paths}
    errors = []

    def client(n):
        try:
            for i in range(8):
                p = paths[(n + i) % len(paths)]
                doc = strip(get(s.base + p))
                if p != "/api/v1/status" and doc != expected[p]:
                    errors.append(f"{p}: differs")
        except Exception as e:  # noqa: BLE001 (any error is reported below)
            errors.append(repr(e))

    threads = [threading.Thread(target=client, args=(n,)) for n in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    check(not errors, f"concurrent clients: {errors[:5]}")
    check(get(s.base + "/api/v1/status")["kernel"] == "running", "the kernel is not running after the queries")


def test_gdb_at_the_same_time(s, demo_done):
    gdb = PtyGdb(s.gdb_port, kernel=s.kernel, scripts=())
    try:
        gdb.read_until(r"\(gdb\) ")
        st = get(s.base + "/api/v1/status")
        check(st["gdb_attached"] and st["kernel"] == "stopped", f"gdb holds the kernel: {st}")
        check(get(s.base + "/api/v1/tasks")["tasks"][0]["pid"] == 0, "query while gdb holds the kernel")
        check(get(s.base + "/api/v1/status")["kernel"] == "stopped", "a query resumed gdb's stopped kernel")
        gdb.send("continue\n")
        gdb.read_until(r"Continuing\.")
        time.sleep(0.3)
        for _ in range(3):
            get(s.base + "/api/v1/walk?addr=0x1000")
        st = get(s.base + "/api/v1/status")
        check(st["kernel"] == "running", f"not running after queries while gdb continues: {st}")
        time.sleep(0.3)
        check("SIGINT" not in gdb.buffer and "stopped" not in gdb.buffer, f"gdb saw a stop it did not ask for: {gdb.buffer!r}")
        gdb.send("\x03")
        gdb.read_until(r"SIGINT")
        gdb.read_until(r"\(gdb\) ")
        check(get(s.base + "/api/v1/status")["kernel"] == "stopped", "Ctrl-C did not stop the kernel for gdb")
        gdb.send("monitor showmem\n")
        gdb.read_until(r"frames: \d+ for paging")
        gdb.send("detach\n")
        gdb.read_until(r"Detaching|detached")
        gdb.send("quit\n")
        time.sleep(0.5)
        st = get(s.base + "/api/v1/status")
        check(st["kernel"] == "running" and not st["gdb_attached"], f"after detach: {st}")
    finally:
        gdb.close(kill=True)  # killed, never detached
    # A gdb killed without detaching must not leave the kernel stopped.
    gdb = PtyGdb(s.gdb_port, kernel=s.kernel, scripts=())
    try:
        gdb.read_until(r"\(gdb\) ")
    finally:
        gdb.close(kill=True)  # killed, never detached
    time.sleep(1.0)
    st = get(s.base + "/api/v1/status")
    check(st["kernel"] == "running" and not st["gdb_attached"], f"after a killed gdb: {st}")
    get(s.base + "/api/v1/tasks")


def test_bad_requests(s, demo_done):
    b = s.base
    error_of(b + "/api/v1/walk?addr=0xzz", 400, "bad_request")
    error_of(b + "/api/v1/walk", 400, "bad_request")
    error_of(b + "/api/v1/walk?addr=0x100000000", 400, "out_of_range")
    error_of(b + "/api/v1/walk?addr=0x4000000&task=0", 400, "out_of_range")
    error_of(b + "/api/v1/walk?addr=0x0&task=99", 404, "no_such_task")
    error_of(b + "/api/v1/walk?addr=1&verify=maybe", 400, "bad_request")
    error_of(b + "/api/v1/failnth/0", 404, "no_such_task")
    error_of(b + "/api/v1/page-tables/1024", 400, "out_of_range")
    error_of(b + "/api/v1/page-tables/-1", 400, "bad_request")
    error_of(b + "/api/v1/page-directory?start=0x1000", 400, "bad_request")
    error_of(b + "/api/v1/page-directory?start=0x2000&end=0x1000", 400, "bad_request")
    error_of(b + "/api/v1/page-directory?user=perhaps", 400, "bad_request")
    error_of(b + "/api/v1/mem-map?start=0x0", 400, "out_of_range")
    error_of(b + "/api/v1/nothing", 404, "not_found")
    error_of(b + "/api/v1/status", 403, "foreign_host", headers={"Host": "evil.example:80"})
    json_headers = {"Content-Type": "application/json"}
    error_of(b + "/api/v1/fail", 400, "bad_json", method="POST", body=b"{not json", headers=json_headers)
    error_of(b + "/api/v1/fail", 413, "payload_too_large", method="POST",
             body=b'{"site": "' + b"a" * 40000 + b'"}', headers=json_headers)
    error_of(b + "/api/v1/fail", 400, "bad_request", method="POST", body=b'{"site": "x y", "probability": 1}',
             headers=json_headers)
    error_of(b + "/api/v1/fail", 400, "bad_request", method="POST", body=b'{"seed": 1, "task": 1}', headers=json_headers)
    doc = json.loads(request(b + "/api/v1/fail", "POST", b'{"seed": 7}', json_headers)[1])
    check(doc.get("seed") == 7, f"fail seed 7: {doc}")



# ---- the typed documents: schema, post-mortem, parameters (kernel/report) ----

MONITOR_SCHEMA_PATH = paths.REPO / "kernel" / "docs" / "monitor.schema.json"
DOCUMENT_OF = {"tasks": "TasksDoc", "showmem": "ShowMemDoc", "checkmm": "CheckMmDoc", "faults": "FaultsDoc",
               "fail": "FailDoc", "dumppgd": "DumpPgdDoc", "dumppt": "DumpPtDoc", "walk": "WalkDoc"}


def validate_answers(answers):
    """Each (document name, answer) against `$defs/NAME` of the committed JSON Schema
    (generated from the kernel's document structs), with jsonschema_rs (schemathesis's)."""
    import jsonschema_rs

    schema = json.loads(MONITOR_SCHEMA_PATH.read_text())
    bad = []
    for name, doc in answers:
        one = dict(schema, **{"$ref": f"#/$defs/{name}"})
        one.pop("oneOf", None)
        errors = [e.message for e in jsonschema_rs.validator_for(one).iter_errors(doc)]
        if errors:
            bad.append(f"{name}: {errors[:3]}")
    check(not bad, "answers that do not match the schema:\n" + "\n".join(bad))


def test_answers_validate_against_the_schema(s, demo_done):
    answers = []
    for path in list(ENDPOINTS.values()) + ["/api/v1/walk?addr=0x12345&source=qemu",
                                            "/api/v1/page-tables/0?source=qemu",
                                            "/api/v1/page-directory?source=qemu"]:
        doc = get(s.base + path)
        answers.append((DOCUMENT_OF[doc["command"]], doc))
    validate_answers(answers)
    # The schema is served too, the same as the committed one.
    served = get(s.base + "/api/v1/schema.json")
    check(served == json.loads(MONITOR_SCHEMA_PATH.read_text()), "/api/v1/schema.json differs from the committed schema")


def test_post_mortem_equals_the_stub(s, demo_done):
    """Post-mortem answers (QEMU's memory, decoded by the kernel's own code) equal the
    stub's apart from what only the kernel knows: mem_map counts, pids, HIGH_MEMORY."""
    only_kernel = {"count", "pid", "high_memory", *ENVELOPE}

    def known(value):
        if isinstance(value, dict):
            return {k: known(v) for k, v in value.items() if k not in only_kernel}
        if isinstance(value, list):
            return [known(v) for v in value]
        return value

    for path in ("/api/v1/walk?addr=0x12345", "/api/v1/walk?addr=0x1000000", "/api/v1/walk?addr=0x30000000",
                 "/api/v1/page-tables/0", "/api/v1/page-tables/16", "/api/v1/page-tables/100"):
        sep = "&" if "?" in path else "?"
        stub = get(s.base + path + sep + "source=stub")
        pm = get(s.base + path + sep + "source=qemu")
        check(pm["source"] == "qemu" and stub["source"] == "stub", f"{path}: sources {pm['source']} {stub['source']}")
        check(known(pm) == known(stub), f"{path}: post-mortem differs from the stub:\n{known(pm)}\n{known(stub)}")
    stub = get(s.base + "/api/v1/page-directory?all=true&task=0&source=stub")
    pm = get(s.base + "/api/v1/page-directory?all=true&task=0&source=qemu")
    check(known(pm["entries"]) == known(stub["entries"]) and known(pm["runs"]) == known(stub["runs"]),
          f"the kernel's directory entries differ post-mortem:\n{pm['entries']}\n{stub['entries']}")


def test_numbers_parameters_and_order(s, demo_done):
    b = s.base
    # Every number takes decimal or 0x hex, in paths and queries alike.
    check(strip(get(b + "/api/v1/page-tables/0x10")) == strip(get(b + "/api/v1/page-tables/16")), "page-tables/0x10")
    check(strip(get(b + "/api/v1/page-directory?task=0x0")) == strip(get(b + "/api/v1/page-directory?task=0")),
          "task=0x0")
    check(strip(get(b + "/api/v1/walk?addr=4096&task=0x0")) == strip(get(b + "/api/v1/walk?addr=0x1000&task=0")),
          "walk task=0x0")
    # (No task 1 is left after the demo: the hex pid parses, and the kernel says so.)
    doc = error_of(b + "/api/v1/failnth/0x1", 404, "no_such_task")
    check("pid 1" in doc["error"]["message"], f"failnth/0x1: {doc}")
    # Parse errors are the API's own error document, naming what was wrong.
    for path, code, words in [
        ("/api/v1/page-tables/abc", "bad_request", "index: 'abc' is not a number (decimal or 0x hex)"),
        ("/api/v1/failnth/0xzz", "bad_request", "pid: '0xzz' is not a number"),
        ("/api/v1/page-directory?task=x", "bad_request", "task: 'x' is not a number"),
        ("/api/v1/walk?addr=1&bogus=2", "unknown_parameter", "unknown query parameter 'bogus'"),
        ("/api/v1/tasks?verbose=1", "unknown_parameter", "unknown query parameter 'verbose'"),
        ("/api/v1/faults/stream?since=soon", "bad_request", "since: 'soon' is not a number"),
        ("/api/v1/walk?addr=1&addr=2", "bad_request", "given twice"),
        # Checked before the kernel is asked anything.
        ("/api/v1/faults?pretty=maybe", "bad_request", "pretty: 'maybe' is not true or false"),
    ]:
        doc = error_of(b + path, 400, code)
        message = doc["error"]["message"]
        check(words in message and "deserialize" not in message.lower(), f"{path}: {message!r}")
    # Keys in the documented order: command and schema first, the envelope last.
    status, body, headers = request(b + "/api/v1/walk?addr=0x1000")
    check(status == 200 and body.startswith(b'{"command":"walk","schema":1,'), f"key order: {body[:80]!r}")
    check(list(json.loads(body))[-1] == "source", f"the envelope is not last: {list(json.loads(body))}")
    content_type = {k.lower(): v for k, v in headers.items()}.get("content-type", "")
    check(content_type.startswith("application/json"), f"content type {content_type!r}")
    # ?pretty indents the same document.
    status, pretty, _ = request(b + "/api/v1/walk?addr=0x1000&pretty")
    check(status == 200 and b'\n  "command": "walk",' in pretty, f"?pretty: {pretty[:80]!r}")
    # (A live answer's seq is the moment it was taken: compare the documents.)
    check(strip(json.loads(pretty)) == strip(json.loads(body)), "?pretty changed the document")
    status, pretty, _ = request(b + "/api/v1/status?pretty=true")
    check(status == 200 and b"\n  " in pretty, "status?pretty=true")


def test_safety_flags(s, demo_done):
    # Non-loopback without a token: refused at start.
    out = subprocess.run([str(INSPECTOR), "--listen", f"0.0.0.0:{procs.free_port()}", "--gdb-listen", "off",
                          "--target", "127.0.0.1:1"], capture_output=True, check=False, timeout=10)
    check(out.returncode != 0 and b"--token" in out.stderr, f"0.0.0.0 without a token: {out.returncode} {out.stderr[-300:]!r}")
    # A token-protected, read-only daemon (its kernel link goes nowhere: 503).
    port = procs.free_port()
    p = s.start_daemon("--token", "s3cret", port=port, target=f"127.0.0.1:{procs.free_port()}", log="daemon2.log")
    try:
        base = f"http://127.0.0.1:{port}"
        error_of(base + "/api/v1/status", 401, "unauthorized")
        error_of(base + "/api/v1/status", 401, "unauthorized", headers={"Authorization": "Bearer nope"})
        auth = {"Authorization": "Bearer s3cret"}
        check(get(base + "/api/v1/status", headers=auth)["connected"] is False, "connected to nothing?")
        error_of(base + "/api/v1/tasks", 503, "not_connected", headers=auth)
        error_of(base + "/api/v1/fail", 403, "writes_disabled", method="POST", body=b'{"seed": 1}',
                 headers=dict(auth, **{"Content-Type": "application/json"}))
        check(get(base + "/health")["status"] == "ok", "health needs no token")
    finally:
        p.stop()


def rsp_reads(port, reads):
    """gdb's handshake, `?`, the `m` packets of `reads` [(addr, len)], `D`: the replies."""
    c = rsp.Client("127.0.0.1", port, timeout=30)
    try:
        check(b"PacketSize=" in c.request("qSupported:multiprocess+;swbreak+;hwbreak+"), "no PacketSize")
        c.request("?")
        replies = [c.request(f"m{a:x},{n:x}") for a, n in reads]
        check(c.request("D") == b"OK", "detach")
        return replies
    finally:
        c.close()


def test_gdb_reads_from_ram(s, demo_done):
    """While the stub holds the kernel, the proxy answers gdb's `m` from the RAM file by
    the stub's own walk: the same bytes and the same errors as the stub itself gives (a
    direct connection to COM1), for kernel addresses, a page boundary into memory the
    walk refuses, unmapped addresses, and the stub's rule for a read that starts where a
    short one ended."""
    high = int(get(s.base + "/api/v1/showmem")["high_memory"], 16)
    pg_dir = int(get(s.base + "/api/v1/status")["cr3"], 16)
    reads = [(0x100000, 0x40), (0x12345, 0x10), (0x1ff0, 0x20), (0x100000, 4000), (pg_dir, 0x1000),
             (high - 0x10, 0x20), (high + 0x10, 4), (high, 4), (high - 0x1000, 0x1000),
             (0x30000000, 4), (0x4000000 - 8, 0x10), (0xfffffffc, 8), (0x0badf00d, 0x7)]
    before = get(s.base + "/api/v1/status")["gdb_reads_from_ram"]
    proxied = rsp_reads(s.gdb_port, reads)
    served = get(s.base + "/api/v1/status")["gdb_reads_from_ram"] - before
    check(served == len(reads), f"{served} of {len(reads)} reads answered from the RAM file")
    # The stub itself, on COM1 (the daemon gives the line up meanwhile).
    s.daemon.stop()
    try:
        direct = rsp_reads(s.machine.port, reads)
    finally:
        s.daemon = s.start_daemon("--allow-write")
        wait_connected(s.base)
    for (addr, n), p, d in zip(reads, proxied, direct):
        check(p == d, f"m{addr:x},{n:x}: the proxy answered {p[:60]!r}, the stub {d[:60]!r}")
    check(proxied[2] and proxied[7] == b"E0e" and proxied[6] == b"" and len(proxied[5]) == 2 * 0x10,
          f"the reads did not meet the cases they are for: {[r[:16] for r in proxied]}")


FAST_S = 1.0  # "at once": a generous bound for an answer that asks nobody slow


def timed_get(url, expect=200):
    t = time.monotonic()
    doc = get(url, expect=expect) if expect == 200 else error_of(url, expect, None)
    return doc, time.monotonic() - t


class SilentTarget:
    """A TCP port that accepts a connection and never answers: a stub whose kernel is
    wedged (the VM runs, nothing comes back)."""

    def __init__(self):
        import socket
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.conns = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            self.conns.append(conn)  # read nothing, answer nothing

    def close(self):
        self.server.close()
        for c in self.conns:
            c.close()


def test_paused_vm(s, demo_done):
    """The VM paused (QMP stop; the stub cannot answer): status says so with the right
    HIGH_MEMORY, QEMU answers what it can at once and says why, the rest is a 503 at
    once; after cont everything comes from the stub again."""
    running = get(s.base + "/api/v1/status")
    show = get(s.base + "/api/v1/showmem")
    s.qmp.execute("stop")
    try:
        st, took = timed_get(s.base + "/api/v1/status")
        check(st["kernel"] == "paused" and st["vm"] == "paused", f"status of a paused VM: {st}")
        check(st["high_memory"] == show["high_memory"] and st["cr3"] == running["cr3"],
              f"paused status {st} vs showmem {show['high_memory']}, cr3 {running['cr3']}")
        check(took < FAST_S, f"status took {took:.2f} s")
        # The live source reads the paused machine's RAM as it is: every document, at once.
        for path in ("/api/v1/walk?addr=0x12345", "/api/v1/page-directory", "/api/v1/page-tables/0",
                     "/api/v1/mem-map?start=0x200000&end=0x201000", "/api/v1/tasks", "/api/v1/checkmm",
                     "/api/v1/faults"):
            doc, took = timed_get(s.base + path)
            # (consistent: the count was even when QEMU stopped it, as it nearly always is)
            check(doc["source"] == "live" and doc["consistency"] in ("consistent", "paused"),
                  f"{path} paused: {str(doc)[:300]}")
            check(took < FAST_S, f"{path} took {took:.2f} s on a paused VM")
        doc, took = timed_get(s.base + "/api/v1/walk?addr=0x12345&source=qemu")
        check(doc["source"] == "qemu" and doc["physical"] == "0x00012345" and took < FAST_S,
              f"post-mortem walk {doc} in {took:.2f} s")
        # The stub is not asked (it cannot answer): a 503 at once, not a timeout.
        for path in ("/api/v1/tasks?source=stub", "/api/v1/walk?addr=0x1&source=stub"):
            doc, took = timed_get(s.base + path, 503)
            check(doc["error"]["code"] == "vm_paused" and "paused" in doc["error"]["message"], f"{path}: {doc}")
            check(took < FAST_S, f"{path} took {took:.2f} s to refuse")
        # Without a RAM file: QEMU answers what it can, saying why, after one short stop wait.
        silent = SilentTarget()
        try:
            port = procs.free_port()
            d = s.start_daemon(port=port, target=f"127.0.0.1:{silent.port}", log="daemon-paused.log")
            base = f"http://127.0.0.1:{port}"
            wait_connected(base)
            for path, field, value in (("/api/v1/walk?addr=0x12345", "physical", "0x00012345"),
                                       ("/api/v1/page-directory", "command", "dumppgd"),
                                       ("/api/v1/mem-map?start=0x200000&end=0x201000", "command", "mem_map")):
                doc, took = timed_get(base + path)
                check(doc["source"] == "qemu" and doc.get("kernel") == "paused" and doc[field] == value,
                      f"{path} on a paused VM without RAM file: {str(doc)[:300]}")
                check(took < FAST_S, f"{path} took {took:.2f} s on a paused VM")
            doc, took = timed_get(base + "/api/v1/tasks", 503)
            check(doc["error"]["code"] == "vm_paused" and took < FAST_S, f"tasks: {doc} in {took:.2f} s")
            st = get(base + "/api/v1/status")
            check(st["kernel"] == "paused" and st["high_memory"] == show["high_memory"], f"status {st}")
            d.stop()
        finally:
            silent.close()
    finally:
        s.qmp.execute("cont")
    deadline = time.monotonic() + 20
    while True:
        status, body, _ = request(s.base + "/api/v1/tasks?source=stub")
        if status == 200:
            break
        check(time.monotonic() < deadline, f"the stub did not come back after cont: {status} {body[:200]!r}")
        time.sleep(0.2)
    st = get(s.base + "/api/v1/status")
    check(st["kernel"] == "running" and st["vm"] == "running" and st["stub_responsive"], f"after cont: {st}")
    walk = get(s.base + "/api/v1/walk?addr=0x12345&source=stub")
    check(walk["source"] == "stub" and "kernel" not in walk, f"walk after cont: {walk}")


def wait_connected(base):
    deadline = time.monotonic() + 10
    while not get(base + "/health")["connected"]:
        check(time.monotonic() < deadline, f"the daemon at {base} did not connect")
        time.sleep(0.05)


def test_unresponsive_stub(s, demo_done):
    """A stub that does not answer while the VM runs: after one short probe the kernel
    is `unresponsive`, QEMU answers at once and says why, the task table is a 503."""
    silent = SilentTarget()
    port = procs.free_port()
    try:
        d = s.start_daemon(port=port, target=f"127.0.0.1:{silent.port}", log="daemon-silent.log")
        base = f"http://127.0.0.1:{port}"
        wait_connected(base)
        # The first query finds out (the stub's stop probe), well before --timeout-ms.
        doc, took = timed_get(base + "/api/v1/walk?addr=0x12345")
        check(doc["source"] == "qemu" and doc.get("kernel") == "unresponsive", f"first walk: {doc}")
        check(took < 4, f"the first walk took {took:.2f} s (the stop probe is 2 s, --timeout-ms 3 s)")
        st, took = timed_get(base + "/api/v1/status")
        check(st["kernel"] == "unresponsive" and st["vm"] == "running" and not st["stub_responsive"], f"status {st}")
        check(st["high_memory"] == get(s.base + "/api/v1/showmem")["high_memory"], f"HIGH_MEMORY {st}")
        check(took < FAST_S, f"status took {took:.2f} s")
        doc, took = timed_get(base + "/api/v1/page-directory")
        check(doc["source"] == "qemu" and doc.get("kernel") == "unresponsive", f"page directory: {str(doc)[:200]}")
        check(took < FAST_S, f"page directory took {took:.2f} s")
        doc, took = timed_get(base + "/api/v1/tasks", 503)
        check(doc["error"]["code"] == "unresponsive", f"tasks: {doc}")
        check(took < FAST_S, f"tasks took {took:.2f} s to refuse")
        d.stop()
    finally:
        silent.close()


def test_restart(s, demo_done):
    status = get(s.base + "/api/v1/status")
    before, boot = status["connects"], status["live"]["boot_id"]
    s.stop_qemu()
    time.sleep(0.5)
    check(get(s.base + "/health")["connected"] is False, "health after QEMU died")
    error_of(s.base + "/api/v1/tasks", 503, "not_connected")
    s.start_qemu()
    deadline = time.monotonic() + 30
    while not get(s.base + "/health")["connected"]:
        check(time.monotonic() < deadline, "the daemon did not reconnect")
        time.sleep(0.1)
    check(get(s.base + "/api/v1/status")["connects"] > before, "no reconnect counted")
    s.wait_console(r"^VERDICT", 90)
    check(get(s.base + "/api/v1/tasks")["tasks"][0]["pid"] == 0, "tasks after restart")
    # The new QEMU's RAM file at the same path is a new boot: located again, and live.
    live = get(s.base + "/api/v1/status")["live"]
    check(live["usable"] and live["boot_id"] != boot, f"the new boot is not read live: {live}")
    check(get(s.base + "/api/v1/walk?addr=0x12345")["source"] == "live", "walk after restart")


def test_schemathesis(s, demo_done):
    check(SCHEMATHESIS.exists(), f"{SCHEMATHESIS} is missing (scripts/setup --test installs it)")
    out = subprocess.run([str(SCHEMATHESIS), "run", s.base + "/api/v1/openapi.json", "-n", "5",
                          "-c", "not_a_server_error,response_schema_conformance",
                          "--exclude-path", "/api/v1/faults/stream", "--request-timeout", "20"],
                         capture_output=True, check=False, timeout=240, env=dict(os.environ, NO_COLOR="1"),
                         cwd=s.work)  # its .schemathesis cache goes to the scratch directory
    text = out.stdout.decode(errors="replace")
    check(out.returncode == 0, f"schemathesis failed:\n{text[-3000:]}")


