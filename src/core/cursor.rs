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

    /// Moves a channel to `(epoch, seq)`. The common case, same channel and epoch, only stores
    /// the seq: no clone of the shared name or epoch, whose reference counts every subscriber of
    /// the channel would otherwise bounce between cores on every event.
    pub fn advance(&mut self, channel: &ChannelName, epoch: &Epoch, seq: u64) {
        match self.entries.iter_mut().find(|(c, _)| c == channel) {
            Some((_, p)) if p.epoch == *epoch => p.seq = seq,
            Some((_, p)) => {
                *p = Position {
                    epoch: epoch.clone(),
                    seq,
                }
            }
            None => self.entries.push((
                channel.clone(),
                Position {
                    epoch: epoch.clone(),
                    seq,
                },
            )),
        }
    }

    pub fn remove(&mut self, channel: &ChannelName) {
        self.entries.retain(|(c, _)| c != channel);
    }

    /// Writes the cursor's text form into `out`.
    pub fn write_to(&self, out: &mut impl Write) {
        for (i, (ch, p)) in self.entries.iter().enumerate() {
            if i > 0 {
                let _ = out.write_char(',');
            }
            let _ = out.write_str(ch.as_str());
            let _ = out.write_char('~');
            let _ = out.write_str(p.epoch.as_str());
            let _ = out.write_char('~');
            // Written once per SSE message per subscriber: itoa, not the formatting machinery.
            let _ = out.write_str(itoa::Buffer::new().format(p.seq));
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
        c.advance(&ch, &Epoch::from_client("e"), 2);
        assert_eq!(c.encode(), "a~e~2");
        c.advance(&ch, &Epoch::from_client("f"), 1);
        assert_eq!(c.encode(), "a~f~1");
        c.advance(&ch, &Epoch::from_client("f"), 2);
        assert_eq!(c.encode(), "a~f~2");
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
