//! Vendor URLs, the one-line form of a vendor's configuration (`UNDERSTUDY_VENDOR_URL`):
//!
//! ```text
//! pusher://APP_KEY:APP_SECRET@HOST[:PORT]/APP_ID[?tls=false&cluster=mt1&name=..&ws_host=..&ws_port=..&max_data_kb=10]
//! ably://KEY_NAME:KEY_SECRET@HOST[:PORT][?tls=false&name=..&fallback_hosts=a.example,b.example&max_message_kb=64&ws_host=..&ws_port=..]
//! webhook+https://HOST[:PORT]/PATH?secret=SECRET[&name=..]      (also webhook+http://)
//! ```
//!
//! - `tls` defaults to `true`; the port defaults to 443 with TLS and 80 without.
//! - Credentials are percent-decoded, so a secret containing `/`, `+`, `@` or `:` must be
//!   percent-encoded in the URL.
//! - Pusher's cluster is read from an `api-{cluster}.pusher.com` host when not given.
//! - Ably's fallback hosts default to Ably's own only for `main.realtime.ably.net`;
//!   `fallback_hosts=` (empty) turns them off.
//! - For webhooks, `secret` and `name` are removed from the query; the rest of the URL is the
//!   target, query included.
//! - Unknown parameters are errors. Error messages never contain the secret.
//!
//! Examples: `pusher://app-key:app-secret@127.0.0.1:6001/app-id?tls=false`,
//! `pusher://KEY:SECRET@api-eu.pusher.com/123456`, `ably://xVLyHw.mDYnFA:SECRET@main.realtime.ably.net`.

use std::borrow::Cow;

use super::ably::AblyConfig;
use super::pusher::PusherConfig;
use super::webhook::WebhookConfig;
use super::{Secret, VendorConfig};

/// Why a vendor URL was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("not a valid URL: {0}")]
    Invalid(String),
    #[error("unknown vendor scheme `{0}` (expected pusher://, ably://, webhook+http:// or webhook+https://)")]
    UnknownScheme(String),
    #[error("{scheme} URL is missing {what}")]
    Missing {
        scheme: &'static str,
        what: &'static str,
    },
    #[error("{scheme} URL has an invalid `{param}` value")]
    InvalidParam { scheme: &'static str, param: String },
    #[error("{scheme} URL has an unknown parameter `{param}`")]
    UnknownParam { scheme: &'static str, param: String },
}

impl VendorConfig {
    /// Parses a vendor URL (see the module docs for the forms).
    pub fn from_url(text: &str) -> Result<VendorConfig, UrlError> {
        // Only what can be a scheme (RFC 3986: a letter, then letters, digits, `+`, `-`, `.`) is
        // read as one, and only that is ever quoted back: text before a later `://` may hold the
        // credentials of a garbled URL.
        let scheme = text
            .split_once("://")
            .map(|(s, _)| s.to_ascii_lowercase())
            .filter(|s| {
                s.len() <= 32
                    && s.starts_with(|c: char| c.is_ascii_alphabetic())
                    && s.chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
            })
            .unwrap_or_default();
        match scheme.as_str() {
            "pusher" => pusher(text).map(VendorConfig::Pusher),
            "ably" => ably(text).map(VendorConfig::Ably),
            "webhook+http" | "webhook+https" => webhook(text).map(VendorConfig::Webhook),
            "" => Err(UrlError::Invalid("no scheme".into())),
            other => Err(UrlError::UnknownScheme(other.to_owned())),
        }
    }
}

fn parse(text: &str) -> Result<url::Url, UrlError> {
    url::Url::parse(text).map_err(|e| UrlError::Invalid(e.to_string()))
}

fn decode(part: &str) -> String {
    percent_encoding::percent_decode_str(part)
        .decode_utf8_lossy()
        .into_owned()
}

fn bool_param(scheme: &'static str, param: &str, value: &str) -> Result<bool, UrlError> {
    match value {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        _ => Err(UrlError::InvalidParam {
            scheme,
            param: param.to_owned(),
        }),
    }
}

fn number<T: std::str::FromStr>(
    scheme: &'static str,
    param: &str,
    value: &str,
) -> Result<T, UrlError> {
    value.parse().map_err(|_| UrlError::InvalidParam {
        scheme,
        param: param.to_owned(),
    })
}

/// Host, user name and password of a credentialed URL.
fn credentials(url: &url::Url, scheme: &'static str) -> Result<(String, String, Secret), UrlError> {
    let host = url
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or(UrlError::Missing {
            scheme,
            what: "a host",
        })?;
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let user = decode(url.username());
    if user.is_empty() {
        return Err(UrlError::Missing {
            scheme,
            what: "the key before `:`",
        });
    }
    let secret = url.password().map(decode).filter(|s| !s.is_empty());
    let secret = secret.ok_or(UrlError::Missing {
        scheme,
        what: "the secret after `:`",
    })?;
    Ok((host, user, Secret::new(secret)))
}

fn pusher(text: &str) -> Result<PusherConfig, UrlError> {
    const S: &str = "pusher";
    let url = parse(text)?;
    let (host, key, secret) = credentials(&url, S)?;
    let app_id = decode(url.path().trim_matches('/'));
    if app_id.is_empty() || app_id.contains('/') {
        return Err(UrlError::Missing {
            scheme: S,
            what: "the app id as its path (`/APP_ID`)",
        });
    }
    let mut tls = true;
    let mut config = PusherConfig::new(&app_id, &key, secret, &host, 0, true);
    for (param, value) in url.query_pairs() {
        match param.as_ref() {
            "tls" => tls = bool_param(S, &param, &value)?,
            "cluster" => config.cluster = Some(value.into_owned()).filter(|c| !c.is_empty()),
            "name" => config.name = value.into_owned(),
            "ws_host" => config.ws_host = Some(value.into_owned()),
            "ws_port" => config.ws_port = Some(number(S, &param, &value)?),
            "max_data_kb" => config.max_data_bytes = number::<usize>(S, &param, &value)? * 1024,
            other => {
                return Err(UrlError::UnknownParam {
                    scheme: S,
                    param: other.to_owned(),
                })
            }
        }
    }
    config.tls = tls;
    config.port = url.port().unwrap_or(if tls { 443 } else { 80 });
    Ok(config)
}

fn ably(text: &str) -> Result<AblyConfig, UrlError> {
    const S: &str = "ably";
    let url = parse(text)?;
    let (host, key_name, secret) = credentials(&url, S)?;
    if !matches!(url.path(), "" | "/") {
        return Err(UrlError::InvalidParam {
            scheme: S,
            param: "path".into(),
        });
    }
    let mut tls = true;
    let mut config = AblyConfig::new(&key_name, secret, &host, 0, true);
    for (param, value) in url.query_pairs() {
        match param.as_ref() {
            "tls" => tls = bool_param(S, &param, &value)?,
            "name" => config.name = value.into_owned(),
            "fallback_hosts" => {
                config.fallback_hosts = value
                    .split(',')
                    .map(str::trim)
                    .filter(|h| !h.is_empty())
                    .map(str::to_owned)
                    .collect();
            }
            "max_message_kb" => {
                config.max_message_bytes = number::<usize>(S, &param, &value)? * 1024
            }
            "ws_host" => config.ws_host = Some(value.into_owned()),
            "ws_port" => config.ws_port = Some(number(S, &param, &value)?),
            other => {
                return Err(UrlError::UnknownParam {
                    scheme: S,
                    param: other.to_owned(),
                })
            }
        }
    }
    config.tls = tls;
    config.port = url.port().unwrap_or(if tls { 443 } else { 80 });
    Ok(config)
}

fn webhook(text: &str) -> Result<WebhookConfig, UrlError> {
    const S: &str = "webhook";
    let inner = text.split_once('+').map(|(_, rest)| rest).unwrap_or(text);
    let mut url = parse(inner)?;
    if url.host_str().is_none_or(str::is_empty) {
        return Err(UrlError::Missing {
            scheme: S,
            what: "a host",
        });
    }
    let mut secret = None;
    let mut name = None;
    let mut kept: Vec<(String, String)> = Vec::new();
    for (param, value) in url.query_pairs() {
        match param {
            Cow::Borrowed("secret") => secret = Some(value.into_owned()),
            Cow::Borrowed("name") => name = Some(value.into_owned()),
            _ => kept.push((param.into_owned(), value.into_owned())),
        }
    }
    let secret = secret.filter(|s| !s.is_empty()).ok_or(UrlError::Missing {
        scheme: S,
        what: "`?secret=`",
    })?;
    if kept.is_empty() {
        url.set_query(None);
    } else {
        url.query_pairs_mut().clear().extend_pairs(kept);
    }
    let mut config = WebhookConfig::new(url, Secret::new(secret));
    if let Some(name) = name {
        config.name = name;
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pusher_local_server() {
        let VendorConfig::Pusher(c) =
            VendorConfig::from_url("pusher://app-key:app-secret@127.0.0.1:6001/app-id?tls=false")
                .unwrap()
        else {
            panic!("not pusher")
        };
        assert_eq!(
            (c.key.as_str(), c.secret.expose(), c.app_id.as_str()),
            ("app-key", "app-secret", "app-id")
        );
        assert_eq!(
            (c.host.as_str(), c.port, c.tls, c.cluster.as_deref()),
            ("127.0.0.1", 6001, false, None)
        );
        assert_eq!(c.name, "pusher");
    }

    #[test]
    fn pusher_cloud_defaults() {
        let VendorConfig::Pusher(c) =
            VendorConfig::from_url("pusher://KEY:SE%2FCRET@api-eu.pusher.com/123456").unwrap()
        else {
            panic!("not pusher")
        };
        assert_eq!(
            (c.port, c.tls, c.cluster.as_deref()),
            (443, true, Some("eu"))
        );
        assert_eq!(c.secret.expose(), "SE/CRET");
        let VendorConfig::Pusher(c) =
            VendorConfig::from_url("pusher://k:s@h.example/1?tls=false&cluster=mt1&name=backup&ws_port=6002&max_data_kb=100")
                .unwrap()
        else {
            panic!("not pusher")
        };
        assert_eq!(
            (
                c.port,
                c.cluster.as_deref(),
                c.name.as_str(),
                c.ws_port,
                c.max_data_bytes
            ),
            (80, Some("mt1"), "backup", Some(6002), 102400)
        );
    }

    #[test]
    fn ably_forms() {
        let VendorConfig::Ably(c) = VendorConfig::from_url(
            "ably://xVLyHw.mDYnFA:secretSECRETsecret@main.realtime.ably.net",
        )
        .unwrap() else {
            panic!("not ably")
        };
        assert_eq!(
            (c.key_name.as_str(), c.key_secret.expose()),
            ("xVLyHw.mDYnFA", "secretSECRETsecret")
        );
        assert_eq!((c.port, c.tls, c.fallback_hosts.len()), (443, true, 5));
        let VendorConfig::Ably(c) =
            VendorConfig::from_url("ably://app-key:app-secret@127.0.0.1:6001?tls=false").unwrap()
        else {
            panic!("not ably")
        };
        assert_eq!(
            (c.host.as_str(), c.port, c.tls, c.fallback_hosts.len()),
            ("127.0.0.1", 6001, false, 0)
        );
        let VendorConfig::Ably(c) =
            VendorConfig::from_url("ably://k.n:s@main.realtime.ably.net?fallback_hosts=&name=eu")
                .unwrap()
        else {
            panic!("not ably")
        };
        assert!(c.fallback_hosts.is_empty());
        assert_eq!(c.name, "eu");
    }

    #[test]
    fn webhook_strips_the_secret() {
        let VendorConfig::Webhook(c) = VendorConfig::from_url(
            "webhook+https://hooks.example.com/understudy?team=7&secret=whsec_1&name=relay",
        )
        .unwrap() else {
            panic!("not webhook")
        };
        assert_eq!(
            c.url.as_str(),
            "https://hooks.example.com/understudy?team=7"
        );
        assert_eq!((c.secret.expose(), c.name.as_str()), ("whsec_1", "relay"));
        let VendorConfig::Webhook(c) =
            VendorConfig::from_url("webhook+http://127.0.0.1:9/hook?secret=s").unwrap()
        else {
            panic!("not webhook")
        };
        assert_eq!(c.url.as_str(), "http://127.0.0.1:9/hook");
    }

    #[test]
    fn errors_name_the_problem_but_never_the_secret() {
        let cases = [
            ("pusher://key:topsecret@host", "missing the app id"),
            ("pusher://key@host/1", "missing the secret"),
            ("pusher://:topsecret@host/1", "missing the key"),
            ("pusher://k:topsecret@host/1?tls=maybe", "invalid `tls`"),
            (
                "pusher://k:topsecret@host/1?colour=red",
                "unknown parameter `colour`",
            ),
            ("ably://k:topsecret@host/path", "invalid `path`"),
            ("webhook+https://host/hook", "missing `?secret=`"),
            (
                "ably:\r//k:topsecret-1@host/x.ok+https://hooks.example",
                "no scheme",
            ),
            (
                "pubnub://k:topsecret@host",
                "unknown vendor scheme `pubnub`",
            ),
            ("nonsense", "no scheme"),
        ];
        for (url, expected) in cases {
            let message = VendorConfig::from_url(url).unwrap_err().to_string();
            assert!(message.contains(expected), "{url}: {message}");
            assert!(!message.contains("topsecret"), "{url}: {message}");
        }
    }

    #[test]
    fn debug_output_hides_secrets() {
        let c = VendorConfig::from_url("pusher://k:topsecret@host/1").unwrap();
        assert!(!format!("{c:?}").contains("topsecret"));
        let c = VendorConfig::from_url("webhook+https://h/x?secret=topsecret").unwrap();
        assert!(!format!("{c:?}").contains("topsecret"));
    }
}
