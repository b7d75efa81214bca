//! Physical memory through the kernel's identity map: the kernel's implementation of
//! `mm::PhysMem`, and the two ways the kernel reaches memory by address.
//!
//! The identity map covers `[0, HIGH_MEMORY)` (task 0's slot), so a physical address
//! below HIGH_MEMORY is also a valid kernel pointer, before and after paging is on.

use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use mm::addr::{Frame, LinearAddr, PhysAddr, PAGE_SIZE};
use mm::phys::SwapIoError;
use mm::PhysMem;

use super::ata::AtaDisk;
use super::multiboot::{BootInfo, Module};

use super::cpu;

/// 32-bit words in a page, the count of 0.11's `rep stosl` / `rep movsl`.
const DWORDS_PER_PAGE: u32 = PAGE_SIZE / 4;

/// The end of the identity map: set once at boot, before any `KernelPhys` access.
static IDENTITY_END: AtomicU32 = AtomicU32::new(0);

/// Physical memory as the paging code sees it, plus the swap disk. Only one exists (the
/// kernel's `Mm` owns it).
pub struct KernelPhys {
    /// The swap device (0.12's `SWAP_DEV`), once attached.
    swap_disk: Option<AtaDisk>,
    /// Failure switches for the swap device, set by tests and the debugger.
    pub swap_faults: SwapFaults,
    /// Bytes the swap device moved, for the swap benchmark.
    pub swap_bytes_read: u64,
    pub swap_bytes_written: u64,
}

/// Injected swap-device failures (fault injection covers swap).
#[derive(Clone, Copy, Debug, Default)]
pub struct SwapFaults {
    /// Every read fails while set.
    pub fail_reads: bool,
    /// Every write fails while set.
    pub fail_writes: bool,
    /// The next injected failure clears both switches.
    pub once: bool,
}

impl SwapFaults {
    /// Whether this transfer fails on purpose (and disarms a one-shot setting).
    fn inject(&mut self, failing: bool) -> bool {
        if failing && self.once {
            *self = SwapFaults::default();
        }
        failing
    }
}

/// Set once the one [`KernelPhys`] exists.
static TAKEN: AtomicBool = AtomicBool::new(false);

impl KernelPhys {
    /// The kernel's physical memory, identity-mapped up to `identity_end`: the one
    /// `KernelPhys` (it writes page tables and frames that no Rust reference covers; a
    /// second call panics). `identity_end` must not pass the RAM the boot information
    /// reports (checked), and the identity map must cover it before paging goes on
    /// ([`enable_paging`] checks).
    pub fn take(boot: &BootInfo, identity_end: u32) -> KernelPhys {
        assert!(
            u64::from(identity_end) <= boot.ram_end(),
            "identity map to {identity_end:#x} beyond RAM ({:#x})",
            boot.ram_end()
        );
        assert!(!TAKEN.swap(true, Ordering::Relaxed), "a second KernelPhys");
        IDENTITY_END.store(identity_end, Ordering::Relaxed);
        KernelPhys {
            swap_disk: None,
            swap_faults: SwapFaults::default(),
            swap_bytes_read: 0,
            swap_bytes_written: 0,
        }
    }

    /// Makes `disk` the swap device (`init_swapping` then reads its header).
    pub fn attach_swap_disk(&mut self, disk: AtaDisk) {
        self.swap_disk = Some(disk);
    }

    /// The swap device, if one is attached.
    pub fn swap_disk(&self) -> Option<&AtaDisk> {
        self.swap_disk.as_ref()
    }

    /// Panics unless `frame` lies inside the identity map.
    pub fn check_frame(&self, frame: Frame) {
        check_identity(frame.as_u32(), PAGE_SIZE as usize);
    }

    /// A pointer to `len` bytes at physical `addr`, after checking the range is identity-mapped.
    fn ptr(&self, addr: PhysAddr, len: usize) -> *mut u8 {
        check_identity(addr.as_u32(), len);
        addr.as_u32() as *mut u8
    }
}

/// Panics unless `[addr, addr + len)` lies inside the identity map: a paging bug that
/// names a frame outside RAM must stop the kernel with a message, not scribble.
pub fn check_identity(addr: u32, len: usize) {
    let end = IDENTITY_END.load(Ordering::Relaxed);
    let ok = (addr as u64 + len as u64) <= end as u64;
    assert!(
        ok,
        "physical access {addr:#010x}+{len:#x} beyond the identity map ({end:#010x})"
    );
}

impl PhysMem for KernelPhys {
    fn open_reader_window(mm: &mm::Mm<Self>) -> bool {
        crate::publish::open_reader_window(mm)
    }
    fn close_reader_window(_mm: &mm::Mm<Self>) {
        crate::publish::close_reader_window();
    }
    fn read_u32(&self, addr: PhysAddr) -> u32 {
        let p = self.ptr(addr, 4) as *const u32;
        // SAFETY: `ptr` checked the word lies in identity-mapped RAM; page-table words are
        // 4-aligned (callers pass entry addresses); volatile because the MMU reads and
        // writes (accessed/dirty bits) the same memory behind the compiler's back.
        unsafe { p.read_volatile() }
    }
    fn write_u32(&mut self, addr: PhysAddr, value: u32) {
        let p = self.ptr(addr, 4) as *mut u32;
        // SAFETY: as in read_u32; `&mut self` serialises writers (one KernelPhys, locked).
        unsafe { p.write_volatile(value) }
    }
    fn zero_frame(&mut self, frame: Frame) {
        let p = self.ptr(frame.addr(), PAGE_SIZE as usize);
        // 0.11's get_free_page: `rep stosl` over 1024 dwords. A word at a time, because
        // QEMU's TCG emulates string instructions per iteration: `rep stosb` (memset)
        // costs four times as much here (about 13,000 cycles a page, scripts/bench).
        // SAFETY: a whole identity-mapped, page-aligned frame the caller owns (just
        // allocated); DF is 0 in Rust code.
        unsafe {
            core::arch::asm!(
                "rep stosl",
                inout("edi") p => _,
                inout("ecx") DWORDS_PER_PAGE => _,
                in("eax") 0u32,
                options(att_syntax, nostack, preserves_flags)
            );
        }
    }
    fn copy_frame(&mut self, from: Frame, to: Frame) {
        let src = self.ptr(from.addr(), PAGE_SIZE as usize);
        let dst = self.ptr(to.addr(), PAGE_SIZE as usize);
        // 0.11's copy_page: `rep movsl` over 1024 dwords (for the reason in zero_frame).
        // SAFETY: two distinct identity-mapped, page-aligned frames (`to` was just
        // allocated, so it is not `from`): the ranges do not overlap. esi cannot be an
        // asm operand on i386, so it is swapped in and restored; DF is 0.
        unsafe {
            core::arch::asm!(
                "xchgl {source}, %esi",
                "rep movsl",
                "movl {source}, %esi",
                source = inout(reg) src => _,
                inout("edi") dst => _,
                inout("ecx") DWORDS_PER_PAGE => _,
                options(att_syntax, nostack, preserves_flags)
            );
        }
    }
    fn write_bytes(&mut self, addr: PhysAddr, bytes: &[u8]) {
        let dst = self.ptr(addr, bytes.len());
        // SAFETY: identity-mapped destination checked above; `bytes` is a Rust slice that
        // cannot overlap a frame handed out by mem_map (frames are never Rust objects).
        unsafe { core::ptr::copy_nonoverlapping(bytes.as_ptr(), dst, bytes.len()) }
    }
    fn read_bytes(&self, addr: PhysAddr, out: &mut [u8]) {
        let src = self.ptr(addr, out.len());
        // SAFETY: as in write_bytes, in the other direction.
        unsafe { core::ptr::copy_nonoverlapping(src, out.as_mut_ptr(), out.len()) }
    }
    fn flush_tlb(&mut self) {
        let cr3 = cpu::read_cr3();
        if cpu::read_cr0() & (1 << 31) != 0 {
            // SAFETY: reloading the current CR3 changes no mapping, it only flushes the TLB.
            unsafe { cpu::write_cr3(cr3) }
        }
    }
    fn invalidate_page(&mut self, page: LinearAddr) {
        cpu::invlpg(page.as_u32());
    }
    fn swap_pages(&self) -> u32 {
        self.swap_disk.as_ref().map_or(0, AtaDisk::pages)
    }
    fn swap_read(&mut self, slot: u32, frame: Frame) -> Result<(), SwapIoError> {
        let disk = self.swap_disk.as_ref().ok_or(SwapIoError::NoDevice)?;
        if slot >= disk.pages() {
            return Err(SwapIoError::OutOfRange(slot));
        }
        if self.swap_faults.inject(self.swap_faults.fail_reads) {
            return Err(SwapIoError::Device);
        }
        let p = self.ptr(frame.addr(), PAGE_SIZE as usize) as *mut [u8; PAGE_SIZE as usize];
        // SAFETY: a whole identity-mapped frame (checked by `ptr`) that the caller owns:
        // frames handed out by mem_map are never Rust objects, so this is the only
        // reference to it while the disk fills it.
        let buffer = unsafe { &mut *p };
        disk.read_page(slot, buffer)
            .map_err(|_| SwapIoError::Device)?;
        self.swap_bytes_read += u64::from(PAGE_SIZE);
        Ok(())
    }
    fn swap_write(&mut self, slot: u32, frame: Frame) -> Result<(), SwapIoError> {
        let disk = self.swap_disk.as_ref().ok_or(SwapIoError::NoDevice)?;
        if slot >= disk.pages() {
            return Err(SwapIoError::OutOfRange(slot));
        }
        if self.swap_faults.inject(self.swap_faults.fail_writes) {
            return Err(SwapIoError::Device);
        }
        let p = self.ptr(frame.addr(), PAGE_SIZE as usize) as *const [u8; PAGE_SIZE as usize];
        // SAFETY: as in swap_read; the disk only reads the frame.
        let buffer = unsafe { &*p };
        disk.write_page(slot, buffer)
            .map_err(|_| SwapIoError::Device)?;
        self.swap_bytes_written += u64::from(PAGE_SIZE);
        Ok(())
    }
}

/// Turns paging on with `mm`'s page directory, after checking in software that it
/// identity-maps every page of RAM the kernel uses (code, data, stacks, the directory
/// and tables themselves all lie below HIGH_MEMORY).
pub fn enable_paging(mm: &mm::Mm<KernelPhys>) {
    let high = mm.high_memory();
    for page in (0..high).step_by(PAGE_SIZE as usize) {
        assert_eq!(
            mm.walk(LinearAddr::new(page)).physical(),
            Some(page),
            "the identity map misses {page:#x}"
        );
    }
    // SAFETY: the directory identity-maps [0, HIGH_MEMORY) (checked above), which holds
    // the kernel image, its stacks and the paging structures.
    unsafe { cpu::enable_paging(mm.pg_dir().as_u32()) };
}

/// The bytes of the boot module `module` (the program image), which must lie below
/// `start_mem`, so that `mem_map` never hands its frames out (checked): nothing writes
/// them again (but a debugger user, whose business that is).
pub fn boot_module_bytes(module: &Module, start_mem: u32) -> &'static [u8] {
    let len = module.len() as usize;
    assert!(
        module.end <= start_mem,
        "the boot module ends at {:#x}, above start_mem {start_mem:#x}",
        module.end
    );
    check_identity(module.start, len);
    // SAFETY: identity-mapped RAM (checked), below start_mem (checked), so never a paging
    // frame and never written by the kernel: immutable for the kernel's lifetime.
    unsafe { core::slice::from_raw_parts(module.start as *const u8, len) }
}

/// Why [`store_to_user`] refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NotUserMapped;

/// Stores `bytes` (within one page) at a user linear address the way 0.11's
/// `put_fs_byte` does: a ring-0 store through the MMU, which sets the page's accessed and
/// dirty bits. CR0.WP is clear, so the store ignores the page's RW bit; that is exactly
/// why `write_verify` must have broken copy-on-write first. Refused unless the page is
/// present in `mm`'s tables and in a user task's slot (checked by a software walk).
pub fn store_to_user(
    mm: &mm::Mm<KernelPhys>,
    linear: LinearAddr,
    bytes: &[u8],
) -> Result<(), NotUserMapped> {
    let in_page = (PAGE_SIZE - linear.page_offset()) as usize;
    if bytes.len() > in_page || linear.slot() == 0 || mm.translate(linear).is_none() {
        return Err(NotUserMapped);
    }
    // SAFETY: the page is present in the page tables the CPU uses (one directory for all
    // tasks; checked by the walk above), so the store cannot fault; it is a user slot's
    // page, never the kernel's identity map, and user frames are never Rust objects.
    unsafe {
        core::ptr::copy_nonoverlapping(bytes.as_ptr(), linear.as_u32() as *mut u8, bytes.len())
    };
    Ok(())
}

/// [`store_to_user`] as 0.11 makes it (`compat=D9`): a page of the range may be absent;
/// the store then faults in ring 0, the page-fault handler maps the page (0.11's
/// `do_no_page`) and the store resumes at the faulting byte. The caller must have told
/// the page-fault handler that this store is under way (`fault::kernel_store`) and hold
/// no lock that handler takes; otherwise the fault is reported as a kernel crash.
/// Refused unless the whole range lies in one user task's slot.
pub fn store_to_user_faulting(linear: LinearAddr, bytes: &[u8]) -> Result<(), NotUserMapped> {
    let start = linear.as_u32();
    let last = start
        .checked_add(bytes.len().saturating_sub(1) as u32)
        .ok_or(NotUserMapped)?;
    if linear.slot() == 0 || LinearAddr::new(last).slot() != linear.slot() {
        return Err(NotUserMapped);
    }
    for (i, &byte) in bytes.iter().enumerate() {
        // SAFETY: the address is in a user task's slot (checked), never the kernel's
        // identity map, and user frames are never Rust objects; an absent page faults and
        // is mapped by the handler before the store is retried (or the task dies there).
        // Volatile, so that each byte is one store, as put_fs_byte's.
        unsafe { ((start + i as u32) as *mut u8).write_volatile(byte) }
    }
    Ok(())
}
