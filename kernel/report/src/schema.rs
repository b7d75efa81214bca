//! The JSON Schema of every monitor document, generated from the document structs (the
//! one definition of their layout): `kernel/docs/monitor.schema.json` is this, written
//! out, and a test fails when the committed file is stale.
//!
//! The inspector takes its OpenAPI components from the same schema; `gdb/pgkernel_core.py`
//! reads the committed file for the commands, the schema version and the field names;
//! the tests validate documents against it.

use std::format;
use std::string::String;
use std::vec::Vec;

use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, SchemaGenerator};
use serde_json::{json, Map, Value};

use crate::cpu::CpuDoc;
use crate::help::{CatchDoc, ErrorDoc, HelpDoc};
use crate::inject::{CorruptDoc, FailDoc, FailNthDoc};
use crate::memory::{CheckMmDoc, ShowMemDoc};
use crate::paging::{DumpPgdDoc, DumpPtDoc, WalkDoc};
use crate::tasks::{FaultsDoc, TasksDoc};
use crate::value::SCHEMA;

/// Where the committed schema lives, from the workspace root.
pub const SCHEMA_PATH: &str = "kernel/docs/monitor.schema.json";

/// Each command's document: (command name, schema name in `$defs`).
pub fn documents() -> Vec<(&'static str, String)> {
    let mut generator = generator();
    documents_in(&mut generator)
}

fn generator() -> SchemaGenerator {
    SchemaSettings::draft2020_12().into_generator()
}

fn documents_in(generator: &mut SchemaGenerator) -> Vec<(&'static str, String)> {
    fn one<T: JsonSchema>(
        g: &mut SchemaGenerator,
        command: &'static str,
    ) -> (&'static str, String) {
        g.subschema_for::<T>();
        (command, T::schema_name().into_owned())
    }
    let g = generator;
    std::vec![
        one::<HelpDoc<'_>>(g, "help"),
        one::<DumpPgdDoc<'_>>(g, "dumppgd"),
        one::<DumpPtDoc<'_>>(g, "dumppt"),
        one::<WalkDoc>(g, "walk"),
        one::<CheckMmDoc<'_>>(g, "checkmm"),
        one::<ShowMemDoc<'_>>(g, "showmem"),
        one::<TasksDoc<'_>>(g, "tasks"),
        one::<FaultsDoc<'_>>(g, "faults"),
        one::<CatchDoc>(g, "catch"),
        one::<FailDoc<'_>>(g, "fail"),
        one::<FailNthDoc>(g, "failnth"),
        one::<CorruptDoc>(g, "corrupt"),
        one::<CpuDoc<'_>>(g, "cpu"),
    ]
}

/// The whole schema: a document is one of the commands' documents or an error answer;
/// every type is in `$defs` (so a reader can validate against `#/$defs/DumpPgdDoc`), and
/// `x-commands` maps each command to its document.
pub fn monitor_schema() -> Value {
    let mut generator = generator();
    let documents = documents_in(&mut generator);
    generator.subschema_for::<ErrorDoc<'_>>();
    let defs: Map<String, Value> = generator.take_definitions(true).into_iter().collect();
    let reference = |name: &str| json!({ "$ref": format!("#/$defs/{name}") });
    let mut one_of: Vec<Value> = documents.iter().map(|(_, name)| reference(name)).collect();
    one_of.push(reference("ErrorDoc"));
    let commands: Map<String, Value> = documents
        .iter()
        .map(|(command, name)| ((*command).into(), json!(name)))
        .collect();
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "pgkernel-monitor-documents",
        "title": "pgkernel monitor documents",
        "description": format!(
            "The JSON documents of `monitor COMMAND --json` (kernel/docs/monitor.md), schema version {SCHEMA}. Generated from the structs of kernel/report: do not edit; run `cargo run -p report --features schema --bin monitor-schema`."
        ),
        "x-schema-version": SCHEMA,
        "x-commands": commands,
        "oneOf": one_of,
        "$defs": defs,
    })
}

/// The schema as committed: pretty-printed, one trailing newline.
pub fn monitor_schema_text() -> String {
    let mut text = serde_json::to_string_pretty(&monitor_schema()).unwrap_or_default();
    text.push('\n');
    text
}
