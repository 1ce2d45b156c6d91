//! The approvers file: the passkeys enrolled on this machine, read afresh for every ceremony
//! and replaced atomically, under a lock, for every change.

use std::ffi::OsString;
use std::fs::{self, DirBuilder, File, Metadata, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};

use serde::{Deserialize, Serialize};
use webauthn_rs::prelude::{Passkey, Uuid};

use crate::ApproverError;

/// The version of the file's format this code writes and reads; any other is refused, so a
/// file written by a newer Portcullis is never half-understood.
const FORMAT_VERSION: u32 = 1;

/// How often opening a file is retried when its path turns out to name another file than the
/// one just inspected (another process renamed a new version over it in between).
const OPEN_ATTEMPTS: usize = 8;

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
        let dir = match path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
            _ => PathBuf::from("."),
        };
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
        let Some(mut file) = open_existing(&self.path, "it")? else {
            return Ok(Enrolled::default());
        };
        let mut text = Vec::new();
        file.read_to_end(&mut text)
            .map_err(|error| io_error("read", &self.path, error))?;
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
        let file = open_lock_file(&self.lock_path)?;
        file.lock()
            .map_err(|error| io_error("lock", &self.lock_path, error))?;
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
        let tmp = &self.tmp_path;
        // A temporary file left by a crash is stale: only the lock holder writes it.
        match fs::remove_file(tmp) {
            Ok(()) => {}
            Err(error) if error.kind() == ErrorKind::NotFound => {}
            Err(error) => return Err(io_error("remove the stale copy of", tmp, error)),
        }
        // INVARIANT: `create_new` (O_EXCL) never follows a symbolic link nor reuses a file
        // someone else made, so the passkeys land only in a file this call created 0600.
        let written = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(tmp)
            .and_then(|mut file| {
                file.write_all(&text)?;
                file.sync_all()
            });
        if let Err(error) = written {
            let _ = fs::remove_file(tmp);
            return Err(io_error("write", tmp, error));
        }
        if let Err(error) = fs::rename(tmp, &self.path) {
            let _ = fs::remove_file(tmp);
            return Err(io_error("replace", &self.path, error));
        }
        File::open(&self.dir)
            .and_then(|dir| dir.sync_all())
            .map_err(|error| io_error("sync the directory of", &self.path, error))
    }

    fn corrupt(&self, reason: String) -> ApproverError {
        ApproverError::Corrupt {
            file: self.path.display().to_string(),
            reason,
        }
    }
}

/// Opens the lock file, creating it (0600) if absent.
fn open_lock_file(path: &Path) -> Result<File, ApproverError> {
    for _ in 0..OPEN_ATTEMPTS {
        if let Some(file) = open_existing(path, "its lock file")? {
            return Ok(file);
        }
        // `create_new` does not follow a link planted meanwhile.
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
        {
            Ok(file) => return Ok(file),
            Err(error) if error.kind() == ErrorKind::AlreadyExists => {}
            Err(error) => return Err(io_error("create", path, error)),
        }
    }
    Err(changing(path))
}

/// Opens `path` for reading if it exists and is a regular file only its owner can change;
/// `None` if absent. The path is inspected without following links, then opened, and the
/// opened file must be the one inspected: a link or a file swapped in between is never read.
fn open_existing(path: &Path, what: &str) -> Result<Option<File>, ApproverError> {
    for _ in 0..OPEN_ATTEMPTS {
        let inspected = match fs::symlink_metadata(path) {
            Ok(metadata) => metadata,
            Err(error) if error.kind() == ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(io_error("inspect", path, error)),
        };
        check_owned(path, what, &inspected)?;
        let file = match File::open(path) {
            Ok(file) => file,
            Err(error) if error.kind() == ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(io_error("open", path, error)),
        };
        let opened = file
            .metadata()
            .map_err(|error| io_error("inspect", path, error))?;
        if opened.dev() == inspected.dev() && opened.ino() == inspected.ino() {
            check_owned(path, what, &opened)?;
            return Ok(Some(file));
        }
    }
    Err(changing(path))
}

/// INVARIANT: passkeys are trusted only from a regular file that nobody but its owner can
/// change, never through a symbolic link: whoever can write the file can enrol a passkey of
/// their own and so approve anything.
fn check_owned(path: &Path, what: &str, metadata: &Metadata) -> Result<(), ApproverError> {
    let file_type = metadata.file_type();
    if file_type.is_symlink() {
        return Err(refused(
            path,
            &format!("{what} is a symbolic link, which Portcullis does not follow"),
        ));
    }
    if !file_type.is_file() {
        return Err(refused(path, &format!("{what} is not a regular file")));
    }
    let mode = metadata.mode() & 0o777;
    if mode & 0o022 != 0 {
        return Err(refused(
            path,
            &format!(
                "{what} has mode {mode:04o}, so other users could enrol a passkey of their own; \
                 if nobody else could have changed it, run `chmod 600 {}`",
                path.display()
            ),
        ));
    }
    Ok(())
}

fn changing(path: &Path) -> ApproverError {
    refused(
        path,
        "it was replaced again on every attempt to open it; check what else writes there",
    )
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
