//! Where the introspection descriptor sits in the image: the two statics a reader outside
//! the machine finds by symbol or by address, and the build id the linker wrote.
//!
//! The statics need `#[no_mangle]` (the ELF symbols `PGKERNEL_DESCRIPTOR` and
//! `PGKERNEL_LOCATOR`, which readers look up by name) and `#[link_section]` (the locator's
//! fixed address, linker.ld's `.introspect`); both attributes are unsafe in Rust's eyes
//! (they bypass name mangling and section placement), so they live here under `arch/`.
//! What the kernel publishes in them is `crate::publish`.

use introspect::{Descriptor, Locator, BUILD_ID_LEN, LOCATOR_ADDR};

/// The descriptor (all zero in .bss until `publish::init`).
#[no_mangle]
#[used]
pub static PGKERNEL_DESCRIPTOR: Descriptor = Descriptor::new();

/// The locator, at the fixed physical address [`LOCATOR_ADDR`].
#[no_mangle]
#[used]
#[link_section = ".introspect.locator"]
pub static PGKERNEL_LOCATOR: Locator = Locator::new();

extern "C" {
    /// The GNU build-id note (linker.ld; `--build-id=sha1` in build.rs).
    static __build_id_start: u8;
    static __build_id_end: u8;
}

/// The descriptor's physical address (the kernel runs identity-mapped).
pub fn descriptor_addr() -> u32 {
    core::ptr::addr_of!(PGKERNEL_DESCRIPTOR) as u32
}

/// Whether the locator is where readers look for it (a linker script change that moved
/// it must stop the boot, not leave readers guessing).
pub fn locator_in_place() -> bool {
    core::ptr::addr_of!(PGKERNEL_LOCATOR) as u32 == LOCATOR_ADDR
}

/// The kernel's build id: the descriptor bytes of its `NT_GNU_BUILD_ID` note, up to
/// [`BUILD_ID_LEN`]; empty when the image has none.
pub fn build_id(out: &mut [u8; BUILD_ID_LEN]) -> usize {
    const NOTE_HEADER: usize = 12;
    const NT_GNU_BUILD_ID: u32 = 3;
    let start = core::ptr::addr_of!(__build_id_start);
    let end = core::ptr::addr_of!(__build_id_end);
    let len = (end as usize).saturating_sub(start as usize);
    if len < NOTE_HEADER {
        return 0;
    }
    // SAFETY: linker.ld places the note between the two symbols, in the loaded,
    // read-only image that nothing writes; `len` bytes from `start` are that note.
    let note = unsafe { core::slice::from_raw_parts(start, len) };
    let word = |at: usize| u32::from_le_bytes([note[at], note[at + 1], note[at + 2], note[at + 3]]);
    let (namesz, descsz, kind) = (word(0) as usize, word(4) as usize, word(8));
    let desc_at = NOTE_HEADER + namesz.next_multiple_of(4);
    if kind != NT_GNU_BUILD_ID || desc_at + descsz > len {
        return 0;
    }
    let n = descsz.min(BUILD_ID_LEN);
    out[..n].copy_from_slice(&note[desc_at..desc_at + n]);
    n
}
