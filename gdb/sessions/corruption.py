"""corruption.py: every kind of damage `monitor corrupt` does, named exactly by checkmm.

Stopped right after ktest cow-both-write's fork (parent and child share their pages
copy-on-write, count 2), the session damages one thing at a time: a PTE's RW bit on a
shared page, its present bit, one of its frame bits; a PDE's RW, US and present bits;
a frame's mem_map count up and down; a leaked frame. After each, `monitor checkmm --json`
must list exactly the mismatches the damage implies (kind, linear address, frame,
expected and found counts), no more and no fewer; then the inverse command undoes it and
checkmm is clean again with every free frame back. The run then ends clean.
"""

from lib import *

SESSION = {
    "cmdline": "init=ktest arg=cow-both-write",
    "fast": True,
}


def h(value):
    return f"0x{value:08x}"


def matches(actual, expected):
    return all(actual.get(key) == value for key, value in expected.items())


def expect_mismatches(what, expected):
    """checkmm must report exactly `expected` (each a dict of fields), in any order."""
    doc = checkmm()
    found = list(doc["mismatches"])
    check(doc["omitted"] == 0, f"{what}: checkmm omitted {doc['omitted']} mismatches")
    for want in expected:
        hit = next((m for m in found if matches(m, want)), None)
        check(hit is not None, f"{what}: checkmm does not report {want}; it reports "
                               f"{[m['message'] for m in doc['mismatches']]}")
        found.remove(hit)
        log(f"   checkmm: {hit['message']}")
    check(not found, f"{what}: checkmm also reports {[m['message'] for m in found]}")


def case(what, damage, undo, expected, baseline_free):
    log(f"{what}: monitor {damage}")
    result = mon_json(damage)
    expected = expected(result) if callable(expected) else expected
    expect_mismatches(what, expected)
    mon_json(undo(result) if callable(undo) else undo)
    expect_clean(f"after undoing '{damage}'")
    free = free_frames()
    check(free == baseline_free, f"after undoing '{damage}': {free} frames free, {baseline_free} before")
    log(f"   undone ({undo(result) if callable(undo) else undo}): checkmm clean, {free} frames free")


def main():
    child = fork_child()
    expect_clean("before any damage")
    free0 = free_frames()
    slot = tasks()[child]["slot"]
    pde_index = slot * 16                       # the child's first 4 MiB: code and data
    page = walk(0, pid=child)                   # offset 0: a code page shared with the parent
    linear, frame, count = int(page["linear"], 16), int(page["frame"], 16), page["count"]
    raw = int(page["pte"]["raw"], 16)
    check(count == 2 and not raw & 2, f"offset 0 of pid {child} is not shared read-only: {page}")
    table = mon_json(f"dumppt {pde_index}")
    pde_raw = int(table["pde"]["raw"], 16)
    counts = {int(e["frame"], 16): e["count"] for e in table["entries"] if e["present"]}
    refs = {}
    for e in table["entries"]:
        if e["present"]:
            refs[int(e["frame"], 16)] = refs.get(int(e["frame"], 16), 0) + 1
    log(f"pid {child}: offset 0 is {h(linear)}, frame {h(frame)} count {count}; PDE {pde_index} "
        f"{h(pde_raw)} maps {len(counts)} frames; {free0} frames free")

    # A frame bit whose flip lands on another frame of the same table, whose count is known.
    bit, other = next(((b, frame ^ (1 << b)) for b in range(12, 32) if frame ^ (1 << b) in counts),
                      (12, frame ^ 0x1000))
    other_count = counts.get(other)

    cases = [
        ("PTE RW set on a shared page", f"corrupt pte 0 1 --task {child}", f"corrupt pte 0 1 --task {child}",
         [{"kind": "writable_shared", "linear": h(linear), "frame": h(frame), "count": count}]),
        ("PTE present bit cleared", f"corrupt pte 0 0 --task {child}", f"corrupt pte 0 0 --task {child}",
         [{"kind": "unexpected_swap_entry", "linear": h(linear), "entry": h(raw & ~1)},
          {"kind": "count", "frame": h(frame), "expected": count - 1, "found": count}]),
        (f"PTE frame bit {bit} flipped", f"corrupt pte 0 {bit} --task {child}", f"corrupt pte 0 {bit} --task {child}",
         [{"kind": "count", "frame": h(frame), "expected": count - 1, "found": count},
          {"kind": "count", "frame": h(other)} if other_count is None else
          {"kind": "count", "frame": h(other), "expected": other_count + 1, "found": other_count}]),
        ("PDE RW cleared", f"corrupt pde {pde_index} 1", f"corrupt pde {pde_index} 1",
         [{"kind": "entry_flags", "linear": h(pde_index << 22), "entry": h(pde_raw & ~2), "level": "directory"}]),
        ("PDE US cleared", f"corrupt pde {pde_index} 2", f"corrupt pde {pde_index} 2",
         [{"kind": "entry_flags", "linear": h(pde_index << 22), "entry": h(pde_raw & ~4), "level": "directory"}]),
        ("PDE present bit cleared", f"corrupt pde {pde_index} 0", f"corrupt pde {pde_index} 0",
         [{"kind": "entry_flags", "linear": h(pde_index << 22), "entry": h(pde_raw & ~1), "level": "directory"},
          {"kind": "count", "frame": h(pde_raw & ~0xfff), "expected": 0, "found": 1}]
         + [{"kind": "count", "frame": h(f), "expected": counts[f] - n, "found": counts[f]}
            for f, n in sorted(refs.items())]),
        ("mem_map count raised", f"corrupt count {h(frame)} +1", f"corrupt count {h(frame)} -1",
         [{"kind": "count", "frame": h(frame), "expected": count, "found": count + 1}]),
        ("mem_map count lowered", f"corrupt count {h(frame)} -1", f"corrupt count {h(frame)} +1",
         [{"kind": "count", "frame": h(frame), "expected": count, "found": count - 1}]),
        ("a free frame leaked", "corrupt leak", lambda r: f"corrupt count {r['frame']} -1",
         lambda r: [{"kind": "count", "frame": r["frame"], "expected": 0, "found": 1}]),
    ]
    for what, damage, undo, expected in cases:
        case(what, damage, undo, expected, free0)
    end = run_to_end()
    return f"{len(cases)} kinds of damage each named exactly by checkmm and undone; {end}"


session(main)
