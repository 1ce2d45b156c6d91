//! Contains a stdio upstream of Portcullis with the Linux kernel: landlock for files, TCP ports,
//! signals and abstract unix sockets; a seccomp filter for what landlock cannot see (socket
//! families and protocols, io_uring, keyrings, metadata changes, namespaces, privileged calls,
//! device nodes, terminal injection); every capability dropped; resource limits; and every
//! inherited descriptor closed. Host names granted instead of ports give the upstream a network
//! of its own, where only those names resolve and Portcullis forwards each connection to what
//! the name resolves to outside (see `names.rs`).
//!
//! Key design decision: everything is built in the parent by [`prepare`] (paths opened, the
//! landlock ruleset created with every right as a hard requirement, the seccomp programs
//! compiled; with host names, the namespaces made, their listeners open and the forwarder
//! started), and the `pre_exec` hook that [`Prepared::install`] adds only makes system calls,
//! in a fixed order: (with host names) the namespaces joined and the resolver files mounted,
//! resource limits, descriptors marked close-on-exec, no_new_privs and landlock, then seccomp
//! last. A kernel that cannot enforce a part makes `prepare` fail: there is no partial sandbox. See README.md for what is and is not contained.
//!
//! ```no_run
//! # fn main() -> Result<(), portcullis_sandbox::SandboxError> {
//! use portcullis_sandbox::{Profile, prepare};
//!
//! let profile = Profile {
//!     read_only: vec!["/usr".into(), "/lib".into()],
//!     read_write: vec!["/tmp/upstream".into()],
//!     ..Profile::default()
//! };
//! let prepared = prepare(&profile)?;
//! for warning in prepared.warnings() {
//!     eprintln!("{warning}");
//! }
//! let mut command = tokio::process::Command::new("/usr/bin/node");
//! prepared.install(&mut command);
//! # Ok(())
//! # }
//! ```

#[expect(
    unsafe_code,
    reason = "`pre_exec`, the raw system calls of the child, and the namespace of host-name grants"
)]
mod child;
mod error;
mod filter;
mod forwarder;
mod names;
mod prepare;
mod profile;
mod ruleset;
mod summary;
mod support;

pub use error::SandboxError;

/// Every system call the filter refuses whatever the profile says, by name and number on this
/// architecture (what `describe` lists as "always refused", besides the argument rules).
pub fn refused_calls() -> impl Iterator<Item = (&'static str, i64)> {
    filter::REFUSED
        .iter()
        .flat_map(|group| group.calls.iter().copied())
}
pub use names::MAX_HOSTS;
pub use prepare::{Prepared, Spawnable, Warning, prepare};
pub use profile::{Limit, Limits, Profile};
pub use summary::{FsAccess, GrantedHost, GrantedPath, PathKind, SocketPolicy, Summary};
pub use support::{KernelSupport, LandlockSupport, Requirement, probe};

#[cfg(test)]
mod tests;
