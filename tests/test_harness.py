"""test_harness: the harness's own promises: the RAM file (a booted machine's RAM is the
file at `machine.ram_path`, removed when QEMU ends), the sweep of RAM directories left
by dead runners, and the exit statuses read from kernel/abi."""

import os
import re
import subprocess

from pgtest import machine, status


def test_ram_file_is_guest_memory(boot):
    m = boot("init=demo", mem="32M", stub="kernel")
    ram = m.ram_path
    assert ram is not None and ram.is_file(), f"no RAM file at {ram}"
    assert ram.stat().st_size == 32 << 20, f"the RAM file has {ram.stat().st_size} bytes, -m is 32M"
    assert str(ram).startswith(str(machine.ram_base())), f"{ram} is not under {machine.ram_base()}"
    m.wait_console(r"^init: pid 1", 30)
    # The file's offset is the guest physical address: the page directory QEMU's CR3
    # names reads the same through QMP's `xp` and from the file.
    cr3 = int(re.search(r"CR3=([0-9a-f]+)", m.hmp("info registers")).group(1), 16)
    words = [int(w, 16) for w in re.findall(r"0x([0-9a-f]{8})", m.hmp(f"xp /8wx {cr3:#x}"))]
    data = ram.read_bytes()[cr3:cr3 + 32]
    from_file = [int.from_bytes(data[i:i + 4], "little") for i in range(0, 32, 4)]
    assert len(words) == 8 and words == from_file, f"xp says {words}, the file {from_file}"
    assert words[0] & 1, f"the first directory entry is not present: {words[0]:#x}"
    directory = ram.parent
    m.stop()
    assert not directory.exists(), f"{directory} outlived QEMU"


def test_sweep_removes_only_dead_owners(tmp_path):
    gone = subprocess.Popen(["true"])
    gone.wait()
    dead = tmp_path / f"{machine.RAM_DIR_PREFIX}{gone.pid}-x"
    live = tmp_path / f"{machine.RAM_DIR_PREFIX}{os.getpid()}-y"
    other = tmp_path / "not-ours"
    for directory in (dead, live, other):
        directory.mkdir()
        (directory / "ram").write_bytes(b"\0" * 16)
    assert machine.sweep_stale_ram_dirs(tmp_path) == [dead]
    assert not dead.exists() and live.exists() and other.exists()


def test_statuses_come_from_the_abi(tmp_path):
    source = tmp_path / "lib.rs"
    source.write_text("pub mod qemu_exit {\n    pub const PASS: u32 = 0x20;\n"
                      "    pub const FAIL: u32 = 0x21;\n    pub const CRASH: u32 = 7;\n}\n")
    assert status._device_values(source) == {"PASS": 0x20, "FAIL": 0x21, "CRASH": 7}
    assert status.STATUS_PASS == status.process_status(status._device_values()["PASS"])
    assert len({status.STATUS_PASS, status.STATUS_FAIL, status.STATUS_CRASH}) == 3
