//! The GDT, the task-state segments and the per-task LDTs (user segments as in Linux 0.11).
//!
//! GDT layout (one entry per selector below):
//!
//! | index | selector | what |
//! |-------|----------|------|
//! | 0 | 0x00 | null |
//! | 1 | [`KERNEL_CS`] 0x08 | kernel code, base 0, 4 GiB, DPL 0 |
//! | 2 | [`KERNEL_DS`] 0x10 | kernel data/stack, base 0, 4 GiB, DPL 0 |
//! | 3 | [`TSS_SEL`] 0x18 | the one TSS: `ss0:esp0` for ring 3 -> 0 entries |
//! | 4 | [`LDT_SEL`] 0x20 | the current task's LDT (rewritten by [`load_ldt`]) |
//! | 5 | [`DF_TSS_SEL`] 0x28 | the double-fault task's TSS (own stack, own `eip`) |
//!
//! Like Linux 0.11, user code and data are LDT segments: task *n*'s LDT maps its segments
//! at base `n * 64 MiB` with a 64 MiB limit, so the segment limit confines a task to its
//! slot of the one shared page directory. Unlike 0.11 (one TSS and one LDT descriptor per
//! task, switched with `ljmp` to a TSS), there is a single TSS whose `esp0` the scheduler
//! updates and a single LDT descriptor that is rewritten on every switch.

use core::ptr::addr_of_mut;
use core::sync::atomic::{AtomicBool, Ordering};

use x86::bits32::task::TaskStateSegment;
use x86::dtables::{self, DescriptorTablePointer};
use x86::segmentation::{self, SegmentSelector};

use super::{boot, cpu, stack_top, HwCell, Stack};

/// Kernel code segment selector (GDT 1, RPL 0).
pub const KERNEL_CS: u16 = 0x08;
/// Kernel data segment selector (GDT 2, RPL 0).
pub const KERNEL_DS: u16 = 0x10;
/// The TSS (GDT 3).
pub const TSS_SEL: u16 = 0x18;
/// The current task's LDT (GDT 4).
pub const LDT_SEL: u16 = 0x20;
/// The double-fault task's TSS (GDT 5).
pub const DF_TSS_SEL: u16 = 0x28;
/// User code: LDT entry 1, TI = 1 (LDT), RPL 3. Same value as Linux 0.11.
pub const USER_CS: u16 = 0x0F;
/// User data and stack: LDT entry 2, TI = 1 (LDT), RPL 3. Same value as Linux 0.11.
pub const USER_DS: u16 = 0x17;

/// A task's LDT: null, code, data (Linux 0.11 `struct desc_struct ldt[3]`).
pub type Ldt = [u64; 3];

/// Size of the double-fault task's own stack.
pub const DOUBLE_FAULT_STACK_SIZE: usize = 8 * 1024;

/// GDT indices.
mod index {
    pub const TSS: usize = 3;
    pub const LDT: usize = 4;
    pub const DF_TSS: usize = 5;
    pub const COUNT: usize = 6;
}

/// Descriptor access byte (bits 40..47): P, DPL, S, type.
pub mod access {
    /// P: the segment is present.
    pub const PRESENT: u8 = 0x80;
    /// DPL 3: reachable from user mode.
    pub const DPL3: u8 = 3 << 5;
    /// S: a code/data segment (clear for system descriptors: TSS, LDT, gates).
    pub const CODE_OR_DATA: u8 = 0x10;
    /// Code type: execute/read, non-conforming.
    pub const CODE_EXEC_READ: u8 = 0xA;
    /// Data type: read/write, expand-up.
    pub const DATA_READ_WRITE: u8 = 0x2;
    /// System type 2: LDT.
    pub const SYSTEM_LDT: u8 = 0x2;
    /// System type 9: available 32-bit TSS (the CPU sets bit 1 = busy).
    pub const SYSTEM_TSS_AVAILABLE: u8 = 0x9;
}

/// Descriptor flags nibble (bits 52..55).
pub mod flags {
    /// G: the limit counts 4 KiB units.
    pub const GRANULARITY_4K: u8 = 0x8;
    /// D/B: 32-bit code / 32-bit stack.
    pub const DEFAULT_32: u8 = 0x4;
}

/// Largest value of the 20-bit limit field.
const LIMIT_FIELD_MAX: u32 = 0xF_FFFF;
/// Log2 of the 4 KiB limit granularity.
const GRANULARITY_SHIFT: u32 = 12;
/// Byte limit (size - 1) of an LDT descriptor for [`Ldt`]: 3 entries of 8 bytes.
const LDT_LIMIT: u32 = (core::mem::size_of::<Ldt>() - 1) as u32;
/// Byte limit of a TSS descriptor: the 104-byte 32-bit TSS, no I/O bitmap.
const TSS_LIMIT: u32 = (core::mem::size_of::<TaskStateSegment>() - 1) as u32;

const KERNEL_CODE_ACCESS: u8 = access::PRESENT | access::CODE_OR_DATA | access::CODE_EXEC_READ;
const KERNEL_DATA_ACCESS: u8 = access::PRESENT | access::CODE_OR_DATA | access::DATA_READ_WRITE;
const USER_CODE_ACCESS: u8 = KERNEL_CODE_ACCESS | access::DPL3;
const USER_DATA_ACCESS: u8 = KERNEL_DATA_ACCESS | access::DPL3;
const FLAT_FLAGS: u8 = flags::GRANULARITY_4K | flags::DEFAULT_32;

/// Encodes a segment or system descriptor. `limit` is the raw 20-bit field (bytes, or
/// 4 KiB units when `flags` has [`flags::GRANULARITY_4K`]).
pub const fn descriptor(base: u32, limit: u32, access: u8, flags: u8) -> u64 {
    let limit = limit & LIMIT_FIELD_MAX;
    let low = (limit & 0xFFFF) | (base << 16);
    let high = ((base >> 16) & 0xFF)
        | ((access as u32) << 8)
        | ((limit >> 16) << 16)
        | (((flags & 0xF) as u32) << 20)
        | (base & 0xFF00_0000);
    ((high as u64) << 32) | low as u64
}

/// The base address of a descriptor (Linux 0.11 `get_base`).
pub const fn descriptor_base(descriptor: u64) -> u32 {
    let low = descriptor as u32;
    let high = (descriptor >> 32) as u32;
    (low >> 16) | ((high & 0xFF) << 16) | (high & 0xFF00_0000)
}

/// The effective byte limit of a descriptor: the last valid offset (Linux 0.11
/// `get_limit` returns this plus one).
pub const fn descriptor_limit(descriptor: u64) -> u32 {
    let low = descriptor as u32;
    let high = (descriptor >> 32) as u32;
    let field = (low & 0xFFFF) | (high & 0x000F_0000);
    let granular = (high >> 20) as u8 & flags::GRANULARITY_4K != 0;
    if granular {
        (field << GRANULARITY_SHIFT) | ((1 << GRANULARITY_SHIFT) - 1)
    } else {
        field
    }
}

/// A user task's LDT: 32-bit DPL 3 code (execute/read) and data (read/write) segments at
/// `base`, covering `code_bytes` and `data_bytes` bytes in 4 KiB units (Linux 0.11
/// `set_base` + `set_limit`). An access at an offset at or past a segment's limit (rounded
/// up to 4 KiB) raises #GP. A limit of 0 is taken as 4 KiB, the smallest 4 KiB-granular
/// segment.
pub const fn user_ldt(base: u32, code_bytes: u32, data_bytes: u32) -> Ldt {
    let code = code_bytes.saturating_sub(1) >> GRANULARITY_SHIFT;
    let data = data_bytes.saturating_sub(1) >> GRANULARITY_SHIFT;
    [
        0,
        descriptor(base, code, USER_CODE_ACCESS, FLAT_FLAGS),
        descriptor(base, data, USER_DATA_ACCESS, FLAT_FLAGS),
    ]
}

// The encodings, checked against Linux 0.11's own constants.
// head.s: `.quad 0x00c09a0000000fff  /* 16Mb */` and `.quad 0x00c0920000000fff`.
const _: () =
    assert!(descriptor(0, 0xFFF, KERNEL_CODE_ACCESS, FLAT_FLAGS) == 0x00c0_9a00_0000_0fff);
const _: () =
    assert!(descriptor(0, 0xFFF, KERNEL_DATA_ACCESS, FLAT_FLAGS) == 0x00c0_9200_0000_0fff);
// sched.h INIT_TASK: ldt = { {0,0}, {0x9f,0xc0fa00}, {0x9f,0xc0f200} } (640 KiB at 0).
const _: () = assert!(user_ldt(0, 640 * 1024, 640 * 1024)[1] == 0x00c0_fa00_0000_009f);
const _: () = assert!(user_ldt(0, 640 * 1024, 640 * 1024)[2] == 0x00c0_f200_0000_009f);
// Task 1 after change_ldt: base 64 MiB, data limit 64 MiB, code limit the text size.
const _: () = assert!(user_ldt(0x0400_0000, 0x3000, 0x0400_0000)[2] == 0x04c0_f200_0000_3fff);
const _: () = assert!(user_ldt(0x0400_0000, 0x3000, 0x0400_0000)[1] == 0x04c0_fa00_0000_0002);
const _: () =
    assert!(descriptor_base(user_ldt(0x1234_5000, 0x1000, 0x0400_0000)[2]) == 0x1234_5000);
const _: () = assert!(descriptor_limit(user_ldt(0, 0x0400_0000, 0x0400_0000)[1]) == 0x03FF_FFFF);
const _: () = assert!(descriptor_limit(user_ldt(0, 0x3000, 0x0400_0000)[1]) == 0x2FFF);
const _: () = assert!(descriptor_limit(descriptor(0, TSS_LIMIT, 0, 0)) == 103);

/// The GDT. Entries 3..5 need runtime addresses and are filled by [`init`] / [`load_ldt`].
static GDT: HwCell<[u64; index::COUNT]> = HwCell::new([
    0,
    // Kernel code and data: flat 4 GiB (base 0, limit 0xFFFFF pages).
    descriptor(0, LIMIT_FIELD_MAX, KERNEL_CODE_ACCESS, FLAT_FLAGS),
    descriptor(0, LIMIT_FIELD_MAX, KERNEL_DATA_ACCESS, FLAT_FLAGS),
    0,
    0,
    0,
]);

/// The TSS: the CPU takes `ss0:esp0` from it on every ring 3 -> 0 transition, and saves
/// the interrupted state into it when the double-fault task gate fires.
static TSS: HwCell<TaskStateSegment> = HwCell::new(TaskStateSegment::new());
/// The double-fault task's TSS: the CPU loads a whole known-good state from it.
static DF_TSS: HwCell<TaskStateSegment> = HwCell::new(TaskStateSegment::new());
/// The double-fault task's stack: independent of whatever `esp` was broken.
static DF_STACK: HwCell<Stack<DOUBLE_FAULT_STACK_SIZE>> = HwCell::new(Stack::new());

static INITIALIZED: AtomicBool = AtomicBool::new(false);

/// Loads the GDT, reloads every segment register, loads a null LDT and the TSS.
///
/// Call once, early, with interrupts disabled (before [`super::idt::init`]): the IDT's
/// gates name these selectors and the double-fault gate names [`DF_TSS_SEL`].
pub fn init() {
    assert!(
        !INITIALIZED.swap(true, Ordering::SeqCst),
        "gdt::init called twice"
    );
    cpu::without_interrupts(|| {
        let tss = TSS.get();
        let df_tss = DF_TSS.get();
        // SAFETY: boot time with interrupts disabled: nothing else touches the TSSs or
        // the GDT yet, and the pointers come from statics (valid, aligned for u64).
        unsafe {
            addr_of_mut!((*tss).ss0).write_unaligned(KERNEL_DS);
            // Until the scheduler sets a task's stack, ring 3 -> 0 lands on the boot stack.
            addr_of_mut!((*tss).esp0).write_unaligned(boot::boot_stack_top());

            let mut df = TaskStateSegment::new();
            df.eip = super::crash::double_fault_task_entry as *const () as usize as u32;
            df.esp = stack_top(&DF_STACK);
            df.esp0 = df.esp;
            df.ss0 = KERNEL_DS;
            df.cs = KERNEL_CS;
            df.ss = KERNEL_DS;
            df.ds = KERNEL_DS;
            df.es = KERNEL_DS;
            df.fs = KERNEL_DS;
            df.gs = KERNEL_DS;
            // Interrupts off in the handler: it never returns to anything.
            df.eflags = cpu::EFLAGS_RESERVED_1;
            // Loaded by the task switch only when paging is on; kept current by
            // `cpu::write_cr3` so the handler runs on a directory that maps the kernel.
            df.cr3 = cpu::read_cr3();
            df_tss.write(df);

            let gdt = GDT.get();
            let system = access::PRESENT;
            (*gdt)[index::TSS] = descriptor(
                tss as u32,
                TSS_LIMIT,
                system | access::SYSTEM_TSS_AVAILABLE,
                0,
            );
            (*gdt)[index::DF_TSS] = descriptor(
                df_tss as u32,
                TSS_LIMIT,
                system | access::SYSTEM_TSS_AVAILABLE,
                0,
            );
        }

        let pointer = DescriptorTablePointer::<[u64; index::COUNT]> {
            limit: (core::mem::size_of::<[u64; index::COUNT]>() - 1) as u16,
            base: GDT.get(),
        };
        // SAFETY: the GDT is a static (lives forever) holding valid descriptors; the
        // selectors loaded next all index it; CPL is 0 and interrupts are off, so no
        // handler runs with half-loaded segment registers.
        unsafe {
            dtables::lgdt(&pointer);
            x86::bits32::segmentation::load_cs(SegmentSelector::from_raw(KERNEL_CS));
            let data = SegmentSelector::from_raw(KERNEL_DS);
            segmentation::load_ss(data);
            segmentation::load_ds(data);
            segmentation::load_es(data);
            segmentation::load_fs(data);
            segmentation::load_gs(data);
            // A null LDT until the first task's is loaded: a stray LDT selector faults.
            dtables::load_ldtr(SegmentSelector::from_raw(0));
            x86::task::load_tr(SegmentSelector::from_raw(TSS_SEL));
        }
    });
}

/// Sets the stack the CPU switches to when an interrupt or `int $0x80` leaves ring 3
/// (TSS `ss0:esp0`). The scheduler calls it with the next task's kernel-stack top.
pub fn set_kernel_stack(esp0: u32) {
    // SAFETY: one aligned 32-bit store into the static TSS; the CPU reads esp0 only on
    // a privilege change, which cannot interleave with this single instruction.
    unsafe { addr_of_mut!((*TSS.get()).esp0).write_volatile(esp0) };
}

/// The current TSS `esp0`.
pub fn kernel_stack() -> u32 {
    // SAFETY: one aligned 32-bit load from the static TSS.
    unsafe { addr_of_mut!((*TSS.get()).esp0).read_volatile() }
}

/// The LDT that is loaded: a copy of the running task's (arch-owned, so it stays at its
/// address, changed only here, for as long as it is loaded).
static CURRENT_LDT: HwCell<Ldt> = HwCell::new([0; 3]);

/// Loads `ldt` (the task's segments) for the task about to run: copies it to the one
/// LDT the CPU reads, then points GDT entry 4 and LDTR at it.
pub fn load_task_ldt(ldt: &Ldt) {
    cpu::without_interrupts(|| {
        // SAFETY: interrupts are off, and nothing else writes CURRENT_LDT; the CPU reads
        // it only on segment loads, none of which happen between this store and the
        // `lldt` below (the kernel's own segments are in the GDT).
        unsafe { CURRENT_LDT.get().write_volatile(*ldt) };
        // SAFETY: CURRENT_LDT is a static that stays at its address, changed only here.
        unsafe { load_ldt(CURRENT_LDT.get()) };
    });
}

/// Makes GDT entry 4 describe `*ldt` and loads it into LDTR (`lldt`).
///
/// The selectors [`USER_CS`]/[`USER_DS`] then refer to `ldt[1]`/`ldt[2]`. Segment
/// registers keep their cached descriptors until reloaded (the `iret` to user mode does).
///
/// # Safety
/// `ldt` must point to a valid [`Ldt`] in writable memory (the CPU sets the descriptors'
/// accessed bits) that stays at that address, changed only by the kernel's own
/// `user_ldt` rewrites, for as long as it is loaded (the CPU reads it on every user
/// segment load).
unsafe fn load_ldt(ldt: *const Ldt) {
    let entry = descriptor(
        ldt as u32,
        LDT_LIMIT,
        access::PRESENT | access::SYSTEM_LDT,
        0,
    );
    cpu::without_interrupts(|| {
        // SAFETY: interrupts are off, so no switch can rewrite entry 4 between the store
        // and the `lldt`; the caller guarantees the LDT outlives its use.
        unsafe {
            GDT.get()
                .cast::<u64>()
                .add(index::LDT)
                .write_volatile(entry);
            dtables::load_ldtr(SegmentSelector::from_raw(LDT_SEL));
        }
    });
}

/// Keeps the double-fault TSS's CR3 equal to the kernel's page directory.
pub(crate) fn set_double_fault_cr3(cr3: u32) {
    // SAFETY: one aligned 32-bit store into the static double-fault TSS, read by the CPU
    // only when the double-fault task switch happens.
    unsafe { addr_of_mut!((*DF_TSS.get()).cr3).write_volatile(cr3) };
}

/// A copy of the main TSS: after a double fault, the state the CPU saved when it left
/// the faulting context (eip, esp, general registers, segments, eflags).
pub(crate) fn interrupted_task_state() -> TaskStateSegment {
    // SAFETY: reading the static TSS; the only writer now is the CPU, which is running
    // the double-fault task and will not switch back.
    unsafe { TSS.get().read_volatile() }
}
