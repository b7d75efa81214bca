//! The read-only program image: format constants, a no_std reader, a writer and the ELF flattening rules.
//!
//! The image plays the part of Linux 0.11's a.out files on the root disk: each program
//! is stored as its memory image flattened from address 0 (text, rodata, data), and the
//! kernel's `do_no_page` reads page `p` of a program from `data[p * 4096..]`, zero-filling
//! everything at and beyond `end_data` (the bss and the tail of the last page).
//!
//! Layout (all integers little endian):
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | magic `b"PGIMAGE1"` |
//! | 8 | 4 | program count |
//! | 12 | 4 | reserved (0) |
//! | 16 + 64 i | 64 | entry of program `i`, see [`entry_field`] |
//! | 4096-aligned | `data_len` | the data blob of each program |
//!
//! The crate is `no_std` and has no `unsafe`: the kernel parses the image in place
//! ([`Image::parse`]), the host packer (`mkimage`, feature `std`) builds one with
//! [`write_image`] from programs flattened by [`flatten`].
#![no_std]
#![forbid(unsafe_code)]

mod layout;
mod reader;
mod writer;

pub use layout::{flatten, layout, Layout, LayoutError, Segment};
pub use reader::{Image, ImageError, Programs};
pub use writer::{image_len, write_image, WriteError};

/// The eight bytes every image starts with.
pub const MAGIC: [u8; 8] = *b"PGIMAGE1";
/// Length of the image header (magic, count, reserved).
pub const HEADER_LEN: usize = 16;
/// Length of one program entry.
pub const ENTRY_LEN: usize = 64;
/// Length of the NUL-padded name field of an entry.
pub const NAME_FIELD_LEN: usize = 32;
/// Longest program name: the name field always keeps at least one NUL.
pub const MAX_NAME_LEN: usize = NAME_FIELD_LEN - 1;
/// Page size: data blobs start on page boundaries and the kernel reads them page by page.
pub const PAGE_SIZE: usize = abi::PAGE_SIZE as usize;
/// No program may reach beyond its task's 64 MiB segment.
pub const MAX_PROGRAM_END: u32 = abi::TASK_SIZE;

/// Byte offsets of the header fields.
pub mod header_field {
    /// `[u8; 8]`: [`MAGIC`](super::MAGIC).
    pub const MAGIC: usize = 0;
    /// `u32`: number of program entries.
    pub const COUNT: usize = 8;
    /// `u32`: reserved, written as 0 and ignored.
    pub const RESERVED: usize = 12;
}

/// Byte offsets of the fields inside one 64-byte program entry.
pub mod entry_field {
    /// `[u8; 32]`: the name (file stem), NUL-padded.
    pub const NAME: usize = 0;
    /// `u32`: the entry point (ELF `e_entry`).
    pub const ENTRY: usize = 32;
    /// `u32`: end of the executable segments.
    pub const END_CODE: usize = 36;
    /// `u32`: end of the file-backed bytes (`max(vaddr + filesz)`); `== data_len`.
    pub const END_DATA: usize = 40;
    /// `u32`: end of the bss (`max(vaddr + memsz)`).
    pub const BSS_END: usize = 44;
    /// `u32`: offset of the data blob from the image start, page aligned.
    pub const DATA_OFFSET: usize = 48;
    /// `u32`: length of the data blob.
    pub const DATA_LEN: usize = 52;
    /// `u32`: FNV-1a 32 of the data blob.
    pub const CHECKSUM: usize = 56;
    /// `u32`: reserved, written as 0 and ignored.
    pub const RESERVED: usize = 60;
}

/// One program of the image, borrowed from the image bytes.
///
/// Offsets are user addresses (offsets in the task's 64 MiB segment): the program is
/// linked at 0, so offset `x` of the program's memory is `data[x]` below `end_data`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Program<'a> {
    /// The program's name, what `execve` looks for.
    pub name: &'a str,
    /// Where execution starts.
    pub entry: u32,
    /// End of the code: pages below it hold instructions.
    pub end_code: u32,
    /// End of the bytes stored in the image; everything after reads as zero.
    pub end_data: u32,
    /// End of the bss: the initial program break.
    pub bss_end: u32,
    /// The flattened memory image, `end_data` bytes long.
    pub data: &'a [u8],
}

impl Program<'_> {
    /// Fills `out` with the page of the program's memory that contains `offset` (the
    /// offset is rounded down to its page): the stored bytes below `end_data`, zero for
    /// the rest of the page, as `do_no_page` does after reading a block from the file.
    pub fn read_page(&self, offset: u32, out: &mut [u8; PAGE_SIZE]) {
        let start = (offset as usize) & !(PAGE_SIZE - 1);
        let stored = self.data.get(start..).unwrap_or(&[]);
        let copied = stored.len().min(PAGE_SIZE);
        out[..copied].copy_from_slice(&stored[..copied]);
        out[copied..].fill(0);
    }

    /// Whether `offset` lies in a page that holds bytes from the image (below `end_data`
    /// rounded up): such a page is read from the image, any other is demand-zero.
    pub fn is_stored(&self, offset: u32) -> bool {
        (offset as usize) & !(PAGE_SIZE - 1) < self.end_data as usize
    }

    /// Number of pages that hold bytes from the image.
    pub fn stored_pages(&self) -> u32 {
        pages_for(self.end_data)
    }

    /// Number of pages from 0 up to the end of the bss.
    pub fn total_pages(&self) -> u32 {
        pages_for(self.bss_end)
    }
}

/// Number of pages needed to hold `len` bytes from address 0.
pub const fn pages_for(len: u32) -> u32 {
    len.div_ceil(PAGE_SIZE as u32)
}

/// FNV-1a, 32 bits: the checksum of each data blob (cheap, no tables, catches a
/// truncated or shifted initrd).
pub const fn fnv1a32(bytes: &[u8]) -> u32 {
    const OFFSET_BASIS: u32 = 0x811c_9dc5;
    const PRIME: u32 = 0x0100_0193;
    let mut hash = OFFSET_BASIS;
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u32;
        hash = hash.wrapping_mul(PRIME);
        i += 1;
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_known_values() {
        // Reference values of FNV-1a 32 (from the algorithm's published test vectors).
        assert_eq!(fnv1a32(b""), 0x811c_9dc5);
        assert_eq!(fnv1a32(b"a"), 0xe40c_292c);
        assert_eq!(fnv1a32(b"foobar"), 0xbf9c_f968);
    }

    #[test]
    fn read_page_zeroes_the_tail() {
        let data: [u8; PAGE_SIZE + 10] = core::array::from_fn(|i| (i % 251 + 1) as u8);
        let program = Program {
            name: "p",
            entry: 0,
            end_code: 16,
            end_data: data.len() as u32,
            bss_end: 3 * PAGE_SIZE as u32,
            data: &data,
        };
        let mut page = [0xaa; PAGE_SIZE];
        program.read_page(0, &mut page);
        assert_eq!(&page[..], &data[..PAGE_SIZE]);

        // The last stored page: 10 bytes from the image, then zeros.
        program.read_page(PAGE_SIZE as u32 + 7, &mut page);
        assert_eq!(&page[..10], &data[PAGE_SIZE..]);
        assert!(page[10..].iter().all(|&b| b == 0));

        // A bss page: all zero, whatever the buffer held.
        page.fill(0xaa);
        program.read_page(2 * PAGE_SIZE as u32, &mut page);
        assert!(page.iter().all(|&b| b == 0));

        assert!(program.is_stored(PAGE_SIZE as u32 + 100));
        assert!(!program.is_stored(2 * PAGE_SIZE as u32));
        assert_eq!(program.stored_pages(), 2);
        assert_eq!(program.total_pages(), 3);
    }
}
