"""test_live: the inspector's live source, the guest's RAM file (`--ram`), against the
kernel in QEMU. Never torn: during the demo (with its swap workload: memhog swaps 32 MiB
out) and a campaign run, checkmm is computed host-side on live snapshots, one after
another, and every one the daemon calls consistent is clean (the test notes how many and
how many retries). Bad input (a RAM file of the wrong size; a missing, corrupt or
wrong-version descriptor; a file from another boot; another kernel build) is a clear
error in `status` and every answer falls back to the stub, never a wrong one; a good file
answers live, equal to the stub's monitor documents.

One machine for the module (the demo, then idle); one daemon at a time owns its COM1
(the stub, for the fallbacks) and a QMP socket of its own (the boot-id check)."""

import collections
import json
import time
from pathlib import Path

import pytest
from pgtest import campaign, inspector, procs
from pgtest.check import check
from pgtest.inspector import Daemon, document, error_of, get, private_build, request
from pgtest.machine import Machine, SwapDisk

pytestmark = [pytest.mark.xdist_group("live"), pytest.mark.timeout(300)]

# The descriptor's header (kernel/docs/introspection.md): magic at 0, version at 8,
# the boot id at 40.
MAGIC_AT, VERSION_AT, BOOT_ID_AT = 0, 8, 40
# Small answers: through the stub a full page table takes seconds at 115200 baud.
PROBES = ("/api/v1/walk?addr=0x12345", "/api/v1/page-directory?task=0", "/api/v1/page-tables/100")


class Setup:
    def __init__(self, work, options):
        self.work = Path(work)
        self.kernel, self.image = private_build(self.work, options)
        self.options = options
        self.machine = Machine(self.work / "machine", "init=demo", mem="32M", swap=SwapDisk("32M"),
                               stub="kernel", qmp=("tests", "daemon"), accel=options.accel,
                               kernel=self.kernel, image=self.image, qemu=options.qemu)
        self.n = 0

    def daemon(self, ram, kernel=None, machine=None):
        """A daemon owning the machine's COM1, reading `ram`; stop it before the next."""
        self.n += 1
        port = procs.free_port()
        machine = machine or self.machine
        return Daemon(self.work, target=f"127.0.0.1:{machine.port}", http_port=port,
                      qmp_path=machine.qmp_path("daemon"), kernel=kernel or self.kernel,
                      ram=ram, extra=("--timeout-ms", "5000"), log=f"daemon{self.n}.log").start()

    def copy_ram(self, name, patch=None, size=None):
        """A copy of the guest's RAM file (the machine idles: it does not change), cut to
        `size` bytes, with `patch(bytearray)` applied."""
        data = bytearray(self.machine.ram_path.read_bytes())
        if size is not None:
            data = data[:size]
        if patch is not None:
            patch(data)
        path = self.work / name
        path.write_bytes(data)
        return path


@pytest.fixture(scope="module")
def s(workdirs, built):
    setup = Setup(workdirs.make("live"), built)
    try:
        setup.machine.start()
        yield setup
    finally:
        setup.machine.close()


@pytest.fixture(autouse=True)
def _console_in_reports(request, s):
    request.node.pg_machines = [s.machine]


@pytest.fixture
def demo_done(s):
    s.machine.wait_console(r"^VERDICT", 120)


def live_status(base):
    return get(base + "/api/v1/status")["live"]


def never_torn(base, running, what, least):
    """checkmm over live snapshots, one after another while `running()`: every snapshot
    called consistent (or taken in a brief stop) must be clean. Returns a note."""
    taken, retries, kinds, unusable = 0, 0, collections.Counter(), collections.Counter()
    while running():
        status, body, _ = request(base + "/api/v1/checkmm?source=live", timeout=30)
        if status != 200:
            # Before the kernel published its descriptor, or once QEMU has gone.
            unusable[json.loads(body)["error"]["code"]] += 1
            continue
        doc = json.loads(body)
        taken += 1
        retries += doc["retries"]
        kinds[doc["consistency"]] += 1
        check(doc["ok"] and doc["mismatch_count"] == 0 and not doc["mid_change"],
              f"{what}: a torn snapshot (seq {doc['seq']}, {doc['consistency']}): {document(doc)}")
    check(taken >= least, f"{what}: only {taken} snapshots ({dict(unusable)} unusable)")
    return (f"{what}: {taken} snapshots, all clean; {retries} retries; "
            f"{dict(kinds)}; not usable: {dict(unusable)}")


def test_never_torn_during_the_demo(s, request):
    """The demo, swap included: fork and copy-on-write, demand paging, memhog swapping
    until oom."""
    d = s.daemon(s.machine.ram_path)
    try:
        done = lambda: "VERDICT" in s.machine.console_text()
        note = never_torn(d.base, lambda: not done() and s.machine.alive(), "the demo with swap", 20)
        check(done() and "VERDICT: PASS" in s.machine.console_text(), "the demo did not pass")
        request.node.user_properties.append(("note", note))
        print(note)
    finally:
        d.stop()


def test_never_torn_during_a_campaign_run(s, request):
    """A run of the fixed-seed campaign (failure injection on a ktest workload, with a
    swap disk), watched from its boot."""
    run = next(r for r in map(campaign.draw, campaign.seeds(campaign.FIXED_SEED, 50))
               if r["workload"] == "oom-recovery" and r["swap"])
    machine = Machine(s.work / "campaign", run["cmdline"].replace(" onexit=exit", ""), mem=run["mem"],
                      swap=SwapDisk(run["swap"]) if run["swap"] else None, stub="kernel", gdb_wait=True,
                      qmp=("tests", "daemon"), accel=s.options.accel, kernel=s.kernel, image=s.image,
                      qemu=s.options.qemu)
    request.node.pg_machines = [machine]
    try:
        machine.start()
        d = s.daemon(machine.ram_path, machine=machine)
        try:
            # The kernel waits for gdb at boot (the whole run is watched): a stub query
            # lets it go (it ends with `D`). Until the boot reaches the stub's wait, the
            # daemon's stop probe can find it unresponsive (a 503): ask again.
            deadline = time.monotonic() + 60
            while True:
                status, body, _ = inspector.request(d.base + "/api/v1/walk?addr=0&source=stub", timeout=30)
                if status == 200:
                    break
                check(status == 503 and time.monotonic() < deadline,
                      f"the first stub query: {status} {body[:300]!r}")
                time.sleep(0.5)
            done = lambda: "VERDICT" in machine.console_text()
            note = never_torn(d.base, lambda: not done() and machine.alive(),
                              f"campaign seed {run['seed']} ({run['workload']}, {run['mem']})", 5)
            check(done(), f"the campaign run gave no verdict: {machine.console_text()[-500:]}")
            request.node.user_properties.append(("note", note))
            print(note)
        finally:
            d.stop()
    finally:
        machine.close()


def test_a_good_file_answers_live_as_the_stub_does(s, demo_done):
    d = s.daemon(s.machine.ram_path)
    try:
        st = live_status(d.base)
        check(st["usable"] and st["error"] is None, f"live status {st}")
        check(st["found_by"] == "symbol" and st["build_id_checked"] and st["boot_id_checked"], f"checks {st}")
        check(st["seq"] % 2 == 0 and st["stopped"] is False, f"an idle kernel's count {st}")
        for path in PROBES:
            live = get(d.base + path)
            sep = "&" if "?" in path else "?"
            stub = get(d.base + path + sep + "source=stub")
            # "stopped" is exact too: the previous path's stub query answers before the
            # kernel has taken the link's detach, so the next live read can find it held.
            check(live["source"] == "live" and live["consistency"] in ("consistent", "stopped"),
                  f"{path}: {live}")
            check(document(live) == document(stub), f"{path}: live differs from the stub\n{live}\n{stub}")
        stops = live_status(d.base)["stops"]
        for _ in range(20):
            get(d.base + "/api/v1/page-directory")
        check(live_status(d.base)["stops"] == stops, "a live query stopped the kernel")
    finally:
        d.stop()


def refused(s, ram, code, kernel=None):
    """A daemon over a bad RAM file: the error in status, answers from the stub."""
    d = s.daemon(ram, kernel)
    try:
        st = live_status(d.base)
        check(not st["usable"] and st["error"]["code"] == code,
              f"{ram.name}: expected {code}, status says {st}")
        check(st["error"]["message"], "an error without a message")
        for path in PROBES:
            doc = get(d.base + path)
            check(doc["source"] == "stub", f"{ram.name} {path}: not the stub's answer: {doc.get('source')}")
            error_of(d.base + path + ("&" if "?" in path else "?") + "source=live", 503, code)
        return st["error"]["message"]
    finally:
        d.stop()


def descriptor_addr(s):
    s.machine.wait_console(r"^VERDICT", 120)
    d = s.daemon(s.machine.ram_path)
    try:
        return int(live_status(d.base)["descriptor"], 16)
    finally:
        d.stop()


def test_bad_ram_files_fall_back_to_the_stub(s, demo_done):
    desc = descriptor_addr(s)

    def poke(at, value):
        def patch(data):
            data[desc + at:desc + at + 4] = value.to_bytes(4, "little")
        return patch

    def word(at):
        data = s.machine.ram_path.read_bytes()
        return int.from_bytes(data[desc + at:desc + at + 4], "little")

    message = refused(s, s.copy_ram("short", size=16 << 20), "wrong_size")
    check("HIGH_MEMORY" in message, message)
    refused(s, s.copy_ram("corrupt", patch=poke(MAGIC_AT, 0x12345678)), "no_descriptor")
    message = refused(s, s.copy_ram("version", patch=poke(VERSION_AT, word(VERSION_AT) + 1)),
                      "descriptor_version")
    check("version" in message, message)
    message = refused(s, s.copy_ram("other-boot", patch=poke(BOOT_ID_AT, word(BOOT_ID_AT) ^ 1)), "other_boot")
    check("another boot" in message, message)
    zeros = s.work / "zeros"
    zeros.write_bytes(bytes(32 << 20))
    refused(s, zeros, "not_published")
    # Without the ELF the locator is all there is: a file without one is no kernel's RAM.
    refused(s, zeros, "no_descriptor", kernel=s.work / "no-such-elf")
    missing = s.work / "missing"
    refused(s, missing, "ram_unavailable")


def test_another_kernel_build_is_refused(s, demo_done):
    """A RAM file of another kernel build than the ELF: here the ELF's build id changed."""
    st_daemon = s.daemon(s.machine.ram_path)
    try:
        build_id = bytes.fromhex(live_status(st_daemon.base)["build_id"])
    finally:
        st_daemon.stop()
    elf = bytearray(s.kernel.read_bytes())
    at = elf.find(build_id)
    check(at > 0, "the ELF does not hold the build id the kernel published")
    elf[at] ^= 0xff
    other = s.work / "other-kernel"
    other.write_bytes(elf)
    message = refused(s, s.machine.ram_path, "other_build", kernel=other)
    check(build_id.hex() in message, message)


def test_a_qmp_socket_that_never_answers_holds_up_no_live_answer(s, demo_done):
    """QEMU serves one client per QMP socket: while another holds the daemon's, the boot
    check gets no answer. Live answers go on from the file meanwhile, each waiting at most
    a moment for QEMU, not the daemon's 5 s timeout every time."""
    import socket
    holder = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    holder.connect(str(s.machine.qmp_path("daemon")))
    try:
        check(b"QMP" in holder.recv(4096), "QEMU did not greet the holder")
        d = s.daemon(s.machine.ram_path)
        try:
            started = time.monotonic()
            for probe in PROBES + PROBES:
                doc = get(d.base + probe)
                check(doc["source"] == "live", f"{probe}: answered from {doc['source']}")
            took = time.monotonic() - started
            check(took < 4.0, f"6 live answers took {took:.1f} s with QMP unanswered")
        finally:
            d.stop()
    finally:
        holder.close()
