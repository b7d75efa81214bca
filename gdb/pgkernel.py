"""pgkernel.py: gdb commands, pretty-printers and convenience functions for the kernel.

Load it with `gdb -x gdb/pgkernel.py target/i586-unknown-linux-gnu/release/kernel`
(scripts/gdb does this and attaches). No .gdbinit or auto-load set-up is needed.
Python for gdb 13 and later, standard library only; the decoding lives in
pgkernel_core.py (no gdb import, host-tested).

Commands (`help pg` lists them):
  pg-pgd [ARGS]      monitor dumppgd, as a table     pg-pt INDEX     monitor dumppt
  pg-walk ADDR [--task N]  monitor walk              pg-check        monitor checkmm
  pg-mem             monitor showmem                 pg-tasks        monitor tasks
  pg-faults          monitor faults                  pg-break FUNC   break on a Rust function
  set pg-color auto|on|off   colour (auto: when gdb's style is enabled and stdout is a terminal)
Functions: $lin2phys(addr), $linear(offset, pid), $pde(index), $pte(addr).
Pretty-printers: mm::entry::Entry, mm::addr::{LinearAddr, PhysAddr, Frame}.
"""

import os
import re
import sys

import gdb

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pgkernel_core as core  # noqa: E402  (needs the path above)

ENTRY_TYPE = "mm::entry::Entry"
PAGING_SYMBOL = "kernel::paging::PAGING"
TASKS_SYMBOL = "kernel::task::TASKS"


# --- colour -------------------------------------------------------------------------
class ColorParameter(gdb.Parameter):
    """Colour in the pg-* commands: auto (gdb style enabled and a terminal), on, off."""

    set_doc = "Set whether the pg-* commands use colour."
    show_doc = "Show whether the pg-* commands use colour."

    def __init__(self):
        super().__init__("pg-color", gdb.COMMAND_DATA, gdb.PARAM_ENUM, ["auto", "on", "off"])
        self.value = "auto"

    def get_set_string(self):
        return ""

    def get_show_string(self, svalue):
        return f"Colour in the pg-* commands is {svalue}."


COLOR = ColorParameter()


def palette():
    if COLOR.value == "off":
        return core.Palette(False)
    if COLOR.value == "on":
        return core.Palette(True)
    try:
        styled = bool(gdb.parameter("style enabled"))
    except RuntimeError:
        styled = False
    term_ok = os.environ.get("TERM", "") not in ("", "dumb")
    # gdb's Python sys.stdout says it is no terminal even on one: ask the real fd 1.
    return core.Palette(styled and term_ok and os.isatty(1))


# --- talking to the stub ------------------------------------------------------------
class MonitorUnavailable(gdb.GdbError):
    pass


def monitor_json(command):
    """Runs `monitor COMMAND --json` and returns the parsed document."""
    try:
        text = gdb.execute(f"monitor {command} --json", to_string=True)
    except gdb.error as error:
        raise MonitorUnavailable(f"monitor {command} --json failed: {error}") from None
    try:
        return core.extract_json(text)
    except ValueError:
        first = text.strip().splitlines()[0] if text.strip() else "(no output)"
        raise MonitorUnavailable(
            f"monitor {command} --json did not answer JSON (is this the kernel's own stub?): {first}"
        ) from None


def to_int(value):
    """A gdb.Value or a Python number, as an unsigned 32-bit int."""
    return int(value) & core.U32


def eval_int(text):
    """A user argument: a number, or any gdb expression."""
    try:
        return core.parse_int(text)
    except ValueError:
        return to_int(gdb.parse_and_eval(text))


def u32_value(number):
    """`number` as a gdb value of an unsigned 32-bit type (whatever the current language)."""
    arch = gdb.selected_inferior().architecture()
    return gdb.Value(number & core.U32).cast(arch.integer_type(32, False))


def read_u32(addr):
    memory = gdb.selected_inferior().read_memory(addr, 4)
    return int.from_bytes(bytes(memory), "little")


# --- finding kernel state from the symbols ------------------------------------------
def _lookup_symbol(name):
    for lookup in (gdb.lookup_static_symbol, gdb.lookup_global_symbol):
        try:
            symbol = lookup(name)
        except gdb.error:
            symbol = None
        if symbol is not None:
            return symbol
    try:
        symbol, _ = gdb.lookup_symbol(name)
    except gdb.error:  # "No frame selected" before the target is attached
        symbol = None
    return symbol


def _deep_field(value, name, depth=0):
    """The first field called `name` inside a nested struct/union value (breadth: fields in order)."""
    if depth > 16:
        return None
    value_type = value.type.strip_typedefs()
    if value_type.code not in (gdb.TYPE_CODE_STRUCT, gdb.TYPE_CODE_UNION):
        return None
    for field in value_type.fields():
        if field.name == name:
            return value[field]
    for field in value_type.fields():
        if field.artificial:
            continue
        try:
            found = _deep_field(value[field], name, depth + 1)
        except gdb.error:
            continue
        if found is not None:
            return found
    return None


def _newtype_int(value):
    """The u32 inside a Rust newtype (Frame(u32), Entry(u32)...) or a plain integer."""
    value_type = value.type.strip_typedefs()
    if value_type.code == gdb.TYPE_CODE_STRUCT:
        return to_int(value[value_type.fields()[0]])
    return to_int(value)


def page_directory():
    """The physical (= kernel linear) address of the page directory.

    From the kernel's symbols (the `pg_dir` of kernel::paging::PAGING), else from
    `monitor dumppgd --json`, else `$cr3` (QEMU's own gdbstub).
    """
    symbol = _lookup_symbol(PAGING_SYMBOL)
    if symbol is not None:
        try:
            pg_dir = _deep_field(symbol.value(), "pg_dir")
            if pg_dir is not None and _newtype_int(pg_dir):
                return _newtype_int(pg_dir)
        except gdb.error:
            pass
    try:
        return core.hex_to_int(monitor_json("dumppgd")["pg_dir"])
    except (MonitorUnavailable, KeyError, ValueError):
        pass
    try:
        cr3 = to_int(gdb.parse_and_eval("$cr3"))
        if cr3:
            return cr3 & ~0xFFF
    except (gdb.error, ValueError):
        pass
    raise gdb.GdbError("cannot find the page directory (no kernel::paging::PAGING, no $cr3); "
                       "is paging set up yet?")


def entry_value(addr):
    """The entry at `addr` as an mm::entry::Entry value (pretty-printed), else a u32."""
    raw = read_u32(addr)
    try:
        entry_type = gdb.lookup_type(ENTRY_TYPE)
        return gdb.Value(addr).cast(entry_type.pointer()).dereference()
    except gdb.error:
        return u32_value(raw)


def software_walk(addr):
    """Walks the page tables through gdb memory reads: (pde, pte or None, phys or None)."""
    pgd = page_directory()
    pde = read_u32(pgd + 4 * core.dir_index(addr))
    if not core.is_present(pde):
        return pde, None, None
    pte = read_u32(core.entry_frame(pde) + 4 * core.table_index(addr))
    if not core.is_present(pte):
        return pde, pte, None
    return pde, pte, core.entry_frame(pte) + core.page_offset(addr)


def task_slot(pid):
    """The slot of task `pid`: from `monitor tasks --json`, else from the task table."""
    try:
        doc = monitor_json("tasks")
        rows = core.find_key(doc, "tasks") or []
        for row in rows:
            if isinstance(row, dict) and row.get("pid") == pid and row.get("slot") is not None:
                return int(row["slot"])
        raise gdb.GdbError(f"no task with pid {pid} (monitor tasks)")
    except MonitorUnavailable:
        pass
    symbol = _lookup_symbol(TASKS_SYMBOL)
    if symbol is None:
        raise gdb.GdbError(f"cannot find the task table ({TASKS_SYMBOL})")
    slots = _deep_field(symbol.value(), "slots")
    if slots is None:
        raise gdb.GdbError("the task table has no slots field")
    low, high = slots.type.strip_typedefs().range()
    for index in range(low, high + 1):
        text = str(slots[index])
        match = re.search(r"\bpid: (\d+)", text)
        if match and int(match.group(1)) == pid:
            return index
    raise gdb.GdbError(f"no task with pid {pid} in the task table")


# --- pretty-printers ----------------------------------------------------------------
class EntryPrinter:
    def __init__(self, value):
        self.value = value

    def to_string(self):
        return core.format_entry(_newtype_int(self.value))


class LinearAddrPrinter:
    def __init__(self, value):
        self.value = value

    def to_string(self):
        return core.format_linear(_newtype_int(self.value))


class PhysAddrPrinter:
    def __init__(self, value):
        self.value = value

    def to_string(self):
        return core.format_phys(_newtype_int(self.value))


class FramePrinter:
    def __init__(self, value):
        self.value = value

    def to_string(self):
        return core.format_frame(_newtype_int(self.value))


PRINTERS = {
    "mm::entry::Entry": EntryPrinter,
    "mm::addr::LinearAddr": LinearAddrPrinter,
    "mm::addr::PhysAddr": PhysAddrPrinter,
    "mm::addr::Frame": FramePrinter,
}


def lookup_printer(value):
    value_type = value.type.strip_typedefs()
    if value_type.code != gdb.TYPE_CODE_STRUCT:
        return None
    printer = PRINTERS.get(value_type.name)
    return printer(value) if printer else None


# --- convenience functions ------------------------------------------------------------
class Lin2Phys(gdb.Function):
    """$lin2phys(ADDR): the physical address a linear address maps to (monitor walk --json;
    a software walk through memory reads when the stub has no monitor). Error if unmapped."""

    def __init__(self):
        super().__init__("lin2phys")

    def invoke(self, addr):
        addr = to_int(addr)
        try:
            doc = monitor_json(f"walk 0x{addr:08x}")
        except MonitorUnavailable:
            _, _, phys = software_walk(addr)
            if phys is None:
                raise gdb.GdbError(f"0x{addr:08x} is not mapped") from None
            return u32_value(phys)
        phys = core.hex_to_int(core.find_key(doc, "phys", "physical", "paddr"))
        if phys is None:
            reason = core.find_key(doc, "reason", "stop", "error") or "unmapped"
            raise gdb.GdbError(f"0x{addr:08x} is not mapped: {reason}")
        return u32_value(phys)


class Linear(gdb.Function):
    """$linear(OFFSET, PID): task PID's segment base (its slot * 64 MiB) + OFFSET."""

    def __init__(self):
        super().__init__("linear")

    def invoke(self, offset, pid):
        try:
            value = core.linear(to_int(offset), task_slot(to_int(pid)))
        except ValueError as error:
            raise gdb.GdbError(str(error)) from None
        return u32_value(value)


class Pde(gdb.Function):
    """$pde(INDEX): page-directory entry INDEX (0..1023), as an mm::entry::Entry."""

    def __init__(self):
        super().__init__("pde")

    def invoke(self, index):
        index = to_int(index)
        if index >= core.ENTRIES_PER_TABLE:
            raise gdb.GdbError(f"directory index {index} is not in 0..1023")
        return entry_value(page_directory() + 4 * index)


class Pte(gdb.Function):
    """$pte(ADDR): the page-table entry mapping linear ADDR, as an mm::entry::Entry
    (error when its page table is not present)."""

    def __init__(self):
        super().__init__("pte")

    def invoke(self, addr):
        addr = to_int(addr)
        pde = read_u32(page_directory() + 4 * core.dir_index(addr))
        if not core.is_present(pde):
            raise gdb.GdbError(f"0x{addr:08x}: no page table (PDE {core.dir_index(addr)} "
                               f"is {core.format_entry(pde)})")
        return entry_value(core.entry_frame(pde) + 4 * core.table_index(addr))


# --- commands -------------------------------------------------------------------------
class PgPrefix(gdb.Command):
    """The pgkernel commands: pg-pgd, pg-pt, pg-walk, pg-check, pg-mem, pg-tasks,
    pg-faults, pg-break; `set pg-color`. Functions: $lin2phys, $linear, $pde, $pte.
    Each pg-* monitor command also takes --raw to print the JSON document as it came."""

    def __init__(self):
        super().__init__("pg", gdb.COMMAND_USER)

    def invoke(self, argument, from_tty):
        gdb.execute("help pg")


class MonitorTable(gdb.Command):
    """A pg-* command: runs a monitor command with --json and renders it."""

    def __init__(self, name, monitor, doc):
        self.__doc__ = doc
        super().__init__(name, gdb.COMMAND_USER)
        self.monitor = monitor

    def invoke(self, argument, from_tty):
        args = gdb.string_to_argv(argument)
        raw = "--raw" in args
        args = [a for a in args if a != "--raw"]
        doc = monitor_json(" ".join([self.monitor] + args))
        if raw:
            import json
            gdb.write(json.dumps(doc, indent=2) + "\n")
            return
        gdb.write(core.render_monitor(doc, palette()) + "\n")


class PgWalk(MonitorTable):
    """pg-walk ADDR [--task N]: monitor walk, with ADDR any gdb expression."""

    def invoke(self, argument, from_tty):
        # ADDR may contain spaces ($linear(0x1000, 1)): only the options are words.
        options = []
        rest = argument
        for pattern in (r"--task\s+(\S+)", r"--raw\b"):
            match = re.search(pattern, rest)
            if match:
                options.append(match.group(0))
                rest = rest[:match.start()] + rest[match.end():]
        if not rest.strip():
            raise gdb.GdbError("usage: pg-walk ADDR [--task PID]")
        address = eval_int(rest.strip())
        super().invoke(" ".join([f"0x{address:08x}"] + options), from_tty)


class PgBreak(gdb.Command):
    """pg-break FUNCTION: break on a kernel function by its plain name.

    Rust generic names are awkward to type (`mm::memory::Mm<kernel::arch::x86::phys::
    KernelPhys>::do_wp_page<...>`): this finds every function whose path without generic
    arguments ends in FUNCTION (`do_wp_page`, `Mm::do_wp_page`), through `info functions`
    and the symbol table, and puts a breakpoint at each address (`break *ADDR`)."""

    def __init__(self):
        super().__init__("pg-break", gdb.COMMAND_BREAKPOINTS, gdb.COMPLETE_SYMBOL)

    def invoke(self, argument, from_tty):
        wanted = argument.strip()
        if not wanted:
            raise gdb.GdbError("usage: pg-break FUNCTION")
        addresses = resolve_function(wanted)
        if not addresses:
            raise gdb.GdbError(f"pg-break: no function named {wanted}")
        for addr, name in addresses:
            gdb.write(f"pg-break: {name} at 0x{addr:08x}\n")
            gdb.execute(f"break *0x{addr:x}")


def resolve_function(wanted):
    """[(address, full name)] of the functions `wanted` names, one per address."""
    last = core.strip_generics(wanted).split("::")[-1]
    text = gdb.execute(f"info functions {re.escape(last)}", to_string=True)
    names, minimal = core.parse_info_functions(text)
    found = {}
    for name in names:
        if not core.function_matches(name, wanted):
            continue
        symbol = _lookup_symbol(name)
        if symbol is None or symbol.addr_class != gdb.SYMBOL_LOC_BLOCK:
            continue
        addr = to_int(symbol.value().address)
        found.setdefault(addr, name)
    for addr, name in minimal:
        if core.function_matches(name, wanted):
            found.setdefault(addr, name)
    return sorted(found.items())


def register():
    gdb.pretty_printers.append(lookup_printer)
    Lin2Phys()
    Linear()
    Pde()
    Pte()
    PgPrefix()
    for name, monitor, doc in (
        ("pg-pgd", "dumppgd", "pg-pgd [FILTERS]: the page directory (monitor dumppgd) as a table."),
        ("pg-pt", "dumppt", "pg-pt INDEX: one page table (monitor dumppt INDEX) entry by entry."),
        ("pg-check", "checkmm", "pg-check: the mem_map consistency check (monitor checkmm)."),
        ("pg-mem", "showmem", "pg-mem: free, used and shared frames (monitor showmem)."),
        ("pg-tasks", "tasks", "pg-tasks: the tasks (monitor tasks)."),
        ("pg-faults", "faults", "pg-faults: the recent page faults (monitor faults)."),
    ):
        MonitorTable(name, monitor, doc)
    PgWalk("pg-walk", "walk", "pg-walk ADDR [--task N]: a page walk (monitor walk); "
           "ADDR may be any gdb expression.")
    PgBreak()


register()
