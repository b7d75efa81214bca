// faults.js: the page faults as a timeline and a list, each naming the 0.11/0.12 function that handled it.

import { h, fill, showTip, hideTip, kv } from './dom.js';
import { hex } from './format.js';
import { FAULT_PATHS, faultPath } from './functions.js';

function pathNode(action) {
  const p = faultPath(action);
  return h('span', { class: 'fn' }, p.path.map((f, i) => [i ? h('span', { class: 'arrow' }, '→') : null, f]));
}

function tipFor(f) {
  const p = faultPath(f.action);
  return [h('div', {}, h('b', {}, `fault ${f.seq}`), ` · pid ${f.pid} · ${p.text}`),
    h('div', { class: 'mono' }, `linear ${hex(f.linear)} · eip ${hex(f.eip)} · ${f.error}`),
    h('div', {}, p.path.join(' → '))];
}

export class FaultsView {
  /** ctx: machine(), walk(linear), entryAround(fault) -> Promise<{before, after}> | null. */
  constructor(root, ctx) {
    this.root = root;
    this.ctx = ctx;
    this.selected = null;
    this.timeline = h('div', { class: 'timeline', id: 'fault-timeline', 'aria-label': 'fault timeline, oldest left' });
    this.totals = h('div', { class: 'heat-stats', id: 'fault-totals' });
    this.detail = h('div', { id: 'fault-detail' });
    this.list = h('div', { id: 'fault-list' });
    fill(root,
      h('h2', {}, 'Page faults', h('small', {}, 'what the handler did, and which function of mm/memory.c did it')),
      this.totals, this.timeline, this.detail, this.list);
  }

  update(machine) {
    const faults = machine.faults;
    if (!faults) {
      fill(this.totals, h('span', { class: 'error-text' }, `the fault log is not available: ${machine.errors.faults?.message ?? ''}`));
      return;
    }
    fill(this.totals,
      h('span', {}, h('b', { id: 'faults-since-boot' }, String(faults.sinceBoot)), ' since boot:'),
      ...Object.entries(FAULT_PATHS).filter(([k]) => faults.totals[k]).map(([k, p]) =>
        h('span', { title: p.path.join(' → ') }, h('span', { class: `tick ${k}`, style: { display: 'inline-block', height: '11px' } }, p.glyph), ` ${p.text} ${faults.totals[k]}`)));
    const records = faults.records;
    fill(this.timeline, ...records.map((f) => h('div', {
      class: `tick ${f.action}${this.selected === f.seq ? ' active' : ''}`,
      tabindex: '-1',
      onclick: () => this.select(f),
      onmousemove: (e) => showTip(e, ...tipFor(f)),
      onmouseleave: hideTip,
    }, faultPath(f.action).glyph)));
    const rows = [...records].reverse().map((f) => h('tr', {
      'data-click': '1', tabindex: '0', class: this.selected === f.seq ? 'active' : '',
      dataset: { seq: f.seq },
      onclick: () => this.select(f),
      onkeydown: (e) => { if (e.key === 'Enter') this.select(f); },
    },
      h('td', { class: 'num' }, String(f.seq)),
      h('td', { class: 'num' }, String(f.pid)),
      h('td', { class: 'num' }, hex(f.linear)),
      h('td', { class: 'num' }, hex(f.eip)),
      h('td', {}, f.error, f.byKernel ? h('span', { class: 'tag', title: 'taken by the kernel on the task\'s behalf (verify_area, a read of user memory)' }, 'kernel') : null),
      h('td', {}, h('span', { class: `tick ${f.action}`, style: { display: 'inline-block', height: '11px' } }, faultPath(f.action).glyph), ' ', faultPath(f.action).text),
      h('td', { class: 'wrap' }, pathNode(f.action))));
    fill(this.list,
      h('p', { class: 'note' }, `The kernel's fault log keeps the last ${faults.capacity}; ${records.length} shown, newest first.`),
      h('table', { class: 'entries', id: 'fault-table' },
        h('thead', {}, h('tr', {}, ...['seq', 'pid', 'linear', 'eip', 'error', 'what happened', 'handled by'].map((c) => h('th', {}, c)))),
        h('tbody', {}, rows)));
  }

  async select(f) {
    this.selected = f.seq;
    for (const el of this.root.querySelectorAll('.active')) el.classList.remove('active');
    this.root.querySelector(`tr[data-seq="${f.seq}"]`)?.classList.add('active');
    const p = faultPath(f.action);
    const around = h('div', {}, h('p', { class: 'note' }, 'its entry before and after…'));
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
    const result = await this.ctx.entryAround(f);
    if (this.selected !== f.seq) return;
    if (!result) {
      fill(around, h('p', { class: 'note' }, 'The entry before and after this fault comes from the history of snapshots, which needs the live source; ',
        h('a', { href: '#', onclick: (e) => { e.preventDefault(); this.ctx.walk(f.linear); } }, 'walk the address now'), '.'));
      return;
    }
    fill(around, kv([['before', result.before], ['after', result.after]]));
  }
}
