//! JSON text written by hand for the messages written on every publish (the event frame, the
//! publish answer), where serde's generic walk escaped every key and wrote each piece through
//! `io::Write`. Strings come out byte for byte as `serde_json` writes them: one with nothing to
//! escape (nearly every one) is copied as it is, any other goes through `serde_json` itself.

/// Appends `s` as a JSON string.
pub(crate) fn push_str(out: &mut Vec<u8>, s: &str) {
    if !needs_escape(s.as_bytes()) {
        out.reserve(s.len() + 2);
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        serde_json::to_writer(&mut *out, s).expect("a string serialises into a Vec");
    }
}

/// Whether `s` holds a byte serde_json escapes: a control character, the quote or the backslash.
/// Eight bytes at a time, as a word: the strings of every event frame (channel, epoch, id, name)
/// are looked at on every publish, and byte by byte this was most of writing them.
fn needs_escape(s: &[u8]) -> bool {
    const ONES: u64 = u64::from_ne_bytes([1; 8]);
    const HIGH: u64 = ONES << 7;
    const QUOTES: u64 = ONES * b'"' as u64;
    const BACKSLASHES: u64 = ONES * b'\\' as u64;
    // Whether some byte of `x` is below `n` (n <= 0x80): subtracting borrows into the high bit
    // of such a byte, and a byte with its own high bit set is not counted (`& !x`). A borrow
    // can mark a byte above a true one too, which the yes-or-no answer does not mind.
    let below = |x: u64, n: u64| x.wrapping_sub(ONES * n) & !x & HIGH != 0;
    let mut words = s.chunks_exact(8);
    for word in &mut words {
        let x = u64::from_ne_bytes(word.try_into().expect("eight bytes"));
        let control = below(x, 0x20);
        // A byte equal to the quote or the backslash is a zero byte of `x` xor them.
        if control || below(x ^ QUOTES, 1) || below(x ^ BACKSLASHES, 1) {
            return true;
        }
    }
    (words.remainder().iter()).any(|&b| b < 0x20 || b == b'"' || b == b'\\')
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
        // Every ASCII byte at each place of a word and of the tail after two words.
        for b in 0u8..0x80 {
            for at in [0, 3, 7, 8, 12, 15, 16, 18] {
                let mut s = "é-abcdefghijklmnop".to_string();
                s.insert(at, b as char);
                samples.push(s);
            }
        }
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
