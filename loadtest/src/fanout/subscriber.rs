//! One fan-out subscriber task: connect, wait for `subscribed`, then account every event of
//! its channel by `seq` (and its latency by `data.t`) until told to stop. It may drop its
//! connection and resume on a new one ([`Resumes`]): every so often, or once in a storm.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::time::Instant;

use crate::client::message::ServerMessage;
use crate::client::{CloseInfo, Connection, Connector, Incoming, Resume};
use crate::stats::{unix_micros, Seen, SeqLedger, ShardedHistogram};

/// Notes kept per subscriber for the report; the counters carry the rest.
const MAX_NOTES: usize = 3;

/// State every subscriber writes to.
pub(crate) struct Shared {
    /// Receive time − `data.t` of every first delivery.
    pub(crate) latency: ShardedHistogram,
    /// First deliveries across all subscribers, so the run knows when stragglers are in.
    pub(crate) delivered: AtomicU64,
    /// A publish time (Unix µs; `u64::MAX` = unset): each subscriber notes when the first
    /// event stamped at or after it arrived (`failover` sets it at the instant of the hang).
    pub(crate) mark_us: AtomicU64,
    /// `route` messages received: (Unix µs, route), at most [`MAX_ROUTE_NOTES`].
    pub(crate) routes: Mutex<Vec<(u64, String)>>,
    /// Subscribers back (resumed and `subscribed` again) after a storm's drop.
    pub(crate) back: AtomicU64,
}

/// Route messages kept across all subscribers.
const MAX_ROUTE_NOTES: usize = 100_000;

impl Shared {
    pub(crate) fn new() -> Self {
        Self {
            latency: ShardedHistogram::new(64),
            delivered: AtomicU64::new(0),
            mark_us: AtomicU64::new(u64::MAX),
            routes: Mutex::new(Vec::new()),
            back: AtomicU64::new(0),
        }
    }

    fn route(&self, at_us: u64, route: &str) {
        let mut routes = self.routes.lock().unwrap_or_else(|p| p.into_inner());
        if routes.len() < MAX_ROUTE_NOTES {
            routes.push((at_us, route.to_owned()));
        }
    }
}

/// Which subscriber this is.
pub(crate) struct Spec {
    pub(crate) index: usize,
    pub(crate) channel_idx: usize,
    pub(crate) channel: Arc<str>,
}

/// Sent once per subscriber when it is subscribed, or has given up.
pub(crate) enum Ready {
    Subscribed { connect: Duration },
    Failed(String),
}

/// Everything unexpected a subscriber saw, besides seq accounting.
#[derive(Debug, Default, Serialize)]
pub(crate) struct Anomalies {
    pub(crate) resets: u64,
    pub(crate) errors: u64,
    pub(crate) reconnects: u64,
    /// Streams the server ended before the run did.
    pub(crate) closed_early: u64,
    pub(crate) wrong_epoch: u64,
    pub(crate) foreign_channel: u64,
    pub(crate) unparsable: u64,
    /// Events without a numeric `data.t` (not published by this run).
    pub(crate) no_timestamp: u64,
    pub(crate) unknown_type: u64,
    /// SSE events whose `id:` is not the cursor `channel~epoch~seq` of that event.
    pub(crate) bad_sse_id: u64,
    pub(crate) notes: Vec<String>,
}

impl Anomalies {
    fn note(&mut self, what: impl FnOnce() -> String) {
        if self.notes.len() < MAX_NOTES {
            self.notes.push(what());
        }
    }

    pub(crate) fn absorb(&mut self, other: Anomalies, max_notes: usize) {
        self.resets += other.resets;
        self.errors += other.errors;
        self.reconnects += other.reconnects;
        self.closed_early += other.closed_early;
        self.wrong_epoch += other.wrong_epoch;
        self.foreign_channel += other.foreign_channel;
        self.unparsable += other.unparsable;
        self.no_timestamp += other.no_timestamp;
        self.unknown_type += other.unknown_type;
        self.bad_sse_id += other.bad_sse_id;
        let room = max_notes.saturating_sub(self.notes.len());
        self.notes.extend(other.notes.into_iter().take(room));
    }

    pub(crate) fn total(&self) -> u64 {
        self.resets
            + self.errors
            + self.reconnects
            + self.closed_early
            + self.wrong_epoch
            + self.foreign_channel
            + self.unparsable
            + self.unknown_type
            + self.bad_sse_id
    }
}

/// When a subscriber drops its connection and resumes on a new one.
pub(crate) enum Resumes {
    Never,
    /// That often, the first one staggered by index over one period.
    Every(Duration),
    /// Once, when `signal` turns true: after a random delay in `[0, window)` the socket is
    /// dropped (no close handshake, as when a node restarts) and a new one resumes from the
    /// last seq, obeying `503 reconnect_later` waits.
    Storm {
        signal: watch::Receiver<bool>,
        window: Duration,
    },
}

/// How a subscriber came back from a storm.
#[derive(Clone, Copy, Debug)]
pub(crate) struct StormReturn {
    /// When it was `subscribed` again.
    pub(crate) back_at: Instant,
    /// `503 reconnect_later` answers before it was admitted.
    pub(crate) refusals: u32,
}

/// What a subscriber hands back at the end.
pub(crate) struct Outcome {
    pub(crate) channel_idx: usize,
    pub(crate) ledger: SeqLedger,
    pub(crate) anomalies: Anomalies,
    /// Times the subscriber dropped its connection and resumed on a new one.
    pub(crate) resumes: u64,
    /// When (Unix µs) the first event published at or after [`Shared::mark_us`] arrived.
    pub(crate) first_after_mark_us: Option<u64>,
    /// Set once it came back from a storm ([`Resumes::Storm`]).
    pub(crate) storm: Option<StormReturn>,
}

/// Runs one subscriber. `permits` bounds how many connect at once; the permit is held until
/// `subscribed` arrives. Returns `None` if it never got subscribed (reported through `ready`).
/// With [`Resumes`], the subscriber drops its connection and resumes on a new one from the last
/// seq it saw: replay and live events must still add up to every event exactly once.
pub(crate) async fn run(
    spec: Spec,
    connector: Connector,
    shared: Arc<Shared>,
    permits: Arc<Semaphore>,
    ready: mpsc::UnboundedSender<Ready>,
    mut stop: watch::Receiver<bool>,
    resumes: Resumes,
) -> Option<Outcome> {
    let permit = permits.acquire_owned().await.ok()?;
    let started = Instant::now();
    let subscribed = async {
        let (mut conn, _, _) = connector
            .open_admitted(spec.index, &[&spec.channel], None)
            .await?;
        let (epoch, head) = conn.await_subscribed(&spec.channel).await?;
        anyhow::Ok((conn, epoch, head))
    };
    let (mut conn, epoch, head) = match subscribed.await {
        Ok(x) => x,
        Err(e) => {
            let _ = ready.send(Ready::Failed(format!(
                "subscriber {} ({}): {e:#}",
                spec.index, spec.channel
            )));
            return None;
        }
    };
    drop(permit);
    let _ = ready.send(Ready::Subscribed {
        connect: started.elapsed(),
    });

    let mut reader = Reader {
        spec: &spec,
        shared: &shared,
        epoch,
        ledger: SeqLedger::new(head),
        anomalies: Anomalies::default(),
        resumes: 0,
        first_after_mark_us: None,
        storm: None,
    };
    let (resume_every, mut storm) = match resumes {
        Resumes::Never => (None, None),
        Resumes::Every(p) => (Some(p), None),
        Resumes::Storm { signal, window } => (None, Some((signal, window))),
    };
    // The first resume is staggered over one period so resumes do not all land at once.
    let mut next_resume =
        resume_every.map(|p| Instant::now() + p + p.mul_f64((spec.index % 97) as f64 / 97.0));
    loop {
        let resume_at = next_resume.unwrap_or_else(|| Instant::now() + Duration::from_secs(86_400));
        let storm_signal = async {
            match &mut storm {
                Some((signal, _)) => {
                    let _ = signal.wait_for(|on| *on).await;
                }
                None => std::future::pending().await,
            }
        };
        let resume_now = tokio::select! {
            biased;
            _ = stop.changed() => break,
            () = storm_signal => {
                let (_, window) = storm.take().expect("a storm was armed");
                // Each client drops at its own random moment in the window; it keeps reading
                // until then, as a client does until its socket dies.
                let drop_at = Instant::now() + window.mul_f64(rand_unit(spec.index));
                next_resume = Some(drop_at);
                false
            }
            () = tokio::time::sleep_until(resume_at), if next_resume.is_some() => true,
            incoming = conn.next() => match incoming {
                Ok(Incoming::Message(bytes, sse_id)) => {
                    reader.handle(bytes, sse_id);
                    false
                }
                Ok(Incoming::Closed(info)) => {
                    reader.closed(info);
                    return Some(reader.into_outcome());
                }
                Err(e) => {
                    reader.closed(CloseInfo { code: None, reason: format!("{e:#}") });
                    return Some(reader.into_outcome());
                }
            },
        };
        if resume_now {
            let storming = resume_every.is_none();
            if storming {
                // The socket dies: no close handshake.
                drop(conn);
            } else {
                conn.close().await;
            }
            match reader.resume(&connector).await {
                Ok((new_conn, refusals)) => {
                    conn = new_conn;
                    if storming {
                        reader.storm = Some(StormReturn {
                            back_at: Instant::now(),
                            refusals,
                        });
                        shared.back.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Err(e) => {
                    reader.closed(CloseInfo {
                        code: None,
                        reason: format!("resume failed: {e:#}"),
                    });
                    return Some(reader.into_outcome());
                }
            }
            next_resume = resume_every.map(|p| Instant::now() + p);
        }
    }
    conn.close().await;
    Some(reader.into_outcome())
}

/// Per-subscriber accounting of the live stream.
struct Reader<'a> {
    spec: &'a Spec,
    shared: &'a Shared,
    /// The epoch `subscribed` gave; events must carry it.
    epoch: String,
    ledger: SeqLedger,
    anomalies: Anomalies,
    resumes: u64,
    first_after_mark_us: Option<u64>,
    storm: Option<StormReturn>,
}

impl Reader<'_> {
    fn into_outcome(self) -> Outcome {
        Outcome {
            channel_idx: self.spec.channel_idx,
            ledger: self.ledger,
            anomalies: self.anomalies,
            resumes: self.resumes,
            first_after_mark_us: self.first_after_mark_us,
            storm: self.storm,
        }
    }

    /// Opens a new connection resuming from the last seq seen (coming back after each
    /// `reconnect_later` wait), and checks the server confirms it in the same epoch. Answers
    /// the connection and the refusals it took.
    async fn resume(&mut self, connector: &Connector) -> anyhow::Result<(Connection, u32)> {
        let channel: &str = &self.spec.channel;
        let at = Resume {
            epoch: &self.epoch,
            seq: self.ledger.max_seen(),
        };
        let (mut conn, _, refusals) = connector
            .open_admitted(self.spec.index, &[channel], Some(at))
            .await?;
        let (epoch, _head) = conn.await_subscribed(channel).await?;
        if epoch != self.epoch {
            anyhow::bail!("resumed into epoch {epoch}, subscribed in {}", self.epoch);
        }
        self.resumes += 1;
        Ok((conn, refusals))
    }

    fn handle(&mut self, bytes: &[u8], sse_id: Option<&[u8]>) {
        let received_us = unix_micros();
        let msg = match ServerMessage::parse(bytes) {
            Ok(m) => m,
            Err(e) => {
                self.anomalies.unparsable += 1;
                self.anomalies
                    .note(|| format!("unparsable ({e}): {}", preview(bytes)));
                return;
            }
        };
        match msg.kind.as_ref() {
            "event" => self.event(msg, sse_id, received_us),
            "route" => self
                .shared
                .route(received_us, msg.route.as_deref().unwrap_or("?")),
            "heartbeat" | "welcome" => {}
            "reset" => {
                self.anomalies.resets += 1;
                self.anomalies.note(|| msg.describe());
            }
            "error" => {
                self.anomalies.errors += 1;
                self.anomalies.note(|| msg.describe());
            }
            "reconnect" => {
                self.anomalies.reconnects += 1;
                self.anomalies.note(|| msg.describe());
            }
            _ => {
                self.anomalies.unknown_type += 1;
                self.anomalies
                    .note(|| format!("unexpected message: {}", preview(bytes)));
            }
        }
    }

    fn event(&mut self, msg: ServerMessage<'_>, sse_id: Option<&[u8]>, received_us: u64) {
        if msg.channel.as_deref() != Some(&*self.spec.channel) {
            self.anomalies.foreign_channel += 1;
            self.anomalies.note(|| {
                format!(
                    "event for {:?} on a {:?} subscription",
                    msg.channel, self.spec.channel
                )
            });
            return;
        }
        if msg.epoch.as_deref() != Some(self.epoch.as_str()) {
            self.anomalies.wrong_epoch += 1;
            self.anomalies.note(|| {
                format!(
                    "event epoch {:?}, subscribed in {:?}",
                    msg.epoch, self.epoch
                )
            });
            return;
        }
        let Some(seq) = msg.seq else {
            self.anomalies.unparsable += 1;
            self.anomalies.note(|| "event without a seq".to_owned());
            return;
        };
        if let Some(id) = sse_id {
            if !cursor_is(id, &self.spec.channel, &self.epoch, seq) {
                self.anomalies.bad_sse_id += 1;
                self.anomalies.note(|| {
                    format!(
                        "SSE id {:?} after seq {seq}, expected {}~{}~{seq}",
                        String::from_utf8_lossy(id),
                        self.spec.channel,
                        self.epoch
                    )
                });
            }
        }
        if let Seen::New { .. } = self.ledger.observe(seq) {
            self.shared.delivered.fetch_add(1, Ordering::Relaxed);
            match msg.data.and_then(|d| d.t) {
                Some(t) => {
                    self.shared
                        .latency
                        .record(self.spec.index, received_us.saturating_sub(t));
                    if self.first_after_mark_us.is_none()
                        && t >= self.shared.mark_us.load(Ordering::Relaxed)
                    {
                        self.first_after_mark_us = Some(received_us);
                    }
                }
                None => self.anomalies.no_timestamp += 1,
            }
        }
    }

    fn closed(&mut self, info: CloseInfo) {
        self.anomalies.closed_early += 1;
        self.anomalies
            .note(|| format!("stream ended early (code {:?}): {}", info.code, info.reason));
    }
}

/// A draw in `[0, 1)` for subscriber `index`: a hash of the index and the clock, so that each
/// run spreads its clients differently without a random-number crate.
fn rand_unit(index: usize) -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_usize(index);
    h.write_u64(unix_micros());
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

/// Whether an SSE `id:` is the one-channel cursor `channel~epoch~seq`, without allocating.
fn cursor_is(id: &[u8], channel: &str, epoch: &str, seq: u64) -> bool {
    let rest = id
        .strip_prefix(channel.as_bytes())
        .and_then(|r| r.strip_prefix(b"~"));
    let rest = rest
        .and_then(|r| r.strip_prefix(epoch.as_bytes()))
        .and_then(|r| r.strip_prefix(b"~"));
    rest.and_then(|r| std::str::from_utf8(r).ok())
        .and_then(|r| r.parse::<u64>().ok())
        == Some(seq)
}

fn preview(bytes: &[u8]) -> String {
    String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_one_channel_cursors() {
        assert!(cursor_is(
            b"lt-1~k3v9q2m8x1ab~17",
            "lt-1",
            "k3v9q2m8x1ab",
            17
        ));
        assert!(!cursor_is(
            b"lt-1~k3v9q2m8x1ab~16",
            "lt-1",
            "k3v9q2m8x1ab",
            17
        ));
        assert!(!cursor_is(
            b"lt-10~k3v9q2m8x1ab~17",
            "lt-1",
            "k3v9q2m8x1ab",
            17
        ));
        assert!(!cursor_is(b"lt-1~other~17", "lt-1", "k3v9q2m8x1ab", 17));
        assert!(!cursor_is(b"", "lt-1", "e", 1));
    }
}
