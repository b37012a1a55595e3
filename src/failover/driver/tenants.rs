//! Tenants held to a mode of their own. The vendors' health is judged once for everyone who
//! shares them; each such tenant gets its own route from that health and its own mode, and falls
//! back to the node-wide route when its mode is lifted or expires.

use tokio::time::Instant;

use super::{Driver, Route, TenantRoute};
use crate::failover::mode::TenantModes;
use crate::tenant::id::TenantId;

impl Driver {
    /// Takes the tenants' modes as the operator set them now (expired ones count as lifted).
    /// Returns whether a route changed.
    pub(crate) fn set_tenant_modes(&mut self, modes: &TenantModes, now: Instant) -> bool {
        // A tenant's own vendors serve that tenant alone. (The shared vendors' driver also keeps
        // the routes of tenants that have their own; nobody reads those.)
        let mine = |tenant: &TenantId| self.owner.as_ref().is_none_or(|o| o == tenant);
        let modes: TenantModes = (modes.iter())
            .filter(|(t, m)| mine(t) && !m.expired(now))
            .map(|(t, m)| (t.clone(), m.clone()))
            .collect();
        let mut changed = false;
        let held: Vec<TenantId> = self.tenants.keys().cloned().collect();
        for tenant in held {
            if !modes.contains_key(&tenant) {
                self.tenants.remove(&tenant);
                tracing::warn!(%tenant, "tenant mode lifted, back to the node-wide mode");
                changed = true;
            }
        }
        for (tenant, mode) in &modes {
            match self.tenants.get_mut(tenant) {
                Some(held) if held.mode == *mode => continue,
                Some(held) => held.mode = mode.clone(),
                None => {
                    // From the route the tenant had: the node-wide one.
                    let route = self.route.clone();
                    let held = TenantRoute {
                        mode: mode.clone(),
                        route,
                    };
                    self.tenants.insert(tenant.clone(), held);
                }
            }
            tracing::debug!(%tenant, mode = mode.mode.as_str(), set_by = %mode.set_by, reason = %mode.reason, "tenant mode applied");
        }
        changed | self.reroute(now)
    }

    /// Lifts every tenant mode that has expired at `now`. Returns whether one was.
    pub(super) fn expire_tenant_modes(&mut self, now: Instant) -> bool {
        let before = self.tenants.len();
        self.tenants.retain(|tenant, held| {
            let expired = held.mode.expired(now);
            if expired {
                tracing::warn!(%tenant, mode = held.mode.mode.as_str(), set_by = %held.mode.set_by, "tenant mode expired, back to the node-wide mode");
            }
            !expired
        });
        self.tenants.len() != before
    }

    /// Re-decides each tenant's own route; returns whether one changed.
    pub(super) fn reroute_tenants(&mut self, now: Instant) -> bool {
        let mut changed = false;
        let tenants: Vec<TenantId> = self.tenants.keys().cloned().collect();
        for tenant in tenants {
            let held = &self.tenants[&tenant];
            let Some((decision, mode, jitter)) = self.change(&held.mode, &held.route, now) else {
                continue;
            };
            self.versions += 1;
            let route = self.next_route(&held.route, decision, mode, jitter, now);
            super::telemetry::log_tenant_route(&tenant, &held.route, &route);
            if let Some(held) = self.tenants.get_mut(&tenant) {
                held.route = route;
            }
            changed = true;
        }
        changed
    }

    /// Each tenant held to a mode of its own, with its route.
    pub(crate) fn tenant_routes(&self) -> impl Iterator<Item = (&TenantId, &Route)> {
        self.tenants.iter().map(|(id, t)| (id, &t.route))
    }
}
