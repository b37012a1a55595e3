//! Errors of the domain core. Transports map them to wire errors in one place.

/// What the core refuses, in words a client can act on.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CoreError {
    #[error("{0}")]
    InvalidChannel(String),
    #[error("{0}")]
    InvalidField(String),
    #[error(
        "the node holds its maximum of {0} channels; retry later or raise channels.max_channels"
    )]
    ChannelLimit(usize),
    #[error("{0}")]
    InvalidCursor(String),
    /// A mirror registry does not hold the channel yet; the engine installs it and asks again.
    #[error("channel {0:?} is not loaded on this node yet; retry")]
    NotMirrored(String),
}
