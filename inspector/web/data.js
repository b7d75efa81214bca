// data.js: the one module that talks to the inspector; the views see only the model it builds.
//
// The page follows the inspector's history of snapshots (/api/v1/history, recorder.rs):
// one whole moment first (the raw directory, every page table, mem_map, the task table,
// the faults), then the differences to each newer moment as they happen (a long poll of
// /api/v1/history/live). From those raw arrays it builds one `Machine` model per moment.
// A walk, checkmm and the status come from their own endpoints. When the inspector's
// answers change shape or source, only this module changes.

import {
  bitsOf, describe, faultError, countState, frameAddr, linearOf, slotOfIndex, pdeRange,
  ENTRIES_PER_TABLE, PDES_PER_TASK, LOW_MEM, USED, PAGE_SIZE,
} from './entry.js';
import { faultPath } from './functions.js';
import { num } from './format.js';

/** Why a request failed, in the words the banner uses. */
export class ApiError extends Error {
  /**
   * kind: 'unreachable' (the inspector does not answer), 'kernel' (the inspector answers
   * but the kernel does not: 502/503/504), 'refused' (a bad request: 4xx), 'server' (5xx).
   */
  constructor(kind, message, { status = 0, code = '' } = {}) {
    super(message);
    this.kind = kind;
    this.status = status;
    this.code = code;
  }
}

/** The bearer token, from the URL fragment (/#token=T) or this tab's storage. */
function token() {
  const m = /(?:^#|&)token=([^&]+)/.exec(location.hash);
  if (m) {
    sessionStorage.setItem('inspector-token', decodeURIComponent(m[1]));
    history.replaceState(null, '', location.pathname + location.search);
  }
  return sessionStorage.getItem('inspector-token');
}

const TIMEOUT_MS = 12000;

/** GET a JSON answer of the inspector. */
export async function get(path, { timeoutMs = TIMEOUT_MS } = {}) {
  const headers = { Accept: 'application/json' };
  const t = token();
  if (t) headers.Authorization = `Bearer ${t}`;
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), timeoutMs);
  let response;
  try {
    response = await fetch(path, { headers, cache: 'no-store', signal: abort.signal });
  } catch {
    throw new ApiError('unreachable', abort.signal.aborted
      ? `the inspector did not answer within ${timeoutMs / 1000} s`
      : 'the inspector does not answer (was it stopped?)');
  } finally {
    clearTimeout(timer);
  }
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  if (!response.ok) {
    const code = body?.error?.code ?? '';
    const message = body?.error?.message ?? `HTTP ${response.status}`;
    const s = response.status;
    const kind = s === 502 || s === 503 || s === 504 ? 'kernel' : s >= 500 ? 'server' : 'refused';
    throw new ApiError(kind, message, { status: s, code });
  }
  if (body === null) throw new ApiError('server', `${path}: the answer is not JSON`);
  return body;
}

// ---- the status, checkmm and walks: their own endpoints ----

export async function loadStatus() {
  const s = await get('/api/v1/status');
  return {
    connected: s.connected,
    kernel: s.kernel, // running | stopped | paused | unresponsive | unknown
    vm: s.vm, // QEMU's run state (query-status), null without QMP
    gdbAttached: s.gdb_attached,
    stubResponsive: s.stub_responsive,
    cr3: num(s.cr3),
    highMemory: num(s.high_memory),
    source: s.source,
    connects: s.connects,
    qmp: s.qmp,
    allowWrite: s.allow_write,
    gdbStop: s.gdb_stop ?? null,
  };
}

/**
 * checkmm: with the live source, the recorder's run over its newest copy (never a stop of
 * the kernel); else the kernel's own, through /api/v1/checkmm.
 */
export async function loadCheckmm({ live = false, since = null } = {}) {
  let doc = null;
  if (live) doc = (await get(`/api/v1/history${since === null ? '' : `?since=${since}`}`)).checkmm ?? null;
  if (doc === null) {
    if (live) return null;
    doc = await get('/api/v1/checkmm');
  }
  return {
    ok: doc.ok,
    mismatchCount: doc.mismatch_count,
    omitted: doc.omitted ?? 0,
    mismatches: (doc.mismatches ?? []).map((m) => ({
      kind: m.kind, message: m.message, frame: num(m.frame ?? null), linear: num(m.linear ?? null),
    })),
    frames: doc.frames,
    presentPtes: doc.present_ptes,
    takenAt: Date.now(),
  };
}

/** The kernel's walk of one address now (a linear address, or a task's offset), with QEMU's answer. */
export async function walk({ addr, task = null, verify = true }) {
  const q = new URLSearchParams({ addr: '0x' + (addr >>> 0).toString(16) });
  if (task !== null) q.set('task', String(task));
  if (verify) q.set('verify', 'qemu');
  const doc = await get(`/api/v1/walk?${q}`);
  return {
    linear: num(doc.linear),
    task: doc.task ? { pid: doc.task.pid, slot: doc.task.slot, offset: num(doc.task.offset) } : null,
    pde: { index: doc.pde.index, raw: num(doc.pde.raw), flags: doc.pde.flags, present: doc.pde.present },
    table: num(doc.table),
    // The walk always names the table entry's index; raw is null when no table was read.
    pte: doc.pte && doc.pte.raw !== null ? { index: doc.pte.index, raw: num(doc.pte.raw), flags: doc.pte.flags, present: doc.pte.present } : null,
    frame: num(doc.frame),
    count: doc.count ?? null,
    physical: num(doc.physical),
    stop: doc.stop ?? null,
    qemu: doc.qemu ? { physical: num(doc.qemu.physical) } : null,
    agree: doc.agree ?? null,
    source: doc.source,
  };
}

/** The same walk done over a moment of the history (for a moment in the past). */
export function walkAt(machine, linear) {
  const dir = linear >>> 22;
  const index = (linear >>> 12) & 0x3ff;
  const pdeRaw = machine.raw.directory[dir];
  const pde = { index: dir, raw: pdeRaw, flags: describe(pdeRaw), present: (pdeRaw & 1) === 1 };
  const w = {
    linear, task: null, pde, table: null, pte: null, frame: null, count: null, physical: null,
    stop: null, qemu: null, agree: null, source: `history (moment ${machine.moment})`,
  };
  if (!pde.present) {
    w.stop = { level: 'pde', reason: 'no_page_table', swap_slot: null };
    return w;
  }
  w.table = bitsOf(pdeRaw).frame;
  const t = machine.raw.tables.get(dir);
  if (!t) {
    w.pte = { index, raw: null, flags: null, present: null };
    w.stop = { level: 'pde', reason: 'table_beyond_memory', swap_slot: null };
    return w;
  }
  const raw = t[index];
  const b = bitsOf(raw);
  w.pte = { index, raw, flags: describe(raw), present: b.present };
  if (!b.present) {
    w.stop = raw ? { level: 'pte', reason: 'swapped_out', swap_slot: b.swapSlot } : { level: 'pte', reason: 'not_mapped', swap_slot: null };
    return w;
  }
  w.frame = b.frame;
  w.count = machine.countOf(b.frame);
  w.physical = (b.frame + (linear & 0xfff)) >>> 0;
  return w;
}

// ---- the raw state of one moment ----

/** A moment document's arrays as typed arrays. */
function rawFromMoment(doc) {
  const tables = new Map();
  for (const [k, v] of Object.entries(doc.tables)) tables.set(Number(k), Uint32Array.from(v));
  return {
    directory: Uint32Array.from(doc.directory),
    tables,
    counts: Uint8Array.from(doc.counts),
    tasks: doc.tasks,
    faults: doc.faults,
    highMemory: num(doc.high_memory),
    pgDir: num(doc.pg_dir),
  };
}

function metaFromMoment(doc) {
  return { boot: doc.boot, moment: doc.moment, seq: doc.seq, timeMs: doc.time_ms, consistent: doc.consistent, source: doc.source };
}

/**
 * Applies a delta (DeltaDoc) to raw arrays, copy-on-write: what it touches is copied, so
 * an untouched table or mem_map stays the same object and a view can skip it.
 */
export function applyDelta(raw, d, maxFaults = 2048) {
  const out = { ...raw };
  if (d.pdes.length) {
    out.directory = Uint32Array.from(raw.directory);
    for (const [i, , n] of d.pdes) out.directory[i] = n;
  }
  if (d.ptes.length || d.pdes.length) {
    out.tables = new Map(raw.tables);
    const copied = new Set();
    for (const [dir, i, , n] of d.ptes) {
      if (!copied.has(dir)) {
        const old = out.tables.get(dir);
        out.tables.set(dir, old ? Uint32Array.from(old) : new Uint32Array(ENTRIES_PER_TABLE));
        copied.add(dir);
      }
      out.tables.get(dir)[i] = n;
    }
    // A table exists exactly where a present directory entry names one in RAM.
    for (let dir = 0; dir < 1024; dir++) {
      const e = out.directory[dir];
      const names = (e & 1) === 1 && bitsOf(e).frame < out.highMemory;
      if (names && !out.tables.has(dir)) out.tables.set(dir, new Uint32Array(ENTRIES_PER_TABLE));
      if (!names) out.tables.delete(dir);
    }
  }
  if (d.counts.length || d.counts_len) {
    const len = d.counts_len ? d.counts_len[1] : raw.counts.length;
    out.counts = new Uint8Array(len);
    out.counts.set(raw.counts.subarray(0, Math.min(len, raw.counts.length)));
    for (const [i, , n] of d.counts) if (i < len) out.counts[i] = n;
  }
  if (d.tasks.length) {
    const byPid = new Map(raw.tasks.map((t) => [t.pid, t]));
    for (const c of d.tasks) {
      if (c.new) byPid.set(c.pid, c.new);
      else byPid.delete(c.pid);
    }
    out.tasks = [...byPid.values()].sort((a, b) => a.pid - b.pid);
  }
  if (d.faults.length) out.faults = raw.faults.concat(d.faults).slice(-maxFaults);
  return out;
}

// ---- the model the views see ----

function normFault(f) {
  return {
    seq: f.seq,
    pid: f.pid,
    linear: num(f.linear),
    eip: num(f.eip),
    errorCode: f.error_code,
    error: faultError(f.error_code),
    write: (f.error_code & 2) !== 0,
    protection: (f.error_code & 1) !== 0,
    byKernel: f.by_kernel,
    action: f.action,
    actionText: faultPath(f.action).text,
  };
}

/**
 * The views' model of one moment: the directory decoded entry by entry, each table's
 * summary, the tasks with their pages counted, mem_map, the faults. Tables are decoded
 * on demand (`tableOf`), and frames' mappers found by scanning them (`mappersOf`).
 */
export function buildMachine(raw, meta, extras = {}) {
  const { directory, tables, counts, highMemory } = raw;
  const taskRows = raw.tasks;
  const taskBySlot = new Map();
  for (const t of taskRows) if (t.state !== 'zombie' || !taskBySlot.has(t.slot)) taskBySlot.set(t.slot, t);
  const countOf = (frame) => {
    if (frame < LOW_MEM) return null;
    const i = (frame - LOW_MEM) / PAGE_SIZE;
    return i < counts.length ? counts[i] : null;
  };
  const summaries = new Map();
  const pdes = new Array(1024).fill(null);
  let present = 0;
  let notPresentNonzero = 0;
  for (let i = 0; i < 1024; i++) {
    const e = directory[i];
    if (!(e & 1)) {
      if (e) notPresentNonzero++;
      continue;
    }
    present++;
    const b = bitsOf(e);
    const t = tables.get(i);
    let p = 0, shared = 0, swap = 0, ro = 0;
    if (t) {
      for (let k = 0; k < ENTRIES_PER_TABLE; k++) {
        const x = t[k];
        if (!x) continue;
        if (x & 1) {
          p++;
          if (!(x & 2)) ro++;
          // As monitor tasks counts shared pages: a count above 1 (the kernel's USED too).
          const c = countOf((x & ~0xfff) >>> 0);
          if (c !== null && c > 1) shared++;
        } else swap++;
      }
      summaries.set(i, { present: p, shared, swap, ro });
    }
    const slot = slotOfIndex(i);
    const { start, last } = pdeRange(i);
    pdes[i] = {
      index: i, raw: e, flags: describe(e), user: b.user, writable: b.writable, accessed: b.accessed,
      start, last, table: b.frame, tableReadable: !!t, presentPtes: t ? p : null,
      slot, pid: taskBySlot.get(slot)?.pid ?? null,
    };
  }
  // Per slot: present pages, of those shared, page tables, swap entries (as `tasks` counts them).
  const perSlot = new Map();
  for (const [i, s] of summaries) {
    const slot = slotOfIndex(i);
    const u = perSlot.get(slot) ?? { pages: 0, sharedPages: 0, pageTables: 0, swapped: 0 };
    u.pages += s.present;
    u.sharedPages += s.shared;
    u.pageTables += 1;
    u.swapped += s.swap;
    perSlot.set(slot, u);
  }
  const list = taskRows.map((t) => ({
    pid: t.pid, ppid: t.parent_pid, state: t.state, slot: t.slot, program: t.program,
    ...(perSlot.get(t.slot) ?? { pages: 0, sharedPages: 0, pageTables: 0, swapped: 0 }),
  }));
  let reserved = 0;
  while (reserved < counts.length && counts[reserved] === USED) reserved++;
  const records = raw.faults.map(normFault);
  const machine = {
    ...meta,
    takenAt: extras.takenAt ?? Date.now(),
    raw,
    countOf,
    directory: { pgDir: raw.pgDir, present, notPresentNonzero, pdes },
    summaries,
    tasks: { list },
    taskBySlot: new Map(list.filter((t) => taskBySlot.get(t.slot)?.pid === t.pid).map((t) => [t.slot, t])),
    frames: { counts, highMemory, startMem: frameAddr(reserved), reserved },
    faults: { records, sinceBoot: records.length ? records[records.length - 1].seq : 0 },
    checkmm: extras.checkmm ?? null,
    status: extras.status ?? null,
    errors: {},
  };
  const decoded = new Map();
  /** Directory entry `index`'s table, all 1024 entries decoded (null: zero entry). */
  machine.tableOf = (index) => {
    if (decoded.has(index)) return decoded.get(index);
    const pde = pdes[index];
    const t = tables.get(index);
    const slot = slotOfIndex(index);
    const { start, last } = pdeRange(index);
    const entries = new Array(ENTRIES_PER_TABLE).fill(null);
    let nPresent = 0, nSwap = 0;
    if (t) {
      for (let k = 0; k < ENTRIES_PER_TABLE; k++) {
        const x = t[k];
        if (!x) continue;
        const b = bitsOf(x);
        if (b.present) nPresent++; else nSwap++;
        entries[k] = {
          index: k, linear: linearOf(index, k), raw: x, flags: describe(x), present: b.present,
          user: b.user, writable: b.writable, accessed: b.accessed, dirty: b.dirty,
          frame: b.present ? b.frame : null, count: b.present ? countOf(b.frame) : null,
          swapSlot: b.swapSlot,
        };
      }
    }
    const table = {
      index, start, last, slot, pid: taskBySlot.get(slot)?.pid ?? null,
      pde: { raw: directory[index], flags: describe(directory[index]), present: !!pde },
      table: pde ? pde.table : null, tableReadable: !!t, entries, present: nPresent, swap: nSwap,
      source: meta.source, words: t ?? null,
    };
    decoded.set(index, table);
    return table;
  };
  let reverse = null;
  /** Every (task, linear address) whose user page-table entry maps `frame` (one pass over the tables, on first use). */
  machine.mappersOf = (frame) => {
    if (!reverse) {
      reverse = new Map();
      for (const [dir, t] of tables) {
        if (dir < PDES_PER_TASK) continue;
        const slot = slotOfIndex(dir);
        const task = taskBySlot.get(slot);
        for (let k = 0; k < ENTRIES_PER_TABLE; k++) {
          const x = t[k];
          if (!(x & 1)) continue;
          const f = (x & ~0xfff) >>> 0;
          if (!reverse.has(f)) reverse.set(f, []);
          reverse.get(f).push({
            slot, pid: task?.pid ?? null, program: task?.program ?? null, linear: linearOf(dir, k),
            dir, index: k, raw: x, flags: describe(x), writable: (x & 2) !== 0,
          });
        }
      }
    }
    return reverse.get(frame) ?? [];
  };
  /** Frames with a count above 1 (and not USED). */
  machine.sharedFrames = () => {
    const out = [];
    counts.forEach((c, i) => { if (countState(c) === 'shared') out.push({ frame: frameAddr(i), count: c }); });
    return out;
  };
  return machine;
}

// ---- following the history ----

/** A step's summary as the views use it. */
function normStep(s) {
  return {
    moment: s.moment, seq: s.seq, timeMs: s.time_ms, consistent: s.consistent,
    pdes: s.pdes, ptes: s.ptes, counts: s.counts, tasks: s.tasks, faults: s.faults, events: s.events,
  };
}

/** One moment of the history, whole. */
export async function loadMoment(moment) {
  const doc = await get(`/api/v1/history/moments/${moment}`);
  return { raw: rawFromMoment(doc), meta: metaFromMoment(doc) };
}

/** What changed from moment a to moment b. */
export async function loadDiff(a, b) {
  return get(`/api/v1/history/diff?from=${a}&to=${b}`);
}

/** The history's bounds and its steps after `since`. */
export async function loadHistory(since = null) {
  const d = await get(`/api/v1/history${since === null ? '' : `?since=${since}`}`);
  return { ...d, steps: d.steps.map(normStep) };
}

/**
 * Follows the newest moment: a long poll of /api/v1/history/live that answers as soon as
 * the kernel changed. `onUpdate(raw, meta, steps, bounds)` after each new moment; `onError(e)`
 * when a poll fails (it retries every second).
 */
export class Follower {
  constructor({ onUpdate, onError, waitMs = 2000 }) {
    this.onUpdate = onUpdate;
    this.onError = onError;
    this.waitMs = waitMs;
    this.raw = null;
    this.meta = null;
    this.steps = [];
    this.running = false;
    this.polls = 0;
    this.updates = 0;
  }

  start() {
    if (this.running) return;
    this.running = true;
    this.loop();
  }

  async loop() {
    while (this.running) {
      const q = new URLSearchParams({ wait_ms: String(this.waitMs) });
      if (this.meta) {
        q.set('after', String(this.meta.moment));
        q.set('boot', String(this.meta.boot));
      }
      try {
        const d = await get(`/api/v1/history/live?${q}`, { timeoutMs: this.waitMs + TIMEOUT_MS });
        this.polls++;
        this.take(d);
      } catch (e) {
        this.onError(e);
        await new Promise((r) => setTimeout(r, 1000));
      }
    }
  }

  take(d) {
    let changed = false;
    if (d.reset) {
      this.raw = rawFromMoment(d.moment);
      this.meta = metaFromMoment(d.moment);
      this.steps = d.steps.map(normStep);
      changed = true;
    } else if (d.delta && this.raw && d.delta.from === this.meta.moment) {
      this.raw = applyDelta(this.raw, d.delta);
      this.meta = { ...this.meta, moment: d.delta.to };
      const last = d.steps[d.steps.length - 1];
      if (last) Object.assign(this.meta, { seq: last.seq, timeMs: last.time_ms, consistent: last.consistent });
      const known = new Set(this.steps.map((s) => s.moment));
      this.steps.push(...d.steps.map(normStep).filter((s) => !known.has(s.moment)));
      changed = true;
    }
    this.steps = this.steps.filter((s) => s.moment > d.oldest).slice(-4096);
    this.bounds = { oldest: d.oldest, newest: d.newest, boot: d.boot };
    if (changed) this.updates++;
    this.onUpdate(this.raw, this.meta, this.steps, this.bounds, changed);
  }
}
