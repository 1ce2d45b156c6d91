//! The approvers file: the passkeys enrolled on this machine, read afresh for every ceremony
//! and replaced atomically, under a lock, for every change.

use std::ffi::OsString;
use std::fs::{DirBuilder, File};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};

use portcullis_credentials::private_file::{self, Access, Refusal, Step};
use serde::{Deserialize, Serialize};
use webauthn_rs::prelude::{Passkey, Uuid};

use crate::ApproverError;

/// The version of the file's format this code writes and reads; any other is refused, so a
/// file written by a newer Portcullis is never half-understood.
const FORMAT_VERSION: u32 = 1;

/// What the file holds.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Enrolled {
    version: u32,
    pub(crate) approvers: Vec<Approver>,
}

impl Default for Enrolled {
    fn default() -> Self {
        Self {
            version: FORMAT_VERSION,
            approvers: Vec::new(),
        }
    }
}

/// One enrolled passkey and the person it belongs to. A person may have several.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Approver {
    pub(crate) name: String,
    /// The WebAuthn user handle of `name`, the same for each of its passkeys.
    pub(crate) user_id: Uuid,
    /// The public key, its id and its signature counter (no secret).
    pub(crate) passkey: Passkey,
}

impl Enrolled {
    pub(crate) fn passkeys(&self) -> Vec<Passkey> {
        self.approvers
            .iter()
            .map(|approver| approver.passkey.clone())
            .collect()
    }

    pub(crate) fn user_id_of(&self, name: &str) -> Option<Uuid> {
        self.approvers
            .iter()
            .find(|approver| approver.name == name)
            .map(|approver| approver.user_id)
    }
}

/// The file and its siblings.
pub(crate) struct Store {
    path: PathBuf,
    /// `FILE.lock`: what writers in every process lock. A separate file, because the file
    /// itself is replaced on every write and a lock on a replaced file guards nothing.
    lock_path: PathBuf,
    /// `FILE.tmp`: where a new version is written before it is renamed over the file. One
    /// fixed name is enough: only the holder of the lock writes it.
    tmp_path: PathBuf,
    dir: PathBuf,
    /// `flock` excludes open file descriptions, not threads; this keeps this process's
    /// threads in line without relying on each opening its own.
    writer: Mutex<()>,
}

/// Held while a writer reads, changes and replaces the file.
struct WriteLock<'a> {
    _file: File,
    _guard: MutexGuard<'a, ()>,
}

impl Store {
    pub(crate) fn new(path: PathBuf) -> Result<Self, ApproverError> {
        let Some(file_name) = path.file_name().map(OsString::from) else {
            return Err(refused(&path, "it does not name a file"));
        };
        let dir = private_file::directory_of(&path);
        let sibling = |suffix: &str| {
            let mut name = file_name.clone();
            name.push(suffix);
            dir.join(name)
        };
        Ok(Self {
            lock_path: sibling(".lock"),
            tmp_path: sibling(".tmp"),
            dir: dir.clone(),
            path,
            writer: Mutex::new(()),
        })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The passkeys as the file holds them now; an absent file means nobody enrolled. Needs
    /// no lock: writers replace the file by rename, so a reader sees one whole version.
    pub(crate) fn read(&self) -> Result<Enrolled, ApproverError> {
        // INVARIANT: passkeys are trusted only from a regular file that nobody but its owner
        // can reach, never through a symbolic link: whoever can write the file can enrol a
        // passkey of their own and so approve anything.
        let read = private_file::read(&self.path, Access::OwnerOnly)
            .map_err(|error| approver_error(error, "it", &self.path))?;
        let Some(text) = read else {
            return Ok(Enrolled::default());
        };
        let enrolled: Enrolled =
            serde_json::from_slice(&text).map_err(|error| self.corrupt(error.to_string()))?;
        if enrolled.version != FORMAT_VERSION {
            return Err(self.corrupt(format!(
                "format version {} is not {FORMAT_VERSION}; it may have been written by a \
                 newer Portcullis",
                enrolled.version
            )));
        }
        Ok(enrolled)
    }

    /// Reads the file, lets `change` change it, and replaces the file with the result, all
    /// under the lock, so a change made meanwhile by another process is never lost. Nothing
    /// is written when `change` fails.
    pub(crate) fn update<T>(
        &self,
        change: impl FnOnce(&mut Enrolled) -> Result<T, ApproverError>,
    ) -> Result<T, ApproverError> {
        let _lock = self.lock()?;
        let mut enrolled = self.read()?;
        let outcome = change(&mut enrolled)?;
        self.write(&enrolled)?;
        Ok(outcome)
    }

    fn lock(&self) -> Result<WriteLock<'_>, ApproverError> {
        // Poisoning only means another thread panicked holding `()`; the file is consistent
        // either way, because it is only ever replaced whole.
        let guard = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        // Only a directory created here gets 0700; an existing one is the operator's choice.
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(|error| io_error("create the directory of", &self.path, error))?;
        let file = private_file::lock(&self.lock_path, Access::OwnerOnly)
            .map_err(|error| approver_error(error, "its lock file", &self.path))?;
        Ok(WriteLock {
            _file: file,
            _guard: guard,
        })
    }

    /// Replaces the file with `enrolled`: written to `FILE.tmp` (created 0600), fsynced,
    /// renamed over the file, and the directory fsynced so the rename survives a crash. The
    /// caller holds the lock.
    fn write(&self, enrolled: &Enrolled) -> Result<(), ApproverError> {
        let text =
            serde_json::to_vec_pretty(enrolled).map_err(|error| self.corrupt(error.to_string()))?;
        private_file::replace(&self.path, &self.tmp_path, &text)
            .map_err(|error| approver_error(error, "it", &self.path))
    }

    fn corrupt(&self, reason: String) -> ApproverError {
        ApproverError::Corrupt {
            file: self.path.display().to_string(),
            reason,
        }
    }
}

/// A private-file error in this crate's words. `what` is the subject of refusals ("it" for
/// the file itself, "its lock file"); `file` is the approvers file, which the directory's
/// fsync is reported against.
fn approver_error(error: private_file::Error, what: &str, file: &Path) -> ApproverError {
    match error {
        private_file::Error::Io { step, path, source } => match step {
            Step::RemoveStale => io_error("remove the stale copy of", &path, source),
            Step::SyncDirectory => io_error("sync the directory of", file, source),
            _ => io_error(step.verb(), &path, source),
        },
        private_file::Error::Refused { path, refusal } => {
            let reason = match refusal {
                Refusal::SymbolicLink => {
                    format!("{what} is a symbolic link, which Portcullis does not follow")
                }
                Refusal::NotRegularFile => format!("{what} is not a regular file"),
                Refusal::Mode(mode) if refusal.others_can_write() => format!(
                    "{what} has mode {mode:04o}, so other users could enrol a passkey of their \
                     own; if nobody else could have changed it, run `chmod 600 {}`",
                    path.display()
                ),
                Refusal::Mode(mode) => format!(
                    "{what} has mode {mode:04o}, so other users can read it; \
                     if nobody else should, run `chmod 600 {}`",
                    path.display()
                ),
                Refusal::KeptChanging => refusal.to_string(),
            };
            refused(&path, &reason)
        }
    }
}

fn refused(path: &Path, reason: &str) -> ApproverError {
    ApproverError::Refused {
        file: path.display().to_string(),
        reason: reason.to_owned(),
    }
}

fn io_error(action: &'static str, path: &Path, source: std::io::Error) -> ApproverError {
    ApproverError::Io {
        action,
        file: path.display().to_string(),
        source,
    }
}
