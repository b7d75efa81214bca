//! Host tests of the descriptor: the layout, the sequence count against a writer thread,
//! the fault ring across wrap-around, task entries.

use super::*;
use std::boxed::Box;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::vec::Vec;

fn record(action: FaultAction, linear: u32) -> FaultRecord {
    FaultRecord {
        seq: 0,
        pid: 7,
        linear,
        error_code: 6,
        eip: 0x1234,
        by_kernel: linear & 0x1000 != 0,
        action,
    }
}

#[test]
fn locator_names_the_descriptor_only_once_published() {
    let loc = Locator::new();
    assert_eq!(loc.descriptor_addr(), Err(LayoutError::NotPublished));
    loc.point_to(0x0012_3000);
    assert_eq!(loc.descriptor_addr(), Ok(0x0012_3000));
    loc.version.store(VERSION + 1, Ordering::Relaxed);
    assert!(matches!(
        loc.descriptor_addr(),
        Err(LayoutError::Version { .. })
    ));
    let other = Locator::new();
    other.magic[0].store(0, Ordering::Relaxed);
    assert!(matches!(
        other.descriptor_addr(),
        Err(LayoutError::NoLocator { .. })
    ));
}

#[test]
fn header_round_trips_and_is_refused_until_published() {
    let d = Box::new(Descriptor::new());
    assert_eq!(d.header().unwrap_err(), LayoutError::NotPublished);
    let layout = LayoutValue {
        page_size: 4096,
        nr_tasks: 64,
        low_mem: 0x10_0000,
        start_mem: 0x18_8000,
        high_memory: 0xfe_0000,
        pg_dir: 0x18_3000,
        kernel_pdes: 4,
        kernel_tables: [0x18_4000; PDES_PER_TASK],
        mem_map: 0x12_0000,
        mem_map_len: 16128,
        nr_pages: 3808,
        free_bits: 0x13_0000,
        free_bits_words: 504,
        free_summary: 0x13_1000,
        free_summary_words: 16,
        frame_search: 0,
    };
    let id: Vec<u8> = (1..=20).collect();
    d.publish(&layout, &id, 0xdead_beef_0000_0001);
    let h = d.header().unwrap();
    assert_eq!(h.build_id(), &id[..]);
    assert_eq!(h.boot_id, 0xdead_beef_0000_0001);
    assert_eq!(d.layout(), layout);
    d.header.size.store(12, Ordering::Relaxed);
    assert!(matches!(
        d.header(),
        Err(LayoutError::Size { found: 12, .. })
    ));
    d.header.magic[0].store(1, Ordering::Relaxed);
    assert!(matches!(d.header(), Err(LayoutError::NoDescriptor { .. })));
}

#[test]
fn nested_writes_keep_the_count_odd_until_the_outermost_ends() {
    let d = Box::new(Descriptor::new());
    assert_eq!(d.read_begin(), Some(0));
    let outer = d.begin_write();
    assert!(outer);
    assert_eq!(d.read_begin(), None);
    let inner = d.begin_write();
    assert!(!inner);
    d.end_write(inner);
    assert_eq!(d.read_begin(), None, "an inner end must not make it even");
    d.end_write(outer);
    assert_eq!(d.read_begin(), Some(2));
    assert!(!d.read_retry(2));
    let again = d.begin_write();
    d.end_write(again);
    assert!(d.read_retry(2), "a change since the first reading is seen");
}

#[test]
fn a_reader_never_accepts_a_torn_copy() {
    // The writer keeps two fields equal, but only between its begin and end; a reader
    // that accepts a copy with them different would have accepted a torn one.
    let d: Arc<Descriptor> = Arc::new(Descriptor::new());
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (d, stop) = (d.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut n = 0u32;
            while !stop.load(Ordering::Relaxed) {
                let owner = d.begin_write();
                n = n.wrapping_add(1);
                put(&d.paging.nr_free, n);
                for w in &d.paging.allocations {
                    put(w, n);
                }
                put(&d.paging.frees, n);
                d.end_write(owner);
            }
        })
    };
    let (mut consistent, mut changing) = (0u32, 0u32);
    for _ in 0..20_000 {
        match d.read_consistent(64, |d| {
            let first = get(&d.paging.nr_free);
            let all = d.paging.allocations.iter().map(get).collect::<Vec<_>>();
            (first, all, get(&d.paging.frees))
        }) {
            Read::Consistent { value, seq, .. } => {
                assert_eq!(seq % 2, 0);
                assert!(value.1.iter().all(|&v| v == value.0), "torn: {value:?}");
                assert_eq!(value.2, value.0, "torn: {value:?}");
                consistent += 1;
            }
            Read::Changing { .. } => changing += 1,
        }
    }
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    assert!(
        consistent > 0,
        "no consistent copy in 20000 ({changing} changing)"
    );
}

#[test]
fn the_ring_keeps_the_last_records_whole_across_wrap_around() {
    let d = Box::new(Descriptor::new());
    let ring = &d.faults;
    assert_eq!(ring.next_seq(), 1);
    assert_eq!(ring.get(1), None);
    let total = FAULT_RING_LEN as u32 + 100;
    for i in 0..total {
        let action = FaultAction::ALL[i as usize % FaultAction::ALL.len()];
        assert_eq!(ring.push(record(action, i * 4096)), i + 1);
    }
    assert_eq!(ring.next_seq(), total + 1);
    assert_eq!(ring.oldest_seq(), total + 1 - FAULT_RING_LEN as u32);
    assert_eq!(ring.get(ring.oldest_seq() - 1), None, "overwritten");
    for seq in ring.oldest_seq()..=total {
        let r = ring.get(seq).expect("kept");
        assert_eq!(r.seq, u64::from(seq));
        assert_eq!(r.linear, (seq - 1) * 4096);
        assert_eq!(r.by_kernel, (seq - 1) % 2 == 1);
        assert_eq!(r.action, FaultAction::ALL[(seq - 1) as usize % 9]);
        assert_eq!((r.pid, r.eip, r.error_code), (7, 0x1234, 6));
    }
    let totals = ring.totals();
    assert_eq!(totals.iter().sum::<u64>(), u64::from(total));
    // A record being rewritten (seq 0) is not returned.
    let slot = &ring.records[total as usize % FAULT_RING_LEN];
    slot.seq.store(0, Ordering::Relaxed);
    assert_eq!(ring.get(total), None);
}

#[test]
fn task_entries_round_trip_and_report_changes() {
    let d = Box::new(Descriptor::new());
    let e = &d.tasks.entries[3];
    assert_eq!(e.load(), None);
    let t = TaskValue {
        state: TaskState::Sleeping,
        pid: 9,
        parent: 1,
        name: name_bytes("a-rather-long-program-name-beyond-31"),
        end_code: 0x3000,
        end_data: 0x4000,
        brk: 0x5000,
        start_stack: 0x400_0000,
        task_page: 0xf0_0000,
        exit_status: 0,
        killed: Some(9),
        faults: abi::FaultCounts {
            demand_zero: 1,
            loaded: 2,
            shared: 3,
            cow_copied: 4,
            cow_made_writable: 5,
            swapped_in: 6,
        },
    };
    assert!(e.store(Some(&t)));
    assert!(!e.store(Some(&t)), "storing the same again changes nothing");
    let back = e.load().unwrap();
    assert_eq!(back, t);
    assert_eq!(back.name(), "a-rather-long-program-name-beyo");
    let zombie = TaskValue {
        state: TaskState::Zombie,
        killed: None,
        ..t
    };
    assert!(e.store(Some(&zombie)));
    assert_eq!(e.load().unwrap().killed, None);
    assert!(e.store(None));
    assert_eq!(e.load(), None);
    for s in TASK_STATES {
        assert_eq!(task_state_from_code(task_state_code(s)), Some(s));
    }
    assert_eq!(task_state_from_code(0), None);
    assert_eq!(task_state_from_code(5), None);
}

#[test]
fn split64_keeps_both_halves() {
    let s = Split64::new();
    s.store(0x1234_5678_9abc_def0);
    assert_eq!(s.load(), 0x1234_5678_9abc_def0);
}

#[test]
fn offsets_are_the_documented_ones() {
    // kernel/docs/introspection.md lists these; a change here is a change of the format.
    use core::mem::offset_of;
    assert_eq!(offset_of!(Descriptor, header), 0);
    assert_eq!(offset_of!(Descriptor, seq), 48);
    assert_eq!(offset_of!(Descriptor, stopped), 52);
    assert_eq!(offset_of!(Descriptor, stops), 56);
    assert_eq!(offset_of!(Descriptor, layout), 60);
    assert_eq!(offset_of!(Descriptor, paging), 184);
    assert_eq!(
        offset_of!(Descriptor, tasks),
        184 + core::mem::size_of::<PagingState>()
    );
    assert_eq!(
        offset_of!(Descriptor, faults),
        core::mem::size_of::<Descriptor>() - core::mem::size_of::<FaultRing>()
    );
    assert_eq!(offset_of!(Descriptor, tasks), 1148);
    assert_eq!(offset_of!(Descriptor, faults), 7296);
    assert_eq!(core::mem::size_of::<Descriptor>(), 171_212);
}
