//! `execve` and the first task: 0.11 `do_execve` without its eager argument pages.
//!
//! `execve` releases the old slot with `free_page_tables` and maps nothing: the first
//! instruction fetch faults, and `do_no_page` loads (or shares) each page on first touch.

use abi::errno::{EAGAIN, EINVAL, ENOENT};
use abi::{MAX_NAME_LEN, USER_STACK_TOP};
use mm::addr::{slot_base, PAGE_SIZE, TASK_SIZE};
use mm::process;
use spin::Once;

use super::{tasks, Name, Task, TaskState};
use crate::arch::x86::{context, gdt, trap_entry::TrapFrame};
use crate::paging::{paging, Paging};
use crate::syscall::Errno;
use crate::{kevent, uaccess};

/// The program image (the boot module), parsed once at boot.
pub static IMAGE: Once<image::Image<'static>> = Once::new();

/// The program called `name`.
pub fn find_program(name: &str) -> Option<image::Program<'static>> {
    IMAGE.get()?.find(name)
}

/// 0.11 `change_ldt(text_size, page)`: the LDT of the task in `slot` running a program
/// whose text ends at `end_code`: the code segment covers the text rounded up to a page
/// ("code_limit = text_size+PAGE_SIZE -1; code_limit &= 0xFFFFF000"), so jumping past it
/// raises #GP; the data segment covers the whole 64 MiB slot.
pub(super) fn change_ldt(slot: usize, end_code: u32) -> gdt::Ldt {
    gdt::user_ldt(
        slot_base(slot).as_u32(),
        end_code.next_multiple_of(PAGE_SIZE),
        TASK_SIZE,
    )
}

/// Points `task` (in `slot`) at `program`: 0.11 sets `end_code`, `end_data`, `brk`,
/// `start_stack`, and the segment limits (`change_ldt`).
fn load_program(task: &mut Task, slot: usize, program: image::Program<'static>, arg: &[u8]) {
    task.name = Name::new(program.name);
    task.end_code = program.end_code;
    task.ldt = change_ldt(slot, program.end_code);
    task.end_data = program.end_data;
    task.brk = program.bss_end.next_multiple_of(PAGE_SIZE);
    task.start_stack = USER_STACK_TOP;
    task.program = Some(program);
    task.set_arg(arg);
    task.faults = Default::default();
}

/// `execve(name, arg)` for the current task; on success the trap frame starts the new
/// program at its entry with an empty stack.
pub fn sys_execve(frame: &mut TrapFrame, name_ptr: u32, arg_ptr: u32) -> Result<u32, Errno> {
    let mut name_buf = [0u8; MAX_NAME_LEN + 1];
    let name_len = uaccess::copy_string_from_user(name_ptr, &mut name_buf)?;
    let name = core::str::from_utf8(&name_buf[..name_len]).map_err(|_| Errno(EINVAL))?;
    let mut arg_buf = [0u8; abi::MAX_ARG_LEN + 1];
    let arg_len = if arg_ptr == 0 {
        0
    } else {
        uaccess::copy_string_from_user(arg_ptr, &mut arg_buf)?
    };
    let program = find_program(name).ok_or(Errno(ENOENT))?;
    // The point of no return: the old program's memory goes. The failure site "execve"
    // is decided first, like a real allocation failure of 0.11's do_execve (its
    // copy_strings pages): an injected failure changes nothing.
    let slot = super::current();
    let freed = {
        let mut p = paging();
        let Paging { mm, policy } = &mut *p;
        match process::do_execve(mm, slot, policy) {
            Ok(freed) => freed,
            Err(e) => {
                drop(p);
                kevent!("exec: {e}: ENOMEM");
                return Err(Errno(abi::errno::ENOMEM));
            }
        }
    };
    let mut t = tasks();
    let task = t.get_mut(slot);
    let old = task.name;
    load_program(task, slot, program, &arg_buf[..arg_len]);
    let pid = task.pid;
    drop(t);
    *frame = TrapFrame::new_user(program.entry, USER_STACK_TOP);
    kevent!(
        "exec: pid {pid} ({} -> {}): freed {} pages and {} page tables; entry {:#x}, end_code {:#x}, end_data {:#x}, nothing mapped yet",
        old.as_str(),
        program.name,
        freed.pages,
        freed.page_tables,
        program.entry,
        program.end_code,
        program.end_data
    );
    Ok(0)
}

/// Creates task 1 (pid 1) running `name` with `arg`: 0.11 forks init from task 0; this
/// kernel builds it directly in slot 1, with nothing mapped (D15).
pub fn spawn_init(name: &str, arg: &[u8]) -> Result<(), Errno> {
    let program = find_program(name).ok_or(Errno(ENOENT))?;
    let mut t = tasks();
    let (slot, pid) = t.find_empty_process().ok_or(Errno(EAGAIN))?;
    let page = {
        let mut p = paging();
        let Paging { mm, .. } = &mut *p;
        // Not a failure site: creating task 1 is part of booting, which injected failures
        // (fail.fork_task_struct= on the command line) must not prevent.
        let page = process::get_task_page(mm, &mut mm::NeverFail).map_err(|_| Errno(EAGAIN))?;
        super::plant_stack_canary(&mut mm.phys, page);
        page
    };
    let mut task = t.get(0).clone();
    task.pid = pid;
    task.state = TaskState::Runnable;
    task.parent = 0;
    task.task_page = Some(page);
    task.counter = super::sched::QUANTUM;
    load_program(&mut task, slot, program, arg);
    let frame = TrapFrame::new_user(program.entry, USER_STACK_TOP);
    {
        let mut p = paging();
        let start_mem = p.mm.mem_map.start_mem();
        context::prepare_task_stack(&mut p.mm.phys, start_mem, slot, page, &frame);
    }
    t.slots[slot] = Some(task);
    kevent!(
        "init: pid {pid} runs '{name}' in slot {slot} (linear {:#010x}), nothing mapped yet",
        slot_base(slot).as_u32()
    );
    Ok(())
}
