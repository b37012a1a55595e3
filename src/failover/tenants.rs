//! Vendor sets per tenant. Tenants without vendors of their own share the `[vendors]` set;
//! each tenant with its own credentials gets a set of its own (lanes, canaries, health
//! machines, driver), so one tenant's vendor failing moves only that tenant's clients. Every
//! set follows the node's inputs: the node-wide mode, the tenants' own modes, the self path.
//!
//! A tenant's mode, when the operator set one, replaces the node-wide mode for that tenant only;
//! it expires like the node-wide one, back to the node-wide mode.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::side::PreparedSide;
use super::{Failover, FailoverConfig, ModeSetting, RebuildError, Route, Status, TenantModes};
use crate::tenant::id::TenantId;
use crate::upstream::lanes::Lanes;
use crate::upstream::{BuildError, VendorConfig};

/// The running vendor sets of tenants with vendors of their own.
pub(super) type OwnSets = BTreeMap<TenantId, OwnSet>;

/// One tenant's own vendor set and what it was built from.
#[derive(Clone)]
pub(super) struct OwnSet {
    pub(super) failover: Failover,
    vendors: Vec<VendorConfig>,
    config: FailoverConfig,
}

/// A tenant with vendors of its own, as configured.
#[derive(Clone, Debug, PartialEq)]
pub struct TenantVendors {
    pub tenant: TenantId,
    pub vendors: Vec<VendorConfig>,
}

/// What a reload does to the tenants' own vendor sets, built before anything is applied.
pub struct OwnVendorsPlan {
    steps: Vec<(TenantVendors, Step)>,
    config: FailoverConfig,
}

enum Step {
    /// Unchanged: keeps running with its health.
    Keep,
    /// A new tenant with vendors, or one whose vendors or knobs changed.
    Start(Box<PreparedSide>),
}

impl Failover {
    /// Builds what the tenants' own vendor sets need for `wanted` (every tenant with vendors of
    /// its own) under `config`: adapters for the new and the changed ones. Nothing runs yet.
    pub fn plan_tenants(
        &self,
        wanted: Vec<TenantVendors>,
        config: &FailoverConfig,
    ) -> Result<OwnVendorsPlan, BuildError> {
        let own = self.inner.own.load();
        let steps = wanted
            .into_iter()
            .map(|t| {
                let same = own
                    .get(&t.tenant)
                    .is_some_and(|s| s.vendors == t.vendors && s.config == *config);
                let step = if same {
                    Step::Keep
                } else {
                    Step::Start(Box::new(PreparedSide::build(&t.vendors, config.clone())?))
                };
                Ok((t, step))
            })
            .collect::<Result<_, BuildError>>()?;
        Ok(OwnVendorsPlan {
            steps,
            config: config.clone(),
        })
    }

    /// Applies `plan`: starts the new sets, rebuilds the changed ones (keeping the health of
    /// vendors that did not change), stops those of tenants that are gone or share `[vendors]`
    /// now. Returns how many sets changed.
    pub async fn apply_tenants(&self, plan: OwnVendorsPlan) -> Result<usize, RebuildError> {
        let old = self.inner.own.load_full();
        let mut next = OwnSets::new();
        let mut changed = 0;
        for (t, step) in plan.steps {
            let set = match (step, old.get(&t.tenant)) {
                (Step::Keep, Some(running)) => running.clone(),
                (Step::Keep, None) => unreachable!("a kept set is running"),
                (Step::Start(prepared), Some(running)) => {
                    running.failover.rebuild(*prepared).await?;
                    changed += 1;
                    OwnSet {
                        failover: running.failover.clone(),
                        vendors: t.vendors,
                        config: plan.config.clone(),
                    }
                }
                (Step::Start(prepared), None) => {
                    changed += 1;
                    OwnSet {
                        failover: self.launch_own(*prepared, &t.tenant),
                        vendors: t.vendors,
                        config: plan.config.clone(),
                    }
                }
            };
            next.insert(t.tenant, set);
        }
        // In place before the old sets stop, so no event is handed to a stopped set.
        self.inner.own.store(Arc::new(next.clone()));
        for (tenant, set) in old.iter() {
            if !next.contains_key(tenant) {
                set.failover.inner.cancel.cancel();
                changed += 1;
                tracing::info!(%tenant, "tenant's own vendors stopped");
            }
        }
        if changed > 0 {
            self.inner.node.changed.send_modify(|n| *n += 1);
        }
        Ok(changed)
    }

    fn launch_own(&self, prepared: PreparedSide, tenant: &TenantId) -> Failover {
        let own = Failover::launch(
            prepared,
            &self.inner.tasks,
            self.inner.cancel.child_token(),
            self.inner.node.clone(),
            Some(tenant.clone()),
        );
        tracing::info!(%tenant, vendors = ?own.vendor_names(), "tenant's own vendors started");
        own
    }

    /// The vendor set serving `tenant`: its own, else the shared one.
    fn set_of(&self, tenant: &TenantId) -> Failover {
        match self.inner.own.load().get(tenant) {
            Some(set) => set.failover.clone(),
            None => self.clone(),
        }
    }

    /// The route of `tenant` now (lock-free): from its own vendors if it has some, under its
    /// own mode if the operator set one.
    pub fn route_for(&self, tenant: &TenantId) -> Arc<Route> {
        let set = self.set_of(tenant);
        let side = set.inner.side.load();
        let tenants = side.tenants.load();
        match tenants.get(tenant) {
            Some(route) => route.clone(),
            None => side.current.load_full(),
        }
    }

    /// Whether `tenant` has vendors of its own running.
    pub fn has_own_vendors(&self, tenant: &TenantId) -> bool {
        self.inner.own.load().contains_key(tenant)
    }

    /// Whether events of `tenant` have a vendor to go to.
    pub fn has_vendors_for(&self, tenant: &TenantId) -> bool {
        self.set_of(tenant).has_vendors()
    }

    /// Whether events of any tenant have a vendor to go to.
    pub fn has_any_vendors(&self) -> bool {
        self.has_vendors() || !self.inner.own.load().is_empty()
    }

    /// Names of `tenant`'s vendors (its own, else the shared ones), in priority order.
    pub fn vendor_names_for(&self, tenant: &TenantId) -> Vec<String> {
        self.set_of(tenant).vendor_names()
    }

    /// The status of `tenant`'s own vendor set, if it has one.
    pub fn own_status(&self, tenant: &TenantId) -> Option<Status> {
        let own = self.inner.own.load();
        let status = own.get(tenant)?.failover.inner.status.borrow().clone();
        Some(status)
    }

    /// The lanes of `tenant`'s vendors (its own, else the shared ones).
    pub fn lanes_for(&self, tenant: &TenantId) -> Arc<[Lanes]> {
        self.set_of(tenant).lanes()
    }

    /// Tenants with vendors of their own now.
    pub fn tenants_with_own_vendors(&self) -> Vec<TenantId> {
        self.inner.own.load().keys().cloned().collect()
    }

    /// Holds `tenant` to `mode` (`None`: back to the node-wide mode). Every vendor set's driver
    /// applies it at once; it expires by itself.
    pub fn set_tenant_mode(&self, tenant: &TenantId, mode: Option<ModeSetting>) {
        self.inner
            .node
            .tenant_modes
            .send_modify(|modes| match mode {
                Some(mode) => {
                    modes.insert(tenant.clone(), mode);
                }
                None => {
                    modes.remove(tenant);
                }
            });
    }

    /// Tenants held to a mode of their own, as set (an expired one is no longer in force).
    pub fn tenant_modes(&self) -> TenantModes {
        self.inner.node.tenant_modes.borrow().clone()
    }

    /// A receiver that wakes on every route change of every vendor set (the node-wide routes
    /// and each tenant's).
    pub fn watch_routes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.node.changed.subscribe()
    }
}

impl Failover {
    /// Starts `tenant`'s own vendor set from already-built adapters (tests, fakes).
    #[cfg(test)]
    pub(crate) fn start_own(&self, tenant: &TenantId, prepared: PreparedSide) {
        let mut sets = (**self.inner.own.load()).clone();
        let set = OwnSet {
            failover: self.launch_own(prepared, tenant),
            vendors: Vec::new(),
            config: FailoverConfig::default(),
        };
        sets.insert(tenant.clone(), set);
        self.inner.own.store(Arc::new(sets));
    }

    /// Starts the own vendor sets of `wanted` on a node that runs none yet (start-up).
    pub fn start_tenants(
        &self,
        wanted: Vec<TenantVendors>,
        config: &FailoverConfig,
    ) -> Result<(), BuildError> {
        let mut sets = OwnSets::new();
        for t in wanted {
            let prepared = PreparedSide::build(&t.vendors, config.clone())?;
            let set = OwnSet {
                failover: self.launch_own(prepared, &t.tenant),
                vendors: t.vendors,
                config: config.clone(),
            };
            sets.insert(t.tenant, set);
        }
        self.inner.own.store(Arc::new(sets));
        Ok(())
    }
}

#[cfg(test)]
mod tests;
