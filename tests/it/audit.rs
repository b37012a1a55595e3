//! The audit trail end to end through its public API, against real files: entries round-trip,
//! rotation and pruning through the writer, reading back, shutdown, the non-blocking recorder and
//! its rate-limited reports. Disk faults are in `audit/faults.rs`.

mod faults;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde_json::json;
use tokio::time::Instant;
use understudy::ops::audit::{Audit, AuditAction, AuditConfig, AuditEntry, AuditHandle};

/// A scratch directory, removed when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "understudy-audit-it-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        Self(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Test settings: small intervals so paused-clock tests run few ticks.
pub fn config(dir: &Path) -> AuditConfig {
    AuditConfig {
        flush_interval: Duration::from_millis(100),
        report_interval: Duration::from_secs(10),
        ..AuditConfig::in_dir(dir)
    }
}

pub fn entry(i: u64) -> AuditEntry {
    AuditEntry::new("oncall-alice", AuditAction::ModeChanged)
        .with_details(json!({ "i": i, "from": "auto", "to": "self" }))
        .with_reason(format!("change {i}"))
}

pub fn numbers(entries: &[AuditEntry]) -> Vec<u64> {
    entries
        .iter()
        .map(|e| e.details["i"].as_u64().unwrap())
        .collect()
}

/// Record `n` entries without awaiting and return how long that took.
pub fn record_many(audit: &AuditHandle, first: u64, n: u64) -> Duration {
    let start = Instant::now();
    for i in first..first + n {
        audit.record(entry(i));
    }
    start.elapsed()
}

/// The file names in `dir`, sorted.
fn files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

/// Log lines captured from the tracing events of the current thread.
#[derive(Clone, Default)]
pub struct Logs(Arc<Mutex<Vec<u8>>>);

impl Logs {
    /// Capture this thread's events until the guard is dropped (the current-thread runtime of a
    /// `#[tokio::test]` runs the writer task on this thread too).
    pub fn capture() -> (Self, tracing::subscriber::DefaultGuard) {
        // tracing-core takes a shortcut when exactly one dispatcher is registered: a callsite
        // first hit on another test's thread (with no subscriber) is then cached as disabled for
        // every thread. A second dispatcher kept alive for the whole run rules the shortcut out.
        static SECOND: std::sync::OnceLock<tracing::Dispatch> = std::sync::OnceLock::new();
        SECOND.get_or_init(|| tracing::Dispatch::new(tracing::subscriber::NoSubscriber::default()));
        let logs = Self::default();
        let writer = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        (logs, tracing::subscriber::set_default(subscriber))
    }

    pub fn lines(&self, containing: &str) -> Vec<String> {
        let bytes = self.0.lock().unwrap().clone();
        String::from_utf8_lossy(&bytes)
            .lines()
            .filter(|l| l.contains(containing))
            .map(str::to_string)
            .collect()
    }
}

impl io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn entries_round_trip_through_the_writer() {
    let dir = TempDir::new();
    let (audit, task) = Audit::start(config(dir.path()));
    let recorded: Vec<AuditEntry> = (0..5).map(entry).collect();
    for e in &recorded {
        assert!(audit.record(e.clone()));
    }
    audit.flush().await.unwrap();
    assert_eq!(audit.read(None, 100).await.unwrap(), recorded);
    assert_eq!(audit.tail(2).await.unwrap(), recorded[3..]);
    let stats = audit.stats();
    assert_eq!((stats.recorded, stats.written), (5, 5));
    assert_eq!((stats.dropped, stats.lost, stats.write_errors), (0, 0, 0));
    assert_eq!(files(dir.path()), ["audit.log"]);
    let text = std::fs::read_to_string(dir.path().join("audit.log")).unwrap();
    assert_eq!(text.lines().count(), 5, "one JSON object per line");
    drop(audit);
    task.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn the_writer_flushes_by_itself_when_the_queue_runs_empty() {
    let dir = TempDir::new();
    let (audit, _task) = Audit::start(config(dir.path()));
    audit.record(entry(1));
    let mut found = Vec::new();
    for _ in 0..100 {
        found = audit.read(None, 10).await.unwrap();
        if !found.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(numbers(&found), [1]);
}

#[tokio::test]
async fn the_writer_rotates_at_the_size_limit_and_keeps_the_segment_count() {
    let dir = TempDir::new();
    let (audit, _task) = Audit::start(AuditConfig {
        max_segment_bytes: 4096,
        max_segments: 3,
        ..config(dir.path())
    });
    for round in 0..10 {
        record_many(&audit, round * 50, 50);
        audit.flush().await.unwrap();
    }
    assert_eq!(audit.stats().written, 500);
    let names = files(dir.path());
    assert_eq!(names.len(), 3, "{names:?}");
    assert_eq!(names[2], "audit.log");
    let first: u64 = names[0][6..12].parse().unwrap();
    let second: u64 = names[1][6..12].parse().unwrap();
    assert_eq!(second, first + 1, "{names:?}");
    assert!(
        first > 10,
        "~150-byte lines in 4 KiB segments rotate often: {names:?}"
    );
    for name in &names[..2] {
        let len = std::fs::metadata(dir.path().join(name)).unwrap().len();
        assert!(len <= 4096, "{name} is {len} bytes");
    }
    // What is kept is the newest run of entries, in order, ending with the last one.
    let kept = numbers(&audit.read(None, 1000).await.unwrap());
    assert!(kept.len() > 20, "{}", kept.len());
    let expected: Vec<u64> = (500 - kept.len() as u64..500).collect();
    assert_eq!(kept, expected);
}

#[tokio::test(start_paused = true)]
async fn the_writer_prunes_old_and_surplus_segments_without_being_asked() {
    let dir = TempDir::new();
    let day = Duration::from_secs(86_400);
    let now = SystemTime::now();
    for n in 1..=30u64 {
        let path = dir.path().join(format!("audit.{n:06}.log"));
        std::fs::write(&path, b"").unwrap();
        let age = if n <= 10 { 40 * day } else { day };
        let file = std::fs::File::options().write(true).open(&path).unwrap();
        file.set_modified(now - age).unwrap();
    }
    let (audit, _task) = Audit::start(AuditConfig {
        max_segments: 5,
        ..config(dir.path())
    });
    let mut names = files(dir.path());
    for _ in 0..100 {
        names = files(dir.path());
        if names.len() <= 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let expected: Vec<String> = (27..=30).map(|n| format!("audit.{n:06}.log")).collect();
    assert_eq!(names, expected);
    // New writing carries on numbering after what is there.
    audit.record(entry(1));
    audit.flush().await.unwrap();
    assert_eq!(audit.stats().written, 1);
    assert!(dir.path().join("audit.log").exists());
}

#[tokio::test]
async fn reading_back_honours_since_and_limit() {
    let dir = TempDir::new();
    let (audit, _task) = Audit::start(config(dir.path()));
    for i in 0..20 {
        audit.record(entry(i).at(1_000 + i * 10));
    }
    audit.flush().await.unwrap();
    let page = audit.read(Some(1_050), 5).await.unwrap();
    assert_eq!(numbers(&page), [5, 6, 7, 8, 9]);
    let next = audit.read(Some(page[4].ts + 1), 100).await.unwrap();
    assert_eq!(numbers(&next), (10..20).collect::<Vec<_>>());
    assert_eq!(numbers(&audit.tail(3).await.unwrap()), [17, 18, 19]);
    assert!(audit.read(Some(5_000), 10).await.unwrap().is_empty());
}

#[tokio::test]
async fn dropping_every_handle_writes_what_was_queued_and_ends_the_writer() {
    let dir = TempDir::new();
    let (audit, task) = Audit::start(config(dir.path()));
    record_many(&audit, 0, 10);
    let reader = dir.path().to_path_buf();
    drop(audit);
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("the writer ends")
        .unwrap();
    let entries = understudy::ops::audit::read(&reader, None, 100).unwrap();
    assert_eq!(numbers(&entries), (0..10).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_full_queue_drops_and_counts_without_blocking_the_caller() {
    let dir = TempDir::new();
    let (audit, task) = Audit::start(AuditConfig {
        queue: 64,
        ..config(dir.path())
    });
    // The writer shares this thread and cannot run until we await: the queue fills at once.
    let took = record_many(&audit, 0, 10_000);
    assert!(
        took < Duration::from_secs(2),
        "10,000 records took {took:?}"
    );
    let stats = audit.stats();
    assert_eq!((stats.recorded, stats.dropped), (64, 9_936));
    audit.flush().await.unwrap();
    assert_eq!(audit.stats().written, 64);
    assert_eq!(audit.dropped(), 9_936);
    assert!(!task.is_finished());
    // After the writer has drained the queue, recording works again.
    assert!(audit.record(entry(10_000)));
}

#[tokio::test(start_paused = true)]
async fn drops_are_logged_once_per_interval_with_their_count() {
    let (logs, _guard) = Logs::capture();
    let dir = TempDir::new();
    let (audit, _task) = Audit::start(AuditConfig {
        queue: 8,
        ..config(dir.path())
    });
    record_many(&audit, 0, 100);
    audit.flush().await.unwrap();
    record_many(&audit, 100, 100);
    audit.flush().await.unwrap();
    record_many(&audit, 200, 100);
    audit.flush().await.unwrap();
    let dropped = logs.lines("audit entries dropped");
    assert_eq!(dropped.len(), 1, "{dropped:#?}");
    assert!(dropped[0].contains("dropped=92 "), "{}", dropped[0]);
    assert!(dropped[0].contains("ERROR"), "{}", dropped[0]);
    // The next line comes one interval later and carries everything dropped since.
    tokio::time::sleep(Duration::from_secs(11)).await;
    let dropped = logs.lines("audit entries dropped");
    assert_eq!(dropped.len(), 2, "{dropped:#?}");
    assert!(dropped[1].contains("dropped=184 "), "{}", dropped[1]);
    // Nothing new dropped, nothing more said.
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(logs.lines("audit entries dropped").len(), 2);
    assert_eq!(audit.dropped(), 276);
}

#[tokio::test]
async fn a_disabled_handle_records_and_reads_nothing() {
    let audit = AuditHandle::disabled();
    assert!(!audit.record(entry(1)));
    audit.flush().await.unwrap();
    assert!(audit.read(None, 10).await.unwrap().is_empty());
    assert_eq!(audit.stats(), Default::default());
    assert_eq!(audit.dir(), None);
}
