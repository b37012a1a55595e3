//! The audit trail: who changed the mode and why, every automatic transition, drains,
//! maintenance windows, rejected admin calls and config reloads, as JSON lines on disk.
//!
//! Recording never makes the caller wait. [`AuditHandle::record`] is synchronous and only
//! `try_send`s into a bounded queue (a compare-and-swap on the queue's permits; no lock the writer
//! takes). When the queue is full the entry is dropped and counted, and the writer logs one ERROR
//! per `report_interval` with the number dropped. One background task ([`Audit::start`]) owns the
//! files and does all file I/O on a blocking thread, so a slow or full disk stalls that task only.
//! A failed write is counted, reported at most once per interval, and its batch is thrown away
//! (nothing is buffered without bound); the next batch tries again from the directory.
//!
//! On disk, in `dir`: `audit.log` is the active segment; before a line would take it past
//! `max_segment_bytes` it is renamed to `audit.000001.log`, `audit.000002.log`, ... (increasing).
//! Pruning deletes whole rotated segments: beyond `max_segments` files in all, and those last
//! written more than `max_age` ago. No file is ever rewritten; each housekeeping step is one
//! rename or unlink. Read it back with [`read`], [`tail`] or the handle's async versions.
//!
//! # Configuration keys (proposed for the config file)
//! ```toml
//! [audit]
//! # Directory for audit.log and its rotated segments; created on the first write.
//! dir = "./data/audit"
//! # Entries waiting for the writer; beyond this they are dropped and counted.
//! queue = 1024
//! # Rotate the active segment before it would pass this size (8 MiB).
//! max_segment_bytes = 8388608
//! # Segments kept, the active one included; older ones are deleted whole.
//! max_segments = 20
//! # Rotated segments last written longer ago than this are deleted (30 days).
//! max_age_secs = 2592000
//! # Buffered entries reach the file at least this often under load (and at once when idle).
//! flush_interval_ms = 1000
//! # Drops and write failures are logged at ERROR at most once per this interval.
//! report_interval_ms = 10000
//! ```
//!
//! # Layout
//! - `config`: [`AuditConfig`], its defaults and validation.
//! - `entry`: [`AuditEntry`] and [`AuditAction`].
//! - `line`: one entry as one bounded, redacted JSON line, and back.
//! - `segments`: file names, listing, pruning.
//! - `active`: the active segment: append, flush, rotate.
//! - `outcome`: what a call on the files did, and the failure that stopped it.
//! - `writer`: the background task.
//! - `report`: rate-limited ERROR and WARN lines.
//! - `read`: reading back.

mod active;
mod entry;
mod error;
mod line;
mod outcome;
mod read;
mod report;
pub mod sampled;
mod segments;
#[cfg(test)]
pub(crate) mod testdir;
mod writer;

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde::Serialize;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

pub use crate::config::AuditConfig;
pub use entry::{now_ms, AuditAction, AuditEntry};
pub use error::AuditError;
pub use read::{read, tail, MAX_READ_LIMIT};

use writer::{Message, Writer};

/// Every refused admin call, sampled or not.
pub const ADMIN_REFUSED_TOTAL: &str = "understudy_admin_refused_total";

/// Starts the audit writer.
#[derive(Debug)]
pub struct Audit;

impl Audit {
    /// Spawn the writer task on the current runtime and return the handle to record with. The
    /// task ends once every handle has been dropped and what was queued has been written; await
    /// the `JoinHandle` (with a time limit: a hung disk can hold it) to know it is done. The
    /// directory is created on the first write; an unusable one shows in the counters and the
    /// log, never as an error here. Validate `config` with [`AuditConfig::problems`] first.
    ///
    /// # Panics
    /// Outside a Tokio runtime.
    pub fn start(config: AuditConfig) -> (AuditHandle, JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(config.queue.max(1));
        let counters = Arc::new(Counters::default());
        let handle = AuditHandle {
            tx: Some(tx),
            counters: counters.clone(),
            dir: Some(Arc::from(config.dir.as_path())),
            refusals: Arc::default(),
        };
        let task = tokio::spawn(Writer::new(rx, config, counters).run());
        (handle, task)
    }
}

/// Records entries. Cheap to clone; every clone feeds the same writer.
#[derive(Debug, Clone)]
pub struct AuditHandle {
    /// `None` for a disabled handle.
    tx: Option<mpsc::Sender<Message>>,
    counters: Arc<Counters>,
    /// `None` for a disabled handle.
    dir: Option<Arc<Path>>,
    /// Refused admin calls, sampled.
    refusals: Arc<sampled::Sampler>,
}

impl AuditHandle {
    /// A handle that records nothing and reads nothing (audit off, or tests of other modules).
    pub fn disabled() -> Self {
        Self {
            tx: None,
            counters: Arc::default(),
            dir: None,
            refusals: Arc::default(),
        }
    }

    /// Records a refused admin call, sampled: every refusal is counted, and at most one entry
    /// per [`sampled::SAMPLE_WINDOW`] is written, built by `entry` from the number of refusals it
    /// stands for. Answers whether an entry was written (callers log only then).
    pub fn record_refusal(&self, entry: impl FnOnce(u64) -> AuditEntry) -> bool {
        metrics::counter!(ADMIN_REFUSED_TOTAL).increment(1);
        match self.refusals.note(tokio::time::Instant::now()) {
            Some(n) => {
                self.record(entry(n));
                true
            }
            None => false,
        }
    }

    /// Queue `entry` for writing. Never blocks and never waits: when the queue is full (or the
    /// writer has stopped) the entry is dropped and counted, and `false` is returned.
    pub fn record(&self, entry: AuditEntry) -> bool {
        let Some(tx) = &self.tx else {
            return false;
        };
        match tx.try_send(Message::Entry(entry)) {
            Ok(()) => {
                self.counters.recorded.fetch_add(1, Ordering::Relaxed);
                true
            }
            Err(_) => {
                self.counters.dropped.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }

    /// The counters, for `/metrics` and the status page.
    pub fn stats(&self) -> AuditStats {
        self.counters.snapshot()
    }

    /// Entries dropped because the queue was full or the writer had stopped.
    pub fn dropped(&self) -> u64 {
        self.counters.dropped.load(Ordering::Relaxed)
    }

    /// Failed file operations.
    pub fn write_errors(&self) -> u64 {
        self.counters.write_errors.load(Ordering::Relaxed)
    }

    /// The audit directory (`None` when disabled).
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// Wait until everything recorded before this call has been written (or counted as lost).
    /// For shutdown, tests and read-after-write; never on a hot path: it waits for queue space.
    pub async fn flush(&self) -> Result<(), AuditError> {
        let Some(tx) = &self.tx else {
            return Ok(());
        };
        let (done, wait) = oneshot::channel();
        tx.send(Message::Flush(done))
            .await
            .map_err(|_| AuditError::WriterStopped)?;
        wait.await.map_err(|_| AuditError::WriterStopped)
    }

    /// [`read`] on a blocking thread: up to `limit` entries with `ts >= since_ms`, oldest first.
    pub async fn read(
        &self,
        since_ms: Option<u64>,
        limit: usize,
    ) -> Result<Vec<AuditEntry>, AuditError> {
        let Some(dir) = self.dir.clone() else {
            return Ok(Vec::new());
        };
        tokio::task::spawn_blocking(move || read::read(&dir, since_ms, limit)).await?
    }

    /// [`tail`] on a blocking thread: the newest `limit` entries, oldest first.
    pub async fn tail(&self, limit: usize) -> Result<Vec<AuditEntry>, AuditError> {
        let Some(dir) = self.dir.clone() else {
            return Ok(Vec::new());
        };
        tokio::task::spawn_blocking(move || read::tail(&dir, limit)).await?
    }
}

/// The audit trail's counters since start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct AuditStats {
    /// Entries accepted into the queue.
    pub recorded: u64,
    /// Entries refused because the queue was full or the writer had stopped.
    pub dropped: u64,
    /// Entries that reached the file.
    pub written: u64,
    /// Entries accepted but thrown away by a failed write (some may have reached the file).
    pub lost: u64,
    /// Failed file operations (create, open, write, flush, rotate, prune).
    pub write_errors: u64,
}

/// The running counts behind [`AuditStats`]: atomics shared by the handles and the writer, so
/// reading or bumping them never takes a lock.
#[derive(Debug, Default)]
struct Counters {
    recorded: AtomicU64,
    dropped: AtomicU64,
    written: AtomicU64,
    lost: AtomicU64,
    write_errors: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> AuditStats {
        AuditStats {
            recorded: self.recorded.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            written: self.written.load(Ordering::Relaxed),
            lost: self.lost.load(Ordering::Relaxed),
            write_errors: self.write_errors.load(Ordering::Relaxed),
        }
    }
}

/// Add `n` to `counter`.
fn add(counter: &AtomicU64, n: u64) {
    if n > 0 {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}
