//! How a program's loadable segments become one memory image from address 0, and the layout rules every entry obeys.

use core::fmt;

use crate::MAX_PROGRAM_END;

/// One loadable segment (an ELF `PT_LOAD`), as `mkimage` hands it over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment<'a> {
    /// Where the segment starts in the task's address space.
    pub vaddr: u32,
    /// Its size in memory (`p_memsz`): the part past the file bytes is bss.
    pub mem_size: u32,
    /// Its bytes in the file (`p_filesz` of them).
    pub file_bytes: &'a [u8],
    /// Whether it is executable (`PF_X`): it then counts for `end_code`.
    pub executable: bool,
}

/// The four addresses an image entry records about a program.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Where execution starts.
    pub entry: u32,
    /// End of the executable segments.
    pub end_code: u32,
    /// End of the file-backed bytes: the length of the flattened data.
    pub end_data: u32,
    /// End of the bss.
    pub bss_end: u32,
}

/// Why a set of segments or a recorded layout is not a program the kernel can run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayoutError {
    /// There is no segment with a non-zero memory size.
    NoSegments,
    /// No segment is executable, so there is no code to start.
    NoCode,
    /// A segment's file size exceeds its memory size (segment index).
    FileLargerThanMemory(usize),
    /// A segment reaches beyond the 64 MiB task segment (segment index, its end).
    BeyondTaskLimit(usize, u64),
    /// Two segments share addresses (their indices).
    Overlap(usize, usize),
    /// The entry point is not inside the code.
    EntryOutsideCode {
        /// The entry point.
        entry: u32,
        /// The end of the code.
        end_code: u32,
    },
    /// `end_code` or `end_data` lies beyond `bss_end`.
    BeyondBss,
    /// `bss_end` lies beyond the 64 MiB task segment.
    TooLarge(u32),
}

impl fmt::Display for LayoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::NoSegments => write!(f, "no loadable segment"),
            Self::NoCode => write!(f, "no executable segment"),
            Self::FileLargerThanMemory(i) => {
                write!(f, "segment {i}: file size larger than memory size")
            }
            Self::BeyondTaskLimit(i, end) => write!(
                f,
                "segment {i} ends at {end:#x}, beyond the {MAX_PROGRAM_END:#x}-byte task segment"
            ),
            Self::Overlap(a, b) => write!(f, "segments {a} and {b} overlap"),
            Self::EntryOutsideCode { entry, end_code } => {
                write!(
                    f,
                    "entry {entry:#x} is not in the code (which ends at {end_code:#x})"
                )
            }
            Self::BeyondBss => write!(f, "end_code or end_data lies beyond bss_end"),
            Self::TooLarge(end) => write!(
                f,
                "bss_end {end:#x} is beyond the {MAX_PROGRAM_END:#x}-byte task segment"
            ),
        }
    }
}

/// Checks the addresses an entry records: the entry point inside the code, code and
/// data inside the bss end, everything inside the task segment.
pub(crate) fn check_layout(layout: &Layout) -> Result<(), LayoutError> {
    if layout.end_code > layout.bss_end || layout.end_data > layout.bss_end {
        return Err(LayoutError::BeyondBss);
    }
    if layout.bss_end > MAX_PROGRAM_END {
        return Err(LayoutError::TooLarge(layout.bss_end));
    }
    if layout.entry >= layout.end_code {
        return Err(LayoutError::EntryOutsideCode {
            entry: layout.entry,
            end_code: layout.end_code,
        });
    }
    Ok(())
}

/// Computes a program's layout from its segments (empty segments are ignored):
/// `end_code` = the end of the executable segments, `end_data` = the end of the file
/// bytes, `bss_end` = the end of memory. Refuses overlapping segments and segments
/// beyond the task limit.
pub fn layout(entry: u32, segments: &[Segment<'_>]) -> Result<Layout, LayoutError> {
    let mut end_code = 0u32;
    let mut end_data = 0u32;
    let mut bss_end = 0u32;
    let mut any = false;
    let mut any_code = false;
    for (i, segment) in segments.iter().enumerate() {
        if segment.mem_size == 0 {
            continue;
        }
        if segment.file_bytes.len() as u64 > u64::from(segment.mem_size) {
            return Err(LayoutError::FileLargerThanMemory(i));
        }
        let end = u64::from(segment.vaddr) + u64::from(segment.mem_size);
        if end > u64::from(MAX_PROGRAM_END) {
            return Err(LayoutError::BeyondTaskLimit(i, end));
        }
        // Checked above: both ends fit below the 64 MiB limit.
        let end = end as u32;
        let file_end = segment.vaddr + segment.file_bytes.len() as u32;
        for (j, other) in segments[..i].iter().enumerate() {
            let other_end = u64::from(other.vaddr) + u64::from(other.mem_size);
            if other.mem_size != 0
                && u64::from(segment.vaddr) < other_end
                && u64::from(other.vaddr) < u64::from(end)
            {
                return Err(LayoutError::Overlap(j, i));
            }
        }
        any = true;
        if segment.executable {
            any_code = true;
            end_code = end_code.max(end);
        }
        end_data = end_data.max(file_end);
        bss_end = bss_end.max(end);
    }
    if !any {
        return Err(LayoutError::NoSegments);
    }
    if !any_code {
        return Err(LayoutError::NoCode);
    }
    let layout = Layout {
        entry,
        end_code,
        end_data,
        bss_end,
    };
    check_layout(&layout)?;
    Ok(layout)
}

/// Writes the segments' file bytes at their addresses into `out` (the program's data,
/// `end_data` bytes long) and zero-fills the gaps between them. Segments must have
/// passed [`layout`]; a part that does not fit in `out` is left out.
pub fn flatten(segments: &[Segment<'_>], out: &mut [u8]) {
    out.fill(0);
    for segment in segments {
        let start = segment.vaddr as usize;
        let Some(end) = start.checked_add(segment.file_bytes.len()) else {
            continue;
        };
        if let Some(target) = out.get_mut(start..end) {
            target.copy_from_slice(segment.file_bytes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(vaddr: u32, mem_size: u32, file_bytes: &[u8], executable: bool) -> Segment<'_> {
        Segment {
            vaddr,
            mem_size,
            file_bytes,
            executable,
        }
    }

    #[test]
    fn text_rodata_data_bss() {
        let text = [0x90u8; 0x1800];
        let rodata = [0x11u8; 0x100];
        let data = [0x22u8; 0x10];
        let segments = [
            segment(0, 0x1800, &text, true),
            segment(0x2000, 0x100, &rodata, false),
            segment(0x3000, 0x2000, &data, false),
        ];
        let layout = layout(0x10, &segments).unwrap();
        assert_eq!(
            layout,
            Layout {
                entry: 0x10,
                end_code: 0x1800,
                end_data: 0x3010,
                bss_end: 0x5000
            }
        );
        let mut out = [0xffu8; 0x3010];
        flatten(&segments, &mut out);
        assert!(out[..0x1800].iter().all(|&b| b == 0x90));
        assert!(
            out[0x1800..0x2000].iter().all(|&b| b == 0),
            "gap zero-filled"
        );
        assert!(out[0x2000..0x2100].iter().all(|&b| b == 0x11));
        assert!(out[0x2100..0x3000].iter().all(|&b| b == 0));
        assert!(out[0x3000..].iter().all(|&b| b == 0x22));
    }

    #[test]
    fn refusals() {
        let bytes = [0u8; 16];
        assert_eq!(layout(0, &[]), Err(LayoutError::NoSegments));
        assert_eq!(
            layout(0, &[segment(0, 16, &bytes, false)]),
            Err(LayoutError::NoCode)
        );
        assert_eq!(
            layout(0, &[segment(0, 8, &bytes, true)]),
            Err(LayoutError::FileLargerThanMemory(0))
        );
        assert_eq!(
            layout(0, &[segment(MAX_PROGRAM_END - 8, 16, &bytes, true)]),
            Err(LayoutError::BeyondTaskLimit(
                0,
                u64::from(MAX_PROGRAM_END) + 8
            ))
        );
        assert_eq!(
            layout(
                0,
                &[segment(0, 16, &bytes, true), segment(8, 16, &bytes, false)]
            ),
            Err(LayoutError::Overlap(0, 1))
        );
        assert_eq!(
            layout(16, &[segment(0, 16, &bytes, true)]),
            Err(LayoutError::EntryOutsideCode {
                entry: 16,
                end_code: 16
            })
        );
        // Touching segments and empty ones are fine.
        assert!(layout(
            0,
            &[
                segment(0, 16, &bytes, true),
                segment(16, 16, &bytes, false),
                segment(4, 0, &[], false)
            ]
        )
        .is_ok());
    }

    #[test]
    fn check_layout_rules() {
        let good = Layout {
            entry: 0,
            end_code: 16,
            end_data: 32,
            bss_end: 64,
        };
        assert_eq!(check_layout(&good), Ok(()));
        assert_eq!(
            check_layout(&Layout {
                end_data: 65,
                ..good
            }),
            Err(LayoutError::BeyondBss)
        );
        assert_eq!(
            check_layout(&Layout {
                bss_end: MAX_PROGRAM_END + 1,
                end_data: MAX_PROGRAM_END + 1,
                ..good
            }),
            Err(LayoutError::TooLarge(MAX_PROGRAM_END + 1))
        );
    }
}
