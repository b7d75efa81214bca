//! The pure Linux 0.11/0.12 paging logic, host-testable: addresses and entries, `mem_map`,
//! the functions of `mm/memory.c`, the memory steps of fork/exec/exit (`process`), the
//! page-fault dispatch of `page.s` and what its outcomes mean (`fault`), software walks,
//! `show_mem` and the `checkmm` check.
//!
//! Everything touches the machine only through [`PhysMem`] (read/write physical memory,
//! flush the TLB), so the same code runs in the kernel over its identity map and in host
//! tests over [`sim::SimRam`].
#![no_std]
#![forbid(unsafe_code)]

pub mod addr;
pub mod check;
pub mod compat;
pub mod corrupt;
pub mod entry;
pub mod fault;
pub mod inject;
pub mod mem_map;
pub mod memory;
pub mod phys;
pub mod process;
pub mod swap;
pub mod view;
pub mod walk;

#[cfg(any(test, feature = "sim"))]
pub mod sim;

pub use addr::{Frame, LinearAddr, PhysAddr};
pub use check::{CheckInput, CheckSummary, Mismatch};
pub use entry::{Entry, EntryFlags};
pub use mem_map::MemMap;
pub use memory::{AllocSite, FailurePolicy, FaultContext, Mm, NeverFail, ProgramPages};
pub use phys::PhysMem;
pub use walk::{MemStats, SlotUsage, Walk, WalkStop};
