//! The credential store of Portcullis: the delegated OAuth credentials (access token, refresh
//! token, what they were granted for) that Portcullis holds per user and upstream and attaches
//! to upstream requests, in one encrypted file.
//!
//! Key design decision: the file is the only state. Several processes use it at once (a
//! running `portcullis serve` and a `portcullis login` in a terminal), so every `get` and
//! `list` reads and decrypts it afresh, and every `put` and `remove` reads, changes and
//! replaces it while holding an exclusive `flock` on the sibling `FILE.lock` (0600): two
//! writers never lose each other's entries, and a reader never needs the lock because the
//! file is replaced whole (written to `FILE.tmp`, created 0600, fsynced, renamed over the
//! store, directory fsynced).
//!
//! # Format
//!
//! ```text
//! "PCRED1"   6 bytes   magic; the digit is the format version
//! nonce      24 bytes  random, new on every write
//! sealed     rest      XChaCha20-Poly1305 of the plaintext, with "PCRED1" as associated data
//! ```
//!
//! The plaintext is a JSON array of `{"key": {issuer, subject, upstream}, "grant": {...}}` in
//! key order; unknown fields are refused, so an older Portcullis never drops what a newer one
//! wrote. The key is SHA-256 of a fixed context string and the operator's key text
//! (`StoreKey::from_secret_text`).
//!
//! A store that keeps each grant apart (the shared state in PostgreSQL, for replicas) seals
//! each with the same key and cipher, bound to whose grant it is (`seal_grant`, `open_grant`:
//! `PGRNT1` || nonce || ciphertext, the `CredentialKey` in the associated data).
//!
//! # What it refuses
//!
//! An existing file (or lock file) that is a symbolic link, not a regular file, or accessible
//! to group or others; a file that does not decrypt (wrong key, altered, truncated), which is
//! reported and left as it is, never replaced or emptied.
//!
//! # What it must not do
//!
//! No network, no clock (expiry checks take the caller's `now`), no environment (the caller
//! reads the key text and passes it with the variable's name; without one, `store_key`
//! reads, or for a fresh store makes, the key file beside the store), no logging. No token or key in
//! any `Debug` output or error: `Secret` prints a fingerprint, `StoreKey` prints nothing, and
//! nothing decrypted from the file reaches an error message. It does not protect against
//! someone who can write the directory replacing the file with an older version of itself.
#![forbid(unsafe_code)]

mod error;
mod format;
mod grant;
mod key_file;
pub mod private_file;
mod sealed;
mod secret;
mod store;

pub use error::StoreError;
pub use grant::{CredentialKey, Grant, GrantSummary};
pub use key_file::{key_file_of, store_key};
pub use sealed::{SealError, open_grant, seal_grant};
pub use secret::{Secret, StoreKey};
pub use store::CredentialStore;

#[cfg(test)]
mod tests;
