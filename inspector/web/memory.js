// memory.js: physical memory from LOW_MEM to HIGH_MEMORY, one cell per frame by its mem_map count; checkmm's mismatches outlined.

import { h, fill, showTip, hideTip, swatch } from './dom.js';
import { hex, bytes, plural } from './format.js';
import { countState, frameAddr, frameIndex, LOW_MEM, USED } from './entry.js';

const COLS = 128; // one row is 128 frames = 512 KiB
const AXIS = 84; // room for the row addresses

let probe = null;
/** A colour variable of the stylesheet as the canvas needs it: resolved for the theme
 * shown (the stylesheet writes each as light-dark(...)). */
function cssColor(name) {
  if (!probe) {
    probe = document.createElement('span');
    probe.hidden = true;
    document.body.append(probe);
  }
  probe.style.color = `var(${name})`;
  return getComputedStyle(probe).color;
}

function cssVar(name) {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
}

export class MemoryView {
  /** ctx: machine(), status(), openFrame(frame), walk(linear). */
  constructor(root, ctx) {
    this.root = root;
    this.ctx = ctx;
    this.machine = null;
    this.marked = new Set();
    this.cursor = 0;
    this.cell = 5;
    this.stats = h('div', { class: 'heat-stats', id: 'memory-stats' });
    this.canvas = h('canvas', {
      class: 'heat', tabindex: '0', id: 'heat',
      role: 'img',
      'aria-label': 'physical memory: one cell per frame; arrows move, Enter shows who maps the frame',
      onmousemove: (e) => this.hover(e),
      onmouseleave: hideTip,
      onclick: (e) => this.click(e),
      onkeydown: (e) => this.key(e),
      onfocus: () => this.draw(),
      onblur: () => { hideTip(); this.draw(); },
    });
    this.list = h('div', { id: 'mismatch-list' });
    const legend = h('div', { class: 'legend' },
      h('span', {}, swatch('free'), 'free (0)'),
      h('span', {}, swatch('one'), 'count 1'),
      h('span', {}, swatch('shared'), 'shared (count > 1)'),
      h('span', {}, swatch('used'), `reserved (USED ${USED})`),
      h('span', {}, swatch('mismatch'), 'named by checkmm'));
    fill(root,
      h('h2', {}, 'Physical memory', h('small', {}, 'every frame of mem_map, from LOW_MEM (1 MiB) to HIGH_MEMORY; a row is 128 frames (512 KiB)')),
      this.stats, legend, h('div', { class: 'heat-wrap' }, this.canvas), this.list);
    this.resize = new ResizeObserver(() => this.draw());
    this.resize.observe(root);
  }

  update(machine) {
    this.machine = machine;
    const f = machine.frames;
    let free = 0, used = 0, one = 0, shared = 0, refs = 0;
    for (const c of f.counts) {
      const s = countState(c);
      if (s === 'free') free++;
      else if (s === 'used') used++;
      else if (s === 'one') one++;
      else { shared++; refs += c - 1; }
    }
    const ck = machine.checkmm;
    fill(this.stats,
      h('span', {}, `LOW_MEM ${hex(LOW_MEM)}`),
      h('span', {}, `start_mem ${hex(f.startMem)}`),
      h('span', {}, `HIGH_MEMORY ${hex(f.highMemory)} (${bytes(f.highMemory)})`),
      h('span', {}, h('b', { id: 'free-frames' }, String(free)), ' free'),
      h('span', {}, `${one} count 1`),
      h('span', {}, `${shared} shared (${refs} extra references)`),
      h('span', {}, `${used} reserved`),
      ck ? h('span', { class: ck.ok ? 'tag ok' : 'tag bad', id: 'checkmm-verdict', title: 'the kernel\'s checkmm, run now (not at a past moment)' }, ck.ok ? 'checkmm OK' : `checkmm: ${plural(ck.mismatchCount, 'mismatch', 'mismatches')}`) : null);
    this.renderMismatches();
    this.draw();
  }

  renderMismatches() {
    const ck = this.machine?.checkmm;
    if (!ck || ck.ok) {
      fill(this.list, ck ? h('p', { class: 'note' }, `checkmm: mem_map agrees with every page table (${ck.frames} frames, ${ck.presentPtes} page-table entries checked).`) : null);
      return;
    }
    const stopped = this.ctx.status()?.kernel === 'stopped';
    fill(this.list, h('h3', { class: 'error-text' }, `checkmm names ${plural(ck.mismatchCount, 'mismatch', 'mismatches')}`),
      stopped ? h('p', { class: 'note' }, 'gdb has the kernel stopped, maybe in the middle of a change (a fork between copy_page_tables and the task table, say): checkmm then names the half-done state (the run\'s own check comes at the end, when nothing is under way).') : null,
      h('ul', { class: 'mismatches' }, ck.mismatches.map((x) => h('li', {
        tabindex: '0',
        onclick: () => this.follow(x),
        onkeydown: (e) => { if (e.key === 'Enter') this.follow(x); },
      }, x.message))),
      ck.omitted ? h('p', { class: 'note' }, `… and ${ck.omitted} more`) : null);
  }

  /** Outlines the frames (indices from LOW_MEM) whose count a step of the history changed. */
  mark(indices) {
    this.marked = new Set(indices);
    this.draw();
  }

  follow(x) {
    if (x.frame !== null) this.ctx.openFrame(x.frame);
    else if (x.linear !== null) this.ctx.walk(x.linear);
  }

  /** The cell size: as large as the panel's width allows, and short enough to fit its height. */
  layout(rows) {
    const width = Math.max(300, this.root.clientWidth - 4);
    const scroller = this.root.parentElement;
    const top = this.canvas.getBoundingClientRect().top - scroller.getBoundingClientRect().top + scroller.scrollTop;
    const height = scroller.clientHeight - top - 8;
    const byWidth = Math.floor((width - AXIS) / COLS);
    const byHeight = Math.floor(height / rows);
    this.cell = Math.max(3, Math.min(12, byWidth, Math.max(byHeight, 4)));
  }

  draw() {
    const f = this.machine?.frames;
    const c = this.canvas;
    if (!f) { c.width = 0; c.height = 0; return; }
    const n = f.counts.length;
    const rows = Math.ceil(n / COLS);
    this.layout(rows);
    const s = this.cell;
    const dpr = window.devicePixelRatio || 1;
    const w = AXIS + COLS * s;
    const ht = rows * s + 2;
    c.style.width = `${w}px`;
    c.style.height = `${ht}px`;
    c.width = Math.round(w * dpr);
    c.height = Math.round(ht * dpr);
    const g = c.getContext('2d');
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    const col = {
      free: cssColor('--free'), one: cssColor('--user'), shared: cssColor('--shared'), used: cssColor('--kernel'),
      panel: cssColor('--panel'), bad: cssColor('--bad'), text: cssColor('--muted'), focus: cssColor('--focus'),
      empty: cssColor('--grid-empty'), changed: cssColor('--changed'),
    };
    g.fillStyle = col.panel;
    g.fillRect(0, 0, w, ht);
    g.font = `10px ${cssVar('--mono')}`;
    g.fillStyle = col.text;
    g.textBaseline = 'top';
    const every = s >= 7 ? 4 : 8;
    for (let r = 0; r < rows; r += every) g.fillText(hex(frameAddr(r * COLS)), 0, r * s);
    const inner = Math.max(1, s - 1);
    for (let i = 0; i < n; i++) {
      const x = AXIS + (i % COLS) * s;
      const y = Math.floor(i / COLS) * s;
      const state = countState(f.counts[i]);
      if (state === 'used') {
        g.fillStyle = col.empty;
        g.fillRect(x, y, inner, inner);
        g.strokeStyle = col.used;
        g.lineWidth = 1;
        g.beginPath();
        g.moveTo(x, y + inner);
        g.lineTo(x + inner, y);
        g.stroke();
      } else {
        g.fillStyle = col[state];
        g.fillRect(x, y, inner, inner);
        if (state === 'shared' && s >= 4) {
          g.fillStyle = col.panel;
          g.fillRect(x + inner / 2 - 1, y + inner / 2 - 1, 2, 2);
        }
      }
    }
    g.strokeStyle = col.changed;
    g.lineWidth = 1.5;
    for (const i of this.marked) {
      if (i >= n) continue;
      g.strokeRect(AXIS + (i % COLS) * s - 0.5, Math.floor(i / COLS) * s - 0.5, s, s);
    }
    g.strokeStyle = col.bad;
    g.lineWidth = 2;
    for (const m of this.machine.checkmm?.mismatches ?? []) {
      const i = m.frame === null ? null : frameIndex(m.frame);
      if (i === null || i >= n) continue;
      g.strokeRect(AXIS + (i % COLS) * s - 1, Math.floor(i / COLS) * s - 1, s + 1, s + 1);
    }
    if (document.activeElement === c) {
      g.strokeStyle = col.focus;
      g.lineWidth = 2;
      g.strokeRect(AXIS + (this.cursor % COLS) * s - 1, Math.floor(this.cursor / COLS) * s - 1, s + 1, s + 1);
    }
  }

  indexAt(e) {
    const r = this.canvas.getBoundingClientRect();
    const x = e.clientX - r.left - AXIS;
    const y = e.clientY - r.top;
    if (x < 0 || y < 0) return null;
    const i = Math.floor(y / this.cell) * COLS + Math.floor(x / this.cell);
    return i < (this.machine?.frames?.counts.length ?? 0) && Math.floor(x / this.cell) < COLS ? i : null;
  }

  tip(i) {
    const f = this.machine.frames;
    const count = f.counts[i];
    const frame = frameAddr(i);
    const mismatches = (this.machine.checkmm?.mismatches ?? []).filter((m) => m.frame === frame);
    const table = this.machine.directory.pdes.find((p) => p && p.table === frame);
    const mappers = this.machine.mappersOf(frame);
    const words = { free: 'free', used: 'reserved (USED)', one: 'in use once', shared: 'shared' }[countState(count)];
    return [h('div', {}, h('b', { class: 'mono' }, `frame ${hex(frame)}`), ` · count ${count}: ${words}`),
      table ? h('div', {}, `the page table of PDE ${table.index}`) : null,
      ...mappers.slice(0, 6).map((x) => h('div', { class: 'mono' }, `${x.pid === null ? `slot ${x.slot}` : `pid ${x.pid}`} ${hex(x.linear)}  ${x.flags}`)),
      mappers.length > 6 ? h('div', {}, `… ${mappers.length - 6} more`) : null,
      ...mismatches.map((m) => h('div', { class: 'error-text' }, m.message)),
      h('div', { class: 'muted' }, 'click or Enter: who maps it')];
  }

  hover(e) {
    const i = this.indexAt(e);
    if (i === null) { hideTip(); return; }
    showTip(e, ...this.tip(i));
  }

  click(e) {
    const i = this.indexAt(e);
    if (i === null) return;
    this.cursor = i;
    this.ctx.openFrame(frameAddr(i));
  }

  key(e) {
    const n = this.machine?.frames?.counts.length ?? 0;
    if (!n) return;
    const moves = { ArrowLeft: -1, ArrowRight: 1, ArrowUp: -COLS, ArrowDown: COLS, PageUp: -16 * COLS, PageDown: 16 * COLS };
    if (e.key in moves) this.cursor = Math.max(0, Math.min(n - 1, this.cursor + moves[e.key]));
    else if (e.key === 'Enter' || e.key === ' ') { this.ctx.openFrame(frameAddr(this.cursor)); e.preventDefault(); return; }
    else return;
    e.preventDefault();
    this.draw();
    const r = this.canvas.getBoundingClientRect();
    showTip({ clientX: r.left + AXIS + (this.cursor % COLS + 1) * this.cell, clientY: r.top + (Math.floor(this.cursor / COLS) + 1) * this.cell }, ...this.tip(this.cursor));
  }

  focus() {
    this.canvas.focus();
  }
}
