//! The log's key (`FILE.key`, 32 random bytes, mode 0600) and what is derived from it.
//!
//! Three things are keyed, each under its own key derived from the file's bytes (HMAC-SHA256
//! of the file key over a purpose label), so that no two uses share a key:
//!
//! - every line's `mac`: HMAC-SHA256 of its hash. Whoever can write the log but not read the
//!   key cannot add, replace or re-chain a record that verifies, however they recompute SHA-256.
//! - checkpoints and the head file: signed with an Ed25519 key pair whose seed is derived from
//!   the file key. The public half (`portcullis audit public-key`) can be handed to anyone who
//!   must check the log without being able to write it: `audit verify --public-key`.
//! - argument digests: HMAC-SHA256 of the canonical arguments, so that a reader of the log
//!   cannot confirm a guess of a redacted secret.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use hmac::{Hmac, KeyInit, Mac};
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use sha2::Sha256;

use crate::digest::recorded_json;
use crate::error::AuditError;
use crate::format::hex;

/// The label every derived key is made under, followed by its purpose.
const CHAIN: &[u8] = b"portcullis evidence chain v2";
const SIGNING: &[u8] = b"portcullis evidence signing v2";
const SHARED_ARGUMENTS: &[u8] = b"portcullis shared argument digests v1";
/// What a checkpoint's and a head's signatures are over, before their fields.
const CHECKPOINT_MESSAGE: &str = "portcullis evidence checkpoint v2";
const HEAD_MESSAGE: &str = "portcullis evidence head v2";

/// A log's key. Its `Debug` shows nothing of it.
pub struct LogKey {
    bytes: [u8; 32],
    signing: Ed25519KeyPair,
}

impl std::fmt::Debug for LogKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LogKey(..)")
    }
}

impl LogKey {
    /// Reads `FILE.key` beside the log `log`, or creates it (mode 0600, 32 random bytes).
    pub fn for_log(log: &Path) -> Result<Self, AuditError> {
        let path = key_path(log);
        let mut key = [0u8; 32];
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
        {
            Ok(mut file) => {
                getrandom::fill(&mut key).map_err(|error| {
                    AuditError::io(
                        "make a key for",
                        &path,
                        std::io::Error::other(error.to_string()),
                    )
                })?;
                file.write_all(&key)
                    .and_then(|()| file.sync_all())
                    .map_err(|error| AuditError::io("write", &path, error))?;
            }
            Err(error) if error.kind() == ErrorKind::AlreadyExists => {
                let mut file =
                    File::open(&path).map_err(|error| AuditError::io("open", &path, error))?;
                let mut bytes = Vec::new();
                file.read_to_end(&mut bytes)
                    .map_err(|error| AuditError::io("read", &path, error))?;
                key = bytes.try_into().map_err(|_| {
                    AuditError::unusable(&path, "the log's key must be exactly 32 bytes")
                })?;
            }
            Err(error) => return Err(AuditError::io("create", &path, error)),
        }
        Self::from_bytes(key).ok_or_else(|| AuditError::unusable(&path, "the key is unusable"))
    }

    /// The key of the log `log`, if its key file exists and is readable (never created).
    pub fn existing(log: &Path) -> Option<Self> {
        let bytes = std::fs::read(key_path(log)).ok()?;
        Self::from_bytes(bytes.try_into().ok()?)
    }

    fn from_bytes(bytes: [u8; 32]) -> Option<Self> {
        let seed = derive(&bytes, SIGNING);
        let signing = Ed25519KeyPair::from_seed_unchecked(&seed).ok()?;
        Some(Self { bytes, signing })
    }

    /// The MAC of a record's hash, in lowercase hex.
    pub(crate) fn chain_mac(&self, hash: &str) -> String {
        let key = derive(&self.bytes, CHAIN);
        hex(&hmac(&key, hash.as_bytes()))
    }

    /// The signature of a checkpoint over `from..=to` ending in `head`, in lowercase hex.
    pub(crate) fn sign_checkpoint(&self, from: u64, to: u64, head: &str) -> String {
        hex(self
            .signing
            .sign(checkpoint_message(from, to, head).as_bytes())
            .as_ref())
    }

    /// The signature of a head file's fields (`Head::signed_fields`), in lowercase hex.
    pub(crate) fn sign_head(&self, fields: &str) -> String {
        hex(self.signing.sign(head_message(fields).as_bytes()).as_ref())
    }

    /// The public half of the signing key: what `audit verify --public-key` takes.
    pub fn public_key(&self) -> PublicKey {
        let mut bytes = [0u8; 32];
        bytes.copy_from_slice(self.signing.public_key().as_ref());
        PublicKey(bytes)
    }

    /// `hmac-sha256:<hex>` of `arguments` in canonical form (keys sorted, no whitespace).
    pub fn digest_arguments(&self, arguments: &serde_json::Value) -> String {
        keyed_digest(&self.bytes, arguments)
    }
}

/// The key of argument digests that several processes share: the replicas of one deployment,
/// so that each computes the same approval fingerprint for the same action. Derived from a
/// secret they all hold, so a digest in the shared database reveals no short argument to
/// whoever can read the database but not the secret.
pub struct SharedArgumentKey([u8; 32]);

impl std::fmt::Debug for SharedArgumentKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SharedArgumentKey(..)")
    }
}

impl SharedArgumentKey {
    /// The key derived from `secret` (for this purpose only: the secret may also key other
    /// things, such as sealing state).
    pub fn derive(secret: &[u8]) -> Self {
        Self(hmac(secret, SHARED_ARGUMENTS))
    }

    /// `hmac-sha256:<hex>` of `arguments` in canonical form, as [`LogKey::digest_arguments`].
    pub fn digest_arguments(&self, arguments: &serde_json::Value) -> String {
        keyed_digest(&self.0, arguments)
    }
}

fn keyed_digest(key: &[u8], arguments: &serde_json::Value) -> String {
    let canonical = serde_json::to_vec(&recorded_json(arguments)).unwrap_or_default();
    format!("hmac-sha256:{}", hex(&hmac(key, &canonical)))
}

/// The public key that checks a log's checkpoints and head: 32 bytes, written as 64 hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublicKey([u8; 32]);

impl PublicKey {
    /// Parse 64 hex digits (surrounding whitespace ignored, as when read from a file).
    pub fn parse(text: &str) -> Result<Self, String> {
        Self::unhex(text.trim())
            .ok()
            .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
            .map(Self)
            .ok_or_else(|| {
                "a public key is 64 hex digits (`portcullis audit public-key` prints a log's)"
                    .to_owned()
            })
    }

    /// The name of the replica whose log this key signs, when several replicas each keep a
    /// chain: the first 16 hex digits of the key. Why not the host name or the process: the
    /// name must stay with the log (a restarted replica continues its chain) and differ
    /// between logs (replicas on one host, a pod that comes back with a fresh disk).
    pub fn replica_name(&self) -> String {
        hex(self.0.get(..8).unwrap_or_default())
    }

    /// Whether `signature` (hex) is this key's over the checkpoint `from..=to` ending in `head`.
    pub(crate) fn checks_checkpoint(
        &self,
        from: u64,
        to: u64,
        head: &str,
        signature: &str,
    ) -> bool {
        self.checks(&checkpoint_message(from, to, head), signature)
    }

    /// Whether `signature` (hex) is this key's over a head's `fields`.
    pub(crate) fn checks_head(&self, fields: &str, signature: &str) -> bool {
        self.checks(&head_message(fields), signature)
    }

    fn checks(&self, message: &str, signature: &str) -> bool {
        let Ok(signature) = Self::unhex(signature) else {
            return false;
        };
        UnparsedPublicKey::new(&ED25519, &self.0)
            .verify(message.as_bytes(), &signature)
            .is_ok()
    }

    fn unhex(text: &str) -> Result<Vec<u8>, ()> {
        if !text.len().is_multiple_of(2) || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(());
        }
        (0..text.len())
            .step_by(2)
            .map(|i| {
                text.get(i..i + 2)
                    .and_then(|pair| u8::from_str_radix(pair, 16).ok())
                    .ok_or(())
            })
            .collect()
    }
}

impl std::fmt::Display for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&hex(&self.0))
    }
}

fn checkpoint_message(from: u64, to: u64, head: &str) -> String {
    format!("{CHECKPOINT_MESSAGE}\n{from}\n{to}\n{head}")
}

fn head_message(fields: &str) -> String {
    format!("{HEAD_MESSAGE}\n{fields}")
}

/// The key for one `purpose`, derived from the file key.
fn derive(key: &[u8; 32], purpose: &[u8]) -> [u8; 32] {
    hmac(key, purpose)
}

fn hmac(key: &[u8], message: &[u8]) -> [u8; 32] {
    // HMAC takes a key of any length, so `new_from_slice` cannot fail.
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of every length"));
    mac.update(message);
    mac.finalize().into_bytes().into()
}

/// `FILE.key`, the key of the log `FILE`.
pub fn key_path(log: &Path) -> PathBuf {
    let mut name = log.as_os_str().to_owned();
    name.push(".key");
    PathBuf::from(name)
}
