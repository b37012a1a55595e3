//! Who may subscribe and administer: subscriber tokens, admin tokens, the apps of the Pusher and
//! Ably protocols, and Ably's keys and tokens for the Ably REST ingress. Publisher keys belong to
//! their tenants and are looked up there ([`crate::tenant::Tenants::by_publisher_key`]).

pub mod ably;
pub mod admin;
pub mod apps;
pub mod token;

pub use admin::{AdminToken, AdminTokens};
pub use apps::Apps;
pub use token::{SubscribeAuth, SubscriberAuth, TokenError, TokenScope};
