//! The domain core: channel names, events, per-channel sequencing and epochs, bounded history,
//! idempotency, cursors and the channel registry. Nothing in here opens a socket or speaks a wire
//! format other than the event JSON every transport shares.

pub mod channel;
pub mod channel_name;
pub mod cursor;
pub mod epoch;
pub mod error;
pub mod event;
pub mod history;
pub mod idempotency;
pub mod live;
pub mod registry;

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
