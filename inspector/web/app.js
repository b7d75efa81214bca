// app.js: the web view's entry: the layout, the tabs, the update loop, the banner and the keyboard.

import { h, fill, hideTip } from './dom.js';
import { clock } from './format.js';
import { loadMachine, TableCache } from './data.js';
import { DirectoryView, summarise } from './directory.js';
import { TableView } from './table.js';
import { WalkView } from './walk.js';
import { FrameView } from './frame.js';
import { MemoryView } from './memory.js';
import { SharingView } from './sharing.js';
import { TasksView } from './tasks.js';
import { FaultsView } from './faults.js';
import { installKeys, renderHelp } from './keys.js';

/** The views of the detail panels; group b moves to a panel of its own on wide screens. */
const VIEWS = [
  { id: 'table', title: 'Page table', key: 'e', group: 'a' },
  { id: 'walk', title: 'Walk', key: 'w', group: 'a' },
  { id: 'frame', title: 'Frame', key: 'r', group: 'a' },
  { id: 'memory', title: 'Physical memory', key: 'm', group: 'b' },
  { id: 'sharing', title: 'Sharing', key: 's', group: 'b' },
  { id: 'tasks', title: 'Tasks', key: 'k', group: 'b' },
  { id: 'faults', title: 'Faults', key: 'f', group: 'b' },
];
const WIDE = window.matchMedia('(min-width: 1700px)');
/** How often to look when every look stops the kernel (the stub), and when it does not (live). */
const STUB_MIN_MS = 1000;
const STUB_MAX_MS = 5000;
const LIVE_MS = 100;
const RETRY_MS = 1000;
/** Views that read every user page table: through the stub, not more often than this. */
const COSTLY_EVERY_MS = 10000;

const state = {
  machine: null,
  lastGood: null,
  paused: false,
  open: null, // the directory index whose table is shown
  error: null,
  timer: null,
  shown: { a: 'table', b: 'memory' },
  costlyAt: 0,
};

const tables = new TableCache();
const ctx = {
  machine: () => state.machine,
  tables,
  selected: () => state.open,
  open: (index) => openTable(index),
  openTable: (index) => openTable(index),
  openFrame: (frame, hint) => { show('frame'); views.frame.show(frame, hint); },
  walk: (linear) => { show('walk'); views.walk.walkLinear(linear); },
  focusDirectory: (index) => { if (index !== undefined) directory.setActive(index); directory.focus(); },
  tablesLoaded: (t) => directory.setSummaries(summarise(t)),
  entryAround: async () => null,
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
  refreshVisible();
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
    const otherGroup = wide ? other.group : 'a';
    if (otherGroup === group) select(other.id, other.id === id);
  }
  state.shown[group] = id;
  hideTip();
  refreshVisible();
}

const visible = (id) => !sections[id].hidden;

// ---- the views ----

const directory = new DirectoryView(document.getElementById('directory-grid'), document.getElementById('directory-legend'), ctx);
const views = {
  table: new TableView(sections.table, ctx),
  walk: new WalkView(sections.walk, ctx),
  frame: new FrameView(sections.frame, ctx),
  memory: new MemoryView(sections.memory, ctx),
  sharing: new SharingView(sections.sharing, ctx),
  tasks: new TasksView(sections.tasks, ctx),
  faults: new FaultsView(sections.faults, ctx),
};

function openTable(index) {
  state.open = index;
  directory.setActive(index);
  show('table');
  views.table.show(index);
  if (state.machine) directory.update(state.machine);
}

/** Brings the views that read page tables up to date, when they are on screen. */
function refreshVisible() {
  const m = state.machine;
  if (!m) return;
  const cheap = m.source === 'live';
  const now = Date.now();
  if (visible('sharing') && (cheap || now - state.costlyAt > COSTLY_EVERY_MS)) {
    state.costlyAt = now;
    views.sharing.update(m);
  }
  if (visible('memory')) views.memory.draw();
}

// ---- the update loop ----

function render(machine) {
  state.machine = machine;
  tables.sync(machine);
  directory.update(machine);
  views.walk.update(machine);
  views.memory.update(machine);
  views.tasks.update(machine);
  views.faults.update(machine);
  if (visible('table') && state.open !== null) views.table.refresh();
  refreshVisible();
  renderTotals(machine);
}

function renderTotals(m) {
  const free = m.frames ? m.frames.counts.reduce((a, c) => a + (c === 0 ? 1 : 0), 0) : null;
  const items = [
    ['free frames', free === null ? '-' : String(free), 'total-free'],
    ['tasks', m.tasks ? String(m.tasks.list.length) : '-', 'total-tasks'],
    ['faults', m.faults ? String(m.faults.sinceBoot) : '-', 'total-faults'],
    ['source', m.source ?? '-', 'total-source'],
    ['as of', clock(m.takenAt), 'total-time'],
  ];
  fill(document.getElementById('totals'), ...items.map(([k, v, id]) => h('div', {}, h('dt', {}, k), h('dd', { id }, v))));
}

function renderState() {
  const m = state.machine;
  const el = document.getElementById('state');
  const banner = document.getElementById('banner');
  let pill;
  let message = null;
  if (state.error) {
    pill = h('span', { class: 'pill down' }, 'no answer');
    message = [h('span', {}, state.error.message), h('small', {}, state.lastGood
      ? `Showing the state as of ${clock(state.lastGood)}; retrying every second.`
      : 'Retrying every second.')];
  } else if (!m) {
    pill = h('span', { class: 'pill' }, 'connecting…');
  } else if (state.status && !state.status.connected) {
    pill = h('span', { class: 'pill down' }, 'kernel gone');
    message = [h('span', {}, 'The kernel is not connected (QEMU stopped or restarting).'),
      h('small', {}, m.source === 'qemu' && !m.status.connected
        ? 'Showing QEMU\'s own view of memory (post-mortem); the page recovers by itself when the kernel is back.'
        : state.lastGood
          ? `Showing the state as of ${clock(state.lastGood)}; the page recovers by itself when the kernel is back.`
          : 'The page shows it by itself when the kernel is back.')];
  } else if (m.source === 'qemu') {
    pill = h('span', { class: 'pill down' }, 'stub silent');
    message = [h('span', {}, 'The kernel\'s stub does not answer: this is QEMU\'s view of memory (post-mortem: no pids, no counts).')];
  } else if (m.status.kernel === 'stopped') {
    pill = h('span', { class: 'pill stopped', title: 'gdb has the kernel stopped: this is its state at the stop; continue in gdb to see it move' }, 'stopped by gdb');
  } else {
    pill = h('span', { class: 'pill running' }, state.paused ? 'running (view paused)' : 'running');
  }
  const errs = m ? Object.entries(m.errors) : [];
  const extra = [];
  if (m && !state.error && state.status?.connected) {
    extra.push(h('span', {
      class: 'muted',
      title: m.source === 'live'
        ? 'one look at the machine, read from guest RAM without stopping the kernel'
        : 'one look at the machine through the kernel\'s stub: each look stops the kernel briefly, so the view looks every few seconds',
    }, `${Math.round(m.duration)} ms a look`));
  }
  fill(el, pill, ...extra);
  if (!message && errs.length) {
    message = [h('span', {}, `Part of the state could not be read: ${errs.map(([k, e]) => `${k}: ${e.message}`).join('; ')}`)];
  }
  banner.hidden = !message;
  if (message) fill(banner, ...message);
  document.body.classList.toggle('stale', !!state.error || (state.status && !state.status.connected));
}

function schedule(ms) {
  clearTimeout(state.timer);
  state.timer = setTimeout(cycle, ms);
}

/** How often QEMU's post-mortem view is asked for while the kernel is gone. */
const POST_MORTEM_EVERY_MS = 15000;

async function cycle() {
  if (state.paused) return;
  let delay = RETRY_MS;
  try {
    const postMortem = Date.now() - (state.postMortemAt ?? 0) > POST_MORTEM_EVERY_MS;
    const machine = await loadMachine({ postMortem });
    state.error = null;
    state.status = machine.status;
    if (machine.status.connected) {
      state.lastGood = machine.takenAt;
      state.postMortemAt = 0;
      if (!state.paused) render(machine);
      delay = machine.source === 'live' ? LIVE_MS : Math.min(STUB_MAX_MS, Math.max(STUB_MIN_MS, 3 * machine.duration));
    } else {
      // The kernel is gone: keep the last picture (greyed), or QEMU's view when it has one.
      if (postMortem) state.postMortemAt = Date.now();
      if (machine.directory && !state.paused) render(machine);
    }
  } catch (e) {
    state.error = e;
  }
  renderState();
  schedule(delay);
}

function togglePause() {
  state.paused = !state.paused;
  const b = document.getElementById('pause');
  b.setAttribute('aria-pressed', String(state.paused));
  b.textContent = state.paused ? 'Resume' : 'Pause';
  if (!state.paused) cycle();
  renderState();
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
  ['p', 'pause', 'pause or resume the updates'],
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
  memory: () => { show('memory'); views.memory.focus(); },
  sharing: () => show('sharing'),
  tasks: () => show('tasks'),
  faults: () => show('faults'),
  prev: () => openTable(Math.max(0, (state.open ?? 1) - 1)),
  next: () => openTable(Math.min(1023, (state.open ?? -1) + 1)),
  pause: togglePause,
  theme: cycleTheme,
  help: () => document.getElementById('help').showModal(),
};
installKeys(BINDINGS, actions);
renderHelp(document.getElementById('help-keys'), BINDINGS, GRID_KEYS);

document.getElementById('pause').addEventListener('click', togglePause);
document.getElementById('theme').addEventListener('click', cycleTheme);
document.getElementById('help-button').addEventListener('click', actions.help);
WIDE.addEventListener('change', arrange);

applyTheme(localStorage.getItem('pgkernel-theme') ?? 'auto');
arrange();
show('table');
renderState();
cycle();

// For the browser tests and the curious: the current model, read-only.
window.pgkernel = { state: () => state, views, directory };
