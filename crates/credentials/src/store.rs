//! `CredentialStore`: the file on disk, read afresh for every lookup and replaced atomically,
//! under a lock, for every change.

use std::ffi::OsString;
use std::fmt;
use std::fs::{DirBuilder, File};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::format::{self, Credentials};
use crate::private_file::{self, Access};
use crate::{CredentialKey, Grant, GrantSummary, Secret, StoreError, StoreKey};

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
        let dir = private_file::directory_of(path);
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
        let file = private_file::lock(&self.lock_path, Access::OwnerOnly)
            .map_err(|error| StoreError::private_file(error, "this lock file"))?;
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

    /// The file's bytes, `None` if absent; refused unless it is a regular file only its owner
    /// can access, never through a symbolic link.
    fn read_bytes(&self) -> Result<Option<Vec<u8>>, StoreError> {
        private_file::read(&self.path, Access::OwnerOnly)
            .map_err(|error| StoreError::private_file(error, "it"))
    }

    /// Replaces the file with `credentials`: written to `FILE.tmp` (0600 from its creation,
    /// so the secrets are never readable by others even for a moment), fsynced, renamed over
    /// the store, and the directory fsynced so the rename survives a crash. The caller holds
    /// the lock.
    fn write(&self, credentials: &Credentials) -> Result<(), StoreError> {
        let bytes = format::seal(&self.path, &self.key, credentials)?;
        private_file::replace(&self.path, &self.tmp_path, &bytes)
            .map_err(|error| StoreError::private_file(error, "it"))
    }
}
