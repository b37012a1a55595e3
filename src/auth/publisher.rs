//! Publisher bearer keys, compared in constant time.

use subtle::ConstantTimeEq;

use crate::config::Secret;

#[derive(Debug, Clone)]
pub struct PublisherKeys(Vec<Secret>);

impl PublisherKeys {
    pub fn new(keys: Vec<Secret>) -> Self {
        Self(keys)
    }

    /// Whether `presented` is one of the keys. Every key is compared, so the time taken does not
    /// say which key came close.
    pub fn accepts(&self, presented: &str) -> bool {
        let presented = presented.as_bytes();
        self.0.iter().fold(0u8, |hit, k| {
            hit | k.expose().as_bytes().ct_eq(presented).unwrap_u8()
        }) == 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_only_configured_keys() {
        let keys = PublisherKeys::new(vec![Secret::new("alpha"), Secret::new("beta")]);
        assert!(keys.accepts("alpha") && keys.accepts("beta"));
        assert!(!keys.accepts("alph") && !keys.accepts("") && !keys.accepts("alphaa"));
    }
}
