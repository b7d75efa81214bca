"""pgkernel_core: the decoding and rendering behind the gdb scripts, without gdb.

Everything here is plain Python 3 (standard library only), so it is unit-tested on the
host with `python3 -m unittest discover -s gdb` and imported by gdb/pgkernel.py inside
gdb. It mirrors the kernel's decoders: `mm::entry::Entry::describe` (flag letters) and
`mm::addr::LinearAddr` (directory, table and offset indices, the task slot).
"""

import json
import re

# --- i386 paging constants (kernel/mm/src/addr.rs) ---------------------------------
PAGE_SIZE = 4096
PAGE_SHIFT = 12
ENTRIES_PER_TABLE = 1024
PDE_SHIFT = 22
PDE_SPAN = 1 << PDE_SHIFT
TASK_SIZE = 64 << 20
PDES_PER_TASK = TASK_SIZE // PDE_SPAN
NR_TASKS = 64

# --- entry flag bits (kernel/mm/src/entry.rs, EntryFlags) ---------------------------
PRESENT = 1 << 0
WRITABLE = 1 << 1
USER = 1 << 2
WRITE_THROUGH = 1 << 3
CACHE_DISABLE = 1 << 4
ACCESSED = 1 << 5
DIRTY = 1 << 6
HUGE = 1 << 7
GLOBAL = 1 << 8

# The optional flags in the order Entry::describe prints them.
_OPTIONAL_FLAGS = (
    (WRITE_THROUGH, "PWT"),
    (CACHE_DISABLE, "PCD"),
    (ACCESSED, "A"),
    (DIRTY, "D"),
    (HUGE, "PS"),
    (GLOBAL, "G"),
)

U32 = 0xFFFF_FFFF


def is_present(raw):
    return bool(raw & PRESENT)


def is_swap(raw):
    """Not present but not zero: 0.12 keeps a swap entry (`slot << 1`) there."""
    return raw != 0 and not raw & PRESENT


def swap_slot(raw):
    return (raw & U32) >> 1


def entry_frame(raw):
    """The frame named by bits 31..12 (meaningful only when present)."""
    return raw & U32 & ~(PAGE_SIZE - 1)


def describe_entry(raw):
    """The flag letters of an entry, exactly as `Entry::describe` prints them.

    `P RW US A D`, `P RO SV`, `not present`, `swap slot 42`.
    """
    raw &= U32
    if is_swap(raw):
        return f"swap slot {swap_slot(raw)}"
    if not raw & PRESENT:
        return "not present"
    words = ["P", "RW" if raw & WRITABLE else "RO", "US" if raw & USER else "SV"]
    words += [name for bit, name in _OPTIONAL_FLAGS if raw & bit]
    return " ".join(words)


def format_entry(raw):
    """One line for a PDE/PTE: raw value, decoded flags and, when present, the frame."""
    raw &= U32
    text = f"0x{raw:08x} [{describe_entry(raw)}]"
    if raw & PRESENT:
        text += f" frame 0x{entry_frame(raw):08x}"
    return text


# --- linear addresses ---------------------------------------------------------------
def dir_index(addr):
    return (addr & U32) >> PDE_SHIFT


def table_index(addr):
    return ((addr & U32) >> PAGE_SHIFT) & (ENTRIES_PER_TABLE - 1)


def page_offset(addr):
    return addr & (PAGE_SIZE - 1)


def slot_of(addr):
    """The task slot (0..63) a linear address falls in."""
    return (addr & U32) // TASK_SIZE


def slot_base(slot):
    return (slot * TASK_SIZE) & U32


def linear(offset, slot):
    """Segment base of task slot `slot` + `offset` (0.11: `nr * 0x4000000 + offset`)."""
    if not 0 <= offset < TASK_SIZE:
        raise ValueError(f"offset 0x{offset:x} is outside a 64 MiB segment")
    if not 0 <= slot < NR_TASKS:
        raise ValueError(f"slot {slot} is not in 0..{NR_TASKS - 1}")
    return slot_base(slot) + offset


def format_linear(addr):
    """`0x08403abc (dir 33, table 3, offset 0xabc; slot 2 + 0x00403abc)`."""
    addr &= U32
    return (f"0x{addr:08x} (dir {dir_index(addr)}, table {table_index(addr)}, "
            f"offset 0x{page_offset(addr):03x}; slot {slot_of(addr)} + "
            f"0x{addr % TASK_SIZE:08x})")


def format_phys(addr):
    """`0x00fd5123 (frame 0x00fd5000 + 0x123)`."""
    addr &= U32
    return f"0x{addr:08x} (frame 0x{entry_frame(addr):08x} + 0x{page_offset(addr):03x})"


def format_frame(addr):
    addr &= U32
    text = f"frame 0x{addr:08x}"
    if addr & (PAGE_SIZE - 1):
        text += " (not page aligned!)"
    return text


# --- parsing user input ---------------------------------------------------------------
def parse_int(text):
    """An integer in C syntax (0x.., 0o.., 0b.., decimal), with optional `_` separators."""
    text = text.strip().replace("_", "")
    if not text:
        raise ValueError("empty number")
    return int(text, 0)


def hex_to_int(value):
    """A JSON address ("0x0040a000" string, or a plain number) as an int; None stays None."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        return parse_int(value)
    raise ValueError(f"not an address: {value!r}")


# --- symbols --------------------------------------------------------------------------
_INFO_FUNCTIONS_LINE = re.compile(r"^\s*(?:\d+:\s+)(?P<rest>\S.*)$")
_NON_DEBUGGING_LINE = re.compile(r"^\s*0x(?P<addr>[0-9a-fA-F]+)\s+(?P<name>\S.*)$")


def _cut_at_top_level_paren(text):
    """The part of `text` before its first `(` outside `<...>` and `{...}`."""
    depth = 0
    for i, ch in enumerate(text):
        if ch in "<{[":
            depth += 1
        elif ch in ">}]":
            depth -= 1
        elif ch == "(" and depth <= 0:
            return text[:i]
    return text.rstrip(";")


def strip_generics(name):
    """`a::B<X>::f<Y>` -> `a::B::f`: the path without generic arguments."""
    out, depth = [], 0
    for ch in name:
        if ch == "<":
            depth += 1
        elif ch == ">":
            depth -= 1
        elif depth == 0:
            out.append(ch)
    return "".join(out)


def _hash_suffix(name):
    """Drop a legacy-mangling hash component (`::h5c030ffd87e67ba1`)."""
    return re.sub(r"::h[0-9a-f]{16}$", "", name)


def function_matches(full_name, wanted):
    """Whether a (possibly generic) Rust function name is the function `wanted`.

    `wanted` is a last component (`do_wp_page`) or a path suffix without generics
    (`memory::Mm::do_wp_page`, `mm::memory::Mm::do_wp_page`).
    """
    plain = _hash_suffix(strip_generics(full_name))
    wanted_plain = strip_generics(wanted)
    return plain == wanted_plain or plain.endswith("::" + wanted_plain)


def _declared_name(declaration):
    """The function name in one `info functions` declaration, in gdb's Rust form
    (`static fn path<..>(args) -> ret;`) or its C form (`static ret path<..>(args);`)."""
    head = _cut_at_top_level_paren(declaration).strip()
    depth = 0
    for i in range(len(head) - 1, -1, -1):
        ch = head[i]
        if ch in ">}]":
            depth += 1
        elif ch in "<{[":
            depth -= 1
        elif ch in " *&" and depth == 0:
            return head[i + 1:]
    return head


def parse_info_functions(text):
    """Parse `info functions REGEX` output.

    Returns (debug_names, non_debugging) where debug_names is a list of full function
    names from the debug information and non_debugging a list of (address, name) of
    minimal symbols.
    """
    debug_names, minimal = [], []
    in_minimal = False
    for line in text.splitlines():
        if line.startswith("Non-debugging symbols:"):
            in_minimal = True
            continue
        if in_minimal:
            match = _NON_DEBUGGING_LINE.match(line)
            if match:
                minimal.append((int(match.group("addr"), 16), match.group("name").strip()))
            continue
        match = _INFO_FUNCTIONS_LINE.match(line)
        if not match:
            continue
        name = _declared_name(match.group("rest"))
        if name:
            debug_names.append(name)
    return debug_names, minimal


# --- colour -------------------------------------------------------------------------
class Palette:
    """ANSI colours, or none at all (`enabled=False`)."""

    CODES = {
        "heading": "1",
        "dim": "2",
        "ok": "32",
        "bad": "1;31",
        "warn": "33",
        "addr": "36",
        "user": "32",
        "kernel": "35",
        "ro": "33",
        "swap": "34",
    }

    def __init__(self, enabled):
        self.enabled = enabled

    def paint(self, role, text):
        code = self.CODES.get(role)
        if not self.enabled or not code or not text:
            return text
        return f"\x1b[{code}m{text}\x1b[0m"


def flag_role(flags_text):
    """The colour role of a decoded flags string (user/kernel/read-only/swap/absent)."""
    if flags_text.startswith("swap"):
        return "swap"
    if flags_text.startswith("not present"):
        return "dim"
    words = flags_text.split()
    if "RO" in words:
        return "ro"
    if "US" in words:
        return "user"
    if "SV" in words:
        return "kernel"
    return None


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def visible_len(text):
    return len(_ANSI.sub("", text))


# --- rendering monitor --json documents ---------------------------------------------
def cell_text(value):
    """How one JSON value reads in a table cell."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return ",".join(cell_text(v) for v in value)
    if isinstance(value, dict):
        return " ".join(f"{k}={cell_text(v)}" for k, v in value.items())
    return str(value)


def _role_for(column, text):
    column = column.lower()
    if "flag" in column:
        return flag_role(text)
    if text.startswith("0x") and any(w in column for w in ("addr", "linear", "frame", "phys", "table", "pde", "pte", "raw", "start", "end", "base", "eip", "range")):
        return "addr"
    if column in ("status", "result", "ok", "verdict"):
        low = text.lower()
        if low in ("ok", "yes", "true", "clean", "pass"):
            return "ok"
        return "bad"
    return None


def render_table(rows, palette, columns=None):
    """A list of dicts as an aligned text table (header in bold when colour is on)."""
    if not rows:
        return palette.paint("dim", "(none)")
    if columns is None:
        columns = []
        for row in rows:
            for key in row:
                if key not in columns:
                    columns.append(key)
    cells = [[cell_text(row.get(c)) for c in columns] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    numeric = [all(re.fullmatch(r"-?\d+", r[i]) or r[i] == "-" for r in cells)
               for i in range(len(columns))]
    def pad(text, painted, width, right):
        spaces = " " * (width - len(text))
        return spaces + painted if right else painted + spaces

    out = ["  ".join(pad(c, palette.paint("heading", c), w, False)
                     for c, w in zip(columns, widths)).rstrip()]
    for r in cells:
        parts = []
        for i, (text, width) in enumerate(zip(r, widths)):
            role = _role_for(columns[i], text)
            painted = palette.paint(role, text) if role else text
            parts.append(pad(text, painted, width, numeric[i]))
        out.append("  ".join(parts).rstrip())
    return "\n".join(out)


def render_document(doc, palette, title=None):
    """Render any monitor --json document: scalars as `key: value`, lists of objects as
    tables, nested objects indented. `command` and `schema` are shown in the title."""
    lines = []
    if title is None and isinstance(doc, dict):
        title = doc.get("command")
    if title:
        lines.append(palette.paint("heading", f"== {title}"))
    _render_into(doc, palette, lines, indent="", skip=("command", "schema"))
    return "\n".join(lines)


def _render_into(value, palette, lines, indent, skip=()):
    if isinstance(value, dict):
        scalars = [(k, v) for k, v in value.items()
                   if k not in skip and not isinstance(v, (dict, list))]
        width = max((len(k) for k, _ in scalars), default=0)
        for key, item in scalars:
            text = cell_text(item)
            role = _role_for(key, text)
            lines.append(f"{indent}{key.ljust(width)} : {palette.paint(role, text) if role else text}")
        for key, item in value.items():
            if key in skip or not isinstance(item, (dict, list)):
                continue
            lines.append(f"{indent}{palette.paint('heading', key)}:")
            _render_into(item, palette, lines, indent + "  ")
    elif isinstance(value, list):
        if value and all(isinstance(v, dict) for v in value):
            flat = all(not isinstance(x, (dict, list)) or
                       (isinstance(x, list) and all(not isinstance(y, (dict, list)) for y in x))
                       for v in value for x in v.values())
            if flat:
                for line in render_table(value, palette).splitlines():
                    lines.append(indent + line)
                return
            for i, item in enumerate(value):
                lines.append(f"{indent}[{i}]")
                _render_into(item, palette, lines, indent + "  ")
        elif not value:
            lines.append(indent + palette.paint("dim", "(none)"))
        else:
            lines.append(indent + ", ".join(cell_text(v) for v in value))
    else:
        lines.append(indent + cell_text(value))


def extract_json(text):
    """The JSON document in a monitor reply (gdb may add text around it)."""
    text = text.strip()
    try:
        return json.loads(text)
    except ValueError:
        pass
    start = min([i for i in (text.find("{"), text.find("[")) if i >= 0], default=-1)
    if start < 0:
        raise ValueError(f"no JSON in monitor output: {text[:200]!r}")
    decoder = json.JSONDecoder()
    doc, _ = decoder.raw_decode(text[start:])
    return doc


def find_key(doc, *names):
    """The first value found under any of `names`, searching nested objects depth-first."""
    if isinstance(doc, dict):
        for name in names:
            if name in doc:
                return doc[name]
        for value in doc.values():
            found = find_key(value, *names)
            if found is not None:
                return found
    elif isinstance(doc, list):
        for value in doc:
            found = find_key(value, *names)
            if found is not None:
                return found
    return None


# --- one renderer per monitor command (kernel/docs/monitor.md, schema 1) --------------
SCHEMA = 1


def _h(doc, key):
    """A hex-string field as `0x%08x` text ("-" when null)."""
    value = doc.get(key)
    return "-" if value is None else f"0x{hex_to_int(value):08x}"


def render_error(doc, palette):
    error = doc.get("error") or {}
    lines = [palette.paint("bad", f"{doc.get('command', 'monitor')}: {error.get('message', 'error')}")]
    if error.get("usage"):
        lines.append(f"usage: {error['usage']}")
    return "\n".join(lines)


def render_dumppgd(doc, p):
    head = (f"page directory at {p.paint('addr', _h(doc, 'pg_dir'))}: {doc.get('present')} present entries"
            f", {doc.get('shown')} shown")
    lines = [p.paint("heading", head)]
    if doc.get("not_present_nonzero"):
        lines.append(p.paint("bad", f"{doc['not_present_nonzero']} entries not present but not zero"))
    owners = {e.get("index"): e for e in doc.get("entries", [])}
    rows = []
    for run in doc.get("runs", []):
        first, last = run.get("first_index"), run.get("last_index")
        entry = owners.get(first, {})
        pid, slot = entry.get("pid"), entry.get("slot")
        owner = "kernel" if slot == 0 else (f"pid {pid} (slot {slot})" if pid is not None
                                             else f"no task (slot {slot})")
        rows.append({
            "index": str(first) if first == last else f"{first}-{last}",
            "linear range": f"{_h(run, 'start')}-{_h(run, 'last')}",
            "table": _h(entry, "table") if first == last else f"{last - first + 1} tables",
            "PTEs": run.get("present_ptes"),
            "owner": owner,
            "flags": run.get("flags", ""),
        })
    lines.append(render_table(rows, p))
    return "\n".join(lines)


def render_dumppt(doc, p):
    pde = doc.get("pde") or {}
    pid = doc.get("pid")
    who = "kernel" if doc.get("slot") == 0 else (f"pid {pid}" if pid is not None else "no task")
    lines = [f"PDE {doc.get('index')} (linear {_h(doc, 'start')}-{_h(doc, 'last')}, {who}, slot "
             f"{doc.get('slot')}): raw {_h(pde, 'raw')} [{p.paint(flag_role(pde.get('flags') or ''), pde.get('flags') or '')}]"
             f", page table {_h(doc, 'table')}"]
    if not doc.get("table_readable"):
        lines.append(p.paint("warn", "  no page table to show"))
        return "\n".join(lines)
    rows = [{"index": e.get("index"), "linear": _h(e, "linear"), "raw": _h(e, "raw"),
             "frame": _h(e, "frame"), "count": e.get("count"), "flags": e.get("flags", "")}
            for e in doc.get("entries", [])]
    lines.append(render_table(rows, p))
    lines.append(f"{doc.get('present')} present, {doc.get('swap')} swap entries")
    return "\n".join(lines)


def render_walk(doc, p):
    task = doc.get("task")
    title = f"walk {_h(doc, 'linear')}"
    if task:
        title += f" (pid {task.get('pid')} offset {_h(task, 'offset')}, slot {task.get('slot')})"
    addr = hex_to_int(doc.get("linear") or "0")
    lines = [p.paint("heading", title),
             "  " + format_linear(addr)]
    pde = doc.get("pde") or {}
    flags = pde.get("flags") or ""
    lines.append(f"  PDE {pde.get('index'):<5} raw {_h(pde, 'raw')}  {p.paint(flag_role(flags), flags)}"
                 + (f"  -> page table {p.paint('addr', _h(doc, 'table'))}" if doc.get("table") else ""))
    pte = doc.get("pte") or {}
    if pte.get("raw") is not None:
        flags = pte.get("flags") or ""
        line = f"  PTE {pte.get('index'):<5} raw {_h(pte, 'raw')}  {p.paint(flag_role(flags), flags)}"
        if doc.get("frame"):
            count = doc.get("count")
            line += (f"  -> frame {p.paint('addr', _h(doc, 'frame'))}, mem_map count "
                     f"{'-' if count is None else count}")
        lines.append(line)
    stop = doc.get("stop")
    if stop:
        reason = stop.get("reason", "?").replace("_", " ")
        if stop.get("swap_slot") is not None:
            reason += f" (swap slot {stop['swap_slot']})"
        lines.append(p.paint("warn", f"  stops at the {stop.get('level', '?').upper()}: {reason}"))
    else:
        lines.append(f"  physical {p.paint('ok', _h(doc, 'physical'))}")
    return "\n".join(lines)


def render_checkmm(doc, p):
    counts = (f"{doc.get('frames')} frames, {doc.get('present_pdes')} directory entries, "
              f"{doc.get('present_ptes')} page-table entries, {doc.get('kernel_refs')} kernel "
              f"references, {doc.get('swap_entries', 0)} swap entries checked")
    if doc.get("ok"):
        return f"checkmm: {p.paint('ok', 'OK')} ({counts})"
    lines = [f"checkmm: {p.paint('bad', 'MISMATCH')} ({counts}; {doc.get('mismatch_count')} mismatches)"]
    for m in doc.get("mismatches", []):
        lines.append(f"  {p.paint('bad', m.get('kind', '?'))}: {m.get('message', '')}")
    if doc.get("omitted"):
        lines.append(f"  ... and {doc['omitted']} more")
    return "\n".join(lines)


def render_showmem(doc, p):
    lines = [f"frames: {doc.get('paging_frames')} for paging ({_h(doc, 'start_mem')}.."
             f"{_h(doc, 'high_memory')}): {p.paint('ok', str(doc.get('free')))} free, {doc.get('used')} used, "
             f"{doc.get('shared_frames')} shared ({doc.get('shared_references')} extra references); "
             f"{doc.get('reserved')} reserved"]
    swap = doc.get("swap")
    lines.append("swap: none" if not swap else
                 f"swap: {swap.get('slots')} slots, {swap.get('used')} used, {swap.get('free')} free")
    lines.append(render_table([{"pid": t.get("pid"), "slot": t.get("slot"), "pages": t.get("pages"),
                                "shared": t.get("shared_pages"), "tables": t.get("page_tables"),
                                "swapped": t.get("swapped")} for t in doc.get("tasks", [])], p))
    shared = doc.get("shared", [])
    lines.append(p.paint("heading", f"frames with a count above 1 ({doc.get('shared_frames')}):"))
    for s in shared:
        lines.append(f"  {p.paint('addr', _h(s, 'frame'))}  count {s.get('count')}")
    if doc.get("shared_omitted"):
        lines.append(f"  ... and {doc['shared_omitted']} more")
    return "\n".join(lines)


def render_tasks(doc, p):
    rows = []
    for t in doc.get("tasks", []):
        f = t.get("faults") or {}
        rows.append({
            "pid": t.get("pid"), "ppid": t.get("parent_pid"), "state": t.get("state"),
            "slot": t.get("slot"), "linear range": f"{_h(t, 'start')}-{_h(t, 'last')}",
            "pages": t.get("pages"), "shared": t.get("shared_pages"), "tables": t.get("page_tables"),
            "program": t.get("program"),
            "faults z/l/s/cc/cw": "/".join(str(f.get(k, 0)) for k in (
                "zero_page", "loaded", "shared", "cow_copied", "cow_made_writable")),
            "": "(current)" if t.get("current") else "",
        })
    return render_table(rows, p)


def render_faults(doc, p):
    lines = [f"recent page faults, oldest first (the last {len(doc.get('faults', []))} of "
             f"{doc.get('since_boot')} since boot):"]
    rows = [{"seq": f.get("seq"), "pid": f.get("pid"), "linear": _h(f, "linear"), "eip": _h(f, "eip"),
             "by": "kernel" if f.get("by_kernel") else "cpu",
             "error": f"0x{f.get('error_code', 0):02x} {f.get('error', '')}",
             "action": f.get("action_text") or f.get("action")} for f in doc.get("faults", [])]
    lines.append(render_table(rows, p))
    totals = doc.get("totals") or {}
    if totals:
        lines.append("since boot: " + "; ".join(f"{k.replace('_', ' ')} {v}" for k, v in totals.items()))
    return "\n".join(lines)


def render_catch(doc, p):
    state = "on" if doc.get("pagefault") else "off"
    text = f"catch pagefault: {p.paint('ok' if state == 'on' else 'dim', state)}"
    if doc.get("changed"):
        text += f" (was {'on' if doc.get('previous') else 'off'})"
    return text


def render_help(doc, p):
    lines = []
    for c in doc.get("commands", []):
        lines.append("  " + p.paint("heading", c.get("usage", c.get("name", ""))))
        lines.append("      " + c.get("summary", ""))
    return "\n".join(lines)


RENDERERS = {
    "dumppgd": render_dumppgd, "dumppt": render_dumppt, "walk": render_walk,
    "checkmm": render_checkmm, "showmem": render_showmem, "tasks": render_tasks,
    "faults": render_faults, "catch": render_catch, "help": render_help,
}


def render_monitor(doc, palette):
    """The readable form of any monitor --json document (a known command's own layout,
    else the generic one); an error document renders as its message and usage."""
    if not isinstance(doc, dict):
        return render_document(doc, palette)
    if doc.get("error"):
        return render_error(doc, palette)
    renderer = RENDERERS.get(doc.get("command"))
    if renderer is None or doc.get("schema") != SCHEMA:
        return render_document(doc, palette)
    try:
        return renderer(doc, palette)
    except (KeyError, TypeError, ValueError, AttributeError):
        # A document this renderer does not understand still shows, generically.
        return render_document(doc, palette)
