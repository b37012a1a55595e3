//! Measurement primitives: latency histograms and percentiles, and the per-subscriber `seq`
//! ledger that counts what was delivered, duplicated and out of order.

use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use serde::Serialize;

/// Highest latency a histogram tracks (60 s in µs); larger values are clamped to it.
const MAX_TRACKED_US: u64 = 60_000_000;

/// Microseconds since the Unix epoch from the machine clock. Publisher and subscribers run in
/// this one process, so the same clock stamps `t` and the receive time.
pub(crate) fn unix_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// A microsecond histogram with 3 significant digits, 1 µs .. 60 s.
pub(crate) fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_TRACKED_US, 3).expect("static histogram bounds are valid")
}

/// Latency histograms shared by many tasks: each task records into the shard of its index,
/// so the locks are rarely contended and memory stays bounded whatever the run's size.
pub(crate) struct ShardedHistogram {
    shards: Vec<Mutex<Histogram<u64>>>,
}

impl ShardedHistogram {
    pub(crate) fn new(shards: usize) -> Self {
        Self {
            shards: (0..shards.max(1))
                .map(|_| Mutex::new(histogram()))
                .collect(),
        }
    }

    /// Records `value_us` into shard `key % shards`. The guard never crosses an await.
    pub(crate) fn record(&self, key: usize, value_us: u64) {
        let shard = &self.shards[key % self.shards.len()];
        let mut hist = shard.lock().unwrap_or_else(|p| p.into_inner());
        hist.saturating_record(value_us);
    }

    /// One histogram holding every shard's values.
    pub(crate) fn merged(&self) -> Histogram<u64> {
        let mut all = histogram();
        for shard in &self.shards {
            let hist = shard.lock().unwrap_or_else(|p| p.into_inner());
            all.add(&*hist).expect("histograms share bounds");
        }
        all
    }
}

/// The percentiles a report prints, in microseconds.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub(crate) struct Percentiles {
    pub(crate) count: u64,
    pub(crate) mean_us: u64,
    pub(crate) p50_us: u64,
    pub(crate) p99_us: u64,
    pub(crate) p999_us: u64,
    pub(crate) max_us: u64,
}

impl Percentiles {
    pub(crate) fn of(hist: &Histogram<u64>) -> Self {
        if hist.is_empty() {
            return Self::default();
        }
        Self {
            count: hist.len(),
            mean_us: hist.mean().round() as u64,
            p50_us: hist.value_at_quantile(0.50),
            p99_us: hist.value_at_quantile(0.99),
            p999_us: hist.value_at_quantile(0.999),
            max_us: hist.max(),
        }
    }

    /// `p50 1.23 ms  p99 4.56 ms  p99.9 7.89 ms  max 12.34 ms`.
    pub(crate) fn human(&self) -> String {
        format!(
            "p50 {}  p99 {}  p99.9 {}  max {}  (mean {}, n={})",
            ms(self.p50_us),
            ms(self.p99_us),
            ms(self.p999_us),
            ms(self.max_us),
            ms(self.mean_us),
            self.count
        )
    }
}

/// Microseconds as milliseconds with two decimals.
pub(crate) fn ms(us: u64) -> String {
    format!("{:.2} ms", us as f64 / 1000.0)
}

/// Largest span of seqs a ledger tracks past its base (64 Mi seqs = 8 MiB of bits); a seq
/// beyond it is counted as out of range instead of allocating without bound.
const MAX_SPAN: u64 = 1 << 26;

/// What one received `seq` was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Seen {
    /// First time seen; `late` when a greater seq had already arrived.
    New {
        late: bool,
    },
    Duplicate,
    /// At or below the head the subscription started from, or absurdly far ahead.
    OutOfRange,
}

/// Which seqs one subscriber has received on one channel, as a bitset over
/// `base+1 ..= base+MAX_SPAN` where `base` is the head its `subscribed` message gave.
#[derive(Debug, Default)]
pub(crate) struct SeqLedger {
    /// Head seq at subscribe time; live delivery starts at `base + 1`.
    base: u64,
    /// Bit `k` set = seq `base + 1 + k` received.
    bits: Vec<u64>,
    /// Greatest seq received so far (`base` before any).
    max_seen: u64,
    pub(crate) unique: u64,
    pub(crate) duplicated: u64,
    pub(crate) out_of_order: u64,
    pub(crate) out_of_range: u64,
}

impl SeqLedger {
    pub(crate) fn new(base: u64) -> Self {
        Self {
            base,
            max_seen: base,
            ..Self::default()
        }
    }

    pub(crate) fn base(&self) -> u64 {
        self.base
    }

    /// The greatest seq received (the base before any): where a resume continues from.
    pub(crate) fn max_seen(&self) -> u64 {
        self.max_seen
    }

    pub(crate) fn observe(&mut self, seq: u64) -> Seen {
        let Some(offset) = self.offset(seq) else {
            self.out_of_range += 1;
            return Seen::OutOfRange;
        };
        let (word, bit) = ((offset / 64) as usize, 1u64 << (offset % 64));
        if word >= self.bits.len() {
            self.bits.resize(word + 1, 0);
        }
        if self.bits[word] & bit != 0 {
            self.duplicated += 1;
            return Seen::Duplicate;
        }
        self.bits[word] |= bit;
        self.unique += 1;
        let late = seq < self.max_seen;
        if late {
            self.out_of_order += 1;
        } else {
            self.max_seen = seq;
        }
        Seen::New { late }
    }

    pub(crate) fn contains(&self, seq: u64) -> bool {
        self.offset(seq).is_some_and(|offset| {
            self.bits
                .get((offset / 64) as usize)
                .is_some_and(|w| w & (1u64 << (offset % 64)) != 0)
        })
    }

    fn offset(&self, seq: u64) -> Option<u64> {
        let offset = seq.checked_sub(self.base + 1)?;
        (offset < MAX_SPAN).then_some(offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ledger_counts_in_order_delivery() {
        let mut l = SeqLedger::new(10);
        for seq in 11..=20 {
            assert_eq!(l.observe(seq), Seen::New { late: false });
        }
        assert_eq!(
            (l.unique, l.duplicated, l.out_of_order, l.out_of_range),
            (10, 0, 0, 0)
        );
        assert!(l.contains(11) && l.contains(20) && !l.contains(21) && !l.contains(10));
    }

    #[test]
    fn ledger_flags_duplicates_reordering_and_range() {
        let mut l = SeqLedger::new(0);
        assert_eq!(l.observe(1), Seen::New { late: false });
        assert_eq!(l.observe(3), Seen::New { late: false });
        assert_eq!(l.observe(2), Seen::New { late: true });
        assert_eq!(l.observe(3), Seen::Duplicate);
        assert_eq!(l.observe(0), Seen::OutOfRange);
        assert_eq!(l.observe(MAX_SPAN + 1), Seen::OutOfRange);
        assert_eq!(l.observe(200), Seen::New { late: false });
        assert_eq!(
            (l.unique, l.duplicated, l.out_of_order, l.out_of_range),
            (4, 1, 1, 2)
        );
        assert!(!l.contains(4) && l.contains(200));
    }

    #[test]
    fn percentiles_of_known_values() {
        let shards = ShardedHistogram::new(4);
        for v in 1..=1000u64 {
            shards.record(v as usize, v);
        }
        let p = Percentiles::of(&shards.merged());
        assert_eq!(p.count, 1000);
        assert_eq!(p.p50_us, 500);
        assert_eq!(p.p99_us, 990);
        assert_eq!(p.max_us, 1000);
        assert_eq!(Percentiles::of(&histogram()).count, 0);
    }
}
