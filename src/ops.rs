//! The admin side: metrics, status, operator modes, the audit trail, the on-call dashboard and the
//! admin listener's routes, among them `GET /admin/tenants` (`tenants`).

pub mod admin;
pub mod audit;
pub mod audit_feed;
pub mod cluster;
pub mod dashboard;
pub mod maintenance;
mod maintenance_api;
pub mod metrics;
pub mod mode;
pub mod status;
mod tenant_routes;
mod tenants;

pub use metrics::Metrics;
