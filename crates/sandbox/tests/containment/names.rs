//! Host-name grants against the real kernel, each test run in a world of its own
//! (`world.rs`): a granted name resolves inside the sandbox and connects, through Portcullis's
//! forwarder, to the listener the name resolves to outside; another name does not resolve; an
//! address connects nowhere; the forwarder refuses what it cannot forward and stops with its
//! upstream; and a ports-only grant still reaches any address, as before.

use std::io::{BufRead as _, BufReader, ErrorKind, Write as _};
use std::net::{Ipv4Addr, TcpListener};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use libc::{EACCES, ECONNREFUSED, ENETUNREACH, EPERM};
use portcullis_core::HostPort;
use portcullis_sandbox::prepare;

use crate::harness::{Expect, base_profile, check, free_tcp_port, sandboxed, unsandboxed};
use crate::probe::Op;
use crate::world::{self, As, GRANTED, REFUSED, UNKNOWN};

#[test]
fn a_granted_name_resolves_and_connects_and_nothing_else_does() {
    if !world::inside() {
        world::run(
            "names::a_granted_name_resolves_and_connects_and_nothing_else_does",
            As::Caller,
        );
        return;
    }
    a_granted_name_connects_in_this_world();
}

#[test]
fn an_unprivileged_portcullis_grants_names_the_same() {
    if world::inside() {
        // As nobody, in a world root made.
        assert_eq!(world::check_user(), As::Nobody);
        a_granted_name_connects_in_this_world();
    } else if crate::running_as_root() {
        world::run(
            "names::an_unprivileged_portcullis_grants_names_the_same",
            As::Nobody,
        );
    }
    // Else already unprivileged: the test above is this one.
}

#[test]
fn what_the_forwarder_cannot_forward_is_refused() {
    if !world::inside() {
        world::run(
            "names::what_the_forwarder_cannot_forward_is_refused",
            As::Caller,
        );
        return;
    }
    let logs = Logs::capture();
    let echo = Echo::start();
    let closed = free_tcp_port();
    let mut profile = base_profile();
    profile.tcp_connect_hosts = vec![grant(UNKNOWN, echo.port), grant(GRANTED, closed)];
    let ops = [
        // Inside, both names resolve (granted.* sorts first)...
        Op::Resolve(GRANTED.into()),
        Op::Resolve(UNKNOWN.into()),
        // ... but outside, one resolves to nothing and the other's port has no listener: the
        // forwarder resets the connection, and sends it nowhere else.
        Op::NameConnect(UNKNOWN.into(), echo.port),
        Op::NameConnect(GRANTED.into(), closed),
    ];
    let expected = [
        Expect::Value("127.0.0.2".into()),
        Expect::Value("127.0.0.3".into()),
        Expect::Value("refused".into()),
        Expect::Value("refused".into()),
    ];
    check("refused", &ops, &sandboxed(&profile, &ops), &expected);
    echo.assert_accepted(0);
    logs.wait_for(&format!(
        "refused a connection of the contained upstream: the name does not resolve host=\"{UNKNOWN}\" port={}",
        echo.port
    ));
    logs.wait_for(&format!(
        "refused a connection of the contained upstream: no address of the name accepted it host=\"{GRANTED}\" port={closed}"
    ));
}

/// The body of the two tests above, in their world.
fn a_granted_name_connects_in_this_world() {
    world::check_user();
    let logs = Logs::capture();
    let echo = Echo::start();
    // Another port on the same address outside: the grant names one port, not the host.
    let other = Echo::start();
    // tokio makes a socket pair for signals once per process, with the first runtime, and
    // keeps it: make it now, so that it is not counted as the forwarder's.
    drop(
        tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .unwrap(),
    );
    let before = Usage::now();

    let mut profile = base_profile();
    profile.tcp_connect_hosts = vec![grant(GRANTED, echo.port)];
    let prepared = prepare(&profile).unwrap();
    let described = prepared.describe();
    assert!(
        described.contains(&format!("  {GRANTED}:{} (127.0.0.2 inside)\n", echo.port)),
        "{described}"
    );
    drop(prepared);
    let ops = [
        Op::Resolve(GRANTED.into()),
        // As Node and others ask too: the network has loopback alone, which AI_ADDRCONFIG
        // does not count, but the C library cannot see it (netlink is refused) and answers.
        Op::ResolveAddrconfig(GRANTED.into()),
        Op::NameConnect(GRANTED.into(), echo.port),
        // Another name does not resolve, though it does outside (the control below).
        Op::Resolve(REFUSED.into()),
        Op::NameConnect(REFUSED.into(), echo.port),
        Op::Resolve("localhost".into()),
        // An address outside the grant: the listener's own is the upstream's loopback inside,
        // with nothing there; any other has no route.
        Op::AddrConnect(Ipv4Addr::LOCALHOST, echo.port),
        Op::AddrConnect(Ipv4Addr::new(192, 0, 2, 1), echo.port),
        // The granted name on a port not granted: landlock's port rule refuses it.
        Op::NameConnect(GRANTED.into(), other.port),
        Op::ReadText("/etc/hosts".into()),
        // The namespaces are the sandbox's doing, and the rest of the sandbox still holds.
        Op::Privileged("unshare-net".into()),
        Op::SeccompMode,
        Op::Capabilities,
    ];
    let hosts = format!(
        "# Written by Portcullis: the only names this upstream can resolve. Each address is \
         served inside|# its sandbox, and Portcullis forwards what connects there to what the \
         name resolves to outside,|# on the granted ports only.|127.0.0.1 localhost|::1 \
         localhost|127.0.0.2 {GRANTED}|"
    );
    let expected = [
        Expect::Value("127.0.0.2".into()),
        Expect::Value("127.0.0.2".into()),
        Expect::Value("echoed".into()),
        Expect::Value("unresolved".into()),
        Expect::Value("unresolved".into()),
        Expect::Value("127.0.0.1".into()),
        Expect::Errno(ECONNREFUSED),
        Expect::Errno(ENETUNREACH),
        Expect::Errno(EACCES),
        Expect::Value(hosts),
        Expect::Errno(EPERM),
        Expect::Value("2".into()),
        Expect::Value("0/0/0/0/0".into()),
    ];
    check("names", &ops, &sandboxed(&profile, &ops), &expected);
    // Only the forwarded connection arrives.
    echo.assert_accepted(1);
    other.assert_accepted(0);
    logs.wait_for(&format!(
        "forwarding a connection of the contained upstream host=\"{GRANTED}\" port={port} address=127.0.0.1:{port}",
        port = echo.port
    ));
    // The forwarder stops with its upstream: its thread, its listeners and the namespaces are
    // gone once the child has exited and the command that spawned it is dropped.
    before.wait_until_back();

    // Control, without the sandbox in the same world: the other name resolves there, and the
    // listener's address connects.
    let control = [
        Op::Resolve(REFUSED.into()),
        Op::NameConnect(REFUSED.into(), echo.port),
        Op::AddrConnect(Ipv4Addr::LOCALHOST, echo.port),
    ];
    check(
        "names (control)",
        &control,
        &unsandboxed(&control),
        &[
            Expect::Value("127.0.0.1".into()),
            Expect::Value("echoed".into()),
            Expect::Ok,
        ],
    );
    echo.assert_accepted(3);

    // A ports-only grant works as before: no network of its own, so the world's names resolve
    // (where the hosts file is granted) and the port connects on any address.
    let mut ports_only = base_profile();
    ports_only.tcp_connect = vec![echo.port];
    ports_only.read_only.extend(
        ["/etc/hosts", "/etc/nsswitch.conf"]
            .iter()
            .map(PathBuf::from),
    );
    let ops = [
        Op::Resolve(REFUSED.into()),
        Op::AddrConnect(Ipv4Addr::LOCALHOST, echo.port),
        Op::AddrConnect(Ipv4Addr::LOCALHOST, other.port),
    ];
    check(
        "ports only",
        &ops,
        &sandboxed(&ports_only, &ops),
        &[
            Expect::Value("127.0.0.1".into()),
            Expect::Ok,
            Expect::Errno(EACCES),
        ],
    );
    echo.assert_accepted(4);
    other.assert_accepted(0);
}

fn grant(name: &str, port: u16) -> HostPort {
    HostPort::parse(&format!("{name}:{port}")).unwrap()
}

/// A loopback listener that answers each line with the same line, counting connections.
struct Echo {
    port: u16,
    accepted: Arc<AtomicUsize>,
}

impl Echo {
    fn start() -> Echo {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&accepted);
        // Ends with the world's process.
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                counter.fetch_add(1, Ordering::SeqCst);
                let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
                let mut line = String::new();
                if BufReader::new(&stream).read_line(&mut line).is_ok() {
                    let _ = stream.write_all(line.as_bytes());
                }
            }
        });
        Echo { port, accepted }
    }

    /// Asserts that exactly `expected` connections have arrived by now. A connection the probe
    /// made is complete before the echo's thread accepts it, so wait for the count (up to 5 s),
    /// then a moment more for any beyond it.
    fn assert_accepted(&self, expected: usize) {
        let started = Instant::now();
        while self.accepted.load(Ordering::SeqCst) < expected
            && started.elapsed() < Duration::from_secs(5)
        {
            thread::sleep(Duration::from_millis(10));
        }
        thread::sleep(Duration::from_millis(100));
        assert_eq!(
            self.accepted.load(Ordering::SeqCst),
            expected,
            "connections that reached the listener on port {}",
            self.port
        );
    }
}

/// This process's threads and open descriptors.
#[derive(Debug, PartialEq, Eq)]
struct Usage {
    threads: usize,
    descriptors: usize,
}

impl Usage {
    fn now() -> Usage {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let threads = status
            .lines()
            .find_map(|line| line.strip_prefix("Threads:"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let descriptors = std::fs::read_dir("/proc/self/fd").unwrap().count();
        Usage {
            threads,
            descriptors,
        }
    }

    /// Waits (up to 10 s) until the usage is back to this.
    fn wait_until_back(&self) {
        let started = Instant::now();
        loop {
            let now = Usage::now();
            if now == *self {
                return;
            }
            if started.elapsed() > Duration::from_secs(10) {
                let open: Vec<String> = std::fs::read_dir("/proc/self/fd")
                    .unwrap()
                    .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
                    .map(|target| target.display().to_string())
                    .collect();
                let unix = std::fs::read_to_string("/proc/self/net/unix").unwrap_or_default();
                let tcp = std::fs::read_to_string("/proc/self/net/tcp").unwrap_or_default();
                panic!(
                    "the forwarder did not stop: {self:?} before, {now:?} now; open: {open:?}\n{unix}\n{tcp}"
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

/// What the sandbox logs (the forwarder's lines), captured as text.
#[derive(Clone)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Logs {
    fn capture() -> Logs {
        let logs = Logs(Arc::new(Mutex::new(Vec::new())));
        let writer = logs.clone();
        tracing_subscriber::fmt()
            .with_ansi(false)
            .with_max_level(tracing::Level::DEBUG)
            .with_writer(move || writer.clone())
            .init();
        logs
    }

    /// Waits (up to 10 s: the forwarder logs on its own thread) until a line contains `text`.
    fn wait_for(&self, text: &str) {
        let started = Instant::now();
        loop {
            let logs = String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned();
            if logs.contains(text) {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "no log line contains {text:?}:\n{logs}"
            );
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl std::io::Write for Logs {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .map_err(|_| std::io::Error::from(ErrorKind::Other))?
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
