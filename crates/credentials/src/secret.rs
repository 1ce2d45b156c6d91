//! The two kinds of secret this crate holds: a token (`Secret`) and the key that encrypts the
//! store (`StoreKey`). Neither can be printed.

use std::fmt;

use serde::{Deserialize, Deserializer};
use sha2::{Digest, Sha256};

use crate::StoreError;

/// A secret string: an access or refresh token.
///
/// `Debug` prints `Secret(sha256:<16 hex>)`, never the value, and there is no `Display`, so a
/// token put in a log line or an error shows only its fingerprint. `expose` is the one way to
/// read it. It deserializes from a plain string (so a token endpoint's answer can be read
/// straight into it) but does not implement `Serialize`: the only place it is written is the
/// encrypted file, through this crate's private format.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself. Call it only to put the token on the wire.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// `sha256:<first 16 hex digits of SHA-256 of the value>`: names a token in logs and
    /// records without revealing it. 64 bits tell tokens apart; a token has far more entropy
    /// than that, so the prefix does not help guess it.
    pub fn fingerprint(&self) -> String {
        let digest = Sha256::digest(self.0.as_bytes());
        let mut text = String::with_capacity(7 + 16);
        text.push_str("sha256:");
        for byte in digest.iter().take(8) {
            text.push_str(&format!("{byte:02x}"));
        }
        text
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({})", self.fingerprint())
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Self)
    }
}

/// What the key text is hashed with, so the same text used for something else yields a
/// different key. Changing it makes every existing store unreadable.
const KEY_CONTEXT: &[u8] = b"portcullis credential store v1\0";

/// Shorter key text is refused: it is meant to be random (`openssl rand -base64 32`), and 32
/// bytes of it leave nothing to guess even when it is only hex or base64.
const MIN_KEY_TEXT: usize = 32;

/// The 256-bit key the store is encrypted with. `Debug` prints `StoreKey(..)`. Not `Clone`:
/// it moves into the store that uses it.
pub struct StoreKey(pub(crate) [u8; 32]);

impl fmt::Debug for StoreKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StoreKey(..)")
    }
}

impl StoreKey {
    /// The key from secret text, such as an environment variable's value (the caller reads
    /// the environment and passes the variable's name for messages): at least 32 bytes, key =
    /// SHA-256(`"portcullis credential store v1\0"` || text). The text is used exactly as
    /// given (no trimming), so the key never depends on how whitespace is treated.
    ///
    /// Shorter text is an error naming `variable`, never the text.
    pub fn from_secret_text(variable: &str, value: &str) -> Result<Self, StoreError> {
        if value.len() < MIN_KEY_TEXT {
            return Err(StoreError::WeakKey {
                variable: variable.to_owned(),
            });
        }
        let mut hasher = Sha256::new();
        hasher.update(KEY_CONTEXT);
        hasher.update(value.as_bytes());
        Ok(Self(hasher.finalize().into()))
    }
}
