//! A secret that cannot be printed by accident: a token, a client secret.

use std::fmt;

use sha2::{Digest, Sha256};

/// A secret string. Its `Debug` shows a short SHA-256 fingerprint, so two log lines can be seen
/// to name the same secret without showing it; it has no `Display`, and [`SecretString::expose`]
/// is the only way to the text. No `PartialEq` either: where secrets are compared, it is in
/// constant time.
#[derive(Clone)]
pub struct SecretString(String);

impl SecretString {
    pub fn new(secret: impl Into<String>) -> Self {
        Self(secret.into())
    }

    /// The secret itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The first eight hex digits of the secret's SHA-256: enough to tell secrets apart,
    /// far too few to recover one.
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.0)
    }
}

impl From<String> for SecretString {
    fn from(secret: String) -> Self {
        Self(secret)
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretString(sha256:{})", self.fingerprint())
    }
}

/// The fingerprint of any secret text (see [`SecretString::fingerprint`]).
pub(crate) fn fingerprint(secret: &str) -> String {
    let digest = Sha256::digest(secret.as_bytes());
    digest
        .iter()
        .take(4)
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// Compares two strings in time that depends on their lengths only, not on where they differ:
/// the `state` a redirect brings back is compared with ours without telling an attacker how
/// much of a guess was right.
pub(crate) fn constant_time_eq(left: &str, right: &str) -> bool {
    let (left, right) = (left.as_bytes(), right.as_bytes());
    if left.len() != right.len() {
        return false;
    }
    let difference = left
        .iter()
        .zip(right)
        .fold(0_u8, |difference, (a, b)| difference | (a ^ b));
    std::hint::black_box(difference) == 0
}
