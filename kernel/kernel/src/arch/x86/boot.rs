//! Multiboot v1 header and `_start`: zero .bss, set up the boot stack, call `kernel_main`.
//!
//! QEMU (`-kernel`) or GRUB enters `_start` in 32-bit protected mode with flat segments,
//! paging off, interrupts off, `eax` = the multiboot magic and `ebx` = the physical
//! address of the multiboot information block. `_start` then calls `boot_entry`, which
//! calls the kernel's `main.rs` `kernel_main(magic, info) -> !`.

use core::arch::global_asm;

use super::{stack_top, HwCell, Stack};

/// The magic a multiboot v1 header starts with.
const HEADER_MAGIC: u32 = 0x1BAD_B002;
/// Header flag 0: load modules (`-initrd`) on page boundaries.
const FLAG_PAGE_ALIGN_MODULES: u32 = 1 << 0;
/// Header flag 1: provide `mem_lower`/`mem_upper` and the memory map.
const FLAG_MEMORY_INFO: u32 = 1 << 1;
/// No flag 16: the kernel is an ELF, so the loader takes addresses from its program
/// headers and the a.out address fields are absent.
const HEADER_FLAGS: u32 = FLAG_PAGE_ALIGN_MODULES | FLAG_MEMORY_INFO;
/// magic + flags + checksum must be 0 (mod 2^32).
const HEADER_CHECKSUM: u32 = 0u32.wrapping_sub(HEADER_MAGIC.wrapping_add(HEADER_FLAGS));

/// Size of the stack `kernel_main` starts on (later task 0's kernel stack, if the kernel
/// wants it so). Unoptimised (`cfg(unoptimized)`, the stepping build) every copy of the
/// paging state `Mm` (23 KiB) made while booting is a real one: the boot uses about
/// 330 KiB of stack there.
pub const BOOT_STACK_SIZE: usize = if cfg!(unoptimized) {
    512 * 1024
} else {
    128 * 1024
};

/// The boot stack, in .bss.
static BOOT_STACK: HwCell<Stack<BOOT_STACK_SIZE>> = HwCell::new(Stack::new());

/// Lowest address of the boot stack.
pub fn boot_stack_bottom() -> u32 {
    BOOT_STACK.get() as u32
}

/// Top (initial `esp`, exclusive end) of the boot stack.
pub fn boot_stack_top() -> u32 {
    stack_top(&BOOT_STACK)
}

unsafe extern "C" {
    /// First byte of the kernel image (linker.ld).
    static __kernel_start: u8;
    /// End of .bss, page-aligned: the first byte after the kernel image (linker.ld).
    static __kernel_end: u8;
}

/// Physical address of the start of the kernel image (1 MiB).
pub fn kernel_start() -> u32 {
    // Only the address of the linker symbol is taken, never its contents.
    core::ptr::addr_of!(__kernel_start) as u32
}

/// Physical address just past the kernel image, .bss and boot stack included
/// (page-aligned): frames from here up are free, except the loader's modules.
pub fn kernel_end() -> u32 {
    // Only the address of the linker symbol is taken, never its contents.
    core::ptr::addr_of!(__kernel_end) as u32
}

global_asm!(
    // The header: three words, 4-byte aligned, in the first 8 KiB of the file
    // (linker.ld puts .multiboot first).
    ".pushsection .multiboot, \"a\"",
    ".balign 4",
    ".long {magic}",
    ".long {flags}",
    ".long {checksum}",
    ".popsection",
    "",
    ".pushsection .text.boot, \"ax\"",
    ".global _start",
    ".type _start, @function",
    "_start:",
    "    cli",
    "    cld",
    // rep stosb needs eax: keep the magic in edx (ebx, the info pointer, is untouched).
    "    movl %eax, %edx",
    // Zero .bss ourselves: a loader other than QEMU might not, and Rust statics
    // initialised to zero live there. The info block is not in .bss (the loader places
    // it outside the loaded image).
    "    movl $__bss_start, %edi",
    "    movl $__kernel_end, %ecx",
    "    subl %edi, %ecx",
    "    xorl %eax, %eax",
    "    rep stosb",
    "    movl ${stack} + {stack_size}, %esp",
    // ebp = 0 ends any frame-pointer walk here.
    "    xorl %ebp, %ebp",
    // A known EFLAGS: IF = 0, DF = 0, NT = 0, IOPL = 0.
    "    pushl $0",
    "    popfl",
    // kernel_main(magic, info): cdecl, last argument pushed first.
    "    pushl %ebx",
    "    pushl %edx",
    "    call boot_entry",
    // kernel_main never returns; if it did, stop here.
    "1:  cli",
    "    hlt",
    "    jmp 1b",
    ".size _start, . - _start",
    ".popsection",
    magic = const HEADER_MAGIC,
    flags = const HEADER_FLAGS,
    checksum = const HEADER_CHECKSUM,
    stack = sym BOOT_STACK,
    stack_size = const BOOT_STACK_SIZE,
    options(att_syntax)
);

/// The symbol `_start` calls (cdecl): hands over to the kernel's `kernel_main`. It lives
/// here because an unmangled symbol is unsafe in Rust's eyes (all of that is in arch/).
#[no_mangle]
extern "C" fn boot_entry(magic: u32, info: u32) -> ! {
    crate::kernel_main(magic, info)
}
