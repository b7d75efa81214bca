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
import pgkernel_core as core

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


# The kernel's address newtypes a command or function takes where it takes a number.
ADDRESS_TYPES = ("mm::addr::LinearAddr", "mm::addr::PhysAddr", "mm::addr::Frame")


def to_int(value):
    """A gdb.Value or a Python number, as an unsigned 32-bit int. The kernel's own
    address values (LinearAddr, PhysAddr, Frame: structs around a u32) count as their
    number; any other struct is refused with a clear error."""
    if isinstance(value, gdb.Value):
        value_type = value.type.strip_typedefs()
        if value_type.code == gdb.TYPE_CODE_REF:
            value = value.referenced_value()
            value_type = value.type.strip_typedefs()
        if value_type.code in (gdb.TYPE_CODE_STRUCT, gdb.TYPE_CODE_UNION):
            if value_type.name not in ADDRESS_TYPES:
                raise gdb.GdbError(f"expected an address (a number, {', '.join(ADDRESS_TYPES)}), "
                                   f"not a {value_type.name}")
            return _newtype_int(value)
    return int(value) & core.U32


def eval_int(text):
    """A user argument: a number, or any gdb expression (a LinearAddr variable too)."""
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
        return _newtype_int(value[value_type.fields()[0]])
    return int(value) & core.U32


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


# gdb 13's Rust printer reads an enum that is not itself a value in memory (a field of
# another value, a `finish` result, a register value) with its *first* variant's layout:
# `Ok(WpOutcome::Copied {from, to})` shows `from` from the wrong variant, and when the
# real variant has more fields than the first, gdb stops with "internal-error: field:
# Assertion `idx >= 0 && idx < num_fields ()' failed" (gdbtypes.h:985). rust-lang.c's
# print_enum resolves the variant but takes the field from the unresolved type
# (value_field); gdb 14 passes the resolved one (primitive_field). Its expression
# evaluator gets variants right, so this printer asks it: the error of a probe field
# names the variant, then each field is read as `$enum.0` or `$enum.name`.
RUST_ENUM_FIXED_IN = 14
_ENUM_VARIANT = re.compile(r"(tuple|struct) variant (.*)::([A-Za-z_][A-Za-z0-9_]*)"
                           r"(?:, which has only anonymous fields)?\s*$")
_ENUM_PROBE = "__pg_variant_probe"


def rust_enum_type(value_type):
    """Whether a type is a Rust enum with data as gdb models it: a struct whose fields,
    apart from the artificial discriminant, are its variants (types named ENUM::VARIANT)."""
    value_type = value_type.strip_typedefs()
    if value_type.code != gdb.TYPE_CODE_STRUCT or not value_type.name:
        return False
    variants = [f for f in value_type.fields() if not f.artificial]
    return bool(variants) and all(
        f.name and f.type is not None and f.type.name == f"{value_type.name}::{f.name}"
        for f in variants)


def rust_enum_variant(value):
    """The active variant of a Rust enum value, read through gdb's expression evaluator
    (which resolves variants correctly where gdb 13's printer does not): (variant name,
    "tuple" or "struct", [(field name, field value)]). ValueError when gdb names none."""
    enum_type = value.type.strip_typedefs()
    RustEnumPrinter.depth += 1
    name = f"__pg_enum_{RustEnumPrinter.depth}"
    try:
        gdb.set_convenience_variable(name, value)
        try:
            gdb.parse_and_eval(f"${name}.{_ENUM_PROBE}")
            raise ValueError(f"{enum_type.name}: no variant found")
        except gdb.error as error:
            match = _ENUM_VARIANT.search(str(error))
            if not match:
                raise ValueError(f"{enum_type.name}: {error}") from None
        kind, variant = match.group(1), match.group(3)
        variant_type = None
        for field in enum_type.fields():
            if field.name == variant and not field.artificial:
                variant_type = field.type.strip_typedefs()
        if variant_type is None:
            raise ValueError(f"{enum_type.name}: no variant {variant}")
        fields = [f for f in variant_type.fields() if not f.artificial]
        base = value.address
        if base is not None:
            # In memory: each field at its offset (the variant's fields are placed from
            # the enum's start), as lvalues (`&field` and writes work).
            base = int(base)
            values = [(str(i) if kind == "tuple" else f.name,
                       gdb.Value(base + f.bitpos // 8).cast(f.type.pointer()).dereference())
                      for i, f in enumerate(fields)]
        elif kind == "tuple":
            values = [(str(i), gdb.parse_and_eval(f"${name}.{i}")) for i in range(len(fields))]
        else:
            values = [(f.name, gdb.parse_and_eval(f"${name}.{f.name}")) for f in fields]
        return variant_type.name or f"{enum_type.name}::{variant}", kind, values
    finally:
        gdb.set_convenience_variable(name, None)
        RustEnumPrinter.depth -= 1


def enum_payload(value):
    """The one field of a tuple variant (`Some(x)` -> x), else None (`None`)."""
    _, _, fields = rust_enum_variant(value)
    return fields[0][1] if len(fields) == 1 else None


class RustEnumPrinter:
    """A Rust enum, printed as gdb prints it (`Path::Variant(a, b)`, `Path::Variant{x:
    a}`), with the right variant wherever the value comes from."""

    depth = 0

    def __init__(self, value):
        self.value = value

    def to_string(self):
        if RustEnumPrinter.depth > 16:
            return "{...}"
        try:
            label, kind, fields = rust_enum_variant(self.value)
        except ValueError as error:
            return f"<{error}>"
        if not fields:
            return label
        if kind == "tuple":
            return f"{label}({', '.join(str(v) for _, v in fields)})"
        return f"{label}{{{', '.join(f'{n}: {v}' for n, v in fields)}}}"


def _gdb_major():
    try:
        return int(gdb.VERSION.split(".")[0])
    except ValueError:
        return 0


def lookup_printer(value):
    value_type = value.type.strip_typedefs()
    if value_type.code != gdb.TYPE_CODE_STRUCT:
        return None
    printer = PRINTERS.get(value_type.name)
    if printer:
        return printer(value)
    if _gdb_major() < RUST_ENUM_FIXED_IN and rust_enum_type(value_type):
        return RustEnumPrinter(value)
    return None


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


# --- returning from a function ------------------------------------------------------
# Frames a breakpoint must not be put into: every trap returns through trap_common, so a
# breakpoint there (finish's, from trap::dispatch) is hit again by the trap it raises.
TRAP_PATH_FUNCTIONS = ("trap_common", "trap_return")


def layout_of(value_type, depth=0):
    """A gdb type as pgkernel_core's layout description (see core.return_location)."""
    value_type = value_type.strip_typedefs()
    size = value_type.sizeof
    code = value_type.code
    if depth > 32:
        return ("memory", size)
    if code == gdb.TYPE_CODE_STRUCT:
        fields = [f for f in value_type.fields() if hasattr(f, "bitpos")]
        if rust_enum_type(value_type):
            discr = None
            variants = []
            for field in fields:
                if field.artificial:
                    discr = (field.bitpos // 8, field.type.strip_typedefs().sizeof)
                else:
                    variant = field.type.strip_typedefs()
                    variants.append([(f.bitpos // 8, layout_of(f.type, depth + 1))
                                     for f in variant.fields() if hasattr(f, "bitpos")])
            return ("enum", size, discr, variants)
        return ("struct", size, [(f.bitpos // 8, layout_of(f.type, depth + 1)) for f in fields])
    if code in (gdb.TYPE_CODE_INT, gdb.TYPE_CODE_BOOL, gdb.TYPE_CODE_CHAR, gdb.TYPE_CODE_PTR,
                gdb.TYPE_CODE_ENUM, gdb.TYPE_CODE_FLT, gdb.TYPE_CODE_REF):
        return ("scalar", size)
    return ("memory", size)


def _function_type(frame):
    function = frame.function()
    if function is None:
        return None, None
    return function, function.type.target() if function.type else None


def returned_value(return_type, frame):
    """The value a Rust function just returned, read where the Rust ABI puts it.

    Returns (value or None, how): `how` says where it was found."""
    if return_type is None or return_type.code == gdb.TYPE_CODE_VOID:
        return None, "nothing returned"
    location = core.return_location(layout_of(return_type))
    eax = int(frame.read_register("eax")) & core.U32
    if location[0] == "none":
        return None, "() returned"
    if location[0] == "memory":
        how = f"through memory at 0x{eax:08x} (the caller's buffer, address in eax)"
        return gdb.Value(eax).cast(return_type.pointer()).dereference(), how
    registers = {"eax": eax, "edx": int(frame.read_register("edx")) & core.U32}
    data = core.value_bytes(return_type.strip_typedefs().sizeof, location[1], registers)
    used = " and ".join(dict.fromkeys(register for _, _, register in location[1]))
    return gdb.Value(data, return_type), f"in {used}"


class FrameReturnBreakpoint(gdb.Breakpoint):
    """The return address of one call: it stops only when the call returns to the
    caller's own frame, so another task returning through the same address, or a
    deeper call of the same function, does not count.

    The caller's frame is recognised by its frame id (stack address and function), or
    by esp: right after the return esp is the callee's CFA, or 4 bytes more when the
    callee popped its hidden return-buffer argument (`ret $4`). The second test is there
    because code without frame pointers (the release build; the stepping build has them)
    can have unwind rows that are 4 bytes off on exactly that instruction, so the frame id
    gdb computes there is not the recorded one (gdb's own finish then runs past the
    return)."""

    def __init__(self, caller):
        super().__init__(f"*0x{int(caller.pc()):x}", internal=True)
        self.silent = True
        self.caller = caller
        # Set when the call came back: True by frame id, "esp" by the stack pointer.
        self.returned = None
        # By name: gdb.Symbol objects for the same function do not compare equal.
        self.function = caller.name()
        self.cfa = int(caller.read_register("esp")) & core.U32

    def stop(self):
        newest = gdb.newest_frame()
        if newest == self.caller:
            self.returned = True
            return True
        esp = int(newest.read_register("esp")) & core.U32
        if newest.name() == self.function and esp in (self.cfa, self.cfa + 4):
            self.returned = "esp"
            return True
        return False


# `sub $4, %esp`: the caller's re-adjustment after a callee that popped its hidden
# return-buffer argument; the unwind rows are right again after it.
STACK_READJUST = bytes([0x83, 0xEC, 0x04])


def select_frame_named(name):
    """Selects the innermost frame of the function `name` (after a step into code that
    was inlined into it, the inlined function's frame is the newest)."""
    frame = gdb.newest_frame()
    while frame is not None and frame.name() != name:
        frame = frame.older()
    if frame is not None:
        frame.select()


def step_past_stack_readjust():
    """When stopped on `sub $4, %esp` right after a return, executes it, so that the
    caller's frame (its arguments, `bt`) reads right; eax and edx are untouched."""
    pc = int(gdb.selected_frame().pc())
    try:
        code = bytes(gdb.selected_inferior().read_memory(pc, len(STACK_READJUST)))
    except gdb.MemoryError:
        return
    if code == STACK_READJUST:
        previous = gdb.parameter("suppress-cli-notifications")
        gdb.execute("set suppress-cli-notifications on")
        try:
            gdb.execute("stepi", to_string=True)
        finally:
            gdb.execute(f"set suppress-cli-notifications {'on' if previous else 'off'}")


class PgFinish(gdb.Command):
    """pg-finish: run until the selected frame's function returns, and print what it
    returned, read as Rust returns it.

    gdb's `finish` reads every returned struct from the address in eax, as the i386 C
    ABI returns structs; Rust returns a value of up to 4 bytes, a u64 and a pair of
    scalars (Option<Frame>, Result<(), MapCountError>) in eax/edx, so `finish` shows
    garbage for those. pg-finish runs to the return (a breakpoint at the return address
    that stops only in the caller's own frame), then reads the value where Rust put it
    (registers, or the caller's buffer whose address is in eax), records it in the value
    history and prints it. It refuses to return into trap_common (the trap path itself:
    a breakpoint there is hit by every trap)."""

    def __init__(self):
        super().__init__("pg-finish", gdb.COMMAND_RUNNING)

    def invoke(self, argument, from_tty):
        if argument.strip():
            raise gdb.GdbError("usage: pg-finish (finishes the selected frame)")
        frame = gdb.selected_frame()
        caller = frame.older()
        if caller is None:
            raise gdb.GdbError('"finish" not meaningful in the outermost frame.')
        if caller.name() in TRAP_PATH_FUNCTIONS:
            raise gdb.GdbError(f"pg-finish: {frame.name()} returns into {caller.name()}, the trap "
                               "path every trap runs through: a breakpoint there would be hit "
                               "by the trap it raises (continue instead)")
        if frame.type() == gdb.INLINE_FRAME:
            # Inlined code has no return: gdb's finish steps out of it (and has no value).
            gdb.execute("finish", from_tty)
            return
        function, return_type = _function_type(frame)
        gdb.write("Run till exit from ")
        gdb.execute(f"frame {frame.level()}" if hasattr(frame, "level") else "frame", from_tty)
        back = FrameReturnBreakpoint(caller)
        try:
            gdb.execute("continue", from_tty)
        finally:
            returned = back.returned if back.is_valid() else None
            if back.is_valid():
                back.delete()
        if not returned:
            gdb.write("pg-finish: stopped before the function returned (no value)\n")
            return
        # The value first: registers as the return left them.
        value, how = returned_value(return_type, gdb.newest_frame())
        if value is not None:
            value.fetch_lazy()
        if returned == "esp":
            step_past_stack_readjust()
            select_frame_named(caller.name())
        gdb.execute("frame", from_tty)
        if value is None:
            gdb.write(f"pg-finish: {function.name if function else 'the function'}: {how}\n")
            return
        number = gdb.add_history(value)
        gdb.write(f"Value returned is ${number} = {value}\n({core.FINISH_NOTE} {how})\n")


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


def selected_pid():
    """The pid of the task gdb has selected (the stub's thread N is pid N - 1)."""
    thread = gdb.selected_thread()
    if thread is None:
        raise gdb.GdbError("no thread is selected (is gdb attached?)")
    return thread.ptid[1] - 1


class TaskBreakpoint(gdb.Breakpoint):
    """A breakpoint that stops only in task `pid` (None: in every task). The check runs
    inside gdb, so the other tasks' hits resume at once."""

    def __init__(self, pid=None, **where):
        super().__init__(**where)
        self.pid = pid

    def stop(self):
        return self.pid is None or selected_pid() == self.pid


def pg_break_at(wanted, pid=None, entry=False, quiet=False):
    """Breakpoints on the kernel function(s) `wanted` names (see resolve_function): after
    the prologue as gdb's `break FUNCTION` puts them, so that arguments are readable in
    the stepping build, or at the first instruction (`entry`). Only in task `pid` when
    given. Returns [(breakpoint, full name, address)]; a GdbError, with the close names,
    when nothing matches."""
    found = resolve_function(wanted)
    if not found:
        raise gdb.GdbError(no_function_message(wanted))
    refused = [name for _, name in found if core.on_stub_path(name)]
    if refused:
        raise gdb.GdbError(
            f"pg-break: {refused[0]} runs inside the gdb stub too (its entry, or the software "
            "walk with which it plants and lifts breakpoints): the stub would hit the breakpoint "
            "itself and the kernel would stop with a #BP in kernel mode. Break in a caller and "
            "`step` into it instead.")
    made = []
    for addr, name in found:
        breakpoint = None
        if not entry:
            try:
                breakpoint = TaskBreakpoint(pid, function=name)
            except gdb.error:
                breakpoint = None  # no debug information for it: at its address
        if breakpoint is None:
            breakpoint = TaskBreakpoint(pid, spec=f"*0x{addr:x}")
        made.append((breakpoint, name, addr))
        if not quiet:
            where = "its first instruction" if entry or breakpoint.location.startswith("*") \
                else "after its prologue"
            task = f", in pid {pid} only" if pid is not None else ""
            gdb.write(f"pg-break: breakpoint {breakpoint.number} in {name} ({where}{task}; "
                      f"the function is at 0x{addr:08x})\n")
    return made


def no_function_message(wanted):
    """"no function named X", and the functions it may mean (a seed text's name that is
    spelt differently here, or a function inlined in this build)."""
    last = core.strip_generics(wanted).split("::")[-1]
    # A substring search first (get_free_page -> get_free_page_with), then every
    # function for close spellings, only when the first finds nothing.
    names, minimal = core.parse_info_functions(
        gdb.execute(f"info functions {re.escape(last)}", to_string=True))
    candidates = core.suggest_functions(wanted, names + [name for _, name in minimal])
    if not candidates and len(last) >= 4:
        names, minimal = core.parse_info_functions(
            gdb.execute(f"info functions {re.escape(last[:4])}", to_string=True))
        candidates = core.suggest_functions(wanted, names + [name for _, name in minimal])
    message = f"pg-break: no function named {wanted} in this build"
    if candidates:
        plain = [core.strip_generics(name).split("::")[-1] for name in candidates]
        message += "; did you mean: " + ", ".join(dict.fromkeys(plain))
    return message


class PgBreak(gdb.Command):
    """pg-break FUNCTION [--pid N] [--entry]: break on a kernel function by its plain name.

    Rust generic names are awkward to type (`mm::memory::Mm<kernel::arch::x86::phys::
    KernelPhys>::do_wp_page<...>`): this finds every function whose path without generic
    arguments ends in FUNCTION (`do_wp_page`, `Mm::do_wp_page`), through `info functions`
    and the symbol table, and breaks there: after the prologue, as `break FUNCTION` does
    (arguments readable in the stepping build), or at its first instruction with --entry.
    --pid N stops only in task N. A name that matches nothing gets the close ones
    (`get_free_page` -> `get_free_page_with`)."""

    def __init__(self):
        super().__init__("pg-break", gdb.COMMAND_BREAKPOINTS, gdb.COMPLETE_SYMBOL)

    def invoke(self, argument, from_tty):
        try:
            wanted, pid, entry = core.parse_break_args(argument)
        except ValueError as error:
            raise gdb.GdbError(f"pg-break: {error}; usage: pg-break FUNCTION [--pid N] [--entry]") \
                from None
        pg_break_at(wanted, pid, entry)


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


# --- which build is running ------------------------------------------------------------
ELF_SAMPLE_BYTES = 64
BUILD_HINT = ("scripts/run boots the release kernel (attach with scripts/gdb), scripts/run "
              "--debug-build the stepping one (attach with scripts/gdb --debug-build)")


class PgElfCheck(gdb.Command):
    """pg-elf-check: whether the running kernel is the ELF gdb loaded.

    Compares a few stretches of the kernel's code (start, middle, end of the executable
    segment) read through the stub with the same bytes of the ELF file. With the other
    build's symbols (release vs scripts/build --debug-build) every address is wrong:
    breakpoints land in the middle of instructions and bt is nonsense; scripts/gdb runs
    this right after attaching."""

    def __init__(self):
        super().__init__("pg-elf-check", gdb.COMMAND_STATUS)

    def invoke(self, argument, from_tty):
        path = gdb.current_progspace().filename
        if not path:
            raise gdb.GdbError("pg-elf-check: no ELF loaded")
        if not gdb.selected_inferior().pid:
            raise gdb.GdbError("pg-elf-check: not attached to a kernel (target remote first)")
        with open(path, "rb") as elf:
            data = elf.read()
        try:
            start, size = core.elf_code_segment(data)
        except ValueError as error:
            raise gdb.GdbError(f"pg-elf-check: {path}: {error}") from None
        samples = [start, start + (size // 2 & ~3), start + max(size - ELF_SAMPLE_BYTES, 0)]
        # The cargo profile's directory holds the ELF: .../release/kernel, .../stepping/kernel.
        build = os.path.basename(os.path.dirname(path))
        for addr in samples:
            length = min(ELF_SAMPLE_BYTES, start + size - addr)
            want = core.elf_bytes(data, addr, length)
            try:
                got = bytes(gdb.selected_inferior().read_memory(addr, length))
            except gdb.MemoryError as error:
                raise gdb.GdbError(f"pg-elf-check: cannot read the kernel's code: {error}") from None
            if got != want:
                gdb.write(f"pg-elf-check: WARNING: the running kernel is not {path} ({build} "
                          f"build): its code at 0x{addr:08x} differs. {BUILD_HINT}.\n")
                return
        gdb.write(f"pg-elf-check: the running kernel's code matches {path} ({build} build)\n")


# --- watchpoints ---------------------------------------------------------------------
WATCH_KINDS = {"write": gdb.WP_WRITE, "read": gdb.WP_READ, "access": gdb.WP_ACCESS}
WATCH_C_TYPES = {1: "unsigned char", 2: "unsigned short", 4: "unsigned int"}


def watch_word(addr, kind="write", size=4):
    """A hardware watchpoint on the `size`-byte word at kernel address `addr` (a PTE's
    physical address is its kernel address: RAM is identity-mapped). The expression is
    C's (gdb remembers each watchpoint's language), whatever the frame's language is."""
    language = gdb.parameter("language")
    gdb.execute("set language c", to_string=True)
    try:
        return gdb.Breakpoint(f"*({WATCH_C_TYPES[size]} *)0x{addr:x}", gdb.BP_WATCHPOINT,
                              WATCH_KINDS[kind])
    finally:
        gdb.execute(f"set language {language}", to_string=True)


def entry_address(kind, linear):
    """The kernel address of the page-directory entry (`pde`) or page-table entry
    (`pte`) that maps `linear`."""
    pgd = page_directory()
    pde_addr = pgd + 4 * core.dir_index(linear)
    if kind == "pde":
        return pde_addr
    pde = read_u32(pde_addr)
    if not core.is_present(pde):
        raise gdb.GdbError(f"0x{linear:08x} has no page table yet (PDE {core.dir_index(linear)} is "
                           f"{core.format_entry(pde)}): watch the directory entry (--pde), "
                           "or stop later")
    return core.entry_frame(pde) + 4 * core.table_index(linear)


class PgWatch(gdb.Command):
    """pg-watch ADDR [--read|--access] [--size 1|2|4]: a hardware watchpoint on a word.
    pg-watch --pte|--pde LINEAR [--task PID] [--read|--access]: on the page-table (or
    page-directory) entry that maps LINEAR (an offset in task PID's segment with --task).

    ADDR and LINEAR are any gdb expression (a LinearAddr variable too). gdb runs in Rust
    mode in the kernel, where `watch *(unsigned int *)0x1000` is a syntax error; the Rust
    spelling is `watch *(0x1000 as *const u32)`, and this command needs neither."""

    def __init__(self):
        super().__init__("pg-watch", gdb.COMMAND_BREAKPOINTS)

    def invoke(self, argument, from_tty):
        kind, size, entry, task = "write", 4, None, None
        rest = argument
        for option, pattern in (("task", r"--task\s+(\S+)"), ("size", r"--size\s+(\S+)")):
            match = re.search(pattern, rest)
            if match:
                if option == "task":
                    task = eval_int(match.group(1))
                else:
                    size = eval_int(match.group(1))
                rest = rest[:match.start()] + rest[match.end():]
        for flag in ("--read", "--access", "--pte", "--pde"):
            if re.search(rf"{flag}\b", rest):
                rest = re.sub(rf"{flag}\b", "", rest)
                if flag in ("--pte", "--pde"):
                    entry = flag[2:]
                else:
                    kind = flag[2:]
        if not rest.strip() or size not in WATCH_C_TYPES:
            raise gdb.GdbError("usage: pg-watch ADDR [--read|--access] [--size 1|2|4], or "
                               "pg-watch --pte|--pde LINEAR [--task PID]")
        value = eval_int(rest.strip())
        if task is not None:
            value = core.linear(value, task_slot(task))
        if entry:
            addr = entry_address(entry, value)
            what = f"the {entry.upper()} of 0x{value:08x}, at 0x{addr:08x}"
            size = 4
        else:
            addr = value
            what = f"the {size}-byte word at 0x{addr:08x}"
        watchpoint = watch_word(addr, kind, size)
        now = read_u32(addr) if size == 4 else None
        shown = f", now {core.format_entry(now)}" if entry else ""
        gdb.write(f"pg-watch: watchpoint {watchpoint.number} ({kind}s) on {what}{shown}\n")


# --- a user program's symbols --------------------------------------------------------
_LOADED_SYMBOLS = set()


def programs_dir():
    """Where the user programs' ELFs are: .../i586-unknown-linux-gnu/release, beside the
    kernel's build (the programs are release builds in both kernel builds)."""
    kernel = gdb.current_progspace().filename or ""
    return os.path.join(os.path.dirname(os.path.dirname(kernel)), "release")


class PgAddSymbols(gdb.Command):
    """pg-add-symbols [PID] [--file ELF]: the symbols of task PID's program (default: the
    selected task), loaded at its segment base.

    Programs are linked at offset 0 and run at slot * 64 MiB (linear), so their symbols
    must be moved there: this runs `add-symbol-file ELF -o BASE` with the program's ELF
    (target/i586-unknown-linux-gnu/release/NAME, NAME from monitor tasks) and its base.
    Then `break main`, `bt` and `list` work in user code of that task."""

    def __init__(self):
        super().__init__("pg-add-symbols", gdb.COMMAND_FILES, gdb.COMPLETE_FILENAME)

    def invoke(self, argument, from_tty):
        args = gdb.string_to_argv(argument)
        path = None
        if "--file" in args:
            at = args.index("--file")
            if at + 1 >= len(args):
                raise gdb.GdbError("pg-add-symbols: --file needs an ELF")
            path = args[at + 1]
            del args[at:at + 2]
        if len(args) > 1:
            raise gdb.GdbError("usage: pg-add-symbols [PID] [--file ELF]")
        pid = eval_int(args[0]) if args else selected_pid()
        if pid == 0:
            raise gdb.GdbError("pid 0 is the kernel: its symbols are the ones loaded")
        row = None
        for task in core.find_key(monitor_json("tasks"), "tasks") or []:
            if isinstance(task, dict) and task.get("pid") == pid:
                row = task
        if row is None:
            raise gdb.GdbError(f"no task with pid {pid} (monitor tasks)")
        base = core.slot_base(int(row["slot"]))
        if path is None:
            path = os.path.join(programs_dir(), row["program"])
        if not os.path.isfile(path):
            raise gdb.GdbError(f"pg-add-symbols: {path} is missing (scripts/build builds the programs)")
        key = (os.path.realpath(path), base)
        if key in _LOADED_SYMBOLS:
            gdb.write(f"pg-add-symbols: {path} is already loaded at 0x{base:08x}\n")
            return
        gdb.execute(f"add-symbol-file {path} -o 0x{base:x}", to_string=not from_tty)
        _LOADED_SYMBOLS.add(key)
        gdb.write(f"pg-add-symbols: {row['program']} (pid {pid}, slot {row['slot']}): {path} "
                  f"at 0x{base:08x}\n")


# --- control registers and descriptor tables -------------------------------------------
GDT_SYMBOL = "kernel::arch::x86::gdt::GDT"
GDT_NAMES = ("null", "kernel code", "kernel data", "TSS", "current task's LDT",
             "double-fault TSS")
LDT_NAMES = ("null", "user code (0x0f)", "user data (0x17)")


def gdt_words():
    """The GDT's descriptors, read from kernel memory at its symbol."""
    symbol = _lookup_symbol(GDT_SYMBOL)
    if symbol is None:
        raise gdb.GdbError(f"no symbol {GDT_SYMBOL}")
    addr = to_int(symbol.value().address)
    count = symbol.type.strip_typedefs().sizeof // 8
    data = bytes(gdb.selected_inferior().read_memory(addr, 8 * count))
    return addr, [int.from_bytes(data[8 * i:8 * i + 8], "little") for i in range(count)]


def task_ldt(pid):
    """(address, [3 descriptors]) of task `pid`'s LDT, from the task table."""
    symbol = _lookup_symbol(TASKS_SYMBOL)
    if symbol is None:
        raise gdb.GdbError(f"cannot find the task table ({TASKS_SYMBOL})")
    slots = _deep_field(symbol.value(), "slots")
    task = enum_payload(slots[task_slot(pid)])
    if task is None:
        raise gdb.GdbError(f"slot of pid {pid} is empty")
    ldt = task["ldt"]
    addr = to_int(ldt.address)
    return addr, [int(ldt[i]) & ((1 << 64) - 1) for i in range(3)]


def cpu_registers():
    """The stopped CPU's system registers (monitor cpu --json): the document, its hex
    fields as ints; None when the stub has no such command."""
    try:
        doc = monitor_json("cpu")
    except MonitorUnavailable:
        return None
    if not isinstance(doc, dict) or doc.get("error") or doc.get("command") != "cpu":
        return None
    return {key: core.hex_to_int(value) if isinstance(value, str) and value.startswith("0x")
            else value for key, value in doc.items()}


class PgRegs(gdb.Command):
    """pg-regs [--task PID]: CR0, CR2, CR3, CR4, the GDT and an LDT, decoded.

    The control registers are the stopped CPU's (monitor cpu); without that command the
    page directory (what CR3 holds) comes from the kernel's paging state. The GDT is read
    from kernel memory; the LDT is the current task's (the one GDT entry 4 describes), or
    task PID's from the task table. $cr0(), $cr2(), $cr3(), $cr4() give single values."""

    def __init__(self):
        super().__init__("pg-regs", gdb.COMMAND_STATUS)

    def invoke(self, argument, from_tty):
        args = gdb.string_to_argv(argument)
        pid = None
        if args[:1] == ["--task"] and len(args) == 2:
            pid = eval_int(args[1])
        elif args:
            raise gdb.GdbError("usage: pg-regs [--task PID]")
        p = palette()
        cpu = cpu_registers()
        lines = [p.paint("heading", "control registers")]
        if cpu:
            lines.append(f"  CR0 0x{cpu['cr0']:08x}  {cpu['cr0_flags']}")
            lines.append(f"  CR2 0x{cpu['cr2']:08x}  (the last page-fault address)")
            lines.append(f"  CR3 0x{cpu['cr3']:08x}  (page directory at 0x{cpu['pg_dir']:08x})")
            lines.append(f"  CR4 0x{cpu['cr4']:08x}  {cpu['cr4_flags']}")
            lines.append(f"  LDTR {core.describe_selector(cpu['ldtr'])}, TR {core.describe_selector(cpu['tr'])}")
        else:
            lines.append(f"  CR3 page directory at 0x{page_directory():08x} (from the kernel's "
                         "paging state; this stub has no `monitor cpu` for CR0/CR2/CR4)")
        gdt_addr, gdt = gdt_words()
        lines.append(p.paint("heading", f"GDT at 0x{gdt_addr:08x}"))
        for index, raw in enumerate(gdt):
            label = f"  {index} sel 0x{index * 8:02x} {GDT_NAMES[index] if index < len(GDT_NAMES) else ''}"
            lines.append(core.format_descriptor(f"{label:32}", raw))
        if pid is None:
            ldt_desc = core.decode_descriptor(gdt[4]) if len(gdt) > 4 else None
            if ldt_desc is None or ldt_desc["kind"] != "ldt":
                lines.append("LDT: none loaded")
                gdb.write("\n".join(lines) + "\n")
                return
            addr = ldt_desc["base"]
            data = bytes(gdb.selected_inferior().read_memory(addr, 24))
            words = [int.from_bytes(data[8 * i:8 * i + 8], "little") for i in range(3)]
            title = f"LDT of the current task (GDT entry 4) at 0x{addr:08x}"
        else:
            addr, words = task_ldt(pid)
            title = f"LDT of pid {pid} at 0x{addr:08x}"
        lines.append(p.paint("heading", title))
        for index, raw in enumerate(words):
            label = f"  {index} {LDT_NAMES[index]}"
            lines.append(core.format_descriptor(f"{label:32}", raw))
        gdb.write("\n".join(lines) + "\n")


class ControlRegister(gdb.Function):
    """$crN(): control register N of the stopped CPU (monitor cpu); $cr3() falls back to
    the page directory's address from the kernel's paging state."""

    def __init__(self, name):
        super().__init__(name)
        self.register = name

    def invoke(self):
        cpu = cpu_registers()
        if cpu and self.register in cpu:
            return u32_value(cpu[self.register])
        if self.register == "cr3":
            return u32_value(page_directory())
        raise gdb.GdbError(f"${self.register}() needs the stub's `monitor cpu`")


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
    PgFinish()
    PgElfCheck()
    PgWatch()
    PgAddSymbols()
    PgRegs()
    for register_name in ("cr0", "cr2", "cr3", "cr4"):
        ControlRegister(register_name)


register()
