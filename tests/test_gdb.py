"""test_gdb: the end-to-end debugger tests. Each boots its own kernel and drives real gdb
in batch mode, gdb under a pty, or the raw RSP client against the stub on COM1, with QMP
as the ground truth (QEMU's own page walk, `gva2gpa`). `scripts/e2e-tests` runs these.

`stub` is "kernel" (the in-kernel stub, the default) or "qemu" (QEMU's own gdbstub, to
check the tests without the kernel stub: `--stub qemu`); a test runs with the stubs its
`stubs` marker names (default: the kernel's only, as the monitor needs it).
"""

import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from pgtest import paths, procs, qmp, rsp
from pgtest.check import TestFailure, check
from pgtest.gdb import PtyGdb, monitor, section
from pgtest.gdbtest import COW, elf_bytes, function_address, int_after, stop_at

STUBS_ALL = pytest.mark.stubs("kernel", "qemu")
pytestmark = pytest.mark.timeout(150)

MONITOR_COMMANDS = ("help", "dumppgd", "dumppt 16", "walk 0x1000 --task 1", "checkmm",
                    "showmem", "tasks", "faults", "catch")
# Each command's document and its fields: the committed JSON Schema generated from the
# kernel's document structs (kernel/docs/monitor.schema.json), the one definition.
MONITOR_SCHEMA = json.loads((paths.REPO / "kernel" / "docs" / "monitor.schema.json").read_text())
# Fields a document may leave out (serialised only when set): help's error.
SOMETIMES = {"help": ("error",)}
MONITOR_FIELDS = {
    command: tuple(f for f in MONITOR_SCHEMA["$defs"][name]["properties"]
                   if f not in ("command", "schema") + SOMETIMES.get(command, ()))
    for command, name in MONITOR_SCHEMA["x-commands"].items()
}
MONITOR_HEADINGS = {
    "help": "monitor commands",
    "dumppgd": "page directory at",
    "dumppt": "PDE 16",
    "walk": "walk 0x04001000",
    "checkmm": "checkmm:",
    "showmem": "frames:",
    "tasks": "state",
    "faults": "page faults",
    "catch": "catch pagefault:",
}
HEX8 = re.compile(r"^0x[0-9a-f]{8}$")


# --- the tests --------------------------------------------------------------------------
@STUBS_ALL
def test_registers(ctx):
    """info registers of the stopped kernel; info threads lists every task (kernel stub)
    and `thread N` shows another task's saved registers."""
    m = ctx.boot(COW)
    commands = stop_at("do_wp_page") + section("regs", "info registers") + section("threads", "info threads")
    if ctx.stub == "kernel":
        commands += section("thread2", "thread 2", "info registers eip esp cs eflags")
        commands += section("thread3", "thread 3", "info registers eip esp cs eflags")
    r = ctx.gdb(m, commands)
    regs = r.section("regs")
    for name in ("eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi", "eip", "eflags", "cs", "ss", "ds"):
        check(re.search(rf"^{name}\s+0x[0-9a-f]+", regs, re.MULTILINE), f"info registers lacks {name}:\n{regs}")
    eip = int_after(regs, "eip")
    check(eip == function_address("do_wp_page"),
          f"eip 0x{eip:x} is not do_wp_page's address 0x{function_address('do_wp_page'):x}")
    check(int_after(regs, "cs") == 0x8, f"cs is not the kernel code selector 0x8:\n{regs}")
    threads = r.section("threads")
    rows = re.findall(r"^\*?\s+(\d+)\s+Thread", threads, re.MULTILINE)
    if ctx.stub == "kernel":
        check(len(rows) >= 3, f"info threads shows {len(rows)} threads, expected the kernel and "
                              f"two ktest tasks:\n{threads}")
        named = re.findall(r"Thread (?:\d+\.)?(\d+) \(pid (\d+)", threads)
        check(len(named) == len(rows) and all(int(t) == int(p) + 1 for t, p in named),
              f"thread ids are not pid + 1 (or the target ids name no pid):\n{threads}")
        for name in ("thread2", "thread3"):
            text = r.section(name)
            check(re.search(r"^eip\s+0x[0-9a-f]+", text, re.MULTILINE) and re.search(r"^esp\s+0x[0-9a-f]+", text, re.MULTILINE),
                  f"`{name}` shows no registers:\n{text}")
    else:
        check(rows, f"info threads shows nothing:\n{threads}")


@STUBS_ALL
def test_break_do_wp_page(ctx):
    """pg-break do_wp_page is hit by ktest cow-both-write's first COW write; the caller's
    LinearAddr argument pretty-prints; after deleting it and detaching, the run passes."""
    m = ctx.boot(COW)
    r = ctx.gdb(m, stop_at("do_wp_page") + section("bt", "bt 3") + ["delete", "detach"])
    check(re.search(r"Breakpoint 1, mm::memory::Mm<.*>::do_wp_page", r.out),
          f"the breakpoint on do_wp_page was not hit:\n{r.tail()}")
    bt = r.section("bt")
    match = re.search(r"linear=0x([0-9a-f]{8}) \(dir (\d+), table (\d+), offset 0x([0-9a-f]{3}); slot (\d+)", bt)
    check(match, f"the caller's LinearAddr is not pretty-printed:\n{bt}")
    linear = int(match.group(1), 16)
    check(int(match.group(2)) == linear >> 22 and int(match.group(5)) == linear >> 26 >= 1,
          f"the LinearAddr decoding is wrong: {match.group(0)}")
    m.wait_console(r"^VERDICT: PASS", timeout=30)


@STUBS_ALL
def test_watch_pte(ctx):
    """A hardware watchpoint on the PTE of the page do_wp_page is about to copy (found with
    monitor walk --task PID OFFSET --json) stops gdb when the kernel rewrites that PTE."""
    m = ctx.boot(COW)
    script = ctx.workdir / "watch.py"
    script.write_text(WATCH_SCRIPT)
    r = ctx.gdb(m, stop_at("do_wp_page") + ["set language c", f"source {script}", "delete 1"]
                + section("cont", "continue") + section("after", "p $pte($watched_linear)"))
    found = re.search(r"WATCH linear=0x([0-9a-f]+) pte_at=0x([0-9a-f]+) raw=0x([0-9a-f]+)", r.out)
    check(found, f"the watch script did not find the PTE:\n{r.tail()}")
    raw = int(found.group(3), 16)
    check(raw & 1 and not raw & 2, f"the PTE before do_wp_page is not present read-only: 0x{raw:08x}")
    cont = r.section("cont")
    check(re.search(r"Hardware watchpoint 2: \*\(unsigned int \*\)0x", cont),
          f"the watchpoint did not trigger:\n{cont}")
    old, new = re.search(r"Old value = (\d+)", cont), re.search(r"New value = (\d+)", cont)
    check(old and new, f"no old/new value:\n{cont}")
    old, new = int(old.group(1)), int(new.group(1))
    check(old == raw, f"old value {old:#x} is not the PTE read before ({raw:#x})")
    check(new & 3 == 3, f"the new PTE 0x{new:08x} is not present and writable")
    check("[P RW US" in r.section("after"), f"$pte does not show the PTE writable:\n{r.section('after')}")


WATCH_SCRIPT = r'''
import json
frame = gdb.selected_frame().older()  # kernel::fault::resolve_wp_page(code, linear)
linear = int(frame.read_var("linear")["__0"]) & 0xffffffff
slot, offset = linear >> 26, linear & 0x3ffffff
try:
    tasks = monitor_json("tasks")
    pid = [t["pid"] for t in tasks["tasks"] if t["slot"] == slot][0]
    walk = monitor_json(f"walk 0x{offset:x} --task {pid}")
    assert int(walk["linear"], 16) == linear, walk
    pte_at = int(walk["table"], 16) + 4 * walk["pte"]["index"]
    raw = int(walk["pte"]["raw"], 16)
except MonitorUnavailable:  # QEMU's gdbstub: the same walk in software
    pde = read_u32(page_directory() + 4 * (linear >> 22))
    pte_at = (pde & ~0xfff) + 4 * ((linear >> 12) & 0x3ff)
    raw = read_u32(pte_at)
gdb.set_convenience_variable("watched_linear", linear)
print(f"WATCH linear=0x{linear:08x} pte_at=0x{pte_at:08x} raw=0x{raw:08x}")
gdb.execute(f"watch *(unsigned int *)0x{pte_at:x}")
'''


@STUBS_ALL
def test_single_step(ctx):
    """stepi from do_wp_page's first instruction moves eip by that instruction's length,
    several times; the kernel then runs on to PASS."""
    m = ctx.boot(COW)
    steps = []
    for i in range(4):
        steps += section(f"s{i}", "x/2i $pc", "stepi", "p/x $pc")
    r = ctx.gdb(m, stop_at("do_wp_page") + ["set language c"] + steps + ["delete", "detach"])
    for i in range(4):
        text = r.section(f"s{i}")
        listed = re.findall(r"^(?:=>)?\s+0x([0-9a-f]+)\s*(?:<[^>]*>)?:\s+(\S+)", text, re.MULTILINE)
        after = re.search(r"\$\d+ = 0x([0-9a-f]+)", text)
        check(len(listed) >= 2 and after, f"stepi {i}: unexpected output:\n{text}")
        before, following = int(listed[0][0], 16), int(listed[1][0], 16)
        after = int(after.group(1), 16)
        check(after != before, f"stepi {i} did not move eip (0x{before:x})")
        if not listed[0][1].startswith(("j", "call", "ret", "loop")):
            check(after == following, f"stepi {i}: eip 0x{before:x} -> 0x{after:x}, "
                                      f"expected the next instruction 0x{following:x}")
    m.wait_console(r"^VERDICT: PASS", timeout=30)


@STUBS_ALL
def test_ctrl_c(ctx):
    """Ctrl-C in an interactive gdb (under a pty) stops the kernel while user tasks run,
    twice; between the stops the kernel runs on."""
    m = ctx.boot("init=ktest arg=oom-recovery", wait=True, mem="64M", exit_at_end=False)
    g = PtyGdb(m.port)
    user_tasks_seen = []
    try:
        g.read_until(r"\(gdb\) $", timeout=30)
        for round_ in range(2):
            g.send("continue\n")
            g.read_until(r"Continuing\.", timeout=10)
            time.sleep(0.3)
            g.send("\x03")
            stop = g.read_until(r"\(gdb\) $", timeout=10)
            check(re.search(r"received signal SIGINT|SIGINT, Interrupt|stopped", stop),
                  f"Ctrl-C round {round_}: no stop report:\n{stop[-1500:]}")
            g.send("p/x $pc\n")
            pc = g.read_until(r"\(gdb\) $", timeout=10)
            check(re.search(r"= 0x[0-9a-f]+", pc), f"no pc after Ctrl-C:\n{pc}")
            g.send("info threads\n")
            threads = g.read_until(r"\(gdb\) $", timeout=10)
            user_tasks_seen.append(len(re.findall(r"^\*?\s+\d+\s+Thread", threads, re.MULTILINE)) - 1)
        if ctx.stub == "kernel":
            check(max(user_tasks_seen) >= 1, f"no user task was alive at either Ctrl-C stop "
                                             f"(user threads seen: {user_tasks_seen})")
            ctx.note(f"user tasks at the stops: {user_tasks_seen}")
        g.send("detach\n")
        g.read_until(r"\(gdb\) $", timeout=10)
        g.send("quit\n")
    finally:
        g.close()
    console_before = len(m.console_text())
    time.sleep(0.5)
    check(m.alive(), "QEMU died after the Ctrl-C session")
    m.wait_console(r"^VERDICT: PASS", timeout=60)
    check(len(m.console_text()) >= console_before, "the console went backwards?")


@STUBS_ALL
def test_detach_reattach(ctx):
    """Five gdb sessions attach, read registers and memory, and detach while the demo runs;
    the demo still passes."""
    m = ctx.boot("init=demo", wait=False, exit_at_end=False)
    addr = function_address("do_wp_page")
    expected = elf_bytes(paths.KERNEL, addr, 16)
    for i in range(5):
        r = ctx.gdb(m, ["set language c"] + section("s", "p/x $pc", f"x/16xb 0x{addr:x}") + ["detach"])
        text = r.section("s")
        check(re.search(r"\$1 = 0x[0-9a-f]+", text), f"session {i}: no pc:\n{text}")
        got = bytes(int(b, 16) for b in re.findall(r"0x([0-9a-f]{2})\b", text.split("\n", 1)[1]))
        check(got == expected, f"session {i}: memory at 0x{addr:x} reads {got.hex()}, "
                               f"the ELF has {expected.hex()}")
        check("Detaching from program" in r.out or "detached" in r.out.lower(),
              f"session {i} did not detach:\n{r.tail()}")
        time.sleep(0.2)
    m.wait_console(r"^VERDICT: PASS", timeout=60)


def test_monitor_commands(ctx):
    """Every monitor command in both forms, stopped in do_wp_page: the text form has its
    heading, the JSON form parses, names its command, schema 1 and every documented field;
    errors answer a usage line (text) or an error object (JSON)."""
    m = ctx.boot(COW)
    commands = stop_at("do_wp_page")
    for i, command in enumerate(MONITOR_COMMANDS):
        commands += section(f"t{i}", monitor(command))
        commands += section(f"j{i}", monitor(f"{command} --json"))
    commands += section("bad", monitor("walk 0xzz"))
    commands += section("badjson", monitor("walk 0x0 --json --task 99"))
    commands += section("unknown", monitor("frobnicate"))
    r = ctx.gdb(m, commands + ["delete", "detach"])
    for i, command in enumerate(MONITOR_COMMANDS):
        name = command.split()[0]
        text = r.section(f"t{i}")
        check(text.strip(), f"monitor {command}: empty text answer")
        check(MONITOR_HEADINGS[name] in text, f"monitor {command}: no '{MONITOR_HEADINGS[name]}' in:\n{text}")
        raw = r.section(f"j{i}").strip()
        try:
            doc = json.loads(raw)
        except ValueError as error:
            raise TestFailure(f"monitor {command} --json is not JSON ({error}): {raw[:400]!r}")
        check(list(doc)[:2] == ["command", "schema"], f"monitor {command} --json: first fields are {list(doc)[:2]}")
        check(doc["command"] == name and doc["schema"] == MONITOR_SCHEMA["x-schema-version"],
              f"monitor {command} --json: command {doc.get('command')!r} schema {doc.get('schema')!r}")
        missing = [f for f in MONITOR_FIELDS[name] if f not in doc]
        check(not missing, f"monitor {command} --json lacks {missing}: {raw[:400]}")
        check_hex_fields(doc, command)
    check("usage: walk ADDR" in r.section("bad"), f"a bad number gets no usage line:\n{r.section('bad')}")
    err = json.loads(r.section("badjson").strip())
    check(err.get("error", {}).get("kind") == "no_such_task", f"walk --task 99 --json: {err}")
    check("unknown command" in r.section("unknown"), f"monitor frobnicate:\n{r.section('unknown')}")
    m.wait_console(r"^VERDICT: PASS", timeout=30)


def check_hex_fields(doc, command):
    """Addresses are "0x%08x" strings wherever monitor.md says so (a sample of fields)."""
    name = command.split()[0]
    fields = {"dumppgd": ["pg_dir"], "walk": ["linear"], "showmem": ["high_memory", "start_mem"],
              "dumppt": ["start", "last"]}.get(name, [])
    for field in fields:
        check(isinstance(doc.get(field), str) and HEX8.match(doc[field]),
              f"monitor {command} --json: {field} = {doc.get(field)!r}, expected a 0x%08x string")


def test_pg_commands(ctx):
    """The gdb wrappers pg-pgd, pg-pt, pg-walk, pg-check, pg-mem, pg-tasks, pg-faults render
    tables (no Python exception); pg-color on adds ANSI colour, off leaves none."""
    m = ctx.boot(COW)
    commands = stop_at("do_wp_page") + ["set pg-color off"]
    wrappers = [("pgd", "pg-pgd", r"page directory at 0x[0-9a-f]{8}"),
                ("pt", "pg-pt 16", r"PDE 16 .*page table 0x"),
                ("walk", "pg-walk $linear(0x0, 1)", r"walk 0x04000000"),
                ("walk2", "pg-walk 0x0 --task 1", r"physical 0x[0-9a-f]{8}"),
                ("check", "pg-check", r"checkmm: OK"),
                ("mem", "pg-mem", r"frames: \d+ for paging"),
                ("tasks", "pg-tasks", r"pid\s+ppid\s+state"),
                ("faults", "pg-faults", r"recent page faults"),
                ("raw", "pg-walk 0x1000 --task 1 --raw", r'"command": "walk"')]
    for name, command, _ in wrappers:
        commands += section(name, command)
    commands += ["set pg-color on"] + section("colour", "pg-tasks")
    r = ctx.gdb(m, commands + ["delete", "detach"])
    for name, command, pattern in wrappers:
        text = r.section(name)
        check(re.search(pattern, text), f"{command}: no /{pattern}/ in:\n{text}")
        check("\x1b[" not in text, f"{command}: colour with pg-color off")
    check("\x1b[" in r.section("colour"), "pg-color on: no ANSI colour")
    m.wait_console(r"^VERDICT: PASS", timeout=30)


@STUBS_ALL
def test_pretty_printers(ctx):
    """Entry, LinearAddr, PhysAddr and Frame print decoded; $pde, $pte, $lin2phys and
    $linear agree with QEMU's own translation (gva2gpa through QMP)."""
    m = ctx.boot(COW)
    script = ctx.workdir / "printers.py"
    script.write_text(PRINTERS_SCRIPT)
    r = ctx.gdb(m, stop_at("do_wp_page") + [f"source {script}"]
                + section("pde", "p $pde(16)") + section("pde0", "p $pde(0)")
                + section("pte", "p $pte($linear(0, 1))")
                + section("l2p", "p/x $lin2phys($linear(0, 1))")
                + section("lin", "p/x $linear(0x1234, 1)")
                + section("unmapped", "p $lin2phys(0xf0000000)")
                + ["delete", "detach"], allow_errors=True)
    check(re.search(r"= 0x[0-9a-f]{8} \[P RW US[^\]]*\] frame 0x[0-9a-f]{8}", r.section("pde")),
          f"$pde(16) is not a decoded user entry:\n{r.section('pde')}")
    check(re.search(r"= 0x[0-9a-f]{8} \[P RW SV[^\]]*\] frame 0x[0-9a-f]{8}", r.section("pde0")),
          f"$pde(0) is not a decoded kernel entry:\n{r.section('pde0')}")
    pte = re.search(r"= 0x([0-9a-f]{8}) \[P R[OW] US[^\]]*\] frame 0x([0-9a-f]{8})", r.section("pte"))
    check(pte, f"$pte of pid 1's first page is not a present user entry:\n{r.section('pte')}")
    l2p = int(re.search(r"= 0x([0-9a-f]+)", r.section("l2p")).group(1), 16)
    check(l2p == int(pte.group(2), 16), f"$lin2phys 0x{l2p:x} is not $pte's frame 0x{pte.group(2)}")
    truth = m.hmp("gva2gpa 0x04000000").strip()
    check(truth == f"gpa: 0x{l2p:x}", f"QEMU says '{truth}' for 0x04000000, $lin2phys 0x{l2p:x}")
    check(re.search(r"= 0x4001234\b", r.section("lin")), f"$linear(0x1234, 1):\n{r.section('lin')}")
    check("0xf0000000 is not mapped" in r.err, f"$lin2phys of an unmapped address:\n{r.tail()}")
    for label in ("LINEAR", "PHYS", "FRAME"):
        check(re.search(rf"^{label} ok", r.out, re.MULTILINE), f"{label} printer check failed:\n{r.tail()}")


PRINTERS_SCRIPT = r'''
import re
pg_dir = page_directory()
def typed(name, addr):
    return gdb.Value(addr).cast(gdb.lookup_type(name).pointer()).dereference()
# The page directory's first entry is a u32 in memory: view it as each address type.
raw = read_u32(pg_dir)
text = str(typed("mm::addr::PhysAddr", pg_dir))
print("PHYS ok" if text == f"0x{raw:08x} (frame 0x{raw & ~0xfff:08x} + 0x{raw & 0xfff:03x})" else "PHYS bad " + text)
text = str(typed("mm::addr::Frame", pg_dir))
print("FRAME ok" if text.startswith(f"frame 0x{raw:08x}") else "FRAME bad " + text)
text = str(typed("mm::addr::LinearAddr", pg_dir))
print("LINEAR ok" if re.fullmatch(rf"0x{raw:08x} \(dir {raw >> 22}, table {(raw >> 12) & 1023}, offset 0x{raw & 0xfff:03x}; slot {raw >> 26} \+ 0x{raw & 0x3ffffff:08x}\)", text) else "LINEAR bad " + text)
'''


@STUBS_ALL
def test_walk_matches_qemu(ctx):
    """monitor walk (raw RSP qRcmd, the kernel stopped) agrees with QEMU's gva2gpa on every
    present page of every user task, on unmapped pages inside and outside their page
    tables, and on kernel addresses."""
    m = ctx.boot(COW)
    client = rsp.Client("127.0.0.1", m.port, timeout=15)
    try:
        client.request("?")
        addr = function_address("do_wp_page")
        check(client.request(f"Z0,{addr:x},1") == b"OK", "Z0 on do_wp_page refused")
        client.send_packet("c")
        stop = client.read_packet()
        check(stop[:1] in (b"T", b"S"), f"no stop reply after continue: {stop!r}")
        client.request(f"z0,{addr:x},1")
        addresses = collect_addresses(ctx, client, m)
        mismatches, mapped, unmapped = [], 0, 0
        for linear in addresses:
            ours = monitor_walk(ctx, client, linear)
            truth = m.hmp(f"gva2gpa 0x{linear:x}").strip()
            theirs = None if "Unmapped" in truth or "unmapped" in truth else int(truth.split()[-1], 16)
            if ours != theirs:
                mismatches.append(f"0x{linear:08x}: walk {ours and hex(ours)}, QEMU {truth!r}")
            mapped += theirs is not None
            unmapped += theirs is None
        check(not mismatches, f"{len(mismatches)} of {len(addresses)} disagree: " + "; ".join(mismatches[:8]))
        check(mapped >= 20 and unmapped >= 10, f"too few addresses compared: {mapped} mapped, {unmapped} unmapped")
        ctx.note(f"{mapped} mapped + {unmapped} unmapped addresses agree")
        client.send_packet("D")
    finally:
        client.close()


# Well-framed packets with bad contents (a bare qSupported is valid, and lists features).
MALFORMED = ("X", "m", "mzz,4", "qSupported")


@STUBS_ALL
def test_malformed_packets_keep_breakpoints(ctx):
    """After a hardware breakpoint is set, packets with bad contents (`m` with no
    arguments, `mzz,4`, `X` alone) and a bare `qSupported` get a reply and change nothing
    else: continuing still stops at the breakpoint."""
    m = ctx.boot(COW)
    addr = function_address("do_wp_page")
    client = rsp.Client("127.0.0.1", m.port, timeout=10)
    try:
        client.request("?")
        client.request("qSupported:multiprocess+;swbreak+;hwbreak+;vContSupported+")
        check(client.request(f"Z1,{addr:x},1") == b"OK", f"Z1 at 0x{addr:x} refused")
        replies = {packet: client.request(packet) for packet in MALFORMED}
        client.send_packet("c")
        try:
            stop = client.read_packet()
        except rsp.RspError as error:
            time.sleep(0.5)
            ran = "the kernel ran to its end, QEMU exited" if not m.alive() else str(error)
            errors = [line for line in m.console_text().splitlines() if "gdb:" in line][-2:]
            raise TestFailure(f"continue did not stop at the hardware breakpoint on do_wp_page "
                              f"({ran}); the replies were {replies}; console: {errors}") from None
        eip = int.from_bytes(client.read_registers()[32:36], "little")
        check(stop[:3] in (b"T05", b"S05") and eip == addr,
              f"stop {stop!r} at eip 0x{eip:x}, expected SIGTRAP at do_wp_page 0x{addr:x}")
        client.request(f"z1,{addr:x},1")
        client.request("D")
    finally:
        client.close()


def rcmd_json(client, command):
    text, final = client.monitor(command + " --json")
    check(final == b"OK", f"qRcmd {command}: final reply {final!r}")
    return json.loads(text)


def monitor_walk(ctx, client, linear):
    if ctx.stub == "qemu":  # QEMU's stub: the software walk of pgkernel through memory reads
        return software_walk_rsp(client, linear)
    doc = rcmd_json(client, f"walk 0x{linear:08x}")
    check(int(doc["linear"], 16) == linear, f"walk answered for {doc['linear']} not 0x{linear:08x}")
    return None if doc["physical"] is None else int(doc["physical"], 16)


_pg_dir = {}


def software_walk_rsp(client, linear):
    """The two-level walk through `m` reads (for QEMU's gdbstub, which has no monitor walk)."""
    def u32(addr):
        data = client.read_memory(addr, 4)
        check(len(data) == 4, f"m{addr:x},4 -> {data!r}")
        return int.from_bytes(data, "little")
    pde = u32(_pg_dir["cr3"] + 4 * (linear >> 22))
    if not pde & 1:
        return None
    pte = u32((pde & ~0xfff) + 4 * ((linear >> 12) & 0x3ff))
    return (pte & ~0xfff) + (linear & 0xfff) if pte & 1 else None


def collect_addresses(ctx, client, machine):
    """Every present page of (at most three) user tasks, unmapped pages inside and outside
    their page tables, and a few kernel addresses."""
    addresses = [0x0, 0x1000, 0x100000, 0x1ff000]  # the identity map (slot 0)
    if ctx.stub == "qemu":
        cr3 = re.search(r"CR3=([0-9a-f]+)", machine.hmp("info registers"))
        _pg_dir["cr3"] = int(cr3.group(1), 16)
        for slot in (1, 2):
            base = slot << 26
            addresses += [base + i * 0x1000 for i in range(24)] + [base + 0x3fff000, base + 0x2000000]
        return addresses + [slot << 26 for slot in range(10, 20)] + [0xf0000000, 0x03fff000]
    tasks = rcmd_json(client, "tasks")["tasks"]
    users = [t for t in tasks if t["slot"] != 0][:3]
    check(len(users) >= 2, f"expected at least two user tasks, monitor tasks says {tasks}")
    for task in users:
        pgd = rcmd_json(client, f"dumppgd --task {task['pid']} --all")
        for entry in pgd["entries"]:
            table = rcmd_json(client, f"dumppt {entry['index']}")
            present = [int(e["linear"], 16) for e in table["entries"] if e["present"]]
            addresses += [a + 0x123 for a in present]
            used = {(a >> 12) & 0x3ff for a in present}
            empty = [i for i in range(1024) if i not in used][:3]
            addresses += [(entry["index"] << 22) | (i << 12) for i in empty]  # unmapped, table present
        present_dirs = {e["index"] for e in pgd["entries"]}
        slot_dirs = range(task["slot"] * 16, task["slot"] * 16 + 16)
        addresses += [d << 22 for d in slot_dirs if d not in present_dirs][:3]  # no page table
    addresses += [0xf0000000, 0xfffff000]  # slots of no task
    return addresses


@STUBS_ALL
def test_rsp_robustness(ctx):
    """A raw RSP client sends a bad checksum, a `$` with no end, an oversized packet, stray
    bytes, unknown packets and a disconnect mid-packet; after each, `g` and `m` still answer
    (the same registers, the kernel text as in the ELF), and a hardware breakpoint set
    before the junk still stops the kernel."""
    m = ctx.boot(COW)
    addr = function_address("do_wp_page")
    text = elf_bytes(paths.KERNEL, addr, 32)
    client = rsp.Client("127.0.0.1", m.port, timeout=10)
    try:
        check(client.request("?")[:1] in (b"T", b"S"), "no stop reply to ?")
        baseline = client.read_registers()
        check(len(baseline) >= 16 * 4, f"g answered {len(baseline)} bytes")

        supported = client.request("qSupported:multiprocess+;swbreak+;hwbreak+;vContSupported+")
        size = re.search(rb"PacketSize=([0-9a-fA-F]+)", supported)
        oversized = 4 * int(size.group(1), 16) + 100 if size else 70000

        def still_answers(after):
            client.resync(addr)
            regs = client.read_registers()
            check(regs == baseline, f"after {after}: g differs ({regs[:40].hex()} vs {baseline[:40].hex()})")
            mem = client.read_memory(addr, 32)
            check(mem == text, f"after {after}: m{addr:x},20 -> {mem!r}, expected {text.hex()}")
            check(client.request("qFooBarUnknown") == b"", f"after {after}: an unknown query is not empty")

        # A hardware breakpoint (memory stays as in the ELF) that must survive the junk.
        check(client.request(f"Z1,{addr:x},1") == b"OK", f"Z1 at 0x{addr:x} refused")
        still_answers("the first requests")
        client.send_raw(b"$g#00")  # bad checksum: a NAK, then the line must resynchronise
        still_answers("a bad checksum")
        client.send_raw(b"$m" + b"1" * 10)  # a packet with no end, then a good one
        time.sleep(0.2)
        still_answers("a `$` with no `#`")
        client.send_raw(b"$" + b"A" * oversized + b"#00")  # longer than the stub's buffer
        still_answers("an oversized packet")
        client.send_raw(b"garbage\x00\xff\r\n++--}}**#xx")  # noise between packets
        still_answers("stray bytes")
        client.send_packet("c")  # the breakpoint is still there: do_wp_page stops the kernel
        stop = client.read_packet()
        check(stop[:3] in (b"T05", b"S05"), f"continue: stop reply {stop!r}, expected SIGTRAP")
        eip = int.from_bytes(client.read_registers()[32:36], "little")
        check(eip == addr, f"stopped at eip 0x{eip:x}, not at the breakpoint on do_wp_page 0x{addr:x}")
        check(client.request(f"z1,{addr:x},1") == b"OK", "z1 refused")
        baseline = client.read_registers()
        # Unknown packets (malformed ones: test_malformed_packets_keep_breakpoints).
        for unknown in ("vFoo", "Qbar:1", "qXfer:nonesuch:read::0,10", "Z9,0,0", "qFooBar"):
            reply = client.request(unknown)
            check(reply == b"" or reply.startswith(b"E"), f"{unknown!r} answered {reply!r}")
        still_answers("unknown and malformed packets")
        client.send_raw(b"$m" + f"{addr:x}".encode())  # gdb vanishes mid-packet
        client.close()
        time.sleep(0.3)
        client = rsp.Client("127.0.0.1", m.port, timeout=10)
        client.request("?")
        still_answers("a disconnect mid-packet and a new connection")
        detached = client.request("D")
        if detached != b"OK":  # QEMU's stub wants the pid once multiprocess was agreed
            detached = client.request("D;1")
        check(detached == b"OK", f"D (detach) answered {detached!r}")
        client.close()
        m.wait_console(r"^VERDICT: PASS", timeout=30)
    except (TestFailure, rsp.RspError) as failure:
        raise TestFailure(f"{failure}\n--- the last RSP traffic ---\n{client.transcript()}") from None
    finally:
        client.close()


def test_catch_pagefault(ctx):
    """monitor catch pagefault on stops gdb at the next page fault, before it is handled
    (monitor faults does not list it yet); off lets the run finish."""
    m = ctx.boot(COW)
    r = ctx.gdb(m, section("on", monitor("catch pagefault on")) + section("stop", "continue")
                + section("faults", monitor("faults --json"))
                + section("off", monitor("catch pagefault off")) + ["detach"])
    check("catch pagefault: on" in r.section("on"), f"catch on:\n{r.section('on')}")
    check(re.search(r"received signal|Breakpoint|stopped|SIGTRAP|SIGSEGV", r.section("stop")),
          f"no stop at a page fault:\n{r.section('stop')}")
    check("catch pagefault: off" in r.section("off"), f"catch off:\n{r.section('off')}")
    faults = json.loads(r.section("faults").strip())
    check(faults.get("since_boot") == 0,
          f"stopped at the first page fault, but the log already counts {faults.get('since_boot')} "
          f"(was it handled before the stop?)")
    m.wait_console(r"^VERDICT: PASS", timeout=30)


def test_memory_access(ctx):
    """gdb memory access by linear address, stopped in do_wp_page with two tasks sharing
    their pages copy-on-write: a write or a breakpoint into a frame both map is refused
    and changes nothing either task sees; reading an unmapped address is an error and
    maps nothing (monitor walk still says unmapped); a write into a frame only one task
    maps goes through (and is undone)."""
    m = ctx.boot(COW)
    script = ctx.workdir / "memory.py"
    script.write_text(MEMORY_SCRIPT)
    # The second do_wp_page: the first copy is made, so a frame with a count of 1 exists.
    r = ctx.gdb(m, stop_at("do_wp_page") + ["continue", "set language c", f"source {script}", "delete", "detach"],
                allow_errors=True)
    results = dict(re.findall(r"^MEM (\S+) (.*)$", r.out, re.MULTILINE))
    for key in ("shared_write", "shared_unchanged", "shared_break", "unmapped_read",
                "still_unmapped", "private_write"):
        check(results.get(key, "").startswith("ok"), f"{key}: {results.get(key, 'not run')}\n{r.tail(40)}")
    m.wait_console(r"^VERDICT: PASS", timeout=30)


MEMORY_SCRIPT = r'''
def say(key, ok, detail=""):
    print(f"MEM {key} {'ok' if ok else 'FAILED'} {detail}")

def walk(linear):
    return monitor_json(f"walk 0x{linear:08x}")

tasks = [t for t in monitor_json("tasks")["tasks"] if t["slot"] != 0]
a, b = tasks[0], tasks[1]
# A page both tasks map with a count above 1: the same offset in both slots.
shared = private = None
entries = []
for task in (a, b):
    for pde in monitor_json(f"dumppgd --task {task['pid']} --all")["entries"]:
        entries += monitor_json(f"dumppt {pde['index']}")["entries"] if pde["index"] // 16 == task["slot"] else []
for entry in entries:
    if not entry["present"]:
        continue
    linear = int(entry["linear"], 16)
    if entry["count"] and entry["count"] > 1 and shared is None and linear >> 26 == a["slot"]:
        other = walk(linear - a["slot"] * 0x4000000 + b["slot"] * 0x4000000)
        if other["frame"] == entry["frame"]:
            shared = (linear, linear - a["slot"] * 0x4000000 + b["slot"] * 0x4000000)
    if entry["count"] == 1 and private is None:
        private = linear
inferior = gdb.selected_inferior()
if shared is None:
    say("shared_write", False, "no page shared by the two tasks")
else:
    here, there = shared
    before = (bytes(inferior.read_memory(here, 4)), bytes(inferior.read_memory(there, 4)))
    try:
        inferior.write_memory(here, b"\xcc\xcc\xcc\xcc")
        say("shared_write", False, f"a write into the shared frame at 0x{here:08x} was accepted")
    except gdb.MemoryError as error:
        say("shared_write", True, str(error))
    after = (bytes(inferior.read_memory(here, 4)), bytes(inferior.read_memory(there, 4)))
    say("shared_unchanged", after == before, f"{before} -> {after}")
    gdb.execute(f"break *0x{here:x}")
    try:
        gdb.execute("continue")  # inserting the breakpoint must fail, before anything runs
        say("shared_break", False, "a breakpoint in the shared frame was inserted")
    except gdb.error as error:
        say("shared_break", bytes(inferior.read_memory(there, 4)) == before[1], str(error).replace("\n", " "))
    gdb.execute("delete")
unmapped = 0x04000000 * a["slot"] + 0x02000000
try:
    inferior.read_memory(unmapped, 4)
    say("unmapped_read", False, f"0x{unmapped:08x} read without error")
except gdb.MemoryError as error:
    say("unmapped_read", True, str(error))
say("still_unmapped", walk(unmapped)["physical"] is None)
if private is None:
    say("private_write", False, "no page with a count of 1")
else:
    old = bytes(inferior.read_memory(private, 4))
    inferior.write_memory(private, b"\x12\x34\x56\x78")
    new = bytes(inferior.read_memory(private, 4))
    inferior.write_memory(private, old)
    say("private_write", new == b"\x12\x34\x56\x78" and bytes(inferior.read_memory(private, 4)) == old,
        f"0x{private:08x}: {old.hex()} -> {new.hex()}")
'''


def test_run_and_gdb_scripts(ctx):
    """scripts/run --gdb-wait --gdb-port P --qmp PATH serves the stub and waits; a second
    scripts/run on the same port stops with a clear message; scripts/gdb --port P attaches
    with the pg-* commands loaded; after it detaches the run passes."""
    port = procs.free_port()
    sockets = Path(tempfile.mkdtemp(prefix="pgtest-run-"))  # a unix socket path must stay short
    qmp_path = sockets / "qmp.sock"
    console = ctx.workdir / "console.log"
    env = dict(os.environ, TERM="dumb")
    # A free HTTP port too: the default 8321 may be a user's own scripts/run.
    base = [str(paths.REPO / "scripts" / "run"), "--no-build", "--no-swap", "--gdb-port", str(port),
            "--http-port", str(procs.free_port())]
    run = procs.spawn(base + ["--gdb-wait", "--qmp", str(qmp_path), "--headless", str(console),
                              "--cmdline", "init=hello"],
                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    try:
        qmp.connect(qmp_path, run, timeout=20).close()
        second = subprocess.run(base + ["--headless", str(ctx.workdir / "second.log")], env=env,
                                stdin=subprocess.DEVNULL, capture_output=True, check=False, text=True, timeout=30)
        check(second.returncode != 0 and f"port {port} on 127.0.0.1 is taken" in second.stderr,
              f"a second run on port {port}: status {second.returncode}, {second.stderr.strip()!r}")
        attached = subprocess.run([str(paths.REPO / "scripts" / "gdb"), "--port", str(port), "-batch", "-nx",
                                   "-ex", "info threads", "-ex", "pg-tasks", "-ex", "detach", "-ex", "quit 0"],
                                  env=env, stdin=subprocess.DEVNULL, capture_output=True, check=False, text=True, timeout=60)
        check(attached.returncode == 0 and "pid 0 kernel" in attached.stdout
              and re.search(r"pid\s+ppid\s+state", attached.stdout),
              f"scripts/gdb: status {attached.returncode}:\n{attached.stdout[-1500:]}\n{attached.stderr[-800:]}")
        out, _ = run.communicate(timeout=60)
        out = out.decode(errors="replace")
        check(f"attach with: scripts/gdb --port {port}" in out and f"target remote 127.0.0.1:{port}" in out,
              f"scripts/run does not say how to attach:\n{out}")
        check(run.returncode == 0 and "VERDICT: PASS" in out, f"scripts/run: status {run.returncode}:\n{out[-1500:]}")
    finally:
        procs.stop(run)
        shutil.rmtree(sockets, ignore_errors=True)
