//! Finding and checking the descriptor the kernel publishes (kernel/introspect) in a RAM
//! file: through the ELF symbol when the inspector has the kernel's ELF, else through the
//! locator at its fixed address; then everything a reader relies on is checked before any
//! answer is computed from it (the file's size against the RAM the descriptor describes,
//! magic, version, size, the layout's addresses inside the file, the build id against the
//! ELF's). The boot id is checked against the machine by the caller (it needs QEMU).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use introspect::{Descriptor, HeaderValue, LayoutValue};
use mm::addr::{LOW_MEM, MAX_HIGH_MEMORY, MAX_PAGING_PAGES, NR_TASKS, PAGE_SIZE, PDES_PER_TASK};

use super::ram::Ram;
use super::LiveError;

/// How the descriptor was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FoundBy {
    /// The kernel ELF's `PGKERNEL_DESCRIPTOR` symbol.
    Symbol,
    /// The locator at physical 0x101000.
    Locator,
}

/// A descriptor found in a RAM file and checked, with the layout it published at boot.
pub struct Located {
    pub ram: Arc<Ram>,
    /// The descriptor's physical address.
    pub addr: u32,
    pub found_by: FoundBy,
    pub header: HeaderValue,
    pub layout: LayoutValue,
    /// Whether the build id was compared with the ELF's (false: no ELF given).
    pub build_id_checked: bool,
    /// Whether the boot id was compared with the machine's own memory (QEMU).
    boot_checked: AtomicBool,
    /// When QEMU last left the boot check unanswered (see [`Located::boot_check_due`]).
    boot_check_unanswered: Mutex<Option<Instant>>,
}

/// What the reader expects of the kernel: from its ELF, when it has one.
#[derive(Clone, Debug, Default)]
pub struct Expect {
    pub build_id: Option<Vec<u8>>,
    pub symbol: Option<u32>,
}

impl Located {
    /// Finds and checks the descriptor in `ram`.
    pub fn find(ram: Arc<Ram>, expect: &Expect) -> Result<Located, LiveError> {
        let (addr, found_by) = match expect.symbol {
            Some(addr) => (addr, FoundBy::Symbol),
            None => {
                let locator = ram.locator().ok_or(LiveError::TooSmall)?;
                (locator.descriptor_addr()?, FoundBy::Locator)
            }
        };
        let d = ram.descriptor(addr).ok_or(LiveError::OutsideFile {
            what: "the descriptor",
            addr,
            len: ram.len(),
        })?;
        let header = d.header()?;
        if let Some(elf) = &expect.build_id {
            if header.build_id() != &elf[..] {
                return Err(LiveError::OtherBuild {
                    ram: hex_bytes(header.build_id()),
                    elf: hex_bytes(elf),
                });
            }
        }
        let layout = d.layout();
        check_layout(&layout, ram.len())?;
        Ok(Located {
            ram,
            addr,
            found_by,
            header,
            layout,
            build_id_checked: expect.build_id.is_some(),
            boot_checked: AtomicBool::new(false),
            boot_check_unanswered: Mutex::new(None),
        })
    }

    /// The descriptor in the mapping.
    pub fn descriptor(&self) -> &Descriptor {
        // `find` checked that it fits; the mapping does not change size.
        self.ram
            .descriptor(self.addr)
            .expect("the descriptor was checked to fit in the file")
    }

    /// Whether this is still the boot that was located: the same file, the descriptor
    /// still published, the same boot id (a reboot in the same QEMU writes a new one).
    pub fn still_current(&self) -> bool {
        self.ram.still_current()
            && self
                .descriptor()
                .header()
                .is_ok_and(|h| h.boot_id == self.header.boot_id)
    }

    pub fn boot_checked(&self) -> bool {
        self.boot_checked.load(Ordering::Relaxed)
    }

    pub fn set_boot_checked(&self) {
        self.boot_checked.store(true, Ordering::Relaxed);
    }

    /// Whether the boot check may be tried now: not yet checked, and QEMU did not leave
    /// it unanswered in the last `retry` (a QMP socket another client holds never
    /// answers: each answer must not wait for it).
    pub fn boot_check_due(&self, retry: Duration) -> bool {
        !self.boot_checked()
            && self
                .boot_check_unanswered
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .is_none_or(|at| at.elapsed() >= retry)
    }

    /// QEMU did not answer the boot check (try again after a while).
    pub fn note_boot_check_unanswered(&self) {
        *self
            .boot_check_unanswered
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
    }

    /// The physical address of the boot id in the descriptor (for the machine's check).
    pub fn boot_id_addr(&self) -> u32 {
        let d = self.descriptor();
        let base = d as *const Descriptor as usize;
        let field = &d.header.boot_id as *const _ as usize;
        self.addr + (field - base) as u32
    }
}

/// Lowercase hex of a build id.
pub fn hex_bytes(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Everything in the layout a snapshot will read lies inside the file, and the layout is
/// this kernel's: a RAM file of another size, or garbage, is refused here.
fn check_layout(l: &LayoutValue, len: u64) -> Result<(), LiveError> {
    let bad = |what: &'static str| Err(LiveError::BadLayout { what });
    if l.page_size != PAGE_SIZE || l.nr_tasks != NR_TASKS as u32 || l.low_mem != LOW_MEM {
        return bad("page size, task slots or LOW_MEM are not this kernel's");
    }
    let high = u64::from(l.high_memory);
    // HIGH_MEMORY is the RAM the firmware reports (up to 128 KiB below the RAM's size),
    // capped at 64 MiB: a file whose size does not fit it is another machine's RAM.
    let fits = high <= len
        && if len > u64::from(MAX_HIGH_MEMORY) {
            high == u64::from(MAX_HIGH_MEMORY)
        } else {
            len - high < 1 << 20
        };
    if !fits {
        return Err(LiveError::WrongSize {
            len,
            high_memory: l.high_memory,
        });
    }
    let within = |addr: u32, bytes: u64| u64::from(addr) + bytes <= u64::from(l.high_memory);
    if l.start_mem < LOW_MEM
        || l.start_mem >= l.high_memory
        || !l.start_mem.is_multiple_of(PAGE_SIZE)
    {
        return bad("start_mem");
    }
    if !l.pg_dir.is_multiple_of(PAGE_SIZE) || !within(l.pg_dir, u64::from(PAGE_SIZE)) {
        return bad("the page directory");
    }
    if l.kernel_pdes as usize > PDES_PER_TASK
        || l.kernel_tables[..l.kernel_pdes as usize]
            .iter()
            .any(|&t| !t.is_multiple_of(PAGE_SIZE) || !within(t, u64::from(PAGE_SIZE)))
    {
        return bad("the identity map's page tables");
    }
    let pages = ((l.high_memory - LOW_MEM) / PAGE_SIZE) as usize;
    if l.nr_pages as usize != pages
        || pages > MAX_PAGING_PAGES
        || l.mem_map_len < l.nr_pages
        || !within(l.mem_map, u64::from(l.nr_pages))
    {
        return bad("mem_map");
    }
    if (l.free_bits_words as usize) < pages.div_ceil(32)
        || !l.free_bits.is_multiple_of(4)
        || !within(l.free_bits, 4 * u64::from(l.free_bits_words))
    {
        return bad("the free-frame bitmap");
    }
    Ok(())
}
