"""page_table_fails.py: a page-table allocation fails in do_no_page (site page_table).

In ktest oom-recovery a child execs memhog, which touches memory 1 MiB at a time. The
session stops at that execve, marks the task for failure injection (`monitor fail task
PID on`) and arms the site: `monitor fail page_table probability=100 times=1 space=12288
filter=on`: the marked task's first two page tables are let through and its third fails
(Linux's `space` rule: an allocation passes while the space left exceeds its 4096 bytes,
so 12288 lets two through). memhog must end in oom() soon after with most of memory still
free (the failure was injected, not real exhaustion), `monitor fail` must name it (site
page_table, memhog's pid, not fail-nth, fired once), and the walk of the faulting address
(the last entry of `monitor faults`, out of memory) must stop at the directory entry: the
failed allocation changed nothing. ktest then
checks its own recovery; the run ends clean.
"""

from lib import *

SESSION = {
    "cmdline": "init=ktest arg=oom-recovery",
    "fast": False,
}


def main():
    execve = break_at("sys_execve")
    hog = run_until(execve).pid
    execve.delete()
    mon(f"fail task {hog} on")
    show("fail page_table probability=100 times=1 space=12288 filter=on")
    paging = mon_json("showmem")["paging_frames"]

    oom = break_at("oom")
    stop = run_until(oom)
    oom.delete()
    check(stop.pid == hog, f"oom() ran in pid {stop.pid}, not in memhog (pid {hog})")
    # oom() never returns, so gdb cannot unwind past it reliably; the fault log has the
    # address (the fault is booked before oom() is called).
    fault = mon_json("faults")["faults"][-1]
    check(fault["pid"] == hog and fault["action"] == "out_of_memory_killed",
          f"the last fault is not memhog's out-of-memory one: {fault}")
    linear = int(fault["linear"], 16)
    state = fail_state()
    site = state["by_site"]["page_table"]
    last = state["last"] or {}
    check(last.get("site") == "page_table" and last.get("pid") == hog and not last.get("by_fail_nth"),
          f"monitor fail does not name memhog's page-table failure: last {last}")
    check(site["fired"] == 1 and site["times_left"] == 0,
          f"page_table fired {site['fired']} times ({site['times_left']} left), expected once")
    free = free_frames()
    check(free > paging // 2, f"only {free} of {paging} frames free at the oom: real exhaustion, "
                              "not the injected failure")
    where = walk(linear)
    check(where["stop"] and where["stop"]["level"] == "pde" and where["stop"]["reason"] == "no_page_table",
          f"the walk of {hexa(linear)} does not stop at a missing page table: {where['stop']}")
    row = tasks()[hog]
    check(row["program"] == "memhog" and row["page_tables"] == 2,
          f"pid {hog} is {row['program']} with {row['page_tables']} page tables, expected memhog with 2")
    log(f"memhog (pid {hog}) faulted at {hexa(linear)}; its third page table failed "
        f"({site['calls']} calls at the site); oom() with {free} of {paging} frames free")
    show(f"walk {hexa(linear)}")
    show("fail")
    mon("fail page_table off")
    mon(f"fail task {hog} off")
    end = run_to_end()
    return (f"memhog's third page table failed at {hexa(linear)}, oom() killed it with {free} "
            f"frames free; {end}")


session(main)
