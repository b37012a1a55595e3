//! The admin side: metrics, the admin listener's routes and the audit trail.

pub mod admin;
pub mod audit;
pub mod metrics;

pub use metrics::Metrics;
