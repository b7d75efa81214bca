//! `memhog`: grows its break 1 MiB at a time and writes every page, until the kernel's oom() kills it (or an optional limit in MiB).
//!
//! With a swap disk, RAM running out is not the end: the kernel writes memhog's older
//! pages to the disk to make room (0.12 `swap_out`), so the progress lines say how many
//! of its pages are out there; oom() comes when the disk is full too.
// Built for i586-unknown-linux-gnu only; on any other target (the host's `cargo clippy
// --workspace`) the crate is empty (README "Tests": lints), as its 32-bit asm cannot build there.
#![cfg_attr(target_arch = "x86", no_std)]
#![no_main]
#![cfg(target_arch = "x86")]

use user::abi::MAX_ARG_LEN;
use user::mem::{grow_break, MIB};
use user::{getarg, meminfo, say};

user::entry!(main);

/// Progress is printed every this many MiB.
const REPORT_EVERY_MIB: usize = 4;
/// Exit code when the break cannot grow any more before memory ran out.
const BREAK_EXHAUSTED: i32 = 2;

fn main() -> i32 {
    let mut arg_buf = [0u8; MAX_ARG_LEN + 1];
    let arg = getarg(&mut arg_buf).unwrap_or("").trim();
    let limit: Option<usize> = if arg.is_empty() {
        None
    } else if let Ok(mib) = arg.parse() {
        Some(mib)
    } else {
        say!("unknown argument '{arg}' (expected a limit in MiB, or nothing)");
        return 2;
    };
    match limit {
        Some(mib) => say!("touching memory 1 MiB at a time, up to {mib} MiB"),
        None => say!("touching memory 1 MiB at a time until the kernel runs out"),
    }
    let mut touched_mib = 0;
    let mut swapping = false;
    loop {
        if limit == Some(touched_mib) {
            say!("reached {touched_mib} MiB, stopping");
            return 0;
        }
        let region = match grow_break(MIB) {
            Ok(region) => region,
            Err(error) => {
                say!("brk refused at {touched_mib} MiB: {error}; memory never ran out");
                return BREAK_EXHAUSTED;
            }
        };
        // Each first write to a page is a demand-zero fault that takes a frame.
        region.touch_pages(touched_mib as u32);
        touched_mib += 1;
        if touched_mib % REPORT_EVERY_MIB == 0 {
            report(touched_mib, &mut swapping);
        }
    }
}

/// One progress line: how far memhog got and what memory is left; once pages of its own
/// are on the swap disk, how many (said once, when it starts, why frames stay at 0).
fn report(touched_mib: usize, swapping: &mut bool) {
    let Ok(info) = meminfo() else {
        say!("{touched_mib} MiB touched (meminfo failed)");
        return;
    };
    if info.task_swapped == 0 {
        say!(
            "{touched_mib} MiB touched, {} frames free",
            info.free_frames
        );
        return;
    }
    if !*swapping {
        *swapping = true;
        say!("RAM is full: each new page now costs one of my older ones, written to the swap disk (swap_out)");
    }
    say!(
        "{touched_mib} MiB touched, {} frames free, {} of my pages on the swap disk ({} slots free)",
        info.free_frames,
        info.task_swapped,
        info.swap_free
    );
}
