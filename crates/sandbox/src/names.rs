//! Host-name grants: the network of its own an upstream gets when its profile names hosts.
//!
//! Each granted name gets a loopback address of its own inside (127.0.0.2, 127.0.0.3, ... in
//! name order). A generated hosts file maps each name to its address, and name resolution is
//! cut down to that file (`hosts: files` in a generated nsswitch.conf, a resolv.conf with no
//! name server, an empty nscd directory), so no other name resolves. At each address and
//! granted port a socket listens inside the namespace, served by the forwarder in Portcullis
//! (`forwarder.rs`), which connects to what the name resolves to outside, on that port. The
//! namespace has loopback alone: no address outside is reachable except through a name.
//!
//! The client inside still connects to `api.github.com`, so TLS (SNI, the certificate's name)
//! works end to end: Portcullis forwards bytes and never sees inside them.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::CString;
use std::fmt::Write as _;
use std::fs;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};

use portcullis_core::{HostName, HostPort};

use crate::child::netns::{self, Blocking, ChildMount, ChildNetwork};
use crate::error::SandboxError;
use crate::forwarder::{self, Route};
use crate::summary::GrantedHost;

/// The most host names one upstream may be granted: each takes an address and its listeners.
pub const MAX_HOSTS: usize = 1024;

/// The address of the first name: 127.0.0.1 stays the upstream's own `localhost`.
const FIRST_ADDRESS: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);

/// The system's hosts file, which the generated one is put over (it must exist to be).
const HOSTS: &str = "/etc/hosts";
/// The name service switch: which sources each lookup asks.
const NSSWITCH: &str = "/etc/nsswitch.conf";
/// The resolver's name servers.
const RESOLV_CONF: &str = "/etc/resolv.conf";
/// Where glibc finds nscd's socket, which answers any name without the sources above. A unix
/// socket is a file, reachable from any network namespace once unix sockets are granted.
const NSCD: &[&str] = &["/run/nscd", "/var/run/nscd"];

/// What resolution is cut down to in the upstream's network.
const RESOLV_CONF_TEXT: &str = "# Written by Portcullis: no name server. The names this upstream may \
reach are in /etc/hosts.\n";

/// Each granted name with its address inside and its ports, sorted by name.
pub(crate) fn plan(grants: &[HostPort]) -> Result<Vec<GrantedHost>, SandboxError> {
    let mut by_name: BTreeMap<&HostName, BTreeSet<u16>> = BTreeMap::new();
    for grant in grants {
        by_name
            .entry(grant.host())
            .or_default()
            .insert(grant.port());
    }
    if by_name.len() > MAX_HOSTS {
        return Err(SandboxError::TooManyHosts {
            count: by_name.len(),
        });
    }
    let first = u32::from(FIRST_ADDRESS);
    Ok(by_name
        .into_iter()
        .zip(first..)
        .map(|((host, ports), address)| GrantedHost {
            host: host.clone(),
            address: Ipv4Addr::from(address),
            ports: ports.into_iter().collect(),
        })
        .collect())
}

/// The hosts file inside: `localhost` (unless granted, when it is Portcullis's host's), then
/// each granted name at its address.
pub(crate) fn hosts_file(hosts: &[GrantedHost]) -> String {
    let mut text = String::from(
        "# Written by Portcullis: the only names this upstream can resolve. Each address is \
         served inside\n# its sandbox, and Portcullis forwards what connects there to what the \
         name resolves to outside,\n# on the granted ports only.\n",
    );
    if !hosts.iter().any(|host| host.host.as_str() == "localhost") {
        text.push_str("127.0.0.1 localhost\n::1 localhost\n");
    }
    for host in hosts {
        let _ = writeln!(text, "{} {}", host.address, host.host);
    }
    text
}

/// The system's nsswitch.conf with host names from files alone: no DNS, no mDNS, no
/// systemd-resolved (whose socket is a file, outside the network namespace). Every other
/// database is as the system has it.
pub(crate) fn nsswitch(system: Option<&str>) -> String {
    let mut text = String::from("# Written by Portcullis: host names from /etc/hosts alone.\n");
    let mut replaced = false;
    for line in system.unwrap_or_default().lines() {
        let database = line.split(':').next().unwrap_or_default().trim();
        if database == "hosts" && !line.trim_start().starts_with('#') {
            if !replaced {
                text.push_str("hosts: files\n");
                replaced = true;
            }
            continue;
        }
        text.push_str(line);
        text.push('\n');
    }
    if !replaced {
        text.push_str("hosts: files\n");
    }
    text
}

/// The upstream's network, made for one spawn: what the hook joins, what landlock must let it
/// read, and what `check` shows.
pub(crate) struct Isolation {
    pub(crate) hosts: Vec<GrantedHost>,
    pub(crate) child: ChildNetwork,
    /// The generated files the upstream reads (landlock grants them by their own inode: the
    /// system file beneath a mount is never looked at).
    pub(crate) readable: Vec<PathBuf>,
}

/// Builds the network for `grants`: the files, the namespaces with a listener per name and
/// port, and the forwarder serving them.
pub(crate) fn isolate(grants: &[HostPort]) -> Result<Isolation, SandboxError> {
    let hosts = plan(grants)?;
    let files = write_files(&hosts)?;
    let addresses: Vec<(SocketAddrV4, &GrantedHost)> = hosts
        .iter()
        .flat_map(|host| {
            host.ports
                .iter()
                .map(move |&port| (SocketAddrV4::new(host.address, port), host))
        })
        .collect();
    let sockets: Vec<SocketAddrV4> = addresses.iter().map(|(address, _)| *address).collect();
    let namespaces =
        netns::create(&sockets).map_err(|source| SandboxError::Namespace { source })?;
    let routes = addresses
        .iter()
        .zip(namespaces.listeners)
        .map(|((address, host), listener)| Route {
            host: host.host.clone(),
            port: address.port(),
            listener,
        })
        .collect();
    let (to_forwarder, from_children) =
        netns::socket_pair(Blocking::No).map_err(|source| SandboxError::Forwarder { source })?;
    forwarder::start(routes, from_children)?;
    let mounts = files
        .mounts
        .iter()
        .map(|(source, target)| Ok(ChildMount::new(c_path(source)?, c_path(target)?)))
        .collect::<Result<Vec<_>, SandboxError>>()?;
    let readable = files.readable;
    Ok(Isolation {
        hosts,
        child: ChildNetwork::new(
            namespaces.user,
            namespaces.net,
            mounts,
            to_forwarder,
            files.dir,
        ),
        readable,
    })
}

fn c_path(path: &Path) -> Result<CString, SandboxError> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| SandboxError::HostsFile {
        source: std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("`{}` contains a NUL byte", path.display()),
        ),
    })
}

/// The generated files, and what goes where.
struct Files {
    dir: tempfile::TempDir,
    /// (generated, system path it goes over), the system path with symlinks resolved.
    mounts: Vec<(PathBuf, PathBuf)>,
    readable: Vec<PathBuf>,
}

/// Writes the files into a private directory. The system's hosts file must exist (a mount
/// needs something to go over); the resolver's files and nscd's directory are covered where
/// they exist (where they do not, nothing resolves through them either).
fn write_files(hosts: &[GrantedHost]) -> Result<Files, SandboxError> {
    let Some(hosts_target) = existing(HOSTS, Kind::File) else {
        return Err(SandboxError::NoHostsFile);
    };
    let io = |source| SandboxError::HostsFile { source };
    let dir = tempfile::Builder::new()
        .prefix("portcullis-names-")
        .tempdir()
        .map_err(io)?;
    let mut mounts = Vec::new();
    let mut readable = Vec::new();
    let mut generated = |name: &str, text: &str, target: PathBuf| -> Result<(), SandboxError> {
        let path = dir.path().join(name);
        fs::write(&path, text).map_err(io)?;
        readable.push(path.clone());
        mounts.push((path, target));
        Ok(())
    };
    generated("hosts", &hosts_file(hosts), hosts_target)?;
    if let Some(target) = existing(NSSWITCH, Kind::File) {
        let system = fs::read_to_string(&target).ok();
        generated("nsswitch.conf", &nsswitch(system.as_deref()), target)?;
    }
    if let Some(target) = existing(RESOLV_CONF, Kind::File) {
        generated("resolv.conf", RESOLV_CONF_TEXT, target)?;
    }
    let mut nscd: Vec<PathBuf> = NSCD
        .iter()
        .filter_map(|path| existing(path, Kind::Directory))
        .collect();
    nscd.dedup();
    if !nscd.is_empty() {
        let empty = dir.path().join("empty");
        fs::create_dir(&empty).map_err(io)?;
        mounts.extend(nscd.into_iter().map(|target| (empty.clone(), target)));
    }
    Ok(Files {
        dir,
        mounts,
        readable,
    })
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    File,
    Directory,
}

/// `path` with symlinks resolved, if it exists and is of `kind`.
fn existing(path: &str, kind: Kind) -> Option<PathBuf> {
    let resolved = fs::canonicalize(path).ok()?;
    let metadata = fs::metadata(&resolved).ok()?;
    let matches = match kind {
        Kind::File => metadata.is_file(),
        Kind::Directory => metadata.is_dir(),
    };
    matches.then_some(resolved)
}
