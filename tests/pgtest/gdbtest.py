"""gdbtest: what the gdb end-to-end tests share (tests/test_gdb.py, test_stepping.py,
test_seeds.py): `Ctx`, a test's view (its directory, the stub kind, the machines it boots,
gdb against them), and helpers on the kernel's symbols and ELF."""

import re
import sys

from . import gdb, paths
from .check import TestFailure, check
from .machine import SwapDisk

sys.path.insert(0, str(paths.REPO / "gdb"))
import pgkernel_core  # the gdb scripts' decoders, also the tests'

COW = "init=ktest arg=cow-both-write"


class Ctx:
    """What a test gets: its directory, the stub kind, and machines it boots (through the
    harness's `boot` fixture: each is closed at the end of the test)."""

    def __init__(self, node, stub, workdir, boot):
        self.name = node.name
        self.stub = stub
        self.workdir = workdir
        self._boot = boot
        self._node = node

    def boot(self, cmdline, wait=True, mem="32M", exit_at_end=True, kernel=None, swap=None):
        """A fresh kernel (`kernel`: another ELF, e.g. paths.STEPPING_KERNEL); `swap` is a
        disk size ("32M": a new scripts/mkswap disk)."""
        cmdline = cmdline + (" onexit=exit" if exit_at_end else "")
        return self._boot(cmdline, stub=self.stub, mem=mem, gdb_wait=wait,
                          kernel=kernel or paths.KERNEL,
                          swap=SwapDisk(swap) if swap is not None else None)

    def note(self, text):
        """A fact worth keeping from a passing test (in the JUnit report's properties)."""
        self._node.user_properties.append(("note", text))

    def gdb(self, machine, commands, timeout=40.0, allow_errors=False):
        result = gdb.run_gdb(machine.port, commands, timeout=timeout, kernel=machine.kernel)
        text = result.out + result.err
        check("Remote connection closed" not in text and "Connection refused" not in text,
              f"gdb lost the connection:\n{result.tail()}")
        if not allow_errors:
            check("Python Exception" not in text, f"a Python exception in gdb:\n{result.tail()}")
        return result


_symbol_cache = {}


def function_address(name):
    """The address pg-break resolves for `name` (gdb on the ELF alone, no target)."""
    if name not in _symbol_cache:
        result = gdb.run_gdb(0, [f"python print('ADDR', [hex(a) for a, _ in resolve_function({name!r})])"],
                             attach=False, timeout=30)
        match = re.search(r"ADDR \['(0x[0-9a-f]+)'", result.out)
        check(match, f"gdb could not resolve {name}: {result.tail()}")
        _symbol_cache[name] = int(match.group(1), 16)
    return _symbol_cache[name]


def elf_bytes(path, vaddr, length):
    """`length` bytes of the loaded image at `vaddr`, from the ELF's PT_LOAD segments."""
    try:
        return pgkernel_core.elf_bytes(path.read_bytes(), vaddr, length)
    except ValueError as error:
        raise TestFailure(f"the kernel {path}: {error}") from None


def stop_at(function):
    """gdb commands: break on `function`'s first instruction (pg-break --entry) and
    continue until it is hit."""
    return [f"pg-break {function} --entry", "continue"]


def int_after(text, label):
    match = re.search(rf"{re.escape(label)}\s+(0x[0-9a-f]+)", text)
    check(match, f"no '{label} 0x...' in:\n{text[-1500:]}")
    return int(match.group(1), 16)
