"""paths: where the repository, the built kernel and image, and the helper scripts are."""

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# scripts/build honours CARGO_TARGET_DIR (relative to the repository, as cargo reads it
# from there); so does every test.
TARGET_DIR = REPO / os.environ.get("CARGO_TARGET_DIR", "target")
RUST_TARGET = "i586-unknown-linux-gnu"
KERNEL = TARGET_DIR / RUST_TARGET / "release" / "kernel"
# The stepping build (scripts/build --debug-build): unoptimised, locals readable.
STEPPING_KERNEL = TARGET_DIR / RUST_TARGET / "stepping" / "kernel"
IMAGE = TARGET_DIR / "userimage.img"
INSPECTOR = TARGET_DIR / "debug" / "inspector"
MKSWAP = REPO / "scripts" / "mkswap"
BUILD = REPO / "scripts" / "build"
GDB_SCRIPT = REPO / "gdb" / "pgkernel.py"
SESSIONS_DIR = REPO / "gdb" / "sessions"


def qemu_binary():
    """QEMU for i386: $QEMU or qemu-system-i386."""
    return os.environ.get("QEMU", "qemu-system-i386")


def read_text(path):
    """A file's text ("" while it does not exist), undecodable bytes replaced."""
    try:
        return Path(path).read_text(errors="replace")
    except FileNotFoundError:
        return ""
