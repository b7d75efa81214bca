//! Every deliberate corruption (`corrupt.rs`) is named precisely by checkmm: which
//! frame or entry, expected, found.

mod support;

use mm::check::Mismatch;
use mm::corrupt::CorruptError;
use mm::entry::{Entry, EntryFlags};
use mm::Frame;
use support::*;

fn setup() -> (SimKernel, usize, usize) {
    let mut k = SimKernel::new(DEFAULT_RAM);
    let a = k.spawn(None).unwrap();
    k.write_word(a, 0, 1).unwrap();
    k.write_word(a, 0x1000, 2).unwrap();
    let b = k.fork(a).unwrap();
    k.assert_clean();
    (k, a, b)
}

#[test]
fn a_flipped_rw_bit_on_a_shared_page_is_named_with_its_count() {
    let (mut k, a, _) = setup();
    let linear = user(a, 0);
    let change = k.mm.corrupt_pte_bit(linear, 1).unwrap();
    assert_eq!(change.new, change.old | EntryFlags::WRITABLE.bits());
    let frame = Entry(change.new).frame();
    assert_eq!(
        k.checkmm(),
        vec![Mismatch::WritableShared {
            linear,
            frame,
            count: 2
        }]
    );
}

#[test]
fn a_cleared_present_bit_shows_as_a_count_mismatch_and_a_swap_entry() {
    let (mut k, a, _) = setup();
    let linear = user(a, 0x1000);
    let change = k.mm.corrupt_pte_bit(linear, 0).unwrap();
    let frame = Entry(change.old).frame();
    let found = k.checkmm();
    assert!(
        found.contains(&Mismatch::Count {
            frame,
            expected: 1,
            found: 2
        }),
        "{found:?}"
    );
    assert!(
        found.contains(&Mismatch::UnexpectedSwapEntry {
            linear,
            entry: Entry(change.new)
        }),
        "{found:?}"
    );
}

#[test]
fn a_frame_bit_flipped_in_a_pte_names_both_frames() {
    let (mut k, a, _) = setup();
    let linear = user(a, 0);
    let change = k.mm.corrupt_pte_bit(linear, 12).unwrap();
    let (old, new) = (Entry(change.old).frame(), Entry(change.new).frame());
    let found = k.checkmm();
    assert!(
        found.contains(&Mismatch::Count {
            frame: old,
            expected: 1,
            found: 2
        }),
        "{found:?}"
    );
    assert!(
        found
            .iter()
            .any(|m| matches!(m, Mismatch::Count { frame, .. } if *frame == new)),
        "{found:?}"
    );
}

#[test]
fn a_pde_bit_flip_is_named() {
    let (mut k, a, _) = setup();
    let dir = user(a, 0).dir_index();
    k.mm.corrupt_pde_bit(dir, 2).unwrap();
    let found = k.checkmm();
    assert!(
        found
            .iter()
            .any(|m| matches!(m, Mismatch::EntryFlags { linear, .. } if linear.dir_index() == dir)),
        "{found:?}"
    );
}

#[test]
fn raised_and_lowered_counts_and_a_leaked_frame_are_named() {
    let (mut k, a, _) = setup();
    let frame = pte_of(&k.mm, user(a, 0)).frame();
    k.mm.corrupt_count(frame, 1).unwrap();
    assert_eq!(
        k.checkmm(),
        vec![Mismatch::Count {
            frame,
            expected: 2,
            found: 3
        }]
    );
    k.mm.corrupt_count(frame, -2).unwrap();
    assert_eq!(
        k.checkmm(),
        vec![Mismatch::Count {
            frame,
            expected: 2,
            found: 1
        }]
    );
    k.mm.corrupt_count(frame, 1).unwrap();
    k.assert_clean();
    let leaked = k.mm.corrupt_leak_frame().unwrap();
    assert_eq!(
        k.checkmm(),
        vec![Mismatch::Count {
            frame: leaked,
            expected: 0,
            found: 1
        }]
    );
}

#[test]
fn bad_corruption_requests_are_refused_without_changing_anything() {
    let (mut k, a, _) = setup();
    assert_eq!(
        k.mm.corrupt_pte_bit(user(a, 0), 32),
        Err(CorruptError::Bit(32))
    );
    assert_eq!(
        k.mm.corrupt_pte_bit(user(a, 0x0200_0000), 1),
        Err(CorruptError::NoPageTable(user(a, 0x0200_0000)))
    );
    assert_eq!(
        k.mm.corrupt_pde_bit(1024, 0),
        Err(CorruptError::DirIndex(1024))
    );
    let frame = pte_of(&k.mm, user(a, 0)).frame();
    assert!(matches!(
        k.mm.corrupt_count(frame, -3),
        Err(CorruptError::CountRange { .. })
    ));
    assert!(matches!(
        k.mm.corrupt_count(Frame::containing(0x1000), 1),
        Err(CorruptError::Frame(_))
    ));
    k.assert_clean();
}

#[test]
fn a_directory_entry_naming_a_frame_outside_ram_or_kernel_memory_is_never_followed() {
    let (mut k, a, b) = setup();
    let dir = user(a, 0).dir_index();
    // Bit 30: the "page table" is now at 1 GiB + x, far outside the simulated RAM; reading
    // it would panic the simulated machine (and stop the real kernel).
    k.mm.corrupt_pde_bit(dir, 30).unwrap();
    assert_eq!(k.mm.pte(user(a, 0)), None);
    assert_eq!(k.mm.walk(user(a, 0)).pte, None);
    assert_eq!(k.mm.slot_usage(a).pages, 0);
    assert!(!k.checkmm().is_empty());
    // The task's next access is a not-present fault under a damaged directory entry: the
    // task dies, the kernel goes on (exit reports the entry it could not follow).
    k.tolerate_bad_frees = true;
    assert_eq!(k.write_word(a, 0, 5), Err(SimError::Killed));
    // exit's free_page_tables cleared the damaged entry without reading through it.
    assert!(!k.mm.pde(dir).is_present());
    // A task whose directory entry names the kernel's own memory is not followed either.
    let kernel_frame = Entry::new(Frame::containing(0x1000), mm::entry::USER_RW);
    let dir_b = user(b, 0).dir_index();
    let saved = k.mm.pde(dir_b);
    k.mm.set_pde(dir_b, kernel_frame);
    assert_eq!(k.mm.pte(user(b, 0)), None);
    k.mm.set_pde(dir_b, saved);
    assert_eq!(k.read_word(b, 0).unwrap(), 1);
}
