//! User memory from the kernel: range checks, `verify_area`/`write_verify`, copies.
//!
//! A user pointer is an offset in the task's data segment (base `slot * 64 MiB`, limit
//! 64 MiB), as in 0.11 where the kernel reaches user memory through `fs`. Deviation D9:
//! 0.11 lets the kernel's own access fault a missing page in; this kernel faults it in
//! explicitly (the same `do_no_page`) before touching it, so a page fault in ring 0 is
//! always a kernel bug and is reported as one.

use abi::errno::{E2BIG, EFAULT};
use mm::addr::{LinearAddr, PAGE_SIZE, TASK_SIZE};
use mm::compat::Compat;

use crate::arch::x86::phys::{store_to_user, store_to_user_faulting};
use crate::fault;
use crate::paging::{self, paging};
use crate::syscall::Errno;
use crate::task::current;
use mm::addr::slot_base;

/// The linear address of `[ptr, ptr + len)` in the current task, if the whole range lies
/// inside its segment (0.11's segment limit check, done by the CPU there).
pub fn check_range(ptr: u32, len: u32) -> Result<LinearAddr, Errno> {
    match ptr.checked_add(len) {
        Some(end) if end <= TASK_SIZE => Ok(LinearAddr::new(slot_base(current()).as_u32() + ptr)),
        // D21: 0.11 has no EFAULT; the access past the segment kills the task.
        _ if paging::compat().contains(Compat::D21) => fault::die_past_segment(ptr, len),
        _ => Err(Errno(EFAULT)),
    }
}

/// The pages of `[start, start + len)`, one linear page base at a time.
fn pages(start: LinearAddr, len: u32) -> impl Iterator<Item = LinearAddr> {
    let first = start.page_base().as_u32();
    let end = start.as_u32() + len;
    (first..end)
        .step_by(PAGE_SIZE as usize)
        .map(LinearAddr::new)
}

/// 0.11 `verify_area(addr, size)`: before the kernel writes `[ptr, ptr + len)`, every
/// page is faulted in (D9) and passed through `write_verify`, which breaks copy-on-write
/// because ring 0 would otherwise write straight into the shared frame
/// (`mm::fault::verify_page`). With `compat=D9`, as 0.11: `write_verify` alone.
pub fn verify_area(ptr: u32, len: u32) -> Result<LinearAddr, Errno> {
    let start = check_range(ptr, len)?;
    let d9 = paging::compat().contains(Compat::D9);
    for page in pages(start, len) {
        if d9 {
            fault::write_verify_page(page)?;
        } else {
            fault::verify_page(page)?;
        }
    }
    Ok(start)
}

/// Copies `bytes` to user memory at `ptr`, page by page: `verify_area` on the page, then
/// ring-0 stores through the MMU, as 0.11's `put_fs_byte`. Page by page, because making
/// the next page present may evict this one (swap_out).
pub fn copy_to_user(ptr: u32, bytes: &[u8]) -> Result<(), Errno> {
    let start = check_range(ptr, bytes.len() as u32)?;
    if paging::compat().contains(Compat::D9) {
        return copy_to_user_0_11(ptr, start, bytes);
    }
    let mut done = 0usize;
    while done < bytes.len() {
        let linear = LinearAddr::new(start.as_u32() + done as u32);
        let chunk = ((PAGE_SIZE - linear.page_offset()) as usize).min(bytes.len() - done);
        verify_area(ptr + done as u32, chunk as u32)?;
        // verify_area just made this page present and private, check_range kept it inside
        // the current task's slot, and nothing runs between that and the store (the
        // kernel is not preemptible and the store allocates nothing).
        store_to_user(&paging().mm, linear, &bytes[done..done + chunk])
            .map_err(|_| Errno(EFAULT))?;
        done += chunk;
    }
    Ok(())
}

/// [`copy_to_user`] as 0.11 makes it (D9, `compat=D9`): `verify_area` is `write_verify`
/// alone, and the ring-0 store faults absent pages in itself. When that fault shares
/// the page read-only with another task running the program, the store (which ignores
/// RW: CR0.WP is clear) writes into the other task's page: 0.11's hole.
fn copy_to_user_0_11(ptr: u32, start: LinearAddr, bytes: &[u8]) -> Result<(), Errno> {
    verify_area(ptr, bytes.len() as u32)?;
    // check_range kept the range inside the current task's slot; absent pages fault and
    // are mapped by the page-fault handler (kernel_store marks the store); no lock is
    // held here.
    fault::kernel_store(|| store_to_user_faulting(start, bytes)).map_err(|_| Errno(EFAULT))
}

/// Copies user memory at `ptr` into `out`, faulting pages in as the task would.
pub fn copy_from_user(ptr: u32, out: &mut [u8]) -> Result<(), Errno> {
    let start = check_range(ptr, out.len() as u32)?;
    let mut done = 0usize;
    while done < out.len() {
        let linear = LinearAddr::new(start.as_u32() + done as u32);
        let chunk = ((PAGE_SIZE - linear.page_offset()) as usize).min(out.len() - done);
        fault::touch_for_read(linear.page_base())?;
        let p = paging();
        let phys = p.mm.translate(linear).ok_or(Errno(EFAULT))?;
        mm::PhysMem::read_bytes(&p.mm.phys, phys, &mut out[done..done + chunk]);
        done += chunk;
    }
    Ok(())
}

/// Copies a NUL-terminated string from user memory into `buf`; returns its length
/// (without the NUL). `E2BIG` when no NUL comes within `buf.len()` bytes.
pub fn copy_string_from_user(ptr: u32, buf: &mut [u8]) -> Result<usize, Errno> {
    for i in 0..buf.len() {
        let addr = ptr.checked_add(i as u32).ok_or(Errno(EFAULT))?;
        copy_from_user(addr, &mut buf[i..i + 1])?;
        if buf[i] == 0 {
            return Ok(i);
        }
    }
    Err(Errno(E2BIG))
}
