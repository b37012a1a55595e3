//! Who may publish, subscribe and administer: publisher keys, subscriber tokens, admin tokens.

pub mod admin;
pub mod publisher;
pub mod token;

pub use admin::{AdminToken, AdminTokens};
pub use publisher::PublisherKeys;
pub use token::{SubscriberAuth, TokenError, TokenScope};
