//! Publishing one of an app's events: sequenced like any `/v1/publish` event (seq, epoch,
//! history, idempotency, metrics), then handed to the vendors as the app's `forward` setting
//! says.
//!
//! A stand-in with the inputs of the shared app publish path (app, channels, name, data, id)
//! that the Pusher HTTP ingress brings with the "as published" vendor forwarding; once that is
//! in, this file goes and its one caller calls that. Until then `as_published` apps are
//! forwarded the way `/v1/publish` events are (`understudy.event` on Pusher, the event frame as
//! the Ably message data, under the publisher's name), and `none` apps not at all.

use std::sync::Arc;

use serde_json::value::RawValue;
use tokio::time::Instant;

use crate::app::AppState;
use crate::config::{AppConfig, Forward};
use crate::core::{ChannelName, EventDraft, Published};
use crate::engine::EngineError;

/// Publishes `name`/`data` under `id` (the idempotency key; `None`: a fresh id) on every
/// channel, within `deadline` when the engine is shared.
pub(crate) async fn publish_app_event(
    state: &AppState,
    app: &AppConfig,
    channels: &[ChannelName],
    name: Arc<str>,
    data: Arc<RawValue>,
    id: Option<Arc<str>>,
    deadline: Option<Instant>,
) -> Result<Vec<Published>, EngineError> {
    let draft = EventDraft::new(name, data, id);
    let published = state.engine.publish_all(channels, &draft, deadline).await?;
    for p in &published {
        if p.duplicate {
            state.metrics.publish_duplicate.increment(1);
            continue;
        }
        state.metrics.publish_accepted.increment(1);
        if let (Some(event), Forward::AsPublished) = (&p.event, app.forward) {
            crate::transport::publish::forward(state, event, None);
        }
    }
    Ok(published)
}
