//! Epochs: a random id for the life of one channel's history.

use std::fmt;
use std::sync::Arc;

const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";
/// Characters in an epoch (12 x 5 bits = 60 random bits).
pub(crate) const EPOCH_LEN: usize = 12;

/// Identifies one life of a channel's history. When history is lost, the epoch changes and
/// every position held in the old one is void.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Epoch(Arc<str>);

impl Epoch {
    /// A fresh random epoch.
    pub fn random() -> Self {
        let mut bits: u64 = rand::random();
        let mut out = String::with_capacity(EPOCH_LEN);
        for _ in 0..EPOCH_LEN {
            out.push(ALPHABET[(bits & 31) as usize] as char);
            bits >>= 5;
        }
        Self(Arc::from(out))
    }

    /// Wraps an epoch received from a client or a shared engine. Any string is accepted:
    /// an unknown epoch simply does not match and leads to a reset.
    pub fn from_client(s: &str) -> Self {
        Self(Arc::from(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Epoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Epoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_epochs_are_distinct_and_cursor_safe() {
        let a = Epoch::random();
        let b = Epoch::random();
        assert_ne!(a, b);
        assert_eq!(a.as_str().len(), EPOCH_LEN);
        assert!(a.as_str().bytes().all(|c| c.is_ascii_alphanumeric()));
    }
}
