//! Kernel stores into user memory (0.11 `verify_area` + a ring-0 store with CR0.WP clear),
//! and the sharing hazards around them: what `write_verify` must leave behind so that
//! `share_page` never hands another task modified data.

mod support;

use mm::entry::EntryFlags;
use mm::fault::FaultAction;
use mm::memory::{fault_code, WpOutcome};
use mm::NeverFail;
use support::*;

fn program() -> std::rc::Rc<Program> {
    Program::patterned("prog", 5, 0x3000)
}

#[test]
fn kernel_write_to_a_copy_on_write_page_breaks_it_first() {
    let mut k = SimKernel::new(DEFAULT_RAM);
    let a = k.spawn(None).unwrap();
    k.write_word(a, 0x40, 1).unwrap();
    let b = k.fork(a).unwrap();
    let shared = k.mm.translate(user(a, 0)).unwrap().frame();
    k.kernel_write_word(b, 0x40, 2).unwrap();
    assert_ne!(k.mm.translate(user(b, 0)).unwrap().frame(), shared);
    assert_eq!((k.read_word(a, 0x40), k.read_word(b, 0x40)), (Ok(1), Ok(2)));
    k.assert_clean();
}

#[test]
fn kernel_write_to_an_absent_page_faults_it_in() {
    let mut k = SimKernel::new(DEFAULT_RAM);
    let prog = program();
    let a = k.spawn(Some(prog.clone())).unwrap();
    k.kernel_write_word(a, 0x1004, 0xCAFE).unwrap();
    assert_eq!(k.read_word(a, 0x1004), Ok(0xCAFE));
    assert_eq!(
        k.read_word(a, 0x1008),
        Ok(prog.initial_word(0x1008)),
        "the rest of the page is loaded"
    );
    assert!(pte_of(&k.mm, user(a, 0x1000)).is_dirty());
    k.kernel_write_word(a, 0x0200_0000, 1).unwrap();
    assert_eq!(k.read_word(a, 0x0200_0000), Ok(1));
    k.assert_clean();
}

#[test]
fn a_page_shared_by_the_kernel_store_fault_must_be_verified_again_before_the_store() {
    // 0.11's order: verify_area first (nothing to do: the page is absent), then the
    // ring-0 store faults, do_no_page shares the page read-only from a peer, and the store
    // (CR0.WP clear) would land in the peer's page. A second write_verify closes the hole.
    let mut k = SimKernel::new(DEFAULT_RAM);
    let prog = program();
    let a = k.spawn(Some(prog.clone())).unwrap();
    let b = k.spawn(Some(prog.clone())).unwrap();
    k.read_word(a, 0x1000).unwrap();
    let page = k.mm.translate(user(a, 0x1000)).unwrap().frame();
    assert_eq!(
        k.mm.write_verify(user(b, 0x1000), &mut NeverFail),
        Ok(None),
        "absent: nothing verified"
    );
    assert_eq!(
        k.no_page_fault(b, user(b, 0x1000), fault_code::WRITE),
        Ok(FaultAction::Shared)
    );
    assert_eq!(k.mm.translate(user(b, 0x1000)).unwrap().frame(), page);
    assert!(
        !pte_of(&k.mm, user(b, 0x1000)).is_writable(),
        "a ring-0 store now would hit a's page"
    );
    let again = k.mm.write_verify(user(b, 0x1000), &mut NeverFail).unwrap();
    assert!(
        matches!(again, Some(WpOutcome::Copied { from, .. }) if from == page),
        "{again:?}"
    );

    // The simulated kernel does exactly this.
    let c = k.spawn(Some(prog.clone())).unwrap();
    k.kernel_write_word(c, 0x1000, 0xBAD).unwrap();
    assert_eq!(k.read_word(a, 0x1000), Ok(prog.initial_word(0x1000)));
    assert_eq!(k.read_word(c, 0x1000), Ok(0xBAD));
    k.assert_clean();
}

#[test]
fn a_copy_made_by_write_verify_keeps_the_dirty_bit_of_the_page_it_copies() {
    let mut k = SimKernel::new(DEFAULT_RAM);
    let prog = program();
    let a = k.spawn(Some(prog.clone())).unwrap();
    k.write_word(a, 0x1000, 0xDEAD_BEEF).unwrap();
    let b = k.fork(a).unwrap();
    // A read() into b's page that returns 0 bytes: COW broken, nothing stored.
    k.verify_area(b, 0x1000).unwrap();
    let pte = pte_of(&k.mm, user(b, 0x1000));
    assert!(
        pte.is_writable() && pte.is_dirty(),
        "the copy holds a's modified data: {pte:?}"
    );
    // So a third task running the program loads the page instead of sharing b's copy.
    let c = k.spawn(Some(prog.clone())).unwrap();
    assert_eq!(k.read_word(c, 0x1000), Ok(prog.initial_word(0x1000)));
    assert_eq!(k.read_word(b, 0x1000), Ok(0xDEAD_BEEF));
    k.assert_clean();
}

#[test]
fn a_copy_of_a_clean_page_stays_clean_and_shareable() {
    let mut k = SimKernel::new(DEFAULT_RAM);
    let prog = program();
    let a = k.spawn(Some(prog.clone())).unwrap();
    k.read_word(a, 0x2000).unwrap();
    let b = k.fork(a).unwrap();
    k.verify_area(b, 0x2000).unwrap();
    let pte = pte_of(&k.mm, user(b, 0x2000));
    assert_eq!(
        pte.flags() & (EntryFlags::WRITABLE | EntryFlags::DIRTY),
        EntryFlags::WRITABLE
    );
    let c = k.spawn(Some(prog.clone())).unwrap();
    let outcome = k
        .no_page_fault(c, user(c, 0x2000), fault_code::USER)
        .unwrap();
    assert_eq!(outcome, FaultAction::Shared);
    assert_eq!(k.read_word(c, 0x2000), Ok(prog.initial_word(0x2000)));
    k.assert_clean();
}
