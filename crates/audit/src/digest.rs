//! Digests the gateway puts into records: of arguments, results and definitions.
//!
//! A JSON value is digested in one canonical form: converted to the core's `JsonValue` (object
//! keys sorted by `BTreeMap`) and serialized compactly by serde_json. It does not go through
//! `serde_json::Map`, whose order depends on the `preserve_order` feature, which cedar-policy
//! turns on in the binary but not in this crate's tests: the same arguments would otherwise
//! digest differently in a test and in production.

use portcullis_core::evidence::JsonValue;
use sha2::{Digest, Sha256};

use crate::format::hex;

/// `sha256:<hex>` of arbitrary bytes (a result as the client received it, a profile).
pub fn digest_bytes(bytes: &[u8]) -> String {
    format!("sha256:{}", hex(&Sha256::digest(bytes)))
}

/// `sha256:<hex>` of a JSON value in canonical form (keys sorted, no whitespace).
pub fn digest_json(value: &serde_json::Value) -> String {
    // Serializing a `JsonValue` cannot fail: every key is a string and every float finite.
    let canonical = serde_json::to_vec(&recorded_json(value)).unwrap_or_default();
    digest_bytes(&canonical)
}

/// A serde_json value as recorded in evidence.
pub fn recorded_json(value: &serde_json::Value) -> JsonValue {
    match value {
        serde_json::Value::Null => JsonValue::Null,
        serde_json::Value::Bool(flag) => JsonValue::Bool(*flag),
        serde_json::Value::Number(number) => {
            if let Some(integer) = number.as_i64() {
                JsonValue::Integer(integer)
            } else if let Some(unsigned) = number.as_u64() {
                JsonValue::Unsigned(unsigned)
            } else {
                // Not an integer, so a finite float (serde_json holds no NaN or infinity).
                JsonValue::Float(number.as_f64().unwrap_or_default())
            }
        }
        serde_json::Value::String(text) => JsonValue::String(text.clone()),
        serde_json::Value::Array(items) => {
            JsonValue::Array(items.iter().map(recorded_json).collect())
        }
        serde_json::Value::Object(members) => JsonValue::Object(
            members
                .iter()
                .map(|(key, member)| (key.clone(), recorded_json(member)))
                .collect(),
        ),
    }
}
