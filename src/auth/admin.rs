//! Admin tokens: each has a name, recorded with every change it makes.

use subtle::ConstantTimeEq;

use crate::config::secret::Secret;

/// One named admin token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminToken {
    pub name: String,
    pub token: Secret,
}

#[derive(Debug, Clone)]
pub struct AdminTokens(Vec<AdminToken>);

impl AdminTokens {
    pub fn new(tokens: Vec<AdminToken>) -> Self {
        Self(tokens)
    }

    /// The name of the token `presented` matches. Every token is compared, so the time taken does
    /// not say which one came close.
    pub fn identify(&self, presented: &str) -> Option<&str> {
        let presented = presented.as_bytes();
        let mut found = None;
        for t in &self.0 {
            if bool::from(t.token.expose().as_bytes().ct_eq(presented)) {
                found = Some(t.name.as_str());
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifies_by_name() {
        let tokens = AdminTokens::new(vec![
            AdminToken {
                name: "alice".into(),
                token: Secret::new("tok-a"),
            },
            AdminToken {
                name: "env".into(),
                token: Secret::new("tok-b"),
            },
        ]);
        assert_eq!(tokens.identify("tok-b"), Some("env"));
        assert_eq!(tokens.identify("tok-a"), Some("alice"));
        assert_eq!(tokens.identify("tok-"), None);
    }
}
