//! A private state file: one that Portcullis alone reads and writes, replaced whole under an
//! exclusive lock. The one implementation of the care such a file needs, shared by the
//! credential store, the approvers file and the gateway's approval ledger.
//!
//! - [`open_lock`] / [`lock`]: the sibling lock file, created 0600 with `create_new` (which
//!   never follows a symbolic link planted at its path), or an existing one opened as
//!   [`read`] opens files.
//! - [`read`]: an existing file's bytes, `None` if absent. The path is inspected without
//!   following links and refused if it is a symbolic link, not a regular file, or its mode
//!   gives group or others more than [`Access`] allows; then it is opened, and the opened file
//!   must be the one inspected (same device and inode, checked again), so a link or a file
//!   swapped in between is never read.
//! - [`replace`]: the atomic replacement: a stale temporary file removed, the new one created
//!   0600 with `create_new`, written, fsynced, renamed over the file, and the directory
//!   fsynced so the rename survives a crash. The caller holds the lock.
//!
//! Errors are an [`Error`] that says which step failed on which path, with the refusal as a
//! value ([`Refusal`]), so that each caller can word its own messages; it converts into an
//! `io::Error` carrying that context for callers that only report it.
//!
//! What it does not check: the owner of the file (only its mode), and it does not protect
//! against someone who can write the directory.

use std::fmt;
use std::fs::{self, File, Metadata, OpenOptions};
use std::io::{self, ErrorKind, Read as _, Write as _};
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

/// How often opening a file is retried when its path turns out to name another file than the
/// one just inspected (another process renamed a new version over it in between). Each retry
/// means a write completed meanwhile, so a few are plenty.
const OPEN_ATTEMPTS: usize = 8;

/// What an existing file's mode may grant besides its owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Nothing: any permission bit for group or others is refused (`mode & 0o077`). For files
    /// of secrets, or files whose content is trusted (whoever can write them decides).
    OwnerOnly,
    /// Any mode. Only for lock files that earlier versions created with the umask's mode,
    /// whose content is never read; links and non-regular files are still refused.
    AnyMode,
}

/// Why an existing path was not used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// It is a symbolic link, which is never followed.
    SymbolicLink,
    /// It is not a regular file (a directory, a FIFO, a device...).
    NotRegularFile,
    /// Its permission bits (`mode & 0o777`) give group or others access.
    Mode(u32),
    /// It named another file on every attempt to open it (something keeps replacing it).
    KeptChanging,
}

impl Refusal {
    /// Whether a [`Refusal::Mode`] lets group or others write (not only read).
    pub fn others_can_write(&self) -> bool {
        matches!(self, Refusal::Mode(mode) if mode & 0o022 != 0)
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::SymbolicLink => {
                f.write_str("it is a symbolic link, which Portcullis does not follow")
            }
            Refusal::NotRegularFile => f.write_str("it is not a regular file"),
            Refusal::Mode(mode) => write!(
                f,
                "it has mode {mode:04o}, so other users can reach it; if nobody else could \
                 have changed it, run `chmod 600` on it"
            ),
            Refusal::KeptChanging => f.write_str(
                "it was replaced again on every attempt to open it; check what else writes there",
            ),
        }
    }
}

/// The step that failed with an I/O error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Reading a path's metadata, without following links, or an opened file's.
    Inspect,
    Open,
    /// Creating the lock file.
    Create,
    /// Taking the exclusive `flock`.
    Lock,
    Read,
    /// Removing a temporary file left by a crash.
    RemoveStale,
    /// Creating, writing or fsyncing the temporary file.
    Write,
    /// Renaming the temporary file over the file.
    Replace,
    /// Opening and fsyncing the directory.
    SyncDirectory,
}

impl Step {
    /// The verb of a message "cannot VERB `PATH`".
    pub fn verb(&self) -> &'static str {
        match self {
            Step::Inspect => "inspect",
            Step::Open => "open",
            Step::Create => "create",
            Step::Lock => "lock",
            Step::Read => "read",
            Step::RemoveStale => "remove the stale",
            Step::Write => "write",
            Step::Replace => "replace",
            Step::SyncDirectory => "sync the directory",
        }
    }
}

/// What went wrong, and where: `path` is the file the step worked on (the lock file, the
/// temporary file, the directory for [`Step::SyncDirectory`]).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("refusing `{}`: {refusal}", path.display())]
    Refused { path: PathBuf, refusal: Refusal },
    #[error("cannot {} `{}`: {source}", step.verb(), path.display())]
    Io {
        step: Step,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl Error {
    fn io(step: Step, path: &Path, source: io::Error) -> Self {
        Self::Io {
            step,
            path: path.to_path_buf(),
            source,
        }
    }

    fn refused(path: &Path, refusal: Refusal) -> Self {
        Self::Refused {
            path: path.to_path_buf(),
            refusal,
        }
    }
}

impl From<Error> for io::Error {
    /// Keeps the kind of an I/O error (a refusal is `PermissionDenied`) and the message with
    /// its context.
    fn from(error: Error) -> Self {
        let kind = match &error {
            Error::Refused { .. } => ErrorKind::PermissionDenied,
            Error::Io { source, .. } => source.kind(),
        };
        io::Error::new(kind, error)
    }
}

/// Opens the lock file `path`, creating it (0600) if absent. An existing one is opened as
/// [`read`] opens files, refused under the same rules with `access`.
pub fn open_lock(path: &Path, access: Access) -> Result<File, Error> {
    for _ in 0..OPEN_ATTEMPTS {
        if let Some(file) = open_existing(path, access)? {
            return Ok(file);
        }
        // Absent: create it. `create_new` does not follow a link planted meanwhile.
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
        {
            Ok(file) => return Ok(file),
            Err(error) if error.kind() == ErrorKind::AlreadyExists => {}
            Err(error) => return Err(Error::io(Step::Create, path, error)),
        }
    }
    Err(Error::refused(path, Refusal::KeptChanging))
}

/// [`open_lock`], then an exclusive `flock` on it, blocking until it is free; released when
/// the returned file is dropped. `flock` excludes open file descriptions, not threads: each
/// call opens its own, and callers keep their own threads in line as they need.
pub fn lock(path: &Path, access: Access) -> Result<File, Error> {
    let file = open_lock(path, access)?;
    file.lock()
        .map_err(|error| Error::io(Step::Lock, path, error))?;
    Ok(file)
}

/// The bytes of the file `path` as it is now; `None` if there is no such file. Needs no lock
/// when writers use [`replace`]: a reader sees one whole version or the next.
pub fn read(path: &Path, access: Access) -> Result<Option<Vec<u8>>, Error> {
    let Some(mut file) = open_existing(path, access)? else {
        return Ok(None);
    };
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)
        .map_err(|error| Error::io(Step::Read, path, error))?;
    Ok(Some(bytes))
}

/// Replaces the file `path` with `bytes`: written to `temp` (0600 from its creation, so the
/// content is never readable by others even for a moment), fsynced, renamed over `path`, and
/// the directory fsynced so the rename survives a crash. After an error `path` holds the old
/// or the new version, and `temp` is removed.
///
/// `temp` must be in the same directory as `path` and written by nobody else meanwhile (the
/// caller holds the lock that makes it so): a file left there is taken for a crash's and
/// removed first.
pub fn replace(path: &Path, temp: &Path, bytes: &[u8]) -> Result<(), Error> {
    match fs::remove_file(temp) {
        Ok(()) => {}
        Err(error) if error.kind() == ErrorKind::NotFound => {}
        Err(error) => return Err(Error::io(Step::RemoveStale, temp, error)),
    }
    // INVARIANT: `create_new` (O_EXCL) never follows a symbolic link and never reuses a file
    // someone else made, so the content lands only in a file this call created 0600.
    let written = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(temp)
        .and_then(|mut file| {
            file.write_all(bytes)?;
            file.sync_all()
        });
    if let Err(error) = written {
        let _ = fs::remove_file(temp);
        return Err(Error::io(Step::Write, temp, error));
    }
    if let Err(error) = fs::rename(temp, path) {
        let _ = fs::remove_file(temp);
        return Err(Error::io(Step::Replace, path, error));
    }
    let dir = directory_of(path);
    File::open(&dir)
        .and_then(|dir| dir.sync_all())
        .map_err(|error| Error::io(Step::SyncDirectory, &dir, error))
}

/// The directory `path` is in (`.` for a bare file name).
pub fn directory_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Opens `path` for reading if it exists and passes [`check`]; `None` if absent.
///
/// The path is inspected without following links, then opened, and the opened file must be
/// the one inspected: a link or a file swapped in between is never read.
fn open_existing(path: &Path, access: Access) -> Result<Option<File>, Error> {
    for _ in 0..OPEN_ATTEMPTS {
        let inspected = match fs::symlink_metadata(path) {
            Ok(metadata) => metadata,
            Err(error) if error.kind() == ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(Error::io(Step::Inspect, path, error)),
        };
        check(path, access, &inspected)?;
        let file = match File::open(path) {
            Ok(file) => file,
            Err(error) if error.kind() == ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(Error::io(Step::Open, path, error)),
        };
        let opened = file
            .metadata()
            .map_err(|error| Error::io(Step::Inspect, path, error))?;
        if opened.dev() == inspected.dev() && opened.ino() == inspected.ino() {
            // The mode again, of the file actually opened.
            check(path, access, &opened)?;
            return Ok(Some(file));
        }
        // Replaced in between, normally by another writer's rename: look again.
    }
    Err(Error::refused(path, Refusal::KeptChanging))
}

/// INVARIANT: a private file is used only when it is a regular file whose mode passes
/// `access`, and never through a symbolic link (a link could point Portcullis at a file
/// someone else controls, or make it overwrite one).
fn check(path: &Path, access: Access, metadata: &Metadata) -> Result<(), Error> {
    let file_type = metadata.file_type();
    if file_type.is_symlink() {
        return Err(Error::refused(path, Refusal::SymbolicLink));
    }
    if !file_type.is_file() {
        return Err(Error::refused(path, Refusal::NotRegularFile));
    }
    let mode = metadata.mode() & 0o777;
    if access == Access::OwnerOnly && mode & 0o077 != 0 {
        return Err(Error::refused(path, Refusal::Mode(mode)));
    }
    Ok(())
}
