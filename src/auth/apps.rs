//! The configured apps, found by Pusher app id or by key, with their secrets compared in
//! constant time.

use std::collections::HashMap;
use std::sync::Arc;

use subtle::ConstantTimeEq;

use crate::config::apps::AppConfig;

/// Apps by id and by key. Built from the configuration and replaced whole by a reload.
#[derive(Debug, Default, Clone)]
pub struct Apps {
    by_id: HashMap<String, Arc<AppConfig>>,
    by_key: HashMap<String, Arc<AppConfig>>,
}

impl Apps {
    pub fn new(apps: &[AppConfig]) -> Self {
        let mut this = Apps::default();
        for app in apps {
            let app = Arc::new(app.clone());
            this.by_id.insert(app.id.clone(), app.clone());
            this.by_key.insert(app.key.clone(), app);
        }
        this
    }

    /// The app a Pusher HTTP API path names (`/apps/{id}/...`).
    pub fn by_id(&self, id: &str) -> Option<Arc<AppConfig>> {
        self.by_id.get(id).cloned()
    }

    /// The app a Pusher WebSocket path (`/app/{key}`) or an Ably key name names.
    pub fn by_key(&self, key: &str) -> Option<Arc<AppConfig>> {
        self.by_key.get(key).cloned()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}

impl AppConfig {
    /// Whether `presented` is this app's secret, in time that does not depend on how much of it
    /// matched.
    pub fn secret_is(&self, presented: &str) -> bool {
        bool::from(self.secret.expose().as_bytes().ct_eq(presented.as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::apps::Forward;
    use crate::config::secret::Secret;

    #[test]
    fn finds_apps_by_id_and_key_and_checks_secrets() {
        let app = AppConfig {
            id: "42".into(),
            key: "clinic-key".into(),
            secret: Secret::new("0123456789abcdef"),
            forward: Forward::AsPublished,
        };
        let apps = Apps::new(&[app]);
        assert_eq!(apps.by_id("42").unwrap().key, "clinic-key");
        assert_eq!(apps.by_key("clinic-key").unwrap().id, "42");
        assert!(apps.by_id("clinic-key").is_none() && apps.by_key("42").is_none());
        let app = apps.by_id("42").unwrap();
        assert!(app.secret_is("0123456789abcdef"));
        assert!(!app.secret_is("0123456789abcde") && !app.secret_is(""));
    }
}
