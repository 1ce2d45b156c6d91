//! The landlock ruleset, built in the parent: handled rights, one rule per path and port, scopes.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use landlock::{
    ABI, Access, AccessFs, AccessNet, BitFlags, CompatLevel, Compatible as _, NetPort, PathBeneath,
    Ruleset, RulesetAttr as _, RulesetCreated, RulesetCreatedAttr as _, Scope,
};

use crate::error::SandboxError;
use crate::prepare::Warning;
use crate::profile::Profile;
use crate::summary::{FsAccess, GrantedPath, PathKind};

/// The ruleset's descriptor and what it grants.
pub(crate) struct Built {
    pub(crate) descriptor: OwnedFd,
    pub(crate) paths: Vec<GrantedPath>,
    pub(crate) warnings: Vec<Warning>,
}

/// Builds the ruleset for `abi` (the kernel's, already checked to be enough), with read access
/// to each of `generated` besides the profile's grants (the hosts file and resolver files
/// Portcullis wrote for a profile that grants host names; they are not the profile's, so they
/// are not in `paths`).
///
/// Every right of that ABI is handled, so anything no rule grants is denied. The compatibility
/// level is a hard requirement: a right or rule the kernel cannot enforce fails here instead of
/// being dropped silently, as landlock's default best effort would.
pub(crate) fn build(
    profile: &Profile,
    abi: u32,
    generated: &[PathBuf],
) -> Result<Built, SandboxError> {
    // The crate converts an integer ABI only reluctantly (it prefers a fixed, tested one); here
    // the kernel's own ABI is the point: handle every right it has, never fewer.
    let abi = ABI::from(i32::try_from(abi).unwrap_or(i32::MAX));
    let mut ruleset: RulesetCreated = Ruleset::default()
        .set_compatibility(CompatLevel::HardRequirement)
        .handle_access(AccessFs::from_all(abi))?
        .handle_access(AccessNet::from_all(abi))?
        .scope(Scope::AbstractUnixSocket | Scope::Signal)?
        .create()?;

    let mut paths = BTreeMap::new();
    let mut warnings = Vec::new();
    let requests = profile
        .read_only
        .iter()
        .map(|path| (path, FsAccess::ReadOnly))
        .chain(
            profile
                .read_write
                .iter()
                .map(|path| (path, FsAccess::ReadWrite)),
        );
    for (requested, access) in requests {
        let Some(file) = open_path(requested, access, &mut warnings)? else {
            continue;
        };
        let kind = match file.metadata() {
            Ok(metadata) if metadata.is_dir() => PathKind::Directory,
            Ok(_) => PathKind::File,
            Err(source) => {
                return Err(SandboxError::OpenPath {
                    path: requested.clone(),
                    source,
                });
            }
        };
        let rights = rights(abi, access, kind);
        let resolved = resolved_path(&file, requested);
        ruleset = ruleset.add_rule(PathBeneath::new(file, rights))?;
        // A path granted twice keeps its widest access; the kernel takes the union anyway.
        let entry = paths.entry(resolved.clone()).or_insert(GrantedPath {
            requested: requested.clone(),
            resolved,
            kind,
            access,
        });
        entry.access = entry.access.max(access);
    }

    for path in generated {
        let file = File::open(path).map_err(|source| SandboxError::OpenPath {
            path: path.clone(),
            source,
        })?;
        let rights = rights(abi, FsAccess::ReadOnly, PathKind::File);
        ruleset = ruleset.add_rule(PathBeneath::new(file, rights))?;
    }

    // A host name's port is checked too: inside its own network the upstream connects to the
    // name's address there, on that port.
    let host_ports = profile.tcp_connect_hosts.iter().map(|grant| grant.port());
    let mut connect: Vec<u16> = profile
        .tcp_connect
        .iter()
        .copied()
        .chain(host_ports)
        .collect();
    connect.sort_unstable();
    connect.dedup();
    for port in connect {
        ruleset = ruleset.add_rule(NetPort::new(port, AccessNet::ConnectTcp))?;
    }
    for &port in &profile.tcp_bind {
        ruleset = ruleset.add_rule(NetPort::new(port, AccessNet::BindTcp))?;
    }

    let descriptor = Option::<OwnedFd>::from(ruleset).ok_or(SandboxError::NoRuleset)?;
    Ok(Built {
        descriptor,
        paths: paths.into_values().collect(),
        warnings,
    })
}

/// Read-only is read and execute; read-write is every right of the ABI but making character and
/// block devices (a device node in a root, made by an upstream running as root, would open the
/// kernel log, or a whole disk). A file (not a directory) takes only the rights that apply to
/// files, which the kernel would otherwise refuse.
fn rights(abi: ABI, access: FsAccess, kind: PathKind) -> BitFlags<AccessFs> {
    let wanted = match access {
        FsAccess::ReadOnly => AccessFs::from_read(abi),
        FsAccess::ReadWrite => {
            AccessFs::from_all(abi) & !(AccessFs::MakeChar | AccessFs::MakeBlock)
        }
    };
    match kind {
        PathKind::Directory => wanted,
        PathKind::File => wanted & AccessFs::from_file(abi),
    }
}

/// Opens `path` with `O_PATH` (no read right needed, nothing read). A missing path is a warning
/// and grants nothing; any other failure is an error, since it means the config is wrong.
fn open_path(
    path: &Path,
    access: FsAccess,
    warnings: &mut Vec<Warning>,
) -> Result<Option<File>, SandboxError> {
    if !path.is_absolute() {
        return Err(SandboxError::RelativePath {
            path: path.to_path_buf(),
        });
    }
    match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH)
        .open(path)
    {
        Ok(file) => Ok(Some(file)),
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            warnings.push(Warning::MissingPath {
                path: path.to_path_buf(),
                access,
            });
            Ok(None)
        }
        Err(source) => Err(SandboxError::OpenPath {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Where the descriptor really points (symlinks resolved), as the kernel sees it.
fn resolved_path(file: &File, requested: &Path) -> PathBuf {
    let link = format!("/proc/self/fd/{}", file.as_raw_fd());
    fs::read_link(link)
        .or_else(|_| fs::canonicalize(requested))
        .unwrap_or_else(|_| requested.to_path_buf())
}
