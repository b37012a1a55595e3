//! The limits one tenant is held to. `None` is no limit of the tenant's own (the node's own
//! limits still apply).

/// A tenant's quotas: `[tenant_defaults]` with the tenant's overrides applied.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Quotas {
    /// Events a second the tenant may publish (every ingress, each channel of a multi-channel
    /// event counted), refilled continuously; over it a publish answers 429 with Retry-After.
    pub publish_per_second: Option<u32>,
    /// Events the bucket holds when full: how far a burst may go above the rate.
    pub publish_burst: u32,
    /// Subscriber connections open at once on this node (WebSocket, SSE, long poll) holding
    /// one of the tenant's channels.
    pub max_connections: Option<usize>,
    /// Channels the tenant may have at once on this node (those published to: a subscriber
    /// opening empty channels takes no publisher's place).
    pub max_channels: Option<usize>,
    /// History bytes each of the tenant's channels keeps, so the tenant's history is at most
    /// `max_channels` times this; `history.max_bytes` still bounds the node's whole history.
    pub history_max_bytes: Option<usize>,
}
