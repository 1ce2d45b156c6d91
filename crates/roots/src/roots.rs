//! Roots: the directories a path may be inside, stored canonical; the rule that combines the
//! client's roots with the granted ones; the check of a resolved path against them.

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::error::{DenyReason, PathDenied, RootError, RootReason};
use crate::resolve::{ResolvedPath, check_text, shown, walk};
use crate::uri::file_uri_path;

/// A set of root directories, each absolute and with its symbolic links resolved, none inside
/// another (a root inside another adds nothing). Empty means nothing is allowed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Roots {
    // INVARIANT: canonical directories, sorted, none a prefix (by components) of another.
    dirs: Vec<PathBuf>,
}

impl Roots {
    /// No roots: every path is refused.
    pub fn none() -> Self {
        Self::default()
    }

    /// The granted roots, from config. Each must be an absolute path to an existing directory;
    /// the first one that is not is the error (a root silently dropped would leave the
    /// operator believing it is in force).
    pub fn from_paths<P: AsRef<Path>>(paths: &[P]) -> Result<Self, RootError> {
        let mut dirs = Vec::with_capacity(paths.len());
        for path in paths {
            let path = path.as_ref();
            let canonical =
                canonical_dir(path.as_os_str().as_bytes()).map_err(|reason| RootError {
                    root: shown(path.as_os_str().as_bytes()),
                    reason,
                })?;
            dirs.push(canonical);
        }
        Ok(Self::normalized(dirs))
    }

    /// The roots a client offered, as MCP `file://` URIs. The ones that cannot be used are
    /// returned as problems to log; the caller must still treat the client as having offered
    /// roots (see [`effective_roots`]).
    pub fn from_client_uris<S: AsRef<str>>(uris: &[S]) -> (Self, Vec<RootError>) {
        let mut dirs = Vec::with_capacity(uris.len());
        let mut problems = Vec::new();
        for uri in uris {
            let uri = uri.as_ref();
            let canonical = file_uri_path(uri)
                .map_err(RootReason::Path)
                .and_then(|path| canonical_dir(&path));
            match canonical {
                Ok(dir) => dirs.push(dir),
                Err(reason) => problems.push(RootError {
                    root: shown(uri.as_bytes()),
                    reason,
                }),
            }
        }
        (Self::normalized(dirs), problems)
    }

    pub fn is_empty(&self) -> bool {
        self.dirs.is_empty()
    }

    pub fn len(&self) -> usize {
        self.dirs.len()
    }

    /// The root directories, canonical, in order.
    pub fn iter(&self) -> impl Iterator<Item = &Path> {
        self.dirs.iter().map(PathBuf::as_path)
    }

    /// Every directory of any of `parts` (each already resolved), overlaps folded.
    pub fn union(parts: impl IntoIterator<Item = Roots>) -> Self {
        Self::normalized(parts.into_iter().flat_map(|roots| roots.dirs).collect())
    }

    /// Whether `path` (absolute, resolved) is one of the roots or inside one. By components,
    /// never by string prefix: `/srv/w_secret` is not inside `/srv/w`. Components are compared
    /// as bytes, with no Unicode normalisation, as Linux compares names.
    fn contains(&self, path: &Path) -> bool {
        self.dirs.iter().any(|dir| path.starts_with(dir))
    }

    fn normalized(mut dirs: Vec<PathBuf>) -> Self {
        // Sorted by components, an ancestor comes before everything inside it.
        dirs.sort();
        dirs.dedup();
        let mut kept: Vec<PathBuf> = Vec::with_capacity(dirs.len());
        for dir in dirs {
            if !kept.iter().any(|outer| dir.starts_with(outer)) {
                kept.push(dir);
            }
        }
        Self { dirs: kept }
    }
}

/// A root as the canonical directory it names.
fn canonical_dir(path: &[u8]) -> Result<PathBuf, RootReason> {
    if !path.starts_with(b"/") {
        return Err(RootReason::NotAbsolute);
    }
    check_text(path).map_err(RootReason::Path)?;
    let walked = walk(path).map_err(|(reason, _)| RootReason::Path(reason))?;
    if !walked.exists {
        return Err(RootReason::Missing);
    }
    match std::fs::symlink_metadata(&walked.path) {
        Ok(metadata) if metadata.is_dir() => Ok(walked.path),
        Ok(_) => Err(RootReason::NotADirectory),
        Err(error) => Err(RootReason::Path(DenyReason::Io(error.kind()))),
    }
}

/// The roots in force for a call.
///
/// When the client offers roots, the effective roots are their intersection with the granted
/// ones: for each pair of a client root and a granted root, the deeper of the two when one
/// contains the other, nothing when they are disjoint. A client can narrow what was granted but
/// never widen it. When the client offers none, the granted roots alone are in force.
///
/// Pass `None` when the client does not support roots or listed none at all; pass `Some` when
/// it listed any, even if none of them could be used (`Roots::from_client_uris` returned only
/// problems): a client that tried to narrow the boundary and failed then gets nothing, not
/// everything that was granted.
pub fn effective_roots(client: Option<&Roots>, granted: &Roots) -> Roots {
    let Some(client) = client else {
        return granted.clone();
    };
    let mut dirs = Vec::new();
    for offered in client.iter() {
        for allowed in granted.iter() {
            if offered.starts_with(allowed) {
                dirs.push(offered.to_path_buf());
            } else if allowed.starts_with(offered) {
                dirs.push(allowed.to_path_buf());
            }
        }
    }
    Roots::normalized(dirs)
}

/// Whether a resolved path may be used: every reading of it must be inside the roots. The
/// message names the argument as given; when a link was followed it says only that the path
/// resolves outside, not where.
pub fn check(roots: &Roots, resolved: &ResolvedPath) -> Result<(), PathDenied> {
    for reading in resolved.readings() {
        if roots.is_empty() {
            return Err(resolved.deny(DenyReason::NoRoots, reading));
        }
        if !roots.contains(reading) {
            let reason = if resolved.through_link() {
                DenyReason::ResolvesOutside
            } else {
                DenyReason::Outside
            };
            return Err(resolved.deny(reason, reading));
        }
    }
    Ok(())
}
