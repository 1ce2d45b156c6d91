//! Containment against the real kernel: each escape tried in a sandboxed child fails, and the
//! same action succeeds when granted (or, for what no profile can grant, in an unsandboxed
//! control child), so every test can fail. The children are this test binary re-executed with
//! only `probe_child` selected (see `harness.rs`); everything stays on loopback and each child
//! has a deadline.
#![expect(
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests"
)]
#![allow(
    unsafe_code,
    reason = "the probe makes raw system calls, as an escape would"
)]

mod harness;
mod names;
mod probe;
mod world;

use std::fs;
use std::io::ErrorKind;
use std::net::{TcpListener, UdpSocket};
use std::os::fd::AsRawFd as _;
use std::os::linux::net::SocketAddrExt as _;
use std::os::unix::net::{SocketAddr, UnixListener};
use std::os::unix::process::CommandExt as _;
use std::process::Command;
use std::thread;
use std::time::Duration;

use libc::{EACCES, EBADF, EFBIG, ENOTTY, EPERM};
use portcullis_sandbox::{Limits, prepare, probe as kernel_probe};

use harness::{
    Expect, Layout, base_profile, check, free_tcp_port, sandboxed, sandboxed_with, unsandboxed,
    unsandboxed_with,
};
use probe::{Op, Outcome};

/// Not a test: the entry point of a probe child. In a normal run it does nothing.
#[test]
fn probe_child() {
    if let Ok(text) = std::env::var(probe::PROBE_ENV) {
        probe::run(&text);
    }
}

/// Connections waiting on a listener, taken off its queue.
fn accepted(listener: &TcpListener) -> usize {
    listener.set_nonblocking(true).unwrap();
    let mut count = 0;
    loop {
        match listener.accept() {
            Ok(_) => count += 1,
            Err(error) if error.kind() == ErrorKind::WouldBlock => return count,
            Err(error) => panic!("accept: {error}"),
        }
    }
}

fn loopback_listener() -> (TcpListener, u16) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    (listener, port)
}

#[test]
fn files_outside_the_roots_cannot_be_read_or_written() {
    let layout = Layout::new();
    let path = |relative: &str| layout.path(relative);
    let mut profile = layout.profile();
    profile.read_only.push("/usr/bin/true".into());
    let cases = vec![
        // Secrets outside every root: a stand-in for /etc/shadow and a private key.
        (Op::Read(path("outside/shadow")), Expect::Errno(EACCES)),
        (Op::Read(path("home/.ssh/id_rsa")), Expect::Errno(EACCES)),
        (Op::List(path("home/.ssh")), Expect::Errno(EACCES)),
        // Read-only grants read, nothing more.
        (Op::Read(path("ro/readable.txt")), Expect::Ok),
        (Op::List(path("ro")), Expect::Ok),
        (Op::Write(path("ro/readable.txt")), Expect::Errno(EACCES)),
        (Op::Create(path("ro/new")), Expect::Errno(EACCES)),
        (Op::Truncate(path("ro/readable.txt")), Expect::Errno(EACCES)),
        // Read-write grants everything beneath it.
        (Op::Read(path("rw/existing.txt")), Expect::Ok),
        (Op::Write(path("rw/existing.txt")), Expect::Ok),
        (Op::Create(path("rw/new")), Expect::Ok),
        (Op::Truncate(path("rw/existing.txt")), Expect::Ok),
        // Nothing outside read_write can be created, truncated or linked into.
        (Op::Create(path("outside/new")), Expect::Errno(EACCES)),
        (Op::Truncate(path("outside/victim")), Expect::Errno(EACCES)),
        (
            Op::Link(path("rw/existing.txt"), path("outside/linked")),
            Expect::Errno(EACCES),
        ),
        // A symlink inside read_write that points outside leads nowhere: landlock checks the
        // object reached, not the name used.
        (
            Op::Create(path("rw/link-out/planted")),
            Expect::Errno(EACCES),
        ),
        (Op::Read(path("rw/link-out/shadow")), Expect::Errno(EACCES)),
        // A program not granted cannot run; a granted one (a file rule) can.
        (Op::Exec("/usr/bin/false".into()), Expect::Errno(EACCES)),
        (Op::Exec("/usr/bin/true".into()), Expect::Ok),
        // Landlock does not cover metadata; the filter refuses every such change.
        (Op::Chmod(path("outside/shadow")), Expect::Errno(EPERM)),
    ];
    let ops: Vec<Op> = cases.iter().map(|(op, _)| op.clone()).collect();
    let expected: Vec<Expect> = cases.iter().map(|(_, expect)| expect.clone()).collect();
    check("files", &ops, &sandboxed(&profile, &ops), &expected);
    // Nothing leaked out of the sandbox before the control run touches the same paths.
    assert_eq!(
        fs::read_to_string(path("outside/victim")).unwrap(),
        "keep me\n"
    );
    for planted in ["outside/new", "outside/linked", "outside/planted", "ro/new"] {
        assert!(
            !path(planted).exists(),
            "{planted} was created from inside the sandbox"
        );
    }
    let control = vec![Expect::Ok; ops.len()];
    check(
        "files (control, unsandboxed)",
        &ops,
        &unsandboxed(&ops),
        &control,
    );
}

#[test]
fn tcp_connect_needs_the_port() {
    let (listener, port) = loopback_listener();
    let (granted_listener, granted) = loopback_listener();

    // No TCP port granted at all: the seccomp filter refuses the socket itself.
    let outcomes = sandboxed(&base_profile(), &[Op::TcpConnect(port)]);
    assert_eq!(outcomes, [Outcome::Errno(EACCES)]);

    // Another port granted: landlock refuses this one, the granted one connects. Fast open
    // would connect without connect(), so it is refused even to the granted port.
    let mut profile = base_profile();
    profile.tcp_connect = vec![granted];
    let ops = [
        Op::TcpConnect(port),
        Op::TcpConnect(granted),
        Op::TcpFastOpen(port),
        Op::TcpFastOpen(granted),
    ];
    let expected = [
        Expect::Errno(EACCES),
        Expect::Ok,
        Expect::Errno(EACCES),
        Expect::Errno(EACCES),
    ];
    check("tcp connect", &ops, &sandboxed(&profile, &ops), &expected);
    assert_eq!(
        accepted(&listener),
        0,
        "a refused connect reached the listener"
    );
    assert_eq!(accepted(&granted_listener), 1);

    // The port itself granted: it connects.
    profile.tcp_connect = vec![port];
    assert_eq!(sandboxed(&profile, &[Op::TcpConnect(port)]), [Outcome::Ok]);
    assert_eq!(accepted(&listener), 1);

    // Control: fast open does reach an ungranted port without the sandbox, so the refusal
    // above is the filter's doing.
    assert_eq!(unsandboxed(&[Op::TcpFastOpen(port)]), [Outcome::Ok]);
    assert_eq!(accepted(&listener), 1);
}

#[test]
fn tcp_bind_needs_the_port() {
    let port = free_tcp_port();
    let granted = free_tcp_port();
    let mut profile = base_profile();
    profile.tcp_bind = vec![granted];
    let ops = [Op::TcpBind(port), Op::TcpBind(granted)];
    check(
        "tcp bind",
        &ops,
        &sandboxed(&profile, &ops),
        &[Expect::Errno(EACCES), Expect::Ok],
    );
    profile.tcp_bind = vec![port];
    assert_eq!(sandboxed(&profile, &[Op::TcpBind(port)]), [Outcome::Ok]);

    // listen() on a socket never bound takes an ephemeral port without the bind() landlock
    // checks. With nothing to bind (and no unix sockets) the filter refuses listen() itself.
    let mut connect_only = base_profile();
    connect_only.tcp_connect = vec![granted];
    assert_eq!(
        sandboxed(&connect_only, &[Op::ListenUnbound]),
        [Outcome::Errno(EACCES)]
    );
    // FIXME(landlock ABI 7): once any bind port is granted, listen() is allowed and the
    // ephemeral port it takes is not checked. Today's behaviour, documented in README.md.
    let mut bind_granted = base_profile();
    bind_granted.tcp_bind = vec![granted];
    assert_eq!(
        sandboxed(&bind_granted, &[Op::ListenUnbound]),
        [Outcome::Ok]
    );
}

#[test]
fn mptcp_is_refused_even_to_a_granted_port() {
    let (listener, port) = loopback_listener();
    let mut profile = base_profile();
    profile.tcp_connect = vec![port];
    let ops = [Op::MptcpConnect(port), Op::TcpConnect(port)];
    check(
        "mptcp",
        &ops,
        &sandboxed(&profile, &ops),
        &[Expect::Errno(EACCES), Expect::Ok],
    );
    assert_eq!(accepted(&listener), 1, "only the TCP connect may arrive");
    // Control: this kernel has MPTCP and it reaches the port without the sandbox.
    assert_eq!(unsandboxed(&[Op::MptcpConnect(port)]), [Outcome::Ok]);
    assert_eq!(accepted(&listener), 1);
}

#[test]
fn udp_is_refused() {
    let receiver = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = receiver.local_addr().unwrap().port();
    receiver
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut buffer = [0u8; 64];

    // TCP is granted, so IPv4 sockets are not refused wholesale: the datagram socket still is.
    let mut profile = base_profile();
    profile.tcp_connect = vec![free_tcp_port()];
    assert_eq!(
        sandboxed(&profile, &[Op::UdpSend(port)]),
        [Outcome::Errno(EACCES)]
    );
    let error = receiver.recv_from(&mut buffer).unwrap_err();
    assert!(
        matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
        "the listener received something: {error}"
    );

    // Control: without the sandbox the datagram arrives.
    receiver
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    assert_eq!(unsandboxed(&[Op::UdpSend(port)]), [Outcome::Ok]);
    let (length, _) = receiver.recv_from(&mut buffer).unwrap();
    assert_eq!(&buffer[..length], b"escape");
}

#[test]
fn pathname_unix_sockets_need_the_grant() {
    let layout = Layout::new();
    let outside = layout.path("outside/sock");
    let inside = layout.path("rw/sock");
    let _outside_listener = UnixListener::bind(&outside).unwrap();
    let _inside_listener = UnixListener::bind(&inside).unwrap();

    // Unix sockets not granted: no unix socket() at all, wherever the peer is. A stream pair
    // stays allowed (it reaches only itself); a datagram pair could sendto() any path.
    let profile = layout.profile();
    let ops = [
        Op::UnixConnect(outside.clone()),
        Op::UnixConnect(inside.clone()),
        Op::SocketpairStream,
        Op::SocketpairDgram,
    ];
    let expected = [
        Expect::Errno(EACCES),
        Expect::Errno(EACCES),
        Expect::Ok,
        Expect::Errno(EACCES),
    ];
    check(
        "unix, not granted",
        &ops,
        &sandboxed(&profile, &ops),
        &expected,
    );

    // Granted: a socket beneath read_write connects.
    let mut granted = layout.profile();
    granted.unix_sockets = true;
    let abi = kernel_probe().landlock_abi().unwrap();
    // FIXME(landlock ABI < 9): the path of a unix socket connect is not checked, so a granted
    // upstream reaches sockets outside its roots too (prepare warns). From ABI 9 landlock
    // checks it (`RESOLVE_UNIX`), and this flips to a denial.
    let outside_expected = if abi >= 9 {
        Expect::Errno(EACCES)
    } else {
        Expect::Ok
    };
    let ops = [
        Op::UnixConnect(inside),
        Op::UnixConnect(outside.clone()),
        Op::SocketpairDgram,
    ];
    check(
        "unix, granted",
        &ops,
        &sandboxed(&granted, &ops),
        &[Expect::Ok, outside_expected, Expect::Ok],
    );

    // Control: both refusals above are the sandbox's.
    let ops = [Op::UnixConnect(outside), Op::SocketpairDgram];
    check(
        "unix (control)",
        &ops,
        &unsandboxed(&ops),
        &[Expect::Ok, Expect::Ok],
    );
}

#[test]
fn abstract_unix_sockets_are_scoped() {
    let name = format!(
        "portcullis-sandbox-test-{}-{:?}",
        std::process::id(),
        thread::current().id()
    );
    let address = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let _listener = UnixListener::bind_addr(&address).unwrap();
    let ops = [Op::AbstractConnect(name)];

    assert_eq!(sandboxed(&base_profile(), &ops), [Outcome::Errno(EACCES)]);
    // Even with unix sockets granted, landlock's scope refuses a socket made outside.
    let mut granted = base_profile();
    granted.unix_sockets = true;
    assert_eq!(sandboxed(&granted, &ops), [Outcome::Errno(EPERM)]);
    assert_eq!(unsandboxed(&ops), [Outcome::Ok]);
}

#[test]
fn signals_to_outside_processes_are_scoped() {
    let ops = [Op::KillParent, Op::KillSelf];
    check(
        "signals",
        &ops,
        &sandboxed(&base_profile(), &ops),
        &[Expect::Errno(EPERM), Expect::Ok],
    );
    check(
        "signals (control)",
        &ops,
        &unsandboxed(&ops),
        &[Expect::Ok, Expect::Ok],
    );
}

#[test]
fn inherited_descriptors_are_closed() {
    // A descriptor without close-on-exec at fd 9, as a careless parent would leak one: dup2 in
    // a pre_exec hook registered before the sandbox's, so it runs first.
    let file = fs::File::open(std::env::current_exe().unwrap()).unwrap();
    let raw = file.as_raw_fd();
    let leak = move |command: &mut Command| {
        // SAFETY: dup2 is async-signal-safe and touches only the child's descriptor table.
        unsafe {
            command.pre_exec(move || {
                if libc::dup2(raw, 9) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    };
    let ops = [Op::FdOpen(9), Op::FdOpen(1)];
    check(
        "descriptors",
        &ops,
        &sandboxed_with(&base_profile(), &ops, leak),
        &[Expect::Errno(EBADF), Expect::Ok],
    );
    check(
        "descriptors (control)",
        &ops,
        &unsandboxed_with(&ops, leak),
        &[Expect::Ok, Expect::Ok],
    );
    drop(file);
}

#[test]
fn limits_are_in_effect() {
    let layout = Layout::new();
    let mut profile = layout.profile();
    profile.limits = Limits {
        address_space: Some(8 << 30),
        processes: Some(4096),
        file_size: Some(1 << 20),
        open_files: Some(64),
    };
    // What the child gets may be lowered to this process's hard limits: read it from prepare.
    let effective = prepare(&profile).unwrap().summary().limits;
    let both = |value: Option<u64>| {
        let value = value.unwrap();
        format!("{value}/{value}")
    };
    let expected_limits = format!(
        "as={} nproc={} fsize={} nofile={}",
        both(effective.address_space),
        both(effective.processes),
        both(effective.file_size),
        both(effective.open_files)
    );
    let ops = [
        Op::Limits,
        Op::WriteBytes(layout.path("rw/small"), 1000),
        Op::WriteBytes(layout.path("rw/big"), 2 << 20),
    ];
    check(
        "limits",
        &ops,
        &sandboxed(&profile, &ops),
        &[
            Expect::Value(expected_limits.clone()),
            Expect::Ok,
            Expect::Errno(EFBIG),
        ],
    );
    let control = unsandboxed(&ops);
    assert_ne!(
        control[0],
        Outcome::Value(expected_limits),
        "control has the same limits"
    );
    assert_eq!(control[1..], [Outcome::Ok, Outcome::Ok]);
}

#[test]
fn io_uring_is_refused() {
    assert_eq!(
        sandboxed(&base_profile(), &[Op::IoUring]),
        [Outcome::Errno(EPERM)]
    );
    assert_eq!(unsandboxed(&[Op::IoUring]), [Outcome::Ok]);
}

/// What landlock cannot see, refused by the filter. The control shows each errno is the
/// filter's: the kernel itself answers differently (or not at all) without the sandbox.
#[test]
fn what_landlock_cannot_see_is_refused() {
    let ops = [
        Op::X32Socket,
        Op::Tiocsti,
        Op::Keyctl,
        Op::NoNewPrivs,
        Op::SeccompMode,
    ];
    let sandboxed_expected = [
        if cfg!(target_arch = "x86_64") {
            Expect::Errno(EPERM)
        } else {
            Expect::Value("not x86_64".into())
        },
        Expect::Errno(EPERM),
        Expect::Errno(EPERM),
        Expect::Value("1".into()),
        Expect::Value("2".into()),
    ];
    check(
        "hardening",
        &ops,
        &sandboxed(&base_profile(), &ops),
        &sandboxed_expected,
    );
    let control_expected = [
        // ENOSYS where the kernel lacks x32, a socket where it has it.
        if cfg!(target_arch = "x86_64") {
            Expect::Not(EPERM)
        } else {
            Expect::Value("not x86_64".into())
        },
        // Standard input is /dev/null: not a terminal.
        Expect::Errno(ENOTTY),
        Expect::Not(EPERM),
        Expect::Value("0".into()),
        Expect::Value("0".into()),
    ];
    check(
        "hardening (control)",
        &ops,
        &unsandboxed(&ops),
        &control_expected,
    );
}

#[test]
fn only_granted_socket_families_can_be_created() {
    use libc::{
        AF_INET, AF_INET6, AF_NETLINK, AF_PACKET, AF_UNIX, AF_VSOCK, IPPROTO_ICMP, IPPROTO_MPTCP,
        IPPROTO_SCTP, IPPROTO_TCP, IPPROTO_UDP, SOCK_CLOEXEC, SOCK_DGRAM, SOCK_NONBLOCK, SOCK_RAW,
        SOCK_SEQPACKET, SOCK_STREAM,
    };
    let refused = Expect::Errno(EACCES);
    // Each `socket(domain, type, protocol)` with what the sandbox (TCP granted, unix not)
    // answers and what the kernel answers without it. Where the machine may lack a module or a
    // capability, the control only has to show the kernel's answer is not the sandbox's EACCES.
    let cases = [
        ((AF_INET, SOCK_STREAM, 0), Expect::Ok, Expect::Ok),
        (
            (
                AF_INET,
                SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
                IPPROTO_TCP,
            ),
            Expect::Ok,
            Expect::Ok,
        ),
        (
            (AF_INET6, SOCK_STREAM, 0),
            Expect::Not(EACCES),
            Expect::Not(EACCES),
        ),
        ((AF_INET, SOCK_DGRAM, 0), refused.clone(), Expect::Ok),
        (
            (AF_INET6, SOCK_DGRAM, IPPROTO_UDP),
            refused.clone(),
            Expect::Not(EACCES),
        ),
        (
            (AF_INET, SOCK_STREAM, IPPROTO_MPTCP),
            refused.clone(),
            Expect::Ok,
        ),
        (
            (AF_INET, SOCK_STREAM, IPPROTO_SCTP),
            refused.clone(),
            Expect::Not(EACCES),
        ),
        (
            (AF_INET, SOCK_SEQPACKET, IPPROTO_SCTP),
            refused.clone(),
            Expect::Not(EACCES),
        ),
        (
            (AF_INET, SOCK_RAW, IPPROTO_ICMP),
            refused.clone(),
            Expect::Not(EACCES),
        ),
        ((AF_NETLINK, SOCK_RAW, 0), refused.clone(), Expect::Ok),
        (
            (AF_PACKET, SOCK_RAW, 0),
            refused.clone(),
            Expect::Not(EACCES),
        ),
        ((AF_UNIX, SOCK_STREAM, 0), refused.clone(), Expect::Ok),
        ((AF_UNIX, SOCK_DGRAM, 0), refused.clone(), Expect::Ok),
        ((AF_VSOCK, SOCK_STREAM, 0), refused, Expect::Not(EACCES)),
    ];
    let ops: Vec<Op> = cases
        .iter()
        .map(|((domain, kind, protocol), _, _)| Op::Socket(*domain, *kind, *protocol))
        .collect();
    let mut profile = base_profile();
    profile.tcp_connect = vec![free_tcp_port()];
    let expected: Vec<Expect> = cases
        .iter()
        .map(|(_, sandboxed, _)| sandboxed.clone())
        .collect();
    check("sockets", &ops, &sandboxed(&profile, &ops), &expected);
    let control: Vec<Expect> = cases
        .iter()
        .map(|(_, _, control)| control.clone())
        .collect();
    check("sockets (control)", &ops, &unsandboxed(&ops), &control);
}

/// The caller spawns with tokio: the same hook, installed through `tokio::process::Command`.
#[test]
fn a_tokio_command_is_sandboxed_too() {
    let layout = Layout::new();
    let ops = [
        Op::SeccompMode,
        Op::Read(layout.path("outside/shadow")),
        Op::Read(layout.path("ro/readable.txt")),
    ];
    let prepared = prepare(&layout.profile()).unwrap();
    let mut command = tokio::process::Command::from(harness::probe_command(&ops));
    prepared.install(&mut command);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .enable_io()
        .build()
        .unwrap();
    let output = runtime.block_on(async {
        let child = command.kill_on_drop(true).spawn().unwrap();
        tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
            .await
            .unwrap()
            .unwrap()
    });
    let outcomes = harness::parse(&output, ops.len());
    check(
        "tokio",
        &ops,
        &outcomes,
        &[Expect::Value("2".into()), Expect::Errno(EACCES), Expect::Ok],
    );
}

/// What is shared with every process of the user without going through a file: System V IPC
/// (found by a small integer id) and other processes' limits. A POSIX message queue is a file
/// to landlock, so it is denied by the file rules.
#[test]
fn ipc_and_other_processes_limits_are_refused() {
    // SAFETY: a private segment, removed below.
    let segment = unsafe { libc::shmget(libc::IPC_PRIVATE, 4096, libc::IPC_CREAT | 0o600) };
    assert!(segment >= 0, "{}", std::io::Error::last_os_error());
    let name = format!("/portcullis-sandbox-test-{}", std::process::id());
    let queue_name = std::ffi::CString::new(name.clone()).unwrap();
    // SAFETY: a valid name; default attributes.
    let queue = unsafe {
        libc::mq_open(
            queue_name.as_ptr(),
            libc::O_CREAT | libc::O_RDWR,
            0o600 as libc::c_uint,
            std::ptr::null::<libc::mq_attr>(),
        )
    };
    assert!(queue >= 0, "{}", std::io::Error::last_os_error());

    let ops = [Op::ShmAttach(segment), Op::MqOpen(name), Op::PrlimitParent];
    let sandboxed_outcomes = sandboxed(&base_profile(), &ops);
    let control_outcomes = unsandboxed(&ops);
    // SAFETY: removing what this test made.
    unsafe {
        libc::shmctl(segment, libc::IPC_RMID, std::ptr::null_mut());
        libc::mq_close(queue);
        libc::mq_unlink(queue_name.as_ptr());
    }
    check(
        "ipc",
        &ops,
        &sandboxed_outcomes,
        &[
            Expect::Errno(EPERM),
            Expect::Errno(EACCES),
            Expect::Errno(EPERM),
        ],
    );
    check(
        "ipc (control)",
        &ops,
        &control_outcomes,
        &[Expect::Ok, Expect::Ok, Expect::Ok],
    );
}

/// Whether this test runs as root (the privileged controls succeed only then).
fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt as _;
    fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

#[test]
fn metadata_cannot_be_changed_anywhere_not_even_through_a_read_only_descriptor() {
    let layout = Layout::new();
    let path = |relative: &str| layout.path(relative);
    let profile = layout.profile();
    let metadata = |name: &str, relative: &str| Op::Metadata(name.to_owned(), path(relative));
    let ops = vec![
        // Outside every root: a stand-in for the evidence log and the user's private key.
        metadata("chmod", "outside/victim"),
        metadata("chmod", "home/.ssh/id_rsa"),
        metadata("chown", "outside/victim"),
        metadata("utime", "outside/victim"),
        metadata("setxattr", "outside/victim"),
        metadata("removexattr", "outside/victim"),
        // A file granted read-only, changed through the descriptor reading it.
        metadata("fchmod-read-only", "ro/readable.txt"),
        // Inside the read-write root as well: refused outright, by call.
        metadata("chmod", "rw/existing.txt"),
    ];
    let before: Vec<u32> = ["outside/victim", "home/.ssh/id_rsa", "ro/readable.txt"]
        .iter()
        .map(|relative| mode(&path(relative)))
        .collect();
    let refused = vec![Expect::Errno(EPERM); ops.len()];
    check("metadata", &ops, &sandboxed(&profile, &ops), &refused);
    let after: Vec<u32> = ["outside/victim", "home/.ssh/id_rsa", "ro/readable.txt"]
        .iter()
        .map(|relative| mode(&path(relative)))
        .collect();
    assert_eq!(before, after, "a mode changed from inside the sandbox");
    // Control: each works unsandboxed (the files are the user's own), except removing the
    // attribute the refused setxattr never set.
    let mut works = vec![Expect::Ok; ops.len()];
    works[5] = Expect::Not(EPERM);
    check("metadata (control)", &ops, &unsandboxed(&ops), &works);
}

#[test]
fn no_capability_namespace_device_or_privileged_call_is_left() {
    let layout = Layout::new();
    let path = |relative: &str| layout.path(relative);
    let profile = layout.profile();
    let privileged = |name: &str| Op::Privileged(name.to_owned());
    let metadata = |name: &str, relative: &str| Op::Metadata(name.to_owned(), path(relative));
    let ops = vec![
        Op::Capabilities,
        privileged("unshare-user"),
        privileged("unshare-net"),
        privileged("unshare-mount"),
        privileged("setns"),
        privileged("clone-newuser"),
        privileged("clone3"),
        privileged("userfaultfd"),
        privileged("bpf-map"),
        privileged("perf-event-open"),
        privileged("open-by-handle"),
        metadata("mknod-char", "rw/kmsg"),
        metadata("mknod-block", "rw/disk"),
        // A FIFO in a root is an ordinary file for this purpose: still allowed.
        metadata("mknod-fifo", "rw/fifo"),
        // Last: in the control it works, and every later path would be under the new root.
        metadata("chroot", "rw"),
    ];
    // Nothing effective, permitted, inheritable or ambient; as root, nothing in the bounding set
    // either (unprivileged, the bounding set cannot be emptied and grants nothing at exec
    // under no_new_privs).
    let bounding = if running_as_root() {
        "0".to_owned()
    } else {
        bounding_count()
    };
    let mut expected = vec![Expect::Value(format!("0/0/0/{bounding}/0"))];
    expected.extend(vec![Expect::Errno(EPERM); 5]);
    expected.push(Expect::Errno(libc::ENOSYS));
    expected.extend(vec![Expect::Errno(EPERM); 6]);
    expected.push(Expect::Ok);
    expected.push(Expect::Errno(EPERM));
    check("privileged", &ops, &sandboxed(&profile, &ops), &expected);
    assert!(!path("rw/kmsg").exists() && !path("rw/disk").exists());

    // Controls, unsandboxed: clone3 is there (a null argument is refused, not ENOSYS); as root
    // the rest work too, so each refusal above is the sandbox's doing.
    // The FIFO the sandboxed run made would make the control's fail with EEXIST.
    fs::remove_file(path("rw/fifo")).unwrap();
    let control = unsandboxed(&ops);
    assert!(
        Expect::Not(libc::ENOSYS).matches_outcome(&control[6]),
        "clone3 control: {:?}",
        control[6]
    );
    if running_as_root() {
        for (index, op) in ops.iter().enumerate().skip(1) {
            let worked = match op {
                // Invalid arguments (setns, clone3, open_by_handle_at) or a multi-threaded
                // caller (unshare of a user namespace): anything but the sandbox's EPERM.
                Op::Privileged(name)
                    if name.starts_with("unshare")
                        || ["setns", "clone3", "open-by-handle"].contains(&name.as_str()) =>
                {
                    Expect::Not(EPERM).matches_outcome(&control[index])
                }
                _ => Expect::Ok.matches_outcome(&control[index]),
            };
            assert!(worked, "control {op:?}: {:?}", control[index]);
        }
    }
}

/// How many capabilities this process's bounding set holds (an unprivileged child keeps them).
fn bounding_count() -> String {
    let hex = fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|line| line.strip_prefix("CapBnd:").map(|v| v.trim().to_owned()))
        .unwrap();
    u64::from_str_radix(&hex, 16)
        .unwrap()
        .count_ones()
        .to_string()
}

#[test]
fn an_unprivileged_upstream_is_refused_the_same() {
    if !running_as_root() {
        // Already unprivileged: the test above is this one.
        return;
    }
    // The child drops to nobody before the hook runs (std sets the ids first).
    let layout = Layout::new();
    let profile = layout.profile();
    let privileged = |name: &str| Op::Privileged(name.to_owned());
    let ops = vec![
        privileged("clone-newuser"),
        privileged("unshare-user"),
        privileged("userfaultfd"),
        privileged("clone3"),
    ];
    let as_nobody = |command: &mut Command| {
        command.uid(65534).gid(65534);
    };
    let expected = vec![
        Expect::Errno(EPERM),
        Expect::Errno(EPERM),
        Expect::Errno(EPERM),
        Expect::Errno(libc::ENOSYS),
    ];
    check(
        "unprivileged",
        &ops,
        &sandboxed_with(&profile, &ops, as_nobody),
        &expected,
    );
    // Control: an unprivileged user may make a user namespace (where the kernel allows it).
    let control = unsandboxed_with(&ops, as_nobody);
    let userns_allowed = fs::read_to_string("/proc/sys/user/max_user_namespaces")
        .is_ok_and(|value| value.trim() != "0");
    if userns_allowed {
        assert_eq!(
            control[0],
            Outcome::Ok,
            "clone into a user namespace, as nobody"
        );
    }
}

#[test]
fn every_call_check_lists_as_always_refused_is_refused() {
    let layout = Layout::new();
    let calls: Vec<(&str, i64)> = portcullis_sandbox::refused_calls().collect();
    assert!(calls.len() > 60, "{calls:?}");
    let ops: Vec<Op> = calls.iter().map(|&(_, number)| Op::Raw(number)).collect();
    let outcomes = sandboxed(&layout.profile(), &ops);
    let allowed: Vec<String> = calls
        .iter()
        .zip(&outcomes)
        .filter(|(_, outcome)| **outcome != Outcome::Errno(EPERM))
        .map(|((name, _), outcome)| format!("{name}: {outcome:?}"))
        .collect();
    assert!(
        allowed.is_empty(),
        "listed as refused but not refused: {allowed:?}"
    );
}
