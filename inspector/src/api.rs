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

use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use futures_util::stream::Stream;
use mm::addr::{Frame, LinearAddr, LOW_MEM, MAX_PAGING_PAGES, PAGE_SIZE, TASK_SIZE};
use mm::entry::Entry;
use report::value::Hex;
use report::{
    CheckMmDoc, DumpPgdDoc, DumpPtDoc, FailDoc, FailNthDoc, FaultsDoc, ShowMemDoc, TasksDoc,
    WalkDoc,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::sync::Mutex;
use utoipa::openapi::schema::{AllOfBuilder, Schema};
use utoipa::openapi::{Ref, RefOr};
use utoipa::{IntoParams, OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::answer::{parse_document, Answer, Envelope, KernelState, Reply, Source};
use crate::error::{ApiError, ErrorBody};
use crate::events::{Feed, FeedEvent};
use crate::link::{LinkHandle, Op, OpResult};
use crate::live::{Parts, Tables};
use crate::params::{parse_u32, Params};
use crate::postmortem::{KernelOnly, QemuView};
use crate::qemu::{Pages, Qmp};
use crate::security::{Guard, Refusal};
use crate::symbols::{self, Hints, PagingStatic};

/// The largest request body (POST bodies are a few knobs).
pub const MAX_BODY: usize = 16 * 1024;

/// Everything the handlers share.
pub struct App {
    pub link: LinkHandle,
    pub qmp: Arc<Qmp>,
    pub timeout: Duration,
    pub allow_write: bool,
    pub guard: Guard,
    pub kernel_elf: Option<PathBuf>,
    /// The ELF's functions by address (None without the ELF).
    pub functions: Option<crate::functions::Functions>,
    pub feed: Feed,
    /// Show progress bars for long post-mortem dumps (stderr is a terminal).
    pub progress: bool,
    pub cache: Mutex<Cache>,
    /// The history of snapshots the web view shows (recorder.rs).
    pub recorder: Arc<crate::recorder::Recorder>,
    /// The live source: the guest's RAM file (`--ram`).
    pub live: Option<Arc<crate::live::Live>>,
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
    /// The RAM file when the daemon has one (`--ram`) and it is usable, else the stub,
    /// and QEMU when the stub is not connected or does not answer.
    #[default]
    Auto,
    Stub,
    Qemu,
    /// The RAM file only (an error when it is not usable).
    Live,
}

impl SourceChoice {
    fn of(params: &Params) -> Result<SourceChoice, ApiError> {
        match params.text("source") {
            None | Some("auto") => Ok(SourceChoice::Auto),
            Some("stub") => Ok(SourceChoice::Stub),
            Some("qemu") => Ok(SourceChoice::Qemu),
            Some("live") => Ok(SourceChoice::Live),
            Some(other) => Err(ApiError::bad_request(format!(
                "source: '{other}' is not auto, live, stub or qemu"
            ))),
        }
    }

    /// Whether the stub is asked (after the live source, for `Auto`).
    fn tries_stub(self) -> bool {
        matches!(self, SourceChoice::Auto | SourceChoice::Stub)
    }
}

/// The live source's answer for `choice`, computed by `make` over a snapshot of `parts`:
/// `Some` when it answered (or, with `source=live`, failed), `None` to go on to the stub.
async fn try_live<T>(
    app: &App,
    choice: SourceChoice,
    parts: crate::live::Parts,
    make: impl Fn(&crate::live::Snapshot) -> Result<T, ApiError>,
) -> Option<Result<T, ApiError>> {
    let wanted = match choice {
        SourceChoice::Live => true,
        SourceChoice::Auto => app.live.is_some(),
        _ => false,
    };
    if !wanted {
        return None;
    }
    match app.live_compute(parts, make).await {
        Ok(answer) => Some(answer),
        Err(u) if choice == SourceChoice::Live => Some(Err(u.into())),
        Err(u) => {
            tracing::debug!("live source: {u:?}; asking the stub");
            None
        }
    }
}

// ---- schemas of the answers: the monitor's documents (kernel/report's JSON Schema) and
// the envelope, composed ----

/// `allOf` the named components: how an answer's schema is its document's plus the
/// envelope's (and any extra fields).
fn all_of(names: &[&str], description: &str) -> RefOr<Schema> {
    let mut builder = AllOfBuilder::new().description(Some(description));
    for name in names {
        builder = builder.item(Ref::from_schema_name(*name));
    }
    builder.into()
}

/// The schema of an answer carrying the monitor document `$doc` (a `$defs` name of
/// kernel/docs/monitor.schema.json, served under components/schemas).
macro_rules! answer_schema {
    ($name:ident, [$($part:literal),+], $description:expr) => {
        #[doc = $description]
        pub struct $name;
        impl utoipa::PartialSchema for $name {
            fn schema() -> RefOr<Schema> {
                all_of(&[$($part),+], $description)
            }
        }
        impl ToSchema for $name {}
    };
}

answer_schema!(
    TasksAnswer,
    ["TasksDoc", "Envelope"],
    "`tasks --json`: every task."
);
answer_schema!(
    PageDirectoryAnswer,
    ["DumpPgdDoc", "Envelope"],
    "`dumppgd --json`: present page-directory entries, raw and decoded."
);
answer_schema!(
    PageTableAnswer,
    ["DumpPtDoc", "Envelope"],
    "`dumppt INDEX --json`: one page table's non-zero entries."
);
answer_schema!(
    WalkAnswer,
    ["WalkDoc", "WalkCheck", "Envelope"],
    "`walk ADDR --json`, plus `qemu` and `agree` with verify=qemu."
);
answer_schema!(
    CheckMmAnswer,
    ["CheckMmDoc", "Envelope"],
    "`checkmm --json`: does mem_map agree with every page table?"
);
answer_schema!(
    ShowMemAnswer,
    ["ShowMemDoc", "Envelope"],
    "`showmem --json`: frame totals, pages per task, shared frames."
);
answer_schema!(
    FaultsAnswer,
    ["FaultsDoc", "Envelope"],
    "`faults --json`: the recent page faults and totals since boot."
);
answer_schema!(
    FailAnswer,
    ["FailDoc", "Envelope"],
    "`fail --json`: the failure-injection knobs."
);
answer_schema!(
    FailNthAnswer,
    ["FailNthDoc", "Envelope"],
    "`failnth PID --json`: a task's fail-nth."
);
answer_schema!(
    MemMapAnswer,
    ["MemMapDoc", "Envelope"],
    "mem_map counts over a frame range."
);

/// What `walk?verify=qemu` adds: QEMU's own translation and whether it agrees.
#[derive(Serialize, ToSchema, Debug)]
pub struct WalkCheck {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub qemu: Option<QemuTranslation>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agree: Option<bool>,
}

/// QEMU's `gva2gpa` of the walked address.
#[derive(Serialize, ToSchema, Debug)]
pub struct QemuTranslation {
    /// Hex; null when QEMU says it is unmapped.
    pub physical: Option<String>,
}

/// `mem_map`'s counts over a frame range (the inspector's own document).
#[derive(Serialize, ToSchema, Debug)]
pub struct MemMapDoc {
    /// Always `mem_map`.
    pub command: &'static str,
    /// The layout version (that of the monitor's documents).
    pub schema: u32,
    /// The range, physical, end exclusive.
    pub start: String,
    pub end: String,
    pub high_memory: String,
    /// Null post-mortem (only the kernel knows it).
    pub start_mem: Option<String>,
    pub frames: usize,
    pub free: usize,
    pub used: usize,
    pub counts: Vec<u8>,
    /// How the counts were found in kernel memory.
    pub located: &'static str,
}

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
    /// `running`; `stopped` (gdb holds it); `paused` (the VM is not running: QMP `stop`,
    /// QEMU's own gdbstub; answers come from QEMU at once); `unresponsive` (the VM runs
    /// but the stub does not answer: a wedged kernel; answers come from QEMU); `unknown`
    /// (not connected).
    pub kernel: String,
    /// QEMU's run state (`query-status`: `running`, `paused`, `debug`, ...); null
    /// without QMP.
    pub vm: Option<String>,
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
    /// While gdb has the kernel stopped: the stop it was told of.
    pub gdb_stop: Option<GdbStop>,
    /// gdb's memory reads (`m`) the proxy answered from the RAM file while the stub held
    /// the kernel, since the daemon started.
    pub gdb_reads_from_ram: u64,
    /// The live source (`--ram`); null without one.
    pub live: Option<LiveStatus>,
    /// The fault stream (`faults/stream`): where it reads faults, and how many it never saw.
    pub fault_stream: FaultStreamStatus,
}

/// The fault stream's state.
#[derive(Serialize, ToSchema)]
pub struct FaultStreamStatus {
    /// `ring`: the descriptor's fault ring in the RAM file (nothing lost in normal use);
    /// `stub`: the stub's log of the last 64, polled every `--poll-ms`.
    pub from: String,
    /// The newest fault seq the stream has.
    pub last_seq: u64,
    /// Faults since the daemon started that the stream never saw (the sum of its gaps).
    pub lost: u64,
}

/// The live source's state: the RAM file and its descriptor, or why they are not usable
/// (answers then come from the stub).
#[derive(Serialize, ToSchema)]
pub struct LiveStatus {
    /// The RAM file.
    pub ram: String,
    /// The descriptor was found and passed every check: answers default to it.
    pub usable: bool,
    /// Why not, when not usable: `{"code", "message"}`.
    pub error: Option<crate::error::ErrorDetail>,
    /// How the descriptor was found (ELF symbol or the locator at 0x101000).
    pub found_by: Option<crate::live::descriptor::FoundBy>,
    /// Its physical address, hex.
    pub descriptor: Option<String>,
    /// The kernel build's id (hex), and whether it was compared with the ELF's.
    pub build_id: Option<String>,
    pub build_id_checked: bool,
    /// The boot's id (hex), and whether it was compared with the machine's memory (QMP).
    pub boot_id: Option<String>,
    pub boot_id_checked: bool,
    /// The sequence count now (odd: a change in progress, or stopped in one).
    pub seq: Option<u32>,
    /// The stub holds the kernel stopped, and how many times it has stopped it since boot.
    pub stopped: Option<bool>,
    pub stops: Option<u32>,
}

/// Where gdb stopped the kernel: the signal of its stop reply, the thread (pid + 1), and
/// the eip gdb read right after the stop.
#[derive(Serialize, ToSchema)]
pub struct GdbStop {
    /// gdb's signal number: 5 SIGTRAP (breakpoint, watchpoint, step), 2 SIGINT (Ctrl-C).
    pub signal: u8,
    pub thread: Option<u32>,
    /// The task that thread is (thread id - 1).
    pub pid: Option<u32>,
    /// The stopped thread's eip, hex (null until gdb has read its registers).
    pub eip: Option<String>,
    /// The kernel function holding eip, `name+0xoffset` (null: not in the kernel's code,
    /// e.g. a user task's, or no kernel ELF).
    pub function: Option<String>,
}

// ---- extractor helpers: every rejection becomes the API's own error ----

/// A path parameter: a number in decimal or `0x` hex, as the monitor takes them.
fn path_number(p: Result<Path<String>, PathRejection>, what: &str) -> Result<u32, ApiError> {
    let Path(text) = p.map_err(|_| ApiError::bad_request(format!("{what}: missing")))?;
    parse_u32(&text, what)
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

/// `"0x%08x"`, the documents' form.
pub fn hex(value: u32) -> String {
    Hex(value).to_string()
}

impl App {
    /// One monitor command through the stub, parsed into its document (at once an
    /// error when the VM is paused or the stub unresponsive).
    async fn monitor<D: DeserializeOwned>(&self, line: &str) -> Result<D, ApiError> {
        self.monitor_for(SourceChoice::Auto, line).await
    }

    /// As [`monitor`](Self::monitor); `source=stub` tries a stub that seems
    /// unresponsive (the client asked for nothing else).
    async fn monitor_for<D: DeserializeOwned>(
        &self,
        choice: SourceChoice,
        line: &str,
    ) -> Result<D, ApiError> {
        let ops = vec![Op::Monitor(line.to_string())];
        let results = if choice == SourceChoice::Stub {
            self.link.run_patient(ops, self.timeout).await?
        } else {
            self.link.run(ops, self.timeout).await?
        };
        match results.first() {
            Some(OpResult::Monitor(text)) => parse_document(text),
            _ => Err(ApiError::internal("no monitor answer")),
        }
    }

    /// Whether a stub failure lets QEMU answer instead.
    fn falls_back(&self, choice: SourceChoice, error: &ApiError) -> bool {
        choice == SourceChoice::Auto
            && self.qmp.configured()
            && matches!(
                error.code.as_str(),
                "not_connected"
                    | "timeout"
                    | "protocol_error"
                    | "stub_refused"
                    | "vm_paused"
                    | "unresponsive"
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

    /// CR3 and HIGH_MEMORY as QEMU sees them: HIGH_MEMORY as the kernel published it
    /// in its descriptor, else the RAM size (rounded down to a page), which bounds the
    /// reads all the same.
    async fn qemu_machine(&self) -> Result<(Frame, u32), ApiError> {
        let mut s = self.qmp.session().await?;
        let cr3 = s.cr3().await?;
        let ram = s.ram_size().await?;
        let ram = u32::try_from(ram.min(mm::addr::MAX_HIGH_MEMORY as u64))
            .unwrap_or(mm::addr::MAX_HIGH_MEMORY);
        // Never beyond the RAM QEMU has, whatever the descriptor says.
        let high = match s.published_high_memory().await? {
            Some(h) if h > LOW_MEM && h <= ram => h,
            _ => ram,
        };
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
    // The page's assets hold no kernel data (see web.rs); /health tells only "up".
    let path = request.uri().path();
    if path != "/health" && !crate::web::is_page_path(path) {
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

#[utoipa::path(get, path = "/api/v1/status", tag = "kernel", params(PrettyQuery),
    responses((status = 200, description = "link and machine state", body = Status), (status = 400, body = ErrorBody)))]
async fn status(State(app): Shared, RawQuery(q): RawQuery) -> Result<Reply, ApiError> {
    let pretty = Params::parse(q.as_deref(), &[])?.pretty()?;
    // QEMU first: a paused VM is said at once, and its stub is not asked.
    let vm = app.link.vm_state().await;
    let link = app.link.status();
    let mut source = None;
    let (mut cr3, mut high) = {
        let cache = app.cache().await;
        (cache.cr3, cache.high_memory)
    };
    let live = live_status(&app).await;
    if let Some((dir, h)) = live.1 {
        (cr3, high) = (Some(dir), Some(h));
        source = Some("live".to_string());
    } else if cr3.is_some() {
        source = Some("stub".to_string());
    } else if link.connected {
        let ops = vec![
            Op::Monitor("showmem --json".into()),
            Op::Monitor("dumppgd --range 0x0-0x1000 --json".into()),
        ];
        if let Ok(results) = app.link.run(ops, app.timeout).await {
            let text = |i: usize| match results.get(i) {
                Some(OpResult::Monitor(t)) => Some(t.as_str()),
                _ => None,
            };
            high = text(0)
                .and_then(|t| parse_document::<ShowMemDoc<'static>>(t).ok())
                .map(|d| d.high_memory.0);
            cr3 = text(1)
                .and_then(|t| parse_document::<DumpPgdDoc<'static>>(t).ok())
                .map(|d| d.pg_dir.0);
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
    // The link's state after the queries above (they may have found the stub unresponsive).
    let link = app.link.status();
    let kernel = if !link.connected {
        "unknown"
    } else if vm.as_ref().is_some_and(|v| !v.running) {
        "paused"
    } else if link.stopped_by_gdb {
        "stopped"
    } else if !link.stub_responsive {
        "unresponsive"
    } else {
        "running"
    };
    let status = Status {
        connected: link.connected,
        kernel: kernel.into(),
        vm: vm.map(|v| v.status),
        gdb_attached: link.gdb_attached,
        stub_responsive: link.stub_responsive,
        cr3: cr3.map(hex),
        high_memory: high.map(hex),
        memory_bytes: high.map(u64::from),
        source,
        connects: link.connects,
        qmp: app.qmp.configured(),
        allow_write: app.allow_write,
        gdb_stop: link
            .gdb_stop
            .filter(|_| link.stopped_by_gdb)
            .map(|stop| GdbStop {
                signal: stop.signal,
                thread: stop.thread,
                pid: stop.thread.and_then(|t| t.checked_sub(1)),
                eip: stop.eip.map(hex),
                function: stop
                    .eip
                    .and_then(|eip| app.functions.as_ref()?.describe(eip)),
            }),
        gdb_reads_from_ram: link.reads_from_ram,
        live: live.0,
        fault_stream: FaultStreamStatus {
            from: if app.live.is_some() { "ring" } else { "stub" }.into(),
            last_seq: app.feed.last_seq(),
            lost: app.feed.lost(),
        },
    };
    Ok(Reply::new(&status, pretty))
}

/// The live source's state for `status`, and the directory and HIGH_MEMORY it publishes.
async fn live_status(app: &App) -> (Option<LiveStatus>, Option<(u32, u32)>) {
    let Some(live) = &app.live else {
        return (None, None);
    };
    let mut st = LiveStatus {
        ram: live.path().display().to_string(),
        usable: false,
        error: None,
        found_by: None,
        descriptor: None,
        build_id: None,
        build_id_checked: false,
        boot_id: None,
        boot_id_checked: false,
        seq: None,
        stopped: None,
        stops: None,
    };
    match app.live_located().await {
        Ok(l) => {
            let d = l.descriptor();
            let (stopped, stops) = d.stopped();
            st.usable = true;
            st.found_by = Some(l.found_by);
            st.descriptor = Some(hex(l.addr));
            st.build_id = Some(crate::live::descriptor::hex_bytes(l.header.build_id()));
            st.build_id_checked = l.build_id_checked;
            st.boot_id = Some(format!("{:#018x}", l.header.boot_id));
            st.boot_id_checked = l.boot_checked();
            st.seq = Some(d.seq_now());
            st.stopped = Some(stopped);
            st.stops = Some(stops);
            (Some(st), Some((l.layout.pg_dir, l.layout.high_memory)))
        }
        Err(u) => {
            let e = ApiError::from(u);
            st.error = Some(crate::error::ErrorDetail {
                code: e.code.clone(),
                message: e.message.clone(),
            });
            (Some(st), None)
        }
    }
}

/// `?pretty`: the JSON indented (every endpoint takes it).
#[derive(Deserialize, IntoParams, Default)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // documents the parameter; params::Params reads it
pub struct PrettyQuery {
    /// Indent the JSON (`?pretty`, `?pretty=true`).
    pretty: Option<bool>,
}

/// Returns from the handler with the live source's answer when it gives one: `$query`
/// is kernel/report's query over the snapshot `$snap` (a `Result`), whose document is the
/// answer.
macro_rules! answer_live {
    ($app:expr, $choice:expr, $parts:expr, $pretty:expr, |$snap:ident| $query:expr) => {
        let live = try_live(&$app, $choice, $parts, |$snap| {
            let q = $query?;
            Ok(Reply::new(
                &Answer::live(q.document(), &$snap.moment),
                $pretty,
            ))
        });
        if let Some(answer) = live.await {
            return answer;
        }
    };
}

/// A monitor command with no arguments through the stub, as an answer (after the live
/// source, which `answer_live!` asked). QEMU's memory alone cannot answer these: they
/// need the task table or `mem_map`.
async fn stub_answer<D: DeserializeOwned + Serialize>(
    app: &App,
    choice: SourceChoice,
    pretty: bool,
    line: &str,
) -> Result<Reply, ApiError> {
    if choice == SourceChoice::Qemu {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "needs_kernel_data",
            format!("`{line}` needs the kernel's own data (source=live or stub), not QEMU's memory alone"),
        ));
    }
    let doc: D = app.monitor(line).await?;
    Ok(Reply::new(&Answer::new(doc, Source::Stub), pretty))
}

/// The `source` and `pretty` of an endpoint without other parameters.
fn source_and_pretty(q: Option<String>) -> Result<(SourceChoice, bool), ApiError> {
    let params = Params::parse(q.as_deref(), &["source"])?;
    Ok((SourceChoice::of(&params)?, params.pretty()?))
}

/// What `checkmm` reads besides the paging state, from the snapshot's task table.
fn live_checkmm(snap: &crate::live::Snapshot, json_pretty: bool) -> Result<Reply, ApiError> {
    live_checkmm_with(snap, |doc| {
        Reply::new(&Answer::live(doc, &snap.moment), json_pretty)
    })
}

/// `checkmm` over a live snapshot, its document given to `f` (the answer, or the
/// recorder's copy for the web view).
pub fn live_checkmm_with<R>(
    snap: &crate::live::Snapshot,
    f: impl FnOnce(CheckMmDoc<'_>) -> R,
) -> Result<R, ApiError> {
    let (live_slots, pages) = snap.check_input_parts();
    let input = mm::CheckInput {
        live_slots,
        kernel_refs: &pages,
    };
    let mut scratch = vec![0u16; mm::check::SCRATCH_LEN];
    let q = report::CheckMm::new(snap, &input, &mut scratch).map_err(monitor_refusal)?;
    Ok(f(q.document()))
}

#[utoipa::path(get, path = "/api/v1/tasks", tag = "kernel", params(SourceQuery),
    responses((status = 200, body = TasksAnswer), (status = 400, body = ErrorBody), (status = 502, body = ErrorBody), (status = 503, body = ErrorBody), (status = 504, body = ErrorBody)))]
async fn tasks(State(app): Shared, RawQuery(q): RawQuery) -> Result<Reply, ApiError> {
    let (choice, pretty) = source_and_pretty(q)?;
    answer_live!(app, choice, Parts::tables(Tables::All), pretty, |snap| {
        Ok::<_, ApiError>(report::Tasks::new(snap, snap))
    });
    stub_answer::<TasksDoc<'static>>(&app, choice, pretty, "tasks --json").await
}

#[utoipa::path(get, path = "/api/v1/checkmm", tag = "kernel", params(SourceQuery),
    responses((status = 200, body = CheckMmAnswer), (status = 400, body = ErrorBody), (status = 502, body = ErrorBody), (status = 503, body = ErrorBody), (status = 504, body = ErrorBody)))]
async fn checkmm(State(app): Shared, RawQuery(q): RawQuery) -> Result<Reply, ApiError> {
    let (choice, pretty) = source_and_pretty(q)?;
    let live = try_live(&app, choice, Parts::tables(Tables::All), |snap| {
        live_checkmm(snap, pretty)
    });
    if let Some(answer) = live.await {
        return answer;
    }
    stub_answer::<CheckMmDoc<'static>>(&app, choice, pretty, "checkmm --json").await
}

#[utoipa::path(get, path = "/api/v1/showmem", tag = "kernel", params(SourceQuery),
    responses((status = 200, body = ShowMemAnswer), (status = 400, body = ErrorBody), (status = 502, body = ErrorBody), (status = 503, body = ErrorBody), (status = 504, body = ErrorBody)))]
async fn showmem(State(app): Shared, RawQuery(q): RawQuery) -> Result<Reply, ApiError> {
    let (choice, pretty) = source_and_pretty(q)?;
    answer_live!(app, choice, Parts::tables(Tables::All), pretty, |snap| {
        report::ShowMem::new(snap, snap).map_err(monitor_refusal)
    });
    stub_answer::<ShowMemDoc<'static>>(&app, choice, pretty, "showmem --json").await
}

#[utoipa::path(get, path = "/api/v1/faults", tag = "kernel", params(SourceQuery),
    responses((status = 200, body = FaultsAnswer), (status = 400, body = ErrorBody), (status = 502, body = ErrorBody), (status = 503, body = ErrorBody), (status = 504, body = ErrorBody)))]
async fn faults(State(app): Shared, RawQuery(q): RawQuery) -> Result<Reply, ApiError> {
    let (choice, pretty) = source_and_pretty(q)?;
    let parts = Parts {
        faults: Some(introspect::FAULT_LOG_LEN),
        ..Parts::tables(Tables::None)
    };
    answer_live!(app, choice, parts, pretty, |snap| {
        report::Faults::new(snap).map_err(monitor_refusal)
    });
    stub_answer::<FaultsDoc<'static>>(&app, choice, pretty, "faults --json").await
}

/// Filters of the page directory (those of `dumppgd`). Numbers are decimal or `0x` hex.
#[derive(Deserialize, IntoParams, Default)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // documents the parameters; params::Params reads them
pub struct PgdQuery {
    /// Only that task's 16 entries (pid; 0 is the kernel).
    task: Option<String>,
    /// Entries meeting [start, end): linear addresses; both or neither.
    start: Option<String>,
    /// Exclusive end, up to 0x100000000.
    end: Option<String>,
    /// true: user entries (US set); false: kernel entries.
    user: Option<bool>,
    /// true: writable entries; false: read-only.
    writable: Option<bool>,
    /// One entry per line, no merging (the JSON entries are never merged anyway).
    all: Option<bool>,
    /// `auto` (default: the RAM file, else the stub, else QEMU), `live`, `stub` or `qemu`.
    source: Option<SourceChoice>,
    /// Indent the JSON.
    pretty: Option<bool>,
}

/// Fetches the page directory and, for each index `tables` selects, its page table.
async fn fetch_tables(
    app: &App,
    dir: Frame,
    high: u32,
    tables: impl Fn(usize) -> bool,
) -> Result<Pages, ApiError> {
    let mut s = app.qmp.session().await?;
    let mut pages = Pages::default();
    s.fetch_page(&mut pages, dir).await?;
    let wanted: Vec<Frame> = (0..1024)
        .filter(|&i| tables(i))
        .map(|i| Entry(pages.read_u32(dir.addr().offset(i as u32 * 4))))
        .filter(|e| e.is_present() && e.frame().as_u32() < high)
        .map(|e| e.frame())
        .collect();
    let bar = app.progress_bar(wanted.len() as u64, "page tables from QEMU");
    for t in wanted {
        s.fetch_page(&mut pages, t).await?;
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(pages)
}

#[utoipa::path(get, path = "/api/v1/page-directory", tag = "kernel", params(PgdQuery),
    responses((status = 200, body = PageDirectoryAnswer), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 502, body = ErrorBody), (status = 503, body = ErrorBody), (status = 504, body = ErrorBody)))]
async fn page_directory(State(app): Shared, RawQuery(q): RawQuery) -> Result<Reply, ApiError> {
    let params = Params::parse(
        q.as_deref(),
        &["task", "start", "end", "user", "writable", "all", "source"],
    )?;
    let pretty = params.pretty()?;
    let task = params.u32("task")?;
    let range = match (params.number("start")?, params.number("end")?) {
        (None, None) => None,
        (Some(s), Some(e)) => {
            if s >= e || e > 1 << 32 {
                return Err(ApiError::bad_request("need start < end <= 0x100000000"));
            }
            Some((s, e))
        }
        _ => return Err(ApiError::bad_request("give both start and end, or neither")),
    };
    let filter = report::PgdFilter {
        task,
        range: range.map(|(s, e)| report::LinearRange {
            start: s as u32,
            end: e,
        }),
        user: params.boolean("user")?,
        writable: params.boolean("writable")?,
        all: params.boolean("all")? == Some(true),
    };
    let choice = SourceChoice::of(&params)?;
    answer_live!(app, choice, Parts::tables(Tables::All), pretty, |snap| {
        report::DumpPgd::new(snap, snap, &filter).map_err(monitor_refusal)
    });
    let mut because = None;
    if choice.tries_stub() {
        let mut line = String::from("dumppgd --json");
        if let Some(t) = task {
            line += &format!(" --task {t}");
        }
        if let Some((s, e)) = range {
            line += &format!(" --range {s:#x}-{e:#x}");
        }
        match filter.user {
            Some(true) => line += " --user",
            Some(false) => line += " --kernel",
            None => {}
        }
        match filter.writable {
            Some(true) => line += " --rw",
            Some(false) => line += " --ro",
            None => {}
        }
        if filter.all {
            line += " --all";
        }
        match app.monitor_for::<DumpPgdDoc<'static>>(choice, &line).await {
            Ok(doc) => return Ok(Reply::new(&Answer::new(doc, Source::Stub), pretty)),
            Err(e) if !app.falls_back(choice, &e) => return Err(e),
            Err(e) => {
                tracing::info!("page directory from QEMU: the stub failed ({})", e.message);
                because = KernelState::of_error(&e);
            }
        }
    }
    if task.is_some_and(|t| t != 0) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "needs_stub",
            "the task filter needs the kernel's task table (the stub)",
        ));
    }
    let (dir, high) = app.qemu_machine().await?;
    let pages = fetch_tables(&app, dir, high, |_| true).await?;
    let view = QemuView {
        pages: &pages,
        pg_dir: dir,
        high_memory: high,
    };
    let q = report::DumpPgd::new(&view, &KernelOnly, &filter).map_err(monitor_refusal)?;
    Ok(Reply::new(
        &Answer::new(q.document(), Source::Qemu).noting(because),
        pretty,
    ))
}

/// A refusal of the kernel's own code, computed here (post-mortem).
fn monitor_refusal(e: report::MonitorError) -> ApiError {
    use report::Failure;
    ApiError::from_monitor(e.kind(), &e.to_string())
}

/// Where an answer may come from.
#[derive(Deserialize, IntoParams, Default)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // documents the parameters; params::Params reads them
pub struct SourceQuery {
    /// `auto` (default: the RAM file, else the stub, else QEMU), `live`, `stub` or `qemu`.
    source: Option<SourceChoice>,
    /// Indent the JSON.
    pretty: Option<bool>,
}

#[utoipa::path(get, path = "/api/v1/page-tables/{index}", tag = "kernel",
    params(("index" = String, Path, description = "page-directory index, 0..1023 (decimal or 0x hex)"), SourceQuery),
    responses((status = 200, body = PageTableAnswer), (status = 400, body = ErrorBody),
              (status = 502, body = ErrorBody), (status = 503, body = ErrorBody), (status = 504, body = ErrorBody)))]
async fn page_table(
    State(app): Shared,
    p: Result<Path<String>, PathRejection>,
    RawQuery(q): RawQuery,
) -> Result<Reply, ApiError> {
    let index = path_number(p, "index")?;
    let params = Params::parse(q.as_deref(), &["source"])?;
    let pretty = params.pretty()?;
    let choice = SourceChoice::of(&params)?;
    if index >= 1024 {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "out_of_range",
            "index must be 0..1023",
        ));
    }
    answer_live!(
        app,
        choice,
        Parts::tables(Tables::One(index as usize)),
        pretty,
        |snap| { Ok::<_, ApiError>(report::DumpPt::new(snap, snap, index as usize)) }
    );
    let mut because = None;
    if choice.tries_stub() {
        match app
            .monitor_for::<DumpPtDoc<'static>>(choice, &format!("dumppt {index} --json"))
            .await
        {
            Ok(doc) => return Ok(Reply::new(&Answer::new(doc, Source::Stub), pretty)),
            Err(e) if !app.falls_back(choice, &e) => return Err(e),
            Err(e) => because = KernelState::of_error(&e),
        }
    }
    let (dir, high) = app.qemu_machine().await?;
    let pages = fetch_tables(&app, dir, high, |i| i == index as usize).await?;
    let view = QemuView {
        pages: &pages,
        pg_dir: dir,
        high_memory: high,
    };
    let q = report::DumpPt::new(&view, &KernelOnly, index as usize);
    Ok(Reply::new(
        &Answer::new(q.document(), Source::Qemu).noting(because),
        pretty,
    ))
}

/// A walk's arguments. Numbers are decimal or `0x` hex.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // documents the parameters; params::Params reads them
pub struct WalkQuery {
    /// The linear address; with `task`, an offset in its segment (< 64 MiB).
    addr: String,
    /// Walk in this task's segment (pid).
    task: Option<String>,
    /// `qemu`: also ask QEMU (gva2gpa) and say whether it agrees.
    verify: Option<String>,
    /// `auto` (default: the RAM file, else the stub, else QEMU), `live`, `stub` or `qemu`.
    source: Option<SourceChoice>,
    /// Indent the JSON.
    pretty: Option<bool>,
}

/// A walk answer: the document, QEMU's check when asked, the envelope.
#[derive(Serialize)]
struct WalkReply {
    #[serde(flatten)]
    document: WalkDoc,
    #[serde(flatten)]
    check: WalkCheck,
    #[serde(flatten)]
    envelope: Envelope,
}

#[utoipa::path(get, path = "/api/v1/walk", tag = "kernel", params(WalkQuery),
    responses((status = 200, body = WalkAnswer), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 502, body = ErrorBody), (status = 503, body = ErrorBody), (status = 504, body = ErrorBody)))]
async fn walk(State(app): Shared, RawQuery(q): RawQuery) -> Result<Reply, ApiError> {
    let params = Params::parse(q.as_deref(), &["addr", "task", "verify", "source"])?;
    let pretty = params.pretty()?;
    let addr = params
        .number("addr")?
        .ok_or_else(|| ApiError::bad_request("addr: missing (the linear address to walk)"))?;
    if addr >= 1 << 32 {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "out_of_range",
            "addr must be below 0x100000000",
        ));
    }
    let task = params.u32("task")?;
    if task.is_some() && addr >= TASK_SIZE as u64 {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "out_of_range",
            "with task, addr is an offset below 64 MiB",
        ));
    }
    let verify = match params.text("verify") {
        None | Some("") | Some("none") => false,
        Some("qemu") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "verify: '{other}' is not 'qemu'"
            )))
        }
    };
    let choice = SourceChoice::of(&params)?;
    let mut answer = None;
    let tables = match task {
        Some(pid) => Tables::Task {
            pid,
            offset: addr as u32,
        },
        None => Tables::One(LinearAddr::new(addr as u32).dir_index()),
    };
    let live = try_live(&app, choice, Parts::tables(tables), |snap| {
        let doc = report::walk(snap, snap, addr as u32, task).map_err(monitor_refusal)?;
        Ok((doc, Envelope::live(&snap.moment)))
    });
    if let Some(a) = live.await {
        answer = Some(a?);
    }
    let mut because = None;
    if answer.is_none() && choice.tries_stub() {
        let mut line = format!("walk {addr:#x} --json");
        if let Some(t) = task {
            line += &format!(" --task {t}");
        }
        match app.monitor_for::<WalkDoc>(choice, &line).await {
            Ok(d) => answer = Some((d, Envelope::of(Source::Stub))),
            Err(e) if !app.falls_back(choice, &e) => return Err(e),
            Err(e) => because = KernelState::of_error(&e),
        }
    }
    let (document, envelope) = match answer {
        Some(a) => a,
        None => {
            if task.is_some_and(|t| t != 0) {
                return Err(ApiError::new(StatusCode::BAD_REQUEST, "needs_stub", "a task's walk needs the kernel's task table (the stub); give the linear address"));
            }
            let (dir, high) = app.qemu_machine().await?;
            let linear = LinearAddr::new(addr as u32);
            let pages = fetch_tables(&app, dir, high, |i| i == linear.dir_index()).await?;
            let view = QemuView {
                pages: &pages,
                pg_dir: dir,
                high_memory: high,
            };
            let doc =
                report::walk(&view, &KernelOnly, addr as u32, task).map_err(monitor_refusal)?;
            (
                doc,
                Envelope {
                    kernel: because,
                    ..Envelope::of(Source::Qemu)
                },
            )
        }
    };
    let mut check = WalkCheck {
        qemu: None,
        agree: None,
    };
    if verify {
        let mut s = app.qmp.session().await?;
        let qemu = s.gva2gpa(document.linear.0).await?;
        check.qemu = Some(QemuTranslation {
            physical: qemu.map(hex),
        });
        check.agree = Some(qemu == document.physical.map(|p| p.0));
    }
    let reply = WalkReply {
        document,
        check,
        envelope,
    };
    Ok(Reply::new(&reply, pretty))
}

/// A frame range of mem_map. Numbers are decimal or `0x` hex.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // documents the parameters; params::Params reads them
pub struct MemMapQuery {
    /// First physical address (rounded down to its frame); default LOW_MEM (0x100000).
    start: Option<String>,
    /// End, exclusive; default HIGH_MEMORY. At most 16128 frames.
    end: Option<String>,
    /// `auto` (default: the RAM file, else the stub, else QEMU), `live`, `stub` or `qemu`.
    source: Option<SourceChoice>,
    /// Indent the JSON.
    pretty: Option<bool>,
}

#[utoipa::path(get, path = "/api/v1/mem-map", tag = "kernel", params(MemMapQuery),
    responses((status = 200, body = MemMapAnswer), (status = 400, body = ErrorBody),
              (status = 502, body = ErrorBody), (status = 503, body = ErrorBody), (status = 504, body = ErrorBody)))]
async fn mem_map(State(app): Shared, RawQuery(q): RawQuery) -> Result<Reply, ApiError> {
    let params = Params::parse(q.as_deref(), &["start", "end", "source"])?;
    let pretty = params.pretty()?;
    let start = params.number("start")?;
    let end = params.number("end")?;
    let choice = SourceChoice::of(&params)?;
    let live = try_live(&app, choice, Parts::tables(Tables::None), |snap| {
        let l = &snap.layout;
        let (first, last) = frame_range(start, end, l.high_memory)?;
        let counts = snap.mem_map_counts().get(first..last).unwrap_or_default();
        let doc = mem_map_document(
            counts,
            first,
            l.high_memory,
            Some(l.start_mem),
            LOCATED_LIVE,
        );
        Ok(Reply::new(&Answer::live(doc, &snap.moment), pretty))
    });
    if let Some(answer) = live.await {
        return answer;
    }
    let paging = paging_static(&app)?;
    let mut because = None;
    if choice.tries_stub() {
        match mem_map_stub(&app, choice, paging, start, end).await {
            Ok(doc) => return Ok(Reply::new(&Answer::new(doc, Source::Stub), pretty)),
            Err(e) if !app.falls_back(choice, &e) => return Err(e),
            Err(e) => because = KernelState::of_error(&e),
        }
    }
    let doc = mem_map_qemu(&app, paging, start, end).await?;
    Ok(Reply::new(
        &Answer::new(doc, Source::Qemu).noting(because),
        pretty,
    ))
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

/// How the counts were found: named by the descriptor (live), in the PAGING static
/// checked against showmem (stub), or by shape alone (post-mortem).
const LOCATED_LIVE: &str = "named by the kernel's descriptor (live)";
const LOCATED_CHECKED: &str = "checked against showmem";
const LOCATED_BY_SHAPE: &str = "by shape only (post-mortem)";

fn mem_map_document(
    counts: &[u8],
    first: usize,
    high: u32,
    start_mem: Option<u32>,
    located: &'static str,
) -> MemMapDoc {
    let free = counts.iter().filter(|&&c| c == 0).count();
    MemMapDoc {
        command: "mem_map",
        schema: report::SCHEMA,
        start: hex(LOW_MEM + first as u32 * PAGE_SIZE),
        end: hex(LOW_MEM + (first + counts.len()) as u32 * PAGE_SIZE),
        high_memory: hex(high),
        start_mem: start_mem.map(hex),
        frames: counts.len(),
        free,
        used: counts.len() - free,
        counts: counts.to_vec(),
        located,
    }
}

/// The kernel ELF's PAGING static (where mem_map's counts live).
pub(crate) fn paging_static(app: &App) -> Result<PagingStatic, ApiError> {
    let elf = app.kernel_elf.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no_symbols",
            "mem_map needs the kernel ELF (--kernel PATH)",
        )
    })?;
    symbols::find_paging_static(elf)
        .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "no_symbols", e.to_string()))
}

/// The offset of mem_map's counts already located for this connection and this ELF.
async fn known_counts_offset(app: &App, paging: PagingStatic) -> Option<usize> {
    app.cache()
        .await
        .counts
        .filter(|(p, _)| *p == paging)
        .map(|(_, o)| o)
}

/// The offset of mem_map's counts in the PAGING static, located once per connection
/// (checked against showmem, in one stop).
pub(crate) async fn counts_offset(app: &App, paging: PagingStatic) -> Result<usize, ApiError> {
    if let Some(o) = known_counts_offset(app, paging).await {
        return Ok(o);
    }
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
    let hints = hints_from(&parse_document::<ShowMemDoc<'static>>(text)?);
    let offset = symbols::locate_counts(blob, &hints).ok_or_else(|| {
        ApiError::new(StatusCode::BAD_GATEWAY, "mem_map_not_found", "mem_map's counts were not found in kernel::paging::PAGING (does --kernel match the running kernel?)")
    })?;
    app.cache().await.counts = Some((paging, offset));
    Ok(offset)
}

async fn mem_map_stub(
    app: &App,
    choice: SourceChoice,
    paging: PagingStatic,
    start: Option<u64>,
    end: Option<u64>,
) -> Result<MemMapDoc, ApiError> {
    // A parsed document is not Send (its lists may be lazy): keep only its values.
    let (high, start_mem) = {
        let showmem: ShowMemDoc<'static> = app.monitor_for(choice, "showmem --json").await?;
        (showmem.high_memory.0, showmem.start_mem.0)
    };
    let (first, last) = frame_range(start, end, high)?;
    let offset = counts_offset(app, paging).await?;
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
        LOCATED_CHECKED,
    ))
}

/// What showmem says about mem_map, to find its counts in kernel memory.
fn hints_from(showmem: &ShowMemDoc<'_>) -> Hints {
    Hints {
        high_memory: showmem.high_memory.0,
        start_mem: showmem.start_mem.0,
        free: showmem.free,
        shared: showmem
            .shared
            .to_vec()
            .into_iter()
            .map(|s| (s.frame.0, s.count))
            .collect(),
    }
}

async fn mem_map_qemu(
    app: &App,
    paging: PagingStatic,
    start: Option<u64>,
    end: Option<u64>,
) -> Result<MemMapDoc, ApiError> {
    let (_, ram) = app.qemu_machine().await?;
    // The kernel caps HIGH_MEMORY at 64 MiB and QEMU's RAM size is close to HIGH_MEMORY
    // (the firmware keeps the top 128 KiB); the shape search needs only an upper bound.
    let known = known_counts_offset(app, paging).await;
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
        if verified.is_none() {
            LOCATED_CHECKED
        } else {
            LOCATED_BY_SHAPE
        },
    ))
}

#[utoipa::path(get, path = "/api/v1/fail", tag = "fault injection", params(SourceQuery),
    responses((status = 200, body = FailAnswer), (status = 400, body = ErrorBody), (status = 502, body = ErrorBody), (status = 503, body = ErrorBody), (status = 504, body = ErrorBody)))]
async fn fail_get(State(app): Shared, RawQuery(q): RawQuery) -> Result<Reply, ApiError> {
    let (choice, pretty) = source_and_pretty(q)?;
    let parts = Parts {
        inject: true,
        ..Parts::tables(Tables::None)
    };
    answer_live!(app, choice, parts, pretty, |snap| {
        snap.fail_state()
            .map(|state| report::Fail::new(state, snap, None))
            .ok_or_else(|| ApiError::internal("the snapshot has no failure-injection state"))
    });
    stub_answer::<FailDoc<'static>>(&app, choice, pretty, "fail --json").await
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

#[utoipa::path(post, path = "/api/v1/fail", tag = "fault injection", request_body = FailChange, params(PrettyQuery),
    responses((status = 200, body = FailAnswer), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 413, body = ErrorBody), (status = 502, body = ErrorBody), (status = 503, body = ErrorBody), (status = 504, body = ErrorBody)))]
async fn fail_post(
    State(app): Shared,
    RawQuery(q): RawQuery,
    b: Result<Json<FailChange>, JsonRejection>,
) -> Result<Reply, ApiError> {
    require_write(&app)?;
    let params = Params::parse(q.as_deref(), &[])?;
    let change = body(b)?;
    let line = fail_command(&change)?;
    let doc: FailDoc<'static> = app.monitor(&line).await?;
    Ok(Reply::new(
        &Answer::new(doc, Source::Stub),
        params.pretty()?,
    ))
}

#[utoipa::path(get, path = "/api/v1/failnth/{pid}", tag = "fault injection",
    params(("pid" = String, Path, description = "the task (decimal or 0x hex)"), PrettyQuery),
    responses((status = 200, body = FailNthAnswer), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 502, body = ErrorBody), (status = 503, body = ErrorBody), (status = 504, body = ErrorBody)))]
async fn failnth_get(
    State(app): Shared,
    p: Result<Path<String>, PathRejection>,
    RawQuery(q): RawQuery,
) -> Result<Reply, ApiError> {
    let pid = path_number(p, "pid")?;
    let params = Params::parse(q.as_deref(), &[])?;
    let doc: FailNthDoc = app.monitor(&format!("failnth {pid} --json")).await?;
    Ok(Reply::new(
        &Answer::new(doc, Source::Stub),
        params.pretty()?,
    ))
}

/// fail-nth for a task: its Nth eligible allocation fails (0 cancels).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FailNth {
    n: u32,
}

#[utoipa::path(post, path = "/api/v1/failnth/{pid}", tag = "fault injection",
    params(("pid" = String, Path, description = "the task (decimal or 0x hex)"), PrettyQuery), request_body = FailNth,
    responses((status = 200, body = FailNthAnswer), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 413, body = ErrorBody), (status = 502, body = ErrorBody), (status = 503, body = ErrorBody), (status = 504, body = ErrorBody)))]
async fn failnth_post(
    State(app): Shared,
    p: Result<Path<String>, PathRejection>,
    RawQuery(q): RawQuery,
    b: Result<Json<FailNth>, JsonRejection>,
) -> Result<Reply, ApiError> {
    require_write(&app)?;
    let pid = path_number(p, "pid")?;
    let params = Params::parse(q.as_deref(), &[])?;
    let n = body(b)?.n;
    let doc: FailNthDoc = app.monitor(&format!("failnth {pid} {n} --json")).await?;
    Ok(Reply::new(
        &Answer::new(doc, Source::Stub),
        params.pretty()?,
    ))
}

/// Resuming the stream.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // documents the parameter; params::Params reads it
pub struct StreamQuery {
    /// Replay remembered faults with seq above this (as the Last-Event-ID header does);
    /// decimal or 0x hex.
    since: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/faults/stream", tag = "kernel", params(StreamQuery),
    responses((status = 200, description = "Server-Sent Events: `fault` events (id = seq, data = one fault record as in /faults) and `gap` events", content_type = "text/event-stream", body = String),
              (status = 400, body = ErrorBody)))]
async fn fault_stream(
    State(app): Shared,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    let params = Params::parse(q.as_deref(), &["since"])?;
    let header_id = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.trim()
                .parse::<u64>()
                .map_err(|_| ApiError::bad_request("Last-Event-ID must be a fault seq"))
        })
        .transpose()?;
    let since = header_id.or(params.number("since")?);
    let mut rx = app.feed.subscribe();
    let replay = since.map(|s| app.feed.since(s)).unwrap_or_default();
    let resuming = since.is_some();
    let mut sent = since.unwrap_or_else(|| app.feed.last_seq());
    let stream = async_stream(move |tx| async move {
        for event in replay {
            let event = match event {
                FeedEvent::Fault { seq, record, .. } => {
                    sent = sent.max(seq);
                    fault_event(seq, &record)
                }
                FeedEvent::Gap { after, upto } => {
                    sent = sent.max(upto - 1);
                    gap_event(after, upto)
                }
                FeedEvent::Boot => continue,
            };
            if tx.send(event).await.is_err() {
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
                Ok(FeedEvent::Gap { after, upto }) if upto > sent + 1 => {
                    let from = after.max(sent);
                    sent = upto - 1;
                    gap_event(from, upto)
                }
                Ok(FeedEvent::Gap { .. }) => continue,
                Ok(FeedEvent::Boot) => {
                    // Sequence numbers start again: everything new is new.
                    sent = 0;
                    SseEvent::default().event("boot").data("{}")
                }
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

fn gap_event(after: u64, upto: u64) -> SseEvent {
    SseEvent::default()
        .event("gap")
        .data(json!({"after": after, "upto": upto}).to_string())
}

fn fault_event(seq: u64, record: &report::tasks::FaultDoc) -> SseEvent {
    SseEvent::default()
        .event("fault")
        .id(seq.to_string())
        .data(serde_json::to_string(record).unwrap_or_default())
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
    components(schemas(
        ErrorBody,
        SourceChoice,
        Envelope,
        Source,
        WalkCheck,
        QemuTranslation,
        MemMapDoc
    ))
)]
struct ApiDoc;

/// The OpenAPI document: utoipa's paths and the inspector's own schemas, with the
/// monitor documents' schemas from kernel/report (the JSON Schema of
/// kernel/docs/monitor.schema.json) added to its components.
pub fn openapi_document(api: &utoipa::openapi::OpenApi) -> Value {
    let mut doc = serde_json::to_value(api).unwrap_or_default();
    let monitor = report::schema::monitor_schema();
    let mut defs = monitor["$defs"].clone();
    rewrite_refs(&mut defs);
    if let (Some(schemas), Some(defs)) = (
        doc.pointer_mut("/components/schemas")
            .and_then(Value::as_object_mut),
        defs.as_object(),
    ) {
        for (name, schema) in defs {
            schemas
                .entry(name.clone())
                .or_insert_with(|| schema.clone());
        }
    }
    doc
}

/// `#/$defs/X` (JSON Schema) becomes `#/components/schemas/X` (OpenAPI 3.1).
fn rewrite_refs(value: &mut Value) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(r)) = map.get_mut("$ref") {
                if let Some(name) = r.strip_prefix("#/$defs/") {
                    *r = format!("#/components/schemas/{name}");
                }
            }
            map.values_mut().for_each(rewrite_refs);
        }
        Value::Array(items) => items.iter_mut().for_each(rewrite_refs),
        _ => {}
    }
}

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
        .routes(routes!(crate::recorder::list))
        .routes(routes!(crate::recorder::moment))
        .routes(routes!(crate::recorder::diff))
        .routes(routes!(crate::recorder::live))
        .split_for_parts();
    let api = Arc::new(openapi_document(&api));
    let monitor_schema = Arc::new(report::schema::monitor_schema());
    router
        .merge(crate::web::routes())
        .route(
            "/api/v1/openapi.json",
            axum::routing::get(move || {
                let api = api.clone();
                async move { Json(api.as_ref().clone()) }
            }),
        )
        .route(
            "/api/v1/schema.json",
            axum::routing::get(move || {
                let schema = monitor_schema.clone();
                async move { Json(schema.as_ref().clone()) }
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
    fn the_openapi_document_types_every_answer_down_to_its_fields() {
        let (_, api) = OpenApiRouter::<Arc<App>>::with_openapi(ApiDoc::openapi())
            .routes(routes!(walk))
            .routes(routes!(page_directory))
            .split_for_parts();
        let doc = openapi_document(&api);
        let schemas = &doc["components"]["schemas"];
        for name in [
            "DumpPgdDoc",
            "PgdEntryDoc",
            "WalkDoc",
            "Envelope",
            "WalkCheck",
        ] {
            assert!(schemas.get(name).is_some(), "no {name} in components");
        }
        // The nested fields are typed, not free-form.
        assert_eq!(
            schemas["PgdEntryDoc"]["properties"]["raw"]["pattern"],
            "^0x[0-9a-f]{8}$"
        );
        let text = doc.to_string();
        assert!(
            !text.contains("#/$defs/"),
            "a JSON Schema reference left in the OpenAPI"
        );
        let walk = &doc["paths"]["/api/v1/walk"]["get"]["responses"]["200"];
        assert!(walk.to_string().contains("WalkAnswer"), "{walk}");
    }
}
