//! Writing a file of the state directory whole: a new file of this process's own, synced,
//! renamed over the old one, mode 0600 (what people approved, and to whom they write, is
//! personal). A reader sees the old file or the new one, never half of one.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;

/// Writes `value` as JSON to `file` whole.
pub(crate) fn keep(file: &Path, value: &impl serde::Serialize) -> std::io::Result<()> {
    let text = serde_json::to_vec_pretty(value).map_err(std::io::Error::other)?;
    // A name of this process's own: two Portcullis processes sharing the state directory never
    // write into one new file.
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
