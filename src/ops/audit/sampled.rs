//! Sampling of entries that a client can cause at will: refused admin calls. Each refusal is
//! counted (`understudy_admin_refused_total`), but at most one entry per window reaches the
//! trail, carrying how many refusals it stands for; otherwise an unauthenticated flood would
//! rotate the whole trail (and the mode changes in it) out within minutes.

use std::time::Duration;

use parking_lot::Mutex;
use tokio::time::Instant;

/// At most one sampled entry per this long.
pub const SAMPLE_WINDOW: Duration = Duration::from_secs(10);

#[derive(Debug, Default)]
pub struct Sampler {
    state: Mutex<Window>,
}

#[derive(Debug, Default)]
struct Window {
    /// When the last entry was written; `None` before the first.
    written_at: Option<Instant>,
    /// Refusals since the last entry written, not yet in any entry.
    pending: u64,
}

impl Sampler {
    /// Notes one refusal at `now`. `Some(n)`: write an entry now, standing for `n` refusals
    /// (this one and those folded since the previous entry); `None`: folded into the next one.
    pub fn note(&self, now: Instant) -> Option<u64> {
        let mut w = self.state.lock();
        w.pending += 1;
        let due = w
            .written_at
            .is_none_or(|at| now.saturating_duration_since(at) >= SAMPLE_WINDOW);
        if !due {
            return None;
        }
        w.written_at = Some(now);
        Some(std::mem::take(&mut w.pending))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_flood_writes_one_entry_per_window_and_counts_every_refusal() {
        let s = Sampler::default();
        let start = Instant::now();
        assert_eq!(
            s.note(start),
            Some(1),
            "the first refusal is written at once"
        );
        let mut written = Vec::new();
        // 10,000 refusals over 25 s.
        for i in 1..=10_000u64 {
            let at = start + Duration::from_micros(i * 2_500);
            written.extend(s.note(at));
        }
        assert_eq!(written.len(), 2, "one entry per 10 s window: {written:?}");
        let folded: u64 = written.iter().sum();
        assert_eq!(
            folded, 8_000,
            "the entries account for every refusal up to the last"
        );
    }
}
