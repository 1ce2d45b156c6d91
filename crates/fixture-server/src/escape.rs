//! The `escape` tool: a hostile upstream's attempts to reach what its sandbox should deny (files
//! outside its roots, the network, other processes, Portcullis's environment), each reported as
//! it happened, so that a test can assert every escape failed and every control succeeded.
//!
//! Nothing here checks paths or ports: the point is to try. The tool reports outcomes only (a
//! length for a read, presence for a variable), never what it read.

use std::io::{Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddrV4, TcpStream, UdpSocket};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// How long a connection attempt may take: loopback answers at once, unless something is wrong.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// What `write` writes, so a test can tell whether a file was touched.
pub(crate) const ESCAPE_MARK: &str = "escaped\n";

/// One thing to try.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(crate) enum Attempt {
    /// Read a file; a leading `~/` is the process's `HOME`.
    Read { path: String },
    /// Create or truncate a file and write [`ESCAPE_MARK`] into it.
    Write { path: String },
    /// A plain TCP connection to `127.0.0.1:port`.
    TcpConnect { port: u16 },
    /// An MPTCP connection to `127.0.0.1:port` (landlock's TCP rules do not cover MPTCP).
    MptcpConnect { port: u16 },
    /// One UDP datagram to `127.0.0.1:port`.
    UdpSend { port: u16 },
    /// A connection to the unix socket at `path`.
    UnixConnect { path: String },
    /// Change a file's mode (octal text, e.g. `"666"`): what landlock does not cover.
    Chmod { path: String, mode: String },
    /// Whether the environment variable `name` is set.
    Env { name: String },
    /// A signal to `pid` (this process without one): `SIGTERM` with `terminate`, else signal 0,
    /// which the kernel permits or refuses exactly as it would a real signal.
    Signal {
        pid: Option<i32>,
        #[serde(default)]
        terminate: bool,
    },
}

/// What one attempt did.
#[derive(Debug, Serialize)]
pub(crate) struct Outcome {
    pub attempt: Attempt,
    /// True when the action went through.
    pub ok: bool,
    /// Bytes read, for a read that worked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes: Option<usize>,
    /// The OS error of a failed action.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errno: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Tries each attempt in order.
pub(crate) fn run(attempts: Vec<Attempt>) -> Vec<Outcome> {
    attempts.into_iter().map(try_one).collect()
}

fn try_one(attempt: Attempt) -> Outcome {
    let result: std::io::Result<Option<usize>> = match &attempt {
        Attempt::Read { path } => read(path).map(Some),
        Attempt::Write { path } => std::fs::write(path, ESCAPE_MARK).map(|()| None),
        Attempt::TcpConnect { port } => {
            TcpStream::connect_timeout(&loopback(*port).into(), CONNECT_TIMEOUT).map(|_| None)
        }
        Attempt::MptcpConnect { port } => mptcp_connect(*port).map(|()| None),
        Attempt::UdpSend { port } => UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|socket| socket.send_to(b"escaped", loopback(*port)))
            .map(|_| None),
        Attempt::UnixConnect { path } => UnixStream::connect(path)
            .and_then(|mut stream| stream.write_all(b"escaped"))
            .map(|()| None),
        Attempt::Chmod { path, mode } => match u32::from_str_radix(mode, 8) {
            Ok(mode) => {
                use std::os::unix::fs::PermissionsExt as _;
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map(|()| None)
            }
            Err(_) => Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "the mode is not octal",
            )),
        },
        Attempt::Env { name } => match std::env::var_os(name) {
            Some(_) => Ok(None),
            None => Err(std::io::Error::new(std::io::ErrorKind::NotFound, "not set")),
        },
        Attempt::Signal { pid, terminate } => signal(*pid, *terminate).map(|()| None),
    };
    match result {
        Ok(bytes) => Outcome {
            attempt,
            ok: true,
            bytes,
            errno: None,
            error: None,
        },
        Err(error) => Outcome {
            attempt,
            ok: false,
            bytes: None,
            errno: error.raw_os_error(),
            error: Some(error.to_string()),
        },
    }
}

fn loopback(port: u16) -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::LOCALHOST, port)
}

fn read(path: &str) -> std::io::Result<usize> {
    let path = match (path.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => std::path::PathBuf::from(home).join(rest),
        _ => std::path::PathBuf::from(path),
    };
    let mut bytes = Vec::new();
    std::fs::File::open(path)?.read_to_end(&mut bytes)?;
    Ok(bytes.len())
}

fn mptcp_connect(port: u16) -> std::io::Result<()> {
    use rustix::net::{AddressFamily, SocketType, ipproto};
    let socket = rustix::net::socket(
        AddressFamily::INET,
        SocketType::STREAM,
        Some(ipproto::MPTCP),
    )?;
    rustix::net::connect(&socket, &loopback(port))?;
    Ok(())
}

fn signal(pid: Option<i32>, terminate: bool) -> std::io::Result<()> {
    use rustix::process::{Pid, Signal, getpid, kill_process, test_kill_process};
    let pid = match pid {
        None => getpid(),
        Some(raw) => Pid::from_raw(raw).ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "pid must be positive")
        })?,
    };
    if terminate {
        kill_process(pid, Signal::TERM)?;
    } else {
        test_kill_process(pid)?;
    }
    Ok(())
}
