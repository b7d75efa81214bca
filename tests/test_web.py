"""test_web: the web view in a real browser (Debian's chromium, driven by Playwright for Python).

One machine for the module (the demo at 32 MiB with a swap disk, the kernel waiting for gdb
at boot), the inspector in front of it, and one chromium. The tests run in file order on
one xdist worker (group "web"):
- gdb stops the demo's first fork at copy_page_tables, then after it: the page's history
  compares the two moments and shows the copy-on-write marks copy_page_tables made;
- while gdb holds the kernel there: the directory grid agrees with the API and with QEMU's
  `info tlb`, a click drills down to the right table (every entry as the monitor's
  dumppt gives it), a walk typed in the page agrees with `monitor walk` run by gdb;
  screenshots at 1280x800 and 2560x1440, light and dark, go to target/web/screenshots/;
- gdb detaches and the demo runs on: live updates arrive (the free-frame count moves);
- QEMU is killed: the banner says so; QEMU starts again: the page recovers by itself.
Every test but the restart also checks that the browser console showed no error.
"""

import re
import time
from pathlib import Path

import pytest
from pgtest import browser, paths, procs
from pgtest.check import check
from pgtest.gdb import PtyGdb
from pgtest.inspector import Daemon, get, private_build
from pgtest.machine import Machine, SwapDisk

pytestmark = [pytest.mark.xdist_group("web"), pytest.mark.timeout(240)]

SCREENSHOTS = paths.TARGET_DIR / "web" / "screenshots"
PROMPT = r"\(gdb\) "
# The directory's first entry of task n's slot.
SLOT_PDES = 16


class Setup:
    def __init__(self, work, options):
        self.work = Path(work)
        self.kernel, self.image = private_build(self.work, options)
        self.machine = Machine(self.work / "machine", "init=demo", mem="32M", swap=SwapDisk("32M"),
                               stub="kernel", gdb_wait=True, qmp=("tests", "daemon"),
                               accel=options.accel, kernel=self.kernel, image=self.image,
                               qemu=options.qemu)
        self.gdb_port = procs.free_port()
        self.http_port = procs.free_port()
        self.base = f"http://127.0.0.1:{self.http_port}"
        self.daemon = None
        self.browser = None
        self.page = None
        self.gdb = None
        self.moments = {}

    def start(self):
        self.machine.start()
        self.daemon = Daemon(self.work, target=f"127.0.0.1:{self.machine.port}",
                             http_port=self.http_port, gdb_listen=f"127.0.0.1:{self.gdb_port}",
                             qmp_path=self.machine.qmp_path("daemon"), kernel=self.kernel,
                             ram=self.machine.ram_path, extra=("--history-ms", "250")).start()
        self.browser = browser.Browser().__enter__()
        self.page = self.browser.page(1280, 800, "light")

    def close(self):
        if self.gdb is not None:
            self.gdb.close()
        if self.browser is not None:
            self.browser.close()
        if self.daemon is not None:
            self.daemon.stop()
        self.machine.close()

    def gdb_command(self, command, timeout=30):
        """Runs a gdb command; its output up to the next prompt."""
        return self.gdb.command(command, timeout)

    def gdb_monitor_json(self, command):
        """`monitor COMMAND --json` in the interactive gdb, parsed."""
        return self.gdb.monitor_json(command)

    def history(self):
        return get(self.base + "/api/v1/history")

    def stops(self):
        """How many times the kernel's stub has stopped the kernel since boot (the descriptor's count)."""
        live = get(self.base + "/api/v1/status")["live"]
        check(live and live["usable"], f"the live source is not usable: {live}")
        return live["stops"]

    def settled_moment(self, quiet_s=1.2, timeout=30):
        """The newest moment once no new one came for `quiet_s` (the kernel held by gdb)."""
        deadline = time.monotonic() + timeout
        last, since = None, time.monotonic()
        while time.monotonic() < deadline:
            newest = self.history()["newest"]
            if newest != last:
                last, since = newest, time.monotonic()
            elif newest is not None and time.monotonic() - since >= quiet_s:
                return newest
            time.sleep(0.2)
        check(False, f"the history did not settle within {timeout} s (newest {last})")

    def page_moment(self):
        return self.page.evaluate("() => window.pgkernel.current()?.moment ?? null")

    def wait_page_moment(self, at_least, timeout=20):
        self.page.wait_for_function("(m) => (window.pgkernel.current()?.moment ?? -1) >= m", arg=at_least,
                                    timeout=timeout * 1000)

    def no_console_errors(self):
        errors = self.browser.errors(self.page)
        check(not errors, f"the browser console showed errors: {errors[:10]}")

    def screenshot(self, name, width, height, scheme, setup=None):
        """A screenshot of the page as a person would see it, under target/web/screenshots/."""
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page = self.browser.page(width, height, scheme)
        page.goto(self.base + "/")
        page.wait_for_function("() => window.pgkernel.current() !== null", timeout=15000)
        if setup:
            setup(page)
        page.wait_for_timeout(600)
        path = SCREENSHOTS / f"{name}-{width}x{height}-{scheme}.png"
        page.screenshot(path=str(path))
        errors = self.browser.errors(page)
        # Wider than the window would mean a horizontal scroll bar: nothing may overflow.
        overflow, wide = page.evaluate("""() => {
            const w = window.innerWidth;
            const wide = [...document.querySelectorAll('body *')].filter((el) => el.getBoundingClientRect().right > w + 0.5)
              .slice(0, 5).map((el) => `${el.tagName.toLowerCase()}#${el.id}.${el.className}`);
            return [document.documentElement.scrollWidth - w, wide];
        }""")
        # Nor may a view be wider than its panel (a sideways scroll bar hides columns).
        clipped = page.evaluate("""() => [...document.querySelectorAll('.views')].filter((v) => !v.closest('[hidden]'))
            .filter((v) => v.scrollWidth > v.clientWidth + 1).map((v) => `${v.scrollWidth} px in ${v.clientWidth}`)""")
        page.context.close()
        check(not errors, f"{path.name}: console errors {errors[:5]}")
        check(overflow <= 0, f"{path.name}: the page is {overflow} px wider than the window: {wide}")
        check(not clipped, f"{path.name}: a view is wider than its panel: {clipped}")
        return path


@pytest.fixture(scope="module")
def w(workdirs, built):
    missing = browser.available()
    if missing:
        pytest.fail(f"the browser tests cannot run: {missing}", pytrace=False)
    setup = Setup(workdirs.make("web"), built)
    try:
        setup.start()
        yield setup
    finally:
        setup.close()


@pytest.fixture(autouse=True)
def _console_in_reports(request, w):
    request.node.pg_machines = [w.machine]


def pde_index_of(linear):
    return linear >> 22


def test_history_shows_the_cow_marks_of_a_fork(w):
    # gdb holds the kernel at boot (gdb=wait); stop it at the demo's first fork.
    w.gdb = PtyGdb(w.gdb_port, kernel=w.kernel)
    w.gdb.read_until(PROMPT, 30)
    w.gdb_command("pg-break copy_page_tables")
    w.gdb.send("continue\n")
    w.page.goto(w.base + "/")
    w.gdb.read_until(r"Breakpoint 1, ", 60)
    w.gdb.read_until(PROMPT, 10)
    w.page.wait_for_selector("#stopped", timeout=15000)
    check("stopped by gdb" in w.page.inner_text("#stopped"), "the page does not say gdb stopped the kernel")
    # Where: the eip gdb read after the stop, and the function holding it.
    pc = re.search(r"= (0x[0-9a-f]+)", w.gdb_command("p/x $pc"))
    check(pc, "gdb printed no $pc")
    eip = f"0x{int(pc.group(1), 16):08x}"
    w.page.wait_for_function("() => /copy_page_tables/.test(document.getElementById('stopped')?.textContent ?? '')",
                             timeout=10000)
    where = w.page.inner_text("#stopped")
    check(f"at {eip} copy_page_tables" in where, f"the page says {where!r}, gdb stopped at {eip} in copy_page_tables")
    before = w.settled_moment()
    # After copy_page_tables: the child's tables exist, the parent's pages are read-only.
    w.gdb_command("pg-finish", timeout=60)
    after = w.settled_moment()
    check(after > before, f"no new moment after copy_page_tables ({before} -> {after})")
    w.moments = {"before": before, "after": after}
    diff = get(w.base + f"/api/v1/history/diff?from={before}&to={after}")
    parent = [p for p in diff["ptes"] if p[0] // SLOT_PDES == 1]
    child = [p for p in diff["ptes"] if p[0] // SLOT_PDES == 2]
    marks = [p for p in parent if p[2] & 2 and not p[3] & 2 and p[2] & ~0xfff == p[3] & ~0xfff]
    check(marks, f"copy_page_tables write-protected none of the parent's entries: {parent[:5]}")
    check(len(child) >= len(marks) and all(c[2] == 0 and c[3] & 1 for c in child),
          f"the child's entries did not appear present: {child[:5]}")
    # The page: History, compare the two moments side by side.
    w.wait_page_moment(after)
    w.page.keyboard.press("h")
    w.page.fill("#compare-a", str(before))
    w.page.fill("#compare-b", str(after))
    w.page.click("#compare-go")
    w.page.wait_for_selector("#history-compare #changes-ptes", timeout=15000)
    rows = w.page.eval_on_selector_all(
        "#history-compare #changes-ptes tbody tr",
        "rows => rows.map(r => [...r.cells].map(c => c.innerText))")
    protected = [r for r in rows if r[4] == "write-protected"]
    mapped = [r for r in rows if r[4] == "mapped"]
    shown = min(len(rows), 300)
    check(len(rows) == min(len(diff["ptes"]), shown), f"{len(rows)} changed entries shown, the API has {len(diff['ptes'])}")
    check(len(protected) == len([m for m in marks if diff["ptes"].index(m) < shown]),
          f"{len(protected)} rows say write-protected, the API has {len(marks)}")
    check(mapped, "no row says the child's entries were mapped")
    for r in protected[:20]:
        check(" RO " in r[3] and " RW " in r[2], f"a write-protected row does not go RW -> RO: {r}")
    # Scrubbing: one step back from live shows the moment before, marked in the grid.
    w.page.keyboard.press("Escape")
    w.page.keyboard.press(",")
    w.page.wait_for_function("(m) => window.pgkernel.state().viewing === m && window.pgkernel.state().past !== null",
                             arg=after - 1, timeout=10000)
    check(w.page.inner_text("#where-moment") == str(after - 1), "the scrub bar does not show the moment stepped to")
    w.page.keyboard.press("p")
    w.page.wait_for_function("() => window.pgkernel.state().viewing === null", timeout=5000)
    w.no_console_errors()


def test_directory_grid_matches_the_api_and_qemu(w):
    w.wait_page_moment(w.moments["after"])
    pgd = get(w.base + "/api/v1/page-directory?all=true")
    api = {e["index"]: e for e in pgd["entries"]}
    cells = w.page.eval_on_selector_all(
        ".pde", "cs => cs.map(c => [Number(c.dataset.index), c.dataset.state, c.dataset.present, c.dataset.raw])")
    check(len(cells) == 1024, f"{len(cells)} directory cells")
    tlb = {}
    for line in w.machine.hmp("info tlb").splitlines():
        match = re.match(r"\s*([0-9a-f]+): ([0-9a-f]+) (\S+)", line)
        if match:
            tlb.setdefault(int(match.group(1), 16) >> 22, []).append(match.group(3))
    check(tlb, "QEMU's info tlb listed no mapping")
    for index, state, present, raw in cells:
        e = api.get(index)
        if e is None:
            check(state == "np", f"PDE {index}: the page shows {state}, the API has no entry")
            check(index not in tlb, f"PDE {index}: not present in the page, QEMU maps {len(tlb.get(index, []))} pages: {sorted(tlb)} {[e for e in tlb.get(index, [])][:3]}")
            continue
        want = "k" if not e["user"] else "u" if e["writable"] else "ro"
        check(state == want, f"PDE {index}: the page shows {state}, the API's flags {e['flags']}")
        check(raw == e["raw"], f"PDE {index}: the page shows {raw}, the API {e['raw']}")
        check(present == str(e["present_ptes"]), f"PDE {index}: {present} present in the page, the API {e['present_ptes']}")
        check(len(tlb.get(index, [])) == e["present_ptes"],
              f"PDE {index}: QEMU maps {len(tlb.get(index, []))} pages, the page and the API {e['present_ptes']}")
    w.no_console_errors()


def test_a_click_drills_down_to_the_right_table(w):
    index = 2 * SLOT_PDES  # the child's first directory entry
    w.page.click(f"#pde-{index}")
    w.page.wait_for_selector("#pt-grid", timeout=10000)
    title = w.page.inner_text("#view-table h2")
    check(title.startswith(f"Page table of PDE {index}"), f"the table view shows {title!r}")
    api = get(w.base + f"/api/v1/page-tables/{index}")
    entries = {e["index"]: e for e in api["entries"]}
    cells = w.page.eval_on_selector_all("#pt-grid .pte", "cs => cs.map(c => c.dataset.raw)")
    check(len(cells) == 1024, f"{len(cells)} table cells")
    for i, raw in enumerate(cells):
        check(raw == (entries[i]["raw"] if i in entries else ""), f"PTE {i}: the page shows {raw!r}, dumppt {entries.get(i)}")
    rows = w.page.eval_on_selector_all(
        "#view-table table.entries tbody tr",
        "rows => rows.map(r => [Number(r.dataset.index), r.querySelector('.flags').innerText, r.cells[4].innerText])")
    check(len(rows) == len(entries), f"{len(rows)} rows listed, dumppt has {len(entries)} entries")
    for i, flags, count in rows:
        e = entries[i]
        check(flags == e["flags"], f"PTE {i}: the page says {flags!r}, the monitor {e['flags']!r}")
        check(count == ("-" if e["count"] is None else str(e["count"])), f"PTE {i}: count {count}, the monitor {e['count']}")
    w.screenshot("table", 1280, 800, "light", lambda p: (p.click(f"#pde-{SLOT_PDES}"), p.wait_for_selector("#pt-grid")))
    w.screenshot("table", 1280, 800, "dark", lambda p: (p.click(f"#pde-{SLOT_PDES}"), p.wait_for_selector("#pt-grid")))
    w.screenshot("table", 2560, 1440, "light", lambda p: (p.click(f"#pde-{SLOT_PDES}"), p.wait_for_selector("#pt-grid")))
    w.screenshot("sharing", 1920, 1080, "dark", lambda p: (p.click(f"#pde-{SLOT_PDES}"), p.click("#tab-sharing")))
    w.no_console_errors()


def test_a_walk_typed_in_the_page_agrees_with_monitor_walk(w):
    # (The child is not in the task table yet while fork is stopped: its slot by linear address.)
    for addr, task in (("0x1000", "1"), ("0x3fffffc", "1"), ("0x08000000", ""), ("0x08001234", ""),
                       ("0x0b000000", ""), ("0x2000000", "1")):
        w.page.keyboard.press("w")
        w.page.fill("#walk-addr", addr)
        w.page.select_option("#walk-task", task)
        w.page.press("#walk-addr", "Enter")
        w.page.wait_for_function("(q) => document.getElementById('walk-result').dataset.done === q",
                                 arg=f"{addr}|{task}", timeout=10000)
        monitor = w.gdb_monitor_json(f"walk {addr}" + (f" --task {task}" if task else ""))
        linear = w.page.inner_text("#walk-linear")
        check(linear == monitor["linear"], f"walk {addr} {task}: the page walked {linear}, the monitor {monitor['linear']}")
        physical = w.page.query_selector("#walk-physical")
        if monitor["physical"] is None:
            check(physical is None, f"walk {addr}: the page gives a physical address, the monitor stops: {monitor['stop']}")
            text = w.page.inner_text("#walk-result")
            check(f"at the {monitor['stop']['level'].upper()}" in text, f"walk {addr}: the page's stop {text[-200:]!r}")
        else:
            check(physical.inner_text() == monitor["physical"],
                  f"walk {addr} {task}: the page says {physical.inner_text()}, the monitor {monitor['physical']}")
            check("agrees" in w.page.inner_text("#walk-result"), f"walk {addr}: QEMU's answer does not agree")
    w.screenshot("walk", 1280, 800, "light", lambda p: (p.keyboard.press("w"), p.fill("#walk-addr", "0x1234"),
                                                        p.select_option("#walk-task", "1"), p.press("#walk-addr", "Enter"),
                                                        p.wait_for_selector("#walk-linear")))
    w.no_console_errors()


# The live updates the page must show at least, per second, while memhog runs: a generous
# floor (the live source gives up to 20 a second; the stub's snapshots came at 0.2 to
# 0.4), the figure itself is scripts/bench's.
MIN_UPDATES_PER_S = 3
RATE_WINDOW_S = 3


def test_live_updates_arrive_during_the_demo(w):
    # Every free-frame count and moment the page puts on screen, recorded by the page
    # itself: the demo's steps before memhog take about a second once gdb lets go.
    w.page.evaluate("""() => {
        window.freeShown = [];
        window.momentsShown = [];
        const note = () => {
            const el = document.getElementById('total-free');
            if (el && el.textContent !== window.freeShown.at(-1)) window.freeShown.push(el.textContent);
            const m = document.getElementById('total-moment');
            if (m && m.textContent !== window.momentsShown.at(-1)?.[1]) window.momentsShown.push([Date.now(), m.textContent]);
        };
        new MutationObserver(note).observe(document.getElementById('totals'), { childList: true, subtree: true, characterData: true });
        note();
    }""")
    w.gdb_command("delete")
    w.gdb.send("detach\n")
    w.gdb.read_until(r"Detaching", 20)
    w.gdb.close()
    w.gdb = None
    w.page.wait_for_function("() => !document.getElementById('stopped')", timeout=15000)
    # From here on nobody stops the kernel: not the page, not the recorder.
    stops = w.stops()
    moments = [w.moments["after"]]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(set(w.page.evaluate("() => window.freeShown"))) < 4:
        moments.append(w.page_moment())
        time.sleep(0.25)
    moments.append(w.page_moment())
    shown = w.page.evaluate("() => window.freeShown")
    info = w.history()
    check(len(set(shown)) >= 4, f"the free-frame count did not move during the demo: the page showed {shown} "
                                f"({info['snapshots']} snapshots, last error {info['last_error']!r})")
    check(moments == sorted(moments) and moments[-1] > moments[0], f"moments did not advance: {moments[:3]}..{moments[-3:]}")
    # While memhog touches memory, the moments the page shows in a window of a few seconds.
    w.machine.wait_console(r"^memhog\[\d+\]: touching memory", 60)
    t0 = w.page.evaluate("() => Date.now()")
    w.page.wait_for_timeout(RATE_WINDOW_S * 1000)
    shown = [m for t, m in w.page.evaluate("() => window.momentsShown") if t >= t0]
    rate = len(set(shown)) / RATE_WINDOW_S
    info = w.history()
    check(info["source"] == "live", f"the history's snapshots come from {info['source']!r}, not the RAM file")
    check(rate >= MIN_UPDATES_PER_S, f"the page showed {rate:.1f} moments a second while memhog ran (at least "
                                     f"{MIN_UPDATES_PER_S}: {info['snapshots']} snapshots, last error {info['last_error']!r})")
    check(float(w.page.inner_text("#total-rate")) >= MIN_UPDATES_PER_S, "the page's own updates/s is below the floor")
    faults_view_follows_the_faults(w)
    w.screenshot("memory", 1280, 800, "dark", lambda p: p.click("#tab-memory"))
    w.screenshot("faults", 1280, 800, "light", lambda p: p.click("#tab-faults"))
    w.no_console_errors()
    check(w.stops() == stops, f"the kernel was stopped {w.stops() - stops} times while the page was open and gdb gone")


def faults_view_follows_the_faults(w):
    """While memhog faults: the Faults view lists the newest first, each fault once, its
    first row the header's last fault, and stays so as live updates add faults (the rows
    already shown are kept, the new ones go on top); a click shows the entry around one."""
    w.page.click("#tab-faults")

    def listed():
        return w.page.evaluate("""() => ({
            rows: [...document.querySelectorAll('#fault-table tbody tr')].map((r) => Number(r.dataset.seq)),
            ticks: document.querySelectorAll('#fault-timeline .tick').length,
            last: Number(document.getElementById('faults-since-boot')?.textContent) })""")

    seen = []
    for _ in range(6):
        got = listed()
        rows = got["rows"]
        check(rows and rows == sorted(set(rows), reverse=True) and len(rows) <= 200,
              f"the fault list is not the newest first, each once: {rows[:5]}..{rows[-5:]}")
        check(rows[0] == got["last"] and got["ticks"] == len(rows),
              f"the list's newest {rows[0]} / {got['ticks']} ticks against the header's last fault {got['last']} / {len(rows)} rows")
        seen.append(rows[0])
        w.page.wait_for_timeout(300)
    check(seen[-1] > seen[0], f"the fault list did not follow memhog's faults: newest {seen}")
    w.page.click("#fault-table tbody tr")
    w.page.wait_for_selector("#fault-before", timeout=10000)


def test_a_killed_and_restarted_kernel_shows_the_banner_then_recovers(w):
    boot = w.page.evaluate("() => window.pgkernel.follower.bounds.boot")
    w.machine.stop()
    w.page.wait_for_selector("#banner:not([hidden])", timeout=15000)
    check("not connected" in w.page.inner_text("#banner"), f"the banner says {w.page.inner_text('#banner')!r}")
    check("kernel gone" in w.page.inner_text("#state"), f"the state says {w.page.inner_text('#state')!r}")
    w.machine.start()
    w.page.wait_for_selector("#banner", state="hidden", timeout=40000)
    w.page.wait_for_function("(b) => window.pgkernel.follower.bounds.boot > b", arg=boot, timeout=30000)
    kernel_cells = w.page.eval_on_selector_all(".pde[data-state='k']", "cs => cs.length")
    check(kernel_cells >= 4, f"after the restart the page shows {kernel_cells} kernel directory entries")
