"""Host tests of gdb/pgkernel_core.py: `python3 -m unittest discover -s gdb`."""

import struct
import unittest
from typing import ClassVar

import pgkernel_core as core


class EntryDecoding(unittest.TestCase):
    # The same cases as kernel/mm/src/entry.rs's own tests, so both decoders agree.
    def test_flags_like_the_kernel(self):
        self.assertEqual(core.describe_entry(0x0034_5067), "P RW US A D")
        self.assertEqual(core.describe_entry(0x0034_5005), "P RO US")
        self.assertEqual(core.describe_entry(42 << 1), "swap slot 42")
        self.assertEqual(core.describe_entry(0), "not present")

    def test_every_flag_in_order(self):
        self.assertEqual(core.describe_entry(0x1FF), "P RW US PWT PCD A D PS G")
        self.assertEqual(core.describe_entry(0x0010_0003), "P RW SV")
        self.assertEqual(core.describe_entry(0x0010_0101), "P RO SV G")

    def test_swap_entries(self):
        self.assertTrue(core.is_swap(0x54))
        self.assertFalse(core.is_swap(0))
        self.assertFalse(core.is_swap(0x1001))
        self.assertEqual(core.swap_slot(0xFFFF_FFFE), 0x7FFF_FFFF)

    def test_format_entry(self):
        self.assertEqual(core.format_entry(0x00FD_5067),
                         "0x00fd5067 [P RW US A D] frame 0x00fd5000")
        self.assertEqual(core.format_entry(0), "0x00000000 [not present]")
        self.assertEqual(core.format_entry(84), "0x00000054 [swap slot 42]")
        # Values read as signed from gdb are masked to 32 bits.
        self.assertEqual(core.format_entry(-1 & 0xFFFF_FFFF),
                         "0xffffffff [P RW US PWT PCD A D PS G] frame 0xfffff000")


class LinearAddresses(unittest.TestCase):
    def test_indices_match_the_0_11_shifts(self):
        a = 0x0840_3ABC
        self.assertEqual(core.dir_index(a) * 4, (a >> 20) & 0xFFC)
        self.assertEqual(core.table_index(a) * 4, (a >> 10) & 0xFFC)
        self.assertEqual(core.page_offset(a), 0xABC)
        self.assertEqual(core.slot_of(a), 2)

    def test_format(self):
        self.assertEqual(core.format_linear(0x0840_3ABC),
                         "0x08403abc (dir 33, table 3, offset 0xabc; slot 2 + 0x00403abc)")
        self.assertEqual(core.format_phys(0x00FD_5123),
                         "0x00fd5123 (frame 0x00fd5000 + 0x123)")
        self.assertEqual(core.format_frame(0x1000), "frame 0x00001000")
        self.assertIn("not page aligned", core.format_frame(0x1001))

    def test_linear_of_slot(self):
        self.assertEqual(core.linear(0x1234, 3), 0x0C00_1234)
        self.assertEqual(core.linear(0x3FF_FFFF, 63), 0xFFFF_FFFF)
        with self.assertRaises(ValueError):
            core.linear(64 << 20, 1)
        with self.assertRaises(ValueError):
            core.linear(0, 64)

    def test_parse_int(self):
        self.assertEqual(core.parse_int("0x4000_000"), 0x400_0000)
        self.assertEqual(core.parse_int(" 42 "), 42)
        self.assertEqual(core.hex_to_int("0x00fd5000"), 0xFD5000)
        self.assertEqual(core.hex_to_int(7), 7)
        self.assertIsNone(core.hex_to_int(None))
        with self.assertRaises(ValueError):
            core.parse_int("")


INFO_FUNCTIONS = """\
All functions matching regular expression "do_wp_page":

File kernel/mm/src/memory.rs:
751:	static fn mm::memory::Mm<kernel::arch::x86::phys::KernelPhys>::do_wp_page<kernel::arch::x86::phys::KernelPhys>(*mut mm::memory::Mm<kernel::arch::x86::phys::KernelPhys>, u32, mm::addr::LinearAddr, mm::addr::LinearAddr, &mut dyn mm::memory::FailurePolicy) -> core::result::Result<mm::memory::WpOutcome, mm::memory::WpError>;
760:	static fn mm::memory::Mm<kernel::arch::x86::phys::KernelPhys>::do_wp_page_helper<kernel::arch::x86::phys::KernelPhys>(u32);

Non-debugging symbols:
0x001020c0  mm::memory::Mm<P>::do_wp_page::h5c030ffd87e67ba1
0x00102200  other::do_wp_page_x::h0000000000000000
"""


class Symbols(unittest.TestCase):
    def test_parse_info_functions(self):
        names, minimal = core.parse_info_functions(INFO_FUNCTIONS)
        self.assertEqual(names[0], "mm::memory::Mm<kernel::arch::x86::phys::KernelPhys>::"
                                   "do_wp_page<kernel::arch::x86::phys::KernelPhys>")
        self.assertEqual(len(names), 2)
        self.assertEqual(minimal[0], (0x1020C0, "mm::memory::Mm<P>::do_wp_page::h5c030ffd87e67ba1"))

    def test_c_language_form(self):
        text = ("File kernel/mm/src/memory.rs:\n"
                "805:\tstatic struct core::result::Result<mm::memory::WpOutcome, mm::memory::WpError> "
                "mm::memory::Mm<kernel::arch::x86::phys::KernelPhys>::do_wp_page<kernel::arch::x86::phys::KernelPhys>"
                "(struct mm::memory::Mm<kernel::arch::x86::phys::KernelPhys> *, u32);\n"
                "12:\tvoid *kernel::f(void);\n")
        names, _ = core.parse_info_functions(text)
        self.assertEqual(names, [("mm::memory::Mm<kernel::arch::x86::phys::KernelPhys>::do_wp_page"
                                  "<kernel::arch::x86::phys::KernelPhys>"), "kernel::f"])

    def test_function_matches(self):
        names, minimal = core.parse_info_functions(INFO_FUNCTIONS)
        self.assertTrue(core.function_matches(names[0], "do_wp_page"))
        self.assertTrue(core.function_matches(names[0], "Mm::do_wp_page"))
        self.assertTrue(core.function_matches(names[0], "mm::memory::Mm::do_wp_page"))
        self.assertFalse(core.function_matches(names[1], "do_wp_page"))
        self.assertTrue(core.function_matches(minimal[0][1], "do_wp_page"))
        self.assertFalse(core.function_matches(minimal[1][1], "do_wp_page"))
        self.assertFalse(core.function_matches(names[0], "wp_page"))

    def test_strip_generics(self):
        self.assertEqual(core.strip_generics("a::B<c::D<E>>::f<G>"), "a::B::f")


class Rendering(unittest.TestCase):
    def test_table_aligns_and_colours_only_when_asked(self):
        rows = [{"index": 16, "flags": "P RW US", "table": "0x00fd4000"},
                {"index": 1023, "flags": "P RO SV", "table": "0x00100000"}]
        plain = core.render_table(rows, core.Palette(False))
        self.assertNotIn("\x1b[", plain)
        lines = plain.splitlines()
        self.assertEqual(lines[0].split(), ["index", "flags", "table"])
        self.assertEqual(len(lines), 3)
        self.assertTrue(lines[1].startswith("   16"))
        coloured = core.render_table(rows, core.Palette(True))
        self.assertIn("\x1b[", coloured)
        self.assertEqual([core.visible_len(l) for l in coloured.splitlines()],
                         [len(l) for l in lines])

    def test_document(self):
        doc = {"command": "checkmm", "schema": 1, "status": "ok", "frames": 3808,
               "errors": [], "nested": {"a": 1}}
        text = core.render_document(doc, core.Palette(False))
        self.assertIn("== checkmm", text)
        self.assertIn("frames : 3808", text)
        self.assertIn("(none)", text)
        self.assertNotIn("schema", text)

    def test_extract_json(self):
        self.assertEqual(core.extract_json('{"a": 1}\n'), {"a": 1})
        self.assertEqual(core.extract_json('noise {"a": [1, 2]} tail'), {"a": [1, 2]})
        with self.assertRaises(ValueError):
            core.extract_json("unknown command: 'walk'")

    def test_find_key(self):
        doc = {"command": "walk", "result": {"pte": {"physical": "0x00fd5123"}}}
        self.assertEqual(core.find_key(doc, "phys", "physical"), "0x00fd5123")
        self.assertIsNone(core.find_key(doc, "nope"))


WALK_OK = {"command": "walk", "schema": 1, "linear": "0x04001000",
           "task": {"pid": 1, "slot": 1, "offset": "0x00001000"},
           "pde": {"index": 16, "raw": "0x01fdd027", "flags": "P RW US A", "present": True},
           "table": "0x01fdd000",
           "pte": {"index": 1, "raw": "0x01fd7025", "flags": "P RO US A", "present": True},
           "frame": "0x01fd7000", "count": 1, "physical": "0x01fd7000", "stop": None}
WALK_STOP = {"command": "walk", "schema": 1, "linear": "0x07000000", "task": None,
             "pde": {"index": 28, "raw": "0x00000000", "flags": "not present", "present": False},
             "table": None, "pte": {"index": 0, "raw": None, "flags": None, "present": None},
             "frame": None, "count": None, "physical": None,
             "stop": {"level": "pde", "reason": "no_page_table", "swap_slot": None}}


class MonitorRendering(unittest.TestCase):
    """The per-command renderers on documents shaped as kernel/docs/monitor.md says."""

    def setUp(self):
        self.p = core.Palette(False)

    def test_walk(self):
        text = core.render_monitor(WALK_OK, self.p)
        self.assertIn("walk 0x04001000 (pid 1 offset 0x00001000, slot 1)", text)
        self.assertIn("PTE 1     raw 0x01fd7025  P RO US A  -> frame 0x01fd7000, mem_map count 1", text)
        self.assertIn("physical 0x01fd7000", text)
        text = core.render_monitor(WALK_STOP, self.p)
        self.assertIn("stops at the PDE: no page table", text)

    def test_error(self):
        doc = {"command": "walk", "schema": 1, "error": {"kind": "no_such_task",
               "message": "no task with pid 99", "usage": "walk ADDR [--task PID] [--json]"}}
        self.assertEqual(core.render_monitor(doc, self.p),
                         "walk: no task with pid 99\nusage: walk ADDR [--task PID] [--json]")

    def test_dumppgd(self):
        doc = {"command": "dumppgd", "schema": 1, "pg_dir": "0x0019e000", "present": 9,
               "not_present_nonzero": 0, "shown": 9,
               "entries": [{"index": i, "table": f"0x{0x19f000 + i * 4096:08x}", "slot": 0, "pid": 0}
                           for i in range(8)] + [{"index": 16, "table": "0x01fdd000", "slot": 1, "pid": 1}],
               "runs": [{"first_index": 0, "last_index": 7, "start": "0x00000000", "last": "0x01ffffff",
                         "flags": "P RW SV", "present_ptes": 8160},
                        {"first_index": 16, "last_index": 16, "start": "0x04000000",
                         "last": "0x043fffff", "flags": "P RW US A", "present_ptes": 23}]}
        text = core.render_monitor(doc, self.p)
        self.assertIn("page directory at 0x0019e000", text)
        self.assertRegex(text, r"0-7\s+0x00000000-0x01ffffff\s+8 tables\s+8160\s+kernel\s+P RW SV")
        self.assertRegex(text, r"16\s+0x04000000-0x043fffff\s+0x01fdd000\s+23\s+pid 1 \(slot 1\)")

    def test_unknown_schema_is_generic(self):
        text = core.render_monitor({"command": "walk", "schema": 2, "x": 1}, self.p)
        self.assertIn("x : 1", text)

    def test_checkmm(self):
        ok = {"command": "checkmm", "schema": 1, "ok": True, "frames": 10, "present_pdes": 2,
              "present_ptes": 3, "kernel_refs": 1, "mismatches": [], "mismatch_count": 0}
        self.assertTrue(core.render_monitor(ok, self.p).startswith("checkmm: OK (10 frames"))


class FunctionNames(unittest.TestCase):
    NAMES: ClassVar[list[str]] = [
        "mm::memory::Mm<kernel::arch::x86::phys::KernelPhys>::get_free_page_with<kernel::arch::x86::phys::KernelPhys>",
        "mm::memory::Mm<kernel::arch::x86::phys::KernelPhys>::copy_page_tables<kernel::arch::x86::phys::KernelPhys>",
        "mm::memory::Mm<kernel::arch::x86::phys::KernelPhys>::free_page_tables<kernel::arch::x86::phys::KernelPhys>",
        "mm::mem_map::MemMap::take_highest_free",
        "kernel::task::fork::sys_fork",
    ]

    def test_a_seed_name_suggests_the_kernel_one(self):
        found = core.suggest_functions("get_free_page", self.NAMES)
        self.assertEqual(found[0], self.NAMES[0])

    def test_a_misspelling_suggests_the_close_name(self):
        self.assertEqual(core.suggest_functions("copy_page_table", self.NAMES)[0], self.NAMES[1])
        self.assertEqual(core.suggest_functions("fre_page_tables", self.NAMES)[0], self.NAMES[2])

    def test_nothing_close_suggests_nothing(self):
        self.assertEqual(core.suggest_functions("schedule_timeout", self.NAMES), [])

    def test_the_stub_s_own_path(self):
        for name in ("mm::memory::Mm<kernel::arch::x86::phys::KernelPhys>::page_table<kernel::arch::x86::phys::KernelPhys>",
                     "mm::memory::Mm<kernel::arch::x86::phys::KernelPhys>::walk<kernel::arch::x86::phys::KernelPhys>",
                     "mm::entry::Entry::is_present", "kernel::gdb::on_debug_exception",
                     "kernel::trap::dispatch", "trap_common",
                     "<kernel::arch::x86::phys::KernelPhys as mm::phys::PhysMem>::read_bytes",
                     "kernel::arch::x86::phys::{impl#2}::read_u32"):
            self.assertTrue(core.on_stub_path(name), name)
        for name in self.NAMES + ["mm::memory::Mm<kernel::arch::x86::phys::KernelPhys>::pte<kernel::arch::x86::phys::KernelPhys>",
                                  "kernel::fault::page_fault",
                                  "<kernel::arch::x86::phys::KernelPhys as mm::phys::PhysMem>::flush_tlb",
                                  "kernel::arch::x86::phys::{impl#2}::flush_tlb", "image::reader::read_u32"]:
            self.assertFalse(core.on_stub_path(name), name)

    def test_break_arguments(self):
        self.assertEqual(core.parse_break_args("do_wp_page"), ("do_wp_page", None, False))
        self.assertEqual(core.parse_break_args("sys_fork --pid 2 --entry"), ("sys_fork", 2, True))
        self.assertEqual(core.parse_break_args("--task 0x3 Mm::do_no_page"), ("Mm::do_no_page", 3, False))
        for bad in ("", "--pid", "--pid x f", "f g", "f --wat"):
            with self.assertRaises(ValueError):
                core.parse_break_args(bad)


def elf32(segments):
    """A minimal ELF32 file: a header and one program header per (vaddr, flags, bytes)."""
    header = bytearray(52)
    header[:4] = b"\x7fELF"
    header[4] = 1
    phoff = 52
    struct.pack_into("<I", header, 28, phoff)
    struct.pack_into("<HH", header, 42, 32, len(segments))
    table = bytearray()
    data = bytearray()
    offset = 52 + 32 * len(segments)
    for vaddr, flags, body in segments:
        table += struct.pack("<8I", core.PT_LOAD, offset + len(data), vaddr, vaddr, len(body),
                             len(body), flags, 0x1000)
        data += body
    return bytes(header + table + data)


class ElfFiles(unittest.TestCase):
    def test_bytes_at_an_address(self):
        data = elf32([(0x100000, 4, b"RO" * 8), (0x101000, core.PF_X | 4, bytes(range(32)))])
        self.assertEqual(core.elf_bytes(data, 0x101004, 4), bytes([4, 5, 6, 7]))
        self.assertEqual(core.elf_code_segment(data), (0x101000, 32))
        with self.assertRaises(ValueError):
            core.elf_bytes(data, 0x10101e, 4)  # runs past the segment
        with self.assertRaises(ValueError):
            core.elf_bytes(b"MZ" + bytes(60), 0, 1)


# Layouts as pgkernel.py's layout_of describes the kernel's types (sizes and offsets
# from the i586 build's DWARF).
U8, U32, BOOL = ("scalar", 1), ("scalar", 4), ("scalar", 1)
FRAME = ("struct", 4, [(0, U32)])
OPTION_FRAME = ("enum", 8, (0, 4), [[], [(4, FRAME)]])
MAP_COUNT_ERROR = ("enum", 8, (0, 1), [[(4, FRAME)], [(4, FRAME)], [(4, FRAME)]])
RESULT_UNIT_MAP_COUNT_ERROR = ("enum", 8, (0, 1), [[], [(0, MAP_COUNT_ERROR)]])
OUT_OF_MEMORY = ("struct", 2, [(0, U8), (1, BOOL)])
RESULT_FRAME_OOM = ("enum", 8, (0, 1), [[(4, FRAME)], [(1, OUT_OF_MEMORY)]])
WP_OUTCOME = ("enum", 12, (0, 4), [[(4, FRAME)], [(4, FRAME), (8, FRAME)], [(4, FRAME)], []])


class RustReturnValues(unittest.TestCase):
    def test_scalars_and_newtypes_come_back_in_eax(self):
        self.assertEqual(core.return_location(U32), ("registers", [(0, 4, "eax")]))
        self.assertEqual(core.return_location(FRAME), ("registers", [(0, 4, "eax")]))
        self.assertEqual(core.return_location(("scalar", 8)),
                         ("registers", [(0, 4, "eax"), (4, 4, "edx")]))

    def test_a_scalar_pair_comes_back_in_eax_and_edx(self):
        self.assertEqual(core.rust_abi(OPTION_FRAME), ("pair", (0, 4), (4, 4)))
        self.assertEqual(core.return_location(OPTION_FRAME),
                         ("registers", [(0, 4, "eax"), (4, 4, "edx")]))
        self.assertEqual(core.return_location(("struct", 8, [(0, U8), (4, U32)])),
                         ("registers", [(0, 1, "eax"), (4, 4, "edx")]))

    def test_a_niche_enum_takes_its_data_variant_s_abi(self):
        self.assertEqual(core.rust_abi(MAP_COUNT_ERROR), ("pair", (0, 1), (4, 4)))
        self.assertEqual(core.rust_abi(RESULT_UNIT_MAP_COUNT_ERROR), ("pair", (0, 1), (4, 4)))

    def test_aggregates_over_4_bytes_come_back_through_memory(self):
        self.assertEqual(core.rust_abi(RESULT_FRAME_OOM), core.MEMORY)
        self.assertEqual(core.return_location(RESULT_FRAME_OOM), core.MEMORY)
        self.assertEqual(core.return_location(WP_OUTCOME), core.MEMORY)
        self.assertEqual(core.return_location(("memory", 8)), core.MEMORY)

    def test_two_small_scalars_are_a_pair_too(self):
        self.assertEqual(core.return_location(OUT_OF_MEMORY),
                         ("registers", [(0, 1, "eax"), (1, 1, "edx")]))

    def test_small_aggregates_are_cast_to_eax(self):
        self.assertEqual(core.return_location(("memory", 4)), ("registers", [(0, 4, "eax")]))
        three = ("struct", 3, [(0, U8), (1, U8), (2, U8)])
        self.assertEqual(core.return_location(three), ("registers", [(0, 3, "eax")]))

    def test_nothing_and_zero_sized(self):
        self.assertEqual(core.return_location(("struct", 0, [])), ("none",))
        self.assertEqual(core.rust_abi(("struct", 4, [(0, ("struct", 0, [])), (0, U32)])),
                         ("scalar", 0, 4))

    def test_value_bytes(self):
        pieces = core.return_location(("struct", 8, [(0, U8), (4, U32)]))[1]
        self.assertEqual(core.value_bytes(8, pieces, {"eax": 0xFFFF_FF01, "edx": 0x0102_0304}),
                         bytes([1, 0, 0, 0, 4, 3, 2, 1]))


class Descriptors(unittest.TestCase):
    def test_the_kernel_s_gdt(self):
        code = core.decode_descriptor(0x00CF_9A00_0000_FFFF)
        self.assertEqual((code["kind"], code["base"], code["limit"], code["dpl"]),
                         ("code", 0, 0xFFFF_FFFF, 0))
        self.assertEqual(code["flags"], "exec/read 32-bit")
        self.assertEqual(core.format_descriptor("GDT 0", 0), "GDT 0 null")
        tss = core.decode_descriptor(0x0000_8B15_6A80_0067)
        self.assertEqual((tss["kind"], tss["base"], tss["limit"], tss["flags"]),
                         ("tss", 0x0015_6A80, 0x67, "busy"))

    def test_a_task_s_ldt_segment(self):
        # Task 2's data segment: base 128 MiB, 64 MiB, DPL 3 (Linux 0.11's layout).
        data = core.decode_descriptor(0x08C0_F300_0000_3FFF)
        self.assertEqual((data["kind"], data["base"], data["limit"], data["dpl"]),
                         ("data", 0x0800_0000, 0x03FF_FFFF, 3))
        self.assertIn("read/write", data["flags"])

    def test_selectors(self):
        self.assertEqual(core.describe_selector(0x0F), "0x0f: LDT 1, RPL 3")
        self.assertEqual(core.describe_selector(0x20), "0x20: GDT 4, RPL 0")


class Schema(unittest.TestCase):
    """The committed JSON Schema drives the commands, the version and the field names."""

    def test_every_renderer_has_a_document_in_the_schema(self):
        for command in core.RENDERERS:
            self.assertIn(command, core.DOCUMENTS)
        self.assertEqual(core.SCHEMA, core.MONITOR_SCHEMA["x-schema-version"])
        self.assertEqual(core.document_fields("walk")[:3], ["command", "schema", "linear"])
        self.assertIn("runs", core.document_fields("dumppgd"))
        self.assertEqual(core.document_fields("nosuch"), [])

    def test_documents_are_checked_against_it(self):
        walk = dict(WALK_OK, high_memory="0x01fe0000")
        self.assertEqual(core.check_document(walk), "")
        self.assertIn("schema 7", core.check_document(dict(walk, schema=7)))
        self.assertIn("unknown command", core.check_document(dict(walk, command="frob")))
        partial = {k: v for k, v in walk.items() if k != "linear"}
        self.assertEqual(core.check_document(partial), "missing linear")

    def test_checkmm_counts_read_right(self):
        p = core.Palette(False)
        one = {"command": "checkmm", "schema": core.SCHEMA, "ok": False, "frames": 1, "present_pdes": 1,
               "present_ptes": 2, "kernel_refs": 0, "swap_entries": 0, "mismatch_count": 1,
               "mismatches": [{"kind": "count", "message": "frame 0x00100000: ..."}], "omitted": 0}
        text = core.render_monitor(one, p)
        self.assertIn("(1 frame, 1 directory entry, 2 page-table entries checked; 1 mismatch)", text)
        self.assertNotIn("task page", text)


if __name__ == "__main__":
    unittest.main()
