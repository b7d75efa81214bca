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
//! gdb's bytes are not read while a job runs: they wait in the socket, so a Ctrl-C gdb
//! sends meanwhile reaches the stub after our `c`, and stops the kernel for gdb.
//! Acknowledgements end at this task on both sides (it acks what it receives and
//! resends on `-`), so the two conversations never see each other's acks.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::{timeout_at, Instant};

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

/// One step of a job.
#[derive(Clone, Debug)]
pub enum Op {
    /// `monitor LINE`: the text of the answer.
    Monitor(String),
    /// `m ADDR,LEN`: linear memory (read in chunks).
    ReadMemory { addr: u32, len: u32 },
}

/// What one [`Op`] produced.
#[derive(Clone, Debug)]
pub enum OpResult {
    Monitor(String),
    Memory(Vec<u8>),
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
}

impl LinkHandle {
    /// Runs `ops` in one stop of the kernel, within `timeout`.
    pub async fn run(&self, ops: Vec<Op>, timeout: Duration) -> Result<Vec<OpResult>, LinkError> {
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
}

/// Starts the link task; gdb connections come through `gdb_conns` (from the listener).
pub fn spawn(config: LinkConfig, gdb_conns: mpsc::Receiver<TcpStream>) -> LinkHandle {
    let (jobs_tx, jobs_rx) = mpsc::channel(config.queue);
    let (status_tx, status_rx) = watch::channel(LinkStatus::default());
    tokio::spawn(run(config, jobs_rx, gdb_conns, status_tx));
    LinkHandle {
        jobs: jobs_tx,
        status: status_rx,
    }
}

async fn run(
    config: LinkConfig,
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
                        let ok = !results.iter().any(|r| matches!(r, Err(LinkError::Timeout) | Err(LinkError::NotConnected)));
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
        let deadline = Instant::now() + first.timeout;
        match self.stop_for_jobs(deadline, target_r).await {
            Err(e) => {
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
                    JobMode::OwnSession => self.request(b"D", target_r, cleanup).await.map(|_| ()),
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
                self.request(b"qSupported:multiprocess-", target_r, deadline)
                    .await?;
            }
            JobMode::Interrupted => {
                self.send_target(&[rsp::INTERRUPT])
                    .await
                    .map_err(|_| LinkError::NotConnected)?;
                let (raw, body) = self.wait_stop(target_r, deadline).await?;
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

async fn read_opt(stream: &mut Option<OwnedReadHalf>, buf: &mut [u8]) -> std::io::Result<usize> {
    match stream {
        Some(s) => s.read(buf).await,
        None => std::future::pending().await,
    }
}
