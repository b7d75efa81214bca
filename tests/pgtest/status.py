"""status: QEMU's exit statuses for the kernel's verdicts, and the console's VERDICT lines.

The kernel writes a value to `isa-debug-exit` and QEMU exits with `value << 1 | 1`. The
values are defined once, in kernel/abi (`abi::qemu_exit`); this module reads them from
there, so the scripts never spell 33/35/37 themselves. `python3 tests/pgtest/status.py
--shell` prints them as shell assignments (scripts/run evaluates that).
"""

import re
import sys
from pathlib import Path

ABI_SOURCE = Path(__file__).resolve().parents[2] / "kernel" / "abi" / "src" / "lib.rs"
VERDICT_PREFIX = "VERDICT:"
VERDICT_PASS = "VERDICT: PASS"


def _device_values(source=ABI_SOURCE):
    """{"PASS": 0x10, ...} from `pub mod qemu_exit { pub const NAME: u32 = VALUE; ... }`."""
    text = source.read_text()
    module = re.search(r"pub mod qemu_exit \{(.*?)\n\}", text, re.DOTALL)
    if module is None:
        raise RuntimeError(f"{source}: no `pub mod qemu_exit`")
    values = {name: int(value, 0) for name, value in
              re.findall(r"pub const (\w+): u32 = (0x[0-9a-fA-F]+|\d+);", module.group(1))}
    missing = {"PASS", "FAIL", "CRASH"} - set(values)
    if missing:
        raise RuntimeError(f"{source}: qemu_exit lacks {sorted(missing)}")
    return values


def process_status(value):
    """The exit status QEMU reports for a device value (abi::qemu_exit::process_status)."""
    return (value << 1) | 1


_VALUES = _device_values()
STATUS_PASS = process_status(_VALUES["PASS"])
STATUS_FAIL = process_status(_VALUES["FAIL"])
STATUS_CRASH = process_status(_VALUES["CRASH"])
MEANING = {
    STATUS_PASS: "the kernel reported PASS",
    STATUS_FAIL: "the kernel reported FAIL",
    STATUS_CRASH: "the kernel crashed",
    0: "QEMU stopped without a verdict (guest reset or shutdown)",
}
WORD = {STATUS_PASS: "PASS", STATUS_FAIL: "FAIL", STATUS_CRASH: "CRASH"}


def describe(status):
    """What a QEMU exit status means, for messages."""
    if status is None:
        return "QEMU is still running"
    if status < 0:
        return f"QEMU killed by signal {-status}"
    return MEANING.get(status, "QEMU error")


def verdict_lines(console):
    """The console's `VERDICT:` lines, in order."""
    return [line for line in console.splitlines() if line.startswith(VERDICT_PREFIX)]


def crashed(status, console):
    """True when the kernel crashed or panicked (by its status or its console)."""
    return status == STATUS_CRASH or "KERNEL CRASH" in console or "KERNEL PANIC" in console


if __name__ == "__main__":
    if sys.argv[1:] == ["--shell"]:
        print(f"STATUS_PASS={STATUS_PASS} STATUS_FAIL={STATUS_FAIL} STATUS_CRASH={STATUS_CRASH}")
    else:
        print(f"usage: {sys.argv[0]} --shell", file=sys.stderr)
        sys.exit(2)
