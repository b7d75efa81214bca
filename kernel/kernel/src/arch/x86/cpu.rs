//! Control registers, TLB, interrupt flag, halting and the time-stamp counter.

use core::arch::asm;

use x86::controlregs::{self, Cr0};
use x86::dtables::{self, DescriptorTablePointer};
use x86::task;

/// EFLAGS.IF: maskable interrupts are enabled.
pub const EFLAGS_IF: u32 = 1 << 9;
/// EFLAGS bit 1 is reserved and always reads as 1; a fresh EFLAGS image must set it.
pub const EFLAGS_RESERVED_1: u32 = 1 << 1;

/// Reads CR0.
pub fn read_cr0() -> u32 {
    // SAFETY: reading CR0 has no side effect; the kernel runs at CPL 0.
    unsafe { controlregs::cr0() }.bits() as u32
}

/// Reads CR2: the linear address of the last page fault.
pub fn read_cr2() -> u32 {
    // SAFETY: reading CR2 has no side effect; the kernel runs at CPL 0.
    unsafe { controlregs::cr2() as u32 }
}

/// Reads CR3: the physical address of the page directory (plus PCD/PWT bits).
pub fn read_cr3() -> u32 {
    // SAFETY: reading CR3 has no side effect; the kernel runs at CPL 0.
    // The x86 crate returns u64 even on i386; CR3 is 32 bits here.
    unsafe { controlregs::cr3() as u32 }
}

/// Reads CR4 (all its bits: the x86 crate's reader drops the ones it does not name).
pub fn read_cr4() -> u32 {
    let cr4: u32;
    // SAFETY: reading CR4 has no side effect; the kernel runs at CPL 0 on a CPU that has
    // CR4 (Pentium and later: the i586 target).
    unsafe {
        asm!("movl %cr4, {}", out(reg) cr4, options(att_syntax, nomem, nostack, preserves_flags))
    };
    cr4
}

/// The system registers `monitor cpu` shows: CR0, CR2, CR3, CR4, GDTR, IDTR, LDTR, TR.
pub fn system_registers() -> report::CpuState {
    let mut gdtr = DescriptorTablePointer::<u64>::default();
    let mut idtr = DescriptorTablePointer::<u64>::default();
    // SAFETY: sgdt/sidt store 6 bytes into the packed pointers; sldt/str read selectors.
    // None of them changes the CPU's state; CPL is 0.
    let (ldtr, tr) = unsafe {
        dtables::sgdt(&mut gdtr);
        dtables::sidt(&mut idtr);
        (dtables::ldtr().bits(), task::tr().bits())
    };
    let table = |pointer: &DescriptorTablePointer<u64>| report::TableRegister {
        base: { pointer.base } as u32,
        limit: { pointer.limit },
    };
    report::CpuState {
        cr0: read_cr0(),
        cr2: read_cr2(),
        cr3: read_cr3(),
        cr4: read_cr4(),
        gdtr: table(&gdtr),
        idtr: table(&idtr),
        ldtr,
        tr,
    }
}

/// Loads CR3. Reloading CR3 flushes the whole TLB (there are no global pages here),
/// which is how Linux 0.11 invalidates after every page-table change (`invalidate()`).
///
/// # Safety
/// `pgdir_phys` must be the 4 KiB-aligned physical address of a page directory that maps
/// the kernel (code, data, stacks) the way the currently running code expects.
pub unsafe fn write_cr3(pgdir_phys: u32) {
    // The double-fault task loads its CR3 from its TSS: keep it pointing at a directory
    // that maps the kernel, or a double fault would turn into a triple fault.
    super::gdt::set_double_fault_cr3(pgdir_phys);
    // SAFETY: the caller guarantees the directory maps everything the kernel touches.
    unsafe { controlregs::cr3_write(u64::from(pgdir_phys)) }
}

/// Invalidates the TLB entry of one linear address.
///
/// `invlpg` is a 486 instruction: the 386 that Linux 0.11 targets had to reload CR3 for
/// any change. Flushing is always memory-safe (it only costs a later page walk).
pub fn invlpg(linear: u32) {
    // SAFETY: invalidating a TLB entry cannot break memory safety; CPL is 0.
    unsafe { x86::tlb::flush(linear as usize) }
}

/// Turns paging on with `pgdir_phys` as the page directory.
///
/// CR0.WP is kept CLEAR on purpose. The 386 that Linux 0.11 was written for has no WP
/// bit: ring 0 ignores the RW bit of user pages and writes straight into a page that is
/// shared copy-on-write. That is why 0.11 calls `verify_area`/`write_verify` before the
/// kernel writes to user memory (it breaks COW by hand), and this kernel reproduces that
/// behaviour, so a missing `write_verify` shows up as a real bug, as it would on a 386.
///
/// # Safety
/// The directory must identity-map the running kernel (code, data, stacks, the page
/// directory and tables themselves), otherwise the next instruction fetch faults.
pub unsafe fn enable_paging(pgdir_phys: u32) {
    // SAFETY: the caller guarantees the directory identity-maps the kernel.
    unsafe { write_cr3(pgdir_phys) };
    // SAFETY: reading CR0 has no side effect.
    let mut cr0 = unsafe { controlregs::cr0() };
    cr0.insert(Cr0::CR0_ENABLE_PAGING);
    cr0.remove(Cr0::CR0_WRITE_PROTECT);
    // SAFETY: as above; the identity map makes the switch transparent to the next
    // instruction (no far jump is needed because linear == physical for the kernel).
    unsafe { controlregs::cr0_write(cr0) }
}

/// Reads EFLAGS.
pub fn read_eflags() -> u32 {
    let eflags: u32;
    // SAFETY: pushfl/popl only touch the stack slot they use.
    unsafe { asm!("pushfl", "popl {}", out(reg) eflags, options(att_syntax, preserves_flags)) };
    eflags
}

/// Whether maskable interrupts are enabled (EFLAGS.IF).
pub fn interrupts_enabled() -> bool {
    read_eflags() & EFLAGS_IF != 0
}

/// `sti`: allows maskable interrupts.
pub fn enable_interrupts() {
    // SAFETY: the IDT handles every vector; enabling interrupts is memory-safe.
    // No `nomem`: the compiler must not move memory accesses across the `sti`.
    unsafe { asm!("sti", options(att_syntax, nostack)) };
}

/// `cli`: masks maskable interrupts.
pub fn disable_interrupts() {
    // SAFETY: masking interrupts is always memory-safe. No `nomem`: memory accesses
    // after it must stay inside the critical section.
    unsafe { asm!("cli", options(att_syntax, nostack)) };
}

/// Runs `f` with interrupts disabled, then restores the previous interrupt state.
pub fn without_interrupts<R>(f: impl FnOnce() -> R) -> R {
    let was_enabled = interrupts_enabled();
    if was_enabled {
        disable_interrupts();
    }
    let result = f();
    if was_enabled {
        enable_interrupts();
    }
    result
}

/// `hlt`: waits for the next interrupt (with IF as it is; with IF=0 it waits forever).
pub fn hlt() {
    // SAFETY: halting until an interrupt is memory-safe.
    unsafe { asm!("hlt", options(att_syntax, nostack)) };
}

/// Waits for an interrupt without losing a wakeup: call with interrupts DISABLED after
/// checking the condition; returns with interrupts disabled after one interrupt ran.
///
/// `sti` takes effect only after the next instruction, so no interrupt can be delivered
/// between `sti` and `hlt`: an interrupt that arrives after the caller's check wakes the
/// `hlt` instead of being handled just before it (the classic lost wakeup).
pub fn idle_wait() {
    // SAFETY: enabling interrupts, halting and disabling them again is memory-safe; the
    // interrupt handlers run in between, hence no `nomem` (memory may change).
    unsafe { asm!("sti", "hlt", "cli", options(att_syntax, nostack)) };
}

/// Stops the CPU for good: interrupts masked, `hlt` in a loop (an NMI would resume it).
pub fn halt_forever() -> ! {
    loop {
        disable_interrupts();
        hlt();
    }
}

/// Reads the time-stamp counter (Pentium and later; QEMU's default CPU has it).
pub fn rdtsc() -> u64 {
    // SAFETY: rdtsc only reads a counter (CR4.TSD is clear, and we are at CPL 0 anyway).
    unsafe { x86::time::rdtsc() }
}
