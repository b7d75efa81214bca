//! Unit tests of every function of 0.11 `mm/memory.c` as `Mm` reproduces it: allocation
//! order, freeing, the fork copy, COW, demand loading and sharing, against the semantics
//! note (`linux-0.11-mm.md`) and the deviations the source documents (D1, D2, D5, D6, D8).

mod support;

use mm::addr::{slot_base, Frame, LinearAddr, LOW_MEM, PAGE_SIZE, PDE_SPAN, TASK_SIZE};
use mm::entry::{Entry, EntryFlags, KERNEL_RW, USER_RW};
use mm::fault::FaultAction;
use mm::mem_map::{MapCountError, MAX_MAP_COUNT, USED};
use mm::memory::{
    fault_code, AllocSite, CopiedTables, CopyError, FrameSearch, FreeTablesError, NoPageError,
    NoPageOutcome, OutOfMemory, PutPageError, ShareError, WpError, WpOutcome,
};
use mm::{FaultContext, NeverFail, PhysMem, ProgramPages};
use support::*;

const SLOT1: LinearAddr = slot_base(1);
const SLOT2: LinearAddr = slot_base(2);

fn oom(site: AllocSite) -> OutOfMemory {
    OutOfMemory {
        site,
        injected: false,
    }
}

/// A task in slot 1 with pages at offsets 0, 0x1000 and 0x0040_3000 (two page tables).
fn parent_with_three_pages(mm: &mut mm::Mm<mm::sim::SimRam>) -> [Frame; 3] {
    [
        map_page(mm, user(1, 0), 0x11),
        map_page(mm, user(1, 0x1000), 0x22),
        map_page(mm, user(1, 0x0040_3000), 0x33),
    ]
}

// ---------------------------------------------------------------- get_free_page

#[test]
fn get_free_page_returns_the_highest_free_frame_zero_filled_with_count_one() {
    let mut mm = new_mm(DEFAULT_RAM);
    let top = frame(DEFAULT_RAM - PAGE_SIZE);
    mm.phys.write_bytes(top.addr(), &[0xAA; PAGE_SIZE as usize]);
    let f = mm.get_free_page(AllocSite::NoPage).unwrap();
    assert_eq!(f, top);
    assert!(
        mm.phys.frame_bytes(f).iter().all(|&b| b == 0),
        "get_free_page zero-fills"
    );
    assert_eq!(count(&mm, f), 1);
    assert_eq!(
        mm.get_free_page(AllocSite::NoPage).unwrap(),
        frame(DEFAULT_RAM - 2 * PAGE_SIZE)
    );
    assert_eq!(mm.counters.allocations[AllocSite::NoPage.index()], 2);
}

#[test]
fn get_free_page_reuses_the_highest_freed_frame_first() {
    let mut mm = new_mm(DEFAULT_RAM);
    let frames: Vec<Frame> = (0..5)
        .map(|_| mm.get_free_page(AllocSite::NoPage).unwrap())
        .collect();
    mm.free_page(frames[3].addr()).unwrap();
    mm.free_page(frames[1].addr()).unwrap();
    assert_eq!(
        mm.get_free_page(AllocSite::NoPage).unwrap(),
        frames[1],
        "higher of the two freed"
    );
    assert_eq!(mm.get_free_page(AllocSite::NoPage).unwrap(), frames[3]);
    assert_eq!(
        mm.get_free_page(AllocSite::NoPage).unwrap(),
        frame(frames[4].as_u32() - PAGE_SIZE)
    );
}

#[test]
fn linear_scan_0_11_hands_out_the_same_frames_as_the_bitmap() {
    let mut bitmap = new_mm(DEFAULT_RAM);
    let mut scan = new_mm(DEFAULT_RAM);
    scan.frame_search = FrameSearch::LinearScan0_11;
    let mut held: Vec<Frame> = Vec::new();
    for step in 0u32..400 {
        if step % 3 == 2 && !held.is_empty() {
            let f = held.remove((step as usize * 7) % held.len());
            bitmap.free_page(f.addr()).unwrap();
            scan.free_page(f.addr()).unwrap();
        } else {
            let a = bitmap.get_free_page(AllocSite::NoPage).unwrap();
            let b = scan.get_free_page(AllocSite::NoPage).unwrap();
            assert_eq!(a, b, "step {step}");
            held.push(a);
        }
    }
    assert_eq!(bitmap.mem_map.counts(), scan.mem_map.counts());
}

#[test]
fn get_free_page_reports_out_of_memory_when_every_frame_is_taken() {
    for search in [FrameSearch::Bitmap, FrameSearch::LinearScan0_11] {
        let mut mm = new_mm(ram_with_frames(3));
        mm.frame_search = search;
        let frames: Vec<Frame> = (0..3)
            .map(|_| mm.get_free_page(AllocSite::CowCopy).unwrap())
            .collect();
        assert_eq!(
            frames,
            [
                frame(START_MEM + 0x2000),
                frame(START_MEM + 0x1000),
                frame(START_MEM)
            ]
        );
        assert_eq!(
            mm.get_free_page(AllocSite::CowCopy),
            Err(oom(AllocSite::CowCopy))
        );
        assert_eq!(mm.counters.failures[AllocSite::CowCopy.index()], 1);
        mm.free_page(frames[1].addr()).unwrap();
        assert_eq!(mm.get_free_page(AllocSite::CowCopy), Ok(frames[1]));
    }
}

#[test]
fn injected_allocation_failure_changes_no_state() {
    let mut mm = new_mm(DEFAULT_RAM);
    let free = mm.mem_map.nr_free();
    let mut policy = Injector::fail_after(Some(AllocSite::PageTable), 0);
    assert_eq!(
        mm.get_free_page_with(AllocSite::PageTable, &mut policy),
        Err(OutOfMemory {
            site: AllocSite::PageTable,
            injected: true
        })
    );
    assert_eq!(mm.mem_map.nr_free(), free);
    assert_eq!(mm.counters.failures[AllocSite::PageTable.index()], 1);
    assert!(
        mm.get_free_page_with(AllocSite::PageTable, &mut policy)
            .is_ok(),
        "disarmed"
    );
}

// ---------------------------------------------------------------- free_page

#[test]
fn free_page_below_low_mem_is_silently_ignored() {
    let mut mm = new_mm(DEFAULT_RAM);
    let before = mm.mem_map.counts().to_vec();
    assert_eq!(mm.free_page(mm::PhysAddr::new(0x9_F000)), Ok(()));
    assert_eq!(mm.free_page(mm::PhysAddr::new(LOW_MEM - 1)), Ok(()));
    assert_eq!(mm.mem_map.counts(), &before[..]);
    assert_eq!(mm.counters.frees, 0);
}

#[test]
fn free_page_of_a_frame_at_or_above_high_memory_is_nonexistent() {
    let mut mm = new_mm(DEFAULT_RAM);
    let high = frame(DEFAULT_RAM);
    assert_eq!(
        mm.free_page(high.addr()),
        Err(MapCountError::Nonexistent(high))
    );
    assert_eq!(
        mm.free_page(mm::PhysAddr::new(0x0100_0123)),
        Err(MapCountError::Nonexistent(frame(0x0100_0000)))
    );
}

#[test]
fn free_page_of_a_free_frame_is_refused() {
    let mut mm = new_mm(DEFAULT_RAM);
    let f = frame(START_MEM + 0x5000);
    assert_eq!(count(&mm, f), 0);
    assert_eq!(mm.free_page(f.addr()), Err(MapCountError::Free(f)));
    assert_eq!(count(&mm, f), 0, "never wraps to 255");
}

#[test]
fn free_page_drops_one_reference_and_frees_at_zero() {
    let mut mm = new_mm(DEFAULT_RAM);
    let f = mm.get_free_page(AllocSite::NoPage).unwrap();
    mm.mem_map.increment(f).unwrap();
    let free = mm.mem_map.nr_free();
    mm.free_page(f.addr().offset(0x123)).unwrap();
    assert_eq!((count(&mm, f), mm.mem_map.nr_free()), (1, free));
    mm.free_page(f.addr()).unwrap();
    assert_eq!((count(&mm, f), mm.mem_map.nr_free()), (0, free + 1));
    assert_eq!(mm.counters.frees, 2);
}

// ---------------------------------------------------------------- free_page_tables

#[test]
fn free_page_tables_frees_pages_and_tables_clears_entries_and_flushes_the_tlb() {
    let mut mm = new_mm(DEFAULT_RAM);
    let free = mm.mem_map.nr_free();
    let pages = parent_with_three_pages(&mut mm);
    let tables = [mm.pde(16).frame(), mm.pde(17).frame()];
    assert_eq!(mm.mem_map.nr_free(), free - 5);
    let flushes = mm.phys.tlb_flushes;

    let freed = mm.free_page_tables(SLOT1, TASK_SIZE).unwrap();
    assert_eq!(
        (
            freed.pages,
            freed.page_tables,
            freed.swap_entries,
            freed.bad_frees
        ),
        (3, 2, 0, 0)
    );
    assert_eq!(mm.mem_map.nr_free(), free);
    for f in pages.iter().chain(&tables) {
        assert_eq!(count(&mm, *f), 0, "{f} freed");
    }
    for dir in 16..32 {
        assert_eq!(mm.pde(dir), Entry::EMPTY);
    }
    for t in tables {
        assert!(
            mm.phys.frame_bytes(t).iter().all(|&b| b == 0),
            "the table's entries are zeroed"
        );
    }
    assert_eq!(mm.phys.tlb_flushes, flushes + 1);
    assert!(checkmm_of(&mm, &[], &[]).is_empty());
}

#[test]
fn free_page_tables_of_a_child_only_drops_its_references_to_shared_pages() {
    let mut mm = new_mm(DEFAULT_RAM);
    let pages = parent_with_three_pages(&mut mm);
    mm.copy_page_tables(SLOT1, SLOT2, TASK_SIZE, &mut NeverFail)
        .unwrap();
    let freed = mm.free_page_tables(SLOT2, TASK_SIZE).unwrap();
    assert_eq!((freed.pages, freed.page_tables), (3, 2));
    for p in pages {
        assert_eq!(count(&mm, p), 1);
    }
    assert!(checkmm_of(&mm, &[1], &[]).is_empty());
}

#[test]
fn free_page_tables_refuses_a_misaligned_start() {
    let mut mm = new_mm(DEFAULT_RAM);
    map_page(&mut mm, user(1, 0), 1);
    let from = lin(SLOT1.as_u32() + PAGE_SIZE);
    assert_eq!(
        mm.free_page_tables(from, PDE_SPAN),
        Err(FreeTablesError::Misaligned(from))
    );
    assert!(mm.pde(16).is_present(), "nothing freed");
}

#[test]
fn free_page_tables_refuses_every_start_inside_the_kernel_slot_not_only_zero() {
    let mut mm = new_mm(DEFAULT_RAM);
    let flushes = mm.phys.tlb_flushes;
    // 0.11 refuses only from == 0; 4 MiB and 60 MiB are the "BUG" the seed text marks.
    for from in [0, 4 * MIB, 60 * MIB] {
        assert_eq!(
            mm.free_page_tables(lin(from), PDE_SPAN),
            Err(FreeTablesError::KernelMemory(lin(from)))
        );
    }
    assert_eq!(mm.phys.tlb_flushes, flushes);
    assert!(
        checkmm_of(&mm, &[], &[]).is_empty(),
        "the identity map is intact"
    );
    assert_eq!(
        mm.free_page_tables(lin(64 * MIB), TASK_SIZE)
            .map(|f| f.pages),
        Ok(0),
        "64 MiB is task 1's"
    );
}

#[test]
fn free_page_tables_refuses_a_range_past_4_gib() {
    let mut mm = new_mm(DEFAULT_RAM);
    let last = slot_base(63);
    assert!(mm.free_page_tables(last, TASK_SIZE).is_ok());
    assert_eq!(
        mm.free_page_tables(last, 2 * TASK_SIZE),
        Err(FreeTablesError::OutOfRange(last, 2 * TASK_SIZE))
    );
}

#[test]
fn free_page_tables_clears_swap_entries_and_counts_refused_frees() {
    let mut mm = new_mm(DEFAULT_RAM);
    map_page(&mut mm, user(1, 0), 1);
    set_pte(&mut mm, user(1, 0x1000), Entry(42 << 1));
    let free_frame = frame(START_MEM);
    set_pte(&mut mm, user(1, 0x2000), Entry::new(free_frame, USER_RW));
    let table = mm.pde(16).frame();
    let freed = mm.free_page_tables(SLOT1, TASK_SIZE).unwrap();
    assert_eq!(
        (freed.pages, freed.swap_entries, freed.bad_frees),
        (1, 1, 1)
    );
    assert_eq!(freed.first_bad_free, Some(MapCountError::Free(free_frame)));
    assert!(mm.phys.frame_bytes(table).iter().all(|&b| b == 0));
    assert!(checkmm_of(&mm, &[], &[]).is_empty());
}

// ---------------------------------------------------------------- copy_page_tables

#[test]
fn copy_page_tables_write_protects_both_sides_and_adds_one_reference_per_page() {
    let mut mm = new_mm(DEFAULT_RAM);
    let pages = parent_with_three_pages(&mut mm);
    let flushes = mm.phys.tlb_flushes;
    let copied = mm
        .copy_page_tables(SLOT1, SLOT2, TASK_SIZE, &mut NeverFail)
        .unwrap();
    assert_eq!(
        copied,
        CopiedTables {
            page_tables: 2,
            pages: 3,
            swap_entries: 0
        }
    );
    for (offset, page) in [0, 0x1000, 0x0040_3000].into_iter().zip(pages) {
        let parent = pte_of(&mm, user(1, offset));
        let child = pte_of(&mm, user(2, offset));
        assert_eq!(
            parent,
            Entry::new(page, EntryFlags::PRESENT | EntryFlags::USER)
        );
        assert_eq!(child, parent);
        assert_eq!(count(&mm, page), 2);
    }
    for dir in [32, 33] {
        let pde = mm.pde(dir);
        assert_eq!(pde.flags(), USER_RW);
        assert_ne!(
            pde.frame(),
            mm.pde(dir - 16).frame(),
            "the child has its own table"
        );
        assert_eq!(count(&mm, pde.frame()), 1);
    }
    assert_eq!(mm.phys.tlb_flushes, flushes + 1);
    assert!(checkmm_of(&mm, &[1, 2], &[]).is_empty());
}

#[test]
fn copy_page_tables_keeps_accessed_and_dirty_bits_and_skips_absent_entries() {
    let mut mm = new_mm(DEFAULT_RAM);
    let page = map_page(&mut mm, user(1, 0x5000), 1);
    let marked = Entry::new(page, USER_RW | EntryFlags::ACCESSED | EntryFlags::DIRTY);
    set_pte(&mut mm, user(1, 0x5000), marked);
    mm.copy_page_tables(SLOT1, SLOT2, TASK_SIZE, &mut NeverFail)
        .unwrap();
    let expected = marked.without_flags(EntryFlags::WRITABLE);
    assert_eq!(pte_of(&mm, user(2, 0x5000)), expected);
    assert_eq!(pte_of(&mm, user(1, 0x5000)), expected);
    assert_eq!(pte_of(&mm, user(2, 0x4000)), Entry::EMPTY);
}

#[test]
fn copy_page_tables_allocates_one_table_per_present_source_directory_entry() {
    let mut mm = new_mm(DEFAULT_RAM);
    parent_with_three_pages(&mut mm);
    // A present directory entry whose table maps nothing still gets a table (as in 0.11).
    let lonely = map_page(&mut mm, user(1, 0x0100_0000), 4);
    set_pte(&mut mm, user(1, 0x0100_0000), Entry::EMPTY);
    mm.free_page(lonely.addr()).unwrap();
    let free = mm.mem_map.nr_free();
    let copied = mm
        .copy_page_tables(SLOT1, SLOT2, TASK_SIZE, &mut NeverFail)
        .unwrap();
    assert_eq!(
        copied,
        CopiedTables {
            page_tables: 3,
            pages: 3,
            swap_entries: 0
        }
    );
    assert_eq!(mm.mem_map.nr_free(), free - 3);
    let present: Vec<usize> = (32..48).filter(|&d| mm.pde(d).is_present()).collect();
    assert_eq!(present, [32, 33, 36]);
}

#[test]
fn copy_page_tables_refuses_a_destination_that_already_has_a_table() {
    let mut mm = new_mm(DEFAULT_RAM);
    let pages = parent_with_three_pages(&mut mm);
    map_page(&mut mm, user(2, 0), 9);
    let counts = mm.mem_map.counts().to_vec();
    assert_eq!(
        mm.copy_page_tables(SLOT1, SLOT2, TASK_SIZE, &mut NeverFail),
        Err(CopyError::AlreadyExists(32))
    );
    assert_eq!(mm.mem_map.counts(), &counts[..], "nothing shared");
    assert!(pte_of(&mm, user(1, 0)).is_writable());
    assert_eq!(count(&mm, pages[0]), 1);
}

#[test]
fn copy_page_tables_refuses_misalignment_and_a_destination_in_the_kernel_slot() {
    let mut mm = new_mm(DEFAULT_RAM);
    parent_with_three_pages(&mut mm);
    let odd = lin(SLOT2.as_u32() + PAGE_SIZE);
    assert_eq!(
        mm.copy_page_tables(SLOT1, odd, TASK_SIZE, &mut NeverFail),
        Err(CopyError::Misaligned)
    );
    assert_eq!(
        mm.copy_page_tables(odd, SLOT2, TASK_SIZE, &mut NeverFail),
        Err(CopyError::Misaligned)
    );
    assert_eq!(
        mm.copy_page_tables(SLOT1, lin(4 * MIB), PDE_SPAN, &mut NeverFail),
        Err(CopyError::OutOfRange)
    );
    assert_eq!(
        mm.copy_page_tables(SLOT1, slot_base(63), 2 * TASK_SIZE, &mut NeverFail),
        Err(CopyError::OutOfRange)
    );
    assert!(checkmm_of(&mm, &[1], &[]).is_empty());
}

#[test]
fn copy_page_tables_out_of_memory_leaves_tables_that_free_page_tables_releases_cleanly() {
    let mut mm = new_mm(DEFAULT_RAM);
    let pages = parent_with_three_pages(&mut mm);
    let held = hog_until(&mut mm, 1);
    let err = mm.copy_page_tables(SLOT1, SLOT2, TASK_SIZE, &mut NeverFail);
    assert_eq!(
        err,
        Err(CopyError::OutOfMemory(oom(AllocSite::CopyPageTables)))
    );
    // The first table was built: its two pages are shared, the third page is not.
    assert!(mm.pde(32).is_present() && !mm.pde(33).is_present());
    assert_eq!(
        [pages[0], pages[1], pages[2]].map(|p| count(&mm, p)),
        [2, 2, 1]
    );
    assert!(pte_of(&mm, user(1, 0x0040_3000)).is_writable());
    assert!(
        checkmm_of(&mm, &[1, 2], &held).is_empty(),
        "half-built but consistent"
    );

    // 0.11 copy_mem: free_page_tables of the child.
    let flushes = mm.phys.tlb_flushes;
    let freed = mm.free_page_tables(SLOT2, TASK_SIZE).unwrap();
    assert_eq!((freed.pages, freed.page_tables, freed.bad_frees), (2, 1, 0));
    assert_eq!(
        mm.phys.tlb_flushes,
        flushes + 1,
        "the cleanup flushes the write-protected parent"
    );
    assert_eq!(mm.mem_map.nr_free(), 1);
    assert_eq!(pages.map(|p| count(&mm, p)), [1, 1, 1]);
    assert!(checkmm_of(&mm, &[1], &held).is_empty());
}

#[test]
fn copy_page_tables_injected_failure_on_the_first_table_builds_nothing() {
    let mut mm = new_mm(DEFAULT_RAM);
    parent_with_three_pages(&mut mm);
    let counts = mm.mem_map.counts().to_vec();
    let mut policy = Injector::fail_after(Some(AllocSite::CopyPageTables), 0);
    assert_eq!(
        mm.copy_page_tables(SLOT1, SLOT2, TASK_SIZE, &mut policy),
        Err(CopyError::OutOfMemory(OutOfMemory {
            site: AllocSite::CopyPageTables,
            injected: true
        }))
    );
    assert_eq!(mm.mem_map.counts(), &counts[..]);
    assert!((32..48).all(|d| mm.pde(d) == Entry::EMPTY));
}

#[test]
fn copy_page_tables_from_zero_copies_only_160_entries_and_leaves_low_pages_uncounted() {
    let mut mm = new_mm(DEFAULT_RAM);
    let kernel = mm.kernel_tables()[0];
    let counts = mm.mem_map.counts().to_vec();
    let copied = mm
        .copy_page_tables(lin(0), SLOT1, PDE_SPAN, &mut NeverFail)
        .unwrap();
    assert_eq!(
        copied,
        CopiedTables {
            page_tables: 1,
            pages: 160,
            swap_entries: 0
        }
    );
    let child = mm.pde(16).frame();
    for index in 0..1024 {
        let entry = mm.phys.read_entry(child, index);
        if index < 160 {
            let page = frame(index as u32 * PAGE_SIZE);
            assert_eq!(
                entry,
                Entry::new(page, EntryFlags::PRESENT),
                "entry {index}: read-only copy"
            );
            assert_eq!(
                mm.phys.read_entry(kernel, index),
                Entry::new(page, KERNEL_RW),
                "kernel keeps RW"
            );
        } else {
            assert_eq!(entry, Entry::EMPTY, "entry {index}: past 640 KiB");
        }
    }
    let table_index = mm.mem_map.map_nr(child).unwrap();
    for (index, (&now, &before)) in mm.mem_map.counts().iter().zip(&counts).enumerate() {
        let expected = if index == table_index { 1 } else { before };
        assert_eq!(
            now, expected,
            "pages below LOW_MEM are never counted (index {index})"
        );
    }
}

#[test]
fn copy_page_tables_refuses_a_count_overflow_instead_of_wrapping() {
    let mut mm = new_mm(DEFAULT_RAM);
    let pages = parent_with_three_pages(&mut mm);
    mm.mem_map
        .set_count_for_debugging(pages[1], MAX_MAP_COUNT)
        .unwrap();
    assert_eq!(
        mm.copy_page_tables(SLOT1, SLOT2, TASK_SIZE, &mut NeverFail),
        Err(CopyError::CountOverflow(pages[1]))
    );
    assert_eq!(
        count(&mm, pages[1]),
        MAX_MAP_COUNT,
        "0.11's u8 would wrap to 0"
    );
    assert!(
        pte_of(&mm, user(1, 0x1000)).is_writable(),
        "the refused page is untouched"
    );
    assert_eq!(pte_of(&mm, user(2, 0x1000)), Entry::EMPTY);
    assert_eq!(count(&mm, pages[0]), 2, "the page before it is shared");
    mm.free_page_tables(SLOT2, TASK_SIZE).unwrap();
    mm.mem_map.set_count_for_debugging(pages[1], 1).unwrap();
    assert_eq!(pages.map(|p| count(&mm, p)), [1, 1, 1]);
    assert!(checkmm_of(&mm, &[1], &[]).is_empty());
}

// ---------------------------------------------------------------- put_page

#[test]
fn put_page_allocates_the_missing_page_table_and_maps_with_flags_7() {
    let mut mm = new_mm(DEFAULT_RAM);
    let page = mm.get_free_page(AllocSite::NoPage).unwrap();
    let free = mm.mem_map.nr_free();
    let at = user(1, 0x0080_5000);
    mm.put_page(page, at, &mut NeverFail).unwrap();
    assert_eq!(mm.mem_map.nr_free(), free - 1, "one page table");
    assert_eq!(mm.counters.allocations[AllocSite::PageTable.index()], 1);
    assert_eq!(mm.pde(at.dir_index()).flags(), USER_RW);
    assert_eq!(pte_of(&mm, at).raw(), page.as_u32() | 7);
    assert_eq!(
        mm.translate(lin(at.as_u32() + 0x10)),
        Some(page.addr().offset(0x10))
    );
    // A second page in the same 4 MiB reuses the table.
    let other = mm.get_free_page(AllocSite::NoPage).unwrap();
    mm.put_page(other, user(1, 0x0080_6000), &mut NeverFail)
        .unwrap();
    assert_eq!(mm.counters.allocations[AllocSite::PageTable.index()], 1);
}

#[test]
fn put_page_refuses_a_frame_outside_paging_memory() {
    let mut mm = new_mm(DEFAULT_RAM);
    for bad in [frame(0x9_F000), frame(DEFAULT_RAM)] {
        assert_eq!(
            mm.put_page(bad, user(1, 0), &mut NeverFail),
            Err(PutPageError::BadFrame(bad))
        );
    }
    assert_eq!(mm.pde(16), Entry::EMPTY, "no table allocated");
}

#[test]
fn put_page_refuses_a_frame_whose_count_is_not_one() {
    let mut mm = new_mm(DEFAULT_RAM);
    let shared = mm.get_free_page(AllocSite::NoPage).unwrap();
    mm.mem_map.increment(shared).unwrap();
    let free = frame(START_MEM);
    let reserved = frame(LOW_MEM);
    for (page, n) in [(shared, 2), (free, 0), (reserved, USED)] {
        assert_eq!(
            mm.put_page(page, user(1, 0), &mut NeverFail),
            Err(PutPageError::NotExclusive(page, n))
        );
    }
    assert_eq!(mm.pde(16), Entry::EMPTY);
}

#[test]
fn put_page_reports_out_of_memory_for_the_page_table() {
    let mut mm = new_mm(ram_with_frames(1));
    let page = mm.get_free_page(AllocSite::NoPage).unwrap();
    assert_eq!(
        mm.put_page(page, user(1, 0), &mut NeverFail),
        Err(PutPageError::OutOfMemory(oom(AllocSite::PageTable)))
    );
    assert_eq!(mm.pde(16), Entry::EMPTY);
}

// ---------------------------------------------------------------- un_wp_page / do_wp_page

#[test]
fn un_wp_page_with_count_one_makes_the_page_writable_in_place() {
    let mut mm = new_mm(DEFAULT_RAM);
    let page = map_page(&mut mm, user(1, 0x3000), 7);
    set_pte(
        &mut mm,
        user(1, 0x3000),
        Entry::new(
            page,
            EntryFlags::PRESENT | EntryFlags::USER | EntryFlags::DIRTY,
        ),
    );
    let (free, inval) = (mm.mem_map.nr_free(), mm.phys.page_invalidations);
    assert_eq!(
        mm.un_wp_page(user(1, 0x3123), &mut NeverFail),
        Ok(WpOutcome::MadeWritable(page))
    );
    assert_eq!(
        pte_of(&mm, user(1, 0x3000)),
        Entry::new(page, USER_RW | EntryFlags::DIRTY)
    );
    assert_eq!(mm.mem_map.nr_free(), free, "no copy");
    assert_eq!(mm.phys.page_invalidations, inval + 1);
}

#[test]
fn un_wp_page_of_a_shared_page_gives_a_private_copy_and_drops_one_reference() {
    let mut mm = new_mm(DEFAULT_RAM);
    let old = shared_page(&mut mm);
    let WpOutcome::Copied { from, to } = mm.un_wp_page(user(2, 0x3000), &mut NeverFail).unwrap()
    else {
        panic!("expected a copy");
    };
    assert_eq!(from, old);
    assert!(
        mm.phys.frame_bytes(to).iter().all(|&b| b == 0x5A),
        "the copy holds the data"
    );
    assert_eq!(pte_of(&mm, user(2, 0x3000)).raw(), to.as_u32() | 7);
    assert_eq!((count(&mm, old), count(&mm, to)), (1, 1));
    assert!(
        !pte_of(&mm, user(1, 0x3000)).is_writable(),
        "the parent still faults, then un-protects in place"
    );
    assert_eq!(
        mm.un_wp_page(user(1, 0x3000), &mut NeverFail),
        Ok(WpOutcome::MadeWritable(old))
    );
    assert!(checkmm_of(&mm, &[1, 2], &[]).is_empty());
}

#[test]
fn un_wp_page_copies_before_it_remaps() {
    // D8: 0.12 order. 0.11 writes the entry first and copies after.
    let order = un_wp_page_order(mm::compat::Compat::empty());
    assert!(order.zero < order.copy && order.copy < order.remap);
    assert_eq!(order.last, Op::Invalidate(user(2, 0x3000)));
}

#[test]
fn un_wp_page_out_of_memory_changes_nothing() {
    let mut mm = new_mm(DEFAULT_RAM);
    let old = shared_page(&mut mm);
    let held = hog_until(&mut mm, 0);
    assert_eq!(
        mm.un_wp_page(user(2, 0x3000), &mut NeverFail),
        Err(WpError::OutOfMemory(oom(AllocSite::CowCopy)))
    );
    assert_eq!(count(&mm, old), 2);
    assert!(checkmm_of(&mm, &[1, 2], &held).is_empty());
}

#[test]
fn un_wp_page_of_an_unmapped_address_is_refused() {
    let mut mm = new_mm(DEFAULT_RAM);
    assert_eq!(
        mm.un_wp_page(user(1, 0), &mut NeverFail),
        Err(WpError::NotMapped(user(1, 0)))
    );
    map_page(&mut mm, user(1, 0), 1);
    assert_eq!(
        mm.un_wp_page(user(1, 0x1000), &mut NeverFail),
        Err(WpError::NotMapped(user(1, 0x1000)))
    );
}

#[test]
fn do_wp_page_refuses_an_address_outside_the_faulting_task() {
    let mut mm = new_mm(DEFAULT_RAM);
    shared_page(&mut mm);
    let code = fault_code::PRESENT | fault_code::WRITE | fault_code::USER;
    assert_eq!(
        mm.do_wp_page(code, user(2, 0x3000), SLOT1, &mut NeverFail),
        Err(WpError::OutsideTask(user(2, 0x3000)))
    );
    assert_eq!(
        mm.do_wp_page(code, lin(0x3000), SLOT1, &mut NeverFail),
        Err(WpError::OutsideTask(lin(0x3000)))
    );
    assert!(!pte_of(&mm, user(2, 0x3000)).is_writable());
}

#[test]
fn do_wp_page_refuses_a_protection_fault_on_a_read() {
    // D6: 0.11 treats every present-page fault as a write.
    let mut mm = new_mm(DEFAULT_RAM);
    let old = shared_page(&mut mm);
    let code = fault_code::PRESENT | fault_code::USER;
    assert_eq!(
        mm.do_wp_page(code, user(2, 0x3000), SLOT2, &mut NeverFail),
        Err(WpError::NotAWrite(user(2, 0x3000)))
    );
    assert_eq!(count(&mm, old), 2);
}

#[test]
fn do_wp_page_on_an_already_writable_page_only_flushes() {
    let mut mm = new_mm(DEFAULT_RAM);
    let page = map_page(&mut mm, user(1, 0x3000), 1);
    let before = pte_of(&mm, user(1, 0x3000));
    let inval = mm.phys.page_invalidations;
    let code = fault_code::PRESENT | fault_code::WRITE | fault_code::USER;
    assert_eq!(
        mm.do_wp_page(code, user(1, 0x3004), SLOT1, &mut NeverFail),
        Ok(WpOutcome::AlreadyWritable(page))
    );
    assert_eq!(pte_of(&mm, user(1, 0x3000)), before);
    assert_eq!(mm.phys.page_invalidations, inval + 1);
}

#[test]
fn do_wp_page_on_a_write_to_a_shared_page_copies_it() {
    let mut mm = new_mm(DEFAULT_RAM);
    let old = shared_page(&mut mm);
    let code = fault_code::PRESENT | fault_code::WRITE | fault_code::USER;
    let outcome = mm
        .do_wp_page(code, user(1, 0x3ffc), SLOT1, &mut NeverFail)
        .unwrap();
    assert!(matches!(outcome, WpOutcome::Copied { from, .. } if from == old));
}

// ---------------------------------------------------------------- write_verify

#[test]
fn write_verify_breaks_copy_on_write_of_a_shared_page() {
    let mut mm = new_mm(DEFAULT_RAM);
    let old = shared_page(&mut mm);
    let Some(WpOutcome::Copied { from, to }) =
        mm.write_verify(user(2, 0x3010), &mut NeverFail).unwrap()
    else {
        panic!("expected a copy");
    };
    assert_eq!(from, old);
    assert!(pte_of(&mm, user(2, 0x3000)).is_writable());
    assert!(mm.phys.frame_bytes(to).iter().all(|&b| b == 0x5A));
    assert_eq!(count(&mm, old), 1);
}

#[test]
fn write_verify_of_a_read_only_page_with_count_one_makes_it_writable() {
    let mut mm = new_mm(DEFAULT_RAM);
    let page = map_page(&mut mm, user(1, 0), 1);
    set_pte(
        &mut mm,
        user(1, 0),
        Entry::new(page, EntryFlags::PRESENT | EntryFlags::USER),
    );
    assert_eq!(
        mm.write_verify(user(1, 0), &mut NeverFail),
        Ok(Some(WpOutcome::MadeWritable(page)))
    );
}

#[test]
fn write_verify_leaves_writable_and_absent_pages_alone() {
    let mut mm = new_mm(DEFAULT_RAM);
    assert_eq!(
        mm.write_verify(user(1, 0), &mut NeverFail),
        Ok(None),
        "no page table"
    );
    let page = map_page(&mut mm, user(1, 0), 1);
    let free = mm.mem_map.nr_free();
    assert_eq!(
        mm.write_verify(user(1, 0), &mut NeverFail),
        Ok(None),
        "writable"
    );
    assert_eq!(
        mm.write_verify(user(1, 0x1000), &mut NeverFail),
        Ok(None),
        "not present"
    );
    assert_eq!(
        mm.write_verify(lin(0x0010_0000), &mut NeverFail),
        Ok(None),
        "kernel identity map"
    );
    assert_eq!((mm.mem_map.nr_free(), count(&mm, page)), (free, 1));
    assert_eq!(
        mm.pte(user(1, 0x1000)).unwrap().2,
        Entry::EMPTY,
        "nothing faulted in"
    );
}

// ---------------------------------------------------------------- get_empty_page

#[test]
fn get_empty_page_maps_a_zero_page() {
    let mut mm = new_mm(DEFAULT_RAM);
    let top = frame(DEFAULT_RAM - PAGE_SIZE);
    mm.phys.write_bytes(top.addr(), &[0xEE; PAGE_SIZE as usize]);
    let page = mm.get_empty_page(user(1, 0x7000), &mut NeverFail).unwrap();
    assert_eq!(page, top, "the page is taken first, its table after");
    assert!(mm.phys.frame_bytes(page).iter().all(|&b| b == 0));
    assert_eq!(pte_of(&mm, user(1, 0x7000)).raw(), page.as_u32() | 7);
    assert_eq!(count(&mm, page), 1);
    assert_eq!(mm.counters.allocations[AllocSite::NoPage.index()], 1);
}

#[test]
fn get_empty_page_frees_its_page_when_the_page_table_cannot_be_allocated() {
    let mut mm = new_mm(ram_with_frames(1));
    assert_eq!(
        mm.get_empty_page(user(1, 0x7000), &mut NeverFail),
        Err(NoPageError::OutOfMemory(oom(AllocSite::PageTable)))
    );
    assert_eq!(mm.mem_map.nr_free(), 1, "the page went back");
    assert_eq!(mm.pde(16), Entry::EMPTY);
}

// ---------------------------------------------------------------- try_to_share / share_page

#[test]
fn try_to_share_maps_a_clean_page_read_only_in_both_tasks_and_counts_it() {
    let mut mm = new_mm(DEFAULT_RAM);
    let page = map_page(&mut mm, user(1, 0x2000), 3);
    let flushes = mm.phys.tlb_flushes;
    assert_eq!(
        mm.try_to_share(0x2000, SLOT1, SLOT2, &mut NeverFail),
        Ok(true)
    );
    let ro = Entry::new(page, EntryFlags::PRESENT | EntryFlags::USER);
    assert_eq!(pte_of(&mm, user(1, 0x2000)), ro);
    assert_eq!(pte_of(&mm, user(2, 0x2000)), ro);
    assert_eq!(count(&mm, page), 2);
    assert_eq!(mm.phys.tlb_flushes, flushes + 1);
    assert!(checkmm_of(&mm, &[1, 2], &[]).is_empty());
}

#[test]
fn try_to_share_refuses_a_dirty_page() {
    let mut mm = new_mm(DEFAULT_RAM);
    let page = map_page(&mut mm, user(1, 0x2000), 3);
    let dirty = Entry::new(page, USER_RW | EntryFlags::DIRTY);
    set_pte(&mut mm, user(1, 0x2000), dirty);
    assert_eq!(
        mm.try_to_share(0x2000, SLOT1, SLOT2, &mut NeverFail),
        Ok(false)
    );
    assert_eq!(pte_of(&mm, user(1, 0x2000)), dirty);
    assert_eq!(count(&mm, page), 1);
    assert_eq!(mm.pde(32), Entry::EMPTY, "no table allocated for nothing");
}

#[test]
fn try_to_share_refuses_absent_pages_and_full_counts() {
    let mut mm = new_mm(DEFAULT_RAM);
    assert_eq!(
        mm.try_to_share(0x2000, SLOT1, SLOT2, &mut NeverFail),
        Ok(false),
        "no table"
    );
    let page = map_page(&mut mm, user(1, 0x2000), 3);
    assert_eq!(
        mm.try_to_share(0x3000, SLOT1, SLOT2, &mut NeverFail),
        Ok(false),
        "not present"
    );
    mm.mem_map
        .set_count_for_debugging(page, MAX_MAP_COUNT)
        .unwrap();
    assert_eq!(
        mm.try_to_share(0x2000, SLOT1, SLOT2, &mut NeverFail),
        Ok(false),
        "count full (D2)"
    );
    assert!(pte_of(&mm, user(1, 0x2000)).is_writable());
}

#[test]
fn try_to_share_refuses_a_destination_already_present() {
    let mut mm = new_mm(DEFAULT_RAM);
    let page = map_page(&mut mm, user(1, 0x2000), 3);
    map_page(&mut mm, user(2, 0x2000), 4);
    assert_eq!(
        mm.try_to_share(0x2000, SLOT1, SLOT2, &mut NeverFail),
        Err(ShareError::AlreadyExists(user(2, 0x2000)))
    );
    assert_eq!(count(&mm, page), 1);
}

#[test]
fn try_to_share_out_of_memory_for_the_table_changes_nothing() {
    let mut mm = new_mm(DEFAULT_RAM);
    let page = map_page(&mut mm, user(1, 0x2000), 3);
    let held = hog_until(&mut mm, 0);
    assert_eq!(
        mm.try_to_share(0x2000, SLOT1, SLOT2, &mut NeverFail),
        Err(ShareError::OutOfMemory(oom(AllocSite::PageTable)))
    );
    assert!(pte_of(&mm, user(1, 0x2000)).is_writable());
    assert_eq!(count(&mm, page), 1);
    assert!(checkmm_of(&mm, &[1], &held).is_empty());
}

fn program() -> std::rc::Rc<Program> {
    // 2.5 pages of text+data: page 2 is half program bytes, half zeroes.
    Program::patterned("prog", 3, 0x2800)
}

#[test]
fn do_no_page_shares_the_page_of_another_task_running_the_same_program() {
    let mut k = SimKernel::new(DEFAULT_RAM);
    let prog = program();
    let a = k.spawn(Some(prog.clone())).unwrap();
    let b = k.spawn(Some(prog.clone())).unwrap();
    let first = k
        .no_page_fault(a, user(a, 0x1000), fault_code::USER)
        .unwrap();
    assert_eq!(first, FaultAction::Loaded);
    let page = k.mm.translate(user(a, 0x1000)).unwrap().frame();
    let second = k
        .no_page_fault(b, user(b, 0x1008), fault_code::USER)
        .unwrap();
    assert_eq!(second, FaultAction::Shared);
    assert_eq!(k.mm.translate(user(b, 0x1000)).unwrap().frame(), page);
    assert_eq!(count(&k.mm, page), 2);
    assert_eq!(k.read_word(b, 0x1008).unwrap(), prog.initial_word(0x1008));
    k.assert_clean();
}

#[test]
fn do_no_page_loads_instead_of_sharing_a_page_a_peer_has_written() {
    let mut k = SimKernel::new(DEFAULT_RAM);
    let prog = program();
    let a = k.spawn(Some(prog.clone())).unwrap();
    let b = k.spawn(Some(prog.clone())).unwrap();
    k.write_word(a, 0x1000, 0xDEAD_BEEF).unwrap();
    assert!(
        pte_of(&k.mm, user(a, 0x1000)).is_dirty(),
        "the MMU marked it dirty"
    );
    let outcome = k
        .no_page_fault(b, user(b, 0x1000), fault_code::USER)
        .unwrap();
    assert_eq!(outcome, FaultAction::Loaded);
    let page = k.mm.translate(user(b, 0x1000)).unwrap().frame();
    assert_ne!(
        Some(page),
        k.mm.translate(user(a, 0x1000)).map(|p| p.frame())
    );
    assert_eq!(
        k.read_word(b, 0x1000).unwrap(),
        prog.initial_word(0x1000),
        "the program's bytes"
    );
    k.assert_clean();
}

#[test]
fn share_page_skips_the_faulting_task_itself_and_tasks_without_the_page() {
    let mut mm = new_mm(DEFAULT_RAM);
    let prog = program();
    let peers = [SLOT1, slot_base(3)];
    let ctx = FaultContext {
        base: SLOT1,
        program: Some(&*prog),
        peers: &peers,
    };
    assert_eq!(mm.share_page(0x1000, &ctx, &mut NeverFail), Ok(None));
    let page = map_page(&mut mm, user(3, 0x1000), 1);
    assert_eq!(mm.share_page(0x1000, &ctx, &mut NeverFail), Ok(Some(page)));
}

// ---------------------------------------------------------------- do_no_page

#[test]
fn do_no_page_loads_program_bytes_and_zeroes_past_end_data() {
    let mut mm = new_mm(DEFAULT_RAM);
    let prog = program();
    // Dirty the frame get_free_page will pick, to see the zero-fill.
    mm.phys.write_bytes(
        frame(DEFAULT_RAM - PAGE_SIZE).addr(),
        &[0xFF; PAGE_SIZE as usize],
    );
    let ctx = FaultContext {
        base: SLOT1,
        program: Some(&*prog),
        peers: &[],
    };
    let outcome = mm
        .do_no_page(fault_code::USER, user(1, 0x2345), &ctx, &mut NeverFail)
        .unwrap();
    let NoPageOutcome::Loaded(page) = outcome else {
        panic!("{outcome:?}")
    };
    let bytes = mm.phys.frame_bytes(page);
    assert_eq!(&bytes[..0x800], &prog.image[0x2000..0x2800]);
    assert!(
        bytes[0x800..].iter().all(|&b| b == 0),
        "past end_data: zero, not the file's bytes"
    );
    assert_eq!(pte_of(&mm, user(1, 0x2000)).raw(), page.as_u32() | 7);
    assert_eq!(prog.page_bytes(0x2000).len(), 0x800);
}

#[test]
fn do_no_page_maps_a_zero_page_past_end_data_or_without_a_program() {
    let mut mm = new_mm(DEFAULT_RAM);
    let prog = program();
    let ctx = FaultContext {
        base: SLOT1,
        program: Some(&*prog),
        peers: &[],
    };
    let outcome = mm
        .do_no_page(fault_code::USER, user(1, 0x3000), &ctx, &mut NeverFail)
        .unwrap();
    assert!(matches!(outcome, NoPageOutcome::ZeroPage(_)), "{outcome:?}");
    assert!(mm.phys.frame_bytes(outcome.frame()).iter().all(|&b| b == 0));
    let no_program = FaultContext {
        base: SLOT2,
        program: None,
        peers: &[],
    };
    let outcome = mm
        .do_no_page(fault_code::USER, user(2, 0), &no_program, &mut NeverFail)
        .unwrap();
    assert!(matches!(outcome, NoPageOutcome::ZeroPage(_)), "{outcome:?}");
    let stack = mm
        .do_no_page(
            fault_code::WRITE,
            user(2, TASK_SIZE - 4),
            &no_program,
            &mut NeverFail,
        )
        .unwrap();
    assert!(matches!(stack, NoPageOutcome::ZeroPage(_)));
    assert_eq!(
        pte_of(&mm, user(2, TASK_SIZE - PAGE_SIZE)).frame(),
        stack.frame()
    );
}

#[test]
fn do_no_page_on_a_present_page_only_flushes() {
    let mut mm = new_mm(DEFAULT_RAM);
    let page = map_page(&mut mm, user(1, 0x3000), 1);
    let (free, inval) = (mm.mem_map.nr_free(), mm.phys.page_invalidations);
    let ctx = FaultContext {
        base: SLOT1,
        program: None,
        peers: &[],
    };
    assert_eq!(
        mm.do_no_page(fault_code::USER, user(1, 0x3008), &ctx, &mut NeverFail),
        Ok(NoPageOutcome::AlreadyPresent(page))
    );
    assert_eq!(
        (mm.mem_map.nr_free(), mm.phys.page_invalidations),
        (free, inval + 1)
    );
}

#[test]
fn do_no_page_refuses_an_address_outside_the_task() {
    let mut mm = new_mm(DEFAULT_RAM);
    let ctx = FaultContext {
        base: SLOT1,
        program: None,
        peers: &[],
    };
    assert_eq!(
        mm.do_no_page(fault_code::USER, user(2, 0), &ctx, &mut NeverFail),
        Err(NoPageError::OutsideTask(user(2, 0)))
    );
    assert_eq!(mm.pde(32), Entry::EMPTY);
}

#[test]
fn do_no_page_out_of_memory_leaks_nothing() {
    let prog = program();
    for free in [0, 1] {
        // 0: no frame for the page; 1: the page but no frame for its table.
        let mut mm = new_mm(DEFAULT_RAM);
        let held = hog_until(&mut mm, free);
        let ctx = FaultContext {
            base: SLOT1,
            program: Some(&*prog),
            peers: &[],
        };
        let err = mm
            .do_no_page(fault_code::USER, user(1, 0x1000), &ctx, &mut NeverFail)
            .unwrap_err();
        let site = if free == 0 {
            AllocSite::NoPage
        } else {
            AllocSite::PageTable
        };
        assert_eq!(err, NoPageError::OutOfMemory(oom(site)));
        assert_eq!(mm.mem_map.nr_free(), free);
        assert!(checkmm_of(&mm, &[1], &held).is_empty());
    }
}

// ---------------------------------------------------------------- the simulated kernel

#[test]
fn fork_then_writes_never_leak_between_parent_and_child() {
    let mut k = SimKernel::new(DEFAULT_RAM);
    let prog = program();
    let parent = k.spawn(Some(prog.clone())).unwrap();
    k.write_word(parent, 0x1000, 1).unwrap();
    k.write_word(parent, 0x0100_0000, 2).unwrap();
    let child = k.fork(parent).unwrap();
    k.assert_clean();
    k.write_word(child, 0x1000, 10).unwrap();
    k.write_word(parent, 0x0100_0000, 20).unwrap();
    assert_eq!(k.read_word(parent, 0x1000), Ok(1));
    assert_eq!(k.read_word(child, 0x1000), Ok(10));
    assert_eq!(k.read_word(parent, 0x0100_0000), Ok(20));
    assert_eq!(k.read_word(child, 0x0100_0000), Ok(2));
    assert_eq!(k.read_word(child, 0x1004), Ok(prog.initial_word(0x1004)));
    k.assert_clean();
}

#[test]
fn fork_out_of_memory_returns_eagain_and_leaks_nothing() {
    let mut k = SimKernel::new(DEFAULT_RAM);
    let parent = k.spawn(None).unwrap();
    for offset in [0, 0x0040_0000, 0x0080_0000] {
        k.write_word(parent, offset, 1).unwrap();
    }
    // Room for the task structure and one table of three.
    k.hold_until(2);
    let counts = k.mm.mem_map.counts().to_vec();
    assert_eq!(k.fork(parent), Err(SimError::NoMemory(abi::errno::EAGAIN)));
    assert_eq!(k.mm.mem_map.counts(), &counts[..]);
    assert_eq!(k.live_slots(), [parent]);
    k.assert_clean();
    assert_eq!(k.write_word(parent, 0, 5), Ok(()), "un-protected in place");
    assert_eq!(k.mm.mem_map.nr_free(), 2);
}

#[test]
fn exit_and_exec_return_every_frame() {
    let mut k = SimKernel::new(DEFAULT_RAM);
    let baseline = k.free_frames();
    let prog = program();
    let a = k.spawn(Some(prog.clone())).unwrap();
    k.read_word(a, 0).unwrap();
    k.write_word(a, 0x2ffc, 7).unwrap();
    let b = k.fork(a).unwrap();
    k.write_word(b, 0, 3).unwrap();
    k.exec(a, None).unwrap();
    assert_eq!(k.read_word(a, 0), Ok(0), "exec starts from scratch");
    k.assert_clean();
    k.exit(a);
    k.exit(b);
    k.assert_clean();
    assert_eq!(k.free_frames(), baseline);
}

#[test]
fn a_task_that_faults_out_of_memory_is_killed_and_its_frames_return() {
    let mut k = SimKernel::new(DEFAULT_RAM);
    let a = k.spawn(None).unwrap();
    k.write_word(a, 0, 1).unwrap();
    k.hold_until(0);
    assert_eq!(k.write_word(a, 0x1000, 2), Err(SimError::Killed));
    assert!(!k.is_live(a));
    assert_eq!(
        (k.kills, k.free_frames()),
        (1, 3),
        "page, table, task structure"
    );
    k.assert_clean();
}

#[test]
fn byte_accesses_reach_the_program_bytes_and_zeroes() {
    let mut k = SimKernel::new(DEFAULT_RAM);
    let prog = program();
    let a = k.spawn(Some(prog.clone())).unwrap();
    for offset in [0, 1, 0x27ff, 0x2800, 0x2fff, 0x5000] {
        assert_eq!(
            k.read_byte(a, offset),
            Ok(prog.initial_byte(offset)),
            "offset {offset:#x}"
        );
    }
    k.write_byte(a, 0x27ff, 0x42).unwrap();
    assert_eq!(k.read_byte(a, 0x27ff), Ok(0x42));
    assert_eq!(k.read_word(a, 0x27fc).unwrap() >> 24, 0x42);
}

#[test]
fn the_task_table_has_63_user_slots() {
    let mut k = SimKernel::new(DEFAULT_RAM);
    let first = k.spawn(None).unwrap();
    assert_eq!(first, 1);
    for _ in 1..63 {
        k.fork(first).unwrap();
    }
    assert_eq!(k.fork(first), Err(SimError::NoSlot));
    k.assert_clean();
}

// ---------------------------------------------------------------- layout and bookkeeping

#[test]
fn a_16_mib_machine_is_laid_out_like_head_s_and_mem_init() {
    let mut mm = new_mm(16 * MIB);
    assert_eq!(mm.mem_map.nr_pages(), 3840, "0.11 PAGING_PAGES");
    assert_eq!(mm.kernel_tables(), &KERNEL_TABLES[..]);
    for (dir, table) in KERNEL_TABLES.iter().enumerate() {
        assert_eq!(mm.pde(dir), Entry::new(*table, KERNEL_RW));
    }
    assert_eq!(mm.pde(4), Entry::EMPTY);
    assert_eq!(
        mm.translate(lin(0x00ab_c123)),
        Some(mm::PhysAddr::new(0x00ab_c123))
    );
    assert_eq!(count(&mm, frame(START_MEM - PAGE_SIZE)), USED);
    assert_eq!(count(&mm, frame(START_MEM)), 0);
    assert_eq!(
        mm.mem_map.nr_free() as u32,
        (16 * MIB - START_MEM) / PAGE_SIZE
    );
    assert_eq!(
        mm.get_free_page(AllocSite::NoPage),
        Ok(frame(16 * MIB - PAGE_SIZE))
    );
    assert_eq!(checkmm_of(&mm, &[], &[frame(16 * MIB - PAGE_SIZE)]), []);
}

#[test]
fn every_allocation_is_booked_under_its_site() {
    let mut k = SimKernel::new(DEFAULT_RAM);
    let a = k.spawn(None).unwrap();
    k.write_word(a, 0, 1).unwrap();
    let b = k.fork(a).unwrap();
    k.write_word(b, 0, 2).unwrap();
    let names = AllocSite::ALL.map(AllocSite::name);
    assert_eq!(
        names,
        [
            "copy_page_tables",
            "page_table",
            "un_wp_page",
            "do_no_page",
            "fork_task_struct",
            "execve"
        ]
    );
    // In ALL's order: one table for the child, one for a's first page, b's COW copy,
    // a's zero page, two task structures.
    assert_eq!(k.mm.counters.allocations, [1, 1, 1, 1, 2, 0]);
    assert_eq!(k.mm.counters.failures, [0; 6]);
    k.exit(b);
    // b's copy, b's table, b's task structure.
    assert_eq!(k.mm.counters.frees, 3);
}
