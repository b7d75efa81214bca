//! Small helpers of the text forms: a fixed buffer to measure or pad what a `Display`
//! writes, and plurals.

use core::fmt::{self, Display, Write};

/// A fixed buffer of `N` bytes that a `Display` can be written into (no heap).
pub struct Buffer<const N: usize> {
    bytes: [u8; N],
    len: usize,
}

impl<const N: usize> Buffer<N> {
    pub const fn new() -> Self {
        Buffer {
            bytes: [0; N],
            len: 0,
        }
    }
    pub fn as_str(&self) -> &str {
        // Only whole `write_str` pieces of valid UTF-8 were copied in.
        core::str::from_utf8(&self.bytes[..self.len]).unwrap_or("")
    }
}

impl<const N: usize> Default for Buffer<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> Write for Buffer<N> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len + s.len();
        let room = self.bytes.get_mut(self.len..end).ok_or(fmt::Error)?;
        room.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// Pads a `Display` that ignores width (like `Entry::describe`) to `width` columns,
/// through a small stack buffer; longer text goes out unpadded.
pub struct Pad<'a>(pub &'a dyn Display, pub usize);

impl Display for Pad<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buffer = Buffer::<64>::new();
        if write!(buffer, "{}", self.0).is_err() {
            return write!(f, "{}", self.0);
        }
        write!(f, "{:<width$}", buffer.as_str(), width = self.1)
    }
}

/// `n` and a noun, singular for 1: `1 mismatch`, `2 mismatches`.
pub struct Count<'a> {
    pub n: u64,
    pub one: &'a str,
    pub many: &'a str,
}

/// `n` and the singular or plural noun.
pub fn count<'a>(n: impl Into<u64>, one: &'a str, many: &'a str) -> Count<'a> {
    Count {
        n: n.into(),
        one,
        many,
    }
}

impl Display for Count<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}",
            self.n,
            if self.n == 1 { self.one } else { self.many }
        )
    }
}
