//! The originals' behaviour, on this kernel: the limits restored from 0.11 (the code
//! segment ends with the text) and, under `compat=`, the bugs the kernel fixes by default,
//! each made to happen and shown (kernel/docs/deviations.md says which row is which).

use core::arch::asm;

use user::abi::{debug_op, nr, signal, PAGE_SIZE, TASK_SIZE};
use user::check::{
    expect_killed, spawn, spawn_code, wait_child, Failed, Hex, OrFail, Outcome, Status,
};
use user::console::STDOUT;
use user::mem::{text_end, PageBuffer};
use user::raw::{syscall1, syscall3};
use user::{check, check_eq, checkmm, debug, execve, meminfo, say};

/// 4 MiB: one directory entry's span.
const PDE_SPAN: u32 = 4 << 20;
/// An offset far past the 64 MiB segment.
const BEYOND_SEGMENT: u32 = 0x7fff_ff00;

/// The task's code and data selectors (LDT entries 1 and 2, RPL 3), as 0.11's `0x0f`
/// and `0x17`.
const USER_CS: u32 = 0x0f;
const USER_DS: u32 = 0x17;

/// 0.11 `get_limit(segment)`: the limit of the segment `selector` names (its last valid
/// offset), read with `lsl`, which ring 3 may do for its own descriptors.
fn get_limit(selector: u32) -> u32 {
    let limit: u32;
    // SAFETY: `lsl` only reads the descriptor the selector names and writes the register;
    // for a selector it cannot read it leaves the register and clears ZF (checked below
    // by the value: 0 is no valid limit of either segment).
    unsafe {
        asm!("lsl {limit}, {selector}", limit = out(reg) limit, selector = in(reg) selector,
             options(nomem, nostack))
    };
    limit
}

/// code-limit: 0.11's `change_ldt` makes the code segment as long as the text rounded up
/// to a page (`code_limit = text_size+PAGE_SIZE-1; code_limit &= 0xFFFFF000`) and the data
/// segment 64 MiB. The limits are read back with `lsl`, as 0.11's `get_limit` does: QEMU's
/// TCG does not check the code limit on near jumps (a call past the text runs there), so
/// a jump cannot show it; on a real 386 the jump raises #GP.
pub fn code_limit() -> Outcome {
    let text = text_end() as u32;
    let expected_code = text.next_multiple_of(PAGE_SIZE);
    say!(
        "the text ends at {text:#x}: the code segment must end at {expected_code:#x}, the data segment at 64 MiB"
    );
    check_eq!(
        get_limit(USER_CS) + 1,
        expected_code,
        "code segment limit + 1 (0.11 change_ldt)"
    );
    check_eq!(get_limit(USER_DS) + 1, TASK_SIZE, "data segment limit + 1");
    let child = spawn(|| {
        check_eq!(
            get_limit(USER_CS) + 1,
            expected_code,
            "the child's code segment limit + 1 (0.11 copy_process copies the LDT)"
        );
        Ok(())
    })?;
    user::check::expect_exit(child, 0, "the child")?;
    say!("code segment {expected_code:#x} bytes, data segment 64 MiB, in parent and child");
    Ok(())
}

/// calc-mem: 0.11's `calc_mem()` (never called in 0.11) prints the free frames and the
/// pages each page table maps, from directory entry 2 up; `debug(CALC_MEM)` runs it.
pub fn calc_mem() -> Outcome {
    let before = user::free_frames().or_fail("debug(FREE_FRAMES)")?;
    let free = user::debug(user::abi::debug_op::CALC_MEM, 0);
    check_eq!(free as u32, before, "calc_mem's free frames");
    say!("calc_mem printed {free} pages free and the pages of each page table above");
    Ok(())
}

// ------------------------------------------------------------------------------------
// compat=: each original made to happen (run with the compat= word its row names).

/// A page of the program's data (`.data`: non-zero, so it comes from the image and can
/// be shared) that only the D9 scenario touches, and only by reading in pid 1.
static STORE_PROBE: PageBuffer<1> = PageBuffer::filled(PROBE_WORD);
/// A page of the program's data that only the D18 scenario touches.
static COPY_PROBE: PageBuffer<1> = PageBuffer::filled(PROBE_WORD);
/// What the probe pages hold in the program image.
const PROBE_WORD: u32 = 0x1111_1111;
/// What pid 1 writes into `COPY_PROBE` (D18).
const MODIFIED_WORD: u32 = 0xDEAD_BEEF;

/// The helper roles the compat scenarios exec ktest into: they run before ktest preloads
/// its image (main.rs), so the probe page is not present in them until they touch it.
/// Returns the exit code when `arg` names a role.
pub fn peer(arg: &str) -> Option<i32> {
    match arg {
        // D9: the kernel stores into the probe page, which is absent here.
        "peer-kernel-store" => {
            let ret = debug(debug_op::KERNEL_WRITE, STORE_PROBE.page_addr(0) as u32);
            Some(if ret == 0 { 0 } else { 2 })
        }
        // D18: reads the copy probe, absent here: 0 when it is the program's word, 1 when
        // it is the word another task wrote, 2 otherwise.
        "peer-read" => Some(match COPY_PROBE.read(0, 0) {
            PROBE_WORD => 0,
            MODIFIED_WORD => 1,
            _ => 2,
        }),
        _ => None,
    }
}

/// Forks a child that execs ktest into `role` ([`peer`]) and returns its exit code.
fn run_peer(role: &'static str) -> Result<i32, Failed> {
    let child = spawn_code(move || {
        let error = execve("ktest", role);
        say!("CHECK FAILED: execve(ktest {role}) (expected success, found {error})");
        Err(Failed)
    })?;
    let status = wait_child(child)?;
    match status.exit_code() {
        Some(code) => Ok(code),
        None => {
            say!("CHECK FAILED: the {role} peer: {status}");
            Err(Failed)
        }
    }
}

/// compat-free-page-tables (compat=D1): `free_page_tables(4 MiB, 4 MiB)` from a task.
/// 0.11's guard (`if (!from)`, the seed's "BUG") lets it through: the kernel's page table
/// for physical 4..8 MiB is freed and its directory entry cleared; checkmm names it.
/// The run then ends with checkmm unclean (VERDICT: FAIL), which is the point.
pub fn compat_free_page_tables() -> Outcome {
    let from = PDE_SPAN;
    let ret = debug(debug_op::FREE_PAGE_TABLES, from);
    check_eq!(
        ret,
        0,
        "free_page_tables({from:#x}): the kernel's own memory (compat=D1 lets it through)"
    );
    let mismatches = checkmm().or_fail("checkmm")?;
    check!(
        mismatches > 0,
        "checkmm found nothing after the kernel's table for 4..8 MiB was freed"
    );
    say!("free_page_tables freed the kernel's table for 4..8 MiB; checkmm: {mismatches} mismatches (the lines above)");
    Ok(())
}

/// compat-free-page-tables-0.11 (compat=0.11): the same call with every original on:
/// 0.11's `free_page` panics at the first free frame the kernel's table maps ("trying to
/// free free page"): a kernel crash report. Returning is the failure.
pub fn compat_free_page_tables_panics_at_a_free_frame() -> Outcome {
    let ret = debug(debug_op::FREE_PAGE_TABLES, PDE_SPAN);
    say!("CHECK FAILED: free_page_tables(4 MiB) returned {ret} instead of panicking");
    Err(Failed)
}

/// compat-free-page-tables-panic (compat=D22): 0.11's `free_page_tables(0, ...)` panics
/// "Trying to free up swapper memory space" instead of refusing.
pub fn compat_free_page_tables_panics() -> Outcome {
    let ret = debug(debug_op::FREE_PAGE_TABLES, 0);
    say!("CHECK FAILED: free_page_tables(0) returned {ret} instead of panicking");
    Err(Failed)
}

/// compat-bad-pointer (compat=D21): a system call given a buffer past the 64 MiB segment
/// kills the caller with SIGSEGV, as 0.11's `die()` on the #GP its `fs` access raises;
/// the kernel's default is EFAULT.
pub fn compat_bad_pointer() -> Outcome {
    let writer = spawn(|| {
        // SAFETY: the buffer lies wholly beyond the segment; the kernel only reads it.
        let ret = unsafe { syscall3(nr::WRITE, STDOUT, BEYOND_SEGMENT, 16) };
        say!("CHECK FAILED: write(1, {BEYOND_SEGMENT:#x}, 16) returned {ret}");
        Err(Failed)
    })?;
    expect_killed(
        writer,
        signal::SIGSEGV,
        "write with a buffer past the segment",
    )?;
    let getter = spawn(|| {
        // SAFETY: as above; the kernel would write there, so nothing Rust owns is hit.
        let ret = unsafe { syscall1(nr::MEMINFO, BEYOND_SEGMENT) };
        say!("CHECK FAILED: meminfo({BEYOND_SEGMENT:#x}) returned {ret}");
        Err(Failed)
    })?;
    expect_killed(
        getter,
        signal::SIGSEGV,
        "meminfo into a buffer past the segment",
    )?;
    say!("both callers died of SIGSEGV (0.11's die), none got EFAULT");
    Ok(())
}

/// compat-kernel-store (compat=D9): 0.11's order for a kernel store into user memory:
/// `verify_area` (`write_verify`: the absent page needs nothing), then the ring-0 store
/// faults the page in, `do_no_page` shares it read-only from pid 1 (which has it clean),
/// and the store, ignoring RW, writes into pid 1's page. Pid 1 sees the kernel's word.
pub fn compat_kernel_store() -> Outcome {
    check_eq!(
        STORE_PROBE.read(0, 0),
        PROBE_WORD,
        "pid 1's probe page before"
    );
    check_eq!(
        run_peer("peer-kernel-store")?,
        0,
        "the peer's debug(KERNEL_WRITE)"
    );
    let after = STORE_PROBE.read(0, 0);
    let written = 0x5157_0000 | (STORE_PROBE.page_addr(0) as u32 & 0xffff);
    check_eq!(
        Hex(after),
        Hex(written),
        "pid 1's probe page after the kernel stored into the peer's (0.11's hole)"
    );
    say!("the kernel's store into the peer's page landed in pid 1's: 0.11's order (D9)");
    Ok(())
}

/// compat-clean-copy (compat=D18): pid 1 writes a page of its data and forks; the child's
/// `verify_area` with no store after it (a `read()` of 0 bytes) copies the page, and 0.11
/// maps the copy `new | 7`: clean. A third task running ktest then faults the page in,
/// `share_page` takes the clean-looking copy, and it reads pid 1's word, not the
/// program's.
pub fn compat_clean_copy() -> Outcome {
    COPY_PROBE.write(0, 0, MODIFIED_WORD);
    let child = spawn_code(|| {
        let ret = debug(debug_op::VERIFY_AREA, COPY_PROBE.page_addr(0) as u32);
        check_eq!(ret, 0, "debug(VERIFY_AREA)");
        run_peer("peer-read")
    })?;
    let status = wait_child(child)?;
    check_eq!(
        status,
        Status::exited(1),
        "the third task's read (1: pid 1's modified word, 0: the program's)"
    );
    say!("the third task read pid 1's modified word as the program's page (D18)");
    Ok(())
}

/// compat-16mib (compat=D16): 0.11 caps HIGH_MEMORY at 16 MiB: at most 3840 frames above
/// LOW_MEM, whatever the machine has.
pub fn compat_16mib() -> Outcome {
    let info = meminfo().or_fail("meminfo")?;
    check!(
        info.paging_frames < 3840,
        "{} paging frames: more than 16 MiB",
        info.paging_frames
    );
    say!(
        "{} paging frames: HIGH_MEMORY capped at 16 MiB",
        info.paging_frames
    );
    Ok(())
}
