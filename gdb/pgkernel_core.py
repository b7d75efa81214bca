"""pgkernel_core: the decoding and rendering behind the gdb scripts, without gdb.

Everything here is plain Python 3 (standard library only), so it is unit-tested on the
host with `python3 -m unittest discover -s gdb` and imported by gdb/pgkernel.py inside
gdb. It mirrors the kernel's decoders: `mm::entry::Entry::describe` (flag letters) and
`mm::addr::LinearAddr` (directory, table and offset indices, the task slot).
"""

import difflib
import json
import os
import re
import struct
from typing import ClassVar

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


def suggest_functions(wanted, names, limit=5):
    """Full names among `names` a mistyped or inlined `wanted` may have meant, best first.

    `get_free_page` suggests `...::get_free_page_with`: names whose last component starts
    with or contains the wanted one, then close spellings (`copy_page_table`)."""
    wanted_last = strip_generics(wanted).split("::")[-1]
    if not wanted_last:
        return []
    by_last = {}
    for name in names:
        last = _hash_suffix(strip_generics(name)).split("::")[-1]
        by_last.setdefault(last, name)
    ranked = []
    for last in by_last:
        if last == wanted_last:
            rank = 0
        elif last.startswith(wanted_last) or wanted_last.startswith(last):
            rank = 1
        elif wanted_last in last:
            rank = 2
        else:
            continue
        ranked.append((rank, abs(len(last) - len(wanted_last)), last))
    ranked.sort()
    chosen = [last for _, _, last in ranked]
    for last in difflib.get_close_matches(wanted_last, list(by_last), n=limit, cutoff=0.75):
        if last not in chosen:
            chosen.append(last)
    return [by_last[last] for last in chosen[:limit]]


# Code the gdb stub runs while breakpoints are planted: its entry (the trap path), and
# the software walk with which it plants and lifts every int3 (Mm::walk and what it
# calls; in the stepping build even the small Entry and LinearAddr methods are real
# calls). An int3 there is hit by the stub itself: the kernel dies with a #BP in kernel
# mode. Prefixes and suffixes of function paths without generics.
STUB_PATH_PREFIXES = (
    "kernel::gdb::", "kernel::arch::x86::debugger::", "kernel::arch::x86::debugreg::",
    "kernel::trap::dispatch", "trap_common", "trap_return", "mm::walk::", "mm::view::",
    "mm::entry::", "mm::addr::", "mm::raw_walk::", "mm::phys::PhysMem::read",
    "mm::mem_map::MemMap::count", "mm::mem_map::MemMap::map_nr",
    "mm::mem_map::MemMap::start_mem", "mm::mem_map::MemMap::high_memory",
)
STUB_PATH_SUFFIXES = ("Mm::walk", "Mm::page_table", "Mm::pde", "Mm::high_memory")
# The physical reads of KernelPhys (its writes and TLB flushes are not on the stub's
# path), by the names gdb gives trait implementations (`phys::{impl#2}::read_u32`) and
# the symbol table gives them (`<...::KernelPhys as mm::phys::PhysMem>::read_u32`).
STUB_PATH_PATTERN = re.compile(
    r"^kernel::arch::x86::phys::(\{impl#\d+\}|KernelPhys)::(read|ptr)"
    r"|as mm::phys::PhysMem>::read|as mm::view::PagingView>::")


def on_stub_path(full_name):
    """Whether a breakpoint in this function would be hit by the gdb stub itself."""
    plain = _hash_suffix(strip_generics(full_name))
    return (plain.startswith(STUB_PATH_PREFIXES) or plain.endswith(STUB_PATH_SUFFIXES)
            or bool(STUB_PATH_PATTERN.search(plain) or STUB_PATH_PATTERN.search(full_name)))


def parse_break_args(argument):
    """`pg-break FUNCTION [--pid N] [--entry]` -> (function, pid or None, entry)."""
    words = argument.split()
    function, pid, entry = None, None, False
    i = 0
    while i < len(words):
        word = words[i]
        if word == "--entry":
            entry = True
        elif word in ("--pid", "--task"):
            if i + 1 >= len(words):
                raise ValueError(f"{word} needs a pid")
            try:
                pid = parse_int(words[i + 1])
            except ValueError:
                raise ValueError(f"{word} needs a pid, not {words[i + 1]!r}") from None
            i += 1
        elif word.startswith("--"):
            raise ValueError(f"unknown option {word}")
        elif function is None:
            function = word
        else:
            raise ValueError(f"one function at a time ({function!r}, then {word!r})")
        i += 1
    if function is None:
        raise ValueError("which function?")
    return function, pid, entry


# --- the ELF file ------------------------------------------------------------------------
def elf_load_segments(data):
    """The PT_LOAD program headers of an ELF32 file: [(offset, vaddr, filesz, flags)]."""
    if data[:4] != b"\x7fELF" or len(data) < 52 or data[4] != 1:
        raise ValueError("not an ELF32 file")
    phoff, = struct.unpack_from("<I", data, 28)
    phentsize, phnum = struct.unpack_from("<HH", data, 42)
    segments = []
    for i in range(phnum):
        p_type, p_offset, p_vaddr, _, p_filesz, _, p_flags, _ = struct.unpack_from(
            "<8I", data, phoff + i * phentsize)
        if p_type == PT_LOAD:
            segments.append((p_offset, p_vaddr, p_filesz, p_flags))
    return segments


def elf_bytes(data, vaddr, length):
    """`length` bytes of the loaded image at `vaddr`, from an ELF32's PT_LOAD segments
    (`data` is the whole file). ValueError when no segment holds them."""
    for offset, start, size, _ in elf_load_segments(data):
        if start <= vaddr and vaddr + length <= start + size:
            return data[offset + vaddr - start:offset + vaddr - start + length]
    raise ValueError(f"0x{vaddr:x} + {length} is in no PT_LOAD segment")


def elf_code_segment(data):
    """(vaddr, size) of the first executable PT_LOAD segment of an ELF32 file."""
    for _, start, size, flags in elf_load_segments(data):
        if flags & PF_X and size:
            return start, size
    raise ValueError("no executable PT_LOAD segment")


PT_LOAD = 1
PF_X = 1


# --- Rust return values on i386 (what `finish` gets wrong) -----------------------------
# gdb reads a returned struct from the address in eax, as the i386 C ABI returns every
# struct. Rust's own ABI returns a value of 4 bytes or less, a scalar (u64 included) and
# a scalar pair (two scalars, e.g. Option<Frame>) in eax/edx, and only larger ones
# through memory (the caller's buffer, whose address the callee returns in eax). These
# functions decide which, from a layout gdb's types describe:
#   ("scalar", size)                      an integer, bool, char, pointer, C-like enum
#   ("memory", size)                      an array, union or anything else
#   ("struct", size, [(offset, layout)])  a struct or tuple, its fields
#   ("enum", size, discr, [[(offset, layout)], ...])  a Rust enum with data: discr is
#        the discriminant's (offset, size) or None, then each variant's fields (offsets
#        from the enum's start)
# following rustc's layout rules (rustc_abi: Scalar / ScalarPair / Memory) and its Rust
# ABI (rustc_target callconv: aggregates over 2 registers indirect, other Memory ones of
# up to 4 bytes cast to an integer register).
ZST = ("zst",)
MEMORY = ("memory",)
REGISTER_BYTES = 4


def _leaves(fields):
    """The scalar leaves ((offset, size), in offset order) of a list of fields, or None
    when one of them is neither a scalar, a pair nor zero-sized."""
    leaves = []
    for offset, layout in fields:
        abi = rust_abi(layout)
        if abi == ZST:
            continue
        if abi[0] == "scalar":
            leaves.append((offset + abi[1], abi[2]))
        elif abi[0] == "pair":
            leaves += [(offset + abi[1][0], abi[1][1]), (offset + abi[2][0], abi[2][1])]
        else:
            return None
    return sorted(leaves)


def _abi_from_leaves(size, leaves):
    if leaves is None:
        return MEMORY
    if not leaves:
        return ZST if size == 0 else MEMORY
    if len(leaves) == 1:
        offset, leaf = leaves[0]
        return ("scalar", 0, size) if offset == 0 and leaf == size else MEMORY
    if len(leaves) == 2:
        (a_offset, a_size), (b_offset, b_size) = leaves
        align = max(a_size, b_size)
        if (a_offset == 0 and b_offset == _align_up(a_size, b_size)
                and size == _align_up(b_offset + b_size, align)):
            return ("pair", leaves[0], leaves[1])
    return MEMORY


def _align_up(value, align):
    return (value + align - 1) // align * align


def _overlaps(a, b):
    return a[0] < b[0] + b[1] and b[0] < a[0] + a[1]


def rust_abi(layout):
    """rustc's BackendRepr of a layout: ZST, ("scalar", 0, size), ("pair", (offset,
    size), (offset, size)) or MEMORY."""
    kind, size = layout[0], layout[1]
    if size == 0:
        return ZST
    if kind == "scalar":
        return ("scalar", 0, size)
    if kind == "struct":
        return _abi_from_leaves(size, _leaves(layout[2]))
    if kind == "enum":
        discr, variants = layout[2], layout[3]
        per_variant = [_leaves(fields) for fields in variants]
        if any(leaves is None for leaves in per_variant):
            return MEMORY
        dataful = [leaves for leaves in per_variant if leaves]
        if discr is None:
            return _abi_from_leaves(size, dataful[0]) if len(dataful) == 1 else MEMORY
        if any(_overlaps(discr, leaf) for leaves in dataful for leaf in leaves):
            # Niche-filling: the discriminant lives in the one variant with data.
            return _abi_from_leaves(size, dataful[0]) if len(dataful) == 1 else MEMORY
        if not dataful:
            return _abi_from_leaves(size, [discr])
        if all(len(leaves) == 1 for leaves in dataful) and len({l[0] for l in dataful}) == 1:
            return _abi_from_leaves(size, sorted([discr, dataful[0][0]]))
        return MEMORY
    return MEMORY


def return_location(layout):
    """Where a Rust function returns a value of this layout on i386: ("none",),
    ("memory",) (the buffer whose address is in eax) or ("registers", [(offset, size,
    register), ...]), the pieces of the value's bytes in eax and edx."""
    size = layout[1]
    if size == 0:
        return ("none",)
    if size > 2 * REGISTER_BYTES:
        return MEMORY
    abi = rust_abi(layout)
    if abi == ZST:
        return ("none",)
    if abi[0] == "scalar":
        pieces = [(0, min(size, REGISTER_BYTES), "eax")]
        if size > REGISTER_BYTES:
            pieces.append((REGISTER_BYTES, size - REGISTER_BYTES, "edx"))
        return ("registers", pieces)
    if abi[0] == "pair":
        (a_offset, a_size), (b_offset, b_size) = abi[1], abi[2]
        return ("registers", [(a_offset, a_size, "eax"), (b_offset, b_size, "edx")])
    if size <= REGISTER_BYTES:
        return ("registers", [(0, size, "eax")])
    return MEMORY


# What pg-finish says after the value (then where it was found).
FINISH_NOTE = "returned, as Rust's ABI returns it:"


def value_bytes(size, pieces, registers):
    """The bytes of a value returned in registers (`pieces` of return_location, the
    registers' values in `registers`: {"eax": int, "edx": int})."""
    buffer = bytearray(size)
    for offset, length, register in pieces:
        word = (registers[register] & U32).to_bytes(REGISTER_BYTES, "little")
        buffer[offset:offset + length] = word[:length]
    return bytes(buffer)


# --- descriptors and control registers ------------------------------------------------
def decode_descriptor(raw):
    """A GDT/LDT descriptor (64 bits) as a dict: base, limit (the last valid offset),
    present, dpl, kind ("code", "data", "ldt", "tss", "null", "system"), flags text."""
    raw &= (1 << 64) - 1
    low, high = raw & U32, raw >> 32
    base = (low >> 16) | ((high & 0xFF) << 16) | (high & 0xFF00_0000)
    limit = (low & 0xFFFF) | (high & 0x000F_0000)
    access = (high >> 8) & 0xFF
    granular = bool(high >> 23 & 1)
    if granular:
        limit = (limit << 12) | 0xFFF
    present = bool(access & 0x80)
    dpl = (access >> 5) & 3
    system = not access & 0x10
    kind_type = access & 0xF
    words = []
    if raw == 0:
        kind = "null"
    elif not system:
        kind = "code" if kind_type & 0x8 else "data"
        if kind == "code":
            words.append("exec/read" if kind_type & 0x2 else "exec-only")
            if kind_type & 0x4:
                words.append("conforming")
        else:
            words.append("read/write" if kind_type & 0x2 else "read-only")
            if kind_type & 0x4:
                words.append("expand-down")
        if kind_type & 0x1:
            words.append("accessed")
        words.append("32-bit" if high >> 22 & 1 else "16-bit")
    elif kind_type == 0x2:
        kind = "ldt"
    elif kind_type in (0x9, 0xB):
        kind = "tss"
        words.append("busy" if kind_type == 0xB else "available")
    else:
        kind = "system"
        words.append(f"type {kind_type}")
    return {"raw": raw, "base": base, "limit": limit, "present": present, "dpl": dpl,
            "kind": kind, "granular_4k": granular, "flags": " ".join(words)}


def format_descriptor(label, raw):
    """One line per descriptor: `GDT 1 (0x08) code base 0x00000000 limit 0xffffffff DPL 0 P exec/read 32-bit`."""
    d = decode_descriptor(raw)
    if d["kind"] == "null":
        return f"{label} null"
    present = "P" if d["present"] else "not present"
    return (f"{label} {d['kind']:4} base 0x{d['base']:08x} limit 0x{d['limit']:08x} "
            f"DPL {d['dpl']} {present} {d['flags']}").rstrip()


def describe_selector(selector):
    """`0x0f: LDT 1, RPL 3` (index, table, requested privilege level)."""
    selector &= 0xFFFF
    table = "LDT" if selector & 4 else "GDT"
    return f"0x{selector:02x}: {table} {selector >> 3}, RPL {selector & 3}"


# --- colour -------------------------------------------------------------------------
class Palette:
    """ANSI colours, or none at all (`enabled=False`)."""

    CODES: ClassVar[dict[str, str]] = {
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


# --- the documents' JSON Schema (kernel/docs/monitor.schema.json) ----------------------
# Generated from the kernel's document structs (kernel/report): the one definition of the
# layouts. The commands, the schema version and the field names come from it.
SCHEMA_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir,
                           "kernel", "docs", "monitor.schema.json")


def load_schema(path=SCHEMA_PATH):
    """The committed JSON Schema of the monitor documents."""
    with open(path, encoding="utf-8") as f:
        return json.load(f)


MONITOR_SCHEMA = load_schema()
# The layout version the documents carry in "schema".
SCHEMA = MONITOR_SCHEMA["x-schema-version"]
# Command -> the name of its document in $defs.
DOCUMENTS = MONITOR_SCHEMA["x-commands"]


def _definition(name):
    return MONITOR_SCHEMA["$defs"].get(name) or {}


def document_fields(command):
    """The fields of `command`'s document, in their order (empty for an unknown command)."""
    return list(_definition(DOCUMENTS.get(command, "")).get("properties", {}))


def required_fields(command):
    return list(_definition(DOCUMENTS.get(command, "")).get("required", []))


def check_document(doc):
    """Why `doc` is not a document this script knows ("" when it is): the command must be
    one of the schema's, the schema version the same, the required fields there."""
    if not isinstance(doc, dict):
        return "not an object"
    command = doc.get("command")
    if command not in DOCUMENTS:
        return f"unknown command {command!r}"
    if doc.get("schema") != SCHEMA:
        return f"schema {doc.get('schema')!r}, this script knows schema {SCHEMA}"
    missing = [f for f in required_fields(command) if f not in doc]
    if missing:
        return f"missing {', '.join(missing)}"
    return ""


def _plural(n, one, many):
    return f"{n} {one if n == 1 else many}"


# --- one renderer per monitor command (kernel/docs/monitor.md) -----------------------


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
    head = (f"page directory at {p.paint('addr', _h(doc, 'pg_dir'))}: "
            f"{_plural(doc.get('shown'), 'present entry', 'present entries')}")
    flt = doc.get("filter") or {}
    if flt.get("task") is not None:
        head += f" for pid {flt['task']} (slot {flt.get('slot')})"
    if doc.get("shown") != doc.get("present"):
        head += f", of {doc.get('present')} in the whole directory"
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
    lines = [(f"PDE {doc.get('index')} (linear {_h(doc, 'start')}-{_h(doc, 'last')}, {who}, slot "
             f"{doc.get('slot')}): raw {_h(pde, 'raw')} [{p.paint(flag_role(pde.get('flags') or ''), pde.get('flags') or '')}]"
             f", page table {_h(doc, 'table')}")]
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
    counts = [_plural(doc.get("frames"), "frame", "frames"),
              _plural(doc.get("present_pdes"), "directory entry", "directory entries"),
              _plural(doc.get("present_ptes"), "page-table entry", "page-table entries")]
    if doc.get("kernel_refs"):
        counts.append(_plural(doc["kernel_refs"], "task page", "task pages"))
    if doc.get("swap_entries"):
        counts.append(_plural(doc["swap_entries"], "swap entry", "swap entries"))
    counts = ", ".join(counts) + " checked"
    if doc.get("ok"):
        return f"checkmm: {p.paint('ok', 'OK')} ({counts})"
    lines = [(f"checkmm: {p.paint('bad', 'MISMATCH')} ({counts}; "
              f"{_plural(doc.get('mismatch_count'), 'mismatch', 'mismatches')})")]
    for m in doc.get("mismatches", []):
        lines.append(f"  {p.paint('bad', m.get('kind', '?'))}: {m.get('message', '')}")
    if doc.get("omitted"):
        lines.append(f"  ... and {doc['omitted']} more")
    return "\n".join(lines)


def render_showmem(doc, p):
    lines = [(f"frames: {doc.get('paging_frames')} for paging ({_h(doc, 'start_mem')}.."
              f"{_h(doc, 'high_memory')}): {p.paint('ok', str(doc.get('free')))} free, {doc.get('used')} used, "
              f"{doc.get('shared_frames')} shared ({doc.get('shared_references')} extra references); "
              f"{doc.get('reserved')} reserved")]
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
    lines = [(f"recent page faults, oldest first (the last {len(doc.get('faults', []))} of "
              f"{doc.get('since_boot')} since boot):")]
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
    else the generic one, its fields in the schema's order); an error document renders
    as its message and usage."""
    if not isinstance(doc, dict):
        return render_document(doc, palette)
    if doc.get("error") and doc.get("command") != "help":
        return render_error(doc, palette)
    renderer = RENDERERS.get(doc.get("command"))
    if renderer is None or check_document(doc).startswith(("unknown command", "schema")):
        return render_document(doc, palette)
    try:
        return renderer(doc, palette)
    except (KeyError, TypeError, ValueError, AttributeError):
        # A document this renderer does not understand still shows, generically.
        return render_document(doc, palette)
