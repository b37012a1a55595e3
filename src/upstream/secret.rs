//! [`Secret`]: a credential (API secret, webhook key) that never shows up in `Debug` output,
//! logs or error messages. It has no `Display`; [`Secret::expose`] is the only way to the text.

use std::fmt;

/// A credential. `Debug` prints `Secret(***)`; there is no `Display` and no `Serialize`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Box<str>);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into().into_boxed_str())
    }

    /// The secret text, for signing only.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_prints_the_value() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), "Secret(***)");
        assert_eq!(
            format!("{:#?}", Some(s.clone())),
            "Some(\n    Secret(***),\n)"
        );
        assert_eq!(s.expose(), "hunter2");
    }
}
