//! Configuration errors without the values they are about. A TOML syntax error quotes the line
//! it stopped on and a type error quotes the value it found; either may be a secret (a publisher
//! key on a line with a missing quote, a token given as a number), and these messages go to the
//! log, to `check-config` and to the answer of `POST /admin/reload`. Only positions, key paths
//! and what was expected are kept.

/// A TOML syntax error: its line and column and what the parser expected, never the line.
pub(super) fn syntax(e: &toml::de::Error, text: &str) -> String {
    let at = e.span().map(|span| {
        let before = &text[..span.start.min(text.len())];
        let line = before.matches('\n').count() + 1;
        let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
        format!(" at line {line}, column {column}")
    });
    format!(
        "not valid TOML{}: {}",
        at.unwrap_or_default(),
        values(e.message().trim())
    )
}

/// A type or shape error from reading the merged table: the key path and what was expected,
/// with any quoted value blanked.
pub(super) fn shape(message: &str) -> String {
    values(message.trim())
}

/// Blanks what sits between double quotes, and between backticks unless a key name is what is
/// quoted (`unknown field \`x\``, `in \`auth.publisher_keys\``): serde and toml put the value
/// they found there (`invalid type: string "…", expected a sequence`, `integer \`…\``). What was
/// expected stays.
fn values(message: &str) -> String {
    const KEY_BEFORE: [&str; 5] = ["field ", "in ", "key ", "variant ", "fields "];
    let mut out = String::with_capacity(message.len());
    let mut open: Option<(char, bool)> = None;
    for c in message.chars() {
        match open {
            Some((q, _)) if c == q => {
                if !matches!(open, Some((_, true))) {
                    out.push('…');
                }
                out.push(c);
                open = None;
            }
            Some((_, keep)) => {
                if keep {
                    out.push(c);
                }
            }
            None => {
                let keep = c == '`' && KEY_BEFORE.iter().any(|k| out.ends_with(k));
                out.push(c);
                if c == '"' || c == '`' {
                    open = Some((c, keep));
                }
            }
        }
    }
    if matches!(open, Some((_, false))) {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    const SECRET: &str = "very-secret-publisher-key-42";

    #[test]
    fn no_config_error_quotes_a_secret() {
        for file in [
            // A missing closing bracket: the parser stops on the secret's line.
            format!("[auth]\npublisher_keys = [\"{SECRET}\"\nsubscribe = \"none\"\n"),
            // A missing quote.
            format!("[auth]\nsubscriber_secret = \"{SECRET}\n"),
            // The wrong type: a string where a list belongs.
            format!("[auth]\npublisher_keys = \"{SECRET}\"\n"),
            // A token that is a number.
            "[auth]\nadmin_tokens = [{ name = \"a\", token = 123456789012345678 }]\n".into(),
        ] {
            let err = Config::load(Some(&file), &|_| None)
                .unwrap_err()
                .to_string();
            assert!(!err.contains(SECRET), "{err}");
            assert!(!err.contains("123456789012345678"), "{err}");
            assert!(
                err.contains("line") || err.contains("auth"),
                "still says where: {err}"
            );
        }
    }
}
