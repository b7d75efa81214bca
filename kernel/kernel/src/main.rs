//! TEMPORARY arch smoke-test kernel (the lead replaces this file): boot, print the boot
//! information, set up GDT/IDT/PIC/PIT, then run the test named by `smoke=` on the
//! command line: ticks, ud2, gp, df, realdf, panic, user, wp, overflow (`paging=on` turns
//! on a 32 MiB identity map first; wp and overflow always do).
#![no_std]
#![no_main]

#[macro_use]
mod console;
mod arch;
mod panic;
mod trap;

use core::arch::global_asm;
use core::sync::atomic::Ordering;

use arch::x86::multiboot::BootInfo;
use arch::x86::trap_entry::TrapFrame;
use arch::x86::{boot, context, cpu, gdt, idt, pic, pit, qemu_exit, selftest, HwCell, Stack};

const TIMER_HZ: u32 = 100;
const TICKS_TO_WAIT: u32 = 20;
const USER_STACK_SIZE: usize = 4096;
const USER_KERNEL_STACK_SIZE: usize = 8192;

static USER_STACK: HwCell<Stack<USER_STACK_SIZE>> = HwCell::new(Stack::new());
static USER_KERNEL_STACK: HwCell<Stack<USER_KERNEL_STACK_SIZE>> = HwCell::new(Stack::new());

/// Identity-mapped RAM for the paging tests: 8 page tables of 4 MiB.
const MAPPED_TABLES: usize = 8;
const ENTRIES: usize = 1024;
const PAGE: u32 = 4096;
const PTE_PRESENT: u32 = 1 << 0;
const PTE_WRITABLE: u32 = 1 << 1;
const PTE_USER: u32 = 1 << 2;

#[repr(C, align(4096))]
struct PageTable([u32; ENTRIES]);

static PAGE_DIRECTORY: HwCell<PageTable> = HwCell::new(PageTable([0; ENTRIES]));
static PAGE_TABLES: HwCell<[PageTable; MAPPED_TABLES]> =
    HwCell::new([const { PageTable([0; ENTRIES]) }; MAPPED_TABLES]);
/// wp test: a page whose PTE is made read-only.
static READ_ONLY_PAGE: HwCell<PageTable> = HwCell::new(PageTable([0; ENTRIES]));
/// user test with paging: maps the last page below 64 MiB (the segment limit), so the
/// user program's read just below the limit finds memory.
static LIMIT_TABLE: HwCell<PageTable> = HwCell::new(PageTable([0; ENTRIES]));
static LIMIT_PAGE: HwCell<PageTable> = HwCell::new(PageTable([0; ENTRIES]));
/// overflow test: a guard page (unmapped) under a one-page stack.
static GUARDED_STACK: HwCell<[PageTable; 2]> = HwCell::new([const { PageTable([0; ENTRIES]) }; 2]);

/// Identity-maps the first 32 MiB (user, writable) and turns paging on.
fn enable_identity_paging() {
    let directory = PAGE_DIRECTORY.get();
    let tables = PAGE_TABLES.get();
    // SAFETY: boot-time, single user of these statics; paging is off until the end, and
    // the map covers the kernel image, its stacks and these tables.
    unsafe {
        for table in 0..MAPPED_TABLES {
            for entry in 0..ENTRIES {
                let frame = ((table * ENTRIES + entry) as u32) * PAGE;
                (*tables)[table].0[entry] = frame | PTE_PRESENT | PTE_WRITABLE | PTE_USER;
            }
            (*directory).0[table] =
                (&raw const (*tables)[table]) as u32 | PTE_PRESENT | PTE_WRITABLE | PTE_USER;
        }
        let last = ENTRIES - 1;
        (*LIMIT_TABLE.get()).0[last] =
            LIMIT_PAGE.get() as u32 | PTE_PRESENT | PTE_WRITABLE | PTE_USER;
        (*directory).0[(abi::TASK_SIZE / PAGE) as usize / ENTRIES - 1] =
            LIMIT_TABLE.get() as u32 | PTE_PRESENT | PTE_WRITABLE | PTE_USER;
        cpu::enable_paging(directory as u32);
    }
    println!(
        "paging on: cr0={:#x} cr3={:#x}",
        cpu::read_cr0(),
        cpu::read_cr3()
    );
}

/// Rewrites the PTE of identity-mapped `address` with `flags` and flushes its TLB entry.
fn set_page_flags(address: u32, flags: u32) {
    let index = (address / PAGE) as usize;
    // SAFETY: the address is inside the 32 MiB map; single-threaded test code.
    unsafe {
        (*PAGE_TABLES.get())[index / ENTRIES].0[index % ENTRIES] = (address & !(PAGE - 1)) | flags;
    }
    cpu::invlpg(address);
}

// The ring-3 test program. With paging off and a user segment based at 0, it runs in
// place: its offset in the user code segment is its physical address.
global_asm!(
    ".pushsection .text.smoke_user, \"ax\"",
    ".global smoke_user_program",
    "smoke_user_program:",
    "    movl $1, %eax",
    "    int $0x80",
    "    movl %eax, %ebx", // the kernel's return value, checked by syscall 2
    "    movl 0x3fffffc, %eax", // last word below the 64 MiB limit: no fault
    "    movl $2, %eax",
    "    int $0x80",
    "1:  movl $3, %eax", // until a timer tick has hit ring 3
    "    int $0x80",
    "    testl %eax, %eax",
    "    jz 1b",
    "    movl 0x4000000, %eax", // first byte past the limit: #GP
    "    movl $4, %eax",        // reached only if the limit was not enforced
    "    int $0x80",
    "2:  jmp 2b",
    ".popsection",
    options(att_syntax)
);

unsafe extern "C" {
    fn smoke_user_program();
}

#[unsafe(no_mangle)]
pub extern "C" fn kernel_main(magic: u32, info: u32) -> ! {
    console::init();
    console::write_bytes(b"\n");
    println!(
        "arch smoke kernel: image {:#x}..{:#x}",
        boot::kernel_start(),
        boot::kernel_end()
    );
    let boot_info = match BootInfo::parse(magic, info) {
        Ok(boot_info) => boot_info,
        Err(error) => panic!("boot: {error}"),
    };
    println!("cmdline: {:?}", boot_info.cmdline());
    println!(
        "mem_lower {} KiB, mem_upper {} KiB, ram_end {:#x}",
        boot_info.mem_lower_kib,
        boot_info.mem_upper_kib,
        boot_info.ram_end()
    );
    for region in boot_info.memory_map() {
        println!(
            "  {:#012x}..{:#012x} {}",
            region.base,
            region.end(),
            region.kind_name()
        );
    }
    for module in boot_info.modules() {
        println!(
            "  module {:#x}..{:#x} ({} bytes) {:?}",
            module.start,
            module.end,
            module.len(),
            module.name()
        );
    }

    gdt::init();
    idt::init();
    if boot_info.cmdline_value("paging") == Some("on")
        || matches!(boot_info.cmdline_value("smoke"), Some("wp" | "overflow"))
    {
        enable_identity_paging();
    }
    pic::init();
    pit::init(TIMER_HZ);
    cpu::enable_interrupts();

    let test = boot_info.cmdline_value("smoke").unwrap_or("ticks");
    println!("smoke test: {test}");
    match test {
        "ticks" => {
            let start = cpu::rdtsc();
            loop {
                cpu::disable_interrupts();
                if trap::TICKS.load(Ordering::SeqCst) >= TICKS_TO_WAIT {
                    break;
                }
                cpu::idle_wait();
            }
            cpu::enable_interrupts();
            println!("{TICKS_TO_WAIT} ticks, {} TSC cycles", cpu::rdtsc() - start);
            println!("SMOKE PASS ticks");
            qemu_exit::exit(abi::qemu_exit::PASS)
        }
        "ud2" => selftest::invalid_opcode(),
        "gp" => selftest::general_protection(),
        "df" => selftest::software_double_fault(),
        "realdf" => selftest::real_double_fault(),
        "panic" => panic!("smoke panic {}", 42),
        "user" => enter_user(),
        "libc" => {
            check_libc_shims();
            println!("SMOKE PASS libc");
            qemu_exit::exit(abi::qemu_exit::PASS)
        }
        "wp" => {
            // CR0.WP = 0: ring 0 ignores the RW bit, like a 386 (why 0.11 has write_verify).
            let address = READ_ONLY_PAGE.get() as u32;
            set_page_flags(address, PTE_PRESENT | PTE_USER);
            // SAFETY: the page is a static of ours, mapped (read-only) at its address.
            unsafe { (address as *mut u32).write_volatile(0x5157_0001) };
            // SAFETY: as above.
            let value = unsafe { (address as *const u32).read_volatile() };
            println!("ring-0 write to a read-only user page succeeded: {value:#x}");
            println!("SMOKE PASS wp");
            qemu_exit::exit(abi::qemu_exit::PASS)
        }
        "overflow" => {
            let guard = GUARDED_STACK.get() as u32;
            set_page_flags(guard, 0);
            println!("guard page {guard:#x} unmapped; pushing at its top");
            selftest::stack_overflow_at(guard + PAGE)
        }
        other => {
            println!("unknown smoke test {other:?}");
            qemu_exit::exit(abi::qemu_exit::FAIL)
        }
    }
}

/// memmove both ways with overlap, memset, memcmp, through the real symbols.
fn check_libc_shims() {
    use core::hint::black_box;
    let mut buffer = [0u8; 64];
    for (index, byte) in buffer.iter_mut().enumerate() {
        *byte = index as u8;
    }
    let base = buffer.as_mut_ptr();
    // SAFETY: all ranges lie inside `buffer`.
    unsafe {
        // Overlapping, destination above source: must copy backwards.
        core::ptr::copy(black_box(base), black_box(base.add(8)), black_box(32));
        assert!(
            (0..32).all(|i| buffer[8 + i] == i as u8),
            "memmove backwards"
        );
        // Overlapping, destination below source: forwards.
        core::ptr::copy(
            black_box(base.add(8)),
            black_box(base.add(4)),
            black_box(32),
        );
        assert!(
            (0..32).all(|i| buffer[4 + i] == i as u8),
            "memmove forwards"
        );
        core::ptr::write_bytes(black_box(base.add(40)), 0xAB, black_box(10));
        assert!(
            buffer[40..50].iter().all(|&b| b == 0xAB) && buffer[50] == 50,
            "memset"
        );
    }
    let left = black_box([1u8, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17]);
    let mut right = left;
    assert!(
        black_box(&left[..]) == black_box(&right[..]),
        "memcmp equal"
    );
    right[16] = 0;
    assert!(
        black_box(&left[..]) != black_box(&right[..]),
        "memcmp differ"
    );
    assert!(black_box(&left[..]) > black_box(&right[..]), "memcmp order");
    println!("libc shims ok");
}

/// Runs `smoke_user_program` in ring 3 through prepare_new_stack + switch.
fn enter_user() -> ! {
    // Lives for ever: kernel_main never returns, and this function never returns either.
    let ldt = gdt::user_ldt(0, abi::TASK_SIZE);
    let kernel_stack_top = arch::x86::stack_top(&USER_KERNEL_STACK);
    let frame = TrapFrame::new_user(
        smoke_user_program as *const () as usize as u32,
        arch::x86::stack_top(&USER_STACK),
    );
    let mut boot_esp = 0u32;
    cpu::disable_interrupts();
    // SAFETY: the LDT outlives its use (this frame never returns); the kernel stack is a
    // static used by nothing else; `switch` gets a stack from `prepare_new_stack`.
    unsafe {
        gdt::load_ldt(&ldt);
        gdt::set_kernel_stack(kernel_stack_top);
        let esp = context::prepare_new_stack(kernel_stack_top, &frame);
        context::switch(&mut boot_esp, esp);
    }
    panic!("switched back to the boot stack");
}
