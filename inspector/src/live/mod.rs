//! The live source: the kernel's paging state read from QEMU's RAM file while the guest
//! runs, without stopping it or touching its serial line.
//!
//! - [`ram`]: the file mapped read-only, read as atomic words;
//! - [`descriptor`]: the kernel's introspection descriptor found (ELF symbol or locator)
//!   and checked (size, magic, version, layout, build id);
//! - [`snapshot`]: copies taken between two equal, even readings of the descriptor's
//!   sequence count (or while the kernel is stopped), which kernel/report computes the
//!   documents from;
//! - [`ring`]: the fault ring's records since a sequence number, with the gap when the
//!   ring wrapped;
//! - [`view`]: the paging state straight from the file while the kernel is stopped (the
//!   gdb proxy's memory reads).
//!
//! [`Live`] ties them together for the daemon: it maps the file when it appears, maps it
//! again when QEMU made a new one or the kernel rebooted (a new boot id), and keeps the
//! last error for `status`.

pub mod descriptor;
pub mod ram;
pub mod ring;
pub mod serve;
pub mod snapshot;
#[cfg(test)]
mod tests;
pub mod view;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use introspect::LayoutError;

pub use descriptor::{Expect, Located};
pub use ram::Ram;
pub use snapshot::{Consistency, Moment, Parts, Snapshot, Tables};

/// How many copies a snapshot tries before the caller falls back to a brief stop.
pub const TRIES: u32 = 64;

/// Why the RAM file gives no answer. Every one is a clear message in `status`, and the
/// answers fall back to the stub.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LiveError {
    #[error("cannot open the RAM file {path}: {error}")]
    Open { path: String, error: String },
    #[error("{path} is not a guest's RAM ({len} bytes: not whole pages past the locator)")]
    NotRam { path: String, len: u64 },
    #[error("the RAM file is too small to hold the locator")]
    TooSmall,
    #[error("{what} at {addr:#x} lies outside the RAM file ({len} bytes)")]
    OutsideFile {
        what: &'static str,
        addr: u32,
        len: u64,
    },
    #[error("{0}")]
    Layout(LayoutError),
    #[error("the RAM file has {len} bytes but its descriptor says HIGH_MEMORY is {high_memory:#x}: the file is another machine's RAM")]
    WrongSize { len: u64, high_memory: u32 },
    #[error(
        "the RAM file has {file} bytes but QEMU's RAM is {qemu} bytes: not this machine's RAM file"
    )]
    NotThisMachine { file: u64, qemu: u64 },
    #[error("the descriptor's layout is not this kernel's ({what})")]
    BadLayout { what: &'static str },
    #[error("the RAM file is of another kernel build (build id {ram}, the ELF's {elf})")]
    OtherBuild { ram: String, elf: String },
    #[error("the RAM file is of another boot (boot id {file:#x} in the file, {machine:#x} in the machine's memory)")]
    OtherBoot { file: u64, machine: u64 },
    #[error("the kernel ELF {path}: {error}")]
    Elf { path: String, error: String },
}

impl From<LayoutError> for LiveError {
    fn from(e: LayoutError) -> LiveError {
        LiveError::Layout(e)
    }
}

impl LiveError {
    pub fn open(path: &Path, error: std::io::Error) -> LiveError {
        LiveError::Open {
            path: path.display().to_string(),
            error: error.to_string(),
        }
    }

    /// A short stable code for the error document and `status`.
    pub fn code(&self) -> &'static str {
        match self {
            LiveError::Open { .. } => "ram_unavailable",
            LiveError::NotRam { .. } | LiveError::TooSmall => "not_ram",
            LiveError::OutsideFile { .. } | LiveError::BadLayout { .. } => "bad_descriptor",
            LiveError::Layout(LayoutError::NotPublished) => "not_published",
            LiveError::Layout(LayoutError::Version { .. }) => "descriptor_version",
            LiveError::Layout(_) => "no_descriptor",
            LiveError::WrongSize { .. } | LiveError::NotThisMachine { .. } => "wrong_size",
            LiveError::OtherBuild { .. } => "other_build",
            LiveError::OtherBoot { .. } => "other_boot",
            LiveError::Elf { .. } => "no_symbols",
        }
    }
}

/// The live source of one daemon: the RAM file's path and what the kernel ELF says.
pub struct Live {
    path: PathBuf,
    expect: Result<Expect, LiveError>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    located: Option<Arc<Located>>,
    last_error: Option<LiveError>,
    /// A boot the machine disagreed with (its file and boot id), refused until it changes.
    refused: Option<(ram::FileId, u64, LiveError)>,
}

impl Live {
    /// The live source over the RAM file at `path` (it may appear later: QEMU creates
    /// it), for the kernel ELF `elf` when the daemon has it.
    pub fn new(path: PathBuf, elf: Option<&Path>) -> Live {
        let expect = match elf {
            None => Ok(Expect::default()),
            Some(elf) => crate::symbols::kernel_identity(elf)
                .map(|id| Expect {
                    build_id: Some(id.build_id),
                    symbol: id.descriptor,
                })
                .map_err(|e| LiveError::Elf {
                    path: elf.display().to_string(),
                    error: e.to_string(),
                }),
        };
        Live {
            path,
            expect,
            state: Mutex::new(State::default()),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The descriptor of the boot now in the file: the one located before while it is
    /// still current, else found and checked again.
    pub fn located(&self) -> Result<Arc<Located>, LiveError> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(l) = &state.located {
            if l.still_current() {
                return Ok(l.clone());
            }
            state.located = None;
        }
        let found = self.expect.clone().and_then(|expect| {
            let ram = Arc::new(Ram::open(&self.path)?);
            Located::find(ram, &expect).map(Arc::new)
        });
        if let (Ok(l), Some((file, boot, e))) = (&found, &state.refused) {
            if l.ram.id() == *file && l.header.boot_id == *boot {
                let e = e.clone();
                state.last_error = Some(e.clone());
                return Err(e);
            }
        }
        match found {
            Ok(l) => {
                state.located = Some(l.clone());
                state.last_error = None;
                Ok(l)
            }
            Err(e) => {
                state.last_error = Some(e.clone());
                Err(e)
            }
        }
    }

    /// Refuses the located boot (the machine disagreed with it): the error stays until
    /// the file changes.
    pub fn refuse(&self, located: &Arc<Located>, error: LiveError) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if state
            .located
            .as_ref()
            .is_some_and(|l| Arc::ptr_eq(l, located))
        {
            state.located = None;
        }
        state.refused = Some((located.ram.id(), located.header.boot_id, error.clone()));
        state.last_error = Some(error);
    }

    /// The last error, if the last attempt failed.
    pub fn last_error(&self) -> Option<LiveError> {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .last_error
            .clone()
    }
}
