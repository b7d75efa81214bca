//! The registers gdb sees for a task, and where they live.
//!
//! - The running task at a stop: the trap frame that stopped the kernel (kernel or user
//!   context). For a ring-0 frame, `esp` is just above the frame (where it was before
//!   the CPU pushed it) and `ss` is the kernel's data segment.
//! - Any other user task: the frame at the top of its task page. Every switched-out user
//!   task entered the kernel from ring 3 (a system call, a fault, the timer), and a new
//!   one starts from a frame built there, so that frame is its user state.
//! - Task 0 (the idle loop) switched out: the `SwitchFrame` at its saved `esp`
//!   (callee-saved registers, `eflags`, and the return address as `eip`; `eax`, `ecx`,
//!   `edx` are not saved and read as 0).
//!
//! User tasks run in segments based at `slot * 64 MiB`, so their `eip` and `esp` are
//! offsets while gdb's memory is linear. gdb is shown `eip` and `esp` as linear
//! addresses (segment base added), so that `$pc`, `$sp`, `x/i $pc`, breakpoints and
//! single steps all agree with memory; every other register is shown raw (a pointer in
//! `eax` is an offset in the task's segment: add the slot base to look at it). Writes
//! undo the translation. The FPU and SSE registers do not exist here (no FPU state is
//! saved) and read as 0.

use core::mem::size_of;

use gdbstub_arch::x86::reg::{X86CoreRegs, X86SegmentRegs};
use mm::addr::slot_base;
use mm::Mm;

use super::memory;
use crate::arch::x86::context::SwitchFrame;
use crate::arch::x86::cpu::EFLAGS_RESERVED_1;
use crate::arch::x86::gdt::{KERNEL_CS, KERNEL_DS};
use crate::arch::x86::phys::KernelPhys;
use crate::arch::x86::trap_entry::{TrapFrame, KERNEL_FRAME_SIZE};

/// Words in a [`TrapFrame`].
pub const FRAME_WORDS: usize = size_of::<TrapFrame>() / 4;
const _: () = assert!(FRAME_WORDS * 4 == size_of::<TrapFrame>());
/// Words in a [`SwitchFrame`].
const SWITCH_WORDS: usize = size_of::<SwitchFrame>() / 4;
const _: () = assert!(SWITCH_WORDS * 4 == size_of::<SwitchFrame>());

/// Selectors live in the low 16 bits of a saved segment word.
const SELECTOR_MASK: u32 = 0xFFFF;

/// EFLAGS bits a debugger may change: the arithmetic flags, TF, IF, DF, RF and AC.
/// IOPL, NT, VM and the reserved bits stay as they are (changing them would make the
/// `iret` fault or leave protected mode).
pub const WRITABLE_EFLAGS: u32 = CF | PF | AF | ZF | SF | TF | IF | DF | OF | RF | AC;
const CF: u32 = 1 << 0;
const PF: u32 = 1 << 2;
const AF: u32 = 1 << 4;
const ZF: u32 = 1 << 6;
const SF: u32 = 1 << 7;
const TF: u32 = 1 << 8;
const IF: u32 = 1 << 9;
const DF: u32 = 1 << 10;
const OF: u32 = 1 << 11;
const RF: u32 = 1 << 16;
const AC: u32 = 1 << 18;

/// A frame's words, lowest address first (the order of its fields).
pub fn frame_words(f: &TrapFrame) -> [u32; FRAME_WORDS] {
    [
        f.gs,
        f.fs,
        f.es,
        f.ds,
        f.edi,
        f.esi,
        f.ebp,
        f.esp_dummy,
        f.ebx,
        f.edx,
        f.ecx,
        f.eax,
        f.vector,
        f.error_code,
        f.eip,
        f.cs,
        f.eflags,
        f.user_esp,
        f.user_ss,
    ]
}

/// The frame whose words these are.
pub fn frame_from_words(w: [u32; FRAME_WORDS]) -> TrapFrame {
    let [gs, fs, es, ds, edi, esi, ebp, esp_dummy, ebx, edx, ecx, eax, vector, error_code, eip, cs, eflags, user_esp, user_ss] =
        w;
    TrapFrame {
        gs,
        fs,
        es,
        ds,
        edi,
        esi,
        ebp,
        esp_dummy,
        ebx,
        edx,
        ecx,
        eax,
        vector,
        error_code,
        eip,
        cs,
        eflags,
        user_esp,
        user_ss,
    }
}

/// The segment base of a frame's code: the slot base for a ring-3 frame, 0 for ring 0.
pub fn segment_base(frame: &TrapFrame, slot: usize) -> u32 {
    if frame.from_user() {
        slot_base(slot).as_u32()
    } else {
        0
    }
}

/// The linear address of a frame's `eip`.
pub fn linear_eip(frame: &TrapFrame, slot: usize) -> u32 {
    segment_base(frame, slot).wrapping_add(frame.eip)
}

/// gdb's view of a trap frame of the task in `slot`; `frame_addr` is where the frame
/// is (it gives `esp` for a ring-0 frame).
pub fn from_frame(frame: &TrapFrame, frame_addr: u32, slot: usize) -> X86CoreRegs {
    let base = segment_base(frame, slot);
    let (ss, esp) = match frame.user_stack() {
        Some((ss, esp)) => (u32::from(ss), base.wrapping_add(esp)),
        None => (
            u32::from(KERNEL_DS),
            frame_addr.wrapping_add(KERNEL_FRAME_SIZE as u32),
        ),
    };
    X86CoreRegs {
        eax: frame.eax,
        ecx: frame.ecx,
        edx: frame.edx,
        ebx: frame.ebx,
        esp,
        ebp: frame.ebp,
        esi: frame.esi,
        edi: frame.edi,
        eip: base.wrapping_add(frame.eip),
        eflags: frame.eflags,
        segments: X86SegmentRegs {
            cs: frame.cs & SELECTOR_MASK,
            ss,
            ds: frame.ds & SELECTOR_MASK,
            es: frame.es & SELECTOR_MASK,
            fs: frame.fs & SELECTOR_MASK,
            gs: frame.gs & SELECTOR_MASK,
        },
        ..X86CoreRegs::default()
    }
}

/// Applies gdb's registers to a trap frame of the task in `slot`. Segment registers are
/// read-only; a ring-0 frame's `esp` is too (the frame sits on that stack).
pub fn apply_to_frame(regs: &X86CoreRegs, frame: &mut TrapFrame, slot: usize) {
    let base = segment_base(frame, slot);
    frame.eax = regs.eax;
    frame.ecx = regs.ecx;
    frame.edx = regs.edx;
    frame.ebx = regs.ebx;
    frame.ebp = regs.ebp;
    frame.esi = regs.esi;
    frame.edi = regs.edi;
    frame.eip = regs.eip.wrapping_sub(base);
    if frame.from_user() {
        frame.user_esp = regs.esp.wrapping_sub(base);
    }
    frame.eflags =
        (frame.eflags & !WRITABLE_EFLAGS) | (regs.eflags & WRITABLE_EFLAGS) | EFLAGS_RESERVED_1;
}

/// Where the user frame of a switched-out user task is: the top of its task page.
pub fn user_frame_addr(task_page_top: u32) -> u32 {
    task_page_top - size_of::<TrapFrame>() as u32
}

/// Reads a trap frame from physical memory.
pub fn read_frame(mm: &Mm<KernelPhys>, addr: u32) -> TrapFrame {
    frame_from_words(read_words::<FRAME_WORDS>(mm, addr))
}

/// Writes a trap frame to physical memory.
pub fn write_frame(addr: u32, frame: &TrapFrame) {
    write_words(addr, &frame_words(frame));
}

fn read_words<const N: usize>(mm: &Mm<KernelPhys>, addr: u32) -> [u32; N] {
    let mut bytes = [0u8; 4];
    core::array::from_fn(|i| {
        mm::PhysMem::read_bytes(&mm.phys, mm::PhysAddr::new(addr + 4 * i as u32), &mut bytes);
        u32::from_le_bytes(bytes)
    })
}

fn write_words(addr: u32, words: &[u32]) {
    for (i, w) in words.iter().enumerate() {
        memory::poke(addr + 4 * i as u32, &w.to_le_bytes());
    }
}

/// Whether `[addr, addr + len)` lies in RAM (a saved `esp` read from a task could be
/// garbage in a corrupted kernel: never read outside RAM because of it).
pub fn in_ram(mm: &Mm<KernelPhys>, addr: u32, len: usize) -> bool {
    (addr as u64 + len as u64) <= u64::from(mm.high_memory())
}

/// gdb's view of task 0 parked in `context::switch` with `saved_esp`.
pub fn from_switch_frame(mm: &Mm<KernelPhys>, saved_esp: u32) -> Option<X86CoreRegs> {
    if !in_ram(mm, saved_esp, size_of::<SwitchFrame>()) {
        return None;
    }
    let [eflags, edi, esi, ebx, ebp, return_address] = read_words::<SWITCH_WORDS>(mm, saved_esp);
    let data = u32::from(KERNEL_DS);
    Some(X86CoreRegs {
        ebx,
        // After `switch` returns: the switch frame popped.
        esp: saved_esp + size_of::<SwitchFrame>() as u32,
        ebp,
        esi,
        edi,
        eip: return_address,
        eflags,
        segments: X86SegmentRegs {
            cs: u32::from(KERNEL_CS),
            ss: data,
            ds: data,
            es: data,
            fs: data,
            gs: data,
        },
        ..X86CoreRegs::default()
    })
}

/// Rewrites the `eflags` word of task 0's switch frame; false when it is not in RAM.
pub fn update_switch_eflags(mm: &Mm<KernelPhys>, saved_esp: u32, f: impl Fn(u32) -> u32) -> bool {
    if !in_ram(mm, saved_esp, size_of::<SwitchFrame>()) {
        return false;
    }
    let [eflags] = read_words::<1>(mm, saved_esp);
    let new = f(eflags);
    if new != eflags {
        write_words(saved_esp, &[new]);
    }
    true
}

/// Applies gdb's registers to task 0's switch frame (what it holds: `ebx`, `esi`, `edi`,
/// `ebp`, `eflags`, and `eip` as the return address).
pub fn apply_to_switch_frame(mm: &Mm<KernelPhys>, regs: &X86CoreRegs, saved_esp: u32) -> bool {
    if !in_ram(mm, saved_esp, size_of::<SwitchFrame>()) {
        return false;
    }
    let [old_eflags, ..] = read_words::<SWITCH_WORDS>(mm, saved_esp);
    let eflags =
        (old_eflags & !WRITABLE_EFLAGS) | (regs.eflags & WRITABLE_EFLAGS) | EFLAGS_RESERVED_1;
    write_words(
        saved_esp,
        &[eflags, regs.edi, regs.esi, regs.ebx, regs.ebp, regs.eip],
    );
    true
}
