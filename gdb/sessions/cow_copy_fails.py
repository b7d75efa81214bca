"""cow_copy_fails.py: the copy-on-write copy fails while parent and child write.

In ktest cow-race, parent and child take turns writing their own word into 8 pages they
share copy-on-write. The session stops in do_wp_page when the child writes a page that
is still shared (its word 0 still holds the value from before the fork, mem_map count
2) once the parent has written at least one page of its own, and sets `monitor failnth CHILD 1`: the copy's allocation in un_wp_page fails. The
child must end in oom() (a breakpoint there, in the child), `monitor fail` must name the
injected failure (site un_wp_page, the child, by fail-nth); the parent, stopped at its
exit, must still hold its own word in each of the 8 pages; checkmm is clean and every
frame is back at the end of the run.
"""

from lib import *

SESSION = {
    "cmdline": "init=ktest arg=cow-race",
    "fast": False,
}

TASK_SIZE = 64 << 20
PAGES = 8
INITIAL, PARENT = 0x5E55, 0x9A9A   # high halves of word 0 (see ktest session.rs)


def main():
    child = fork_child()
    rows = tasks()
    child_base, parent_base = rows[child]["slot"] * TASK_SIZE, rows[1]["slot"] * TASK_SIZE
    wp = break_at("do_wp_page", pid=child)
    start = None
    for _ in range(64):
        run_until(wp)
        linear = caller_var("linear")
        page = linear & ~0xFFF
        word = read_u32(page)
        if word >> 16 != INITIAL:
            continue                                # not a race page (the stack, ...)
        start = page - child_base - (word & 0xFFFF) * 4096   # the buffer's offset, both tasks
        written = sum(read_u32(parent_base + start + i * 4096) >> 16 == PARENT for i in range(PAGES))
        count = walk(page)["count"]
        log(f"pid {child} writes race page {word & 0xFFFF}: count {count}; the parent has "
            f"written {written} pages")
        if written and count == 2:
            break                                   # both are writing, and this page is shared
    else:
        raise SessionFailure(f"pid {child} never wrote a shared race page after the parent wrote one")
    wp.delete()
    index = word & 0xFFFF
    parent_words = [read_u32(parent_base + start + i * 4096) for i in range(PAGES)]
    log(f"pid {child} writes race page {index} at {hexa(linear)} (shared, count 2); the parent's "
        f"words so far: {[hexa(w) for w in parent_words]}")
    show(f"walk {hexa(page)}")
    show(f"failnth {child} 1")

    oom = break_at("oom", pid=child)
    run_until(oom)
    oom.delete()
    state = fail_state()
    last = state["last"] or {}
    check(last.get("site") == "un_wp_page" and last.get("pid") == child and last.get("by_fail_nth"),
          f"monitor fail does not show the child's failed COW copy: last {last}")
    check(state["by_site"]["un_wp_page"]["fired"] == 1,
          f"un_wp_page fired {state['by_site']['un_wp_page']['fired']} times, not once")
    after = walk(page)
    check(after["count"] == 2 and "RO" in after["pte"]["flags"],
          f"the failed copy changed the page: count {after['count']}, {after['pte']['flags']}")
    log(f"pid {child} is in oom(): the copy of {hexa(page)} failed (un_wp_page, fail-nth); "
        f"the page is unchanged (count 2, read-only)")
    show("fail")

    exit_ = break_at("do_exit", pid=1)
    run_until(exit_)
    exit_.delete()
    words = [read_u32(parent_base + start + i * 4096) for i in range(PAGES)]
    want = [(PARENT << 16) | i for i in range(PAGES)]
    check(words == want, f"the parent's words at its exit: {[hexa(w) for w in words]}, "
                         f"expected {[hexa(w) for w in want]}")
    check(child not in tasks(), f"pid {child} still exists when the parent exits")
    log(f"the parent exits holding its own word in all {PAGES} pages: {[hexa(w) for w in words]}")
    end = run_to_end()
    return (f"pid {child}'s copy of race page {index} failed, oom() killed it; the parent kept "
            f"its {PAGES} words; {end}")


session(main)
