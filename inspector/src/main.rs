//! The inspector daemon: an RSP proxy for gdb in front of the kernel's stub, and the paging state over HTTP/JSON.

mod answer;
mod api;
mod error;
mod events;
mod functions;
mod history;
mod link;
mod memread;
// The live source's module API serves the fault stream and the recorder as well; not
// every part of it is used by the answers yet.
#[allow(dead_code)]
mod live;
mod params;
mod postmortem;
mod qemu;
mod recorder;
mod rsp;
mod security;
mod symbols;
mod web;

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, Mutex};

/// Serves the running kernel's paging state as JSON (under /api/v1) and lets gdb in
/// through its own RSP port, both over the one link to the kernel's stub on QEMU's COM1.
#[derive(Parser, Debug)]
#[command(
    name = "inspector",
    version,
    after_help = "Example: qemu-system-i386 ... -serial tcp:127.0.0.1:4320,server=on,wait=off -qmp unix:/tmp/qmp.sock,server=on,wait=off\n         inspector --target 127.0.0.1:4320 --qmp /tmp/qmp.sock\n         gdb -ex 'target remote 127.0.0.1:4321' kernel; curl http://127.0.0.1:8321/api/v1/status"
)]
struct Cli {
    /// QEMU's COM1 TCP address: the kernel's gdb stub (-serial tcp:HOST:PORT,server=on).
    #[arg(long, default_value = "127.0.0.1:4320")]
    target: String,
    /// Where gdb connects (an RSP proxy to the stub); `off` for none.
    #[arg(long, default_value = "127.0.0.1:4321")]
    gdb_listen: String,
    /// The HTTP address. Anything but loopback needs --token.
    #[arg(long, default_value = "127.0.0.1:8321")]
    listen: SocketAddr,
    /// Bearer token every request must carry (Authorization: Bearer TOKEN); /health is exempt.
    #[arg(long, env = "INSPECTOR_TOKEN")]
    token: Option<String>,
    /// More names to accept in the Host header (e.g. the machine's name when listening elsewhere).
    #[arg(long = "allow-host")]
    allow_hosts: Vec<String>,
    /// QEMU's QMP unix socket: ground truth for walks and the post-mortem source.
    #[arg(long)]
    qmp: Option<PathBuf>,
    /// The kernel ELF (for the PAGING symbol that holds mem_map).
    #[arg(long, default_value = "target/i586-unknown-linux-gnu/release/kernel")]
    kernel: PathBuf,
    /// The guest's RAM file (QEMU's memory-backend-file, share=on): answers are read from
    /// it live, without stopping the kernel (source=live, the default when given). It may
    /// appear after the daemon starts (QEMU creates it).
    #[arg(long, value_name = "FILE")]
    ram: Option<PathBuf>,
    /// Allow requests that change the kernel (fault injection).
    #[arg(long)]
    allow_write: bool,
    /// How long a query may wait for the kernel, in milliseconds.
    #[arg(long, default_value_t = 5000)]
    timeout_ms: u64,
    /// How often the fault stream polls the fault log while someone listens (milliseconds, at least 200).
    #[arg(long, default_value_t = 1000)]
    poll_ms: u64,
    /// Milliseconds between the history's snapshots while someone looks (through the
    /// stub each one stops the kernel for a few hundred milliseconds).
    #[arg(long, default_value_t = 2000)]
    history_ms: u64,
    /// Milliseconds between the history's live snapshots while someone looks (with
    /// `--ram`: copies of the RAM file, the kernel never stopped; none while nothing
    /// changes).
    #[arg(long, default_value_t = 50)]
    live_ms: u64,
    /// The history's bound in steps (the oldest are folded away first).
    #[arg(long, default_value_t = 4096)]
    history_steps: usize,
    /// The history's bound in MiB of differences.
    #[arg(long, default_value_t = 32)]
    history_mib: usize,
    /// Serve the web view from this directory instead of the copy compiled in (for
    /// working on the page: a reload shows a change without rebuilding).
    #[arg(long, value_name = "DIR")]
    web_dir: Option<PathBuf>,
    /// The largest monitor answer accepted, in bytes.
    #[arg(long, default_value_t = 8 * 1024 * 1024)]
    max_reply: usize,
}

#[derive(Debug, thiserror::Error)]
enum StartError {
    #[error("listening on {0} (not loopback) needs --token")]
    TokenNeeded(SocketAddr),
    #[error("cannot listen on {addr}: {error}")]
    Listen { addr: String, error: std::io::Error },
}

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,tower_http=warn")),
        )
        .with_writer(std::io::stderr)
        // Colour only for a terminal: a log file (scripts/run's inspector.log) gets plain text.
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let cli = Cli::parse();
    if let Err(e) = serve(cli).await {
        tracing::error!("{e}");
        std::process::exit(1);
    }
}

async fn serve(cli: Cli) -> Result<(), StartError> {
    if security::Guard::needs_token(&cli.listen) && cli.token.is_none() {
        return Err(StartError::TokenNeeded(cli.listen));
    }
    let http = TcpListener::bind(cli.listen)
        .await
        .map_err(|error| StartError::Listen {
            addr: cli.listen.to_string(),
            error,
        })?;
    let (gdb_tx, gdb_rx) = mpsc::channel(4);
    if cli.gdb_listen != "off" {
        let listener =
            TcpListener::bind(&cli.gdb_listen)
                .await
                .map_err(|error| StartError::Listen {
                    addr: cli.gdb_listen.clone(),
                    error,
                })?;
        tracing::info!("gdb: target remote {}", cli.gdb_listen);
        tokio::spawn(async move {
            loop {
                match listener.accept().await {
                    Ok((conn, peer)) => {
                        tracing::debug!(%peer, "gdb connection");
                        if gdb_tx.send(conn).await.is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        tracing::warn!("gdb accept: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        });
    }
    let timeout = Duration::from_millis(cli.timeout_ms.max(100));
    let qmp = Arc::new(qemu::Qmp::new(cli.qmp.clone(), timeout));
    let kernel_elf = cli.kernel.exists().then_some(cli.kernel.clone());
    if kernel_elf.is_none() {
        tracing::warn!(
            "no kernel ELF at {}: /api/v1/mem-map will answer 503",
            cli.kernel.display()
        );
    }
    let live = cli.ram.clone().map(|ram| {
        tracing::info!("live source: the RAM file {}", ram.display());
        Arc::new(live::Live::new(ram, kernel_elf.as_deref()))
    });
    let link = link::spawn(
        link::LinkConfig {
            target: cli.target.clone(),
            max_reply: cli.max_reply,
            queue: 64,
            qmp: qmp.configured().then(|| qmp.clone()),
            live: live.clone(),
        },
        gdb_rx,
    );
    if let Some(dir) = cli.web_dir.clone() {
        tracing::info!("web view served from {}", dir.display());
        web::serve_from(dir);
    }
    let feed = events::Feed::spawn(
        link.clone(),
        live.clone(),
        Duration::from_millis(cli.poll_ms.max(200)),
        timeout,
    );
    // Where gdb stopped the kernel is said by function name (status.gdb_stop).
    let functions = kernel_elf.as_deref().and_then(|elf| {
        functions::Functions::load(elf)
            .map_err(|e| tracing::warn!("no function names for gdb's stops: {e}"))
            .ok()
    });
    let app = Arc::new(api::App {
        live,
        link,
        qmp,
        timeout,
        allow_write: cli.allow_write,
        guard: security::Guard::new(cli.listen, cli.token.clone(), &cli.allow_hosts),
        kernel_elf,
        functions,
        feed,
        progress: std::io::stderr().is_terminal(),
        cache: Mutex::new(api::Cache::default()),
        recorder: recorder::Recorder::new(
            Duration::from_millis(cli.history_ms.max(100)),
            Duration::from_millis(cli.live_ms.max(10)),
            history::Limits {
                steps: cli.history_steps.max(1),
                bytes: cli.history_mib.max(1) << 20,
            },
        ),
    });
    tokio::spawn(app.recorder.clone().run(app.clone()));
    tracing::info!(
        "web view: http://{}/ (API: /api/v1/status, OpenAPI: /api/v1/openapi.json)",
        cli.listen
    );
    let router = api::router(app);
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let shutdown = async {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = shutdown => {}
            _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
        }
    };
    axum::serve(http, router)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|error| StartError::Listen {
            addr: cli.listen.to_string(),
            error,
        })?;
    Ok(())
}
