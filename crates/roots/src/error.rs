//! Why a path, a root or an argument is refused. Every `Display` is safe to send to the client:
//! it names the argument as the client gave it and says why, and never where a symbolic link
//! points (the link may lead outside the roots, and its target is not the client's to learn).

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use crate::arguments::MAX_CHECKED_VALUES;
use crate::arguments::MAX_DEPTH;
use crate::resolve::{MAX_NAME_BYTES, MAX_PATH_BYTES};

/// Why a path is refused. The variants that name a link (`Resolves…`, `Unresolvable`) are used
/// once resolution has followed a symbolic link, so that the message does not describe the
/// link's target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DenyReason {
    Empty,
    Nul,
    TooLong,
    NameTooLong,
    /// A leading `~` when the upstream's reading of it is unknown.
    Tilde,
    /// `~user`: another user's home directory, which Portcullis cannot look up for the upstream.
    TildeUser,
    NotFileUri,
    UriHost,
    UriQuery,
    UriEncoding,
    UriCharacters,
    /// `..` after a component that does not exist: its meaning depends on what gets created.
    ParentOfMissing,
    TooManyLinks,
    /// An I/O error other than "not found" while resolving, before any link was followed.
    Io(io::ErrorKind),
    /// An I/O error, or `..` after a missing component, once a link was followed; what went
    /// wrong is withheld.
    Unresolvable,
    Special,
    ResolvesSpecial,
    Outside,
    ResolvesOutside,
    NoRoots,
}

impl DenyReason {
    /// A stable short name for logs, evidence and tests.
    pub fn code(self) -> &'static str {
        match self {
            Self::Empty => "empty",
            Self::Nul => "nul",
            Self::TooLong => "too-long",
            Self::NameTooLong => "name-too-long",
            Self::Tilde => "tilde",
            Self::TildeUser => "tilde-user",
            Self::NotFileUri => "not-file-uri",
            Self::UriHost => "uri-host",
            Self::UriQuery => "uri-query",
            Self::UriEncoding => "uri-encoding",
            Self::UriCharacters => "uri-characters",
            Self::ParentOfMissing => "parent-of-missing",
            Self::TooManyLinks => "too-many-links",
            Self::Io(_) => "io",
            Self::Unresolvable => "unresolvable",
            Self::Special => "special",
            Self::ResolvesSpecial => "resolves-special",
            Self::Outside => "outside",
            Self::ResolvesOutside => "resolves-outside",
            Self::NoRoots => "no-roots",
        }
    }
}

impl fmt::Display for DenyReason {
    /// A predicate that follows the path in a sentence: "`/etc/passwd` is outside …".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("is empty"),
            Self::Nul => f.write_str("contains a NUL byte"),
            Self::TooLong => write!(f, "is longer than {MAX_PATH_BYTES} bytes"),
            Self::NameTooLong => write!(f, "has a component longer than {MAX_NAME_BYTES} bytes"),
            Self::Tilde => f.write_str(
                "starts with `~`, which the upstream may read as a home directory; give an absolute path",
            ),
            Self::TildeUser => {
                f.write_str("starts with `~user`, another user's home directory, which is not allowed")
            }
            Self::NotFileUri => f.write_str("is not a `file://` URI"),
            Self::UriHost => f.write_str("names a host other than `localhost`"),
            Self::UriQuery => f.write_str("has a query or a fragment"),
            Self::UriEncoding => f.write_str("has an invalid percent-encoding"),
            Self::UriCharacters => f.write_str(
                "contains a backslash, a control character or surrounding space, which URI parsers read differently",
            ),
            Self::ParentOfMissing => f.write_str("has `..` after a component that does not exist"),
            Self::TooManyLinks => f.write_str("has too many levels of symbolic links"),
            Self::Io(kind) => write!(f, "cannot be resolved: {kind}"),
            Self::Unresolvable => f.write_str("cannot be resolved"),
            Self::Special => f.write_str(
                "is in `/proc` or is a `/dev/fd` descriptor link, which are never allowed",
            ),
            Self::ResolvesSpecial => f.write_str("resolves to a place that is never allowed"),
            Self::Outside => f.write_str("is outside the allowed roots"),
            Self::ResolvesOutside => f.write_str("resolves outside the allowed roots"),
            Self::NoRoots => f.write_str("is not allowed: no roots are allowed for this upstream"),
        }
    }
}

/// A path argument that must not reach the upstream.
#[derive(Clone, PartialEq, Eq, thiserror::Error)]
pub struct PathDenied {
    shown: String,
    reason: DenyReason,
    resolved: Option<PathBuf>,
}

impl PathDenied {
    pub(crate) fn new(shown: String, reason: DenyReason) -> Self {
        Self {
            shown,
            reason,
            resolved: None,
        }
    }

    pub(crate) fn with_resolved(mut self, resolved: PathBuf) -> Self {
        self.resolved = Some(resolved);
        self
    }

    pub fn reason(&self) -> DenyReason {
        self.reason
    }

    /// The argument as the client gave it, made printable and shortened.
    pub fn argument(&self) -> &str {
        &self.shown
    }

    /// Where the path resolved to, when it got that far. For the log only: it may name a link's
    /// target outside the roots, which the client must not learn.
    pub fn resolved_for_log(&self) -> Option<&Path> {
        self.resolved.as_deref()
    }
}

impl fmt::Display for PathDenied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.reason == DenyReason::Empty {
            return f.write_str("an empty path is not allowed");
        }
        write!(f, "`{}` {}", self.shown, self.reason)
    }
}

impl fmt::Debug for PathDenied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PathDenied")
            .field("argument", &self.shown)
            .field("reason", &self.reason.code())
            .field("resolved", &self.resolved)
            .finish()
    }
}

/// Why a root cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RootReason {
    NotAbsolute,
    Missing,
    NotADirectory,
    /// The same refusals as for a path argument: a NUL, `/proc`, a link loop, an I/O error, a
    /// malformed URI.
    Path(DenyReason),
}

impl fmt::Display for RootReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotAbsolute => f.write_str("is not an absolute path"),
            Self::Missing => f.write_str("does not exist"),
            Self::NotADirectory => f.write_str("is not a directory"),
            Self::Path(reason) => reason.fmt(f),
        }
    }
}

/// A root that was refused when the roots were built. Granted roots come from config, so this
/// names the root as written; a client root is named by its URI.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("root `{root}` {reason}")]
pub struct RootError {
    pub root: String,
    pub reason: RootReason,
}

/// A resolver that cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ResolverError {
    #[error("the upstream's working directory `{}` is not an absolute path", .0.display())]
    RelativeBase(PathBuf),
    #[error("the home directory `{}` is not an absolute path", .0.display())]
    RelativeHome(PathBuf),
}

/// A configured path argument that is not a usable JSON pointer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("path argument `{pointer}` is not a JSON pointer: {reason}")]
pub struct PointerError {
    pub pointer: String,
    pub reason: &'static str,
}

/// Why a tool call's arguments are refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ArgumentReason {
    Path(PathDenied),
    /// A path argument that is neither a string nor an array of strings: the upstream might
    /// turn it into one in a way that was never checked.
    NotAString,
    NotAnObject,
    TooMany,
    TooDeep,
}

/// A tool call refused because of one of its arguments; `pointer` is the JSON pointer of the
/// offending value inside the arguments (`/paths/2`, `/edits/0/path`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ArgumentDenied {
    pub pointer: String,
    pub reason: ArgumentReason,
}

impl fmt::Display for ArgumentDenied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pointer = &self.pointer;
        match &self.reason {
            ArgumentReason::Path(denied) => write!(f, "`{pointer}`: {denied}"),
            ArgumentReason::NotAString => write!(
                f,
                "`{pointer}`: a path argument must be a string or an array of strings"
            ),
            ArgumentReason::NotAnObject => f.write_str("the arguments are not a JSON object"),
            ArgumentReason::TooMany => write!(
                f,
                "more than {MAX_CHECKED_VALUES} path arguments in one call are not allowed"
            ),
            ArgumentReason::TooDeep => write!(
                f,
                "`{pointer}`: arguments nested more than {MAX_DEPTH} levels deep are not allowed"
            ),
        }
    }
}
