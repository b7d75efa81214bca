//! The writer `mkimage` uses: lays programs out in an image, into a caller's buffer (no allocation).

use core::fmt;

use crate::layout::{check_layout, Layout, LayoutError};
use crate::{
    entry_field, fnv1a32, header_field, Program, ENTRY_LEN, HEADER_LEN, MAGIC, MAX_NAME_LEN,
    PAGE_SIZE,
};

/// Why a set of programs cannot be written as an image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteError {
    /// A name is empty or contains a NUL byte.
    BadName {
        /// The program's index.
        index: usize,
    },
    /// A name is longer than [`MAX_NAME_LEN`](crate::MAX_NAME_LEN) bytes.
    NameTooLong {
        /// The program's index.
        index: usize,
        /// The name's length in bytes.
        len: usize,
    },
    /// Two programs have the same name.
    DuplicateName {
        /// The later program's index.
        index: usize,
        /// The earlier program with that name.
        first: usize,
    },
    /// The data is not `end_data` bytes long.
    LengthMismatch {
        /// The program's index.
        index: usize,
        /// The data's length.
        data_len: usize,
        /// The program's `end_data`.
        end_data: u32,
    },
    /// The program's addresses break a layout rule.
    BadLayout {
        /// The program's index.
        index: usize,
        /// The rule broken.
        error: LayoutError,
    },
    /// The image would not fit in 4 GiB (offsets are `u32`).
    TooLarge,
    /// The output buffer is shorter than [`image_len`].
    OutputTooSmall {
        /// The bytes the image needs.
        needed: usize,
        /// The bytes given.
        available: usize,
    },
}

impl fmt::Display for WriteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::BadName { index } => {
                write!(
                    f,
                    "program {index}: the name is empty or contains a NUL byte"
                )
            }
            Self::NameTooLong { index, len } => write!(
                f,
                "program {index}: the name is {len} bytes long, at most {MAX_NAME_LEN} fit"
            ),
            Self::DuplicateName { index, first } => {
                write!(f, "program {index}: same name as program {first}")
            }
            Self::LengthMismatch {
                index,
                data_len,
                end_data,
            } => write!(
                f,
                "program {index}: {data_len:#x} bytes of data, but end_data is {end_data:#x}"
            ),
            Self::BadLayout { index, error } => write!(f, "program {index}: {error}"),
            Self::TooLarge => write!(f, "the image would exceed 4 GiB"),
            Self::OutputTooSmall { needed, available } => {
                write!(
                    f,
                    "output buffer too small: {needed} bytes needed, {available} given"
                )
            }
        }
    }
}

/// Checks every program and returns the image length (a multiple of the page size:
/// the last blob is padded so the initrd ends on a page boundary).
pub fn image_len(programs: &[Program<'_>]) -> Result<usize, WriteError> {
    for (index, program) in programs.iter().enumerate() {
        check_program(index, program)?;
        if let Some(first) = programs[..index]
            .iter()
            .position(|other| other.name == program.name)
        {
            return Err(WriteError::DuplicateName { index, first });
        }
    }
    let mut end = data_start(programs.len())?;
    for program in programs {
        end = page_align(
            end.checked_add(program.data.len())
                .ok_or(WriteError::TooLarge)?,
        )?;
    }
    if u32::try_from(end).is_err() {
        return Err(WriteError::TooLarge);
    }
    Ok(end)
}

/// Writes the image of `programs` into `out` (at least [`image_len`] bytes; padding
/// is zeroed) and returns its length.
pub fn write_image(programs: &[Program<'_>], out: &mut [u8]) -> Result<usize, WriteError> {
    let len = image_len(programs)?;
    let available = out.len();
    let out = out.get_mut(..len).ok_or(WriteError::OutputTooSmall {
        needed: len,
        available,
    })?;
    out.fill(0);
    out[header_field::MAGIC..header_field::MAGIC + MAGIC.len()].copy_from_slice(&MAGIC);
    // `image_len` bounded everything below by u32::MAX, so these conversions are exact.
    put_u32(out, header_field::COUNT, programs.len() as u32);
    put_u32(out, header_field::RESERVED, 0);
    let mut data_offset = data_start(programs.len())?;
    for (index, program) in programs.iter().enumerate() {
        let entry = HEADER_LEN + index * ENTRY_LEN;
        let name = program.name.as_bytes();
        out[entry + entry_field::NAME..entry + entry_field::NAME + name.len()]
            .copy_from_slice(name);
        put_u32(out, entry + entry_field::ENTRY, program.entry);
        put_u32(out, entry + entry_field::END_CODE, program.end_code);
        put_u32(out, entry + entry_field::END_DATA, program.end_data);
        put_u32(out, entry + entry_field::BSS_END, program.bss_end);
        put_u32(out, entry + entry_field::DATA_OFFSET, data_offset as u32);
        put_u32(
            out,
            entry + entry_field::DATA_LEN,
            program.data.len() as u32,
        );
        put_u32(out, entry + entry_field::CHECKSUM, fnv1a32(program.data));
        put_u32(out, entry + entry_field::RESERVED, 0);
        out[data_offset..data_offset + program.data.len()].copy_from_slice(program.data);
        data_offset = page_align(data_offset + program.data.len())?;
    }
    Ok(len)
}

/// The name and layout rules of one program.
fn check_program(index: usize, program: &Program<'_>) -> Result<(), WriteError> {
    let name = program.name.as_bytes();
    if name.is_empty() || name.contains(&0) {
        return Err(WriteError::BadName { index });
    }
    if name.len() > MAX_NAME_LEN {
        return Err(WriteError::NameTooLong {
            index,
            len: name.len(),
        });
    }
    if program.data.len() != program.end_data as usize {
        return Err(WriteError::LengthMismatch {
            index,
            data_len: program.data.len(),
            end_data: program.end_data,
        });
    }
    check_layout(&Layout {
        entry: program.entry,
        end_code: program.end_code,
        end_data: program.end_data,
        bss_end: program.bss_end,
    })
    .map_err(|error| WriteError::BadLayout { index, error })
}

/// Where the first data blob goes: the first page boundary after the entry table.
fn data_start(count: usize) -> Result<usize, WriteError> {
    count
        .checked_mul(ENTRY_LEN)
        .and_then(|table| table.checked_add(HEADER_LEN))
        .ok_or(WriteError::TooLarge)
        .and_then(page_align)
}

/// Rounds up to a page boundary.
fn page_align(len: usize) -> Result<usize, WriteError> {
    len.checked_next_multiple_of(PAGE_SIZE)
        .ok_or(WriteError::TooLarge)
}

fn put_u32(out: &mut [u8], offset: usize, value: u32) {
    out[offset..offset + 4].copy_from_slice(&value.to_le_bytes());
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::vec;
    use std::vec::Vec;

    use super::*;
    use crate::{Image, ImageError, MAX_PROGRAM_END};

    const TEXT_LEN: usize = 5000;

    fn sample_data() -> Vec<u8> {
        (0..TEXT_LEN).map(|i| (i * 7 % 256) as u8).collect()
    }

    fn program<'a>(name: &'a str, data: &'a [u8]) -> Program<'a> {
        Program {
            name,
            entry: 4,
            end_code: 4096,
            end_data: data.len() as u32,
            bss_end: 3 * PAGE_SIZE as u32,
            data,
        }
    }

    fn build(programs: &[Program<'_>]) -> Vec<u8> {
        let mut out = vec![0xee; image_len(programs).unwrap()];
        let len = write_image(programs, &mut out).unwrap();
        assert_eq!(len, out.len());
        out
    }

    fn sample_image() -> Vec<u8> {
        let data = sample_data();
        let short = [1u8, 2, 3];
        let mut small = program("small", &short);
        small.end_code = 3;
        small.entry = 0;
        build(&[program("hello", &data), small])
    }

    fn entry_offset(index: usize, field: usize) -> usize {
        HEADER_LEN + index * ENTRY_LEN + field
    }

    fn patch_u32(image: &mut [u8], offset: usize, value: u32) {
        image[offset..offset + 4].copy_from_slice(&value.to_le_bytes());
    }

    #[test]
    fn round_trip() {
        let data = sample_data();
        let short = [1u8, 2, 3];
        let mut small = program("small", &short);
        small.end_code = 3;
        small.entry = 0;
        let programs = [program("hello", &data), small];
        let bytes = build(&programs);
        assert_eq!(bytes.len() % PAGE_SIZE, 0);
        let image = Image::parse(&bytes).unwrap();
        assert_eq!(image.len(), 2);
        let read: Vec<Program<'_>> = image.programs().collect();
        assert_eq!(read, programs);
        for program in &read {
            let offset = program.data.as_ptr() as usize - bytes.as_ptr() as usize;
            assert_eq!(
                offset % PAGE_SIZE,
                0,
                "blob of {} page aligned",
                program.name
            );
        }
        assert_eq!(image.find("small"), Some(small));
        assert_eq!(image.find("nothing"), None);
        assert_eq!(image.find("hell"), None);

        let empty = build(&[]);
        let image = Image::parse(&empty).unwrap();
        assert!(image.is_empty());
        assert_eq!(image.programs().count(), 0);
    }

    #[test]
    fn reader_refusals() {
        let good = sample_image();
        let parse_patched = |patch: &dyn Fn(&mut Vec<u8>)| {
            let mut bytes = good.clone();
            patch(&mut bytes);
            Image::parse(&bytes).map(|_| ())
        };

        assert_eq!(
            Image::parse(&good[..HEADER_LEN - 1]).map(|_| ()),
            Err(ImageError::Truncated {
                len: HEADER_LEN - 1
            })
        );
        assert_eq!(parse_patched(&|b| b[0] = b'X'), Err(ImageError::BadMagic));
        assert_eq!(
            parse_patched(&|b| patch_u32(b, header_field::COUNT, u32::MAX)),
            Err(ImageError::TableOutOfBounds { count: u32::MAX })
        );
        assert_eq!(
            Image::parse(&good[..HEADER_LEN + ENTRY_LEN]).map(|_| ()),
            Err(ImageError::TableOutOfBounds { count: 2 })
        );
        // Empty name, name without NUL, garbage after the NUL, invalid UTF-8.
        for patch in [
            &(|b: &mut Vec<u8>| b[entry_offset(0, 0)] = 0) as &dyn Fn(&mut Vec<u8>),
            &|b| b[entry_offset(0, 0)..entry_offset(0, 32)].fill(b'a'),
            &|b| b[entry_offset(0, 31)] = b'z',
            &|b| b[entry_offset(0, 0)] = 0xff,
        ] {
            assert_eq!(parse_patched(patch), Err(ImageError::BadName { index: 0 }));
        }
        assert_eq!(
            parse_patched(
                &|b| b[entry_offset(1, 0)..entry_offset(1, 6)].copy_from_slice(b"hello\0")
            ),
            Err(ImageError::DuplicateName { index: 1, first: 0 })
        );
        assert_eq!(
            parse_patched(&|b| patch_u32(b, entry_offset(0, entry_field::DATA_OFFSET), 100)),
            Err(ImageError::MisalignedData {
                index: 0,
                offset: 100
            })
        );
        assert_eq!(
            parse_patched(&|b| patch_u32(b, entry_offset(0, entry_field::DATA_OFFSET), 0)),
            Err(ImageError::DataOutOfBounds { index: 0 }),
            "data over the header"
        );
        let len = good.len() as u32;
        assert_eq!(
            parse_patched(&|b| patch_u32(b, entry_offset(1, entry_field::DATA_OFFSET), len)),
            Err(ImageError::DataOutOfBounds { index: 1 }),
            "data past the end"
        );
        assert_eq!(
            parse_patched(&|b| patch_u32(b, entry_offset(0, entry_field::DATA_LEN), 10)),
            Err(ImageError::LengthMismatch {
                index: 0,
                data_len: 10,
                end_data: TEXT_LEN as u32
            })
        );
        assert_eq!(
            parse_patched(&|b| patch_u32(b, entry_offset(0, entry_field::ENTRY), 4096)),
            Err(ImageError::BadLayout {
                index: 0,
                error: LayoutError::EntryOutsideCode {
                    entry: 4096,
                    end_code: 4096
                }
            })
        );
        assert_eq!(
            parse_patched(&|b| patch_u32(b, entry_offset(0, entry_field::BSS_END), 4096)),
            Err(ImageError::BadLayout {
                index: 0,
                error: LayoutError::BeyondBss
            })
        );
        assert_eq!(
            parse_patched(&|b| patch_u32(
                b,
                entry_offset(0, entry_field::BSS_END),
                MAX_PROGRAM_END + 4096
            )),
            Err(ImageError::BadLayout {
                index: 0,
                error: LayoutError::TooLarge(MAX_PROGRAM_END + 4096)
            })
        );
        let data_at = PAGE_SIZE;
        let stored = fnv1a32(&sample_data());
        let mut flipped = sample_data();
        flipped[17] ^= 1;
        assert_eq!(
            parse_patched(&|b| b[data_at + 17] ^= 1),
            Err(ImageError::ChecksumMismatch {
                index: 0,
                stored,
                computed: fnv1a32(&flipped)
            })
        );
    }

    #[test]
    fn writer_refusals() {
        let data = sample_data();
        let check = |programs: &[Program<'_>]| image_len(programs).map(|_| ());
        assert_eq!(
            check(&[program("", &data)]),
            Err(WriteError::BadName { index: 0 })
        );
        assert_eq!(
            check(&[program("a\0b", &data)]),
            Err(WriteError::BadName { index: 0 })
        );
        let long = "x".repeat(MAX_NAME_LEN + 1);
        assert_eq!(
            check(&[program(&long, &data)]),
            Err(WriteError::NameTooLong {
                index: 0,
                len: MAX_NAME_LEN + 1
            })
        );
        assert!(check(&[program(&long[..MAX_NAME_LEN], &data)]).is_ok());
        assert_eq!(
            check(&[
                program("a", &data),
                program("b", &data),
                program("a", &data)
            ]),
            Err(WriteError::DuplicateName { index: 2, first: 0 })
        );
        let mut mismatch = program("a", &data);
        mismatch.end_data -= 1;
        assert_eq!(
            check(&[mismatch]),
            Err(WriteError::LengthMismatch {
                index: 0,
                data_len: TEXT_LEN,
                end_data: TEXT_LEN as u32 - 1
            })
        );
        let mut no_bss = program("a", &data);
        no_bss.bss_end = 4096;
        assert_eq!(
            check(&[no_bss]),
            Err(WriteError::BadLayout {
                index: 0,
                error: LayoutError::BeyondBss
            })
        );
        let programs = [program("a", &data)];
        let mut out = vec![0; PAGE_SIZE];
        assert_eq!(
            write_image(&programs, &mut out),
            Err(WriteError::OutputTooSmall {
                needed: 3 * PAGE_SIZE,
                available: PAGE_SIZE
            })
        );
    }

    #[test]
    fn read_page_through_the_image() {
        let bytes = sample_image();
        let image = Image::parse(&bytes).unwrap();
        let hello = image.find("hello").unwrap();
        let mut page = [0xaau8; PAGE_SIZE];
        hello.read_page(PAGE_SIZE as u32, &mut page);
        let data = sample_data();
        assert_eq!(&page[..TEXT_LEN - PAGE_SIZE], &data[PAGE_SIZE..]);
        // The bytes after end_data in the image are the next blob's padding; the reader
        // must not leak them into the page.
        assert!(page[TEXT_LEN - PAGE_SIZE..].iter().all(|&b| b == 0));
    }
}
