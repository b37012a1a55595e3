//! Validated channel names: 1 to 200 characters from `[A-Za-z0-9_.:@-]`.

use std::fmt;
use std::sync::Arc;

use super::CoreError;

/// Longest channel name accepted.
pub(crate) const MAX_CHANNEL_NAME_LEN: usize = 200;

/// A channel name that has passed validation. Cheap to clone.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChannelName(Arc<str>);

impl ChannelName {
    /// Validates `name`, explaining what is wrong when it is not a channel name.
    pub fn parse(name: &str) -> Result<Self, CoreError> {
        if name.is_empty() || name.len() > MAX_CHANNEL_NAME_LEN {
            return Err(CoreError::InvalidChannel(format!(
                "channel name must be 1 to {MAX_CHANNEL_NAME_LEN} characters, got {}",
                name.chars().count()
            )));
        }
        if let Some(bad) = name.chars().find(|c| !is_channel_char(*c)) {
            return Err(CoreError::InvalidChannel(format!(
                "channel name {:?} contains {bad:?}; allowed are A-Z a-z 0-9 and _ . : @ -",
                truncate(name)
            )));
        }
        Ok(Self(Arc::from(name)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether the name matches `pattern`: an exact name, or a prefix written `prefix*`
    /// (`*` alone matches every name).
    pub fn matches(&self, pattern: &str) -> bool {
        match pattern.strip_suffix('*') {
            Some(prefix) => self.0.starts_with(prefix),
            None => *self.0 == *pattern,
        }
    }

    /// Checks a pattern as [`ChannelName::matches`] reads it: a channel name, a prefix of one
    /// followed by `*`, or `*` alone. A `*` anywhere else would never match, so it is refused
    /// instead of silently matching nothing.
    pub fn check_pattern(pattern: &str) -> Result<(), CoreError> {
        match pattern.strip_suffix('*') {
            Some("") => Ok(()),
            Some(prefix) => Self::parse(prefix).map(drop),
            None => Self::parse(pattern).map(drop),
        }
    }
}

fn is_channel_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '@' | '-')
}

fn truncate(name: &str) -> String {
    name.chars().take(40).collect()
}

impl fmt::Display for ChannelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ChannelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl std::borrow::Borrow<str> for ChannelName {
    fn borrow(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_documented_alphabet() {
        for ok in [
            "a",
            "clinic-42.waiting-room",
            "user@x:y_z",
            &"x".repeat(200),
        ] {
            assert_eq!(ChannelName::parse(ok).unwrap().as_str(), ok);
        }
    }

    #[test]
    fn matches_names_and_prefix_patterns() {
        let ch = ChannelName::parse("clinic-42.room").unwrap();
        assert!(ch.matches("clinic-42.room") && ch.matches("clinic-42.*") && ch.matches("*"));
        assert!(!ch.matches("clinic-42") && !ch.matches("clinic-43.*"));
    }

    #[test]
    fn checks_patterns_as_matches_reads_them() {
        for ok in ["*", "clinic-*", "clinic-42.room", "a:b@c_*"] {
            assert!(ChannelName::check_pattern(ok).is_ok(), "{ok:?}");
        }
        for bad in ["", "**", "clinic*-42", "a b*", "caf\u{e9}*"] {
            let err = ChannelName::check_pattern(bad).unwrap_err();
            assert!(matches!(err, CoreError::InvalidChannel(_)), "{bad:?}");
        }
    }

    #[test]
    fn rejects_empty_long_and_foreign_characters() {
        for bad in [
            "",
            &"x".repeat(201),
            "a b",
            "a/b",
            "a~b",
            "a,b",
            "caf\u{e9}",
            "a;b",
        ] {
            let err = ChannelName::parse(bad).unwrap_err();
            assert!(matches!(err, CoreError::InvalidChannel(_)), "{bad:?}");
        }
    }
}
