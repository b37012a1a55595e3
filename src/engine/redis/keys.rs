//! Names of everything understudy keeps in Redis. A channel's keys share the hash tag `{name}`,
//! so on Redis Cluster they live in one slot and one script can touch them all.

use crate::core::ChannelName;

/// Key and pub/sub channel names under one prefix.
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_string(),
        }
    }

    /// Hash `{epoch, seq}`: the channel's epoch and its last seq.
    pub fn meta(&self, ch: &ChannelName) -> String {
        format!("{}:{{{}}}:meta", self.prefix, ch.as_str())
    }

    /// Sorted set of the history, scored by seq; members are `seq ts body`.
    pub fn history(&self, ch: &ChannelName) -> String {
        format!("{}:{{{}}}:hist", self.prefix, ch.as_str())
    }

    /// String `epoch seq` remembered for an idempotency key.
    pub fn id(&self, ch: &ChannelName, id: &str) -> String {
        format!("{}:{{{}}}:id:{}", self.prefix, ch.as_str(), id)
    }

    /// Pub/sub channel carrying the channel's events as `epoch seq ts body`.
    pub fn events(&self, ch: &ChannelName) -> String {
        format!("{}:{{{}}}:ev", self.prefix, ch.as_str())
    }

    /// The channel an events pub/sub name belongs to.
    pub fn channel_of_events(&self, pubsub: &str) -> Option<ChannelName> {
        let inner = pubsub
            .strip_prefix(self.prefix.as_str())?
            .strip_prefix(":{")?
            .strip_suffix("}:ev")?;
        ChannelName::parse(inner).ok()
    }

    /// String: the operator mode in force, as JSON.
    pub fn mode(&self) -> String {
        format!("{}:mode", self.prefix)
    }

    /// String: the planned maintenance windows, as JSON.
    pub fn maintenance(&self) -> String {
        format!("{}:maintenance", self.prefix)
    }

    /// Pub/sub channel announcing a change of mode or maintenance to every node.
    pub fn control(&self) -> String {
        format!("{}:control", self.prefix)
    }

    /// String with expiry: the node holding the canary lease.
    pub fn canary_lease(&self) -> String {
        format!("{}:canary:lease", self.prefix)
    }

    /// Pub/sub channel of the lease holder's canary results, as JSON.
    pub fn canary_results(&self) -> String {
        format!("{}:canary:results", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_channels_keys_share_its_hash_tag_and_round_trip() {
        let k = Keys::new("us");
        let ch = ChannelName::parse("clinic-7:room.1@a_b").unwrap();
        for key in [k.meta(&ch), k.history(&ch), k.id(&ch, "x"), k.events(&ch)] {
            assert!(key.contains("{clinic-7:room.1@a_b}"), "{key}");
        }
        assert_eq!(k.channel_of_events(&k.events(&ch)), Some(ch));
        assert_eq!(k.channel_of_events("other:{a}:ev"), None);
        assert_eq!(k.channel_of_events("us:{a}:meta"), None);
    }
}
