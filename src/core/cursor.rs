//! SSE cursors: the positions of several channels in one string, `channel~epoch~seq` items joined
//! with `,`. Neither separator can occur in a channel name or an epoch.
//!
//! A cursor comes from the client (`Last-Event-ID`), so parsing it is bounded before any work:
//! the items are counted first (one pass over the bytes) and a cursor with more than the caller's
//! limit is refused whole; the rest is one pass with a hash set for repeated channels, so the cost
//! is linear in the length of the text.

use std::collections::HashMap;
use std::fmt::Write;

use super::{ChannelName, CoreError, Epoch, Position};

/// Positions keyed by channel, in the order they were added.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cursor {
    entries: Vec<(ChannelName, Position)>,
}

impl Cursor {
    /// Parses a cursor of at most `max_items` items (a connection's channel limit: a position
    /// for any further channel could never be used).
    pub fn parse(s: &str, max_items: usize) -> Result<Self, CoreError> {
        let items = s.split(',').filter(|i| !i.is_empty());
        let count = items.clone().count();
        if count > max_items {
            return Err(CoreError::InvalidCursor(format!(
                "the cursor holds {count} positions, more than the {max_items} channels a connection may have; pass back the last SSE id of this connection unchanged"
            )));
        }
        let mut cursor = Self::default();
        cursor.entries.reserve(count);
        // Where each channel sits in `entries`: a later item for the same channel replaces the
        // earlier one without a scan.
        let mut at: HashMap<&str, usize> = HashMap::with_capacity(count);
        for item in items {
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
            let position = Position {
                epoch: Epoch::from_client(epoch),
                seq,
            };
            #[cfg(test)]
            probes::count();
            match at.get(ch) {
                Some(&i) => cursor.entries[i].1 = position,
                None => {
                    at.insert(ch, cursor.entries.len());
                    cursor.entries.push((channel, position));
                }
            }
        }
        Ok(cursor)
    }

    pub fn get(&self, channel: &ChannelName) -> Option<&Position> {
        self.entries
            .iter()
            .find(|(c, _)| c == channel)
            .map(|(_, p)| p)
    }

    /// Sets a channel's position. Searched from the newest entry: a connection opening its
    /// channels sets each one (and its replayed events) right after adding it, so opening many
    /// channels stays linear.
    pub fn set(&mut self, channel: ChannelName, position: Position) {
        match self.entries.iter_mut().rev().find(|(c, _)| *c == channel) {
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

    /// The positions by channel, for looking many channels up at once.
    pub fn by_channel(&self) -> HashMap<&ChannelName, &Position> {
        self.entries.iter().map(|(c, p)| (c, p)).collect()
    }

    pub fn remove(&mut self, channel: &ChannelName) {
        self.entries.retain(|(c, _)| c != channel);
    }

    /// Writes the cursor's text form into `out`.
    pub fn write_to(&self, out: &mut impl Write) {
        for (i, (ch, p)) in self.entries.iter().enumerate() {
            write_item(out, i, ch, &p.epoch, p.seq);
        }
    }

    /// Writes the text form the cursor would have after `advance(channel, epoch, seq)`, without
    /// moving it: the `id` of an event that may yet fail to go out.
    pub fn write_advanced(
        &self,
        out: &mut impl Write,
        channel: &ChannelName,
        epoch: &Epoch,
        seq: u64,
    ) {
        let mut found = false;
        for (i, (ch, p)) in self.entries.iter().enumerate() {
            if ch == channel {
                found = true;
                write_item(out, i, ch, epoch, seq);
            } else {
                write_item(out, i, ch, &p.epoch, p.seq);
            }
        }
        if !found {
            write_item(out, self.entries.len(), channel, epoch, seq);
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

/// Counts the lookups a parse makes for repeated channels, so a test can hold it to linear work
/// without timing it.
/// Writes the `i`-th item of a cursor.
fn write_item(out: &mut impl Write, i: usize, channel: &ChannelName, epoch: &Epoch, seq: u64) {
    if i > 0 {
        let _ = out.write_char(',');
    }
    let _ = out.write_str(channel.as_str());
    let _ = out.write_char('~');
    let _ = out.write_str(epoch.as_str());
    let _ = out.write_char('~');
    // Written once per SSE message per subscriber: itoa, not the formatting machinery.
    let _ = out.write_str(itoa::Buffer::new().format(seq));
}

#[cfg(test)]
mod probes {
    use std::cell::Cell;

    thread_local! {
        static PROBES: Cell<usize> = const { Cell::new(0) };
    }

    pub(super) fn count() {
        PROBES.with(|p| p.set(p.get() + 1));
    }

    pub(super) fn take() -> usize {
        PROBES.with(|p| p.replace(0))
    }
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
        assert_eq!(Cursor::parse(&text, 10).unwrap(), c);
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
    fn an_advance_is_written_as_it_would_be_without_moving_the_cursor() {
        let (a, b, c) = (
            ChannelName::parse("a").unwrap(),
            ChannelName::parse("b").unwrap(),
            ChannelName::parse("c").unwrap(),
        );
        let mut cursor = Cursor::default();
        cursor.set(a.clone(), pos("e", 1));
        cursor.set(b.clone(), pos("e", 7));
        let written = |ch: &ChannelName, epoch: &str, seq| {
            let mut out = String::new();
            cursor.write_advanced(&mut out, ch, &Epoch::from_client(epoch), seq);
            let mut moved = cursor.clone();
            moved.advance(ch, &Epoch::from_client(epoch), seq);
            assert_eq!(out, moved.encode(), "as the advanced cursor writes itself");
            out
        };
        assert_eq!(written(&b, "e", 8), "a~e~1,b~e~8");
        assert_eq!(written(&a, "f", 1), "a~f~1,b~e~7");
        assert_eq!(written(&c, "g", 3), "a~e~1,b~e~7,c~g~3");
        assert_eq!(cursor.encode(), "a~e~1,b~e~7", "the cursor did not move");
    }

    #[test]
    fn rejects_malformed_items() {
        for bad in ["a~e", "a~e~x", "a b~e~1", "a~e~1~2", "a~~1", "a~e-1~1"] {
            assert!(
                matches!(Cursor::parse(bad, 10), Err(CoreError::InvalidCursor(_))),
                "{bad}"
            );
        }
        assert_eq!(Cursor::parse("", 10).unwrap(), Cursor::default());
    }

    fn items(n: usize) -> String {
        (0..n)
            .map(|i| format!("ch-{i}~e{i}~{i}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    #[test]
    fn a_cursor_over_the_limit_is_refused_before_any_item_is_parsed() {
        probes::take();
        let err = Cursor::parse(&items(30_000), 10_000).unwrap_err();
        assert!(err.to_string().contains("30000 positions"), "{err}");
        assert_eq!(probes::take(), 0, "no item was parsed");
    }

    #[test]
    fn a_max_size_cursor_parses_in_linear_steps_and_a_later_item_wins() {
        probes::take();
        let c = Cursor::parse(&items(10_000), 10_000).unwrap();
        assert_eq!(c.entries.len(), 10_000);
        // One lookup per item: a scan of the entries per item was 50 million comparisons.
        assert_eq!(probes::take(), 10_000);
        let c = Cursor::parse("a~e~1,b~e~2,a~f~3", 3).unwrap();
        assert_eq!(c.encode(), "a~f~3,b~e~2");
    }
}
