//! Who may subscribe and administer: subscriber tokens, admin tokens, the apps of the Pusher and
//! Ably protocols, and Ably's keys and tokens for the Ably REST ingress. Publisher keys belong to
//! their tenants and are looked up there ([`crate::tenant::Tenants::by_publisher_key`]).

pub(crate) mod ably;
pub(crate) mod admin;
pub(crate) mod apps;
pub(crate) mod token;

pub(crate) use admin::{AdminToken, AdminTokens};
pub(crate) use apps::Apps;
pub(crate) use token::{SubscriberAuth, TokenError, TokenScope};
