//! Ably capabilities: the JSON text `{"resource": ["operation", ...]}` a token carries in
//! `x-ably-capability` and a TokenRequest asks for, read as Ably reads it for publishing.
//!
//! A resource is a channel name, `*` (every channel) or a name ending in `*` (every channel that
//! starts with what comes before it, such as Ably's namespace wildcard `clinic-42:*`). An
//! operation list grants publishing when it holds `publish` or `*`.

use super::AblyAuthError;
use crate::core::ChannelName;

/// What an API key grants (understudy's app keys are not restricted): everything.
pub(crate) const EVERYTHING: &str = r#"{"*":["*"]}"#;

/// A capability, parsed and checked. Keeps the text it was read from: a TokenRequest's `mac`
/// signs that exact text and the token carries it unchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Capability {
    text: String,
    grants: Vec<(String, Vec<String>)>,
}

impl Capability {
    /// Parses `text`; the empty text is the key's own capability ([`EVERYTHING`]), as on Ably.
    pub(crate) fn parse(text: &str) -> Result<Self, AblyAuthError> {
        let text = if text.is_empty() { EVERYTHING } else { text };
        let invalid = |why: &str| AblyAuthError::InvalidCapability(why.to_owned());
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|_| invalid("it is not JSON"))?;
        let serde_json::Value::Object(map) = value else {
            return Err(invalid(
                "it must be a JSON object of resource: [operations]",
            ));
        };
        let mut grants = Vec::with_capacity(map.len());
        for (resource, ops) in map {
            let serde_json::Value::Array(ops) = ops else {
                return Err(invalid("each resource must map to an array of operations"));
            };
            let ops = ops
                .into_iter()
                .map(|op| match op {
                    serde_json::Value::String(op) => Ok(op),
                    _ => Err(invalid("operations must be strings")),
                })
                .collect::<Result<Vec<_>, _>>()?;
            grants.push((resource, ops));
        }
        Ok(Self {
            text: text.to_owned(),
            grants,
        })
    }

    /// The capability as text, as signed and as carried in a token.
    pub(crate) fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether a message may be published on `channel`.
    pub(crate) fn allows_publish(&self, channel: &ChannelName) -> bool {
        self.grants.iter().any(|(resource, ops)| {
            covers(resource, channel.as_str()) && ops.iter().any(|op| op == "publish" || op == "*")
        })
    }
}

fn covers(resource: &str, channel: &str) -> bool {
    match resource.strip_suffix('*') {
        Some(prefix) => channel.starts_with(prefix),
        None => resource == channel,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ch(name: &str) -> ChannelName {
        ChannelName::parse(name).unwrap()
    }

    #[test]
    fn grants_publish_by_name_wildcard_and_namespace() {
        let c = Capability::parse(
            r#"{"lobby":["publish"],"clinic-42:*":["subscribe","publish"],"ro":["subscribe"]}"#,
        )
        .unwrap();
        assert!(c.allows_publish(&ch("lobby")));
        assert!(c.allows_publish(&ch("clinic-42:room")));
        assert!(
            !c.allows_publish(&ch("clinic-43:room")),
            "another namespace"
        );
        assert!(!c.allows_publish(&ch("ro")), "subscribe only");
        assert!(
            !c.allows_publish(&ch("lobby2")),
            "an exact name is not a prefix"
        );
        let all = Capability::parse(r#"{"*":["*"]}"#).unwrap();
        assert!(all.allows_publish(&ch("anything")));
    }

    #[test]
    fn empty_text_is_the_keys_capability_and_text_is_kept() {
        let c = Capability::parse("").unwrap();
        assert_eq!(c.as_str(), EVERYTHING);
        assert!(c.allows_publish(&ch("x")));
        let text = r#"{"b":["publish"], "a":["subscribe"]}"#;
        assert_eq!(Capability::parse(text).unwrap().as_str(), text);
        assert!(!Capability::parse("{}").unwrap().allows_publish(&ch("x")));
    }

    #[test]
    fn refuses_what_is_not_a_capability() {
        for bad in ["not json", "[]", r#"{"a":"publish"}"#, r#"{"a":[1]}"#] {
            let err = Capability::parse(bad).unwrap_err();
            assert!(
                matches!(err, AblyAuthError::InvalidCapability(_)),
                "{bad}: {err:?}"
            );
        }
    }
}
