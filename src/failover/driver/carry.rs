//! A driver continuing from the one it replaces when a reload rebuilds the vendors: health of
//! the vendors kept, the routes (node-wide and each tenant's) with their versions.

use tokio::time::Instant;

use super::{CanaryObservation, Driver, ErrorTracker, Path, Route, SelfPath, Status, TenantRoute};

impl Driver {
    /// Continues from the driver this one replaces (the vendor side is rebuilt by a reload).
    /// `kept[i]` is the index in `previous` of new vendor `i` when its configuration did not
    /// change: it keeps its health, transitions and last canary; the others start healthy. The
    /// route keeps its version and changes only if the decision does, except that a route on a
    /// vendor that is gone is replaced at once, spread like a move away. Returns whether the
    /// route changed.
    pub(crate) fn carry_over(
        &mut self,
        previous: &Status,
        kept: &[Option<usize>],
        self_path: SelfPath,
        now: Instant,
    ) -> bool {
        for (index, (slot, old)) in self.slots.iter_mut().zip(kept).enumerate() {
            let Some(old) = old.and_then(|i| previous.vendors.get(i)) else {
                continue;
            };
            slot.health = old.health.clone();
            slot.transitions = old.transitions.clone();
            slot.errors = ErrorTracker::carried(old.last_error.clone());
            slot.last_canary = old
                .last_canary
                .clone()
                .map(|c| CanaryObservation { vendor: index, ..c });
        }
        self.self_path = self_path;
        self.rebuilt_at = Some(now);
        let new_index = |old: usize| kept.iter().position(|k| *k == Some(old));
        let tenant_versions = previous.tenants.values().map(|t| t.route.version);
        self.versions = tenant_versions.fold(previous.route.version, u64::max);
        // A route on a vendor that is gone is replaced at once, spread like a move away.
        let carried = |old: &Route| {
            let mut route = Route {
                forward_to: old.forward_to.and_then(new_index),
                ..old.clone()
            };
            let gone = match old.path {
                Path::Vendor(i) => new_index(i).map(|i| route.path = Path::Vendor(i)).is_none(),
                _ => false,
            };
            (route, gone)
        };
        let (route, gone) = carried(&previous.route);
        self.route = route;
        let mut changed = false;
        if gone {
            let (decision, mode) = self.decide(now);
            self.announce(decision, mode, self.route_config.move_away_jitter, now);
            changed = true;
        }
        for (tenant, old) in &previous.tenants {
            let (route, gone) = carried(&old.route);
            let mode = old.mode.clone();
            if gone {
                let (decision, effective) = self.decide_for(&mode, now);
                self.versions += 1;
                let jitter = self.route_config.move_away_jitter;
                let route = self.next_route(&route, decision, effective, jitter, now);
                self.tenants
                    .insert(tenant.clone(), TenantRoute { mode, route });
                changed = true;
            } else {
                self.tenants
                    .insert(tenant.clone(), TenantRoute { mode, route });
            }
        }
        self.reroute(now) | changed
    }
}
