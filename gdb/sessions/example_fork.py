"""example_fork.py: stop at the first fork, see the child's page tables appear, run to the end.

The smallest useful session, to copy when writing a new one. It breaks on sys_fork in
ktest's cow-both-write, lets the call return, checks that the child exists and shares
the parent's pages copy-on-write (same frame, count 2, read-only on both sides), then
runs the kernel to the end of the run, where checkmm must be clean and every frame back.

Run it with `scripts/session example_fork`; the log is target/sessions/example_fork.log.

`"fast": True` in SESSION below puts this session in `scripts/sessions --fast`, the
subset `scripts/test` runs on every change: keep a fast session short (seconds), and
leave `fast` out (False) in a copy until it is.
"""

from lib import *

# What scripts/session boots (read without running this file: literals only).
SESSION = {
    "cmdline": "init=ktest arg=cow-both-write",
    "mem": "32M",
    "fast": True,
}


def main():
    fork = break_at("sys_fork", pid=1)        # stop when task 1 calls fork
    run_until(fork)
    before = set(tasks())
    finish_frame()                            # run until sys_fork returns
    fork.delete()
    children = set(tasks()) - before
    check(len(children) == 1, f"one new task after fork, found {sorted(children)}")
    child = children.pop()
    log(f"fork made pid {child}")
    show(f"dumppgd --task {child}")

    # Offset 0 of both tasks: the first page of ktest's code, shared by the fork.
    parent_page, child_page = walk(0, pid=1), walk(0, pid=child)
    check(parent_page["frame"] == child_page["frame"], "parent and child map different frames")
    check(child_page["count"] == 2, f"the shared frame's count is {child_page['count']}, not 2")
    check("RO" in child_page["pte"]["flags"], "the child's copy-on-write page is writable")
    log(f"offset 0: frame {child_page['frame']} shared, count 2, read-only in both")

    end = run_to_end()                        # checkmm clean, all frames back
    return f"pid {child} shared frame {child_page['frame']} copy-on-write; {end}"


session(main)
