//! Trap entry: one stub per vector, the common save/restore path, and [`TrapFrame`].
//!
//! Every vector's stub pushes an error code (a 0 when the CPU pushes none) and the vector
//! number, then jumps to `trap_common`, which completes a [`TrapFrame`] on the stack,
//! loads the kernel's data segments and calls `crate::trap::dispatch(&mut TrapFrame)`.
//! When `dispatch` returns, `trap_return` pops the (possibly modified) frame and `iret`s,
//! to ring 3 if the frame's `cs` says so. A new task's kernel stack can start at
//! `trap_return` too (see [`super::context::prepare_new_stack`]).

use core::arch::global_asm;
use core::mem::{offset_of, size_of};

use super::cpu;
use super::gdt::{KERNEL_DS, USER_CS, USER_DS};

/// Number of IDT vectors.
pub const VECTOR_COUNT: usize = 256;

/// Vectors for which the CPU pushes an error code: #DF 8, #TS 10, #NP 11, #SS 12,
/// #GP 13, #PF 14, #AC 17, #CP 21, #VC 29, #SX 30.
pub const ERROR_CODE_VECTORS: u32 = (1 << 8)
    | (1 << 10)
    | (1 << 11)
    | (1 << 12)
    | (1 << 13)
    | (1 << 14)
    | (1 << 17)
    | (1 << 21)
    | (1 << 29)
    | (1 << 30);

/// Whether the CPU pushes an error code for exception `vector`.
pub const fn has_error_code(vector: u32) -> bool {
    vector < u32::BITS && ERROR_CODE_VECTORS & (1 << vector) != 0
}

/// Low two bits of a selector: the requested/current privilege level.
const RPL_MASK: u32 = 3;
/// Ring 3.
const USER_RPL: u32 = 3;
/// Selectors are 16 bits; `pushl %ds` may leave the upper half undefined on some CPUs.
const SELECTOR_MASK: u32 = 0xFFFF;

/// The registers saved on a trap, lowest address first (the layout the entry code
/// builds: segment pushes, `pushal`, the stub's two words, then what the CPU pushed).
///
/// `user_esp`/`user_ss` exist on the stack only when the trap came from ring 3
/// (`cs & 3 == 3`); for a trap from ring 0 those two words belong to the interrupted
/// kernel code and must not be read or written. Segment fields hold a selector in the
/// low 16 bits (the accessors mask the rest).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TrapFrame {
    pub gs: u32,
    pub fs: u32,
    pub es: u32,
    pub ds: u32,
    pub edi: u32,
    pub esi: u32,
    pub ebp: u32,
    /// The `esp` that `pushal` saved (points at `ebx`'s slot); ignored by `popal`.
    pub esp_dummy: u32,
    pub ebx: u32,
    pub edx: u32,
    pub ecx: u32,
    pub eax: u32,
    /// The IDT vector (pushed by the stub).
    pub vector: u32,
    /// The CPU's error code, or 0 for vectors without one.
    pub error_code: u32,
    pub eip: u32,
    pub cs: u32,
    pub eflags: u32,
    /// Only valid when [`TrapFrame::from_user`].
    pub user_esp: u32,
    /// Only valid when [`TrapFrame::from_user`].
    pub user_ss: u32,
}

// The assembly below depends on this layout.
const _: () = assert!(size_of::<TrapFrame>() == 19 * 4);
const _: () = assert!(offset_of!(TrapFrame, edi) == 16);
const _: () = assert!(offset_of!(TrapFrame, vector) == 48);
const _: () = assert!(offset_of!(TrapFrame, eip) == 56);
const _: () = assert!(offset_of!(TrapFrame, user_ss) == 72);

/// Bytes of a frame from a ring-0 trap (no `user_esp`/`user_ss`).
pub const KERNEL_FRAME_SIZE: usize = offset_of!(TrapFrame, user_esp);

impl TrapFrame {
    /// A frame that `iret`s to ring 3 at `eip` with stack `esp`, interrupts enabled,
    /// every data segment = [`USER_DS`] and code = [`USER_CS`] (the task's LDT must be
    /// loaded). General registers are 0.
    pub fn new_user(eip: u32, esp: u32) -> TrapFrame {
        let data = u32::from(USER_DS);
        TrapFrame {
            gs: data,
            fs: data,
            es: data,
            ds: data,
            eip,
            cs: u32::from(USER_CS),
            eflags: cpu::EFLAGS_IF | cpu::EFLAGS_RESERVED_1,
            user_esp: esp,
            user_ss: data,
            ..TrapFrame::default()
        }
    }

    /// Whether the trap interrupted ring 3.
    // The name is part of the interface the kernel was written against; it is a
    // question about the frame, not a conversion.
    #[allow(clippy::wrong_self_convention)]
    pub fn from_user(&self) -> bool {
        self.cs & RPL_MASK == USER_RPL
    }

    /// The user stack `(ss, esp)` when the trap came from ring 3.
    pub fn user_stack(&self) -> Option<(u16, u32)> {
        self.from_user()
            .then_some(((self.user_ss & SELECTOR_MASK) as u16, self.user_esp))
    }

    /// The stack `(ss, esp)` of the interrupted code: the user stack for a ring-3 trap;
    /// for a ring-0 trap, the address just above this frame's `eflags`, which is where
    /// `esp` was before the CPU pushed the frame. That second case is only meaningful
    /// when `self` is the frame on the stack, not a copy.
    pub fn interrupted_stack(&self) -> (u16, u32) {
        match self.user_stack() {
            Some(stack) => stack,
            None => (
                KERNEL_DS,
                self as *const TrapFrame as u32 + KERNEL_FRAME_SIZE as u32,
            ),
        }
    }

    /// `cs` as a 16-bit selector.
    pub fn code_selector(&self) -> u16 {
        (self.cs & SELECTOR_MASK) as u16
    }
}

unsafe extern "C" {
    /// The pop-and-`iret` tail of the trap path (defined below).
    fn trap_return();
    /// Entry address of each vector's stub (defined below).
    static trap_stub_table: [u32; VECTOR_COUNT];
}

/// Address of `trap_return`: `esp` must point at a [`TrapFrame`] when it is reached.
pub fn trap_return_address() -> u32 {
    trap_return as *const () as usize as u32
}

/// Entry address of the stub for `vector`.
pub fn stub_address(vector: u8) -> u32 {
    // SAFETY: the table is a fully initialised, read-only array of VECTOR_COUNT words
    // emitted by the assembly below; `vector` < 256 indexes it.
    unsafe { trap_stub_table[usize::from(vector)] }
}

/// Where a [`TrapFrame`] field at `field_offset` lies relative to the canonical frame
/// address of `trap_common`'s unwind information (the frame's start + [`KERNEL_FRAME_SIZE`]).
const fn cfa_offset(field_offset: usize) -> isize {
    field_offset as isize - KERNEL_FRAME_SIZE as isize
}

global_asm!(
    // The table of stub addresses, filled one entry per stub below.
    ".pushsection .rodata.trap_stub_table, \"a\"",
    ".balign 4",
    ".global trap_stub_table",
    "trap_stub_table:",
    ".popsection",
    "",
    // One stub per vector. `trap_vector` counts as the assembler repeats the block.
    ".set trap_vector, 0",
    ".rept {vector_count}",
    ".pushsection .text.trap_stubs, \"ax\"",
    "1:",
    // Pad frames without a CPU error code with a 0 so every frame has the same shape.
    ".if trap_vector < 32",
    ".if (({error_code_vectors} >> trap_vector) & 1) == 0",
    "    pushl $0",
    ".endif",
    ".else",
    "    pushl $0",
    ".endif",
    "    pushl $trap_vector",
    "    jmp trap_common",
    ".popsection",
    ".pushsection .rodata.trap_stub_table, \"a\"",
    "    .long 1b",
    ".popsection",
    ".set trap_vector, trap_vector + 1",
    ".endr",
    "",
    ".pushsection .text.trap_stubs, \"ax\"",
    // Call-frame information, so that gdb unwinds through a trap (`bt`, `finish`, `up`
    // from a breakpoint in a fault or system call). The canonical frame address (CFA) is
    // the interrupted code's esp when the trap came from ring 0: the address just past
    // the CPU's eflags, the frame's start + KERNEL_FRAME_SIZE. At entry esp points at the
    // vector, so CFA = esp + 20 there, and each push below moves it; every saved
    // register is at its TrapFrame offset from the frame's start ({cfa_*}: relative to
    // the CFA).
    "trap_common:",
    "    .cfi_startproc simple",
    "    .cfi_def_cfa %esp, {entry_cfa}",
    // The interrupted eip, cs and eflags, where the CPU pushed them.
    "    .cfi_offset %eip, {cfa_eip}",
    "    .cfi_offset %cs, {cfa_cs}",
    "    .cfi_offset %eflags, {cfa_eflags}",
    // Complete the frame: general registers, then segment registers (AT&T syntax so
    // these are 32-bit pushes; Intel syntax in LLVM emits 16-bit ones).
    "    pushal",
    "    .cfi_adjust_cfa_offset 32",
    "    .cfi_offset %eax, {cfa_eax}",
    "    .cfi_offset %ecx, {cfa_ecx}",
    "    .cfi_offset %edx, {cfa_edx}",
    "    .cfi_offset %ebx, {cfa_ebx}",
    "    .cfi_offset %ebp, {cfa_ebp}",
    "    .cfi_offset %esi, {cfa_esi}",
    "    .cfi_offset %edi, {cfa_edi}",
    "    pushl %ds",
    "    .cfi_adjust_cfa_offset 4",
    "    .cfi_offset %ds, {cfa_ds}",
    "    pushl %es",
    "    .cfi_adjust_cfa_offset 4",
    "    .cfi_offset %es, {cfa_es}",
    "    pushl %fs",
    "    .cfi_adjust_cfa_offset 4",
    "    .cfi_offset %fs, {cfa_fs}",
    "    pushl %gs",
    "    .cfi_adjust_cfa_offset 4",
    "    .cfi_offset %gs, {cfa_gs}",
    // The interrupted code's segments may be user ones: use the kernel's.
    "    movl ${kernel_ds}, %eax",
    "    movl %eax, %ds",
    "    movl %eax, %es",
    "    movl %eax, %fs",
    "    movl %eax, %gs",
    // The Rust ABI expects DF = 0.
    "    cld",
    // dispatch(frame: &mut TrapFrame): the frame starts at esp.
    "    movl %esp, %eax",
    "    pushl %eax",
    "    .cfi_adjust_cfa_offset 4",
    // Two call sites, so that each has its own unwind rule. From ring 0 the caller is
    // the interrupted kernel code, restored from the frame as described above. From
    // ring 3 it is user code in another segment, with another stack, where the kernel's
    // symbols mean nothing: there the return address is undefined, which tells gdb that
    // this frame is the outermost one (`bt` ends at trap_common, with no bogus frames).
    "    testl ${rpl_mask}, {cs_offset}+4(%esp)",
    "    jnz 2f",
    "    call {dispatch}",
    "    jmp 3f",
    "2:",
    "    .cfi_undefined %eip",
    "    call {dispatch}",
    "3:",
    "    .cfi_offset %eip, {cfa_eip}",
    "    addl $4, %esp",
    "    .cfi_adjust_cfa_offset -4",
    ".global trap_return",
    ".type trap_return, @function",
    // A new task's stack also starts here; the rules above hold, as esp points at a
    // complete frame.
    "trap_return:",
    "    popl %gs",
    "    .cfi_adjust_cfa_offset -4",
    "    .cfi_same_value %gs",
    "    popl %fs",
    "    .cfi_adjust_cfa_offset -4",
    "    .cfi_same_value %fs",
    "    popl %es",
    "    .cfi_adjust_cfa_offset -4",
    "    .cfi_same_value %es",
    "    popl %ds",
    "    .cfi_adjust_cfa_offset -4",
    "    .cfi_same_value %ds",
    "    popal",
    "    .cfi_adjust_cfa_offset -32",
    "    .cfi_same_value %eax",
    "    .cfi_same_value %ecx",
    "    .cfi_same_value %edx",
    "    .cfi_same_value %ebx",
    "    .cfi_same_value %ebp",
    "    .cfi_same_value %esi",
    "    .cfi_same_value %edi",
    // Drop the vector and the error code.
    "    addl $8, %esp",
    "    .cfi_adjust_cfa_offset -8",
    "    iretl",
    ".size trap_return, . - trap_return",
    "    .cfi_endproc",
    ".popsection",
    vector_count = const VECTOR_COUNT,
    error_code_vectors = const ERROR_CODE_VECTORS,
    kernel_ds = const KERNEL_DS,
    entry_cfa = const KERNEL_FRAME_SIZE - offset_of!(TrapFrame, vector),
    cfa_eip = const cfa_offset(offset_of!(TrapFrame, eip)),
    cfa_cs = const cfa_offset(offset_of!(TrapFrame, cs)),
    cfa_eflags = const cfa_offset(offset_of!(TrapFrame, eflags)),
    cfa_eax = const cfa_offset(offset_of!(TrapFrame, eax)),
    cfa_ecx = const cfa_offset(offset_of!(TrapFrame, ecx)),
    cfa_edx = const cfa_offset(offset_of!(TrapFrame, edx)),
    cfa_ebx = const cfa_offset(offset_of!(TrapFrame, ebx)),
    cfa_ebp = const cfa_offset(offset_of!(TrapFrame, ebp)),
    cfa_esi = const cfa_offset(offset_of!(TrapFrame, esi)),
    cfa_edi = const cfa_offset(offset_of!(TrapFrame, edi)),
    cfa_ds = const cfa_offset(offset_of!(TrapFrame, ds)),
    cfa_es = const cfa_offset(offset_of!(TrapFrame, es)),
    cfa_fs = const cfa_offset(offset_of!(TrapFrame, fs)),
    cfa_gs = const cfa_offset(offset_of!(TrapFrame, gs)),
    rpl_mask = const RPL_MASK,
    cs_offset = const offset_of!(TrapFrame, cs),
    dispatch = sym crate::trap::dispatch,
    options(att_syntax)
);
