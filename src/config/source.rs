//! Where a node's configuration comes from: an optional file merged over the embedded defaults,
//! then the environment. The running node keeps its source, so a reload reads the same file and
//! the same environment again.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{Config, ConfigError};

/// Reads an environment variable.
type Env = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

#[derive(Clone)]
pub struct ConfigSource {
    file: Option<PathBuf>,
    env: Env,
}

impl ConfigSource {
    /// `file` (if any) and the process environment.
    pub fn new(file: Option<PathBuf>) -> Self {
        Self::with_env(file, |k| std::env::var(k).ok())
    }

    /// `file` (if any) and the variables `env` answers (tests give their own).
    pub fn with_env(
        file: Option<PathBuf>,
        env: impl Fn(&str) -> Option<String> + Send + Sync + 'static,
    ) -> Self {
        Self {
            file,
            env: Arc::new(env),
        }
    }

    pub fn file(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    /// Reads the file and the environment now and validates the result. An unreadable file is
    /// reported like any other problem.
    pub fn load(&self) -> Result<Config, ConfigError> {
        let text = match &self.file {
            Some(path) => Some(
                std::fs::read_to_string(path)
                    .map_err(|e| ConfigError(vec![format!("reading {}: {e}", path.display())]))?,
            ),
            None => None,
        };
        Config::load(text.as_deref(), &*self.env)
    }
}

impl std::fmt::Debug for ConfigSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfigSource")
            .field("file", &self.file)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_file_each_time_and_reports_a_missing_one() {
        let path = std::env::temp_dir().join(format!("understudy-source-{}", std::process::id()));
        std::fs::write(&path, "[history]\nmax_events = 7\n").unwrap();
        let source = ConfigSource::with_env(Some(path.clone()), |k| {
            (k == "UNDERSTUDY_PUBLISHER_KEYS").then(|| "from-env-0123456789".to_string())
        });
        let c = source.load().unwrap();
        assert_eq!(c.history.max_events, 7);
        assert_eq!(c.auth.publisher_keys[0].expose(), "from-env-0123456789");
        std::fs::write(&path, "[history]\nmax_events = 8\n").unwrap();
        assert_eq!(source.load().unwrap().history.max_events, 8);
        std::fs::remove_file(&path).unwrap();
        let err = source.load().unwrap_err();
        assert!(err.0[0].starts_with("reading "), "{err}");
    }
}
