//! The nonces of signed TokenRequests seen recently, so a request overheard on the way can not be
//! exchanged for a token a second time (Ably: "a nonce/timestamp pair can be used only once").
//!
//! A request is accepted only while its timestamp is within [`WINDOW_MS`] of the clock, so a
//! nonce need only be remembered until its timestamp leaves that window. The store is bounded:
//! when it is full of nonces still inside the window, new requests are refused (`429`) until
//! room frees up, rather than forgetting a nonce that could then be replayed. Per node: with
//! several nodes, a replay sent to another node within the window is not caught.

use std::collections::HashMap;

use parking_lot::Mutex;

use super::AblyAuthError;

/// How far a TokenRequest's timestamp may be from the clock, either way.
pub(crate) const WINDOW_MS: u64 = 2 * 60 * 1000;
/// Most nonces remembered at once: 10,000 token requests in two minutes, per node.
pub(crate) const MAX_NONCES: usize = 10_000;

/// Recently used nonces, by key name and nonce, with when each may be forgotten (Unix ms).
#[derive(Debug)]
pub struct Nonces {
    seen: Mutex<HashMap<(String, String), u64>>,
    max: usize,
}

impl Default for Nonces {
    fn default() -> Self {
        Self::with_capacity(MAX_NONCES)
    }
}

impl Nonces {
    pub fn with_capacity(max: usize) -> Self {
        Self {
            seen: Mutex::new(HashMap::new()),
            max,
        }
    }

    /// Checks the timestamp against the clock (`now_ms`) and that the nonce is new for this key,
    /// then remembers it.
    pub fn admit(
        &self,
        key_name: &str,
        nonce: &str,
        timestamp_ms: u64,
        now_ms: u64,
    ) -> Result<(), AblyAuthError> {
        if timestamp_ms.abs_diff(now_ms) > WINDOW_MS {
            return Err(AblyAuthError::StaleTimestamp);
        }
        let forget_at = timestamp_ms + WINDOW_MS;
        let mut seen = self.seen.lock();
        let key = (key_name.to_owned(), nonce.to_owned());
        if seen.get(&key).is_some_and(|at| *at >= now_ms) {
            return Err(AblyAuthError::NonceReplayed);
        }
        if seen.len() >= self.max {
            seen.retain(|_, at| *at >= now_ms);
            if seen.len() >= self.max {
                return Err(AblyAuthError::TooManyTokenRequests);
            }
        }
        seen.insert(key, forget_at);
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.seen.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_700_000_000_000;

    #[test]
    fn a_nonce_is_good_once_per_key() {
        let n = Nonces::default();
        n.admit("k", "0123456789abcdef", NOW, NOW).unwrap();
        assert_eq!(
            n.admit("k", "0123456789abcdef", NOW, NOW + 1),
            Err(AblyAuthError::NonceReplayed)
        );
        n.admit("other-key", "0123456789abcdef", NOW, NOW).unwrap();
    }

    #[test]
    fn timestamps_outside_the_window_are_refused() {
        let n = Nonces::default();
        for ts in [NOW - WINDOW_MS - 1, NOW + WINDOW_MS + 1] {
            assert_eq!(
                n.admit("k", "n", ts, NOW),
                Err(AblyAuthError::StaleTimestamp)
            );
        }
        n.admit("k", "a", NOW - WINDOW_MS, NOW).unwrap();
        n.admit("k", "b", NOW + WINDOW_MS, NOW).unwrap();
        assert_eq!(n.len(), 2, "refused requests are not remembered");
    }

    #[test]
    fn full_of_live_nonces_refuses_and_frees_room_as_they_age() {
        let n = Nonces::with_capacity(2);
        n.admit("k", "a", NOW, NOW).unwrap();
        n.admit("k", "b", NOW + 10, NOW + 10).unwrap();
        assert_eq!(
            n.admit("k", "c", NOW + 20, NOW + 20),
            Err(AblyAuthError::TooManyTokenRequests)
        );
        // `a` may be forgotten once its timestamp has left the window; `b` not yet.
        let later = NOW + WINDOW_MS + 5;
        n.admit("k", "c", later, later).unwrap();
        assert_eq!(n.len(), 2);
        assert_eq!(
            n.admit("k", "b", NOW + 10, later),
            Err(AblyAuthError::NonceReplayed),
            "a nonce still inside its window was kept"
        );
    }
}
