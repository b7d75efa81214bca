//! `compat=`: with a row's bit set, the paging code does what 0.11/0.12 does at that spot,
//! bug included. Each test makes the original happen and shows what it does, beside the
//! kernel's default (kernel/docs/deviations.md, rows D1, D4, D8, D18, D19, D22).

mod support;

use mm::addr::{Frame, LinearAddr, LOW_MEM, PAGE_SIZE, PDE_SPAN, TASK_SIZE};
use mm::check::Mismatch;
use mm::compat::Compat;
use mm::entry::{Entry, KERNEL_RW};
use mm::memory::{AllocSite, FreeTablesError};
use mm::NeverFail;
use support::*;

fn program() -> std::rc::Rc<Program> {
    Program::patterned("prog", 7, 0x3000)
}

// ---------------------------------------------------------------- D1: the seed's "BUG"

#[test]
fn d1_free_page_tables_of_the_kernels_slot_above_0_frees_the_kernels_own_table() {
    let mut mm = new_mm(16 * MIB);
    let at = LinearAddr::new(PDE_SPAN); // 4 MiB: directory entry 1, the identity map's
    assert_eq!(
        mm.free_page_tables(at, PDE_SPAN),
        Err(FreeTablesError::KernelMemory(at)),
        "the kernel refuses every range of its slot"
    );
    mm.compat = Compat::D1;
    assert_eq!(
        mm.free_page_tables(LinearAddr::new(0), PDE_SPAN),
        Err(FreeTablesError::KernelMemory(LinearAddr::new(0))),
        "0.11 still refuses from == 0"
    );
    let table = mm.kernel_tables()[1];
    let freed = mm.free_page_tables(at, PDE_SPAN).expect("0.11 goes on");
    // Every frame of 4..8 MiB is free paging memory here: 1024 frees of free frames
    // (0.11 panics at the first: D4). The table itself lies below LOW_MEM, as head.s's
    // pg1, so free_page ignores it (in the kernel it lies above, and its count drops
    // from USED to USED - 1).
    assert_eq!(freed.page_tables, 1);
    assert_eq!(freed.bad_frees, 1024);
    assert!(table.as_u32() < LOW_MEM);
    assert_eq!(
        mm.pde(1),
        Entry::EMPTY,
        "the kernel's directory entry 1 is gone"
    );
    assert_eq!(mm.translate(at), None, "physical 4 MiB is no longer mapped");
    let found = checkmm_of(&mm, &[], &[]);
    assert!(
        found.iter().any(|m| matches!(m,
            Mismatch::KernelMapping { linear, expected, found }
                if *linear == at && *expected == Entry::new(table, KERNEL_RW) && *found == Entry::EMPTY)),
        "checkmm names the missing directory entry: {found:#?}"
    );
}

#[test]
#[should_panic(expected = "trying to free free page")]
fn d1_and_d4_together_panic_as_0_11_does_at_the_first_free_frame() {
    let mut mm = new_mm(16 * MIB);
    mm.compat = Compat::D1 | Compat::D4;
    let _ = mm.free_page_tables(LinearAddr::new(PDE_SPAN), PDE_SPAN);
}

// ---------------------------------------------------------------- D4, D22: panics

#[test]
#[should_panic(expected = "trying to free free page")]
fn d4_free_page_of_a_free_frame_panics() {
    let mut mm = new_mm(DEFAULT_RAM);
    let page = mm.get_free_page(AllocSite::NoPage).unwrap();
    mm.free_page(page.addr()).unwrap();
    assert!(mm.free_page(page.addr()).is_err(), "the kernel refuses");
    mm.compat = Compat::D4;
    let _ = mm.free_page(page.addr());
}

#[test]
#[should_panic(expected = "trying to free nonexistent page")]
fn d4_free_page_of_a_frame_past_high_memory_panics() {
    let mut mm = new_mm(DEFAULT_RAM);
    mm.compat = Compat::D4;
    let _ = mm.free_page(Frame::containing(DEFAULT_RAM).addr());
}

#[test]
#[should_panic(expected = "Trying to free up swapper memory space")]
fn d22_free_page_tables_from_0_panics() {
    let mut mm = new_mm(DEFAULT_RAM);
    mm.compat = Compat::D22;
    let _ = mm.free_page_tables(LinearAddr::new(0), PDE_SPAN);
}

#[test]
#[should_panic(expected = "free_page_tables called with wrong alignment")]
fn d22_free_page_tables_misaligned_panics() {
    let mut mm = new_mm(DEFAULT_RAM);
    mm.compat = Compat::D22;
    let _ = mm.free_page_tables(LinearAddr::new(TASK_SIZE + PAGE_SIZE), PDE_SPAN);
}

#[test]
#[should_panic(expected = "copy_page_tables called with wrong alignment")]
fn d22_copy_page_tables_misaligned_panics() {
    let mut mm = new_mm(DEFAULT_RAM);
    mm.compat = Compat::D22;
    let _ = mm.copy_page_tables(
        LinearAddr::new(TASK_SIZE + PAGE_SIZE),
        LinearAddr::new(2 * TASK_SIZE),
        TASK_SIZE,
        &mut NeverFail,
    );
}

// ---------------------------------------------------------------- D8: 0.11's un_wp_page

#[test]
fn d8_un_wp_page_points_the_entry_at_the_zeroed_copy_before_copying() {
    let order = un_wp_page_order(Compat::D8);
    assert!(
        order.zero < order.remap && order.remap < order.copy,
        "0.11: remap, invalidate, copy"
    );
    // The result is the same: a private copy of the bytes.
    assert_eq!(order.copied_byte, 0x5A);
}

// ---------------------------------------------------------------- D18: the clean copy

/// A parent writes a page of the program's data, forks, and the child's `verify_area`
/// with no store after it (a `read()` of 0 bytes) copies it. A third task running the
/// program then faults the page in. Returns what it reads there.
fn third_task_reads_after_a_clean_looking_copy(compat: Compat) -> (u32, u32) {
    let mut k = SimKernel::new(DEFAULT_RAM);
    k.mm.compat = compat;
    let prog = program();
    let a = k.spawn(Some(prog.clone())).unwrap();
    k.write_word(a, 0x1000, 0xDEAD_BEEF).unwrap();
    let b = k.fork(a).unwrap();
    k.verify_area(b, 0x1000).unwrap();
    let c = k.spawn(Some(prog.clone())).unwrap();
    let seen = k.read_word(c, 0x1000).unwrap();
    k.assert_clean();
    (seen, prog.initial_word(0x1000))
}

#[test]
fn d18_a_copy_mapped_clean_hands_another_task_modified_data_as_the_programs_page() {
    let (seen, program_word) = third_task_reads_after_a_clean_looking_copy(Compat::empty());
    assert_eq!(
        seen, program_word,
        "the kernel: the copy stays dirty, never shared"
    );
    let (seen, _) = third_task_reads_after_a_clean_looking_copy(Compat::D18);
    assert_eq!(
        seen, 0xDEAD_BEEF,
        "0.11: the copy looks clean and share_page hands it out as the program's page"
    );
}

// ---------------------------------------------------------------- D19: the lost write

#[test]
fn d19_a_failed_swap_write_loses_the_page_the_entry_already_names() {
    for compat in [Compat::empty(), Compat::D19] {
        let mut k = SimKernel::new(DEFAULT_RAM).with_swap(32);
        k.mm.compat = compat;
        let t = k.spawn(None).unwrap();
        k.write_word(t, 0x6000, 0x1234_5678).unwrap();
        k.mm.phys.disk.as_mut().unwrap().fail_writes = true;
        let (table, index, _) = k.mm.pte(user(t, 0x6000)).unwrap();
        let evicted = k.mm.try_to_swap_out(table, index, user(t, 0x6000));
        k.mm.phys.disk.as_mut().unwrap().fail_writes = false;
        k.assert_clean();
        let back = k.read_word(t, 0x6000).unwrap();
        if compat.is_empty() {
            assert!(!evicted, "the kernel keeps a page it could not write");
            assert_eq!(back, 0x1234_5678);
        } else {
            assert!(evicted, "0.12 counts it swapped out");
            assert_eq!(
                back, 0,
                "0.12: the slot never got the page; it reads back the slot's old bytes"
            );
        }
    }
}
