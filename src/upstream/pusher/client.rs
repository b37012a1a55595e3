//! [`PusherVendor`]: publishes through the Pusher HTTP API. One event goes to
//! `POST /apps/{app_id}/events`; several go to `POST /apps/{app_id}/batch_events` (at most 10
//! per call).

use std::borrow::Cow;

use futures_util::future::BoxFuture;
use serde::Serialize;
use tokio::sync::mpsc;

use super::config::{PusherConfig, MAX_BATCH, MAX_CHANNEL_LEN};
use super::{classify, realtime, signing, wire_channel_of, wire_event_name};
use crate::upstream::http::HttpClient;
use crate::upstream::pusher::max_understudy_channel_len;
use crate::upstream::realtime::{Arrival, RealtimeConfig, SessionEnd};
use crate::upstream::{
    BuildError, ErrorClass, EventKind, OutboundEvent, PublicInfo, Vendor, VendorError, VendorKind,
};

/// The Pusher adapter.
#[derive(Debug)]
pub struct PusherVendor {
    config: PusherConfig,
    http: HttpClient,
    realtime: RealtimeConfig,
    /// `http(s)://host:port`.
    base: url::Url,
    /// `/apps/{app_id}/events`.
    events_path: String,
    /// `/apps/{app_id}/batch_events`.
    batch_path: String,
    realtime_url: url::Url,
}

#[derive(Serialize)]
struct Trigger<'a> {
    name: &'a str,
    channel: &'a str,
    data: Cow<'a, str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    socket_id: Option<&'a str>,
}

#[derive(Serialize)]
struct Batch<'a> {
    batch: Vec<Trigger<'a>>,
}

impl PusherVendor {
    pub fn new(
        config: PusherConfig,
        http: HttpClient,
        realtime: RealtimeConfig,
    ) -> Result<Self, BuildError> {
        let endpoint = |e: url::ParseError| BuildError::Endpoint {
            vendor: config.name.clone(),
            message: e.to_string(),
        };
        let base = config.api_base().map_err(endpoint)?;
        let realtime_url = config.realtime_url().map_err(endpoint)?;
        let app =
            percent_encoding::utf8_percent_encode(&config.app_id, crate::upstream::PATH_SEGMENT);
        Ok(PusherVendor {
            events_path: format!("/apps/{app}/events"),
            batch_path: format!("/apps/{app}/batch_events"),
            config,
            http,
            realtime,
            base,
            realtime_url,
        })
    }

    pub fn config(&self) -> &PusherConfig {
        &self.config
    }

    /// Serialises the request body for `events`: a single trigger or a batch.
    fn body(events: &[OutboundEvent], private: bool) -> Result<(bool, Vec<u8>), VendorError> {
        let mut channels = Vec::with_capacity(events.len());
        for e in events {
            channels.push(wire_channel_of(e, private));
        }
        let mut triggers = Vec::with_capacity(events.len());
        for (e, channel) in events.iter().zip(&channels) {
            triggers.push(Trigger {
                name: wire_event_name(e),
                channel,
                data: pusher_data(e)?,
                socket_id: e.socket_id.as_deref(),
            });
        }
        let internal = |e: serde_json::Error| VendorError::Internal(e.to_string());
        if let [single] = triggers.as_slice() {
            Ok((false, serde_json::to_vec(single).map_err(internal)?))
        } else {
            Ok((
                true,
                serde_json::to_vec(&Batch { batch: triggers }).map_err(internal)?,
            ))
        }
    }

    async fn post(&self, events: &[OutboundEvent]) -> Result<(), VendorError> {
        let (batch, body) = Self::body(events, self.config.private_channels)?;
        let path = if batch {
            &self.batch_path
        } else {
            &self.events_path
        };
        let timestamp = crate::upstream::unix_ms() / 1000;
        let query = signing::signed_query(
            &self.config.key,
            &self.config.secret,
            path,
            &body,
            timestamp,
        );
        let mut url = self.base.clone();
        url.set_path(path);
        url.set_query(Some(&query));
        let request = self
            .http
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        let answer = self.http.send(request).await?;
        classify::classify(answer.status, &answer.body)
    }
}

/// The `data` string Pusher receives: the event JSON (understudy's frame), or for an event
/// forwarded as published its own data: the string itself when it was published as a string
/// (every Pusher event), else its JSON text (what a Pusher SDK sends for an object).
fn pusher_data(event: &OutboundEvent) -> Result<Cow<'_, str>, VendorError> {
    let Some(data) = event.data_str()? else {
        return Ok(Cow::Borrowed(event.frame_str()?));
    };
    if data.starts_with('"') {
        let text: String = serde_json::from_str(data)
            .map_err(|e| VendorError::Internal(format!("event data is not a JSON string: {e}")))?;
        Ok(Cow::Owned(text))
    } else {
        Ok(Cow::Borrowed(data))
    }
}

impl Vendor for PusherVendor {
    fn name(&self) -> &str {
        &self.config.name
    }

    fn kind(&self) -> VendorKind {
        VendorKind::Pusher
    }

    fn public_info(&self) -> PublicInfo {
        PublicInfo {
            kind: VendorKind::Pusher,
            key: Some(self.config.key.clone()),
            host: self.config.realtime_host(),
            port: self.config.realtime_port(),
            tls: self.config.tls,
            cluster: self.config.cluster.clone(),
            private: self.config.private_channels,
        }
    }

    fn max_batch(&self) -> usize {
        MAX_BATCH
    }

    fn check(&self, event: &OutboundEvent) -> Result<(), VendorError> {
        let reject = |message: String| VendorError::Rejected {
            class: ErrorClass::Request,
            status: 413,
            code: None,
            message,
        };
        let size = pusher_data(event)?.len();
        if size > self.config.max_data_bytes {
            return Err(reject(format!(
                "event is {size} bytes, over the vendor's {} byte limit",
                self.config.max_data_bytes
            )));
        }
        let private = self.config.private_channels && event.kind != EventKind::AsPublished;
        let max = max_understudy_channel_len(private);
        if event.channel.len() > max {
            return Err(reject(format!(
                "channel name over {max} characters: with the vendor's prefix it would pass \
                 Pusher's {MAX_CHANNEL_LEN}"
            )));
        }
        Ok(())
    }

    fn publish<'a>(
        &'a self,
        events: &'a [OutboundEvent],
    ) -> BoxFuture<'a, Result<(), VendorError>> {
        Box::pin(async move {
            for chunk in events.chunks(MAX_BATCH) {
                self.post(chunk).await?;
            }
            Ok(())
        })
    }

    fn has_realtime(&self) -> bool {
        true
    }

    fn listen<'a>(
        &'a self,
        channel: &'a str,
        arrivals: mpsc::Sender<Arrival>,
    ) -> BoxFuture<'a, SessionEnd> {
        // The canary signs its own subscription: the secret never leaves the process.
        let signer = self
            .config
            .private_channels
            .then_some((self.config.key.as_str(), &self.config.secret));
        Box::pin(realtime::session(
            &self.realtime_url,
            self.http.tls(),
            channel,
            signer,
            &self.realtime,
            arrivals,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::Priority;
    use bytes::Bytes;

    fn event(channel: &str, frame: &str) -> OutboundEvent {
        OutboundEvent::new(
            channel,
            "patient.checked_in",
            "id-1",
            Bytes::from(frame.to_owned()),
            Priority::Realtime,
        )
    }

    #[test]
    fn single_event_body_maps_channel_and_name() {
        let (batch, body) = PusherVendor::body(&[event("a:b", r#"{"seq":1}"#)], false).unwrap();
        assert!(!batch);
        assert_eq!(
            String::from_utf8(body).unwrap(),
            r#"{"name":"understudy.event","channel":"a;b","data":"{\"seq\":1}"}"#
        );
        let (_, body) = PusherVendor::body(&[event("a:b", "1")], true).unwrap();
        assert_eq!(
            String::from_utf8(body).unwrap(),
            r#"{"name":"understudy.event","channel":"private-a;b","data":"1"}"#
        );
    }

    #[test]
    fn several_events_use_the_batch_body() {
        let mut hb = OutboundEvent::heartbeat(5, "h");
        hb.kind = EventKind::Heartbeat;
        let (batch, body) = PusherVendor::body(&[event("a", "1"), hb], true).unwrap();
        assert!(batch);
        assert_eq!(
            String::from_utf8(body).unwrap(),
            r#"{"batch":[{"name":"understudy.event","channel":"private-a","data":"1"},{"name":"understudy.heartbeat","channel":"private-understudy.heartbeat","data":"{\"type\":\"heartbeat\",\"ts\":5}"}]}"#
        );
    }

    fn as_published(channel: &str, data: &str, socket_id: Option<&str>) -> OutboundEvent {
        OutboundEvent::as_published(
            channel,
            "order.paid",
            "id-2",
            Bytes::from_static(b"{}"),
            Bytes::from(data.to_owned()),
            socket_id.map(str::to_owned),
            Priority::Realtime,
        )
    }

    #[test]
    fn an_event_as_published_keeps_its_channel_name_and_string_data() {
        let string = as_published("orders-7", r#""{\"total\":12}""#, Some("123.456"));
        let object = as_published("private-orders-7", r#"{"total":12}"#, None);
        let (batch, body) = PusherVendor::body(std::slice::from_ref(&string), true).unwrap();
        assert!(!batch);
        assert_eq!(
            String::from_utf8(body).unwrap(),
            r#"{"name":"order.paid","channel":"orders-7","data":"{\"total\":12}","socket_id":"123.456"}"#
        );
        let (_, body) = PusherVendor::body(&[object, event("a", "1")], true).unwrap();
        assert_eq!(
            String::from_utf8(body).unwrap(),
            r#"{"batch":[{"name":"order.paid","channel":"private-orders-7","data":"{\"total\":12}"},{"name":"understudy.event","channel":"private-a","data":"1"}]}"#
        );
    }

    #[test]
    fn channel_names_must_fit_pusher_with_the_private_prefix() {
        let http = HttpClient::new(&crate::upstream::http::HttpConfig::default()).unwrap();
        let mut config = PusherConfig::new(
            "1",
            "k",
            crate::upstream::Secret::new("s"),
            "127.0.0.1",
            6001,
            false,
        );
        let private =
            PusherVendor::new(config.clone(), http.clone(), RealtimeConfig::default()).unwrap();
        config.private_channels = false;
        let public = PusherVendor::new(config, http, RealtimeConfig::default()).unwrap();
        let (fits, over) = (event(&"c".repeat(156), "1"), event(&"c".repeat(157), "1"));
        assert!(private.check(&fits).is_ok());
        assert!(matches!(
            private.check(&over),
            Err(VendorError::Rejected { status: 413, .. })
        ));
        assert!(public.check(&over).is_ok());
        assert!(public.check(&event(&"c".repeat(165), "1")).is_err());
    }
}
