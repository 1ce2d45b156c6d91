//! The evidence log of Portcullis: an append-only, hash-chained JSON Lines file, its writer, its
//! verifier and its reader. The only crate that defines bytes on disk.
//!
//! Key design decision: an append returns only once its record is as durable as asked: written
//! (by the caller itself, under the chain's lock), or written and synced (one writer thread takes
//! every such append waiting, writes them, `fdatasync`s once and then acknowledges the whole
//! batch: group commit). The head file (the last synced seq and hash, beside the log) is
//! replaced after a sync at most once a second. Any failure fails that append or batch and
//! every later one: the caller must not perform an action whose record was not acknowledged. Each line's hash covers its bytes as written, including
//! the previous line's hash, so editing, deleting, reordering or inserting a record breaks the
//! chain, and the head file catches records cut from the end. See README.md for the format and
//! exactly what this protects against.
#![forbid(unsafe_code)]

mod digest;
mod error;
mod format;
mod key;
mod log;
mod read;
mod redact;
mod ship;
mod verify;

pub use digest::{digest_bytes, digest_json, recorded_json};
pub use error::AuditError;
pub use format::{GENESIS, Head, head_path};
pub use key::{LogKey, PublicKey, SharedArgumentKey, key_path};
pub use log::{Durability, EvidenceLog, Options, Receipt, Stats};
pub use read::{Entry, Filter, Records, read, read_stored, render_line, render_time, tail};
pub use redact::{REDACTED, is_secret_name, redact, values_at};
pub use ship::{Shipment, Shipping};
pub use verify::{
    Problem, ProblemKind, StoredChain, TornTail, VerifyReport, verify, verify_stored,
};

#[cfg(test)]
mod tests;
