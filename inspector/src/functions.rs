//! The kernel's functions by address, from its ELF's symbol table: which function an eip is in (`mm::memory::copy_page_tables+0x1c`), for saying where gdb stopped the kernel.

use std::path::Path;

use crate::symbols::SymbolError;

/// The ELF's function symbols, sorted by address.
pub struct Functions {
    /// (start, size, demangled name without the hash).
    sorted: Vec<(u32, u32, String)>,
}

impl Functions {
    /// Reads the function symbols of the kernel ELF at `path`.
    pub fn load(path: &Path) -> Result<Functions, SymbolError> {
        let data = std::fs::read(path).map_err(|error| SymbolError::Read {
            path: path.display().to_string(),
            error,
        })?;
        Functions::parse(&data)
    }

    fn parse(data: &[u8]) -> Result<Functions, SymbolError> {
        use object::{Object, ObjectSymbol, SymbolKind};
        let file = object::File::parse(data).map_err(|e| SymbolError::Parse(e.to_string()))?;
        let mut sorted: Vec<(u32, u32, String)> = file
            .symbols()
            .filter(|s| s.kind() == SymbolKind::Text && s.size() > 0)
            .filter_map(|s| {
                let name = s.name().ok()?;
                let start = u32::try_from(s.address()).ok()?;
                let size = u32::try_from(s.size()).ok()?;
                Some((start, size, format!("{:#}", rustc_demangle::demangle(name))))
            })
            .collect();
        sorted.sort_unstable_by_key(|&(start, size, _)| (start, size));
        Ok(Functions { sorted })
    }

    /// The function holding `addr` and the offset into it.
    pub fn at(&self, addr: u32) -> Option<(&str, u32)> {
        let i = self.sorted.partition_point(|&(start, _, _)| start <= addr);
        // The last function starting at or before addr, if addr is inside it.
        let (start, size, name) = self.sorted[..i]
            .iter()
            .rev()
            .find(|(start, size, _)| u64::from(addr) < u64::from(*start) + u64::from(*size))?;
        debug_assert!(*start <= addr && addr - start < *size);
        Some((name.as_str(), addr - start))
    }

    /// `name+0xoff` (or `name` at its first byte) for `addr`.
    pub fn describe(&self, addr: u32) -> Option<String> {
        self.at(addr).map(|(name, off)| {
            if off == 0 {
                name.to_owned()
            } else {
                format!("{name}+{off:#x}")
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn functions() -> Functions {
        Functions {
            sorted: vec![
                (0x1000, 0x40, "kernel::start".into()),
                (0x1040, 0x100, "mm::memory::copy_page_tables".into()),
                (0x1200, 0x10, "mm::memory::free_page".into()),
            ],
        }
    }

    #[test]
    fn an_address_names_its_function_and_offset() {
        let f = functions();
        assert_eq!(
            f.describe(0x1040).as_deref(),
            Some("mm::memory::copy_page_tables")
        );
        assert_eq!(
            f.describe(0x105c).as_deref(),
            Some("mm::memory::copy_page_tables+0x1c")
        );
        assert_eq!(
            f.describe(0x113f).as_deref(),
            Some("mm::memory::copy_page_tables+0xff")
        );
        // Between two functions, before the first, after the last: no name, no guess.
        assert_eq!(f.describe(0x1140), None);
        assert_eq!(f.describe(0xfff), None);
        assert_eq!(f.describe(0x1210), None);
    }

    #[test]
    fn a_file_that_is_not_elf_is_an_error() {
        assert!(matches!(
            Functions::parse(b"not an elf"),
            Err(SymbolError::Parse(_))
        ));
    }
}
