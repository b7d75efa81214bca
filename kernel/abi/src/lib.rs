//! The user/kernel ABI: system-call numbers, error codes, wait statuses and the
//! structures the debug system calls fill in. Shared by `kernel` and `user`.
#![no_std]
#![forbid(unsafe_code)]

/// System-call numbers, passed in `eax` to `int 0x80`; arguments in `ebx`, `ecx`, `edx`.
///
/// Numbers that exist in Linux 0.11 (`include/unistd.h`) keep their 0.11 value so a
/// reader can put both side by side; the debug calls live at 200 and above.
pub mod nr {
    /// `exit(code)`: never returns.
    pub const EXIT: u32 = 1;
    /// `fork()`: child pid to the parent, 0 to the child, `-errno` on failure.
    pub const FORK: u32 = 2;
    /// `write(fd, buf, len)`: fd 1 and 2 go to the console.
    pub const WRITE: u32 = 4;
    /// `waitpid(pid, *status, options)`: pid -1 = any child; options `WNOHANG`.
    pub const WAITPID: u32 = 7;
    /// `execve(name, arg)`: both NUL-terminated; `name` is a program of the image.
    pub const EXECVE: u32 = 11;
    /// `getpid()`.
    pub const GETPID: u32 = 20;
    /// `kill(pid)`: terminates the task as if by SIGKILL.
    pub const KILL: u32 = 37;
    /// `brk(addr)`: sets the break (0 = query); returns the new break.
    pub const BRK: u32 = 45;
    /// `getppid()`.
    pub const GETPPID: u32 = 64;
    /// `sched_yield()` (stands in for 0.11's `pause`, which needs signals).
    pub const YIELD: u32 = 158;
    /// `sleep(ticks)`: sleeps for that many timer ticks (100 Hz).
    pub const SLEEP: u32 = 162;
    /// `getarg(buf, len)`: copies the argument string given to `execve` (or on the
    /// kernel command line for the first task); returns its length.
    pub const GETARG: u32 = 200;
    /// `meminfo(*MemInfo)`: fills a [`MemInfo`](super::MemInfo).
    pub const MEMINFO: u32 = 201;
    /// `pageinfo(addr, *PageInfo)`: walks the caller's own address `addr`.
    pub const PAGEINFO: u32 = 202;
    /// `checkmm()`: runs the consistency check; returns the number of mismatches.
    pub const CHECKMM: u32 = 203;
    /// `debug(op, arg)`: kernel-side test operations, see [`debug_op`](super::debug_op).
    pub const DEBUG: u32 = 204;
}

/// Error numbers, returned negated in `eax` (as Linux does).
pub mod errno {
    pub const EPERM: i32 = 1;
    pub const ENOENT: i32 = 2;
    pub const ESRCH: i32 = 3;
    pub const E2BIG: i32 = 7;
    pub const ENOEXEC: i32 = 8;
    pub const ECHILD: i32 = 10;
    pub const EAGAIN: i32 = 11;
    pub const ENOMEM: i32 = 12;
    pub const EFAULT: i32 = 14;
    pub const EINVAL: i32 = 22;
    pub const ENOSYS: i32 = 38;

    /// A short name for an error number, for messages.
    pub fn name(errno: i32) -> &'static str {
        match errno {
            EPERM => "EPERM",
            ENOENT => "ENOENT",
            ESRCH => "ESRCH",
            E2BIG => "E2BIG",
            ENOEXEC => "ENOEXEC",
            ECHILD => "ECHILD",
            EAGAIN => "EAGAIN",
            ENOMEM => "ENOMEM",
            EFAULT => "EFAULT",
            EINVAL => "EINVAL",
            ENOSYS => "ENOSYS",
            _ => "E?",
        }
    }
}

/// `waitpid` option: return 0 at once when no child has exited.
pub const WNOHANG: u32 = 1;

/// Signal numbers used in wait statuses (the kernel has no signal delivery; a task the
/// kernel kills reports the signal that Linux would have sent).
pub mod signal {
    pub const SIGKILL: u32 = 9;
    pub const SIGSEGV: u32 = 11;
}

/// Wait status encoding, as Linux: `code << 8` for a normal exit, the signal number
/// in the low 7 bits for a task that was killed.
pub mod wait_status {
    pub const fn exited(code: u32) -> u32 {
        (code & 0xff) << 8
    }
    pub const fn killed(signal: u32) -> u32 {
        signal & 0x7f
    }
    pub const fn if_exited(status: u32) -> bool {
        status & 0x7f == 0
    }
    pub const fn exit_code(status: u32) -> u32 {
        (status >> 8) & 0xff
    }
    pub const fn term_signal(status: u32) -> u32 {
        status & 0x7f
    }
}

/// Size of one task's linear slot (0.12 `TASK_SIZE`): task *n* owns
/// `[n * TASK_SIZE, (n + 1) * TASK_SIZE)`, and its segments have limit `TASK_SIZE`.
pub const TASK_SIZE: u32 = 0x0400_0000;
/// The initial user stack pointer (an offset in the task's segment): the top of the slot.
pub const USER_STACK_TOP: u32 = TASK_SIZE;
/// Page size.
pub const PAGE_SIZE: u32 = 4096;
/// Longest argument string `execve` and `getarg` carry, NUL excluded.
pub const MAX_ARG_LEN: usize = 127;
/// Longest program name `execve` accepts, NUL excluded.
pub const MAX_NAME_LEN: usize = 31;

/// Page-fault counts of one task, by what the fault handler did.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FaultCounts {
    /// `do_no_page` mapped a fresh zero-filled page.
    pub demand_zero: u32,
    /// `do_no_page` read the page from the program image.
    pub loaded: u32,
    /// `do_no_page` shared the page with another task running the same program.
    pub shared: u32,
    /// `do_wp_page` copied a page shared copy-on-write.
    pub cow_copied: u32,
    /// `do_wp_page` found the page's count at 1 and only made it writable.
    pub cow_made_writable: u32,
    /// `do_no_page` read the page back from the swap device (0.12 `swap_in`).
    pub swapped_in: u32,
}

/// What `meminfo` reports.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemInfo {
    /// Frames between LOW_MEM and HIGH_MEMORY that `mem_map` manages.
    pub paging_frames: u32,
    /// Frames whose count is 0.
    pub free_frames: u32,
    /// Frames whose count is above 1 (shared copy-on-write or between programs).
    pub shared_frames: u32,
    /// Present pages mapped in the caller's slot.
    pub task_pages: u32,
    /// Page tables owned by the caller's slot.
    pub task_page_tables: u32,
    /// Live tasks (not counting the kernel's task 0).
    pub nr_tasks: u32,
    /// The caller's own fault counts.
    pub faults: FaultCounts,
    /// Usable swap slots of the swap device (0: no swap).
    pub swap_slots: u32,
    /// Free swap slots.
    pub swap_free: u32,
    /// The caller's pages that are swapped out.
    pub task_swapped: u32,
}

/// `PageInfo::flags` bits.
pub mod page_flags {
    /// The page-directory entry is present (a page table exists).
    pub const TABLE_PRESENT: u32 = 1 << 0;
    /// The page-table entry is present.
    pub const PRESENT: u32 = 1 << 1;
    /// The page-table entry is writable.
    pub const WRITABLE: u32 = 1 << 2;
    /// The page-table entry is user-accessible.
    pub const USER: u32 = 1 << 3;
    /// The page-table entry's accessed bit.
    pub const ACCESSED: u32 = 1 << 4;
    /// The page-table entry's dirty bit.
    pub const DIRTY: u32 = 1 << 5;
}

/// What `pageinfo` reports about one of the caller's addresses.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PageInfo {
    /// [`page_flags`] bits.
    pub flags: u32,
    /// The linear address the offset translated to (segment base + offset).
    pub linear: u32,
    /// The raw page-table entry (0 when the table is absent).
    pub pte: u32,
    /// The physical frame address (0 when not present).
    pub frame: u32,
    /// That frame's `mem_map` count (0 when not present).
    pub map_count: u32,
}

/// Operations of the `debug` system call.
pub mod debug_op {
    /// `free_page_tables(arg, 4 MiB)` on a range the caller names: returns 0 when freed,
    /// `-EPERM` when the guard refused it (kernel memory), `-EINVAL` on bad alignment.
    pub const FREE_PAGE_TABLES: u32 = 1;
    /// Number of free frames (same as `MemInfo::free_frames`), cheap.
    pub const FREE_FRAMES: u32 = 2;
    /// Write the word `0x5157_0000 | (arg & 0xffff)` into the caller's memory at offset
    /// `arg & !3` the way 0.11 kernel code does (`verify_area` + a ring-0 store), so a
    /// test can watch `write_verify` break copy-on-write.
    pub const KERNEL_WRITE: u32 = 3;
    /// Crash the kernel on purpose, in the caller's system call, to show (and test) the
    /// crash report: `arg` is one of [`crash_kind`]. Never returns.
    pub const KERNEL_CRASH: u32 = 4;
    /// Swap-device failure injection: `arg` bit 0 makes every read fail, bit 1 every
    /// write, bit 2 only the next one (0 clears all). Returns the previous setting.
    pub const SWAP_FAULTS: u32 = 5;
    /// Swap traffic since boot: `arg` 0 = pages written out, 1 = clean pages dropped,
    /// 2 = pages read back, 3 = bytes the disk moved (low 32 bits).
    pub const SWAP_STATS: u32 = 6;
    /// Timer ticks since boot (100 Hz), for benchmarks.
    pub const TICKS: u32 = 7;
    /// Linux's `/proc/self/fail-nth`: the caller's `arg`-th eligible allocation in the
    /// paging code fails (0 cancels). Returns the previous setting.
    pub const FAIL_NTH: u32 = 8;
    /// Linux's `/proc/self/make-it-fail`: `arg` 1 marks the caller for sites with a task
    /// filter, 0 unmarks it. Returns the previous setting.
    pub const MAKE_IT_FAIL: u32 = 9;
    /// Benchmarks (scripts/bench): writes every free frame once through the identity
    /// map, so that the host has backed all of the guest's RAM before anything is timed
    /// (a guest's first touch of a frame is costly under nested virtualisation).
    /// Returns the number of frames written.
    pub const BENCH_WARM: u32 = 10;
    /// Benchmarks: takes frames until [`bench_alloc::percent`] % of the paging frames
    /// are in use, then times `get_free_page` + `free_page` pairs (or the frame search
    /// alone) with the search `arg` names, checking before each timed pair that the
    /// bitmap and 0.11's scan choose the same frame; frees what it took. Returns the
    /// median CPU cycles of one pair (`-EINVAL` when the two searches disagree).
    pub const BENCH_ALLOC: u32 = 11;
    /// Benchmarks: sends `arg` bytes on COM1 in a tight transmit loop (the raw rate of
    /// the debug link). Only while no gdb session uses COM1. Returns the bytes sent.
    pub const BENCH_UART: u32 = 12;
    /// Benchmarks: `arg` 0 stores the time-stamp counter as the mark (a child's last
    /// word before `exit`); 1 and 2 return the mark's low and high 32 bits.
    pub const BENCH_MARK: u32 = 13;
    /// 0.11 `calc_mem()`: prints the free frames and the pages each page table maps on
    /// the console. Returns the number of free frames.
    pub const CALC_MEM: u32 = 14;
    /// 0.11 `verify_area(arg & !3, 4)` alone, with no store after it: what a `read()`
    /// that returns 0 bytes does to the page (copy-on-write broken, nothing written).
    pub const VERIFY_AREA: u32 = 15;
}

/// `debug(BENCH_ALLOC, arg)`: how `arg` is made.
pub mod bench_alloc {
    /// Bits 0..7: the share of the paging frames in use while timing, in percent.
    pub const PERCENT_MASK: u32 = 0xff;
    /// Bit 8: use 0.11's linear `mem_map` scan (clear: the bitmap).
    pub const LINEAR_SCAN: u32 = 1 << 8;
    /// Bit 9: time the frame search alone, not `get_free_page` + `free_page`.
    pub const SEARCH_ONLY: u32 = 1 << 9;
    /// The percentage in `arg`.
    pub const fn percent(arg: u32) -> u32 {
        arg & PERCENT_MASK
    }
}

/// `debug(BENCH_MARK, arg)` values.
pub mod bench_mark {
    /// Store the time-stamp counter now.
    pub const SET: u32 = 0;
    /// Read the mark's low 32 bits.
    pub const LOW: u32 = 1;
    /// Read the mark's high 32 bits.
    pub const HIGH: u32 = 2;
}

/// `debug(SWAP_FAULTS, bits)` bits.
pub mod swap_fault {
    pub const FAIL_READS: u32 = 1 << 0;
    pub const FAIL_WRITES: u32 = 1 << 1;
    /// Only the next injected failure: the switches clear themselves after it.
    pub const ONCE: u32 = 1 << 2;
}

/// What `debug(KERNEL_CRASH, kind)` does in ring 0.
pub mod crash_kind {
    /// `ud2`: an invalid-opcode exception in the kernel.
    pub const INVALID_OPCODE: u32 = 0;
    /// A read of an unmapped linear address: a page fault in kernel mode.
    pub const PAGE_FAULT: u32 = 1;
    /// A bad segment load: a general-protection fault.
    pub const GENERAL_PROTECTION: u32 = 2;
    /// A push on an unmapped stack: the double fault a kernel stack overflow causes.
    pub const DOUBLE_FAULT: u32 = 3;
    /// A Rust panic (a broken invariant).
    pub const PANIC: u32 = 4;
    /// Deep recursion past the bottom of the 4 KiB task page: the stack canary catches it.
    pub const STACK_OVERFLOW: u32 = 5;
    /// Every kind, with the name the tests use.
    pub const ALL: [(u32, &str); 6] = [
        (INVALID_OPCODE, "ud2"),
        (PAGE_FAULT, "pagefault"),
        (GENERAL_PROTECTION, "gp"),
        (DOUBLE_FAULT, "doublefault"),
        (PANIC, "panic"),
        (STACK_OVERFLOW, "stackoverflow"),
    ];
}

/// Exit statuses of QEMU through `isa-debug-exit` (the device exits with `v << 1 | 1`).
pub mod qemu_exit {
    /// Everything the scenario asked for held, checkmm clean, no frame leaked.
    pub const PASS: u32 = 0x10;
    /// The scenario or the kernel's end-of-run checks failed.
    pub const FAIL: u32 = 0x11;
    /// The kernel crashed (unexpected exception or panic).
    pub const CRASH: u32 = 0x12;
    /// The process exit status QEMU reports for a device value `v`.
    pub const fn process_status(v: u32) -> u32 {
        (v << 1) | 1
    }
}

// Byte images of the structures the kernel copies to user memory (little endian, the
// `#[repr(C)]` layout), built field by field so that no `unsafe` is needed.

impl FaultCounts {
    /// The counts as words, in the `#[repr(C)]` order (also the order of the kernel's
    /// introspection descriptor).
    pub const fn to_words(&self) -> [u32; 6] {
        [
            self.demand_zero,
            self.loaded,
            self.shared,
            self.cow_copied,
            self.cow_made_writable,
            self.swapped_in,
        ]
    }
    /// The counts from words in [`to_words`](Self::to_words)'s order.
    pub const fn from_words(w: [u32; 6]) -> FaultCounts {
        FaultCounts {
            demand_zero: w[0],
            loaded: w[1],
            shared: w[2],
            cow_copied: w[3],
            cow_made_writable: w[4],
            swapped_in: w[5],
        }
    }
}

impl MemInfo {
    /// Size in bytes.
    pub const SIZE: usize = 15 * 4;
    /// The structure's bytes, in its `#[repr(C)]` layout.
    pub fn to_bytes(&self) -> [u8; Self::SIZE] {
        let [f0, f1, f2, f3, f4, f5] = self.faults.to_words();
        words_to_bytes([
            self.paging_frames,
            self.free_frames,
            self.shared_frames,
            self.task_pages,
            self.task_page_tables,
            self.nr_tasks,
            f0,
            f1,
            f2,
            f3,
            f4,
            f5,
            self.swap_slots,
            self.swap_free,
            self.task_swapped,
        ])
    }
}

impl PageInfo {
    /// Size in bytes.
    pub const SIZE: usize = 5 * 4;
    /// The structure's bytes, in its `#[repr(C)]` layout.
    pub fn to_bytes(&self) -> [u8; Self::SIZE] {
        words_to_bytes([
            self.flags,
            self.linear,
            self.pte,
            self.frame,
            self.map_count,
        ])
    }
}

const _: () = assert!(core::mem::size_of::<MemInfo>() == MemInfo::SIZE);
const _: () = assert!(core::mem::size_of::<PageInfo>() == PageInfo::SIZE);

fn words_to_bytes<const W: usize, const B: usize>(words: [u32; W]) -> [u8; B] {
    let mut out = [0u8; B];
    for (chunk, word) in out.chunks_exact_mut(4).zip(words) {
        chunk.copy_from_slice(&word.to_le_bytes());
    }
    out
}
