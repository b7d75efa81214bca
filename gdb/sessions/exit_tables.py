"""exit_tables.py: free_page_tables at exit clears the page-directory entries of the task's slot.

In ktest exit-frees a child touches 2 MiB and exits. The session stops in
free_page_tables called by that child (its exit), shows `monitor dumppgd --task PID`
(the slot's present entries) and the child's page counts, lets the function return, and
shows the directory again: none of the slot's 16 entries is present any more (each word
of the page directory reads 0), and the free-frame count rose by exactly the child's
private pages plus its page tables (a page shared with the parent only lost a reference).
The run then ends clean.
"""

from lib import *

SESSION = {
    "cmdline": "init=ktest arg=exit-frees",
    "fast": True,
}


def main():
    child = fork_child()
    exit_ = break_at("do_exit", pid=child)
    run_until(exit_)
    exit_.delete()
    fpt = break_at("free_page_tables", pid=child)
    run_until(fpt)
    fpt.delete()
    row = tasks()[child]
    slot = row["slot"]
    pgd = mon_json("dumppgd")["pg_dir"]
    entries = mon_json(f"dumppgd --task {child}")["entries"]
    check(entries, f"pid {child} has no page table at its exit")
    private = row["pages"] - row["shared_pages"]
    log(f"pid {child} exits: slot {slot}, {row['pages']} pages ({row['shared_pages']} shared with "
        f"its parent), {row['page_tables']} page tables in directory entries "
        f"{[e['index'] for e in entries]}")
    show(f"dumppgd --task {child}")
    free_before = free_frames()

    finish_frame()
    log("after free_page_tables returned:")
    show(f"dumppgd --task {child}")
    after = mon_json(f"dumppgd --task {child}")
    check(after["shown"] == 0, f"{after['shown']} directory entries of slot {slot} are still present")
    base = int(pgd, 16)
    words = [read_u32(base + 4 * index) for index in range(slot * 16, slot * 16 + 16)]
    check(not any(words), f"slot {slot}'s directory words are not all 0: {[hexa(w) for w in words]}")
    freed = free_frames() - free_before
    check(freed == private + row["page_tables"],
          f"free_page_tables freed {freed} frames, expected {private} private pages + "
          f"{row['page_tables']} page tables")
    log(f"directory entries {slot * 16}..{slot * 16 + 15} all 0; {freed} frames freed "
        f"({private} pages + {row['page_tables']} page tables)")
    expect_clean("after free_page_tables")
    end = run_to_end()
    return (f"pid {child}'s {len(entries)} directory entries cleared, {freed} frames freed "
            f"({private} pages + {row['page_tables']} tables); {end}")


session(main)
