"""conftest: the pytest side of the harness (tests/pgtest is the plumbing).

- Options: --stub, --accel, --keep-logs DIR, --no-build, --slow, --qemu, --kernel,
  --image, --scenario-timeout (pytest --help lists them under "pgkernel").
- Before the first test (once per run, not in xdist workers): scripts/build, the
  stepping build (scripts/build --debug-build) and `cargo build -p inspector` unless
  --no-build (quick when up to date).
- Fixtures: `workdir` (a test's own directory), `boot` (a factory of started
  pgtest.machine.Machine objects, every one closed at the end of the test and its
  console's tail added to the report of a failed test), `stub` (parametrized from
  --stub and the test's `stubs` marker), `ctx` (the gdb tests' pgtest.gdbtest.Ctx),
  `options`.
- The JUnit XML report goes to target/pytest/junit.xml unless --junitxml says otherwise.
- Tests marked `slow` are deselected unless --slow (the long gdb sessions).
"""

import fcntl
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from pgtest import paths, procs
from pgtest.gdbtest import Ctx
from pgtest.machine import Machine, sweep_stale_ram_dirs

CONSOLE_TAIL_LINES = 30
JUNIT_XML = paths.TARGET_DIR / "pytest" / "junit.xml"
STUBS = ("kernel", "qemu")


def pytest_addoption(parser):
    group = parser.getgroup("pgkernel")
    group.addoption("--stub", default="kernel",
                    help="gdb tests: kernel (the in-kernel stub on COM1, default), qemu (QEMU's own "
                         "gdbstub; tests that need the kernel's monitor are skipped), or kernel,qemu")
    group.addoption("--accel", choices=("tcg", "kvm"), default="tcg",
                    help="QEMU accelerator (default tcg; kvm falls back to tcg when /dev/kvm is not usable)")
    group.addoption("--keep-logs", metavar="DIR", type=Path,
                    help="keep every test's directory (consoles, scripts, logs) under DIR")
    group.addoption("--no-build", action="store_true",
                    help="do not run scripts/build (release and --debug-build) and cargo build -p inspector first")
    group.addoption("--slow", action="store_true",
                    help="also run the tests marked slow (the long gdb sessions)")
    group.addoption("--qemu", default=None, metavar="PATH",
                    help="QEMU binary (default $QEMU or qemu-system-i386)")
    group.addoption("--kernel", type=Path, default=None, metavar="ELF", help=f"default {paths.KERNEL}")
    group.addoption("--image", type=Path, default=None, metavar="FILE", help=f"default {paths.IMAGE}")
    group.addoption("--scenario-timeout", type=float, default=None, metavar="SECONDS",
                    help="QEMU scenarios: seconds before QEMU is killed and the scenario fails (default 60)")


def is_worker(config):
    return hasattr(config, "workerinput")


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    for marker in ("stubs(*kinds): the gdb stubs a test supports (default: kernel only)",
                   "slow: deselected unless --slow",
                   "fast: a fast gdb session (in scripts/sessions --fast)",
                   "scenario: a QEMU scenario (--scenario-timeout applies)",
                   "exclusive: runs while no other test of the run does (timing-sensitive)"):
        config.addinivalue_line("markers", marker)
    if not config.option.xmlpath and not is_worker(config):
        JUNIT_XML.parent.mkdir(parents=True, exist_ok=True)
        config.option.xmlpath = str(JUNIT_XML)
    chosen = [s.strip() for s in config.getoption("stub").split(",") if s.strip()]
    unknown = [s for s in chosen if s not in STUBS]
    if unknown or not chosen:
        raise pytest.UsageError(f"--stub takes kernel, qemu or kernel,qemu (not {config.getoption('stub')!r})")
    config.pg_stubs = chosen
    if config.getoption("accel") == "kvm" and not os.access("/dev/kvm", os.R_OK | os.W_OK):
        config.option.accel = "tcg"
    procs.install_signal_handlers()


def pytest_sessionstart(session):
    """Builds once per run, in the controller (xdist workers start after this)."""
    config = session.config
    if is_worker(config):
        return
    sweep_stale_ram_dirs()  # RAM files of runs that were killed outright
    if config.getoption("no_build") or config.getoption("collectonly"):
        return
    started = time.monotonic()
    for command in ([str(paths.BUILD)], [str(paths.BUILD), "--debug-build"],
                    ["cargo", "build", "-q", "-p", "inspector"]):
        env = dict(os.environ)
        env.pop("RUSTFLAGS", None)  # any RUSTFLAGS replaces .cargo/config.toml's
        done = subprocess.run(command, cwd=paths.REPO, env=env, capture_output=True, check=False, text=True)
        if done.returncode != 0:
            pytest.exit(f"{' '.join(command)} failed:\n{(done.stdout + done.stderr)[-3000:]}", returncode=2)
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(f"pgkernel: built in {time.monotonic() - started:.1f} s "
                            f"(scripts/build, scripts/build --debug-build, cargo build -p inspector)")


def pytest_generate_tests(metafunc):
    """`stub`: one parameter per --stub kind; kinds the test's `stubs` marker lacks skip."""
    if "stub" not in metafunc.fixturenames:
        return
    marker = metafunc.definition.get_closest_marker("stubs")
    supported = marker.args if marker else ("kernel",)
    params = []
    for kind in metafunc.config.pg_stubs:
        marks = () if kind in supported else pytest.mark.skip(reason=f"needs the {' or '.join(supported)} stub")
        params.append(pytest.param(kind, marks=marks, id=kind))
    metafunc.parametrize("stub", params)


def pytest_collection_modifyitems(config, items):
    # --timeout on the command line beats every test's own timeout mark; so does
    # --scenario-timeout for the QEMU scenarios (plus time to boot and judge).
    user_timeout = config.getoption("timeout")
    scenario_timeout = config.getoption("scenario_timeout")
    for item in items:
        if user_timeout is not None:
            item.add_marker(pytest.mark.timeout(user_timeout), append=False)
        elif scenario_timeout is not None and item.get_closest_marker("scenario"):
            item.add_marker(pytest.mark.timeout(scenario_timeout + 60), append=False)
    _deselect_slow(config, items)
    _longest_first(config, items)


# --- the longest tests first, from the last run's durations ------------------------------
# With one test per xdist work unit, starting the longest first (the inspector's group,
# the swap scenarios) keeps both workers busy to the end.
DURATIONS_KEY = "pgkernel/durations"


def _base_id(nodeid):
    """A node id without xdist's `@group` suffix."""
    return nodeid.rsplit("@", 1)[0] if nodeid.rfind("@") > nodeid.rfind("]") else nodeid


def _group(item):
    marker = item.get_closest_marker("xdist_group")
    return (marker.args[0] if marker.args else marker.kwargs.get("name", "default")) if marker else None


def _longest_first(config, items):
    cache = getattr(config, "cache", None)
    known = cache.get(DURATIONS_KEY, {}) if cache is not None else {}
    if not known:
        return
    unknown = max(known.values())  # a new test runs early: it may be long
    cost = {item: known.get(_base_id(item.nodeid), unknown) for item in items}
    group_cost = {}
    for item in items:
        group = _group(item)
        if group is not None:
            group_cost[group] = group_cost.get(group, 0.0) + cost[item]
    # A group keeps its own order (its tests share state) and counts as its total.
    order = {item: index for index, item in enumerate(items)}
    items.sort(key=lambda item: (-(group_cost[_group(item)] if _group(item) else cost[item]),
                                 _group(item) or "", order[item]))


_durations = {}


def pytest_runtest_logreport(report):
    if report.when in ("setup", "call", "teardown"):
        key = _base_id(report.nodeid)
        _durations[key] = _durations.get(key, 0.0) + report.duration


def pytest_sessionfinish(session):
    cache = getattr(session.config, "cache", None)
    if is_worker(session.config) or cache is None or not _durations:
        return
    known = cache.get(DURATIONS_KEY, {})
    known.update({k: round(v, 2) for k, v in _durations.items()})
    cache.set(DURATIONS_KEY, known)


def _deselect_slow(config, items):
    if config.getoption("slow") or "slow" in (config.option.markexpr or ""):
        return
    explicit = any("::" in arg for arg in config.args)  # a node id names a test on purpose
    if explicit:
        return
    kept, dropped = [], []
    for item in items:
        (dropped if item.get_closest_marker("slow") else kept).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


# --- exclusive tests ---------------------------------------------------------------------
# Tests marked `exclusive` run while no other test of the run does, as each runner ran
# alone before the harness: the inspector's tests assert response times (an 8 s stub
# timeout, a 12 s post-mortem fallback) and its stub link degrades with a QEMU scenario
# busy on the other core. Every test holds a shared lock while it runs, an exclusive
# test the exclusive one, kept across consecutive exclusive tests (the inspector's group
# waits once, not between its tests). A gate lock keeps the shared takers from starving
# an exclusive one. Taken around the whole test protocol, outside pytest-timeout's timer:
# waiting for the lock is not the test's time.
EXCLUSIVE_LOCK = paths.TARGET_DIR / "pytest" / "exclusive.lock"
EXCLUSIVE_GATE = paths.TARGET_DIR / "pytest" / "exclusive.gate"


class _RunLock:
    def __init__(self):
        self.lock = self.gate = None
        self.mode = None

    def _open(self):
        if self.lock is None:
            EXCLUSIVE_LOCK.parent.mkdir(parents=True, exist_ok=True)
            # Held open for the session: the flocks live as long as these files.
            self.lock = open(EXCLUSIVE_LOCK, "a")  # noqa: SIM115
            self.gate = open(EXCLUSIVE_GATE, "a")  # noqa: SIM115

    def take(self, mode):
        """mode: fcntl.LOCK_SH or fcntl.LOCK_EX (a held lock of the other kind is given up)."""
        self._open()
        if self.mode == mode:
            return
        self.release()
        fcntl.flock(self.gate, fcntl.LOCK_EX)  # in line behind a waiting exclusive taker
        try:
            fcntl.flock(self.lock, mode)
        finally:
            fcntl.flock(self.gate, fcntl.LOCK_UN)
        self.mode = mode

    def release(self):
        if self.mode is not None:
            fcntl.flock(self.lock, fcntl.LOCK_UN)
            self.mode = None


_RUN_LOCK = _RunLock()


def _exclusive(item):
    return item is not None and item.get_closest_marker("exclusive") is not None


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_protocol(item, nextitem):
    _RUN_LOCK.take(fcntl.LOCK_EX if _exclusive(item) else fcntl.LOCK_SH)
    try:
        yield
    finally:
        if not (_exclusive(item) and _exclusive(nextitem)):
            _RUN_LOCK.release()


@pytest.fixture(scope="session")
def options(pytestconfig):
    """What every boot needs from the command line."""
    class Options:
        accel = pytestconfig.getoption("accel")
        qemu = pytestconfig.getoption("qemu") or paths.qemu_binary()
        kernel = pytestconfig.getoption("kernel") or paths.KERNEL
        image = pytestconfig.getoption("image") or paths.IMAGE
        keep_logs = pytestconfig.getoption("keep_logs")
        scenario_timeout = pytestconfig.getoption("scenario_timeout")
    return Options


@pytest.fixture(scope="session")
def built(options):
    """The kernel, the image and QEMU are there (else every test booting fails, saying why)."""
    for path in (options.kernel, options.image):
        if not Path(path).is_file():
            pytest.fail(f"{path} is missing: run scripts/build", pytrace=False)
    if shutil.which(options.qemu) is None and not Path(options.qemu).is_file():
        pytest.fail(f"{options.qemu} not found: run scripts/setup", pytrace=False)
    return options


def _safe_name(nodeid):
    return re.sub(r"[^A-Za-z0-9_.@=-]+", "_", nodeid).strip("_")[-150:]


class Workdirs:
    """Directories for tests and fixtures: under --keep-logs DIR (kept), else pytest's
    temporary directories (a test's kept only when it failed: tmp_path_retention_policy)."""

    def __init__(self, keep_logs, factory):
        self.keep_logs = keep_logs
        self.factory = factory

    def make(self, name):
        if self.keep_logs is None:
            return self.factory.mktemp(_safe_name(name)[-60:])
        directory = Path(self.keep_logs) / _safe_name(name)
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(parents=True)
        return directory


@pytest.fixture(scope="session")
def workdirs(options, tmp_path_factory):
    return Workdirs(options.keep_logs, tmp_path_factory)


@pytest.fixture
def workdir(request, tmp_path, workdirs):
    """The test's own directory (tmp_path, or DIR/<test id> with --keep-logs DIR)."""
    if workdirs.keep_logs is None:
        return tmp_path
    return workdirs.make(request.node.nodeid)


@pytest.fixture
def boot(request, workdir, built):
    """boot(cmdline, **Machine options) -> a started Machine (in workdir/mN), closed at
    the end of the test whatever happens."""
    machines = []
    request.node.pg_machines = machines

    def start(cmdline, **kwargs):
        kwargs.setdefault("accel", built.accel)
        kwargs.setdefault("kernel", built.kernel)
        kwargs.setdefault("image", built.image)
        kwargs.setdefault("qemu", built.qemu)
        machine = Machine(workdir / f"m{len(machines)}", cmdline, **kwargs)
        machines.append(machine)
        return machine.start()

    yield start
    for machine in machines:
        machine.close()


@pytest.fixture
def ctx(request, stub, workdir, boot):
    """The gdb end-to-end tests' view (pgtest.gdbtest.Ctx), for the `stub` parameter."""
    return Ctx(request.node, stub, workdir, boot)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A failed test's report shows the end of every console it booted and QEMU's stderr."""
    outcome = yield
    report = outcome.get_result()
    if not report.failed:
        return
    for number, machine in enumerate(getattr(item, "pg_machines", ())):
        tail = machine.console_text().splitlines()[-CONSOLE_TAIL_LINES:]
        err = machine.stderr_text().strip().splitlines()[-5:]
        text = "\n".join(tail) if tail else "(no console output)"
        if err:
            text += "\n--- QEMU stderr ---\n" + "\n".join(err)
        report.sections.append((f"console m{number} ({machine.describe()}), last lines", text))
