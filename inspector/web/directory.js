// directory.js: the page directory as 0.11 lays it out: 64 task slots (rows) of 16 entries (4 MiB each).

import { h, fill, showTip, showTipAt, hideTip, swatch } from './dom.js';
import { hex } from './format.js';
import { NR_TASKS, PDES_PER_TASK, ENTRIES_PER_TABLE, pdeRange, slotBase, TASK_SIZE } from './entry.js';

/** The state class of a directory entry (the same patterns as the legend). */
export function pdeState(pde) {
  if (!pde) return 'np';
  if (!pde.user) return 'k';
  return pde.writable ? 'u' : 'ro';
}

/** What the cell of entry `index` says in words (its aria-label and tooltip). */
export function describePde(index, pde, task, summary) {
  const { start, last } = pdeRange(index);
  const slot = Math.floor(index / PDES_PER_TASK);
  const owner = slot === 0 ? 'the kernel (task 0)' : task ? `pid ${task.pid} ${task.program}` : 'no task (a fork under way, or tables left behind: checkmm names those)';
  const lines = [
    `PDE ${index} · slot ${slot} · ${owner}`,
    `linear ${hex(start)}–${hex(last)} (4 MiB)`,
  ];
  if (!pde) {
    lines.push('not present: no page table (a fault here makes one)');
    return lines;
  }
  lines.push(`raw ${hex(pde.raw)}  ${pde.flags} → page table ${hex(pde.table)}`);
  if (!pde.tableReadable) lines.push('its page table lies beyond HIGH_MEMORY: not read (corrupt entry)');
  else if (pde.presentPtes !== null) {
    let s = `${pde.presentPtes} of ${ENTRIES_PER_TABLE} entries present`;
    if (summary) {
      if (summary.shared) s += ` · ${summary.shared} with a count above 1`;
      if (summary.swap) s += ` · ${summary.swap} swapped out`;
    }
    lines.push(s);
  }
  return lines;
}

export class DirectoryView {
  /**
   * root: where the grid goes; legend: where its legend goes; ctx.open(index) opens a table,
   * ctx.selected() is the directory index the detail panel shows (or null).
   */
  constructor(root, legend, ctx) {
    this.ctx = ctx;
    this.active = 16; // the first user entry: where a learner starts
    this.cells = [];
    this.rows = [];
    this.signature = new Array(NR_TASKS * PDES_PER_TASK).fill(null);
    this.machine = null;
    this.marked = new Set();
    this.grid = h('div', {
      class: 'pgd', role: 'grid', tabindex: '0', id: 'pgd',
      'aria-label': 'page directory: 64 task slots of 16 entries; arrows move, Enter opens the page table',
      'aria-rowcount': String(NR_TASKS),
      onkeydown: (e) => this.key(e),
      onfocus: () => this.focusActive(),
      onblur: hideTip,
    });
    for (let slot = 0; slot < NR_TASKS; slot++) {
      const label = h('div', { class: 'pgd-label', role: 'rowheader' }, String(slot));
      const row = h('div', { class: `pgd-row${slot === 0 ? ' kernel-slot' : ''}`, role: 'row', dataset: { slot } }, label);
      for (let i = 0; i < PDES_PER_TASK; i++) {
        const index = slot * PDES_PER_TASK + i;
        const cell = h('div', {
          class: 'pde st-np', role: 'gridcell', id: `pde-${index}`, dataset: { index },
          onclick: () => { this.setActive(index); this.ctx.open(index); },
          onmousemove: (e) => showTip(e, ...this.tipFor(index)),
          onmouseleave: hideTip,
        });
        this.cells.push(cell);
        row.append(cell);
      }
      this.rows.push({ row, label });
      this.grid.append(row);
    }
    fill(root, this.grid);
    fill(legend,
      h('span', {}, swatch('np'), 'not present'),
      h('span', {}, swatch('k'), 'kernel'),
      h('span', {}, swatch('u'), 'user RW'),
      h('span', {}, swatch('ro'), 'user RO'),
      h('span', { title: 'its table maps frames with a count above 1 (copy-on-write after fork, or a shared program page)' }, swatch('u', h('span', { class: 'mark' })), 'shared pages'),
      h('span', { title: 'its table holds swap entries (0.12)' }, swatch('u', h('span', { class: 'swapmark' })), 'swapped pages'),
      h('span', { title: 'the bar grows with the number of present entries in its table (logarithmic: 1 and 1024 both show)' }, swatch('np', h('span', { class: 'fill' })), 'bar: table fill'),
    );
    this.resize = new ResizeObserver(() => this.measure(root));
    this.resize.observe(root);
  }

  /**
   * Fits the 64 rows into the height the panel gives the grid (one grid shows the whole
   * machine, so it never scrolls above 8 px rows); large rows also show each table's count.
   */
  measure(root) {
    const gaps = NR_TASKS + 4; // 1 px between rows, 4 px below the kernel's slot
    const rowH = Math.max(8, Math.min(22, Math.floor((root.clientHeight - gaps) / NR_TASKS)));
    document.documentElement.style.setProperty('--row-h', `${rowH}px`);
    this.grid.classList.toggle('big', rowH >= 15);
  }

  /** Outlines the entries a step of the history changed (its own entry or its table's). */
  mark(indices) {
    for (const i of this.marked) this.cells[i]?.classList.remove('changed');
    this.marked = new Set(indices);
    for (const i of this.marked) this.cells[i]?.classList.add('changed');
  }

  update(machine) {
    const first = this.machine === null;
    this.machine = machine;
    const pdes = machine.directory?.pdes ?? new Array(1024).fill(null);
    const open = this.ctx.selected();
    for (let slot = 0; slot < NR_TASKS; slot++) {
      const task = machine.taskBySlot.get(slot);
      const { row, label } = this.rows[slot];
      const inUse = slot === 0 || !!task || pdes.slice(slot * 16, slot * 16 + 16).some(Boolean);
      row.classList.toggle('in-use', inUse);
      if (slot === 0) fill(label, h('b', {}, '0'), ' kernel');
      else if (task) fill(label, h('b', {}, String(slot)), ` pid ${task.pid} ${task.program}`, task.state === 'zombie' ? ' (zombie)' : '');
      else if (inUse) fill(label, h('b', {}, String(slot)), ' no task');
      else fill(label, String(slot));
      label.title = `slot ${slot}: linear ${hex(slotBase(slot))}–${hex(slotBase(slot) + TASK_SIZE - 1)}`;
    }
    for (let index = 0; index < pdes.length; index++) {
      const pde = pdes[index];
      const summary = machine.summaries.get(index);
      const state = pdeState(pde);
      const sig = `${state}|${pde?.raw}|${pde?.presentPtes}|${summary?.shared ?? ''}|${summary?.swap ?? ''}`;
      const cell = this.cells[index];
      const changed = !first && this.signature[index] !== null && this.signature[index] !== sig;
      if (this.signature[index] !== sig) {
        this.signature[index] = sig;
        cell.className = `pde st-${state}${this.marked.has(index) ? ' changed' : ''}`;
        // What the cell shows, as data: the browser tests read it.
        cell.dataset.state = state;
        cell.dataset.present = pde?.presentPtes ?? '';
        cell.dataset.raw = pde ? hex(pde.raw) : '';
        const parts = [];
        if (pde && pde.presentPtes !== null) {
          // A logarithmic bar: 1 page and 1024 pages must both be visible.
          const share = pde.presentPtes === 0 ? 0 : Math.max(0.08, Math.log2(pde.presentPtes + 1) / Math.log2(ENTRIES_PER_TABLE + 1));
          parts.push(h('span', { class: 'fill', style: { width: `${(share * 100).toFixed(0)}%` } }));
          parts.push(h('span', { class: 'n', 'aria-hidden': 'true' }, String(pde.presentPtes)));
        }
        if (pde?.user && summary?.shared) parts.push(h('span', { class: 'mark' }));
        if (summary?.swap) parts.push(h('span', { class: 'swapmark' }));
        fill(cell, ...parts);
        cell.setAttribute('aria-label', describePde(index, pde, machine.taskBySlot.get(Math.floor(index / 16)), summary).join('; '));
        if (changed && !this.marked.has(index)) {
          cell.classList.add('flash');
          setTimeout(() => cell.classList.remove('flash'), 900);
        }
      }
      cell.classList.toggle('open', open === index);
      cell.classList.toggle('active', index === this.active && document.activeElement === this.grid);
    }
  }

  tipFor(index) {
    const m = this.machine;
    if (!m) return ['loading…'];
    const pde = m.directory?.pdes[index] ?? null;
    const lines = describePde(index, pde, m.taskBySlot.get(Math.floor(index / 16)), m.summaries.get(index));
    return [h('div', {}, h('b', {}, lines[0])), ...lines.slice(1).map((l) => h('div', { class: 'mono' }, l)),
      pde ? h('div', { class: 'muted' }, 'click or Enter: its page table') : null];
  }

  setActive(index) {
    this.cells[this.active]?.classList.remove('active');
    this.active = Math.max(0, Math.min(NR_TASKS * PDES_PER_TASK - 1, index));
    this.grid.setAttribute('aria-activedescendant', `pde-${this.active}`);
    if (document.activeElement === this.grid) this.focusActive();
  }

  focusActive() {
    const cell = this.cells[this.active];
    for (const c of this.grid.querySelectorAll('.pde.active')) c.classList.remove('active');
    cell.classList.add('active');
    this.grid.setAttribute('aria-activedescendant', cell.id);
    cell.scrollIntoView({ block: 'nearest' });
    showTipAt(cell, ...this.tipFor(this.active));
  }

  focus(index = this.active) {
    this.setActive(index);
    this.grid.focus();
  }

  key(e) {
    const moves = {
      ArrowLeft: -1, ArrowRight: 1, ArrowUp: -PDES_PER_TASK, ArrowDown: PDES_PER_TASK,
      PageUp: -8 * PDES_PER_TASK, PageDown: 8 * PDES_PER_TASK,
    };
    if (e.key in moves) {
      this.setActive(this.active + moves[e.key]);
    } else if (e.key === 'Home') {
      this.setActive(e.ctrlKey ? 0 : this.active - (this.active % PDES_PER_TASK));
    } else if (e.key === 'End') {
      this.setActive(e.ctrlKey ? 1023 : this.active - (this.active % PDES_PER_TASK) + PDES_PER_TASK - 1);
    } else if (e.key === 'Enter' || e.key === ' ') {
      // Drilling down from the keyboard moves the focus into the table (Escape comes back).
      e.preventDefault();
      hideTip();
      this.ctx.open(this.active, { focus: true });
      return;
    } else {
      return;
    }
    e.preventDefault();
    this.focusActive();
  }
}
