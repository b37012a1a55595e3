//! The demo backend's own record of who is waiting: a bounded list of checked-in tickets, oldest
//! first, and the file it is kept in so that it outlives a restart of the server (a real backend
//! keeps this in its database; the board page reloads it after a reset). Plain data, no sockets.

use std::collections::VecDeque;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// Tickets kept at most; past this the oldest check-in is forgotten first.
pub(super) const MAX_TICKETS: usize = 100;
/// Longest ticket number accepted.
const MAX_TICKET_LEN: usize = 12;

/// One checked-in ticket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Entry {
    pub(super) ticket: String,
    /// Milliseconds since the Unix epoch.
    pub(super) checked_in_at: u64,
}

/// The waiting room: at most [`MAX_TICKETS`] entries, oldest first, no ticket twice.
#[derive(Debug, Default)]
pub(super) struct Board {
    entries: VecDeque<Entry>,
}

impl Board {
    /// The list saved in `path`, or an empty one when there is no file yet.
    pub(super) fn load(path: &Path) -> Result<Self, String> {
        let text = match std::fs::read(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => return Err(format!("reading {}: {e}", path.display())),
        };
        let entries: Vec<Entry> = serde_json::from_slice(&text)
            .map_err(|e| format!("{} is not a saved waiting-room list: {e}", path.display()))?;
        let mut board = Self::default();
        for entry in entries {
            board.add(entry);
        }
        Ok(board)
    }

    pub(super) fn contains(&self, ticket: &str) -> bool {
        self.entries.iter().any(|e| e.ticket == ticket)
    }

    /// Appends `entry` unless its ticket is already there; answers whether it was added.
    pub(super) fn add(&mut self, entry: Entry) -> bool {
        if self.contains(&entry.ticket) {
            return false;
        }
        if self.entries.len() == MAX_TICKETS {
            self.entries.pop_front();
        }
        self.entries.push_back(entry);
        true
    }

    /// Takes back the check-in of `ticket` (its publish failed).
    pub(super) fn remove(&mut self, ticket: &str) {
        self.entries.retain(|e| e.ticket != ticket);
    }

    pub(super) fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.entries.iter()
    }

    pub(super) fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(&self.entries).expect("entries serialise")
    }
}

/// A ticket number as typed at the kiosk, normalised (trimmed, upper case): 1 to 12 letters,
/// digits and `-`, with at least one digit, so that a name cannot be typed in by mistake.
pub(super) fn ticket(typed: &str) -> Option<String> {
    let t = typed.trim().to_ascii_uppercase();
    let ok = (1..=MAX_TICKET_LEN).contains(&t.len())
        && t.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        && t.chars().any(|c| c.is_ascii_digit());
    ok.then_some(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(ticket: &str) -> Entry {
        Entry {
            ticket: ticket.into(),
            checked_in_at: 1,
        }
    }

    #[test]
    fn tickets_are_numbers_not_names() {
        assert_eq!(ticket(" a-17 ").as_deref(), Some("A-17"));
        assert_eq!(ticket("42").as_deref(), Some("42"));
        for bad in [
            "",
            "JOHN",
            "Jane Doe",
            "A 17",
            "A-17<script>",
            "1234567890123",
        ] {
            assert_eq!(ticket(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn no_ticket_twice_and_the_oldest_goes_first() {
        let mut b = Board::default();
        assert!(b.add(entry("A-1")));
        assert!(!b.add(entry("A-1")));
        for n in 2..=MAX_TICKETS + 1 {
            b.add(entry(&format!("A-{n}")));
        }
        let tickets: Vec<&str> = b.entries().map(|e| e.ticket.as_str()).collect();
        assert_eq!(tickets.len(), MAX_TICKETS);
        assert_eq!(tickets[0], "A-2");
        b.remove("A-2");
        assert!(!b.contains("A-2"));
    }

    #[test]
    fn a_saved_list_loads_back() {
        let dir = std::env::temp_dir().join(format!("understudy-board-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("board.json");
        assert_eq!(Board::load(&path).unwrap().entries().count(), 0);
        let mut b = Board::default();
        b.add(entry("B-7"));
        std::fs::write(&path, b.to_json()).unwrap();
        let back = Board::load(&path).unwrap();
        assert_eq!(back.entries().collect::<Vec<_>>(), vec![&entry("B-7")]);
        std::fs::write(&path, b"not json").unwrap();
        assert!(Board::load(&path).unwrap_err().contains("not a saved"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
