//! Unit cases: the kernel check and its messages (pure, so every refusal is tested on any
//! kernel), the seccomp programs run through a small BPF interpreter against tables of calls,
//! and `prepare`'s summary, warnings and digest input on the running kernel.
#![expect(
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests"
)]

use std::fs;
use std::net::Ipv4Addr;
use std::path::PathBuf;

use portcullis_core::HostPort;

use super::*;
use crate::support::{check, requirements};

fn support(abi: u32) -> KernelSupport {
    KernelSupport {
        landlock: LandlockSupport::Abi(abi),
        seccomp_filter: true,
    }
}

fn tcp_profile() -> Profile {
    Profile {
        tcp_connect: vec![443],
        ..Profile::default()
    }
}

#[test]
fn an_old_landlock_abi_is_refused_naming_what_is_missing() {
    let cases: [(u32, Profile, &str); 4] = [
        (
            3,
            tcp_profile(),
            "the kernel's landlock ABI is 3; this profile needs TCP port rules (ABI 4), signal \
             scoping (ABI 6) and abstract unix socket scoping (ABI 6), which Linux 6.12 or later \
             has; upgrade the kernel or turn the sandbox off for this upstream",
        ),
        (
            5,
            Profile::default(),
            "the kernel's landlock ABI is 5; this profile needs signal scoping (ABI 6) and \
             abstract unix socket scoping (ABI 6), which Linux 6.12 or later has; upgrade the \
             kernel or turn the sandbox off for this upstream",
        ),
        (
            2,
            Profile::default(),
            "the kernel's landlock ABI is 2; this profile needs file rules that cover truncation \
             (ABI 3), signal scoping (ABI 6) and abstract unix socket scoping (ABI 6), which \
             Linux 6.12 or later has; upgrade the kernel or turn the sandbox off for this upstream",
        ),
        (
            1,
            tcp_profile(),
            "the kernel's landlock ABI is 1; this profile needs file rules that cover truncation \
             (ABI 3), TCP port rules (ABI 4), signal scoping (ABI 6) and abstract unix socket \
             scoping (ABI 6), which Linux 6.12 or later has; upgrade the kernel or turn the \
             sandbox off for this upstream",
        ),
    ];
    for (abi, profile, expected) in cases {
        let error = check(&profile, &support(abi)).unwrap_err();
        assert_eq!(error.to_string(), expected, "ABI {abi}");
    }
}

#[test]
fn a_new_enough_kernel_passes_the_check() {
    for abi in [6, 7, 8, 12] {
        assert_eq!(check(&tcp_profile(), &support(abi)).unwrap(), abi);
    }
}

#[test]
fn no_landlock_or_no_seccomp_is_refused() {
    let cases = [
        (
            LandlockSupport::NotBuilt,
            true,
            "the kernel has no landlock (it was built without `CONFIG_SECURITY_LANDLOCK`); the \
             sandbox needs Linux 6.12 or later with landlock, or turn the sandbox off for this \
             upstream",
        ),
        (
            LandlockSupport::NotEnabled,
            true,
            "landlock is built into the kernel but not enabled; add `landlock` to the `lsm=` boot \
             parameter, or turn the sandbox off for this upstream",
        ),
        (
            LandlockSupport::Abi(7),
            false,
            "the kernel cannot install seccomp filters (it needs `CONFIG_SECCOMP_FILTER`); turn \
             the sandbox off for this upstream",
        ),
    ];
    for (landlock, seccomp_filter, expected) in cases {
        let support = KernelSupport {
            landlock,
            seccomp_filter,
        };
        assert_eq!(
            check(&Profile::default(), &support)
                .unwrap_err()
                .to_string(),
            expected
        );
    }
}

#[test]
fn tcp_port_rules_are_required_only_when_ports_are_granted() {
    let needs = |profile: &Profile| -> Vec<u32> {
        requirements(profile)
            .iter()
            .map(|requirement| requirement.abi)
            .collect()
    };
    assert_eq!(needs(&Profile::default()), [3, 6, 6]);
    assert_eq!(needs(&tcp_profile()), [3, 4, 6, 6]);
    let bind_only = Profile {
        tcp_bind: vec![8080],
        ..Profile::default()
    };
    assert_eq!(needs(&bind_only), [3, 4, 6, 6]);
    let names_only = Profile {
        tcp_connect_hosts: grants(&["api.github.com:443"]),
        ..Profile::default()
    };
    assert_eq!(needs(&names_only), [3, 4, 6, 6]);
}

#[test]
fn the_kernel_support_reads_well() {
    assert_eq!(
        support(7).to_string(),
        "landlock ABI 7, seccomp filters available"
    );
    let none = KernelSupport {
        landlock: LandlockSupport::NotEnabled,
        seccomp_filter: false,
    };
    assert_eq!(
        none.to_string(),
        "landlock built in but not enabled at boot, no seccomp filters"
    );
    // This machine (and CI) can enforce every profile: the containment tests depend on it.
    let here = probe();
    assert!(here.landlock_abi().unwrap() >= 6, "{here}");
    assert!(here.seccomp_filter, "{here}");
}

// --- The seccomp programs, interpreted -----------------------------------------------------

/// What the stacked programs answer for one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Allow,
    Errno(i32),
    Kill,
}

const AUDIT_ARCH_X86_64: u32 = 0xC000_003E;
const AUDIT_ARCH_AARCH64: u32 = 0xC000_00B7;
const AUDIT_ARCH_RISCV64: u32 = 0xC000_00F3;
const AUDIT_ARCH_I386: u32 = 0x4000_0003;

fn native_arch() -> u32 {
    if cfg!(target_arch = "x86_64") {
        AUDIT_ARCH_X86_64
    } else if cfg!(target_arch = "aarch64") {
        AUDIT_ARCH_AARCH64
    } else if cfg!(target_arch = "riscv64") {
        AUDIT_ARCH_RISCV64
    } else {
        panic!("add this architecture's AUDIT_ARCH value")
    }
}

/// `struct seccomp_data` as the programs load it: 32-bit little-endian words.
struct SeccompData {
    nr: i64,
    arch: u32,
    args: [u64; 6],
}

impl SeccompData {
    fn word(&self, offset: u32) -> u32 {
        match offset {
            0 => self.nr as u32,
            4 => self.arch,
            8 | 12 => 0,
            16..=63 => {
                let arg = self.args[((offset - 16) / 8) as usize];
                if offset.is_multiple_of(8) {
                    arg as u32
                } else {
                    (arg >> 32) as u32
                }
            }
            _ => panic!("load outside seccomp_data at {offset}"),
        }
    }
}

/// Classic BPF, the subset seccomp programs use.
fn interpret(program: &[libc::sock_filter], data: &SeccompData) -> u32 {
    let mut accumulator = 0u32;
    let mut pc = 0usize;
    loop {
        let instruction = program[pc];
        let k = instruction.k;
        let branch = |taken: bool| {
            usize::from(if taken {
                instruction.jt
            } else {
                instruction.jf
            })
        };
        pc += 1;
        match instruction.code {
            0x20 => accumulator = data.word(k),
            0x54 => accumulator &= k,
            0x05 => pc += k as usize,
            0x15 => pc += branch(accumulator == k),
            0x25 => pc += branch(accumulator > k),
            0x35 => pc += branch(accumulator >= k),
            0x45 => pc += branch(accumulator & k != 0),
            0x06 => return k,
            code => panic!("unexpected BPF opcode {code:#x}"),
        }
    }
}

/// Every program's answer combined as the kernel does: the most severe action wins.
fn verdict(sockets: SocketPolicy, nr: i64, args: [u64; 6], arch: u32) -> Verdict {
    let programs = filter::compile(sockets).unwrap();
    let data = SeccompData { nr, arch, args };
    let answer = programs
        .iter()
        .map(|program| interpret(program.instructions(), &data))
        .min_by_key(|answer| (answer & 0xffff_0000) as i32)
        .unwrap();
    match answer & 0xffff_0000 {
        libc::SECCOMP_RET_ALLOW => Verdict::Allow,
        libc::SECCOMP_RET_ERRNO => Verdict::Errno((answer & 0xffff) as i32),
        libc::SECCOMP_RET_KILL_PROCESS => Verdict::Kill,
        other => panic!("unexpected action {other:#x}"),
    }
}

const NONE: SocketPolicy = SocketPolicy {
    inet_tcp: false,
    unix: false,
    tcp_bind: false,
};
const TCP: SocketPolicy = SocketPolicy {
    inet_tcp: true,
    unix: false,
    tcp_bind: false,
};
const TCP_BIND: SocketPolicy = SocketPolicy {
    inet_tcp: true,
    unix: false,
    tcp_bind: true,
};
const UNIX: SocketPolicy = SocketPolicy {
    inet_tcp: false,
    unix: true,
    tcp_bind: false,
};
const BOTH: SocketPolicy = SocketPolicy {
    inet_tcp: true,
    unix: true,
    tcp_bind: false,
};

fn int(value: i32) -> u64 {
    u64::from(value as u32)
}

#[test]
fn socket_calls_follow_the_grants() {
    use libc::{
        AF_INET, AF_INET6, AF_NETLINK, AF_PACKET, AF_UNIX, IPPROTO_MPTCP, IPPROTO_SCTP,
        IPPROTO_TCP, SOCK_CLOEXEC, SOCK_DGRAM, SOCK_NONBLOCK, SOCK_RAW, SOCK_SEQPACKET,
        SOCK_STREAM,
    };
    const A: Verdict = Verdict::Allow;
    const R: Verdict = Verdict::Errno(libc::EACCES);
    let stream_flags = SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK;
    // (domain, type, protocol) and the verdict under NONE, TCP, UNIX, BOTH.
    let table: [((i32, i32, i32), [Verdict; 4]); 15] = [
        ((AF_INET, SOCK_STREAM, 0), [R, A, R, A]),
        ((AF_INET, stream_flags, IPPROTO_TCP), [R, A, R, A]),
        ((AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0), [R, A, R, A]),
        ((AF_INET, SOCK_STREAM, IPPROTO_MPTCP), [R, R, R, R]),
        ((AF_INET6, SOCK_STREAM, IPPROTO_MPTCP), [R, R, R, R]),
        ((AF_INET, SOCK_STREAM, IPPROTO_SCTP), [R, R, R, R]),
        ((AF_INET, SOCK_SEQPACKET, IPPROTO_SCTP), [R, R, R, R]),
        ((AF_INET, SOCK_DGRAM, 0), [R, R, R, R]),
        ((AF_INET, SOCK_RAW, libc::IPPROTO_ICMP), [R, R, R, R]),
        ((AF_INET, SOCK_STREAM | 0x0100_0000, 0), [R, R, R, R]),
        ((AF_UNIX, SOCK_STREAM, 0), [R, R, A, A]),
        ((AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0), [R, R, A, A]),
        ((AF_UNIX, SOCK_SEQPACKET, 0), [R, R, A, A]),
        ((AF_NETLINK, SOCK_RAW, 0), [R, R, R, R]),
        ((AF_PACKET, SOCK_RAW, 0), [R, R, R, R]),
    ];
    let mut problems = Vec::new();
    for ((domain, kind, protocol), verdicts) in table {
        for (sockets, expected) in [NONE, TCP, UNIX, BOTH].into_iter().zip(verdicts) {
            let args = [int(domain), int(kind), int(protocol), 0, 0, 0];
            let got = verdict(sockets, libc::SYS_socket, args, native_arch());
            if got != expected {
                problems.push(format!(
                    "socket({domain}, {kind:#x}, {protocol}) under {sockets:?}: {got:?}, \
                     expected {expected:?}"
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));

    // The kernel reads these arguments as ints: garbage in the upper half changes nothing.
    let high = |value: i32| int(value) | 0xdead_beef_0000_0000;
    let args = [high(AF_INET), high(SOCK_STREAM), high(IPPROTO_TCP), 0, 0, 0];
    assert_eq!(verdict(TCP, libc::SYS_socket, args, native_arch()), A);
    let args = [high(AF_INET), high(SOCK_DGRAM), 0, 0, 0, 0];
    assert_eq!(verdict(TCP, libc::SYS_socket, args, native_arch()), R);
}

#[test]
fn socketpair_listen_and_fast_open_follow_the_grants() {
    use libc::{
        AF_INET, AF_UNIX, MSG_DONTWAIT, MSG_FASTOPEN, SOCK_DGRAM, SOCK_SEQPACKET, SOCK_STREAM,
    };
    const A: Verdict = Verdict::Allow;
    const R: Verdict = Verdict::Errno(libc::EACCES);
    let native = native_arch();
    let pair = |sockets, domain, kind| {
        verdict(
            sockets,
            libc::SYS_socketpair,
            [int(domain), int(kind), 0, 0, 0, 0],
            native,
        )
    };
    assert_eq!(pair(NONE, AF_UNIX, SOCK_STREAM | libc::SOCK_CLOEXEC), A);
    assert_eq!(pair(NONE, AF_UNIX, SOCK_SEQPACKET), A);
    assert_eq!(pair(NONE, AF_UNIX, SOCK_DGRAM), R);
    assert_eq!(pair(NONE, AF_INET, SOCK_STREAM), R);
    assert_eq!(pair(UNIX, AF_UNIX, SOCK_DGRAM), A);

    let listen = |sockets| verdict(sockets, libc::SYS_listen, [3, 16, 0, 0, 0, 0], native);
    assert_eq!(listen(NONE), R);
    assert_eq!(listen(TCP), R);
    assert_eq!(listen(TCP_BIND), A);
    assert_eq!(listen(UNIX), A);

    let sendto = |flags: i32| verdict(BOTH, libc::SYS_sendto, [3, 0, 1, int(flags), 0, 0], native);
    assert_eq!(sendto(0), A);
    assert_eq!(sendto(MSG_DONTWAIT), A);
    assert_eq!(sendto(MSG_FASTOPEN), R);
    assert_eq!(sendto(MSG_FASTOPEN | MSG_DONTWAIT), R);
    let sendmsg = |flags: i32| verdict(TCP, libc::SYS_sendmsg, [3, 0, int(flags), 0, 0, 0], native);
    assert_eq!(sendmsg(0), A);
    assert_eq!(sendmsg(MSG_FASTOPEN), R);
    let sendmmsg =
        |flags: i32| verdict(TCP, libc::SYS_sendmmsg, [3, 0, 1, int(flags), 0, 0], native);
    assert_eq!(sendmmsg(MSG_FASTOPEN), R);
}

#[test]
fn refusals_hold_under_every_policy() {
    const P: Verdict = Verdict::Errno(libc::EPERM);
    let native = native_arch();
    for sockets in [NONE, TCP, TCP_BIND, UNIX, BOTH] {
        for call in [
            libc::SYS_io_uring_setup,
            libc::SYS_io_uring_enter,
            libc::SYS_io_uring_register,
            libc::SYS_keyctl,
            libc::SYS_add_key,
            libc::SYS_request_key,
            libc::SYS_shmget,
            libc::SYS_shmat,
            libc::SYS_msgget,
            libc::SYS_msgsnd,
            libc::SYS_semget,
            libc::SYS_semop,
        ] {
            assert_eq!(
                verdict(sockets, call, [0; 6], native),
                P,
                "{call} under {sockets:?}"
            );
        }
        let ioctl =
            |command: u64| verdict(sockets, libc::SYS_ioctl, [0, command, 0, 0, 0, 0], native);
        assert_eq!(ioctl(filter::ioctl_number(libc::TIOCSTI)), P);
        assert_eq!(ioctl(filter::ioctl_number(libc::TIOCLINUX)), P);
        // The kernel takes the command as an unsigned int: the upper half cannot hide it.
        assert_eq!(
            ioctl(filter::ioctl_number(libc::TIOCSTI) | 0xffff_ffff_0000_0000),
            P
        );
        assert_eq!(
            ioctl(filter::ioctl_number(libc::TIOCGWINSZ)),
            Verdict::Allow
        );
        // prlimit on itself (pid 0, as glibc's getrlimit and setrlimit call it) passes; on
        // another process it is refused.
        let prlimit =
            |pid: u64| verdict(sockets, libc::SYS_prlimit64, [pid, 7, 0, 0, 0, 0], native);
        assert_eq!(prlimit(0), Verdict::Allow);
        assert_eq!(prlimit(1), P);
        assert_eq!(prlimit(0xffff_ffff_0000_0000), Verdict::Allow);
        // Ordinary calls pass.
        for call in [
            libc::SYS_read,
            libc::SYS_write,
            libc::SYS_openat,
            libc::SYS_execve,
        ] {
            assert_eq!(
                verdict(sockets, call, [0; 6], native),
                Verdict::Allow,
                "{call}"
            );
        }
        // Another architecture's calls (i386 through int 0x80) are killed, not filtered.
        assert_eq!(
            verdict(sockets, 102, [0; 6], AUDIT_ARCH_I386),
            Verdict::Kill
        );
        if cfg!(target_arch = "x86_64") {
            let x32 = 0x4000_0000 | libc::SYS_socket;
            assert_eq!(
                verdict(sockets, x32, [int(libc::AF_INET), 1, 0, 0, 0, 0], native),
                P
            );
        }
    }
}

// --- prepare on the running kernel ---------------------------------------------------------

/// A temp dir with a directory, a symlink to it and a file.
struct Tree {
    dir: tempfile::TempDir,
}

impl Tree {
    fn new() -> Tree {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("ro")).unwrap();
        fs::create_dir(dir.path().join("rw")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("ro"), dir.path().join("ro-link")).unwrap();
        fs::write(dir.path().join("tool"), "#!/bin/sh\n").unwrap();
        Tree { dir }
    }

    fn path(&self, relative: &str) -> PathBuf {
        self.dir.path().join(relative)
    }

    /// `text` with this tree's (symlink-resolved) location replaced by `$TREE`.
    fn anonymise(&self, text: &str) -> String {
        let real = fs::canonicalize(self.dir.path()).unwrap();
        text.replace(&real.display().to_string(), "$TREE")
            .replace(&self.dir.path().display().to_string(), "$TREE")
    }
}

fn tree_profile(tree: &Tree) -> Profile {
    Profile {
        read_only: vec![
            tree.path("ro-link"),
            tree.path("tool"),
            tree.path("missing"),
        ],
        read_write: vec![tree.path("rw")],
        tcp_connect: vec![443, 80, 443],
        tcp_connect_hosts: vec![],
        tcp_bind: vec![],
        unix_sockets: false,
        limits: Limits {
            open_files: Some(256),
            file_size: Some(1 << 30),
            ..Limits::default()
        },
    }
}

#[test]
fn describe_shows_the_effective_sandbox() {
    let tree = Tree::new();
    let prepared = prepare(&tree_profile(&tree)).unwrap();
    let abi = prepared.summary().landlock_abi;
    let expected = format!(
        "sandbox: landlock ABI {abi} and a seccomp filter
read and execute:
  $TREE/ro (given as $TREE/ro-link)
  $TREE/tool (file)
read and write:
  $TREE/rw
tcp connect: 80, 443
tcp bind: none
sockets: IPv4 and IPv6 TCP only (no UDP, MPTCP, SCTP or raw); no unix sockets (socketpair for \
stream and seqpacket pairs only); no listen(); no TCP fast open (MSG_FASTOPEN); no other family \
(netlink, packet, ...)
scoped to the sandbox: abstract unix sockets, signals
limits: address space unchanged, processes unchanged, file size 1 GiB, open files 256
always refused:
{refused}{x32}capabilities: all dropped (bounding, ambient, effective, permitted, inheritable)
descriptors: every inherited descriptor from 3 up is closed at exec; no_new_privs is set
warnings:
  sandbox path `$TREE/missing` (read and execute) does not exist; it grants nothing{root}
",
        // The refused calls are listed from the table the filter is compiled from.
        refused = crate::filter::REFUSED
            .iter()
            .map(|group| {
                let calls: Vec<&str> = group.calls.iter().map(|(name, _)| *name).collect();
                format!("  {} ({})\n", group.what, calls.join(", "))
            })
            .chain(
                crate::filter::REFUSED_WHEN
                    .iter()
                    .map(|rule| format!("  {rule}\n"))
            )
            .collect::<String>(),
        x32 = if cfg!(target_arch = "x86_64") {
            "  x32 system calls\n"
        } else {
            ""
        },
        root = ""
    );
    assert_eq!(tree.anonymise(&prepared.describe()), expected);
}

#[test]
fn the_digest_input_does_not_depend_on_order_or_repeats() {
    let tree = Tree::new();
    let profile = tree_profile(&tree);
    let mut shuffled = profile.clone();
    shuffled.read_only.reverse();
    shuffled.read_only.push(tree.path("ro"));
    shuffled.tcp_connect = vec![80, 443, 80];
    let digest = prepare(&profile).unwrap().digest_input();
    assert_eq!(prepare(&shuffled).unwrap().digest_input(), digest);

    let mut changed = profile.clone();
    changed.tcp_connect.push(8443);
    assert_ne!(prepare(&changed).unwrap().digest_input(), digest);

    let abi = probe().landlock_abi().unwrap();
    let expected = format!(
        "portcullis-sandbox 3
landlock-abi {abi}
path read-only dir $TREE/ro
path read-only file $TREE/tool
path read-write dir $TREE/rw
tcp-connect 80
tcp-connect 443
network shared
socket inet-tcp allowed
socket unix refused
socketpair unix-stream-seqpacket
listen refused
scope abstract-unix-socket
scope signal
limit address-space unchanged
limit processes unchanged
limit file-size 1073741824
limit open-files 256
refuse tcp-fast-open
refuse io-uring
refuse keyrings
refuse sysv-ipc
refuse prlimit-other
refuse tiocsti-tioclinux
{x32}descriptors cloexec-from-3
no-new-privs
",
        x32 = if cfg!(target_arch = "x86_64") {
            "refuse x32\n"
        } else {
            ""
        }
    );
    assert_eq!(tree.anonymise(&digest), expected);
}

#[test]
fn a_path_in_the_digest_cannot_forge_a_line() {
    let tree = Tree::new();
    let sneaky = tree.path("rw/x\npath read-write dir %2F");
    fs::create_dir(&sneaky).unwrap();
    let profile = Profile {
        read_write: vec![sneaky],
        ..Profile::default()
    };
    let digest = prepare(&profile).unwrap().digest_input();
    assert!(
        !digest
            .lines()
            .any(|line| line.starts_with("path read-write dir %")),
        "{digest}"
    );
    assert!(
        digest.contains("/rw/x%0Apath%20read-write%20dir%20%252F\n"),
        "{digest}"
    );
}

#[test]
fn a_relative_path_is_refused() {
    let profile = Profile {
        read_only: vec!["/usr".into()],
        read_write: vec!["data".into()],
        ..Profile::default()
    };
    let error = prepare(&profile).unwrap_err();
    assert_eq!(
        error.to_string(),
        "sandbox path `data` is relative; give an absolute path"
    );
}

#[test]
fn a_path_that_cannot_be_opened_is_an_error_not_a_skip() {
    let tree = Tree::new();
    // A path through a regular file: exists in part, cannot be opened (ENOTDIR).
    let profile = Profile {
        read_only: vec![tree.path("tool/inner")],
        ..Profile::default()
    };
    let error = prepare(&profile).unwrap_err();
    let message = tree.anonymise(&error.to_string());
    assert!(
        message.starts_with("cannot open sandbox path `$TREE/tool/inner`: "),
        "{message}"
    );
}

#[test]
fn a_limit_above_the_hard_limit_is_lowered_with_a_warning() {
    let (_, hard) = child::current_limit(Limit::OpenFiles).unwrap();
    if hard == u64::MAX {
        // Nothing is above an unlimited hard limit; this machine cannot show the lowering.
        return;
    }
    let profile = Profile {
        limits: Limits {
            open_files: Some(hard + 1),
            ..Limits::default()
        },
        ..Profile::default()
    };
    let prepared = prepare(&profile).unwrap();
    assert_eq!(prepared.summary().limits.open_files, Some(hard));
    assert_eq!(
        prepared.warnings(),
        [Warning::LimitLowered {
            limit: Limit::OpenFiles,
            requested: hard + 1,
            effective: hard,
        }]
    );
}

#[test]
fn granting_unix_sockets_warns_while_landlock_cannot_check_their_paths() {
    let profile = Profile {
        unix_sockets: true,
        ..Profile::default()
    };
    let prepared = prepare(&profile).unwrap();
    let abi = prepared.summary().landlock_abi;
    let warned = prepared
        .warnings()
        .contains(&Warning::UnixSocketPathsUnchecked { abi });
    assert_eq!(warned, abi < 9);
}

// --- host names ----------------------------------------------------------------------------

fn grants(texts: &[&str]) -> Vec<HostPort> {
    texts
        .iter()
        .map(|text| HostPort::parse(text).unwrap())
        .collect()
}

#[test]
fn each_name_gets_an_address_of_its_own_in_name_order() {
    let hosts = names::plan(&grants(&[
        "b.example:443",
        "a.example:8443",
        "a.example:443",
        "B.example:443",
    ]))
    .unwrap();
    let rendered: Vec<String> = hosts
        .iter()
        .map(|host| format!("{} {} {:?}", host.host, host.address, host.ports))
        .collect();
    assert_eq!(
        rendered,
        [
            "a.example 127.0.0.2 [443, 8443]",
            "b.example 127.0.0.3 [443]"
        ]
    );

    let mut many: Vec<String> = (0..MAX_HOSTS)
        .map(|index| format!("h{index:04}.example:443"))
        .collect();
    let texts: Vec<&str> = many.iter().map(String::as_str).collect();
    let hosts = names::plan(&grants(&texts)).unwrap();
    assert_eq!(hosts.last().unwrap().address, Ipv4Addr::new(127, 0, 4, 1));
    many.push("one-more.example:443".to_owned());
    let texts: Vec<&str> = many.iter().map(String::as_str).collect();
    let error = names::plan(&grants(&texts)).unwrap_err();
    assert_eq!(
        error.to_string(),
        "the profile grants 1025 host names; at most 1024 can be granted"
    );
}

#[test]
fn the_hosts_file_lists_the_granted_names_alone() {
    let hosts = names::plan(&grants(&["api.github.com:443", "example.org:8443"])).unwrap();
    assert_eq!(
        names::hosts_file(&hosts),
        "# Written by Portcullis: the only names this upstream can resolve. Each address is \
         served inside
# its sandbox, and Portcullis forwards what connects there to what the name resolves to \
         outside,
# on the granted ports only.
127.0.0.1 localhost
::1 localhost
127.0.0.2 api.github.com
127.0.0.3 example.org
"
    );
    // `localhost` granted is Portcullis's host's: the upstream's own loopback has no name then.
    let hosts = names::plan(&grants(&["localhost:5432"])).unwrap();
    let text = names::hosts_file(&hosts);
    assert!(
        text.ends_with("on the granted ports only.\n127.0.0.2 localhost\n"),
        "{text}"
    );
}

#[test]
fn name_resolution_keeps_every_database_but_host_names() {
    let system = "passwd:         files systemd
hosts:          files mdns4_minimal [NOTFOUND=return] dns myhostname
#hosts: files dns
networks:       files
hosts: dns
";
    assert_eq!(
        names::nsswitch(Some(system)),
        "# Written by Portcullis: host names from /etc/hosts alone.
passwd:         files systemd
hosts: files
#hosts: files dns
networks:       files
"
    );
    assert_eq!(
        names::nsswitch(None),
        "# Written by Portcullis: host names from /etc/hosts alone.\nhosts: files\n"
    );
}

#[test]
fn names_and_ports_on_any_address_do_not_mix() {
    let profile = Profile {
        tcp_connect: vec![5432, 80],
        tcp_connect_hosts: grants(&["api.github.com:443"]),
        ..Profile::default()
    };
    assert_eq!(
        prepare(&profile).unwrap_err().to_string(),
        "the profile grants host names and ports on any address (80, 5432); host names give the \
         upstream a network of its own in which no address is reachable, so name the host of each \
         port instead"
    );
}

#[test]
fn check_and_the_digest_show_the_names() {
    let profile = Profile {
        tcp_connect_hosts: grants(&["example.org:8443", "api.github.com:443", "example.org:443"]),
        ..Profile::default()
    };
    let prepared = prepare(&profile).unwrap();
    let described = prepared.describe();
    assert!(
        described.contains(
            "tcp connect: by host name only (Portcullis connects to what the name resolves to, on \
             the granted port):
  api.github.com:443 (127.0.0.2 inside)
  example.org:443, 8443 (127.0.0.3 inside)
network: a namespace of its own with loopback alone: no address outside is reachable, and no \
             name but those above resolves
tcp bind: none
"
        ),
        "{described}"
    );
    let digest = prepared.digest_input();
    assert!(
        digest.contains(
            "tcp-connect-host api.github.com 443 127.0.0.2
tcp-connect-host example.org 443 127.0.0.3
tcp-connect-host example.org 8443 127.0.0.3
network own-namespace loopback-only names-from-hosts-file
socket inet-tcp allowed
"
        ),
        "{digest}"
    );
    assert!(!digest.contains("\ntcp-connect "), "{digest}");
}
