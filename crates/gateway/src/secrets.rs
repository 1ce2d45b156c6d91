//! The secrets Portcullis holds, and their redaction from everything an upstream sends back.
//!
//! An upstream that echoes what it received (a header dump, an error quoting its request)
//! would hand the model the very credential Portcullis attached for it. So every value
//! Portcullis holds as a secret is registered here when it is learned (the environment's
//! secrets at start, each token as it is attached to a request), and results, errors,
//! progress, log notifications and questions from upstreams, and Portcullis's own log lines,
//! pass through [`Secrets::redact_json`] or [`Secrets::redact_text`] on their way out.
//!
//! A secret is matched in the forms it travels in: as is, percent-encoded (upper and lower hex),
//! JSON-escaped (`\/`, `\uXXXX`), hex, and base64 (standard and URL-safe, at each of the three
//! byte alignments a secret can start at inside a longer encoded value, so the secret inside
//! `base64("Authorization: Bearer " + token)` is found too). Secrets shorter than
//! [`MIN_SECRET_LEN`] are not registered: their base64 fragments would match ordinary text.

use std::sync::{OnceLock, RwLock};

use aho_corasick::{AhoCorasick, MatchKind};
use base64::Engine as _;

/// What a redacted secret is replaced with.
pub const REDACTED: &str = "[redacted]";

/// Shortest secret that is registered (its base64 fragments are then at least 10 characters).
pub const MIN_SECRET_LEN: usize = 8;

/// Registered secrets and the matcher over all their forms.
#[derive(Default)]
pub struct Secrets {
    inner: RwLock<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Each secret once, with the label of what it is (never the value).
    secrets: Vec<(String, String)>,
    matcher: Option<AhoCorasick>,
    /// For each pattern of the matcher, the index of its secret.
    owners: Vec<usize>,
}

impl Secrets {
    /// The process's registry, shared by the gateway and the log writer.
    pub fn global() -> &'static Secrets {
        static GLOBAL: OnceLock<Secrets> = OnceLock::new();
        GLOBAL.get_or_init(Secrets::default)
    }

    /// Registers `value` as a secret, `label` saying what it is (`api key of upstream mail`).
    pub fn register(&self, label: &str, value: &str) {
        if value.chars().count() < MIN_SECRET_LEN {
            tracing::warn!(
                label,
                "a secret shorter than {MIN_SECRET_LEN} characters cannot be redacted reliably from what upstreams send back"
            );
            return;
        }
        let Ok(mut inner) = self.inner.write() else {
            return;
        };
        if inner.secrets.iter().any(|(_, known)| known == value) {
            return;
        }
        inner.secrets.push((label.to_owned(), value.to_owned()));
        let mut patterns = Vec::new();
        let mut owners = Vec::new();
        for (index, (_, secret)) in inner.secrets.iter().enumerate() {
            for form in forms(secret) {
                patterns.push(form);
                owners.push(index);
            }
        }
        inner.matcher = AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostLongest)
            .build(&patterns)
            .ok();
        inner.owners = owners;
    }

    /// `text` with every registered secret, in any of its forms, replaced by [`REDACTED`]; and
    /// the labels of the secrets found (none: `text` comes back unchanged).
    pub fn redact_text(&self, text: &str) -> (String, Vec<String>) {
        let Ok(inner) = self.inner.read() else {
            // A poisoned registry cannot say what is secret: nothing passes.
            return (REDACTED.to_owned(), vec!["(unknown)".to_owned()]);
        };
        let Some(matcher) = &inner.matcher else {
            return (text.to_owned(), Vec::new());
        };
        let mut found = Vec::new();
        let mut out = String::with_capacity(text.len());
        let mut last = 0;
        for hit in matcher.find_iter(text) {
            out.push_str(text.get(last..hit.start()).unwrap_or_default());
            out.push_str(REDACTED);
            last = hit.end();
            if let Some((label, _)) = inner
                .owners
                .get(hit.pattern().as_usize())
                .and_then(|index| inner.secrets.get(*index))
                && !found.contains(label)
            {
                found.push(label.clone());
            }
        }
        if found.is_empty() {
            return (text.to_owned(), found);
        }
        out.push_str(text.get(last..).unwrap_or_default());
        (out, found)
    }

    /// Redacts every string (and member name) of `value` in place; the labels found.
    pub fn redact_json(&self, value: &mut serde_json::Value) -> Vec<String> {
        let mut found = Vec::new();
        let mut note = |labels: Vec<String>| {
            for label in labels {
                if !found.contains(&label) {
                    found.push(label);
                }
            }
        };
        match value {
            serde_json::Value::String(text) => {
                let (redacted, labels) = self.redact_text(text);
                if !labels.is_empty() {
                    *text = redacted;
                    note(labels);
                }
            }
            serde_json::Value::Array(items) => {
                for item in items {
                    note(self.redact_json(item));
                }
            }
            serde_json::Value::Object(members) => {
                let taken = std::mem::take(members);
                for (name, mut member) in taken {
                    let (name, labels) = self.redact_text(&name);
                    note(labels);
                    note(self.redact_json(&mut member));
                    members.insert(name, member);
                }
            }
            _ => {}
        }
        found
    }

    /// Redacts any serializable value by way of JSON: the value and the labels found, or `Err`
    /// with the labels when the redacted JSON no longer reads as `T` (then nothing of it may
    /// pass on).
    pub fn redact<T>(&self, value: T) -> Result<(T, Vec<String>), Vec<String>>
    where
        T: serde::Serialize + serde::de::DeserializeOwned,
    {
        if self.is_empty() {
            return Ok((value, Vec::new()));
        }
        let Ok(mut json) = serde_json::to_value(&value) else {
            return Ok((value, Vec::new()));
        };
        let found = self.redact_json(&mut json);
        if found.is_empty() {
            return Ok((value, found));
        }
        match serde_json::from_value(json) {
            Ok(redacted) => Ok((redacted, found)),
            Err(_) => Err(found),
        }
    }

    fn is_empty(&self) -> bool {
        self.inner
            .read()
            .map(|inner| inner.secrets.is_empty())
            .unwrap_or(false)
    }
}

/// Every form `secret` is matched in.
fn forms(secret: &str) -> Vec<String> {
    let bytes = secret.as_bytes();
    let mut forms = vec![secret.to_owned()];
    // Percent-encoding, with upper and lower hex digits.
    let mut upper = String::new();
    let mut lower = String::new();
    for &byte in bytes {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            upper.push(char::from(byte));
            lower.push(char::from(byte));
        } else {
            upper.push_str(&format!("%{byte:02X}"));
            lower.push_str(&format!("%{byte:02x}"));
        }
    }
    forms.extend([upper, lower]);
    // JSON string escapes: serde_json's own, `/` escaped, and every character as `\uXXXX`.
    if let Ok(quoted) = serde_json::to_string(secret) {
        let inner = quoted
            .strip_prefix('"')
            .and_then(|q| q.strip_suffix('"'))
            .unwrap_or(&quoted)
            .to_owned();
        forms.push(inner.replace('/', "\\/"));
        forms.push(inner);
    }
    forms.push(
        secret
            .encode_utf16()
            .map(|unit| format!("\\u{unit:04x}"))
            .collect(),
    );
    // Hex.
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    forms.push(hex.to_uppercase());
    forms.push(hex);
    // Base64 at each alignment: only the characters that depend on the secret's bytes alone.
    for engine in [
        &base64::engine::general_purpose::STANDARD_NO_PAD,
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
    ] {
        for offset in 0..3usize {
            let mut padded = vec![0u8; offset];
            padded.extend_from_slice(bytes);
            let encoded = engine.encode(&padded);
            let start = (offset * 8).div_ceil(6);
            let end = ((offset + bytes.len()) * 8) / 6;
            if let Some(fragment) = encoded.get(start..end) {
                forms.push(fragment.to_owned());
            }
        }
    }
    forms.sort();
    forms.dedup();
    forms.retain(|form| !form.is_empty());
    forms
}

#[cfg(test)]
mod tests;
