// data.js: the one module that talks to the inspector; the views see only the model it builds.
//
// Everything the page shows comes through here: the monitor's documents (kernel/docs/monitor.md)
// fetched from /api/v1 and turned into one `Machine` model (numbers instead of hex
// strings, the directory as 1024 slots, mem_map as bytes). When the inspector's answers
// change shape (typed documents) or source (live snapshots, history), only this module
// changes.

import { num } from './format.js';
import { bitsOf, ENTRIES_PER_TABLE, PDES_PER_TASK } from './entry.js';

/** Why a request failed, in the words the banner uses. */
export class ApiError extends Error {
  /**
   * kind: 'unreachable' (the inspector does not answer), 'kernel' (the inspector answers
   * but the kernel does not: 503/504), 'refused' (a bad request: 4xx), 'server' (5xx).
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
  } catch (e) {
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
    const kind = s === 503 || s === 504 || s === 502 ? 'kernel' : s >= 500 ? 'server' : 'refused';
    throw new ApiError(kind, message, { status: s, code });
  }
  if (body === null) throw new ApiError('server', `${path}: the answer is not JSON`);
  return body;
}

// ---- normalising the monitor's documents ----

function normStatus(s) {
  return {
    connected: s.connected,
    kernel: s.kernel, // running | stopped | unknown
    gdbAttached: s.gdb_attached,
    stubResponsive: s.stub_responsive,
    cr3: num(s.cr3),
    highMemory: num(s.high_memory),
    source: s.source,
    connects: s.connects,
    qmp: s.qmp,
    allowWrite: s.allow_write,
  };
}

function normDirectory(doc) {
  const pdes = new Array(1024).fill(null);
  for (const e of doc.entries ?? []) {
    pdes[e.index] = {
      index: e.index,
      raw: num(e.raw),
      flags: e.flags,
      user: e.user,
      writable: e.writable,
      accessed: e.accessed,
      start: num(e.start),
      last: num(e.last),
      table: num(e.table),
      tableReadable: e.table_readable,
      presentPtes: e.present_ptes ?? null,
      slot: e.slot,
      pid: e.pid ?? null,
    };
  }
  return {
    pgDir: num(doc.pg_dir),
    present: doc.present,
    notPresentNonzero: doc.not_present_nonzero ?? 0,
    pdes,
    source: doc.source,
  };
}

function normTask(t) {
  return {
    pid: t.pid,
    ppid: t.parent_pid,
    state: t.state,
    slot: t.slot,
    program: t.program,
    current: t.current,
    start: num(t.start),
    last: num(t.last),
    endCode: num(t.end_code),
    endData: num(t.end_data),
    brk: num(t.brk),
    pages: t.pages,
    sharedPages: t.shared_pages,
    pageTables: t.page_tables,
    swapped: t.swapped,
    killedBy: t.killed_by,
    faults: t.faults ?? {},
  };
}

function normMemMap(doc) {
  return {
    start: num(doc.start),
    end: num(doc.end),
    highMemory: num(doc.high_memory),
    startMem: num(doc.start_mem),
    counts: Uint8Array.from(doc.counts),
    free: doc.free,
    used: doc.used,
    located: doc.located,
    source: doc.source,
  };
}

function normShowmem(doc) {
  return {
    highMemory: num(doc.high_memory),
    startMem: num(doc.start_mem),
    pagingFrames: doc.paging_frames,
    free: doc.free,
    used: doc.used,
    sharedFrames: doc.shared_frames,
    sharedReferences: doc.shared_references,
    reserved: doc.reserved,
    tasks: doc.tasks ?? [],
    shared: (doc.shared ?? []).map((s) => ({ frame: num(s.frame), count: s.count })),
    sharedOmitted: doc.shared_omitted ?? 0,
    swap: doc.swap ?? null,
  };
}

/** A checkmm mismatch: its kind, message, and the frame / linear address it names (if any). */
function normMismatch(m) {
  return {
    kind: m.kind,
    message: m.message,
    frame: num(m.frame ?? null),
    linear: num(m.linear ?? null),
    raw: m,
  };
}

function normCheckmm(doc) {
  return {
    ok: doc.ok,
    mismatchCount: doc.mismatch_count,
    omitted: doc.omitted ?? 0,
    mismatches: (doc.mismatches ?? []).map(normMismatch),
    frames: doc.frames,
    presentPdes: doc.present_pdes,
    presentPtes: doc.present_ptes,
    swapEntries: doc.swap_entries,
  };
}

export function normFault(f) {
  return {
    seq: f.seq,
    pid: f.pid,
    linear: num(f.linear),
    eip: num(f.eip),
    errorCode: f.error_code,
    error: f.error,
    write: f.write,
    protection: f.protection,
    byKernel: f.by_kernel,
    action: f.action,
    actionText: f.action_text,
  };
}

function normFaults(doc) {
  return {
    capacity: doc.capacity,
    sinceBoot: doc.since_boot,
    records: (doc.faults ?? []).map(normFault),
    totals: doc.totals ?? {},
    complete: doc.complete,
  };
}

function normEntry(e) {
  const raw = num(e.raw);
  const b = bitsOf(raw);
  return {
    index: e.index,
    linear: num(e.linear),
    raw,
    flags: e.flags,
    present: e.present,
    user: b.user,
    writable: b.writable,
    accessed: b.accessed,
    dirty: b.dirty,
    frame: num(e.frame),
    count: e.count ?? null,
    swapSlot: e.swap_slot ?? null,
  };
}

function normTable(doc) {
  const entries = new Array(ENTRIES_PER_TABLE).fill(null);
  for (const e of doc.entries ?? []) entries[e.index] = normEntry(e);
  return {
    index: doc.index,
    start: num(doc.start),
    last: num(doc.last),
    slot: doc.slot,
    pid: doc.pid ?? null,
    pde: { raw: num(doc.pde?.raw), flags: doc.pde?.flags, present: doc.pde?.present },
    table: num(doc.table),
    tableReadable: doc.table_readable,
    entries,
    present: doc.present,
    swap: doc.swap,
    source: doc.source,
  };
}

function normWalk(doc) {
  return {
    linear: num(doc.linear),
    task: doc.task ? { pid: doc.task.pid, slot: doc.task.slot, offset: num(doc.task.offset) } : null,
    pde: { index: doc.pde.index, raw: num(doc.pde.raw), flags: doc.pde.flags, present: doc.pde.present },
    table: num(doc.table),
    pte: doc.pte ? { index: doc.pte.index, raw: num(doc.pte.raw), flags: doc.pte.flags, present: doc.pte.present } : null,
    frame: num(doc.frame),
    count: doc.count ?? null,
    physical: num(doc.physical),
    stop: doc.stop ?? null,
    qemu: doc.qemu ? { physical: num(doc.qemu.physical) } : null,
    agree: doc.agree ?? null,
    source: doc.source,
  };
}

// ---- what the views ask for ----

/**
 * One look at the whole machine. Parts that fail are null and their error is kept in
 * `errors` (a post-mortem answer has a directory from QEMU but no task table, say).
 * While the kernel is not connected only the status is asked for (the other answers
 * would be 503s), unless `postMortem`: then QEMU's view of memory is asked for too.
 */
export async function loadMachine({ postMortem = false } = {}) {
  const began = performance.now();
  const status = normStatus(await get('/api/v1/status'));
  const parts = {};
  if (status.connected || (postMortem && status.qmp)) {
    parts.directory = get('/api/v1/page-directory?all=true').then(normDirectory);
    parts.frames = get('/api/v1/mem-map').then(normMemMap);
  }
  if (status.connected) {
    parts.tasks = get('/api/v1/tasks').then((d) => ({
      currentSlot: d.current_slot,
      list: d.tasks.map(normTask),
      source: d.source,
    }));
    parts.showmem = get('/api/v1/showmem').then(normShowmem);
    parts.checkmm = get('/api/v1/checkmm').then(normCheckmm);
    parts.faults = get('/api/v1/faults').then(normFaults);
  }
  const names = Object.keys(parts);
  const settled = await Promise.allSettled(Object.values(parts));
  const machine = {
    takenAt: Date.now(), errors: {}, seq: null, status,
    directory: null, frames: null, tasks: null, showmem: null, checkmm: null, faults: null,
  };
  settled.forEach((r, i) => {
    const name = names[i];
    if (r.status === 'fulfilled') machine[name] = r.value;
    else machine.errors[name] = r.reason instanceof ApiError ? r.reason : new ApiError('server', String(r.reason));
  });
  machine.duration = performance.now() - began;
  machine.source = machine.directory?.source ?? (status.connected ? status.source : null);
  machine.taskBySlot = new Map((machine.tasks?.list ?? []).map((t) => [t.slot, t]));
  machine.generation = `${status.connects}:${machine.takenAt}`;
  return machine;
}

/** One page table (directory index 0..1023), all 1024 entries (null: zero entry). */
export async function loadTable(index) {
  return normTable(await get(`/api/v1/page-tables/${index}`));
}

/** The software walk of one address (a linear address, or a task's offset), with QEMU's answer. */
export async function walk({ addr, task = null, verify = true }) {
  const q = new URLSearchParams({ addr: '0x' + (addr >>> 0).toString(16) });
  if (task !== null) q.set('task', String(task));
  if (verify) q.set('verify', 'qemu');
  return normWalk(await get(`/api/v1/walk?${q}`));
}

/**
 * The page tables of every present user directory entry (slots 1..63), for the views that
 * need who maps a frame. Through the stub each table is a monitor command, so they are
 * fetched one at a time and kept per machine look.
 */
export class TableCache {
  constructor() {
    this.generation = null;
    this.tables = new Map();
    this.pending = new Map();
  }

  /** Drops tables of an older look at the machine. */
  sync(machine) {
    if (machine.generation !== this.generation) {
      this.generation = machine.generation;
      this.tables = new Map();
      this.pending = new Map();
    }
  }

  async get(index) {
    if (this.tables.has(index)) return this.tables.get(index);
    if (!this.pending.has(index)) {
      const generation = this.generation;
      this.pending.set(index, loadTable(index).then((t) => {
        if (generation === this.generation) this.tables.set(index, t);
        return t;
      }).finally(() => this.pending.delete(index)));
    }
    return this.pending.get(index);
  }

  /** Every present user table of `machine`; `progress(done, total)` after each. */
  async userTables(machine, progress = () => {}) {
    this.sync(machine);
    const indices = (machine.directory?.pdes ?? [])
      .filter((p) => p && p.index >= PDES_PER_TASK && p.tableReadable)
      .map((p) => p.index);
    let done = 0;
    progress(done, indices.length);
    const out = new Map();
    for (const i of indices) {
      out.set(i, await this.get(i));
      progress(++done, indices.length);
    }
    return out;
  }
}

/** Every (task slot, linear address) whose user page-table entry maps `frame`. */
export function mappersOf(frame, tables, machine) {
  const out = [];
  for (const t of tables.values()) {
    for (const e of t.entries) {
      if (e && e.present && e.frame === frame) {
        out.push({
          slot: t.slot,
          pid: t.pid,
          program: machine.taskBySlot.get(t.slot)?.program ?? null,
          linear: e.linear,
          dir: t.index,
          index: e.index,
          raw: e.raw,
          flags: e.flags,
          writable: e.writable,
        });
      }
    }
  }
  return out;
}
