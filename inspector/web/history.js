// history.js: the inspector's history of snapshots: every step and what it changed, scrubbing, and two moments side by side.

import { h, fill, kv } from './dom.js';
import { hex, plural } from './format.js';
import { describe, linearOf, frameAddr, NR_TASKS, PDES_PER_TASK } from './entry.js';
import { faultPath } from './functions.js';
import { pdeState } from './directory.js';

const LISTED_STEPS = 300;
const LISTED_CHANGES = 300;

/** A step's events in sentences, the most telling first (what a learner scrubs for). */
export function describeEvents(events) {
  const out = [];
  const byKind = (k) => events.filter((e) => e.kind === k);
  for (const e of byKind('fork')) {
    out.push({ weight: 0, kind: 'fork', text: `fork: pid ${e.parent} → pid ${e.child} (slot ${e.slot}): copy_page_tables shared ${plural(e.shared, 'page')} copy-on-write and made ${e.write_protected} of the parent's read-only` });
  }
  for (const e of byKind('exit')) {
    out.push({ weight: 0, kind: 'exit', text: `exit: pid ${e.pid} left slot ${e.slot} (free_page_tables freed ${plural(e.pages, 'entry', 'entries')} and ${plural(e.tables, 'page table')})` });
  }
  for (const e of byKind('slot_without_task')) {
    out.push({ weight: 0, kind: 'fork', text: `slot ${e.slot} got ${plural(e.tables, 'page table')} mapping ${plural(e.pages, 'page')}, and no task yet: a fork's copy_page_tables is done, the child not yet in the task table` });
  }
  for (const e of byKind('task_appeared')) out.push({ weight: 1, kind: 'task', text: `pid ${e.pid} appeared in slot ${e.slot}` });
  for (const e of byKind('exec')) out.push({ weight: 1, kind: 'exec', text: `execve: pid ${e.pid} runs ${e.program}` });
  const cow = byKind('cow_copy');
  if (cow.length) out.push({ weight: 2, kind: 'cow', text: `do_wp_page copied ${plural(cow.length, 'shared page')} (un_wp_page → copy_page): ${cow.slice(0, 3).map((e) => hex(linearOf(e.dir, e.index))).join(', ')}${cow.length > 3 ? ', …' : ''}` });
  const wr = byKind('made_writable');
  if (wr.length) out.push({ weight: 2, kind: 'cow', text: `un_wp_page made ${plural(wr.length, 'page')} writable in place (count 1)` });
  const so = byKind('swap_out');
  if (so.length) out.push({ weight: 2, kind: 'swap', text: `swap_out wrote ${plural(so.length, 'page')} to swap (try_to_swap_out)` });
  const si = byKind('swap_in');
  if (si.length) out.push({ weight: 2, kind: 'swap', text: `swap_in read ${plural(si.length, 'page')} back` });
  const faults = byKind('fault');
  if (faults.length) {
    const n = {};
    for (const { fault } of faults) n[fault.action] = (n[fault.action] ?? 0) + 1;
    out.push({ weight: 3, kind: 'fault', text: `${plural(faults.length, 'fault')}: ${Object.entries(n).map(([a, c]) => `${c} ${faultPath(a).text} (${faultPath(a).path.slice(1).join(' → ')})`).join(', ')}` });
  }
  for (const e of byKind('faults_unseen')) {
    out.push({ weight: 3, kind: 'fault', text: `and ${plural(e.count, 'fault')} more that the kernel's log no longer held when it was read (the stub's log keeps the last 64)` });
  }
  for (const e of byKind('tables_changed')) {
    const parts = [];
    if (e.added) parts.push(`${plural(e.added, 'page table')} made (put_page)`);
    if (e.removed) parts.push(`${plural(e.removed, 'page table')} freed`);
    out.push({ weight: 3, kind: 'tables', text: parts.join(', ') });
  }
  for (const e of byKind('mapped')) out.push({ weight: 4, kind: 'map', text: `${plural(e.pages, 'page')} mapped` });
  for (const e of byKind('unmapped')) out.push({ weight: 4, kind: 'map', text: `${plural(e.pages, 'entry', 'entries')} cleared` });
  for (const e of byKind('counts')) out.push({ weight: 5, kind: 'counts', text: `${plural(e.changed, 'mem_map count')} changed; free frames ${e.free_before} → ${e.free_after}` });
  for (const e of byKind('touched')) out.push({ weight: 6, kind: 'touched', text: `accessed/dirty bits of ${plural(e.pages, 'entry', 'entries')}` });
  return out.sort((a, b) => a.weight - b.weight);
}

/** Whether a step holds more than the MMU setting accessed and dirty bits. */
export function interesting(step) {
  return step.events.some((e) => ['fork', 'exit', 'exec', 'cow_copy', 'made_writable', 'swap_out', 'swap_in', 'task_appeared', 'slot_without_task'].includes(e.kind));
}

/** What happened to one entry, in a word or two. */
export function changeWord(o, n) {
  const po = (o & 1) === 1;
  const pn = (n & 1) === 1;
  if (!o && pn) return 'mapped';
  if (o && !n) return 'cleared';
  if (po && !pn) return 'swapped out';
  if (!po && o && pn) return 'swapped in';
  if (!po && !pn) return 'swap slot changed';
  if ((o & ~0xfff) !== (n & ~0xfff)) return (n & 2) && !(o & 2) ? 'copied (new frame, writable)' : 'new frame';
  if ((o & 2) && !(n & 2)) return 'write-protected';
  if (!(o & 2) && (n & 2)) return 'made writable';
  if ((o ^ n) & ~0x60) return 'flags';
  return 'accessed/dirty';
}

/** The change lists of a delta (DeltaDoc), in words. */
function changeTables(d) {
  const pdeRows = d.pdes.slice(0, LISTED_CHANGES).map(([i, o, n]) => h('tr', {},
    h('td', { class: 'num' }, String(i)), h('td', { class: 'num' }, hex(linearOf(i))),
    h('td', { class: 'mono' }, `${hex(o)} ${describe(o)}`), h('td', { class: 'mono' }, `${hex(n)} ${describe(n)}`),
    h('td', {}, changeWord(o, n))));
  const pteRows = d.ptes.slice(0, LISTED_CHANGES).map(([dir, i, o, n]) => h('tr', {},
    h('td', { class: 'num' }, hex(linearOf(dir, i))), h('td', { class: 'num' }, `${dir} · ${i}`),
    h('td', { class: 'mono' }, `${hex(o)} ${describe(o)}`), h('td', { class: 'mono' }, `${hex(n)} ${describe(n)}`),
    h('td', {}, changeWord(o, n))));
  const countRows = d.counts.slice(0, LISTED_CHANGES).map(([i, o, n]) => h('tr', {},
    h('td', { class: 'num' }, hex(frameAddr(i))), h('td', { class: 'num' }, `${o} → ${n}`)));
  const taskRows = d.tasks.map((c) => h('tr', {},
    h('td', { class: 'num' }, String(c.pid)),
    h('td', {}, c.old ? `${c.old.program} (${c.old.state}, slot ${c.old.slot})` : '-'),
    h('td', {}, c.new ? `${c.new.program} (${c.new.state}, slot ${c.new.slot})` : '-')));
  const more = (list, n) => (list.length > n ? h('p', { class: 'note' }, `… and ${list.length - n} more`) : null);
  const table = (id, heads, rows) => h('table', { class: 'entries', id }, h('thead', {}, h('tr', {}, ...heads.map((c) => h('th', {}, c)))), h('tbody', {}, rows));
  return [
    d.tasks.length ? [h('h3', {}, `Tasks (${d.tasks.length})`), table('changes-tasks', ['pid', 'before', 'after'], taskRows)] : null,
    d.pdes.length ? [h('h3', {}, `Directory entries (${d.pdes.length})`), table('changes-pdes', ['index', 'linear', 'before', 'after', 'what'], pdeRows), more(d.pdes, LISTED_CHANGES)] : null,
    d.ptes.length ? [h('h3', {}, `Page-table entries (${d.ptes.length})`), table('changes-ptes', ['linear', 'PDE · PTE', 'before', 'after', 'what'], pteRows), more(d.ptes, LISTED_CHANGES)] : null,
    d.counts.length ? [h('h3', {}, `mem_map counts (${d.counts.length})`), table('changes-counts', ['frame', 'count'], countRows), more(d.counts, LISTED_CHANGES)] : null,
    !d.tasks.length && !d.pdes.length && !d.ptes.length && !d.counts.length ? h('p', { class: 'note' }, 'nothing changed') : null,
  ];
}

/** A small directory grid of one moment, the cells a delta changed outlined (for side by side). */
function miniDirectory(machine, changed, label) {
  const grid = h('div', { class: 'mini-pgd', 'aria-label': `page directory at ${label}` });
  for (let slot = 0; slot < NR_TASKS; slot++) {
    const t = machine.taskBySlot.get(slot);
    const row = h('div', { class: 'mini-row' }, h('span', { class: 'mini-label' }, slot === 0 ? '0 kernel' : t ? `${slot} pid ${t.pid}` : String(slot)));
    for (let i = 0; i < PDES_PER_TASK; i++) {
      const index = slot * PDES_PER_TASK + i;
      const pde = machine.directory.pdes[index];
      row.append(h('span', { class: `mini st-${pdeState(pde)}${changed.has(index) ? ' changed' : ''}`, title: `PDE ${index}${pde ? `: ${pde.presentPtes ?? '?'} present` : ''}` }));
    }
    grid.append(row);
  }
  return grid;
}

/** The directory indices a delta touches (its entries, or entries of their tables). */
export function touchedDirs(d) {
  const s = new Set(d.pdes.map(([i]) => i));
  for (const [dir] of d.ptes) s.add(dir);
  return s;
}

export class HistoryView {
  /**
   * ctx: history() (the Follower's steps and bounds), viewing() (the moment shown or null),
   * scrub(moment), loadMoment(m) -> machine, loadDiff(a, b), status().
   */
  constructor(root, ctx) {
    this.root = root;
    this.ctx = ctx;
    this.onlyInteresting = false;
    this.head = h('div', { id: 'history-head' });
    this.list = h('div', { id: 'history-steps' });
    this.detail = h('div', { id: 'history-detail' });
    this.compareBox = h('div', { id: 'history-compare' });
    this.from = h('input', { id: 'compare-a', type: 'number', min: '0', 'aria-label': 'moment A' });
    this.to = h('input', { id: 'compare-b', type: 'number', min: '0', 'aria-label': 'moment B' });
    const filter = h('label', { class: 'note' }, h('input', {
      type: 'checkbox', id: 'history-interesting',
      onchange: (e) => { this.onlyInteresting = e.target.checked; this.shownKey = null; this.update(); },
    }), ' only forks, exits, exec, copy-on-write and swap');
    const compare = h('form', {
      class: 'walk-form', onsubmit: (e) => { e.preventDefault(); this.compare(Number(this.from.value), Number(this.to.value)); },
    }, h('label', {}, 'moment A', this.from), h('label', {}, 'moment B', this.to), h('button', { type: 'submit', id: 'compare-go' }, 'Compare side by side'));
    fill(root,
      h('h2', {}, 'History', h('small', {}, 'the inspector keeps the last steps as differences: scrub back and see exactly what each changed')),
      this.head, this.detail, h('h3', {}, 'Compare two moments'), compare, this.compareBox,
      h('h3', {}, 'Steps, newest first'), filter, this.list);
    this.shownKey = null;
    this.detailMoment = null;
  }

  update() {
    const { steps, bounds, info } = this.ctx.history();
    if (!bounds) {
      fill(this.head, h('p', { class: 'note' }, 'No snapshot yet.'));
      return;
    }
    const viewing = this.ctx.viewing();
    fill(this.head, h('p', { class: 'note' },
      `Moments ${bounds.oldest}–${bounds.newest} of boot ${bounds.boot} are kept`,
      info ? ` (${plural(info.evicted, 'older step')} folded away; at most ${info.max_steps} steps or ${Math.round(info.max_bytes / 1048576)} MiB; now ${Math.round(info.bytes / 1024)} KiB). ` : '. ',
      info?.source === 'stub' ? `Source: the stub; a snapshot every ${info.interval_ms / 1000} s while the page is open, and each stops the kernel briefly.`
        : info ? `Source: ${info.source}; a snapshot every ${info.interval_ms} ms.` : ''));
    const key = [steps.length ? steps[steps.length - 1].moment : -1, viewing, this.onlyInteresting];
    if (this.shownKey && key.every((k, i) => k === this.shownKey[i])) return;
    this.shownKey = key;
    const chosen = (this.onlyInteresting ? steps.filter(interesting) : steps).slice(-LISTED_STEPS).reverse();
    const t0 = steps.length ? steps[0].timeMs : 0;
    fill(this.list, h('table', { class: 'entries', id: 'history-table' },
      h('thead', {}, h('tr', {}, ...['moment', 'time', 'what happened', 'changed'].map((c) => h('th', {}, c)))),
      h('tbody', {}, chosen.map((s) => {
        const lines = describeEvents(s.events);
        return h('tr', {
          'data-click': '1', tabindex: '0', dataset: { moment: s.moment },
          class: viewing === s.moment ? 'active' : null,
          onclick: () => this.ctx.scrub(s.moment),
          onkeydown: (e) => { if (e.key === 'Enter') this.ctx.scrub(s.moment); },
        },
          h('td', { class: 'num' }, String(s.moment)),
          h('td', { class: 'num' }, `+${((s.timeMs - t0) / 1000).toFixed(2)} s`),
          h('td', { class: 'wrap' }, lines.slice(0, 3).map((l) => h('div', { class: `ev ev-${l.kind}` }, l.text)), lines.length > 3 ? h('div', { class: 'muted' }, `+ ${lines.length - 3} more`) : null),
          h('td', { class: 'num' }, s.pdes + s.ptes + s.counts === 0
            ? `entries and counts as before${s.tasks ? ` · ${plural(s.tasks, 'task row')}` : ''}`
            : `${s.pdes} PDE · ${s.ptes} PTE · ${s.counts} counts`));
      }))));
  }

  /** Shows what step `moment` changed (called when the page scrubs to it). */
  async showStep(moment, delta) {
    this.detailMoment = moment;
    const step = this.ctx.history().steps.find((s) => s.moment === moment);
    if (!step || !delta) {
      fill(this.detail, moment === null ? null : h('p', { class: 'note' }, `Moment ${moment}: the oldest kept, nothing before it to compare with.`));
      return;
    }
    fill(this.detail,
      h('h3', {}, `Step ${moment}: what it changed`, h('small', {}, `moment ${moment - 1} → ${moment}${step.seq ? `, seq ${step.seq}` : ''}${step.consistent ? '' : ' (read mid-change)'}`)),
      h('ul', { class: 'events' }, describeEvents(step.events).map((l) => h('li', { class: `ev ev-${l.kind}` }, l.text))),
      ...changeTables(delta));
  }

  async compare(a, b) {
    const { bounds } = this.ctx.history();
    if (!bounds || !(a >= bounds.oldest && b <= bounds.newest && a <= bounds.newest && b >= bounds.oldest)) {
      fill(this.compareBox, h('p', { class: 'error-text' }, `give two moments between ${bounds?.oldest} and ${bounds?.newest}`));
      return;
    }
    fill(this.compareBox, h('p', { class: 'note' }, 'loading both moments…'));
    try {
      const [ma, mb, d] = await Promise.all([this.ctx.loadMoment(a), this.ctx.loadMoment(b), this.ctx.loadDiff(a, b)]);
      const changed = touchedDirs(d);
      const freeOf = (m) => m.frames.counts.reduce((x, c) => x + (c === 0), 0);
      const side = (m, label) => h('div', { class: 'side' },
        h('h3', {}, label, h('small', {}, `${plural(m.tasks.list.length, 'task')} · ${freeOf(m)} free frames`)),
        miniDirectory(m, changed, label),
        kv(m.tasks.list.map((t) => [`pid ${t.pid}`, `${t.program} · ${t.state} · slot ${t.slot} · ${t.pages} pages, ${t.sharedPages} shared`])));
      fill(this.compareBox,
        h('div', { class: 'sides' }, side(ma, `A: moment ${a}`), side(mb, `B: moment ${b}`)),
        h('p', { class: 'note' }, `From A to B: ${plural(d.pdes.length, 'directory entry', 'directory entries')}, ${plural(d.ptes.length, 'page-table entry', 'page-table entries')}, ${plural(d.counts.length, 'count')} changed; the outlined directory entries hold them.`),
        ...changeTables(d));
    } catch (e) {
      fill(this.compareBox, h('p', { class: 'error-text' }, `could not compare: ${e.message}`));
    }
  }

  /** Fills the compare form (A = the moment shown, B = the newest). */
  prefill(a, b) {
    this.from.value = String(a);
    this.to.value = String(b);
  }
}
