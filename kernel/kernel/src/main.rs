//! The kernel: boots from multiboot, sets up the machine and paging as Linux 0.11 lays
//! them out, starts task 1 from the program image and runs the idle loop.
// Built for i586-unknown-linux-gnu only; on any other target (the host's `cargo clippy
// --workspace`) the crate is empty (README "Tests": lints), as its 32-bit asm cannot build there.
#![cfg_attr(target_arch = "x86", no_std)]
#![no_main]
#![cfg(target_arch = "x86")]
// All of the kernel's unsafe code lives under arch/ (arch/x86/mod.rs says why).
#![deny(unsafe_code)]

#[allow(unsafe_code)]
mod arch;
mod bench;
mod cmdline;
#[macro_use]
mod console;
mod fault;
mod faultlog;
mod gdb;
mod kcheck;
mod log;
mod monitor;
mod paging;
mod panic;
mod publish;
mod run;
mod syscall;
mod task;
mod trap;
mod uaccess;

use arch::x86::multiboot::BootInfo;
use arch::x86::{boot, gdt, idt, pic, pit, qemu_exit};

/// The entry from `_start` (arch/x86/boot.rs), on the boot stack with interrupts off.
pub fn kernel_main(magic: u32, info: u32) -> ! {
    console::init();
    println!("pgkernel: a Linux 0.11/0.12 paging kernel for i386");
    let boot = match BootInfo::parse(magic, info) {
        Ok(b) => b,
        Err(e) => fail_boot(format_args!("bad multiboot information: {e}")),
    };
    let opts = cmdline::parse(boot.cmdline());
    log::set_level(opts.log);

    gdt::init();
    idt::init();
    pic::init();
    pit::init(task::sched::HZ);

    // The program image is the first boot module (`qemu -initrd`).
    let Some(module) = boot.modules().first() else {
        fail_boot(format_args!(
            "no program image: boot with -initrd target/userimage.img"
        ));
    };
    let reserved_end = boot::kernel_end().max(module.end);
    let layout = match paging::init(
        &boot,
        boot.ram_end(),
        reserved_end,
        opts.linear_scan,
        opts.compat,
        opts.injector(),
    ) {
        Ok(l) => l,
        Err(e) => fail_boot(format_args!("{e}")),
    };
    println!(
        "memory: RAM to {:#x}; HIGH_MEMORY {:#x}; kernel + image below {:#x}; paging frames {:#x}..{:#x} ({} frames); page directory at {:#x}",
        layout.ram_end,
        layout.high_memory,
        reserved_end,
        layout.start_mem,
        layout.high_memory,
        paging::paging().mm.mem_map.nr_free(),
        layout.pg_dir
    );
    paging::init_swap(opts.swap);
    if opts.linear_scan || opts.compat.contains(mm::compat::Compat::D3) {
        println!("memory: get_free_page uses 0.11's linear mem_map scan (alloc=scan)");
    }
    for row in opts.compat.rows() {
        println!(
            "compat: {}: {} (the original's behaviour, kernel/docs/deviations.md)",
            row.name, row.original
        );
    }
    gdb::init(opts.gdb);
    // The module lies below start_mem (reserved_end covers it), so mem_map never hands
    // its frames out and nothing writes them.
    let bytes = arch::x86::phys::boot_module_bytes(module, layout.start_mem);
    match image::Image::parse(bytes) {
        Ok(image) => {
            task::exec::IMAGE.call_once(|| image);
        }
        Err(e) => fail_boot(format_args!("bad program image: {e}")),
    }
    let image = task::exec::IMAGE.get().expect("just set");
    println!("image: {} programs:", image.len());
    for p in image.programs() {
        println!(
            "  {:<10} entry {:#07x}  end_code {:#07x}  end_data {:#07x}  bss_end {:#07x}",
            p.name, p.entry, p.end_code, p.end_data, p.bss_end
        );
    }

    task::init_task0();
    let run = run::Run::new(&opts);
    if let Err(e) = task::exec::spawn_init(opts.init(), opts.arg()) {
        fail_boot(format_args!(
            "cannot start init '{}': {}",
            opts.init(),
            abi::errno::name(e.0)
        ));
    }
    if opts.gdb == cmdline::GdbMode::Wait {
        gdb::wait_for_debugger();
    }
    // Interrupts stay off: the kernel is not preemptible, as 0.11. The idle loop opens
    // them only while it halts (cpu::idle_wait), and user mode runs with IF set.
    run.idle_loop()
}

/// A boot that cannot go on: say why and stop with FAIL.
fn fail_boot(why: core::fmt::Arguments<'_>) -> ! {
    println!("boot: {why}");
    println!("VERDICT: FAIL boot: {why}");
    qemu_exit::exit(abi::qemu_exit::FAIL)
}
