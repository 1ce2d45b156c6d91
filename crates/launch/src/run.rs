//! Running the installers (npm, python's venv and pip) outside the sandbox, as the user, and
//! finding programs on a search path.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::LaunchError;

/// `name` on `search_path` (a `:`-separated list), as an absolute path.
pub(crate) fn find_program(name: &str, search_path: &str) -> Option<PathBuf> {
    if name.contains('/') {
        let path = PathBuf::from(name);
        return path.is_file().then_some(path);
    }
    search_path
        .split(':')
        .filter(|dir| dir.starts_with('/'))
        .map(|dir| Path::new(dir).join(name))
        .find(|path| path.is_file())
}

/// `entry` followed by the server's own arguments.
pub(crate) fn with_args(entry: &Path, args: &[String]) -> Vec<String> {
    std::iter::once(entry.display().to_string())
        .chain(args.iter().cloned())
        .collect()
}

/// `uid:gid` of this process, for a container's `--user`.
pub(crate) fn caller() -> String {
    format!(
        "{}:{}",
        rustix::process::getuid().as_raw(),
        rustix::process::getgid().as_raw()
    )
}

/// Runs `command` for `upstream`'s package; on failure the error names what ran and the end
/// of what it printed (an installer's own explanation: a missing package, no network).
pub(crate) fn run(
    upstream: &str,
    what: &str,
    command: &mut Command,
) -> Result<String, LaunchError> {
    let output = command.output().map_err(|error| {
        LaunchError::upstream(
            upstream,
            format!(
                "{what}: `{}` could not be run: {error}",
                program_of(command)
            ),
        )
    })?;
    if output.status.success() {
        return Ok(String::from_utf8_lossy(&output.stdout).into_owned());
    }
    let said = String::from_utf8_lossy(&output.stderr);
    let tail: Vec<&str> = said.lines().filter(|l| !l.trim().is_empty()).collect();
    let tail = tail
        .get(tail.len().saturating_sub(4)..)
        .unwrap_or_default()
        .join(" | ");
    Err(LaunchError::upstream(
        upstream,
        format!("{what} failed: {}; it said: {tail}", plain_reason(&said)),
    ))
}

/// What an installer's output says went wrong, in plain words.
fn plain_reason(said: &str) -> &'static str {
    const UNREACHABLE: &[&str] = &[
        "ECONNREFUSED",
        "ENOTFOUND",
        "EAI_AGAIN",
        "ETIMEDOUT",
        "ECONNRESET",
        "ENETUNREACH",
        "Failed to establish a new connection",
        "Temporary failure in name resolution",
        "Network is unreachable",
    ];
    const MISSING: &[&str] = &[
        "E404",
        "404 Not Found",
        "could not be found",
        "No matching distribution found",
        "Could not find a version that satisfies",
        "ETARGET",
        "No matching version found",
    ];
    if UNREACHABLE.iter().any(|needle| said.contains(needle)) {
        "its registry could not be reached (is this machine offline, or behind a proxy npm or pip is not told about?)"
    } else if MISSING.iter().any(|needle| said.contains(needle)) {
        "the registry has no such package, or no such version of it"
    } else {
        "see its own words below"
    }
}

fn program_of(command: &Command) -> String {
    command.get_program().to_string_lossy().into_owned()
}

/// The string at `path` (object keys) in `value`.
pub(crate) fn field(value: &Value, path: &[&str]) -> Option<String> {
    path.iter()
        .try_fold(value, |inner, key| inner.get(key))
        .and_then(Value::as_str)
        .map(str::to_owned)
}

/// A JSON file an installer wrote.
pub(crate) fn read_json(upstream: &str, path: &Path) -> Result<Value, LaunchError> {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok())
        .ok_or_else(|| LaunchError::upstream(upstream, format!("cannot read {}", path.display())))
}
