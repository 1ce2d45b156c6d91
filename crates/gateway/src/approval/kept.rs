//! What approval keeps in the state directory beside the evidence log (known recipients,
//! scoped answers): one JSON file each, written whole (`private_file::replace`: a new file
//! created 0600 without following links, synced, renamed over the old one, the directory
//! synced), and read at start. A file that cannot be read or parsed counts as
//! holding nothing, and says so in the log: the caller's empty value is always the one that
//! asks more questions, never fewer.

use std::path::Path;

use portcullis_credentials::private_file;

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

/// Writes `value` to `file` whole: a new file (0600), synced, renamed over the old one, the
/// directory synced.
pub(super) fn write<T: Serialize>(file: &Path, value: &T) -> std::io::Result<()> {
    let text = serde_json::to_vec_pretty(value).map_err(std::io::Error::other)?;
    // A name of this process's own: two Portcullis processes sharing the state directory never
    // write into one new file (within one, the caller's lock makes writes take turns).
    let fresh = file.with_extension(format!("json.{}.new", std::process::id()));
    private_file::replace(file, &fresh, &text).map_err(std::io::Error::from)
}
