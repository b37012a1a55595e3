//! The admin side: metrics and the admin listener's routes.

pub mod admin;
pub mod metrics;

pub use metrics::Metrics;
