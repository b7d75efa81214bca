//! The live source in the daemon: a snapshot for a request, with the machine's checks
//! (the boot id and RAM size against QEMU's own view) and the fallbacks when the kernel
//! keeps changing (QEMU's pause, a brief QMP stop/cont), and the documents computed from
//! it by kernel/report.

use std::time::Duration;

use axum::http::StatusCode;

use super::{Consistency, LiveError, Located, Parts, Snapshot, TRIES};
use crate::api::App;
use crate::error::ApiError;
use crate::qemu::Qmp;

/// Why the live source did not answer: the caller falls back to the stub (`Auto`) or
/// reports it (`source=live`).
#[derive(Debug)]
pub enum Unavailable {
    /// No `--ram`.
    NotConfigured,
    /// The RAM file or its descriptor is not usable (status says why).
    Error(LiveError),
    /// The kernel changed during every retry and no brief stop was possible.
    Changing { retries: u32 },
}

impl From<Unavailable> for ApiError {
    fn from(u: Unavailable) -> ApiError {
        match u {
            Unavailable::NotConfigured => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "no_ram",
                "the live source needs the guest's RAM file (--ram FILE)",
            ),
            Unavailable::Error(e) => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.code(), e.to_string())
            }
            Unavailable::Changing { retries } => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "changing",
                format!("the kernel changed during {retries} copies and QEMU could not stop it briefly (no --qmp)"),
            ),
        }
    }
}

/// How long an answer waits for QEMU's part of the boot check, and how long after QEMU
/// left it unanswered the next answer tries again: until then answers go on from the
/// file (its build id and layout were checked; only a stale file of another boot is not
/// yet excluded), rather than each waiting out the QMP timeout.
const BOOT_CHECK_WAIT: Duration = Duration::from_millis(500);
const BOOT_CHECK_RETRY: Duration = Duration::from_secs(2);

/// How many brief stops are tried before giving up (each lands at an even count unless
/// the vCPU was inside a change).
const BRIEF_STOPS: u32 = 4;

impl App {
    /// The located descriptor, checked against the machine once per boot.
    pub async fn live_located(&self) -> Result<std::sync::Arc<Located>, Unavailable> {
        let live = self.live.as_ref().ok_or(Unavailable::NotConfigured)?;
        let located = live.located().map_err(Unavailable::Error)?;
        if self.qmp.configured() && located.boot_check_due(BOOT_CHECK_RETRY) {
            match tokio::time::timeout(BOOT_CHECK_WAIT, self.check_machine(&located)).await {
                Ok(Err(e)) => {
                    live.refuse(&located, e.clone());
                    return Err(Unavailable::Error(e));
                }
                Ok(Ok(())) if located.boot_checked() => {}
                Ok(Ok(())) | Err(_) => located.note_boot_check_unanswered(),
            }
        }
        Ok(located)
    }

    /// The file's size against QEMU's RAM, and the boot id in the file against the one in
    /// the machine's memory: a stale file (another boot, another VM) differs. When QEMU
    /// does not answer, the check waits for the next request.
    async fn check_machine(&self, located: &Located) -> Result<(), LiveError> {
        check_machine(&self.qmp, located).await
    }

    /// A snapshot of `parts`: between two equal even counts, or as it is while the stub
    /// or QEMU holds the kernel; when the kernel keeps changing, during a brief QMP stop.
    pub async fn live_snapshot(&self, parts: &Parts) -> Result<Snapshot, Unavailable> {
        let located = self.live_located().await?;
        let err = Unavailable::Error;
        let changing = match Snapshot::take(&located, parts, TRIES).map_err(err)? {
            Ok(snap) => return Ok(snap),
            Err(c) => c,
        };
        if let Some(snap) = self
            .qemu_brief_stop(&located, parts, changing.retries)
            .await?
        {
            return Ok(snap);
        }
        if let Some(snap) = self
            .stub_brief_stop(&located, parts, changing.retries)
            .await?
        {
            return Ok(snap);
        }
        Err(Unavailable::Changing {
            retries: changing.retries,
        })
    }

    /// QEMU's view: a paused VM read as it is; else brief `stop`/`cont`s until one lands
    /// at an even count (QMP stops the vCPU anywhere, also inside a change: then it runs
    /// a moment and is stopped again). `None` without QMP or when no stop landed so.
    async fn qemu_brief_stop(
        &self,
        located: &Located,
        parts: &Parts,
        retries: u32,
    ) -> Result<Option<Snapshot>, Unavailable> {
        let err = Unavailable::Error;
        if !self.qmp.configured() {
            return Ok(None);
        }
        let Ok(mut s) = self.qmp.session().await else {
            return Ok(None);
        };
        if s.running().await.ok() == Some(false) {
            let snap =
                Snapshot::take_frozen(located, parts, Consistency::Paused, retries).map_err(err)?;
            if s.running().await.ok() == Some(false) {
                return Ok(Some(snap));
            }
        }
        for _ in 0..BRIEF_STOPS {
            if s.stop().await.is_err() {
                break;
            }
            let even = located.descriptor().seq_now() & 1 == 0;
            let snap = even.then(|| {
                Snapshot::take_frozen(located, parts, Consistency::BriefStopQemu, retries)
            });
            let _ = s.cont().await;
            match snap {
                Some(snap) => return snap.map(Some).map_err(err),
                None => tokio::time::sleep(Duration::from_millis(1)).await,
            }
        }
        Ok(None)
    }

    /// The stub's view: it stops the kernel only where interrupts are on (never inside a
    /// change) and holds it while the snapshot is copied. `None` when the stub is not
    /// connected or does not stop the kernel in time.
    async fn stub_brief_stop(
        &self,
        located: &Located,
        parts: &Parts,
        retries: u32,
    ) -> Result<Option<Snapshot>, Unavailable> {
        let (hold, stopped, release) = crate::link::Hold::new();
        let link = self.link.clone();
        let timeout = self.timeout;
        let job =
            tokio::spawn(async move { link.run(vec![crate::link::Op::Hold(hold)], timeout).await });
        let held = tokio::time::timeout(self.timeout, stopped).await;
        let snap = match held {
            Ok(Ok(())) => Snapshot::take_held(located, parts, retries).map_err(Unavailable::Error),
            _ => Ok(None),
        };
        drop(release);
        let _ = job.await;
        snap
    }

    /// Computes `make` over a live snapshot of `parts`; when the document read something
    /// the snapshot did not copy, over a complete one instead (never an answer from an
    /// incomplete copy).
    pub async fn live_compute<T>(
        &self,
        parts: Parts,
        make: impl Fn(&Snapshot) -> T,
    ) -> Result<T, Unavailable> {
        let snap = self.live_snapshot(&parts).await?;
        let value = make(&snap);
        if !snap.missed() {
            return Ok(value);
        }
        let snap = self.live_snapshot(&Parts::ALL).await?;
        let value = make(&snap);
        if snap.missed() {
            // Parts::ALL copies everything a document reads: a miss here is a bug.
            return Err(Unavailable::Error(LiveError::BadLayout {
                what: "a document read what a full snapshot does not hold",
            }));
        }
        Ok(value)
    }
}

/// The file's size against QEMU's RAM, and the boot id in the file against the one in
/// the machine's memory (see [`App::live_located`]); also the gdb proxy's check before it
/// answers reads from the file.
pub async fn check_machine(qmp: &Qmp, located: &Located) -> Result<(), LiveError> {
    let Ok(mut s) = qmp.session().await else {
        return Ok(());
    };
    if let Ok(ram) = s.ram_size().await {
        if ram != located.ram.len() {
            return Err(LiveError::NotThisMachine {
                file: located.ram.len(),
                qemu: ram,
            });
        }
    }
    let Ok(words) = s.read_words(located.boot_id_addr(), 2).await else {
        return Ok(());
    };
    let machine = u64::from(words[0]) | u64::from(words[1]) << 32;
    if machine != located.header.boot_id {
        return Err(LiveError::OtherBoot {
            file: located.header.boot_id,
            machine,
        });
    }
    located.set_boot_checked();
    Ok(())
}
