//! [`AblyVendor`]: publishes each event as one message to
//! `POST /channels/{urlenc(channel)}/messages` with the event id as the message `id`, so a
//! retry (same body, possibly on a fallback host) is delivered at most once.
//!
//! Messages are not batched into arrays: Ably requires array ids to share one base
//! (`<base>:<i>`), which would replace the event id.

use futures_util::future::BoxFuture;
use parking_lot::Mutex;
use percent_encoding::utf8_percent_encode;
use serde::Serialize;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::config::{AblyConfig, FALLBACK_RETRY_TIMEOUT, PROTOCOL_VERSION};
use super::{classify, realtime, signing};
use crate::upstream::http::HttpClient;
use crate::upstream::realtime::{Arrival, RealtimeConfig, SessionEnd};
use crate::upstream::{
    BuildError, ErrorClass, OutboundEvent, PublicInfo, Vendor, VendorError, VendorKind,
};

use crate::upstream::PATH_SEGMENT as SEGMENT;

/// The Ably adapter. Its `Debug` shows neither the key secret nor the realtime URL.
pub struct AblyVendor {
    config: AblyConfig,
    http: HttpClient,
    realtime: RealtimeConfig,
    authorization: reqwest::header::HeaderValue,
    /// REST base URL of the primary host, then of each fallback host.
    bases: Vec<url::Url>,
    /// Which base to use, and until when a fallback stays preferred.
    host: Mutex<HostChoice>,
    /// Carries the key in its query: never log it.
    realtime_url: url::Url,
}

impl std::fmt::Debug for AblyVendor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AblyVendor")
            .field("name", &self.config.name)
            .field("host", &self.config.host)
            .field("port", &self.config.port)
            .field("tls", &self.config.tls)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Default)]
struct HostChoice {
    /// Index into `bases`; 0 is the primary.
    current: usize,
    /// When to go back to the primary.
    until: Option<Instant>,
}

#[derive(Serialize)]
struct Message<'a> {
    id: &'a str,
    name: &'a str,
    data: Data<'a>,
}

/// A message's `data`: the event JSON as a string, or for an event forwarded as published its
/// own data JSON as it was sent (a string stays a string, an object stays an object).
#[derive(Serialize)]
#[serde(untagged)]
enum Data<'a> {
    Text(&'a str),
    Json(&'a serde_json::value::RawValue),
}

impl<'a> Data<'a> {
    fn of(event: &'a OutboundEvent) -> Result<Self, VendorError> {
        match event.data_str()? {
            Some(data) => serde_json::from_str(data)
                .map(Data::Json)
                .map_err(|e| VendorError::Internal(format!("event data is not JSON: {e}"))),
            None => event.frame_str().map(Data::Text),
        }
    }

    /// Bytes of the data the vendor counts against its message size limit.
    fn len(&self) -> usize {
        match self {
            Data::Text(t) => t.len(),
            Data::Json(j) => j.get().len(),
        }
    }
}

impl AblyVendor {
    pub fn new(
        config: AblyConfig,
        http: HttpClient,
        realtime: RealtimeConfig,
    ) -> Result<Self, BuildError> {
        let endpoint = |message: String| BuildError::Endpoint {
            vendor: config.name.clone(),
            message,
        };
        let mut bases = vec![config
            .rest_base(&config.host)
            .map_err(|e| endpoint(e.to_string()))?];
        for host in &config.fallback_hosts {
            bases.push(
                config
                    .rest_base(host)
                    .map_err(|e| endpoint(e.to_string()))?,
            );
        }
        let mut authorization = reqwest::header::HeaderValue::from_str(
            &signing::basic_authorization(&config.key_name, &config.key_secret),
        )
        .map_err(|_| endpoint("the key is not valid in an HTTP header".into()))?;
        authorization.set_sensitive(true);
        let realtime_url = config.realtime_url().map_err(|e| endpoint(e.to_string()))?;
        Ok(AblyVendor {
            config,
            http,
            realtime,
            authorization,
            bases,
            host: Mutex::default(),
            realtime_url,
        })
    }

    pub fn config(&self) -> &AblyConfig {
        &self.config
    }

    /// The base to use now (back to the primary once the fallback period is over).
    fn choose_base(&self, now: Instant) -> usize {
        let mut host = self.host.lock();
        if host.until.is_some_and(|until| now >= until) {
            *host = HostChoice::default();
        }
        host.current
    }

    /// After a failure that qualifies, the next request goes to the next fallback host.
    fn fail_over(&self, failed: usize, now: Instant) {
        if self.bases.len() < 2 {
            return;
        }
        let mut host = self.host.lock();
        if host.current == failed {
            let fallbacks = self.bases.len() - 1;
            host.current = failed % fallbacks + 1;
            host.until = Some(now + FALLBACK_RETRY_TIMEOUT);
        }
    }

    async fn post(&self, event: &OutboundEvent) -> Result<(), VendorError> {
        let body = serde_json::to_vec(&Message {
            id: &event.id,
            name: &event.name,
            data: Data::of(event)?,
        })
        .map_err(|e| VendorError::Internal(e.to_string()))?;
        let index = self.choose_base(Instant::now());
        let mut url = self.bases[index].clone();
        url.set_path(&format!(
            "/channels/{}/messages",
            utf8_percent_encode(&event.channel, SEGMENT)
        ));
        let request = self
            .http
            .post(url)
            .header(reqwest::header::AUTHORIZATION, self.authorization.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(reqwest::header::ACCEPT, "application/json")
            .header("X-Ably-Version", PROTOCOL_VERSION)
            .header(
                "Ably-Agent",
                concat!("understudy/", env!("CARGO_PKG_VERSION")),
            )
            .body(body);
        let result = match self.http.send(request).await {
            Ok(answer) => {
                let cloudfront = answer
                    .headers
                    .get(reqwest::header::SERVER)
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|s| s.eq_ignore_ascii_case("cloudfront"));
                classify::classify(answer.status, &answer.body).map_err(|e| (e, cloudfront))
            }
            Err(e) => Err((e, false)),
        };
        result.map_err(|(error, cloudfront)| {
            if classify::qualifies_for_fallback(&error, cloudfront) {
                self.fail_over(index, Instant::now());
            }
            error
        })
    }
}

impl Vendor for AblyVendor {
    fn name(&self) -> &str {
        &self.config.name
    }

    fn kind(&self) -> VendorKind {
        VendorKind::Ably
    }

    fn public_info(&self) -> PublicInfo {
        PublicInfo {
            kind: VendorKind::Ably,
            key: Some(self.config.key_name.clone()),
            host: self.config.realtime_host().to_owned(),
            port: self.config.realtime_port(),
            tls: self.config.tls,
            cluster: None,
            private: true,
        }
    }

    fn check(&self, event: &OutboundEvent) -> Result<(), VendorError> {
        let size = Data::of(event)?.len();
        if size > self.config.max_message_bytes {
            return Err(VendorError::Rejected {
                class: ErrorClass::Request,
                status: 413,
                code: Some(40009),
                message: format!(
                    "event is {size} bytes, over the vendor's {} byte limit",
                    self.config.max_message_bytes
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

    fn has_realtime(&self) -> bool {
        true
    }

    fn listen<'a>(
        &'a self,
        channel: &'a str,
        arrivals: mpsc::Sender<Arrival>,
    ) -> BoxFuture<'a, SessionEnd> {
        Box::pin(realtime::session(
            &self.realtime_url,
            self.http.tls(),
            channel,
            &self.realtime,
            arrivals,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::http::HttpConfig;
    use crate::upstream::Secret;

    fn vendor(host: &str) -> AblyVendor {
        let config = AblyConfig::new("k.n", Secret::new("s"), host, 443, true);
        AblyVendor::new(
            config,
            HttpClient::new(&HttpConfig::default()).unwrap(),
            RealtimeConfig::default(),
        )
        .unwrap()
    }

    #[test]
    fn an_event_as_published_sends_its_own_data_json() {
        let ev = |data: &'static str| {
            OutboundEvent::as_published(
                "orders:7",
                "order.paid",
                "m-1",
                bytes::Bytes::from_static(b"{}"),
                bytes::Bytes::from_static(data.as_bytes()),
                None,
                crate::upstream::Priority::Realtime,
            )
        };
        let body = |e: &OutboundEvent| {
            serde_json::to_string(&Message {
                id: &e.id,
                name: &e.name,
                data: Data::of(e).unwrap(),
            })
            .unwrap()
        };
        assert_eq!(
            body(&ev(r#""{\"total\":12}""#)),
            r#"{"id":"m-1","name":"order.paid","data":"{\"total\":12}"}"#
        );
        assert_eq!(
            body(&ev(r#"{"total":12}"#)),
            r#"{"id":"m-1","name":"order.paid","data":{"total":12}}"#
        );
        let plain = OutboundEvent::new(
            "a",
            "e",
            "i",
            bytes::Bytes::from_static(b"{\"seq\":1}"),
            crate::upstream::Priority::Realtime,
        );
        assert_eq!(
            body(&plain),
            r#"{"id":"i","name":"e","data":"{\"seq\":1}"}"#
        );
    }

    #[test]
    fn channel_names_are_path_encoded() {
        assert_eq!(
            utf8_percent_encode("ns:room 1/x", SEGMENT).to_string(),
            "ns%3Aroom%201%2Fx"
        );
        assert_eq!(
            utf8_percent_encode("a-b.c_d~e", SEGMENT).to_string(),
            "a-b.c_d~e"
        );
    }

    #[test]
    fn the_authorization_header_is_sensitive() {
        let v = vendor("main.realtime.ably.net");
        assert!(v.authorization.is_sensitive());
        let debug = format!("{v:?}");
        assert!(
            !debug.contains("Basic")
                && !debug.contains("key=")
                && debug.contains("main.realtime.ably.net")
        );
    }

    #[tokio::test(start_paused = true)]
    async fn fallback_hosts_rotate_and_expire() {
        let v = vendor("main.realtime.ably.net");
        let now = Instant::now();
        assert_eq!(v.choose_base(now), 0);
        v.fail_over(0, now);
        assert_eq!(v.choose_base(now), 1);
        v.fail_over(1, now);
        assert_eq!(v.choose_base(now), 2);
        // A stale failure report for a host no longer in use changes nothing.
        v.fail_over(0, now);
        assert_eq!(v.choose_base(now), 2);
        assert_eq!(v.choose_base(now + FALLBACK_RETRY_TIMEOUT), 0);
        let single = vendor("ably.internal");
        single.fail_over(0, now);
        assert_eq!(single.choose_base(now), 0);
    }
}
