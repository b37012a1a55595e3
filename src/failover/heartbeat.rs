//! The vendor heartbeat (docs/protocol.md, "Route and the vendor path"): while the route is a
//! vendor, every `interval` publish `{"type":"heartbeat","ts":..}` on `understudy.heartbeat`
//! through that vendor's realtime lane, so clients on the vendor path notice by themselves when
//! vendor delivery stops (three silent intervals) and come to understudy.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use super::driver::Route;
use super::route::Path;
use crate::upstream::lanes::Lanes;
use crate::upstream::{random_id, unix_ms, OutboundEvent};

/// Runs until `cancel` fires.
pub(crate) async fn run(
    lanes: Vec<Lanes>,
    route: Arc<ArcSwap<Route>>,
    interval: Duration,
    cancel: CancellationToken,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            _ = ticker.tick() => {}
        }
        if let Path::Vendor(index) = route.load().path {
            if let Some(lanes) = lanes.get(index) {
                lanes.enqueue(OutboundEvent::heartbeat(unix_ms(), random_id()));
            }
        }
    }
}
