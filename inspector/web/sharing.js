// sharing.js: the frames with a count above 1 and who maps each: what fork's copy_page_tables shared, what do_wp_page split.

import { h, fill } from './dom.js';
import { hex, plural } from './format.js';
import { countState, frameAddr } from './entry.js';
import { mappersOf } from './data.js';

/** Why two mappings of one frame exist, as far as the task table tells. */
function origin(mappers, machine) {
  const tasks = mappers.map((x) => machine.taskBySlot.get(x.slot)).filter(Boolean);
  if (tasks.length < 2) return '';
  const pids = new Set(tasks.map((t) => t.pid));
  const related = tasks.some((t) => pids.has(t.ppid));
  const sameOffset = new Set(mappers.map((x) => x.linear % 0x4000000)).size === 1;
  if (related && sameOffset) return 'fork: copy_page_tables shared it copy-on-write';
  if (sameOffset && new Set(tasks.map((t) => t.program)).size === 1) return 'share_page: the same program\'s clean page';
  return '';
}

export class SharingView {
  /** ctx: machine(), tables (a TableCache), openFrame(frame), walk(linear). */
  constructor(root, ctx) {
    this.root = root;
    this.ctx = ctx;
    this.token = 0;
    this.generation = null;
    fill(root, h('p', { class: 'note' }, 'loading…'));
  }

  async update(machine, { force = false } = {}) {
    if (!force && machine.generation === this.generation) return;
    this.generation = machine.generation;
    const token = ++this.token;
    const counts = machine.frames?.counts;
    const head = h('h2', {}, 'Sharing', h('small', {}, 'frames mapped more than once, and who maps them'));
    if (!counts) {
      fill(this.root, head, h('p', { class: 'error-text' }, 'mem_map is not available'));
      return;
    }
    const shared = [];
    counts.forEach((c, i) => { if (countState(c) === 'shared') shared.push({ frame: frameAddr(i), count: c }); });
    const splits = (machine.faults?.records ?? []).filter((f) => f.action === 'cow_copied' || f.action === 'cow_made_writable');
    const splitList = h('div', {},
      h('h3', {}, 'What do_wp_page split', h('small', {}, 'the copy-on-write faults in the fault log')),
      splits.length
        ? h('table', { class: 'entries' }, h('thead', {}, h('tr', {}, ...['seq', 'pid', 'linear', 'what happened'].map((c) => h('th', {}, c)))),
          h('tbody', {}, splits.slice(-24).reverse().map((f) => h('tr', { 'data-click': '1', onclick: () => this.ctx.walk(f.linear) },
            h('td', { class: 'num' }, String(f.seq)), h('td', {}, `pid ${f.pid}`), h('td', { class: 'num' }, hex(f.linear)),
            h('td', {}, f.action === 'cow_copied' ? 'copied: the writer got a private frame, the old count went down'
              : 'count was 1: made writable in place, no copy')))))
        : h('p', { class: 'note' }, 'none in the fault log (it keeps the last faults only)'));
    const box = h('div', {}, h('p', { class: 'note' }, shared.length ? 'reading the user page tables…' : ''));
    fill(this.root, head,
      h('p', {}, `${plural(shared.length, 'frame')} with a count above 1, `,
        `${shared.reduce((a, s) => a + s.count - 1, 0)} extra references (0.12's "shared pages").`),
      box, splitList);
    if (!shared.length) {
      fill(box, h('p', { class: 'note' }, 'Nothing is shared now. After a fork every present page of the parent is shared read-only with the child (copy_page_tables) until one of them writes.'));
      return;
    }
    let tables;
    try {
      tables = await this.ctx.tables.userTables(machine, (done, total) => {
        if (token === this.token) fill(box, h('p', { class: 'note' }, `reading the user page tables: ${done} of ${total}…`));
      });
    } catch (e) {
      if (token === this.token) fill(box, h('p', { class: 'error-text' }, `could not read the page tables: ${e.message}`));
      return;
    }
    if (token !== this.token) return;
    this.ctx.tablesLoaded?.(tables);
    // Pairs of tasks and how many frames each pair shares.
    const pairs = new Map();
    const rows = [];
    const withMappers = shared.slice(0, 400).map((s) => ({ ...s, mappers: mappersOf(s.frame, tables, machine) }));
    // In address order of the first mapping: a fork's shared pages then read like the parent's memory.
    withMappers.sort((a, b) => (a.mappers[0]?.linear ?? 2 ** 32) - (b.mappers[0]?.linear ?? 2 ** 32));
    for (const s of withMappers) {
      const mappers = s.mappers;
      const who = [...new Set(mappers.map((x) => (x.pid === null ? `slot ${x.slot}` : `pid ${x.pid}`)))].join(' ↔ ');
      pairs.set(who, (pairs.get(who) ?? 0) + 1);
      rows.push(h('tr', { 'data-click': '1', onclick: () => this.ctx.openFrame(s.frame) },
        h('td', { class: 'num' }, hex(s.frame)),
        h('td', { class: 'num' }, String(s.count)),
        h('td', {}, mappers.map((x, k) => [k ? ', ' : '', h('span', { class: 'mono' }, `${x.pid === null ? `slot ${x.slot}` : `pid ${x.pid}`} ${hex(x.linear)}`), x.writable ? h('span', { class: 'tag bad' }, 'RW!') : ''])),
        h('td', { class: 'wrap' }, origin(mappers, machine))));
    }
    fill(box,
      h('div', { class: 'heat-stats', id: 'sharing-pairs' }, [...pairs].map(([who, n]) => h('span', { class: 'tag' }, `${who}: ${plural(n, 'frame')}`))),
      h('table', { class: 'entries', id: 'shared-frames' },
        h('thead', {}, h('tr', {}, ...['frame', 'count', 'mapped by (task, linear)', 'why'].map((c) => h('th', {}, c)))),
        h('tbody', {}, rows)),
      shared.length > 400 ? h('p', { class: 'note' }, `… and ${shared.length - 400} more`) : null);
  }
}
