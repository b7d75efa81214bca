//! The HTTP API under `/api/v1`: handlers, their OpenAPI description, and the guard in front of them.
//!
//! Most answers are the kernel monitor's own `--json` documents (see
//! `kernel/docs/monitor.md`) with a `"source"` field added: `"stub"` when the kernel's
//! stub answered, `"qemu"` when QEMU's reads of physical memory were decoded here
//! (post-mortem: the stub did not answer, or `source=qemu` was asked for).

use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use futures_util::stream::Stream;
use mm::addr::{Frame, LinearAddr, LOW_MEM, MAX_PAGING_PAGES, PAGE_SIZE, TASK_SIZE};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::sync::Mutex;
use utoipa::openapi::schema::{AdditionalProperties, ObjectBuilder, Schema, Type};
use utoipa::openapi::RefOr;
use utoipa::{IntoParams, OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ApiError, ErrorBody};
use crate::events::{Feed, FeedEvent};
use crate::link::{LinkHandle, Op, OpResult};
use crate::postmortem::{self, hex, PgdFilter};
use crate::qemu::{Pages, Qmp};
use crate::security::{Guard, Refusal};
use crate::symbols::{self, Hints, PagingStatic};

/// The largest request body (POST bodies are a few knobs).
pub const MAX_BODY: usize = 16 * 1024;

/// Everything the handlers share.
pub struct App {
    pub link: LinkHandle,
    pub qmp: Qmp,
    pub timeout: Duration,
    pub allow_write: bool,
    pub guard: Guard,
    pub kernel_elf: Option<PathBuf>,
    pub feed: Feed,
    /// Show progress bars for long post-mortem dumps (stderr is a terminal).
    pub progress: bool,
    pub cache: Mutex<Cache>,
}

/// Facts that do not change while the kernel runs, per connection to it.
#[derive(Default)]
pub struct Cache {
    generation: u64,
    cr3: Option<u32>,
    high_memory: Option<u32>,
    /// The paging static and the offset of `counts` in it.
    counts: Option<(PagingStatic, usize)>,
}

type Shared = State<Arc<App>>;

/// Where an answer may come from.
#[derive(Deserialize, Serialize, ToSchema, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum SourceChoice {
    /// The stub, and QEMU when the stub is not connected or does not answer.
    #[default]
    Auto,
    Stub,
    Qemu,
}

// ---- schemas of the monitor documents (free-form beyond their common fields) ----

fn document_schema(description: &str) -> RefOr<Schema> {
    ObjectBuilder::new()
        .property("command", ObjectBuilder::new().schema_type(Type::String))
        .property("schema", ObjectBuilder::new().schema_type(Type::Integer))
        .property(
            "source",
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some(["stub", "qemu"])),
        )
        .required("command")
        .required("source")
        .additional_properties(Some(AdditionalProperties::FreeForm(true)))
        .description(Some(description))
        .into()
}

macro_rules! document {
    ($name:ident, $description:expr) => {
        #[doc = $description]
        pub struct $name;
        impl utoipa::PartialSchema for $name {
            fn schema() -> RefOr<Schema> {
                document_schema($description)
            }
        }
        impl ToSchema for $name {}
    };
}

document!(
    TasksDoc,
    "`tasks --json`: every task (see kernel/docs/monitor.md)."
);
document!(
    PageDirectoryDoc,
    "`dumppgd --json`: present page-directory entries, raw and decoded."
);
document!(
    PageTableDoc,
    "`dumppt INDEX --json`: one page table's non-zero entries."
);
document!(
    WalkDoc,
    "`walk ADDR --json`, plus `qemu` and `agree` with verify=qemu."
);
document!(
    CheckmmDoc,
    "`checkmm --json`: does mem_map agree with every page table?"
);
document!(
    ShowmemDoc,
    "`showmem --json`: frame totals, pages per task, shared frames."
);
document!(
    FaultsDoc,
    "`faults --json`: the recent page faults and totals since boot."
);
document!(
    FailDoc,
    "`fail --json` / `failnth PID --json`: the failure-injection knobs."
);
document!(MemMapDoc, "mem_map counts over a frame range.");

/// `/health`.
#[derive(Serialize, ToSchema)]
pub struct Health {
    /// Always `ok`: the daemon answers whatever the kernel does.
    pub status: String,
    pub connected: bool,
}

/// `/api/v1/status`.
#[derive(Serialize, ToSchema)]
pub struct Status {
    /// The kernel's stub is connected (QEMU's COM1).
    pub connected: bool,
    /// `running`, `stopped` (gdb holds it) or `unknown` (not connected).
    pub kernel: String,
    pub gdb_attached: bool,
    /// The last query got its answer in time.
    pub stub_responsive: bool,
    /// The page directory (CR3), hex; null when not known.
    pub cr3: Option<String>,
    /// HIGH_MEMORY (end of RAM the kernel uses), hex; null when not known.
    pub high_memory: Option<String>,
    /// HIGH_MEMORY in bytes.
    pub memory_bytes: Option<u64>,
    /// Where cr3/high_memory came from: `stub`, `qemu`, or null.
    pub source: Option<String>,
    /// Connections made to the stub (a QEMU restart adds one).
    pub connects: u64,
    pub qmp: bool,
    pub allow_write: bool,
}

// ---- extractor helpers: every rejection becomes the JSON error shape ----

fn query<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    q.map(|Query(t)| t)
        .map_err(|e| ApiError::bad_request(e.body_text()))
}

fn path<T>(p: Result<Path<T>, PathRejection>) -> Result<T, ApiError> {
    p.map(|Path(t)| t)
        .map_err(|e| ApiError::bad_request(e.body_text()))
}

fn body<T>(b: Result<Json<T>, JsonRejection>) -> Result<T, ApiError> {
    b.map(|Json(t)| t).map_err(|e| {
        let status = e.status();
        let code = if status == StatusCode::PAYLOAD_TOO_LARGE {
            "payload_too_large"
        } else {
            "bad_json"
        };
        ApiError::new(
            if status.is_client_error() {
                status
            } else {
                StatusCode::BAD_REQUEST
            },
            code,
            e.body_text(),
        )
    })
}

/// A hex (`0x...`) or decimal number, as the monitor takes them.
pub fn parse_number(text: &str, what: &str) -> Result<u64, ApiError> {
    let t = text.trim();
    let parsed = match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        Some(h) if !h.is_empty() && h.len() <= 16 => u64::from_str_radix(h, 16).ok(),
        Some(_) => None,
        None if !t.is_empty() && t.len() <= 20 && t.bytes().all(|b| b.is_ascii_digit()) => {
            t.parse().ok()
        }
        None => None,
    };
    parsed.ok_or_else(|| {
        ApiError::bad_request(format!(
            "{what}: '{text}' is not a number (decimal or 0x hex)"
        ))
    })
}

fn parse_u32(text: &str, what: &str) -> Result<u32, ApiError> {
    let v = parse_number(text, what)?;
    u32::try_from(v).map_err(|_| ApiError::bad_request(format!("{what}: {text} is beyond 32 bits")))
}

/// Parses a monitor answer; its `error` object becomes the API error.
fn monitor_document(text: &str, source: &str) -> Result<Value, ApiError> {
    let mut doc: Value = serde_json::from_str(text.trim()).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_GATEWAY,
            "protocol_error",
            format!("the monitor's answer is not JSON: {e}"),
        )
    })?;
    if let Some(error) = doc.get("error") {
        return Err(ApiError::from_monitor(error));
    }
    if let Some(object) = doc.as_object_mut() {
        object.insert("source".into(), json!(source));
    }
    Ok(doc)
}

impl App {
    /// One monitor command through the stub.
    async fn monitor(&self, line: &str) -> Result<Value, ApiError> {
        let text = self.link.monitor(line, self.timeout).await?;
        monitor_document(&text, "stub")
    }

    /// Whether a stub failure lets QEMU answer instead.
    fn falls_back(&self, choice: SourceChoice, error: &ApiError) -> bool {
        choice == SourceChoice::Auto
            && self.qmp.configured()
            && matches!(
                error.code.as_str(),
                "not_connected" | "timeout" | "protocol_error" | "stub_refused"
            )
    }

    /// The cache, reset when the link reconnected (a new boot may differ).
    async fn cache(&self) -> tokio::sync::MutexGuard<'_, Cache> {
        let mut cache = self.cache.lock().await;
        let generation = self.link.status().connects;
        if cache.generation != generation {
            *cache = Cache {
                generation,
                ..Cache::default()
            };
        }
        cache
    }

    /// CR3 and HIGH_MEMORY as QEMU sees them (HIGH_MEMORY from the kernel's identity map is
    /// not needed: RAM size bounds the reads, rounded down to a page).
    async fn qemu_machine(&self) -> Result<(Frame, u32), ApiError> {
        let mut s = self.qmp.session().await?;
        let cr3 = s.cr3().await?;
        let ram = s.ram_size().await?;
        let high = u32::try_from(ram.min(mm::addr::MAX_HIGH_MEMORY as u64))
            .unwrap_or(mm::addr::MAX_HIGH_MEMORY);
        Ok((Frame::containing(cr3), high & !(PAGE_SIZE - 1)))
    }

    fn progress_bar(&self, len: u64, what: &str) -> indicatif::ProgressBar {
        if !self.progress {
            return indicatif::ProgressBar::hidden();
        }
        let bar = indicatif::ProgressBar::new(len);
        if let Ok(style) = indicatif::ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len}") {
            bar.set_style(style);
        }
        bar.set_message(what.to_string());
        bar
    }
}

// ---- middleware ----

/// Host and token checks; `/health` needs no token (it tells nothing but "up").
pub async fn guard(State(app): Shared, request: Request, next: Next) -> Response {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok());
    if let Err(Refusal::ForeignHost(h)) = app.guard.check_host(host) {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "foreign_host",
            format!("Host '{h}' is not this daemon's name (DNS rebinding?)"),
        )
        .into_response();
    }
    if request.uri().path() != "/health" {
        let auth = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|h| h.to_str().ok());
        match app.guard.check_token(auth) {
            Ok(()) => {}
            Err(Refusal::MissingToken) => {
                return ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "unauthorized",
                    "this daemon needs 'Authorization: Bearer TOKEN'",
                )
                .into_response()
            }
            Err(_) => {
                return ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "wrong token")
                    .into_response()
            }
        }
    }
    next.run(request).await
}

fn require_write(app: &App) -> Result<(), ApiError> {
    if app.allow_write {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "writes_disabled",
            "changing the kernel needs the daemon started with --allow-write",
        ))
    }
}

// ---- handlers ----

#[utoipa::path(get, path = "/health", tag = "daemon",
    responses((status = 200, description = "the daemon is up", body = Health)))]
async fn health(State(app): Shared) -> Json<Health> {
    Json(Health {
        status: "ok".into(),
        connected: app.link.status().connected,
    })
}

#[utoipa::path(get, path = "/api/v1/health", tag = "daemon",
    responses((status = 200, description = "the daemon is up", body = Health)))]
async fn health_v1(state: Shared) -> Json<Health> {
    health(state).await
}

#[utoipa::path(get, path = "/api/v1/status", tag = "kernel",
    responses((status = 200, description = "link and machine state", body = Status)))]
async fn status(State(app): Shared) -> Json<Status> {
    let link = app.link.status();
    let mut source = None;
    let (mut cr3, mut high) = {
        let cache = app.cache().await;
        (cache.cr3, cache.high_memory)
    };
    if cr3.is_some() {
        source = Some("stub".to_string());
    } else if link.connected {
        let ops = vec![
            Op::Monitor("showmem --json".into()),
            Op::Monitor("dumppgd --range 0x0-0x1000 --json".into()),
        ];
        if let Ok(results) = app.link.run(ops, app.timeout).await {
            let docs: Vec<Value> = results
                .iter()
                .filter_map(|r| match r {
                    OpResult::Monitor(t) => serde_json::from_str(t.trim()).ok(),
                    OpResult::Memory(_) => None,
                })
                .collect();
            let get = |doc: Option<&Value>, field: &str| {
                doc.and_then(|d| d.get(field))
                    .and_then(Value::as_str)
                    .and_then(|s| parse_u32(s, field).ok())
            };
            high = get(docs.first(), "high_memory");
            cr3 = get(docs.get(1), "pg_dir");
            if cr3.is_some() {
                source = Some("stub".into());
                let mut cache = app.cache().await;
                cache.cr3 = cr3;
                cache.high_memory = high;
            }
        }
    }
    if cr3.is_none() && app.qmp.configured() {
        if let Ok((dir, h)) = app.qemu_machine().await {
            cr3 = Some(dir.as_u32());
            high = Some(h);
            source = Some("qemu".into());
        }
    }
    let kernel = if !link.connected {
        "unknown"
    } else if link.stopped_by_gdb {
        "stopped"
    } else {
        "running"
    };
    Json(Status {
        connected: link.connected,
        kernel: kernel.into(),
        gdb_attached: link.gdb_attached,
        stub_responsive: link.stub_responsive,
        cr3: cr3.map(hex),
        high_memory: high.map(hex),
        memory_bytes: high.map(u64::from),
        source,
        connects: link.connects,
        qmp: app.qmp.configured(),
        allow_write: app.allow_write,
    })
}

#[utoipa::path(get, path = "/api/v1/tasks", tag = "kernel",
    responses((status = 200, body = TasksDoc), (status = 503, body = ErrorBody), (status = 504, body = ErrorBody)))]
async fn tasks(State(app): Shared) -> Result<Json<Value>, ApiError> {
    app.monitor("tasks --json").await.map(Json)
}

#[utoipa::path(get, path = "/api/v1/checkmm", tag = "kernel",
    responses((status = 200, body = CheckmmDoc), (status = 503, body = ErrorBody), (status = 504, body = ErrorBody)))]
async fn checkmm(State(app): Shared) -> Result<Json<Value>, ApiError> {
    app.monitor("checkmm --json").await.map(Json)
}

#[utoipa::path(get, path = "/api/v1/showmem", tag = "kernel",
    responses((status = 200, body = ShowmemDoc), (status = 503, body = ErrorBody), (status = 504, body = ErrorBody)))]
async fn showmem(State(app): Shared) -> Result<Json<Value>, ApiError> {
    app.monitor("showmem --json").await.map(Json)
}

#[utoipa::path(get, path = "/api/v1/faults", tag = "kernel",
    responses((status = 200, body = FaultsDoc), (status = 503, body = ErrorBody), (status = 504, body = ErrorBody)))]
async fn faults(State(app): Shared) -> Result<Json<Value>, ApiError> {
    app.monitor("faults --json").await.map(Json)
}

/// Filters of the page directory (those of `dumppgd`).
#[derive(Deserialize, IntoParams, Default)]
#[into_params(parameter_in = Query)]
pub struct PgdQuery {
    /// Only that task's 16 entries (pid; 0 is the kernel).
    task: Option<u32>,
    /// Entries meeting [start, end): hex or decimal linear addresses; both or neither.
    start: Option<String>,
    /// Exclusive end, up to 0x100000000.
    end: Option<String>,
    /// true: user entries (US set); false: kernel entries.
    user: Option<bool>,
    /// true: writable entries; false: read-only.
    writable: Option<bool>,
    /// One entry per line, no merging (the JSON entries are never merged anyway).
    all: Option<bool>,
    /// `auto` (default), `stub` or `qemu`.
    source: Option<SourceChoice>,
}

#[utoipa::path(get, path = "/api/v1/page-directory", tag = "kernel", params(PgdQuery),
    responses((status = 200, body = PageDirectoryDoc), (status = 400, body = ErrorBody),
              (status = 503, body = ErrorBody), (status = 504, body = ErrorBody)))]
async fn page_directory(
    State(app): Shared,
    q: Result<Query<PgdQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let q = query(q)?;
    let range = match (&q.start, &q.end) {
        (None, None) => None,
        (Some(s), Some(e)) => {
            let (s, e) = (parse_number(s, "start")?, parse_number(e, "end")?);
            if s >= e || e > 1 << 32 {
                return Err(ApiError::bad_request("need start < end <= 0x100000000"));
            }
            Some((s, e))
        }
        _ => return Err(ApiError::bad_request("give both start and end, or neither")),
    };
    let mut line = String::from("dumppgd --json");
    if let Some(t) = q.task {
        line += &format!(" --task {t}");
    }
    if let Some((s, e)) = range {
        line += &format!(" --range {s:#x}-{e:#x}");
    }
    match q.user {
        Some(true) => line += " --user",
        Some(false) => line += " --kernel",
        None => {}
    }
    match q.writable {
        Some(true) => line += " --rw",
        Some(false) => line += " --ro",
        None => {}
    }
    if q.all == Some(true) {
        line += " --all";
    }
    let choice = q.source.unwrap_or_default();
    if choice != SourceChoice::Qemu {
        match app.monitor(&line).await {
            Ok(doc) => return Ok(Json(doc)),
            Err(e) if !app.falls_back(choice, &e) => return Err(e),
            Err(e) => tracing::info!("page directory from QEMU: the stub failed ({})", e.message),
        }
    }
    if q.task.is_some() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "needs_stub",
            "the task filter needs the kernel's task table (the stub)",
        ));
    }
    let (dir, high) = app.qemu_machine().await?;
    let mut s = app.qmp.session().await?;
    let mut pages = Pages::default();
    s.fetch_page(&mut pages, dir).await?;
    let tables: Vec<Frame> = (0..1024)
        .map(|i| mm::raw_walk::PhysRead::read_entry(&pages, dir, i))
        .filter(|e| e.is_present() && e.frame().as_u32() < high)
        .map(|e| e.frame())
        .collect();
    let bar = app.progress_bar(tables.len() as u64, "page tables from QEMU");
    for t in tables {
        s.fetch_page(&mut pages, t).await?;
        bar.inc(1);
    }
    bar.finish_and_clear();
    let filter = PgdFilter {
        range,
        user: q.user,
        writable: q.writable,
    };
    let mut doc = postmortem::page_directory(&pages, dir, high, filter);
    doc["source"] = json!("qemu");
    Ok(Json(doc))
}

/// Where an answer may come from.
#[derive(Deserialize, IntoParams, Default)]
#[into_params(parameter_in = Query)]
pub struct SourceQuery {
    /// `auto` (default), `stub` or `qemu`.
    source: Option<SourceChoice>,
}

#[utoipa::path(get, path = "/api/v1/page-tables/{index}", tag = "kernel",
    params(("index" = u32, Path, description = "page-directory index, 0..1023"), SourceQuery),
    responses((status = 200, body = PageTableDoc), (status = 400, body = ErrorBody),
              (status = 503, body = ErrorBody), (status = 504, body = ErrorBody)))]
async fn page_table(
    State(app): Shared,
    p: Result<Path<u32>, PathRejection>,
    q: Result<Query<SourceQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let index = path(p)?;
    let choice = query(q)?.source.unwrap_or_default();
    if index >= 1024 {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "out_of_range",
            "index must be 0..1023",
        ));
    }
    if choice != SourceChoice::Qemu {
        match app.monitor(&format!("dumppt {index} --json")).await {
            Ok(doc) => return Ok(Json(doc)),
            Err(e) if !app.falls_back(choice, &e) => return Err(e),
            Err(_) => {}
        }
    }
    let (dir, high) = app.qemu_machine().await?;
    let mut s = app.qmp.session().await?;
    let mut pages = Pages::default();
    s.fetch_page(&mut pages, dir).await?;
    let pde = mm::raw_walk::PhysRead::read_entry(&pages, dir, index as usize);
    if pde.is_present() && pde.frame().as_u32() < high {
        s.fetch_page(&mut pages, pde.frame()).await?;
    }
    let mut doc = postmortem::page_table(&pages, dir, high, index as usize);
    doc["source"] = json!("qemu");
    Ok(Json(doc))
}

/// A walk's arguments.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WalkQuery {
    /// The linear address (hex or decimal); with `task`, an offset in its segment (< 64 MiB).
    addr: String,
    /// Walk in this task's segment (pid).
    task: Option<u32>,
    /// `qemu`: also ask QEMU (gva2gpa) and say whether it agrees.
    verify: Option<String>,
    /// `auto` (default), `stub` or `qemu`.
    source: Option<SourceChoice>,
}

#[utoipa::path(get, path = "/api/v1/walk", tag = "kernel", params(WalkQuery),
    responses((status = 200, body = WalkDoc), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 503, body = ErrorBody), (status = 504, body = ErrorBody)))]
async fn walk(
    State(app): Shared,
    q: Result<Query<WalkQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let q = query(q)?;
    let addr = parse_number(&q.addr, "addr")?;
    if addr >= 1 << 32 {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "out_of_range",
            "addr must be below 0x100000000",
        ));
    }
    if q.task.is_some() && addr >= TASK_SIZE as u64 {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "out_of_range",
            "with task, addr is an offset below 64 MiB",
        ));
    }
    let verify = match q.verify.as_deref() {
        None | Some("") | Some("none") => false,
        Some("qemu") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "verify: '{other}' is not 'qemu'"
            )))
        }
    };
    let choice = q.source.unwrap_or_default();
    let mut doc = None;
    if choice != SourceChoice::Qemu {
        let mut line = format!("walk {addr:#x} --json");
        if let Some(t) = q.task {
            line += &format!(" --task {t}");
        }
        match app.monitor(&line).await {
            Ok(d) => doc = Some(d),
            Err(e) if !app.falls_back(choice, &e) => return Err(e),
            Err(_) => {}
        }
    }
    let mut doc = match doc {
        Some(d) => d,
        None => {
            if q.task.is_some() {
                return Err(ApiError::new(StatusCode::BAD_REQUEST, "needs_stub", "a task's walk needs the kernel's task table (the stub); give the linear address"));
            }
            let (dir, high) = app.qemu_machine().await?;
            let mut s = app.qmp.session().await?;
            let mut pages = Pages::default();
            s.fetch_page(&mut pages, dir).await?;
            let linear = LinearAddr::new(addr as u32);
            let pde = mm::raw_walk::PhysRead::read_entry(&pages, dir, linear.dir_index());
            if pde.is_present() && pde.frame().as_u32() < high {
                s.fetch_page(&mut pages, pde.frame()).await?;
            }
            let w = mm::raw_walk::walk(&pages, dir, high, linear);
            let mut d = postmortem::walk_document(&w);
            d["source"] = json!("qemu");
            d
        }
    };
    if verify {
        let linear = doc
            .get("linear")
            .and_then(Value::as_str)
            .map(|s| parse_u32(s, "linear"))
            .transpose()?;
        let linear = linear.ok_or_else(|| ApiError::internal("the walk has no linear address"))?;
        let mut s = app.qmp.session().await?;
        let qemu = s.gva2gpa(linear).await?;
        let ours = doc
            .get("physical")
            .and_then(Value::as_str)
            .map(|p| parse_u32(p, "physical"))
            .transpose()?;
        doc["qemu"] = json!({ "physical": qemu.map(hex) });
        doc["agree"] = json!(qemu == ours);
    }
    Ok(Json(doc))
}

/// A frame range of mem_map.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MemMapQuery {
    /// First physical address (rounded down to its frame); default LOW_MEM (0x100000).
    start: Option<String>,
    /// End, exclusive; default HIGH_MEMORY. At most 16128 frames.
    end: Option<String>,
    /// `auto` (default), `stub` or `qemu`.
    source: Option<SourceChoice>,
}

#[utoipa::path(get, path = "/api/v1/mem-map", tag = "kernel", params(MemMapQuery),
    responses((status = 200, body = MemMapDoc), (status = 400, body = ErrorBody),
              (status = 503, body = ErrorBody), (status = 504, body = ErrorBody)))]
async fn mem_map(
    State(app): Shared,
    q: Result<Query<MemMapQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let q = query(q)?;
    let start = q
        .start
        .as_deref()
        .map(|s| parse_number(s, "start"))
        .transpose()?;
    let end = q
        .end
        .as_deref()
        .map(|s| parse_number(s, "end"))
        .transpose()?;
    let elf = app.kernel_elf.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no_symbols",
            "mem_map needs the kernel ELF (--kernel PATH)",
        )
    })?;
    let paging = symbols::find_paging_static(elf)
        .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "no_symbols", e.to_string()))?;
    let choice = q.source.unwrap_or_default();
    if choice != SourceChoice::Qemu {
        match mem_map_stub(&app, paging, start, end).await {
            Ok(doc) => return Ok(Json(doc)),
            Err(e) if !app.falls_back(choice, &e) => return Err(e),
            Err(_) => {}
        }
    }
    mem_map_qemu(&app, paging, start, end).await.map(Json)
}

/// Clamps the asked range to the frames mem_map covers; frame indices [first, last).
fn frame_range(
    start: Option<u64>,
    end: Option<u64>,
    high_memory: u32,
) -> Result<(usize, usize), ApiError> {
    let start = start.unwrap_or(LOW_MEM as u64);
    let end = end.unwrap_or(high_memory as u64);
    if start >= end {
        return Err(ApiError::bad_request("need start < end"));
    }
    if start < LOW_MEM as u64 || end > high_memory as u64 {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "out_of_range",
            format!("mem_map covers {LOW_MEM:#x}..{high_memory:#x} (LOW_MEM to HIGH_MEMORY)"),
        ));
    }
    let first = ((start - LOW_MEM as u64) / PAGE_SIZE as u64) as usize;
    let last = ((end - LOW_MEM as u64).div_ceil(PAGE_SIZE as u64)) as usize;
    Ok((first, last.min(MAX_PAGING_PAGES)))
}

fn mem_map_document(
    counts: &[u8],
    first: usize,
    high: u32,
    start_mem: Option<u32>,
    source: &str,
    verified: bool,
) -> Value {
    let free = counts.iter().filter(|&&c| c == 0).count();
    json!({
        "command": "mem_map",
        "schema": 1,
        "source": source,
        "start": hex(LOW_MEM + first as u32 * PAGE_SIZE),
        "end": hex(LOW_MEM + (first + counts.len()) as u32 * PAGE_SIZE),
        "high_memory": hex(high),
        "start_mem": start_mem.map(hex),
        "frames": counts.len(),
        "free": free,
        "used": counts.len() - free,
        "counts": counts,
        "located": if verified { "checked against showmem" } else { "by shape only (post-mortem)" },
    })
}

async fn mem_map_stub(
    app: &App,
    paging: PagingStatic,
    start: Option<u64>,
    end: Option<u64>,
) -> Result<Value, ApiError> {
    let showmem = app.monitor("showmem --json").await?;
    let get = |field: &str| {
        showmem
            .get(field)
            .and_then(Value::as_str)
            .map(|s| parse_u32(s, field))
            .transpose()?
            .ok_or_else(|| ApiError::internal(format!("showmem has no {field}")))
    };
    let high = get("high_memory")?;
    let start_mem = get("start_mem")?;
    let (first, last) = frame_range(start, end, high)?;
    let known = app
        .cache()
        .await
        .counts
        .filter(|(p, _)| *p == paging)
        .map(|(_, o)| o);
    let offset = match known {
        Some(o) => o,
        None => {
            // Locate counts in one stop: the static and showmem must describe the same moment.
            let ops = vec![
                Op::Monitor("showmem --json".into()),
                Op::ReadMemory {
                    addr: paging.addr,
                    len: paging.size,
                },
            ];
            let results = app.link.run(ops, app.timeout * 3).await?;
            let (Some(OpResult::Monitor(text)), Some(OpResult::Memory(blob))) =
                (results.first(), results.get(1))
            else {
                return Err(ApiError::internal("unexpected link answer"));
            };
            let doc = monitor_document(text, "stub")?;
            let hints = hints_from(&doc)?;
            let offset = symbols::locate_counts(blob, &hints).ok_or_else(|| {
                ApiError::new(StatusCode::BAD_GATEWAY, "mem_map_not_found", "mem_map's counts were not found in kernel::paging::PAGING (does --kernel match the running kernel?)")
            })?;
            app.cache().await.counts = Some((paging, offset));
            offset
        }
    };
    let addr = paging.addr + offset as u32 + first as u32;
    let results = app
        .link
        .run(
            vec![Op::ReadMemory {
                addr,
                len: (last - first) as u32,
            }],
            app.timeout,
        )
        .await?;
    let Some(OpResult::Memory(counts)) = results.first() else {
        return Err(ApiError::internal("unexpected link answer"));
    };
    Ok(mem_map_document(
        counts,
        first,
        high,
        Some(start_mem),
        "stub",
        true,
    ))
}

fn hints_from(showmem: &Value) -> Result<Hints, ApiError> {
    let hex_field = |f: &str| {
        showmem
            .get(f)
            .and_then(Value::as_str)
            .map(|s| parse_u32(s, f))
            .transpose()?
            .ok_or_else(|| ApiError::internal(format!("showmem has no {f}")))
    };
    let shared = showmem
        .get("shared")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|s| {
                    let frame = parse_u32(s.get("frame")?.as_str()?, "frame").ok()?;
                    Some((frame, u8::try_from(s.get("count")?.as_u64()?).ok()?))
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(Hints {
        high_memory: hex_field("high_memory")?,
        start_mem: hex_field("start_mem")?,
        free: showmem.get("free").and_then(Value::as_u64).unwrap_or(0) as u32,
        shared,
    })
}

async fn mem_map_qemu(
    app: &App,
    paging: PagingStatic,
    start: Option<u64>,
    end: Option<u64>,
) -> Result<Value, ApiError> {
    let (_, ram) = app.qemu_machine().await?;
    // The kernel caps HIGH_MEMORY at 64 MiB and QEMU's RAM size is close to HIGH_MEMORY
    // (the firmware keeps the top 128 KiB); the shape search needs only an upper bound.
    let known = app
        .cache()
        .await
        .counts
        .filter(|(p, _)| *p == paging)
        .map(|(_, o)| o);
    let mut s = app.qmp.session().await?;
    let blob = s.read_bytes(paging.addr, paging.size).await?;
    let (offset, verified) = match known {
        Some(o) => (o, None),
        None => {
            // Try the RAM size QEMU reports, then that less the firmware's 128 KiB.
            let candidates = [ram, ram.saturating_sub(0x2_0000)];
            let found = candidates
                .iter()
                .find_map(|&h| symbols::locate_counts_by_shape(&blob, h).map(|o| (o, h)));
            let (o, h) = found.ok_or_else(|| {
                ApiError::new(
                    StatusCode::BAD_GATEWAY,
                    "mem_map_not_found",
                    "no mem_map-shaped bytes in kernel::paging::PAGING",
                )
            })?;
            (o, Some(h))
        }
    };
    let counts = &blob[offset..offset + MAX_PAGING_PAGES];
    // HIGH_MEMORY: where the trailing run of USED starts (mem_init's shape), else the RAM size.
    let high = match verified {
        Some(h) => h,
        None => {
            let tail = counts
                .iter()
                .rev()
                .take_while(|&&c| c == mm::mem_map::USED)
                .count();
            LOW_MEM + ((MAX_PAGING_PAGES - tail) as u32) * PAGE_SIZE
        }
    };
    let (first, last) = frame_range(start, end, high)?;
    let last = last.min(counts.len());
    Ok(mem_map_document(
        &counts[first..last],
        first,
        high,
        None,
        "qemu",
        verified.is_none(),
    ))
}

#[utoipa::path(get, path = "/api/v1/fail", tag = "fault injection",
    responses((status = 200, body = FailDoc), (status = 503, body = ErrorBody), (status = 504, body = ErrorBody)))]
async fn fail_get(State(app): Shared) -> Result<Json<Value>, ApiError> {
    app.monitor("fail --json").await.map(Json)
}

/// A change to the failure-injection knobs: exactly one of `site`, `seed`, `task`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FailChange {
    /// An allocation site (as GET /fail lists them): set its knobs, or `off`.
    site: Option<String>,
    /// With `site`: disable it.
    off: Option<bool>,
    /// Percent, 0..100.
    probability: Option<u32>,
    /// Every Nth eligible call.
    interval: Option<u32>,
    /// How many failures (-1: unlimited).
    times: Option<i64>,
    /// Bytes consumed before failures start.
    space: Option<u64>,
    /// Only tasks marked make-it-fail.
    filter: Option<bool>,
    /// The random seed.
    seed: Option<u64>,
    /// Mark (`make_it_fail` true) or unmark a task.
    task: Option<u32>,
    make_it_fail: Option<bool>,
}

fn fail_command(c: &FailChange) -> Result<String, ApiError> {
    let chosen = [c.site.is_some(), c.seed.is_some(), c.task.is_some()]
        .iter()
        .filter(|&&b| b)
        .count();
    if chosen != 1 {
        return Err(ApiError::bad_request(
            "give exactly one of site, seed, task",
        ));
    }
    if let Some(seed) = c.seed {
        return Ok(format!("fail seed {seed} --json"));
    }
    if let Some(pid) = c.task {
        let on = c
            .make_it_fail
            .ok_or_else(|| ApiError::bad_request("task needs make_it_fail"))?;
        return Ok(format!(
            "fail task {pid} {} --json",
            if on { "on" } else { "off" }
        ));
    }
    let site = c.site.as_deref().unwrap_or_default();
    if site.is_empty()
        || site.len() > 64
        || !site
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        return Err(ApiError::bad_request(
            "site must be a site name (lowercase letters, digits, _)",
        ));
    }
    if c.off == Some(true) {
        return Ok(format!("fail {site} off --json"));
    }
    let mut line = format!("fail {site}");
    if let Some(p) = c.probability {
        line += &format!(" probability={p}");
    }
    if let Some(i) = c.interval {
        line += &format!(" interval={i}");
    }
    if let Some(t) = c.times {
        line += &format!(" times={t}");
    }
    if let Some(s) = c.space {
        line += &format!(" space={s}");
    }
    if let Some(f) = c.filter {
        line += &format!(" filter={}", if f { "on" } else { "off" });
    }
    if line == format!("fail {site}") {
        return Err(ApiError::bad_request(
            "give knobs to set (probability, interval, times, space, filter) or off",
        ));
    }
    Ok(line + " --json")
}

#[utoipa::path(post, path = "/api/v1/fail", tag = "fault injection", request_body = FailChange,
    responses((status = 200, body = FailDoc), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 413, body = ErrorBody), (status = 503, body = ErrorBody), (status = 504, body = ErrorBody)))]
async fn fail_post(
    State(app): Shared,
    b: Result<Json<FailChange>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    require_write(&app)?;
    let change = body(b)?;
    let line = fail_command(&change)?;
    app.monitor(&line).await.map(Json)
}

#[utoipa::path(get, path = "/api/v1/failnth/{pid}", tag = "fault injection",
    params(("pid" = u32, Path, description = "the task")),
    responses((status = 200, body = FailDoc), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 503, body = ErrorBody), (status = 504, body = ErrorBody)))]
async fn failnth_get(
    State(app): Shared,
    p: Result<Path<u32>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let pid = path(p)?;
    app.monitor(&format!("failnth {pid} --json"))
        .await
        .map(Json)
}

/// fail-nth for a task: its Nth eligible allocation fails (0 cancels).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FailNth {
    n: u32,
}

#[utoipa::path(post, path = "/api/v1/failnth/{pid}", tag = "fault injection",
    params(("pid" = u32, Path, description = "the task")), request_body = FailNth,
    responses((status = 200, body = FailDoc), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 413, body = ErrorBody), (status = 503, body = ErrorBody), (status = 504, body = ErrorBody)))]
async fn failnth_post(
    State(app): Shared,
    p: Result<Path<u32>, PathRejection>,
    b: Result<Json<FailNth>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    require_write(&app)?;
    let pid = path(p)?;
    let n = body(b)?.n;
    app.monitor(&format!("failnth {pid} {n} --json"))
        .await
        .map(Json)
}

/// Resuming the stream.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StreamQuery {
    /// Replay remembered faults with seq above this (as the Last-Event-ID header does).
    since: Option<u64>,
}

#[utoipa::path(get, path = "/api/v1/faults/stream", tag = "kernel", params(StreamQuery),
    responses((status = 200, description = "Server-Sent Events: `fault` events (id = seq, data = one fault record as in /faults) and `gap` events", content_type = "text/event-stream", body = String),
              (status = 400, body = ErrorBody)))]
async fn fault_stream(
    State(app): Shared,
    headers: HeaderMap,
    q: Result<Query<StreamQuery>, QueryRejection>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    let q = query(q)?;
    let header_id = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.trim()
                .parse::<u64>()
                .map_err(|_| ApiError::bad_request("Last-Event-ID must be a fault seq"))
        })
        .transpose()?;
    let since = header_id.or(q.since);
    let mut rx = app.feed.subscribe();
    let replay = since.map(|s| app.feed.since(s)).unwrap_or_default();
    let resuming = since.is_some();
    let mut sent = since.unwrap_or_else(|| app.feed.last_seq());
    let stream = async_stream(move |tx| async move {
        for (seq, record) in replay {
            sent = sent.max(seq);
            if tx.send(fault_event(seq, &record)).await.is_err() {
                return;
            }
        }
        loop {
            let event = match rx.recv().await {
                Ok(FeedEvent::Fault {
                    seq,
                    record,
                    history,
                }) if seq > sent && (resuming || !history) => {
                    sent = seq;
                    fault_event(seq, &record)
                }
                Ok(FeedEvent::Fault { .. }) => continue,
                Ok(FeedEvent::Gap { after, upto }) => SseEvent::default()
                    .event("gap")
                    .data(json!({"after": after, "upto": upto}).to_string()),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => SseEvent::default()
                    .event("gap")
                    .data(json!({"lagged": n}).to_string()),
                Err(_) => return,
            };
            if tx.send(event).await.is_err() {
                return;
            }
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

fn fault_event(seq: u64, record: &Value) -> SseEvent {
    SseEvent::default()
        .event("fault")
        .id(seq.to_string())
        .data(record.to_string())
}

/// A stream fed by a task through a small channel (no extra crate for generators).
fn async_stream<F, Fut>(body: F) -> impl Stream<Item = Result<SseEvent, Infallible>>
where
    F: FnOnce(tokio::sync::mpsc::Sender<SseEvent>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(body(tx));
    futures_util::StreamExt::map(tokio_stream::wrappers::ReceiverStream::new(rx), Ok)
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "pgkernel inspector",
        description = "The paging state of the Linux 0.11/0.12 teaching kernel, live over JSON. Addresses are hex strings (\"0x%08x\"); errors are {\"error\": {\"code\", \"message\"}}."
    ),
    components(schemas(ErrorBody, SourceChoice))
)]
struct ApiDoc;

/// The router and its OpenAPI document (served at /api/v1/openapi.json).
pub fn router(app: Arc<App>) -> Router {
    let (router, api) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(health))
        .routes(routes!(health_v1))
        .routes(routes!(status))
        .routes(routes!(tasks))
        .routes(routes!(page_directory))
        .routes(routes!(page_table))
        .routes(routes!(walk))
        .routes(routes!(mem_map))
        .routes(routes!(checkmm))
        .routes(routes!(showmem))
        .routes(routes!(faults))
        .routes(routes!(fault_stream))
        .routes(routes!(fail_get, fail_post))
        .routes(routes!(failnth_get, failnth_post))
        .split_for_parts();
    let api = Arc::new(api);
    router
        .route(
            "/api/v1/openapi.json",
            axum::routing::get(move || {
                let api = api.clone();
                async move { Json(api.as_ref().clone()) }
            }),
        )
        .fallback(|| async { ApiError::not_found("no such endpoint (see /api/v1/openapi.json)") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "method not allowed here",
            )
        })
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::from_fn_with_state(app.clone(), guard))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(app)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_parse_like_the_monitor() {
        assert_eq!(parse_number("0x1000", "a").unwrap(), 0x1000);
        assert_eq!(parse_number("4096", "a").unwrap(), 4096);
        for bad in ["", "0x", "0xzz", "-1", "+1", "1k", "0x1ffffffffffffffff"] {
            assert!(parse_number(bad, "a").is_err(), "{bad}");
        }
    }

    #[test]
    fn fail_changes_become_monitor_lines() {
        let c: FailChange =
            serde_json::from_value(json!({"site": "do_no_page", "probability": 10, "times": -1}))
                .unwrap();
        assert_eq!(
            fail_command(&c).unwrap(),
            "fail do_no_page probability=10 times=-1 --json"
        );
        let c: FailChange = serde_json::from_value(json!({"site": "x y"})).unwrap();
        assert!(fail_command(&c).is_err());
        let c: FailChange = serde_json::from_value(json!({"seed": 3, "task": 1})).unwrap();
        assert!(fail_command(&c).is_err());
        let c: FailChange =
            serde_json::from_value(json!({"task": 2, "make_it_fail": true})).unwrap();
        assert_eq!(fail_command(&c).unwrap(), "fail task 2 on --json");
    }

    #[test]
    fn frame_ranges_stay_inside_mem_map() {
        assert_eq!(frame_range(None, None, 0x200_0000).unwrap(), (0, 7936));
        assert_eq!(
            frame_range(Some(0x101000), Some(0x103000), 0x200_0000).unwrap(),
            (1, 3)
        );
        assert!(frame_range(Some(0), None, 0x200_0000).is_err());
        assert!(frame_range(Some(0x200000), Some(0x100000), 0x200_0000).is_err());
        assert!(frame_range(None, Some(0x300_0000), 0x200_0000).is_err());
    }

    #[test]
    fn monitor_errors_become_api_errors() {
        let e = monitor_document(r#"{"command":"walk","schema":1,"error":{"kind":"no_such_task","message":"no task with pid 99"}}"#, "stub")
            .unwrap_err();
        assert_eq!(e.status, StatusCode::NOT_FOUND);
        let d = monitor_document(r#"{"command":"tasks","schema":1}"#, "stub").unwrap();
        assert_eq!(d["source"], "stub");
    }
}
