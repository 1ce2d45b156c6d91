//! The bytes on disk: one hash-chained line per record, and the head file beside the log.
//!
//! A line is `{"seq":N,"prev":"<hex>","record":{…},"hash":"<hex>"}` followed by `\n` (with
//! `"replica":"<id>"` after `seq` when the log is one replica's chain of several), where
//! `hash` is SHA-256 over the line's own bytes with the `,"hash":"…"` member cut off (the
//! *body*, which ends in `}` and contains `prev`). Hashing the bytes as written, rather than a
//! re-serialization of the parsed value, keeps verification independent of serde_json's
//! features: cedar-policy turns on `preserve_order` in the binary (not in this crate's tests),
//! and float parsing without `float_roundtrip` need not give back the same digits. The hash
//! member is always last and always the same length, so the body is found without parsing.

use std::path::{Path, PathBuf};

use portcullis_core::evidence::EvidenceRecord;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The `prev` of the record with seq 0.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Version of the head file's format.
pub(crate) const HEAD_VERSION: u32 = 2;

const HASH_PREFIX: &[u8] = b",\"hash\":\"";
const MAC_PREFIX: &[u8] = b"\",\"mac\":\"";
const HEX_LEN: usize = 64;
/// `,"hash":"` + 64 hex digits + `"}`.
const SUFFIX_LEN: usize = HASH_PREFIX.len() + HEX_LEN + 2;
/// `,"hash":"` + 64 hex digits + `","mac":"` + 64 hex digits + `"}`.
const KEYED_SUFFIX_LEN: usize = HASH_PREFIX.len() + HEX_LEN + MAC_PREFIX.len() + HEX_LEN + 2;

#[derive(Serialize)]
struct BodyOut<'a> {
    seq: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    replica: Option<&'a str>,
    prev: &'a str,
    record: &'a EvidenceRecord,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BodyIn {
    seq: u64,
    #[serde(default)]
    replica: Option<String>,
    prev: String,
    record: serde_json::Value,
}

/// One encoded line (with its newline) and its hash.
pub(crate) struct Encoded {
    pub line: Vec<u8>,
    pub hash: String,
}

/// Encode the record with this `seq` of the chain of `replica` (if the log is one replica's)
/// after the record whose hash is `prev`, its hash keyed with `mac` (see `LogKey::chain_mac`).
pub(crate) fn encode(
    seq: u64,
    replica: Option<&str>,
    prev: &str,
    record: &EvidenceRecord,
    mac: impl Fn(&str) -> String,
) -> Result<Encoded, serde_json::Error> {
    let mut line = serde_json::to_vec(&BodyOut {
        seq,
        replica,
        prev,
        record,
    })?;
    let hash = sha256_hex(&line);
    // The body is a JSON object, so it ends in `}`; the hash and mac go in just before it.
    line.pop();
    line.extend_from_slice(HASH_PREFIX);
    line.extend_from_slice(hash.as_bytes());
    line.extend_from_slice(MAC_PREFIX);
    line.extend_from_slice(mac(&hash).as_bytes());
    line.extend_from_slice(b"\"}\n");
    Ok(Encoded { line, hash })
}

/// A line taken apart. `hash_matches` is false when the line was edited after it was hashed.
#[derive(Debug)]
pub(crate) struct Decoded {
    pub seq: u64,
    /// The replica whose chain the line belongs to, when the log is one replica's of several.
    pub replica: Option<String>,
    pub prev: String,
    pub hash: String,
    pub hash_matches: bool,
    /// The keyed MAC of the hash (schema 2); `None` on a line written before it existed.
    pub mac: Option<String>,
    pub record: serde_json::Value,
}

/// Take a line (without its newline) apart, or say why it is not one.
pub(crate) fn decode(line: &[u8]) -> Result<Decoded, String> {
    // A keyed line ends `","mac":"<hex>"}`; the rest is as before.
    let (line, mac) = match line.len().checked_sub(KEYED_SUFFIX_LEN) {
        Some(at)
            if line
                .get(at + HASH_PREFIX.len() + HEX_LEN..)
                .is_some_and(|tail| tail.starts_with(MAC_PREFIX)) =>
        {
            let mac_at = at + HASH_PREFIX.len() + HEX_LEN;
            let (front, tail) = line.split_at(mac_at);
            let mac = tail
                .strip_prefix(MAC_PREFIX)
                .and_then(|rest| rest.strip_suffix(b"\"}"))
                .ok_or("it does not end with its `mac` member")?;
            if !is_hex_hash(&String::from_utf8_lossy(mac)) {
                return Err("its `mac` is not lowercase hex".to_owned());
            }
            let mut rebuilt = front.to_vec();
            rebuilt.extend_from_slice(b"\"}");
            (rebuilt, Some(String::from_utf8_lossy(mac).into_owned()))
        }
        _ => (line.to_vec(), None),
    };
    let line = line.as_slice();
    let Some(body_len) = line.len().checked_sub(SUFFIX_LEN) else {
        return Err("too short to carry a hash".to_owned());
    };
    let (body_part, suffix) = line.split_at(body_len);
    let Some(rest) = suffix.strip_prefix(HASH_PREFIX) else {
        return Err("it does not end with its `hash` member".to_owned());
    };
    let Some(hash) = rest.strip_suffix(b"\"}") else {
        return Err("it does not end with its `hash` member".to_owned());
    };
    if !hash
        .iter()
        .all(|byte| byte.is_ascii_digit() || (b'a'..=b'f').contains(byte))
    {
        return Err("its `hash` is not lowercase hex".to_owned());
    }
    let hash = String::from_utf8_lossy(hash).into_owned();
    let mut body = Vec::with_capacity(body_part.len() + 1);
    body.extend_from_slice(body_part);
    body.push(b'}');
    let hash_matches = sha256_hex(&body) == hash;
    let parsed: BodyIn = serde_json::from_slice(&body).map_err(|error| error.to_string())?;
    if !is_hex_hash(&parsed.prev) {
        return Err("its `prev` is not a SHA-256 in lowercase hex".to_owned());
    }
    Ok(Decoded {
        seq: parsed.seq,
        replica: parsed.replica,
        prev: parsed.prev,
        hash,
        hash_matches,
        mac,
        record: parsed.record,
    })
}

fn is_hex_hash(text: &str) -> bool {
    text.len() == HEX_LEN
        && text
            .bytes()
            .all(|byte| byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte))
}

/// Lowercase hex SHA-256 of `bytes`.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        for nibble in [byte >> 4, byte & 0x0f] {
            // A nibble is below 16, so the lookup cannot miss; `char::from` keeps it ASCII.
            if let Some(digit) = DIGITS.get(usize::from(nibble)) {
                text.push(char::from(*digit));
            }
        }
    }
    text
}

/// What the head file records: the chain as of the last durable batch.
///
/// It is replaced atomically (write a temporary file, fsync it, rename it over, fsync the
/// directory) after every batch and before any append of that batch is acknowledged, so an
/// acknowledged record is always at or before the head, and a log shorter than its head was cut.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Head {
    pub version: u32,
    /// How many records are durable: the seq the next record gets.
    pub next_seq: u64,
    /// The hash of record `next_seq - 1`, or `GENESIS`.
    pub hash: String,
    /// Byte offset where record `next_seq - 1` starts (0 when there is none).
    pub last_start: u64,
    /// Byte offset where it ends, newline included: the durable length of the log.
    pub end: u64,
    /// The seq the next checkpoint's range starts at.
    pub checkpoint_from: u64,
    /// Ed25519 signature over the fields above by the log's signing key (`LogKey::sign_head`):
    /// a head rewritten without the key (to hide records cut from the end) does not verify.
    #[serde(default)]
    pub signature: Option<String>,
}

impl Head {
    /// What the head's signature covers.
    pub(crate) fn signed_fields(&self) -> String {
        format!(
            "{}\n{}\n{}\n{}\n{}\n{}",
            self.version, self.next_seq, self.hash, self.last_start, self.end, self.checkpoint_from
        )
    }
}

impl Head {
    pub(crate) fn empty() -> Self {
        Self {
            version: HEAD_VERSION,
            next_seq: 0,
            hash: GENESIS.to_owned(),
            last_start: 0,
            end: 0,
            checkpoint_from: 0,
            signature: None,
        }
    }
}

/// `FILE.head`, beside the log.
pub fn head_path(log: &Path) -> PathBuf {
    let mut name = log.as_os_str().to_owned();
    name.push(".head");
    PathBuf::from(name)
}

/// `FILE.head.tmp`, where a new head is written before it is renamed over the old one.
pub(crate) fn head_tmp_path(log: &Path) -> PathBuf {
    let mut name = log.as_os_str().to_owned();
    name.push(".head.tmp");
    PathBuf::from(name)
}
