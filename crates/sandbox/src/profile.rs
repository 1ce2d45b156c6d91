//! The profile: what one upstream may touch, as plain data the caller compiles from config.

use std::path::PathBuf;

use portcullis_core::HostPort;

/// What a sandboxed upstream may touch. Anything not granted here is denied.
///
/// The caller builds it from config; [`prepare`](crate::prepare) turns it into kernel objects.
/// Paths must be absolute (a relative path would depend on Portcullis's working directory).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Profile {
    /// Read and execute access to each path and everything beneath it: the interpreter, its
    /// libraries, `/usr`, the program's own install directory.
    pub read_only: Vec<PathBuf>,
    /// Every file access to each path and everything beneath it: the granted roots, a temp dir.
    pub read_write: Vec<PathBuf>,
    /// TCP ports the upstream may connect to (on any address). Empty: none.
    pub tcp_connect: Vec<u16>,
    /// Host names and the port on each the upstream may connect to. Any: the upstream runs in a
    /// network of its own (loopback alone) where only these names resolve, each to an address
    /// inside where Portcullis forwards the connection to what the name resolves to outside, on
    /// that port. Never with `tcp_connect`, which would reach nothing from there.
    pub tcp_connect_hosts: Vec<HostPort>,
    /// TCP ports the upstream may bind (port 0: an ephemeral port). Empty: none.
    pub tcp_bind: Vec<u16>,
    /// Whether the upstream may create unix sockets with `socket()`. `socketpair()` for stream and
    /// seqpacket pairs stays allowed either way: such a pair cannot reach any other socket.
    pub unix_sockets: bool,
    /// Resource limits set in the child before it runs the program.
    pub limits: Limits,
}

impl Profile {
    /// Whether any TCP port is granted, which is what allows IPv4 and IPv6 TCP sockets at all.
    pub(crate) fn grants_tcp(&self) -> bool {
        !self.tcp_connect.is_empty()
            || !self.tcp_connect_hosts.is_empty()
            || !self.tcp_bind.is_empty()
    }
}

/// Resource limits (`setrlimit`), each set as both the soft and the hard limit so the upstream
/// cannot raise it again. `None` leaves the limit Portcullis itself runs with.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of virtual memory (`RLIMIT_AS`). Runtimes such as V8 reserve far more address space
    /// than they use, so this is a ceiling, not a memory budget.
    pub address_space: Option<u64>,
    /// Processes and threads of the user (`RLIMIT_NPROC`). The kernel counts every process of the
    /// real user, not only the upstream's, and does not apply it to root.
    pub processes: Option<u64>,
    /// Bytes one file may grow to (`RLIMIT_FSIZE`).
    pub file_size: Option<u64>,
    /// Open file descriptors (`RLIMIT_NOFILE`).
    pub open_files: Option<u64>,
}

/// One of the limits in [`Limits`], as named in messages and summaries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Limit {
    /// `RLIMIT_AS`.
    AddressSpace,
    /// `RLIMIT_NPROC`.
    Processes,
    /// `RLIMIT_FSIZE`.
    FileSize,
    /// `RLIMIT_NOFILE`.
    OpenFiles,
}

impl Limit {
    /// Every limit, in the order summaries list them.
    pub const ALL: [Limit; 4] = [
        Limit::AddressSpace,
        Limit::Processes,
        Limit::FileSize,
        Limit::OpenFiles,
    ];

    /// The name used in messages, summaries and the digest input.
    pub fn name(self) -> &'static str {
        match self {
            Limit::AddressSpace => "address space",
            Limit::Processes => "processes",
            Limit::FileSize => "file size",
            Limit::OpenFiles => "open files",
        }
    }
}

impl Limits {
    /// The value asked for one limit.
    pub fn get(&self, limit: Limit) -> Option<u64> {
        match limit {
            Limit::AddressSpace => self.address_space,
            Limit::Processes => self.processes,
            Limit::FileSize => self.file_size,
            Limit::OpenFiles => self.open_files,
        }
    }

    pub(crate) fn set(&mut self, limit: Limit, value: Option<u64>) {
        match limit {
            Limit::AddressSpace => self.address_space = value,
            Limit::Processes => self.processes = value,
            Limit::FileSize => self.file_size = value,
            Limit::OpenFiles => self.open_files = value,
        }
    }
}
