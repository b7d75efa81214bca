//! The monitor's `fail`, `failnth` and `corrupt`: the parser on good and bad lines, and
//! their answers in both forms (JSON parsed with serde_json), over the simulated machine.

mod support;

use mm::check::Mismatch;
use mm::inject::Injector;
use mm::memory::AllocSite;
use report::{AttrPatch, Command, CorruptCommand, FailCommand, ParseError};
use serde_json::Value;
use support::*;

fn command(line: &str) -> Command {
    report::parse(line)
        .unwrap_or_else(|e| panic!("{line}: {e:?}"))
        .command
}

fn error(line: &str) -> ParseError<'_> {
    report::parse(line).expect_err(line).error
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

#[test]
fn fail_lines_parse_into_site_knobs_seed_and_task_marks() {
    assert_eq!(command("fail"), Command::Fail(FailCommand::Show));
    assert_eq!(
        command("fail un_wp_page probability=50 times=-1 interval=3 space=8192 filter=on"),
        Command::Fail(FailCommand::Configure {
            site: AllocSite::CowCopy,
            patch: AttrPatch {
                probability: Some(50),
                interval: Some(3),
                times: Some(-1),
                space: Some(8192),
                filter: Some(true)
            }
        })
    );
    assert_eq!(
        command("fail do_no_page off"),
        Command::Fail(FailCommand::Off {
            site: AllocSite::NoPage
        })
    );
    assert_eq!(
        command("fail seed 0x2a --json"),
        Command::Fail(FailCommand::Seed(42))
    );
    assert_eq!(
        command("fail task 7 on"),
        Command::Fail(FailCommand::Task {
            pid: 7,
            make_it_fail: true
        })
    );
    assert_eq!(
        command("failnth 3 2"),
        Command::FailNth { pid: 3, n: Some(2) }
    );
    assert_eq!(command("failnth 3"), Command::FailNth { pid: 3, n: None });
}

#[test]
fn bad_fail_lines_get_a_usage_never_a_panic() {
    assert!(matches!(
        error("fail nosuchsite"),
        ParseError::BadWord { .. }
    ));
    assert!(matches!(
        error("fail un_wp_page probability=101"),
        ParseError::OutOfRange { .. }
    ));
    assert!(matches!(
        error("fail un_wp_page times=-2"),
        ParseError::BadNumber { .. }
    ));
    assert!(matches!(
        error("fail un_wp_page colour=blue"),
        ParseError::BadWord { .. }
    ));
    assert!(matches!(
        error("fail seed"),
        ParseError::MissingArgument { .. }
    ));
    assert!(matches!(
        error("fail task 3 maybe"),
        ParseError::BadWord { .. }
    ));
    assert!(matches!(
        error("failnth"),
        ParseError::MissingArgument { .. }
    ));
    assert!(matches!(error("failnth x"), ParseError::BadNumber { .. }));
    assert!(matches!(
        error("corrupt"),
        ParseError::MissingArgument { .. }
    ));
    assert!(matches!(
        error("corrupt pte 0x1000 32"),
        ParseError::OutOfRange { .. }
    ));
    assert!(matches!(
        error("corrupt pde 1024 1"),
        ParseError::OutOfRange { .. }
    ));
    assert!(matches!(
        error("corrupt count 0x200000 +300"),
        ParseError::OutOfRange { .. }
    ));
    assert!(matches!(error("corrupt bogus"), ParseError::BadWord { .. }));
    assert!(matches!(
        error("corrupt leak now"),
        ParseError::ExtraArgument { .. }
    ));
    let mut out = String::new();
    report::parse_failure(
        &report::parse("fail nosuchsite --json").unwrap_err(),
        &mut out,
    )
    .unwrap();
    assert_eq!(json(&out)["error"]["kind"], "bad_argument");
}

#[test]
fn corrupt_lines_parse() {
    assert_eq!(
        command("corrupt pte 0x5000 1 --task 3"),
        Command::Corrupt(CorruptCommand::Pte {
            addr: 0x5000,
            bit: 1,
            task: Some(3)
        })
    );
    assert_eq!(
        command("corrupt pde 20 0"),
        Command::Corrupt(CorruptCommand::Pde { index: 20, bit: 0 })
    );
    assert_eq!(
        command("corrupt count 0x200000 -1"),
        Command::Corrupt(CorruptCommand::Count {
            frame: 0x200000,
            delta: -1
        })
    );
    assert_eq!(
        command("corrupt count 0x200000 +2"),
        Command::Corrupt(CorruptCommand::Count {
            frame: 0x200000,
            delta: 2
        })
    );
    assert_eq!(
        command("corrupt leak"),
        Command::Corrupt(CorruptCommand::Leak)
    );
}

#[test]
fn fail_changes_the_knobs_and_shows_every_site_in_both_forms() {
    let k = SimKernel::new(DEFAULT_RAM);
    let mut inj = Injector::new(1);
    let cmd = FailCommand::Configure {
        site: AllocSite::NoPage,
        patch: AttrPatch {
            probability: Some(100),
            times: Some(2),
            ..AttrPatch::default()
        },
    };
    let mut out = String::new();
    answers::fail(&mut inj, &pids(&k), cmd, true, &mut out).unwrap();
    let doc = json(&out);
    assert_eq!(doc["command"], "fail");
    assert_eq!(doc["changed"], "do_no_page");
    let site = doc["sites"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "do_no_page")
        .unwrap();
    assert_eq!(site["probability"], 100);
    assert_eq!(site["times"], 2);
    assert_eq!(site["interval"], 1, "unchanged knobs keep their values");
    assert_eq!(doc["sites"].as_array().unwrap().len(), AllocSite::ALL.len());
    inj.set_current(1);
    assert!(mm::FailurePolicy::should_fail(&mut inj, AllocSite::NoPage));
    let mut text = String::new();
    answers::fail(&mut inj, &pids(&k), FailCommand::Show, false, &mut text).unwrap();
    assert!(
        text.contains("do_no_page") && text.contains("last injected failure: do_no_page"),
        "{text}"
    );
}

#[test]
fn failnth_and_task_marks_need_a_live_task() {
    let mut k = SimKernel::new(DEFAULT_RAM);
    let t = k.spawn(None).unwrap();
    let mut inj = Injector::new(1);
    let mut out = String::new();
    answers::failnth(&mut inj, &pids(&k), 100 + t as u32, Some(3), true, &mut out).unwrap();
    let doc = json(&out);
    assert_eq!(
        (
            doc["pid"].clone(),
            doc["fail_nth"].clone(),
            doc["previous"].clone()
        ),
        (Value::from(100 + t), Value::from(3), Value::from(0))
    );
    assert_eq!(inj.task(t).unwrap().fail_nth, 3);
    out.clear();
    answers::failnth(&mut inj, &pids(&k), 999, Some(1), true, &mut out).unwrap();
    assert_eq!(json(&out)["error"]["kind"], "no_such_task");
    out.clear();
    answers::fail(
        &mut inj,
        &pids(&k),
        FailCommand::Task {
            pid: 100 + t as u32,
            make_it_fail: true,
        },
        true,
        &mut out,
    )
    .unwrap();
    assert_eq!(json(&out)["tasks"][0]["make_it_fail"], true);
}

#[test]
fn every_corruption_is_made_reported_and_then_named_by_checkmm() {
    let mut k = SimKernel::new(DEFAULT_RAM);
    let a = k.spawn(None).unwrap();
    k.write_word(a, 0, 1).unwrap();
    let _b = k.fork(a).unwrap();
    let slots = pids(&k);
    let mut out = String::new();
    answers::corrupt(
        &mut k.mm,
        &slots,
        CorruptCommand::Pte {
            addr: 0,
            bit: 1,
            task: Some(100 + a as u32),
        },
        true,
        &mut out,
    )
    .unwrap();
    let doc = json(&out);
    assert_eq!(doc["what"], "pte");
    assert_eq!(doc["linear"], format!("{:#010x}", user(a, 0).as_u32()));
    assert!(k
        .checkmm()
        .iter()
        .any(|m| matches!(m, Mismatch::WritableShared { .. })));
    out.clear();
    answers::corrupt(&mut k.mm, &slots, CorruptCommand::Leak, false, &mut out).unwrap();
    assert!(out.contains("leaked frame"), "{out}");
    assert!(k.checkmm().iter().any(|m| matches!(
        m,
        Mismatch::Count {
            expected: 0,
            found: 1,
            ..
        }
    )));
    out.clear();
    answers::corrupt(
        &mut k.mm,
        &slots,
        CorruptCommand::Pte {
            addr: 0x0300_0000,
            bit: 1,
            task: Some(100 + a as u32),
        },
        true,
        &mut out,
    )
    .unwrap();
    assert_eq!(
        json(&out)["error"]["kind"],
        "refused",
        "no page table there: refused, nothing changed"
    );
}
