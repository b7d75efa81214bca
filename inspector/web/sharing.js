// sharing.js: the frames with a count above 1 and who maps each: what fork's copy_page_tables shared, what do_wp_page split.

import { h, fill } from './dom.js';
import { hex, plural } from './format.js';
import { TASK_SIZE } from './entry.js';

const LISTED = 400;

/** Why two mappings of one frame exist, as far as the task table tells. */
function origin(mappers, machine) {
  const tasks = mappers.map((x) => machine.taskBySlot.get(x.slot)).filter(Boolean);
  if (tasks.length < 2) return '';
  const pids = new Set(tasks.map((t) => t.pid));
  const related = tasks.some((t) => pids.has(t.ppid));
  const sameOffset = new Set(mappers.map((x) => x.linear % TASK_SIZE)).size === 1;
  if (related && sameOffset) return 'fork: copy_page_tables shared it copy-on-write';
  if (sameOffset && new Set(tasks.map((t) => t.program)).size === 1) return 'share_page: the same program\'s clean page';
  return '';
}

export class SharingView {
  /** ctx: machine(), openFrame(frame), walk(linear). */
  constructor(root, ctx) {
    this.root = root;
    this.ctx = ctx;
    this.shownKey = null;
    fill(root, h('p', { class: 'note' }, 'loading…'));
  }

  update(machine) {
    const key = [machine.raw.tables, machine.raw.counts, machine.raw.faults];
    if (this.shownKey && key.every((k, i) => k === this.shownKey[i])) return;
    this.shownKey = key;
    const shared = machine.sharedFrames();
    const head = h('h2', {}, 'Sharing', h('small', {}, 'frames mapped more than once, and who maps them'));
    const splits = machine.faults.records.filter((f) => f.action === 'cow_copied' || f.action === 'cow_made_writable');
    const splitList = h('div', {},
      h('h3', {}, 'What do_wp_page split', h('small', {}, 'the copy-on-write faults the history holds')),
      splits.length
        ? h('table', { class: 'entries' }, h('thead', {}, h('tr', {}, ...['seq', 'pid', 'linear', 'what happened'].map((c) => h('th', {}, c)))),
          h('tbody', {}, splits.slice(-24).reverse().map((f) => h('tr', { 'data-click': '1', onclick: () => this.ctx.walk(f.linear) },
            h('td', { class: 'num' }, String(f.seq)), h('td', {}, `pid ${f.pid}`), h('td', { class: 'num' }, hex(f.linear)),
            h('td', { class: 'wrap' }, f.action === 'cow_copied' ? 'copied: the writer got a private frame, the old count went down'
              : 'count was 1: made writable in place, no copy')))))
        : h('p', { class: 'note' }, 'none among the faults the history holds'));
    const intro = h('p', {}, `${plural(shared.length, 'frame')} with a count above 1, `,
      `${shared.reduce((a, s) => a + s.count - 1, 0)} extra references (0.12's "shared pages").`);
    if (!shared.length) {
      fill(this.root, head, intro, h('p', { class: 'note' }, 'Nothing is shared now. After a fork every present page of the parent is shared read-only with the child (copy_page_tables) until one of them writes.'), splitList);
      return;
    }
    const pairs = new Map();
    const withMappers = shared.slice(0, LISTED).map((s) => ({ ...s, mappers: machine.mappersOf(s.frame) }));
    // In address order of the first mapping: a fork's shared pages then read like the parent's memory.
    withMappers.sort((a, b) => (a.mappers[0]?.linear ?? 2 ** 32) - (b.mappers[0]?.linear ?? 2 ** 32));
    const rows = withMappers.map((s) => {
      const who = [...new Set(s.mappers.map((x) => (x.pid === null ? `slot ${x.slot}` : `pid ${x.pid}`)))].join(' ↔ ');
      pairs.set(who, (pairs.get(who) ?? 0) + 1);
      return h('tr', { 'data-click': '1', onclick: () => this.ctx.openFrame(s.frame) },
        h('td', { class: 'num' }, hex(s.frame)),
        h('td', { class: 'num' }, String(s.count)),
        h('td', {}, s.mappers.map((x, k) => [k ? ', ' : '', h('span', { class: 'mono' }, `${x.pid === null ? `slot ${x.slot}` : `pid ${x.pid}`} ${hex(x.linear)}`), x.writable ? h('span', { class: 'tag bad', title: 'a writable entry on a shared frame: copy-on-write is broken (checkmm names it)' }, 'RW!') : ''])),
        h('td', { class: 'wrap' }, origin(s.mappers, machine)));
    });
    fill(this.root, head, intro,
      h('div', { class: 'heat-stats', id: 'sharing-pairs' }, [...pairs].map(([who, n]) => h('span', { class: 'tag' }, `${who || 'the kernel only'}: ${plural(n, 'frame')}`))),
      h('table', { class: 'entries', id: 'shared-frames' },
        h('thead', {}, h('tr', {}, ...['frame', 'count', 'mapped by (task, linear)', 'why'].map((c) => h('th', {}, c)))),
        h('tbody', {}, rows)),
      shared.length > LISTED ? h('p', { class: 'note' }, `… and ${shared.length - LISTED} more`) : null,
      splitList);
  }
}
