// table.js: one page table's 1024 entries, drawn 32 x 32 (a row is 128 KiB of linear space) and listed.

import { h, fill, showTip, showTipAt, hideTip, swatch } from './dom.js';
import { hex, plural } from './format.js';
import { pteState, pdeRange, linearOf } from './entry.js';

const COLS = 32;

/** What an entry means for a learner (the list's last column and the tooltip). */
export function entryMeaning(e) {
  if (!e) return 'empty: never touched (a fault here maps a page)';
  if (!e.present) return `swapped out to slot ${e.swapSlot}: the next touch reads it back (swap_in)`;
  if (!e.user) return 'kernel page (supervisor only)';
  if (e.writable) return e.count === 1 ? 'private, writable' : `writable, count ${e.count}`;
  if (e.count !== null && e.count > 1) return `shared by ${e.count}: a write copies it (do_wp_page)`;
  return 'count 1: a write makes it writable (un_wp_page)';
}

function entryTip(dirIndex, index, e) {
  const linear = linearOf(dirIndex, index);
  const lines = [h('div', {}, h('b', {}, `PTE ${index} of PDE ${dirIndex}`), ` · linear ${hex(linear)}`)];
  if (e) {
    let l = `raw ${hex(e.raw)}  ${e.flags}`;
    if (e.present) l += ` → frame ${hex(e.frame)}, count ${e.count ?? '-'}`;
    lines.push(h('div', { class: 'mono' }, l));
  }
  lines.push(h('div', {}, entryMeaning(e)));
  if (e?.present) lines.push(h('div', { class: 'muted' }, 'click or Enter: the frame and who maps it'));
  return lines;
}

export class TableView {
  /** ctx: machine(), openFrame(frame, hint), walk(linear), openTable(index), focusDirectory(). */
  constructor(root, ctx) {
    this.root = root;
    this.ctx = ctx;
    this.index = null;
    this.table = null;
    this.active = 0;
    this.cells = [];
    this.marked = new Set();
    this.shownKey = null;
    fill(root, h('p', { class: 'note' },
      'Click an entry of the page directory (or move there with the arrow keys and press Enter) to see its page table: ',
      '1024 entries, each mapping one 4 KiB page of linear space to a frame of physical memory.'));
  }

  /** Shows the table of directory entry `index`. */
  show(index, { keepActive = false } = {}) {
    if (this.index !== index && !keepActive) this.active = 0;
    this.index = index;
    this.shownKey = null;
    this.update(this.ctx.machine());
  }

  /** Redraws after a new moment, when anything the table shows changed. */
  update(machine) {
    if (this.index === null || !machine) return;
    const t = machine.tableOf(this.index);
    // The same words, counts and directory entry: nothing to redraw.
    const key = [t.words, machine.frames.counts, t.pde.raw, machine.taskBySlot.get(t.slot)?.pid];
    if (this.shownKey && key.every((k, i) => k === this.shownKey[i])) return;
    const focused = this.root.contains(document.activeElement) && document.activeElement.id === 'pt-grid';
    this.shownKey = key;
    this.table = t;
    this.render();
    if (focused) this.focus();
  }

  /** Outlines the entries (table indices) a step of the history changed. */
  mark(indices) {
    this.marked = new Set(indices);
    this.cells.forEach((c, i) => c.classList.toggle('changed', this.marked.has(i)));
  }

  render() {
    const t = this.table;
    const m = this.ctx.machine();
    const task = m?.taskBySlot.get(t.slot);
    const owner = t.slot === 0 ? 'kernel (task 0)' : task ? `pid ${task.pid} ${task.program} (slot ${t.slot})` : `slot ${t.slot}, no task`;
    const counts = { np: 0, k: 0, u: 0, ro: 0, cow: 0, swap: 0 };
    for (const e of t.entries) counts[pteState(e)]++;
    const head = h('div', {},
      h('h2', {}, `Page table of PDE ${t.index}`,
        h('small', {}, `linear ${hex(t.start)}–${hex(t.last)} · ${owner} · source ${t.source}`)),
      h('div', { class: 'pt-head' },
        h('button', { type: 'button', onclick: () => this.ctx.openTable(Math.max(0, t.index - 1)), title: 'the previous directory entry ([)' }, `◀ PDE ${t.index - 1}`),
        h('button', { type: 'button', onclick: () => this.ctx.openTable(Math.min(1023, t.index + 1)), title: 'the next directory entry (])' }, `PDE ${t.index + 1} ▶`),
        h('button', { type: 'button', onclick: () => this.ctx.focusDirectory(t.index), title: 'back to the directory (Esc)' }, 'Directory'),
        h('span', { class: 'mono' }, `PDE raw ${hex(t.pde.raw)} ${t.pde.flags}`),
        t.table !== null ? h('span', { class: 'mono' }, `→ page table in frame ${hex(t.table)}`) : null,
      ),
    );
    if (!t.pde.present || !t.tableReadable) {
      fill(this.root, head, h('p', { class: 'note' }, t.pde.present
        ? 'The entry names a frame beyond HIGH_MEMORY: the kernel never reads it as a table (a corrupt entry; checkmm names it).'
        : 'Not present: no page table. The first fault in these 4 MiB makes one (put_page → get_free_page), and the entry becomes P RW US.'));
      return;
    }
    const summary = h('p', { class: 'note' },
      `${t.present} present · ${counts.cow} shared (count > 1) · ${counts.ro} read-only with count 1 · `,
      `${t.swap} swapped out · ${counts.np} empty`);
    const grid = h('div', {
      class: 'pt-grid', role: 'grid', tabindex: '0', id: 'pt-grid',
      'aria-label': `page table of PDE ${t.index}: 32 rows of 32 entries; arrows move, Enter opens the frame`,
      onkeydown: (e) => this.key(e),
      onfocus: () => this.focusActive(),
      onblur: hideTip,
    });
    this.cells = [];
    for (let row = 0; row < t.entries.length / COLS; row++) {
      grid.append(h('div', { class: 'rowlabel', role: 'rowheader' }, hex(linearOf(t.index, row * COLS))));
      for (let c = 0; c < COLS; c++) {
        const i = row * COLS + c;
        const e = t.entries[i];
        const cell = h('div', {
          class: `pte st-${pteState(e)}${this.marked.has(i) ? ' changed' : ''}`, role: 'gridcell', id: `pte-${i}`,
          dataset: { index: i, state: pteState(e), raw: e ? hex(e.raw) : '' },
          'aria-label': `PTE ${i}, linear ${hex(linearOf(t.index, i))}: ${e ? e.flags : 'empty'}`,
          onclick: () => { this.active = i; this.openEntry(i); },
          onmousemove: (ev) => showTip(ev, ...entryTip(t.index, i, e)),
          onmouseleave: hideTip,
        });
        this.cells.push(cell);
        grid.append(cell);
      }
    }
    const legend = h('div', { class: 'legend' },
      h('span', {}, swatch('np'), 'empty'),
      h('span', {}, swatch('u'), 'writable'),
      h('span', {}, swatch('ro'), 'read-only, count 1'),
      h('span', {}, swatch('cow'), 'read-only, shared (COW)'),
      h('span', {}, swatch('swap'), 'swapped out'),
      h('span', {}, swatch('k'), 'kernel'));
    const rows = t.entries.filter(Boolean).map((e) => h('tr', {
      'data-click': '1', dataset: { index: e.index }, class: this.marked.has(e.index) ? 'changed' : null,
      onclick: () => { this.active = e.index; this.openEntry(e.index); },
    },
      h('td', { class: 'num' }, String(e.index)),
      h('td', { class: 'num' }, hex(e.linear)),
      h('td', { class: 'num' }, hex(e.raw)),
      h('td', { class: 'num' }, e.present ? hex(e.frame) : '-'),
      h('td', { class: 'num' }, e.count === null ? '-' : String(e.count)),
      h('td', {}, h('span', { class: `sw st-${pteState(e)}` }), ' ', h('span', { class: 'mono flags' }, e.flags)),
      h('td', { class: 'wrap' }, entryMeaning(e))));
    const list = h('table', { class: 'entries', 'aria-label': 'the non-zero entries' },
      h('thead', {}, h('tr', {}, ...['index', 'linear', 'raw', 'frame', 'count', 'flags', 'meaning'].map((c) => h('th', {}, c)))),
      h('tbody', {}, rows.length ? rows : h('tr', {}, h('td', { colspan: '7' }, 'every entry is zero'))));
    fill(this.root, head, summary, grid, legend,
      h('h3', {}, `The ${plural(rows.length, 'non-zero entry', 'non-zero entries')}`), list);
    this.cells[this.active]?.classList.add('active');
  }

  openEntry(i) {
    const e = this.table?.entries[i];
    this.cells.forEach((c, j) => c.classList.toggle('active', j === i));
    if (e?.present) {
      this.ctx.openFrame(e.frame, { dir: this.table.index, index: i, linear: e.linear });
    } else {
      this.ctx.walk(linearOf(this.table.index, i));
    }
  }

  focusActive() {
    const cell = this.cells[this.active];
    if (!cell) return;
    this.cells.forEach((c, j) => c.classList.toggle('active', j === this.active));
    cell.scrollIntoView({ block: 'nearest' });
    showTipAt(cell, ...entryTip(this.table.index, this.active, this.table.entries[this.active]));
  }

  focus() {
    this.root.querySelector('#pt-grid')?.focus();
  }

  key(e) {
    const moves = { ArrowLeft: -1, ArrowRight: 1, ArrowUp: -COLS, ArrowDown: COLS, PageUp: -8 * COLS, PageDown: 8 * COLS };
    if (e.key in moves) this.active = Math.max(0, Math.min(1023, this.active + moves[e.key]));
    else if (e.key === 'Home') this.active -= this.active % COLS;
    else if (e.key === 'End') this.active += COLS - 1 - (this.active % COLS);
    else if (e.key === 'Enter' || e.key === ' ') { this.openEntry(this.active); e.preventDefault(); return; }
    else if (e.key === 'Escape') { this.ctx.focusDirectory(this.index); e.preventDefault(); return; }
    else return;
    e.preventDefault();
    this.focusActive();
  }
}

