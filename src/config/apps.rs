//! `[[apps]]`: the applications publishers and pages name in the Pusher and Ably protocols
//! (`/apps/{id}/events`, `/channels/{channel}/messages`, `/app/{key}`), each with the id, key and
//! secret that team already uses, so adopting understudy is a change of host name.
//!
//! No `[[apps]]` is the single-tenant setup of `/v1/publish` and the understudy client, which
//! keeps working with or without apps. Every app shares the one channel space with it.

use serde::Deserialize;

use super::secret::Secret;

/// One application, as a Pusher app (`id`, `key`, `secret`) or an Ably key
/// (`key` is the key name, `secret` the key secret: `key:secret` is the Ably API key).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppConfig {
    /// Pusher app id (`/apps/{id}/...`), `[A-Za-z0-9_-]`.
    pub id: String,
    /// Public key: Pusher app key (`/app/{key}`, `auth_key`), Ably key name.
    pub key: String,
    /// Signs and checks requests and channel authorisations; never printed.
    pub secret: Secret,
    /// What the vendor receives for this app's events.
    pub forward: Forward,
}

/// What an app's events become on the vendor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Forward {
    /// The `[vendors]` list receives each event as it was published: the same channel, event
    /// name and data, so pages still subscribed to the vendor with pusher-js or ably-js see what
    /// they saw before understudy was put in front.
    AsPublished,
    /// Nothing goes to a vendor: the app's clients use understudy's own transports.
    None,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawApp {
    id: String,
    key: String,
    #[serde(default)]
    secret: Option<String>,
    /// The name of an environment variable holding the secret, so the file can be committed.
    #[serde(default)]
    secret_env: Option<String>,
    #[serde(default = "as_published")]
    forward: String,
    /// The value of `secret_env`, read by [`apply_env`] with the other environment overrides.
    #[serde(skip)]
    from_env: Option<String>,
}

fn as_published() -> String {
    "as_published".into()
}

impl std::fmt::Debug for RawApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawApp")
            .field("id", &self.id)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

fn id_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_'
}

fn key_char(c: char) -> bool {
    id_char(c) || c == '.'
}

/// Reads each app's `secret_env` variable.
pub(super) fn apply_env(apps: &mut [RawApp], env: &dyn Fn(&str) -> Option<String>) {
    for app in apps {
        app.from_env = app.secret_env.as_deref().and_then(env);
    }
}

/// Validates every app, collecting each problem into `errs` (never quoting a secret).
pub(super) fn validate(
    raw: Vec<RawApp>,
    min_secret: usize,
    errs: &mut Vec<String>,
) -> Vec<AppConfig> {
    let mut apps = Vec::with_capacity(raw.len());
    let mut ids = std::collections::HashSet::new();
    let mut keys = std::collections::HashSet::new();
    for (i, app) in raw.into_iter().enumerate() {
        let at = format!("apps[{i}]");
        let before = errs.len();
        if app.id.is_empty() || app.id.len() > 64 || !app.id.chars().all(id_char) {
            errs.push(format!(
                "{at}.id = {:?}: use 1 to 64 of A-Z a-z 0-9 - _",
                app.id
            ));
        }
        if app.key.is_empty() || app.key.len() > 64 || !app.key.chars().all(key_char) {
            errs.push(format!(
                "{at}.key = {:?}: use 1 to 64 of A-Z a-z 0-9 - _ .",
                app.key
            ));
        }
        if !ids.insert(app.id.clone()) {
            errs.push(format!("{at}.id = {:?} is given to another app", app.id));
        }
        if !keys.insert(app.key.clone()) {
            errs.push(format!("{at}.key = {:?} is given to another app", app.key));
        }
        let secret = match (app.secret, app.secret_env) {
            (Some(s), None) => Some(s),
            (None, Some(var)) => match app.from_env {
                Some(s) => Some(s),
                None => {
                    errs.push(format!(
                        "{at}.secret_env = {var:?}: that environment variable is not set"
                    ));
                    None
                }
            },
            _ => {
                errs.push(format!("{at}: give exactly one of secret and secret_env"));
                None
            }
        };
        if let Some(s) = &secret {
            if s.len() < min_secret {
                errs.push(format!(
                    "{at}.secret has {} characters; use at least {min_secret}",
                    s.len()
                ));
            }
        }
        let forward = match app.forward.as_str() {
            "as_published" => Forward::AsPublished,
            "none" => Forward::None,
            other => {
                errs.push(format!(
                    "{at}.forward = {other:?}: use \"as_published\" or \"none\""
                ));
                Forward::None
            }
        };
        if errs.len() == before {
            apps.push(AppConfig {
                id: app.id,
                key: app.key,
                secret: Secret::new(secret.unwrap_or_default()),
                forward,
            });
        }
    }
    apps
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(id: &str, key: &str, secret: &str) -> RawApp {
        RawApp {
            id: id.into(),
            key: key.into(),
            secret: Some(secret.into()),
            secret_env: None,
            forward: as_published(),
            from_env: None,
        }
    }

    #[test]
    fn valid_apps_pass_and_secrets_come_from_the_environment() {
        let mut env_app = raw("2", "k2", "");
        env_app.secret = None;
        env_app.secret_env = Some("APP2_SECRET".into());
        let env = |name: &str| (name == "APP2_SECRET").then(|| "s".repeat(20));
        let mut raws = vec![raw("1", "k1", "0123456789abcdef"), env_app];
        apply_env(&mut raws, &env);
        let mut errs = Vec::new();
        let apps = validate(raws, 16, &mut errs);
        assert!(errs.is_empty(), "{errs:?}");
        assert_eq!(apps.len(), 2);
        assert_eq!(apps[1].secret.expose(), "s".repeat(20));
        assert_eq!(apps[0].forward, Forward::AsPublished);
    }

    #[test]
    fn every_problem_is_named_and_no_secret_is_quoted() {
        let mut both = raw("3", "k3", "0123456789abcdef");
        both.secret_env = Some("X".into());
        let mut fwd = raw("4", "k4", "0123456789abcdef");
        fwd.forward = "sideways".into();
        let mut errs = Vec::new();
        let apps = validate(
            vec![
                raw("1", "k1", "short-secret"),
                raw("1", "k:1", "0123456789abcdef"),
                both,
                fwd,
            ],
            16,
            &mut errs,
        );
        assert!(apps.is_empty());
        let all = errs.join("\n");
        for want in [
            "apps[0].secret has 12 characters",
            "apps[1].id = \"1\" is given to another app",
            "apps[1].key = \"k:1\"",
            "apps[2]: give exactly one of secret and secret_env",
            "apps[3].forward = \"sideways\"",
        ] {
            assert!(all.contains(want), "missing {want:?} in {all}");
        }
        assert!(!all.contains("short-secret"), "{all}");
    }
}
