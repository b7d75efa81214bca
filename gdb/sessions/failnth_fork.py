"""failnth_fork.py: Linux's fail-nth loop over fork: N = 1, 2, ... until fork succeeds.

ktest fork-retry forks until a fork succeeds. At each entry to sys_fork the session sets
`monitor failnth 1 N`, so that the Nth allocation the fork makes fails (the task page,
then each page table copy_page_tables allocates), and lets the call return. After every
failed fork: no new task, `monitor fail` names the injected failure (a fail-nth one, in
pid 1), checkmm is clean and the free-frame count is back to its value at the entry of
that fork. The failnth still pending after the fork that succeeds is cancelled right
after sys_fork returns, so that the parent's next copy-on-write faults do not fail.
"""

from lib import *

SESSION = {
    "cmdline": "init=ktest arg=fork-retry",
    "fast": True,
}

MAX_N = 64


def main():
    fork = break_at("sys_fork", pid=1)
    sites = []
    for n in range(1, MAX_N + 1):
        run_until(fork)
        before_free = free_frames()
        before_tasks = set(tasks())
        fired_before = sum(s["fired"] for s in fail_state()["sites"])
        mon(f"failnth 1 {n}")
        finish_frame()
        # Cancel at once: a fail-nth left pending would fail the parent's next COW copy.
        pending = mon_json("failnth 1 0")["previous"]
        new = set(tasks()) - before_tasks
        state = fail_state()
        fired = sum(s["fired"] for s in state["sites"]) - fired_before
        if new:
            check(fired == 0, f"N = {n}: fork succeeded but {fired} failures were injected")
            expect_clean(f"after the fork that succeeded at N = {n}")
            log(f"N = {n}: fork succeeded (pid {min(new)}); failnth was still {pending} when cancelled")
            break
        last = state["last"] or {}
        check(fired == 1 and last.get("by_fail_nth") and last.get("pid") == 1,
              f"N = {n}: fork failed but monitor fail shows {fired} injections, last {last}")
        check(pending == 0, f"N = {n}: the failnth was not consumed (still {pending})")
        expect_clean(f"after failed fork N = {n}")
        free = free_frames()
        check(free == before_free, f"N = {n}: {free} frames free after the failed fork, {before_free} before")
        sites.append(last["site"])
        log(f"N = {n}: allocation {n} ({last['site']}) failed; fork failed; checkmm clean, "
            f"{free} frames free as before")
    else:
        raise SessionFailure(f"fork never succeeded within N = {MAX_N}")
    check(len(sites) >= 2, f"fork made only {len(sites)} allocations before succeeding")
    check(sites[0] == "fork_task_struct" and "copy_page_tables" in sites,
          f"the failed sites were {sites}: expected the task page first, then page tables")
    fork.delete()
    end = run_to_end()
    return f"fork failed cleanly at N = 1..{len(sites)} ({', '.join(sorted(set(sites)))}) and succeeded at N = {len(sites) + 1}; {end}"


session(main)
