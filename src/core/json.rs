//! JSON text written by hand for the messages written on every publish (the event frame, the
//! publish answer), where serde's generic walk escaped every key and wrote each piece through
//! `io::Write`. Strings come out byte for byte as `serde_json` writes them: one with nothing to
//! escape (nearly every one) is copied as it is, any other goes through `serde_json` itself.

/// Appends `s` as a JSON string.
pub(crate) fn push_str(out: &mut Vec<u8>, s: &str) {
    // serde_json escapes exactly these bytes: control characters, the quote and the backslash.
    if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.reserve(s.len() + 2);
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        serde_json::to_writer(&mut *out, s).expect("a string serialises into a Vec");
    }
}

/// Appends `n` in decimal.
pub(crate) fn push_u64(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_written_as_serde_json_writes_them() {
        let mut samples: Vec<String> = vec![
            String::new(),
            "plain.name-1".into(),
            "say \"hi\"".into(),
            r"back\slash".into(),
            "tab\there, line\nbreak".into(),
            "ünïcødé ✓ 🎉".into(),
            "\u{7f}del and / slash".into(),
        ];
        samples.extend((0u8..0x80).map(|b| format!("a{}z", b as char)));
        for s in &samples {
            let mut out = b"x".to_vec();
            push_str(&mut out, s);
            let mut want = b"x".to_vec();
            serde_json::to_writer(&mut want, s).unwrap();
            assert_eq!(out, want, "{s:?}");
        }
    }

    #[test]
    fn numbers_are_decimal() {
        for n in [0, 7, 1000, u64::MAX] {
            let mut out = Vec::new();
            push_u64(&mut out, n);
            assert_eq!(out, n.to_string().as_bytes());
        }
    }
}
