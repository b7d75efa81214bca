// tasks.js: every task: pid, parent, program, state, its slot, resident and swapped pages, page tables, faults.

import { h, fill } from './dom.js';
import { hex } from './format.js';
import { PDES_PER_TASK } from './entry.js';

const FAULT_COLUMNS = [
  ['zero_page', 'Z', 'demand-zero (get_empty_page)'],
  ['loaded', 'L', 'loaded from the image'],
  ['shared', 'S', 'shared (share_page)'],
  ['cow_copied', 'C', 'COW copied (un_wp_page)'],
  ['cow_made_writable', 'W', 'COW made writable'],
  ['swapped_in', 'I', 'swapped in (swap_in)'],
];

export class TasksView {
  /** ctx: focusDirectory(index). */
  constructor(root, ctx) {
    this.root = root;
    this.ctx = ctx;
    fill(root, h('p', { class: 'note' }, 'loading…'));
  }

  update(machine) {
    const head = h('h2', {}, 'Tasks', h('small', {}, 'task n owns the linear slot [n × 64 MiB, (n + 1) × 64 MiB): directory entries 16n..16n+15'));
    if (!machine.tasks) {
      fill(this.root, head, h('p', { class: 'error-text' }, `the task table is not available: ${machine.errors.tasks?.message ?? ''} (post-mortem answers from QEMU cannot know pids)`));
      return;
    }
    const rows = machine.tasks.list.map((t) => h('tr', {
      'data-click': '1', class: t.current ? 'active' : '',
      title: 'click: its slot in the directory',
      onclick: () => this.ctx.focusDirectory(t.slot * PDES_PER_TASK),
    },
      h('td', { class: 'num' }, String(t.pid)),
      h('td', { class: 'num' }, t.ppid === null ? '-' : String(t.ppid)),
      h('td', {}, t.program, t.current ? h('span', { class: 'tag', title: 'running when the state was read' }, 'current') : null),
      h('td', {}, t.state, t.killedBy ? h('span', { class: 'tag bad' }, `dies of signal ${t.killedBy}`) : null),
      h('td', { class: 'num' }, String(t.slot)),
      h('td', { class: 'num' }, `${hex(t.start)}–${hex(t.last)}`),
      h('td', { class: 'num' }, String(t.pages)),
      h('td', { class: 'num' }, String(t.sharedPages)),
      h('td', { class: 'num' }, String(t.swapped)),
      h('td', { class: 'num' }, String(t.pageTables)),
      h('td', { class: 'num' }, t.pid === 0 ? '-' : hex(t.brk)),
      h('td', { class: 'num' }, FAULT_COLUMNS.map(([k]) => t.faults[k] ?? 0).join('/'))));
    fill(this.root, head,
      h('table', { class: 'entries', id: 'task-table' },
        h('thead', {}, h('tr', {}, ...[
          ['pid'], ['ppid', 'parent'], ['program'], ['state'], ['slot'], ['linear range'],
          ['pages', 'present pages (task 0: the identity map)'], ['shared', 'of those, with a count above 1'],
          ['swapped', 'swap entries'], ['tables', 'page tables'], ['brk', 'the break (an offset)'],
          ['faults', FAULT_COLUMNS.map(([, g, w]) => `${g} ${w}`).join('; ')],
        ].map(([c, title]) => h('th', { title: title ?? null }, c)))),
        h('tbody', {}, rows)),
      h('p', { class: 'note' }, 'faults: ', FAULT_COLUMNS.map(([, g, w], i) => `${i ? ' / ' : ''}${w}`).join(''), ' since the program started.'));
  }
}
