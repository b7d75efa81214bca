"""wp_copy.py: a breakpoint on do_wp_page, mem_map before and after the copy-on-write copy.

In ktest cow-both-write, parent and child share their pages copy-on-write after fork.
The session stops in do_wp_page at the first write fault on a page whose frame is
shared (monitor walk of the faulting address: read-only, mem_map count 2, the other task
maps the same frame), lets do_wp_page return and walks again: the writer now has a new
frame, writable, count 1, holding the same bytes as the old one (the write that faulted
happens after the return); the old frame's count dropped to 1 and the other task still
maps it. The run then ends clean.
"""

from lib import *

import gdb

SESSION = {
    "cmdline": "init=ktest arg=cow-both-write",
    "fast": True,
}

TASK_SIZE = 64 << 20


def main():
    wp = break_at("do_wp_page")
    for _ in range(64):
        stop = run_until(wp)
        linear = caller_var("linear")
        before = walk(linear)
        if before["count"] == 2:
            break
        log(f"pid {stop.pid}: write fault at {hexa(linear)}, frame count {before['count']}: not shared, next")
    else:
        raise SessionFailure("no write fault on a shared frame in 64 faults")
    wp.delete()
    writer = stop.pid
    offset = linear % TASK_SIZE
    other = next(p for p, row in tasks().items() if p not in (0, writer))
    log(f"pid {writer} writes {hexa(linear)} (offset {hexa(offset)}); pid {other} shares the page")
    show(f"walk {hexa(linear)}")
    show(f"walk {hexa(offset)} --task {other}")
    old = before["frame"]
    theirs = walk(offset, pid=other)
    check("RO" in before["pte"]["flags"], f"the faulting page is not read-only: {before['pte']['flags']}")
    check(theirs["frame"] == old and theirs["count"] == 2,
          f"pid {other} does not map the same frame with count 2: {theirs['frame']} count {theirs['count']}")
    page = linear & ~0xFFF
    content = bytes(gdb.selected_inferior().read_memory(page, 64))

    finish_frame()
    after = walk(linear)
    theirs = walk(offset, pid=other)
    log("after do_wp_page returned:")
    show(f"walk {hexa(linear)}")
    show(f"walk {hexa(offset)} --task {other}")
    check(after["frame"] != old, f"do_wp_page did not copy: pid {writer} still maps {old}")
    check(after["count"] == 1 and "RW" in after["pte"]["flags"],
          f"the copy is not private and writable: count {after['count']}, {after['pte']['flags']}")
    check(theirs["frame"] == old and theirs["count"] == 1,
          f"the old frame's count did not drop to 1 for pid {other}: {theirs['frame']} count {theirs['count']}")
    check(bytes(gdb.selected_inferior().read_memory(page, 64)) == content,
          "the copy does not hold the old page's bytes")
    shared = {s["frame"] for s in mon_json("showmem")["shared"]}
    check(old not in shared, f"showmem still lists {old} among the shared frames")
    expect_clean("after the copy")
    end = run_to_end()
    return (f"pid {writer} at {hexa(linear)}: frame {old} (count 2) copied to {after['frame']} "
            f"(count 1, RW); {old} count 1, still pid {other}'s; {end}")


session(main)
