//! Writes the JSON Schema of the monitor documents (`kernel/docs/monitor.schema.json`).
//!
//! `cargo run -p report --features schema --bin monitor-schema` rewrites the committed
//! file; `--check` only says whether it is current (exit 1 when stale).

use std::process::ExitCode;

fn main() -> ExitCode {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let path = std::path::Path::new(root).join(report::schema::SCHEMA_PATH);
    let text = report::schema::monitor_schema_text();
    if std::env::args().any(|a| a == "--check") {
        let current = std::fs::read_to_string(&path).unwrap_or_default();
        if current != text {
            eprintln!("{} is stale", path.display());
            return ExitCode::FAILURE;
        }
        return ExitCode::SUCCESS;
    }
    if let Err(e) = std::fs::write(&path, text) {
        eprintln!("cannot write {}: {e}", path.display());
        return ExitCode::FAILURE;
    }
    println!("wrote {}", path.display());
    ExitCode::SUCCESS
}
