//! `CredentialStore`: the file on disk, read afresh for every lookup and replaced atomically,
//! under a lock, for every change.

use std::ffi::OsString;
use std::fmt;
use std::fs::{self, DirBuilder, File, Metadata, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::format::{self, Credentials};
use crate::{CredentialKey, Grant, GrantSummary, Secret, StoreError, StoreKey};

/// How often opening a file is retried when its path turns out to name another file than the
/// one just inspected (another process renamed a new version over it in between). Each retry
/// means a write completed meanwhile, so a few are plenty.
const OPEN_ATTEMPTS: usize = 8;

/// A handle on the credential store file. Clone it freely: clones share one key and one
/// in-process writer lock, and are `Send + Sync`.
///
/// Every method does blocking file I/O (a read and a decryption; a change also fsyncs twice),
/// so async code calls it from `spawn_blocking` or accepts a short block.
#[derive(Clone)]
pub struct CredentialStore {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    /// `FILE.lock`: what writers in every process lock. A separate file, because the store
    /// file itself is replaced on every write and a lock on a replaced file guards nothing.
    lock_path: PathBuf,
    /// `FILE.tmp`: where a new version is written before it is renamed over the store.
    /// One fixed name is enough: only the holder of the lock writes it.
    tmp_path: PathBuf,
    dir: PathBuf,
    key: StoreKey,
    /// `flock` excludes open file descriptions, not threads: two threads of this process
    /// could both hold the lock through one description. Each change opens its own, and this
    /// mutex also keeps this handle's threads in line without relying on that.
    writer: Mutex<()>,
}

impl fmt::Debug for CredentialStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CredentialStore")
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

impl CredentialStore {
    /// Opens the store at `path`, creating it empty (and its directory, mode 0700) if absent,
    /// file mode 0600.
    ///
    /// An existing file that is a symbolic link, not a regular file, or accessible to group or
    /// others is refused. One that does not decrypt under `key` (wrong key, altered, truncated)
    /// is an error saying so: it is never replaced or emptied, since its grants may be the only
    /// copy and a wrong key is the likelier cause.
    pub fn open(path: &Path, key: StoreKey) -> Result<Self, StoreError> {
        let Some(file_name) = path.file_name() else {
            return Err(StoreError::refused(path, "it does not name a file"));
        };
        let dir = match path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
            _ => PathBuf::from("."),
        };
        // Only a directory created here gets 0700; an existing one is the operator's choice.
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|error| StoreError::io("create the directory", &dir, error))?;

        let sibling = |suffix: &str| {
            let mut name = OsString::from(file_name);
            name.push(suffix);
            dir.join(name)
        };
        let inner = Inner {
            path: path.to_path_buf(),
            lock_path: sibling(".lock"),
            tmp_path: sibling(".tmp"),
            dir: dir.clone(),
            key,
            writer: Mutex::new(()),
        };
        {
            // Under the lock, so two processes starting at once cannot both find the file
            // absent and the second replace what the first has since written.
            let _lock = inner.lock()?;
            match inner.read_bytes()? {
                Some(bytes) => {
                    format::unseal(&inner.path, &inner.key, &bytes)?;
                }
                None => inner.write(&Credentials::default())?,
            }
        }
        Ok(Self {
            inner: Arc::new(inner),
        })
    }

    /// The grant for `key`, read from the file as it is now.
    pub fn get(&self, key: &CredentialKey) -> Result<Option<Grant>, StoreError> {
        Ok(self.inner.read()?.grants.remove(key))
    }

    /// Stores `grant` for `key`, replacing any grant it had. Durable when it returns `Ok`;
    /// after an error the file holds either the old or the new version.
    pub fn put(&self, key: CredentialKey, grant: Grant) -> Result<(), StoreError> {
        let _lock = self.inner.lock()?;
        let mut credentials = self.inner.read()?;
        credentials.grants.insert(key, grant);
        self.inner.write(&credentials)
    }

    /// Removes the grant for `key` and returns it (`None`, and nothing written, if there was
    /// none).
    pub fn remove(&self, key: &CredentialKey) -> Result<Option<Grant>, StoreError> {
        let _lock = self.inner.lock()?;
        let mut credentials = self.inner.read()?;
        let removed = credentials.grants.remove(key);
        if removed.is_some() {
            self.inner.write(&credentials)?;
        }
        Ok(removed)
    }

    /// Every stored credential's key and summary, in key order.
    pub fn list(&self) -> Result<Vec<(CredentialKey, GrantSummary)>, StoreError> {
        Ok(self
            .inner
            .read()?
            .grants
            .into_iter()
            .map(|(key, grant)| {
                let summary = grant.summary();
                (key, summary)
            })
            .collect())
    }

    /// The operator's secret called `name` (`portcullis secret set NAME`), read from the file
    /// as it is now.
    pub fn secret(&self, name: &str) -> Result<Option<Secret>, StoreError> {
        Ok(self.inner.read()?.secrets.remove(name))
    }

    /// Stores the operator's secret `name`, replacing any value it had. Durable when it
    /// returns `Ok`, like `put`.
    pub fn put_secret(&self, name: &str, secret: Secret) -> Result<(), StoreError> {
        let _lock = self.inner.lock()?;
        let mut credentials = self.inner.read()?;
        credentials.secrets.insert(name.to_owned(), secret);
        self.inner.write(&credentials)
    }

    /// The names of the operator's stored secrets, in name order (never their values).
    pub fn secret_names(&self) -> Result<Vec<String>, StoreError> {
        Ok(self.inner.read()?.secrets.into_keys().collect())
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }
}

/// Held while a writer reads, changes and replaces the file. Dropping it closes the lock
/// file (releasing the `flock`) before the mutex.
struct WriteLock<'a> {
    _file: File,
    _guard: MutexGuard<'a, ()>,
}

impl Inner {
    fn lock(&self) -> Result<WriteLock<'_>, StoreError> {
        // Poisoning only means another thread panicked holding `()`; the file is consistent
        // either way, because it is only ever replaced whole.
        let guard = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let file = open_lock_file(&self.lock_path)?;
        file.lock()
            .map_err(|error| StoreError::io("lock", &self.lock_path, error))?;
        Ok(WriteLock {
            _file: file,
            _guard: guard,
        })
    }

    /// The credentials as the file holds them now. Needs no lock: writers replace the file by
    /// rename, so a reader sees one whole version or the next.
    fn read(&self) -> Result<Credentials, StoreError> {
        match self.read_bytes()? {
            Some(bytes) => format::unseal(&self.path, &self.key, &bytes),
            None => Err(StoreError::Missing {
                path: self.path.display().to_string(),
            }),
        }
    }

    fn read_bytes(&self) -> Result<Option<Vec<u8>>, StoreError> {
        let Some(mut file) = open_existing(&self.path, "it")? else {
            return Ok(None);
        };
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)
            .map_err(|error| StoreError::io("read", &self.path, error))?;
        Ok(Some(bytes))
    }

    /// Replaces the file with `credentials`: written to `FILE.tmp` (0600 from its creation,
    /// so the secrets are never readable by others even for a moment), fsynced, renamed over
    /// the store, and the directory fsynced so the rename survives a crash. The caller holds
    /// the lock.
    fn write(&self, credentials: &Credentials) -> Result<(), StoreError> {
        let bytes = format::seal(&self.path, &self.key, credentials)?;
        let tmp = &self.tmp_path;
        // A temporary file left by a crash is stale: only the lock holder writes it.
        match fs::remove_file(tmp) {
            Ok(()) => {}
            Err(error) if error.kind() == ErrorKind::NotFound => {}
            Err(error) => return Err(StoreError::io("remove the stale", tmp, error)),
        }
        // INVARIANT: `create_new` (O_EXCL) never follows a symbolic link and never reuses a
        // file someone else made, so the secrets land only in a file this call created 0600.
        let written = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(tmp)
            .and_then(|mut file| {
                file.write_all(&bytes)?;
                file.sync_all()
            });
        if let Err(error) = written {
            let _ = fs::remove_file(tmp);
            return Err(StoreError::io("write", tmp, error));
        }
        if let Err(error) = fs::rename(tmp, &self.path) {
            let _ = fs::remove_file(tmp);
            return Err(StoreError::io("replace", &self.path, error));
        }
        File::open(&self.dir)
            .and_then(|dir| dir.sync_all())
            .map_err(|error| StoreError::io("sync the directory", &self.dir, error))
    }
}

/// Opens the lock file, creating it (0600) if absent.
fn open_lock_file(path: &Path) -> Result<File, StoreError> {
    for _ in 0..OPEN_ATTEMPTS {
        if let Some(file) = open_existing(path, "this lock file")? {
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
            Err(error) => return Err(StoreError::io("create", path, error)),
        }
    }
    Err(changing(path))
}

/// Opens `path` for reading if it exists and is a private regular file; `None` if absent.
///
/// The path is inspected without following links, then opened, and the opened file must be
/// the one inspected: a link or a file swapped in between is never read. `what` is the
/// subject of refusals ("it" for the store itself, "this lock file").
fn open_existing(path: &Path, what: &str) -> Result<Option<File>, StoreError> {
    for _ in 0..OPEN_ATTEMPTS {
        let inspected = match fs::symlink_metadata(path) {
            Ok(metadata) => metadata,
            Err(error) if error.kind() == ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(StoreError::io("inspect", path, error)),
        };
        check_private(path, what, &inspected)?;
        let file = match File::open(path) {
            Ok(file) => file,
            Err(error) if error.kind() == ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(StoreError::io("open", path, error)),
        };
        let opened = file
            .metadata()
            .map_err(|error| StoreError::io("inspect", path, error))?;
        if opened.dev() == inspected.dev() && opened.ino() == inspected.ino() {
            // The mode again, of the file actually read.
            check_private(path, what, &opened)?;
            return Ok(Some(file));
        }
        // Replaced in between, normally by another writer's rename: look again.
    }
    Err(changing(path))
}

/// INVARIANT: secrets are read only from a regular file that only its owner can access, and
/// never through a symbolic link (a link could point Portcullis at a file someone else
/// controls, or make it overwrite one on the next write).
fn check_private(path: &Path, what: &str, metadata: &Metadata) -> Result<(), StoreError> {
    let file_type = metadata.file_type();
    if file_type.is_symlink() {
        return Err(StoreError::refused(
            path,
            format!(
                "{what} is a symbolic link, which Portcullis does not follow; configure the \
                 path of the file itself"
            ),
        ));
    }
    if !file_type.is_file() {
        return Err(StoreError::refused(
            path,
            format!("{what} is not a regular file"),
        ));
    }
    let mode = metadata.mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(StoreError::refused(
            path,
            format!(
                "{what} has mode {mode:04o}, so other users can reach it; \
                 if nobody else could have changed it, run `chmod 600 {}`",
                path.display()
            ),
        ));
    }
    Ok(())
}

fn changing(path: &Path) -> StoreError {
    StoreError::refused(
        path,
        "it was replaced again on every attempt to open it; check what else writes there",
    )
}
