//! Arguments as they are recorded: secrets replaced, and a keyed digest of the real thing.
//!
//! Two kinds of value are replaced by `[redacted]`: every object member, at any depth, whose
//! name says it holds a secret (`password`, `api_key`, `client_secret`, `*_token`,
//! `authorization`, `cookie`, …), and whatever the tool's configured argument pointers name.
//! The digest covers the arguments as sent, before redaction. A plain hash of them would let
//! anyone holding the log guess a short redacted secret by trying candidates, so it is an
//! HMAC-SHA256 under a key kept beside the log (`FILE.key`, mode 0600): whoever holds the key
//! can confirm that given arguments are the ones recorded; a reader of the log alone cannot.

use portcullis_core::ArgumentPointer;
use portcullis_core::evidence::JsonValue;
use portcullis_core::pointer::Segment;

use crate::digest::recorded_json;

/// What a redacted value is recorded as.
pub const REDACTED: &str = "[redacted]";

/// Fragments of member names (lower case, `_` and `-` removed) that mark a secret anywhere.
const SECRET_NAME_PARTS: &[&str] = &[
    "password",
    "passwd",
    "passphrase",
    "secret",
    "apikey",
    "privatekey",
    "credential",
    "authorization",
    "cookie",
];

/// True when a member called `name` holds a secret whatever the tool: it contains one of
/// `SECRET_NAME_PARTS`, or ends in `token` (`access_token`, `githubToken`; not `max_tokens`).
pub fn is_secret_name(name: &str) -> bool {
    let folded: String = name
        .chars()
        .filter(|c| *c != '_' && *c != '-')
        .flat_map(char::to_lowercase)
        .collect();
    folded.ends_with("token") || SECRET_NAME_PARTS.iter().any(|part| folded.contains(part))
}

/// `arguments` as recorded: secret-named members and the `pointers` replaced by `[redacted]`.
pub fn redact(arguments: &serde_json::Value, pointers: &[ArgumentPointer]) -> JsonValue {
    let mut recorded = recorded_json(arguments);
    redact_secret_names(&mut recorded);
    for pointer in pointers {
        redact_at(&mut recorded, pointer.segments());
    }
    recorded
}

fn redact_secret_names(value: &mut JsonValue) {
    match value {
        JsonValue::Object(members) => {
            for (name, member) in members.iter_mut() {
                if is_secret_name(name) {
                    *member = JsonValue::String(REDACTED.to_owned());
                } else {
                    redact_secret_names(member);
                }
            }
        }
        JsonValue::Array(items) => items.iter_mut().for_each(redact_secret_names),
        _ => {}
    }
}

fn redact_at(value: &mut JsonValue, segments: &[Segment]) {
    let Some((first, rest)) = segments.split_first() else {
        *value = JsonValue::String(REDACTED.to_owned());
        return;
    };
    match (value, first) {
        (JsonValue::Object(members), Segment::Any) => {
            members
                .values_mut()
                .for_each(|member| redact_at(member, rest));
        }
        (JsonValue::Object(members), Segment::Key(key)) => {
            if let Some(member) = members.get_mut(key) {
                redact_at(member, rest);
            }
        }
        (JsonValue::Array(items), Segment::Any) => {
            items.iter_mut().for_each(|item| redact_at(item, rest));
        }
        (JsonValue::Array(items), Segment::Key(key)) => {
            if let Some(item) = key.parse::<usize>().ok().and_then(|i| items.get_mut(i)) {
                redact_at(item, rest);
            }
        }
        _ => {}
    }
}

/// The values `pointer` names in `value` (every element or member where it says `*`).
pub fn values_at<'a>(
    value: &'a serde_json::Value,
    pointer: &ArgumentPointer,
) -> Vec<&'a serde_json::Value> {
    let mut current = vec![value];
    for segment in pointer.segments() {
        current = current
            .into_iter()
            .flat_map(|value| -> Vec<&serde_json::Value> {
                match (value, segment) {
                    (serde_json::Value::Object(members), Segment::Any) => {
                        members.values().collect()
                    }
                    (serde_json::Value::Object(members), Segment::Key(key)) => {
                        members.get(key).into_iter().collect()
                    }
                    (serde_json::Value::Array(items), Segment::Any) => items.iter().collect(),
                    (serde_json::Value::Array(items), Segment::Key(key)) => key
                        .parse::<usize>()
                        .ok()
                        .and_then(|i| items.get(i))
                        .into_iter()
                        .collect(),
                    _ => Vec::new(),
                }
            })
            .collect();
    }
    current
}
