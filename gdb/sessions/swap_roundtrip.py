"""swap_roundtrip.py: a page goes out to the swap disk and comes back (Linux 0.12 swap).

ktest swap-twice-ram, on 16 MiB with a 32 MiB swap disk, fills a region twice the size
of RAM and reads it back. At the first swap_out() the session picks page 8 of the region
(present, dirty, count 1, holding the workload's pattern), puts a hardware watchpoint on
its page-table entry and continues. The next write to the entry is the eviction: `monitor
walk` shows a swap entry naming its slot. The write after that is swap_in (do_no_page): the walk shows the page present
again in a new frame, count 1, dirty, with the same pattern in it; checkmm is clean right
there, and the run ends with every frame and every slot back.
"""

from lib import *

SESSION = {
    "cmdline": "init=ktest arg=swap-twice-ram",
    "mem": "16M",
    "swap": "32M",
    "timeout": 240,
}

TASK_SIZE = 64 << 20
PAGE = 8                 # which page of the region to follow
SEED = 0x5EED            # swap-twice-ram's fill seed (ktest swap.rs)
M = 0xFFFFFFFF


def pattern(seed, page, word):
    """ktest swap.rs's pattern(): the word the workload writes at (page, word)."""
    x = (seed ^ (page << 12) ^ word) & M
    x ^= (x << 13) & M
    x ^= x >> 17
    x ^= (x << 5) & M
    return x


def main():
    brk = int(tasks()[1]["brk"], 16)            # the region starts at the first break
    offset = ((brk + 0xFFF) & ~0xFFF) + PAGE * 4096
    linear = tasks()[1]["slot"] * TASK_SIZE + offset
    want = pattern(SEED, PAGE, 0)
    swap_out = break_at("swap_out")
    run_until(swap_out)
    swap_out.delete()
    page = walk(offset, pid=1)
    check(page["frame"] and page["count"] == 1 and "D" in page["pte"]["flags"].split(),
          f"page {PAGE} of the region at {hexa(linear)} is not a dirty private page: {page}")
    check(read_u32(linear) == want, f"word 0 at {hexa(linear)} is {hexa(read_u32(linear))}, "
                                    f"not the workload's {hexa(want)}")
    pte_addr = int(page["table"], 16) + 4 * page["pte"]["index"]
    log(f"memory ran out (first swap_out); following page {PAGE} of the region: {hexa(linear)}, "
        f"frame {page['frame']}, PTE at {hexa(pte_addr)}")
    show(f"walk {hexa(linear)}")
    watch = watch_u32(pte_addr)

    slot = None
    for _ in range(16):
        run_until(watch)
        now = walk(linear)
        stop = now["stop"]
        if slot is None and stop and stop["reason"] == "swapped_out":
            slot = stop["swap_slot"]
            log(f"evicted: the entry now names swap slot {slot}")
            show(f"walk {hexa(linear)}")
            continue
        if slot is not None and now["frame"]:
            break
        log(f"the entry changed but is neither swapped out nor back: {now['pte']['flags']}")
    else:
        raise SessionFailure(f"page {PAGE} did not go out and come back within 16 writes of its entry")
    watch.delete()
    log(f"swapped in: present again in frame {now['frame']}")
    show(f"walk {hexa(linear)}")
    check(now["frame"] and now["count"] == 1, f"the page came back with count {now['count']}")
    check(read_u32(linear) == want, f"the page came back holding {hexa(read_u32(linear))}, "
                                    f"not {hexa(want)}")
    # Stopped just after swap_in wrote the entry: the slot is already free and the new
    # frame counted, so the state is consistent here. (No finish_frame: gdb cannot unwind
    # reliably from a watchpoint stop in write_entry.)
    expect_clean("right after the swap-in")
    flags = walk(linear)["pte"]["flags"]
    check("D" in flags.split(), f"a swapped-in page must be dirty (0.12), flags {flags}")
    end = run_to_end()
    return (f"page at {hexa(linear)} went out to slot {slot} and came back in frame "
            f"{now['frame']} with its data; {end}")


session(main)
