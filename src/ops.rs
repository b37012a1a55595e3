//! The admin side: metrics, status, operator modes and the admin listener's routes.

pub mod admin;
pub mod metrics;
pub mod mode;
pub mod status;

pub use metrics::Metrics;
