//! What each tenant uses on this node now, held against its quotas: the publish bucket, the
//! subscriber connections holding its channels, and running counts of what was accepted and
//! refused. Kept by tenant id, beside the configuration rather than in it, so a reload carries
//! the usage over and the new quotas apply to it at once. Plain Rust: the caller passes `now`
//! and what the registry holds.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use tokio::time::Instant;

use super::bucket::Bucket;
use super::{TenantConfig, TenantId, Tenants};
use crate::core::ChannelName;

/// Why a tenant's publish or subscribe was refused. Never names another tenant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("channel {channel:?} belongs to another tenant; this {by} to tenant {tenant}'s channels only")]
    NotInTenant {
        channel: String,
        tenant: TenantId,
        /// Who was refused doing what: "key publishes", "app publishes", "app subscribes".
        by: &'static str,
    },
    #[error("tenant {tenant} is over its publish rate ({per_second}/s, bursts of {burst}); nothing was published: retry after {} s", retry_secs(*.retry_after))]
    RateLimited {
        tenant: TenantId,
        per_second: u32,
        burst: u32,
        retry_after: Duration,
    },
    #[error("tenant {tenant} has its limit of {limit} channels on this node; nothing was published: publish to channels it has, or once idle ones are reclaimed")]
    ChannelsExceeded { tenant: TenantId, limit: usize },
    #[error("tenant {tenant} has its limit of {limit} subscriber connections on this node; channel {channel:?} was not subscribed")]
    ConnectionsExceeded {
        tenant: TenantId,
        limit: usize,
        channel: String,
    },
}

/// Whole seconds, rounded up and at least 1: a client waiting this long finds the events there.
pub fn retry_secs(wait: Duration) -> u64 {
    wait.as_nanos().div_ceil(1_000_000_000).max(1) as u64
}

impl Refusal {
    /// The bounded `reason` label of refusal metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::NotInTenant { .. } => "scope",
            Refusal::RateLimited { .. } => "rate",
            Refusal::ChannelsExceeded { .. } => "channels",
            Refusal::ConnectionsExceeded { .. } => "connections",
        }
    }

    pub fn tenant(&self) -> &TenantId {
        match self {
            Refusal::NotInTenant { tenant, .. }
            | Refusal::RateLimited { tenant, .. }
            | Refusal::ChannelsExceeded { tenant, .. }
            | Refusal::ConnectionsExceeded { tenant, .. } => tenant,
        }
    }
}

/// The reasons of [`Refusal::reason`], in the order [`Counts::refused`] keeps them.
pub const REASONS: [&str; 4] = ["scope", "rate", "channels", "connections"];

/// One tenant's usage on this node.
#[derive(Debug, Default)]
struct Slot {
    /// `None` until the tenant first publishes under a rate: it starts full.
    bucket: Mutex<Option<Bucket>>,
    /// Subscriber connections holding at least one of the tenant's channels.
    connections: AtomicUsize,
    accepted: AtomicU64,
    /// By [`REASONS`].
    refused: [AtomicU64; 4],
    /// Publishes refused, by [`PUBLISH_REASONS`] (`refused` also counts subscribes).
    publish_refused: [AtomicU64; 3],
    /// What [`Usage::unexported_publishes`] has handed out of `accepted`, then
    /// `publish_refused`: only ever raised, so two scrapes at once never hand out one count
    /// twice.
    exported: [AtomicU64; 4],
}

/// The reasons a publish is refused for: the first three of [`REASONS`].
pub const PUBLISH_REASONS: [&str; 3] = ["scope", "rate", "channels"];

/// Every tenant's usage on this node, by id. Shared by every request; survives reloads.
#[derive(Debug, Default)]
pub struct Usage {
    /// Written only when a tenant is first seen: every publish reads it.
    slots: RwLock<HashMap<TenantId, Arc<Slot>>>,
}

/// A tenant's usage now, for the admin API.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Counts {
    pub connections: usize,
    /// Events the tenant may publish now; `None` without a publish rate.
    pub bucket_level: Option<f64>,
    pub publishes_accepted: u64,
    /// By [`REASONS`].
    pub publishes_refused: HashMap<&'static str, u64>,
}

impl Usage {
    fn slot(&self, id: &TenantId) -> Arc<Slot> {
        if let Some(slot) = self.slots.read().get(id) {
            return slot.clone();
        }
        self.slots.write().entry(id.clone()).or_default().clone()
    }

    /// Admits a publish by `publisher` of one event to each of `channels` (a batch lists the
    /// channels of all its events, repeats included: each counts one against the rate), or
    /// refuses it whole. Checked in this order: every channel is the publisher's own, new
    /// channels fit under `max_channels` beside those `held`, then the rate; a refusal takes
    /// nothing from the bucket.
    pub fn admit_publish(
        &self,
        tenants: &Tenants,
        publisher: &TenantConfig,
        by: &'static str,
        channels: &[&ChannelName],
        held: Held<impl Fn(&ChannelName) -> bool>,
        now: Instant,
    ) -> Result<(), Refusal> {
        let slot = self.slot(&publisher.id);
        let outcome = check(tenants, publisher, by, channels, held, &slot, now);
        match &outcome {
            Ok(()) => {
                slot.accepted
                    .fetch_add(channels.len() as u64, Ordering::Relaxed);
            }
            Err(r) => slot.refused_publish(r),
        }
        outcome
    }

    /// Refuses a publish by `publisher` before anything of it is known when its bucket holds
    /// less than one event: no publish could pass then, whatever it carries, so a flooding
    /// tenant is answered without its body being read or parsed. Takes nothing; counted as a
    /// rate refusal. The wait is the one for a single event (what any publish waits at least).
    pub fn refuse_when_empty(&self, publisher: &TenantConfig, now: Instant) -> Result<(), Refusal> {
        let q = &publisher.quotas;
        let Some(rate) = q.publish_per_second else {
            return Ok(());
        };
        let slot = self.slot(&publisher.id);
        let wait = match slot.bucket.lock().as_ref() {
            // First publish under a rate: the bucket starts full.
            None => return Ok(()),
            Some(bucket) => bucket.clone().take(1, rate, q.publish_burst, now),
        };
        wait.map_err(|retry_after| {
            let refusal = Refusal::RateLimited {
                tenant: publisher.id.clone(),
                per_second: rate,
                burst: q.publish_burst,
                retry_after,
            };
            slot.refused_publish(&refusal);
            refusal
        })
    }

    /// Each tenant's publishes counted since the last call: events accepted, then publishes
    /// refused by [`PUBLISH_REASONS`]; tenants with nothing new are left out. The metrics
    /// export reads these at each scrape, so a publish only adds to atomics.
    pub fn unexported_publishes(&self) -> Vec<(TenantId, [u64; 4])> {
        let slots = self.slots.read();
        let mut out = Vec::new();
        for (id, slot) in slots.iter() {
            let now = [
                slot.accepted.load(Ordering::Relaxed),
                slot.publish_refused[0].load(Ordering::Relaxed),
                slot.publish_refused[1].load(Ordering::Relaxed),
                slot.publish_refused[2].load(Ordering::Relaxed),
            ];
            let mut new = [0; 4];
            for ((n, now), exported) in new.iter_mut().zip(now).zip(&slot.exported) {
                *n = now.saturating_sub(exported.fetch_max(now, Ordering::Relaxed));
            }
            if new.iter().any(|n| *n > 0) {
                out.push((id.clone(), new));
            }
        }
        out
    }

    /// A tenant's usage now, under `tenant`'s quotas in force.
    pub fn counts(&self, tenant: &TenantConfig, now: Instant) -> Counts {
        let slot = self.slot(&tenant.id);
        let q = &tenant.quotas;
        let bucket_level = q.publish_per_second.map(|rate| {
            let level = (slot.bucket.lock().as_ref()).map_or(f64::from(q.publish_burst), |b| {
                b.level(rate, q.publish_burst, now)
            });
            (level * 100.0).floor() / 100.0
        });
        Counts {
            connections: slot.connections.load(Ordering::Relaxed),
            bucket_level,
            publishes_accepted: slot.accepted.load(Ordering::Relaxed),
            publishes_refused: (REASONS.iter().zip(&slot.refused))
                .map(|(r, n)| (*r, n.load(Ordering::Relaxed)))
                .collect(),
        }
    }

    /// Subscriber connections holding one of `id`'s channels now.
    pub fn connections(&self, id: &TenantId) -> usize {
        self.slot(id).connections.load(Ordering::Relaxed)
    }

    /// Counts a refusal made elsewhere (a subscribe refused for its tenant's scope).
    pub fn refused(&self, refusal: &Refusal) {
        self.slot(refusal.tenant()).refused[index(refusal)].fetch_add(1, Ordering::Relaxed);
    }
}

impl Slot {
    fn refused_publish(&self, refusal: &Refusal) {
        let i = index(refusal);
        self.refused[i].fetch_add(1, Ordering::Relaxed);
        if let Some(n) = self.publish_refused.get(i) {
            n.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The publisher's channels on this node, as the registry counts them.
#[derive(Debug, Clone, Copy)]
pub struct Held<F> {
    /// Channels the tenant has now.
    pub count: usize,
    /// Whether a channel would be a new one of its count.
    pub is_new: F,
}

fn index(r: &Refusal) -> usize {
    REASONS.iter().position(|x| *x == r.reason()).unwrap_or(0)
}

fn check(
    tenants: &Tenants,
    publisher: &TenantConfig,
    by: &'static str,
    channels: &[&ChannelName],
    held: Held<impl Fn(&ChannelName) -> bool>,
    slot: &Slot,
    now: Instant,
) -> Result<(), Refusal> {
    if let Some(foreign) = channels.iter().find(|c| !publisher.owns(tenants, c)) {
        return Err(Refusal::NotInTenant {
            channel: foreign.as_str().to_owned(),
            tenant: publisher.id.clone(),
            by,
        });
    }
    let q = &publisher.quotas;
    if let Some(limit) = q.max_channels {
        let mut new: Vec<&ChannelName> = (channels.iter().copied())
            .filter(|c| (held.is_new)(c))
            .collect();
        new.sort();
        new.dedup();
        if !new.is_empty() && held.count + new.len() > limit {
            return Err(Refusal::ChannelsExceeded {
                tenant: publisher.id.clone(),
                limit,
            });
        }
    }
    if let Some(rate) = q.publish_per_second {
        let mut bucket = slot.bucket.lock();
        let bucket = bucket.get_or_insert_with(|| Bucket::full(q.publish_burst, now));
        let n = u32::try_from(channels.len()).unwrap_or(u32::MAX);
        bucket
            .take(n, rate, q.publish_burst, now)
            .map_err(|retry_after| Refusal::RateLimited {
                tenant: publisher.id.clone(),
                per_second: rate,
                burst: q.publish_burst,
                retry_after,
            })?;
    }
    Ok(())
}

/// The tenants one subscriber connection holds a seat of: one seat per tenant while the
/// connection holds at least one of its channels, given back when the last is let go or the
/// connection ends (dropped).
#[derive(Debug)]
pub struct Seats {
    usage: Arc<Usage>,
    /// Seats held: the tenant's usage and how many of its channels this connection holds.
    held: HashMap<TenantId, (Arc<Slot>, usize)>,
    /// The tenant each held channel was seated under (a reload may move a channel).
    channels: HashMap<ChannelName, TenantId>,
}

impl Seats {
    pub fn new(usage: Arc<Usage>) -> Self {
        Self {
            usage,
            held: HashMap::new(),
            channels: HashMap::new(),
        }
    }

    /// Seats the connection for `channel` of `tenant`: free when it already holds one of the
    /// tenant's channels, else within the tenant's `max_connections`.
    pub fn join(&mut self, channel: &ChannelName, tenant: &TenantConfig) -> Result<(), Refusal> {
        if self.channels.contains_key(channel) {
            return Ok(());
        }
        if let Some((_, n)) = self.held.get_mut(&tenant.id) {
            *n += 1;
        } else {
            let slot = self.usage.slot(&tenant.id);
            let limit = tenant.quotas.max_connections;
            let taken = slot
                .connections
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |c| {
                    limit.is_none_or(|max| c < max).then_some(c + 1)
                });
            if taken.is_err() {
                let refusal = Refusal::ConnectionsExceeded {
                    tenant: tenant.id.clone(),
                    limit: limit.unwrap_or(0),
                    channel: channel.as_str().to_owned(),
                };
                slot.refused[index(&refusal)].fetch_add(1, Ordering::Relaxed);
                return Err(refusal);
            }
            self.held.insert(tenant.id.clone(), (slot, 1));
        }
        self.channels.insert(channel.clone(), tenant.id.clone());
        Ok(())
    }

    /// Lets `channel` go; the tenant's seat goes with its last channel.
    pub fn leave(&mut self, channel: &ChannelName) {
        let Some(id) = self.channels.remove(channel) else {
            return;
        };
        if let Some((slot, n)) = self.held.get_mut(&id) {
            *n -= 1;
            if *n == 0 {
                slot.connections.fetch_sub(1, Ordering::Relaxed);
                self.held.remove(&id);
            }
        }
    }
}

impl Drop for Seats {
    fn drop(&mut self) {
        for (slot, _) in self.held.values() {
            slot.connections.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests;
