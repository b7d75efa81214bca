//! The one task that owns the stub's link: it proxies one gdb and runs the inspector's queries between gdb's packets.
//!
//! The kernel's stub speaks to one debugger on COM1, which QEMU serves as a TCP port (the
//! *target port*). This task holds that connection, offers gdb an RSP port of its own,
//! and takes the HTTP side's [`Job`]s from a queue. Jobs run one at a time, never in the
//! middle of a gdb request, and in one of three ways:
//!
//! - **no gdb session**: `qSupported` (any first packet stops the stub's idle session, and
//!   this one also resets a stale one), the job's packets, then `D`: the kernel runs on.
//! - **gdb has the kernel stopped**: the job's packets go between gdb's; nothing resumes.
//! - **gdb waits for a stop reply** (the kernel runs in gdb's session): 0x03, the stop
//!   reply is swallowed (gdb must not see a stop it did not ask for), the job, then `c`;
//!   gdb's own pending continue is still pending. A stop that is not our SIGINT (a
//!   breakpoint that came first) is gdb's: it is forwarded and the job runs without
//!   resuming.
//!
//! A stub that has not stopped for a job within [`PAUSE_CHECK`] makes the link ask QEMU
//! whether the VM runs (QMP `query-status`, when the daemon has `--qmp`; asking before
//! every job would slow the guest, whose serial line QEMU's main loop also serves): a
//! paused VM fails the job with [`LinkError::Paused`], and while it stays paused every
//! job fails so at once, the stub sent nothing. A stub that does not stop within
//! [`STOP_PROBE`] while the VM runs (a kernel wedged with interrupts off) is marked
//! unresponsive: jobs then fail at once with [`LinkError::Unresponsive`] (the API answers
//! from QEMU instead), except those that insist ([`LinkHandle::run_patient`]), while a
//! probe (an empty job) tries it again every [`PROBE_EVERY`] until it answers. A late
//! answer to what such a job sent (a `qSupported`, a 0x03) is undone when it comes: `D`,
//! or `c` with the stop swallowed.
//!
//! While gdb has the kernel stopped, its `m` reads are answered here from the RAM file
//! (`--ram`) by the stub's own walk ([`crate::memread`]), at memory speed; writes,
//! breakpoints and everything else go to the stub.
//!
//! gdb's bytes are not read while a job runs: they wait in the socket, so a Ctrl-C gdb
//! sends meanwhile reaches the stub after our `c`, and stops the kernel for gdb.
//! Acknowledgements end at this task on both sides (it acks what it receives and
//! resends on `-`), so the two conversations never see each other's acks.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::{timeout_at, Instant};

use crate::live::Live;
use crate::memread::{self, Reads};
use crate::qemu::{Qmp, RunState};
use crate::rsp::{self, Decoder, Event, MonitorReply};

/// The largest packet accepted from either side (the stub's buffer is 4 KiB; gdb's
/// `X`/`M` writes are bounded by the stub's advertised PacketSize).
const MAX_PACKET: usize = 64 * 1024;
/// The largest `m` request: a 4 KiB stub buffer holds twice as many hex digits.
const MEMORY_CHUNK: u32 = 0x7f0;
/// How long cleanup (`D`, `c`) may take after a job ran out of time.
const CLEANUP_TIME: Duration = Duration::from_secs(2);
/// How often to retry connecting to the target port.
const RECONNECT_DELAY: Duration = Duration::from_millis(250);
/// How long the stub may take to stop for a job (answer `qSupported`, or stop on 0x03)
/// before it counts as unresponsive. The stub takes the UART interrupt wherever
/// interrupts are on (user mode, the idle loop): milliseconds even during the demo's
/// swapping under TCG; two seconds leave room for a host loaded by other VMs.
pub const STOP_PROBE: Duration = Duration::from_secs(2);
/// How long a stop may take before the link asks QEMU whether the VM is paused.
pub const PAUSE_CHECK: Duration = Duration::from_millis(250);
/// How often an unresponsive stub is probed again.
pub const PROBE_EVERY: Duration = Duration::from_secs(1);

/// One step of a job.
#[derive(Clone, Debug)]
pub enum Op {
    /// `monitor LINE`: the text of the answer.
    Monitor(String),
    /// `m ADDR,LEN`: linear memory (read in chunks).
    ReadMemory { addr: u32, len: u32 },
    /// Keeps the kernel stopped until the holder lets go (or the job's deadline): the
    /// live source reads the RAM file meanwhile, at an even count (the stub stops the
    /// kernel only where interrupts are on, never inside a change).
    Hold(Arc<Hold>),
}

/// The two ends of an [`Op::Hold`]: the link says when the kernel is stopped, the holder
/// when it may run again.
#[derive(Debug)]
pub struct Hold {
    stopped: std::sync::Mutex<Option<oneshot::Sender<()>>>,
    release: std::sync::Mutex<Option<oneshot::Receiver<()>>>,
}

impl Hold {
    /// A hold, the receiver told when the kernel is stopped and the sender that lets go
    /// (dropping it lets go too).
    pub fn new() -> (Arc<Hold>, oneshot::Receiver<()>, oneshot::Sender<()>) {
        let (stopped_tx, stopped_rx) = oneshot::channel();
        let (release_tx, release_rx) = oneshot::channel();
        let hold = Hold {
            stopped: std::sync::Mutex::new(Some(stopped_tx)),
            release: std::sync::Mutex::new(Some(release_rx)),
        };
        (Arc::new(hold), stopped_rx, release_tx)
    }

    fn take<T>(slot: &std::sync::Mutex<Option<T>>) -> Option<T> {
        slot.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

/// What one [`Op`] produced.
#[derive(Clone, Debug)]
pub enum OpResult {
    Monitor(String),
    Memory(Vec<u8>),
    /// The hold ended.
    Held,
}

/// A batch of ops run in one stop of the kernel, and where its answer goes.
pub struct Job {
    pub ops: Vec<Op>,
    /// How long the stub may take once the job runs (waiting in the queue is bounded
    /// separately, by [`QUEUE_WAIT`]).
    pub timeout: Duration,
    pub reply: oneshot::Sender<Result<Vec<OpResult>, LinkError>>,
}

/// The longest a job waits in the queue before its caller gives up (503 busy).
pub const QUEUE_WAIT: Duration = Duration::from_secs(30);
/// Jobs waiting together run in one stop of the kernel (one `qSupported`/`D` pair).
const BATCH: usize = 16;

/// Why a job failed.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum LinkError {
    #[error("the kernel's stub is not connected (is QEMU running?)")]
    NotConnected,
    #[error("the kernel's stub did not answer in time")]
    Timeout,
    #[error("too many requests are waiting for the kernel link")]
    Busy,
    #[error("the stub refused the request: {0}")]
    Refused(String),
    #[error("the answer is larger than {0} bytes")]
    TooLarge(usize),
    #[error("protocol error: {0}")]
    Protocol(String),
    #[error(
        "the VM is not running (QEMU's status: {0}): its kernel cannot answer until it continues"
    )]
    Paused(String),
    #[error("the kernel's stub does not answer (a kernel wedged with interrupts off?); it is probed again every second")]
    Unresponsive,
}

/// What the link knows, for `/status`.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct LinkStatus {
    /// The target port is connected.
    pub connected: bool,
    /// A gdb is connected to the proxy port.
    pub gdb_attached: bool,
    /// gdb has the kernel stopped (between its packets).
    pub stopped_by_gdb: bool,
    /// The last job got its answers (false after a timeout, until one succeeds).
    pub stub_responsive: bool,
    /// Connections made to the target port since start (a reconnect adds one).
    pub connects: u64,
    /// Jobs completed.
    pub jobs: u64,
    /// The last stop gdb was told of, while gdb has the kernel stopped.
    pub gdb_stop: Option<StopSeen>,
    /// gdb's `m` reads answered from the RAM file (the kernel stopped) since start.
    pub reads_from_ram: u64,
}

/// A stop reply the proxy passed to gdb, and the eip gdb then read (the first `g` reply
/// after the stop: gdb reads the stopped thread's registers before anything else).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct StopSeen {
    /// gdb's signal number (5 SIGTRAP, 2 SIGINT).
    pub signal: u8,
    /// The stop reply's thread id (pid + 1), when it names one.
    pub thread: Option<u32>,
    /// null until gdb has read the registers.
    pub eip: Option<u32>,
}

/// The HTTP side's end of the link.
#[derive(Clone)]
pub struct LinkHandle {
    jobs: mpsc::Sender<Job>,
    status: watch::Receiver<LinkStatus>,
    /// QEMU, asked whether the VM runs again while the link found it paused.
    qmp: Option<Arc<Qmp>>,
    paused: Paused,
}

/// QEMU's word for the VM's state when the link found it not running (shared by the
/// link task, which finds it, and the handles, which clear it when it runs again).
pub type Paused = Arc<std::sync::Mutex<Option<String>>>;

fn lock_paused(p: &Paused) -> std::sync::MutexGuard<'_, Option<String>> {
    p.lock().unwrap_or_else(|e| e.into_inner())
}

impl LinkHandle {
    /// Runs `ops` in one stop of the kernel, within `timeout`; fails at once when the VM
    /// is paused or the stub is known to be unresponsive (see the module docs).
    pub async fn run(&self, ops: Vec<Op>, timeout: Duration) -> Result<Vec<OpResult>, LinkError> {
        self.gate().await?;
        if !self.status.borrow().stub_responsive {
            return Err(LinkError::Unresponsive);
        }
        self.submit(ops, timeout).await
    }

    /// As [`run`](Self::run), but tries a stub that seems unresponsive (for a client
    /// that asked for the stub and nothing else).
    pub async fn run_patient(
        &self,
        ops: Vec<Op>,
        timeout: Duration,
    ) -> Result<Vec<OpResult>, LinkError> {
        self.gate().await?;
        self.submit(ops, timeout).await
    }

    /// QEMU's run state, when QMP is configured and answers.
    pub async fn vm_state(&self) -> Option<RunState> {
        let qmp = self.qmp.as_ref()?;
        match qmp.run_state().await {
            Ok(state) => Some(state),
            Err(e) => {
                tracing::debug!("query-status: {e}");
                None
            }
        }
    }

    /// Refuses a job the stub cannot answer: not connected, or the VM found paused and
    /// still paused (QEMU is asked only then).
    async fn gate(&self) -> Result<(), LinkError> {
        if !self.status.borrow().connected {
            return Err(LinkError::NotConnected);
        }
        if lock_paused(&self.paused).is_none() {
            return Ok(());
        }
        match self.vm_state().await {
            Some(state) if !state.running => Err(LinkError::Paused(state.status)),
            _ => {
                *lock_paused(&self.paused) = None;
                Ok(())
            }
        }
    }

    /// Queues a job and waits for its answer.
    async fn submit(&self, ops: Vec<Op>, timeout: Duration) -> Result<Vec<OpResult>, LinkError> {
        if !self.status.borrow().connected {
            return Err(LinkError::NotConnected);
        }
        let (reply, answer) = oneshot::channel();
        self.jobs
            .try_send(Job {
                ops,
                timeout,
                reply,
            })
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => LinkError::Busy,
                mpsc::error::TrySendError::Closed(_) => LinkError::NotConnected,
            })?;
        // The link answers every job it runs by its timeout; a queue that does not move
        // (a stub answering slowly to many clients) is bounded too.
        match tokio::time::timeout(QUEUE_WAIT + timeout + CLEANUP_TIME, answer).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(LinkError::NotConnected),
            Err(_) => Err(LinkError::Busy),
        }
    }

    /// One monitor command.
    pub async fn monitor(&self, line: &str, timeout: Duration) -> Result<String, LinkError> {
        let mut results = self
            .run(vec![Op::Monitor(line.to_string())], timeout)
            .await?;
        match results.pop() {
            Some(OpResult::Monitor(text)) => Ok(text),
            _ => Err(LinkError::Protocol("no monitor answer".into())),
        }
    }

    pub fn status(&self) -> LinkStatus {
        self.status.borrow().clone()
    }
}

/// Settings of the link task.
pub struct LinkConfig {
    /// QEMU's COM1 TCP address (host:port).
    pub target: String,
    /// The most bytes one monitor answer may have.
    pub max_reply: usize,
    /// Jobs that may wait in the queue.
    pub queue: usize,
    /// QEMU's QMP, to tell a paused VM from a slow stub.
    pub qmp: Option<Arc<Qmp>>,
    /// The RAM file, for gdb's reads while the stub holds the kernel.
    pub live: Option<Arc<Live>>,
}

/// Starts the link task; gdb connections come through `gdb_conns` (from the listener).
pub fn spawn(config: LinkConfig, gdb_conns: mpsc::Receiver<TcpStream>) -> LinkHandle {
    let (jobs_tx, jobs_rx) = mpsc::channel(config.queue);
    let (status_tx, status_rx) = watch::channel(LinkStatus::default());
    let paused = Paused::default();
    let handle = LinkHandle {
        jobs: jobs_tx,
        status: status_rx,
        qmp: config.qmp.clone(),
        paused: paused.clone(),
    };
    tokio::spawn(run(config, paused, jobs_rx, gdb_conns, status_tx));
    tokio::spawn(probe(handle.clone()));
    handle
}

/// Tries an unresponsive stub again, every [`PROBE_EVERY`], with an empty job (a stop
/// and a resume): its success marks the stub responsive again.
async fn probe(link: LinkHandle) {
    loop {
        tokio::time::sleep(PROBE_EVERY).await;
        let status = link.status();
        if !status.connected || status.stub_responsive || link.gate().await.is_err() {
            continue;
        }
        match link.submit(Vec::new(), STOP_PROBE).await {
            Ok(_) => tracing::info!("the kernel's stub answers again"),
            Err(e) => tracing::debug!("probing the stub: {e}"),
        }
    }
}

async fn run(
    config: LinkConfig,
    paused: Paused,
    mut jobs: mpsc::Receiver<Job>,
    mut gdb_conns: mpsc::Receiver<TcpStream>,
    status: watch::Sender<LinkStatus>,
) {
    let mut logged_wait = false;
    // A gdb that connected before the kernel did (scripts/run starts QEMU after the
    // daemon) waits here, its first packets in its socket, until the link is up.
    let mut early_gdb: Option<TcpStream> = None;
    loop {
        let stream = match TcpStream::connect(&config.target).await {
            Ok(s) => s,
            Err(e) => {
                if !logged_wait {
                    tracing::info!(target = %config.target, "waiting for the kernel's stub: {e}");
                    logged_wait = true;
                }
                // Meanwhile: refuse what comes (503), and turn gdbs away.
                let sleep = tokio::time::sleep(RECONNECT_DELAY);
                tokio::pin!(sleep);
                loop {
                    tokio::select! {
                        _ = &mut sleep => break,
                        Some(job) = jobs.recv() => { let _ = job.reply.send(Err(LinkError::NotConnected)); }
                        Some(conn) = gdb_conns.recv() => {
                            if early_gdb.is_none() {
                                tracing::info!("gdb connected before the kernel: it waits for the link");
                                early_gdb = Some(conn);
                            } else {
                                tracing::warn!("a second gdb connected: refused (one gdb at a time)");
                            }
                        }
                        else => return,
                    }
                }
                continue;
            }
        };
        logged_wait = false;
        let _ = stream.set_nodelay(true);
        tracing::info!(target = %config.target, "connected to the kernel's stub");
        status.send_modify(|s| {
            s.connected = true;
            s.connects += 1;
            s.stub_responsive = true;
        });
        let (read, write) = stream.into_split();
        let mut session = Session {
            target_w: write,
            decoder: Decoder::new(MAX_PACKET),
            last_to_target: Vec::new(),
            gdb: None,
            status: &status,
            max_reply: config.max_reply,
            requeued: VecDeque::new(),
            owed_detach: false,
            owed_continue: false,
            qmp: config.qmp.clone(),
            paused: paused.clone(),
            live: config.live.clone(),
            reads: Reads::default(),
            stub_packet_size: None,
        };
        let end = session
            .serve(read, early_gdb.take(), &mut jobs, &mut gdb_conns)
            .await;
        tracing::warn!("kernel link closed: {end}");
        status.send_modify(|s| {
            s.connected = false;
            s.gdb_attached = false;
            s.stopped_by_gdb = false;
        });
        if matches!(end, ServeEnd::Shutdown) {
            return;
        }
    }
}

/// Why [`Session::serve`] returned.
#[derive(Debug)]
enum ServeEnd {
    TargetClosed(String),
    Shutdown,
}

impl std::fmt::Display for ServeEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ServeEnd::TargetClosed(why) => write!(f, "target port closed ({why})"),
            ServeEnd::Shutdown => f.write_str("shutting down"),
        }
    }
}

/// What the stub owes gdb.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum GdbWait {
    /// Nothing: gdb has the kernel stopped and no request is out.
    Nothing,
    /// The reply to a request (for `qRcmd`, `O` packets first; for `g`, the registers).
    Reply {
        monitor: bool,
        detach: bool,
        registers: bool,
    },
    /// A stop reply: the kernel runs in gdb's session.
    Stop,
}

/// The connected gdb.
struct Gdb {
    write: OwnedWriteHalf,
    decoder: Decoder,
    last_sent: Vec<u8>,
    wait: GdbWait,
    /// gdb's session with the stub is live (from its first packet to `D`/`k`).
    session: bool,
}

struct Session<'a> {
    target_w: OwnedWriteHalf,
    decoder: Decoder,
    last_to_target: Vec<u8>,
    gdb: Option<Gdb>,
    status: &'a watch::Sender<LinkStatus>,
    max_reply: usize,
    /// Events a job decoded but did not consume (they belong to what comes next).
    requeued: VecDeque<Event>,
    /// A `qSupported` of ours went unanswered in time: if the stub answers it late, it
    /// holds the kernel stopped in a session nobody uses, and owes a `D`.
    owed_detach: bool,
    /// Our 0x03 (gdb's session running) brought no stop in time: when its SIGINT stop
    /// comes, gdb must not see it, and the kernel is owed a `c`.
    owed_continue: bool,
    qmp: Option<Arc<Qmp>>,
    paused: Paused,
    live: Option<Arc<Live>>,
    /// What the stub's read rules need remembered between gdb's reads answered here.
    reads: Reads,
    /// The stub's PacketSize (from its qSupported answer): a read answered here must fit.
    stub_packet_size: Option<usize>,
}

/// How a job gets the kernel stopped (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum JobMode {
    OwnSession,
    GdbStopped,
    Interrupted,
}

impl Session<'_> {
    async fn serve(
        &mut self,
        mut target_r: OwnedReadHalf,
        early_gdb: Option<TcpStream>,
        jobs: &mut mpsc::Receiver<Job>,
        gdb_conns: &mut mpsc::Receiver<TcpStream>,
    ) -> ServeEnd {
        let mut gdb_r: Option<OwnedReadHalf> = early_gdb.map(|conn| self.attach_gdb(conn));
        let mut tbuf = vec![0u8; 16 * 1024];
        let mut gbuf = vec![0u8; 16 * 1024];
        loop {
            let gdb_busy = self
                .gdb
                .as_ref()
                .is_some_and(|g| matches!(g.wait, GdbWait::Reply { .. }));
            tokio::select! {
                read = target_r.read(&mut tbuf) => match read {
                    Ok(0) => return ServeEnd::TargetClosed("end of stream".into()),
                    Err(e) => return ServeEnd::TargetClosed(e.to_string()),
                    Ok(n) => {
                        for event in self.decoder.push(&tbuf[..n]) {
                            if let Err(e) = self.on_target_event(event).await {
                                return ServeEnd::TargetClosed(e.to_string());
                            }
                        }
                    }
                },
                read = read_opt(&mut gdb_r, &mut gbuf) => match read {
                    Ok(0) | Err(_) => {
                        gdb_r = None;
                        self.gdb_gone(&mut target_r).await;
                    }
                    Ok(n) => {
                        let events = match self.gdb.as_mut() {
                            Some(g) => g.decoder.push(&gbuf[..n]),
                            None => Vec::new(),
                        };
                        for event in events {
                            if let Err(e) = self.on_gdb_event(event).await {
                                tracing::warn!("gdb link: {e}");
                            }
                        }
                    }
                },
                conn = gdb_conns.recv() => match conn {
                    Some(conn) if self.gdb.is_none() => gdb_r = Some(self.attach_gdb(conn)),
                    Some(conn) => {
                        // The stub serves one debugger: a second one would corrupt the first's session.
                        tracing::warn!("a second gdb connected: refused (one gdb at a time)");
                        drop(conn);
                    }
                    None => return ServeEnd::Shutdown,
                },
                job = jobs.recv(), if !gdb_busy => match job {
                    Some(job) => {
                        let mut batch = vec![job];
                        while batch.len() < BATCH {
                            match jobs.try_recv() {
                                Ok(j) => batch.push(j),
                                Err(_) => break,
                            }
                        }
                        // Callers that gave up need no answer.
                        batch.retain(|j| !j.reply.is_closed());
                        let results = self.run_jobs(&batch, &mut target_r).await;
                        // Unresponsive: the stub did not even stop (a slow answer after a
                        // stop is a timeout of that job alone).
                        let ok = !results.iter().any(|r| matches!(r, Err(LinkError::Unresponsive)));
                        let closed = results.iter().any(|r| matches!(r, Err(LinkError::NotConnected)));
                        self.status.send_modify(|s| { s.stub_responsive = ok; s.jobs += batch.len() as u64; });
                        for (job, result) in batch.into_iter().zip(results) {
                            let _ = job.reply.send(result);
                        }
                        if closed {
                            return ServeEnd::TargetClosed("lost during a query".into());
                        }
                        for event in self.take_requeued().unwrap_or_default() {
                            if let Err(e) = self.on_target_event(event).await {
                                return ServeEnd::TargetClosed(e.to_string());
                            }
                        }
                    }
                    None => return ServeEnd::Shutdown,
                },
            }
        }
    }

    /// Takes a new gdb connection; returns its read half (the select loop reads it).
    fn attach_gdb(&mut self, conn: TcpStream) -> OwnedReadHalf {
        let _ = conn.set_nodelay(true);
        let (r, w) = conn.into_split();
        self.gdb = Some(Gdb {
            write: w,
            decoder: Decoder::new(MAX_PACKET),
            last_sent: Vec::new(),
            wait: GdbWait::Nothing,
            session: false,
        });
        tracing::info!("gdb attached through the proxy");
        self.publish();
        r
    }

    fn publish(&self) {
        let attached = self.gdb.is_some();
        let stopped = self
            .gdb
            .as_ref()
            .is_some_and(|g| g.session && g.wait != GdbWait::Stop);
        self.status.send_modify(|s| {
            s.gdb_attached = attached;
            s.stopped_by_gdb = stopped;
            if !stopped {
                s.gdb_stop = None;
            }
        });
    }

    /// Remembers the stop gdb was told of (the web view says where the kernel stopped).
    fn note_stop(&self, body: &[u8]) {
        if let Some(signal) = rsp::stop_signal(body) {
            let thread = rsp::stop_thread(body);
            self.status.send_modify(|s| {
                s.gdb_stop = Some(StopSeen {
                    signal,
                    thread,
                    eip: None,
                });
            });
        }
    }

    /// The eip of gdb's first register read after a stop: where the kernel stopped.
    fn note_registers(&self, body: &[u8]) {
        let Some(eip) = rsp::eip_of_registers(body) else {
            return;
        };
        self.status.send_modify(|s| {
            if let Some(stop) = s.gdb_stop.as_mut().filter(|stop| stop.eip.is_none()) {
                stop.eip = Some(eip);
            }
        });
    }

    async fn send_target(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.target_w.write_all(bytes).await
    }

    async fn send_target_packet(&mut self, raw: Vec<u8>) -> std::io::Result<()> {
        self.target_w.write_all(&raw).await?;
        self.last_to_target = raw;
        Ok(())
    }

    async fn send_gdb(&mut self, bytes: &[u8], remember: bool) {
        if let Some(g) = self.gdb.as_mut() {
            if remember {
                g.last_sent = bytes.to_vec();
            }
            if let Err(e) = g.write.write_all(bytes).await {
                tracing::debug!("gdb write failed: {e}");
            }
        }
    }

    /// A byte event from the stub while no job runs: gdb's replies and stops, or strays.
    async fn on_target_event(&mut self, event: Event) -> std::io::Result<()> {
        match event {
            Event::Packet { raw, body } => {
                self.send_target(&[rsp::ACK]).await?;
                self.note_packet_size(&body);
                let wait = self.gdb.as_ref().map(|g| g.wait);
                match wait {
                    Some(GdbWait::Reply {
                        monitor,
                        detach,
                        registers,
                    }) => {
                        self.send_gdb(&raw, true).await;
                        if registers {
                            self.note_registers(&body);
                        }
                        let output = monitor && body.first() == Some(&b'O') && body != b"OK";
                        if !output {
                            if let Some(g) = self.gdb.as_mut() {
                                g.wait = GdbWait::Nothing;
                                if detach {
                                    g.session = false;
                                }
                            }
                            self.publish();
                        }
                    }
                    Some(GdbWait::Stop)
                        if self.owed_continue && rsp::stop_signal(&body) == Some(rsp::SIGINT) =>
                    {
                        // The stop our late 0x03 caused: not gdb's; the kernel runs on.
                        tracing::info!("the stub stopped late for a query: continuing it");
                        self.owed_continue = false;
                        self.send_target_packet(rsp::frame(b"c")).await?;
                    }
                    Some(GdbWait::Stop) => {
                        self.send_gdb(&raw, true).await;
                        if rsp::is_stop_reply(&body) {
                            if let Some(g) = self.gdb.as_mut() {
                                g.wait = GdbWait::Nothing;
                            }
                            self.note_stop(&body);
                            self.publish();
                        }
                    }
                    _ if self.owed_detach && !self.gdb.as_ref().is_some_and(|g| g.session) => {
                        // The late answer to a qSupported of ours: the stub holds the
                        // kernel for a session nobody uses. Detach (its OK is a stray).
                        tracing::info!("the stub answered a query late: detaching it");
                        self.owed_detach = false;
                        self.send_target_packet(rsp::frame(b"D")).await?;
                    }
                    _ => tracing::debug!(
                        "stray packet from the stub dropped: {:?}",
                        String::from_utf8_lossy(&body)
                    ),
                }
            }
            Event::Nak => {
                let last = self.last_to_target.clone();
                self.send_target(&last).await?;
            }
            Event::BadChecksum | Event::Overlong => self.send_target(&[rsp::NAK]).await?,
            Event::Ack | Event::Interrupt => {}
        }
        Ok(())
    }

    /// A byte event from gdb: acked here, forwarded to the stub.
    async fn on_gdb_event(&mut self, event: Event) -> std::io::Result<()> {
        match event {
            Event::Packet { raw, body } => {
                self.send_gdb(&[rsp::ACK], false).await;
                if let Some(reply) = self.read_from_ram(&body).await {
                    self.send_gdb(&rsp::frame(&reply), true).await;
                    return Ok(());
                }
                if matches!(body.first(), Some(b'm' | b'M' | b'X')) {
                    self.reads.forget();
                }
                let wait = if rsp::is_resume(&body) {
                    GdbWait::Stop
                } else if body == b"k" {
                    // Kill: the stub ends the session and sends nothing back.
                    GdbWait::Nothing
                } else {
                    GdbWait::Reply {
                        monitor: body.starts_with(b"qRcmd,"),
                        detach: body.first() == Some(&b'D'),
                        registers: body == b"g",
                    }
                };
                if let Some(g) = self.gdb.as_mut() {
                    g.wait = wait;
                    g.session = body != b"k";
                }
                self.publish();
                self.send_target_packet(raw).await?;
            }
            Event::Interrupt => self.send_target(&[rsp::INTERRUPT]).await?,
            Event::Nak => {
                let last = self
                    .gdb
                    .as_ref()
                    .map(|g| g.last_sent.clone())
                    .unwrap_or_default();
                self.send_gdb(&last, false).await;
            }
            Event::BadChecksum | Event::Overlong => self.send_gdb(&[rsp::NAK], false).await,
            Event::Ack => {}
        }
        Ok(())
    }

    /// The reply to gdb's `m`, from the RAM file, when the stub holds the kernel stopped
    /// in gdb's session and the file is this machine's (`None`: the stub answers).
    async fn read_from_ram(&mut self, body: &[u8]) -> Option<Vec<u8>> {
        let (addr, len) = memread::parse_m(body)?;
        let stopped_for_gdb = self
            .gdb
            .as_ref()
            .is_some_and(|g| g.session && g.wait == GdbWait::Nothing);
        // Longer than the stub's packet: the stub splits it, by its own rules.
        let fits = self
            .stub_packet_size
            .is_some_and(|size| len > 0 && (len as usize) * 2 + 4 <= size);
        if !stopped_for_gdb || !fits {
            return None;
        }
        let located = self.live.as_ref()?.located().ok()?;
        if !located.boot_checked() {
            // Another boot's or another VM's file must not answer: QEMU says which.
            let qmp = self.qmp.as_ref()?;
            crate::live::serve::check_machine(qmp, &located)
                .await
                .ok()?;
        }
        if !located.boot_checked() || !located.descriptor().stopped().0 {
            return None;
        }
        let view = crate::live::view::RamView::new(&located);
        let reply = self.reads.answer(&view, addr, len);
        self.status.send_modify(|s| s.reads_from_ram += 1);
        Some(reply)
    }

    /// Remembers the stub's PacketSize from its qSupported answer.
    fn note_packet_size(&mut self, body: &[u8]) {
        if let Some(size) = packet_size(body) {
            self.stub_packet_size = Some(size);
        }
    }

    /// gdb's connection closed: a session it left behind must not keep the kernel
    /// stopped (or keep its breakpoints planted), so the proxy detaches for it.
    async fn gdb_gone(&mut self, target_r: &mut OwnedReadHalf) {
        let Some(gdb) = self.gdb.take() else { return };
        tracing::info!("gdb left");
        self.publish();
        if !gdb.session {
            return;
        }
        let deadline = Instant::now() + CLEANUP_TIME * 2;
        if gdb.wait == GdbWait::Stop {
            // Running in gdb's session: stop it first (the stub takes `D` only when stopped).
            if self.send_target(&[rsp::INTERRUPT]).await.is_err() {
                return;
            }
            if self.wait_stop(target_r, deadline).await.is_err() {
                tracing::warn!(
                    "gdb left a running session and the stub did not stop for the detach"
                );
                return;
            }
        }
        match self.request(b"D", target_r, deadline).await {
            Ok(_) => tracing::info!("detached gdb's abandoned session: the kernel runs"),
            Err(e) => tracing::warn!("detaching gdb's abandoned session: {e}"),
        }
    }

    /// Runs jobs' ops in one stop of the kernel (see the module docs); one result per job.
    async fn run_jobs(
        &mut self,
        jobs: &[Job],
        target_r: &mut OwnedReadHalf,
    ) -> Vec<Result<Vec<OpResult>, LinkError>> {
        let Some(first) = jobs.first() else {
            return Vec::new();
        };
        // A short probe: a stub that does not stop for us in STOP_PROBE is unresponsive.
        let deadline = Instant::now() + first.timeout.min(STOP_PROBE);
        match self.stop_for_jobs(deadline, target_r).await {
            Err(e) => {
                let e = if e == LinkError::Timeout {
                    LinkError::Unresponsive
                } else {
                    e
                };
                // The kernel did not stop for us: every job gets that answer.
                jobs.iter().map(|_| Err(e.clone())).collect()
            }
            Ok(mode) => {
                let mut results = Vec::with_capacity(jobs.len());
                let mut broken = None;
                for job in jobs {
                    if let Some(e) = &broken {
                        results.push(Err(LinkError::clone(e)));
                        continue;
                    }
                    let deadline = Instant::now() + job.timeout;
                    let result = self.run_ops(&job.ops, deadline, target_r).await;
                    if let Err(e @ (LinkError::Timeout | LinkError::NotConnected)) = &result {
                        broken = Some(e.clone());
                    }
                    results.push(result);
                }
                // Resume whatever the outcome: inspecting must not leave the kernel stopped.
                let cleanup = Instant::now() + CLEANUP_TIME;
                let resumed = match mode {
                    JobMode::OwnSession => self.detach(target_r, cleanup).await,
                    JobMode::Interrupted => self.send_packet(b"c", target_r, cleanup).await,
                    JobMode::GdbStopped => Ok(()),
                };
                if let Err(e) = resumed {
                    tracing::warn!("resuming the kernel after a query failed: {e}");
                    for r in results.iter_mut().filter(|r| r.is_ok()) {
                        *r = Err(e.clone());
                    }
                }
                results
            }
        }
    }

    /// Gets the kernel stopped for a batch of jobs; says how (for the resume).
    async fn stop_for_jobs(
        &mut self,
        deadline: Instant,
        target_r: &mut OwnedReadHalf,
    ) -> Result<JobMode, LinkError> {
        let mut mode = match self.gdb.as_ref() {
            Some(g) if g.session && g.wait == GdbWait::Stop => JobMode::Interrupted,
            Some(g) if g.session => JobMode::GdbStopped,
            _ => JobMode::OwnSession,
        };
        match mode {
            JobMode::OwnSession => {
                if self.owed_detach {
                    // Our earlier qSupported may be answered late (its session holds
                    // the kernel): end whatever session the stub has, then start ours.
                    self.handshake(target_r, deadline).await?;
                    self.detach(target_r, deadline).await?;
                }
                self.handshake(target_r, deadline).await?;
            }
            JobMode::Interrupted => {
                self.send_target(&[rsp::INTERRUPT])
                    .await
                    .map_err(|_| LinkError::NotConnected)?;
                self.owed_continue = true;
                let first = (Instant::now() + PAUSE_CHECK).min(deadline);
                let (raw, body) = match self.wait_stop(target_r, first).await {
                    Err(LinkError::Timeout) if first < deadline => {
                        self.check_paused().await?;
                        self.wait_stop(target_r, deadline).await?
                    }
                    other => other?,
                };
                self.owed_continue = false;
                if rsp::stop_signal(&body) != Some(rsp::SIGINT) {
                    // A stop of gdb's own that came first: gdb's to see; it holds the kernel now.
                    self.send_gdb(&raw, true).await;
                    self.note_stop(&body);
                    if let Some(g) = self.gdb.as_mut() {
                        g.wait = GdbWait::Nothing;
                    }
                    self.publish();
                    mode = JobMode::GdbStopped;
                }
            }
            JobMode::GdbStopped => {}
        }
        Ok(mode)
    }

    /// `qSupported`: the stub stops for it (a session of ours). Replies that are not a
    /// `qSupported` answer (an `OK` to an earlier `D`) are old, and skipped.
    async fn handshake(
        &mut self,
        target_r: &mut OwnedReadHalf,
        deadline: Instant,
    ) -> Result<(), LinkError> {
        let accept = |reply: &[u8]| packet_size(reply).is_some();
        self.owed_detach = true;
        let first = (Instant::now() + PAUSE_CHECK).min(deadline);
        let reply = match self
            .request_matching(b"qSupported:multiprocess-", accept, target_r, first)
            .await
        {
            Err(LinkError::Timeout) if first < deadline => {
                self.check_paused().await?;
                self.await_matching(accept, target_r, deadline).await?
            }
            other => other?,
        };
        self.note_packet_size(&reply);
        self.owed_detach = false;
        Ok(())
    }

    /// A stop that takes long: is the VM paused? (`Err(Paused)`, remembered for the
    /// handles, which clear it once it runs again.)
    async fn check_paused(&self) -> Result<(), LinkError> {
        let Some(qmp) = &self.qmp else { return Ok(()) };
        match qmp.run_state().await {
            Ok(state) if !state.running => {
                *lock_paused(&self.paused) = Some(state.status.clone());
                Err(LinkError::Paused(state.status))
            }
            _ => Ok(()),
        }
    }

    /// `D`: the kernel runs on. Replies before its `OK` (a late answer to an earlier
    /// `qSupported`) are skipped.
    async fn detach(
        &mut self,
        target_r: &mut OwnedReadHalf,
        deadline: Instant,
    ) -> Result<(), LinkError> {
        self.request_matching(
            b"D",
            |reply| reply == b"OK" || reply.first() == Some(&b'E'),
            target_r,
            deadline,
        )
        .await
        .map(drop)
    }

    /// One request; the first reply `accept` takes (others are dropped).
    async fn request_matching(
        &mut self,
        body: &[u8],
        accept: impl Fn(&[u8]) -> bool,
        target_r: &mut OwnedReadHalf,
        deadline: Instant,
    ) -> Result<Vec<u8>, LinkError> {
        self.send_packet(body, target_r, deadline).await?;
        self.await_matching(accept, target_r, deadline).await
    }

    /// The next reply `accept` takes (others are dropped).
    async fn await_matching(
        &mut self,
        accept: impl Fn(&[u8]) -> bool,
        target_r: &mut OwnedReadHalf,
        deadline: Instant,
    ) -> Result<Vec<u8>, LinkError> {
        loop {
            let (_, reply) = self.next_packet(target_r, deadline).await?;
            if accept(&reply) {
                return Ok(reply);
            }
            tracing::debug!(
                "an old reply skipped: {:?}",
                String::from_utf8_lossy(&reply)
            );
        }
    }

    /// One job's ops, the kernel stopped; the first failure ends it.
    async fn run_ops(
        &mut self,
        ops: &[Op],
        deadline: Instant,
        target_r: &mut OwnedReadHalf,
    ) -> Result<Vec<OpResult>, LinkError> {
        let mut results = Vec::with_capacity(ops.len());
        for op in ops {
            let result = match op {
                Op::Monitor(line) => self
                    .monitor(line, target_r, deadline)
                    .await
                    .map(OpResult::Monitor),
                Op::ReadMemory { addr, len } => self
                    .read_memory(*addr, *len, target_r, deadline)
                    .await
                    .map(OpResult::Memory),
                Op::Hold(hold) => {
                    if let Some(stopped) = Hold::take(&hold.stopped) {
                        let _ = stopped.send(());
                    }
                    if let Some(release) = Hold::take(&hold.release) {
                        // Let go on release, on the holder's drop, or at the deadline.
                        let _ = timeout_at(deadline, release).await;
                    }
                    Ok(OpResult::Held)
                }
            };
            results.push(result?);
        }
        Ok(results)
    }

    /// Reads target events until a stop reply; `O` packets meanwhile are gdb's console.
    async fn wait_stop(
        &mut self,
        target_r: &mut OwnedReadHalf,
        deadline: Instant,
    ) -> Result<(Vec<u8>, Vec<u8>), LinkError> {
        loop {
            let (raw, body) = self.next_packet(target_r, deadline).await?;
            if rsp::is_stop_reply(&body) {
                return Ok((raw, body));
            }
            if body.first() == Some(&b'O') && self.gdb.is_some() {
                self.send_gdb(&raw, true).await;
            }
        }
    }

    /// The next packet from the stub (acked), handling `-` by resending.
    async fn next_packet(
        &mut self,
        target_r: &mut OwnedReadHalf,
        deadline: Instant,
    ) -> Result<(Vec<u8>, Vec<u8>), LinkError> {
        let mut buf = [0u8; 16 * 1024];
        let mut pending: VecDeque<Event> = VecDeque::new();
        loop {
            while let Some(event) = pending.pop_front() {
                match event {
                    Event::Packet { raw, body } => {
                        self.send_target(&[rsp::ACK])
                            .await
                            .map_err(|_| LinkError::NotConnected)?;
                        // Events after this packet in the same read are re-fed to the decoder's
                        // caller next time: keep them by pushing their bytes back.
                        self.requeue(pending);
                        return Ok((raw, body));
                    }
                    Event::Nak => {
                        let last = self.last_to_target.clone();
                        self.send_target(&last)
                            .await
                            .map_err(|_| LinkError::NotConnected)?;
                    }
                    Event::BadChecksum | Event::Overlong => {
                        self.send_target(&[rsp::NAK])
                            .await
                            .map_err(|_| LinkError::NotConnected)?;
                    }
                    Event::Ack | Event::Interrupt => {}
                }
            }
            if let Some(events) = self.take_requeued() {
                pending.extend(events);
                continue;
            }
            let n = match timeout_at(deadline, target_r.read(&mut buf)).await {
                Err(_) => return Err(LinkError::Timeout),
                Ok(Ok(0)) | Ok(Err(_)) => return Err(LinkError::NotConnected),
                Ok(Ok(n)) => n,
            };
            pending.extend(self.decoder.push(&buf[..n]));
        }
    }

    /// Sends a packet and waits for its `+` (resending on `-`, and once a second).
    async fn send_packet(
        &mut self,
        body: &[u8],
        target_r: &mut OwnedReadHalf,
        deadline: Instant,
    ) -> Result<(), LinkError> {
        let raw = rsp::frame(body);
        self.send_target_packet(raw.clone())
            .await
            .map_err(|_| LinkError::NotConnected)?;
        let mut buf = [0u8; 4096];
        loop {
            if let Some(events) = self.take_requeued() {
                if let Some(done) = self.ack_in(events, &raw).await? {
                    return Ok(done);
                }
                continue;
            }
            let retry = (Instant::now() + Duration::from_secs(1)).min(deadline);
            match timeout_at(retry, target_r.read(&mut buf)).await {
                Err(_) if retry >= deadline => return Err(LinkError::Timeout),
                Err(_) => {
                    self.send_target(&raw)
                        .await
                        .map_err(|_| LinkError::NotConnected)?;
                }
                Ok(Ok(0)) | Ok(Err(_)) => return Err(LinkError::NotConnected),
                Ok(Ok(n)) => {
                    let events = self.decoder.push(&buf[..n]);
                    if let Some(done) = self.ack_in(events, &raw).await? {
                        return Ok(done);
                    }
                }
            }
        }
    }

    /// Looks for the ack of `raw` in `events`; a packet means the stub took it (its
    /// reply came first): the packet and what follows go back for `next_packet`.
    async fn ack_in(&mut self, events: Vec<Event>, raw: &[u8]) -> Result<Option<()>, LinkError> {
        let mut events: VecDeque<Event> = events.into();
        while let Some(event) = events.pop_front() {
            match event {
                Event::Ack => {
                    self.requeue(events);
                    return Ok(Some(()));
                }
                Event::Nak => self
                    .send_target(raw)
                    .await
                    .map_err(|_| LinkError::NotConnected)?,
                packet @ Event::Packet { .. } => {
                    events.push_front(packet);
                    self.requeue(events);
                    return Ok(Some(()));
                }
                _ => {}
            }
        }
        Ok(None)
    }

    /// One request, one reply packet.
    async fn request(
        &mut self,
        body: &[u8],
        target_r: &mut OwnedReadHalf,
        deadline: Instant,
    ) -> Result<Vec<u8>, LinkError> {
        self.send_packet(body, target_r, deadline).await?;
        let (_, reply) = self.next_packet(target_r, deadline).await?;
        Ok(reply)
    }

    /// `monitor LINE`: the `O` packets' text up to `OK`.
    async fn monitor(
        &mut self,
        line: &str,
        target_r: &mut OwnedReadHalf,
        deadline: Instant,
    ) -> Result<String, LinkError> {
        self.send_packet(&rsp::qrcmd(line), target_r, deadline)
            .await?;
        let mut text = Vec::new();
        let mut too_large = false;
        loop {
            let (_, body) = self.next_packet(target_r, deadline).await?;
            let piece = match rsp::monitor_reply(&body) {
                Ok(MonitorReply::Done) => break,
                Ok(MonitorReply::Output(bytes)) | Ok(MonitorReply::Text(bytes)) => bytes,
                Ok(MonitorReply::Error(code)) => return Err(LinkError::Refused(code)),
                Err(e) => return Err(LinkError::Protocol(e.to_string())),
            };
            // Past the bound, keep reading (the link must stay in step) but drop the text.
            if text.len() + piece.len() > self.max_reply {
                too_large = true;
                text.clear();
            } else if !too_large {
                text.extend_from_slice(&piece);
            }
        }
        if too_large {
            return Err(LinkError::TooLarge(self.max_reply));
        }
        String::from_utf8(text)
            .map_err(|_| LinkError::Protocol("monitor output is not UTF-8".into()))
    }

    /// `m` in chunks the stub's buffer holds.
    async fn read_memory(
        &mut self,
        addr: u32,
        len: u32,
        target_r: &mut OwnedReadHalf,
        deadline: Instant,
    ) -> Result<Vec<u8>, LinkError> {
        if len as usize > self.max_reply {
            return Err(LinkError::TooLarge(self.max_reply));
        }
        let mut out = Vec::with_capacity(len as usize);
        let mut at = addr;
        let end = addr as u64 + len as u64;
        while (at as u64) < end {
            let chunk = (end - at as u64).min(MEMORY_CHUNK as u64) as u32;
            let reply = self
                .request(format!("m{at:x},{chunk:x}").as_bytes(), target_r, deadline)
                .await?;
            if reply.first() == Some(&b'E') && reply.len() == 3 {
                return Err(LinkError::Refused(format!(
                    "reading {chunk} bytes at {at:#010x}: {}",
                    String::from_utf8_lossy(&reply)
                )));
            }
            let bytes = rsp::hex_decode(&reply).map_err(|e| LinkError::Protocol(e.to_string()))?;
            if bytes.len() != chunk as usize {
                return Err(LinkError::Protocol(format!(
                    "m{at:x},{chunk:x} answered {} bytes",
                    bytes.len()
                )));
            }
            out.extend_from_slice(&bytes);
            at = at.wrapping_add(chunk);
        }
        Ok(out)
    }

    /// Keeps events decoded from one read but not yet consumed (after an ack or a reply).
    fn requeue(&mut self, events: VecDeque<Event>) {
        self.requeued.extend(events);
    }

    fn take_requeued(&mut self) -> Option<Vec<Event>> {
        (!self.requeued.is_empty()).then(|| self.requeued.drain(..).collect())
    }
}

/// The PacketSize of a qSupported answer (`None`: not one).
fn packet_size(body: &[u8]) -> Option<usize> {
    const KEY: &[u8] = b"PacketSize=";
    let at = body.windows(KEY.len()).position(|w| w == KEY)? + KEY.len();
    let digits = body[at..]
        .iter()
        .take_while(|b| b.is_ascii_hexdigit())
        .count();
    usize::from_str_radix(std::str::from_utf8(&body[at..at + digits]).ok()?, 16).ok()
}

async fn read_opt(stream: &mut Option<OwnedReadHalf>, buf: &mut [u8]) -> std::io::Result<usize> {
    match stream {
        Some(s) => s.read(buf).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_stubs_packet_size_from_its_qsupported_answer() {
        assert_eq!(
            packet_size(b"PacketSize=4000;qXfer:features:read+;swbreak+"),
            Some(0x4000)
        );
        assert_eq!(packet_size(b"swbreak+;PacketSize=1000"), Some(0x1000));
        assert_eq!(packet_size(b"OK"), None);
        assert_eq!(packet_size(b"PacketSize=;x"), None);
    }
}
