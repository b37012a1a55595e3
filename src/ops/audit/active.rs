//! The active segment: opening it (creating the directory, ending a torn last line left by a
//! crash or a full disk), appending lines through a `BufWriter`, flushing, rotating it into the
//! next numbered segment when a line would take it past the size limit, and pruning after each
//! rotation. Owned by the writer task and only ever used on a blocking thread; any failure
//! discards the open file and its buffer, and the next call starts again from the directory.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::entry::AuditEntry;
use super::line;
use super::outcome::{at, Failure, Outcome, Step};
use super::segments::{self, ACTIVE};
use super::AuditConfig;

/// Buffer in front of the active file.
const BUFFER_BYTES: usize = 64 * 1024;

/// The active segment and what the writer knows about the directory.
#[derive(Debug)]
pub(super) struct Active {
    dir: PathBuf,
    max_segment_bytes: u64,
    /// Rotated segments kept besides the active one (`max_segments - 1`).
    keep: usize,
    max_age: Duration,
    /// The open active segment. `None` before the first write and after any failure.
    file: Option<BufWriter<File>>,
    /// Bytes in the active segment, buffered ones included. Valid while `file` is open.
    len: u64,
    /// Entries in the buffer since the last successful flush.
    unflushed: u64,
    /// The number the next rotated segment gets; `None` until the directory has been scanned.
    next_number: Option<u64>,
}

impl Active {
    pub(super) fn new(config: &AuditConfig) -> Self {
        Self {
            dir: config.dir.clone(),
            max_segment_bytes: config.max_segment_bytes,
            keep: config.max_segments.saturating_sub(1),
            max_age: config.max_age,
            file: None,
            len: 0,
            unflushed: 0,
            next_number: None,
        }
    }

    /// Whether entries sit in the buffer.
    pub(super) fn is_dirty(&self) -> bool {
        self.unflushed > 0
    }

    /// Append `entries` in order, then flush if `flush` is set. On the first failure the open
    /// file and everything buffered are discarded and the rest of `entries` is counted as lost:
    /// nothing is kept back to retry, so memory stays bounded whatever the disk does.
    pub(super) fn append(
        &mut self,
        entries: Vec<AuditEntry>,
        flush: bool,
        now: SystemTime,
    ) -> Outcome {
        let mut out = Outcome::default();
        let total = entries.len() as u64;
        for (i, entry) in entries.into_iter().enumerate() {
            if let Err(failure) = self.append_line(&line::encode(entry), now, &mut out) {
                self.fail(failure, total - i as u64, &mut out);
                return out;
            }
        }
        if flush {
            if let Err(failure) = self.flush(&mut out) {
                self.fail(failure, 0, &mut out);
            }
        }
        out
    }

    /// Flush what is buffered; rotate an active segment last written more than `max_age` ago (so
    /// a quiet log still ages out); prune.
    pub(super) fn housekeep(&mut self, now: SystemTime) -> Outcome {
        let mut out = Outcome::default();
        if let Err(failure) = self.flush(&mut out) {
            self.fail(failure, 0, &mut out);
            return out;
        }
        let active = self.dir.join(ACTIVE);
        let stale = fs::metadata(&active).is_ok_and(|m| {
            m.len() > 0
                && m.modified()
                    .is_ok_and(|t| now.checked_sub(self.max_age) > Some(t))
        });
        if stale {
            if let Err(failure) = self.rotate(now, &mut out) {
                self.fail(failure, 0, &mut out);
            }
        } else {
            self.prune(now, &mut out);
        }
        out
    }

    /// Flush what is buffered and close the file (the writer is stopping).
    pub(super) fn close(&mut self) -> Outcome {
        let mut out = Outcome::default();
        match self.flush(&mut out) {
            Ok(()) => self.file = None,
            Err(failure) => self.fail(failure, 0, &mut out),
        }
        out
    }

    fn append_line(
        &mut self,
        line: &[u8],
        now: SystemTime,
        out: &mut Outcome,
    ) -> Result<(), Failure> {
        let len = line.len() as u64;
        if self.file.is_none() {
            self.open()?;
        }
        if self.len > 0 && self.len + len > self.max_segment_bytes {
            self.rotate(now, out)?;
            self.open()?;
        }
        let file = self.file.as_mut().ok_or_else(|| Failure {
            step: Step::Open,
            source: io::Error::other("the active segment is not open"),
        })?;
        file.write_all(line).map_err(at(Step::Write))?;
        self.len += len;
        self.unflushed += 1;
        Ok(())
    }

    fn flush(&mut self, out: &mut Outcome) -> Result<(), Failure> {
        if let Some(file) = self.file.as_mut() {
            file.flush().map_err(at(Step::Flush))?;
        }
        out.written += std::mem::take(&mut self.unflushed);
        Ok(())
    }

    /// Open (creating) the active segment, first scanning the directory for the next segment
    /// number if that is not known yet.
    fn open(&mut self) -> Result<(), Failure> {
        fs::create_dir_all(&self.dir).map_err(at(Step::CreateDir))?;
        if self.next_number.is_none() {
            let last = segments::list(&self.dir)
                .map_err(at(Step::Open))?
                .last()
                .map(|s| s.number);
            self.next_number = Some(last.map_or(1, |n| n.saturating_add(1)));
        }
        let path = self.dir.join(ACTIVE);
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(at(Step::Open))?;
        let meta = file.metadata().map_err(at(Step::Open))?;
        let mut len = meta.len();
        if len > 0 && meta.is_file() && !ends_with_newline(&path).map_err(at(Step::Open))? {
            // A torn line (crash, full disk): end it so the next entry starts on its own line.
            file.write_all(b"\n").map_err(at(Step::Write))?;
            len += 1;
        }
        self.file = Some(BufWriter::with_capacity(BUFFER_BYTES, file));
        self.len = len;
        Ok(())
    }

    /// Close the active segment and rename it to the next numbered segment, then prune.
    fn rotate(&mut self, now: SystemTime, out: &mut Outcome) -> Result<(), Failure> {
        self.flush(out)?;
        self.file = None;
        let from = self.dir.join(ACTIVE);
        let mut number = match self.next_number {
            Some(n) => n,
            None => segments::list(&self.dir)
                .map_err(at(Step::Rotate))?
                .last()
                .map_or(1, |s| s.number.saturating_add(1)),
        };
        // Never rename over an existing segment (that would replace it).
        while self.dir.join(segments::segment_name(number)).exists() {
            number = number.saturating_add(1);
        }
        fs::rename(&from, self.dir.join(segments::segment_name(number)))
            .map_err(at(Step::Rotate))?;
        self.next_number = Some(number.saturating_add(1));
        self.len = 0;
        out.rotated += 1;
        self.prune(now, out);
        Ok(())
    }

    fn prune(&mut self, now: SystemTime, out: &mut Outcome) {
        let pruned = segments::prune(&self.dir, self.keep, self.max_age, now);
        out.deleted += pruned.deleted;
        if let Some(source) = pruned.error {
            out.housekeeping = Some(Failure {
                step: Step::Prune,
                source,
            });
        }
    }

    /// Give up the open file and its buffer without writing them, counting what they held.
    fn fail(&mut self, failure: Failure, not_written: u64, out: &mut Outcome) {
        if let Some(file) = self.file.take() {
            // `into_parts` hands back the buffer instead of flushing it on drop.
            let (_file, _buffered) = file.into_parts();
        }
        out.lost += std::mem::take(&mut self.unflushed) + not_written;
        out.failure = Some(failure);
    }
}

fn ends_with_newline(path: &Path) -> io::Result<bool> {
    let mut file = File::open(path)?;
    file.seek(SeekFrom::End(-1))?;
    let mut last = [0u8; 1];
    file.read_exact(&mut last)?;
    Ok(last[0] == b'\n')
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::ops::audit::testdir::TestDir;
    use crate::ops::audit::AuditAction;

    fn config(dir: &Path, max_segment_bytes: u64, max_segments: usize) -> AuditConfig {
        AuditConfig {
            max_segment_bytes,
            max_segments,
            ..AuditConfig::in_dir(dir)
        }
    }

    fn entries(range: std::ops::Range<u64>) -> Vec<AuditEntry> {
        range
            .map(|i| {
                AuditEntry::system(AuditAction::TransitionAuto)
                    .with_details(json!({ "i": i }))
                    .at(1_000 + i)
            })
            .collect()
    }

    fn lines(path: &Path) -> Vec<u64> {
        fs::read_to_string(path)
            .unwrap()
            .lines()
            .filter_map(|l| line::decode(l.as_bytes()))
            .map(|e| e.details["i"].as_u64().unwrap())
            .collect()
    }

    #[test]
    fn lines_reach_the_file_only_when_flushed() {
        let dir = TestDir::new();
        let mut active = Active::new(&config(dir.path(), 1 << 20, 5));
        let out = active.append(entries(0..3), false, SystemTime::now());
        assert_eq!((out.written, out.lost), (0, 0));
        assert!(active.is_dirty());
        let out = active.housekeep(SystemTime::now());
        assert_eq!(out.written, 3);
        assert!(!active.is_dirty());
        assert_eq!(lines(&dir.path().join(ACTIVE)), [0, 1, 2]);
    }

    #[test]
    fn rotation_happens_at_the_size_limit_with_increasing_numbers() {
        let dir = TestDir::new();
        let line_len = line::encode(entries(99..100).remove(0)).len() as u64;
        // Room for exactly four lines per segment.
        let mut active = Active::new(&config(dir.path(), 4 * line_len, 100));
        let out = active.append(entries(0..10), true, SystemTime::now());
        assert_eq!((out.written, out.lost, out.rotated), (10, 0, 2));
        assert_eq!(lines(&dir.path().join("audit.000001.log")), [0, 1, 2, 3]);
        assert_eq!(lines(&dir.path().join("audit.000002.log")), [4, 5, 6, 7]);
        assert_eq!(lines(&dir.path().join(ACTIVE)), [8, 9]);
        for n in 1..=2 {
            let len = fs::metadata(dir.path().join(segments::segment_name(n)))
                .unwrap()
                .len();
            assert!(len <= 4 * line_len);
        }
        // A new writer over the same directory carries on numbering after the highest segment.
        let mut again = Active::new(&config(dir.path(), 4 * line_len, 100));
        again.append(entries(10..13), true, SystemTime::now());
        assert_eq!(lines(&dir.path().join("audit.000003.log")), [8, 9, 10, 11]);
        assert_eq!(lines(&dir.path().join(ACTIVE)), [12]);
    }

    #[test]
    fn rotation_prunes_down_to_the_segment_count() {
        let dir = TestDir::new();
        let line_len = line::encode(entries(99..100).remove(0)).len() as u64;
        let mut active = Active::new(&config(dir.path(), 2 * line_len, 3));
        let out = active.append(entries(0..20), true, SystemTime::now());
        assert_eq!(out.written, 20);
        let numbers: Vec<u64> = segments::list(dir.path())
            .unwrap()
            .iter()
            .map(|s| s.number)
            .collect();
        assert_eq!(numbers, [8, 9], "two rotated segments plus the active one");
        assert_eq!(lines(&dir.path().join("audit.000009.log")), [16, 17]);
        assert_eq!(lines(&dir.path().join(ACTIVE)), [18, 19]);
    }

    #[test]
    fn a_torn_last_line_is_ended_before_appending() {
        let dir = TestDir::new();
        let path = dir.path().join(ACTIVE);
        let torn = line::encode(entries(0..1).remove(0));
        fs::write(&path, &torn[..torn.len() / 2]).unwrap();
        let mut active = Active::new(&config(dir.path(), 1 << 20, 5));
        active.append(entries(1..3), true, SystemTime::now());
        assert_eq!(
            lines(&path),
            [1, 2],
            "the torn fragment is skipped, the rest reads"
        );
    }

    #[test]
    fn a_quiet_active_segment_ages_out() {
        let dir = TestDir::new();
        let day = Duration::from_secs(86_400);
        let mut active = Active::new(&AuditConfig {
            max_age: 30 * day,
            ..config(dir.path(), 1 << 20, 5)
        });
        active.append(entries(0..2), true, SystemTime::now());
        let out = active.housekeep(SystemTime::now() + 29 * day);
        assert_eq!((out.rotated, out.deleted), (0, 0));
        let out = active.housekeep(SystemTime::now() + 31 * day);
        assert_eq!((out.rotated, out.deleted), (1, 1));
        assert!(segments::list(dir.path()).unwrap().is_empty());
        active.append(entries(2..3), true, SystemTime::now());
        assert_eq!(lines(&dir.path().join(ACTIVE)), [2]);
    }

    #[test]
    fn a_failure_discards_the_batch_and_the_next_call_starts_again() {
        let dir = TestDir::new();
        let blocker = dir.path().join("not-a-dir");
        fs::write(&blocker, b"").unwrap();
        let mut active = Active::new(&config(&blocker.join("audit"), 1 << 20, 5));
        let out = active.append(entries(0..5), true, SystemTime::now());
        assert_eq!((out.written, out.lost), (0, 5));
        assert_eq!(out.failure.map(|f| f.step), Some(Step::CreateDir));
        fs::remove_file(&blocker).unwrap();
        let out = active.append(entries(5..7), true, SystemTime::now());
        assert_eq!((out.written, out.lost), (2, 0));
        assert!(out.failure.is_none());
        assert_eq!(lines(&blocker.join("audit").join(ACTIVE)), [5, 6]);
    }

    #[test]
    fn a_full_device_loses_the_buffer_not_the_writer() {
        let dir = TestDir::new();
        let path = dir.path().join(ACTIVE);
        std::os::unix::fs::symlink("/dev/full", &path).unwrap();
        let mut active = Active::new(&config(dir.path(), 1 << 20, 5));
        let out = active.append(entries(0..3), false, SystemTime::now());
        assert_eq!(out.lost, 0, "still buffered");
        let out = active.append(entries(3..4), true, SystemTime::now());
        assert_eq!((out.written, out.lost), (0, 4));
        let failure = out.failure.unwrap();
        assert_eq!(failure.step, Step::Flush);
        assert_eq!(
            failure.source.raw_os_error(),
            Some(28),
            "ENOSPC: {}",
            failure.source
        );
        fs::remove_file(&path).unwrap();
        let out = active.append(entries(4..5), true, SystemTime::now());
        assert_eq!(out.written, 1);
        assert_eq!(lines(&path), [4]);
    }
}
