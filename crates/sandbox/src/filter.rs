//! The seccomp programs: what landlock ABI 7 cannot see, refused by system call and argument.
//!
//! Three programs, stacked (the kernel applies the strictest answer of all of them):
//! - sockets, answered `EACCES` so programs fail like any refused network access: `socket()`
//!   only for what the profile grants (IPv4/IPv6 TCP when a port is granted, unix when unix
//!   sockets are), `socketpair()` only for unix stream and seqpacket pairs unless unix sockets are
//!   granted, `listen()` not at all when nothing may be bound, no TCP fast open (`MSG_FASTOPEN`);
//! - other refusals, answered `EPERM`: io_uring, the kernel keyrings, System V IPC, `prlimit`
//!   on another process, terminal input injection;
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

/// Calls refused whatever the profile says, each for a reason landlock cannot cover.
fn refusals() -> Result<Rules, SandboxError> {
    let mut rules = Rules::new();
    // io_uring performs opens, connects and socket creation without the system calls this filter
    // sees (IORING_OP_SOCKET makes a socket with no socket()), so it would bypass every rule here.
    for call in [
        libc::SYS_io_uring_setup,
        libc::SYS_io_uring_enter,
        libc::SYS_io_uring_register,
    ] {
        rules.insert(call, Vec::new());
    }
    // The session keyring is shared with Portcullis and the user's other processes, and landlock
    // does not cover keys: a sandboxed program could read or plant credentials there.
    for call in [libc::SYS_keyctl, libc::SYS_add_key, libc::SYS_request_key] {
        rules.insert(call, Vec::new());
    }
    // System V IPC objects are found by a key or a small integer id across the whole IPC
    // namespace, which the sandbox shares with the user's other processes (an X server's shared
    // memory, say), and landlock does not cover them. POSIX message queues and shared memory go
    // through files, which landlock does cover.
    for call in [
        libc::SYS_shmget,
        libc::SYS_shmat,
        libc::SYS_shmctl,
        libc::SYS_shmdt,
        libc::SYS_msgget,
        libc::SYS_msgsnd,
        libc::SYS_msgrcv,
        libc::SYS_msgctl,
        libc::SYS_semget,
        libc::SYS_semop,
        libc::SYS_semctl,
        libc::SYS_semtimedop,
    ] {
        rules.insert(call, Vec::new());
    }
    // prlimit64 on another process needs only the same user: the upstream could lower
    // Portcullis's own limits (no descriptors left, say). Its own limits (pid 0) stay readable.
    rules.insert(libc::SYS_prlimit64, vec![rule(not_any_of(0, &[0])?)?]);
    // TIOCSTI pushes input into a terminal (and TIOCLINUX can paste a console selection): on an
    // inherited terminal descriptor it would type commands into Portcullis's shell. Landlock's
    // device ioctl right only covers files opened after the sandbox started. The command is an
    // unsigned int, so only the low 32 bits are compared, as the kernel reads them.
    rules.insert(
        libc::SYS_ioctl,
        vec![
            rule(vec![equal(1, ioctl_number(libc::TIOCSTI))?])?,
            rule(vec![equal(1, ioctl_number(libc::TIOCLINUX))?])?,
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
#[allow(
    clippy::unnecessary_cast,
    reason = "`Ioctl` is c_ulong in glibc, c_int in musl"
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
