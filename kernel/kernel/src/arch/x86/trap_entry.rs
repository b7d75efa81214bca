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
    "trap_common:",
    // Complete the frame: general registers, then segment registers (AT&T syntax so
    // these are 32-bit pushes; Intel syntax in LLVM emits 16-bit ones).
    "    pushal",
    "    pushl %ds",
    "    pushl %es",
    "    pushl %fs",
    "    pushl %gs",
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
    "    call {dispatch}",
    "    addl $4, %esp",
    ".global trap_return",
    ".type trap_return, @function",
    "trap_return:",
    "    popl %gs",
    "    popl %fs",
    "    popl %es",
    "    popl %ds",
    "    popal",
    // Drop the vector and the error code.
    "    addl $8, %esp",
    "    iretl",
    ".size trap_return, . - trap_return",
    ".popsection",
    vector_count = const VECTOR_COUNT,
    error_code_vectors = const ERROR_CODE_VECTORS,
    kernel_ds = const KERNEL_DS,
    dispatch = sym crate::trap::dispatch,
    options(att_syntax)
);
