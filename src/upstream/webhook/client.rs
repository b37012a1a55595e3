//! [`WebhookVendor`]: one signed `POST` per event.

use futures_util::future::BoxFuture;

use super::config::WebhookConfig;
use super::{
    classify, signing, CHANNEL_HEADER, EVENT_ID_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER,
};
use crate::upstream::http::HttpClient;
use crate::upstream::{ErrorClass, OutboundEvent, PublicInfo, Vendor, VendorError, VendorKind};

/// The webhook adapter.
#[derive(Debug)]
pub(crate) struct WebhookVendor {
    config: WebhookConfig,
    http: HttpClient,
}

impl WebhookVendor {
    pub(crate) fn new(config: WebhookConfig, http: HttpClient) -> Self {
        WebhookVendor { config, http }
    }

    async fn post(&self, event: &OutboundEvent) -> Result<(), VendorError> {
        let signature = signing::signature(&self.config.secret, &event.frame);
        let timestamp = (crate::upstream::unix_ms() / 1000).to_string();
        let request = self
            .http
            .post(self.config.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(SIGNATURE_HEADER, signature)
            .header(TIMESTAMP_HEADER, timestamp)
            .header(EVENT_ID_HEADER, event.id.as_str())
            .header(CHANNEL_HEADER, event.channel.as_str())
            .body(event.frame.clone());
        let answer = self.http.send(request).await?;
        classify::classify(answer.status, &answer.body)
    }
}

impl Vendor for WebhookVendor {
    fn name(&self) -> &str {
        &self.config.name
    }

    fn kind(&self) -> VendorKind {
        VendorKind::Webhook
    }

    fn public_info(&self) -> PublicInfo {
        PublicInfo {
            kind: VendorKind::Webhook,
            key: None,
            host: self.config.url.host_str().unwrap_or_default().to_owned(),
            port: self.config.url.port_or_known_default().unwrap_or(0),
            tls: self.config.url.scheme() == "https",
            cluster: None,
            private: false,
        }
    }

    fn check(&self, event: &OutboundEvent) -> Result<(), VendorError> {
        if event.frame.len() > self.config.max_body_bytes {
            return Err(VendorError::Rejected {
                class: ErrorClass::Request,
                status: 413,
                code: None,
                message: format!(
                    "event is {} bytes, over the {} byte limit",
                    event.frame.len(),
                    self.config.max_body_bytes
                ),
            });
        }
        Ok(())
    }

    fn publish<'a>(
        &'a self,
        events: &'a [OutboundEvent],
    ) -> BoxFuture<'a, Result<(), VendorError>> {
        Box::pin(async move {
            for event in events {
                self.post(event).await?;
            }
            Ok(())
        })
    }
}
