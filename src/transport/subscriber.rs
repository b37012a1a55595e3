//! What the subscribe transports share: query parsing, the subscriber token, the feed of live
//! subscriptions one connection holds, and the opening messages of a (re)subscription.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::http::{header, HeaderMap};
use bytes::Bytes;
use tokio::time::{Instant, Interval};

use super::wake::WakeFlag;
use super::wire::ServerMessage;
use super::ApiError;
use crate::auth::TokenScope;
use crate::core::live::{self, RecvError};
use crate::core::{ChannelName, Event, Position, Start, Subscription};
use crate::ops::metrics::{Metrics, Transport};
use crate::transport::AppState;

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

/// Admits a new WebSocket or SSE subscriber at the listener's rate
/// (`server.max_new_subscribers_per_second`), or tells it when to come back. Called once the
/// request is known to be valid and before any subscribe or replay: a malformed or unauthorised
/// request gets its own answer and takes no place, and a refused one has cost nothing yet.
pub(crate) fn admit_new(state: &AppState, transport: Transport) -> Result<(), ApiError> {
    let limit = state.config.load().server.connections.new_subscribers;
    state
        .admission
        .new_subscribers
        .admit(&limit, transport)
        .map_err(ApiError::ReconnectLater)
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
    // Counted before any is parsed, and repeats found with a set: the query is the client's, so
    // the work stays linear in its length.
    let max = state.config.load().subscribers.max_channels_per_connection;
    if query_values(pairs, "channel").count() > max {
        return Err(ApiError::InvalidQuery(format!(
            "at most {max} channels per connection; open another connection for the rest"
        )));
    }
    let mut out: Vec<ChannelName> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for raw in query_values(pairs, "channel") {
        if !seen.insert(raw) {
            continue;
        }
        let ch = ChannelName::parse(raw)?;
        if !scope.allows(&ch) {
            return Err(ApiError::ChannelForbidden(ch.to_string()));
        }
        out.push(ch);
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

/// The live subscriptions of one connection. A connection usually holds one channel, so the
/// streams sit in a short list polled in turn (no map, no random start). By default the list sits
/// behind a [`WakeFlag`], so that polling an idle feed does not take any channel's lock.
pub(crate) struct Feed {
    /// One stream per channel, in subscription order; at most `max_channels_per_connection`.
    streams: Vec<(ChannelName, live::Receiver<Arc<Event>>)>,
    /// Where the next poll starts, so that a busy channel cannot starve the others.
    start: usize,
    /// `None` for a feed polled only from behind its owner's own flag ([`Feed::unflagged`]).
    wake: Option<WakeFlag>,
}

impl Default for Feed {
    fn default() -> Self {
        Self {
            streams: Vec::new(),
            start: 0,
            wake: Some(WakeFlag::default()),
        }
    }
}

impl Feed {
    /// A feed without a flag of its own, for a connection that polls it only from behind its own
    /// [`WakeFlag`]: a second flag would only add a hop to every wake-up.
    pub(crate) fn unflagged() -> Self {
        Self {
            wake: None,
            ..Self::default()
        }
    }

    pub(crate) fn insert(&mut self, sub: Subscription) {
        let stream = sub.live;
        match self.streams.iter_mut().find(|(c, _)| *c == sub.channel) {
            Some((_, s)) => *s = stream,
            None => {
                // Room for one more, not the four a growing Vec takes: most connections hold one
                // channel for their whole life.
                self.streams.reserve_exact(1);
                self.streams.push((sub.channel, stream));
            }
        }
        if let Some(wake) = &mut self.wake {
            wake.rouse();
        }
    }

    pub(crate) fn remove(&mut self, channel: &ChannelName) -> bool {
        let before = self.streams.len();
        self.streams.retain(|(c, _)| c != channel);
        self.streams.len() != before
    }

    pub(crate) fn len(&self) -> usize {
        self.streams.len()
    }

    pub(crate) fn contains(&self, channel: &ChannelName) -> bool {
        self.streams.iter().any(|(c, _)| c == channel)
    }

    /// The next live item; pending forever while there are no subscriptions.
    pub(crate) async fn next(&mut self) -> FeedItem {
        std::future::poll_fn(|cx| self.poll_next(cx)).await
    }

    /// An item that is ready now, without waiting. When there is none, the task is woken once
    /// there is.
    pub(crate) async fn try_next(&mut self) -> Option<FeedItem> {
        std::future::poll_fn(|cx| match self.poll_next(cx) {
            Poll::Ready(item) => Poll::Ready(Some(item)),
            Poll::Pending => Poll::Ready(None),
        })
        .await
    }

    pub(crate) fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<FeedItem> {
        if self.streams.is_empty() {
            return Poll::Pending;
        }
        let Self {
            streams,
            start,
            wake,
        } = self;
        match wake {
            Some(wake) => wake.poll(cx, |cx| poll_streams(streams, start, cx)),
            None => poll_streams(streams, start, cx),
        }
    }
}

/// Polls every stream once, starting after the one that started last time.
///
/// A stream ends only when its channel's sender is dropped, which happens when a mirror of a
/// shared engine restarts (Redis lost history or began a new epoch). The connection is then told
/// it lagged: it must resume from its position, and never go on silently without the channel.
fn poll_streams(
    streams: &mut Vec<(ChannelName, live::Receiver<Arc<Event>>)>,
    start: &mut usize,
    cx: &mut Context<'_>,
) -> Poll<FeedItem> {
    if let [(_, only)] = streams.as_mut_slice() {
        // The usual connection: one channel, nothing to take turns with.
        return match only.poll_recv(cx) {
            Poll::Ready(Ok(ev)) => Poll::Ready(FeedItem::Event(ev)),
            Poll::Ready(Err(RecvError::Lagged(_))) => Poll::Ready(FeedItem::Lagged),
            // The channel's sender is gone: a mirror restarted (see below).
            Poll::Ready(Err(RecvError::Closed)) => {
                streams.clear();
                Poll::Ready(FeedItem::Lagged)
            }
            Poll::Pending => Poll::Pending,
        };
    }
    let first = *start % streams.len();
    *start = first + 1;
    let mut polled = 0;
    while polled < streams.len() {
        let i = (first + polled) % streams.len();
        match streams[i].1.poll_recv(cx) {
            Poll::Ready(Ok(ev)) => return Poll::Ready(FeedItem::Event(ev)),
            Poll::Ready(Err(RecvError::Lagged(_))) => return Poll::Ready(FeedItem::Lagged),
            // The channel's sender is gone: a mirror restarted (see below).
            Poll::Ready(Err(RecvError::Closed)) => {
                streams.remove(i);
                return Poll::Ready(FeedItem::Lagged);
            }
            Poll::Pending => polled += 1,
        }
    }
    Poll::Pending
}

/// A connection's heartbeat timer. The first beat is one period after the start. The timer sits
/// behind a [`WakeFlag`]: a connection wakes once per delivered event, and polling a timer that
/// has not fired costs more than looking at the flag.
pub(crate) struct Heartbeats {
    interval: Interval,
    wake: WakeFlag,
}

impl Heartbeats {
    pub(crate) fn new(period: Duration) -> Self {
        Self {
            interval: tokio::time::interval_at(Instant::now() + period, period),
            wake: WakeFlag::default(),
        }
    }

    pub(crate) fn poll_beat(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let Self { interval, wake } = self;
        wake.poll(cx, |cx| interval.poll_tick(cx).map(|_| ()))
    }

    pub(crate) async fn beat(&mut self) {
        std::future::poll_fn(|cx| self.poll_beat(cx)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{Epoch, EventDraft};
    use serde_json::value::RawValue;

    fn event(channel: &ChannelName, seq: u64) -> Arc<Event> {
        let draft = EventDraft::new(
            Arc::from("n"),
            RawValue::from_string("{}".into()).unwrap(),
            None,
        );
        Arc::new(Event::build(
            channel.clone(),
            seq,
            Epoch::from_client("e"),
            &draft,
            Arc::from("id"),
            0,
            tokio::time::Instant::now(),
        ))
    }

    fn subscription(name: &str) -> (live::Sender<Arc<Event>>, Subscription) {
        let tx = live::channel(4);
        let live = tx.subscribe();
        let channel = ChannelName::parse(name).unwrap();
        let sub = Subscription {
            head: Position {
                epoch: Epoch::from_client("e"),
                seq: 0,
            },
            start: Start::Live,
            channel,
            live,
        };
        (tx, sub)
    }

    fn seq_of(item: Option<FeedItem>) -> Option<(String, u64)> {
        match item {
            Some(FeedItem::Event(ev)) => Some((ev.channel.to_string(), ev.seq)),
            Some(FeedItem::Lagged) => Some(("lagged".into(), 0)),
            None => None,
        }
    }

    #[tokio::test]
    async fn a_feed_delivers_every_channel_and_wakes_after_going_idle() {
        let (a_tx, a) = subscription("a");
        let (b_tx, b) = subscription("b");
        let (a_ch, b_ch) = (a.channel.clone(), b.channel.clone());
        let mut feed = Feed::default();
        feed.insert(a);
        feed.insert(b);
        assert!(feed.try_next().await.is_none());
        b_tx.send(event(&b_ch, 1));
        assert_eq!(seq_of(feed.try_next().await), Some(("b".into(), 1)));
        assert!(feed.try_next().await.is_none());
        assert!(feed.try_next().await.is_none(), "idle: nothing new");
        a_tx.send(event(&a_ch, 1));
        b_tx.send(event(&b_ch, 2));
        let mut got = vec![
            seq_of(Some(feed.next().await)),
            seq_of(Some(feed.next().await)),
        ];
        got.sort();
        assert_eq!(got, [Some(("a".into(), 1)), Some(("b".into(), 2))]);
        assert!(feed.try_next().await.is_none());

        assert!(feed.remove(&b_ch));
        assert!(!feed.contains(&b_ch));
        assert_eq!(b_tx.receiver_count(), 0, "the feed let go of the channel");
        drop(a_tx);
        assert_eq!(
            seq_of(feed.try_next().await),
            Some(("lagged".into(), 0)),
            "the last channel's sender is gone: resume from history"
        );
    }

    #[tokio::test]
    async fn a_feed_says_lagged_when_it_fell_behind() {
        let (tx, sub) = subscription("a");
        let ch = sub.channel.clone();
        let mut feed = Feed::default();
        feed.insert(sub);
        for seq in 1..=6 {
            tx.send(event(&ch, seq));
        }
        assert_eq!(seq_of(feed.try_next().await), Some(("lagged".into(), 0)));
    }
}
