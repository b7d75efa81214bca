// functions.js: which Linux 0.11/0.12 function handled each kind of page fault (kernel/kernel/src/fault.rs books them).

/**
 * The fault log's `action` ids (kernel/docs/monitor.md, faults) with the path through
 * 0.11's mm/page.s and mm/memory.c (0.12's mm/swap.c for swap-in) that produces each,
 * a one-letter glyph for the timeline, and a sentence for the learner.
 */
export const FAULT_PATHS = {
  zero_page: {
    glyph: 'Z', text: 'demand-zero',
    path: ['page_fault', 'do_no_page', 'get_empty_page'],
    why: 'no page yet and the address lies past the program\'s data: a fresh zeroed frame',
  },
  loaded_from_image: {
    glyph: 'L', text: 'loaded from the image',
    path: ['page_fault', 'do_no_page', 'bread_page', 'put_page'],
    why: 'first touch of program text or data: the page is read from the program image',
  },
  shared: {
    glyph: 'S', text: 'shared with a task running the same program',
    path: ['page_fault', 'do_no_page', 'share_page', 'try_to_share'],
    why: 'another task running the same program has this page clean: both map it read-only, count + 1',
  },
  swapped_in: {
    glyph: 'I', text: 'swapped in',
    path: ['page_fault', 'do_no_page', 'swap_in'],
    why: '0.12: the entry holds a swap slot; the page is read back from the swap device',
  },
  cow_copied: {
    glyph: 'C', text: 'COW copied',
    path: ['page_fault', 'do_wp_page', 'un_wp_page', 'copy_page'],
    why: 'a write to a shared read-only page: the writer gets its own copy, the old frame\'s count - 1',
  },
  cow_made_writable: {
    glyph: 'W', text: 'COW made writable',
    path: ['page_fault', 'do_wp_page', 'un_wp_page'],
    why: 'a write to a read-only page whose count is 1: nobody shares it any more, so it only becomes writable',
  },
  spurious: {
    glyph: '·', text: 'spurious',
    path: ['page_fault', 'invalidate'],
    why: 'the entry was already fine (a stale TLB entry): flushed, nothing changed',
  },
  out_of_memory_killed: {
    glyph: 'O', text: 'out of memory: killed',
    path: ['page_fault', 'do_no_page / do_wp_page', 'oom'],
    why: 'no free frame: 0.11\'s oom() kills the task',
  },
  killed: {
    glyph: 'K', text: 'illegal access: killed',
    path: ['page_fault', 'do_exit(SIGSEGV)'],
    why: 'an access the task may not make (outside its 64 MiB slot, a write on a read): SIGSEGV',
  },
};

/** The path for an action id; unknown ids (a newer kernel) still get a readable entry. */
export function faultPath(action) {
  return FAULT_PATHS[action] ?? { glyph: '?', text: action, path: ['page_fault'], why: '' };
}
