//! The child side: each operation an escape would need, tried for real and reported as one line.
//! Runs inside the sandbox (or outside it, for the control runs) in a re-executed test binary.

use std::ffi::CString;
use std::fmt;
use std::fs::{self, OpenOptions};
use std::io::{Read as _, Write as _};
use std::net::{
    self, IpAddr, Ipv4Addr, SocketAddrV4, TcpListener, TcpStream, ToSocketAddrs as _, UdpSocket,
};
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};
use std::os::linux::net::SocketAddrExt as _;
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::net::{SocketAddr, UnixStream};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

/// The environment variable that carries the operations to the child.
pub(crate) const PROBE_ENV: &str = "PORTCULLIS_SANDBOX_PROBE";
/// The prefix of each result line on the child's stdout.
pub(crate) const RESULT_PREFIX: &str = "probe-result\t";

/// One thing the child tries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Op {
    /// Open a file for reading and read a byte.
    Read(PathBuf),
    /// List a directory.
    List(PathBuf),
    /// Open an existing file for writing.
    Write(PathBuf),
    /// Create (or open) a file for writing.
    Create(PathBuf),
    /// `truncate(path, 0)`.
    Truncate(PathBuf),
    /// Hard-link the first path as the second.
    Link(PathBuf, PathBuf),
    /// `chmod 0640`.
    Chmod(PathBuf),
    /// Run a program (its exit status is ignored: only whether exec worked).
    Exec(PathBuf),
    /// TCP connect to 127.0.0.1.
    TcpConnect(u16),
    /// TCP fast open: a `sendto` with `MSG_FASTOPEN` to 127.0.0.1, which connects without
    /// `connect()`.
    TcpFastOpen(u16),
    /// TCP bind on 127.0.0.1.
    TcpBind(u16),
    /// `listen()` on a TCP socket never bound (the kernel picks a port).
    ListenUnbound,
    /// MPTCP connect to 127.0.0.1.
    MptcpConnect(u16),
    /// Send a UDP datagram to 127.0.0.1.
    UdpSend(u16),
    /// Connect to a pathname unix socket.
    UnixConnect(PathBuf),
    /// Connect to an abstract unix socket.
    AbstractConnect(String),
    /// `socketpair(AF_UNIX, SOCK_STREAM)`.
    SocketpairStream,
    /// `socketpair(AF_UNIX, SOCK_DGRAM)`.
    SocketpairDgram,
    /// `socket(domain, type, protocol)`.
    Socket(i32, i32, i32),
    /// `kill(getppid(), 0)`: the parent is the test process, outside the sandbox.
    KillParent,
    /// `kill(getpid(), 0)`.
    KillSelf,
    /// `fcntl(fd, F_GETFD)`: is this descriptor open?
    FdOpen(i32),
    /// The four limits, as `soft/hard` each.
    Limits,
    /// Write this many bytes to a new file (with SIGXFSZ ignored, so the limit shows as EFBIG).
    WriteBytes(PathBuf, u64),
    /// `io_uring_setup`.
    IoUring,
    /// `socket()` through the x32 system call number.
    X32Socket,
    /// `ioctl(0, TIOCSTI)`.
    Tiocsti,
    /// `keyctl(KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING)`.
    Keyctl,
    /// Attach a System V shared memory segment by id (made by the parent).
    ShmAttach(i32),
    /// Open an existing POSIX message queue by name (made by the parent).
    MqOpen(String),
    /// `prlimit64(getppid(), RLIMIT_NOFILE)`: read the parent's limit.
    PrlimitParent,
    /// `prctl(PR_GET_NO_NEW_PRIVS)`.
    NoNewPrivs,
    /// `prctl(PR_GET_SECCOMP)`.
    SeccompMode,
    /// `syscall(number, 0, 0, 0, 0, 0, 0)`: for calls the filter refuses before the kernel
    /// reads any argument (never run unsandboxed).
    Raw(i64),
    /// A call that needs no sandbox path and no network, by name (see [`privileged`]).
    Privileged(String),
    /// A metadata change on a path, by name (see [`metadata`]).
    Metadata(String, PathBuf),
    /// The capability sets: effective, permitted, inheritable (hex), how many in the bounding
    /// and ambient sets.
    Capabilities,
    /// Resolve a host name (`getaddrinfo`): its addresses, sorted, or `unresolved`.
    Resolve(String),
    /// The same with `AI_ADDRCONFIG`, as many runtimes ask: only families the machine has an
    /// address of (besides loopback) are returned, if the C library can tell.
    ResolveAddrconfig(String),
    /// Connect to a host name's first address on a port, send `ping` and read the answer:
    /// `echoed`, `refused` (accepted, then closed or reset without an answer), `unresolved`, or
    /// the connect's errno.
    NameConnect(String, u16),
    /// TCP connect to an address.
    AddrConnect(Ipv4Addr, u16),
    /// A text file's contents, newlines as `|`.
    ReadText(PathBuf),
}

/// What one operation came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// It worked.
    Ok,
    /// It failed with this errno.
    Errno(i32),
    /// It reported a value.
    Value(String),
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Ok => write!(f, "ok"),
            Outcome::Errno(errno) => write!(f, "errno {errno} ({})", errno_name(*errno)),
            Outcome::Value(value) => write!(f, "value {value}"),
        }
    }
}

impl Outcome {
    pub(crate) fn parse(text: &str) -> Option<Outcome> {
        if text == "ok" {
            return Some(Outcome::Ok);
        }
        if let Some(rest) = text.strip_prefix("errno ") {
            let number = rest.split(' ').next()?;
            return number.parse().ok().map(Outcome::Errno);
        }
        text.strip_prefix("value ")
            .map(|value| Outcome::Value(value.to_owned()))
    }
}

pub(crate) fn errno_name(errno: i32) -> &'static str {
    match errno {
        libc::EACCES => "EACCES",
        libc::EPERM => "EPERM",
        libc::EBADF => "EBADF",
        libc::ENOSYS => "ENOSYS",
        libc::ENOTTY => "ENOTTY",
        libc::EFBIG => "EFBIG",
        libc::ENOENT => "ENOENT",
        libc::EXDEV => "EXDEV",
        libc::ECONNREFUSED => "ECONNREFUSED",
        libc::EPROTONOSUPPORT => "EPROTONOSUPPORT",
        libc::EAFNOSUPPORT => "EAFNOSUPPORT",
        libc::EINPROGRESS => "EINPROGRESS",
        libc::ENETUNREACH => "ENETUNREACH",
        _ => "other",
    }
}

impl Op {
    /// One line, fields separated by tabs.
    pub(crate) fn encode(&self) -> String {
        let path = |path: &PathBuf| path.display().to_string();
        let fields: Vec<String> = match self {
            Op::Read(p) => vec!["read".into(), path(p)],
            Op::List(p) => vec!["list".into(), path(p)],
            Op::Write(p) => vec!["write".into(), path(p)],
            Op::Create(p) => vec!["create".into(), path(p)],
            Op::Truncate(p) => vec!["truncate".into(), path(p)],
            Op::Link(a, b) => vec!["link".into(), path(a), path(b)],
            Op::Chmod(p) => vec!["chmod".into(), path(p)],
            Op::Exec(p) => vec!["exec".into(), path(p)],
            Op::TcpConnect(port) => vec!["tcp-connect".into(), port.to_string()],
            Op::TcpFastOpen(port) => vec!["tcp-fast-open".into(), port.to_string()],
            Op::TcpBind(port) => vec!["tcp-bind".into(), port.to_string()],
            Op::ListenUnbound => vec!["listen-unbound".into()],
            Op::MptcpConnect(port) => vec!["mptcp-connect".into(), port.to_string()],
            Op::UdpSend(port) => vec!["udp-send".into(), port.to_string()],
            Op::UnixConnect(p) => vec!["unix-connect".into(), path(p)],
            Op::AbstractConnect(name) => vec!["abstract-connect".into(), name.clone()],
            Op::SocketpairStream => vec!["socketpair-stream".into()],
            Op::SocketpairDgram => vec!["socketpair-dgram".into()],
            Op::Socket(d, t, p) => {
                vec!["socket".into(), d.to_string(), t.to_string(), p.to_string()]
            }
            Op::KillParent => vec!["kill-parent".into()],
            Op::KillSelf => vec!["kill-self".into()],
            Op::FdOpen(fd) => vec!["fd-open".into(), fd.to_string()],
            Op::Limits => vec!["limits".into()],
            Op::WriteBytes(p, n) => vec!["write-bytes".into(), path(p), n.to_string()],
            Op::IoUring => vec!["io-uring".into()],
            Op::X32Socket => vec!["x32-socket".into()],
            Op::Tiocsti => vec!["tiocsti".into()],
            Op::Keyctl => vec!["keyctl".into()],
            Op::ShmAttach(id) => vec!["shm-attach".into(), id.to_string()],
            Op::MqOpen(name) => vec!["mq-open".into(), name.clone()],
            Op::PrlimitParent => vec!["prlimit-parent".into()],
            Op::NoNewPrivs => vec!["no-new-privs".into()],
            Op::SeccompMode => vec!["seccomp-mode".into()],
            Op::Privileged(name) => vec!["privileged".into(), name.clone()],
            Op::Metadata(name, p) => vec!["metadata".into(), name.clone(), path(p)],
            Op::Capabilities => vec!["capabilities".into()],
            Op::Raw(number) => vec!["raw".into(), number.to_string()],
            Op::Resolve(name) => vec!["resolve".into(), name.clone()],
            Op::ResolveAddrconfig(name) => vec!["resolve-addrconfig".into(), name.clone()],
            Op::NameConnect(name, port) => {
                vec!["name-connect".into(), name.clone(), port.to_string()]
            }
            Op::AddrConnect(ip, port) => {
                vec!["addr-connect".into(), ip.to_string(), port.to_string()]
            }
            Op::ReadText(p) => vec!["read-text".into(), path(p)],
        };
        fields.join("\t")
    }

    fn decode(line: &str) -> Option<Op> {
        let fields: Vec<&str> = line.split('\t').collect();
        let path = |i: usize| fields.get(i).map(PathBuf::from);
        let number = |i: usize| fields.get(i).and_then(|f| f.parse::<i64>().ok());
        let port = |i: usize| number(i).and_then(|n| u16::try_from(n).ok());
        let int = |i: usize| number(i).and_then(|n| i32::try_from(n).ok());
        Some(match *fields.first()? {
            "read" => Op::Read(path(1)?),
            "list" => Op::List(path(1)?),
            "write" => Op::Write(path(1)?),
            "create" => Op::Create(path(1)?),
            "truncate" => Op::Truncate(path(1)?),
            "link" => Op::Link(path(1)?, path(2)?),
            "chmod" => Op::Chmod(path(1)?),
            "exec" => Op::Exec(path(1)?),
            "tcp-connect" => Op::TcpConnect(port(1)?),
            "tcp-fast-open" => Op::TcpFastOpen(port(1)?),
            "tcp-bind" => Op::TcpBind(port(1)?),
            "listen-unbound" => Op::ListenUnbound,
            "mptcp-connect" => Op::MptcpConnect(port(1)?),
            "udp-send" => Op::UdpSend(port(1)?),
            "unix-connect" => Op::UnixConnect(path(1)?),
            "abstract-connect" => Op::AbstractConnect((*fields.get(1)?).to_owned()),
            "socketpair-stream" => Op::SocketpairStream,
            "socketpair-dgram" => Op::SocketpairDgram,
            "socket" => Op::Socket(int(1)?, int(2)?, int(3)?),
            "kill-parent" => Op::KillParent,
            "kill-self" => Op::KillSelf,
            "fd-open" => Op::FdOpen(int(1)?),
            "limits" => Op::Limits,
            "write-bytes" => Op::WriteBytes(path(1)?, u64::try_from(number(2)?).ok()?),
            "io-uring" => Op::IoUring,
            "x32-socket" => Op::X32Socket,
            "tiocsti" => Op::Tiocsti,
            "keyctl" => Op::Keyctl,
            "shm-attach" => Op::ShmAttach(int(1)?),
            "mq-open" => Op::MqOpen((*fields.get(1)?).to_owned()),
            "prlimit-parent" => Op::PrlimitParent,
            "no-new-privs" => Op::NoNewPrivs,
            "seccomp-mode" => Op::SeccompMode,
            "privileged" => Op::Privileged((*fields.get(1)?).to_owned()),
            "metadata" => Op::Metadata((*fields.get(1)?).to_owned(), path(2)?),
            "capabilities" => Op::Capabilities,
            "raw" => Op::Raw(number(1)?),
            "resolve" => Op::Resolve((*fields.get(1)?).to_owned()),
            "resolve-addrconfig" => Op::ResolveAddrconfig((*fields.get(1)?).to_owned()),
            "name-connect" => Op::NameConnect((*fields.get(1)?).to_owned(), port(2)?),
            "addr-connect" => Op::AddrConnect(fields.get(1)?.parse().ok()?, port(2)?),
            "read-text" => Op::ReadText(path(1)?),
            _ => return None,
        })
    }
}

/// The child's entry: runs every operation in order and prints one result line each.
pub(crate) fn run(text: &str) {
    for (index, line) in text.lines().enumerate() {
        let outcome = match Op::decode(line) {
            Some(op) => perform(&op),
            None => Outcome::Value(format!("undecodable operation {line:?}")),
        };
        println!("{RESULT_PREFIX}{index}\t{outcome}");
    }
}

fn from_io(result: std::io::Result<()>) -> Outcome {
    match result {
        Ok(()) => Outcome::Ok,
        Err(error) => Outcome::Errno(error.raw_os_error().unwrap_or(-1)),
    }
}

fn last_errno() -> Outcome {
    Outcome::Errno(std::io::Error::last_os_error().raw_os_error().unwrap_or(-1))
}

fn from_ret(ret: libc::c_long) -> Outcome {
    if ret < 0 { last_errno() } else { Outcome::Ok }
}

fn loopback(port: u16) -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::LOCALHOST, port)
}

fn sockaddr_v4(port: u16) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(Ipv4Addr::LOCALHOST).to_be(),
        },
        sin_zero: [0; 8],
    }
}

/// A raw socket, owned so it is closed.
fn raw_socket(domain: i32, kind: i32, protocol: i32) -> Result<OwnedFd, Outcome> {
    // SAFETY: socket takes integers only; a non-negative result is a new descriptor we own.
    let fd = unsafe { libc::socket(domain, kind | libc::SOCK_CLOEXEC, protocol) };
    if fd < 0 {
        return Err(last_errno());
    }
    // SAFETY: `fd` was just returned by socket and is owned by nothing else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn perform(op: &Op) -> Outcome {
    match op {
        Op::Read(path) => from_io(fs::File::open(path).and_then(|mut file| {
            let mut byte = [0u8; 1];
            file.read(&mut byte).map(|_| ())
        })),
        Op::List(path) => from_io(fs::read_dir(path).map(|_| ())),
        Op::Write(path) => from_io(OpenOptions::new().write(true).open(path).map(|_| ())),
        Op::Create(path) => from_io(
            OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .open(path)
                .map(|_| ()),
        ),
        Op::Truncate(path) => {
            let Ok(path) = CString::new(path.as_os_str().as_encoded_bytes()) else {
                return Outcome::Value("path with NUL".into());
            };
            // SAFETY: `path` is a valid NUL-terminated string.
            from_ret(unsafe { libc::truncate(path.as_ptr(), 0) }.into())
        }
        Op::Link(from, to) => from_io(fs::hard_link(from, to)),
        Op::Chmod(path) => from_io(fs::set_permissions(path, fs::Permissions::from_mode(0o640))),
        // Inherited stdio: /dev/null is not in the probe's profile.
        Op::Exec(path) => from_io(Command::new(path).status().map(|_| ())),
        Op::TcpConnect(port) => from_io(
            TcpStream::connect_timeout(&loopback(*port).into(), Duration::from_secs(2)).map(|_| ()),
        ),
        Op::TcpFastOpen(port) => {
            let socket = match raw_socket(libc::AF_INET, libc::SOCK_STREAM, 0) {
                Ok(socket) => socket,
                Err(outcome) => return outcome,
            };
            let address = sockaddr_v4(*port);
            // SAFETY: one valid byte to send and a valid sockaddr_in of the given size.
            let sent = unsafe {
                libc::sendto(
                    socket.as_raw_fd(),
                    b"x".as_ptr().cast(),
                    1,
                    libc::MSG_FASTOPEN,
                    (&address as *const libc::sockaddr_in).cast(),
                    size_of::<libc::sockaddr_in>() as libc::socklen_t,
                )
            };
            from_ret(sent as libc::c_long)
        }
        Op::TcpBind(port) => from_io(TcpListener::bind(loopback(*port)).map(|_| ())),
        Op::ListenUnbound => {
            let socket = match raw_socket(libc::AF_INET, libc::SOCK_STREAM, 0) {
                Ok(socket) => socket,
                Err(outcome) => return outcome,
            };
            // SAFETY: listen takes a descriptor we own and an integer.
            from_ret(unsafe { libc::listen(socket.as_raw_fd(), 1) }.into())
        }
        Op::MptcpConnect(port) => {
            let socket = match raw_socket(libc::AF_INET, libc::SOCK_STREAM, libc::IPPROTO_MPTCP) {
                Ok(socket) => socket,
                Err(outcome) => return outcome,
            };
            let address = sockaddr_v4(*port);
            // SAFETY: a valid sockaddr_in of the given size.
            from_ret(
                unsafe {
                    libc::connect(
                        socket.as_raw_fd(),
                        (&address as *const libc::sockaddr_in).cast(),
                        size_of::<libc::sockaddr_in>() as libc::socklen_t,
                    )
                }
                .into(),
            )
        }
        Op::UdpSend(port) => from_io(
            UdpSocket::bind(loopback(0))
                .and_then(|socket| socket.send_to(b"escape", loopback(*port)))
                .map(|_| ()),
        ),
        Op::UnixConnect(path) => from_io(UnixStream::connect(path).map(|_| ())),
        Op::AbstractConnect(name) => from_io(
            SocketAddr::from_abstract_name(name.as_bytes())
                .and_then(|address| UnixStream::connect_addr(&address))
                .map(|_| ()),
        ),
        Op::SocketpairStream => socketpair(libc::SOCK_STREAM),
        Op::SocketpairDgram => socketpair(libc::SOCK_DGRAM),
        Op::Socket(domain, kind, protocol) => match raw_socket(*domain, *kind, *protocol) {
            Ok(_) => Outcome::Ok,
            Err(outcome) => outcome,
        },
        // SAFETY (both): kill with signal 0 only checks permission; getppid/getpid cannot fail.
        Op::KillParent => from_ret(unsafe { libc::kill(libc::getppid(), 0) }.into()),
        Op::KillSelf => from_ret(unsafe { libc::kill(libc::getpid(), 0) }.into()),
        // SAFETY: F_GETFD on any integer only reads the descriptor table.
        Op::FdOpen(fd) => from_ret(unsafe { libc::fcntl(*fd, libc::F_GETFD) }.into()),
        Op::Limits => {
            let mut parts = Vec::new();
            for (name, resource) in [
                ("as", libc::RLIMIT_AS),
                ("nproc", libc::RLIMIT_NPROC),
                ("fsize", libc::RLIMIT_FSIZE),
                ("nofile", libc::RLIMIT_NOFILE),
            ] {
                let mut value = libc::rlimit {
                    rlim_cur: 0,
                    rlim_max: 0,
                };
                // SAFETY: `value` is a valid rlimit to fill.
                if unsafe { libc::getrlimit(resource, &mut value) } != 0 {
                    return last_errno();
                }
                parts.push(format!("{name}={}/{}", value.rlim_cur, value.rlim_max));
            }
            Outcome::Value(parts.join(" "))
        }
        Op::WriteBytes(path, count) => {
            // SAFETY: ignoring SIGXFSZ installs no handler code.
            unsafe { libc::signal(libc::SIGXFSZ, libc::SIG_IGN) };
            let data = vec![0u8; usize::try_from(*count).unwrap_or(0)];
            from_io(fs::File::create(path).and_then(|mut file| file.write_all(&data)))
        }
        Op::IoUring => {
            // struct io_uring_params is 120 bytes and must be zero on entry.
            let mut params = [0u32; 30];
            // SAFETY: a zeroed io_uring_params the kernel may fill; 4 entries.
            let fd = unsafe { libc::syscall(libc::SYS_io_uring_setup, 4u32, params.as_mut_ptr()) };
            if fd >= 0 {
                // SAFETY: the ring descriptor was just returned to us.
                drop(unsafe { OwnedFd::from_raw_fd(fd as i32) });
            }
            from_ret(fd)
        }
        Op::X32Socket => {
            if !cfg!(target_arch = "x86_64") {
                return Outcome::Value("not x86_64".into());
            }
            const X32_SYSCALL_BIT: libc::c_long = 0x4000_0000;
            // SAFETY: socket takes integers only; a descriptor returned is closed below.
            let fd = unsafe {
                libc::syscall(
                    X32_SYSCALL_BIT | libc::SYS_socket,
                    libc::AF_INET,
                    libc::SOCK_DGRAM,
                    0,
                )
            };
            if fd >= 0 {
                // SAFETY: the descriptor was just returned to us.
                drop(unsafe { OwnedFd::from_raw_fd(fd as i32) });
            }
            from_ret(fd)
        }
        Op::Tiocsti => {
            let byte: libc::c_char = b'x' as libc::c_char;
            // SAFETY: TIOCSTI reads one char through the pointer, which is valid.
            from_ret(unsafe { libc::ioctl(0, libc::TIOCSTI, &byte) }.into())
        }
        Op::Keyctl => {
            const KEYCTL_GET_KEYRING_ID: libc::c_long = 0;
            const KEY_SPEC_SESSION_KEYRING: libc::c_long = -3;
            // SAFETY: KEYCTL_GET_KEYRING_ID takes integers only.
            from_ret(unsafe {
                libc::syscall(
                    libc::SYS_keyctl,
                    KEYCTL_GET_KEYRING_ID,
                    KEY_SPEC_SESSION_KEYRING,
                    0 as libc::c_long,
                )
            })
        }
        Op::ShmAttach(id) => {
            // SAFETY: attaching read-only at an address the kernel picks; detached at once.
            let address = unsafe { libc::shmat(*id, std::ptr::null(), libc::SHM_RDONLY) };
            if address as isize == -1 {
                return last_errno();
            }
            // SAFETY: `address` was just returned by shmat.
            unsafe { libc::shmdt(address) };
            Outcome::Ok
        }
        Op::MqOpen(name) => {
            let Ok(name) = CString::new(name.as_bytes()) else {
                return Outcome::Value("name with NUL".into());
            };
            // SAFETY: a valid name; O_RDONLY without O_CREAT takes no further arguments.
            let queue = unsafe { libc::mq_open(name.as_ptr(), libc::O_RDONLY) };
            if queue < 0 {
                return last_errno();
            }
            // SAFETY: the queue descriptor was just returned to us.
            unsafe { libc::mq_close(queue) };
            Outcome::Ok
        }
        Op::PrlimitParent => {
            let mut old = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            // SAFETY: reads only (new limit null) into a valid rlimit.
            from_ret(
                unsafe {
                    libc::prlimit(
                        libc::getppid(),
                        libc::RLIMIT_NOFILE,
                        std::ptr::null(),
                        &mut old,
                    )
                }
                .into(),
            )
        }
        // SAFETY (both): these prctl reads take integers only.
        Op::NoNewPrivs => Outcome::Value(
            unsafe { libc::prctl(libc::PR_GET_NO_NEW_PRIVS, ZERO, ZERO, ZERO, ZERO) }.to_string(),
        ),
        Op::SeccompMode => Outcome::Value(
            unsafe { libc::prctl(libc::PR_GET_SECCOMP, ZERO, ZERO, ZERO, ZERO) }.to_string(),
        ),
        Op::Privileged(name) => privileged(name),
        Op::Metadata(name, path) => metadata(name, path),
        Op::Capabilities => capabilities(),
        // SAFETY: all-zero arguments; the filter answers before the kernel reads any of them.
        Op::Raw(number) => from_ret(unsafe { libc::syscall(*number, 0, 0, 0, 0, 0, 0) }),
        Op::Resolve(name) => match (name.as_str(), 0).to_socket_addrs() {
            Ok(addresses) => {
                let mut ips: Vec<String> = addresses.map(|a| a.ip().to_string()).collect();
                ips.sort();
                ips.dedup();
                Outcome::Value(ips.join(","))
            }
            Err(_) => Outcome::Value("unresolved".into()),
        },
        Op::ResolveAddrconfig(name) => resolve_addrconfig(name),
        Op::NameConnect(name, port) => name_connect(name, *port),
        Op::AddrConnect(ip, port) => from_io(
            TcpStream::connect_timeout(
                &net::SocketAddr::new(IpAddr::V4(*ip), *port),
                Duration::from_secs(2),
            )
            .map(|_| ()),
        ),
        Op::ReadText(path) => match fs::read_to_string(path) {
            Ok(text) => Outcome::Value(text.replace('\n', "|").replace('\t', " ")),
            Err(error) => Outcome::Errno(error.raw_os_error().unwrap_or(-1)),
        },
    }
}

/// See [`Op::ResolveAddrconfig`].
fn resolve_addrconfig(name: &str) -> Outcome {
    let Ok(host) = CString::new(name) else {
        return Outcome::Value("name with NUL".into());
    };
    // SAFETY: all zeroes is a valid addrinfo (null pointers).
    let mut hints: libc::addrinfo = unsafe { std::mem::zeroed() };
    hints.ai_family = libc::AF_UNSPEC;
    hints.ai_socktype = libc::SOCK_STREAM;
    hints.ai_flags = libc::AI_ADDRCONFIG;
    let mut list: *mut libc::addrinfo = std::ptr::null_mut();
    // SAFETY: a valid name, no service, valid hints, and a pointer for the list.
    if unsafe { libc::getaddrinfo(host.as_ptr(), std::ptr::null(), &hints, &mut list) } != 0 {
        return Outcome::Value("unresolved".into());
    }
    let mut ips = Vec::new();
    let mut entry = list;
    while !entry.is_null() {
        // SAFETY: an entry of the list getaddrinfo returned, freed below.
        let info = unsafe { &*entry };
        if info.ai_family == libc::AF_INET {
            // SAFETY: an AF_INET entry's address is a sockaddr_in.
            let address = unsafe { &*info.ai_addr.cast::<libc::sockaddr_in>() };
            ips.push(Ipv4Addr::from(u32::from_be(address.sin_addr.s_addr)).to_string());
        } else {
            ips.push(format!("family {}", info.ai_family));
        }
        entry = info.ai_next;
    }
    // SAFETY: the list getaddrinfo returned, freed once.
    unsafe { libc::freeaddrinfo(list) };
    ips.sort();
    ips.dedup();
    Outcome::Value(ips.join(","))
}

/// See [`Op::NameConnect`].
fn name_connect(name: &str, port: u16) -> Outcome {
    let Some(address) = (name, port)
        .to_socket_addrs()
        .ok()
        .and_then(|mut addresses| addresses.next())
    else {
        return Outcome::Value("unresolved".into());
    };
    let mut stream = match TcpStream::connect_timeout(&address, Duration::from_secs(5)) {
        Ok(stream) => stream,
        // Accepted and reset at once, before the connect's wait saw it accepted.
        Err(error) if error.raw_os_error() == Some(libc::ECONNRESET) => {
            return Outcome::Value("refused".into());
        }
        Err(error) => return Outcome::Errno(error.raw_os_error().unwrap_or(-1)),
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(15)));
    if stream.write_all(b"ping\n").is_err() {
        return Outcome::Value("refused".into());
    }
    let mut answer = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        match stream.read(&mut byte) {
            Ok(0) => break,
            Ok(_) => {
                answer.push(byte[0]);
                if byte[0] == b'\n' {
                    break;
                }
            }
            Err(error)
                if error.kind() == std::io::ErrorKind::WouldBlock
                    || error.kind() == std::io::ErrorKind::TimedOut =>
            {
                return Outcome::Value("no answer".into());
            }
            Err(_) => break,
        }
    }
    if answer == b"ping\n" {
        Outcome::Value("echoed".into())
    } else {
        Outcome::Value("refused".into())
    }
}

/// The capability sets as `effective/permitted/inheritable/bounding count/ambient count`, read
/// with system calls (the sandbox grants no `/proc`).
fn capabilities() -> Outcome {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: libc::c_int,
    }
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    let mut header = Header {
        version: 0x2008_0522,
        pid: 0,
    };
    let mut data = [Data::default(); 2];
    // SAFETY: a version-3 header and two data structs, on the stack.
    if unsafe {
        libc::syscall(
            libc::SYS_capget,
            &mut header as *mut Header,
            data.as_mut_ptr(),
        )
    } != 0
    {
        return last_errno();
    }
    let set = |low: u32, high: u32| (u64::from(high) << 32) | u64::from(low);
    let last: u64 = fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(40);
    let (mut bounding, mut ambient) = (0, 0);
    for capability in 0..=last {
        // SAFETY (both): integer arguments only.
        if unsafe { libc::prctl(libc::PR_CAPBSET_READ, capability, ZERO, ZERO, ZERO) } == 1 {
            bounding += 1;
        }
        if unsafe {
            libc::prctl(
                libc::PR_CAP_AMBIENT,
                libc::PR_CAP_AMBIENT_IS_SET as libc::c_ulong,
                capability,
                ZERO,
                ZERO,
            )
        } == 1
        {
            ambient += 1;
        }
    }
    Outcome::Value(format!(
        "{:x}/{:x}/{:x}/{bounding}/{ambient}",
        set(data[0].effective, data[1].effective),
        set(data[0].permitted, data[1].permitted),
        set(data[0].inheritable, data[1].inheritable),
    ))
}

/// A metadata change on `path`: what landlock does not see.
fn metadata(name: &str, path: &std::path::Path) -> Outcome {
    let Ok(c_path) = CString::new(path.as_os_str().as_encoded_bytes()) else {
        return Outcome::Value("path with NUL".into());
    };
    let p = c_path.as_ptr();
    // SAFETY (every arm): `p` is a valid NUL-terminated path, the other arguments are integers,
    // valid NUL-terminated names or buffers of the given length, or null where the call allows.
    let ret: libc::c_long = unsafe {
        match name {
            "chmod" => libc::chmod(p, 0o666).into(),
            "chown" => libc::chown(p, libc::getuid(), libc::getgid()).into(),
            "utime" => libc::utimensat(libc::AT_FDCWD, p, std::ptr::null(), 0).into(),
            "setxattr" => {
                libc::setxattr(p, c"user.portcullis".as_ptr(), b"x".as_ptr().cast(), 1, 0).into()
            }
            "removexattr" => libc::removexattr(p, c"user.portcullis".as_ptr()).into(),
            // Through a descriptor opened read-only: reachable wherever reading is.
            "fchmod-read-only" => {
                let fd = libc::open(p, libc::O_RDONLY | libc::O_CLOEXEC);
                if fd < 0 {
                    return last_errno();
                }
                let ret = libc::fchmod(fd, 0o666);
                let result = if ret < 0 { last_errno() } else { Outcome::Ok };
                libc::close(fd);
                return result;
            }
            "mknod-char" => libc::mknod(p, libc::S_IFCHR | 0o600, libc::makedev(1, 3)).into(),
            "mknod-block" => libc::mknod(p, libc::S_IFBLK | 0o600, libc::makedev(7, 0)).into(),
            "mknod-fifo" => libc::mknod(p, libc::S_IFIFO | 0o600, 0).into(),
            "chroot" => libc::chroot(p).into(),
            _ => return Outcome::Value(format!("unknown metadata operation {name}")),
        }
    };
    from_ret(ret)
}

/// A call no profile grants, with arguments that do nothing harmful when it works.
fn privileged(name: &str) -> Outcome {
    // SAFETY (every arm): integer arguments, null pointers where the kernel accepts them, or
    // pointers to valid buffers on the stack of the sizes given.
    let ret: libc::c_long = unsafe {
        match name {
            "unshare-user" => libc::unshare(libc::CLONE_NEWUSER).into(),
            "unshare-net" => libc::unshare(libc::CLONE_NEWNET).into(),
            "unshare-mount" => libc::unshare(libc::CLONE_NEWNS).into(),
            "setns" => libc::setns(-1, 0).into(),
            "userfaultfd" => {
                let fd = libc::syscall(libc::SYS_userfaultfd, libc::O_CLOEXEC);
                if fd >= 0 {
                    drop(OwnedFd::from_raw_fd(fd as i32));
                }
                fd
            }
            // A fork-like clone into a new user namespace; the child exits at once.
            "clone-newuser" => {
                let pid = libc::syscall(
                    libc::SYS_clone,
                    libc::CLONE_NEWUSER | libc::SIGCHLD,
                    0usize,
                    0usize,
                    0usize,
                    0usize,
                );
                if pid == 0 {
                    libc::_exit(0);
                }
                if pid > 0 {
                    libc::waitpid(pid as libc::pid_t, std::ptr::null_mut(), 0);
                }
                pid
            }
            // Refused with ENOSYS in the sandbox; outside, a null argument is EFAULT or EINVAL.
            "clone3" => libc::syscall(libc::SYS_clone3, 0usize, 0usize),
            "bpf-map" => {
                // union bpf_attr for BPF_MAP_CREATE: type ARRAY, key 4, value 4, 1 entry.
                let mut attr = [0u32; 30];
                attr[0] = 2;
                attr[1] = 4;
                attr[2] = 4;
                attr[3] = 1;
                let fd = libc::syscall(libc::SYS_bpf, 0, attr.as_mut_ptr(), size_of_val(&attr));
                if fd >= 0 {
                    drop(OwnedFd::from_raw_fd(fd as i32));
                }
                fd
            }
            "perf-event-open" => {
                // struct perf_event_attr with size set: a software clock counter on itself.
                let mut attr = [0u64; 16];
                attr[0] = 1 | (128 << 32);
                let fd = libc::syscall(libc::SYS_perf_event_open, attr.as_mut_ptr(), 0, -1, -1, 0);
                if fd >= 0 {
                    drop(OwnedFd::from_raw_fd(fd as i32));
                }
                fd
            }
            "open-by-handle" => libc::syscall(
                libc::SYS_open_by_handle_at,
                libc::AT_FDCWD,
                std::ptr::null_mut::<libc::c_void>(),
                0,
            ),
            _ => return Outcome::Value(format!("unknown privileged operation {name}")),
        }
    };
    from_ret(ret)
}

/// An unused argument of a variadic call that reads unsigned longs.
const ZERO: libc::c_ulong = 0;

fn socketpair(kind: i32) -> Outcome {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: `fds` has room for the two descriptors socketpair writes.
    let ret = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            kind | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    };
    if ret < 0 {
        return last_errno();
    }
    for fd in fds {
        // SAFETY: both descriptors were just returned to us.
        drop(unsafe { OwnedFd::from_raw_fd(fd) });
    }
    Outcome::Ok
}
