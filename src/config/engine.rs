//! The `[engine]` section: memory, or Redis shared by several nodes.

use std::time::Duration;

use serde::Deserialize;

use super::secret::Secret;

/// Where channels are sequenced and kept.
#[derive(Debug, Clone, PartialEq)]
pub enum EngineConfig {
    /// This process's memory; one node.
    Memory,
    /// A Redis shared by every node.
    Redis(RedisConfig),
}

#[derive(Debug, Clone, PartialEq)]
pub struct RedisConfig {
    /// The URL, which may carry a password: never logged as is (see [`RedisConfig::display`]).
    pub url: Secret,
    pub prefix: String,
    pub timeout: Duration,
}

impl RedisConfig {
    /// The URL without credentials, for logs and status.
    pub fn display(&self) -> String {
        match url::Url::parse(self.url.expose()) {
            Ok(u) => format!(
                "{}://{}:{}{}",
                u.scheme(),
                u.host_str().unwrap_or(""),
                u.port().unwrap_or(6379),
                u.path()
            ),
            Err(_) => "redis://(unparsable)".into(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEngine {
    pub(super) url: String,
    prefix: String,
    timeout_ms: u64,
}

impl RawEngine {
    pub(super) fn validate(self, errs: &mut Vec<String>) -> EngineConfig {
        let url = self.url.trim();
        if url.is_empty() {
            return EngineConfig::Memory;
        }
        match url::Url::parse(url) {
            Ok(u) if matches!(u.scheme(), "redis" | "rediss") && u.host_str().is_some() => {}
            _ => errs.push(format!(
                "engine.url must be empty (memory) or redis://[:PASSWORD@]HOST:PORT/DB; got {:?}",
                redact(url)
            )),
        }
        if self.prefix.is_empty() || self.prefix.contains(['{', '}', ' ']) {
            errs.push("engine.prefix must be non-empty, without braces or spaces".into());
        }
        if self.timeout_ms == 0 || self.timeout_ms > 30_000 {
            errs.push("engine.timeout_ms must be 1 to 30000".into());
        }
        EngineConfig::Redis(RedisConfig {
            url: Secret::new(url),
            prefix: self.prefix,
            timeout: Duration::from_millis(self.timeout_ms),
        })
    }
}

/// A URL with any password replaced, for error messages.
fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(url: &str) -> RawEngine {
        RawEngine {
            url: url.into(),
            prefix: "understudy".into(),
            timeout_ms: 1000,
        }
    }

    #[test]
    fn empty_url_is_memory_and_redis_url_is_redis() {
        let mut errs = Vec::new();
        assert!(matches!(raw("").validate(&mut errs), EngineConfig::Memory));
        let EngineConfig::Redis(r) = raw("redis://:pw@127.0.0.1:6390/2").validate(&mut errs) else {
            panic!("expected redis")
        };
        assert!(errs.is_empty(), "{errs:?}");
        assert_eq!(r.display(), "redis://127.0.0.1:6390/2");
    }

    #[test]
    fn bad_url_is_refused_without_showing_the_password() {
        let mut errs = Vec::new();
        raw("http://:hunter2@x/").validate(&mut errs);
        assert_eq!(errs.len(), 1);
        assert!(!errs[0].contains("hunter2"), "{}", errs[0]);
    }
}
