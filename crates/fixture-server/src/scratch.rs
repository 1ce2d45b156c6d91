//! The scratch directory that the file tools and resources work in.
//!
//! Paths from clients are checked lexically: absolute paths and `..` components are refused.
//! This is not containment (Portcullis and its sandbox own that); it only keeps the fixture
//! from being a footgun when a test passes a wrong path.

use std::{
    fmt,
    path::{Component, Path, PathBuf},
};

/// File the `send_message` tool appends to, one JSON object a line.
pub(crate) const OUTBOX: &str = "outbox.jsonl";
/// Present once `rug_pull` changed the tool definitions.
pub(crate) const RUG_PULLED: &str = "rug-pulled";
/// File the `slow` tool appends `cancelled` to when its call is cancelled.
pub(crate) const CANCELLED_LOG: &str = "cancelled.log";

/// The scratch directory, canonicalised once at start-up.
#[derive(Debug, Clone)]
pub(crate) struct Scratch {
    root: PathBuf,
}

/// Why a client path was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PathError {
    Empty,
    Absolute(String),
    Parent(String),
}

impl fmt::Display for PathError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => write!(formatter, "path is empty"),
            Self::Absolute(path) => write!(
                formatter,
                "path `{path}` is absolute: use a path relative to the scratch directory"
            ),
            Self::Parent(path) => write!(
                formatter,
                "path `{path}` has a `..` component: paths must stay inside the scratch directory"
            ),
        }
    }
}

impl Scratch {
    /// Creates the directory if needed and resolves it to an absolute path.
    pub(crate) fn open(directory: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(directory)?;
        Ok(Self {
            root: directory.canonicalize()?,
        })
    }

    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    /// Maps a client-supplied relative path to a path inside the scratch directory.
    pub(crate) fn resolve(&self, relative: &str) -> Result<PathBuf, PathError> {
        check_relative(relative)?;
        Ok(self.root.join(relative))
    }

    /// Path of a file the fixture itself writes (outbox, cancellation log).
    pub(crate) fn own_file(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// Relative paths (with `/` separators) of regular files under the scratch directory
    /// that start with `prefix`, sorted, at most `limit` of them, plus whether more matched.
    pub(crate) fn files_with_prefix(&self, prefix: &str, limit: usize) -> (Vec<String>, bool) {
        // Bounded so that a completion request on a huge scratch directory stays cheap.
        const MAX_DEPTH: usize = 8;
        let mut found = Vec::new();
        let mut pending = vec![(self.root.clone(), String::new(), 0)];
        while let Some((directory, relative, depth)) = pending.pop() {
            let Ok(entries) = std::fs::read_dir(&directory) else {
                continue;
            };
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                let path = if relative.is_empty() {
                    name
                } else {
                    format!("{relative}/{name}")
                };
                let Ok(file_type) = entry.file_type() else {
                    continue;
                };
                if file_type.is_dir() && depth < MAX_DEPTH {
                    pending.push((entry.path(), path, depth + 1));
                } else if file_type.is_file() && path.starts_with(prefix) {
                    found.push(path);
                }
            }
        }
        found.sort();
        let more = found.len() > limit;
        found.truncate(limit);
        (found, more)
    }
}

/// Refuses empty paths, absolute paths and `..` components.
fn check_relative(relative: &str) -> Result<(), PathError> {
    let mut has_name = false;
    for component in Path::new(relative).components() {
        match component {
            Component::Normal(_) => has_name = true,
            Component::CurDir => {}
            Component::ParentDir => return Err(PathError::Parent(relative.to_owned())),
            Component::RootDir | Component::Prefix(_) => {
                return Err(PathError::Absolute(relative.to_owned()));
            }
        }
    }
    if has_name {
        Ok(())
    } else {
        Err(PathError::Empty)
    }
}

#[cfg(test)]
mod tests;
