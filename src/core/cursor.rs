//! SSE cursors: the positions of several channels in one string, `channel~epoch~seq` items joined
//! with `,`. Neither separator can occur in a channel name or an epoch.

use std::fmt::Write;

use super::{ChannelName, CoreError, Epoch, Position};

/// Positions keyed by channel, in the order they were added.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cursor {
    entries: Vec<(ChannelName, Position)>,
}

impl Cursor {
    pub fn parse(s: &str) -> Result<Self, CoreError> {
        let mut cursor = Self::default();
        for item in s.split(',').filter(|i| !i.is_empty()) {
            let mut parts = item.split('~');
            let (Some(ch), Some(epoch), Some(seq), None) =
                (parts.next(), parts.next(), parts.next(), parts.next())
            else {
                return Err(invalid(item, "expected channel~epoch~seq"));
            };
            let channel = ChannelName::parse(ch).map_err(|e| invalid(item, &e.to_string()))?;
            if epoch.is_empty() || !epoch.bytes().all(|c| c.is_ascii_alphanumeric()) {
                return Err(invalid(item, "the epoch must be letters and digits"));
            }
            let seq = seq
                .parse::<u64>()
                .map_err(|_| invalid(item, "the seq must be a whole number"))?;
            cursor.set(
                channel,
                Position {
                    epoch: Epoch::from_client(epoch),
                    seq,
                },
            );
        }
        Ok(cursor)
    }

    pub fn get(&self, channel: &ChannelName) -> Option<&Position> {
        self.entries
            .iter()
            .find(|(c, _)| c == channel)
            .map(|(_, p)| p)
    }

    pub fn set(&mut self, channel: ChannelName, position: Position) {
        match self.entries.iter_mut().find(|(c, _)| *c == channel) {
            Some((_, p)) => *p = position,
            None => self.entries.push((channel, position)),
        }
    }

    /// Sets only the seq of a channel already held (the common case on every event).
    pub fn advance(&mut self, channel: &ChannelName, position: Position) {
        self.set(channel.clone(), position)
    }

    pub fn remove(&mut self, channel: &ChannelName) {
        self.entries.retain(|(c, _)| c != channel);
    }

    /// Writes the cursor's text form into `out`.
    pub fn write_to(&self, out: &mut String) {
        for (i, (ch, p)) in self.entries.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(out, "{ch}~{}~{}", p.epoch, p.seq);
        }
    }

    pub fn encode(&self) -> String {
        let mut s = String::new();
        self.write_to(&mut s);
        s
    }
}

fn invalid(item: &str, why: &str) -> CoreError {
    let item: String = item.chars().take(60).collect();
    CoreError::InvalidCursor(format!(
        "cursor item {item:?} is not valid ({why}); pass back the last SSE id unchanged, or leave the cursor out to start live"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pos(e: &str, s: u64) -> Position {
        Position {
            epoch: Epoch::from_client(e),
            seq: s,
        }
    }

    #[test]
    fn round_trips() {
        let mut c = Cursor::default();
        c.set(
            ChannelName::parse("clinic-42.room").unwrap(),
            pos("abc123", 17),
        );
        c.set(ChannelName::parse("b:x@y").unwrap(), pos("zz9", 0));
        let text = c.encode();
        assert_eq!(text, "clinic-42.room~abc123~17,b:x@y~zz9~0");
        assert_eq!(Cursor::parse(&text).unwrap(), c);
    }

    #[test]
    fn updates_in_place() {
        let ch = ChannelName::parse("a").unwrap();
        let mut c = Cursor::default();
        c.set(ch.clone(), pos("e", 1));
        c.advance(&ch, pos("e", 2));
        assert_eq!(c.encode(), "a~e~2");
        c.remove(&ch);
        assert_eq!(c.encode(), "");
    }

    #[test]
    fn rejects_malformed_items() {
        for bad in ["a~e", "a~e~x", "a b~e~1", "a~e~1~2", "a~~1", "a~e-1~1"] {
            assert!(
                matches!(Cursor::parse(bad), Err(CoreError::InvalidCursor(_))),
                "{bad}"
            );
        }
        assert_eq!(Cursor::parse("").unwrap(), Cursor::default());
    }
}
