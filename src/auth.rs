//! Who may publish, subscribe and administer: publisher keys, subscriber tokens, admin tokens,
//! the apps of the Pusher and Ably protocols, and Ably's keys and tokens for the Ably REST ingress.

pub mod ably;
pub mod admin;
pub mod apps;
pub mod publisher;
pub mod token;

pub use admin::{AdminToken, AdminTokens};
pub use apps::Apps;
pub use publisher::PublisherKeys;
pub use token::{SubscriberAuth, TokenError, TokenScope};
