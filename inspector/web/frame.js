// frame.js: one physical frame: its mem_map count, what that count means, and every (task, linear address) mapping it.

import { h, fill, kv } from './dom.js';
import { hex, plural } from './format.js';
import { frameIndex, countState, LOW_MEM, USED } from './entry.js';
import { mappersOf } from './data.js';

const STATES = {
  free: 'free (count 0): get_free_page may hand it out',
  used: `reserved (count USED = ${USED}): the kernel, the program image or the paging structures below start_mem`,
  one: 'in use once (count 1)',
  shared: 'shared (count above 1): mapped by several page-table entries, read-only in each (copy-on-write or a shared program page)',
};

export class FrameView {
  /** ctx: machine(), tables (a TableCache), walk(linear), openTable(index). */
  constructor(root, ctx) {
    this.root = root;
    this.ctx = ctx;
    this.frame = null;
    this.hint = null;
    this.token = 0;
    fill(root, h('p', { class: 'note' }, 'Click a present entry of a page table, a frame of the physical-memory map, or a walk\'s frame to see who maps it.'));
  }

  async show(frame, hint = null) {
    this.frame = frame;
    this.hint = hint;
    const token = ++this.token;
    const m = this.ctx.machine();
    const count = this.countOf(m, frame);
    const state = count === null ? null : countState(count);
    const mismatches = (m?.checkmm?.mismatches ?? []).filter((x) => x.frame === frame);
    const asTable = (m?.directory?.pdes ?? []).filter((p) => p && p.table === frame);
    const header = [
      h('h2', {}, `Frame ${hex(frame)}`, h('small', {}, `physical ${hex(frame)}–${hex(frame + 0xfff)}`)),
      kv([
        ['mem_map count', count === null ? (frame < LOW_MEM ? '- (below LOW_MEM: mem_map does not cover it)' : '(not known)') : String(count)],
        state ? ['meaning', STATES[state]] : null,
        asTable.length ? ['page table', `it is the page table of ${asTable.map((p) => `PDE ${p.index}`).join(', ')} (its count is that one reference)`] : null,
        m?.frames ? ['kernel mapping', `the kernel's identity map reaches it at linear ${hex(frame)} (slot 0, supervisor)`] : null,
      ]),
      mismatches.length ? h('div', {}, h('h3', { class: 'error-text' }, 'checkmm names this frame'),
        h('ul', { class: 'mismatches' }, mismatches.map((x) => h('li', {}, x.message)))) : null,
    ];
    const mappersBox = h('div', {}, h('p', { class: 'note' }, 'finding every user page-table entry that maps it…'));
    fill(this.root, ...header, h('h3', {}, 'Who maps it'), mappersBox);
    if (!m) return;
    let tables;
    try {
      tables = await this.ctx.tables.userTables(m, (done, total) => {
        if (token === this.token) fill(mappersBox, h('p', { class: 'note' }, `reading the user page tables: ${done} of ${total}…`));
      });
    } catch (e) {
      if (token === this.token) fill(mappersBox, h('p', { class: 'error-text' }, `could not read the page tables: ${e.message}`));
      return;
    }
    if (token !== this.token) return;
    const mappers = mappersOf(frame, tables, m);
    const rows = mappers.map((x) => h('tr', {
      'data-click': '1',
      class: this.hint && this.hint.linear === x.linear ? 'active' : '',
      onclick: () => this.ctx.walk(x.linear),
    },
      h('td', {}, x.pid === null ? `slot ${x.slot}` : `pid ${x.pid} ${x.program ?? ''}`),
      h('td', { class: 'num' }, hex(x.linear)),
      h('td', { class: 'num' }, `PDE ${x.dir} · PTE ${x.index}`),
      h('td', { class: 'num' }, hex(x.raw)),
      h('td', { class: 'mono' }, x.flags)));
    const agree = count === null || count === USED || count === mappers.length;
    fill(mappersBox,
      h('table', { class: 'entries', id: 'frame-mappers' },
        h('thead', {}, h('tr', {}, ...['task', 'linear', 'entry', 'raw', 'flags'].map((c) => h('th', {}, c)))),
        h('tbody', {}, rows.length ? rows : h('tr', {}, h('td', { colspan: '5' }, 'no user page-table entry maps it')))),
      h('p', { class: agree ? 'note' : 'note error-text' },
        `${plural(mappers.length, 'user mapping')}`,
        count !== null && count !== USED ? `; mem_map says ${count}` : '',
        agree ? '' : asTable.length
          ? ' (a page table is counted once for its directory entry)'
          : ' (the rest are the kernel\'s own references: a task\'s page (task_struct and kernel stack) or a page table; checkmm checks them all)',
        '. Click a row to walk that address.'));
  }

  countOf(m, frame) {
    const i = frameIndex(frame);
    if (!m?.frames || i === null || i >= m.frames.counts.length) return null;
    return m.frames.counts[i];
  }

  refresh() {
    if (this.frame !== null) this.show(this.frame, this.hint);
  }
}
