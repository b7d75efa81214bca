//! The kernel side of `checkmm`: gathers the live slots and the kernel's own frames,
//! runs `Mm::check_mm` with a static scratch buffer and prints each mismatch.

use mm::addr::{Frame, NR_TASKS};
use mm::check::SCRATCH_LEN;
use mm::{CheckInput, CheckSummary};
use spin::Mutex;

use crate::paging::paging;
use crate::task::tasks;

/// Mismatches printed in full; the rest are only counted.
const MAX_PRINTED: u32 = 40;

/// One reference count per frame and one bit per swap slot, recomputed by every check
/// (no heap in the kernel).
static SCRATCH: Mutex<[u16; SCRATCH_LEN]> = Mutex::new([0; SCRATCH_LEN]);

/// Runs the consistency check, printing every mismatch (up to a limit) prefixed by `who`.
pub fn run(who: &str) -> CheckSummary {
    let mut pages = [Frame::default(); NR_TASKS];
    let (live_slots, nr_pages) = {
        let t = tasks();
        (t.live_slot_mask(), t.task_pages(&mut pages))
    };
    let input = CheckInput {
        live_slots,
        kernel_refs: &pages[..nr_pages],
    };
    let p = paging();
    let mut scratch = SCRATCH.lock();
    let mut printed = 0u32;
    let summary = p.mm.check_mm(&input, &mut scratch[..], &mut |m| {
        if printed < MAX_PRINTED {
            println!("{who}: {m}");
        }
        printed += 1;
    });
    if printed > MAX_PRINTED {
        let more = printed - MAX_PRINTED;
        let noun = if more == 1 { "mismatch" } else { "mismatches" };
        println!("{who}: ... and {more} more {noun}");
    }
    summary
}
