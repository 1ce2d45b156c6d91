//! The bytes of the store file: `PCRED1` || nonce (24 bytes) || XChaCha20-Poly1305 ciphertext
//! of the JSON entries, with the header as associated data. Encoding and decoding only; the
//! file handling is in `store.rs`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use serde::{Deserialize, Serialize};

use crate::{CredentialKey, Grant, Secret, StoreError, StoreKey};

/// The header, and the associated data of the ciphertext: a file whose header was changed
/// (say, to claim another version) does not decrypt. The digit is the format version.
pub(crate) const MAGIC: &[u8; 6] = b"PCRED1";
/// XChaCha20's nonce is long enough to be drawn at random for every write: no counter to keep
/// across processes, and no realistic chance of a repeat.
pub(crate) const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
/// The smallest file there can be (an empty plaintext); shorter ones are reported as
/// truncated rather than as a failed decryption, which is more useful at 3 AM.
pub(crate) const MIN_LEN: usize = MAGIC.len() + NONCE_LEN + TAG_LEN;

/// The decrypted contents: one grant per key, and the operator's named secrets (`portcullis
/// secret set NAME`), by name.
#[derive(Default)]
pub(crate) struct Credentials {
    pub(crate) grants: BTreeMap<CredentialKey, Grant>,
    pub(crate) secrets: BTreeMap<String, Secret>,
}

/// The plaintext is a JSON array of these: the grants in key order, then the named secrets in
/// name order.
#[derive(Serialize)]
#[serde(untagged)]
enum EntryOut<'a> {
    Grant {
        key: &'a CredentialKey,
        grant: GrantOut<'a>,
    },
    Secret {
        name: &'a str,
        secret: &'a str,
    },
}

#[derive(Serialize)]
pub(crate) struct GrantOut<'a> {
    access_token: &'a str,
    refresh_token: Option<&'a str>,
    token_type: &'a str,
    expires_at: Option<u64>,
    scopes: &'a BTreeSet<String>,
    resource: &'a str,
    authorization_server: &'a str,
    consented_clients: &'a BTreeSet<String>,
    obtained_at: u64,
}

/// Unknown fields are refused, not dropped: a file written by a newer Portcullis must not lose
/// what it wrote when an older one rewrites it.
#[derive(Deserialize)]
#[serde(untagged)]
#[expect(
    clippy::large_enum_variant,
    reason = "read once per entry and taken apart at once; boxing would only add indirection"
)]
enum EntryIn {
    Grant(GrantEntryIn),
    Secret(SecretEntryIn),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GrantEntryIn {
    key: CredentialKey,
    grant: GrantIn,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SecretEntryIn {
    name: String,
    secret: Secret,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct GrantIn {
    access_token: Secret,
    refresh_token: Option<Secret>,
    token_type: String,
    expires_at: Option<u64>,
    scopes: BTreeSet<String>,
    resource: String,
    authorization_server: String,
    consented_clients: BTreeSet<String>,
    obtained_at: u64,
}

impl<'a> GrantOut<'a> {
    /// How `grant` is written, wherever it is written (the file, a database row).
    pub(crate) fn of(grant: &'a Grant) -> Self {
        Self {
            access_token: grant.access_token.expose(),
            refresh_token: grant.refresh_token.as_ref().map(Secret::expose),
            token_type: &grant.token_type,
            expires_at: grant.expires_at,
            scopes: &grant.scopes,
            resource: &grant.resource,
            authorization_server: &grant.authorization_server,
            consented_clients: &grant.consented_clients,
            obtained_at: grant.obtained_at,
        }
    }
}

impl GrantIn {
    pub(crate) fn into_grant(self) -> Grant {
        Grant {
            access_token: self.access_token,
            refresh_token: self.refresh_token,
            token_type: self.token_type,
            expires_at: self.expires_at,
            scopes: self.scopes,
            resource: self.resource,
            authorization_server: self.authorization_server,
            consented_clients: self.consented_clients,
            obtained_at: self.obtained_at,
        }
    }
}

/// The file's bytes for `credentials`, under a fresh random nonce.
pub(crate) fn seal(
    path: &Path,
    key: &StoreKey,
    credentials: &Credentials,
) -> Result<Vec<u8>, StoreError> {
    let grants = credentials
        .grants
        .iter()
        .map(|(key, grant)| EntryOut::Grant {
            key,
            grant: GrantOut::of(grant),
        });
    let secrets = credentials
        .secrets
        .iter()
        .map(|(name, secret)| EntryOut::Secret {
            name,
            secret: secret.expose(),
        });
    let entries: Vec<EntryOut<'_>> = grants.chain(secrets).collect();
    // Serializing strings, integers and sets cannot fail; the error, if any, says nothing of
    // the values, but is not passed on anyway.
    let plaintext = serde_json::to_vec(&entries).map_err(|_| StoreError::Encrypt {
        path: path.display().to_string(),
        reason: "the credentials could not be encoded".to_owned(),
    })?;

    encrypt(key, MAGIC, MAGIC, &plaintext).map_err(|failure| match failure {
        EncryptFailure::Random(reason) => StoreError::Random {
            path: path.display().to_string(),
            reason,
        },
        EncryptFailure::TooLarge => StoreError::Encrypt {
            path: path.display().to_string(),
            reason: "the credentials are too large".to_owned(),
        },
    })
}

/// Why [`encrypt`] could not.
pub(crate) enum EncryptFailure {
    Random(String),
    TooLarge,
}

/// `header` || a fresh random nonce || XChaCha20-Poly1305 of `plaintext` with `aad` as
/// associated data: the store file's scheme, and a sealed grant's.
pub(crate) fn encrypt(
    key: &StoreKey,
    header: &[u8],
    aad: &[u8],
    plaintext: &[u8],
) -> Result<Vec<u8>, EncryptFailure> {
    let mut nonce = [0u8; NONCE_LEN];
    getrandom::fill(&mut nonce).map_err(|error| EncryptFailure::Random(error.to_string()))?;
    let ciphertext = cipher(key)
        .encrypt(
            &XNonce::from(nonce),
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .map_err(|_| EncryptFailure::TooLarge)?;
    let mut bytes = Vec::with_capacity(header.len() + NONCE_LEN + ciphertext.len());
    bytes.extend_from_slice(header);
    bytes.extend_from_slice(&nonce);
    bytes.extend_from_slice(&ciphertext);
    Ok(bytes)
}

/// The plaintext of `body` (nonce || ciphertext, the header already checked and cut off),
/// authenticated with `aad`; `None` when it does not decrypt (wrong key, altered, or bound
/// to other associated data) or is too short to hold a nonce and a tag.
pub(crate) fn decrypt(key: &StoreKey, aad: &[u8], body: &[u8]) -> Option<Vec<u8>> {
    let (nonce, ciphertext) = body
        .split_first_chunk::<NONCE_LEN>()
        .filter(|(_, ciphertext)| ciphertext.len() >= TAG_LEN)?;
    cipher(key)
        .decrypt(
            &XNonce::from(*nonce),
            Payload {
                msg: ciphertext,
                aad,
            },
        )
        .ok()
}

/// The credentials in the file's `bytes`, or why they cannot be had.
pub(crate) fn unseal(path: &Path, key: &StoreKey, bytes: &[u8]) -> Result<Credentials, StoreError> {
    check_header(path, bytes)?;
    // `check_header` made sure the body holds a nonce and a tag: a failure here is the key's
    // or the bytes'.
    let body = bytes.get(MAGIC.len()..).unwrap_or_default();
    let plaintext = decrypt(key, MAGIC, body).ok_or_else(|| StoreError::DoesNotDecrypt {
        path: path.display().to_string(),
    })?;
    decode(path, &plaintext)
}

/// Tells "not ours", "a version we do not know" and "cut short" apart before decrypting,
/// since a failed decryption cannot.
fn check_header(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let start = bytes.get(..MAGIC.len()).unwrap_or(bytes);
    if !MAGIC.starts_with(start) {
        let reason = match start.strip_prefix(b"PCRED") {
            Some([version, ..]) => format!(
                "it is format version `{}`, which this Portcullis does not read (it reads `1`); \
                 use the Portcullis that wrote it",
                char::from(*version).escape_default()
            ),
            _ => "it does not start with `PCRED1`; point the configuration at the store, or \
                  move this file aside"
                .to_owned(),
        };
        return Err(StoreError::NotAStore {
            path: path.display().to_string(),
            reason,
        });
    }
    if bytes.len() < MIN_LEN {
        return Err(truncated(path, bytes));
    }
    Ok(())
}

fn truncated(path: &Path, bytes: &[u8]) -> StoreError {
    StoreError::Truncated {
        path: path.display().to_string(),
        len: u64::try_from(bytes.len()).unwrap_or(u64::MAX),
        min: u64::try_from(MIN_LEN).unwrap_or(u64::MAX),
    }
}

fn decode(path: &Path, plaintext: &[u8]) -> Result<Credentials, StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt {
        path: path.display().to_string(),
        reason,
    };
    let entries: Vec<EntryIn> =
        serde_json::from_slice(plaintext).map_err(|error| corrupt(json_problem(&error)))?;
    let mut credentials = Credentials::default();
    for entry in entries {
        let GrantEntryIn { key, grant } = match entry {
            EntryIn::Grant(grant) => grant,
            EntryIn::Secret(SecretEntryIn { name, secret }) => {
                if credentials.secrets.insert(name, secret).is_some() {
                    return Err(corrupt("it holds two secrets of the same name".to_owned()));
                }
                continue;
            }
        };
        let grant = grant.into_grant();
        // Two grants for one key mean the file was not written by this crate; which one to
        // trust cannot be decided here.
        if credentials.grants.insert(key, grant).is_some() {
            return Err(corrupt(
                "it holds two credentials for the same user and upstream".to_owned(),
            ));
        }
    }
    Ok(credentials)
}

/// What is wrong with decrypted JSON, in words that quote nothing of it.
///
/// INVARIANT: serde_json's own message is never passed on: it quotes the values it did not
/// expect ("invalid type: string \"…\""), which here may be a token. Only its category and
/// position are.
pub(crate) fn json_problem(error: &serde_json::Error) -> String {
    let what = match error.classify() {
        serde_json::error::Category::Data => "an entry has an unexpected shape",
        serde_json::error::Category::Syntax => "it is not valid JSON",
        serde_json::error::Category::Eof => "its JSON ends early",
        serde_json::error::Category::Io => "it could not be read",
    };
    format!("{what} (line {}, column {})", error.line(), error.column())
}

fn cipher(key: &StoreKey) -> XChaCha20Poly1305 {
    XChaCha20Poly1305::new(&key.0.into())
}
