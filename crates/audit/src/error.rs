//! What can go wrong opening, writing or reading an evidence log.

use std::io;
use std::path::Path;

/// An evidence log error. Every message names the file; none carries record contents.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("cannot {action} `{path}`: {source}")]
    Io {
        action: &'static str,
        path: String,
        #[source]
        source: io::Error,
    },
    /// The existing log or its head file does not end the way it must to be continued.
    #[error(
        "the evidence log `{path}` cannot be continued: {reason}; run `portcullis audit verify {path}`"
    )]
    Unusable { path: String, reason: String },
    /// This append's batch could not be made durable. The record may or may not be on disk;
    /// it was not acknowledged, so the action it describes must not happen.
    #[error("could not write the evidence log `{path}`: {reason}")]
    WriteFailed { path: String, reason: String },
    /// An earlier write failed; the log accepts nothing more until it is reopened, so that no
    /// later record can land before one that failed.
    #[error("the evidence log `{path}` stopped accepting records after a failed write: {reason}")]
    Closed { path: String, reason: String },
    #[error("checkpoint records are written by the evidence log itself, not appended")]
    ReservedKind,
    #[error("cannot encode an evidence record: {0}")]
    Encode(#[source] serde_json::Error),
    /// A line the reader could not take as a record.
    #[error("line {line} of `{path}` is not a readable evidence record: {reason}")]
    Malformed {
        path: String,
        line: u64,
        reason: String,
    },
}

impl AuditError {
    pub(crate) fn io(action: &'static str, path: &Path, source: io::Error) -> Self {
        Self::Io {
            action,
            path: path.display().to_string(),
            source,
        }
    }

    pub(crate) fn unusable(path: &Path, reason: impl Into<String>) -> Self {
        Self::Unusable {
            path: path.display().to_string(),
            reason: reason.into(),
        }
    }
}
