//! The audit directory's layout: the active segment `audit.log`, rotated segments
//! `audit.NNNNNN.log` numbered in the order they were closed, listing them, and pruning them by
//! count and age by deleting whole files (never rewriting one). Blocking file-system calls: run on
//! the writer's blocking thread or a reader's.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// The segment being appended to.
pub(super) const ACTIVE: &str = "audit.log";

/// A closed segment.
#[derive(Debug, Clone)]
pub(super) struct Segment {
    /// Its place in the order segments were closed: higher is newer.
    pub(super) number: u64,
    pub(super) path: PathBuf,
}

/// The file name of rotated segment `number`: `audit.000042.log` (more digits past 999999).
pub(super) fn segment_name(number: u64) -> String {
    format!("audit.{number:06}.log")
}

/// The number of a rotated segment's file name; `None` for any other name.
pub(super) fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("audit.")?.strip_suffix(".log")?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The rotated segments in `dir`, oldest (lowest number) first. A missing directory has none;
/// files with other names are ignored.
pub(super) fn list(dir: &Path) -> io::Result<Vec<Segment>> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut segments = Vec::new();
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        if let Some(number) = name.to_str().and_then(parse_segment_name) {
            segments.push(Segment {
                number,
                path: entry.path(),
            });
        }
    }
    segments.sort_by_key(|s| s.number);
    Ok(segments)
}

/// What a prune did.
#[derive(Debug, Default)]
pub(super) struct Pruned {
    /// Segments deleted.
    pub(super) deleted: usize,
    /// The first error met; pruning carries on past errors and tries again next time.
    pub(super) error: Option<io::Error>,
}

/// Delete whole rotated segments in `dir`: the oldest beyond `keep` (the number of rotated
/// segments allowed besides the active one), and any last modified more than `max_age` before
/// `now`. Each deletion is one `unlink`; a segment that has already gone is not an error.
pub(super) fn prune(dir: &Path, keep: usize, max_age: Duration, now: SystemTime) -> Pruned {
    let mut pruned = Pruned::default();
    let segments = match list(dir) {
        Ok(segments) => segments,
        Err(e) => {
            pruned.error = Some(e);
            return pruned;
        }
    };
    let over = segments.len().saturating_sub(keep);
    let cutoff = now.checked_sub(max_age);
    for (i, segment) in segments.iter().enumerate() {
        let expired = || {
            let modified = fs::metadata(&segment.path).and_then(|m| m.modified());
            matches!((modified, cutoff), (Ok(m), Some(c)) if m < c)
        };
        if i < over || expired() {
            match fs::remove_file(&segment.path) {
                Ok(()) => pruned.deleted += 1,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    pruned.error.get_or_insert(e);
                }
            }
        }
    }
    pruned
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::audit::testdir::TestDir;

    #[test]
    fn names_round_trip_and_sort_numerically() {
        assert_eq!(segment_name(1), "audit.000001.log");
        assert_eq!(segment_name(1_234_567), "audit.1234567.log");
        for n in [0, 1, 42, 999_999, 1_000_000, u64::MAX] {
            assert_eq!(parse_segment_name(&segment_name(n)), Some(n));
        }
        for other in [
            "audit.log",
            "audit..log",
            "audit.12a.log",
            "audit.000001.log.tmp",
            "x.000001.log",
            "audit.-1.log",
        ] {
            assert_eq!(parse_segment_name(other), None, "{other}");
        }
    }

    #[test]
    fn listing_orders_by_number_and_ignores_other_files() {
        let dir = TestDir::new();
        for name in [
            "audit.000010.log",
            "audit.000009.log",
            "audit.1000000.log",
            "audit.log",
            "notes.txt",
        ] {
            fs::write(dir.path().join(name), b"").unwrap();
        }
        let numbers: Vec<u64> = list(dir.path()).unwrap().iter().map(|s| s.number).collect();
        assert_eq!(numbers, [9, 10, 1_000_000]);
        assert!(list(&dir.path().join("missing")).unwrap().is_empty());
    }

    fn write_segments(dir: &Path, numbers: impl IntoIterator<Item = u64>, modified: SystemTime) {
        for n in numbers {
            let file = fs::File::create(dir.join(segment_name(n))).unwrap();
            file.set_modified(modified).unwrap();
        }
    }

    fn numbers(dir: &Path) -> Vec<u64> {
        list(dir).unwrap().iter().map(|s| s.number).collect()
    }

    #[test]
    fn pruning_by_count_deletes_the_oldest_whole_segments() {
        let dir = TestDir::new();
        let now = SystemTime::now();
        write_segments(dir.path(), 1..=7, now);
        fs::write(dir.path().join(ACTIVE), b"{}\n").unwrap();
        let pruned = prune(dir.path(), 3, Duration::from_secs(3600), now);
        assert_eq!(pruned.deleted, 4);
        assert!(pruned.error.is_none());
        assert_eq!(numbers(dir.path()), [5, 6, 7]);
        assert!(
            dir.path().join(ACTIVE).exists(),
            "the active segment is never pruned"
        );
        let again = prune(dir.path(), 3, Duration::from_secs(3600), now);
        assert_eq!(again.deleted, 0);
    }

    #[test]
    fn pruning_by_age_uses_modification_times_against_the_given_clock() {
        let dir = TestDir::new();
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let day = Duration::from_secs(86_400);
        write_segments(dir.path(), [1, 2], now - 40 * day);
        write_segments(dir.path(), [3], now - 31 * day);
        write_segments(dir.path(), [4], now - 29 * day);
        write_segments(dir.path(), [5], now);
        let pruned = prune(dir.path(), 100, 30 * day, now);
        assert_eq!(pruned.deleted, 3);
        assert_eq!(numbers(dir.path()), [4, 5]);
        // A day later segment 4 has aged out too.
        prune(dir.path(), 100, 30 * day, now + 2 * day);
        assert_eq!(numbers(dir.path()), [5]);
    }

    #[test]
    fn keeping_none_deletes_every_rotated_segment() {
        let dir = TestDir::new();
        write_segments(dir.path(), [1, 2], SystemTime::now());
        prune(dir.path(), 0, Duration::from_secs(60), SystemTime::now());
        assert!(numbers(dir.path()).is_empty());
    }
}
