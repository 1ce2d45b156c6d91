//! Reading a replica's log as it is written, to copy its records elsewhere (the database that
//! several replicas share): every line after what was copied, checked as the verifier checks
//! it, with a head signed by the log's key for the copy.
//!
//! Why copy the lines rather than write the database from the chain's lock: the file stays
//! the one place that assigns the chain (its writer and its durability are unchanged), the
//! copy is byte for byte what the file holds (so one verifier checks both), and the same
//! cursor that follows the log while it is written resumes after a crash from the copy's
//! head: whatever the file holds beyond it is copied then.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::error::AuditError;
use crate::format::{self, Head};
use crate::key::LogKey;
use crate::log::check_head_signature;
use crate::verify::{Line, Scan};

/// At most this many bytes are read from the log at once.
const READ_LIMIT: usize = 4 << 20;

/// A cursor on a replica's log: the lines after the last one copied.
pub struct Shipping {
    path: PathBuf,
    file: File,
    /// The chain as far as it was handed out, checked line by line.
    scan: Scan,
}

impl std::fmt::Debug for Shipping {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shipping")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// Lines to copy, and the head of the chain once they are copied.
#[derive(Debug, Clone)]
pub struct Shipment {
    /// `(seq, line)`: each line exactly as the log holds it, without its newline.
    pub lines: Vec<(u64, String)>,
    /// The chain's head after the last of them, signed by the log's key: store it with them.
    pub head: Head,
}

impl Shipping {
    /// A cursor on the log at `path`, written as `replica`, just after the record `shipped`
    /// names (the head stored with the copy), or at its start when nothing was copied.
    ///
    /// Refused (`Unusable`) when the log's key is not readable, when `shipped` was not signed
    /// by it, or when the log does not hold the record `shipped` names where it says: the copy
    /// then holds records the log does not (a log replaced, or its unsynced end lost with the
    /// machine's power), and new records would fork the chain.
    pub fn resume(path: &Path, replica: &str, shipped: Option<&Head>) -> Result<Self, AuditError> {
        let key = LogKey::existing(path).ok_or_else(|| {
            AuditError::unusable(path, "its key file is not readable, so its records cannot be checked before they are copied")
        })?;
        let file = File::open(path).map_err(|error| AuditError::io("open", path, error))?;
        let Some(shipped) = shipped else {
            return Ok(Self {
                path: path.to_path_buf(),
                file,
                scan: Scan::resume(&Head::empty(), key, replica),
            });
        };
        check_head_signature(shipped, &key, path)?;
        if shipped.next_seq > 0 {
            let length = shipped.end.saturating_sub(shipped.last_start);
            let mut line = vec![0; usize::try_from(length).unwrap_or(usize::MAX)];
            let named = file
                .read_exact_at(&mut line, shipped.last_start)
                .ok()
                .and_then(|()| line.strip_suffix(b"\n").map(format::decode))
                .and_then(Result::ok);
            if !named.is_some_and(|decoded| {
                decoded.seq + 1 == shipped.next_seq && decoded.hash == shipped.hash
            }) {
                return Err(AuditError::unusable(
                    path,
                    format!(
                        "the shared database holds {} records of replica `{replica}`, and this log does not hold the last of them where the database says (it was replaced, or lost its unsynced end with the machine's power): new records would fork the chain. Move the log and its key aside so that this replica starts a new chain under a new name",
                        shipped.next_seq
                    ),
                ));
            }
        }
        Ok(Self {
            path: path.to_path_buf(),
            file,
            scan: Scan::resume(shipped, key, replica),
        })
    }

    /// The complete lines written since the last call (at most `max`), each checked as the
    /// verifier checks it (hash, MAC, seq, chain, replica), and the signed head after them. A
    /// line still being written (no newline yet) waits for the next call. An error: the log
    /// could not be read, or a line does not verify (the log was tampered with since it was
    /// written); nothing of it is handed out.
    pub fn next(&mut self, max: usize) -> Result<Shipment, AuditError> {
        let from = self.scan.head().end;
        let length = self
            .file
            .metadata()
            .map_err(|error| AuditError::io("read", &self.path, error))?
            .len();
        let unread = usize::try_from(length.saturating_sub(from)).unwrap_or(usize::MAX);
        let mut buffer = vec![0; unread.min(READ_LIMIT)];
        let read = self
            .file
            .read_at(&mut buffer, from)
            .map_err(|error| AuditError::io("read", &self.path, error))?;
        buffer.truncate(read);
        let mut lines = Vec::new();
        let mut rest = buffer.as_slice();
        while lines.len() < max {
            let Some(newline) = rest.iter().position(|byte| *byte == b'\n') else {
                break;
            };
            let (line, after) = rest.split_at(newline);
            rest = after.get(1..).unwrap_or_default();
            let seq = self.scan.head().next_seq;
            self.scan.take(&Line::Complete(line.to_vec()));
            if let Some(problem) = self.scan.problem() {
                return Err(AuditError::unusable(&self.path, problem.to_string()));
            }
            lines.push((seq, String::from_utf8_lossy(line).into_owned()));
        }
        let mut head = self.scan.head();
        if let Some(key) = self.scan.key() {
            head.signature = Some(key.sign_head(&head.signed_fields()));
        }
        Ok(Shipment { lines, head })
    }
}
