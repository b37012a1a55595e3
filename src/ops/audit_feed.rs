//! Turns what the failover driver does by itself into audit entries: automatic state transitions
//! with their reasons, and forced modes (node-wide or a tenant's) that reached their expiry. One
//! background task, reading
//! the status snapshots the driver already publishes; it never touches a lock the hot path takes.

use std::collections::HashMap;

use serde_json::json;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::audit::{AuditAction, AuditEntry, AuditHandle};
use super::status::unix_ms;
use crate::failover::{Mode, Status};

pub(crate) async fn run(
    mut status: watch::Receiver<Status>,
    audit: AuditHandle,
    cancel: CancellationToken,
) {
    let mut seen: HashMap<usize, Instant> = HashMap::new();
    let mut rebuilt_at = status.borrow().rebuilt_at;
    let mut last_route_mode = {
        let s = status.borrow_and_update();
        for v in &s.vendors {
            if let Some(t) = v.transitions.back() {
                seen.insert(v.index, t.at);
            }
        }
        s.route.mode
    };
    // Tenants held to a mode of their own (the shared vendors' driver keeps every one).
    let mut tenants = status.borrow().tenants.clone();
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            changed = status.changed() => if changed.is_err() { return },
        }
        let snapshot = status.borrow_and_update().clone();
        let now = Instant::now();
        if snapshot.rebuilt_at != rebuilt_at {
            // A reload rebuilt the vendor side: transitions from before it were recorded already
            // (vendors kept may have moved to another index).
            rebuilt_at = snapshot.rebuilt_at;
            seen.clear();
            for v in &snapshot.vendors {
                let mut carried = v.transitions.iter().filter(|t| Some(t.at) < rebuilt_at);
                if let Some(t) = carried.next_back() {
                    seen.insert(v.index, t.at);
                }
            }
        }
        for v in &snapshot.vendors {
            let after = seen.get(&v.index).copied();
            for t in v
                .transitions
                .iter()
                .filter(|t| after.is_none_or(|a| t.at > a))
            {
                audit.record(
                    AuditEntry::system(AuditAction::TransitionAuto)
                        .at(unix_ms(t.at, now))
                        .with_details(
                            json!({"vendor": v.name, "from": t.from.as_str(), "to": t.to.as_str()}),
                        )
                        .with_reason(format!("{:?}", t.reason)),
                );
            }
            if let Some(t) = v.transitions.back() {
                seen.insert(v.index, t.at);
            }
        }
        let route_mode = snapshot.route.mode;
        if route_mode == Mode::Auto
            && last_route_mode != Mode::Auto
            && snapshot.mode.mode != Mode::Auto
        {
            audit.record(
                AuditEntry::system(AuditAction::ModeExpired)
                    .with_details(json!({"from": last_route_mode.as_str(), "to": "auto", "set_by": snapshot.mode.set_by}))
                    .with_reason(snapshot.mode.reason.clone()),
            );
        }
        last_route_mode = route_mode;
        for (tenant, held) in &tenants {
            let lifted = !snapshot.tenants.contains_key(tenant);
            if lifted && held.mode.expired(now) {
                audit.record(
                    AuditEntry::system(AuditAction::ModeExpired)
                        .with_details(json!({
                            "tenant": tenant.as_str(),
                            "from": held.mode.mode.as_str(),
                            "to": "inherit",
                            "set_by": held.mode.set_by,
                        }))
                        .with_reason(held.mode.reason.clone()),
                );
            }
        }
        tenants = snapshot.tenants;
    }
}
