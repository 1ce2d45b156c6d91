//! The store's key in a file beside the store, for when no environment variable holds it.
//!
//! A desktop client starts `portcullis serve` with its own environment, which holds no key,
//! and putting the key into the client's configuration would write it, in the clear, into a
//! file the client owns. So a fresh store gets a random key of its own in `credentials.key`
//! beside it (0600, in the state directory no contained upstream may be granted), made once,
//! before the store exists, and never over an existing store: a key made later could not
//! decrypt it. The file protects the store as far as its permissions do (from other users and
//! from contained upstreams, not from programs running as you uncontained); a key kept in a
//! variable stays off the disk altogether and takes precedence.

use std::fs::{self, OpenOptions};
use std::io::{ErrorKind, Write as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use crate::private_file::{self, Access};
use crate::{StoreError, StoreKey};

/// Random bytes in a made key (256 bits), written as lowercase hex: 64 characters of key text.
const KEY_BYTES: usize = 32;

/// The key file of the store at `store`: `FILE.key` for `FILE.enc` (`credentials.key`).
pub fn key_file_of(store: &Path) -> PathBuf {
    store.with_extension("key")
}

/// The key of the store at `store`: from `value`, the text of the variable `variable` when
/// it is set (the caller reads the environment); else from the key file beside the store,
/// made first when neither the key file nor the store exists. An existing store without
/// either is an error naming both.
pub fn store_key(
    store: &Path,
    variable: &str,
    value: Option<&str>,
) -> Result<StoreKey, StoreError> {
    match value {
        Some(text) => StoreKey::from_secret_text(variable, text),
        None => key_from_file(store, variable),
    }
}

fn key_from_file(store: &Path, variable: &str) -> Result<StoreKey, StoreError> {
    let file = key_file_of(store);
    if let Some(key) = read(&file)? {
        return Ok(key);
    }
    if store.exists() {
        return Err(StoreError::NoKey {
            store: store.display().to_string(),
            file: file.display().to_string(),
            variable: variable.to_owned(),
        });
    }
    make(&file)?;
    read(&file)?.ok_or_else(|| StoreError::Missing {
        path: file.display().to_string(),
    })
}

fn read(file: &Path) -> Result<Option<StoreKey>, StoreError> {
    let Some(bytes) = private_file::read(file, Access::OwnerOnly)
        .map_err(|error| StoreError::private_file(error, "the key file"))?
    else {
        return Ok(None);
    };
    let text = String::from_utf8(bytes).map_err(|_| {
        StoreError::refused(
            file,
            "the key file is not text; it is not one Portcullis made",
        )
    })?;
    StoreKey::from_secret_text(&file.display().to_string(), &text).map(Some)
}

/// Writes a new random key to `file`, unless another process made one meanwhile (the first
/// one made stays: the key is written to a temporary file, then linked to its name, which
/// fails if the name exists, so no reader ever sees a partial key).
fn make(file: &Path) -> Result<(), StoreError> {
    let dir = private_file::directory_of(file);
    fs::create_dir_all(&dir).map_err(|error| StoreError::io("create", &dir, error))?;
    let mut bytes = [0u8; KEY_BYTES];
    getrandom::fill(&mut bytes).map_err(|error| StoreError::Random {
        path: file.display().to_string(),
        reason: error.to_string(),
    })?;
    let text: String = bytes.iter().map(|byte| format!("{byte:02x}")).collect();
    let temp = file.with_extension(format!("key.{}.tmp", std::process::id()));
    let _ = fs::remove_file(&temp);
    let written = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temp)
        .and_then(|mut out| {
            out.write_all(text.as_bytes())?;
            out.sync_all()
        });
    let linked = written.and_then(|()| match fs::hard_link(&temp, file) {
        Err(error) if error.kind() == ErrorKind::AlreadyExists => Ok(()),
        other => other,
    });
    let _ = fs::remove_file(&temp);
    linked.map_err(|error| StoreError::io("write", file, error))?;
    fs::File::open(&dir)
        .and_then(|dir| dir.sync_all())
        .map_err(|error| StoreError::io("sync", &dir, error))
}
