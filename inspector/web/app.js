// app.js: the web view's entry: the layout, the tabs, following the kernel live, scrubbing its history, the banner and the keyboard.

import { h, fill, hideTip } from './dom.js';
import { clock, plural } from './format.js';
import {
  Follower, buildMachine, loadStatus, loadCheckmm, loadHistory, loadMoment, loadDiff,
} from './data.js';
import { DirectoryView } from './directory.js';
import { TableView } from './table.js';
import { WalkView } from './walk.js';
import { FrameView } from './frame.js';
import { MemoryView } from './memory.js';
import { SharingView } from './sharing.js';
import { TasksView } from './tasks.js';
import { FaultsView } from './faults.js';
import { HistoryView, describeEvents, touchedDirs } from './history.js';
import { installKeys, renderHelp } from './keys.js';

/** The views of the detail panels; group b moves to a panel of its own on wide screens. */
const VIEWS = [
  { id: 'table', title: 'Page table', key: 'e', group: 'a' },
  { id: 'walk', title: 'Walk', key: 'w', group: 'a' },
  { id: 'frame', title: 'Frame', key: 'r', group: 'a' },
  { id: 'history', title: 'History', key: 'h', group: 'a' },
  { id: 'memory', title: 'Physical memory', key: 'm', group: 'b' },
  { id: 'sharing', title: 'Sharing', key: 's', group: 'b' },
  { id: 'tasks', title: 'Tasks', key: 'k', group: 'b' },
  { id: 'faults', title: 'Faults', key: 'f', group: 'b' },
];
const WIDE = window.matchMedia('(min-width: 1700px)');
const STATUS_MS = 1000;
/** checkmm runs in the kernel (through the stub: a brief stop), so not at every update. */
const CHECKMM_MS = 3000;
const HISTORY_INFO_MS = 5000;

const state = {
  latest: null, // the newest moment's machine
  viewing: null, // null: live; else the moment shown
  past: null, // that moment's machine
  pastDelta: null, // what its step changed
  status: null,
  error: null, // the last failure to reach the inspector
  checkmm: null,
  info: null, // /api/v1/history: bounds, limits, source
  shown: { a: 'table', b: 'memory' },
  open: null, // the directory index whose table is shown
  updates: [], // when live updates arrived (for the updates/s readout)
};

const current = () => (state.viewing === null ? state.latest : state.past);

const follower = new Follower({
  onUpdate: (raw, meta, steps, bounds, changed) => {
    state.error = null;
    if (changed) {
      state.latest = buildMachine(raw, meta, { checkmm: state.checkmm, status: state.status });
      state.updates.push(performance.now());
      if (state.updates.length > 50) state.updates.shift();
      if (state.viewing !== null && state.viewing < bounds.oldest) unpause();
      if (state.viewing === null) renderAll();
    }
    renderScrub();
    renderState();
  },
  onError: (e) => {
    state.error = e;
    renderState();
  },
});

const ctx = {
  machine: current,
  status: () => state.status,
  past: () => state.viewing !== null,
  viewing: () => state.viewing,
  selected: () => state.open,
  open: (index, how) => openTable(index, how),
  openTable: (index) => openTable(index),
  openFrame: (frame, hint) => { show('frame'); views.frame.show(frame, hint); },
  walk: (linear) => { show('walk'); views.walk.walkLinear(linear); },
  focusDirectory: (index) => { if (index !== undefined) directory.setActive(index); directory.focus(); },
  history: () => ({ steps: follower.steps, bounds: follower.bounds, info: state.info }),
  scrub: (moment) => scrub(moment),
  loadMoment: async (m) => {
    const { raw, meta } = await loadMoment(m);
    return buildMachine(raw, meta);
  },
  loadDiff,
  entryAround: (fault) => entryAround(fault),
};

// ---- layout: the panels and their tabs ----

const sections = {};
const tabButtons = {};
const mainEl = document.querySelector('main.layout');
const firstPanel = document.querySelector('section.detail');
const secondPanel = h('section', { class: 'panel detail', 'aria-label': 'the machine' },
  h('nav', { class: 'tabs', role: 'tablist', 'aria-label': 'machine views' }), h('div', { class: 'views' }));

for (const v of VIEWS) {
  sections[v.id] = h('section', { class: 'view', id: `view-${v.id}`, role: 'tabpanel', 'aria-labelledby': `tab-${v.id}`, hidden: true });
  tabButtons[v.id] = h('button', {
    type: 'button', role: 'tab', id: `tab-${v.id}`, 'aria-controls': `view-${v.id}`, 'aria-selected': 'false',
    onclick: () => show(v.id),
  }, v.title, h('kbd', {}, v.key));
}

function panelOf(v) {
  return v.group === 'b' && WIDE.matches ? secondPanel : firstPanel;
}

function arrange() {
  const wide = WIDE.matches;
  mainEl.classList.toggle('two', wide);
  if (wide && !secondPanel.isConnected) mainEl.append(secondPanel);
  if (!wide && secondPanel.isConnected) secondPanel.remove();
  for (const v of VIEWS) {
    const panel = panelOf(v);
    panel.querySelector('.tabs').append(tabButtons[v.id]);
    panel.querySelector('.views').append(sections[v.id]);
  }
  const groupOf = (id) => VIEWS.find((v) => v.id === id).group;
  if (wide && groupOf(state.shown.a) === 'b') {
    state.shown.b = state.shown.a;
    state.shown.a = 'table';
  }
  if (wide && !state.shown.b) state.shown.b = 'memory';
  for (const v of VIEWS) select(v.id, state.shown[wide ? v.group : 'a'] === v.id);
  updateVisible();
}

function select(id, on) {
  sections[id].hidden = !on;
  tabButtons[id].setAttribute('aria-selected', on ? 'true' : 'false');
  tabButtons[id].tabIndex = on ? 0 : -1;
}

/** Shows a view in its panel. */
function show(id) {
  const v = VIEWS.find((x) => x.id === id);
  const wide = WIDE.matches;
  const group = wide ? v.group : 'a';
  for (const other of VIEWS) {
    if ((wide ? other.group : 'a') === group) select(other.id, other.id === id);
  }
  state.shown[group] = id;
  hideTip();
  updateVisible();
}

const visible = (id) => !sections[id].hidden;

// ---- the views ----

const directory = new DirectoryView(document.getElementById('directory-grid'), document.getElementById('directory-legend'), ctx);
const views = {
  table: new TableView(sections.table, ctx),
  walk: new WalkView(sections.walk, ctx),
  frame: new FrameView(sections.frame, ctx),
  history: new HistoryView(sections.history, ctx),
  memory: new MemoryView(sections.memory, ctx),
  sharing: new SharingView(sections.sharing, ctx),
  tasks: new TasksView(sections.tasks, ctx),
  faults: new FaultsView(sections.faults, ctx),
};

function openTable(index, { focus = false } = {}) {
  state.open = index;
  directory.setActive(index);
  show('table');
  views.table.show(index);
  markTable();
  const m = current();
  if (m) directory.update(m);
  if (focus) views.table.focus();
}

/** The views on screen follow the moment shown; hidden ones catch up when shown. */
function updateVisible() {
  const m = current();
  if (!m) return;
  for (const [id, view] of Object.entries(views)) {
    if (!visible(id)) continue;
    if (id === 'history') view.update();
    else view.update(m);
  }
}

function renderAll() {
  const m = current();
  if (!m) return;
  m.checkmm = state.checkmm;
  directory.update(m);
  updateVisible();
  renderTotals(m);
  document.body.classList.toggle('past', state.viewing !== null);
}

function renderTotals(m) {
  const free = m.frames.counts.reduce((a, c) => a + (c === 0 ? 1 : 0), 0);
  const rate = updatesPerSecond();
  const items = [
    ['free frames', String(free), 'total-free'],
    ['tasks', String(m.tasks.list.length), 'total-tasks'],
    ['last fault', String(m.faults.sinceBoot), 'total-faults'],
    ['moment', String(m.moment), 'total-moment'],
    ['source', m.source ?? '-', 'total-source'],
    ['updates/s', rate.toFixed(1), 'total-rate'],
  ];
  fill(document.getElementById('totals'), ...items.map(([k, v, id]) => h('div', {}, h('dt', {}, k), h('dd', { id }, v))));
}

/** Live updates in the last five seconds, per second. */
function updatesPerSecond() {
  const since = performance.now() - 5000;
  return state.updates.filter((t) => t >= since).length / 5;
}

/** Where gdb stopped, from its stop reply and the registers gdb read: the signal, the task, eip and its function. */
function stopWhere(stop) {
  if (!stop) return '';
  const why = { 5: 'SIGTRAP', 2: 'SIGINT' }[stop.signal] ?? `signal ${stop.signal}`;
  const task = stop.pid === null ? null : state.latest?.tasks.list.find((t) => t.pid === stop.pid);
  const who = stop.pid === null ? '' : ` in pid ${stop.pid}${task ? ` ${task.program}` : ''}`;
  const at = stop.eip == null ? '' : ` at ${stop.eip}${stop.function ? ` ${shortName(stop.function)}` : ''}`;
  return `: ${why}${who}${at}`;
}

/** A kernel function's path without its crate and module (`mm::memory::copy_page_tables+0x1c` → `copy_page_tables+0x1c`). */
function shortName(name) {
  return name.split('::').at(-1);
}

function renderState() {
  const el = document.getElementById('state');
  const banner = document.getElementById('banner');
  const s = state.status;
  let pill;
  let message = null;
  if (state.error && state.error.kind === 'unreachable') {
    pill = h('span', { class: 'pill down' }, 'no answer');
    message = [h('span', {}, state.error.message), h('small', {}, state.latest
      ? `Showing the state as of ${clock(state.latest.takenAt)}; retrying every second.` : 'Retrying every second.')];
  } else if (!s) {
    pill = h('span', { class: 'pill' }, 'connecting…');
  } else if (!s.connected) {
    pill = h('span', { class: 'pill down' }, 'kernel gone');
    message = [h('span', {}, 'The kernel is not connected (QEMU stopped or restarting).'),
      h('small', {}, state.latest
        ? `Showing the state as of ${clock(state.latest.takenAt)}; the page recovers by itself when the kernel is back.`
        : 'The page shows it by itself when the kernel is back.')];
  } else if (s.kernel === 'stopped') {
    pill = h('span', { class: 'pill stopped', id: 'stopped', title: `gdb has the kernel stopped: this is its state at the stop (SIGTRAP: a breakpoint, watchpoint or step; SIGINT: Ctrl-C)${s.gdbStop?.function ? `, in ${s.gdbStop.function}` : ''}; continue in gdb to see it move` },
      `stopped by gdb${stopWhere(s.gdbStop)}`);
  } else if (s.kernel === 'paused') {
    pill = h('span', { class: 'pill stopped', id: 'paused', title: `QEMU has the VM paused (its status: ${s.vm}): nothing moves until it continues` }, 'VM paused');
  } else if (s.kernel === 'unresponsive') {
    pill = h('span', { class: 'pill down', title: 'the VM runs but the kernel\'s stub does not answer (a wedged kernel?); the inspector probes it every second' }, 'kernel unresponsive');
  } else {
    pill = h('span', { class: 'pill running' }, 'running');
  }
  if (!message && state.error) {
    message = [h('span', {}, `The history does not answer: ${state.error.message}`), h('small', {}, 'Retrying every second.')];
  }
  const extra = [];
  if (state.info?.last_error && s?.connected) extra.push(h('span', { class: 'muted', title: state.info.last_error }, 'snapshot failed'));
  fill(el, pill, ...extra);
  banner.hidden = !message;
  if (message) fill(banner, ...message);
  document.body.classList.toggle('stale', !!message);
}

// ---- history: pause, scrub, step ----

function renderScrub() {
  const b = follower.bounds;
  const range = document.getElementById('scrubber');
  const where = document.getElementById('where');
  const pause = document.getElementById('pause');
  if (!b) {
    fill(where, 'waiting for the first snapshot…');
    return;
  }
  range.min = String(b.oldest);
  range.max = String(b.newest);
  range.value = String(state.viewing ?? b.newest);
  pause.textContent = state.viewing === null ? 'Pause' : 'Live';
  pause.setAttribute('aria-pressed', String(state.viewing !== null));
  pause.title = state.viewing === null ? 'Pause: hold the moment shown (P)' : 'Back to live (P)';
  const m = state.viewing ?? b.newest;
  const step = follower.steps.find((x) => x.moment === m);
  const headline = step ? describeEvents(step.events)[0]?.text ?? '' : m === b.oldest ? 'the oldest moment kept' : '';
  const t0 = follower.steps.length ? follower.steps[0].timeMs : 0;
  fill(where,
    state.viewing === null ? h('span', { class: 'live-dot' }, '● live ') : h('span', { class: 'past' }, '❚❚ past '),
    'moment ', h('b', { id: 'where-moment' }, String(m)), ` of ${b.oldest}–${b.newest}`,
    step ? ` · +${((step.timeMs - t0) / 1000).toFixed(2)} s` : '',
    headline ? ` · ${headline}` : '');
  where.title = headline;
}

/** Shows moment `m` of the history (the newest: live again). */
async function scrub(m) {
  const b = follower.bounds;
  if (!b) return;
  m = Math.max(b.oldest, Math.min(b.newest, m));
  state.viewing = m;
  renderScrub();
  try {
    const [{ raw, meta }, delta] = await Promise.all([
      loadMoment(m),
      m > b.oldest ? loadDiff(m - 1, m) : Promise.resolve(null),
    ]);
    if (state.viewing !== m) return;
    state.past = buildMachine(raw, meta, { checkmm: state.checkmm, status: state.status });
    state.pastDelta = delta;
    applyMarks();
    renderAll();
    views.history.showStep(m, delta);
    if (visible('walk')) views.walk.submit();
  } catch (e) {
    if (state.viewing === m) fill(document.getElementById('where'), h('span', { class: 'error-text' }, `moment ${m}: ${e.message}`));
  }
}

function unpause() {
  state.viewing = null;
  state.past = null;
  state.pastDelta = null;
  applyMarks();
  views.history.showStep(null, null);
  renderAll();
  renderScrub();
}

function togglePause() {
  if (state.viewing === null) {
    const b = follower.bounds;
    if (b) scrub(b.newest);
  } else unpause();
}

function stepBy(n) {
  const b = follower.bounds;
  if (!b) return;
  scrub((state.viewing ?? b.newest) + n);
}

/** Outlines what the shown step changed, in every view that draws it. */
function applyMarks() {
  const d = state.viewing === null ? null : state.pastDelta;
  directory.mark(d ? touchedDirs(d) : []);
  views.memory.mark(d ? d.counts.map(([i]) => i) : []);
  markTable();
}

function markTable() {
  const d = state.viewing === null ? null : state.pastDelta;
  views.table.mark(d && state.open !== null ? d.ptes.filter(([dir]) => dir === state.open).map(([, i]) => i) : []);
}

/** A fault's page-table entry before and after the step that holds it. */
async function entryAround(fault) {
  const step = follower.steps.find((s) => s.events.some((e) => e.kind === 'fault' && e.fault.seq === fault.seq));
  if (!step) return null;
  const [before, after] = await Promise.all([ctx.loadMoment(step.moment - 1), ctx.loadMoment(step.moment)]);
  const pick = (m) => {
    const t = m.tableOf(fault.linear >>> 22);
    return t.tableReadable ? t.entries[(fault.linear >>> 12) & 0x3ff] : null;
  };
  return { before: pick(before) ?? { raw: 0, flags: 'not present', frame: null }, after: pick(after), step: step.moment, faults: step.faults };
}

// ---- the loops beside the follower ----

async function statusLoop() {
  for (;;) {
    try {
      state.status = await loadStatus();
      if (state.error?.kind === 'unreachable') state.error = null;
    } catch (e) {
      state.error = e;
    }
    renderState();
    await new Promise((r) => setTimeout(r, STATUS_MS));
  }
}

async function checkmmLoop() {
  for (;;) {
    await new Promise((r) => setTimeout(r, state.checkmm ? CHECKMM_MS : 500));
    // Not before the history says its source: with the live one, checkmm comes from it.
    if (!state.status?.connected || document.hidden || !state.info) continue;
    try {
      const checkmm = await loadCheckmm({ live: state.info?.source === 'live', since: follower.bounds?.newest ?? null });
      if (checkmm === null) continue;
      state.checkmm = checkmm;
      if (state.viewing === null && state.latest) {
        state.latest.checkmm = state.checkmm;
        if (visible('memory')) views.memory.update(state.latest);
        if (visible('frame')) views.frame.update(state.latest);
      }
    } catch {
      // The status loop reports the kernel's absence; a busy answer is retried.
    }
  }
}

async function infoLoop() {
  for (;;) {
    try {
      state.info = await loadHistory(follower.bounds?.newest ?? null);
      if (visible('history')) views.history.update();
      renderState();
    } catch {
      // The follower reports the history's absence.
    }
    await new Promise((r) => setTimeout(r, HISTORY_INFO_MS));
  }
}

// ---- theme ----

const THEMES = ['auto', 'light', 'dark'];
function applyTheme(name) {
  if (name === 'auto') delete document.documentElement.dataset.theme;
  else document.documentElement.dataset.theme = name;
  document.getElementById('theme').textContent = `Theme: ${name}`;
  localStorage.setItem('pgkernel-theme', name);
  views.memory.draw();
}
function cycleTheme() {
  const now = localStorage.getItem('pgkernel-theme') ?? 'auto';
  applyTheme(THEMES[(THEMES.indexOf(now) + 1) % THEMES.length]);
}

// ---- keyboard ----

const BINDINGS = [
  ['d', 'directory', 'the page directory (arrows move, Enter opens a table)'],
  ...VIEWS.map((v) => [v.key, v.id, v.title.toLowerCase()]),
  ['[', 'prev', 'the previous directory entry\'s table'],
  [']', 'next', 'the next directory entry\'s table'],
  ['p', 'pause', 'pause (hold the moment shown) or back to live'],
  [',', 'back', 'one step back in the history'],
  ['.', 'forward', 'one step forward in the history'],
  ['l', 'theme', 'light, dark or the system\'s theme'],
  ['Escape', 'directory', 'back to the directory'],
  ['?', 'help', 'this help'],
];
const GRID_KEYS = [
  ['← → ↑ ↓', 'move'], ['PageUp PageDown', 'move 8 rows (16 in memory)'], ['Home End', 'start or end of the row'],
  ['Enter', 'open: the table, the frame, who maps it'], ['Escape', 'back (from a table to the directory)'],
];
const actions = {
  directory: () => directory.focus(),
  table: () => { show('table'); views.table.focus(); },
  walk: () => { show('walk'); views.walk.focus(); },
  frame: () => show('frame'),
  history: () => show('history'),
  memory: () => { show('memory'); views.memory.focus(); },
  sharing: () => show('sharing'),
  tasks: () => show('tasks'),
  faults: () => show('faults'),
  prev: () => openTable(Math.max(0, (state.open ?? 1) - 1)),
  next: () => openTable(Math.min(1023, (state.open ?? -1) + 1)),
  pause: togglePause,
  back: () => stepBy(-1),
  forward: () => stepBy(1),
  theme: cycleTheme,
  help: () => document.getElementById('help').showModal(),
};
installKeys(BINDINGS, actions);
renderHelp(document.getElementById('help-keys'), BINDINGS, GRID_KEYS);

document.getElementById('pause').addEventListener('click', togglePause);
document.getElementById('step-back').addEventListener('click', () => stepBy(-1));
document.getElementById('step-forward').addEventListener('click', () => stepBy(1));
document.getElementById('scrubber').addEventListener('input', (e) => {
  const m = Number(e.target.value);
  if (follower.bounds && m === follower.bounds.newest && state.viewing === null) return;
  scrub(m);
});
document.getElementById('theme').addEventListener('click', cycleTheme);
document.getElementById('help-button').addEventListener('click', actions.help);
WIDE.addEventListener('change', arrange);

applyTheme(localStorage.getItem('pgkernel-theme') ?? 'auto');
arrange();
show('table');
renderState();
renderScrub();
follower.start();
statusLoop();
checkmmLoop();
infoLoop();

// For the browser tests and the curious: the page's state, read-only.
window.pgkernel = { state: () => state, follower, views, directory, current, plural };
