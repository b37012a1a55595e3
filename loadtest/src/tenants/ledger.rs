//! What one of B's delivery paths received: each seq's count and first-sight latency, judged
//! against the seqs the server accepted (lost, duplicated, out of order).

use std::collections::HashMap;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::stats::{histogram, unix_micros, Percentiles};

/// One delivery path's figures for B.
#[derive(Debug, Default, Serialize)]
pub(super) struct PathFigures {
    pub(super) delivered: u64,
    pub(super) lost: u64,
    pub(super) duplicated: u64,
    pub(super) out_of_order: u64,
    pub(super) latency: Percentiles,
}

/// What a path saw: seq -> times seen, and the latency of each first sight.
#[derive(Default)]
pub(super) struct PathLog {
    seen: HashMap<u64, u32>,
    last: u64,
    out_of_order: u64,
    hist: Option<Histogram<u64>>,
}

impl PathLog {
    pub(super) fn observe(&mut self, seq: u64, t_us: Option<u64>) {
        let n = self.seen.entry(seq).or_default();
        *n += 1;
        if *n == 1 {
            if seq < self.last {
                self.out_of_order += 1;
            }
            self.last = self.last.max(seq);
            if let Some(t) = t_us {
                let hist = self.hist.get_or_insert_with(histogram);
                hist.saturating_record(unix_micros().saturating_sub(t).max(1));
            }
        }
    }

    pub(super) fn figures(&self, accepted: &[u64]) -> PathFigures {
        PathFigures {
            delivered: accepted
                .iter()
                .filter(|s| self.seen.contains_key(s))
                .count() as u64,
            lost: accepted
                .iter()
                .filter(|s| !self.seen.contains_key(s))
                .count() as u64,
            duplicated: self.seen.values().map(|n| u64::from(n - 1)).sum(),
            out_of_order: self.out_of_order,
            latency: self.hist.as_ref().map(Percentiles::of).unwrap_or_default(),
        }
    }

    pub(super) fn has_all(&self, accepted: &[u64]) -> bool {
        accepted.iter().all(|s| self.seen.contains_key(s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_counts_lost_duplicated_and_out_of_order_against_the_accepted_seqs() {
        let mut log = PathLog::default();
        for seq in [1, 2, 2, 4, 3] {
            log.observe(seq, Some(unix_micros()));
        }
        let f = log.figures(&[1, 2, 3, 4, 5]);
        assert_eq!(
            (
                f.delivered,
                f.lost,
                f.duplicated,
                f.out_of_order,
                f.latency.count
            ),
            (4, 1, 1, 1, 4)
        );
        assert!(!log.has_all(&[1, 5]));
        assert!(log.has_all(&[1, 2, 3, 4]));
    }
}
