//! One grant sealed on its own, for a store that keeps each grant apart (the shared state's
//! database row): the file's cipher, key and grant encoding, with whose grant it is bound in.
//!
//! ```text
//! "PGRNT1"   6 bytes   magic; the digit is the format version
//! nonce      24 bytes  random, new on every seal
//! sealed     rest      XChaCha20-Poly1305 of the grant's JSON, with "PGRNT1" and the JSON of
//!                      its `CredentialKey` as associated data
//! ```
//!
//! Binding the key means that whoever can write the table cannot move one user's grant to
//! another user or upstream: it no longer decrypts there.

use crate::format::{self, EncryptFailure, GrantIn, GrantOut};
use crate::{CredentialKey, Grant, StoreKey};

const MAGIC: &[u8; 6] = b"PGRNT1";

/// Why a grant could not be sealed or opened. No variant carries anything of the grant.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// Wrong key, altered bytes, or bytes sealed for another user or upstream: the three
    /// cannot be told apart, so the message names them all.
    #[error(
        "a stored grant does not decrypt with the credential store key: either the key is not the one it was written with (every replica must have the same), or the grant was altered or moved to another user or upstream; set the key it was written with, or sign in again"
    )]
    DoesNotDecrypt,
    /// It decrypted, but what is inside is not what this version writes.
    #[error(
        "a stored grant decrypts but cannot be read: {0}; it may have been written by a newer Portcullis"
    )]
    Corrupt(String),
    #[error("a grant cannot be sealed: {0}")]
    Seal(String),
}

/// `grant`, sealed under `key` for `whose` alone.
pub fn seal_grant(
    key: &StoreKey,
    whose: &CredentialKey,
    grant: &Grant,
) -> Result<Vec<u8>, SealError> {
    // Serializing strings, integers and sets cannot fail; the error would say nothing of the
    // values, but is not passed on anyway.
    let plaintext = serde_json::to_vec(&GrantOut::of(grant))
        .map_err(|_| SealError::Seal("it could not be encoded".to_owned()))?;
    format::encrypt(key, MAGIC, &associated(whose)?, &plaintext).map_err(|failure| match failure {
        EncryptFailure::Random(reason) => SealError::Seal(format!("no random bytes: {reason}")),
        EncryptFailure::TooLarge => SealError::Seal("it is too large".to_owned()),
    })
}

/// The grant `bytes` hold, if they were sealed under `key` for `whose`.
pub fn open_grant(key: &StoreKey, whose: &CredentialKey, bytes: &[u8]) -> Result<Grant, SealError> {
    let Some(body) = bytes.strip_prefix(MAGIC) else {
        return Err(SealError::Corrupt(
            "it does not start with `PGRNT1`".to_owned(),
        ));
    };
    let plaintext =
        format::decrypt(key, &associated(whose)?, body).ok_or(SealError::DoesNotDecrypt)?;
    let grant: GrantIn = serde_json::from_slice(&plaintext)
        .map_err(|error| SealError::Corrupt(format::json_problem(&error)))?;
    Ok(grant.into_grant())
}

/// The associated data: the header, then whose grant it is.
fn associated(whose: &CredentialKey) -> Result<Vec<u8>, SealError> {
    let mut aad = MAGIC.to_vec();
    serde_json::to_writer(&mut aad, whose)
        .map_err(|_| SealError::Seal("its key could not be encoded".to_owned()))?;
    Ok(aad)
}
