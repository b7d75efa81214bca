//! System calls through `int 0x80` (0.11 `system_call.s` + `sys_call_table`): the number
//! in `eax`, arguments in `ebx`, `ecx`, `edx`, the result (or `-errno`) back in `eax`.

use abi::errno::{EFAULT, EINVAL, ENOSYS, EPERM};
use abi::{debug_op, nr, MemInfo, PageInfo};
use mm::addr::{slot_base, LinearAddr, PDE_SPAN, TASK_SIZE};
use mm::memory::FreeTablesError;

use crate::arch::x86::trap_entry::TrapFrame;
use crate::console;
use crate::kcheck;
use crate::paging::paging;
use crate::task::{current, exec, exit, fork, sched, tasks, TaskState};
use crate::uaccess;

/// An error number (positive), returned to user mode negated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Errno(pub i32);

/// Handles the system call in `frame` and stores its result in `frame.eax`.
pub fn dispatch(frame: &mut TrapFrame) {
    let (number, a, b, c) = (frame.eax, frame.ebx, frame.ecx, frame.edx);
    let result = match number {
        nr::EXIT => exit::do_exit(abi::wait_status::exited(a)),
        nr::FORK => fork::sys_fork(frame),
        nr::WRITE => sys_write(a, b, c),
        nr::WAITPID => exit::sys_waitpid(a as i32, b, c),
        nr::EXECVE => exec::sys_execve(frame, a, b),
        nr::GETPID => Ok(tasks().get(current()).pid),
        nr::KILL => exit::sys_kill(a),
        nr::BRK => Ok(sys_brk(a)),
        nr::GETPPID => Ok(getppid()),
        nr::YIELD => {
            sched::schedule();
            Ok(0)
        }
        nr::SLEEP => sys_sleep(a),
        nr::GETARG => sys_getarg(a, b),
        nr::MEMINFO => sys_meminfo(a),
        nr::PAGEINFO => sys_pageinfo(a, b),
        nr::CHECKMM => Ok(kcheck::run("checkmm syscall").mismatches),
        nr::DEBUG => sys_debug(a, b),
        _ => Err(Errno(ENOSYS)),
    };
    // execve replaced the whole frame: its eax must be 0 (the new program's start).
    frame.eax = match result {
        Ok(value) => value,
        Err(Errno(e)) => (-e) as u32,
    };
}

/// `write(fd, buf, len)`: fds 1 and 2 are the console.
fn sys_write(fd: u32, buf: u32, len: u32) -> Result<u32, Errno> {
    if fd != 1 && fd != 2 {
        return Err(Errno(abi::errno::EINVAL));
    }
    uaccess::check_range(buf, len)?;
    let mut chunk = [0u8; 128];
    let mut done = 0;
    while done < len {
        let n = (len - done).min(chunk.len() as u32);
        uaccess::copy_from_user(buf + done, &mut chunk[..n as usize])?;
        console::write_bytes(&chunk[..n as usize]);
        done += n;
    }
    Ok(len)
}

/// 0.11 `sys_brk(end_data_seg)`: moves the break when it stays between `end_code` and
/// 16 KiB below the stack; always returns the (possibly unchanged) break. Like 0.11 it
/// frees nothing when the break shrinks.
fn sys_brk(end: u32) -> u32 {
    let mut t = tasks();
    let task = t.get_mut(current());
    const STACK_GAP: u32 = 16384;
    if end >= task.end_code && end < task.start_stack - STACK_GAP {
        task.brk = end;
    }
    task.brk
}

fn getppid() -> u32 {
    let t = tasks();
    let parent = t.get(current()).parent;
    t.slots[parent].as_ref().map_or(0, |p| p.pid)
}

/// `sleep(ticks)`.
fn sys_sleep(ticks: u32) -> Result<u32, Errno> {
    if ticks == 0 {
        return Ok(0);
    }
    {
        let mut t = tasks();
        t.get_mut(current()).wake_at = sched::ticks() + u64::from(ticks);
    }
    sched::sleep_in(TaskState::Sleeping);
    exit::exit_if_killed();
    Ok(0)
}

/// `getarg(buf, len)`: copies the argument string (cut to `len`), returns its full length.
fn sys_getarg(buf: u32, len: u32) -> Result<u32, Errno> {
    let mut arg = [0u8; abi::MAX_ARG_LEN];
    let n = {
        let t = tasks();
        let a = t.get(current()).arg();
        arg[..a.len()].copy_from_slice(a);
        a.len()
    };
    let copy = n.min(len as usize);
    uaccess::copy_to_user(buf, &arg[..copy])?;
    Ok(n as u32)
}

/// `meminfo(ptr)`.
fn sys_meminfo(ptr: u32) -> Result<u32, Errno> {
    uaccess::check_range(ptr, core::mem::size_of::<MemInfo>() as u32)?;
    let slot = current();
    let (faults, nr_tasks) = {
        let t = tasks();
        (t.get(slot).faults, t.user_tasks().count() as u32)
    };
    let info = {
        let p = paging();
        let usage = p.mm.slot_usage(slot);
        let map = &p.mm.mem_map;
        MemInfo {
            paging_frames: map.nr_paging_frames() as u32,
            free_frames: map.nr_free() as u32,
            shared_frames: map
                .counts()
                .iter()
                .filter(|&&c| c > 1 && c != mm::mem_map::USED)
                .count() as u32,
            task_pages: usage.pages,
            task_page_tables: usage.page_tables,
            nr_tasks,
            faults,
            swap_slots: p
                .mm
                .swap
                .as_ref()
                .map_or(0, |s| s.nr_slots().saturating_sub(1)),
            swap_free: p.mm.swap.as_ref().map_or(0, |s| s.nr_free()),
            task_swapped: usage.swapped,
        }
    };
    uaccess::copy_to_user(ptr, &info.to_bytes())?;
    Ok(0)
}

/// `pageinfo(addr, ptr)`: a software walk of the caller's own offset `addr`.
fn sys_pageinfo(addr: u32, ptr: u32) -> Result<u32, Errno> {
    if addr >= TASK_SIZE {
        return Err(Errno(EFAULT));
    }
    uaccess::check_range(ptr, core::mem::size_of::<PageInfo>() as u32)?;
    let linear = LinearAddr::new(slot_base(current()).as_u32() + addr);
    let walk = paging().mm.walk(linear);
    let mut info = PageInfo {
        linear: linear.as_u32(),
        ..PageInfo::default()
    };
    use abi::page_flags as pf;
    if walk.pde.is_present() {
        info.flags |= pf::TABLE_PRESENT;
    }
    if let Some(pte) = walk.pte {
        info.pte = pte.raw();
        let flags = pte.flags();
        for (bit, flag) in [
            (mm::EntryFlags::PRESENT, pf::PRESENT),
            (mm::EntryFlags::WRITABLE, pf::WRITABLE),
            (mm::EntryFlags::USER, pf::USER),
            (mm::EntryFlags::ACCESSED, pf::ACCESSED),
            (mm::EntryFlags::DIRTY, pf::DIRTY),
        ] {
            if flags.contains(bit) {
                info.flags |= flag;
            }
        }
    }
    if let Some((frame, count)) = walk.frame {
        info.frame = frame.as_u32();
        info.map_count = count.map_or(0, u32::from);
    }
    uaccess::copy_to_user(ptr, &info.to_bytes())?;
    Ok(0)
}

/// `debug(op, arg)`: kernel-side operations for the in-QEMU tests.
fn sys_debug(op: u32, arg: u32) -> Result<u32, Errno> {
    match op {
        debug_op::FREE_PAGE_TABLES => {
            let from = LinearAddr::new(arg);
            let result = paging().mm.free_page_tables(from, PDE_SPAN);
            if let Ok(freed) = &result {
                crate::kevent!(
                    "free_page_tables({from}, 4 MiB): freed {} pages, {} page tables; {} references could not be freed{}",
                    freed.pages,
                    freed.page_tables,
                    freed.bad_frees,
                    if from.as_u32() < TASK_SIZE {
                        " (the kernel's own slot: compat=D1)"
                    } else {
                        ""
                    }
                );
            }
            result.map(|_| 0).map_err(|e| {
                crate::kevent!("free_page_tables({from}, 4 MiB) refused: {e}");
                // The guard (D1) is a permission matter; alignment and range are arguments.
                Errno(if matches!(e, FreeTablesError::KernelMemory(_)) {
                    EPERM
                } else {
                    EINVAL
                })
            })
        }
        debug_op::FREE_FRAMES => Ok(paging().mm.mem_map.nr_free() as u32),
        debug_op::TICKS => Ok(sched::ticks() as u32),
        debug_op::FAIL_NTH => {
            let mut injector = crate::paging::injector();
            let task = injector.task_mut(current()).map_err(|_| Errno(EINVAL))?;
            Ok(core::mem::replace(&mut task.fail_nth, arg))
        }
        debug_op::MAKE_IT_FAIL => {
            let mut injector = crate::paging::injector();
            let task = injector.task_mut(current()).map_err(|_| Errno(EINVAL))?;
            Ok(u32::from(core::mem::replace(
                &mut task.make_it_fail,
                arg != 0,
            )))
        }
        debug_op::KERNEL_CRASH => crash_on_purpose(arg),
        debug_op::SWAP_FAULTS => {
            let mut p = paging();
            let faults = &mut p.mm.phys.swap_faults;
            let old = (u32::from(faults.fail_reads) * abi::swap_fault::FAIL_READS)
                | (u32::from(faults.fail_writes) * abi::swap_fault::FAIL_WRITES)
                | (u32::from(faults.once) * abi::swap_fault::ONCE);
            faults.fail_reads = arg & abi::swap_fault::FAIL_READS != 0;
            faults.fail_writes = arg & abi::swap_fault::FAIL_WRITES != 0;
            faults.once = arg & abi::swap_fault::ONCE != 0;
            crate::kevent!(
                "swap: injected failures now: reads {}, writes {}",
                faults.fail_reads,
                faults.fail_writes
            );
            Ok(old)
        }
        debug_op::SWAP_STATS => {
            let p = paging();
            let c = p.mm.swap.as_ref().map(|s| s.counters).unwrap_or_default();
            let bytes = p.mm.phys.swap_bytes_read + p.mm.phys.swap_bytes_written;
            match arg {
                0 => Ok(c.written_out as u32),
                1 => Ok(c.dropped as u32),
                2 => Ok(c.read_in as u32),
                3 => Ok(bytes as u32),
                _ => Err(Errno(EINVAL)),
            }
        }
        debug_op::KERNEL_WRITE => {
            let value = 0x5157_0000 | (arg & 0xffff);
            uaccess::copy_to_user(arg & !3, &value.to_le_bytes())?;
            Ok(0)
        }
        debug_op::CALC_MEM => {
            let p = paging();
            // The console is the kernel's printk; the lines go out as 0.11 prints them.
            let _ = p.mm.calc_mem(&mut Printk);
            Ok(p.mm.mem_map.nr_free() as u32)
        }
        debug_op::VERIFY_AREA => uaccess::verify_area(arg & !3, 4).map(|_| 0),
        debug_op::BENCH_WARM => crate::bench::warm(),
        debug_op::BENCH_ALLOC => crate::bench::alloc(arg),
        debug_op::BENCH_UART => crate::bench::uart(arg),
        debug_op::BENCH_MARK => crate::bench::mark(arg),
        _ => Err(Errno(EINVAL)),
    }
}

/// The console as a `fmt::Write`: 0.11's `printk`, for functions that print.
struct Printk;

impl core::fmt::Write for Printk {
    fn write_str(&mut self, text: &str) -> core::fmt::Result {
        console::write_bytes(text.as_bytes());
        Ok(())
    }
}

/// `debug(KERNEL_CRASH, kind)`: a kernel bug on demand, in this task's system call.
fn crash_on_purpose(kind: u32) -> Result<u32, Errno> {
    use crate::arch::x86::selftest;
    use abi::crash_kind;
    /// Page-directory entry 1023 maps only slot 63's last 4 MiB: unmapped unless a task
    /// lives in slot 63.
    const UNMAPPED: u32 = 0xFFFF_F000;
    crate::println!("debug: crashing the kernel on purpose (kind {kind})");
    match kind {
        crash_kind::INVALID_OPCODE => selftest::invalid_opcode(),
        crash_kind::PAGE_FAULT => selftest::read_linear(UNMAPPED),
        crash_kind::GENERAL_PROTECTION => selftest::general_protection(),
        crash_kind::DOUBLE_FAULT => selftest::stack_overflow_at(UNMAPPED),
        crash_kind::PANIC => panic!("crash requested through debug(KERNEL_CRASH, {kind})"),
        crash_kind::STACK_OVERFLOW => {
            // 6 KiB of frames on a 4 KiB stack: the canary at the bottom is overwritten.
            core::hint::black_box(recurse(24));
            crate::task::check_stack_canary();
            Err(Errno(EINVAL))
        }
        _ => Err(Errno(EINVAL)),
    }
}

/// Uses about 256 bytes of kernel stack per level.
#[inline(never)]
fn recurse(depth: u32) -> u32 {
    let mut frame = [depth as u8; 256];
    core::hint::black_box(&mut frame);
    if depth == 0 {
        0
    } else {
        recurse(depth - 1).wrapping_add(u32::from(frame[depth as usize % 256]))
    }
}
