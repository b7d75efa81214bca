//! `checkmm`: clean after normal operation, and for each kind of corruption it reports the
//! precise `Mismatch` naming the right frame or linear address with the right values.

mod support;

use mm::addr::{Frame, LinearAddr, LOW_MEM, PAGE_SIZE};
use mm::check::Level;
use mm::entry::{Entry, EntryFlags, KERNEL_RW, USER_RW};
use mm::memory::AllocSite;
use mm::{Mismatch, PhysMem};
use support::*;

/// Task `a` (slot 1) and its child `b` (slot 2): the page at 0x1000 is shared
/// copy-on-write (count 2, read-only in both); `a` wrote 0x2000 after the fork, so it
/// has a private writable copy (count 1) and `b` keeps the original (count 1, read-only).
struct Fixture {
    k: SimKernel,
    a: usize,
    b: usize,
    shared: Frame,
    private: Frame,
    /// `a`'s page table for its first 4 MiB.
    table: Frame,
}

fn fixture() -> Fixture {
    let mut k = SimKernel::new(DEFAULT_RAM);
    let a = k.spawn(None).unwrap();
    k.write_word(a, 0x1000, 1).unwrap();
    k.write_word(a, 0x2000, 2).unwrap();
    let b = k.fork(a).unwrap();
    k.write_word(a, 0x2000, 3).unwrap();
    let shared = k.mm.translate(user(a, 0x1000)).unwrap().frame();
    let private = k.mm.translate(user(a, 0x2000)).unwrap().frame();
    let table = k.mm.pde(16).frame();
    assert_eq!((count(&k.mm, shared), count(&k.mm, private)), (2, 1));
    k.assert_clean();
    Fixture {
        k,
        a,
        b,
        shared,
        private,
        table,
    }
}

/// Asserts that `found` holds exactly `expected`, in any order.
#[track_caller]
fn assert_same(found: Vec<Mismatch>, mut expected: Vec<Mismatch>) {
    for m in &found {
        let i = expected
            .iter()
            .position(|e| e == m)
            .unwrap_or_else(|| panic!("unexpected {m:?} in {found:#?}"));
        expected.remove(i);
    }
    assert!(
        expected.is_empty(),
        "missing {expected:#?}; found {found:#?}"
    );
}

#[test]
fn checkmm_is_clean_after_fork_cow_sharing_exec_and_exit() {
    let mut k = SimKernel::new(DEFAULT_RAM);
    let prog = Program::patterned("p", 1, 0x3000);
    let a = k.spawn(Some(prog.clone())).unwrap();
    k.read_word(a, 0).unwrap();
    k.write_word(a, 0x1000, 5).unwrap();
    k.write_word(a, 0x03ff_fffc, 6).unwrap();
    k.assert_clean();
    let b = k.fork(a).unwrap();
    k.assert_clean();
    let c = k.spawn(Some(prog.clone())).unwrap();
    k.read_word(c, 0).unwrap();
    k.kernel_write_word(b, 0x1000, 7).unwrap();
    k.assert_clean();
    k.exec(a, None).unwrap();
    k.write_word(a, 0, 1).unwrap();
    k.assert_clean();
    for t in [a, b, c] {
        k.exit(t);
        k.assert_clean();
    }
}

#[test]
fn checkmm_summary_counts_what_it_checked() {
    let f = fixture();
    let mut scratch = vec![0u16; f.k.mm.mem_map.nr_pages()];
    let refs = f.k.kernel_refs();
    let input = mm::CheckInput {
        live_slots: mm::check::live_slot_mask([f.a, f.b]),
        kernel_refs: &refs,
    };
    let summary =
        f.k.mm
            .check_mm(&input, &mut scratch, &mut |m| panic!("{m}"));
    assert!(summary.is_clean());
    assert_eq!(summary.frames, (DEFAULT_RAM - LOW_MEM) / PAGE_SIZE);
    // The kernel's one directory entry and 1024 identity entries, plus one table per task
    // with two pages each.
    assert_eq!(
        (
            summary.present_pdes,
            summary.present_ptes,
            summary.kernel_refs
        ),
        (3, 1024 + 4, 2)
    );
    // Its text form ("OK (...)") is the monitor's: kernel/report/tests/monitor.rs.
}

#[test]
fn a_raised_count_is_reported_with_the_expected_and_found_counts() {
    let mut f = fixture();
    f.k.mm.mem_map.set_count_for_debugging(f.shared, 3).unwrap();
    assert_same(
        f.k.checkmm(),
        vec![Mismatch::Count {
            frame: f.shared,
            expected: 2,
            found: 3,
        }],
    );
}

#[test]
fn a_raised_count_under_a_writable_entry_is_also_broken_copy_on_write() {
    let mut f = fixture();
    f.k.mm
        .mem_map
        .set_count_for_debugging(f.private, 2)
        .unwrap();
    assert_same(
        f.k.checkmm(),
        vec![
            Mismatch::Count {
                frame: f.private,
                expected: 1,
                found: 2,
            },
            Mismatch::WritableShared {
                linear: user(f.a, 0x2000),
                frame: f.private,
                count: 2,
            },
        ],
    );
}

#[test]
fn a_lowered_count_is_reported_including_a_mapped_frame_marked_free() {
    let mut f = fixture();
    f.k.mm.mem_map.set_count_for_debugging(f.shared, 1).unwrap();
    f.k.mm
        .mem_map
        .set_count_for_debugging(f.private, 0)
        .unwrap();
    assert_same(
        f.k.checkmm(),
        vec![
            Mismatch::Count {
                frame: f.shared,
                expected: 2,
                found: 1,
            },
            Mismatch::Count {
                frame: f.private,
                expected: 1,
                found: 0,
            },
        ],
    );
    assert!(Mismatch::Count {
        frame: f.private,
        expected: 1,
        found: 0
    }
    .to_string()
    .ends_with("(mapped but free)"));
}

#[test]
fn a_leaked_frame_is_reported_as_expected_zero() {
    let mut f = fixture();
    let leaked = f.k.mm.get_free_page(AllocSite::PageTable).unwrap();
    let found = f.k.checkmm();
    assert_same(
        found.clone(),
        vec![Mismatch::Count {
            frame: leaked,
            expected: 0,
            found: 1,
        }],
    );
    assert!(found[0].to_string().ends_with("(leaked)"));
}

#[test]
fn a_kernel_reference_accounts_for_a_frame_and_a_bad_one_is_named() {
    let mut f = fixture();
    let held = f.k.mm.get_free_page(AllocSite::TaskStruct).unwrap();
    let mut refs = f.k.kernel_refs();
    refs.push(held);
    assert!(checkmm_of(&f.k.mm, &[f.a, f.b], &refs).is_empty());
    let high = frame(DEFAULT_RAM);
    let reserved = frame(LOW_MEM);
    refs.extend([high, reserved]);
    assert_same(
        checkmm_of(&f.k.mm, &[f.a, f.b], &refs),
        vec![
            Mismatch::BadKernelReference { frame: high },
            Mismatch::BadKernelReference { frame: reserved },
        ],
    );
}

#[test]
fn a_writable_entry_on_a_shared_frame_is_broken_copy_on_write() {
    let mut f = fixture();
    let pte = pte_of(&f.k.mm, user(f.b, 0x1000));
    set_pte(
        &mut f.k.mm,
        user(f.b, 0x1000),
        pte.with_flags(EntryFlags::WRITABLE),
    );
    let found = f.k.checkmm();
    assert_same(
        found.clone(),
        vec![Mismatch::WritableShared {
            linear: user(f.b, 0x1000),
            frame: f.shared,
            count: 2,
        }],
    );
    assert!(found[0].to_string().contains("copy-on-write broken"));
}

#[test]
fn an_entry_mapping_a_free_frame_is_a_count_of_zero_where_one_is_expected() {
    let mut f = fixture();
    let free = frame(START_MEM + 0x10_000);
    assert_eq!(count(&f.k.mm, free), 0);
    set_pte(&mut f.k.mm, user(f.a, 0x5000), Entry::new(free, USER_RW));
    assert_same(
        f.k.checkmm(),
        vec![Mismatch::Count {
            frame: free,
            expected: 1,
            found: 0,
        }],
    );
}

#[test]
fn an_entry_mapping_a_frame_at_or_above_high_memory_is_a_bad_frame() {
    let mut f = fixture();
    for (offset, addr) in [(0x5000, DEFAULT_RAM), (0x6000, 0x0100_0000)] {
        set_pte(
            &mut f.k.mm,
            user(f.a, offset),
            Entry::new(frame(addr), USER_RW),
        );
    }
    assert_same(
        f.k.checkmm(),
        vec![
            Mismatch::BadFrame {
                linear: user(f.a, 0x5000),
                frame: frame(DEFAULT_RAM),
            },
            Mismatch::BadFrame {
                linear: user(f.a, 0x6000),
                frame: frame(0x0100_0000),
            },
        ],
    );
}

#[test]
fn an_entry_mapping_reserved_or_kernel_memory_is_a_bad_frame() {
    let mut f = fixture();
    let reserved = frame(LOW_MEM + 0x3000);
    let kernel = frame(0x9_0000);
    set_pte(
        &mut f.k.mm,
        user(f.a, 0x5000),
        Entry::new(reserved, USER_RW),
    );
    set_pte(&mut f.k.mm, user(f.b, 0x7000), Entry::new(kernel, USER_RW));
    assert_same(
        f.k.checkmm(),
        vec![
            Mismatch::BadFrame {
                linear: user(f.a, 0x5000),
                frame: reserved,
            },
            Mismatch::BadFrame {
                linear: user(f.b, 0x7000),
                frame: kernel,
            },
        ],
    );
}

#[test]
fn directory_entries_of_a_slot_without_a_task_are_dead() {
    let mut f = fixture();
    // b "exited" without free_page_tables: its table is still there.
    let pde = f.k.mm.pde(32);
    assert_same(
        checkmm_of(&f.k.mm, &[f.a], &f.k.kernel_refs()),
        vec![Mismatch::DeadSlot {
            pde_index: 32,
            slot: 2,
            entry: pde,
        }],
    );
    // A table planted in slot 5.
    let table = f.k.mm.get_free_page(AllocSite::PageTable).unwrap();
    let planted = Entry::new(table, USER_RW);
    f.k.mm.set_pde(5 * 16 + 3, planted);
    assert_same(
        f.k.checkmm(),
        vec![Mismatch::DeadSlot {
            pde_index: 83,
            slot: 5,
            entry: planted,
        }],
    );
}

#[test]
fn two_directory_entries_sharing_one_table_break_table_ownership() {
    let mut f = fixture();
    let pde = f.k.mm.pde(16);
    f.k.mm.set_pde(32 + 4, pde);
    // a's table maps the shared page and a's private page; both gain a phantom reference.
    assert_same(
        f.k.checkmm(),
        vec![
            Mismatch::TableOwnership {
                frame: f.table,
                owners: 2,
                mappings: 0,
            },
            Mismatch::Count {
                frame: f.table,
                expected: 2,
                found: 1,
            },
            Mismatch::Count {
                frame: f.shared,
                expected: 3,
                found: 2,
            },
            Mismatch::Count {
                frame: f.private,
                expected: 2,
                found: 1,
            },
        ],
    );
}

#[test]
fn a_page_table_also_mapped_as_a_page_breaks_table_ownership() {
    let mut f = fixture();
    set_pte(&mut f.k.mm, user(f.b, 0x9000), Entry::new(f.table, USER_RW));
    assert_same(
        f.k.checkmm(),
        vec![
            Mismatch::TableOwnership {
                frame: f.table,
                owners: 1,
                mappings: 1,
            },
            Mismatch::Count {
                frame: f.table,
                expected: 2,
                found: 1,
            },
        ],
    );
}

#[test]
fn a_changed_kernel_identity_entry_is_named_with_both_values() {
    let mut f = fixture();
    let pg0 = f.k.mm.kernel_tables()[0];
    let mm = &mut f.k.mm;
    mm.phys.write_entry(pg0, 5, Entry(0x6003));
    mm.phys.write_entry(pg0, 6, Entry(0x6007));
    // The MMU's accessed and dirty bits are not changes.
    mm.phys.write_entry(pg0, 7, Entry(0x7063));
    assert_same(
        f.k.checkmm(),
        vec![
            Mismatch::KernelMapping {
                linear: lin(0x5000),
                expected: Entry(0x5003),
                found: Entry(0x6003),
            },
            Mismatch::KernelMapping {
                linear: lin(0x6000),
                expected: Entry(0x6003),
                found: Entry(0x6007),
            },
        ],
    );
}

#[test]
fn a_changed_kernel_directory_entry_is_named_with_both_values() {
    let mut f = fixture();
    let pg0 = f.k.mm.kernel_tables()[0];
    f.k.mm.set_pde(0, Entry::new(pg0, USER_RW));
    let stray = Entry::new(frame(0x2000), KERNEL_RW);
    f.k.mm.set_pde(2, stray);
    assert_same(
        f.k.checkmm(),
        vec![
            Mismatch::KernelMapping {
                linear: lin(0),
                expected: Entry::new(pg0, KERNEL_RW),
                found: Entry::new(pg0, USER_RW),
            },
            Mismatch::KernelMapping {
                linear: lin(8 * MIB),
                expected: Entry::EMPTY,
                found: stray,
            },
        ],
    );
}

#[test]
fn a_swap_entry_without_swap_is_reported() {
    let mut f = fixture();
    let swap = Entry(42 << 1);
    set_pte(&mut f.k.mm, user(f.b, 0x4000), swap);
    assert_same(
        f.k.checkmm(),
        vec![Mismatch::UnexpectedSwapEntry {
            linear: user(f.b, 0x4000),
            entry: swap,
        }],
    );
}

#[test]
fn entries_without_the_user_bits_are_reported_at_their_level() {
    let mut f = fixture();
    let pte = pte_of(&f.k.mm, user(f.a, 0x2000)).without_flags(EntryFlags::USER);
    set_pte(&mut f.k.mm, user(f.a, 0x2000), pte);
    let pde = f.k.mm.pde(32).without_flags(EntryFlags::WRITABLE);
    f.k.mm.set_pde(32, pde);
    let junk = Entry(0x1234_5000);
    f.k.mm.set_pde(40, junk);
    assert_same(
        f.k.checkmm(),
        vec![
            Mismatch::EntryFlags {
                linear: user(f.a, 0x2000),
                entry: pte,
                level: Level::Table,
            },
            Mismatch::EntryFlags {
                linear: user(f.b, 0),
                entry: pde,
                level: Level::Directory,
            },
            Mismatch::EntryFlags {
                linear: LinearAddr::from_indices(40, 0),
                entry: junk,
                level: Level::Directory,
            },
        ],
    );
}

#[test]
fn a_directory_entry_naming_a_frame_paging_does_not_hand_out_is_a_bad_frame() {
    let mut f = fixture();
    let reserved = Entry::new(frame(LOW_MEM), USER_RW);
    f.k.mm.set_pde(32 + 7, reserved);
    assert_same(
        f.k.checkmm(),
        vec![Mismatch::BadFrame {
            linear: user(f.b, 7 * 4 * MIB),
            frame: frame(LOW_MEM),
        }],
    );
}

#[test]
fn exit_leaves_the_slot_without_tables_or_frames() {
    let mut f = fixture();
    let before = f.k.free_frames();
    f.k.exit(f.b);
    assert!((32..48).all(|d| f.k.mm.pde(d) == Entry::EMPTY));
    // b's table, its original 0x2000 page and its task structure; the shared page stays.
    assert_eq!(f.k.free_frames(), before + 3);
    assert_eq!(count(&f.k.mm, f.shared), 1);
    f.k.assert_clean();
}
