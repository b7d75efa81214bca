"""browser: Debian's chromium driven by Playwright for Python, as the web view's tests use it.

Playwright drives the system's /usr/bin/chromium (installed by `scripts/setup --test`
with apt-get); it never downloads a browser (`playwright install` is not needed and is
never called). Chromium runs headless with --no-sandbox (the tests may run as root) and
without its background network traffic, so a test run talks to nothing but the
inspector on loopback.

    with Browser() as b:
        page = b.page(1280, 800, "light")
        page.goto(url)
        ...
        b.errors(page)        # the console errors and page errors seen so far
"""

import os
import shutil
from pathlib import Path

from .check import TestFailure

CHROMIUM = Path(os.environ.get("PGTEST_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium")
# No update checks, no field trials, no first-run work: nothing but the page's own requests.
ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-component-update",
        "--disable-default-apps", "--disable-sync", "--no-first-run", "--no-default-browser-check",
        "--metrics-recording-only", "--disable-features=Translate,MediaRouter,OptimizationHints"]


def available():
    """Why the browser tests cannot run, or None when they can."""
    if not CHROMIUM.exists():
        return f"{CHROMIUM} is missing (scripts/setup --test installs Debian's chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright for Python is missing (tests/requirements.txt; scripts/setup --test)"
    return None


class Browser:
    """One chromium for a test module; `page()` opens a page in a fresh context that
    records its console errors and page errors."""

    def __init__(self):
        self._playwright = None
        self.browser = None
        self._logs = {}

    def __enter__(self):
        from playwright.sync_api import Error, sync_playwright
        self._playwright = sync_playwright().start()
        try:
            self.browser = self._playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        except Error as e:
            self._playwright.stop()
            raise TestFailure(f"chromium did not start: {e}") from None
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        if self.browser is not None:
            self.browser.close()
            self.browser = None
        if self._playwright is not None:
            self._playwright.stop()
            self._playwright = None

    def page(self, width=1280, height=800, scheme="light"):
        """A new page of `width` x `height` CSS pixels with the system theme `scheme`."""
        context = self.browser.new_context(viewport={"width": width, "height": height},
                                           color_scheme=scheme)
        page = context.new_page()
        log = []
        page.on("console", lambda m: log.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
        page.on("pageerror", lambda e: log.append(f"page error: {e}"))
        page.on("response", lambda r: log.append(f"HTTP {r.status} {r.url}") if r.status >= 400 else None)
        self._logs[id(page)] = log
        return page

    def errors(self, page):
        """Console errors, uncaught exceptions and failed requests of `page` so far."""
        return list(self._logs.get(id(page), []))

    def clear(self, page):
        self._logs.get(id(page), []).clear()
