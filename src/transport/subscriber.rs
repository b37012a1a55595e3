//! What the subscribe transports share: query parsing, the subscriber token, the feed of live
//! subscriptions one connection holds, and the opening messages of a (re)subscription.

use std::sync::Arc;

use axum::http::{header, HeaderMap};
use bytes::Bytes;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::{StreamExt, StreamMap};

use super::wire::ServerMessage;
use super::ApiError;
use crate::app::AppState;
use crate::auth::TokenScope;
use crate::core::{ChannelName, Event, Position, Start, Subscription};
use crate::ops::metrics::{Metrics, Transport};

/// Query parameters in order, repeated keys kept (`?channel=a&channel=b`).
pub(crate) fn query_pairs(raw: Option<&str>) -> Vec<(String, String)> {
    raw.map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default()
}

pub(crate) fn query_values<'a>(
    pairs: &'a [(String, String)],
    key: &'a str,
) -> impl Iterator<Item = &'a str> {
    pairs
        .iter()
        .filter(move |(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// Refuses a transport the operator left out of `subscribers.transports`.
pub(crate) fn enabled(state: &AppState, transport: Transport) -> Result<(), ApiError> {
    let on = state.config.load().subscribers.transports;
    let (served, name) = match transport {
        Transport::Ws => (on.ws, "WebSocket"),
        Transport::Sse => (on.sse, "SSE"),
        Transport::Poll => (on.poll, "polling"),
    };
    if served {
        Ok(())
    } else {
        Err(ApiError::TransportDisabled(name))
    }
}

/// Checks the subscriber token from `?token=` or `Authorization: Bearer`.
pub(crate) fn authorize(
    state: &AppState,
    pairs: &[(String, String)],
    headers: &HeaderMap,
) -> Result<TokenScope, ApiError> {
    let from_query = query_values(pairs, "token").next();
    let from_header = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    Ok(state.subscribers.load().check(from_query.or(from_header))?)
}

/// Parses and scope-checks the `channel` query parameters.
pub(crate) fn channels_from_query(
    state: &AppState,
    pairs: &[(String, String)],
    scope: &TokenScope,
) -> Result<Vec<ChannelName>, ApiError> {
    let mut out: Vec<ChannelName> = Vec::new();
    for raw in query_values(pairs, "channel") {
        let ch = ChannelName::parse(raw)?;
        if !scope.allows(&ch) {
            return Err(ApiError::ChannelForbidden(ch.to_string()));
        }
        if !out.contains(&ch) {
            out.push(ch);
        }
    }
    let max = state.config.load().subscribers.max_channels_per_connection;
    if out.len() > max {
        return Err(ApiError::InvalidQuery(format!(
            "at most {max} channels per connection; open another connection for the rest"
        )));
    }
    Ok(out)
}

/// One message to send, and the position the client holds once it has it.
pub(crate) struct Outgoing {
    pub(crate) bytes: Bytes,
    pub(crate) channel: ChannelName,
    pub(crate) position: Position,
}

/// The messages that open a subscription: `subscribed` (or `reset`), then any replayed events.
/// The position after `subscribed` stays at the client's own until the replayed events arrive, so
/// a client cut off mid-replay resumes without a gap.
pub(crate) fn opening(
    sub: &Subscription,
    since: Option<&Position>,
    transport: Transport,
) -> Vec<Outgoing> {
    let ch = sub.channel.as_str();
    let head = &sub.head;
    let mut out = Vec::new();
    match &sub.start {
        Start::Live => out.push(Outgoing {
            bytes: subscribed(ch, head),
            channel: sub.channel.clone(),
            position: head.clone(),
        }),
        Start::Replay(events) => {
            out.push(Outgoing {
                bytes: subscribed(ch, head),
                channel: sub.channel.clone(),
                position: since.cloned().unwrap_or_else(|| head.clone()),
            });
            out.extend(events.iter().map(event));
        }
        Start::Reset(reason) => {
            Metrics::reset(transport, reason.as_str()).increment(1);
            out.push(Outgoing {
                bytes: ServerMessage::Reset {
                    channel: ch,
                    epoch: head.epoch.as_str(),
                    seq: head.seq,
                    reason: reason.as_str(),
                }
                .to_bytes(),
                channel: sub.channel.clone(),
                position: head.clone(),
            });
        }
    }
    out
}

fn subscribed(ch: &str, head: &Position) -> Bytes {
    ServerMessage::Subscribed {
        channel: ch,
        epoch: head.epoch.as_str(),
        seq: head.seq,
    }
    .to_bytes()
}

pub(crate) fn event(e: &Arc<Event>) -> Outgoing {
    Outgoing {
        bytes: e.frame.clone(),
        channel: e.channel.clone(),
        position: e.position(),
    }
}

/// What the live feed yields.
pub(crate) enum FeedItem {
    Event(Arc<Event>),
    /// The connection fell further behind than its buffer on a channel.
    Lagged,
}

/// One channel's live stream. It ends with a lag marker: a channel's sender is dropped only when
/// a mirror restarts (a shared engine lost history or started a new epoch), and the connection
/// must then resume from its position like a connection that fell behind, never go on without
/// the channel.
type Live = tokio_stream::adapters::Chain<
    BroadcastStream<Arc<Event>>,
    tokio_stream::Once<Result<Arc<Event>, BroadcastStreamRecvError>>,
>;

/// The live subscriptions of one connection.
#[derive(Default)]
pub(crate) struct Feed {
    streams: StreamMap<ChannelName, Live>,
}

impl Feed {
    pub(crate) fn insert(&mut self, sub: Subscription) {
        let cut = tokio_stream::once(Err(BroadcastStreamRecvError::Lagged(0)));
        self.streams
            .insert(sub.channel, BroadcastStream::new(sub.live).chain(cut));
    }

    pub(crate) fn remove(&mut self, channel: &ChannelName) -> bool {
        self.streams.remove(channel).is_some()
    }

    pub(crate) fn len(&self) -> usize {
        self.streams.len()
    }

    pub(crate) fn contains(&self, channel: &ChannelName) -> bool {
        self.streams.contains_key(channel)
    }

    /// The next live item; pending forever while there are no subscriptions.
    pub(crate) async fn next(&mut self) -> FeedItem {
        if self.streams.is_empty() {
            return std::future::pending().await;
        }
        match self.streams.next().await {
            Some((_, Ok(ev))) => FeedItem::Event(ev),
            Some((_, Err(BroadcastStreamRecvError::Lagged(_)))) => FeedItem::Lagged,
            None => FeedItem::Lagged,
        }
    }

    /// An item that is ready now, without waiting.
    pub(crate) fn try_next(&mut self) -> Option<FeedItem> {
        use futures_util::FutureExt;
        self.next().now_or_never()
    }
}
