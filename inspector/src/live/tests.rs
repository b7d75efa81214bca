//! Host tests of the live source over a simulated machine: `mm`'s simulated kernel runs a
//! fork, copy-on-write and demand paging; its RAM, with a descriptor published as the
//! kernel publishes it (kernel/introspect), is written to a file; the live source maps
//! the file, finds and checks the descriptor, and every document it computes from its
//! snapshot equals the one kernel/report computes from the simulated kernel itself.

use std::sync::atomic::{AtomicU32, Ordering};

use introspect::{Descriptor, LayoutValue, Locator, TaskValue, FAULT_LOG_LEN, LOCATOR_ADDR};
use mm::addr::{LinearAddr, LOW_MEM, NR_TASKS, PAGE_SIZE, PDES_PER_TASK};
use mm::inject::{FaultAttr, Injector};
use mm::memory::AllocSite;
use report::{FaultAction, FaultRecord, TaskSlots};

use super::ram::tests::tempdir;
use super::*;

#[path = "../../../kernel/mm/tests/support/mod.rs"]
#[allow(dead_code, clippy::all)]
mod sim;

/// Where the test machine keeps what the kernel keeps in its image: in the reserved
/// frames between LOW_MEM and start_mem, which paging never hands out.
const DESCRIPTOR_AT: u32 = 0x0011_0000;
const MEM_MAP_AT: u32 = 0x0014_0000;
const FREE_BITS_AT: u32 = 0x0014_1000;
const BOOT_ID: u64 = 0x0123_4567_89ab_cdef;

/// The words of a value made only of AtomicU32 (the descriptor's types).
fn words_of<T>(value: &T) -> Vec<u32> {
    let n = std::mem::size_of::<T>() / 4;
    // SAFETY: the callers pass kernel/introspect's #[repr(C)] types, made only of
    // AtomicU32 (size a multiple of 4, alignment 4); they are read by loads.
    let words = unsafe { std::slice::from_raw_parts((value as *const T).cast::<AtomicU32>(), n) };
    words.iter().map(|w| w.load(Ordering::Relaxed)).collect()
}

fn put_words(image: &mut [u8], at: u32, words: &[u32]) {
    for (i, w) in words.iter().enumerate() {
        let a = at as usize + 4 * i;
        image[a..a + 4].copy_from_slice(&w.to_le_bytes());
    }
}

/// The simulated kernel after a fork, copy-on-write writes and demand-zero pages.
fn workload() -> sim::SimKernel {
    let mut k = sim::SimKernel::new(sim::DEFAULT_RAM);
    let program = sim::Program::patterned("demo", 3, 0x5000);
    let parent = k.spawn(Some(program)).expect("spawn");
    for page in 0..6 {
        k.write_word(parent, page * PAGE_SIZE, 0x1111 * page)
            .expect("demand load");
    }
    k.write_word(parent, 0x40_0000, 7)
        .expect("a page in a second table");
    let child = k.fork(parent).expect("fork");
    k.write_word(child, 0x1000, 0xc0ffee)
        .expect("copy-on-write");
    k.write_word(parent, 0x2000, 0xbeef).expect("made writable");
    let grandchild = k.fork(child).expect("fork");
    k.write_word(grandchild, 0x80_0000, 1).expect("demand zero");
    k
}

/// The published pids (as report's tests give them: 100 + slot).
fn pid(slot: usize) -> u32 {
    if slot == 0 {
        0
    } else {
        100 + slot as u32
    }
}

/// The machine's RAM with its descriptor, as a file; returns the file and the injector
/// and fault records it published.
fn publish(
    k: &sim::SimKernel,
    dir: &std::path::Path,
) -> (std::path::PathBuf, Injector, Vec<FaultRecord>) {
    let mm = &k.mm;
    let d = Box::new(Descriptor::new());
    let map = &mm.mem_map;
    let mut kernel_tables = [0; PDES_PER_TASK];
    for (t, f) in kernel_tables.iter_mut().zip(mm.kernel_tables()) {
        *t = f.as_u32();
    }
    let layout = LayoutValue {
        page_size: PAGE_SIZE,
        nr_tasks: NR_TASKS as u32,
        low_mem: LOW_MEM,
        start_mem: map.start_mem(),
        high_memory: map.high_memory(),
        pg_dir: mm.pg_dir().as_u32(),
        kernel_pdes: mm.kernel_pdes() as u32,
        kernel_tables,
        mem_map: MEM_MAP_AT,
        mem_map_len: map.all_counts().len() as u32,
        nr_pages: map.nr_pages() as u32,
        free_bits: FREE_BITS_AT,
        free_bits_words: map.free_bits().len() as u32,
        free_summary: 0,
        free_summary_words: 0,
        frame_search: 0,
    };
    d.paging.store(map, &mm.counters, None);
    let mut injector = Injector::new(42);
    let attr = FaultAttr {
        probability: 25,
        interval: 3,
        times: 5,
        space: 4096,
        task_filter: true,
    };
    injector.configure(AllocSite::NoPage, attr).expect("knobs");
    injector.task_mut(1).expect("slot 1").fail_nth = 3;
    d.paging.inject.store(&mut injector);
    for slot in 0..NR_TASKS {
        let live = slot == 0 || k.is_live(slot);
        let task = live.then(|| TaskValue {
            state: report::TaskState::Runnable,
            pid: pid(slot),
            parent: if slot == 0 { 0 } else { 1 },
            name: introspect::name_bytes(if slot == 0 { "kernel" } else { "demo" }),
            end_code: 0x3000,
            end_data: 0x5000,
            brk: 0x6000,
            start_stack: 0x400_0000,
            task_page: if slot == 0 {
                0
            } else {
                k.tasks[slot].as_ref().map_or(0, |t| t.task_struct.as_u32())
            },
            exit_status: 0,
            killed: None,
            faults: abi::FaultCounts::default(),
        });
        d.tasks.entries[slot].store(task.as_ref());
    }
    let mut faults = Vec::new();
    for i in 0..(FAULT_LOG_LEN as u32 + 10) {
        let r = FaultRecord {
            seq: 0,
            pid: pid(1),
            linear: 0x0400_0000 + i * PAGE_SIZE,
            error_code: 6,
            eip: 0x1234,
            by_kernel: false,
            action: FaultAction::ALL[i as usize % FaultAction::ALL.len()],
        };
        let seq = d.faults.push(r);
        faults.push(FaultRecord {
            seq: seq.into(),
            ..r
        });
    }
    d.publish(&layout, &[7; 20], BOOT_ID);
    let locator = Locator::new();
    locator.point_to(DESCRIPTOR_AT);
    let mut image = vec![0u8; mm.phys.size() as usize];
    for frame in (0..mm.phys.size()).step_by(PAGE_SIZE as usize) {
        let f = mm::addr::Frame::containing(frame);
        image[frame as usize..(frame + PAGE_SIZE) as usize].copy_from_slice(mm.phys.frame_bytes(f));
    }
    put_words(&mut image, DESCRIPTOR_AT, &words_of(&*d));
    put_words(&mut image, LOCATOR_ADDR, &words_of(&locator));
    image[MEM_MAP_AT as usize..MEM_MAP_AT as usize + map.nr_pages()]
        .copy_from_slice(&map.all_counts()[..map.nr_pages()]);
    put_words(&mut image, FREE_BITS_AT, map.free_bits());
    let path = dir.join("ram");
    std::fs::write(&path, &image).expect("the RAM file");
    (path, injector, faults)
}

struct Pids<'a>(&'a sim::SimKernel);

impl TaskSlots for Pids<'_> {
    fn pid_in_slot(&self, slot: usize) -> Option<u32> {
        (slot == 0 || self.0.is_live(slot)).then(|| pid(slot))
    }
}

fn json<T: serde::Serialize>(value: T) -> serde_json::Value {
    serde_json::to_value(value).expect("serialises")
}

#[test]
fn every_document_from_the_ram_file_equals_the_kernels_own() {
    let k = workload();
    let dir = tempdir();
    let (path, injector, faults) = publish(&k, &dir);
    let located = Located::find(Arc::new(Ram::open(&path).unwrap()), &Expect::default()).unwrap();
    assert_eq!(located.found_by, descriptor::FoundBy::Locator);
    assert_eq!(located.header.boot_id, BOOT_ID);
    let snap = Snapshot::take(&located, &Parts::ALL, 4).unwrap().unwrap();
    assert_eq!(snap.moment.consistency, Consistency::Consistent);
    let (mm, pids) = (&k.mm, Pids(&k));

    let filter = report::PgdFilter::default();
    assert_eq!(
        json(
            report::DumpPgd::new(&snap, &snap, &filter)
                .unwrap()
                .document()
        ),
        json(report::DumpPgd::new(mm, &pids, &filter).unwrap().document())
    );
    for index in 0..1024 {
        if mm.pde(index).is_present() {
            assert_eq!(
                json(report::DumpPt::new(&snap, &snap, index).document()),
                json(report::DumpPt::new(mm, &pids, index).document()),
                "dumppt {index}"
            );
        }
    }
    for linear in [
        0x0400_0000,
        0x0400_1000,
        0x0480_0000,
        0x0800_1000,
        0x0c80_0000,
        0x1000,
        0xffff_f000,
    ] {
        assert_eq!(
            json(report::walk(&snap, &snap, linear, None).unwrap()),
            json(report::walk(mm, &pids, linear, None).unwrap()),
            "walk {linear:#x}"
        );
    }
    assert_eq!(
        json(report::walk(&snap, &snap, 0x1000, Some(pid(2))).unwrap()),
        json(report::walk(mm, &pids, 0x1000, Some(pid(2))).unwrap())
    );
    assert_eq!(
        json(report::ShowMem::new(&snap, &snap).unwrap().document()),
        json(report::ShowMem::new(mm, &pids).unwrap().document())
    );
    let (live_slots, pages) = snap.check_input_parts();
    let input = mm::CheckInput {
        live_slots,
        kernel_refs: &pages,
    };
    let mut scratch = vec![0u16; mm::check::SCRATCH_LEN];
    let live_check = json(
        report::CheckMm::new(&snap, &input, &mut scratch)
            .unwrap()
            .document(),
    );
    let expected = sim::checkmm_of(mm, &k.live_slots(), &pages);
    assert!(
        expected.is_empty(),
        "the simulated kernel is clean: {expected:?}"
    );
    assert_eq!(live_check["ok"], true, "{live_check}");
    assert!(live_check["frames"].as_u64().unwrap() > 0);
    // The failure-injection state and the fault ring read back as published.
    assert_eq!(snap.fail_state(), Some(report::FailState::of(&injector)));
    let listed = json(report::Faults::new(&snap).unwrap().document());
    let records = listed["faults"].as_array().unwrap();
    assert_eq!(records.len(), FAULT_LOG_LEN);
    assert_eq!(records.last().unwrap()["seq"], faults.last().unwrap().seq);
    assert!(
        !snap.missed(),
        "a document read what the snapshot did not copy"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_snapshot_of_one_table_misses_what_it_did_not_copy() {
    let k = workload();
    let dir = tempdir();
    let (path, _, _) = publish(&k, &dir);
    let located = Located::find(Arc::new(Ram::open(&path).unwrap()), &Expect::default()).unwrap();
    let linear = LinearAddr::new(0x0400_1000);
    let one = Parts::tables(Tables::One(linear.dir_index()));
    let snap = Snapshot::take(&located, &one, 4).unwrap().unwrap();
    let walk = json(report::walk(&snap, &snap, linear.as_u32(), None).unwrap());
    assert!(!snap.missed());
    assert_eq!(
        walk,
        json(report::walk(&k.mm, &Pids(&k), linear.as_u32(), None).unwrap())
    );
    // A task's walk: the table of its slot, found in the same copy of the task table.
    let task = Parts::tables(Tables::Task {
        pid: pid(2),
        offset: 0x1000,
    });
    let snap2 = Snapshot::take(&located, &task, 4).unwrap().unwrap();
    assert_eq!(
        json(report::walk(&snap2, &snap2, 0x1000, Some(pid(2))).unwrap()),
        json(report::walk(&k.mm, &Pids(&k), 0x1000, Some(pid(2))).unwrap())
    );
    assert!(!snap2.missed());
    // Another slot's table was not copied: the snapshot says so instead of answering.
    let _ = report::walk(&snap, &snap, 0x0800_1000, None);
    assert!(snap.missed());
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_file_of_another_build_or_a_damaged_descriptor_is_refused() {
    let k = workload();
    let dir = tempdir();
    let (path, _, _) = publish(&k, &dir);
    let ram = Arc::new(Ram::open(&path).unwrap());
    let other = Expect {
        build_id: Some(vec![8; 20]),
        symbol: None,
    };
    assert!(matches!(
        Located::find(ram.clone(), &other),
        Err(LiveError::OtherBuild { .. })
    ));
    let wrong_place = Expect {
        build_id: None,
        symbol: Some(DESCRIPTOR_AT + 4),
    };
    assert!(matches!(
        Located::find(ram, &wrong_place),
        Err(LiveError::Layout(_))
    ));
    let mut image = std::fs::read(&path).unwrap();
    // The layout's mem_map past HIGH_MEMORY (the word after page size, nr_tasks,
    // low_mem, start_mem, high_memory, pg_dir, kernel_pdes, the 16 tables).
    let mem_map_field = DESCRIPTOR_AT as usize + 60 + 4 * (7 + PDES_PER_TASK);
    image[mem_map_field..mem_map_field + 4].copy_from_slice(&0x00ff_0000u32.to_le_bytes());
    let damaged = dir.join("damaged");
    std::fs::write(&damaged, &image).unwrap();
    let ram = Arc::new(Ram::open(&damaged).unwrap());
    assert_eq!(
        Located::find(ram, &Expect::default())
            .err()
            .map(|e| e.code()),
        Some("bad_descriptor")
    );
    std::fs::remove_dir_all(dir).unwrap();
}
