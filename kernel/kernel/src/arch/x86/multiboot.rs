//! Multiboot v1 information block: parsed into a self-contained copy at boot.
//!
//! The loader leaves the information block (and the strings and tables it points to) in
//! memory the kernel will later hand out as free frames, so [`BootInfo::parse`] copies
//! everything the kernel needs into a plain value with fixed-size arrays (no heap).

use core::fmt;

/// What the loader leaves in `eax` for a multiboot v1 kernel.
pub const BOOTLOADER_MAGIC: u32 = 0x2BAD_B002;

/// Longest command line kept, in bytes (longer ones are cut).
pub const MAX_CMDLINE_LEN: usize = 256;
/// Memory-map regions kept (more are counted in [`BootInfo::regions_dropped`]).
pub const MAX_REGIONS: usize = 32;
/// Modules kept (more are counted in [`BootInfo::modules_dropped`]).
pub const MAX_MODULES: usize = 4;
/// Longest module string kept, in bytes.
pub const MAX_MODULE_NAME_LEN: usize = 64;

/// Memory-map region type 1: RAM the OS may use.
pub const REGION_USABLE: u32 = 1;

/// Where the kernel is loaded; `mem_upper` counts from here.
const ONE_MIB: u64 = 0x10_0000;
const KIB: u64 = 1024;

/// Bits of the information block's `flags` word: which fields are valid.
mod info_flag {
    pub const MEMORY: u32 = 1 << 0;
    pub const CMDLINE: u32 = 1 << 2;
    pub const MODULES: u32 = 1 << 3;
    pub const MEMORY_MAP: u32 = 1 << 6;
}

/// Byte offsets in the information block (multiboot specification 0.6.96, section 3.3).
mod info_offset {
    pub const FLAGS: u32 = 0;
    pub const MEM_LOWER: u32 = 4;
    pub const MEM_UPPER: u32 = 8;
    pub const CMDLINE: u32 = 16;
    pub const MODS_COUNT: u32 = 20;
    pub const MODS_ADDR: u32 = 24;
    pub const MMAP_LENGTH: u32 = 44;
    pub const MMAP_ADDR: u32 = 48;
}

/// Layout of one module entry: start, end, string, reserved.
mod module_entry {
    pub const START: u32 = 0;
    pub const END: u32 = 4;
    pub const STRING: u32 = 8;
    pub const SIZE: u32 = 16;
}

/// Layout of one memory-map entry. `size` comes first and does not count itself.
mod mmap_entry {
    pub const SIZE_FIELD: u32 = 0;
    pub const BASE: u32 = 4;
    pub const LENGTH: u32 = 12;
    pub const TYPE: u32 = 20;
    /// Smallest valid `size` value: base (8) + length (8) + type (4).
    pub const MIN_SIZE: u32 = 20;
    /// Bytes of the `size` field itself.
    pub const SIZE_FIELD_BYTES: u32 = 4;
}

/// Why the boot information could not be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BootError {
    /// `eax` did not hold [`BOOTLOADER_MAGIC`]: not started by a multiboot v1 loader.
    BadMagic(u32),
    /// The information pointer was null.
    NullInfo,
    /// Flag 0 was clear: no `mem_lower`/`mem_upper`, so the RAM size is unknown.
    NoMemoryInfo,
}

impl fmt::Display for BootError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BootError::BadMagic(found) => write!(
                f,
                "bad multiboot magic {found:#010x} (expected {BOOTLOADER_MAGIC:#010x})"
            ),
            BootError::NullInfo => f.write_str("null multiboot information pointer"),
            BootError::NoMemoryInfo => f.write_str("multiboot information has no memory size"),
        }
    }
}

/// One region of the BIOS memory map (e820), as the loader reported it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemoryRegion {
    /// Physical start.
    pub base: u64,
    /// Length in bytes.
    pub len: u64,
    /// Type: 1 usable, 2 reserved, 3 ACPI reclaimable, 4 ACPI NVS, 5 bad.
    pub kind: u32,
}

impl MemoryRegion {
    /// Exclusive physical end (saturating, for a bogus region).
    pub fn end(&self) -> u64 {
        self.base.saturating_add(self.len)
    }

    /// Whether the OS may use this region.
    pub fn is_usable(&self) -> bool {
        self.kind == REGION_USABLE
    }

    /// A short name for the type, for messages.
    pub fn kind_name(&self) -> &'static str {
        match self.kind {
            REGION_USABLE => "usable",
            2 => "reserved",
            3 => "ACPI reclaimable",
            4 => "ACPI NVS",
            5 => "bad",
            _ => "unknown",
        }
    }
}

/// A module the loader placed in memory (QEMU: one per comma-separated `-initrd` file).
#[derive(Clone, Copy, Debug)]
pub struct Module {
    /// Physical start (page-aligned: we ask for it in the header).
    pub start: u32,
    /// Physical end (exclusive).
    pub end: u32,
    name: [u8; MAX_MODULE_NAME_LEN],
    name_len: usize,
}

impl Module {
    const EMPTY: Module = Module {
        start: 0,
        end: 0,
        name: [0; MAX_MODULE_NAME_LEN],
        name_len: 0,
    };

    /// The module's string (QEMU: the `-initrd` file name followed by its arguments).
    pub fn name(&self) -> &str {
        utf8_prefix(&self.name[..self.name_len])
    }

    /// Size in bytes.
    pub fn len(&self) -> u32 {
        self.end.saturating_sub(self.start)
    }

    /// Whether the module is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The boot information, copied out of the loader's block.
#[derive(Clone, Debug)]
pub struct BootInfo {
    /// KiB of RAM below 1 MiB (conventional memory).
    pub mem_lower_kib: u32,
    /// KiB of contiguous RAM from 1 MiB up.
    pub mem_upper_kib: u32,
    cmdline: [u8; MAX_CMDLINE_LEN],
    cmdline_len: usize,
    regions: [MemoryRegion; MAX_REGIONS],
    region_count: usize,
    regions_dropped: usize,
    modules: [Module; MAX_MODULES],
    module_count: usize,
    modules_dropped: usize,
}

impl BootInfo {
    /// Checks the magic and copies the information block at physical `info_phys`.
    ///
    /// Must run while the block is intact and readable at its physical address: before
    /// paging (or with low memory identity-mapped) and before any frame is allocated.
    /// Optional parts the loader left out (command line, modules, memory map) come out
    /// empty; only the memory size is required.
    pub fn parse(magic: u32, info_phys: u32) -> Result<BootInfo, BootError> {
        if magic != BOOTLOADER_MAGIC {
            return Err(BootError::BadMagic(magic));
        }
        if info_phys == 0 {
            return Err(BootError::NullInfo);
        }
        let info = PhysReader { base: info_phys };
        let flags = info.u32_at(info_offset::FLAGS);
        if flags & info_flag::MEMORY == 0 {
            return Err(BootError::NoMemoryInfo);
        }

        let mut boot = BootInfo {
            mem_lower_kib: info.u32_at(info_offset::MEM_LOWER),
            mem_upper_kib: info.u32_at(info_offset::MEM_UPPER),
            cmdline: [0; MAX_CMDLINE_LEN],
            cmdline_len: 0,
            regions: [MemoryRegion::default(); MAX_REGIONS],
            region_count: 0,
            regions_dropped: 0,
            modules: [Module::EMPTY; MAX_MODULES],
            module_count: 0,
            modules_dropped: 0,
        };

        if flags & info_flag::CMDLINE != 0 {
            boot.cmdline_len = copy_c_string(info.u32_at(info_offset::CMDLINE), &mut boot.cmdline);
        }

        if flags & info_flag::MODULES != 0 {
            let count = info.u32_at(info_offset::MODS_COUNT) as usize;
            let table = info.u32_at(info_offset::MODS_ADDR);
            if table != 0 {
                for index in 0..count {
                    let Some(entry_addr) = (index as u32)
                        .checked_mul(module_entry::SIZE)
                        .and_then(|offset| table.checked_add(offset))
                    else {
                        break;
                    };
                    if boot.module_count == MAX_MODULES {
                        boot.modules_dropped = count - index;
                        break;
                    }
                    let entry = PhysReader { base: entry_addr };
                    let module = &mut boot.modules[boot.module_count];
                    module.start = entry.u32_at(module_entry::START);
                    module.end = entry.u32_at(module_entry::END);
                    module.name_len =
                        copy_c_string(entry.u32_at(module_entry::STRING), &mut module.name);
                    boot.module_count += 1;
                }
            }
        }

        if flags & info_flag::MEMORY_MAP != 0 {
            let map_addr = info.u32_at(info_offset::MMAP_ADDR);
            let map_len = info.u32_at(info_offset::MMAP_LENGTH);
            if map_addr != 0 {
                boot.copy_memory_map(map_addr, map_addr.saturating_add(map_len));
            }
        }

        Ok(boot)
    }

    /// Walks the variable-size memory-map entries in `[addr, end)`.
    fn copy_memory_map(&mut self, mut addr: u32, end: u32) {
        while addr.saturating_add(mmap_entry::SIZE_FIELD_BYTES + mmap_entry::MIN_SIZE) <= end {
            let entry = PhysReader { base: addr };
            let size = entry.u32_at(mmap_entry::SIZE_FIELD);
            if size < mmap_entry::MIN_SIZE {
                break; // a corrupt entry: stop rather than loop or read garbage
            }
            if self.region_count == MAX_REGIONS {
                self.regions_dropped += 1;
            } else {
                self.regions[self.region_count] = MemoryRegion {
                    base: entry.u64_at(mmap_entry::BASE),
                    len: entry.u64_at(mmap_entry::LENGTH),
                    kind: entry.u32_at(mmap_entry::TYPE),
                };
                self.region_count += 1;
            }
            match size
                .checked_add(mmap_entry::SIZE_FIELD_BYTES)
                .and_then(|step| addr.checked_add(step))
            {
                Some(next) => addr = next,
                None => break,
            }
        }
    }

    /// The command line (QEMU: `"<kernel path> <-append text>"`), cut at
    /// [`MAX_CMDLINE_LEN`] bytes or at the first invalid UTF-8 byte.
    pub fn cmdline(&self) -> &str {
        utf8_prefix(&self.cmdline[..self.cmdline_len])
    }

    /// The value of the first `key=value` word of the command line, if any.
    pub fn cmdline_value(&self, key: &str) -> Option<&str> {
        self.cmdline()
            .split_ascii_whitespace()
            .find_map(|word| word.strip_prefix(key)?.strip_prefix('='))
    }

    /// The memory map (empty if the loader gave none).
    pub fn memory_map(&self) -> &[MemoryRegion] {
        &self.regions[..self.region_count]
    }

    /// Regions that did not fit in [`MAX_REGIONS`].
    pub fn regions_dropped(&self) -> usize {
        self.regions_dropped
    }

    /// The modules, in the loader's order.
    pub fn modules(&self) -> &[Module] {
        &self.modules[..self.module_count]
    }

    /// Modules that did not fit in [`MAX_MODULES`].
    pub fn modules_dropped(&self) -> usize {
        self.modules_dropped
    }

    /// End (exclusive) of the RAM the kernel manages: the end of the usable region that
    /// contains 1 MiB (where the kernel sits), or else 1 MiB + `mem_upper`.
    ///
    /// Like Linux 0.11's `memory_end`, only the contiguous RAM above 1 MiB counts; holes
    /// and RAM past the first reserved region are ignored.
    pub fn ram_end(&self) -> u64 {
        self.memory_map()
            .iter()
            .find(|region| region.is_usable() && region.base <= ONE_MIB && ONE_MIB < region.end())
            .map(MemoryRegion::end)
            .unwrap_or(ONE_MIB + u64::from(self.mem_upper_kib) * KIB)
    }
}

/// Reads little structures at a physical address (paging off or identity-mapped).
struct PhysReader {
    base: u32,
}

impl PhysReader {
    fn u32_at(&self, offset: u32) -> u32 {
        let addr = self.base.wrapping_add(offset);
        // SAFETY: `parse` checked the magic, so `base` comes from the multiboot loader,
        // which guarantees these structures exist in RAM; the caller of `parse` keeps
        // them identity-mapped and untouched. Unaligned reads are fine on x86 and in
        // `read_unaligned`. The address is never 0 (checked by the callers).
        unsafe { core::ptr::read_unaligned(addr as *const u32) }
    }

    fn u64_at(&self, offset: u32) -> u64 {
        u64::from(self.u32_at(offset)) | (u64::from(self.u32_at(offset + 4)) << 32)
    }
}

/// Copies the NUL-terminated string at physical `addr` into `buffer`; returns its length
/// (cut at the buffer size). A null pointer gives an empty string.
fn copy_c_string(addr: u32, buffer: &mut [u8]) -> usize {
    if addr == 0 {
        return 0;
    }
    for (index, slot) in buffer.iter_mut().enumerate() {
        let byte_addr = addr.wrapping_add(index as u32);
        // SAFETY: as in `PhysReader::u32_at`: the loader put a NUL-terminated string
        // there; we stop at the NUL or at the buffer's end, whichever comes first.
        let byte = unsafe { core::ptr::read_volatile(byte_addr as *const u8) };
        if byte == 0 {
            return index;
        }
        *slot = byte;
    }
    buffer.len()
}

/// The longest valid UTF-8 prefix of `bytes` (a cut may split a character).
fn utf8_prefix(bytes: &[u8]) -> &str {
    match core::str::from_utf8(bytes) {
        Ok(text) => text,
        Err(error) => core::str::from_utf8(&bytes[..error.valid_up_to()]).unwrap_or_default(),
    }
}
