//! QEMU's own view of the machine through QMP: CR3, RAM size, physical memory (`xp`) and `gva2gpa`.
//!
//! Used as ground truth for `walk` and as the post-mortem source when the kernel's stub
//! does not answer: QEMU reads guest memory whatever the guest is doing.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use mm::addr::{Frame, PhysAddr, PAGE_SIZE};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::sync::Mutex;
use tokio::time::timeout;

/// Why QEMU could not answer.
#[derive(Debug, thiserror::Error)]
pub enum QemuError {
    #[error("no QMP socket configured (start the daemon with --qmp PATH)")]
    NotConfigured,
    #[error("QMP: {0}")]
    Io(#[from] std::io::Error),
    #[error("QMP did not answer in time")]
    Timeout,
    #[error("QMP: {0}")]
    Protocol(String),
}

/// A QMP endpoint; one command at a time (QEMU serves one client per socket), a fresh
/// connection per batch so that a QEMU restart needs nothing special.
pub struct Qmp {
    path: Option<PathBuf>,
    lock: Mutex<()>,
    timeout: Duration,
}

struct Connection {
    reader: BufReader<tokio::net::unix::OwnedReadHalf>,
    writer: tokio::net::unix::OwnedWriteHalf,
}

impl Connection {
    async fn open(path: &PathBuf) -> Result<Connection, QemuError> {
        let stream = UnixStream::connect(path).await?;
        let (r, w) = stream.into_split();
        let mut c = Connection {
            reader: BufReader::new(r),
            writer: w,
        };
        let greeting = c.read_message().await?;
        if greeting.get("QMP").is_none() {
            return Err(QemuError::Protocol(format!(
                "unexpected greeting {greeting}"
            )));
        }
        c.execute("qmp_capabilities", None).await?;
        Ok(c)
    }

    async fn read_message(&mut self) -> Result<Value, QemuError> {
        loop {
            let mut line = String::new();
            if self.reader.read_line(&mut line).await? == 0 {
                return Err(QemuError::Protocol("connection closed".into()));
            }
            let message: Value =
                serde_json::from_str(&line).map_err(|e| QemuError::Protocol(e.to_string()))?;
            // Asynchronous events are not replies.
            if message.get("event").is_none() {
                return Ok(message);
            }
        }
    }

    async fn execute(
        &mut self,
        command: &str,
        arguments: Option<Value>,
    ) -> Result<Value, QemuError> {
        let mut request = json!({ "execute": command });
        if let Some(a) = arguments {
            request["arguments"] = a;
        }
        let mut bytes =
            serde_json::to_vec(&request).map_err(|e| QemuError::Protocol(e.to_string()))?;
        bytes.push(b'\n');
        self.writer.write_all(&bytes).await?;
        let reply = self.read_message().await?;
        if let Some(error) = reply.get("error") {
            return Err(QemuError::Protocol(format!("{command}: {error}")));
        }
        Ok(reply.get("return").cloned().unwrap_or(Value::Null))
    }

    async fn hmp(&mut self, line: &str) -> Result<String, QemuError> {
        let reply = self
            .execute(
                "human-monitor-command",
                Some(json!({ "command-line": line })),
            )
            .await?;
        Ok(reply.as_str().unwrap_or_default().to_string())
    }
}

/// The pages QEMU was asked for, as physical memory the decoder reads.
#[derive(Default)]
pub struct Pages {
    pages: HashMap<u32, Vec<u32>>,
}

impl Pages {
    /// The aligned 32-bit word at physical `addr`.
    pub fn read_u32(&self, addr: PhysAddr) -> u32 {
        let frame = addr.frame().as_u32();
        // The callers fetch every page they read first; an unfetched one reads as zero
        // (an empty entry), which stops a walk rather than inventing a mapping.
        self.pages
            .get(&frame)
            .and_then(|words| words.get(((addr.as_u32() - frame) / 4) as usize))
            .copied()
            .unwrap_or(0)
    }

    pub fn has(&self, frame: Frame) -> bool {
        self.pages.contains_key(&frame.as_u32())
    }
}

/// QEMU's run state (`query-status`): whether the guest's CPUs run, and QEMU's word for
/// the state (`running`, `paused` after `stop`, `debug` while QEMU's own gdbstub holds
/// it, `guest-panicked`, `shutdown`, ...).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunState {
    pub running: bool,
    pub status: String,
}

/// A batch of QMP commands on one connection.
pub struct Session<'a> {
    conn: Connection,
    _guard: tokio::sync::MutexGuard<'a, ()>,
    timeout: Duration,
}

impl Qmp {
    pub fn new(path: Option<PathBuf>, timeout: Duration) -> Qmp {
        Qmp {
            path,
            lock: Mutex::new(()),
            timeout,
        }
    }

    pub fn configured(&self) -> bool {
        self.path.is_some()
    }

    /// `query-status` on a connection of its own.
    pub async fn run_state(&self) -> Result<RunState, QemuError> {
        self.session().await?.run_state().await
    }

    /// Opens a session (waits for any other one to end).
    pub async fn session(&self) -> Result<Session<'_>, QemuError> {
        let path = self.path.as_ref().ok_or(QemuError::NotConfigured)?;
        let guard = timeout(self.timeout, self.lock.lock())
            .await
            .map_err(|_| QemuError::Timeout)?;
        let conn = timeout(self.timeout, Connection::open(path))
            .await
            .map_err(|_| QemuError::Timeout)??;
        Ok(Session {
            conn,
            _guard: guard,
            timeout: self.timeout,
        })
    }
}

impl Session<'_> {
    /// `query-status`.
    pub async fn run_state(&mut self) -> Result<RunState, QemuError> {
        parse_run_state(&self.execute("query-status").await?)
    }

    async fn hmp(&mut self, line: &str) -> Result<String, QemuError> {
        timeout(self.timeout, self.conn.hmp(line))
            .await
            .map_err(|_| QemuError::Timeout)?
    }

    /// CR3, from `info registers`.
    pub async fn cr3(&mut self) -> Result<u32, QemuError> {
        let text = self.hmp("info registers").await?;
        parse_register(&text, "CR3")
            .ok_or_else(|| QemuError::Protocol("no CR3 in info registers".into()))
    }

    /// Guest RAM in bytes.
    pub async fn ram_size(&mut self) -> Result<u64, QemuError> {
        let reply = timeout(
            self.timeout,
            self.conn.execute("query-memory-size-summary", None),
        )
        .await
        .map_err(|_| QemuError::Timeout)??;
        reply
            .get("base-memory")
            .and_then(Value::as_u64)
            .ok_or_else(|| QemuError::Protocol("no base-memory".into()))
    }

    /// Whether the VM runs (QMP `query-status`): false while it is paused.
    pub async fn running(&mut self) -> Result<bool, QemuError> {
        Ok(self.run_state().await?.running)
    }

    /// Pauses the VM (QMP `stop`).
    pub async fn stop(&mut self) -> Result<(), QemuError> {
        self.execute("stop").await.map(drop)
    }

    /// Resumes the VM (QMP `cont`).
    pub async fn cont(&mut self) -> Result<(), QemuError> {
        self.execute("cont").await.map(drop)
    }

    async fn execute(&mut self, command: &str) -> Result<Value, QemuError> {
        timeout(self.timeout, self.conn.execute(command, None))
            .await
            .map_err(|_| QemuError::Timeout)?
    }

    /// `gva2gpa`: QEMU's translation of a linear address with the current CR3.
    pub async fn gva2gpa(&mut self, linear: u32) -> Result<Option<u32>, QemuError> {
        let text = self.hmp(&format!("gva2gpa {linear:#x}")).await?;
        Ok(parse_gva2gpa(&text))
    }

    /// `count` 32-bit words of physical memory at `addr` (`xp`).
    pub async fn read_words(&mut self, addr: u32, count: u32) -> Result<Vec<u32>, QemuError> {
        let text = self.hmp(&format!("xp /{count}xw {addr:#x}")).await?;
        let words = parse_xp_words(&text);
        if words.len() != count as usize {
            return Err(QemuError::Protocol(format!(
                "xp at {addr:#x}: {} words of {count}: {}",
                words.len(),
                text.lines().next().unwrap_or("")
            )));
        }
        Ok(words)
    }

    /// `count` bytes of physical memory at `addr`.
    pub async fn read_bytes(&mut self, addr: u32, count: u32) -> Result<Vec<u8>, QemuError> {
        let text = self.hmp(&format!("xp /{count}xb {addr:#x}")).await?;
        let bytes: Vec<u8> = parse_xp_words(&text).into_iter().map(|w| w as u8).collect();
        if bytes.len() != count as usize {
            return Err(QemuError::Protocol(format!(
                "xp at {addr:#x}: {} bytes of {count}",
                bytes.len()
            )));
        }
        Ok(bytes)
    }

    /// HIGH_MEMORY as the kernel published it in its introspection descriptor
    /// (kernel/docs/introspection.md: the locator at a fixed address names the
    /// descriptor); `None` when there is no published descriptor of this layout.
    pub async fn published_high_memory(&mut self) -> Result<Option<u32>, QemuError> {
        use core::mem::offset_of;
        use introspect::{Descriptor, Layout, Locator, DESCRIPTOR_MAGIC, LOCATOR_ADDR};
        use std::sync::atomic::AtomicU32;
        let words = self.read_words(LOCATOR_ADDR, 5).await?;
        let word = |i: usize| AtomicU32::new(words[i]);
        let locator = Locator {
            magic: [word(0), word(1)],
            version: word(2),
            descriptor: word(3),
            size: word(4),
        };
        let Ok(at) = locator.descriptor_addr() else {
            return Ok(None);
        };
        if self.read_words(at, 2).await? != DESCRIPTOR_MAGIC {
            return Ok(None);
        }
        let field = (offset_of!(Descriptor, layout) + offset_of!(Layout, high_memory)) as u32;
        Ok(self.read_words(at + field, 1).await?.first().copied())
    }

    /// Fetches the page `frame` into `pages` (once).
    pub async fn fetch_page(&mut self, pages: &mut Pages, frame: Frame) -> Result<(), QemuError> {
        if !pages.has(frame) {
            let words = self.read_words(frame.as_u32(), PAGE_SIZE / 4).await?;
            pages.pages.insert(frame.as_u32(), words);
        }
        Ok(())
    }
}

/// `query-status`'s answer (`{"running": false, "status": "paused", ...}`).
pub fn parse_run_state(reply: &Value) -> Result<RunState, QemuError> {
    let running = reply.get("running").and_then(Value::as_bool);
    let status = reply.get("status").and_then(Value::as_str);
    match (running, status) {
        (Some(running), Some(status)) => Ok(RunState {
            running,
            status: status.to_string(),
        }),
        _ => Err(QemuError::Protocol(format!(
            "query-status answered {reply}"
        ))),
    }
}

/// A register's value from `info registers` text (`CR3=001c9000`).
pub fn parse_register(text: &str, name: &str) -> Option<u32> {
    let key = format!("{name}=");
    let at = text.find(&key)? + key.len();
    let digits: String = text[at..]
        .chars()
        .take_while(char::is_ascii_hexdigit)
        .collect();
    u32::from_str_radix(&digits, 16).ok()
}

/// `gpa: 0x1fd7000` or `Unmapped`.
pub fn parse_gva2gpa(text: &str) -> Option<u32> {
    let rest = text.trim().strip_prefix("gpa: ")?;
    u32::from_str_radix(rest.trim().trim_start_matches("0x"), 16).ok()
}

/// The values of `xp` output lines (`00000000001c9000: 0x001ca023 0x001cb023 ...`).
pub fn parse_xp_words(text: &str) -> Vec<u32> {
    text.lines()
        .filter_map(|line| line.split_once(':').map(|(_, values)| values))
        .flat_map(|values| values.split_whitespace())
        .filter_map(|v| u32::from_str_radix(v.trim_start_matches("0x"), 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_qemu_text() {
        let regs =
            "EAX=00000000 EBX=00000000\nCR0=80000011 CR2=07fffeb0 CR3=001c9000 CR4=00000000\n";
        assert_eq!(parse_register(regs, "CR3"), Some(0x001c_9000));
        assert_eq!(parse_register(regs, "CR7"), None);
        assert_eq!(parse_gva2gpa("gpa: 0x1fd7000\r\n"), Some(0x1fd_7000));
        assert_eq!(parse_gva2gpa("Unmapped\r\n"), None);
        let xp = "00000000001c9000: 0x001ca023 0x001cb023 0x001cc023 0x001cd023\r\n00000000001c9010: 0x00000000\r\n";
        assert_eq!(
            parse_xp_words(xp),
            vec![0x1ca023, 0x1cb023, 0x1cc023, 0x1cd023, 0]
        );
        let paused = json!({"running": false, "singlestep": false, "status": "paused"});
        assert_eq!(
            parse_run_state(&paused).unwrap(),
            RunState {
                running: false,
                status: "paused".into()
            }
        );
        assert!(parse_run_state(&json!({"status": "running"})).is_err());
        let xb = "0000000000100000: 0x64 0x64 0x00\r\n";
        assert_eq!(parse_xp_words(xb), vec![0x64, 0x64, 0]);
    }
}
