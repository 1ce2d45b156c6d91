//! Why a sandbox could not be prepared, in words a person can act on.

use std::io;
use std::path::PathBuf;

use crate::profile::Limit;
use crate::support::{Requirement, render_missing};

/// Why [`prepare`](crate::prepare) refused. Every variant means the upstream must not be started
/// with this profile: there is no partial sandbox.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SandboxError {
    /// The kernel was built without landlock.
    #[error(
        "the kernel has no landlock (it was built without `CONFIG_SECURITY_LANDLOCK`); \
         the sandbox needs Linux 6.12 or later with landlock, or turn the sandbox off for this \
         upstream"
    )]
    LandlockNotBuilt,
    /// Landlock is built in but was not enabled at boot.
    #[error(
        "landlock is built into the kernel but not enabled; add `landlock` to the `lsm=` boot \
         parameter, or turn the sandbox off for this upstream"
    )]
    LandlockNotEnabled,
    /// The kernel's landlock ABI is older than what the profile needs.
    #[error("the kernel's landlock ABI is {abi}; {}", render_missing(missing))]
    LandlockTooOld {
        /// The kernel's ABI.
        abi: u32,
        /// What the profile needs that this ABI lacks, oldest first.
        missing: Vec<Requirement>,
    },
    /// The kernel cannot install seccomp filters that return an errno.
    #[error(
        "the kernel cannot install seccomp filters (it needs `CONFIG_SECCOMP_FILTER`); \
         turn the sandbox off for this upstream"
    )]
    SeccompUnavailable,
    /// Portcullis was built for an architecture the seccomp compiler does not know.
    #[error(
        "the sandbox's seccomp filter does not support `{arch}` (only x86_64, aarch64 and riscv64)"
    )]
    UnsupportedArch {
        /// `std::env::consts::ARCH`.
        arch: &'static str,
    },
    /// A profile path is relative, so it would depend on Portcullis's working directory.
    #[error("sandbox path `{}` is relative; give an absolute path", path.display())]
    RelativePath {
        /// The path as given.
        path: PathBuf,
    },
    /// A profile path exists but cannot be opened (a missing path is only a warning).
    #[error("cannot open sandbox path `{}`: {source}", path.display())]
    OpenPath {
        /// The path as given.
        path: PathBuf,
        /// Why `open` failed.
        source: io::Error,
    },
    /// The landlock ruleset could not be built.
    #[error("cannot build the landlock ruleset: {source}")]
    Landlock {
        /// The landlock crate's error.
        #[from]
        source: landlock::RulesetError,
    },
    /// The kernel created no landlock ruleset although it reported support.
    #[error("the kernel created no landlock ruleset; the sandbox cannot be enforced")]
    NoRuleset,
    /// The seccomp filter could not be compiled.
    #[error("cannot compile the seccomp filter: {source}")]
    Seccomp {
        /// The seccomp compiler's error.
        #[from]
        source: seccompiler::BackendError,
    },
    /// A compiled seccomp program is longer than the kernel accepts.
    #[error("the seccomp filter has {length} instructions; the kernel takes at most 4096")]
    FilterTooLong {
        /// Instructions in the program.
        length: usize,
    },
    /// What the process's capabilities are could not be read.
    #[error("cannot read {what}, which the sandbox needs to drop the upstream's capabilities")]
    Capabilities {
        /// The file or value that could not be read.
        what: String,
    },
    /// Portcullis's own resource limit could not be read.
    #[error("cannot read the current {} limit: {source}", limit.name())]
    ReadLimit {
        /// Which limit.
        limit: Limit,
        /// Why `getrlimit` failed.
        source: io::Error,
    },
    /// Host names and ports on any address in one profile: from the network of its own that
    /// names give, no address is reachable.
    #[error(
        "the profile grants host names and ports on any address ({ports}); host names give the \
         upstream a network of its own in which no address is reachable, so name the host of each \
         port instead"
    )]
    PortsBesideHosts {
        /// The ports, as a person reads them.
        ports: String,
    },
    /// More host names than the sandbox serves.
    #[error(
        "the profile grants {count} host names; at most {} can be granted",
        crate::names::MAX_HOSTS
    )]
    TooManyHosts {
        /// How many distinct names.
        count: usize,
    },
    /// Host names are granted and the system has no `/etc/hosts` to put the upstream's own over.
    #[error(
        "host names are granted and `/etc/hosts` does not exist (or is not a file); the sandbox \
         puts the upstream's own hosts file over it, so create it (it may be empty)"
    )]
    NoHostsFile,
    /// The upstream's own hosts file and resolver files could not be written.
    #[error("cannot write the upstream's hosts file: {source}")]
    HostsFile {
        /// Why.
        source: io::Error,
    },
    /// The user and network namespace that host names need could not be made.
    #[error(
        "cannot make the network namespace that host-name grants need: {source}; the kernel must \
         let Portcullis's user make user namespaces (`user.max_user_namespaces` above 0, and on \
         Ubuntu `kernel.apparmor_restrict_unprivileged_userns = 0` or an AppArmor profile that \
         allows it), or grant ports instead of names"
    )]
    Namespace {
        /// Why.
        source: io::Error,
    },
    /// The forwarder of the granted host names could not be started.
    #[error("cannot start the forwarder of the granted host names: {source}")]
    Forwarder {
        /// Why.
        source: io::Error,
    },
}
