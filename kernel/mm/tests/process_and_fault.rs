//! The kernel's memory sequences on the host: `mm::process` (fork's `copy_process` and
//! `copy_mem`, `do_execve`, `do_exit`, `release`) and `mm::fault` (`page.s`'s dispatch,
//! what a fault's outcome means, the kernel's own faults before it touches user memory,
//! `share_page`'s candidates). The kernel and the simulated kernel run these same
//! functions; these tests call them directly.

mod support;

use abi::errno::EAGAIN;
use abi::FaultCounts;
use mm::addr::{slot_base, LinearAddr, NR_TASKS, TASK_SIZE};
use mm::fault::{
    self, fault_code, FaultAction, Illegal, KillCause, Peers, UserAccessError, Verdict,
};
use mm::memory::{AllocSite, CopyError, NoPageError, OutOfMemory, WpError};
use mm::process::{self, ForkError};
use mm::{FaultContext, NeverFail, ProgramPages};
use support::*;

fn program() -> std::rc::Rc<Program> {
    Program::patterned("prog", 9, 0x3000)
}

fn no_program(slot: usize) -> FaultContext<'static> {
    FaultContext {
        base: slot_base(slot),
        program: None,
        peers: &[],
    }
}

// ---------------------------------------------------------------- mm::process

#[test]
fn copy_process_takes_a_task_page_and_shares_the_parents_slot() {
    let mut mm = new_mm(DEFAULT_RAM);
    map_page(&mut mm, user(1, 0), 0x11);
    map_page(&mut mm, user(1, 0x0080_0000), 0x22);
    let free = mm.mem_map.nr_free();
    let forked = process::copy_process(&mut mm, 1, 2, &mut NeverFail).unwrap();
    assert_eq!(forked.copied.page_tables, 2);
    assert_eq!(forked.copied.pages, 2);
    assert_eq!(count(&mm, forked.task_page), 1);
    assert_eq!(mm.mem_map.nr_free(), free - 3, "task page + two tables");
    assert_eq!(
        mm.translate(user(2, 0x0080_0000)),
        mm.translate(user(1, 0x0080_0000))
    );
    assert!(
        !pte_of(&mm, user(1, 0)).is_writable(),
        "parent write-protected"
    );
    assert!(checkmm_of(&mm, &[1, 2], &[forked.task_page]).is_empty());
}

#[test]
fn copy_process_without_a_task_page_is_eagain_and_changes_nothing() {
    let mut mm = new_mm(DEFAULT_RAM);
    map_page(&mut mm, user(1, 0), 0x11);
    let counts = mm.mem_map.counts().to_vec();
    let mut policy = Injector::fail_after(Some(AllocSite::TaskStruct), 0);
    let e = process::copy_process(&mut mm, 1, 2, &mut policy).unwrap_err();
    assert!(matches!(
        e,
        ForkError::TaskPage(OutOfMemory { injected: true, .. })
    ));
    assert_eq!(
        e.errno(),
        EAGAIN,
        "0.11 copy_process: if (!p) return -EAGAIN"
    );
    assert_eq!(mm.mem_map.counts(), &counts[..]);
    assert!(
        pte_of(&mm, user(1, 0)).is_writable(),
        "nothing write-protected"
    );
}

#[test]
fn a_failed_copy_mem_releases_the_tables_built_so_far_and_the_task_page() {
    let mut mm = new_mm(DEFAULT_RAM);
    for offset in [0, 0x0040_0000, 0x0080_0000] {
        map_page(&mut mm, user(1, offset), 1);
    }
    let free = mm.mem_map.nr_free();
    // The task page and the first table succeed, the second table fails.
    let mut policy = Injector::fail_after(Some(AllocSite::CopyPageTables), 1);
    let e = process::copy_process(&mut mm, 1, 2, &mut policy).unwrap_err();
    let ForkError::CopyMem(failed) = e else {
        panic!("{e:?}")
    };
    assert!(matches!(failed.error, CopyError::OutOfMemory(_)));
    assert_eq!(failed.cleanup.page_tables, 1, "the one table built");
    assert_eq!(failed.cleanup.pages, 1, "its one shared page");
    assert_eq!(failed.cleanup.bad_frees, 0);
    assert_eq!(
        e.errno(),
        EAGAIN,
        "0.11 copy_process replaces copy_mem's -ENOMEM with -EAGAIN"
    );
    assert_eq!(mm.mem_map.nr_free(), free, "nothing leaked");
    for dir in slot_base(2).dir_index()..slot_base(3).dir_index() {
        assert!(!mm.pde(dir).is_present(), "directory entry {dir}");
    }
    assert!(checkmm_of(&mm, &[1], &[]).is_empty());
}

#[test]
fn copy_mem_alone_leaves_the_task_page_to_its_caller() {
    let mut mm = new_mm(DEFAULT_RAM);
    map_page(&mut mm, user(3, 0x1000), 7);
    let copied = process::copy_mem(&mut mm, 3, 5, &mut NeverFail).unwrap();
    assert_eq!((copied.page_tables, copied.pages), (1, 1));
    assert_eq!(mm.translate(user(5, 0x1000)), mm.translate(user(3, 0x1000)));
}

#[test]
fn do_exit_frees_the_slot_and_release_frees_the_task_page() {
    let mut mm = new_mm(DEFAULT_RAM);
    let baseline = mm.mem_map.nr_free();
    let task_page = process::get_task_page(&mut mm, &mut NeverFail).unwrap();
    map_page(&mut mm, user(4, 0), 1);
    map_page(&mut mm, user(4, TASK_SIZE - 0x1000), 2);
    let freed = process::do_exit(&mut mm, 4);
    assert_eq!((freed.pages, freed.page_tables, freed.bad_frees), (2, 2, 0));
    assert_eq!(mm.mem_map.nr_free(), baseline - 1, "the task page stays");
    assert!(checkmm_of(&mm, &[], &[task_page]).is_empty());
    process::release(&mut mm, task_page).unwrap();
    assert_eq!(mm.mem_map.nr_free(), baseline);
    assert!(
        process::release(&mut mm, task_page).is_err(),
        "a second release is a free of a free page"
    );
}

#[test]
fn do_execve_frees_the_old_program_unless_its_failure_site_fires() {
    let mut mm = new_mm(DEFAULT_RAM);
    map_page(&mut mm, user(2, 0x5000), 1);
    let counts = mm.mem_map.counts().to_vec();
    let mut policy = Injector::fail_after(Some(AllocSite::Execve), 0);
    assert_eq!(
        process::do_execve(&mut mm, 2, &mut policy),
        Err(OutOfMemory {
            site: AllocSite::Execve,
            injected: true
        })
    );
    assert_eq!(
        mm.mem_map.counts(),
        &counts[..],
        "a failed execve changes nothing"
    );
    let freed = process::do_execve(&mut mm, 2, &mut policy).unwrap();
    assert_eq!((freed.pages, freed.page_tables), (1, 1));
    assert!(mm.translate(user(2, 0x5000)).is_none());
}

#[test]
#[should_panic(expected = "slot 0 is not a user slot")]
fn the_kernels_slot_is_no_task_to_exit() {
    let mut mm = new_mm(DEFAULT_RAM);
    process::do_exit(&mut mm, 0);
}

// ---------------------------------------------------------------- mm::fault: page.s

#[test]
fn page_s_sends_a_not_present_fault_to_do_no_page_and_a_protection_fault_to_do_wp_page() {
    let mut mm = new_mm(DEFAULT_RAM);
    let ctx = no_program(1);
    let at = user(1, 0x2000);
    let v = fault::page_fault(&mut mm, fault_code::USER, at, &ctx, &mut NeverFail).verdict;
    assert_eq!(v, Verdict::Resolved(FaultAction::ZeroPage));
    let pte = pte_of(&mm, at);
    // Write-protect it, as fork would.
    set_pte(&mut mm, at, pte.without_flags(mm::EntryFlags::WRITABLE));
    let code = fault_code::PRESENT | fault_code::WRITE | fault_code::USER;
    let v = fault::page_fault(&mut mm, code, at, &ctx, &mut NeverFail).verdict;
    assert_eq!(
        v,
        Verdict::Resolved(FaultAction::CowMadeWritable),
        "count 1: do_wp_page only makes it writable"
    );
    // The same entry, faulting again (a stale TLB entry): spurious.
    let v = fault::page_fault(&mut mm, code, at, &ctx, &mut NeverFail).verdict;
    assert_eq!(v, Verdict::Resolved(FaultAction::Spurious));
}

#[test]
fn a_protection_fault_on_a_read_kills_the_task_with_sigsegv() {
    let mut mm = new_mm(DEFAULT_RAM);
    let ctx = no_program(1);
    map_page(&mut mm, user(1, 0), 1);
    let code = fault_code::PRESENT | fault_code::USER;
    let v = fault::page_fault(&mut mm, code, user(1, 0), &ctx, &mut NeverFail).verdict;
    let Verdict::Illegal(why) = v else {
        panic!("{v:?}")
    };
    assert_eq!(why, Illegal::WpPage(WpError::NotAWrite(user(1, 0))));
    assert_eq!(why.why(), "protection fault on a read");
    assert_eq!(why.cause(), KillCause::BadAccess);
    assert_eq!(why.detail(), None);
    assert_eq!(v.action(), FaultAction::Killed);
    assert_eq!(v.kill_signal(), Some(abi::signal::SIGSEGV));
}

#[test]
fn a_fault_outside_the_tasks_slot_is_a_bad_access() {
    let mut mm = new_mm(DEFAULT_RAM);
    let ctx = no_program(1);
    let outside = user(2, 0);
    let v = fault::page_fault(&mut mm, fault_code::USER, outside, &ctx, &mut NeverFail).verdict;
    assert_eq!(
        v,
        Verdict::Illegal(Illegal::NoPage(NoPageError::OutsideTask(outside)))
    );
    let Verdict::Illegal(why) = v else {
        unreachable!()
    };
    assert_eq!(why.why(), "page fault outside the task's slot");
    assert_eq!(why.cause(), KillCause::BadAccess);
    assert!(mm.pte(outside).is_none(), "nothing mapped");
}

#[test]
fn every_way_of_running_out_of_memory_in_a_fault_is_oom() {
    let mut mm = new_mm(DEFAULT_RAM);
    hog_until(&mut mm, 0);
    let ctx = no_program(1);
    // No page table, no page: do_no_page's get_empty_page.
    let v = fault::page_fault(&mut mm, fault_code::USER, user(1, 0), &ctx, &mut NeverFail).verdict;
    assert!(
        matches!(
            v,
            Verdict::OutOfMemory(OutOfMemory {
                injected: false,
                ..
            })
        ),
        "{v:?}"
    );
    assert_eq!(v.action(), FaultAction::OutOfMemory);
    assert_eq!(v.kill_signal(), Some(abi::signal::SIGSEGV));
    // An injected failure of the COW copy.
    let mut mm = new_mm(DEFAULT_RAM);
    map_page(&mut mm, user(1, 0), 1);
    process::copy_mem(&mut mm, 1, 2, &mut NeverFail).unwrap();
    let mut policy = Injector::fail_after(Some(AllocSite::CowCopy), 0);
    let code = fault_code::PRESENT | fault_code::WRITE | fault_code::USER;
    let v = fault::page_fault(&mut mm, code, user(1, 0), &ctx, &mut policy).verdict;
    assert!(
        matches!(
            v,
            Verdict::OutOfMemory(OutOfMemory {
                injected: true,
                site: AllocSite::CowCopy
            })
        ),
        "{v:?}"
    );
}

#[test]
fn fault_actions_count_where_meminfo_reports_them() {
    let mut counts = FaultCounts::default();
    for action in FaultAction::ALL {
        action.count_in(&mut counts);
    }
    assert_eq!(
        counts,
        FaultCounts {
            demand_zero: 1,
            loaded: 1,
            shared: 1,
            cow_copied: 1,
            cow_made_writable: 1,
            swapped_in: 1,
        },
        "spurious faults and kills count nowhere"
    );
}

// ---------------------------------------------------------------- share_page's peers

#[test]
fn share_page_tries_the_peers_from_the_last_slot_down_as_0_11_does() {
    let peers = Peers::of(5, |slot| slot % 2 == 1);
    let slots: Vec<u32> = peers
        .as_slice()
        .iter()
        .map(|b| b.as_u32() / TASK_SIZE)
        .collect();
    let expected: Vec<u32> = (1..NR_TASKS as u32)
        .rev()
        .filter(|s| s % 2 == 1 && *s != 5)
        .collect();
    assert_eq!(slots, expected, "63 down to 1, without the task itself");
    assert!(Peers::of(1, |_| false).as_slice().is_empty());
}

#[test]
fn with_two_candidate_peers_the_page_comes_from_the_higher_slot() {
    let mut k = SimKernel::new(DEFAULT_RAM);
    let prog = program();
    let low = k.spawn(Some(prog.clone())).unwrap();
    let high = k.spawn(Some(prog.clone())).unwrap();
    let me = k.spawn(Some(prog.clone())).unwrap();
    assert!(low < high && high < me);
    // Both peers loaded the page on their own: two frames with the program's bytes (the
    // second one loads it with no peer to share from).
    k.read_word(low, 0x1000).unwrap();
    let alone = FaultContext {
        base: slot_base(high),
        program: Some(&*prog as &dyn ProgramPages),
        peers: &[],
    };
    k.mm.do_no_page(fault_code::USER, user(high, 0x1000), &alone, &mut NeverFail)
        .unwrap();
    let (low_frame, high_frame) = (
        k.mm.translate(user(low, 0x1000)).unwrap().frame(),
        k.mm.translate(user(high, 0x1000)).unwrap().frame(),
    );
    assert_ne!(low_frame, high_frame);
    assert_eq!(k.peers(me), vec![slot_base(high), slot_base(low)]);
    assert_eq!(
        k.no_page_fault(me, user(me, 0x1000), fault_code::USER),
        Ok(FaultAction::Shared)
    );
    assert_eq!(
        k.mm.translate(user(me, 0x1000)).unwrap().frame(),
        high_frame,
        "share_page's loop starts at LAST_TASK"
    );
    assert_eq!((count(&k.mm, high_frame), count(&k.mm, low_frame)), (2, 1));
    k.assert_clean();
}

// ---------------------------------------------------------------- kernel accesses (D9)

#[test]
fn touch_for_read_faults_a_missing_page_in_and_books_it() {
    let mut mm = new_mm(DEFAULT_RAM);
    let prog = program();
    let ctx = FaultContext {
        base: slot_base(1),
        program: Some(&*prog as &dyn ProgramPages),
        peers: &[],
    };
    let mut booked = Vec::new();
    let at = user(1, 0x2000);
    fault::touch_for_read(&mut mm, at, &ctx, &mut NeverFail, &mut |f| booked.push(*f)).unwrap();
    assert_eq!(booked.len(), 1);
    assert_eq!(booked[0].verdict, Verdict::Resolved(FaultAction::Loaded));
    assert!(booked[0].by_kernel);
    assert_eq!(booked[0].linear, at);
    // Present now: no fault the second time.
    fault::touch_for_read(&mut mm, at, &ctx, &mut NeverFail, &mut |f| booked.push(*f)).unwrap();
    assert_eq!(booked.len(), 1);
}

#[test]
fn verify_page_breaks_copy_on_write_before_a_ring_0_store() {
    let mut mm = new_mm(DEFAULT_RAM);
    let old = map_page(&mut mm, user(1, 0x3000), 0x5a);
    process::copy_mem(&mut mm, 1, 2, &mut NeverFail).unwrap();
    let mut booked = Vec::new();
    fault::verify_page(
        &mut mm,
        user(2, 0x3000),
        &no_program(2),
        &mut NeverFail,
        &mut |f| booked.push(f.verdict),
    )
    .unwrap();
    assert_eq!(booked, [Verdict::Resolved(FaultAction::CowCopied)]);
    let pte = pte_of(&mm, user(2, 0x3000));
    assert!(pte.is_writable() && pte.frame() != old);
    assert_eq!(count(&mm, old), 1);
}

#[test]
fn verify_page_out_of_memory_is_a_fault_the_kernel_must_act_on() {
    let mut mm = new_mm(DEFAULT_RAM);
    hog_until(&mut mm, 0);
    let mut booked = Vec::new();
    let at = user(1, 0x3000);
    let e = fault::verify_page(&mut mm, at, &no_program(1), &mut NeverFail, &mut |f| {
        booked.push(*f)
    })
    .unwrap_err();
    let UserAccessError::Fault(f) = e else {
        panic!("{e:?}")
    };
    assert!(matches!(f.verdict, Verdict::OutOfMemory(_)));
    assert!(f.by_kernel);
    assert_eq!(f.linear, at);
    assert!(
        booked.is_empty(),
        "the unresolved fault is returned, not booked"
    );
}

#[test]
fn a_kernel_access_outside_the_task_is_a_bad_address_not_a_kill() {
    let mut mm = new_mm(DEFAULT_RAM);
    let e = fault::touch_for_read(
        &mut mm,
        LinearAddr::new(slot_base(3).as_u32()),
        &no_program(1),
        &mut NeverFail,
        &mut |_| panic!("nothing to book"),
    );
    assert_eq!(e, Err(UserAccessError::BadAddress));
}
