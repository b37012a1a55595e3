//! The audit writer against a directory it cannot write, a disk that is full and a disk that
//! hangs: recording never blocks, drops and failed writes are counted, both are logged at most
//! once per interval, the writer stays alive, and writing resumes by itself once the fault clears.
//!
//! Tests run as root in CI, where `chmod 0555` does not stop writes; then an unwritable directory
//! is made by placing the audit directory under a regular file. A full disk is `/dev/full` (every
//! write fails with ENOSPC) and, where `mount` is allowed, a real 64 KiB tmpfs filled to the brim.
//! A hung disk is a FIFO in place of `audit.log`: opening it for writing waits for a reader.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use understudy::ops::audit::{Audit, AuditConfig, AuditHandle};

use super::{config, numbers, record_many, Logs, TempDir};

/// Record and flush `n` entries from `first`, returning how long the recording took.
async fn record_and_flush(audit: &AuditHandle, first: u64, n: u64) -> Duration {
    let took = record_many(audit, first, n);
    audit.flush().await.unwrap();
    took
}

/// Make `dir` unwritable, returning the audit directory to use and a way to undo it.
fn unwritable(dir: &Path) -> (PathBuf, Box<dyn FnOnce()>) {
    use std::os::unix::fs::PermissionsExt;
    let audit = dir.join("ro");
    std::fs::create_dir(&audit).unwrap();
    std::fs::set_permissions(&audit, std::fs::Permissions::from_mode(0o555)).unwrap();
    if std::fs::write(audit.join("probe"), b"").is_err() {
        let undo = audit.clone();
        return (
            audit,
            Box::new(move || {
                std::fs::set_permissions(&undo, std::fs::Permissions::from_mode(0o755)).unwrap()
            }),
        );
    }
    // Permissions do not bind us (root): a directory under a regular file cannot be created.
    let blocker = dir.join("blocker");
    std::fs::write(&blocker, b"a regular file").unwrap();
    (
        blocker.join("audit"),
        Box::new(move || std::fs::remove_file(&blocker).unwrap()),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unwritable_directory_costs_entries_but_never_the_caller_or_the_writer() {
    let dir = TempDir::new();
    let (audit_dir, undo) = unwritable(dir.path());
    let (audit, task) = Audit::start(AuditConfig {
        queue: 256,
        ..config(&audit_dir)
    });
    // The writer runs on the other worker meanwhile, failing batch after batch.
    let mut slowest = Duration::ZERO;
    for round in 0..10 {
        slowest = slowest.max(record_many(&audit, round * 10_000, 10_000));
    }
    assert!(
        slowest < Duration::from_secs(2),
        "10,000 records took {slowest:?}"
    );
    audit.flush().await.unwrap();
    let stats = audit.stats();
    assert!(stats.write_errors >= 1, "{stats:?}");
    assert_eq!(stats.written, 0, "{stats:?}");
    assert_eq!(
        stats.recorded, stats.lost,
        "every accepted entry was lost: {stats:?}"
    );
    assert_eq!(stats.recorded + stats.dropped, 100_000, "{stats:?}");
    assert!(!task.is_finished(), "the writer survives");

    undo();
    record_and_flush(&audit, 1_000_000, 3).await;
    assert_eq!(audit.stats().written, 3, "writing resumed by itself");
    let back = audit.read(None, 10).await.unwrap();
    assert_eq!(numbers(&back), [1_000_000, 1_000_001, 1_000_002]);
}

#[tokio::test(start_paused = true)]
async fn a_full_disk_is_counted_logged_once_per_interval_and_recovered_from() {
    let (logs, _guard) = Logs::capture();
    let dir = TempDir::new();
    let active = dir.path().join("audit.log");
    std::os::unix::fs::symlink("/dev/full", &active).unwrap();
    let (audit, task) = Audit::start(config(dir.path()));

    let took = record_and_flush(&audit, 0, 5).await;
    assert!(took < Duration::from_secs(1));
    for round in 1..=5 {
        record_and_flush(&audit, round * 10, 5).await;
    }
    let stats = audit.stats();
    assert_eq!((stats.written, stats.lost), (0, 30), "{stats:?}");
    assert_eq!(stats.write_errors, 6, "one per failed batch: {stats:?}");
    let failed = logs.lines("audit log write failed");
    assert_eq!(failed.len(), 1, "once per interval: {failed:#?}");
    assert!(failed[0].contains("ERROR") && failed[0].contains("No space left"));

    // A later failure, one interval on, is told with the counts since the last line.
    tokio::time::sleep(Duration::from_secs(10)).await;
    record_and_flush(&audit, 100, 2).await;
    let failed = logs.lines("audit log write failed");
    assert_eq!(failed.len(), 2, "{failed:#?}");
    assert!(failed[1].contains("failures=6 lost=27"), "{}", failed[1]);

    // The disk has room again: the next batch opens a real file and writes.
    std::fs::remove_file(&active).unwrap();
    record_and_flush(&audit, 200, 3).await;
    assert_eq!(audit.stats().written, 3);
    let resumed = logs.lines("audit log writing works again");
    assert_eq!(resumed.len(), 1, "{resumed:#?}");
    assert!(resumed[0].contains("WARN") && resumed[0].contains("failures=7 lost=32"));
    assert_eq!(
        numbers(&audit.read(None, 10).await.unwrap()),
        [200, 201, 202]
    );
    assert!(!task.is_finished());
}

/// A 64 KiB tmpfs mounted for one test and unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    /// `None` when this process may not mount (not root, or no CAP_SYS_ADMIN in a container).
    fn mount(at: &Path) -> Option<Self> {
        std::fs::create_dir_all(at).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=64k", "understudy-audit-test"])
            .arg(at)
            .output()
            .ok()?;
        status.status.success().then(|| Self(at.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_full_file_system_is_survived() {
    let dir = TempDir::new();
    let Some(fs) = Tmpfs::mount(&dir.path().join("mnt")) else {
        eprintln!("skipped: cannot mount a tmpfs here (needs root with CAP_SYS_ADMIN)");
        return;
    };
    let audit_dir = fs.0.join("audit");
    let (audit, task) = Audit::start(config(&audit_dir));
    record_and_flush(&audit, 0, 1).await;
    assert_eq!(audit.stats().written, 1);

    // Fill the file system to the last byte.
    let filler = fs.0.join("filler");
    let chunk = vec![b'x'; 4096];
    let mut file = std::fs::File::create(&filler).unwrap();
    let full = (0..64).find_map(|_| std::io::Write::write_all(&mut file, &chunk).err());
    assert_eq!(full.and_then(|e| e.raw_os_error()), Some(28), "ENOSPC");
    drop(file);

    let mut slowest = Duration::ZERO;
    for round in 0..20 {
        slowest = slowest.max(record_many(&audit, 1_000 + round * 500, 500));
        audit.flush().await.unwrap();
    }
    assert!(
        slowest < Duration::from_secs(2),
        "500 records took {slowest:?}"
    );
    let stats = audit.stats();
    assert!(stats.write_errors >= 1 && stats.lost >= 1, "{stats:?}");
    assert!(!task.is_finished());

    std::fs::remove_file(&filler).unwrap();
    let before = audit.stats().written;
    record_and_flush(&audit, 100_000, 3).await;
    assert_eq!(audit.stats().written, before + 3, "writing resumed");
    let tail = audit.tail(3).await.unwrap();
    assert_eq!(numbers(&tail), [100_000, 100_001, 100_002]);
    drop(audit);
    task.await.unwrap();
}

/// On drop (a failed assertion), opens the FIFO's read end if it is still there, so the writer's
/// blocked open returns and the runtime can shut down instead of hanging the test run.
struct Unblock(PathBuf);

impl Drop for Unblock {
    fn drop(&mut self) {
        if self.0.exists() {
            let path = self.0.clone();
            std::thread::spawn(move || drop(std::fs::File::open(path)));
        }
    }
}

/// Read from `pipe` until a whole line has arrived.
fn first_line(mut pipe: std::fs::File) -> Vec<u8> {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while !line.ends_with(b"\n") {
        match std::io::Read::read(&mut pipe, &mut byte).unwrap() {
            0 => break,
            _ => line.push(byte[0]),
        }
    }
    line
}

#[tokio::test]
async fn a_hung_disk_stalls_only_the_writer() {
    let (logs, _guard) = Logs::capture();
    let dir = TempDir::new();
    // A FIFO with no reader: opening it for writing hangs, as a dead disk would.
    let fifo = dir.path().join("audit.log");
    if !Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .is_ok_and(|s| s.success())
    {
        eprintln!("skipped: mkfifo is not available");
        return;
    }
    let _unblock = Unblock(fifo.clone());
    let (audit, task) = Audit::start(AuditConfig {
        queue: 16,
        ..config(dir.path())
    });
    audit.record(super::entry(0));
    tokio::task::yield_now().await;

    // The writer is stuck on the disk; recording is not.
    let took = record_many(&audit, 1, 10_000);
    assert!(
        took < Duration::from_secs(2),
        "10,000 records took {took:?}"
    );
    assert!(audit.dropped() >= 10_000 - 16, "{:?}", audit.stats());
    // The drops are reported while the writer still waits on the disk.
    for _ in 0..1000 {
        if !logs.lines("audit entries dropped").is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(logs.lines("audit entries dropped").len(), 1);
    assert_eq!(audit.stats().written, 0);
    // Reading back does not wait on the FIFO either.
    let read = tokio::time::timeout(Duration::from_secs(10), audit.read(None, 10)).await;
    assert!(read.expect("reading does not hang").unwrap().is_empty());

    // The disk answers: the writer's open completes and the first entry comes through.
    let reader = std::fs::File::open(&fifo).unwrap();
    std::fs::remove_file(&fifo).unwrap();
    let line = tokio::time::timeout(
        Duration::from_secs(10),
        tokio::task::spawn_blocking(move || first_line(reader)),
    )
    .await
    .expect("the writer writes once the disk answers")
    .unwrap();
    let first: serde_json::Value = serde_json::from_slice(&line).unwrap();
    assert_eq!(first["details"]["i"], 0);

    // With the pipe gone the writer fails once (EPIPE), then opens a real file and carries on.
    let mut written = Vec::new();
    for i in 0..10 {
        record_and_flush(&audit, 20_000 + i, 1).await;
        written = numbers(&audit.read(None, 100).await.unwrap());
        if !written.is_empty() {
            break;
        }
    }
    assert!(written.first().is_some_and(|&n| n >= 20_000), "{written:?}");
    assert!(!task.is_finished());
}
