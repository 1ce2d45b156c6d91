//! The effective sandbox as a person reads it (`portcullis check`) and as the evidence log
//! hashes it. Both renderings are deterministic: every list is sorted.

use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::path::PathBuf;

use portcullis_core::HostName;

use crate::profile::{Limit, Limits};

/// The sandbox a prepared spawn will get: what the kernel will enforce, not what was asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// The landlock ABI the ruleset was built for (every file right of it is handled).
    pub landlock_abi: u32,
    /// The granted paths, symlinks resolved, sorted by resolved path. A path that did not exist
    /// is not here (see the warnings).
    pub paths: Vec<GrantedPath>,
    /// Granted TCP connect ports (on any address), sorted, without repeats.
    pub tcp_connect: Vec<u16>,
    /// Granted host names, sorted, each with its address inside and its ports. Any: the
    /// upstream has a network of its own.
    pub hosts: Vec<GrantedHost>,
    /// Granted TCP bind ports, sorted, without repeats.
    pub tcp_bind: Vec<u16>,
    /// Which sockets the seccomp filter lets the upstream create.
    pub sockets: SocketPolicy,
    /// The limits set in the child (after lowering to Portcullis's own hard limits).
    pub limits: Limits,
}

/// One path the ruleset grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantedPath {
    /// As the profile gave it.
    pub requested: PathBuf,
    /// What it resolved to when the ruleset was built: the object the kernel will check.
    pub resolved: PathBuf,
    /// Directory (the grant covers everything beneath) or file.
    pub kind: PathKind,
    /// The access granted.
    pub access: FsAccess,
}

/// One host name the upstream may connect to, by name (see
/// [`Profile::tcp_connect_hosts`](crate::Profile::tcp_connect_hosts)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantedHost {
    /// The name, as the upstream resolves it.
    pub host: HostName,
    /// Its address inside the upstream's network, where Portcullis's forwarder listens.
    pub address: Ipv4Addr,
    /// The ports granted on it, sorted, without repeats.
    pub ports: Vec<u16>,
}

/// What a granted path is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathKind {
    /// A directory: the grant covers everything beneath it.
    Directory,
    /// Any other file.
    File,
}

/// The two levels of file access a profile grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum FsAccess {
    /// Read files, list directories, execute.
    ReadOnly,
    /// Every file right of the landlock ABI.
    ReadWrite,
}

impl FsAccess {
    /// As a person reads it.
    pub fn describe(self) -> &'static str {
        match self {
            FsAccess::ReadOnly => "read and execute",
            FsAccess::ReadWrite => "read and write",
        }
    }
}

/// Which sockets `socket()` may create, derived from the profile's grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketPolicy {
    /// IPv4 and IPv6 TCP stream sockets (protocol 0 or TCP): any TCP port is granted.
    pub inet_tcp: bool,
    /// Unix sockets of any type, and any `socketpair()`: the profile grants unix sockets.
    pub unix: bool,
    /// Any TCP bind port is granted; else, without unix sockets, `listen()` is refused.
    pub tcp_bind: bool,
}

impl Summary {
    /// The effective sandbox for a person, one topic a line.
    pub fn describe(&self) -> String {
        let mut text = format!(
            "sandbox: landlock ABI {} and a seccomp filter\n",
            self.landlock_abi
        );
        for access in [FsAccess::ReadOnly, FsAccess::ReadWrite] {
            let _ = writeln!(text, "{}:", access.describe());
            let mut any = false;
            for path in self.paths.iter().filter(|path| path.access == access) {
                any = true;
                let _ = write!(text, "  {}", path.resolved.display());
                if path.kind == PathKind::File {
                    text.push_str(" (file)");
                }
                if path.requested != path.resolved {
                    let _ = write!(text, " (given as {})", path.requested.display());
                }
                text.push('\n');
            }
            if !any {
                text.push_str("  nothing\n");
            }
        }
        if self.hosts.is_empty() {
            let _ = writeln!(text, "tcp connect: {}", ports(&self.tcp_connect));
        } else {
            text.push_str(
                "tcp connect: by host name only (Portcullis connects to what the name resolves \
                 to, on the granted port):\n",
            );
            for host in &self.hosts {
                let _ = writeln!(
                    text,
                    "  {}:{} ({} inside)",
                    host.host,
                    ports(&host.ports),
                    host.address
                );
            }
            text.push_str(
                "network: a namespace of its own with loopback alone: no address outside is \
                 reachable, and no name but those above resolves\n",
            );
        }
        let _ = writeln!(text, "tcp bind: {}", ports(&self.tcp_bind));
        let _ = writeln!(text, "sockets: {}", self.describe_sockets());
        text.push_str("scoped to the sandbox: abstract unix sockets, signals\n");
        let limits: Vec<String> = Limit::ALL
            .iter()
            .map(|&limit| {
                format!(
                    "{} {}",
                    limit.name(),
                    limit_value(limit, self.limits.get(limit))
                )
            })
            .collect();
        let _ = writeln!(text, "limits: {}", limits.join(", "));
        text.push_str("always refused:\n");
        for group in crate::filter::REFUSED {
            let calls: Vec<&str> = group.calls.iter().map(|(name, _)| *name).collect();
            let _ = writeln!(text, "  {} ({})", group.what, calls.join(", "));
        }
        for rule in crate::filter::REFUSED_WHEN {
            let _ = writeln!(text, "  {rule}");
        }
        if cfg!(target_arch = "x86_64") {
            text.push_str("  x32 system calls\n");
        }
        text.push_str(
            "capabilities: all dropped (bounding, ambient, effective, permitted, inheritable)\n",
        );
        text.push_str(
            "descriptors: every inherited descriptor from 3 up is closed at exec; no_new_privs is \
             set\n",
        );
        text
    }

    fn describe_sockets(&self) -> String {
        let mut parts = Vec::new();
        parts.push(if self.sockets.inet_tcp {
            "IPv4 and IPv6 TCP only (no UDP, MPTCP, SCTP or raw)"
        } else {
            "no IPv4 or IPv6 sockets"
        });
        parts.push(if self.sockets.unix {
            "unix sockets of any type"
        } else {
            "no unix sockets (socketpair for stream and seqpacket pairs only)"
        });
        if !self.sockets.tcp_bind && !self.sockets.unix {
            parts.push("no listen()");
        }
        parts.push("no TCP fast open (MSG_FASTOPEN)");
        parts.push("no other family (netlink, packet, ...)");
        parts.join("; ")
    }

    /// A stable text for the caller to hash into the evidence log: one fact a line, sorted,
    /// paths escaped so no path can forge a line. A change here is a change of format version.
    pub fn digest_input(&self) -> String {
        let mut text = String::from("portcullis-sandbox 3\n");
        let _ = writeln!(text, "landlock-abi {}", self.landlock_abi);
        let mut paths: Vec<String> = self
            .paths
            .iter()
            .map(|path| {
                let access = match path.access {
                    FsAccess::ReadOnly => "read-only",
                    FsAccess::ReadWrite => "read-write",
                };
                let kind = match path.kind {
                    PathKind::Directory => "dir",
                    PathKind::File => "file",
                };
                format!("path {access} {kind} {}\n", escape(&path.resolved))
            })
            .collect();
        paths.sort();
        paths.dedup();
        text.extend(paths);
        for (name, list) in [
            ("tcp-connect", &self.tcp_connect),
            ("tcp-bind", &self.tcp_bind),
        ] {
            let mut sorted = list.clone();
            sorted.sort_unstable();
            sorted.dedup();
            for port in sorted {
                let _ = writeln!(text, "{name} {port}");
            }
        }
        let mut hosts: Vec<String> = self
            .hosts
            .iter()
            .flat_map(|host| {
                host.ports
                    .iter()
                    .map(|port| format!("tcp-connect-host {} {port} {}\n", host.host, host.address))
            })
            .collect();
        hosts.sort();
        hosts.dedup();
        text.extend(hosts);
        text.push_str(if self.hosts.is_empty() {
            "network shared\n"
        } else {
            "network own-namespace loopback-only names-from-hosts-file\n"
        });
        let allowed = |yes: bool| if yes { "allowed" } else { "refused" };
        let _ = writeln!(text, "socket inet-tcp {}", allowed(self.sockets.inet_tcp));
        let _ = writeln!(text, "socket unix {}", allowed(self.sockets.unix));
        let _ = writeln!(
            text,
            "socketpair {}",
            if self.sockets.unix {
                "any"
            } else {
                "unix-stream-seqpacket"
            }
        );
        let _ = writeln!(
            text,
            "listen {}",
            allowed(self.sockets.tcp_bind || self.sockets.unix)
        );
        text.push_str("scope abstract-unix-socket\nscope signal\n");
        for limit in Limit::ALL {
            let name = limit.name().replace(' ', "-");
            match self.limits.get(limit) {
                Some(value) => {
                    let _ = writeln!(text, "limit {name} {value}");
                }
                None => {
                    let _ = writeln!(text, "limit {name} unchanged");
                }
            }
        }
        text.push_str(
            "refuse tcp-fast-open\nrefuse io-uring\nrefuse keyrings\nrefuse sysv-ipc\n\
             refuse prlimit-other\nrefuse tiocsti-tioclinux\n",
        );
        if cfg!(target_arch = "x86_64") {
            text.push_str("refuse x32\n");
        }
        text.push_str("descriptors cloexec-from-3\nno-new-privs\n");
        text
    }
}

fn ports(list: &[u16]) -> String {
    if list.is_empty() {
        return String::from("none");
    }
    let mut sorted = list.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let rendered: Vec<String> = sorted.iter().map(u16::to_string).collect();
    rendered.join(", ")
}

fn limit_value(limit: Limit, value: Option<u64>) -> String {
    let Some(value) = value else {
        return String::from("unchanged");
    };
    match limit {
        Limit::AddressSpace | Limit::FileSize => bytes(value),
        Limit::Processes | Limit::OpenFiles => value.to_string(),
    }
}

/// "4 GiB" when exact, else the byte count.
pub(crate) fn bytes(value: u64) -> String {
    const UNITS: [(u64, &str); 3] = [(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
    for (size, unit) in UNITS {
        if value >= size && value.is_multiple_of(size) {
            return format!("{} {unit}", value / size);
        }
    }
    format!("{value} bytes")
}

/// Printable ASCII stays, everything else (bytes of other encodings, spaces, newlines, `%`)
/// becomes `%XX`, so one line is one fact whatever the path holds.
fn escape(path: &std::path::Path) -> String {
    use std::os::unix::ffi::OsStrExt as _;
    let mut text = String::new();
    for &byte in path.as_os_str().as_bytes() {
        if byte.is_ascii_graphic() && byte != b'%' {
            text.push(char::from(byte));
        } else {
            let _ = write!(text, "%{byte:02X}");
        }
    }
    text
}
