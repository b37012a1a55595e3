//! The admin side: metrics, status, operator modes, the audit trail, the on-call dashboard and the
//! admin listener's routes, among them `GET /admin/tenants` (`tenants`).

pub(crate) mod admin;
pub mod audit;
pub(crate) mod audit_feed;
pub(crate) mod cluster;
pub(crate) mod dashboard;
pub(crate) mod maintenance;
mod maintenance_api;
pub(crate) mod metrics;
pub(crate) mod mode;
pub(crate) mod status;
mod tenant_routes;
mod tenants;

pub use metrics::Metrics;
