// entry.js: what a directory or table entry and a linear address mean, over the kernel's own constants (layout.js).

import {
  PAGE_SHIFT, PDE_SHIFT, PDE_SPAN, TASK_SIZE, PDES_PER_TASK, LOW_MEM, USED,
  PRESENT, WRITABLE, USER, ACCESSED, DIRTY, WRITE_THROUGH, CACHE_DISABLE, HUGE, GLOBAL,
} from './layout.js';

export * from './layout.js';

/** The 10 | 10 | 12 split of a linear address. */
export function split(linear) {
  const v = linear >>> 0;
  return {
    dir: v >>> PDE_SHIFT,
    table: (v >>> PAGE_SHIFT) & 0x3ff,
    offset: v & 0xfff,
  };
}

/** The linear address of directory entry `dir`, table entry `table`. */
export function linearOf(dir, table = 0, offset = 0) {
  return ((dir << PDE_SHIFT) + (table << PAGE_SHIFT) + offset) >>> 0;
}

/** The task slot of a directory index (task n owns entries 16n..16n+15). */
export function slotOfIndex(index) {
  return Math.floor(index / PDES_PER_TASK);
}

export function slotBase(slot) {
  return (slot * TASK_SIZE) >>> 0;
}

/** First and last linear address of directory entry `index`. */
export function pdeRange(index) {
  const start = (index * PDE_SPAN) >>> 0;
  return { start, last: (start + PDE_SPAN - 1) >>> 0 };
}

/** The bits of a raw entry. */
export function bitsOf(raw) {
  const r = raw >>> 0;
  const present = (r & PRESENT) !== 0;
  return {
    present,
    writable: (r & WRITABLE) !== 0,
    user: (r & USER) !== 0,
    accessed: (r & ACCESSED) !== 0,
    dirty: (r & DIRTY) !== 0,
    swap: !present && r !== 0,
    swapSlot: !present && r !== 0 ? r >>> 1 : null,
    frame: (r & ~0xfff) >>> 0,
  };
}

/**
 * The flag letters of a raw entry, as mm's Entry::describe writes them (the browser tests
 * compare the two on every entry of a table): "P RW US A D", "not present", "swap slot N".
 */
export function describe(raw) {
  const r = raw >>> 0;
  if (r !== 0 && !(r & PRESENT)) return `swap slot ${r >>> 1}`;
  if (!(r & PRESENT)) return 'not present';
  let s = 'P' + (r & WRITABLE ? ' RW' : ' RO') + (r & USER ? ' US' : ' SV');
  for (const [bit, name] of [[WRITE_THROUGH, 'PWT'], [CACHE_DISABLE, 'PCD'], [ACCESSED, 'A'], [DIRTY, 'D'], [HUGE, 'PS'], [GLOBAL, 'G']]) {
    if (r & bit) s += ' ' + name;
  }
  return s;
}

/** The #PF error code in words, as the monitor's faults document writes it. */
export function faultError(code) {
  return `${code & 1 ? 'protection' : 'not present'}, ${code & 2 ? 'write' : 'read'}, ${code & 4 ? 'user' : 'kernel'} mode`;
}

/**
 * The state of one page-table entry, as the patterns draw it:
 * np (empty), k (kernel), u (user writable), ro (user read-only, count 1),
 * cow (read-only and the frame is shared: copy-on-write or a shared program page),
 * swap (0.12's swap entry).
 */
export function pteState(entry) {
  if (!entry) return 'np';
  if (!entry.present) return entry.raw ? 'swap' : 'np';
  if (!entry.user) return 'k';
  if (entry.writable) return 'u';
  if (entry.count !== null && entry.count > 1) return 'cow';
  return 'ro';
}

/** The state of a mem_map count: free, used (USED: kernel, image, paging structures), one, shared. */
export function countState(count) {
  if (count === 0) return 'free';
  if (count === USED) return 'used';
  if (count === 1) return 'one';
  return 'shared';
}

/** The index into mem_map of a physical address (null below LOW_MEM). */
export function frameIndex(addr) {
  if (addr < LOW_MEM) return null;
  return (addr - LOW_MEM) >>> PAGE_SHIFT;
}

export function frameAddr(index) {
  return (LOW_MEM + (index << PAGE_SHIFT)) >>> 0;
}
