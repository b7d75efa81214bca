"""test_live_agreement: at breakpoints in the paging code, every live document (read from
the RAM file while gdb holds the kernel, `consistency: stopped`) equals the stub's
monitor document run by gdb at the same stop, apart from the envelope (where and when an
answer was taken): in copy_page_tables (at its entry, and half-way, between its first two
page tables), do_wp_page, do_no_page, free_page_tables, swap_out, and at the end of the
demo (Run::finish)."""

from pathlib import Path

import pytest
from pgtest import procs
from pgtest.check import check
from pgtest.gdb import PROMPT, PtyGdb
from pgtest.inspector import Daemon, document, get, private_build
from pgtest.machine import Machine, SwapDisk

pytestmark = [pytest.mark.xdist_group("live-agreement"), pytest.mark.timeout(420)]

# The monitor commands compared, and the endpoint of each.
DOCUMENTS = {
    "dumppgd": "/api/v1/page-directory",
    "showmem": "/api/v1/showmem",
    "checkmm": "/api/v1/checkmm",
    "tasks": "/api/v1/tasks",
    "fail": "/api/v1/fail",
    "faults": "/api/v1/faults",
    "walk 0x04000000": "/api/v1/walk?addr=0x04000000",
    "walk 0x08001000": "/api/v1/walk?addr=0x08001000",
    "dumppt 32": "/api/v1/page-tables/32",
}


class Setup:
    def __init__(self, work, options):
        self.work = Path(work)
        self.kernel, self.image = private_build(self.work, options)
        self.machine = Machine(self.work / "machine", "init=demo", mem="32M", swap=SwapDisk("32M"),
                               stub="kernel", gdb_wait=True, qmp=("tests", "daemon"),
                               accel=options.accel, kernel=self.kernel, image=self.image,
                               qemu=options.qemu)
        self.gdb_port = procs.free_port()
        self.daemon = None
        self.gdb = None

    def start(self):
        self.machine.start()
        self.daemon = Daemon(self.work, target=f"127.0.0.1:{self.machine.port}",
                             http_port=procs.free_port(), gdb_listen=f"127.0.0.1:{self.gdb_port}",
                             qmp_path=self.machine.qmp_path("daemon"), kernel=self.kernel,
                             ram=self.machine.ram_path, extra=("--timeout-ms", "20000")).start()
        self.gdb = PtyGdb(self.gdb_port, kernel=self.kernel)
        self.gdb.read_until(PROMPT, 30)

    def close(self):
        if self.gdb is not None:
            self.gdb.close()
        if self.daemon is not None:
            self.daemon.stop()
        self.machine.close()

    def command(self, line, timeout=60):
        return self.gdb.command(line, timeout)

    def monitor(self, command):
        return self.gdb.monitor_json(command)

    def run_to(self, function, hits=1):
        """Continues to the `hits`th stop at `function` (pg-break's names)."""
        out = self.command(f"pg-break {function}")
        check("Breakpoint" in out, f"pg-break {function}: {out[-300:]!r}")
        for _ in range(hits):
            self.gdb.send("continue\n")
            self.gdb.read_until(r"Breakpoint \d+, ", 120)
            self.gdb.read_until(PROMPT, 20)
        self.command("delete")

    def agree(self, where):
        """Every document, live and through the stub, at this stop. Returns the live ones."""
        answers = {}
        for command, path in DOCUMENTS.items():
            live = get(self.daemon.base + path)
            check(live["source"] == "live" and live["consistency"] == "stopped",
                  f"{where}: {path} is not a live answer of the stopped kernel: {live.get('source')} "
                  f"{live.get('consistency')}")
            stub = self.monitor(command)
            check(document(live) == stub, f"{where}: {path} differs from `monitor {command}`:\n"
                                          f"live {document(live)}\nstub {stub}")
            answers[command] = live
        return answers


@pytest.fixture(scope="module")
def a(workdirs, built):
    setup = Setup(workdirs.make("live-agreement"), built)
    try:
        setup.start()
        yield setup
    finally:
        setup.close()


@pytest.fixture(autouse=True)
def _console_in_reports(request, a):
    request.node.pg_machines = [a.machine]


def test_live_documents_equal_the_stubs_at_every_stop(a):
    stops = 0
    a.run_to("copy_page_tables")
    a.agree("copy_page_tables (entry)")
    # Half-way: the child's second page table is being allocated, its first is copied.
    a.run_to("get_free_page_with", hits=2)
    half = a.agree("copy_page_tables (half-way)")
    # Stopped inside the change: the count is odd, and the child's slot (2: directory
    # entries 32..47) has its first page table, not yet its second.
    check(half["dumppgd"]["mid_change"] and half["dumppgd"]["seq"] % 2 == 1,
          f"half-way through copy_page_tables the count is even: {half['dumppgd']['seq']}")
    child = [e for e in half["dumppgd"]["entries"] if 32 <= e["index"] < 48]
    check(len(child) == 1, f"half-way through copy_page_tables the child has {len(child)} tables")
    stops += 2
    for function in ("do_wp_page", "do_no_page", "free_page_tables", "swap_out"):
        a.run_to(function)
        a.agree(function)
        stops += 1
    a.run_to("kernel::run::Run::finish")
    end = a.agree("the end of the demo")
    check(end["checkmm"]["ok"], f"checkmm at the end: {end['checkmm']}")
    print(f"live agreement: {stops + 1} stops, {len(DOCUMENTS)} documents each")
    a.command("detach")
