//! Resolving a path argument to where it really is: relative to the upstream's working
//! directory, `~` as the upstream reads it, symbolic links followed component by component the
//! way the kernel does, and the part that does not exist yet appended as written.

use std::ffi::{OsStr, OsString};
use std::fs;
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use crate::error::{DenyReason, PathDenied, ResolverError};
use crate::roots::{Roots, check};
use crate::uri::file_uri_path;

/// The longest path accepted, in bytes: Linux's `PATH_MAX` (4096) less the terminating NUL.
/// The kernel refuses longer ones, and an upstream that shortens or splits them instead would
/// reach something never checked.
pub const MAX_PATH_BYTES: usize = 4095;

/// The longest component accepted, in bytes: Linux's `NAME_MAX`.
pub const MAX_NAME_BYTES: usize = 255;

/// How many symbolic links one resolution may follow: Linux's own limit (`MAXSYMLINKS`), so a
/// chain the kernel would follow is followed here too, and a loop ends in a refusal.
pub const MAX_SYMLINK_HOPS: u32 = 40;

/// The places no path may be or resolve into, whatever the roots. `/proc` holds magic links
/// (`/proc/self/root`, `/proc/self/cwd`, `/proc/<pid>/fd/N`) that the kernel follows to objects
/// rather than to the path `readlink` shows, so they cannot be checked by resolving; the `/dev`
/// names are links into it.
const SPECIAL: [&str; 5] = [
    "/proc",
    "/dev/fd",
    "/dev/stdin",
    "/dev/stdout",
    "/dev/stderr",
];

/// The longest argument echoed back in a message, in characters.
const MAX_SHOWN_CHARS: usize = 160;

/// How the upstream reads a path that starts with `~`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Tilde {
    /// `~` and `~/…` mean this home directory (as `@modelcontextprotocol/server-filesystem`
    /// does); `~user/…` is refused.
    Expand(PathBuf),
    /// `~` is an ordinary character: `~/x` is a directory named `~` in the working directory.
    Literal,
    /// Refuse any path starting with `~`. The default, because Portcullis cannot know how an
    /// upstream reads it, and a guess that differs from the upstream's is an escape.
    #[default]
    Deny,
}

/// Resolves path arguments as one upstream will read them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolver {
    base: PathBuf,
    tilde: Tilde,
}

/// A path resolved by a [`Resolver`]: absolute, with no `.` or `..`, symbolic links resolved in
/// the part that exists. Only a resolver makes one, so [`check`] cannot be handed a path that
/// skipped resolution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedPath {
    path: PathBuf,
    /// Where the path leads when `..` is applied to the text first and links resolved after
    /// (what Node's `path.resolve` and WHATWG URL parsing do), when that differs from `path`.
    lexical: Option<PathBuf>,
    through_link: bool,
    shown: String,
}

impl ResolvedPath {
    /// Where the kernel will find the path.
    pub fn as_path(&self) -> &Path {
        &self.path
    }

    pub fn into_path_buf(self) -> PathBuf {
        self.path
    }

    /// Where the path leads when `..` is applied before links are resolved, if that is
    /// somewhere else. Both readings must be inside the roots.
    pub fn lexical_reading(&self) -> Option<&Path> {
        self.lexical.as_deref()
    }

    /// Whether resolution followed a symbolic link.
    pub fn through_link(&self) -> bool {
        self.through_link
    }

    /// Every place the upstream might reach with this path.
    pub(crate) fn readings(&self) -> impl Iterator<Item = &Path> {
        std::iter::once(self.path.as_path()).chain(self.lexical.as_deref())
    }

    pub(crate) fn deny(&self, reason: DenyReason, reached: &Path) -> PathDenied {
        PathDenied::new(self.shown.clone(), reason).with_resolved(reached.to_path_buf())
    }
}

impl Resolver {
    /// A resolver for an upstream working in `base`, reading `~` as `tilde` says. Neither needs to
    /// exist or be canonical; both must be absolute, so that Portcullis's own working directory
    /// never leaks in.
    pub fn new(base: impl Into<PathBuf>, tilde: Tilde) -> Result<Self, ResolverError> {
        let base = base.into();
        if !base.is_absolute() {
            return Err(ResolverError::RelativeBase(base));
        }
        if let Tilde::Expand(home) = &tilde
            && !home.is_absolute()
        {
            return Err(ResolverError::RelativeHome(home.clone()));
        }
        Ok(Self { base, tilde })
    }

    pub fn base(&self) -> &Path {
        &self.base
    }

    pub fn tilde(&self) -> &Tilde {
        &self.tilde
    }

    /// Resolves a path argument: relative to the base, `~` per [`Tilde`], links followed.
    pub fn resolve(&self, raw: &OsStr) -> Result<ResolvedPath, PathDenied> {
        let bytes = raw.as_bytes();
        let shown = shown(bytes);
        let deny = |reason| PathDenied::new(shown.clone(), reason);
        check_text(bytes).map_err(deny)?;
        let absolute = self.absolute(bytes).map_err(deny)?;
        check_text(&absolute).map_err(deny)?;
        resolve_absolute(&absolute, shown)
    }

    /// Resolves a `file://` URI argument (see the crate docs for what is accepted).
    pub fn resolve_uri(&self, raw: &str) -> Result<ResolvedPath, PathDenied> {
        let shown = shown(raw.as_bytes());
        let deny = |reason| PathDenied::new(shown.clone(), reason);
        let absolute = file_uri_path(raw).map_err(deny)?;
        check_text(&absolute).map_err(deny)?;
        resolve_absolute(&absolute, shown)
    }

    /// Resolves a path argument and checks it against `roots`.
    pub fn resolve_within(&self, roots: &Roots, raw: &OsStr) -> Result<ResolvedPath, PathDenied> {
        let resolved = self.resolve(raw)?;
        check(roots, &resolved)?;
        Ok(resolved)
    }

    /// Resolves a `file://` URI argument and checks it against `roots`.
    pub fn resolve_uri_within(&self, roots: &Roots, raw: &str) -> Result<ResolvedPath, PathDenied> {
        let resolved = self.resolve_uri(raw)?;
        check(roots, &resolved)?;
        Ok(resolved)
    }

    /// The argument as an absolute path, before any resolution.
    fn absolute(&self, raw: &[u8]) -> Result<Vec<u8>, DenyReason> {
        if raw.starts_with(b"/") {
            return Ok(raw.to_vec());
        }
        if let Some(after) = raw.strip_prefix(b"~") {
            match &self.tilde {
                Tilde::Deny => return Err(DenyReason::Tilde),
                Tilde::Expand(home) if after.is_empty() || after.starts_with(b"/") => {
                    return Ok(joined(home, after));
                }
                Tilde::Expand(_) => return Err(DenyReason::TildeUser),
                Tilde::Literal => {}
            }
        }
        Ok(joined(&self.base, raw))
    }
}

/// `base` and `tail` with one `/` between them (extra ones are harmless: they are dropped when
/// the path is split into components).
fn joined(base: &Path, tail: &[u8]) -> Vec<u8> {
    let mut out = base.as_os_str().as_bytes().to_vec();
    out.push(b'/');
    out.extend_from_slice(tail);
    out
}

/// The checks on the text alone: empty, NUL, `PATH_MAX`, `NAME_MAX`.
pub(crate) fn check_text(bytes: &[u8]) -> Result<(), DenyReason> {
    if bytes.is_empty() {
        return Err(DenyReason::Empty);
    }
    // A NUL ends the path for the kernel, so the upstream would open a prefix of what was
    // checked.
    if bytes.contains(&0) {
        return Err(DenyReason::Nul);
    }
    if bytes.len() > MAX_PATH_BYTES {
        return Err(DenyReason::TooLong);
    }
    if bytes
        .split(|b| *b == b'/')
        .any(|name| name.len() > MAX_NAME_BYTES)
    {
        return Err(DenyReason::NameTooLong);
    }
    Ok(())
}

/// Resolves an absolute path both ways the upstream might read it (`..` after links, as the
/// kernel does, and `..` before links, as path libraries and URL parsers do) and keeps both.
fn resolve_absolute(absolute: &[u8], shown: String) -> Result<ResolvedPath, PathDenied> {
    let deny = |(reason, through_link): (DenyReason, bool)| {
        PathDenied::new(shown.clone(), hide_behind_link(reason, through_link))
    };
    let physical = walk(absolute).map_err(deny)?;
    let mut through_link = physical.through_link;
    let mut lexical = None;
    if names(absolute).any(|name| name == b"..") {
        let cleaned = lexically_cleaned(absolute);
        let reading = walk(cleaned.as_os_str().as_bytes()).map_err(deny)?;
        through_link |= reading.through_link;
        if reading.path != physical.path {
            lexical = Some(reading.path);
        }
    }
    Ok(ResolvedPath {
        path: physical.path,
        lexical,
        through_link,
        shown,
    })
}

/// Once a link was followed, an I/O error, a missing directory or a special place says
/// something about where the link points, which may be outside the roots; the message then
/// says only that it failed.
fn hide_behind_link(reason: DenyReason, through_link: bool) -> DenyReason {
    match (reason, through_link) {
        (DenyReason::Io(_) | DenyReason::ParentOfMissing, true) => DenyReason::Unresolvable,
        (DenyReason::Special, true) => DenyReason::ResolvesSpecial,
        (reason, _) => reason,
    }
}

/// The names in a path, without empty ones (repeated or trailing slashes) and `.`.
fn names(path: &[u8]) -> impl Iterator<Item = &[u8]> {
    path.split(|b| *b == b'/')
        .filter(|name| !name.is_empty() && *name != b".")
}

/// `..` applied to the text: the parent of whatever is written before it.
fn lexically_cleaned(absolute: &[u8]) -> PathBuf {
    let mut cleaned = PathBuf::from("/");
    for name in names(absolute) {
        if name == b".." {
            cleaned.pop();
        } else {
            cleaned.push(OsStr::from_bytes(name));
        }
    }
    cleaned
}

pub(crate) struct Walk {
    pub(crate) path: PathBuf,
    pub(crate) exists: bool,
    pub(crate) through_link: bool,
}

/// Resolves an absolute path component by component, as the kernel does: each existing
/// component is looked at with `lstat`; a link is replaced by its target (relative to the link's
/// directory), up to [`MAX_SYMLINK_HOPS`]; `..` goes to the parent of what has been resolved so
/// far, so `d/link/..` is the parent of the link's target. From the first component that does
/// not exist, the rest is appended as written, and may not contain `..`. A dangling link is
/// therefore resolved to where its target would be created. Any error other than "not found"
/// refuses: there is no falling back to the path as written or to its parent.
///
/// The error carries whether a link had been followed when it happened.
pub(crate) fn walk(absolute: &[u8]) -> Result<Walk, (DenyReason, bool)> {
    // INVARIANT: `resolved` is absolute, has no `.` or `..`, and while `exists` holds it is a
    // directory (or, last, any file) reached without a link in it.
    let mut resolved = PathBuf::from("/");
    let mut pending: Vec<OsString> = reversed_names(absolute);
    let mut exists = true;
    let mut hops = 0;
    let mut through_link = false;
    while let Some(name) = pending.pop() {
        // Copies the flag as it was before this component.
        let fail = move |reason| (reason, through_link);
        if name.as_bytes() == b".." {
            if !exists {
                return Err(fail(DenyReason::ParentOfMissing));
            }
            resolved.pop();
            continue;
        }
        let candidate = resolved.join(&name);
        if SPECIAL.iter().any(|special| candidate.starts_with(special)) {
            return Err(fail(DenyReason::Special));
        }
        if !exists {
            resolved = candidate;
            continue;
        }
        match fs::symlink_metadata(&candidate) {
            Ok(metadata) if metadata.file_type().is_symlink() => {
                hops += 1;
                if hops > MAX_SYMLINK_HOPS {
                    return Err(fail(DenyReason::TooManyLinks));
                }
                let target = fs::read_link(&candidate).map_err(|error| fail(io_reason(&error)))?;
                through_link = true;
                let target = target.into_os_string().into_vec();
                if target.is_empty() {
                    return Err((DenyReason::Unresolvable, true));
                }
                if target.starts_with(b"/") {
                    resolved = PathBuf::from("/");
                }
                pending.extend(reversed_names(&target));
            }
            Ok(metadata) => {
                // The kernel refuses `file/x` and `file/..` with ENOTDIR; so do we, rather than
                // guess what the upstream makes of it.
                if !metadata.is_dir() && !pending.is_empty() {
                    return Err(fail(DenyReason::Io(io::ErrorKind::NotADirectory)));
                }
                resolved = candidate;
            }
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                exists = false;
                resolved = candidate;
            }
            Err(error) => return Err(fail(io_reason(&error))),
        }
    }
    Ok(Walk {
        path: resolved,
        exists,
        through_link,
    })
}

fn io_reason(error: &io::Error) -> DenyReason {
    DenyReason::Io(error.kind())
}

/// The names of a path, last first, so that popping yields them in order.
fn reversed_names(path: &[u8]) -> Vec<OsString> {
    let mut out: Vec<OsString> = names(path)
        .map(|name| OsString::from_vec(name.to_vec()))
        .collect();
    out.reverse();
    out
}

/// An argument as it may be shown in a message: lossy UTF-8, control characters escaped, long
/// ones shortened.
pub(crate) fn shown(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    let mut out = String::new();
    for (count, c) in text.chars().enumerate() {
        if count == MAX_SHOWN_CHARS {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}
