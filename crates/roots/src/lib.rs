//! Roots for Portcullis: the directories a tool call's path arguments must stay inside, and the
//! check that keeps every other path from reaching the upstream.
//!
//! Key design decision: a path is resolved the way the upstream's kernel will resolve it
//! (relative to the upstream's working directory, symbolic links followed component by
//! component, `..` applied to what a link led to) and only the result is compared with the
//! roots, by components and as bytes. Anything that cannot be resolved with certainty is
//! refused; there is no fallback to the path as written.
//!
//! The pieces, in the order a call meets them:
//! - [`Roots`]: canonical root directories, from config ([`Roots::from_paths`]) or from the
//!   client's `file://` URIs ([`Roots::from_client_uris`]).
//! - [`effective_roots`]: when the client offers roots, the effective roots are the
//!   intersection of its roots and the granted ones (for each pair, the deeper of the two when
//!   one contains the other; nothing when they are disjoint); when it offers none, the granted
//!   roots alone. A client can narrow the boundary, never widen it.
//! - [`Resolver`]: turns an argument into a [`ResolvedPath`], as one upstream reads it.
//! - [`check`]: whether a [`ResolvedPath`] is inside the roots.
//! - [`PathArguments`]: which arguments of a tool are paths (from its input schema and from
//!   config), and [`PathArguments::check_arguments`] over a call's arguments.
//!
//! Every refusal's `Display` is a message for the client: it names the argument as given and
//! why, and never where a symbolic link points. See README.md for the full rules and what this
//! crate cannot do (it does not stop a file being swapped between the check and the upstream's
//! use of it; the kernel sandbox backs it up).
#![forbid(unsafe_code)]
#![cfg(unix)]

mod arguments;
mod error;
mod resolve;
mod roots;
mod uri;

pub use arguments::{CheckedPath, MAX_CHECKED_VALUES, MAX_DEPTH, PathArguments};
pub use error::{
    ArgumentDenied, ArgumentReason, DenyReason, PathDenied, PointerError, ResolverError, RootError,
    RootReason,
};
pub use resolve::{
    MAX_NAME_BYTES, MAX_PATH_BYTES, MAX_SYMLINK_HOPS, ResolvedPath, Resolver, Tilde,
};
pub use roots::{Roots, check, effective_roots};

#[cfg(test)]
mod tests;
