"""test_stepping: end-to-end tests of stepping the seed functions in gdb and of the gdb
conveniences (issue 12 parts 4 and 5): the stepping build's arguments and locals, bt
through the trap entry, finish and pg-finish, pg-break's suggestions and pid filter, the
kernel's address types in pg-walk/$lin2phys/$pte, pg-regs, pg-add-symbols, pg-watch and
pg-elf-check. scripts/e2e-tests runs them with the rest of the gdb tests.
"""

import re

import pytest
from pgtest import gdb, paths
from pgtest.check import check
from pgtest.gdb import monitor, section
from pgtest.gdbtest import COW, pgkernel_core

pytestmark = pytest.mark.timeout(150)

MEMORY_RS = paths.REPO / "kernel" / "mm" / "src" / "memory.rs"
STEPPING = paths.STEPPING_KERNEL
# What gdb prints when an argument or local is gone (the release build's usual answer).
OPTIMIZED_OUT = "<optimized out>"
# gdb 13's own assertion when it prints a Rust enum nested in another value.
GDB_RUST_CRASH = "internal-error"


def stepping_kernel():
    """The stepping build's ELF; a clear failure when it was not built."""
    check(STEPPING.is_file(), f"{STEPPING} is missing: run scripts/build --debug-build")
    return STEPPING


def source_line(path, text):
    """The number of the one line of `path` that contains `text`."""
    lines = [n for n, line in enumerate(path.read_text().splitlines(), 1) if text in line]
    check(len(lines) == 1, f"{path.name}: {len(lines)} lines contain {text!r}")
    return lines[0]


def number(text, name):
    """`$N = 17` -> 17, from a `p NAME` section."""
    match = re.search(r"\$\d+ = (\d+)", text)
    check(match, f"p {name} printed no number:\n{text}")
    return int(match.group(1))


def no_gdb_crash(result):
    check(GDB_RUST_CRASH not in result.out + result.err, f"gdb hit an internal error:\n{result.tail()}")


def test_step_copy_page_tables(ctx):
    """The stepping build: a breakpoint in copy_page_tables shows its arguments (from 64
    MiB, to 128 MiB, size 64 MiB, nothing <optimized out>); a breakpoint on the seed
    text's `this_page = *from_page_table` line, then `next`, shows from_dir, to_dir, nr
    and this_page under 0.11's names, and the next round of the loop has nr one higher;
    from_page_table is the table $pde(from_dir) names."""
    m = ctx.boot(COW, kernel=stepping_kernel())
    line = source_line(MEMORY_RS, "let this_page = self.phys.read_entry(from_page_table, nr);")
    commands = (["pg-break copy_page_tables", "continue"] + section("args", "info args")
                + [f"break memory.rs:{line}", "continue", "next"]
                + section("from_dir", "p from_dir") + section("to_dir", "p to_dir")
                + section("nr", "p nr") + section("this_page", "p this_page")
                + section("table", "p from_page_table") + section("pde", "p $pde(from_dir)")
                + section("locals", "info locals")
                + ["continue", "next"] + section("nr2", "p nr") + section("bt", "bt")
                + ["delete", "detach"])
    r = ctx.gdb(m, commands, timeout=60)
    no_gdb_crash(r)
    args = r.section("args")
    check(OPTIMIZED_OUT not in args, f"copy_page_tables' arguments are optimized out:\n{args}")
    check(re.search(r"^from = 0x04000000 \(dir 16,", args, re.MULTILINE)
          and re.search(r"^to = 0x08000000 \(dir 32,", args, re.MULTILINE)
          and re.search(r"^size = 67108864$", args, re.MULTILINE),
          f"copy_page_tables(from, to, size) is not pid 1's fork into slot 2:\n{args}")
    from_dir, to_dir = number(r.section("from_dir"), "from_dir"), number(r.section("to_dir"), "to_dir")
    check(16 <= from_dir < 32 and to_dir == from_dir + 16,
          f"from_dir {from_dir}, to_dir {to_dir}: not the same entry of slots 1 and 2")
    check(number(r.section("nr"), "nr") == 0, f"the first round has nr != 0:\n{r.section('nr')}")
    check(number(r.section("nr2"), "nr") == 1, f"the next round has nr != 1:\n{r.section('nr2')}")
    check(re.search(r"= 0x[0-9a-f]{8} \[(P R[OW] US|not present)", r.section("this_page")),
          f"this_page is not a decoded entry:\n{r.section('this_page')}")
    table = re.search(r"= frame 0x([0-9a-f]{8})", r.section("table"))
    pde = re.search(r"frame 0x([0-9a-f]{8})", r.section("pde"))
    check(table and pde and table.group(1) == pde.group(1),
          f"from_page_table is not $pde(from_dir)'s table:\n{r.section('table')}\n{r.section('pde')}")
    locals_text = r.section("locals")
    for name in ("this_page", "from_page_table", "to_page_table", "entries", "count"):
        check(re.search(rf"^{name} = ", locals_text, re.MULTILINE), f"info locals lacks {name}:\n{locals_text}")
    check("trap_common" in r.section("bt") and "sys_fork" in r.section("bt"),
          f"bt does not run from copy_page_tables through sys_fork to trap_common:\n{r.section('bt')}")
    m.wait_console(r"^VERDICT: PASS", timeout=60)


# In the order the demo first calls them: its first page fault loads a page, its first
# fork's child copies on write, the child's exit frees its tables.
SEED_FUNCTIONS = ("do_no_page", "get_free_page_with", "un_wp_page", "free_page_tables")


def test_seed_functions_readable(ctx):
    """The stepping build, the demo: at a breakpoint in each seed function (do_no_page,
    get_free_page_with, un_wp_page, free_page_tables at exit), no argument is
    <optimized out> and info args/info locals print without a gdb error; swap_out (a
    16 MiB machine with a swap disk) has its clock locals dir and page; gdb's own finish
    from Mm::pte and from un_wp_page (values returned through memory) stops in the
    caller and prints the value."""
    m = ctx.boot("init=demo", kernel=stepping_kernel())
    commands = []
    for function in SEED_FUNCTIONS:
        commands += [f"pg-break {function}", "continue", "next"]
        commands += section(function, "info args", "info locals")
        commands += ["delete"]
    r = ctx.gdb(m, commands + ["detach"], timeout=90)
    no_gdb_crash(r)
    for function in SEED_FUNCTIONS:
        text = r.section(function)
        check(text.strip() and OPTIMIZED_OUT not in text and "Python Exception" not in text,
              f"{function}: arguments or locals unreadable:\n{text}")
    check("address = 0x" in r.section("un_wp_page") and "address = 0x" in r.section("do_no_page"),
          f"the fault functions' address argument is missing:\n{r.section('un_wp_page')}")
    m.wait_console(r"^VERDICT: PASS", timeout=120)
    # gdb's own finish from functions that return through memory (the frame pointers of
    # the stepping build keep the caller's frame id right at the return address), one of
    # them the value that crashed gdb 13 (a two-field variant inside Result).
    m = ctx.boot(COW, kernel=stepping_kernel())
    r = ctx.gdb(m, ["pg-break Mm::pte", "continue"] + section("finish", "finish")
                + section("where", "bt 1") + ["delete", "pg-break un_wp_page", "continue"]
                + section("finish2", "finish") + ["delete", "detach"], timeout=60)
    no_gdb_crash(r)
    check(re.search(r"Value returned is \$1 = core::option::Option<\(mm::addr::Frame, usize, mm::entry::Entry\)>::",
                    r.section("finish")) and "Breakpoint 1," not in r.section("finish"),
          f"finish from Mm::pte did not return to its caller:\n{r.section('finish')}")
    check(re.search(r"^#0\s+0x[0-9a-f]+ in mm::memory::Mm<.*>::(do_no_page|put_page|un_wp_page|translate)",
                    r.section("where"), re.MULTILINE), f"finish stopped elsewhere:\n{r.section('where')}")
    check(re.search(r"Value returned is \$\d+ = core::result::Result<mm::memory::WpOutcome, mm::memory::WpError>::Ok\(",
                    r.section("finish2")) and "Breakpoint" not in r.section("finish2"),
          f"finish from un_wp_page:\n{r.section('finish2')}")
    m.wait_console(r"^VERDICT: PASS", timeout=60)
    swap = ctx.boot("init=ktest arg=swap-twice-ram", mem="16M", kernel=stepping_kernel(), swap="32M")
    r = ctx.gdb(swap, ["pg-break swap_out", "continue", "next", "next"]
                + section("swap_out", "info locals") + ["delete", "detach"], timeout=90)
    no_gdb_crash(r)
    text = r.section("swap_out")
    check(re.search(r"^dir = \d+", text, re.MULTILINE) and re.search(r"^page = \d+", text, re.MULTILINE),
          f"swap_out's clock (dir, page) is not readable:\n{text}")


def test_bt_through_traps(ctx):
    """bt from do_wp_page (a user write fault) runs through page_fault and trap::dispatch
    and ends at trap_common, the outermost frame: no `?? ()` frame, no "Backtrace
    stopped". From the timer interrupt of the idle kernel (a ring-0 trap), bt goes on
    through trap_common into the interrupted idle loop, down to _start."""
    m = ctx.boot(COW, exit_at_end=False)
    r = ctx.gdb(m, ["pg-break do_wp_page", "continue"] + section("user", "bt")
                + ["delete", "pg-break Run::finish", "continue", "delete",
                   "pg-break timer_tick", "continue"] + section("kernel", "bt")
                + ["delete", "detach"], timeout=60)
    user = r.section("user")
    frames = re.findall(r"^#(\d+)\s+(?:0x[0-9a-f]+ in )?(\S+)", user, re.MULTILINE)
    names = [name for _, name in frames]
    check(names and names[-1] == "trap_common" and "kernel::trap::dispatch" in names
          and any("page_fault" in n for n in names),
          f"bt from do_wp_page does not end at trap_common through trap::dispatch:\n{user}")
    check("??" not in user and "Backtrace stopped" not in user + r.err,
          f"bt from do_wp_page has bogus frames:\n{user}")
    kernel = r.section("kernel")
    check(re.search(r"trap_common \(\)\n#\d+\s+0x[0-9a-f]+ in kernel::arch::x86::cpu::idle_wait", kernel)
          and re.search(r"in _start \(\)\s*$", kernel),
          f"bt from a ring-0 trap does not continue into the interrupted code:\n{kernel}")
    check("??" not in kernel, f"bt from the timer has bogus frames:\n{kernel}")
    m.wait_console(r"^VERDICT: PASS", timeout=30)


# Selects the frame trap_common called (trap::dispatch, perhaps inlined into another).
SELECT_TRAP_CALLER = ("python exec(\"f = gdb.newest_frame()\\nwhile f.older() and f.older().name() != "
                      "'trap_common': f = f.older()\\nf.select()\")")


def test_finish_and_pg_finish(ctx):
    """The release build: pg-finish from do_wp_page returns to its caller (not to the next
    hit) with Ok(Copied{from, to}) or Ok(MadeWritable(frame)), and printing that value
    again (a Rust enum nested in another: gdb 13's crash) works; pg-finish from
    take_highest_free (Option<Frame>, returned in eax and edx) and then from
    get_free_page_with (through memory) name the same frame; pg-finish refuses to
    return into trap_common."""
    m = ctx.boot(COW)
    r = ctx.gdb(m, ["pg-break do_wp_page", "continue"] + section("finish", "pg-finish", "bt 1")
                + section("again", "p $")
                + ["delete", "pg-break take_highest_free", "continue"]
                + section("pair", "pg-finish") + ["delete"] + section("memory", "pg-finish")
                + ["pg-break do_wp_page", "continue", SELECT_TRAP_CALLER] + section("trap", "pg-finish")
                + ["delete", "detach"], timeout=60, allow_errors=True)
    no_gdb_crash(r)
    finish = r.section("finish")
    check("Run till exit from" in r.out + r.err and "Breakpoint 1," not in finish
          and re.search(r"^#\d+\s+(0x[0-9a-f]+ in )?\S*(page_fault|resolve_wp_page)", finish, re.MULTILINE),
          f"pg-finish from do_wp_page did not return to its caller:\n{finish}")
    outcome = (r"core::result::Result<mm::memory::WpOutcome, mm::memory::WpError>::Ok\(mm::memory::WpOutcome::"
               r"(Copied\{from: frame 0x([0-9a-f]{8}), to: frame 0x([0-9a-f]{8})\}|MadeWritable\(frame 0x[0-9a-f]{8}\))\)")
    copied = re.search(r"Value returned is \$\d+ = " + outcome, finish)
    check(copied, f"pg-finish printed no do_wp_page outcome:\n{finish}")
    if copied.group(2):
        check(copied.group(2) != copied.group(3), f"Copied from and to the same frame:\n{finish}")
    check(re.search(r"\$\d+ = " + outcome, r.section("again")), f"p $ of the outcome:\n{r.section('again')}")
    pair = re.search(r"Option<mm::addr::Frame>::Some\(frame 0x([0-9a-f]{8})\)\n\(returned, as Rust's ABI "
                     r"returns it: in eax and edx\)", r.section("pair"))
    check(pair, f"pg-finish from take_highest_free:\n{r.section('pair')}")
    memory = re.search(r"Result<mm::addr::Frame, mm::memory::OutOfMemory>::Ok\(frame 0x([0-9a-f]{8})\)\n"
                       r"\(returned, as Rust's ABI returns it: through memory at 0x", r.section("memory"))
    check(memory and memory.group(1) == pair.group(1),
          f"pg-finish from get_free_page_with does not return take_highest_free's frame "
          f"0x{pair.group(1)}:\n{r.section('memory')}")
    check("the trap path every trap runs through" in r.section("trap") + r.err,
          f"pg-finish into trap_common was not refused:\n{r.section('trap')}\n{r.err[-500:]}")
    m.wait_console(r"^VERDICT: PASS", timeout=30)


def test_pg_break_suggests_and_filters(ctx):
    """pg-break get_free_page (0.11's name) says there is no such function in this build
    and suggests get_free_page_with; pg-break do_wp_page --pid 2 stops only in pid 2
    (thread 3), although pid 1 takes copy-on-write faults too."""
    m = ctx.boot(COW)
    r = ctx.gdb(m, section("suggest", "pg-break get_free_page")
                + ["pg-break do_wp_page --pid 2"] + section("hit", "continue")
                + section("hit2", "continue") + ["delete", "detach"], allow_errors=True)
    suggest = r.section("suggest") + r.err
    check("no function named get_free_page in this build; did you mean: get_free_page_with" in suggest,
          f"no suggestion for get_free_page:\n{suggest[-800:]}")
    for name in ("hit", "hit2"):
        check(re.search(r"Thread 3 hit Breakpoint 1, mm::memory::Mm<.*>::do_wp_page", r.section(name)),
              f"pg-break --pid 2 stopped elsewhere than in pid 2:\n{r.section(name)}")
    m.wait_console(r"^VERDICT: PASS", timeout=30)


def test_address_types_and_registers(ctx):
    """pg-walk, $lin2phys and $pte take the kernel's LinearAddr (do_wp_page's `address`);
    an Entry is refused with a clear message; pg-regs shows CR0 with PG, the GDT (flat
    kernel segments), the current task's LDT at its slot's base and CR3 = the page
    directory; $cr3() agrees with dumppgd, $cr2() is the faulting address; monitor cpu
    --json has every documented field."""
    m = ctx.boot(COW)
    r = ctx.gdb(m, ["pg-break do_wp_page --pid 2", "continue"]
                + section("walk", "pg-walk address") + section("l2p", "p/x $lin2phys(address)")
                + section("pte", "p $pte(address)") + section("entry", "p $lin2phys($pte(address))")
                + ["set pg-color off"] + section("regs", "pg-regs") + section("regs1", "pg-regs --task 1")
                + section("cr3", "p/x $cr3()") + section("pgd", monitor("dumppgd --json"))
                + section("cr2", "p/x $cr2()") + section("cpu", monitor("cpu --json"))
                + ["delete", "detach"], allow_errors=True)
    walk = r.section("walk")
    linear = re.search(r"walk 0x([0-9a-f]{8})", walk)
    physical = re.search(r"physical 0x([0-9a-f]{8})", walk)
    check(linear and physical and int(linear.group(1), 16) >> 26 == 2,
          f"pg-walk linear did not walk pid 2's faulting address:\n{walk}")
    check(re.search(rf"= 0x0*{int(physical.group(1), 16):x}\b", r.section("l2p")),
          f"$lin2phys(linear) is not the walk's physical address:\n{r.section('l2p')}")
    check(re.search(r"= 0x[0-9a-f]{8} \[P RO US", r.section("pte")),
          f"$pte(linear) is not the read-only COW entry:\n{r.section('pte')}")
    check("expected an address" in r.section("entry") + r.err and "not a mm::entry::Entry" in r.err,
          f"$lin2phys of an Entry is not refused clearly:\n{r.err[-600:]}")
    regs = r.section("regs")
    check(re.search(r"sel 0x08 kernel code\s+code base 0x00000000 limit 0xffffffff DPL 0 P", regs)
          and re.search(r"user data \(0x17\)\s+data base 0x08000000 limit 0x03ffffff DPL 3 P", regs),
          f"pg-regs: no flat kernel code segment or pid 2's LDT at 128 MiB:\n{regs}")
    # The code segment ends with the text, rounded up to a page (0.11's change_ldt).
    check(re.search(r"user code \(0x0f\)\s+code base 0x04000000 limit 0x000[0-9a-f]{2}fff DPL 3", r.section("regs1")),
          f"pg-regs --task 1: pid 1's LDT is not at 64 MiB, or its code segment not the text:\n{r.section('regs1')}")
    pg_dir = re.search(r'"pg_dir":\s*"0x([0-9a-f]{8})"', r.section("pgd"))
    check(pg_dir and re.search(rf"= 0x0*{int(pg_dir.group(1), 16):x}\b", r.section("cr3")),
          f"$cr3() is not dumppgd's pg_dir:\n{r.section('cr3')}\n{r.section('pgd')[:300]}")
    check(f"0x{pg_dir.group(1)}" in regs and re.search(r"CR0 0x8[0-9a-f]{7}  PE .*PG", regs),
          f"pg-regs does not show the page directory and paging on:\n{regs}")
    check(re.search(rf"= 0x0*{int(linear.group(1), 16):x}\b", r.section("cr2")),
          f"$cr2() is not the faulting address 0x{linear.group(1)}:\n{r.section('cr2')}")
    cpu = pgkernel_core.extract_json(r.section("cpu"))
    for field in ("cr0", "cr0_flags", "cr2", "cr3", "pg_dir", "cr4", "cr4_flags", "gdtr", "idtr", "ldtr", "tr"):
        check(field in cpu, f"monitor cpu --json lacks {field}: {cpu}")
    m.wait_console(r"^VERDICT: PASS", timeout=30)


def test_user_symbols_watch_and_elf_check(ctx):
    """pg-elf-check says the running kernel matches the release ELF, warns with the
    stepping build's ELF and refuses without a kernel attached; pg-add-symbols loads
    pid 2's ktest at 128 MiB (a ktest function's address lies in slot 2); pg-watch --pte
    stops when do_wp_page rewrites the PTE; `watch *(ADDR as *const u32)` (the Rust
    spelling) is accepted."""
    m = ctx.boot(COW, exit_at_end=False)
    r = ctx.gdb(m, section("elf", "pg-elf-check") + ["pg-break do_wp_page --pid 2", "continue"]
                + section("symbols", "pg-add-symbols") + section("again", "pg-add-symbols 2")
                + section("address", "p ktest::__user_main")
                + section("watch", "pg-watch --pte address") + ["delete 1"]
                + section("hit", "continue")
                + section("rust", "watch *(0x1000 as *const u32)") + ["delete", "detach"],
                allow_errors=True)
    check("the running kernel's code matches" in r.section("elf") and "(release build)" in r.section("elf"),
          f"pg-elf-check on the matching ELF:\n{r.section('elf')}")
    symbols = r.section("symbols")
    check(re.search(r"pg-add-symbols: ktest \(pid 2, slot 2\): \S+/release/ktest at 0x08000000", symbols),
          f"pg-add-symbols did not load ktest at slot 2's base:\n{symbols}")
    check("already loaded" in r.section("again"), f"loading twice:\n{r.section('again')}")
    address = re.search(r"\} 0x([0-9a-f]+) <ktest::__user_main>", r.section("address"))
    check(address and int(address.group(1), 16) >> 26 == 2,
          f"ktest's main is not in slot 2 after pg-add-symbols:\n{r.section('address')}")
    watch = re.search(r"pg-watch: watchpoint (\d+) \(writes\) on the PTE of 0x[0-9a-f]{8}, at 0x([0-9a-f]{8}), "
                      r"now 0x[0-9a-f]{8} \[P RO US", r.section("watch"))
    check(watch, f"pg-watch --pte address:\n{r.section('watch')}")
    check(re.search(rf"Hardware watchpoint {watch.group(1)}: \*\(unsigned int \*\)0x0*{int(watch.group(2), 16):x}",
                    r.section("hit")) and "New value" in r.section("hit"),
          f"the PTE watchpoint did not stop at the rewrite:\n{r.section('hit')}")
    check(re.search(r"(Hardware )?[Ww]atchpoint \d+: \*\(0x1000 as \*const u32\)", r.section("rust")),
          f"the Rust spelling of a watch is refused:\n{r.section('rust')}\n{r.err[-400:]}")
    m.wait_console(r"^VERDICT: PASS", timeout=30)
    other = gdb.run_gdb(m.port, ["pg-elf-check", "detach"], kernel=stepping_kernel())
    check("WARNING: the running kernel is not" in other.out and "scripts/gdb --debug-build" in other.out,
          f"pg-elf-check with the other build's ELF:\n{other.tail()}")
    unattached = gdb.run_gdb(0, ["pg-elf-check"], attach=False)
    check("not attached" in unattached.err, f"pg-elf-check without a kernel:\n{unattached.tail()}")
