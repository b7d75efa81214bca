//! The guest's RAM file (QEMU's `memory-backend-file`, `share=on`) mapped read-only: the
//! file's offset is the guest physical address, and the guest writes it while we read.
//!
//! Everything is read as 32-bit atomic loads: the guest's vCPU thread stores into the same
//! pages concurrently, so plain references to the bytes would be a data race; relaxed
//! atomic loads are what the descriptor's sequence count (kernel/introspect) orders.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use introspect::{Descriptor, Locator, LOCATOR_ADDR};
use mm::addr::PAGE_SIZE;

use super::LiveError;

/// Which file a mapping is of: a new QEMU makes a new file at the same path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileId {
    pub dev: u64,
    pub ino: u64,
    pub len: u64,
}

impl FileId {
    /// The file at `path` now.
    pub fn of(path: &Path) -> Result<FileId, LiveError> {
        let m = std::fs::metadata(path).map_err(|e| LiveError::open(path, e))?;
        Ok(FileId {
            dev: m.dev(),
            ino: m.ino(),
            len: m.len(),
        })
    }
}

/// A read-only shared mapping of the guest's RAM.
pub struct Ram {
    map: memmap2::Mmap,
    path: PathBuf,
    id: FileId,
}

impl Ram {
    /// Maps the file at `path`. Its size must be a whole number of pages, at least past
    /// the locator (anything smaller is not a guest's RAM).
    pub fn open(path: &Path) -> Result<Ram, LiveError> {
        let file = std::fs::File::open(path).map_err(|e| LiveError::open(path, e))?;
        let id = FileId::of(path)?;
        if id.len % u64::from(PAGE_SIZE) != 0
            || id.len < u64::from(LOCATOR_ADDR + PAGE_SIZE)
            || id.len > 1 << 32
        {
            return Err(LiveError::NotRam {
                path: path.display().to_string(),
                len: id.len,
            });
        }
        // SAFETY: a read-only shared mapping of the whole file. The guest changes the
        // bytes under us (that is the point); we never form references to them as plain
        // bytes, only as atomics (`words`). QEMU never shrinks the file while it runs; a
        // file truncated by someone else would fault on access (SIGBUS), as any mapped
        // file does.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| LiveError::open(path, e))?;
        Ok(Ram {
            map,
            path: path.to_path_buf(),
            id,
        })
    }

    /// The file's identity when it was mapped.
    pub fn id(&self) -> FileId {
        self.id
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes of guest RAM.
    pub fn len(&self) -> u64 {
        self.id.len
    }

    /// Whether the path still names the file mapped here (QEMU restarted: a new file).
    pub fn still_current(&self) -> bool {
        FileId::of(&self.path).is_ok_and(|id| id == self.id)
    }

    /// The whole RAM as words.
    fn words(&self) -> &[AtomicU32] {
        // SAFETY: the mapping is page-aligned and its length a multiple of 4 (checked in
        // `open`); AtomicU32 has u32's size and alignment, every bit pattern is valid,
        // and atomic loads of read-only memory are allowed for sizes up to the pointer
        // width (core::sync::atomic, "Atomic accesses to read-only memory"). The slice
        // lives as long as `self.map`.
        unsafe {
            std::slice::from_raw_parts(self.map.as_ptr().cast::<AtomicU32>(), self.map.len() / 4)
        }
    }

    /// The aligned word at physical `addr`; `None` outside the file or unaligned.
    pub fn word(&self, addr: u32) -> Option<u32> {
        if !addr.is_multiple_of(4) {
            return None;
        }
        self.words()
            .get((addr / 4) as usize)
            .map(|w| w.load(Ordering::Relaxed))
    }

    /// `out.len()` words from physical `addr`; `None` when any lies outside the file.
    pub fn copy_words(&self, addr: u32, out: &mut [u32]) -> Option<()> {
        if !addr.is_multiple_of(4) {
            return None;
        }
        let first = (addr / 4) as usize;
        let src = self.words().get(first..first.checked_add(out.len())?)?;
        for (o, w) in out.iter_mut().zip(src) {
            *o = w.load(Ordering::Relaxed);
        }
        Some(())
    }

    /// `len` bytes from physical `addr` (any alignment), read a word at a time.
    pub fn copy_bytes(&self, addr: u32, len: usize) -> Option<Vec<u8>> {
        let end = u64::from(addr) + len as u64;
        if end > self.len() {
            return None;
        }
        let first = addr & !3;
        let words = (end - u64::from(first)).div_ceil(4) as usize;
        let mut buf = vec![0u32; words];
        self.copy_words(first, &mut buf)?;
        let skip = (addr - first) as usize;
        Some(
            buf.iter()
                .flat_map(|w| w.to_le_bytes())
                .skip(skip)
                .take(len)
                .collect(),
        )
    }

    /// A `T` made only of atomic words (the descriptor's types) at physical `addr`.
    fn record<T>(&self, addr: u32) -> Option<&T> {
        let size = std::mem::size_of::<T>();
        if !addr.is_multiple_of(4) || u64::from(addr) + size as u64 > self.len() {
            return None;
        }
        let words = &self.words()[(addr / 4) as usize..];
        // SAFETY: in bounds and 4-aligned (checked above, the mapping is page-aligned);
        // the callers use it only for kernel/introspect's #[repr(C)] types made only of
        // AtomicU32 (no padding, any bit pattern valid, alignment 4), read by loads.
        Some(unsafe { &*words.as_ptr().cast::<T>() })
    }

    /// The descriptor at physical `addr`, if it fits in the file.
    pub fn descriptor(&self, addr: u32) -> Option<&Descriptor> {
        self.record::<Descriptor>(addr)
    }

    /// The locator at its fixed address.
    pub fn locator(&self) -> Option<&Locator> {
        self.record::<Locator>(LOCATOR_ADDR)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn reads_words_and_bytes_and_refuses_what_is_outside() {
        let dir = tempdir();
        let path = dir.join("ram");
        let mut bytes = vec![0u8; 2 << 20];
        bytes[0x1000..0x1008].copy_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
        std::fs::write(&path, &bytes).unwrap();
        let ram = Ram::open(&path).unwrap();
        assert_eq!(ram.word(0x1000), Some(0x0403_0201));
        assert_eq!(ram.word(0x1001), None, "unaligned");
        assert_eq!(ram.word(2 << 20), None, "past the end");
        assert_eq!(ram.copy_bytes(0x1003, 3), Some(vec![4, 5, 6]));
        assert_eq!(ram.copy_bytes((2 << 20) - 2, 4), None);
        assert!(ram.still_current());
        std::fs::remove_file(&path).unwrap();
        std::fs::write(&path, &bytes).unwrap();
        assert!(!ram.still_current(), "a new file at the path");
        std::fs::write(&path, [0u8; 100]).unwrap();
        assert!(matches!(Ram::open(&path), Err(LiveError::NotRam { .. })));
        assert!(matches!(
            Ram::open(&dir.join("missing")),
            Err(LiveError::Open { .. })
        ));
        std::fs::remove_dir_all(dir).unwrap();
    }

    pub(crate) fn tempdir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "inspector-live-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
