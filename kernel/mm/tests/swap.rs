//! Linux 0.12 swap on the simulated machine: the header and bitmap, `get_swap_page` /
//! `swap_free`, `try_to_swap_out` (clean pages dropped, dirty pages written only at count
//! 1), the `swap_out` clock, `swap_in` through `do_no_page`, fork and exit with swapped
//! pages, device failures, and the swap invariants of checkmm.

mod support;

use mm::addr::PAGE_SIZE;
use mm::check::Mismatch;
use mm::entry::Entry;
use mm::fault::FaultAction;
use mm::memory::{fault_code, AllocSite, PutPageError};
use mm::sim::SimDisk;
use mm::swap::{
    format_header, BadBitmap, SwapFreeError, SwapInitError, SwapMap, MAX_SLOTS, SIGNATURE_OFFSET,
};
use mm::NeverFail;
use support::*;

fn disk(k: &SimKernel) -> &SimDisk {
    k.mm.phys.disk.as_ref().expect("disk")
}

fn slot_of(k: &SimKernel, slot: usize, offset: u32) -> Option<u32> {
    let e = pte_of(&k.mm, user(slot, offset));
    e.is_swap().then(|| e.swap_slot())
}

#[test]
fn a_header_needs_the_signature_and_never_frees_slot_zero() {
    let header = format_header(100);
    let map = SwapMap::from_header(&header, 100).unwrap();
    assert_eq!(map.nr_slots(), 100);
    assert_eq!(map.nr_free(), 99, "slot 0 holds the header");
    assert!(!map.is_free(0));
    let mut unsigned = header;
    unsigned[SIGNATURE_OFFSET] = b'X';
    assert_eq!(
        SwapMap::from_header(&unsigned, 100).err(),
        Some(SwapInitError::NoSignature)
    );
    let mut slot0 = header;
    slot0[0] |= 1;
    assert_eq!(
        SwapMap::from_header(&slot0, 100).err(),
        Some(SwapInitError::BadBitmap(BadBitmap::HeaderFree))
    );
    // A device larger than one bitmap page describes is cut to what the bits cover.
    let big = SwapMap::from_header(&format_header(100_000), 100_000).unwrap();
    assert_eq!(big.nr_slots(), MAX_SLOTS);
}

#[test]
fn init_swapping_refuses_what_0_12_refuses() {
    // 0.12: "if (swap_size < 100) { printk("Swap device too small (%d blocks)" ...".
    assert_eq!(
        SwapMap::from_header(&format_header(24), 24).err(),
        Some(SwapInitError::TooSmall { blocks: 96 })
    );
    assert_eq!(
        SwapMap::from_header(&format_header(25), 25)
            .unwrap()
            .nr_free(),
        24
    );
    // A header marking slots free past the device's end: "Bad swap-space bit-map".
    assert_eq!(
        SwapMap::from_header(&format_header(100), 30).err(),
        Some(SwapInitError::BadBitmap(BadBitmap::FreeBeyondDevice {
            slot: 30,
            slots: 30
        }))
    );
    // No free slot at all.
    let mut full = format_header(40);
    full[..SIGNATURE_OFFSET].fill(0);
    assert_eq!(
        SwapMap::from_header(&full, 40).err(),
        Some(SwapInitError::BadBitmap(BadBitmap::NoFreeSlot))
    );
}

#[test]
fn get_swap_page_takes_the_lowest_free_slot_and_swap_free_refuses_a_double_free() {
    let mut map = SwapMap::from_header(&format_header(32), 32).unwrap();
    assert_eq!(map.get_swap_page(), Some(1));
    assert_eq!(map.get_swap_page(), Some(2));
    map.swap_free(1).unwrap();
    assert_eq!(map.get_swap_page(), Some(1), "the lowest free slot again");
    assert_eq!(map.swap_free(0), Ok(()), "slot 0 is ignored, as 0.12");
    map.swap_free(2).unwrap();
    assert_eq!(
        map.swap_free(2),
        Err(SwapFreeError { slot: 2 }),
        "\"Swap-space bad\""
    );
    assert_eq!(map.counters.double_frees, 1);
    while map.get_swap_page().is_some() {}
    assert_eq!(map.nr_free(), 0);
}

#[test]
fn init_swapping_refuses_a_missing_or_unsigned_device() {
    let mut k = SimKernel::new(DEFAULT_RAM);
    let free = k.free_frames();
    assert_eq!(k.mm.init_swapping(), Err(SwapInitError::NoDevice));
    let mut unsigned = SimDisk::formatted(32);
    unsigned.pages[0][SIGNATURE_OFFSET..].fill(0);
    k.mm.phys.disk = Some(unsigned);
    assert_eq!(k.mm.init_swapping(), Err(SwapInitError::NoSignature));
    assert!(k.mm.swap.is_none());
    assert_eq!(k.free_frames(), free, "the header frame went back");
    k.mm.phys.disk = Some(SimDisk::formatted(32));
    assert_eq!(k.mm.init_swapping(), Ok(31));
}

#[test]
fn a_clean_page_is_dropped_and_reloads_from_its_program() {
    let mut k = SimKernel::new(DEFAULT_RAM).with_swap(32);
    let program = Program::patterned("p", 3, 0x3000);
    let t = k.spawn(Some(program.clone())).unwrap();
    assert_eq!(
        k.read_word(t, 0x1000).unwrap(),
        program.initial_word(0x1000)
    );
    let (table, index, pte) = k.mm.pte(user(t, 0x1000)).unwrap();
    assert!(!pte.is_dirty());
    let free = k.free_frames();
    assert!(k.mm.try_to_swap_out(table, index, user(t, 0x1000)));
    assert_eq!(
        pte_of(&k.mm, user(t, 0x1000)),
        Entry::EMPTY,
        "dropped, not written"
    );
    assert_eq!(k.free_frames(), free + 1);
    assert_eq!(disk(&k).writes, 0, "a clean page is never written");
    assert_eq!(
        k.read_word(t, 0x1000).unwrap(),
        program.initial_word(0x1000)
    );
    k.assert_clean();
}

#[test]
fn a_dirty_page_goes_to_a_slot_and_comes_back_through_do_no_page() {
    let mut k = SimKernel::new(DEFAULT_RAM).with_swap(32);
    let t = k.spawn(None).unwrap();
    k.write_word(t, 0x5000, 0xC0FF_EE00).unwrap();
    let (table, index, _) = k.mm.pte(user(t, 0x5000)).unwrap();
    let free = k.free_frames();
    assert!(k.mm.try_to_swap_out(table, index, user(t, 0x5000)));
    assert_eq!(slot_of(&k, t, 0x5000), Some(1));
    assert_eq!(k.free_frames(), free + 1);
    assert_eq!(k.mm.swap.as_ref().unwrap().nr_used(), 1);
    k.assert_clean();
    let outcome = k
        .no_page_fault(t, user(t, 0x5000), fault_code::USER)
        .unwrap();
    assert_eq!(outcome, FaultAction::SwappedIn);
    let pte = pte_of(&k.mm, user(t, 0x5000));
    assert!(
        pte.is_present() && pte.is_writable() && pte.is_dirty(),
        "0.12 maps page|DIRTY|7"
    );
    assert_eq!(k.read_word(t, 0x5000).unwrap(), 0xC0FF_EE00);
    assert_eq!(
        k.mm.swap.as_ref().unwrap().nr_used(),
        0,
        "swap_in frees the slot"
    );
    k.assert_clean();
}

#[test]
fn a_shared_dirty_page_is_never_written_out() {
    let mut k = SimKernel::new(DEFAULT_RAM).with_swap(32);
    let parent = k.spawn(None).unwrap();
    k.write_word(parent, 0, 7).unwrap();
    let _child = k.fork(parent).unwrap();
    let (table, index, pte) = k.mm.pte(user(parent, 0)).unwrap();
    assert!(pte.is_dirty());
    assert!(
        !k.mm.try_to_swap_out(table, index, user(parent, 0)),
        "count 2: stays"
    );
    assert_eq!(pte_of(&k.mm, user(parent, 0)), pte);
}

#[test]
fn get_free_page_evicts_through_swap_out_when_memory_is_exhausted() {
    let mut k = SimKernel::new(DEFAULT_RAM).with_swap(64);
    let t = k.spawn(None).unwrap();
    let free = k.free_frames() as u32;
    // More pages than RAM holds, each with its own value.
    let pages = free + 40;
    for p in 0..pages {
        k.write_word(t, p * PAGE_SIZE, p ^ 0x5A5A_0000).unwrap();
    }
    let swap = k.mm.swap.as_ref().unwrap();
    assert!(swap.counters.written_out >= 40, "{:?}", swap.counters);
    for p in 0..pages {
        assert_eq!(
            k.read_word(t, p * PAGE_SIZE).unwrap(),
            p ^ 0x5A5A_0000,
            "page {p}"
        );
    }
    assert!(k.mm.swap.as_ref().unwrap().counters.read_in > 0);
    k.assert_clean();
    k.exit(t);
    assert_eq!(
        k.mm.swap.as_ref().unwrap().nr_used(),
        0,
        "exit freed every slot"
    );
    k.assert_clean();
}

#[test]
fn swap_out_resumes_where_it_stopped_and_never_touches_the_kernel() {
    let mut k = SimKernel::new(DEFAULT_RAM).with_swap(64);
    assert!(
        !k.mm.swap_out(),
        "only the kernel's slot is mapped: nothing to evict"
    );
    let t = k.spawn(None).unwrap();
    for p in 0..4 {
        k.write_word(t, p * PAGE_SIZE, p).unwrap();
    }
    assert!(k.mm.swap_out());
    assert_eq!(slot_of(&k, t, 0), Some(1));
    assert!(k.mm.swap_out());
    assert_eq!(
        slot_of(&k, t, PAGE_SIZE),
        Some(2),
        "the clock moved on to the next entry"
    );
    k.assert_clean();
}

#[test]
fn fork_reads_a_swapped_page_back_for_the_parent_and_leaves_the_slot_to_the_child() {
    let mut k = SimKernel::new(DEFAULT_RAM).with_swap(32);
    let parent = k.spawn(None).unwrap();
    k.write_word(parent, 0x2000, 11).unwrap();
    let (table, index, _) = k.mm.pte(user(parent, 0x2000)).unwrap();
    assert!(k.mm.try_to_swap_out(table, index, user(parent, 0x2000)));
    let slot = slot_of(&k, parent, 0x2000).unwrap();
    let child = k.fork(parent).unwrap();
    let back = pte_of(&k.mm, user(parent, 0x2000));
    assert!(
        back.is_present() && back.is_dirty(),
        "the parent's page is back, dirty"
    );
    assert_eq!(
        slot_of(&k, child, 0x2000),
        Some(slot),
        "the child keeps the slot"
    );
    k.assert_clean();
    k.write_word(parent, 0x2000, 22).unwrap();
    k.write_word(child, 0x2000, 33).unwrap();
    assert_eq!(k.read_word(parent, 0x2000).unwrap(), 22);
    assert_eq!(k.read_word(child, 0x2000).unwrap(), 33);
    k.exit(child);
    k.exit(parent);
    assert_eq!(k.mm.swap.as_ref().unwrap().nr_used(), 0);
    k.assert_clean();
}

#[test]
fn a_failed_write_leaves_the_page_in_memory_and_the_slot_free() {
    let mut k = SimKernel::new(DEFAULT_RAM).with_swap(32);
    let t = k.spawn(None).unwrap();
    k.write_word(t, 0, 5).unwrap();
    let before = pte_of(&k.mm, user(t, 0));
    k.mm.phys.disk.as_mut().unwrap().fail_writes = true;
    let (table, index, _) = k.mm.pte(user(t, 0)).unwrap();
    assert!(!k.mm.try_to_swap_out(table, index, user(t, 0)));
    assert_eq!(pte_of(&k.mm, user(t, 0)), before);
    let swap = k.mm.swap.as_ref().unwrap();
    assert_eq!(swap.nr_used(), 0);
    assert_eq!(swap.counters.write_errors, 1);
    k.assert_clean();
}

#[test]
fn a_failed_read_kills_only_the_task_whose_page_it_was() {
    let mut k = SimKernel::new(DEFAULT_RAM).with_swap(32);
    let victim = k.spawn(None).unwrap();
    let other = k.spawn(None).unwrap();
    k.write_word(victim, 0, 1).unwrap();
    k.write_word(other, 0, 2).unwrap();
    let (table, index, _) = k.mm.pte(user(victim, 0)).unwrap();
    assert!(k.mm.try_to_swap_out(table, index, user(victim, 0)));
    k.mm.phys.disk.as_mut().unwrap().fail_reads = true;
    assert_eq!(k.read_word(victim, 0), Err(SimError::Killed));
    k.mm.phys.disk.as_mut().unwrap().fail_reads = false;
    assert_eq!(
        k.read_word(other, 0).unwrap(),
        2,
        "the other task lost nothing"
    );
    assert_eq!(
        k.mm.swap.as_ref().unwrap().nr_used(),
        0,
        "the victim's exit freed its slot"
    );
    k.assert_clean();
}

#[test]
fn a_failed_read_while_the_kernel_stores_into_the_page_kills_the_task_as_in_user_mode() {
    // A system call writing into a swapped-out page (verify_area faults it in, D9): the
    // read fails. The same failure in user mode kills the task; so must this one, with
    // the fault on the record, not return EFAULT as if the pointer were bad.
    let mut k = SimKernel::new(DEFAULT_RAM).with_swap(32);
    let victim = k.spawn(None).unwrap();
    k.write_word(victim, 0x3000, 1).unwrap();
    let (table, index, _) = k.mm.pte(user(victim, 0x3000)).unwrap();
    assert!(k.mm.try_to_swap_out(table, index, user(victim, 0x3000)));
    k.mm.phys.disk.as_mut().unwrap().fail_reads = true;
    assert_eq!(
        k.kernel_write_word(victim, 0x3000, 5),
        Err(SimError::Killed)
    );
    assert!(!k.is_live(victim));
    let fault = k.kill_log.last().expect("the kill is on the record");
    assert!(fault.by_kernel, "taken by the kernel on the task's behalf");
    assert_eq!(fault.linear, user(victim, 0x3000));
    assert_eq!(fault.verdict.action(), mm::fault::FaultAction::Killed);
    assert_eq!(
        k.mm.swap.as_ref().unwrap().nr_used(),
        0,
        "exit freed the slot"
    );
    k.assert_clean();
}

#[test]
fn a_failed_read_while_the_kernel_reads_the_page_kills_the_task_too() {
    let mut k = SimKernel::new(DEFAULT_RAM).with_swap(32);
    let victim = k.spawn(None).unwrap();
    k.write_word(victim, 0, 1).unwrap();
    let (table, index, _) = k.mm.pte(user(victim, 0)).unwrap();
    assert!(k.mm.try_to_swap_out(table, index, user(victim, 0)));
    k.mm.phys.disk.as_mut().unwrap().fail_reads = true;
    assert_eq!(k.kernel_read_word(victim, 0), Err(SimError::Killed));
    assert!(k.kill_log.last().is_some_and(|f| f.by_kernel));
    k.assert_clean();
}

#[test]
fn put_page_over_a_swap_entry_is_refused_and_the_slot_stays_named() {
    // No caller maps over a swap entry (do_no_page swaps it in first), but put_page must
    // not: the entry is the only record of the slot, overwriting it leaks the slot and
    // loses the page.
    let mut k = SimKernel::new(DEFAULT_RAM).with_swap(32);
    let t = k.spawn(None).unwrap();
    k.write_word(t, 0x4000, 0xFEED).unwrap();
    let (table, index, _) = k.mm.pte(user(t, 0x4000)).unwrap();
    assert!(k.mm.try_to_swap_out(table, index, user(t, 0x4000)));
    let swapped = pte_of(&k.mm, user(t, 0x4000));
    assert!(swapped.is_swap());
    let page = k.mm.get_free_page(AllocSite::NoPage).unwrap();
    assert_eq!(
        k.mm.put_page(page, user(t, 0x4000), &mut NeverFail),
        Err(PutPageError::SwapEntry(user(t, 0x4000), swapped))
    );
    assert_eq!(
        pte_of(&k.mm, user(t, 0x4000)),
        swapped,
        "the entry is untouched"
    );
    k.mm.free_page(page.addr()).unwrap();
    k.assert_clean();
    assert_eq!(
        k.read_word(t, 0x4000),
        Ok(0xFEED),
        "the page comes back from its slot"
    );
    k.assert_clean();
}

#[test]
fn a_full_swap_device_ends_in_out_of_memory_not_corruption() {
    // The smallest device 0.12 accepts: 100 blocks, 25 pages.
    let mut k = SimKernel::new(DEFAULT_RAM).with_swap(25);
    let t = k.spawn(None).unwrap();
    let other = k.spawn(None).unwrap();
    k.write_word(other, 0, 99).unwrap();
    let mut killed = false;
    for p in 0..2000 {
        match k.write_word(t, p * PAGE_SIZE, p) {
            Ok(()) => {}
            Err(SimError::Killed) => {
                killed = true;
                break;
            }
            Err(e) => panic!("{e:?}"),
        }
    }
    assert!(
        killed,
        "the task that exhausted memory and swap was killed by oom"
    );
    assert_eq!(k.read_word(other, 0).unwrap(), 99);
    k.assert_clean();
}

#[test]
fn checkmm_names_swap_slots_not_in_use_named_twice_or_leaked() {
    let mut k = SimKernel::new(DEFAULT_RAM).with_swap(32);
    let t = k.spawn(None).unwrap();
    for p in 0..2 {
        k.write_word(t, p * PAGE_SIZE, p).unwrap();
        let (table, index, _) = k.mm.pte(user(t, p * PAGE_SIZE)).unwrap();
        assert!(k.mm.try_to_swap_out(table, index, user(t, p * PAGE_SIZE)));
    }
    k.assert_clean();
    // Both entries name slot 1: slot 2 is leaked, slot 1 named twice.
    set_pte(&mut k.mm, user(t, PAGE_SIZE), Entry(1 << 1));
    let found = k.checkmm();
    assert!(
        found.contains(&Mismatch::SwapSlotShared {
            linear: user(t, PAGE_SIZE),
            slot: 1
        }),
        "{found:?}"
    );
    assert!(
        found.contains(&Mismatch::SwapSlotLeaked { slot: 2 }),
        "{found:?}"
    );
    // An entry naming a free slot.
    set_pte(&mut k.mm, user(t, PAGE_SIZE), Entry(7 << 1));
    let found = k.checkmm();
    assert!(
        found.contains(&Mismatch::SwapSlotNotInUse {
            linear: user(t, PAGE_SIZE),
            entry: Entry(7 << 1),
            slot: 7
        }),
        "{found:?}"
    );
}

#[test]
fn swap_entries_without_a_swap_device_are_reported() {
    let mut k = SimKernel::new(DEFAULT_RAM);
    let t = k.spawn(None).unwrap();
    k.write_word(t, 0, 1).unwrap();
    set_pte(&mut k.mm, user(t, 0x1000), Entry(3 << 1));
    let found = k.checkmm();
    assert!(found.contains(&Mismatch::UnexpectedSwapEntry {
        linear: user(t, 0x1000),
        entry: Entry(3 << 1)
    }));
}

/// Lets readers in (`PhysMem::open_reader_window`) with a checkmm of `live` and the
/// kernel's frames over every state a window opens on; returns how many were checked.
fn let_readers_in(k: &mut SimKernel, live: &[usize]) -> std::rc::Rc<std::cell::Cell<u32>> {
    let checked = std::rc::Rc::new(std::cell::Cell::new(0));
    let (live, refs, seen) = (live.to_vec(), k.kernel_refs(), checked.clone());
    let windows = &mut k.mm.phys.reader_windows;
    windows.let_in = true;
    windows.on_open = Some(std::rc::Rc::new(move |mm| {
        let found = checkmm_of(mm, &live, &refs);
        assert!(found.is_empty(), "a reader window opened on {found:#?}");
        seen.set(seen.get() + 1);
    }));
    checked
}

#[test]
fn a_swapping_fault_lets_readers_in_for_its_scan_and_write_and_they_see_a_clean_state() {
    let mut k = SimKernel::new(DEFAULT_RAM).with_swap(256);
    let t = k.spawn(None).unwrap();
    let checked = let_readers_in(&mut k, &[t]);
    // memhog: more pages than RAM holds. Each fault past the last free frame runs
    // swap_out from its first allocation, before it changed anything: a window each,
    // over which (SimRam checks) nothing readers see changes.
    let free = k.free_frames() as u32;
    let pages = free + 40;
    for p in 0..pages {
        k.write_word(t, p * PAGE_SIZE, p ^ 0x5A5A_0000).unwrap();
    }
    let written = k.mm.swap.as_ref().unwrap().counters.written_out;
    assert!(written >= 40);
    let opened = k.mm.phys.reader_windows.opened();
    assert!(
        opened >= written,
        "{opened} windows for {written} pages written"
    );
    assert_eq!(u64::from(checked.get()), opened);
    // A page in a new 4 MiB region: the zero page's allocation evicts in a window, the
    // page table's (the fault's second allocation, the page already taken) must not.
    let far = 0x40_0000 + 0x1000;
    assert!(pages * PAGE_SIZE < far);
    k.write_word(t, far, 0xFA12).unwrap();
    assert_eq!(k.read_word(t, far).unwrap(), 0xFA12);
    let opened = k.mm.phys.reader_windows.opened();
    // Reading them back: swap_in's allocation evicts in a window too.
    for p in 0..pages {
        assert_eq!(k.read_word(t, p * PAGE_SIZE).unwrap(), p ^ 0x5A5A_0000);
    }
    assert!(k.mm.phys.reader_windows.opened() > opened);
    assert!(!k.mm.phys.reader_windows.is_open());
    k.assert_clean();
}

#[test]
fn a_fork_under_memory_pressure_keeps_readers_out() {
    let mut k = SimKernel::new(DEFAULT_RAM).with_swap(256);
    let t = k.spawn(None).unwrap();
    let free = k.free_frames() as u32;
    for p in 0..free + 8 {
        k.write_word(t, p * PAGE_SIZE, p).unwrap();
    }
    let _ = let_readers_in(&mut k, &[t]);
    // copy_page_tables allocates half way through the copy: its swap_out must not let
    // readers see a half-copied directory.
    let forked = k.fork(t);
    assert_eq!(k.mm.phys.reader_windows.opened(), 0, "fork: {forked:?}");
    if let Ok(child) = forked {
        k.exit(child);
    }
    k.assert_clean();
}

#[test]
fn compat_d19_writes_with_readers_out_and_a_failed_write_changes_nothing_they_see() {
    let mut k = SimKernel::new(DEFAULT_RAM).with_swap(256);
    k.mm.compat = mm::compat::Compat::D19;
    let t = k.spawn(None).unwrap();
    let checked = let_readers_in(&mut k, &[t]);
    let free = k.free_frames() as u32;
    // 0.12's order points the entry at the slot before the write: the write is inside the
    // change (SimRam panics at a RAM write with readers in; the scan before it is not).
    for p in 0..free + 16 {
        k.write_word(t, p * PAGE_SIZE, p).unwrap();
    }
    assert!(checked.get() >= 16);
    // D19 off, a failing device: each write fails inside the window and changes only
    // counters; with no clean page to drop the task dies of out-of-memory.
    k.mm.compat = mm::compat::Compat::empty();
    k.mm.phys.disk.as_mut().unwrap().fail_writes = true;
    let before = k.mm.phys.reader_windows.opened();
    let result = k.write_word(t, (free + 20) * PAGE_SIZE, 1);
    assert!(result.is_err(), "{result:?}");
    assert!(k.mm.phys.reader_windows.opened() > before);
    assert!(k.mm.swap.as_ref().unwrap().counters.write_errors > 0);
    k.assert_clean();
}
