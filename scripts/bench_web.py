#!/usr/bin/env python3
"""bench_web: the web view's figures, section 6 of scripts/bench.

One demo run (32 MiB, the 32 MiB swap disk, as scripts/run boots it) with the inspector
at its defaults (as scripts/run starts it) and the page open in Debian's chromium
(Playwright, as the browser tests drive it), and one demo run with no page open:
  - time to first paint: the page's first contentful paint, and the time until it has
    drawn the kernel's state (the first moment), median of 3 fresh loads;
  - updates per second during the demo: the moments the page put on screen, counted by
    the page itself (a MutationObserver on the header), from its first moment to the
    verdict;
  - the demo's length with the page open and without (what looking costs the kernel);
  - fault to screen: memhog prints `N MiB touched, F frames free` right after its faults;
    the latency is from the moment that line reaches the console file to the first
    render showing F or fewer free frames (negative: the page showed it first);
  - the inspector's CPU use (user + system time of its process) while the page is open:
    during the demo, and with the kernel idle after it.
Prints one JSON document (scripts/bench reads it); needs the test venv's Python
(Playwright) and /usr/bin/chromium, both from `scripts/setup --test`.
`--screenshot FILE` also saves the page (1280x800, light) as it is while memhog swaps,
its Faults view open: the README's picture, docs/web-view.png.

Usage: target/test-venv/bin/python scripts/bench_web.py [--inspector PATH] [--json FILE] [--screenshot FILE]
"""

import argparse
import json
import os
import re
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from pgtest import browser, procs
from pgtest.inspector import Daemon, get
from pgtest.machine import Machine, SwapDisk

MEM = "32M"
DEMO_TIMEOUT_S = 300
LOADS = 3
IDLE_WINDOW_S = 10
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
MEMHOG_LINE = re.compile(r"^memhog\[\d+\]: \d+ MiB touched, (\d+) frames free")
# The screenshot waits for memhog's first swapping line (the page then has every view busy).
SWAPPING = r"^memhog\[\d+\]: \d+ MiB touched, 0 frames free"
SCREENSHOT_VIEW = "f"


# Records, in the page, every moment and free-frame count it puts on screen.
RECORDER_JS = """() => {
    window.benchShown = [];
    const note = () => {
        const free = document.getElementById('total-free');
        const moment = document.getElementById('total-moment');
        if (!free || !moment) return;
        const last = window.benchShown.at(-1);
        if (last && last.moment === moment.textContent && last.free === free.textContent) return;
        window.benchShown.push({ t: Date.now(), moment: moment.textContent, free: free.textContent });
    };
    new MutationObserver(note).observe(document.getElementById('totals'),
                                       { childList: true, subtree: true, characterData: true });
    note();
}"""


def cpu_seconds(pid):
    """User + system CPU seconds of process `pid` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


class ConsoleTail(threading.Thread):
    """Notes when each console line first appears in the file (polled every 2 ms)."""

    def __init__(self, machine):
        super().__init__(daemon=True)
        self.machine = machine
        self.lines = []
        self.stop_flag = threading.Event()

    def run(self):
        seen = 0
        while not self.stop_flag.is_set():
            text = self.machine.console_text()
            if len(text) > seen:
                now = time.time()
                complete = text[:text.rfind("\n") + 1]
                for line in complete[seen:].splitlines():
                    self.lines.append((now, line))
                seen = max(seen, len(complete))
            time.sleep(0.002)

    def text(self):
        return "\n".join(line for _, line in self.lines)


def boot(work, name):
    machine = Machine(work / name, "init=demo", mem=MEM, swap=SwapDisk("32M"), stub="kernel",
                      qmp=("tests", "daemon"))
    return machine


def demo_alone(work):
    """Seconds from boot to the verdict with nobody looking."""
    machine = boot(work, "alone")
    try:
        started = time.monotonic()
        machine.start()
        machine.wait_console(r"^VERDICT", DEMO_TIMEOUT_S)
        return time.monotonic() - started
    finally:
        machine.close()


def demo_with_page(work, inspector, screenshot=None):
    machine = boot(work, "viewed")
    http = procs.free_port()
    out = {}
    tail = ConsoleTail(machine)
    with browser.Browser() as b:
        page = b.page(1280, 800, "light")
        try:
            started = time.monotonic()
            machine.start()
            daemon = Daemon(work, target=f"127.0.0.1:{machine.port}", http_port=http,
                            qmp_path=machine.qmp_path("daemon"), ram=machine.ram_path,
                            binary=inspector).start()
            tail.start()
            cpu0, wall0 = cpu_seconds(daemon.process.pid), time.monotonic()
            page.goto(daemon.base + "/")
            page.wait_for_function("() => document.getElementById('totals') !== null")
            page.evaluate(RECORDER_JS)
            if screenshot:
                machine.wait_console(SWAPPING, DEMO_TIMEOUT_S)
                page.keyboard.press(SCREENSHOT_VIEW)
                page.wait_for_timeout(800)
                page.screenshot(path=str(screenshot))
            machine.wait_console(r"^VERDICT", DEMO_TIMEOUT_S)
            demo_s = time.monotonic() - started
            cpu1, wall1 = cpu_seconds(daemon.process.pid), time.monotonic()
            # The kernel idles after the verdict; the page stays open.
            time.sleep(IDLE_WINDOW_S)
            cpu2, wall2 = cpu_seconds(daemon.process.pid), time.monotonic()
            shown = page.evaluate("() => window.benchShown")
            errors = b.errors(page)
            page.context.close()
            out["first_paint"] = first_paint(b, daemon.base)
            info = get(daemon.base + "/api/v1/history")
            daemon.stop()
        finally:
            tail.stop_flag.set()
            machine.close()
    # During the demo: from the page's first moment to the verdict (the idle kernel after
    # it changes only at its timer ticks).
    verdict_ms = next((t * 1000 for t, line in tail.lines if line.startswith("VERDICT")), None)
    during = [s for s in shown if verdict_ms is None or s["t"] <= verdict_ms]
    moments = {s["moment"] for s in during}
    end_ms = verdict_ms if verdict_ms is not None else (shown[-1]["t"] if shown else 0)
    span_ms = (end_ms - during[0]["t"]) if during else 0
    out["demo_s"] = round(demo_s, 1)
    out["updates"] = len(moments)
    out["updates_per_s"] = round(len(moments) / (span_ms / 1000), 2) if span_ms > 0 else 0.0
    out["source"] = info.get("source")
    # The live source snapshots every live_interval_ms; the stub every interval_ms.
    out["interval_ms"] = info.get("live_interval_ms" if info.get("source") == "live" else "interval_ms")
    out["snapshots"] = info.get("snapshots")
    out["cpu_demo_percent"] = round(100 * (cpu1 - cpu0) / (wall1 - wall0), 1)
    out["cpu_idle_percent"] = round(100 * (cpu2 - cpu1) / (wall2 - wall1), 1)
    out["fault_to_screen"] = fault_latency(tail.lines, shown)
    out["page_errors"] = errors[:5]
    return out


def fault_latency(console, shown):
    """Latencies (ms) from memhog's `F frames free` lines to the first render showing <= F."""
    samples = []
    for t, line in console:
        match = MEMHOG_LINE.match(line)
        if not match or int(match.group(1)) == 0:
            continue
        free = int(match.group(1))
        later = [s["t"] for s in shown if s["free"].isdigit() and int(s["free"]) <= free]
        if later:
            samples.append(min(later) - t * 1000)
    if not samples:
        return {"samples": 0}
    return {"samples": len(samples), "median_ms": round(statistics.median(samples), 1),
            "max_ms": round(max(samples), 1), "min_ms": round(min(samples), 1)}


def first_paint(b, base):
    """Median of fresh loads: first contentful paint, and the kernel's state drawn."""
    fcp, drawn = [], []
    for _ in range(LOADS):
        page = b.page(1280, 800, "light")
        page.goto(base + "/")
        page.wait_for_function("() => window.pgkernel && window.pgkernel.current() !== null", timeout=30000)
        t = page.evaluate("""() => ({
            drawn: performance.now(),
            fcp: performance.getEntriesByName('first-contentful-paint')[0]?.startTime ?? null })""")
        drawn.append(t["drawn"])
        if t["fcp"] is not None:
            fcp.append(t["fcp"])
        page.context.close()
    return {"fcp_ms": round(statistics.median(fcp), 1) if fcp else None,
            "state_drawn_ms": round(statistics.median(drawn), 1), "loads": LOADS}


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inspector", type=Path, default=None, help="the inspector binary (default target/debug/inspector)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument("--screenshot", type=Path, default=None,
                        help="also save the page while memhog swaps (1280x800, light) as this PNG")
    args = parser.parse_args(argv)
    missing = browser.available()
    if missing:
        result = {"error": missing}
    else:
        with tempfile.TemporaryDirectory(prefix="bench-web-") as tmp:
            work = Path(tmp)
            result = demo_with_page(work, args.inspector, args.screenshot)
            result["demo_alone_s"] = round(demo_alone(work), 1)
    text = json.dumps(result)
    if args.json:
        args.json.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
