//! The kernel monitor's pure half: the command parser, one typed document per command
//! (computed from read-only inputs: a [`mm::view::PagingView`] of the paging state and
//! plain data about tasks, faults and failure injection), and its text and JSON forms,
//! both written from the same values.
//!
//! The kernel's `monitor` module only gathers the inputs and calls [`emit`]; host tools
//! (the inspector, the tests) compute the same documents over a copy of a machine's
//! memory, or parse the kernel's JSON back into them (feature `std`), and describe them
//! with a JSON Schema (feature `schema`, see [`schema`]).
//!
//! A document's lists are generated item by item as it is written ([`value::Items`]):
//! nothing here allocates, and the gdb stub's stack holds one list item at a time.
#![no_std]
#![forbid(unsafe_code)]

#[cfg(feature = "std")]
extern crate std;

pub mod command;
pub mod cpu;
pub mod help;
pub mod inject;
pub mod inputs;
pub mod json;
pub mod memory;
pub mod paging;
#[cfg(feature = "schema")]
pub mod schema;
pub mod tasks;
pub mod text;
pub mod value;

use core::fmt::{self, Display, Write};

use serde::Serialize;

pub use command::{
    parse, parse_number, AttrPatch, Command, CommandName, CorruptCommand, FailCommand, Failure,
    LinearRange, MonitorError, ParseError, ParseFailure, PgdFilter, Request,
};
pub use cpu::{cpu, Cpu, CpuDoc, CpuState, TableRegister};
pub use help::{catch, help, CatchDoc, ErrorDoc, HelpDoc};
pub use inject::{
    apply_fail, corrupt, failnth, CorruptDoc, Fail, FailDoc, FailNthDoc, InjectAnswerError,
};
pub use inputs::{
    FailState, FaultAction, FaultRecord, FaultSource, LogBusy, TaskSlots, TaskSource, TaskState,
    TaskSummary,
};
pub use memory::{
    CheckMm, CheckMmDoc, ShowMem, ShowMemDoc, SummaryText, MAX_LISTED_MISMATCHES, MAX_LISTED_SHARED,
};
pub use paging::{walk, DumpPgd, DumpPgdDoc, DumpPt, DumpPtDoc, WalkDoc};
pub use tasks::{slot_range, FaultCode, Faults, FaultsDoc, Tasks, TasksDoc};
pub use text::Pad;
pub use value::SCHEMA;

/// Writes a document as the monitor answers: with `json`, one compact JSON document on
/// one line (then a newline); else its text form.
pub fn emit<D: Serialize + Display + ?Sized>(
    doc: &D,
    json: bool,
    out: &mut dyn Write,
) -> fmt::Result {
    if json {
        json::write(doc, out).map_err(|_| fmt::Error)?;
        out.write_char('\n')
    } else {
        write!(out, "{doc}")
    }
}

/// An error answer for `command`: `{"command", "schema", "error": {"kind", "message",
/// "usage"}}`, or the message and (for bad arguments) the usage line.
pub fn error(
    json: bool,
    command: CommandName,
    e: &dyn Failure,
    out: &mut dyn Write,
) -> fmt::Result {
    emit(&ErrorDoc::of(command, e), json, out)
}

/// The answer to a refused command line: the help for an unknown command, else the error
/// and the usage line.
pub fn parse_failure(failure: &ParseFailure<'_>, out: &mut dyn Write) -> fmt::Result {
    match failure.error {
        ParseError::UnknownCommand(_) => emit(&help(Some(&failure.error)), failure.json, out),
        e => error(failure.json, e.command(), &e, out),
    }
}
