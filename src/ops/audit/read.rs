//! Reading the audit trail back, for `GET /admin/audit?since=&limit=` and `understudy audit tail`:
//! segments in order (oldest first, the active one last), skipping whole segments last written
//! before `since`, at most [`MAX_READ_LIMIT`] entries, skipping torn and foreign lines. Blocking:
//! call it from `spawn_blocking` (as [`AuditHandle::read`](super::AuditHandle::read) does). It
//! takes no lock the writer holds: it opens the files itself, and each file is read up to the
//! length it had when opened, so a line being appended meanwhile is never half-read past that.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::ops::ControlFlow;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::entry::AuditEntry;
use super::error::AuditError;
use super::line;
use super::segments::{self, ACTIVE};

/// Most entries one read returns.
pub const MAX_READ_LIMIT: usize = 1000;

/// A segment last written more than this before `since` is skipped unread. The slack allows for
/// the wall clock stepping back between an entry's timestamp and its write.
const MTIME_SLACK: Duration = Duration::from_secs(60);

/// Listing and opening is retried this many times when a rotation happens meanwhile.
const OPEN_ATTEMPTS: usize = 3;

/// Up to `limit` (at most [`MAX_READ_LIMIT`]) entries with `ts >= since_ms`, oldest first. With
/// no `since_ms`, from the oldest entry kept. A missing directory reads as empty.
///
/// To page forward, pass the last entry's `ts` as the next `since_ms` and drop the entries that
/// repeat (several entries can share a millisecond).
pub fn read(
    dir: &Path,
    since_ms: Option<u64>,
    limit: usize,
) -> Result<Vec<AuditEntry>, AuditError> {
    let limit = limit.min(MAX_READ_LIMIT);
    let mut found = Vec::new();
    if limit == 0 {
        return Ok(found);
    }
    let error = |source| AuditError::Read {
        dir: dir.to_path_buf(),
        source,
    };
    let since_time = since_ms.map(|ms| UNIX_EPOCH + Duration::from_millis(ms));
    for segment in open_segments(dir).map_err(error)? {
        if since_time.is_some_and(|since| segment.modified + MTIME_SLACK < since) {
            continue;
        }
        for_each_entry(segment, |entry| {
            if since_ms.is_none_or(|since| entry.ts >= since) {
                found.push(entry);
            }
            if found.len() < limit {
                ControlFlow::Continue(())
            } else {
                ControlFlow::Break(())
            }
        })
        .map_err(error)?;
        if found.len() >= limit {
            break;
        }
    }
    Ok(found)
}

/// The newest `limit` (at most [`MAX_READ_LIMIT`]) entries, oldest first.
pub fn tail(dir: &Path, limit: usize) -> Result<Vec<AuditEntry>, AuditError> {
    let mut need = limit.min(MAX_READ_LIMIT);
    let error = |source| AuditError::Read {
        dir: dir.to_path_buf(),
        source,
    };
    let mut newest_first: Vec<VecDeque<AuditEntry>> = Vec::new();
    for segment in open_segments(dir).map_err(error)?.into_iter().rev() {
        if need == 0 {
            break;
        }
        let mut last = VecDeque::with_capacity(need);
        for_each_entry(segment, |entry| {
            if last.len() == need {
                last.pop_front();
            }
            last.push_back(entry);
            ControlFlow::Continue(())
        })
        .map_err(error)?;
        need -= last.len();
        newest_first.push(last);
    }
    Ok(newest_first.into_iter().rev().flatten().collect())
}

/// An open segment and what it was when opened.
struct Opened {
    file: File,
    len: u64,
    modified: SystemTime,
}

/// Open every segment, oldest first and the active one last. If a rotation renames the active
/// segment while this runs (the highest segment number changes), start again: a rotation is
/// rare, and open files keep their content whatever happens to their names. A segment pruned
/// meanwhile is simply left out.
fn open_segments(dir: &Path) -> io::Result<Vec<Opened>> {
    let mut opened = Vec::new();
    for _ in 0..OPEN_ATTEMPTS {
        opened.clear();
        let listed = segments::list(dir)?;
        let newest = listed.last().map(|s| s.number);
        for segment in &listed {
            opened.extend(open_if_file(&segment.path)?);
        }
        opened.extend(open_if_file(&dir.join(ACTIVE))?);
        if segments::list(dir)?.last().map(|s| s.number) == newest {
            break;
        }
    }
    Ok(opened)
}

/// Open `path` if it is a regular file (not a directory, a device, or a FIFO whose opening would
/// wait for a writer), and note its length.
fn open_if_file(path: &Path) -> io::Result<Option<Opened>> {
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_file() => {}
        Ok(_) => return Ok(None),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    }
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Ok(None);
    }
    Ok(Some(Opened {
        file,
        len: meta.len(),
        modified: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
    }))
}

/// Every entry in `segment` up to its length when opened, skipping lines that do not decode.
fn for_each_entry(
    segment: Opened,
    mut f: impl FnMut(AuditEntry) -> ControlFlow<()>,
) -> io::Result<()> {
    let mut reader = BufReader::new(segment.file.take(segment.len));
    let mut buf = Vec::new();
    loop {
        buf.clear();
        if reader.read_until(b'\n', &mut buf)? == 0 {
            return Ok(());
        }
        if let Some(entry) = line::decode(&buf) {
            if f(entry).is_break() {
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use serde_json::json;

    use super::*;
    use crate::ops::audit::testdir::TestDir;
    use crate::ops::audit::AuditAction;

    fn entry(ts: u64) -> AuditEntry {
        AuditEntry::system(AuditAction::TransitionAuto)
            .with_details(json!({"to": "self"}))
            .at(ts)
    }

    /// Write segments holding the given timestamps; the last is the active segment. Each file's
    /// mtime is set to its last entry's time.
    fn write(dir: &Path, segments: &[&[u64]]) {
        for (i, stamps) in segments.iter().enumerate() {
            let name = if i + 1 == segments.len() {
                ACTIVE.to_string()
            } else {
                segments::segment_name(i as u64 + 1)
            };
            let mut bytes = Vec::new();
            for &ts in *stamps {
                bytes.extend(line::encode(entry(ts)));
            }
            let path = dir.join(name);
            fs::write(&path, bytes).unwrap();
            let last = stamps.last().copied().unwrap_or(0);
            let file = File::options().write(true).open(&path).unwrap();
            file.set_modified(UNIX_EPOCH + Duration::from_millis(last))
                .unwrap();
        }
    }

    fn stamps(entries: &[AuditEntry]) -> Vec<u64> {
        entries.iter().map(|e| e.ts).collect()
    }

    const H: u64 = 3_600_000;

    #[test]
    fn reads_oldest_first_across_segments_with_since_and_limit() {
        let dir = TestDir::new();
        write(dir.path(), &[&[H, 2 * H], &[3 * H, 4 * H], &[5 * H, 6 * H]]);
        let all = read(dir.path(), None, 100).unwrap();
        assert_eq!(stamps(&all), [H, 2 * H, 3 * H, 4 * H, 5 * H, 6 * H]);
        assert_eq!(
            stamps(&read(dir.path(), None, 3).unwrap()),
            [H, 2 * H, 3 * H]
        );
        let since = read(dir.path(), Some(4 * H), 100).unwrap();
        assert_eq!(stamps(&since), [4 * H, 5 * H, 6 * H], "since is inclusive");
        assert_eq!(
            stamps(&read(dir.path(), Some(2 * H + 1), 2).unwrap()),
            [3 * H, 4 * H]
        );
        assert!(read(dir.path(), Some(7 * H), 100).unwrap().is_empty());
        assert!(read(dir.path(), None, 0).unwrap().is_empty());
    }

    #[test]
    fn segments_last_written_before_since_are_skipped_unread() {
        let dir = TestDir::new();
        write(dir.path(), &[&[H, 2 * H], &[3 * H]]);
        // Give the old segment a line that *would* match `since` but keep its old mtime: the
        // segment is skipped unread, so the line is not returned.
        let old = dir.path().join(segments::segment_name(1));
        fs::write(&old, line::encode(entry(10 * H))).unwrap();
        let file = File::options().write(true).open(&old).unwrap();
        file.set_modified(UNIX_EPOCH + Duration::from_millis(2 * H))
            .unwrap();
        assert_eq!(stamps(&read(dir.path(), Some(3 * H), 10).unwrap()), [3 * H]);
        assert_eq!(
            stamps(&read(dir.path(), None, 10).unwrap()),
            [10 * H, 3 * H]
        );
    }

    #[test]
    fn a_torn_last_line_and_foreign_lines_are_skipped() {
        let dir = TestDir::new();
        let path = dir.path().join(ACTIVE);
        let mut bytes = line::encode(entry(1));
        bytes.extend(b"not json\n\n");
        bytes.extend(line::encode(entry(2)));
        let torn = line::encode(entry(3));
        bytes.extend(&torn[..torn.len() - 5]);
        fs::write(&path, bytes).unwrap();
        assert_eq!(stamps(&read(dir.path(), None, 10).unwrap()), [1, 2]);
        assert_eq!(stamps(&tail(dir.path(), 10).unwrap()), [1, 2]);
    }

    #[test]
    fn tail_returns_the_newest_entries_oldest_first() {
        let dir = TestDir::new();
        write(dir.path(), &[&[1, 2, 3], &[4, 5], &[6]]);
        assert_eq!(stamps(&tail(dir.path(), 2).unwrap()), [5, 6]);
        assert_eq!(stamps(&tail(dir.path(), 4).unwrap()), [3, 4, 5, 6]);
        assert_eq!(stamps(&tail(dir.path(), 100).unwrap()), [1, 2, 3, 4, 5, 6]);
        assert!(tail(dir.path(), 0).unwrap().is_empty());
    }

    #[test]
    fn limits_are_capped() {
        let dir = TestDir::new();
        let many: Vec<u64> = (0..MAX_READ_LIMIT as u64 + 10).collect();
        write(dir.path(), &[&many]);
        assert_eq!(
            read(dir.path(), None, usize::MAX).unwrap().len(),
            MAX_READ_LIMIT
        );
        assert_eq!(tail(dir.path(), usize::MAX).unwrap().len(), MAX_READ_LIMIT);
    }

    #[test]
    fn a_missing_directory_reads_as_empty_and_devices_are_not_read() {
        let dir = TestDir::new();
        assert!(read(&dir.path().join("nothing-yet"), None, 10)
            .unwrap()
            .is_empty());
        std::os::unix::fs::symlink("/dev/zero", dir.path().join(ACTIVE)).unwrap();
        assert!(read(dir.path(), None, 10).unwrap().is_empty());
        assert!(tail(dir.path(), 10).unwrap().is_empty());
    }

    #[test]
    fn an_unreadable_directory_is_an_error_naming_it() {
        let dir = TestDir::new();
        let file = dir.path().join("a-file");
        fs::write(&file, b"").unwrap();
        let err = read(&file, None, 10).unwrap_err();
        assert!(err.to_string().contains("a-file"), "{err}");
    }
}
