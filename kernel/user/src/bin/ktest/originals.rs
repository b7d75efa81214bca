//! The originals' behaviour, on this kernel: the limits restored from 0.11 (the code
//! segment ends with the text) and, under `compat=`, the bugs the kernel fixes by default,
//! each made to happen and shown (kernel/docs/deviations.md says which row is which).

use core::arch::asm;

use user::abi::{PAGE_SIZE, TASK_SIZE};
use user::check::{OrFail, Outcome};
use user::mem::text_end;
use user::{check_eq, say};

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
    let child = user::check::spawn(|| {
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
