//! The seccomp programs: what landlock ABI 7 cannot see, refused by system call and argument.
//!
//! Three programs, stacked (the kernel applies the strictest answer of all of them):
//! - sockets, answered `EACCES` so programs fail like any refused network access: `socket()`
//!   only for what the profile grants (IPv4/IPv6 TCP when a port is granted, unix when unix
//!   sockets are), `socketpair()` only for unix stream and seqpacket pairs unless unix sockets are
//!   granted, `listen()` not at all when nothing may be bound, no TCP fast open (`MSG_FASTOPEN`);
//! - other refusals, answered `EPERM`: the groups of [`REFUSED`] (io_uring, keyrings, System V
//!   IPC, metadata changes, privileged and namespace calls, ...) and the argument rules of
//!   [`REFUSED_WHEN`] (`prlimit` on another process, terminal input injection, device nodes,
//!   namespaces through `clone`);
//! - `clone3`, answered `ENOSYS`: its flags sit in a struct the filter cannot read, and C
//!   libraries fall back to `clone`, whose flags it can;
//! - on x86_64, every x32 system call, answered `EPERM` (their numbers differ, so the rules
//!   above would not match them).
//!
//! Any other architecture's system calls (i386 through `int 0x80`, 32-bit ARM) kill the process:
//! seccompiler checks the architecture first.

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

use crate::child::ChildProgram;
use crate::error::SandboxError;
use crate::summary::SocketPolicy;

/// The kernel's limit on a classic BPF program (`BPF_MAXINSNS`).
const MAX_INSTRUCTIONS: usize = 4096;

/// One group of system calls refused whatever the profile says, and why (`portcullis check`
/// lists them from this table, so what it says and what is compiled cannot drift apart).
pub(crate) struct Refused {
    /// What the group is, for a person.
    pub what: &'static str,
    /// The calls, by name and number on this architecture.
    pub calls: &'static [(&'static str, i64)],
}

/// Numbers from the kernel's unified table (the same on every architecture since 5.1) that
/// this libc does not name everywhere.
const SYS_FCHMODAT2: i64 = 452;
const SYS_SETXATTRAT: i64 = 463;
const SYS_REMOVEXATTRAT: i64 = 466;

/// Calls refused outright, each group for a reason landlock cannot cover.
pub(crate) const REFUSED: &[Refused] = &[
    // io_uring performs opens, connects and socket creation without the system calls this
    // filter sees (IORING_OP_SOCKET makes a socket with no socket()), so it would bypass every
    // rule here.
    Refused {
        what: "io_uring",
        calls: &[
            ("io_uring_setup", libc::SYS_io_uring_setup),
            ("io_uring_enter", libc::SYS_io_uring_enter),
            ("io_uring_register", libc::SYS_io_uring_register),
        ],
    },
    // The session keyring is shared with Portcullis and the user's other processes, and
    // landlock does not cover keys: a sandboxed program could read or plant credentials there.
    Refused {
        what: "kernel keyrings",
        calls: &[
            ("keyctl", libc::SYS_keyctl),
            ("add_key", libc::SYS_add_key),
            ("request_key", libc::SYS_request_key),
        ],
    },
    // System V IPC objects are found by a key or a small integer id across the whole IPC
    // namespace, which the sandbox shares with the user's other processes (an X server's
    // shared memory, say), and landlock does not cover them. POSIX message queues and shared
    // memory go through files, which landlock does cover.
    Refused {
        what: "System V IPC",
        calls: &[
            ("shmget", libc::SYS_shmget),
            ("shmat", libc::SYS_shmat),
            ("shmctl", libc::SYS_shmctl),
            ("shmdt", libc::SYS_shmdt),
            ("msgget", libc::SYS_msgget),
            ("msgsnd", libc::SYS_msgsnd),
            ("msgrcv", libc::SYS_msgrcv),
            ("msgctl", libc::SYS_msgctl),
            ("semget", libc::SYS_semget),
            ("semop", libc::SYS_semop),
            ("semctl", libc::SYS_semctl),
            ("semtimedop", libc::SYS_semtimedop),
        ],
    },
    // Landlock has no right for a file's mode, owner, times or extended attributes: with these
    // the upstream could make the user's private key world-readable or the evidence log
    // writable, or lock Portcullis out of its own state, anywhere outside its roots. The
    // descriptor forms are refused too: a file opened read-only outside the roots (a granted
    // library, say) is reachable through them. Inside its roots an upstream creates files with
    // the mode it wants (`open`'s mode argument), which covers what MCP servers need.
    Refused {
        what: "changing a file's mode, owner, times or extended attributes",
        calls: &[
            #[cfg(target_arch = "x86_64")]
            ("chmod", libc::SYS_chmod),
            ("fchmod", libc::SYS_fchmod),
            ("fchmodat", libc::SYS_fchmodat),
            ("fchmodat2", SYS_FCHMODAT2),
            #[cfg(target_arch = "x86_64")]
            ("chown", libc::SYS_chown),
            #[cfg(target_arch = "x86_64")]
            ("lchown", libc::SYS_lchown),
            ("fchown", libc::SYS_fchown),
            ("fchownat", libc::SYS_fchownat),
            #[cfg(target_arch = "x86_64")]
            ("utime", libc::SYS_utime),
            #[cfg(target_arch = "x86_64")]
            ("utimes", libc::SYS_utimes),
            #[cfg(target_arch = "x86_64")]
            ("futimesat", libc::SYS_futimesat),
            ("utimensat", libc::SYS_utimensat),
            ("setxattr", libc::SYS_setxattr),
            ("lsetxattr", libc::SYS_lsetxattr),
            ("fsetxattr", libc::SYS_fsetxattr),
            ("setxattrat", SYS_SETXATTRAT),
            ("removexattr", libc::SYS_removexattr),
            ("lremovexattr", libc::SYS_lremovexattr),
            ("fremovexattr", libc::SYS_fremovexattr),
            ("removexattrat", SYS_REMOVEXATTRAT),
        ],
    },
    // A new user, mount, network or other namespace gives the upstream a root of its own in
    // which mounts and raw sockets are allowed, and the kernel surface behind them; joining one
    // (setns) leaves the sandbox's view of the system.
    Refused {
        what: "new or joined namespaces, and userfaultfd",
        calls: &[
            ("unshare", libc::SYS_unshare),
            ("setns", libc::SYS_setns),
            // userfaultfd stalls the kernel at a chosen point of a copy: the classic tool for
            // winning kernel races.
            ("userfaultfd", libc::SYS_userfaultfd),
        ],
    },
    // What root may do and an upstream never needs: capabilities are dropped in the child, and
    // these are refused besides, so that a kernel or capability bug does not reopen them.
    Refused {
        what: "privileged operations (mounts, chroot, eBPF, modules, clocks, kernel log, file handles, ...)",
        calls: &[
            ("mount", libc::SYS_mount),
            ("umount2", libc::SYS_umount2),
            ("pivot_root", libc::SYS_pivot_root),
            ("chroot", libc::SYS_chroot),
            ("fsopen", libc::SYS_fsopen),
            ("fsconfig", libc::SYS_fsconfig),
            ("fsmount", libc::SYS_fsmount),
            ("fspick", libc::SYS_fspick),
            ("move_mount", libc::SYS_move_mount),
            ("open_tree", libc::SYS_open_tree),
            ("mount_setattr", libc::SYS_mount_setattr),
            ("bpf", libc::SYS_bpf),
            ("init_module", libc::SYS_init_module),
            ("finit_module", libc::SYS_finit_module),
            ("delete_module", libc::SYS_delete_module),
            ("kexec_load", libc::SYS_kexec_load),
            ("kexec_file_load", libc::SYS_kexec_file_load),
            ("reboot", libc::SYS_reboot),
            ("swapon", libc::SYS_swapon),
            ("swapoff", libc::SYS_swapoff),
            ("settimeofday", libc::SYS_settimeofday),
            ("clock_settime", libc::SYS_clock_settime),
            ("clock_adjtime", libc::SYS_clock_adjtime),
            ("adjtimex", libc::SYS_adjtimex),
            ("acct", libc::SYS_acct),
            ("quotactl", libc::SYS_quotactl),
            ("quotactl_fd", libc::SYS_quotactl_fd),
            ("sethostname", libc::SYS_sethostname),
            ("setdomainname", libc::SYS_setdomainname),
            ("syslog", libc::SYS_syslog),
            ("perf_event_open", libc::SYS_perf_event_open),
            // A file handle opens a file by inode, past every path check landlock makes.
            ("open_by_handle_at", libc::SYS_open_by_handle_at),
            ("name_to_handle_at", libc::SYS_name_to_handle_at),
            ("fanotify_init", libc::SYS_fanotify_init),
            ("lookup_dcookie", libc::SYS_lookup_dcookie),
            ("vhangup", libc::SYS_vhangup),
            #[cfg(target_arch = "x86_64")]
            ("iopl", libc::SYS_iopl),
            #[cfg(target_arch = "x86_64")]
            ("ioperm", libc::SYS_ioperm),
        ],
    },
];

/// Calls refused only with certain arguments, for `portcullis check`.
pub(crate) const REFUSED_WHEN: &[&str] = &[
    "prlimit on another process",
    "terminal input injection (ioctl TIOCSTI, TIOCLINUX)",
    "file attribute flags (ioctl FS_IOC_SETFLAGS, FS_IOC_FSSETXATTR)",
    "making character or block devices (mknod, mknodat)",
    "new namespaces through clone (any CLONE_NEW* flag); clone3 answers ENOSYS",
];

/// The namespace flags of `clone` and `unshare`.
const NAMESPACE_FLAGS: [libc::c_int; 8] = [
    libc::CLONE_NEWNS,
    libc::CLONE_NEWUTS,
    libc::CLONE_NEWIPC,
    libc::CLONE_NEWUSER,
    libc::CLONE_NEWPID,
    libc::CLONE_NEWNET,
    libc::CLONE_NEWCGROUP,
    CLONE_NEWTIME,
];

/// `CLONE_NEWTIME` (uapi `linux/sched.h`), which this libc does not name everywhere.
const CLONE_NEWTIME: libc::c_int = 0x80;

/// `FS_IOC_SETFLAGS` for 32-bit callers, and `FS_IOC_FSSETXATTR` (uapi `linux/fs.h`).
const FS_IOC32_SETFLAGS: u64 = 0x4004_6602;
const FS_IOC_FSSETXATTR: u64 = 0x401c_5820;

/// Compiles every program for the running architecture.
pub(crate) fn compile(sockets: SocketPolicy) -> Result<Vec<ChildProgram>, SandboxError> {
    let arch = TargetArch::try_from(std::env::consts::ARCH).map_err(|_| {
        SandboxError::UnsupportedArch {
            arch: std::env::consts::ARCH,
        }
    })?;
    let mut programs = Vec::new();
    if let Some(guard) = x32_guard() {
        programs.push(guard);
    }
    programs.push(compile_one(refusals()?, libc::EPERM, arch)?);
    programs.push(compile_one(socket_rules(sockets)?, libc::EACCES, arch)?);
    // clone3 passes its flags in a struct the filter cannot read: "not implemented" makes C
    // libraries use clone, whose flags the rules above check.
    programs.push(compile_one(
        Rules::from([(libc::SYS_clone3, Vec::new())]),
        libc::ENOSYS,
        arch,
    )?);
    programs
        .into_iter()
        .map(|instructions| {
            let length = instructions.len();
            if length > MAX_INSTRUCTIONS {
                return Err(SandboxError::FilterTooLong { length });
            }
            ChildProgram::new(instructions).ok_or(SandboxError::FilterTooLong { length })
        })
        .collect()
}

/// System call number (a `c_long`, which is `i64` on every architecture seccompiler supports)
/// to the rules that match it.
type Rules = BTreeMap<i64, Vec<SeccompRule>>;

/// One program: the listed calls (and argument patterns) get `errno`, everything else passes.
fn compile_one(
    rules: Rules,
    errno: libc::c_int,
    arch: TargetArch,
) -> Result<Vec<libc::sock_filter>, SandboxError> {
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(errno.unsigned_abs()),
        arch,
    )?;
    let program = BpfProgram::try_from(filter)?;
    Ok(program
        .into_iter()
        .map(|instruction| libc::sock_filter {
            code: instruction.code,
            jt: instruction.jt,
            jf: instruction.jf,
            k: instruction.k,
        })
        .collect())
}

/// Calls refused whatever the profile says: [`REFUSED`] outright, and the argument rules.
fn refusals() -> Result<Rules, SandboxError> {
    let mut rules = Rules::new();
    for group in REFUSED {
        for &(_, call) in group.calls {
            rules.insert(call, Vec::new());
        }
    }
    // A device node made in a root (an upstream running as root) would open the kernel log or a
    // whole disk past every path rule. FIFOs, sockets and regular files may still be made.
    let device = |index: u8, kind: libc::mode_t| -> Result<SeccompRule, SandboxError> {
        rule(vec![SeccompCondition::new(
            index,
            SeccompCmpArgLen::Dword,
            SeccompCmpOp::MaskedEq(u64::from(libc::S_IFMT)),
            u64::from(kind),
        )?])
    };
    rules.insert(
        libc::SYS_mknodat,
        vec![device(2, libc::S_IFCHR)?, device(2, libc::S_IFBLK)?],
    );
    #[cfg(target_arch = "x86_64")]
    rules.insert(
        libc::SYS_mknod,
        vec![device(1, libc::S_IFCHR)?, device(1, libc::S_IFBLK)?],
    );
    // clone with any namespace flag (its flags are the first argument on these architectures).
    rules.insert(
        libc::SYS_clone,
        NAMESPACE_FLAGS
            .iter()
            .map(|&flag| rule(vec![has_flag(0, flag)?]))
            .collect::<Result<_, _>>()?,
    );
    // prlimit64 on another process needs only the same user: the upstream could lower
    // Portcullis's own limits (no descriptors left, say). Its own limits (pid 0) stay readable.
    rules.insert(libc::SYS_prlimit64, vec![rule(not_any_of(0, &[0])?)?]);
    // TIOCSTI pushes input into a terminal (and TIOCLINUX can paste a console selection): on an
    // inherited terminal descriptor it would type commands into Portcullis's shell. Landlock's
    // device ioctl right only covers files opened after the sandbox started. The command is an
    // unsigned int, so only the low 32 bits are compared, as the kernel reads them.
    // FS_IOC_SETFLAGS and FS_IOC_FSSETXATTR change a file's attribute flags (no-dump,
    // no-atime, ...) on any file the user owns and has open, read-only included: metadata
    // landlock does not cover, as above.
    rules.insert(
        libc::SYS_ioctl,
        vec![
            rule(vec![equal(1, ioctl_number(libc::TIOCSTI))?])?,
            rule(vec![equal(1, ioctl_number(libc::TIOCLINUX))?])?,
            rule(vec![equal(1, ioctl_number(libc::FS_IOC_SETFLAGS))?])?,
            rule(vec![equal(1, FS_IOC32_SETFLAGS)?])?,
            rule(vec![equal(1, FS_IOC_FSSETXATTR)?])?,
        ],
    );
    Ok(rules)
}

/// `socket()`, `socketpair()`, `listen()` and the send calls as the profile allows them. The
/// rules describe what is refused (each rule is an AND of conditions, the rules of one call are
/// ORed), so they are the complement of what is allowed.
fn socket_rules(sockets: SocketPolicy) -> Result<Rules, SandboxError> {
    let mut rules = Rules::new();
    rules.insert(libc::SYS_socket, socket_refusals(sockets)?);

    // A unix datagram socket from a pair can still `sendto()` any pathname socket (such as a
    // logger or a service's datagram socket), and landlock ABI 7 does not check that path.
    // Stream and seqpacket pairs ignore a destination address, so they reach only each other.
    if !sockets.unix {
        let mut not_stream_or_seqpacket = not_any_of(1, &socket_types(libc::SOCK_STREAM))?;
        not_stream_or_seqpacket.extend(not_any_of(1, &socket_types(libc::SOCK_SEQPACKET))?);
        rules.insert(
            libc::SYS_socketpair,
            vec![
                rule(not_any_of(0, &[libc::AF_UNIX])?)?,
                rule(not_stream_or_seqpacket)?,
            ],
        );
    }

    // TCP fast open (`sendto`/`sendmsg` with MSG_FASTOPEN) connects without connect(), and
    // landlock ABI 7 checks only connect(): it would reach any port. `connect()` with
    // TCP_FASTOPEN_CONNECT still goes through the check, so programs keep fast open that way.
    for (call, flags_index) in [
        (libc::SYS_sendto, 3),
        (libc::SYS_sendmsg, 2),
        (libc::SYS_sendmmsg, 3),
    ] {
        rules.insert(
            call,
            vec![rule(vec![has_flag(flags_index, libc::MSG_FASTOPEN)?])?],
        );
    }
    // listen() on an unbound TCP socket binds an ephemeral port without the bind() that
    // landlock checks. With no port to bind and no unix sockets, nothing may listen at all.
    if !sockets.tcp_bind && !sockets.unix {
        rules.insert(libc::SYS_listen, Vec::new());
    }
    Ok(rules)
}

/// The refused `socket(domain, type, protocol)` calls.
fn socket_refusals(sockets: SocketPolicy) -> Result<Vec<SeccompRule>, SandboxError> {
    let mut domains = Vec::new();
    if sockets.unix {
        domains.push(libc::AF_UNIX);
    }
    if sockets.inet_tcp {
        domains.push(libc::AF_INET);
        domains.push(libc::AF_INET6);
    }
    if domains.is_empty() {
        // No rule means every call matches: no socket() at all.
        return Ok(Vec::new());
    }
    // Any other family: netlink, packet, vsock, bluetooth, ...
    let mut refused = vec![rule(not_any_of(0, &domains)?)?];
    if sockets.inet_tcp {
        // An IPv4/IPv6 socket must be a plain stream socket (with only the CLOEXEC and NONBLOCK
        // flags, which is all the kernel accepts anyway) with protocol 0 or TCP: MPTCP, SCTP and
        // SMC stream sockets are not TCP to landlock, and UDP and raw sockets are not covered by
        // it at all. Unix sockets, when granted, are exempt from these two rules.
        let unix_exempt = if sockets.unix {
            not_any_of(0, &[libc::AF_UNIX])?
        } else {
            Vec::new()
        };
        let mut not_stream = unix_exempt.clone();
        not_stream.extend(not_any_of(1, &socket_types(libc::SOCK_STREAM))?);
        refused.push(rule(not_stream)?);
        let mut not_tcp = unix_exempt;
        not_tcp.extend(not_any_of(2, &[0, libc::IPPROTO_TCP])?);
        refused.push(rule(not_tcp)?);
    }
    Ok(refused)
}

/// A socket type with each combination of the two flags `socket()` accepts.
fn socket_types(base: libc::c_int) -> [libc::c_int; 4] {
    [
        base,
        base | libc::SOCK_CLOEXEC,
        base | libc::SOCK_NONBLOCK,
        base | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
    ]
}

/// Conditions that hold when argument `index` (an int, so compared as 32 bits as the kernel
/// reads it) is none of `values`.
fn not_any_of(index: u8, values: &[libc::c_int]) -> Result<Vec<SeccompCondition>, SandboxError> {
    values
        .iter()
        .map(|&value| {
            let value = u64::from(value.cast_unsigned());
            Ok(SeccompCondition::new(
                index,
                SeccompCmpArgLen::Dword,
                SeccompCmpOp::Ne,
                value,
            )?)
        })
        .collect()
}

/// The condition that argument `index` (compared as 32 bits) equals `value`.
fn equal(index: u8, value: u64) -> Result<SeccompCondition, SandboxError> {
    Ok(SeccompCondition::new(
        index,
        SeccompCmpArgLen::Dword,
        SeccompCmpOp::Eq,
        value,
    )?)
}

/// The condition that argument `index` (an int of flags) has `flag` set.
fn has_flag(index: u8, flag: libc::c_int) -> Result<SeccompCondition, SandboxError> {
    let flag = u64::from(flag.cast_unsigned());
    Ok(SeccompCondition::new(
        index,
        SeccompCmpArgLen::Dword,
        SeccompCmpOp::MaskedEq(flag),
        flag,
    )?)
}

fn rule(conditions: Vec<SeccompCondition>) -> Result<SeccompRule, SandboxError> {
    Ok(SeccompRule::new(conditions)?)
}

/// An ioctl request number as the 32 bits the kernel compares (its type differs by C library).
#[cfg_attr(
    not(target_env = "musl"),
    expect(
        clippy::unnecessary_cast,
        reason = "`Ioctl` is c_ulong in glibc (the cast is for musl, where it is c_int)"
    )
)]
pub(crate) fn ioctl_number(value: libc::Ioctl) -> u64 {
    (value as u64) & u64::from(u32::MAX)
}

/// Refuses every x32 system call (`__X32_SYSCALL_BIT` set) on x86_64. Hand-written: seccompiler
/// matches system call numbers exactly and has no rule for "any number with this bit".
#[cfg(target_arch = "x86_64")]
fn x32_guard() -> Option<Vec<libc::sock_filter>> {
    // linux/filter.h: BPF_LD|BPF_W|BPF_ABS, BPF_JMP|BPF_JEQ|BPF_K, BPF_JMP|BPF_JSET|BPF_K and
    // BPF_RET|BPF_K.
    const LOAD_WORD: u16 = 0x20;
    const JUMP_IF_EQUAL: u16 = 0x15;
    const JUMP_IF_SET: u16 = 0x45;
    const RETURN: u16 = 0x06;
    // Offsets in `struct seccomp_data`.
    const NR: u32 = 0;
    const ARCH: u32 = 4;
    // EM_X86_64 | __AUDIT_ARCH_64BIT | __AUDIT_ARCH_LE.
    const AUDIT_ARCH_X86_64: u32 = 0xC000_003E;
    const X32_SYSCALL_BIT: u32 = 0x4000_0000;
    let instruction = |code, jt, jf, k| libc::sock_filter { code, jt, jf, k };
    Some(vec![
        instruction(LOAD_WORD, 0, 0, ARCH),
        // Another architecture: not this program's business (the others kill it).
        instruction(JUMP_IF_EQUAL, 0, 3, AUDIT_ARCH_X86_64),
        instruction(LOAD_WORD, 0, 0, NR),
        instruction(JUMP_IF_SET, 0, 1, X32_SYSCALL_BIT),
        instruction(
            RETURN,
            0,
            0,
            libc::SECCOMP_RET_ERRNO | libc::EPERM.unsigned_abs(),
        ),
        instruction(RETURN, 0, 0, libc::SECCOMP_RET_ALLOW),
    ])
}

#[cfg(not(target_arch = "x86_64"))]
fn x32_guard() -> Option<Vec<libc::sock_filter>> {
    None
}
