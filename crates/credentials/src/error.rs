//! What can go wrong opening, reading or writing the credential store.

use std::io;
use std::path::Path;

use crate::private_file::{self, Refusal};

/// A credential store error. Every message about the file names it and says what to do; none
/// carries a token, the key text, or anything decrypted from the file.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The key text is too short to be a key. Names the variable the caller read it from.
    #[error(
        "`{variable}` is too short to be the credential store key: it needs at least 32 bytes \
         of random text (for example the output of `openssl rand -base64 32`)"
    )]
    WeakKey { variable: String },
    #[error("cannot {action} `{path}`: {source}")]
    Io {
        action: &'static str,
        path: String,
        #[source]
        source: io::Error,
    },
    /// The file (or its lock file) is not something Portcullis will keep secrets in.
    #[error("refusing the credential store `{path}`: {reason}")]
    Refused { path: String, reason: String },
    /// The store was opened, then its file went away.
    #[error(
        "the credential store `{path}` no longer exists (removed since Portcullis opened it); \
         restart Portcullis to create an empty one, then log in again"
    )]
    Missing { path: String },
    /// Shorter than the smallest file Portcullis writes.
    #[error(
        "the credential store `{path}` is truncated ({len} bytes, a store has at least {min}); \
         restore it from a backup, or move it aside and log in again"
    )]
    Truncated { path: String, len: u64, min: u64 },
    /// The file does not start with the magic of any version of the format.
    #[error("`{path}` is not a Portcullis credential store: {reason}")]
    NotAStore { path: String, reason: String },
    /// Authentication failed: the key is not the one the file was written with, or the file
    /// was changed. The two cannot be told apart, so the message names both.
    #[error(
        "the credential store `{path}` does not decrypt with the configured key: either the key \
         is not the one it was written with, or the file was altered or truncated; set the key \
         it was created with, or move the file aside and log in again"
    )]
    DoesNotDecrypt { path: String },
    /// It decrypted, but what is inside is not what this version writes.
    #[error(
        "the credential store `{path}` decrypts but its contents cannot be read: {reason}; \
         it may have been written by a newer Portcullis"
    )]
    Corrupt { path: String, reason: String },
    /// A store exists, but no variable holds its key and there is no key file beside it.
    #[error(
        "the credential store `{store}` exists, but its key is neither in `{variable}` nor in \
         `{file}`; set `{variable}` to the key it was created with, or move the store aside and \
         log in again"
    )]
    NoKey {
        store: String,
        file: String,
        variable: String,
    },
    #[error("cannot get random bytes to write the credential store `{path}`: {reason}")]
    Random { path: String, reason: String },
    #[error("cannot encrypt the credential store `{path}`: {reason}")]
    Encrypt { path: String, reason: String },
}

impl StoreError {
    pub(crate) fn io(action: &'static str, path: &Path, source: io::Error) -> Self {
        Self::Io {
            action,
            path: path.display().to_string(),
            source,
        }
    }

    pub(crate) fn refused(path: &Path, reason: impl Into<String>) -> Self {
        Self::Refused {
            path: path.display().to_string(),
            reason: reason.into(),
        }
    }

    /// A private-file error in this crate's words; `what` is the subject of refusals ("it"
    /// for the store itself, "this lock file").
    pub(crate) fn private_file(error: private_file::Error, what: &str) -> Self {
        match error {
            private_file::Error::Io { step, path, source } => Self::io(step.verb(), &path, source),
            private_file::Error::Refused { path, refusal } => {
                let reason = match refusal {
                    Refusal::SymbolicLink => format!(
                        "{what} is a symbolic link, which Portcullis does not follow; configure \
                         the path of the file itself"
                    ),
                    Refusal::NotRegularFile => format!("{what} is not a regular file"),
                    Refusal::Mode(mode) => format!(
                        "{what} has mode {mode:04o}, so other users can reach it; \
                         if nobody else could have changed it, run `chmod 600 {}`",
                        path.display()
                    ),
                    Refusal::KeptChanging => refusal.to_string(),
                };
                Self::refused(&path, reason)
            }
        }
    }
}
