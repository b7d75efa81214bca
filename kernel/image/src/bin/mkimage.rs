//! `mkimage OUT.img PROG...`: packs static i386 ELF executables into a program image for the kernel.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use image::{
    flatten, image_len, layout, pages_for, write_image, Image, Layout, LayoutError, Program,
    Segment, WriteError, MAX_NAME_LEN,
};
use object::elf;
use object::read::elf::{ElfFile32, FileHeader, ProgramHeader};
use object::{Endianness, FileKind};

const USAGE: &str = "usage: mkimage OUT.img PROGRAM...\n\
    Packs static 32-bit x86 ELF executables (linked at address 0) into a program image;\n\
    each program is named after its file stem.";

/// Why a program or the image could not be made.
#[derive(Debug)]
enum MkimageError {
    /// Wrong command line.
    Usage,
    /// A file could not be read or written.
    Io(PathBuf, std::io::Error),
    /// The file stem is not a usable program name.
    BadName(PathBuf),
    /// The name is longer than the image's name field allows.
    NameTooLong(PathBuf, usize),
    /// Two inputs have the same stem.
    DuplicateName(PathBuf, PathBuf),
    /// Not an ELF file at all, or a 64-bit one.
    NotElf32(PathBuf, &'static str),
    /// `object` could not parse the ELF file.
    Parse(PathBuf, object::Error),
    /// An ELF file for another machine or byte order.
    NotX86(PathBuf, u16),
    /// Not an executable (`ET_EXEC`): a shared object or relocatable file.
    NotExecutable(PathBuf, u16),
    /// A segment's file range lies outside the file.
    SegmentOutsideFile(PathBuf, usize),
    /// The segments do not make a runnable layout.
    Layout(PathBuf, LayoutError),
    /// The image writer refused (should not happen after the checks above).
    Write(WriteError),
    /// The written image does not parse back.
    Verify(image::ImageError),
}

impl fmt::Display for MkimageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Usage => write!(f, "{USAGE}"),
            Self::Io(path, error) => write!(f, "{}: {error}", path.display()),
            Self::BadName(path) => {
                write!(
                    f,
                    "{}: the file stem is not a usable program name",
                    path.display()
                )
            }
            Self::NameTooLong(path, len) => write!(
                f,
                "{}: the name is {len} bytes long, at most {MAX_NAME_LEN} fit",
                path.display()
            ),
            Self::DuplicateName(path, first) => write!(
                f,
                "{}: same program name as {}",
                path.display(),
                first.display()
            ),
            Self::NotElf32(path, what) => {
                write!(f, "{}: not a 32-bit ELF file ({what})", path.display())
            }
            Self::Parse(path, error) => write!(f, "{}: bad ELF file: {error}", path.display()),
            Self::NotX86(path, machine) => write!(
                f,
                "{}: not a little-endian i386 executable (e_machine {machine})",
                path.display()
            ),
            Self::NotExecutable(path, kind) => write!(
                f,
                "{}: not a static executable (e_type {kind}; ET_EXEC is {})",
                path.display(),
                elf::ET_EXEC.0
            ),
            Self::SegmentOutsideFile(path, index) => write!(
                f,
                "{}: segment {index} lies outside the file",
                path.display()
            ),
            Self::Layout(path, error) => write!(f, "{}: {error}", path.display()),
            Self::Write(error) => write!(f, "cannot write the image: {error}"),
            Self::Verify(error) => write!(f, "the written image does not read back: {error}"),
        }
    }
}

/// A program read from an ELF file, flattened from address 0.
#[derive(Debug)]
struct Flattened {
    name: String,
    layout: Layout,
    data: Vec<u8>,
}

impl Flattened {
    fn as_program(&self) -> Program<'_> {
        Program {
            name: &self.name,
            entry: self.layout.entry,
            end_code: self.layout.end_code,
            end_data: self.layout.end_data,
            bss_end: self.layout.bss_end,
            data: &self.data,
        }
    }
}

/// The program name of a path: its file stem, checked against the image's rules.
fn program_name(path: &Path) -> Result<String, MkimageError> {
    let name = path
        .file_stem()
        .and_then(|stem| stem.to_str())
        .filter(|stem| !stem.is_empty() && !stem.contains('\0'))
        .ok_or_else(|| MkimageError::BadName(path.to_path_buf()))?;
    if name.len() > MAX_NAME_LEN {
        return Err(MkimageError::NameTooLong(path.to_path_buf(), name.len()));
    }
    Ok(name.to_owned())
}

/// Reads an ELF executable and flattens its `PT_LOAD` segments.
fn load_program(path: &Path, bytes: &[u8]) -> Result<Flattened, MkimageError> {
    let name = program_name(path)?;
    let path_buf = || path.to_path_buf();
    match FileKind::parse(bytes) {
        Ok(FileKind::Elf32) => {}
        Ok(FileKind::Elf64) => return Err(MkimageError::NotElf32(path_buf(), "ELF64")),
        Ok(_) => return Err(MkimageError::NotElf32(path_buf(), "another object format")),
        Err(_) => return Err(MkimageError::NotElf32(path_buf(), "unknown format")),
    }
    let file = ElfFile32::<Endianness>::parse(bytes)
        .map_err(|error| MkimageError::Parse(path_buf(), error))?;
    let endian = file.endian();
    let header = file.elf_header();
    let machine = header.e_machine(endian).0;
    if machine != elf::EM_386.0 || endian != Endianness::Little {
        return Err(MkimageError::NotX86(path_buf(), machine));
    }
    let kind = header.e_type(endian).0;
    if kind != elf::ET_EXEC.0 {
        return Err(MkimageError::NotExecutable(path_buf(), kind));
    }
    let mut segments = Vec::new();
    for (index, program_header) in file
        .elf_program_headers()
        .iter()
        .filter(|ph| ph.p_type(endian) == elf::PT_LOAD)
        .enumerate()
    {
        let file_bytes = program_header
            .data(endian, bytes)
            .map_err(|()| MkimageError::SegmentOutsideFile(path_buf(), index))?;
        segments.push(Segment {
            vaddr: program_header.p_vaddr(endian),
            mem_size: program_header.p_memsz(endian),
            file_bytes,
            executable: program_header.p_flags(endian).0 & elf::PF_X.0 != 0,
        });
    }
    let layout = layout(header.e_entry(endian), &segments)
        .map_err(|error| MkimageError::Layout(path_buf(), error))?;
    let mut data = vec![0; layout.end_data as usize];
    flatten(&segments, &mut data);
    Ok(Flattened { name, layout, data })
}

/// Loads every input, writes the image atomically (temporary file, then rename) and
/// returns the programs for the report.
fn make_image(out: &Path, inputs: &[PathBuf]) -> Result<Vec<Flattened>, MkimageError> {
    let mut programs = Vec::new();
    let mut seen: HashMap<String, PathBuf> = HashMap::new();
    for path in inputs {
        let bytes = std::fs::read(path).map_err(|error| MkimageError::Io(path.clone(), error))?;
        let program = load_program(path, &bytes)?;
        if let Some(first) = seen.get(&program.name) {
            return Err(MkimageError::DuplicateName(path.clone(), first.clone()));
        }
        seen.insert(program.name.clone(), path.clone());
        programs.push(program);
    }
    let views: Vec<Program<'_>> = programs.iter().map(Flattened::as_program).collect();
    let mut bytes = vec![0; image_len(&views).map_err(MkimageError::Write)?];
    write_image(&views, &mut bytes).map_err(MkimageError::Write)?;
    let image = Image::parse(&bytes).map_err(MkimageError::Verify)?;
    debug_assert_eq!(image.len(), programs.len());
    let temporary = out.with_extension("img.tmp");
    std::fs::write(&temporary, &bytes)
        .map_err(|error| MkimageError::Io(temporary.clone(), error))?;
    std::fs::rename(&temporary, out).map_err(|error| MkimageError::Io(out.to_path_buf(), error))?;
    Ok(programs)
}

fn run(args: &[String]) -> Result<(), MkimageError> {
    if args.iter().any(|arg| arg == "-h" || arg == "--help") {
        println!("{USAGE}");
        return Ok(());
    }
    let [out, inputs @ ..] = args else {
        return Err(MkimageError::Usage);
    };
    if inputs.is_empty() {
        return Err(MkimageError::Usage);
    }
    let inputs: Vec<PathBuf> = inputs.iter().map(PathBuf::from).collect();
    let programs = make_image(Path::new(out), &inputs)?;
    for program in &programs {
        let layout = program.layout;
        let stored = pages_for(layout.end_data);
        println!(
            "{:<16} entry {:#010x}  end_code {:#010x}  end_data {:#010x}  bss_end {:#010x}  pages {} (+{} bss)",
            program.name,
            layout.entry,
            layout.end_code,
            layout.end_data,
            layout.bss_end,
            stored,
            pages_for(layout.bss_end) - stored,
        );
    }
    println!("{out}: {} programs", programs.len());
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(MkimageError::Usage) => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
        Err(error) => {
            eprintln!("mkimage: {error}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EHDR_LEN: usize = 52;
    const PHDR_LEN: usize = 32;

    /// One segment of a hand-made ELF file: (vaddr, memsz, bytes, flags).
    type TestSegment<'a> = (u32, u32, &'a [u8], u32);

    /// A minimal ELF32 file with the given header fields and `PT_LOAD` segments.
    fn elf32(kind: u16, machine: u16, entry: u32, segments: &[TestSegment<'_>]) -> Vec<u8> {
        let mut file = vec![0u8; EHDR_LEN + PHDR_LEN * segments.len()];
        file[..4].copy_from_slice(&elf::ELFMAG);
        file[4] = elf::ELFCLASS32.0;
        file[5] = elf::ELFDATA2LSB.0;
        file[6] = elf::EV_CURRENT.0;
        let put16 = |file: &mut Vec<u8>, at: usize, v: u16| {
            file[at..at + 2].copy_from_slice(&v.to_le_bytes())
        };
        let put32 = |file: &mut Vec<u8>, at: usize, v: u32| {
            file[at..at + 4].copy_from_slice(&v.to_le_bytes())
        };
        put16(&mut file, 16, kind);
        put16(&mut file, 18, machine);
        put32(&mut file, 20, u32::from(elf::EV_CURRENT.0));
        put32(&mut file, 24, entry);
        put32(&mut file, 28, EHDR_LEN as u32);
        put16(&mut file, 40, EHDR_LEN as u16);
        put16(&mut file, 42, PHDR_LEN as u16);
        put16(&mut file, 44, segments.len() as u16);
        for (i, &(vaddr, memsz, bytes, flags)) in segments.iter().enumerate() {
            let offset = file.len() as u32;
            file.extend_from_slice(bytes);
            let ph = EHDR_LEN + i * PHDR_LEN;
            put32(&mut file, ph, elf::PT_LOAD.0);
            put32(&mut file, ph + 4, offset);
            put32(&mut file, ph + 8, vaddr);
            put32(&mut file, ph + 12, vaddr);
            put32(&mut file, ph + 16, bytes.len() as u32);
            put32(&mut file, ph + 20, memsz);
            put32(&mut file, ph + 24, flags);
            put32(&mut file, ph + 28, 0x1000);
        }
        file
    }

    const TEXT: &[u8] = &[0x90; 100];
    const DATA: &[u8] = &[7; 8];

    fn good() -> Vec<u8> {
        elf32(
            elf::ET_EXEC.0,
            elf::EM_386.0,
            0,
            &[
                (0, 100, TEXT, elf::PF_R.0 | elf::PF_X.0),
                (0x2000, 0x100, DATA, elf::PF_R.0 | elf::PF_W.0),
            ],
        )
    }

    #[test]
    fn flattens_a_good_executable() {
        let program = load_program(Path::new("dir/hello.elf"), &good()).unwrap();
        assert_eq!(program.name, "hello");
        assert_eq!(
            program.layout,
            Layout {
                entry: 0,
                end_code: 100,
                end_data: 0x2008,
                bss_end: 0x2100
            }
        );
        assert_eq!(&program.data[..100], TEXT);
        assert!(program.data[100..0x2000].iter().all(|&b| b == 0));
        assert_eq!(&program.data[0x2000..], DATA);
    }

    #[test]
    fn refuses_what_the_kernel_cannot_run() {
        let path = Path::new("p");
        let mut elf64 = good();
        elf64[4] = elf::ELFCLASS64.0;
        assert!(matches!(
            load_program(path, &elf64),
            Err(MkimageError::NotElf32(..))
        ));
        assert!(matches!(
            load_program(path, b"#!/bin/sh\n"),
            Err(MkimageError::NotElf32(..))
        ));
        let arm = elf32(
            elf::ET_EXEC.0,
            elf::EM_ARM.0,
            0,
            &[(0, 100, TEXT, elf::PF_X.0)],
        );
        assert!(matches!(
            load_program(path, &arm),
            Err(MkimageError::NotX86(_, machine)) if machine == elf::EM_ARM.0
        ));
        let shared = elf32(
            elf::ET_DYN.0,
            elf::EM_386.0,
            0,
            &[(0, 100, TEXT, elf::PF_X.0)],
        );
        assert!(matches!(
            load_program(path, &shared),
            Err(MkimageError::NotExecutable(_, kind)) if kind == elf::ET_DYN.0
        ));
        let overlapping = elf32(
            elf::ET_EXEC.0,
            elf::EM_386.0,
            0,
            &[(0, 100, TEXT, elf::PF_X.0), (50, 8, DATA, elf::PF_W.0)],
        );
        assert!(matches!(
            load_program(path, &overlapping),
            Err(MkimageError::Layout(_, LayoutError::Overlap(0, 1)))
        ));
        let too_high = elf32(
            elf::ET_EXEC.0,
            elf::EM_386.0,
            0,
            &[
                (0, 100, TEXT, elf::PF_X.0),
                (0x0400_0000, 8, DATA, elf::PF_W.0),
            ],
        );
        assert!(matches!(
            load_program(path, &too_high),
            Err(MkimageError::Layout(_, LayoutError::BeyondTaskLimit(1, _)))
        ));
        let long = "x".repeat(MAX_NAME_LEN + 1);
        assert!(matches!(
            load_program(Path::new(&long), &good()),
            Err(MkimageError::NameTooLong(_, 32))
        ));
    }

    #[test]
    fn packs_and_refuses_duplicates() {
        let dir = std::env::temp_dir().join(format!("mkimage-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let first = dir.join("hello");
        let second = dir.join("other");
        let duplicate = dir.join("hello.elf");
        for path in [&first, &second, &duplicate] {
            std::fs::write(path, good()).unwrap();
        }
        let out = dir.join("out.img");
        let programs = make_image(&out, &[first.clone(), second.clone()]).unwrap();
        assert_eq!(programs.len(), 2);
        let bytes = std::fs::read(&out).unwrap();
        let image = Image::parse(&bytes).unwrap();
        assert_eq!(image.find("other").unwrap().data, &programs[1].data[..]);
        assert!(matches!(
            make_image(&out, &[first, duplicate]),
            Err(MkimageError::DuplicateName(..))
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
