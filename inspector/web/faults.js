// faults.js: the page faults as a timeline and a list, each naming the 0.11/0.12 function that handled it.

import { h, fill, showTip, hideTip, kv } from './dom.js';
import { hex } from './format.js';
import { FAULT_PATHS, faultPath } from './functions.js';

const LISTED = 200;

function pathNode(action) {
  const p = faultPath(action);
  return h('span', { class: 'fn' }, p.path.map((f, i) => [i ? h('span', { class: 'arrow' }, ' → ') : null, f]));
}

function tipFor(f) {
  const p = faultPath(f.action);
  return [h('div', {}, h('b', {}, `fault ${f.seq}`), ` · pid ${f.pid} · ${p.text}`),
    h('div', { class: 'mono' }, `linear ${hex(f.linear)} · eip ${hex(f.eip)} · ${f.error}`),
    h('div', {}, p.path.join(' → '))];
}

/** An entry's value in words for the before/after lines. */
function entryLine(e) {
  if (!e) return 'no entry (no page table)';
  return `${hex(e.raw)}  ${e.flags}${e.frame !== null && e.frame !== undefined ? ` → frame ${hex(e.frame)}, count ${e.count ?? '-'}` : ''}`;
}

export class FaultsView {
  /** ctx: machine(), walk(linear), entryAround(fault) -> Promise<{before, after, step}> | null, scrub(moment). */
  constructor(root, ctx) {
    this.root = root;
    this.ctx = ctx;
    this.selected = null;
    this.shownKey = null;
    // The ticks and rows already made, by fault seq: each update makes only the new
    // faults' (during memhog the view updates many times a second, and remaking 200
    // rows each time was most of the page's work).
    this.ticks = new Map();
    this.rows = new Map();
    this.tickWidth = null;
    // The view's width, kept by a ResizeObserver: reading clientWidth inside update would
    // force a layout of the whole page the other views just changed.
    this.width = 600;
    this.machine = null;
    new ResizeObserver(([e]) => {
      if (!e.contentRect.width || e.contentRect.width === this.width) return;
      this.width = e.contentRect.width;
      if (this.machine) {
        this.shownKey = null;
        this.update(this.machine);
      }
    }).observe(root);
    this.timeline = h('div', { class: 'timeline', id: 'fault-timeline', 'aria-label': 'fault timeline, oldest left' });
    this.totals = h('div', { class: 'heat-stats', id: 'fault-totals' });
    this.detail = h('div', { id: 'fault-detail' });
    this.note = h('p', { class: 'note' });
    this.tbody = h('tbody', {});
    this.list = h('div', { id: 'fault-list' }, this.note,
      h('table', { class: 'entries', id: 'fault-table' },
        h('thead', {}, h('tr', {}, ...['seq', 'pid', 'linear', 'eip', 'error', 'what happened', 'handled by'].map((c) => h('th', {}, c)))),
        this.tbody));
    fill(root,
      h('h2', {}, 'Page faults', h('small', {}, 'what the handler did, and which function of mm/memory.c did it')),
      this.totals, this.timeline, this.detail, this.list);
  }

  tick(f, width) {
    return h('div', {
      class: `tick ${f.action}${this.selected === f.seq ? ' active' : ''}`,
      style: { width: `${width}px` },
      onclick: () => this.select(f),
      onmousemove: (e) => showTip(e, ...tipFor(f)),
      onmouseleave: hideTip,
    }, width >= 8 ? faultPath(f.action).glyph : '');
  }

  row(f) {
    return h('tr', {
      'data-click': '1', tabindex: '0', class: this.selected === f.seq ? 'active' : null,
      dataset: { seq: f.seq },
      onclick: () => this.select(f),
      onkeydown: (e) => { if (e.key === 'Enter') this.select(f); },
    },
      h('td', { class: 'num' }, String(f.seq)),
      h('td', { class: 'num' }, String(f.pid)),
      h('td', { class: 'num' }, hex(f.linear)),
      h('td', { class: 'num' }, hex(f.eip)),
      h('td', { class: 'wrap' }, f.error, f.byKernel ? h('span', { class: 'tag', title: 'taken by the kernel on the task\'s behalf (verify_area, a read of user memory)' }, 'kernel') : null),
      h('td', { class: 'wrap what' }, h('span', { class: `tick ${f.action} inline` }, faultPath(f.action).glyph), ' ', faultPath(f.action).text),
      h('td', { class: 'wrap' }, pathNode(f.action)));
  }

  update(machine) {
    this.machine = machine;
    if (this.shownKey === machine.raw.faults) return;
    this.shownKey = machine.raw.faults;
    const records = machine.faults.records;
    const totals = {};
    for (const f of records) totals[f.action] = (totals[f.action] ?? 0) + 1;
    fill(this.totals,
      h('span', {}, 'last fault ', h('b', { id: 'faults-since-boot' }, String(machine.faults.sinceBoot)), ` since boot; of the ${records.length} the history holds:`),
      ...Object.entries(FAULT_PATHS).filter(([k]) => totals[k]).map(([k, p]) =>
        h('span', { title: p.path.join(' → ') }, h('span', { class: `tick ${k} inline` }, p.glyph), ` ${p.text} ${totals[k]}`)));
    const shown = records.slice(-LISTED);
    const width = Math.max(3, Math.min(9, Math.floor(this.width / Math.max(1, shown.length)) - 1));
    if (width !== this.tickWidth) {
      this.tickWidth = width;
      this.ticks.clear();
      this.order = null;
    }
    // A fault's seq names one fault of this boot (a new boot starts a new page).
    const keyed = (made, f, make) => {
      let el = made.get(f.seq);
      if (!el) made.set(f.seq, (el = make(f)));
      return el;
    };
    const kept = new Set(shown.map((f) => f.seq));
    for (const made of [this.ticks, this.rows]) {
      for (const [seq, el] of made) {
        if (!kept.has(seq)) {
          el.remove();
          made.delete(seq);
        }
      }
    }
    // Live, the faults only move on: the ones still shown keep their places, the new ones
    // go at the newest end. Otherwise (a step back in the history) everything is placed again.
    const old = this.order ?? [];
    const from = shown.length ? old.indexOf(shown[0].seq) : -1;
    const stay = from < 0 ? 0 : old.length - from;
    const movingOn = from >= 0 && stay <= shown.length && old.slice(from).every((seq, i) => shown[i].seq === seq)
      && this.timeline.childElementCount === stay;
    if (movingOn) {
      const fresh = shown.slice(stay);
      this.timeline.append(...fresh.map((f) => keyed(this.ticks, f, (g) => this.tick(g, width))));
      this.tbody.prepend(...fresh.reverse().map((f) => keyed(this.rows, f, (g) => this.row(g))));
    } else {
      this.timeline.replaceChildren(...shown.map((f) => keyed(this.ticks, f, (g) => this.tick(g, width))));
      this.tbody.replaceChildren(...[...shown].reverse().map((f) => keyed(this.rows, f, (g) => this.row(g))));
    }
    this.order = shown.map((f) => f.seq);
    this.note.textContent = `${shown.length} shown, newest first. Click one for its entry before and after.`;
  }

  async select(f) {
    this.selected = f.seq;
    for (const el of this.root.querySelectorAll('.active')) el.classList.remove('active');
    this.root.querySelector(`tr[data-seq="${f.seq}"]`)?.classList.add('active');
    const p = faultPath(f.action);
    const around = h('div', { id: 'fault-around' }, h('p', { class: 'note' }, 'its entry before and after…'));
    fill(this.detail,
      h('h3', {}, `Fault ${f.seq}: ${p.text}`),
      kv([
        ['task', `pid ${f.pid}`],
        ['linear', h('a', { href: '#', onclick: (e) => { e.preventDefault(); this.ctx.walk(f.linear); } }, hex(f.linear))],
        ['eip', hex(f.eip)],
        ['error code', `0x${f.errorCode.toString(16).padStart(2, '0')}: ${f.error}`],
        ['handled by', pathNode(f.action)],
        ['why', p.why],
      ]),
      around);
    let result = null;
    try {
      result = await this.ctx.entryAround(f);
    } catch (e) {
      if (this.selected === f.seq) fill(around, h('p', { class: 'error-text' }, `the history could not say: ${e.message}`));
      return;
    }
    if (this.selected !== f.seq) return;
    if (!result) {
      fill(around, h('p', { class: 'note' }, 'The history no longer holds the moments around this fault.'));
      return;
    }
    fill(around,
      kv([
        ['before', h('span', { id: 'fault-before' }, entryLine(result.before))],
        ['after', h('span', { id: 'fault-after' }, entryLine(result.after))],
      ]),
      h('p', { class: 'note' }, `Between moments ${result.step - 1} and ${result.step} of the history (`,
        h('a', { href: '#', onclick: (e) => { e.preventDefault(); this.ctx.scrub(result.step); } }, 'show that step'),
        result.faults > 1 ? `; that step holds ${result.faults} faults` : '', ').'));
  }
}
