//! Reloading the configuration of a running node, the same way for SIGHUP and
//! `POST /admin/reload`: read the file and environment the node started with, validate all of it,
//! and either apply it whole or refuse it whole.
//!
//! What applies at once: keys and tokens (publisher keys, the subscriber secret and mode, admin
//! tokens), publish, history, channel and subscriber limits, the drain and shutdown timing,
//! maintenance limits, and the vendors with every delivery and failover knob (the vendor side is
//! rebuilt, only when one of those changed). Open connections are never dropped: they keep the
//! settings they started with (a WebSocket's buffer, heartbeat and token), new work gets the new
//! ones. What is read once at start-up keeps running as it is and is reported as needing a
//! restart: the listeners, CORS origins, logging, the demo and the audit writer.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde_json::json;

use super::{admin_tokens, registry_limits, subscriber_auth, AppState};
use crate::config::ConfigError;
use crate::failover::PreparedSide;
use crate::ops::audit::{AuditAction, AuditEntry};
pub use crate::transport::state::{ConfigOrigin, ReloadError, Reloaded, Reloader};

/// The one [`Reloader`]: the configuration source in `AppState::origin`, applied here.
#[derive(Debug)]
pub(crate) struct ConfigReloader;

impl Reloader for ConfigReloader {
    fn reload<'a>(
        &'a self,
        state: &'a AppState,
        by: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<Reloaded, ReloadError>> + Send + 'a>> {
        Box::pin(state.reload_from_origin(by))
    }
}

impl AppState {
    /// Reads the configuration source again and applies it, or refuses it whole (the running
    /// configuration stays). `by` is who asked (an admin token's name, or `sighup`); both
    /// outcomes go to the audit trail and the log.
    async fn reload_from_origin(&self, by: &str) -> Result<Reloaded, ReloadError> {
        let _one = self.origin.one_at_a_time.lock().await;
        let outcome = self.reload_now().await;
        match &outcome {
            Ok(done) => {
                tracing::info!(by, changed = ?done.changed, vendors_rebuilt = done.vendors_rebuilt, "configuration reloaded");
                if !done.restart_required.is_empty() {
                    tracing::warn!(by, settings = ?done.restart_required, "configuration reloaded; these settings changed but apply only after a restart");
                }
                self.audit.record(
                    AuditEntry::new(by, AuditAction::ConfigReloaded)
                        .with_details(serde_json::to_value(done).unwrap_or_default()),
                );
            }
            Err(ReloadError::Invalid(e)) => {
                // The file on disk would also stop a restart: an operator must act.
                tracing::error!(by, errors = ?e.0, "configuration reload rejected; the running configuration stays");
                // One line per problem: a TOML error quotes the line it is on, which may hold a
                // secret, and the audit trail is kept for weeks.
                let errors: Vec<&str> = e.0.iter().filter_map(|m| m.lines().next()).collect();
                self.audit.record(
                    AuditEntry::new(by, AuditAction::ConfigRejected)
                        .with_details(json!({ "errors": errors }))
                        .with_reason("the running configuration stays"),
                );
            }
            Err(e) => tracing::error!(by, error = %e, "configuration reload failed"),
        }
        outcome
    }

    async fn reload_now(&self) -> Result<Reloaded, ReloadError> {
        let source = self
            .origin
            .source
            .get()
            .cloned()
            .ok_or(ReloadError::NoSource)?;
        let loaded = tokio::task::spawn_blocking(move || source.load())
            .await
            .unwrap_or_else(|e| Err(ConfigError(vec![format!("reading the configuration: {e}")])));
        let running = self.config.load_full();
        let reload = running.reload(loaded?);
        // Everything that can fail is done before anything is applied.
        let vendors = &reload.config.vendors;
        let side = if reload.rebuilds_vendors(&running) {
            let side = PreparedSide::build(&vendors.vendors, vendors.failover.clone())
                .map_err(|e| ConfigError(vec![format!("vendors: {e}")]))?;
            Some(side)
        } else {
            None
        };
        let tenant_vendors = super::tenant_vendors(&reload.config);
        let own = (self.failover)
            .plan_tenants(tenant_vendors, &vendors.failover)
            .map_err(|e| ConfigError(vec![format!("tenants: vendors: {e}")]))?;
        let config = &reload.config;
        for warning in config.uses_dev_credentials() {
            tracing::warn!("{warning}: anyone who has read the docs can use it; set your own before exposing this server");
        }
        if let Some(warning) = config.public_vendor_channels() {
            tracing::warn!("{warning}");
        }
        self.engine.registry().set_limits(registry_limits(config));
        self.tenants.store(Arc::new(super::tenants(config)));
        self.subscribers.store(Arc::new(subscriber_auth(config)));
        self.admins.store(Arc::new(admin_tokens(config)));
        self.apps
            .store(Arc::new(crate::auth::Apps::new(&config.apps)));
        (self.lifecycle).set_timing(config.server.reconnect_jitter, config.server.drain_window);
        self.config.store(Arc::new(reload.config.clone()));
        self.refresh_self_path();
        let rebuilt = match side {
            Some(side) => Some(self.failover.rebuild(side).await?),
            None => None,
        };
        let own_rebuilt = self.failover.apply_tenants(own).await?;
        Ok(Reloaded {
            changed: reload.changed,
            restart_required: reload.restart_required,
            vendors_rebuilt: rebuilt.is_some() || own_rebuilt > 0,
            vendor_queue_dropped: rebuilt.map_or(0, |r| r.queued_dropped),
        })
    }
}

/// Reloads once for every item of `signals` (SIGHUP in `understudy serve`), until it ends.
/// The outcome is logged and audited by [`AppState::reload`].
pub async fn reload_on<S>(state: AppState, signals: S)
where
    S: futures_util::Stream<Item = ()>,
{
    use futures_util::StreamExt;
    let mut signals = std::pin::pin!(signals);
    while signals.next().await.is_some() {
        let _ = state.reload("sighup").await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::Background;
    use crate::config::{Config, ConfigSource};
    use crate::ops::audit::testdir::TestDir;

    const START: &str =
        "[auth]\npublisher_keys = [\"old-key-0123456789\"]\n[publish]\nmax_body_bytes = 1000\n";

    fn accepts(state: &AppState, key: &str) -> bool {
        state.tenants.load().by_publisher_key(key).is_some()
    }

    /// A node whose configuration comes from a file in `dir`.
    fn node(dir: &TestDir) -> (AppState, std::path::PathBuf, Background) {
        let file = dir.path().join("understudy.toml");
        std::fs::write(&file, START).unwrap();
        let audit = dir.path().join("audit").display().to_string();
        let source = ConfigSource::with_env(Some(file.clone()), move |k| {
            (k == "UNDERSTUDY_AUDIT_DIR").then(|| audit.clone())
        });
        let background = Background::default();
        let state = AppState::new(source.load().unwrap(), &background).unwrap();
        state.origin.set_source(source);
        (state, file, background)
    }

    #[tokio::test]
    async fn each_signal_reloads_the_file() {
        let dir = TestDir::new();
        let (state, file, background) = node(&dir);
        std::fs::write(&file, "[auth]\npublisher_keys = [\"new-key-0123456789\"]\n").unwrap();
        reload_on(state.clone(), futures_util::stream::iter([()])).await;
        assert!(accepts(&state, "new-key-0123456789"));
        assert!(!accepts(&state, "old-key-0123456789"));
        assert_eq!(
            state.config.load().publish.max_body_bytes,
            Config::embedded().publish.max_body_bytes
        );
        background.cancel.cancel();
    }

    #[tokio::test]
    async fn an_invalid_file_is_refused_whole_with_every_problem() {
        let dir = TestDir::new();
        let (state, file, background) = node(&dir);
        std::fs::write(
            &file,
            "[auth]\npublisher_keys = [\"new-key-0123456789\"]\n[history]\nmax_events = 0\n[log]\nformat = \"xml\"\n",
        )
        .unwrap();
        let Err(ReloadError::Invalid(e)) = state.reload("oncall").await else {
            panic!("expected a refusal")
        };
        assert_eq!(e.0.len(), 2, "{e}");
        assert!(accepts(&state, "old-key-0123456789"));
        assert!(!accepts(&state, "new-key-0123456789"));
        assert_eq!(state.config.load().publish.max_body_bytes, 1000);
        background.cancel.cancel();
    }

    #[tokio::test]
    async fn without_a_source_a_reload_is_refused() {
        let background = Background::default();
        let dir = TestDir::new();
        let audit = dir.path().display().to_string();
        let config = Config::load(None, &|k| {
            (k == "UNDERSTUDY_AUDIT_DIR").then(|| audit.clone())
        })
        .unwrap();
        let state = AppState::new(config, &background).unwrap();
        assert!(matches!(
            state.reload("oncall").await,
            Err(ReloadError::NoSource)
        ));
        background.cancel.cancel();
    }
}
