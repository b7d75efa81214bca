"""oom_storm.py: an out-of-memory storm of forking tasks, then recovery.

ktest oom-recovery first runs memhog until oom() kills it, then a storm master forks
children of 1 MiB each until fork fails or oom() kills one, kills them all and reaps them.
The session notes the free frames at init's first fork (the baseline), stops at every
oom() (who dies, how little is free) and at the master's first kill(), where the storm
is at its peak (how many tasks, how few free frames); at least 5 tasks must have been
alive with less than a quarter of the baseline free. At init's third fork ("fork works again"),
the free-frame count must be back at the baseline and checkmm clean, and the fork must
make a task. The run then ends clean.
"""

from lib import *

SESSION = {
    "cmdline": "init=ktest arg=oom-recovery",
    "fast": False,
}


def main():
    fork = break_at("sys_fork", pid=1)
    oom = break_at("oom")
    kill = break_at("sys_kill")
    baseline, forks, kills, peak = None, 0, [], None
    while forks < 3:
        stop = run_until((fork, oom, kill))
        if stop.hit(fork):
            forks += 1
            if forks == 1:
                baseline = free_frames()
                log(f"init's first fork (memhog): baseline {baseline} free frames")
            continue
        rows, free = tasks(), free_frames()
        alive = len(rows) - 1
        if forks >= 2 and (peak is None or alive > peak[0]):
            peak = (alive, free)                    # the storm (init's second fork) is on
        if stop.hit(oom):
            row = rows[stop.pid]
            kills.append((stop.pid, row["program"], free))
            log(f"oom() kills pid {stop.pid} ({row['program']}, {row['pages']} pages) with {free} "
                f"frames free; {alive} tasks alive")
        else:
            # The master's first kill(): the storm is over and at its peak (if oom() killed
            # the master itself there is no kill(), and the oom stops gave the peak).
            log(f"the storm master starts killing: {alive} tasks alive, {free} frames free")
            show("showmem")
            kill.delete()
    check(kills and kills[0][1] == "memhog", f"memhog was not the first task oom() killed: {kills}")
    check(peak is not None and peak[0] >= 5, f"the storm never had 5 tasks alive: {peak}")
    check(peak[1] < baseline // 4, f"the storm left {peak[1]} of {baseline} frames free: no memory pressure")
    free = free_frames()
    check(free == baseline, f"at the fork after the storm {free} frames are free, {baseline} at the start")
    expect_clean("after the storm")
    before = set(tasks())
    finish_frame()
    new = set(tasks()) - before
    check(len(new) == 1, f"the fork after the storm made no task ({sorted(new)})")
    log(f"after the storm: {free} frames free (the baseline), checkmm clean, fork made pid {min(new)}")
    end = run_to_end()
    return (f"{len(kills)} oom kills ({', '.join(sorted({k[1] for k in kills}))}), storm peak "
            f"{peak[0]} tasks with {peak[1]} frames free; baseline {baseline} back, fork works; {end}")


session(main)
