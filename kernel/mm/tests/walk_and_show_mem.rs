//! The read-only views: `walk` (each place a walk stops), `slot_usage` and 0.12 `show_mem`.

mod support;

use mm::addr::{LOW_MEM, NR_TASKS, PAGE_SIZE};
use mm::entry::Entry;
use mm::mem_map::USED;
use mm::{SlotUsage, WalkStop};
use support::*;

const PAGING_FRAMES: u32 = (DEFAULT_RAM - START_MEM) / PAGE_SIZE;

#[test]
fn walk_stops_at_a_missing_page_table() {
    let mm = new_mm(DEFAULT_RAM);
    let w = mm.walk(user(1, 0x0040_1234));
    assert_eq!(
        (w.pde_index, w.pte_index, w.pde, w.pte),
        (17, 1, Entry::EMPTY, None)
    );
    assert_eq!(
        (w.stop, w.frame, w.physical()),
        (Some(WalkStop::NoPageTable), None, None)
    );
}

#[test]
fn walk_stops_at_an_entry_never_mapped() {
    let mut mm = new_mm(DEFAULT_RAM);
    map_page(&mut mm, user(1, 0), 1);
    let w = mm.walk(user(1, 0x3008));
    assert_eq!(
        (w.pte, w.stop, w.frame),
        (Some(Entry::EMPTY), Some(WalkStop::NotMapped), None)
    );
}

#[test]
fn walk_stops_at_a_swap_entry_and_names_its_slot() {
    let mut mm = new_mm(DEFAULT_RAM);
    map_page(&mut mm, user(1, 0), 1);
    set_pte(&mut mm, user(1, 0x3000), Entry(42 << 1));
    let w = mm.walk(user(1, 0x3008));
    assert_eq!(
        (w.stop, w.frame),
        (Some(WalkStop::SwappedOut { slot: 42 }), None)
    );
}

#[test]
fn walk_of_a_present_page_gives_its_frame_count_and_physical_address() {
    let mut k = SimKernel::new(DEFAULT_RAM);
    let a = k.spawn(None).unwrap();
    k.write_word(a, 0x2ff0, 9).unwrap();
    let page = k.mm.translate(user(a, 0x2000)).unwrap().frame();
    let w = k.mm.walk(user(a, 0x2ff3));
    assert_eq!(w.stop, None);
    assert_eq!(w.frame, Some((page, Some(1))));
    assert_eq!(w.physical(), Some(page.as_u32() | 0xff3));
    assert_eq!(w.pte.unwrap().frame(), page);
    k.fork(a).unwrap();
    assert_eq!(k.mm.walk(user(a, 0x2000)).frame, Some((page, Some(2))));
}

#[test]
fn walk_of_kernel_memory_shows_uncounted_reserved_and_free_frames() {
    let mm = new_mm(DEFAULT_RAM);
    let low = mm.walk(lin(0x9_5678));
    assert_eq!(
        (low.frame, low.physical()),
        (Some((frame(0x9_5000), None)), Some(0x9_5678))
    );
    assert_eq!(
        mm.walk(lin(LOW_MEM + 4)).frame,
        Some((frame(LOW_MEM), Some(USED)))
    );
    assert_eq!(
        mm.walk(lin(START_MEM)).frame,
        Some((frame(START_MEM), Some(0)))
    );
    assert_eq!(
        mm.walk(lin(DEFAULT_RAM)).stop,
        Some(WalkStop::NoPageTable),
        "past the identity map"
    );
    let small = new_mm(3 * MIB);
    assert_eq!(
        small.walk(lin(3 * MIB)).stop,
        Some(WalkStop::NotMapped),
        "past the RAM, same table"
    );
}

#[test]
fn walk_and_show_mem_change_nothing() {
    let mut k = SimKernel::new(DEFAULT_RAM);
    let a = k.spawn(None).unwrap();
    k.write_word(a, 0, 1).unwrap();
    let dir = k.mm.phys.frame_bytes(PG_DIR).to_vec();
    let counts = k.mm.mem_map.counts().to_vec();
    let (flushes, inval) = (k.mm.phys.tlb_flushes, k.mm.phys.page_invalidations);
    for offset in [0, 0x1000, 0x0100_0000] {
        k.mm.walk(user(a, offset));
    }
    k.mm.show_mem();
    assert_eq!(k.mm.phys.frame_bytes(PG_DIR), &dir[..]);
    assert_eq!(k.mm.mem_map.counts(), &counts[..]);
    assert_eq!(
        (k.mm.phys.tlb_flushes, k.mm.phys.page_invalidations),
        (flushes, inval)
    );
    assert_eq!(k.mm.translate(user(a, 0x1000)), None, "no page faulted in");
}

#[test]
fn show_mem_of_a_fresh_machine() {
    let mm = new_mm(DEFAULT_RAM);
    let stats = mm.show_mem();
    assert_eq!(stats.paging_frames, PAGING_FRAMES);
    assert_eq!(stats.free_frames, PAGING_FRAMES);
    assert_eq!(stats.reserved_frames, (START_MEM - LOW_MEM) / PAGE_SIZE);
    assert_eq!((stats.shared_frames, stats.shared_references), (0, 0));
    assert!(stats.slots.iter().all(|s| *s == SlotUsage::default()));
    assert_eq!(stats.slots.len(), NR_TASKS);
}

#[test]
fn show_mem_counts_shared_frames_references_and_pages_per_task() {
    let mut k = SimKernel::new(DEFAULT_RAM);
    let prog = Program::patterned("p", 2, 0x2000);
    let a = k.spawn(Some(prog.clone())).unwrap();
    k.read_word(a, 0).unwrap(); // loaded, clean
    k.write_word(a, 0x1000, 1).unwrap(); // loaded, dirty
    k.write_word(a, 0x0040_0000, 2).unwrap(); // zero page in a second table
    let b = k.fork(a).unwrap();
    let c = k.spawn(Some(prog.clone())).unwrap();
    k.read_word(c, 0).unwrap(); // shared from a or b: page 0 now has count 3
    k.write_word(b, 0x0040_0000, 3).unwrap(); // b's own copy
    let stats = k.mm.show_mem();
    // Page 0: count 3; page 0x1000: count 2; a's 0x0040_0000: count 1 again.
    assert_eq!((stats.shared_frames, stats.shared_references), (2, 3));
    assert_eq!(
        stats.slots[a],
        SlotUsage {
            pages: 3,
            shared_pages: 2,
            page_tables: 2,
            swapped: 0
        }
    );
    assert_eq!(
        stats.slots[b],
        SlotUsage {
            pages: 3,
            shared_pages: 2,
            page_tables: 2,
            swapped: 0
        }
    );
    assert_eq!(
        stats.slots[c],
        SlotUsage {
            pages: 1,
            shared_pages: 1,
            page_tables: 1,
            swapped: 0
        }
    );
    assert_eq!(
        stats.slots[0],
        SlotUsage::default(),
        "the kernel's slot is not a task"
    );
    // 3 task structures, 5 page tables, pages 0, 0x1000, a's and b's 0x0040_0000.
    assert_eq!(stats.free_frames, PAGING_FRAMES - 3 - 5 - 4);
    assert_eq!(stats.free_frames as usize, k.free_frames());
    assert_eq!(k.mm.slot_usage(b), stats.slots[b]);
}

#[test]
fn slot_usage_counts_swap_entries() {
    let mut mm = new_mm(DEFAULT_RAM);
    map_page(&mut mm, user(3, 0), 1);
    set_pte(&mut mm, user(3, 0x1000), Entry(7 << 1));
    set_pte(&mut mm, user(3, 0x2000), Entry(8 << 1));
    assert_eq!(
        mm.slot_usage(3),
        SlotUsage {
            pages: 1,
            shared_pages: 0,
            page_tables: 1,
            swapped: 2
        }
    );
    assert_eq!(mm.slot_usage(4), SlotUsage::default());
}

#[test]
fn calc_mem_prints_what_0_11_prints() {
    let mut mm = new_mm(16 * MIB);
    map_page(&mut mm, user(1, 0), 1);
    map_page(&mut mm, user(1, 0x1000), 2);
    map_page(&mut mm, user(1, 0x0040_0000), 3);
    let mut text = String::new();
    mm.calc_mem(&mut text).unwrap();
    let free = mm.mem_map.nr_free();
    // From directory entry 2, as 0.11's loop: the identity map's tables 2 and 3 map
    // 1024 pages each; task 1's two tables map 2 and 1.
    assert_eq!(
        text,
        format!(
            "{free} pages free (of 3840)\nPg-dir[2] uses 1024 pages\nPg-dir[3] uses 1024 pages\n\
             Pg-dir[16] uses 2 pages\nPg-dir[17] uses 1 pages\n"
        )
    );
}
