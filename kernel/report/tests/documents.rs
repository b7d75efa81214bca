//! The typed documents themselves: the streaming serializer writes what serde_json writes,
//! every document parses back into its struct unchanged, validates against the committed
//! JSON Schema (which must be current), and no paging state, however random, makes one
//! panic or break its schema. Also the text fixes of issue 13 (counts and plurals).

mod support;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, OnceLock};

use mm::addr::{Frame, PhysAddr, LOW_MEM, NR_TASKS, PAGE_SIZE};
use mm::check::{live_slot_mask, CheckSummary};
use mm::entry::Entry;
use mm::inject::Injector;
use mm::view::PagingView;
use mm::CheckInput;
use proptest::prelude::*;
use report::inputs::{FaultCounts, TaskSummary};
use report::value::Name;
use report::{
    CheckMmDoc, DumpPgdDoc, DumpPtDoc, FailDoc, FaultAction, FaultRecord, FaultSource, FaultsDoc,
    LogBusy, PgdFilter, ShowMemDoc, TaskSlots, TaskSource, TaskState, TasksDoc, WalkDoc,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use support::*;

// ---------------------------------------------------------------------------------------
// Checking one document
// ---------------------------------------------------------------------------------------

/// The committed schema.
fn schema() -> &'static Value {
    static SCHEMA: OnceLock<Value> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/monitor.schema.json");
        serde_json::from_str(&std::fs::read_to_string(path).expect("the committed schema"))
            .expect("the committed schema is JSON")
    })
}

/// A validator for `$defs/NAME` of the committed schema ("" for the whole schema),
/// compiled once.
fn validator(name: &str) -> std::sync::Arc<jsonschema::Validator> {
    static VALIDATORS: OnceLock<Mutex<HashMap<String, Arc<jsonschema::Validator>>>> =
        OnceLock::new();
    let mut cache = VALIDATORS.get_or_init(Default::default).lock().unwrap();
    cache
        .entry(name.to_string())
        .or_insert_with(|| {
            let mut one = schema().clone();
            if !name.is_empty() {
                let object = one.as_object_mut().unwrap();
                object.remove("oneOf");
                object.insert("$ref".into(), format!("#/$defs/{name}").into());
            }
            Arc::new(jsonschema::validator_for(&one).expect("a valid schema"))
        })
        .clone()
}

/// Validates `doc` against `$defs/NAME` of the committed schema.
#[track_caller]
fn validate(doc: &Value, name: &str) {
    let errors: Vec<String> = validator(name)
        .iter_errors(doc)
        .map(|e| format!("{} at {}", e, e.instance_path))
        .collect();
    assert!(errors.is_empty(), "{name}: {errors:?}\n{doc}");
    // The whole schema takes it too: it is exactly one of the documents.
    assert!(
        validator("").is_valid(doc),
        "not one of the documents: {doc}"
    );
}

/// The checks every document passes: report::json writes exactly what serde_json writes,
/// keys in field order with `command` and `schema` first; the JSON validates against the
/// schema; it parses back into `D` and writes the same JSON again; its text renders.
#[track_caller]
fn check_document<T, D>(doc: &T, name: &str) -> Value
where
    T: Serialize + std::fmt::Display,
    D: DeserializeOwned + Serialize,
{
    let mut ours = String::new();
    report::json::write(doc, &mut ours).expect("a String takes any document");
    let theirs = serde_json::to_string(doc).unwrap();
    assert_eq!(ours, theirs, "report::json and serde_json differ");
    let value: Value = serde_json::from_str(&ours).unwrap();
    let keys: Vec<&String> = value.as_object().unwrap().keys().take(2).collect();
    assert_eq!(keys, ["command", "schema"], "{ours}");
    validate(&value, name);
    let parsed: D = serde_json::from_str(&ours).unwrap_or_else(|e| panic!("{name}: {e}\n{ours}"));
    assert_eq!(
        serde_json::to_string(&parsed).unwrap(),
        ours,
        "{name} changed in a round trip"
    );
    let mut text = String::new();
    write!(text, "{doc}").unwrap();
    assert!(!text.is_empty());
    value
}

// ---------------------------------------------------------------------------------------
// Inputs the kernel would gather
// ---------------------------------------------------------------------------------------

/// A task table for the simulated kernel: pid 100 + slot, parent task 1's.
struct SimTasks(Pids);

impl TaskSlots for SimTasks {
    fn pid_in_slot(&self, slot: usize) -> Option<u32> {
        self.0.pid_in_slot(slot)
    }
}

impl TaskSource for SimTasks {
    fn current_slot(&self) -> usize {
        1
    }
    fn task(&self, slot: usize) -> Option<TaskSummary> {
        let pid = self.pid_in_slot(slot)?;
        Some(TaskSummary {
            pid,
            parent_pid: (slot != 0).then_some(0),
            state: if slot == 2 {
                TaskState::Zombie
            } else {
                TaskState::Runnable
            },
            program: Name::new(if slot == 0 { "kernel" } else { "ktest" }),
            end_code: 0x3000,
            end_data: 0x5000,
            brk: 0x6000,
            killed_by: (slot == 2).then_some(11),
            faults: FaultCounts {
                zero_page: 3,
                loaded: 2,
                ..FaultCounts::default()
            },
        })
    }
}

/// A fault log of `n` records (the kernel keeps 64).
struct SimLog(Vec<FaultRecord>);

impl FaultSource for SimLog {
    fn capacity(&self) -> usize {
        64
    }
    fn totals(&self) -> Result<[u64; 9], LogBusy> {
        let mut t = [0; 9];
        for r in &self.0 {
            t[report::inputs::action_index(r.action)] += 1;
        }
        Ok(t)
    }
    fn each(&self, f: &mut dyn FnMut(&FaultRecord)) -> Result<(), LogBusy> {
        self.0.iter().for_each(f);
        Ok(())
    }
}

fn fault_log() -> SimLog {
    SimLog(
        FaultAction::ALL
            .iter()
            .enumerate()
            .map(|(i, &action)| FaultRecord {
                seq: i as u64 + 1,
                pid: 101,
                linear: 0x0400_0000 + i as u32 * PAGE_SIZE,
                error_code: i as u32 & 7,
                eip: 0x1234,
                by_kernel: i % 2 == 1,
                action,
            })
            .collect(),
    )
}

/// Every document over `view`, checked.
fn check_every_document<V: PagingView>(view: &V, tasks: &SimTasks, input: &CheckInput<'_>) {
    for filter in [
        PgdFilter::default(),
        PgdFilter {
            all: true,
            user: Some(true),
            ..PgdFilter::default()
        },
    ] {
        let q = report::DumpPgd::new(view, tasks, &filter).unwrap();
        check_document::<_, DumpPgdDoc>(&q.document(), "DumpPgdDoc");
    }
    for index in [0, 16, 17, 32, 40, 1023] {
        let q = report::DumpPt::new(view, tasks, index);
        check_document::<_, DumpPtDoc>(&q.document(), "DumpPtDoc");
    }
    for addr in [
        0,
        0x12345,
        0x0400_0000,
        0x0400_2abc,
        0x0800_0000,
        0x0a00_0000,
        u32::MAX,
    ] {
        let doc = report::walk(view, tasks, addr, None).unwrap();
        check_document::<_, WalkDoc>(&doc, "WalkDoc");
    }
    if tasks.slot_of_pid(101).is_some() {
        let doc = report::walk(view, tasks, 0x2000, Some(101)).unwrap();
        check_document::<_, WalkDoc>(&doc, "WalkDoc");
    }
    let mut scratch = vec![0u16; mm::check::SCRATCH_LEN];
    let q = report::CheckMm::new(view, input, &mut scratch).unwrap();
    check_document::<_, CheckMmDoc>(&q.document(), "CheckMmDoc");
    let q = report::ShowMem::new(view, tasks).unwrap();
    check_document::<_, ShowMemDoc>(&q.document(), "ShowMemDoc");
    let q = report::Tasks::new(view, tasks);
    check_document::<_, TasksDoc>(&q.document(), "TasksDoc");
}

fn sim_tasks(k: &SimKernel) -> SimTasks {
    SimTasks(pids(k))
}

// ---------------------------------------------------------------------------------------
// The documents of a simulated kernel
// ---------------------------------------------------------------------------------------

#[test]
fn every_document_of_a_running_machine_round_trips_and_validates() {
    let mut k = SimKernel::new(16 * MIB);
    let a = k.spawn(None).unwrap();
    k.write_word(a, 0, 1).unwrap();
    k.write_word(a, 0x2000, 2).unwrap();
    let b = k.fork(a).unwrap();
    k.write_word(b, 0x2000, 4).unwrap();
    let tasks = sim_tasks(&k);
    let refs = k.kernel_refs();
    let input = CheckInput {
        live_slots: live_slot_mask(k.live_slots()),
        kernel_refs: &refs,
    };
    check_every_document(&k.mm, &tasks, &input);

    // A damaged state: every kind of document still validates, mismatches included.
    let frame = k.mm.translate(user(a, 0)).unwrap().frame();
    k.mm.mem_map.set_count_for_debugging(frame, 7).unwrap();
    let pde = k.mm.pde(17);
    k.mm.set_pde(17, Entry(pde.raw() & !2));
    let mut scratch = vec![0u16; mm::check::SCRATCH_LEN];
    let q = report::CheckMm::new(&k.mm, &input, &mut scratch).unwrap();
    let v = check_document::<_, CheckMmDoc>(&q.document(), "CheckMmDoc");
    assert!(!v["mismatches"].as_array().unwrap().is_empty());
    check_every_document(&k.mm, &tasks, &input);

    let log = fault_log();
    let q = report::Faults::new(&log).unwrap();
    let v = check_document::<_, FaultsDoc>(&q.document(), "FaultsDoc");
    assert_eq!(v["faults"][1]["action"], "loaded_from_image");
    assert_eq!(v["faults"][1]["action_text"], "loaded from image");
    assert_eq!(v["totals"]["out_of_memory_killed"], 1);

    let mut injector = Injector::default();
    let cmd = report::parse("fail un_wp_page probability=50 times=-1")
        .unwrap()
        .command;
    let report::Command::Fail(cmd) = cmd else {
        unreachable!()
    };
    let changed = report::apply_fail(&mut injector, &tasks, cmd).unwrap();
    report::failnth(&mut injector, &tasks, 101, Some(2)).unwrap();
    let q = report::Fail::new(report::FailState::of(&injector), &tasks, changed);
    let v = check_document::<_, FailDoc>(&q.document(), "FailDoc");
    assert_eq!(v["changed"], "un_wp_page");
    assert_eq!(v["tasks"][0]["fail_nth"], 2);
    let doc = report::failnth(&mut injector, &tasks, 101, None).unwrap();
    check_document::<_, report::FailNthDoc>(&doc, "FailNthDoc");

    let corrupt = report::parse("corrupt pte 0x0 1 --task 101")
        .unwrap()
        .command;
    let report::Command::Corrupt(corrupt) = corrupt else {
        unreachable!()
    };
    let doc = report::corrupt(&mut k.mm, &tasks, corrupt).unwrap();
    let v = check_document::<_, report::CorruptDoc>(&doc, "CorruptDoc");
    assert!(v.get("index").is_none(), "only the fields of a pte: {v}");
    let doc = report::corrupt(&mut k.mm, &tasks, report::CorruptCommand::Leak).unwrap();
    check_document::<_, report::CorruptDoc>(&doc, "CorruptDoc");

    let cpu = report::Cpu::new(&CPU_AT_A_COW_FAULT);
    let v = check_document::<_, report::CpuDoc>(&cpu.document(), "CpuDoc");
    assert_eq!(v["cr0_flags"], "PE ET PG");
    assert_eq!(v["gdtr"]["entries"], 6);

    let mut switch = false;
    let doc = report::catch(&mut switch, Some(true));
    check_document::<_, report::CatchDoc>(&doc, "CatchDoc");
    check_document::<_, report::HelpDoc>(&report::help(None), "HelpDoc");
    let unknown = report::parse("frobnicate").unwrap_err().error;
    check_document::<_, report::HelpDoc>(&report::help(Some(&unknown)), "HelpDoc");
    let e = report::MonitorError::NoSuchTask { pid: 9 };
    let doc = report::ErrorDoc::of(report::CommandName::Walk, &e);
    check_document::<_, report::ErrorDoc>(&doc, "ErrorDoc");
}

#[test]
fn the_committed_schema_is_current() {
    let generated = report::schema::monitor_schema_text();
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/monitor.schema.json");
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        generated == committed,
        "kernel/docs/monitor.schema.json is stale: run `cargo run -p report --features schema --bin monitor-schema`"
    );
    let commands = schema()["x-commands"].as_object().unwrap();
    for c in report::CommandName::ALL {
        assert!(
            commands.contains_key(c.name()),
            "{} has no document",
            c.name()
        );
    }
    assert_eq!(schema()["x-schema-version"], report::SCHEMA);
}

#[test]
fn a_document_of_another_command_or_schema_is_refused() {
    let k = SimKernel::new(4 * MIB);
    let tasks = sim_tasks(&k);
    let doc = report::walk(&k.mm, &tasks, 0x1000, None).unwrap();
    let text = serde_json::to_string(&doc).unwrap();
    assert!(serde_json::from_str::<WalkDoc>(&text).is_ok());
    let wrong_command = text.replace("\"walk\"", "\"dumppt\"");
    let e = serde_json::from_str::<WalkDoc>(&wrong_command).unwrap_err();
    assert!(e.to_string().contains("expected 'walk'"), "{e}");
    let wrong_schema = text.replace("\"schema\":1", "\"schema\":7");
    let e = serde_json::from_str::<WalkDoc>(&wrong_schema).unwrap_err();
    assert!(e.to_string().contains("schema 7"), "{e}");
    let bad_hex = text.replace("\"0x00001000\"", "\"4096\"");
    assert!(serde_json::from_str::<WalkDoc>(&bad_hex).is_err());
}

#[test]
fn flags_and_fault_codes_parse_back_into_their_bits() {
    for raw in [0, 0x54, 0x0100_0001, 0x00fd_5067, 0x00fd_5025, 0xffff_f1ff] {
        let e = Entry(raw);
        let text = e.describe().to_string();
        let back = report::value::parse_flags(&text).unwrap_or_else(|| panic!("{text}"));
        assert_eq!(back.describe().to_string(), text);
    }
    assert!(
        report::value::parse_flags("P RW US D A").is_none(),
        "letters out of order"
    );
    assert!(report::value::parse_flags("swap slot 0").is_none());
    for code in 0..8 {
        let text = serde_json::to_string(&report::FaultCode(code)).unwrap();
        let back: report::FaultCode = serde_json::from_str(&text).unwrap();
        assert_eq!(back, report::FaultCode(code));
    }
}

// ---------------------------------------------------------------------------------------
// Issue 13: the text says what it counts
// ---------------------------------------------------------------------------------------

#[test]
fn dumppgd_of_one_task_counts_that_tasks_entries_in_its_header() {
    let mut k = SimKernel::new(16 * MIB);
    let a = k.spawn(None).unwrap();
    k.write_word(a, 0, 1).unwrap();
    k.write_word(a, 0x0040_0000, 3).unwrap();
    let b = k.spawn(None).unwrap();
    k.write_word(b, 0, 1).unwrap();
    let tasks = sim_tasks(&k);
    let all = report::DumpPgd::new(&k.mm, &tasks, &PgdFilter::default()).unwrap();
    let text = all.document().to_string();
    assert!(
        text.starts_with(&format!(
            "page directory at {:#010x}: 7 present entries\n",
            PG_DIR.as_u32()
        )),
        "{text}"
    );
    let filter = PgdFilter {
        task: Some(100 + a as u32),
        ..PgdFilter::default()
    };
    let one = report::DumpPgd::new(&k.mm, &tasks, &filter).unwrap();
    let text = one.document().to_string();
    let first = text.lines().next().unwrap();
    assert_eq!(
        first,
        format!(
            "page directory at {:#010x}: 2 present entries for pid {} (slot {a}), of 7 in the whole directory",
            PG_DIR.as_u32(),
            100 + a
        )
    );
    let filter = PgdFilter {
        task: Some(100 + b as u32),
        ..PgdFilter::default()
    };
    let text = report::DumpPgd::new(&k.mm, &tasks, &filter)
        .unwrap()
        .document()
        .to_string();
    assert!(
        text.contains(": 1 present entry for pid"),
        "singular: {text}"
    );
}

#[test]
fn checkmm_says_one_mismatch_and_only_counts_it_has() {
    let clean = CheckSummary {
        frames: 3808,
        present_pdes: 4,
        present_ptes: 4064,
        ..CheckSummary::default()
    };
    assert_eq!(
        report::SummaryText(&clean).to_string(),
        "OK (3808 frames, 4 directory entries, 4064 page-table entries checked)",
        "no '0 kernel references' line when no task page was counted"
    );
    let one = CheckSummary {
        frames: 1,
        present_pdes: 1,
        present_ptes: 1,
        kernel_refs: 1,
        swap_entries: 1,
        mismatches: 1,
    };
    assert_eq!(
        report::SummaryText(&one).to_string(),
        "MISMATCH (1 frame, 1 directory entry, 1 page-table entry, 1 task page, 1 swap entry checked; 1 mismatch)"
    );
    let two = CheckSummary {
        kernel_refs: 2,
        mismatches: 2,
        ..one
    };
    assert!(report::SummaryText(&two)
        .to_string()
        .ends_with("2 task pages, 1 swap entry checked; 2 mismatches)"));

    // Over a machine with one mismatch, the document's text says it once, in the singular.
    let mut k = SimKernel::new(4 * MIB);
    let a = k.spawn(None).unwrap();
    k.write_word(a, 0, 1).unwrap();
    k.mm.corrupt_leak_frame().unwrap();
    let refs = k.kernel_refs();
    let input = CheckInput {
        live_slots: live_slot_mask(k.live_slots()),
        kernel_refs: &refs,
    };
    let mut scratch = vec![0u16; mm::check::SCRATCH_LEN];
    let text = report::CheckMm::new(&k.mm, &input, &mut scratch)
        .unwrap()
        .document()
        .to_string();
    assert!(text.ends_with("; 1 mismatch)\n"), "{text}");
    assert!(text.contains(", 1 task page checked"), "{text}");
}

#[test]
fn a_clean_summary_reads_ok() {
    // The assertion kernel/mm/tests/checkmm.rs made on the summary's text form.
    let summary = CheckSummary {
        frames: 10,
        ..CheckSummary::default()
    };
    assert!(report::SummaryText(&summary).to_string().starts_with("OK"));
}

// ---------------------------------------------------------------------------------------
// Any paging state: no panic, every document valid
// ---------------------------------------------------------------------------------------

/// A paging state made of random words: a directory, some tables, counts, bitmaps.
#[derive(Debug)]
struct RandomView {
    /// Physical memory below `high`, one word per 4 bytes (the rest reads as 0).
    words: Vec<u32>,
    high: u32,
    start_mem: u32,
    counts: Vec<u8>,
    free: Vec<bool>,
    nr_free: u32,
    swap: Option<Vec<bool>>,
}

const RANDOM_RAM: u32 = 4 * MIB;
const RANDOM_PG_DIR: u32 = 0x0010_0000;

impl PagingView for RandomView {
    fn read_phys_u32(&self, addr: PhysAddr) -> u32 {
        assert!(
            addr.as_u32() < self.high,
            "a reader went beyond HIGH_MEMORY: {:#x}",
            addr.as_u32()
        );
        self.words
            .get(addr.as_u32() as usize / 4)
            .copied()
            .unwrap_or(0)
    }
    fn pg_dir(&self) -> Frame {
        Frame::containing(RANDOM_PG_DIR)
    }
    fn high_memory(&self) -> u32 {
        self.high
    }
    fn start_mem(&self) -> u32 {
        self.start_mem
    }
    fn kernel_pdes(&self) -> usize {
        1
    }
    fn kernel_table(&self, _dir: usize) -> Frame {
        Frame::containing(RANDOM_PG_DIR + PAGE_SIZE)
    }
    fn map_count(&self, index: usize) -> Option<u8> {
        self.counts.get(index).copied()
    }
    fn nr_free(&self) -> u32 {
        self.nr_free
    }
    fn free_bit(&self, index: usize) -> bool {
        self.free.get(index).copied().unwrap_or(false)
    }
    fn swap_slots(&self) -> Option<u32> {
        self.swap.as_ref().map(|s| s.len() as u32)
    }
    fn swap_bit(&self, slot: u32) -> bool {
        self.swap
            .as_ref()
            .and_then(|s| s.get(slot as usize).copied())
            .unwrap_or(false)
    }
}

/// An entry that names a frame near the tables often enough to be followed.
fn any_entry() -> impl Strategy<Value = u32> {
    prop_oneof![
        Just(0u32),
        any::<u32>(),
        (0u32..0x400, 0u32..0x200).prop_map(|(frame, flags)| (frame << 12) | flags),
        (0x100u32..0x104, 0u32..8).prop_map(|(frame, flags)| (frame << 12) | flags | 1),
    ]
}

fn random_view() -> impl Strategy<Value = RandomView> {
    (
        proptest::collection::vec((0usize..1024, any_entry()), 0..48),
        proptest::collection::vec((0usize..4096, any_entry()), 0..256),
        proptest::collection::vec(any::<u8>(), 0..64),
        any::<u32>(),
        proptest::option::of(proptest::collection::vec(any::<bool>(), 1..64)),
    )
        .prop_map(|(pdes, ptes, count_bytes, nr_free, swap)| {
            let high = RANDOM_RAM;
            let mut words = vec![0u32; (high / 4) as usize];
            for (index, e) in pdes {
                words[(RANDOM_PG_DIR / 4) as usize + index] = e;
            }
            // Table words in the four frames after the directory.
            for (i, e) in ptes {
                words[((RANDOM_PG_DIR + PAGE_SIZE) / 4) as usize + i] = e;
            }
            let nr_pages = ((high - LOW_MEM) / PAGE_SIZE) as usize;
            let mut counts = vec![0u8; nr_pages];
            for (i, &c) in count_bytes.iter().enumerate() {
                counts[(i * 37) % nr_pages] = c;
            }
            let free = counts.iter().map(|&c| c == 0).collect();
            RandomView {
                words,
                high,
                start_mem: LOW_MEM + 8 * PAGE_SIZE,
                counts,
                free,
                nr_free,
                swap,
            }
        })
}

/// A task table over the random state: a task in every even slot.
struct EvenTasks;

impl TaskSlots for EvenTasks {
    fn pid_in_slot(&self, slot: usize) -> Option<u32> {
        (slot.is_multiple_of(2) && slot < NR_TASKS).then_some(slot as u32)
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn no_paging_state_makes_a_document_panic_or_break_its_schema(view in random_view()) {
        let tasks = SimTasks(Pids((0..NR_TASKS).map(|s| EvenTasks.pid_in_slot(s)).collect()));
        let refs = [Frame::containing(LOW_MEM), Frame::containing(0xffff_f000)];
        let input = CheckInput { live_slots: 0b101, kernel_refs: &refs };
        check_every_document(&view, &tasks, &input);
    }
}
