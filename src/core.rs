//! The domain core: channel names, events, per-channel sequencing and epochs, bounded history,
//! idempotency, cursors and the channel registry. Nothing in here opens a socket or speaks a wire
//! format other than the event JSON every transport shares.

pub(crate) mod channel;
pub(crate) mod channel_name;
pub(crate) mod cursor;
pub(crate) mod epoch;
pub(crate) mod error;
pub mod event;
pub(crate) mod history;
pub(crate) mod idempotency;
pub(crate) mod json;
pub(crate) mod live;
pub(crate) mod registry;

pub use channel::{
    Applied, Channel, ChannelLimits, ChannelOwners, Published, Read, ReadFrom, Snapshot, Start,
    Subscription,
};
pub use channel_name::ChannelName;
pub use cursor::Cursor;
pub use epoch::Epoch;
pub use error::CoreError;
pub use event::{Event, EventDraft, Position, ResetReason};
pub use history::HistoryLimits;
pub use registry::{Installed, Registry, RegistryLimits, RegistryStats};
