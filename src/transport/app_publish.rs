//! Publishing an app's event: the one call the Pusher and Ably ingresses make. The event is an
//! ordinary understudy event (seq, epoch, history, idempotency, every transport), and the vendor
//! receives it as the app's `forward` says: as published, or not at all.

use bytes::Bytes;
use tokio::time::Instant;

use super::publish::forward;
use super::ApiError;
use crate::config::{AppConfig, Forward};
use crate::core::{ChannelName, EventDraft, Published};
use crate::transport::AppState;

/// Sequences `draft` on every channel (all or none refused up front, under `deadline` when it is
/// one of a batch's), counts it in the publish metrics, and hands each new event to the vendor
/// lanes without waiting. A duplicate of an idempotent draft (`Published::duplicate`) is neither
/// published nor forwarded again.
pub(crate) async fn publish_app_event(
    state: &AppState,
    app: &AppConfig,
    channels: &[ChannelName],
    draft: &EventDraft,
    deadline: Option<Instant>,
) -> Result<Vec<Published>, ApiError> {
    let published = state.engine.publish_all(channels, draft, deadline).await?;
    // Copied once for every channel of the draft: the vendor gets the data as it was sent.
    let as_published = (app.forward == Forward::AsPublished && state.failover.has_any_vendors())
        .then(|| Bytes::copy_from_slice(draft.data.get().as_bytes()));
    for p in &published {
        if let (Some(event), Some(data)) = (&p.event, &as_published) {
            forward(state, event, None, Some(data), None);
        }
        if p.duplicate {
            state.metrics.publish_duplicate.increment(1);
        } else {
            state.metrics.publish_accepted.increment(1);
        }
    }
    Ok(published)
}
