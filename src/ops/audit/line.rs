//! How an entry becomes one bounded, secret-free line of the log, and how a line is read back
//! (a torn or foreign line is skipped, never an error). Runs on the writer's blocking thread,
//! never on the hot path.

use serde_json::{json, Value};

use super::entry::AuditEntry;

/// A line longer than this has its `details` replaced by a note saying how large they were.
pub(super) const MAX_LINE_BYTES: usize = 64 * 1024;
/// Longest `reason` kept, in characters; longer ones are cut and marked with an ellipsis.
pub(super) const MAX_REASON_CHARS: usize = 2000;
/// Longest `actor` kept, in characters.
pub(super) const MAX_ACTOR_CHARS: usize = 128;
/// What a redacted value is written as.
pub(super) const REDACTED: &str = "[redacted]";

/// Last words of a `details` key whose value is never written.
const SECRET_WORDS: &[&str] = &[
    "secret",
    "secrets",
    "password",
    "passwd",
    "token",
    "tokens",
    "key",
    "keys",
    "apikey",
    "authorization",
    "credential",
    "credentials",
];

/// `entry` as one JSON line ending in `\n`: secrets under secret-looking keys redacted, the
/// actor and reason cut to their bounds, and the whole line at most [`MAX_LINE_BYTES`] plus the
/// fixed fields.
pub(super) fn encode(mut entry: AuditEntry) -> Vec<u8> {
    redact(&mut entry.details);
    truncate_chars(&mut entry.actor, MAX_ACTOR_CHARS);
    if let Some(reason) = entry.reason.as_mut() {
        truncate_chars(reason, MAX_REASON_CHARS);
    }
    let mut line = to_vec(&entry);
    if line.len() > MAX_LINE_BYTES {
        entry.details = json!({ "truncated": true, "details_bytes": line.len() });
        line = to_vec(&entry);
    }
    line.push(b'\n');
    line
}

/// One line (with or without its `\n`) back into an entry; `None` for a torn or foreign line.
pub(super) fn decode(line: &[u8]) -> Option<AuditEntry> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.iter().all(u8::is_ascii_whitespace) {
        return None;
    }
    serde_json::from_slice(line).ok()
}

fn to_vec(entry: &AuditEntry) -> Vec<u8> {
    // Serialising a struct of strings, numbers and a `Value` cannot fail.
    serde_json::to_vec(entry).unwrap_or_else(|_| b"{}".to_vec())
}

/// Replace, at any depth, the value of every key whose last word names a secret.
fn redact(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map.iter_mut() {
                if is_secret_key(key) {
                    *inner = Value::String(REDACTED.to_string());
                } else {
                    redact(inner);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact),
        _ => {}
    }
}

/// `api_key`, `subscriber-secret`, `Authorization`, `vendor.token` are secret keys;
/// `token_name`, `key_count` and `keyspace` are not.
fn is_secret_key(key: &str) -> bool {
    let last = key
        .rsplit(['_', '-', '.', ' '])
        .next()
        .unwrap_or(key)
        .to_ascii_lowercase();
    let camel_last = camel_last_word(key);
    SECRET_WORDS.contains(&last.as_str()) || SECRET_WORDS.contains(&camel_last.as_str())
}

/// The last word of a camelCase key, lowercased: `apiKey` -> `key`, `clientSecret` -> `secret`.
fn camel_last_word(key: &str) -> String {
    let start = key
        .char_indices()
        .filter(|(_, c)| c.is_ascii_uppercase())
        .map(|(i, _)| i)
        .next_back()
        .unwrap_or(0);
    key[start..].to_ascii_lowercase()
}

fn truncate_chars(text: &mut String, max: usize) {
    if let Some((cut, _)) = text.char_indices().nth(max) {
        text.truncate(cut);
        text.push('…');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::audit::AuditAction;

    fn entry(details: Value) -> AuditEntry {
        AuditEntry::new("oncall", AuditAction::ConfigReloaded)
            .with_details(details)
            .at(7)
    }

    #[test]
    fn lines_end_in_one_newline_and_decode_back() {
        let original = entry(json!({"changed": ["vendor", "limits"], "note": "a\nb"}));
        let line = encode(original.clone());
        assert_eq!(line.iter().filter(|&&b| b == b'\n').count(), 1);
        assert_eq!(line.last(), Some(&b'\n'));
        assert_eq!(decode(&line), Some(original));
    }

    #[test]
    fn secrets_under_secret_looking_keys_are_redacted_at_any_depth() {
        let line = encode(entry(json!({
            "token_name": "oncall",
            "key_count": 3,
            "vendor": {"api_key": "sk-live-1", "apiKey": "sk-live-2", "cluster": "eu"},
            "auth": [{"subscriber_secret": "s3cr3t"}, {"Authorization": "Bearer abc"}],
            "publisher_keys": ["k1", "k2"],
            "password": {"nested": "pw"},
        })));
        let text = String::from_utf8(line.clone()).unwrap();
        for secret in ["sk-live-1", "sk-live-2", "s3cr3t", "Bearer abc", "k1", "pw"] {
            assert!(!text.contains(secret), "{secret} leaked: {text}");
        }
        let back = decode(&line).unwrap();
        assert_eq!(back.details["token_name"], "oncall");
        assert_eq!(back.details["key_count"], 3);
        assert_eq!(back.details["vendor"]["cluster"], "eu");
        assert_eq!(back.details["vendor"]["api_key"], REDACTED);
        assert_eq!(back.details["publisher_keys"], REDACTED);
    }

    #[test]
    fn oversized_details_are_replaced_by_a_note() {
        let big = "x".repeat(MAX_LINE_BYTES * 2);
        let line = encode(entry(json!({ "blob": big })));
        assert!(line.len() < 1024, "{} bytes", line.len());
        let back = decode(&line).unwrap();
        assert_eq!(back.details["truncated"], true);
        assert!(back.details["details_bytes"].as_u64().unwrap() > MAX_LINE_BYTES as u64);
    }

    #[test]
    fn long_reasons_and_actors_are_cut_on_character_boundaries() {
        let mut long = entry(Value::Null).with_reason("é".repeat(MAX_REASON_CHARS + 10));
        long.actor = "ü".repeat(MAX_ACTOR_CHARS + 1);
        let back = decode(&encode(long)).unwrap();
        assert_eq!(back.reason.unwrap().chars().count(), MAX_REASON_CHARS + 1);
        assert_eq!(back.actor.chars().count(), MAX_ACTOR_CHARS + 1);
    }

    #[test]
    fn torn_blank_and_foreign_lines_are_skipped() {
        let line = encode(entry(json!({"a": 1})));
        for cut in [1, line.len() / 2, line.len() - 2] {
            assert_eq!(decode(&line[..cut]), None, "cut at {cut}");
        }
        assert_eq!(decode(b"\n"), None);
        assert_eq!(decode(b"   \r\n"), None);
        assert_eq!(decode(b"[1,2,3]\n"), None);
        assert_eq!(decode(b"\xff\xfe garbage\n"), None);
        assert!(
            decode(&line[..line.len() - 1]).is_some(),
            "no newline yet is fine"
        );
    }
}
