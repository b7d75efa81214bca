// tasks.js: every task: pid, parent, program, state, its slot, resident and swapped pages, page tables.

import { h, fill } from './dom.js';
import { hex } from './format.js';
import { PDES_PER_TASK, TASK_SIZE, slotBase } from './entry.js';

export class TasksView {
  /** ctx: focusDirectory(index). */
  constructor(root, ctx) {
    this.root = root;
    this.ctx = ctx;
    fill(root, h('p', { class: 'note' }, 'loading…'));
  }

  update(machine) {
    const head = h('h2', {}, 'Tasks', h('small', {}, 'task n owns the linear slot [n × 64 MiB, (n + 1) × 64 MiB): directory entries 16n..16n+15'));
    const rows = machine.tasks.list.map((t) => h('tr', {
      'data-click': '1',
      title: 'click: its slot in the directory',
      onclick: () => this.ctx.focusDirectory(t.slot * PDES_PER_TASK),
    },
      h('td', { class: 'num' }, String(t.pid)),
      h('td', { class: 'num' }, t.ppid === null ? '-' : String(t.ppid)),
      h('td', {}, t.program),
      h('td', {}, t.state),
      h('td', { class: 'num' }, String(t.slot)),
      h('td', { class: 'num' }, `${hex(slotBase(t.slot))}–${hex(slotBase(t.slot) + TASK_SIZE - 1)}`),
      h('td', { class: 'num' }, String(t.pages)),
      h('td', { class: 'num' }, String(t.sharedPages)),
      h('td', { class: 'num' }, String(t.swapped)),
      h('td', { class: 'num' }, String(t.pageTables))));
    fill(this.root, head,
      h('table', { class: 'entries', id: 'task-table' },
        h('thead', {}, h('tr', {}, ...[
          ['pid'], ['ppid', 'parent'], ['program'], ['state'], ['slot'], ['linear range'],
          ['pages', 'present pages (task 0: the identity map)'], ['shared', 'of those, with a count above 1'],
          ['swapped', 'swap entries (0.12)'], ['tables', 'page tables'],
        ].map(([c, title]) => h('th', { title: title ?? null }, c)))),
        h('tbody', {}, rows)),
      h('p', { class: 'note' }, 'Counted from the snapshot\'s page tables and mem_map, as monitor tasks counts them; task 0\'s pages are the identity map.'));
  }
}
