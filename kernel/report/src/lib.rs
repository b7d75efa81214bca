//! The kernel monitor's pure half: the command parser, the documents each command answers
//! with (computed from read-only inputs: a [`mm::view::PagingView`] of the paging state and
//! plain data about tasks, faults and failure injection), and their text and JSON forms.
//!
//! The kernel's `monitor` module only gathers the inputs; host tools (the inspector, the
//! tests) run the same code over a copy of a machine's memory, so every front end shows the
//! same values.
#![no_std]
#![forbid(unsafe_code)]

pub mod command;
pub mod cpu;
pub mod inject;
pub mod monitor;

pub use command::*;
pub use cpu::{cpu, CpuState, TableRegister};
pub use monitor::*;
