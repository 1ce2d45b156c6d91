//! What approval keeps in the state directory beside the evidence log (known recipients,
//! scoped answers): one JSON file each, written whole (a new file, mode 0600, synced, renamed
//! over the old one), and read at start. A file that cannot be read or parsed counts as
//! holding nothing, and says so in the log: the caller's empty value is always the one that
//! asks more questions, never fewer.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;

use serde::Serialize;
use serde::de::DeserializeOwned;

/// What `file` holds; `T::default()` when there is no such file, and also (with a warning
/// that says `then`) when it cannot be read or parsed.
pub(super) fn read<T: DeserializeOwned + Default>(file: &Path, then: &str) -> T {
    let parsed = match std::fs::read(file) {
        Ok(bytes) => serde_json::from_slice::<T>(&bytes).map_err(|error| error.to_string()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return T::default(),
        Err(error) => Err(error.to_string()),
    };
    parsed.unwrap_or_else(|error| {
        tracing::warn!(file = %file.display(), %error, "{then}");
        T::default()
    })
}

/// Writes `value` to `file` whole: a new file, synced, renamed over the old one.
pub(super) fn write<T: Serialize>(file: &Path, value: &T) -> std::io::Result<()> {
    let text = serde_json::to_vec_pretty(value).map_err(std::io::Error::other)?;
    // A name of this process's own: two Portcullis processes sharing the state directory never
    // write into one new file (within one, the caller's lock makes writes take turns).
    let fresh = file.with_extension(format!("json.{}.new", std::process::id()));
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&fresh)?;
    out.write_all(&text)?;
    out.sync_all()?;
    std::fs::rename(&fresh, file)
}
