//! Which lane an event travels in: plain vocabulary the lanes, the publish path and failover's
//! observations share.

use serde::Serialize;

/// Which lane an event travels in. `Realtime` is the default; `Bulk` is shed first.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    #[default]
    Realtime,
    Bulk,
}

impl Priority {
    /// Both priorities, realtime first.
    pub const ALL: [Priority; 2] = [Priority::Realtime, Priority::Bulk];

    /// Stable lower-case name for labels and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Realtime => "realtime",
            Priority::Bulk => "bulk",
        }
    }

    pub(crate) fn index(self) -> usize {
        match self {
            Priority::Realtime => 0,
            Priority::Bulk => 1,
        }
    }
}
