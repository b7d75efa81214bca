//! Copy-on-write scenarios: who copies, who only makes the page writable, and what each task then sees.
//!
//! Linux 0.11's fork (`copy_page_tables`) write-protects every page in both tasks and
//! counts the frame twice; the first writer's `do_wp_page` copies it, and the last
//! holder (count 1) only gets its entry made writable again (`un_wp_page`).

use core::mem::offset_of;

use user::abi::{debug_op, nr, MemInfo};
use user::check::{
    spawn, spawn_code, wait_child, CowDelta, Failed, Hex, OrFail, Outcome, PageView, Status,
};
use user::mem::{touch_stack, PageBuffer};
use user::raw::syscall1;
use user::{check, check_eq, debug, faults, getppid, meminfo, say, sleep, yield_now};

use crate::util::{expect_buffer, wait_until, INIT_PID, SETTLE_TICKS};
use crate::{BUFFER, BUFFER_PAGES, STACK_PAGES};

/// What the first task writes before forking.
const PATTERN_A: u32 = 0xaaaa_0000;
/// What a second writer puts in word 0.
const PATTERN_B: u32 = 0xbbbb_0000;
/// What a third writer puts in word 0.
const PATTERN_C: u32 = 0xcccc_0000;
/// The parent's word in page `i` of cow-both-write.
const fn parent_word(page: usize) -> u32 {
    0x9a9a_0000 | page as u32
}
/// The child's word in page `i` of cow-both-write.
const fn child_word(page: usize) -> u32 {
    0xc4c4_0000 | page as u32
}
/// cow-both-write's child exits with this plus the number of pages it copied.
const CHILD_REPORT_BASE: i32 = 16;

/// What `debug(KERNEL_WRITE, addr)` stores (see `abi::debug_op::KERNEL_WRITE`).
const KERNEL_WRITE_MARK: u32 = 0x5157_0000;
const KERNEL_WRITE_LOW_MASK: u32 = 0xffff;
/// What the meminfo target page holds before the kernel writes into it.
const INFO_FILL: u32 = 0x1f0f_1f0f;
/// A page-aligned static in `.data` that write-verify has the kernel write a
/// `MemInfo` into while the page is shared copy-on-write.
static INFO_PAGE: PageBuffer<1> = PageBuffer::filled(INFO_FILL);

/// Writes `word` into word 0 of buffer page `page`, and checks what the fault handler
/// did (`expected`) and the page afterwards: a copy gets a new private frame, a page
/// made writable keeps `frame`.
fn write_and_check(page: usize, word: u32, expected: CowDelta, frame: Hex, who: &str) -> Outcome {
    let before = faults().or_fail("meminfo")?;
    BUFFER.write(page, 0, word);
    let after = faults().or_fail("meminfo")?;
    check_eq!(
        CowDelta::between(&before, &after),
        expected,
        "{who}: copy-on-write work of writing {word:#x} into buffer page {page}"
    );
    let now = PageView::of(BUFFER.page_addr(page))?;
    if expected == CowDelta::COPY {
        check!(
            now.frame != frame,
            "{who}: after the copy, buffer page {page} still maps frame {frame:?}"
        );
        check_eq!(
            now,
            PageView::private(now.frame),
            "{who}: buffer page {page} after the copy"
        );
    } else {
        check_eq!(
            now,
            PageView::private(frame),
            "{who}: buffer page {page} made writable in place"
        );
    }
    check_eq!(
        Hex(BUFFER.read(page, 0)),
        Hex(word),
        "{who}: reads back its own write"
    );
    Ok(())
}

/// Fills buffer page 0 with A in this task (making it private) and returns its frame.
fn fill_first_page(who: &str) -> Result<Hex, Failed> {
    BUFFER.fill_page(0, PATTERN_A);
    let view = PageView::of(BUFFER.page_addr(0))?;
    check_eq!(
        view,
        PageView::private(view.frame),
        "{who}: buffer page 0 after filling it with A"
    );
    say!(
        "{who}: buffer page 0 at {:#x} holds A in frame {:?}",
        BUFFER.page_addr(0),
        view.frame
    );
    Ok(view.frame)
}

/// cow-parent-exits-first: P shares a page with its child C, writes it (a copy) and
/// exits; C, reparented to task 1, still reads A from the original frame, now counted
/// once, and its write only makes the page writable.
pub fn parent_exits_first() -> Outcome {
    let p = spawn(|| {
        touch_stack(STACK_PAGES);
        let frame = fill_first_page("P")?;
        let addr = BUFFER.page_addr(0);
        let c = spawn(|| outliving_child(frame))?;
        check_eq!(
            PageView::of(addr)?,
            PageView::shared(frame, 2),
            "P: buffer page right after fork"
        );
        touch_stack(STACK_PAGES);
        sleep(SETTLE_TICKS); // C checks the shared page before P writes.
        write_and_check(0, PATTERN_B, CowDelta::COPY, frame, "P")?;
        expect_buffer(0, PATTERN_B, PATTERN_A, "P")?;
        say!("P: wrote B into its own copy; exiting before its child {c}");
        Ok(())
    })?;
    user::check::expect_exit(p, 0, "P")
    // C is reparented to task 1, which reaps it and checks its status.
}

/// C of cow-parent-exits-first.
fn outliving_child(frame: Hex) -> Outcome {
    let addr = BUFFER.page_addr(0);
    check_eq!(
        PageView::of(addr)?,
        PageView::shared(frame, 2),
        "C: buffer page right after fork"
    );
    touch_stack(STACK_PAGES);
    wait_until(
        format_args!("C: reparented to task 1 after P exited"),
        || Ok(getppid() == INIT_PID),
    )?;
    say!("C: P has exited, my parent is now task {INIT_PID}");
    expect_buffer(0, PATTERN_A, PATTERN_A, "C")?;
    check_eq!(
        PageView::of(addr)?,
        PageView::read_only(frame),
        "C: buffer page after P exited (original frame, count 1, still write-protected)"
    );
    write_and_check(0, PATTERN_C, CowDelta::MADE_WRITABLE, frame, "C")?;
    say!("C: my write only made the page writable, same frame {frame:?}");
    Ok(())
}

/// cow-child-exits-first: the child writes (a copy) and exits; the parent's page is
/// then counted once and its write only makes it writable.
pub fn child_exits_first() -> Outcome {
    touch_stack(STACK_PAGES);
    let frame = fill_first_page("parent")?;
    let addr = BUFFER.page_addr(0);
    let c = spawn(|| {
        check_eq!(
            PageView::of(addr)?,
            PageView::shared(frame, 2),
            "C: buffer page right after fork"
        );
        touch_stack(STACK_PAGES);
        sleep(SETTLE_TICKS); // The parent checks the shared page before C writes.
        write_and_check(0, PATTERN_B, CowDelta::COPY, frame, "C")?;
        expect_buffer(0, PATTERN_B, PATTERN_A, "C")?;
        say!("C: wrote B into its own copy; exiting");
        Ok(())
    })?;
    check_eq!(
        PageView::of(addr)?,
        PageView::shared(frame, 2),
        "parent: buffer page right after fork"
    );
    user::check::expect_exit(c, 0, "C")?;
    expect_buffer(0, PATTERN_A, PATTERN_A, "parent")?;
    check_eq!(
        PageView::of(addr)?,
        PageView::read_only(frame),
        "parent: buffer page after C exited (count 1, still write-protected)"
    );
    // Stack pages still write-protected since the fork are made writable now, outside
    // the measured write.
    touch_stack(STACK_PAGES);
    write_and_check(0, PATTERN_C, CowDelta::MADE_WRITABLE, frame, "parent")?;
    say!("parent: my write only made the page writable, same frame {frame:?}");
    Ok(())
}

/// The two sides of cow-both-write.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Parent,
    Child,
}

impl Side {
    /// Who writes page `page` first (and so copies it): the parent the even pages,
    /// the child the odd ones.
    fn first_writer(page: usize) -> Self {
        if page.is_multiple_of(2) {
            Self::Parent
        } else {
            Self::Child
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Parent => "parent",
            Self::Child => "C",
        }
    }

    fn word(self, page: usize) -> u32 {
        match self {
            Self::Parent => parent_word(page),
            Self::Child => child_word(page),
        }
    }
}

/// Writes this side's word into each buffer page in turn. On a page the other side
/// writes first, it waits until that copy has left the original frame to it alone
/// (count 1), so the two sides really alternate. Returns the copy-on-write work done.
fn alternate_writes(me: Side) -> Result<CowDelta, Failed> {
    let who = me.name();
    let before = faults().or_fail("meminfo")?;
    for page in 0..BUFFER_PAGES {
        if Side::first_writer(page) != me {
            let addr = BUFFER.page_addr(page);
            wait_until(
                format_args!("{who}: the other side writes buffer page {page} first"),
                || Ok(PageView::of(addr)?.count == 1),
            )?;
        }
        BUFFER.write(page, 0, me.word(page));
        yield_now();
    }
    let after = faults().or_fail("meminfo")?;
    let delta = CowDelta::between(&before, &after);
    for page in 0..BUFFER_PAGES {
        expect_buffer(page, me.word(page), PATTERN_A, who)?;
        let view = PageView::of(BUFFER.page_addr(page))?;
        check_eq!(
            view,
            PageView::private(view.frame),
            "{who}: buffer page {page} after the writes"
        );
    }
    let firsts = (0..BUFFER_PAGES)
        .filter(|&page| Side::first_writer(page) == me)
        .count() as u32;
    check_eq!(
        delta,
        CowDelta {
            copied: firsts,
            made_writable: BUFFER_PAGES as u32 - firsts
        },
        "{who}: copy-on-write work of writing {BUFFER_PAGES} pages, {firsts} of them first"
    );
    say!(
        "{who}: {} pages copied (written first), {} made writable in place (written second)",
        delta.copied,
        delta.made_writable
    );
    Ok(delta)
}

/// cow-both-write: parent and child write their own values into the same 8 shared
/// pages in turn; each sees only its own values, and between them there are exactly
/// 8 copies (the first writer of each page) and 8 pages made writable (the second).
pub fn both_write() -> Outcome {
    touch_stack(STACK_PAGES);
    BUFFER.fill(PATTERN_A);
    let mut frames = [Hex(0); BUFFER_PAGES];
    for (page, frame) in frames.iter_mut().enumerate() {
        *frame = PageView::of(BUFFER.page_addr(page))?.frame;
    }
    let c = spawn_code(|| {
        touch_stack(STACK_PAGES);
        // The child reports its copies in its exit status for the parent's sum.
        let delta = alternate_writes(Side::Child)?;
        Ok(CHILD_REPORT_BASE + delta.copied as i32)
    })?;
    // Nothing is written before this: the child's first write waits for the parent's
    // write of page 0.
    for (page, &frame) in frames.iter().enumerate() {
        check_eq!(
            PageView::of(BUFFER.page_addr(page))?,
            PageView::shared(frame, 2),
            "parent: buffer page {page} right after fork"
        );
    }
    touch_stack(STACK_PAGES);
    let delta = alternate_writes(Side::Parent)?;
    let child_copies = BUFFER_PAGES as i32 - delta.copied as i32;
    let status = wait_child(c)?;
    check_eq!(
        status,
        Status::exited(CHILD_REPORT_BASE + child_copies),
        "C's exit status ({CHILD_REPORT_BASE} + its copies): the two sides' copies must add up to {BUFFER_PAGES}"
    );
    say!("{BUFFER_PAGES} copies and {BUFFER_PAGES} pages made writable between the two sides");
    Ok(())
}

/// fork-of-fork: P forks C1, which forks C2, before anyone writes: the page is mapped
/// three times. C2 writes first (a copy), then C1 (a copy), then P, the last holder,
/// which only makes its page writable. The order is enforced by watching the count.
pub fn fork_of_fork() -> Outcome {
    let p = spawn(|| {
        touch_stack(STACK_PAGES);
        let frame = fill_first_page("P")?;
        let addr = BUFFER.page_addr(0);
        let count_is = move |count: u32| move || Ok(PageView::of(addr)?.count == count);
        let c1 = spawn(|| {
            let c2 = spawn(|| {
                check_eq!(
                    PageView::of(addr)?,
                    PageView::shared(frame, 3),
                    "C2: buffer page right after fork"
                );
                touch_stack(STACK_PAGES);
                sleep(SETTLE_TICKS); // C1 checks the page before C2 writes.
                write_and_check(0, PATTERN_C, CowDelta::COPY, frame, "C2")?;
                expect_buffer(0, PATTERN_C, PATTERN_A, "C2")
            })?;
            check_eq!(
                PageView::of(addr)?,
                PageView::shared(frame, 3),
                "C1: buffer page right after forking C2"
            );
            touch_stack(STACK_PAGES);
            wait_until(format_args!("C1: C2 has written (count 2)"), count_is(2))?;
            write_and_check(0, PATTERN_B, CowDelta::COPY, frame, "C1")?;
            expect_buffer(0, PATTERN_B, PATTERN_A, "C1")?;
            user::check::expect_exit(c2, 0, "C2")
        })?;
        touch_stack(STACK_PAGES);
        wait_until(
            format_args!("P: C1 and C2 have written (count 1)"),
            count_is(1),
        )?;
        check_eq!(
            PageView::of(addr)?,
            PageView::read_only(frame),
            "P: buffer page, last holder"
        );
        write_and_check(0, PATTERN_A ^ 1, CowDelta::MADE_WRITABLE, frame, "P")?;
        expect_buffer(0, PATTERN_A ^ 1, PATTERN_A, "P")?;
        user::check::expect_exit(c1, 0, "C1")
    })?;
    user::check::expect_exit(p, 0, "P")
}

/// write-verify: the kernel writes into a child's copy-on-write pages (a
/// `debug(KERNEL_WRITE)` store and a `meminfo` result), as 0.11 kernel code does
/// after `verify_area`: ring 0 ignores write protection on the 386, so
/// `write_verify` must break copy-on-write first or the parent would see the write.
pub fn write_verify() -> Outcome {
    touch_stack(STACK_PAGES);
    let frame = fill_first_page("parent")?;
    let addr = BUFFER.page_addr(0);
    let info_addr = INFO_PAGE.page_addr(0);
    INFO_PAGE.fill(INFO_FILL);
    let info_frame = PageView::of(info_addr)?.frame;
    let c = spawn(|| {
        check_eq!(
            PageView::of(addr)?,
            PageView::shared(frame, 2),
            "C: buffer page right after fork"
        );
        check_eq!(
            PageView::of(info_addr)?,
            PageView::shared(info_frame, 2),
            "C: meminfo page right after fork"
        );
        check_eq!(
            debug(debug_op::KERNEL_WRITE, addr as u32),
            0,
            "C: debug(KERNEL_WRITE, {addr:#x})"
        );
        let expected = KERNEL_WRITE_MARK | (addr as u32 & KERNEL_WRITE_LOW_MASK);
        expect_buffer(0, expected, PATTERN_A, "C (after the kernel's write)")?;
        let view = PageView::of(addr)?;
        check!(view.frame != frame, "C: the kernel wrote into frame {frame:?}, still shared with the parent (write_verify did not copy)");
        check_eq!(
            view,
            PageView::private(view.frame),
            "C: buffer page after the kernel's write"
        );

        // SAFETY: `info_addr` is a whole page of this task, larger than a MemInfo;
        // the kernel writes the structure there (the point of the test).
        let ret = unsafe { syscall1(nr::MEMINFO, info_addr as u32) };
        check_eq!(
            ret,
            0,
            "C: meminfo into the shared static at {info_addr:#x}"
        );
        let reference = meminfo().or_fail("meminfo")?;
        let word = offset_of!(MemInfo, paging_frames) / core::mem::size_of::<u32>();
        check_eq!(
            INFO_PAGE.read(0, word),
            reference.paging_frames,
            "C: paging_frames as written into the static"
        );
        let view = PageView::of(info_addr)?;
        check!(
            view.frame != info_frame,
            "C: meminfo was written into frame {info_frame:?}, still shared with the parent"
        );
        check_eq!(
            view,
            PageView::private(view.frame),
            "C: meminfo page after the kernel's write"
        );
        say!("C: both kernel writes landed in my own copies");
        Ok(())
    })?;
    user::check::expect_exit(c, 0, "C")?;
    expect_buffer(0, PATTERN_A, PATTERN_A, "parent (after C exited)")?;
    check_eq!(
        PageView::of(addr)?,
        PageView::read_only(frame),
        "parent: buffer page after C exited"
    );
    check_eq!(
        INFO_PAGE.find_mismatch(0, INFO_FILL),
        None,
        "parent: meminfo page contents (word, value)"
    );
    check_eq!(
        PageView::of(info_addr)?,
        PageView::read_only(info_frame),
        "parent: meminfo page after C exited"
    );
    say!("parent: still reads A at frame {frame:?}: the kernel's writes stayed in the child");
    Ok(())
}
