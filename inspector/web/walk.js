// walk.js: the walk of one linear address: its 10 | 10 | 12 split drawn, each level decoded, QEMU's answer beside.

import { h, fill, kv } from './dom.js';
import { hex, bits32, parseNumber } from './format.js';
import { split, TASK_SIZE, slotBase } from './entry.js';
import { walk as walkApi, walkAt } from './data.js';

const STOPS = {
  no_page_table: 'the directory entry is not present: no page table (a fault here makes one)',
  table_beyond_memory: 'the directory entry names a table beyond HIGH_MEMORY: not read (corrupt entry)',
  not_mapped: 'the table entry is zero: the page was never mapped (a fault here maps it: do_no_page)',
  swapped_out: 'the table entry holds a swap slot: the page is on the swap device (swap_in reads it back)',
};

export class WalkView {
  /** ctx: machine(), past() (a moment of the history is shown), openTable(index), openFrame(frame, hint). */
  constructor(root, ctx) {
    this.root = root;
    this.ctx = ctx;
    this.addr = h('input', { id: 'walk-addr', class: 'wide', placeholder: '0x04001000', spellcheck: 'false', autocomplete: 'off', 'aria-label': 'linear address, or offset with a task' });
    this.task = h('select', { id: 'walk-task', 'aria-label': 'task' }, h('option', { value: '' }, 'linear address'));
    this.result = h('div', { id: 'walk-result', 'aria-live': 'polite' });
    const form = h('form', {
      class: 'walk-form', onsubmit: (e) => { e.preventDefault(); this.submit(); },
    },
      h('label', {}, 'address (hex or decimal)', this.addr),
      h('label', {}, 'as', this.task),
      h('button', { type: 'submit' }, 'Walk'),
      h('span', { class: 'note' }, 'With a task, the address is an offset in its segment (below 64 MiB): linear = slot × 64 MiB + offset.'));
    fill(root, h('h2', {}, 'Walk an address', h('small', {}, 'what the MMU does with CR3, a directory entry and a table entry')), form, this.result);
    this.lastTasks = '';
  }

  /** Keeps the task list current. */
  update(machine) {
    const tasks = machine.tasks?.list ?? [];
    const sig = tasks.map((t) => `${t.pid}:${t.program}`).join(',');
    if (sig === this.lastTasks) return;
    this.lastTasks = sig;
    const chosen = this.task.value;
    fill(this.task, h('option', { value: '' }, 'linear address'),
      ...tasks.filter((t) => t.pid !== 0).map((t) => h('option', { value: String(t.pid) }, `offset in pid ${t.pid} ${t.program}`)));
    this.task.value = tasks.some((t) => String(t.pid) === chosen) ? chosen : '';
  }

  focus() {
    this.addr.focus();
    this.addr.select();
  }

  /** Walks `linear` (from another view). */
  async walkLinear(linear) {
    this.addr.value = hex(linear);
    this.task.value = '';
    await this.submit();
  }

  async submit() {
    const query = `${this.addr.value}|${this.task.value}`;
    delete this.result.dataset.done;
    await this.walk();
    // Which query the result answers (the browser tests wait for it).
    this.result.dataset.done = query;
  }

  async walk() {
    const addr = parseNumber(this.addr.value);
    const task = this.task.value === '' ? null : Number(this.task.value);
    if (addr === null || addr >= 2 ** 32) {
      fill(this.result, h('p', { class: 'error-text' }, `'${this.addr.value}' is not an address (decimal or 0x hex, below 0x100000000)`));
      return;
    }
    if (task !== null && addr >= TASK_SIZE) {
      fill(this.result, h('p', { class: 'error-text' }, `with a task the address is an offset below ${hex(TASK_SIZE)} (64 MiB)`));
      return;
    }
    fill(this.result, h('p', { class: 'note' }, 'walking…'));
    const m = this.ctx.machine();
    if (this.ctx.past() && m) {
      // A moment of the history: the same walk over its snapshot (QEMU only knows now).
      let linear = addr;
      if (task !== null) {
        const t = m.tasks.list.find((x) => x.pid === task);
        if (!t) {
          fill(this.result, h('p', { class: 'error-text' }, `no task with pid ${task} at moment ${m.moment}`));
          return;
        }
        linear = (slotBase(t.slot) + addr) >>> 0;
      }
      const w = walkAt(m, linear);
      if (task !== null) w.task = { pid: task, slot: Math.floor(linear / TASK_SIZE), offset: addr };
      this.render(w);
      return;
    }
    try {
      const w = await walkApi({ addr, task, verify: !!this.ctx.status()?.qmp });
      this.render(w);
    } catch (e) {
      fill(this.result, h('p', { class: 'error-text' }, `the walk failed: ${e.message}`));
    }
  }

  render(w) {
    const s = split(w.linear);
    const b = bits32(w.linear);
    const group = (cls, digits, name, value, range) => h('div', { class: `bitgroup ${cls}` },
      h('div', { class: 'digits', 'aria-label': `${name} bits ${range}` }, digits),
      h('div', { class: 'what' }, h('span', {}, `${name} (bits ${range})`), h('span', { class: 'value' }, value)));
    const bits = h('div', { class: 'bits', 'aria-label': 'the 10 | 10 | 12 split' },
      group('dir', b.slice(0, 10), 'directory index', `${s.dir} (0x${s.dir.toString(16)})`, '31–22'),
      group('tab', b.slice(10, 20), 'table index', `${s.table} (0x${s.table.toString(16)})`, '21–12'),
      group('off', b.slice(20), 'offset', `0x${s.offset.toString(16).padStart(3, '0')}`, '11–0'));
    const slot = Math.floor(w.linear / TASK_SIZE);
    const m = this.ctx.machine();
    const task = m?.taskBySlot.get(slot);
    const where = w.task
      ? `pid ${w.task.pid} offset ${hex(w.task.offset)} + slot ${w.task.slot} × 64 MiB (${hex(slotBase(w.task.slot))})`
      : `slot ${slot}${slot === 0 ? ' (the kernel)' : task ? ` (pid ${task.pid} ${task.program})` : ' (no task)'}`;
    const levels = h('div', { class: 'levels' });
    const cr3 = m?.directory?.pgDir ?? this.ctx.status()?.cr3 ?? null;
    levels.append(h('div', { class: 'level-name' }, 'CR3'),
      h('div', { class: 'level' }, h('div', { class: 'line' }, `page directory at ${hex(cr3)} (one directory for every task, as in 0.11)`)));
    levels.append(h('div', { class: 'level-name' }, 'PDE'),
      h('div', { class: 'level dir' },
        h('div', { class: 'line' }, `entry ${w.pde.index} at ${hex((cr3 ?? 0) + w.pde.index * 4)}: raw ${hex(w.pde.raw)}  ${w.pde.flags}`),
        w.table !== null ? h('div', { class: 'line' }, '→ page table in frame ',
          h('a', { href: '#', onclick: (e) => { e.preventDefault(); this.ctx.openTable(w.pde.index); } }, hex(w.table))) : null));
    if (w.pte) {
      levels.append(h('div', { class: 'level-name' }, 'PTE'),
        h('div', { class: 'level tab' },
          h('div', { class: 'line' }, `entry ${w.pte.index} at ${hex((w.table ?? 0) + w.pte.index * 4)}: raw ${w.pte.raw === null ? '-' : hex(w.pte.raw)}  ${w.pte.flags ?? '(not read)'}`),
          w.frame !== null ? h('div', { class: 'line' }, '→ frame ',
            h('a', { href: '#', onclick: (e) => { e.preventDefault(); this.ctx.openFrame(w.frame, { linear: w.linear }); } }, hex(w.frame)),
            `, mem_map count ${w.count ?? '- (below LOW_MEM, not counted)'}`) : null));
    }
    if (w.stop) {
      let text = STOPS[w.stop.reason] ?? w.stop.reason;
      if (w.stop.swap_slot !== null && w.stop.swap_slot !== undefined) text += ` (slot ${w.stop.swap_slot})`;
      levels.append(h('div', { class: 'level-name' }, 'stops'), h('div', { class: 'level stop' }, h('div', {}, `at the ${w.stop.level.toUpperCase()}: ${text}`)));
    } else {
      levels.append(h('div', { class: 'level-name' }, 'physical'),
        h('div', { class: 'level phys' }, h('div', { class: 'line' }, `${hex(w.frame)} + offset 0x${s.offset.toString(16).padStart(3, '0')} = `, h('b', { id: 'walk-physical' }, hex(w.physical)))));
    }
    let qemu = null;
    if (w.qemu) {
      const agree = w.agree
        ? h('span', { class: 'tag ok agree' }, '✓ agrees')
        : h('span', { class: 'tag bad agree' }, '✗ differs');
      qemu = h('div', { class: 'level' }, h('div', { class: 'line' },
        `QEMU (gva2gpa): ${w.qemu.physical === null ? 'unmapped' : hex(w.qemu.physical)}`, agree));
      levels.append(h('div', { class: 'level-name' }, 'QEMU'), qemu);
    } else {
      const why = this.ctx.past()
        ? 'a moment of the history: QEMU can only translate with the CR3 of now'
        : 'no QMP socket: QEMU\'s own answer is not available (the inspector\'s --qmp)';
      levels.append(h('div', { class: 'level-name' }, 'QEMU'), h('div', { class: 'level' }, h('span', { class: 'muted' }, why)));
    }
    fill(this.result,
      h('p', {}, h('b', { class: 'mono', id: 'walk-linear' }, hex(w.linear)), ' · ', where, h('span', { class: 'muted' }, ` · source ${w.source}`)),
      bits, levels,
      kv([['the monitor', `monitor walk ${w.task ? `${hex(w.task.offset)} --task ${w.task.pid}` : hex(w.linear)}`]]));
  }
}
