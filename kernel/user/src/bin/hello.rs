//! `hello`: the exec target of the sharing tests; reads a large read-only table page by page and checks its data, bss and faults.
//!
//! Arguments: `touch` (default) reads and checks everything and reports its fault
//! counts; `hold` does the same and then sleeps, so that a second `hello` can share
//! its pages; `report-shared N` also requires at least N shared-page faults and a
//! table page mapped read-only by two or more tasks.
// Built for i586-unknown-linux-gnu only; on any other target (the host's `cargo clippy
// --workspace`) the crate is empty (README "Tests": lints), as its 32-bit asm cannot build there.
#![cfg_attr(target_arch = "x86", no_std)]
#![no_main]
#![cfg(target_arch = "x86")]

use core::hint::black_box;
use core::sync::atomic::{AtomicU32, Ordering};

use user::abi::{page_flags, MAX_ARG_LEN};
use user::mem::{PAGE_SIZE, WORDS_PER_PAGE};
use user::{getarg, meminfo, pageinfo, say, sleep};

user::entry!(main);

/// Pages of read-only table: more than the 16 a sharing test asks for.
const TABLE_PAGES: usize = 20;
const TABLE_WORDS: usize = TABLE_PAGES * WORDS_PER_PAGE;
/// Words of initialised, writable data.
const DATA_WORDS: usize = 2 * WORDS_PER_PAGE;
/// Words of bss.
const BSS_WORDS: usize = 2 * WORDS_PER_PAGE;
/// How long `hold` keeps the pages mapped for a second instance (timer ticks).
const HOLD_TICKS: u32 = 50;

/// A word of the table: a cheap integer hash of its index, so every page differs.
const fn table_word(index: usize) -> u32 {
    let mut x = (index as u32).wrapping_mul(0x9e37_79b9) ^ 0xa5a5_5a5a;
    x ^= x >> 15;
    x = x.wrapping_mul(0x2c1b_3c6d);
    x ^ (x >> 12)
}

/// A word of the initialised data.
const fn data_word(index: usize) -> u32 {
    0xda7a_0000 | index as u32
}

/// The order-sensitive checksum of the table (computed at compile time for the
/// expected value, at run time over the pages the kernel mapped).
const fn checksum(words: &[u32]) -> u32 {
    let mut sum = 0u32;
    let mut i = 0;
    while i < words.len() {
        sum = sum.rotate_left(5) ^ words[i];
        i += 1;
    }
    sum
}

const fn make_table() -> [u32; TABLE_WORDS] {
    let mut table = [0; TABLE_WORDS];
    let mut i = 0;
    while i < TABLE_WORDS {
        table[i] = table_word(i);
        i += 1;
    }
    table
}

const fn make_data() -> [AtomicU32; DATA_WORDS] {
    let mut data = [const { AtomicU32::new(0) }; DATA_WORDS];
    let mut i = 0;
    while i < DATA_WORDS {
        data[i] = AtomicU32::new(data_word(i));
        i += 1;
    }
    data
}

/// The table, page aligned so each of its pages holds only table words.
#[repr(C, align(4096))]
struct Table([u32; TABLE_WORDS]);

/// What the table must add up to (the table is generated twice at compile time
/// rather than kept as a large `const`).
const TABLE_SUM: u32 = checksum(&make_table());

/// Read-only (`.rodata`): pages that two `hello`s can share.
static TABLE: Table = Table(make_table());
/// Initialised and writable (`.data`).
static DATA: [AtomicU32; DATA_WORDS] = make_data();
/// Zero-initialised (`.bss`): demand-zero pages.
static BSS: [AtomicU32; BSS_WORDS] = [const { AtomicU32::new(0) }; BSS_WORDS];

/// What the argument asks for.
enum Mode {
    Touch,
    Hold,
    ReportShared(u32),
}

fn parse_mode(arg: &str) -> Option<Mode> {
    let mut words = arg.split_ascii_whitespace();
    let mode = match words.next() {
        None | Some("touch") => Mode::Touch,
        Some("hold") => Mode::Hold,
        Some("report-shared") => Mode::ReportShared(words.next()?.parse().ok()?),
        Some(_) => return None,
    };
    words.next().is_none().then_some(mode)
}

/// Reads every table page, the data and the bss; prints and returns whether all
/// held what the program was built with.
fn touch_and_check() -> bool {
    // black_box hides the table's contents from the optimiser: the reads must really
    // happen (they are the page faults under test), not be folded at compile time.
    let table = black_box(&TABLE.0);
    let sum = checksum(table);
    let table_ok = sum == TABLE_SUM;
    say!(
        "table: {TABLE_PAGES} pages read, checksum {sum:#010x} (built with {TABLE_SUM:#010x}): {}",
        if table_ok { "ok" } else { "MISMATCH" }
    );

    // Nothing ever stores to DATA and BSS: without black_box LLVM would see that,
    // fold the loads to their initial values and move both into .rodata. Handing their
    // addresses to black_box keeps them real, writable data and bss.
    let data = black_box(&DATA);
    let data_bad = (0..DATA_WORDS).find(|&i| data[i].load(Ordering::Relaxed) != data_word(i));
    match data_bad {
        None => say!("data: {DATA_WORDS} initialised words: ok"),
        Some(i) => say!(
            "data: word {i} is {:#x}, built as {:#x}: MISMATCH",
            data[i].load(Ordering::Relaxed),
            data_word(i)
        ),
    }

    let bss = black_box(&BSS);
    let bss_bad = (0..BSS_WORDS).find(|&i| bss[i].load(Ordering::Relaxed) != 0);
    match bss_bad {
        None => say!("bss: {BSS_WORDS} words read as zero: ok"),
        Some(i) => say!(
            "bss: word {i} is {:#x}, not zero: MISMATCH",
            bss[i].load(Ordering::Relaxed)
        ),
    }
    table_ok && data_bad.is_none() && bss_bad.is_none()
}

/// Checks that this instance shares its table with another one.
fn check_shared(at_least: u32, shared_faults: u32) -> bool {
    let shared_ok = shared_faults >= at_least;
    say!(
        "shared-page faults: {shared_faults} (need at least {at_least}): {}",
        if shared_ok { "ok" } else { "TOO FEW" }
    );
    // A page in the middle of the table: only table words, never written.
    let addr = TABLE.0.as_ptr() as usize + TABLE_PAGES / 2 * PAGE_SIZE;
    match pageinfo(addr) {
        Ok(info) => {
            let writable = info.flags & page_flags::WRITABLE != 0;
            let page_ok = info.flags & page_flags::PRESENT != 0 && info.map_count >= 2 && !writable;
            say!(
                "table page {addr:#x}: frame {:#x}, map count {}, {}: {}",
                info.frame,
                info.map_count,
                if writable { "writable" } else { "read-only" },
                if page_ok {
                    "ok (shared between two tasks)"
                } else {
                    "NOT SHARED"
                }
            );
            shared_ok && page_ok
        }
        Err(error) => {
            say!("pageinfo({addr:#x}) failed: {error}");
            false
        }
    }
}

fn main() -> i32 {
    let mut arg_buf = [0u8; MAX_ARG_LEN + 1];
    let arg = getarg(&mut arg_buf).unwrap_or("");
    let Some(mode) = parse_mode(arg) else {
        say!("unknown argument '{arg}' (expected touch, hold or report-shared N)");
        return 2;
    };
    let mut ok = touch_and_check();
    let faults = match meminfo() {
        Ok(info) => info.faults,
        Err(error) => {
            say!("meminfo failed: {error}");
            return 1;
        }
    };
    say!(
        "faults: loaded {} shared {} demand_zero {}",
        faults.loaded,
        faults.shared,
        faults.demand_zero
    );
    match mode {
        Mode::Touch => {}
        Mode::Hold => {
            say!("holding my pages for {HOLD_TICKS} ticks");
            sleep(HOLD_TICKS);
        }
        Mode::ReportShared(at_least) => ok &= check_shared(at_least, faults.shared),
    }
    say!("{}", if ok { "done: ok" } else { "done: FAILED" });
    if ok {
        0
    } else {
        1
    }
}
