// frame.js: one physical frame: its mem_map count, what that count means, and every (task, linear address) mapping it.

import { h, fill, kv } from './dom.js';
import { hex, plural } from './format.js';
import { countState, LOW_MEM, USED } from './entry.js';

const STATES = {
  free: 'free (count 0): get_free_page may hand it out',
  used: `reserved (count USED = ${USED}): the kernel, the program image or the paging structures below start_mem`,
  one: 'in use once (count 1)',
  shared: 'shared (count above 1): mapped by several page-table entries, read-only in each (copy-on-write or a shared program page)',
};

export class FrameView {
  /** ctx: machine(), walk(linear), openTable(index). */
  constructor(root, ctx) {
    this.root = root;
    this.ctx = ctx;
    this.frame = null;
    this.hint = null;
    this.shownKey = null;
    fill(root, h('p', { class: 'note' }, 'Click a present entry of a page table, a frame of the physical-memory map, or a walk\'s frame to see who maps it.'));
  }

  show(frame, hint = null) {
    this.frame = frame;
    this.hint = hint;
    this.shownKey = null;
    this.update(this.ctx.machine());
  }

  update(m) {
    if (this.frame === null || !m) return;
    const key = [m.raw.tables, m.raw.counts, m.raw.directory, m.checkmm];
    if (this.shownKey && key.every((k, i) => k === this.shownKey[i])) return;
    this.shownKey = key;
    const frame = this.frame;
    const count = m.countOf(frame);
    const state = count === null ? null : countState(count);
    const mismatches = (m.checkmm?.mismatches ?? []).filter((x) => x.frame === frame);
    const asTable = m.directory.pdes.filter((p) => p && p.table === frame);
    const mappers = m.mappersOf(frame);
    const rows = mappers.map((x) => h('tr', {
      'data-click': '1',
      class: this.hint && this.hint.linear === x.linear ? 'active' : null,
      onclick: () => this.ctx.walk(x.linear),
    },
      h('td', {}, x.pid === null ? `slot ${x.slot}` : `pid ${x.pid} ${x.program ?? ''}`),
      h('td', { class: 'num' }, hex(x.linear)),
      h('td', { class: 'num' }, `PDE ${x.dir} · PTE ${x.index}`),
      h('td', { class: 'num' }, hex(x.raw)),
      h('td', { class: 'mono' }, x.flags)));
    const agree = count === null || count === USED || count === mappers.length;
    let why = '';
    if (!agree) {
      why = asTable.length
        ? ' (a page table is counted once, for its directory entry)'
        : ' (the others are the kernel\'s own references: a task\'s page (task_struct and kernel stack); checkmm checks them all)';
    }
    fill(this.root,
      h('h2', {}, `Frame ${hex(frame)}`, h('small', {}, `physical ${hex(frame)}–${hex(frame + 0xfff)}`)),
      kv([
        ['mem_map count', count === null ? (frame < LOW_MEM ? '- (below LOW_MEM: mem_map does not cover it)' : '(not known)') : h('span', { id: 'frame-count' }, String(count))],
        state ? ['meaning', STATES[state]] : null,
        asTable.length ? ['page table', `it is the page table of ${asTable.map((p) => `PDE ${p.index}`).join(', ')}`] : null,
        ['kernel mapping', `the kernel's identity map reaches it at linear ${hex(frame)} (slot 0, supervisor)`],
      ]),
      mismatches.length ? h('div', {}, h('h3', { class: 'error-text' }, 'checkmm names this frame'),
        h('ul', { class: 'mismatches' }, mismatches.map((x) => h('li', {}, x.message)))) : null,
      h('h3', {}, 'Who maps it'),
      h('table', { class: 'entries', id: 'frame-mappers' },
        h('thead', {}, h('tr', {}, ...['task', 'linear', 'entry', 'raw', 'flags'].map((c) => h('th', {}, c)))),
        h('tbody', {}, rows.length ? rows : h('tr', {}, h('td', { colspan: '5' }, 'no user page-table entry maps it')))),
      // Fewer references than mappings is an error (checkmm names it); more is the kernel's own.
      h('p', { class: count !== null && count !== USED && count < mappers.length ? 'note error-text' : 'note' },
        plural(mappers.length, 'user mapping'),
        count !== null && count !== USED ? `; mem_map says ${count}` : '', why,
        '. Click a row to walk that address.'));
  }
}
