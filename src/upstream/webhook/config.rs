//! Webhook settings: the target URL (without the secret) and the signing secret.

use crate::upstream::Secret;

/// A generic signed webhook.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookConfig {
    /// Operator-given vendor name (default `webhook`).
    pub name: String,
    /// Where events are POSTed (`http` or `https`).
    pub url: url::Url,
    /// HMAC-SHA256 key of `X-Understudy-Signature`.
    pub secret: Secret,
    /// Largest event frame sent. Default 64 KiB.
    pub max_body_bytes: usize,
}

impl WebhookConfig {
    pub fn new(url: url::Url, secret: Secret) -> Self {
        WebhookConfig {
            name: "webhook".into(),
            url,
            secret,
            max_body_bytes: 64 * 1024,
        }
    }
}
