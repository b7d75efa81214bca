//! Where `mem_map` lives in kernel memory: the `PAGING` static from the kernel's ELF symbols, and the counts inside it.
//!
//! `mem_map` is the `counts` array of `MemMap`, inside `Mm`, inside the `Paging` behind
//! the static `kernel::paging::PAGING` (a `spin::Once<SpinMutex<Paging>>`). Rust does not
//! fix field order, so the offset of `counts` in the static is found from its contents:
//! one count per frame from LOW_MEM, `USED` (100) for each frame below `start_mem`, the
//! rest 0..=99, zeros past HIGH_MEMORY up to the array's fixed length. With the stub, the
//! candidate is verified against `showmem` (free count, every shared frame's count)
//! read in the same stop; post-mortem, only the shape is checked.

use mm::addr::{LOW_MEM, MAX_PAGING_PAGES, PAGE_SIZE};
use mm::mem_map::USED;

/// The static holding the paging state: its linear (= physical, the kernel's identity
/// map) address and size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PagingStatic {
    pub addr: u32,
    pub size: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum SymbolError {
    #[error("cannot read the kernel ELF {path}: {error}")]
    Read { path: String, error: std::io::Error },
    #[error("the kernel ELF does not parse: {0}")]
    Parse(String),
    #[error("the kernel ELF has no kernel::paging::PAGING symbol")]
    NoSymbol,
}

/// Finds `kernel::paging::PAGING` in the kernel ELF at `path`.
pub fn find_paging_static(path: &std::path::Path) -> Result<PagingStatic, SymbolError> {
    use object::{Object, ObjectSymbol};
    let data = std::fs::read(path).map_err(|error| SymbolError::Read {
        path: path.display().to_string(),
        error,
    })?;
    let file = object::File::parse(&*data).map_err(|e| SymbolError::Parse(e.to_string()))?;
    for symbol in file.symbols() {
        let Ok(name) = symbol.name() else { continue };
        // Mangled (legacy) `_ZN6kernel6paging6PAGING17h<hash>E`, perhaps with an LLVM suffix.
        if name.starts_with("_ZN6kernel6paging6PAGING17h") && symbol.size() > 0 {
            return Ok(PagingStatic {
                addr: symbol.address() as u32,
                size: symbol.size() as u32,
            });
        }
    }
    Err(SymbolError::NoSymbol)
}

/// What identifies a kernel ELF to a reader of its RAM: its GNU build-id and where it put
/// the introspection descriptor (kernel/introspect's `PGKERNEL_DESCRIPTOR`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelIdentity {
    /// The build id's bytes (up to introspect's `BUILD_ID_LEN`, as the kernel keeps them);
    /// empty when the ELF has no note.
    pub build_id: Vec<u8>,
    /// The descriptor's address (physical: the kernel runs identity-mapped).
    pub descriptor: Option<u32>,
}

/// The build id and the descriptor symbol of the kernel ELF at `path`.
pub fn kernel_identity(path: &std::path::Path) -> Result<KernelIdentity, SymbolError> {
    use object::{Object, ObjectSymbol};
    let data = std::fs::read(path).map_err(|error| SymbolError::Read {
        path: path.display().to_string(),
        error,
    })?;
    let file = object::File::parse(&*data).map_err(|e| SymbolError::Parse(e.to_string()))?;
    let mut build_id = file
        .build_id()
        .map_err(|e| SymbolError::Parse(e.to_string()))?
        .map(<[u8]>::to_vec)
        .unwrap_or_default();
    build_id.truncate(introspect::BUILD_ID_LEN);
    let descriptor = file
        .symbols()
        .find(|s| s.name() == Ok(introspect::DESCRIPTOR_SYMBOL))
        .map(|s| s.address() as u32);
    Ok(KernelIdentity {
        build_id,
        descriptor,
    })
}

/// What `showmem` says, to verify a candidate offset.
pub struct Hints {
    pub high_memory: u32,
    pub start_mem: u32,
    pub free: u32,
    /// Frames with a count above 1, and their counts.
    pub shared: Vec<(u32, u8)>,
}

fn nr_pages(high_memory: u32) -> usize {
    (high_memory.saturating_sub(LOW_MEM) / PAGE_SIZE) as usize
}

/// The offset of `counts` in `blob` (the static's bytes), checked against `hints`.
pub fn locate_counts(blob: &[u8], hints: &Hints) -> Option<usize> {
    let reserved = (hints.start_mem.saturating_sub(LOW_MEM) / PAGE_SIZE) as usize;
    let pages = nr_pages(hints.high_memory);
    if reserved == 0
        || pages > MAX_PAGING_PAGES
        || reserved > pages
        || blob.len() < MAX_PAGING_PAGES
    {
        return None;
    }
    (0..=blob.len() - MAX_PAGING_PAGES).find(|&o| {
        let counts = &blob[o..o + MAX_PAGING_PAGES];
        counts[..reserved].iter().all(|&c| c == USED)
            && counts[reserved..pages].iter().filter(|&&c| c == 0).count() == hints.free as usize
            && counts[reserved..pages].iter().all(|&c| c < USED)
            && counts[pages..].iter().all(|&c| c == USED)
            && hints.shared.iter().all(|&(frame, count)| {
                frame >= LOW_MEM
                    && counts.get(((frame - LOW_MEM) / PAGE_SIZE) as usize) == Some(&count)
            })
    })
}

/// Post-mortem: the first offset whose bytes have the shape of `counts` for this RAM
/// size (a run of USED, then counts below USED, then USED to the end). Weaker than
/// [`locate_counts`]; the answer says so.
pub fn locate_counts_by_shape(blob: &[u8], high_memory: u32) -> Option<usize> {
    let pages = nr_pages(high_memory);
    if pages == 0 || pages > MAX_PAGING_PAGES || blob.len() < MAX_PAGING_PAGES {
        return None;
    }
    (0..=blob.len() - MAX_PAGING_PAGES).find(|&o| {
        if o > 0 && blob[o - 1] == USED {
            return false;
        }
        let counts = &blob[o..o + MAX_PAGING_PAGES];
        let reserved = counts.iter().take_while(|&&c| c == USED).count();
        reserved > 0
            && reserved < pages
            && counts[reserved..pages].iter().all(|&c| c < USED)
            && counts[pages..].iter().all(|&c| c == USED)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blob(offset: usize) -> Vec<u8> {
        let mut b = vec![7u8; offset];
        let mut counts = vec![USED; MAX_PAGING_PAGES];
        counts[4..16].fill(0); // 1 MiB .. 1 MiB + 16 KiB reserved, 64 KiB of RAM
        counts[5] = 1;
        counts[6] = 2;
        b.extend_from_slice(&counts);
        b.extend_from_slice(&[USED; 40]);
        b
    }

    #[test]
    fn finds_counts_checked_against_showmem() {
        let b = blob(123);
        let hints = Hints {
            high_memory: LOW_MEM + 16 * PAGE_SIZE,
            start_mem: LOW_MEM + 4 * PAGE_SIZE,
            free: 10,
            shared: vec![(LOW_MEM + 6 * PAGE_SIZE, 2)],
        };
        assert_eq!(locate_counts(&b, &hints), Some(123));
        let wrong = Hints { free: 9, ..hints };
        assert_eq!(locate_counts(&b, &wrong), None);
        assert_eq!(
            locate_counts_by_shape(&b, LOW_MEM + 16 * PAGE_SIZE),
            Some(123)
        );
    }
}
