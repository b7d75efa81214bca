//! The reader the kernel uses: validates an image once, then hands out its programs without copying.

use core::fmt;

use crate::layout::{check_layout, Layout, LayoutError};
use crate::{
    entry_field, fnv1a32, header_field, Program, ENTRY_LEN, HEADER_LEN, MAGIC, NAME_FIELD_LEN,
    PAGE_SIZE,
};

/// Why a byte string is not a valid program image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageError {
    /// Shorter than the 16-byte header.
    Truncated {
        /// The length found.
        len: usize,
    },
    /// Does not start with [`MAGIC`](crate::MAGIC).
    BadMagic,
    /// The entry table runs past the end of the image.
    TableOutOfBounds {
        /// The program count of the header.
        count: u32,
    },
    /// A name is empty, not NUL-terminated and NUL-padded, or not UTF-8.
    BadName {
        /// The entry's index.
        index: usize,
    },
    /// Two entries have the same name.
    DuplicateName {
        /// The later entry's index.
        index: usize,
        /// The earlier entry with that name.
        first: usize,
    },
    /// A data blob does not start on a page boundary.
    MisalignedData {
        /// The entry's index.
        index: usize,
        /// Its data offset.
        offset: u32,
    },
    /// A data blob overlaps the header and table or runs past the end of the image.
    DataOutOfBounds {
        /// The entry's index.
        index: usize,
    },
    /// `data_len` differs from `end_data`.
    LengthMismatch {
        /// The entry's index.
        index: usize,
        /// Its `data_len`.
        data_len: u32,
        /// Its `end_data`.
        end_data: u32,
    },
    /// The recorded addresses break a layout rule.
    BadLayout {
        /// The entry's index.
        index: usize,
        /// The rule broken.
        error: LayoutError,
    },
    /// The data does not match its checksum.
    ChecksumMismatch {
        /// The entry's index.
        index: usize,
        /// The checksum recorded in the entry.
        stored: u32,
        /// The checksum of the data found.
        computed: u32,
    },
}

impl fmt::Display for ImageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Truncated { len } => {
                write!(
                    f,
                    "image truncated: {len} bytes, the header alone is {HEADER_LEN}"
                )
            }
            Self::BadMagic => write!(f, "bad magic: not a program image"),
            Self::TableOutOfBounds { count } => {
                write!(
                    f,
                    "the table of {count} programs runs past the end of the image"
                )
            }
            Self::BadName { index } => write!(f, "program {index}: bad name"),
            Self::DuplicateName { index, first } => {
                write!(f, "program {index}: same name as program {first}")
            }
            Self::MisalignedData { index, offset } => {
                write!(
                    f,
                    "program {index}: data offset {offset:#x} is not page aligned"
                )
            }
            Self::DataOutOfBounds { index } => {
                write!(f, "program {index}: data outside the image's data area")
            }
            Self::LengthMismatch {
                index,
                data_len,
                end_data,
            } => write!(
                f,
                "program {index}: data length {data_len:#x} differs from end_data {end_data:#x}"
            ),
            Self::BadLayout { index, error } => write!(f, "program {index}: {error}"),
            Self::ChecksumMismatch {
                index,
                stored,
                computed,
            } => write!(
                f,
                "program {index}: checksum {computed:#010x}, the entry says {stored:#010x}"
            ),
        }
    }
}

/// A validated program image, borrowed in place.
#[derive(Clone, Copy, Debug)]
pub struct Image<'a> {
    bytes: &'a [u8],
    count: usize,
}

impl<'a> Image<'a> {
    /// Validates the whole image: magic, table bounds, every entry's name, layout,
    /// data bounds, alignment and checksum, and that no two names are equal. After
    /// this, reading programs cannot fail.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, ImageError> {
        if bytes.len() < HEADER_LEN {
            return Err(ImageError::Truncated { len: bytes.len() });
        }
        if bytes[header_field::MAGIC..header_field::MAGIC + MAGIC.len()] != MAGIC {
            return Err(ImageError::BadMagic);
        }
        let count_field = read_u32(bytes, header_field::COUNT);
        let table_end = (count_field as usize)
            .checked_mul(ENTRY_LEN)
            .and_then(|len| len.checked_add(HEADER_LEN))
            .filter(|&end| end <= bytes.len())
            .ok_or(ImageError::TableOutOfBounds { count: count_field })?;
        let image = Self {
            bytes,
            count: count_field as usize,
        };
        for index in 0..image.count {
            let program = image.decode(index, table_end)?;
            for first in 0..index {
                if image.decode(first, table_end)?.name == program.name {
                    return Err(ImageError::DuplicateName { index, first });
                }
            }
        }
        Ok(image)
    }

    /// Number of programs.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether the image holds no program.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The programs, in table order.
    pub fn programs(&self) -> Programs<'a> {
        Programs {
            image: *self,
            next: 0,
        }
    }

    /// The program called `name`, if any.
    pub fn find(&self, name: &str) -> Option<Program<'a>> {
        self.programs().find(|program| program.name == name)
    }

    /// End of the entry table: no data blob may start before it.
    fn table_end(&self) -> usize {
        HEADER_LEN + self.count * ENTRY_LEN
    }

    /// Decodes and checks entry `index` (which must be below `count`).
    fn decode(&self, index: usize, table_end: usize) -> Result<Program<'a>, ImageError> {
        let base = HEADER_LEN + index * ENTRY_LEN;
        let entry = &self.bytes[base..base + ENTRY_LEN];
        let name = decode_name(&entry[entry_field::NAME..entry_field::NAME + NAME_FIELD_LEN])
            .ok_or(ImageError::BadName { index })?;
        let layout = Layout {
            entry: read_u32(entry, entry_field::ENTRY),
            end_code: read_u32(entry, entry_field::END_CODE),
            end_data: read_u32(entry, entry_field::END_DATA),
            bss_end: read_u32(entry, entry_field::BSS_END),
        };
        let data_offset = read_u32(entry, entry_field::DATA_OFFSET);
        let data_len = read_u32(entry, entry_field::DATA_LEN);
        let stored = read_u32(entry, entry_field::CHECKSUM);
        check_layout(&layout).map_err(|error| ImageError::BadLayout { index, error })?;
        if data_len != layout.end_data {
            return Err(ImageError::LengthMismatch {
                index,
                data_len,
                end_data: layout.end_data,
            });
        }
        if !(data_offset as usize).is_multiple_of(PAGE_SIZE) {
            return Err(ImageError::MisalignedData {
                index,
                offset: data_offset,
            });
        }
        let start = data_offset as usize;
        let data = start
            .checked_add(data_len as usize)
            .filter(|_| start >= table_end)
            .and_then(|end| self.bytes.get(start..end))
            .ok_or(ImageError::DataOutOfBounds { index })?;
        let computed = fnv1a32(data);
        if computed != stored {
            return Err(ImageError::ChecksumMismatch {
                index,
                stored,
                computed,
            });
        }
        Ok(Program {
            name,
            entry: layout.entry,
            end_code: layout.end_code,
            end_data: layout.end_data,
            bss_end: layout.bss_end,
            data,
        })
    }
}

/// Iterator over an image's programs, from [`Image::programs`].
#[derive(Clone, Debug)]
pub struct Programs<'a> {
    image: Image<'a>,
    next: usize,
}

impl<'a> Iterator for Programs<'a> {
    type Item = Program<'a>;

    fn next(&mut self) -> Option<Program<'a>> {
        while self.next < self.image.count {
            let index = self.next;
            self.next += 1;
            // `parse` validated every entry, so decoding cannot fail here; should it
            // ever, skipping the entry is safer than handing out unchecked data.
            if let Ok(program) = self.image.decode(index, self.image.table_end()) {
                return Some(program);
            }
        }
        None
    }
}

/// The name in a NUL-padded field: non-empty, at least one NUL, only NULs after the
/// first, UTF-8.
fn decode_name(field: &[u8]) -> Option<&str> {
    let len = field.iter().position(|&b| b == 0)?;
    if len == 0 || field[len..].iter().any(|&b| b != 0) {
        return None;
    }
    core::str::from_utf8(&field[..len]).ok()
}

/// The little-endian `u32` at `offset` (the caller checked the bounds).
fn read_u32(bytes: &[u8], offset: usize) -> u32 {
    let mut word = [0u8; 4];
    word.copy_from_slice(&bytes[offset..offset + 4]);
    u32::from_le_bytes(word)
}
