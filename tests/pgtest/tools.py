"""tools: the venv of the Python test tools, and the pytest command every runner execs.

One definition of where the tools live (TEST_VENV) and what they are (the pinned list in
tests/requirements.txt: pytest, pytest-xdist, pytest-timeout, schemathesis, ruff, playwright; add a
tool by adding its line there). Debian's system pip refuses installs, hence the venv.

    python3 tests/pgtest/tools.py ensure        # create/update it; silent when up to date
    python3 tests/pgtest/tools.py path          # print the venv's directory
    python3 tests/pgtest/tools.py pytest ARGS   # ensure, then run pytest ARGS in the repo

`scripts/setup --test` runs `ensure` (scripts/test calls it); `scripts/run` never does.
"""

import hashlib
import os
import subprocess
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `pgtest` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pgtest.paths import REPO, TARGET_DIR

TEST_VENV = TARGET_DIR / "test-venv"
REQUIREMENTS = REPO / "tests" / "requirements.txt"
# The digest of the requirements the venv was last made from: no pip call when it matches.
STAMP = TEST_VENV / ".requirements.sha256"


class ToolsError(RuntimeError):
    pass


def venv_bin(name):
    """A program of the venv (`python`, `st`, `ruff`, ...)."""
    return TEST_VENV / "bin" / name


def _wanted():
    return hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()


def up_to_date():
    try:
        return venv_bin("python").exists() and STAMP.read_text().strip() == _wanted()
    except FileNotFoundError:
        return False


def ensure(python=None):
    """Creates the venv and installs the requirements unless already done (quiet)."""
    if up_to_date():
        return
    print(f"setup: installing the Python test tools into {TEST_VENV} ({REQUIREMENTS.name})",
          flush=True)
    python = python or sys.executable
    if not venv_bin("python").exists():
        made = subprocess.run([python, "-m", "venv", str(TEST_VENV)], capture_output=True, check=False, text=True)
        if made.returncode != 0:
            raise ToolsError(f"{python} -m venv failed (Debian: apt-get install python3-venv): "
                             f"{made.stderr.strip()[-500:]}")
    installed = subprocess.run([str(venv_bin("python")), "-m", "pip", "install", "-q",
                                "--disable-pip-version-check", "-r", str(REQUIREMENTS)],
                               capture_output=True, check=False, text=True)
    if installed.returncode != 0:
        raise ToolsError(f"pip install -r {REQUIREMENTS} failed:\n{installed.stdout[-1500:]}"
                         f"{installed.stderr[-1500:]}")
    STAMP.write_text(_wanted() + "\n")


def pytest_command(args):
    return [str(venv_bin("python")), "-m", "pytest", *args]


def exec_pytest(args):
    """Ensures the tools, then replaces this process by pytest ARGS (in the repository)."""
    try:
        ensure()
    except ToolsError as error:
        print(f"setup: {error}", file=sys.stderr)
        sys.exit(2)
    os.chdir(REPO)
    command = pytest_command(args)
    os.execv(command[0], command)


def main(argv):
    if argv[:1] == ["ensure"] and len(argv) == 1:
        try:
            ensure()
        except ToolsError as error:
            print(f"setup: {error}", file=sys.stderr)
            return 1
        return 0
    if argv[:1] == ["path"] and len(argv) == 1:
        print(TEST_VENV)
        return 0
    if argv[:1] == ["pytest"]:
        exec_pytest(argv[1:])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
