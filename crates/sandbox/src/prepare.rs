//! `prepare`: a profile turned into kernel objects in the parent, ready to install on a command.

use std::fmt;
use std::path::PathBuf;

use crate::child::{self, ChildCapabilities, ChildHook, ChildLimit};
use crate::error::SandboxError;
use crate::filter;
use crate::names;
use crate::profile::{Limit, Limits, Profile};
use crate::ruleset;
use crate::summary::{FsAccess, SocketPolicy, Summary, bytes};
use crate::support::{self, probe};

/// The first landlock ABI that checks the path of a unix socket `connect` (`RESOLVE_UNIX`).
const UNIX_PATH_RULES_ABI: u32 = 9;

/// A sandbox built for one spawn: the landlock ruleset (an open descriptor), the compiled seccomp
/// programs and the limits, with what they amount to.
///
/// Only [`prepare`] makes one, so a command can only carry a sandbox the kernel accepted.
#[derive(Debug)]
pub struct Prepared {
    hook: ChildHook,
    summary: Summary,
    warnings: Vec<Warning>,
}

/// Something the caller should log: the sandbox holds, but is not quite what the profile said.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Warning {
    /// A profile path does not exist, so it grants nothing (never a reason to grant more).
    MissingPath {
        /// The path as given.
        path: PathBuf,
        /// The access it would have had.
        access: FsAccess,
    },
    /// A limit was above Portcullis's own hard limit, which an unprivileged process cannot raise;
    /// the upstream gets the hard limit, which is stricter.
    LimitLowered {
        /// Which limit.
        limit: Limit,
        /// What the profile asked.
        requested: u64,
        /// What the child gets.
        effective: u64,
    },
    /// Unix sockets are granted and this landlock ABI does not check the path of a socket the
    /// upstream connects to.
    UnixSocketPathsUnchecked {
        /// The kernel's landlock ABI.
        abi: u32,
    },
    /// A process limit is set and Portcullis runs as root: the kernel exempts root from
    /// `RLIMIT_NPROC` whatever its capabilities, so the limit does not hold.
    ProcessLimitNotForRoot,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Warning::MissingPath { path, access } => write!(
                f,
                "sandbox path `{}` ({}) does not exist; it grants nothing",
                path.display(),
                access.describe()
            ),
            Warning::LimitLowered {
                limit,
                requested,
                effective,
            } => {
                let render = |value: u64| match limit {
                    Limit::AddressSpace | Limit::FileSize => bytes(value),
                    Limit::Processes | Limit::OpenFiles => value.to_string(),
                };
                write!(
                    f,
                    "the {} limit {} is above Portcullis's own hard limit; the upstream gets {}",
                    limit.name(),
                    render(*requested),
                    render(*effective)
                )
            }
            Warning::ProcessLimitNotForRoot => f.write_str(
                "the processes limit is not enforced: Portcullis runs as root, and the kernel \
                 exempts root from RLIMIT_NPROC (run Portcullis as an unprivileged user for it \
                 to hold)",
            ),
            Warning::UnixSocketPathsUnchecked { abi } => write!(
                f,
                "unix sockets are granted and landlock ABI {abi} does not check socket paths: the \
                 upstream can connect to any unix socket the user can reach (ABI \
                 {UNIX_PATH_RULES_ABI} limits this to read-write paths)"
            ),
        }
    }
}

/// A command the sandbox can be installed on: `std::process::Command` or
/// `tokio::process::Command`.
pub trait Spawnable: sealed::Sealed {
    #[doc(hidden)]
    fn std_command(&mut self) -> &mut std::process::Command;
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for std::process::Command {}
    impl Sealed for tokio::process::Command {}
}

impl Spawnable for std::process::Command {
    fn std_command(&mut self) -> &mut std::process::Command {
        self
    }
}

impl Spawnable for tokio::process::Command {
    fn std_command(&mut self) -> &mut std::process::Command {
        self.as_std_mut()
    }
}

impl Prepared {
    /// Installs the sandbox on `command` as a `pre_exec` hook. Consumes the sandbox: each spawn
    /// gets its own [`prepare`] (a restart prepares again, so it sees paths created since).
    ///
    /// A child that cannot enter the sandbox never runs the program: the spawn fails with the
    /// errno of the step that failed.
    pub fn install<C: Spawnable>(self, command: &mut C) {
        child::install(self.hook, command.std_command());
    }

    /// The effective sandbox.
    pub fn summary(&self) -> &Summary {
        &self.summary
    }

    /// What the caller should log before spawning.
    pub fn warnings(&self) -> &[Warning] {
        &self.warnings
    }

    /// The effective sandbox and its warnings, for a person (`portcullis check`).
    pub fn describe(&self) -> String {
        let mut text = self.summary.describe();
        if !self.warnings.is_empty() {
            text.push_str("warnings:\n");
            for warning in &self.warnings {
                text.push_str("  ");
                text.push_str(&warning.to_string());
                text.push('\n');
            }
        }
        text
    }

    /// The stable text the caller hashes for the evidence log (see [`Summary::digest_input`]).
    pub fn digest_input(&self) -> String {
        self.summary.digest_input()
    }
}

/// Builds the sandbox for one spawn, in the parent: checks the kernel can enforce everything the
/// profile needs, opens the paths, creates the landlock ruleset, compiles the seccomp programs.
///
/// There is no best-effort mode: if the kernel cannot enforce a part, this fails and says which.
/// A caller that wants an upstream unsandboxed decides so itself and does not call this.
pub fn prepare(profile: &Profile) -> Result<Prepared, SandboxError> {
    let abi = support::check(profile, &probe())?;
    // Every path is checked before any is opened, so the error does not depend on which paths
    // happen to exist.
    if let Some(path) = profile
        .read_only
        .iter()
        .chain(&profile.read_write)
        .find(|path| !path.is_absolute())
    {
        return Err(SandboxError::RelativePath { path: path.clone() });
    }

    let sorted = |ports: &[u16]| {
        let mut ports = ports.to_vec();
        ports.sort_unstable();
        ports.dedup();
        ports
    };
    if !profile.tcp_connect_hosts.is_empty() && !profile.tcp_connect.is_empty() {
        let ports: Vec<String> = sorted(&profile.tcp_connect)
            .iter()
            .map(u16::to_string)
            .collect();
        return Err(SandboxError::PortsBesideHosts {
            ports: ports.join(", "),
        });
    }

    let mut warnings = Vec::new();
    let (limits, child_limits) = effective_limits(&profile.limits, &mut warnings)?;
    let sockets = SocketPolicy {
        inet_tcp: profile.grants_tcp(),
        unix: profile.unix_sockets,
        tcp_bind: !profile.tcp_bind.is_empty(),
    };
    let programs = filter::compile(sockets)?;
    let capabilities = capabilities()?;
    // Last of what can fail early: it makes namespaces and starts the forwarder (both undone
    // when it is dropped, should a later step fail).
    let isolation = if profile.tcp_connect_hosts.is_empty() {
        None
    } else {
        Some(names::isolate(&profile.tcp_connect_hosts)?)
    };
    let generated = isolation
        .as_ref()
        .map_or(&[][..], |isolation| &isolation.readable[..]);
    let built = ruleset::build(profile, abi, generated)?;
    warnings.extend(built.warnings);
    if profile.unix_sockets && abi < UNIX_PATH_RULES_ABI {
        warnings.push(Warning::UnixSocketPathsUnchecked { abi });
    }

    let (hosts, network) = match isolation {
        Some(isolation) => (isolation.hosts, Some(isolation.child)),
        None => (Vec::new(), None),
    };
    let summary = Summary {
        landlock_abi: abi,
        paths: built.paths,
        tcp_connect: sorted(&profile.tcp_connect),
        hosts,
        tcp_bind: sorted(&profile.tcp_bind),
        sockets,
        limits,
    };
    if capabilities.setpcap && limits.get(Limit::Processes).is_some() {
        warnings.push(Warning::ProcessLimitNotForRoot);
    }
    Ok(Prepared {
        hook: ChildHook::new(
            network,
            child_limits,
            capabilities,
            built.descriptor,
            programs,
        ),
        summary,
        warnings,
    })
}

/// What the child can drop of its capabilities: the kernel's last capability, and whether
/// Portcullis holds `CAP_SETPCAP` (bit 8 of its effective set in `/proc/self/status`).
fn capabilities() -> Result<ChildCapabilities, SandboxError> {
    let unreadable = |what: &str| SandboxError::Capabilities {
        what: what.to_owned(),
    };
    let last = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|text| text.trim().parse::<u32>().ok())
        .ok_or_else(|| unreadable("/proc/sys/kernel/cap_last_cap"))?;
    let status = std::fs::read_to_string("/proc/self/status")
        .map_err(|_| unreadable("/proc/self/status"))?;
    let effective = status
        .lines()
        .find_map(|line| line.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .ok_or_else(|| unreadable("the effective set in /proc/self/status"))?;
    Ok(ChildCapabilities {
        last,
        setpcap: effective & (1 << 8) != 0,
    })
}

/// Each requested limit, lowered to Portcullis's own hard limit where it is above it.
fn effective_limits(
    requested: &Limits,
    warnings: &mut Vec<Warning>,
) -> Result<(Limits, Vec<ChildLimit>), SandboxError> {
    let mut effective = Limits::default();
    let mut child_limits = Vec::new();
    for limit in Limit::ALL {
        let Some(value) = requested.get(limit) else {
            continue;
        };
        let (_, hard) = child::current_limit(limit)
            .map_err(|source| SandboxError::ReadLimit { limit, source })?;
        let value_in_effect = value.min(hard);
        if value_in_effect < value {
            warnings.push(Warning::LimitLowered {
                limit,
                requested: value,
                effective: value_in_effect,
            });
        }
        effective.set(limit, Some(value_in_effect));
        child_limits.push(ChildLimit::new(limit, value_in_effect));
    }
    Ok((effective, child_limits))
}
