//! Who may publish and who may subscribe: publisher bearer keys and subscriber tokens.

pub mod publisher;
pub mod token;

pub use publisher::PublisherKeys;
pub use token::{SubscriberAuth, TokenError, TokenScope};
