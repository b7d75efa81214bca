//! The monitor's pure half: the parser on good and bad lines, and every paging view in
//! both forms over a simulated machine (text: the key lines; JSON: parsed with serde_json).

mod support;

use std::fmt;

use mm::addr::{Frame, PAGE_SIZE};
use mm::check::live_slot_mask;
use mm::entry::Entry;
use mm::memory::Mm;
use mm::sim::SimRam;
use mm::{CheckInput, PhysMem};
use proptest::prelude::*;
use report::{Command, CommandName, LinearRange, ParseError, PgdFilter, Request};
use serde_json::Value;
use support::*;

/// A 16 MiB machine (four identity-map tables, as 0.11's head.s), task `a` in slot 1 with
/// pages at 0x0, 0x2000 and 0x0040_0000 (a second page table), its child `b` in slot 2
/// sharing them copy-on-write, except 0x2000, which `b` wrote after the fork.
struct Fixture {
    k: SimKernel,
    a: usize,
    b: usize,
    /// The frame at 0x0 of both tasks (count 2).
    shared: Frame,
}

fn fixture() -> Fixture {
    let mut k = SimKernel::new(16 * MIB);
    let a = k.spawn(None).unwrap();
    k.write_word(a, 0, 1).unwrap();
    k.write_word(a, 0x2000, 2).unwrap();
    k.write_word(a, 0x0040_0000, 3).unwrap();
    let b = k.fork(a).unwrap();
    k.write_word(b, 0x2000, 4).unwrap();
    let shared = k.mm.translate(user(a, 0)).unwrap().frame();
    assert_eq!(count(&k.mm, shared), 2);
    k.assert_clean();
    Fixture { k, a, b, shared }
}

/// The answer to a monitor line, dispatched as the kernel's glue does for the paging
/// commands.
fn run(k: &SimKernel, line: &str) -> String {
    let mut out = String::new();
    let tasks = pids(k);
    match report::parse(line) {
        Err(failure) => report::parse_failure(&failure, &mut out),
        Ok(Request { command, json }) => match command {
            Command::Help => answers::help(json, &mut out),
            Command::DumpPgd(filter) => answers::dumppgd(&k.mm, &tasks, &filter, json, &mut out),
            Command::DumpPt { index } => answers::dumppt(&k.mm, &tasks, index, json, &mut out),
            Command::Walk { addr, task } => {
                answers::walk(&k.mm, &tasks, addr, task, json, &mut out)
            }
            Command::CheckMm => checkmm(k, &k.kernel_refs(), json, &mut out),
            Command::ShowMem => answers::showmem(&k.mm, &tasks, json, &mut out),
            other => panic!("{other:?} is the kernel's"),
        },
    }
    .expect("a String never refuses output");
    out
}

fn checkmm(k: &SimKernel, refs: &[Frame], json: bool, out: &mut String) -> fmt::Result {
    let mut scratch = vec![0u16; mm::addr::MAX_PAGING_PAGES + 4096];
    let input = CheckInput {
        live_slots: live_slot_mask(k.live_slots()),
        kernel_refs: refs,
    };
    answers::checkmm(&k.mm, &input, &mut scratch, json, out)
}

/// Parses a JSON answer: exactly one document on one line, with `command` and `schema`.
#[track_caller]
fn json(text: &str, command: &str) -> Value {
    assert!(
        text.ends_with('\n'),
        "no newline after the document: {text}"
    );
    assert_eq!(text.lines().count(), 1, "more than one line: {text}");
    let v: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    assert_eq!(v["command"], command, "{text}");
    assert_eq!(v["schema"], report::SCHEMA, "{text}");
    v
}

fn hex(v: u32) -> String {
    format!("{v:#010x}")
}

/// The line of `text` that starts with `prefix`.
#[track_caller]
fn line<'t>(text: &'t str, prefix: &str) -> &'t str {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no line starting with {prefix:?} in:\n{text}"))
}

// ---------------------------------------------------------------------------------------
// The parser
// ---------------------------------------------------------------------------------------

fn parsed(line: &str) -> Request {
    report::parse(line).unwrap_or_else(|e| panic!("{line:?}: {}", e.error))
}

fn refused(line: &str) -> ParseError<'_> {
    match report::parse(line) {
        Ok(r) => panic!("{line:?} parsed as {r:?}"),
        Err(f) => f.error,
    }
}

#[test]
fn parses_every_command_and_its_arguments() {
    use Command::*;
    let cases: Vec<(&str, Command)> = vec![
        ("", Help),
        ("help", Help),
        ("  HELP  ", Help),
        ("dumppgd", DumpPgd(PgdFilter::default())),
        (
            "dumppgd --task 7 --range 0x4000000-0x8000000 --user --ro --all",
            DumpPgd(PgdFilter {
                task: Some(7),
                range: Some(LinearRange {
                    start: 0x0400_0000,
                    end: 0x0800_0000,
                }),
                user: Some(true),
                writable: Some(false),
                all: true,
            }),
        ),
        (
            "dumppgd --kernel --rw --range 0-0x100000000",
            DumpPgd(PgdFilter {
                range: Some(LinearRange {
                    start: 0,
                    end: 1 << 32,
                }),
                user: Some(false),
                writable: Some(true),
                ..PgdFilter::default()
            }),
        ),
        ("dumppt 16", DumpPt { index: 16 }),
        ("dumppt 0x3ff", DumpPt { index: 1023 }),
        (
            "walk 0x04001234",
            Walk {
                addr: 0x0400_1234,
                task: None,
            },
        ),
        (
            "walk 0x1234 --task 2",
            Walk {
                addr: 0x1234,
                task: Some(2),
            },
        ),
        (
            "walk --task 2 4096",
            Walk {
                addr: 4096,
                task: Some(2),
            },
        ),
        (
            "walk 0XFFFFFFFF",
            Walk {
                addr: u32::MAX,
                task: None,
            },
        ),
        ("checkmm", CheckMm),
        ("showmem", ShowMem),
        ("tasks", Tasks),
        ("faults", Faults),
        ("catch", Catch { pagefault: None }),
        ("catch pagefault", Catch { pagefault: None }),
        (
            "catch pagefault on",
            Catch {
                pagefault: Some(true),
            },
        ),
        (
            "catch PageFault OFF",
            Catch {
                pagefault: Some(false),
            },
        ),
    ];
    for (line, command) in cases {
        assert_eq!(
            parsed(line),
            Request {
                command,
                json: false
            },
            "{line:?}"
        );
    }
}

#[test]
fn json_flag_is_taken_anywhere() {
    for line in [
        "walk 0x1000 --json",
        "--json walk 0x1000",
        "walk --json 0x1000",
    ] {
        assert_eq!(
            parsed(line),
            Request {
                command: Command::Walk {
                    addr: 0x1000,
                    task: None
                },
                json: true
            },
            "{line:?}"
        );
    }
    assert_eq!(parsed("--json").command, Command::Help);
    let failure = report::parse("walk zz --json").unwrap_err();
    assert!(failure.json, "a refused line keeps its form");
}

#[test]
fn refuses_bad_lines_with_the_precise_error() {
    use CommandName as C;
    assert_eq!(
        refused("frobnicate"),
        ParseError::UnknownCommand("frobnicate")
    );
    assert_eq!(
        refused("walk"),
        ParseError::MissingArgument {
            command: C::Walk,
            what: "ADDR"
        }
    );
    assert_eq!(
        refused("dumppt"),
        ParseError::MissingArgument {
            command: C::DumpPt,
            what: "INDEX"
        }
    );
    assert!(matches!(
        refused("walk 0xzz"),
        ParseError::BadNumber {
            command: C::Walk,
            text: "0xzz",
            ..
        }
    ));
    for bad in ["walk 12a", "walk 0x", "walk -1", "walk +5", "dumppt 1.5"] {
        assert!(
            matches!(refused(bad), ParseError::BadNumber { .. }),
            "{bad:?}: {:?}",
            refused(bad)
        );
    }
    assert!(matches!(
        refused("walk 0x100000000"),
        ParseError::OutOfRange { .. }
    ));
    assert!(matches!(
        refused("dumppt 1024"),
        ParseError::OutOfRange { .. }
    ));
    assert!(matches!(
        refused("walk 0x4000000 --task 1"),
        ParseError::OutOfRange { .. }
    ));
    assert_eq!(
        refused("dumppgd --verbose"),
        ParseError::UnknownFlag {
            command: C::DumpPgd,
            flag: "--verbose"
        }
    );
    assert_eq!(
        refused("checkmm now"),
        ParseError::ExtraArgument {
            command: C::CheckMm,
            text: "now"
        }
    );
    assert_eq!(
        refused("walk 1 2"),
        ParseError::ExtraArgument {
            command: C::Walk,
            text: "2"
        }
    );
    assert_eq!(
        refused("dumppgd --user --kernel"),
        ParseError::Conflict {
            command: C::DumpPgd,
            first: "--user",
            second: "--kernel"
        }
    );
    assert_eq!(
        refused("dumppgd --ro --rw"),
        ParseError::Conflict {
            command: C::DumpPgd,
            first: "--ro",
            second: "--rw"
        }
    );
    assert_eq!(
        refused("dumppgd --task 1 --task 2"),
        ParseError::Conflict {
            command: C::DumpPgd,
            first: "--task",
            second: "--task"
        }
    );
    assert_eq!(
        refused("dumppgd --task"),
        ParseError::MissingArgument {
            command: C::DumpPgd,
            what: "PID after --task"
        }
    );
    assert!(matches!(
        refused("dumppgd --range 0x1000"),
        ParseError::BadWord { .. }
    ));
    for bad in ["--range 8-4", "--range 4-4", "--range 0-0x100000001"] {
        assert!(
            matches!(
                refused(&format!("dumppgd {bad}")),
                ParseError::OutOfRange { .. }
            ),
            "{bad}"
        );
    }
    assert!(matches!(
        refused("catch syscall"),
        ParseError::BadWord { .. }
    ));
    assert!(matches!(
        refused("catch pagefault maybe"),
        ParseError::BadWord { .. }
    ));
    assert!(matches!(
        refused("catch pagefault on off"),
        ParseError::ExtraArgument { .. }
    ));
}

#[test]
fn a_bad_argument_gets_the_message_and_the_usage_line() {
    let k = SimKernel::new(DEFAULT_RAM);
    let text = run(&k, "walk 0xzz");
    assert_eq!(
        text,
        "walk: ADDR: '0xzz' is not a number (decimal or 0x hex)\n\
         usage: walk ADDR [--task PID] [--json]\n"
    );
    let v = json(&run(&k, "dumppgd --bogus --json"), "dumppgd");
    assert_eq!(v["error"]["kind"], "unknown_flag");
    assert_eq!(v["error"]["message"], "dumppgd: unknown flag '--bogus'");
    assert_eq!(v["error"]["usage"], CommandName::DumpPgd.usage());
    let v = json(&run(&k, "dumppt --json"), "dumppt");
    assert_eq!(v["error"]["kind"], "missing_argument");
}

#[test]
fn an_unknown_command_gets_the_help() {
    let k = SimKernel::new(DEFAULT_RAM);
    let text = run(&k, "frobnicate 1 2");
    assert!(text.starts_with("unknown command 'frobnicate'\n"), "{text}");
    for c in CommandName::ALL {
        assert!(text.contains(c.usage()), "help lacks {}", c.usage());
    }
    let v = json(&run(&k, "frob --json"), "help");
    assert_eq!(v["error"]["kind"], "unknown_command");
    assert_eq!(
        v["commands"].as_array().unwrap().len(),
        CommandName::ALL.len()
    );
}

#[test]
fn help_lists_every_command_in_both_forms() {
    let k = SimKernel::new(DEFAULT_RAM);
    let text = run(&k, "help");
    for c in CommandName::ALL {
        assert!(text.contains(&format!("  {}\n", c.usage())), "{}", c.name());
    }
    let v = json(&run(&k, "help --json"), "help");
    assert!(v.get("error").is_none());
    let names: Vec<&str> = v["commands"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "help", "dumppgd", "dumppt", "walk", "checkmm", "showmem", "tasks", "faults", "catch",
            "fail", "failnth", "corrupt", "cpu"
        ]
    );
    for c in v["commands"].as_array().unwrap() {
        assert!(c["usage"]
            .as_str()
            .unwrap()
            .starts_with(c["name"].as_str().unwrap()));
        assert!(!c["summary"].as_str().unwrap().is_empty());
    }
}

#[test]
fn cpu_parses_alone() {
    assert_eq!(
        parsed("cpu --json"),
        Request {
            command: Command::Cpu,
            json: true
        }
    );
    let mut out = String::new();
    let failure = report::parse("cpu 3").expect_err("cpu takes no argument");
    report::parse_failure(&failure, &mut out).unwrap();
    assert_eq!(out, "cpu: unexpected argument '3'\nusage: cpu [--json]\n");
}

#[test]
fn cpu_names_the_bits_and_tables() {
    let mut out = String::new();
    report::cpu(&CPU_AT_A_COW_FAULT, false, &mut out).unwrap();
    for line in [
        "  CR0  0x80000011  PE ET PG (WP clear: ring 0 ignores RW, as on the 386)\n",
        "  CR2  0x0bfffe3c  the linear address of the last page fault\n",
        "  CR3  0x00211000  page directory at 0x00211000\n",
        "  CR4  0x00000000  -\n",
        "  GDTR base 0x001572f8 limit 0x002f (6 descriptors)\n",
        "  IDTR base 0x00196f40 limit 0x07ff (256 gates)\n",
        "  LDTR 0x0020      GDT entry 4 (the current task's LDT)\n",
    ] {
        assert!(out.contains(line), "no {line:?} in:\n{out}");
    }
    let mut out = String::new();
    let state = report::CpuState {
        cr0: 0x8001_003b,
        cr3: 0x0021_1018,
        cr4: 0x90,
        ..CPU_AT_A_COW_FAULT
    };
    report::cpu(&state, true, &mut out).unwrap();
    let v = json(&out, "cpu");
    assert_eq!(v["cr0_flags"], "PE MP TS ET NE WP PG");
    assert_eq!(v["cr3"], "0x00211018");
    assert_eq!(v["pg_dir"], "0x00211000");
    assert_eq!(v["cr4_flags"], "PSE PGE");
    assert_eq!(v["gdtr"]["entries"], 6);
    assert_eq!(v["idtr"]["limit"], "0x000007ff");
    assert_eq!(v["ldtr"], "0x00000020");
    assert_eq!(v["tr"], "0x00000018");
}

#[test]
fn json_strings_are_escaped() {
    let k = SimKernel::new(DEFAULT_RAM);
    let word = "a\"b\\c\u{1}d\u{1f}é";
    let v = json(&run(&k, &format!("{word} --json")), "help");
    assert_eq!(
        v["error"]["message"],
        format!("unknown command '{word}'"),
        "escaped and read back intact"
    );
}

proptest! {
    /// Any line: never a panic; a JSON answer is always one valid document.
    #[test]
    fn any_line_gets_an_answer(words in proptest::collection::vec(
        prop_oneof![
            Just("help".to_string()), Just("dumppgd".to_string()), Just("dumppt".to_string()),
            Just("walk".to_string()), Just("checkmm".to_string()), Just("showmem".to_string()),
            Just("--task".to_string()), Just("--range".to_string()), Just("--user".to_string()),
            Just("--kernel".to_string()), Just("--rw".to_string()), Just("--ro".to_string()),
            Just("--all".to_string()), Just("16".to_string()), Just("0x4000000".to_string()),
            Just("101".to_string()), Just("0-0x8000000".to_string()), Just("--json".to_string()),
            "[ -~]{0,12}",
        ],
        0..6,
    )) {
        let k = fixture().k;
        let line = words.join(" ");
        let out = run(&k, &line);
        prop_assert!(!out.is_empty());
        if words.iter().any(|w| w == "--json") {
            prop_assert!(serde_json::from_str::<Value>(&out).is_ok(), "{}", out);
        }
    }
}

// ---------------------------------------------------------------------------------------
// dumppgd
// ---------------------------------------------------------------------------------------

#[test]
fn dumppgd_merges_the_identity_map_into_one_line_and_lists_each_task_table() {
    let f = fixture();
    let text = run(&f.k, "dumppgd");
    assert!(
        text.starts_with(&format!(
            "page directory at {}: 8 present entries\n",
            PG_DIR
        )),
        "{text}"
    );
    let kernel = line(&text, "0-3 ");
    assert!(kernel.contains("0x00000000-0x00ffffff"), "{kernel}");
    assert!(kernel.contains("(4 PDEs)"), "{kernel}");
    assert!(kernel.contains("kernel"), "{kernel}");
    assert!(kernel.ends_with("P RW SV"), "{kernel}");
    // 4 tables x 1024 entries, all RAM: 4096 present PTEs.
    assert!(kernel.contains(" 4096 "), "{kernel}");
    // a's two tables: different PTE counts are still alike (same slot, same flags).
    let a = line(&text, "16-17 ");
    assert!(a.contains("0x04000000-0x047fffff"), "{a}");
    assert!(a.contains("pid 101 (slot 1)"), "{a}");
    assert!(a.contains("    3  "), "three pages: {a}");
    assert!(a.ends_with("P RW US"), "{a}");
    let b = line(&text, "32-33 ");
    assert!(b.contains("pid 102 (slot 2)"), "{b}");
    assert_eq!(text.lines().count(), 5, "{text}");
}

#[test]
fn dumppgd_all_shows_one_line_per_entry_with_its_raw_value() {
    let f = fixture();
    let text = run(&f.k, "dumppgd --all");
    assert_eq!(text.lines().count(), 2 + 8, "{text}");
    let pde16 = f.k.mm.pde(16);
    let l = line(&text, "16 ");
    assert!(l.contains(&hex(pde16.raw())), "{l}");
    assert!(l.contains(&hex(pde16.frame().as_u32())), "{l}");
    assert!(l.contains("0x04000000-0x043fffff"), "{l}");
    assert!(l.contains("    2  "), "pages 0 and 0x2000: {l}");
    line(&text, "3 ");
}

#[test]
fn dumppgd_filters_by_task_range_and_flags() {
    let f = fixture();
    let only = |line: &str| -> Vec<u64> {
        let v = json(&run(&f.k, &format!("{line} --json")), "dumppgd");
        v["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["index"].as_u64().unwrap())
            .collect()
    };
    assert_eq!(only("dumppgd --task 102"), [32, 33]);
    assert_eq!(only("dumppgd --task 0"), [0, 1, 2, 3]);
    assert_eq!(only("dumppgd --user"), [16, 17, 32, 33]);
    assert_eq!(only("dumppgd --kernel"), [0, 1, 2, 3]);
    assert_eq!(only("dumppgd --ro"), Vec::<u64>::new());
    assert_eq!(only("dumppgd --rw --user --task 101"), [16, 17]);
    assert_eq!(only("dumppgd --range 0x00c00000-0x04400000"), [3, 16]);
    assert_eq!(only("dumppgd --range 0x08400000-0x100000000"), [33]);
    let text = run(&f.k, "dumppgd --ro");
    assert!(text.ends_with("(no present entry matches)\n"), "{text}");
    let text = run(&f.k, "dumppgd --task 9");
    assert_eq!(
        text, "no task with pid 9\n",
        "no usage line for a state error"
    );
    let v = json(&run(&f.k, "dumppgd --task 9 --json"), "dumppgd");
    assert_eq!(v["error"]["kind"], "no_such_task");
}

#[test]
fn dumppgd_json_gives_every_entry_and_the_runs() {
    let f = fixture();
    let v = json(&run(&f.k, "dumppgd --json"), "dumppgd");
    assert_eq!(v["pg_dir"], hex(PG_DIR.as_u32()));
    assert_eq!(v["present"], 8);
    assert_eq!(v["shown"], 8);
    assert_eq!(v["not_present_nonzero"], 0);
    assert_eq!(v["filter"]["merged"], true);
    assert_eq!(v["filter"]["task"], Value::Null);
    let entries = v["entries"].as_array().unwrap();
    let e = &entries[4];
    let pde = f.k.mm.pde(16);
    assert_eq!(e["index"], 16);
    assert_eq!(e["start"], "0x04000000");
    assert_eq!(e["last"], "0x043fffff");
    assert_eq!(e["table"], hex(pde.frame().as_u32()));
    assert_eq!(e["raw"], hex(pde.raw()));
    assert_eq!(e["flags"], pde.describe().to_string());
    assert_eq!(
        (&e["present"], &e["user"], &e["writable"]),
        (&Value::Bool(true), &Value::Bool(true), &Value::Bool(true))
    );
    assert_eq!(e["present_ptes"], 2);
    assert_eq!((&e["slot"], &e["pid"]), (&1.into(), &101.into()));
    assert_eq!(entries[0]["pid"], 0);
    assert_eq!(entries[0]["user"], false);
    let runs = v["runs"].as_array().unwrap();
    let spans: Vec<(u64, u64)> = runs
        .iter()
        .map(|r| {
            (
                r["first_index"].as_u64().unwrap(),
                r["last_index"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(spans, [(0, 3), (16, 17), (32, 33)]);
    assert_eq!(runs[0]["present_ptes"], 4096);
    assert_eq!(runs[1]["present_ptes"], 3);
    assert_eq!(runs[1]["start"], "0x04000000");
    assert_eq!(runs[1]["last"], "0x047fffff");
    let v = json(&run(&f.k, "dumppgd --all --json"), "dumppgd");
    assert_eq!(v["runs"].as_array().unwrap().len(), 8);
    let v = json(
        &run(&f.k, "dumppgd --range 0x4000000-0x100000000 --json"),
        "dumppgd",
    );
    assert_eq!(v["filter"]["range"]["start"], "0x04000000");
    assert_eq!(v["filter"]["range"]["end"], "0x100000000");
}

#[test]
fn dumppgd_does_not_merge_entries_whose_flags_differ_or_read_a_table_outside_ram() {
    let mut f = fixture();
    let pde = f.k.mm.pde(17);
    f.k.mm
        .set_pde(17, pde.without_flags(mm::EntryFlags::WRITABLE));
    f.k.mm.set_pde(40, Entry(0x7fff_f067)); // a table far beyond the 16 MiB of RAM
    let text = run(&f.k, "dumppgd");
    line(&text, "16 ");
    assert!(line(&text, "17 ").ends_with("P RO US"), "{text}");
    let bad = line(&text, "40 ");
    assert!(bad.contains("beyond HIGH_MEMORY, not read"), "{bad}");
    assert!(bad.contains("    ?  "), "{bad}");
    let v = json(&run(&f.k, "dumppgd --task 102 --json"), "dumppgd");
    let e = v["entries"].as_array().unwrap();
    assert_eq!(e.last().unwrap()["index"], 40);
    assert_eq!(e.last().unwrap()["table_readable"], false);
    assert_eq!(e.last().unwrap()["present_ptes"], Value::Null);
}

// ---------------------------------------------------------------------------------------
// dumppt
// ---------------------------------------------------------------------------------------

#[test]
fn dumppt_lists_present_and_swap_entries_with_their_counts() {
    let mut f = fixture();
    set_pte(&mut f.k.mm, user(f.a, 0x5000), Entry(42 << 1));
    let text = run(&f.k, "dumppt 16");
    let table = f.k.mm.pde(16).frame();
    let first = line(&text, "PDE 16 ");
    assert!(
        first.contains("linear 0x04000000-0x043fffff, pid 101 (slot 1)"),
        "{first}"
    );
    assert!(first.ends_with(&format!("page table {table}")), "{first}");
    let shared = line(&text, "    0  0x04000000  ");
    assert!(shared.contains(&format!("{}      2", f.shared)), "{shared}");
    assert!(shared.ends_with("P RO US A D"), "COW: read-only: {shared}");
    let swap = line(&text, "    5  0x04005000  0x00000054");
    assert!(swap.ends_with("swap slot 42"), "{swap}");
    assert!(
        text.ends_with("2 present, 1 swap entries, 1021 empty\n"),
        "{text}"
    );

    let v = json(&run(&f.k, "dumppt 0x10 --json"), "dumppt");
    assert_eq!(v["index"], 16);
    assert_eq!((&v["slot"], &v["pid"]), (&1.into(), &101.into()));
    assert_eq!(v["table"], hex(table.as_u32()));
    assert_eq!(v["table_readable"], true);
    assert_eq!(v["pde"]["raw"], hex(f.k.mm.pde(16).raw()));
    assert_eq!((&v["present"], &v["swap"]), (&2.into(), &1.into()));
    let e = v["entries"].as_array().unwrap();
    assert_eq!(e.len(), 3);
    assert_eq!(e[0]["linear"], "0x04000000");
    assert_eq!(e[0]["frame"], hex(f.shared.as_u32()));
    assert_eq!(e[0]["count"], 2);
    assert_eq!(e[0]["flags"], "P RO US A D");
    assert_eq!(e[0]["swap_slot"], Value::Null);
    assert_eq!(e[1]["index"], 2);
    assert_eq!(e[1]["count"], 1);
    assert_eq!(
        (
            &e[2]["present"],
            &e[2]["swap_slot"],
            &e[2]["frame"],
            &e[2]["count"]
        ),
        (&false.into(), &42.into(), &Value::Null, &Value::Null)
    );
}

#[test]
fn dumppt_of_the_identity_map_shows_uncounted_and_reserved_frames() {
    let f = fixture();
    let text = run(&f.k, "dumppt 0");
    assert!(line(&text, "PDE 0 ").contains("kernel"), "{text}");
    let low = line(&text, "  159  0x0009f000  0x0009f003  0x0009f000      -");
    assert!(low.ends_with("P RW SV"), "{low}");
    line(&text, "  256  0x00100000  0x00100003  0x00100000    100");
    assert!(text.ends_with("1024 present, 0 swap entries, 0 empty\n"));
    let v = json(&run(&f.k, "dumppt 0 --json"), "dumppt");
    assert_eq!(v["entries"][159]["count"], Value::Null);
    assert_eq!(v["entries"][256]["count"], 100);
}

#[test]
fn dumppt_of_a_missing_or_corrupt_table_says_so() {
    let mut f = fixture();
    let text = run(&f.k, "dumppt 20");
    assert_eq!(
        text,
        "PDE 20 (linear 0x05000000-0x053fffff, pid 101 (slot 1)): raw 0x00000000 not present: \
         no page table\n"
    );
    let v = json(&run(&f.k, "dumppt 20 --json"), "dumppt");
    assert_eq!(v["table"], Value::Null);
    assert_eq!(v["entries"].as_array().unwrap().len(), 0);
    f.k.mm.set_pde(20, Entry(0xfff0_0007));
    let text = run(&f.k, "dumppt 20");
    assert!(
        text.ends_with("page table 0xfff00000 lies at/above HIGH_MEMORY 0x01000000, not read\n"),
        "{text}"
    );
    let v = json(&run(&f.k, "dumppt 20 --json"), "dumppt");
    assert_eq!(v["table"], "0xfff00000");
    assert_eq!(v["table_readable"], false);
}

// ---------------------------------------------------------------------------------------
// walk
// ---------------------------------------------------------------------------------------

#[test]
fn walk_of_a_present_page_gives_indices_entries_frame_count_and_physical_address() {
    let f = fixture();
    let w = f.k.mm.walk(user(f.a, 0x0040_0abc));
    let text = run(&f.k, "walk 0x04400abc");
    let pde = w.pde;
    let pte = w.pte.unwrap();
    let frame = pte.frame();
    assert_eq!(
        text,
        format!(
            "walk 0x04400abc\n  PDE 17    raw {}  {}  -> page table {}\n  PTE 0     raw {}  {}  \
             -> frame {frame}, mem_map count 2\n  physical {}\n",
            hex(pde.raw()),
            pde.describe(),
            pde.frame(),
            hex(pte.raw()),
            pte.describe(),
            hex(frame.as_u32() | 0xabc)
        )
    );
    // The same page, as an offset in b's segment: b shares it.
    let text = run(&f.k, "walk 0x400abc --task 102");
    assert!(
        text.starts_with("walk 0x08400abc (pid 102 offset 0x00400abc, slot 2)\n"),
        "{text}"
    );
    assert!(text.ends_with(&format!("physical {}\n", hex(frame.as_u32() | 0xabc))));

    let v = json(&run(&f.k, "walk 0x400abc --task 102 --json"), "walk");
    assert_eq!(v["linear"], "0x08400abc");
    assert_eq!(v["task"]["pid"], 102);
    assert_eq!(v["task"]["slot"], 2);
    assert_eq!(v["task"]["offset"], "0x00400abc");
    assert_eq!(v["pde"]["index"], 33);
    assert_eq!(v["pde"]["present"], true);
    assert_eq!(v["table"], hex(f.k.mm.pde(33).frame().as_u32()));
    assert_eq!(v["pte"]["index"], 0);
    assert_eq!(v["pte"]["flags"], "P RO US A D");
    assert_eq!(v["frame"], hex(frame.as_u32()));
    assert_eq!(v["count"], 2);
    assert_eq!(v["physical"], hex(frame.as_u32() | 0xabc));
    assert_eq!(v["stop"], Value::Null);
}

#[test]
fn walk_names_the_level_where_it_stops_and_why() {
    let mut f = fixture();
    set_pte(&mut f.k.mm, user(f.a, 0x7000), Entry(9 << 1));
    f.k.mm.set_pde(18, Entry(0x7000_0067));
    let cases = [
        (
            "walk 0x05000000",
            "stops at the PDE: not present, no page table",
            ("pde", "no_page_table"),
        ),
        (
            "walk 0x04003000",
            "stops at the PTE: not mapped (zero entry)",
            ("pte", "not_mapped"),
        ),
        (
            "walk 0x7010 --task 101",
            "stops at the PTE: swap entry (slot 9)",
            ("pte", "swapped_out"),
        ),
        (
            "walk 0x04800000",
            "stops at the PDE: its page table lies at/above HIGH_MEMORY 0x01000000 (corrupt entry), not read",
            ("pde", "table_beyond_memory"),
        ),
    ];
    for (line, last, (level, reason)) in cases {
        let text = run(&f.k, line);
        assert!(text.ends_with(&format!("  {last}\n")), "{line}: {text}");
        let v = json(&run(&f.k, &format!("{line} --json")), "walk");
        assert_eq!(v["stop"]["level"], level, "{line}");
        assert_eq!(v["stop"]["reason"], reason, "{line}");
        assert_eq!(
            (&v["frame"], &v["physical"], &v["count"]),
            (&Value::Null, &Value::Null, &Value::Null)
        );
    }
    let v = json(&run(&f.k, "walk 0x7010 --task 101 --json"), "walk");
    assert_eq!(v["stop"]["swap_slot"], 9);
    assert_eq!(v["pte"]["raw"], "0x00000012");
    assert_eq!(v["pte"]["flags"], "swap slot 9");
    let v = json(&run(&f.k, "walk 0x05000000 --json"), "walk");
    assert_eq!(v["pte"]["index"], 0);
    assert_eq!(v["pte"]["raw"], Value::Null);
    assert_eq!(v["table"], Value::Null);
}

#[test]
fn walk_of_kernel_memory_says_why_a_frame_has_no_count() {
    let f = fixture();
    let text = run(&f.k, "walk 0xb8000");
    assert!(
        text.contains("-> frame 0x000b8000, mem_map count - (below LOW_MEM, not counted)\n"),
        "{text}"
    );
    let v = json(&run(&f.k, "walk 0xb8000 --json"), "walk");
    assert_eq!(
        (&v["count"], &v["physical"]),
        (&Value::Null, &"0x000b8000".into())
    );
    let text = run(&f.k, "walk 0x33 --task 77");
    assert_eq!(text, "no task with pid 77\n");
}

#[test]
fn walk_changes_nothing() {
    let f = fixture();
    let dir = f.k.mm.phys.frame_bytes(PG_DIR).to_vec();
    let counts = f.k.mm.mem_map.counts().to_vec();
    for line in [
        "walk 0x04009000",
        "walk 0x9000 --task 101 --json",
        "dumppt 16",
        "showmem",
        "dumppgd",
    ] {
        run(&f.k, line);
    }
    assert_eq!(f.k.mm.phys.frame_bytes(PG_DIR), &dir[..]);
    assert_eq!(f.k.mm.mem_map.counts(), &counts[..]);
    assert_eq!(f.k.mm.translate(user(f.a, 0x9000)), None);
}

// ---------------------------------------------------------------------------------------
// checkmm
// ---------------------------------------------------------------------------------------

#[test]
fn checkmm_says_ok_with_the_counts_it_checked() {
    let f = fixture();
    let text = run(&f.k, "checkmm");
    // 4 identity tables + a's 2 + b's 2 directory entries.
    assert!(
        text.starts_with("checkmm: OK (3840 frames, 8 directory entries, "),
        "{text}"
    );
    assert_eq!(text.lines().count(), 1);
    let v = json(&run(&f.k, "checkmm --json"), "checkmm");
    assert_eq!(v["ok"], true);
    assert_eq!(v["mismatches"].as_array().unwrap().len(), 0);
    assert_eq!(
        (&v["mismatch_count"], &v["omitted"]),
        (&0.into(), &0.into())
    );
    assert_eq!(v["frames"], 3840);
    assert_eq!(v["present_pdes"], 8);
    assert_eq!(v["present_ptes"], 4096 + 3 + 3);
    assert_eq!(v["kernel_refs"], 2);
}

#[test]
fn checkmm_reports_each_mismatch_by_frame_with_expected_and_found() {
    let mut f = fixture();
    // A COW page made writable behind the kernel's back, and a page-table entry that
    // maps a free frame.
    let pte = pte_of(&f.k.mm, user(f.b, 0));
    set_pte(
        &mut f.k.mm,
        user(f.b, 0),
        pte.with_flags(mm::EntryFlags::WRITABLE),
    );
    let free = Frame::from_addr(0x00f0_0000).unwrap();
    assert_eq!(count(&f.k.mm, free), 0);
    set_pte(
        &mut f.k.mm,
        user(f.b, 0x9000),
        Entry::new(free, mm::entry::USER_RW),
    );
    let text = run(&f.k, "checkmm");
    line(
        &text,
        &format!(
            "checkmm: linear 0x08000000 maps frame {} writable, but its count is 2",
            f.shared
        ),
    );
    line(
        &text,
        "checkmm: frame 0x00f00000: mem_map count 0, page tables and kernel hold 1 (mapped but free)",
    );
    assert!(
        line(&text, "checkmm: MISMATCH (").ends_with("; 2 mismatches)"),
        "{text}"
    );

    let v = json(&run(&f.k, "checkmm --json"), "checkmm");
    assert_eq!(v["ok"], false);
    assert_eq!(v["mismatch_count"], 2);
    let m = v["mismatches"].as_array().unwrap();
    let count_m = m.iter().find(|m| m["kind"] == "count").unwrap();
    assert_eq!(count_m["frame"], "0x00f00000");
    assert_eq!(
        (&count_m["expected"], &count_m["found"]),
        (&1.into(), &0.into())
    );
    assert!(count_m["message"]
        .as_str()
        .unwrap()
        .ends_with("(mapped but free)"));
    let ws = m.iter().find(|m| m["kind"] == "writable_shared").unwrap();
    assert_eq!(ws["linear"], "0x08000000");
    assert_eq!(ws["frame"], hex(f.shared.as_u32()));
    assert_eq!(ws["count"], 2);
}

#[test]
fn checkmm_json_names_every_kind_of_mismatch() {
    let mut f = fixture();
    // A dead slot, a directory entry without the user bit, a swap entry with no swap,
    // a broken identity map, and kernel references it cannot count.
    let table =
        f.k.mm
            .get_free_page(mm::memory::AllocSite::PageTable)
            .unwrap();
    f.k.mm
        .set_pde(50 * 16, Entry::new(table, mm::entry::USER_RW));
    let pde = f.k.mm.pde(17);
    f.k.mm.set_pde(17, pde.without_flags(mm::EntryFlags::USER));
    set_pte(&mut f.k.mm, user(f.a, 0x6000), Entry(5 << 1));
    let kt = f.k.mm.pde(1).frame();
    f.k.mm.phys.write_entry(kt, 3, Entry(0x0000_5003));
    let mut refs = f.k.kernel_refs();
    refs.push(Frame::from_addr(0x0005_0000).unwrap());
    let mut out = String::new();
    checkmm(&f.k, &refs, true, &mut out).unwrap();
    let v = json(&out, "checkmm");
    let kinds: Vec<&str> = v["mismatches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["kind"].as_str().unwrap())
        .collect();
    for kind in [
        "dead_slot",
        "entry_flags",
        "kernel_mapping",
        "bad_kernel_reference",
    ] {
        assert!(kinds.contains(&kind), "{kind} missing from {kinds:?}");
    }
    assert!(
        kinds.contains(&"unexpected_swap_entry") || kinds.contains(&"swap_slot_not_in_use"),
        "{kinds:?}"
    );
    for m in v["mismatches"].as_array().unwrap() {
        assert!(!m["message"].as_str().unwrap().is_empty());
    }
    let dead = v["mismatches"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["kind"] == "dead_slot")
        .unwrap();
    assert_eq!(
        (&dead["pde_index"], &dead["slot"]),
        (&800.into(), &50.into())
    );
    let km = v["mismatches"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["kind"] == "kernel_mapping")
        .unwrap();
    assert_eq!(km["linear"], "0x00403000");
    assert_eq!(
        (&km["expected"], &km["found"]),
        (&"0x00403003".into(), &"0x00005003".into())
    );
}

#[test]
fn checkmm_lists_a_bounded_number_of_mismatches_and_counts_the_rest() {
    let mut f = fixture();
    let held = hog_until(&mut f.k.mm, 3000);
    assert!(held.len() > 300);
    // The held frames are not passed as kernel references: each one is a leak.
    let extra = held.len() as u32;
    let text = run(&f.k, "checkmm");
    assert!(
        text.contains(&format!(
            "checkmm: ... and {} more mismatches\n",
            extra - report::MAX_LISTED_MISMATCHES
        )),
        "{}",
        &text[text.len() - 300..]
    );
    assert_eq!(
        text.lines().count() as u32,
        report::MAX_LISTED_MISMATCHES + 2
    );
    let v = json(&run(&f.k, "checkmm --json"), "checkmm");
    assert_eq!(
        v["mismatches"].as_array().unwrap().len() as u32,
        report::MAX_LISTED_MISMATCHES
    );
    assert_eq!(v["mismatch_count"], extra);
    assert_eq!(v["omitted"], extra - report::MAX_LISTED_MISMATCHES);
}

#[test]
fn checkmm_refuses_a_scratch_too_small_instead_of_panicking() {
    let f = fixture();
    let input = CheckInput {
        live_slots: live_slot_mask(f.k.live_slots()),
        kernel_refs: &[],
    };
    let mut out = String::new();
    answers::checkmm(&f.k.mm, &input, &mut [0u16; 10], true, &mut out).unwrap();
    let v = json(&out, "checkmm");
    assert_eq!(v["error"]["kind"], "scratch_too_small");
}

// ---------------------------------------------------------------------------------------
// showmem
// ---------------------------------------------------------------------------------------

#[test]
fn showmem_agrees_with_show_mem_and_lists_tasks_and_shared_frames() {
    let f = fixture();
    let stats = f.k.mm.show_mem();
    let totals = mm::walk::frame_totals(&f.k.mm);
    assert_eq!(
        (
            totals.paging_frames,
            totals.free_frames,
            totals.shared_frames,
            totals.shared_references,
            totals.reserved_frames
        ),
        (
            stats.paging_frames,
            stats.free_frames,
            stats.shared_frames,
            stats.shared_references,
            stats.reserved_frames
        )
    );
    let text = run(&f.k, "showmem");
    let used = stats.paging_frames - stats.free_frames;
    assert!(
        text.starts_with(&format!(
            "frames: {} for paging (0x00180000..0x01000000): {} free, {used} used, 2 shared \
             (2 extra references); 128 reserved below start_mem\nswap: none\n",
            stats.paging_frames, stats.free_frames
        )),
        "{text}"
    );
    line(&text, "  101     1       3       2       2        0");
    line(&text, "  102     2       3       2       2        0");
    line(&text, "frames with a count above 1 (2):");
    line(&text, &format!("  {}  count 2", f.shared));

    let v = json(&run(&f.k, "showmem --json"), "showmem");
    assert_eq!(v["high_memory"], "0x01000000");
    assert_eq!(v["start_mem"], "0x00180000");
    assert_eq!(v["paging_frames"], stats.paging_frames);
    assert_eq!(v["free"], stats.free_frames);
    assert_eq!(v["used"], used);
    assert_eq!(v["shared_frames"], 2);
    assert_eq!(v["shared_references"], 2);
    assert_eq!(v["reserved"], 128);
    assert_eq!(v["swap"], Value::Null);
    let tasks = v["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 2);
    assert_eq!(tasks[1]["pid"], 102);
    assert_eq!(tasks[1]["slot"], 2);
    assert_eq!(tasks[1]["pages"], 3);
    assert_eq!(tasks[1]["shared_pages"], 2);
    assert_eq!(tasks[1]["page_tables"], 2);
    assert_eq!(tasks[1]["swapped"], 0);
    let shared = v["shared"].as_array().unwrap();
    assert_eq!(shared.len(), 2);
    assert!(shared
        .iter()
        .any(|s| s["frame"] == hex(f.shared.as_u32()) && s["count"] == 2));
    assert_eq!(v["shared_omitted"], 0);
}

#[test]
fn showmem_bounds_the_shared_list_and_shows_slots_left_without_a_task() {
    let mut k = SimKernel::new(16 * MIB);
    let a = k.spawn(None).unwrap();
    for page in 0..100 {
        k.write_word(a, page * PAGE_SIZE, page).unwrap();
    }
    k.fork(a).unwrap();
    // Directory entries in slot 9, which has no task (checkmm calls it a dead slot).
    map_page(&mut k.mm, user(9, 0), 1);
    let text = run(&k, "showmem");
    line(&text, "frames with a count above 1 (100):");
    line(&text, "  ... and 36 more");
    line(&text, "    -     9       1       0       1        0");
    let v = json(&run(&k, "showmem --json"), "showmem");
    assert_eq!(v["shared"].as_array().unwrap().len(), 64);
    assert_eq!(v["shared_omitted"], 36);
    let nine = v["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["slot"] == 9)
        .unwrap();
    assert_eq!(nine["pid"], Value::Null);
}

#[test]
fn fault_codes_decode_like_page_s_dispatches_them() {
    use mm::memory::fault_code::*;
    assert_eq!(
        report::FaultCode(USER).to_string(),
        "not present, read, user mode"
    );
    assert_eq!(
        report::FaultCode(PRESENT | WRITE | USER).to_string(),
        "protection, write, user mode"
    );
    assert_eq!(
        report::FaultCode(WRITE).to_string(),
        "not present, write, kernel mode"
    );
}

#[test]
fn the_renderers_work_on_any_physmem() {
    // Generic over PhysMem: the same call type-checks for another implementation.
    fn dump<P: PhysMem>(mm: &Mm<P>) -> String {
        let mut out = String::new();
        answers::dumppgd(
            mm,
            &Pids(vec![Some(0)]),
            &PgdFilter::default(),
            false,
            &mut out,
        )
        .unwrap();
        out
    }
    let mm: Mm<SimRam> = new_mm(DEFAULT_RAM);
    let text = dump(&mm);
    assert!(text.contains("0x00000000-0x003fffff"), "{text}");
}
