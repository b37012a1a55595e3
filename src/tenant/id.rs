//! A tenant's id: plain vocabulary every layer may name.

use std::fmt;
use std::sync::Arc;

/// Name of the tenant that owns every channel no `[[tenants]]` entry claims.
pub const DEFAULT_TENANT: &str = "default";

/// Tenants with a metrics label of their own (the default tenant and the first configured
/// ones, in file order); the rest share [`OTHER_LABEL`], so a node with thousands of tenants
/// still has a bounded number of series.
pub const LABELLED_TENANTS: usize = 32;
/// The metrics label of every tenant past the first [`LABELLED_TENANTS`].
pub const OTHER_LABEL: &str = "other";

/// A tenant's id (`[A-Za-z0-9_-]`, at most 64). Cheap to clone.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TenantId(pub(super) Arc<str>);

impl TenantId {
    pub fn new(id: &str) -> Self {
        Self(Arc::from(id))
    }

    /// The default tenant's id.
    pub fn default_tenant() -> Self {
        Self::new(DEFAULT_TENANT)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_default(&self) -> bool {
        &*self.0 == DEFAULT_TENANT
    }
}

impl Default for TenantId {
    fn default() -> Self {
        Self::default_tenant()
    }
}

impl fmt::Debug for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
