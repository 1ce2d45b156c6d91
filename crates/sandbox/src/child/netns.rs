//! The network of its own that an upstream granted host names runs in: a user and a network
//! namespace made in the parent by a short-lived holder process (loopback up, one listening
//! socket per granted name and port, each handed back over a unix socket), then joined by the
//! child in its hook, which also hands the forwarder a pidfd of itself.
//!
//! Why a holder process: the parent is multi-threaded, and the kernel lets only a
//! single-threaded process make a user namespace (`unshare`), or enter one (`setns`), and only a
//! process with `CAP_SYS_ADMIN` over a network namespace enter it. A process cloned into both
//! new namespaces has every capability in them without any in the parent's, so this works for
//! an unprivileged Portcullis as well as for root. The namespaces outlive the holder: the parent
//! keeps a descriptor of each, and the listening sockets keep the network namespace they were
//! made in.
//!
//! INVARIANT: like the hook, [`holder`] runs in a process cloned from a multi-threaded parent:
//! it allocates nothing, takes no lock and only makes system calls on data built in the parent.

use std::ffi::CString;
use std::fs::{self, File};
use std::io;
use std::mem;
use std::net::SocketAddrV4;
use std::os::fd::{AsFd as _, AsRawFd as _, BorrowedFd, FromRawFd as _, OwnedFd, RawFd};

/// How many connections may wait on a listener until the forwarder accepts them.
const BACKLOG: libc::c_int = 128;

/// The interface-flags requests (`linux/sockios.h`, the same on every architecture), typed as
/// the C library's `ioctl` takes them: glibc an unsigned long, musl an int.
const SIOCGIFFLAGS: libc::Ioctl = 0x8913;
const SIOCSIFFLAGS: libc::Ioctl = 0x8914;

/// `struct ifreq` as the interface-flags requests use it: the name, then a union of which only
/// the flags (a short) are read or written; 40 bytes on every 64-bit architecture.
#[repr(C)]
#[derive(Clone, Copy)]
struct InterfaceFlags {
    name: [libc::c_char; libc::IFNAMSIZ],
    flags: libc::c_short,
    rest: [u8; 22],
}

/// The control message that carries one descriptor (`SCM_RIGHTS`), laid out as `CMSG_SPACE`
/// of one `int` says: padded to the alignment of `size_t`, which musl's `cmsghdr` (a 32-bit
/// length) would not give it.
#[repr(C, align(8))]
struct FdControl {
    header: libc::cmsghdr,
    fd: libc::c_int,
}

// SAFETY (both): CMSG_SPACE and CMSG_LEN only compute sizes.
const FD_CONTROL_SPACE: usize =
    unsafe { libc::CMSG_SPACE(size_of::<libc::c_int>() as u32) } as usize;
const FD_CONTROL_LEN: usize = unsafe { libc::CMSG_LEN(size_of::<libc::c_int>() as u32) } as usize;
const _: () = assert!(size_of::<FdControl>() == FD_CONTROL_SPACE);

/// The namespaces made for one spawn, and a listening socket inside for each address asked.
#[derive(Debug)]
pub(crate) struct Namespaces {
    pub(crate) user: OwnedFd,
    pub(crate) net: OwnedFd,
    /// In the order the addresses were given.
    pub(crate) listeners: Vec<OwnedFd>,
}

/// What the holder does, built in the parent.
struct HolderPlan {
    loopback: InterfaceFlags,
    listeners: Vec<libc::sockaddr_in>,
}

/// Makes a user namespace (the caller's user and group mapped to themselves) and a network
/// namespace owned by it, with loopback up and a listening TCP socket at each of `addresses`
/// (loopback addresses, so routed by the namespace's `lo`).
pub(crate) fn create(addresses: &[SocketAddrV4]) -> io::Result<Namespaces> {
    let mut name = [0 as libc::c_char; libc::IFNAMSIZ];
    for (slot, byte) in name.iter_mut().zip(b"lo") {
        *slot = *byte as libc::c_char;
    }
    let plan = HolderPlan {
        loopback: InterfaceFlags {
            name,
            flags: 0,
            rest: [0; 22],
        },
        listeners: addresses.iter().map(sockaddr).collect(),
    };
    let (ours, theirs) = socket_pair(Blocking::Yes)?;
    // SAFETY: a fork-like clone (no shared memory; no stack given, so the child continues on a
    // copy of this one) into a new user and network namespace. The child runs `holder` only,
    // which keeps to the module's invariant and never returns.
    let pid = unsafe {
        libc::syscall(
            libc::SYS_clone,
            (libc::CLONE_NEWUSER | libc::CLONE_NEWNET | libc::SIGCHLD) as libc::c_ulong,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    };
    if pid == 0 {
        holder(&plan, theirs.as_raw_fd());
    }
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    let holder = Holder {
        pid: pid as libc::pid_t,
        reaped: false,
    };
    drop(theirs);
    let mut listeners = Vec::with_capacity(addresses.len());
    for _ in addresses {
        match receive(ours.as_fd())? {
            Received::Fd(fd) => listeners.push(fd),
            Received::Failed(errno) => return Err(io::Error::from_raw_os_error(errno)),
            Received::Closed => {
                return Err(io::Error::other(
                    "the process making the namespace ended early",
                ));
            }
        }
    }
    holder.write_maps()?;
    let user = File::open(format!("/proc/{}/ns/user", holder.pid))?.into();
    let net = File::open(format!("/proc/{}/ns/net", holder.pid))?.into();
    // End of file on its socket tells the holder it is done.
    drop(ours);
    holder.reap();
    Ok(Namespaces {
        user,
        net,
        listeners,
    })
}

/// The holder process, killed and reaped if the parent gives up on it.
struct Holder {
    pid: libc::pid_t,
    reaped: bool,
}

impl Holder {
    /// Maps the caller's effective user and group to themselves in the new user namespace, so
    /// the upstream keeps its identity (and files it creates their owner). `setgroups` is
    /// denied first, as the kernel requires of an unprivileged mapping of groups.
    fn write_maps(&self) -> io::Result<()> {
        // SAFETY (both): no arguments; they cannot fail.
        let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
        let proc = format!("/proc/{}", self.pid);
        fs::write(format!("{proc}/setgroups"), "deny")?;
        fs::write(format!("{proc}/uid_map"), format!("{uid} {uid} 1\n"))?;
        fs::write(format!("{proc}/gid_map"), format!("{gid} {gid} 1\n"))?;
        Ok(())
    }

    fn reap(mut self) {
        self.wait();
    }

    fn wait(&mut self) {
        if self.reaped {
            return;
        }
        self.reaped = true;
        loop {
            // SAFETY: waits for our own child; a null status pointer is allowed.
            let waited = unsafe { libc::waitpid(self.pid, std::ptr::null_mut(), 0) };
            if waited >= 0 || io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
                return;
            }
        }
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        if !self.reaped {
            // SAFETY: our own child, not yet reaped, so the pid cannot have been reused.
            unsafe { libc::kill(self.pid, libc::SIGKILL) };
            self.wait();
        }
    }
}

/// The holder: loopback up, the listeners made and sent, then waits for the parent to finish
/// (end of file on its socket) and exits. System calls only (the module's invariant).
fn holder(plan: &HolderPlan, socket: RawFd) -> ! {
    // Every descriptor but the standard ones and its socket closed: the parent's end of the
    // socket (so that end of file reaches the holder when the parent closes its own), and
    // whatever else the parent had open, which the holder must not keep open (another thread's
    // spawn waits for end of file on a pipe of its own, say).
    let first = libc::c_uint::try_from(socket).unwrap_or(libc::c_uint::MAX);
    // SAFETY (both): close_range takes integers only and closes descriptors of this process.
    unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3 as libc::c_uint,
            first.saturating_sub(1),
            0 as libc::c_uint,
        );
        libc::syscall(
            libc::SYS_close_range,
            first.saturating_add(1),
            libc::c_uint::MAX,
            0 as libc::c_uint,
        );
    }
    if let Err(errno) = holder_steps(plan, socket) {
        send_message(socket, errno, None);
        // SAFETY: ends this process without running anything of the parent's.
        unsafe { libc::_exit(1) };
    }
    let mut byte = 0u8;
    // SAFETY: reads at most one byte into a byte on the stack.
    unsafe { libc::read(socket, (&raw mut byte).cast(), 1) };
    // SAFETY: as above.
    unsafe { libc::_exit(0) }
}

/// The errno of the last failed call, without allocating.
fn errno() -> i32 {
    io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

fn holder_steps(plan: &HolderPlan, socket: RawFd) -> Result<(), i32> {
    // SAFETY: integer arguments only.
    let probe = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if probe < 0 {
        return Err(errno());
    }
    let mut request = plan.loopback;
    // SAFETY: `request` is a 40-byte ifreq on the stack, which both requests read and the first
    // writes.
    let up = unsafe {
        if libc::ioctl(probe, SIOCGIFFLAGS, &raw mut request) < 0 {
            -1
        } else {
            request.flags |= libc::IFF_UP as libc::c_short;
            libc::ioctl(probe, SIOCSIFFLAGS, &raw const request)
        }
    };
    let up_errno = errno();
    // SAFETY: closes the descriptor made above.
    unsafe { libc::close(probe) };
    if up < 0 {
        return Err(up_errno);
    }
    for address in &plan.listeners {
        // SAFETY: integer arguments only.
        let listener =
            unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
        if listener < 0 {
            return Err(errno());
        }
        // SAFETY: `address` is a valid sockaddr_in of the size given.
        let bound = unsafe {
            libc::bind(
                listener,
                (address as *const libc::sockaddr_in).cast(),
                size_of::<libc::sockaddr_in>() as libc::socklen_t,
            ) == 0
                && libc::listen(listener, BACKLOG) == 0
        };
        let result = if bound {
            match send_message(socket, 0, Some(listener)) {
                0 => Ok(()),
                failed => Err(failed),
            }
        } else {
            Err(errno())
        };
        // SAFETY: closes this process's copy; the parent has its own once sent.
        unsafe { libc::close(listener) };
        result?;
    }
    Ok(())
}

fn sockaddr(address: &SocketAddrV4) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: address.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*address.ip()).to_be(),
        },
        sin_zero: [0; 8],
    }
}

/// Whether a socket pair's calls block.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Blocking {
    Yes,
    No,
}

/// A connected pair of unix seqpacket sockets (message boundaries kept), close-on-exec.
pub(crate) fn socket_pair(blocking: Blocking) -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [-1 as libc::c_int; 2];
    let nonblocking = match blocking {
        Blocking::Yes => 0,
        Blocking::No => libc::SOCK_NONBLOCK,
    };
    // SAFETY: `fds` has room for the two descriptors socketpair writes.
    if unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC | nonblocking,
            0,
            fds.as_mut_ptr(),
        )
    } != 0
    {
        return Err(io::Error::last_os_error());
    }
    let [first, second] = fds;
    // SAFETY: both were just returned by socketpair and are owned by nothing else.
    Ok(unsafe { (OwnedFd::from_raw_fd(first), OwnedFd::from_raw_fd(second)) })
}

/// Sends one message: `status` (0, or an errno), with `fd` attached. Returns 0 or the errno of
/// the failure. Stack only: the hook and the holder call it.
fn send_message(socket: RawFd, status: i32, fd: Option<RawFd>) -> i32 {
    let mut payload = status;
    let mut part = libc::iovec {
        iov_base: (&raw mut payload).cast(),
        iov_len: size_of::<i32>(),
    };
    // SAFETY (both): plain C structs for which all zeroes is a valid value.
    let mut control: FdControl = unsafe { mem::zeroed() };
    let mut message: libc::msghdr = unsafe { mem::zeroed() };
    message.msg_iov = &raw mut part;
    message.msg_iovlen = 1;
    if let Some(fd) = fd {
        control.header.cmsg_len = FD_CONTROL_LEN as _;
        control.header.cmsg_level = libc::SOL_SOCKET;
        control.header.cmsg_type = libc::SCM_RIGHTS;
        control.fd = fd;
        message.msg_control = (&raw mut control).cast();
        message.msg_controllen = FD_CONTROL_SPACE as _;
    }
    // SAFETY: `message` points at one iovec and, with a descriptor, one control message, all on
    // this stack and valid for the call.
    if unsafe { libc::sendmsg(socket, &raw const message, libc::MSG_NOSIGNAL) } < 0 {
        return errno();
    }
    0
}

/// One message received by [`receive`].
#[derive(Debug)]
pub(crate) enum Received {
    /// A descriptor (status 0).
    Fd(OwnedFd),
    /// The sender failed with this errno.
    Failed(i32),
    /// Every sending end is closed.
    Closed,
}

/// Receives one message sent by [`send_message`]. A non-blocking socket with nothing to read
/// gives `WouldBlock`.
pub(crate) fn receive(socket: BorrowedFd<'_>) -> io::Result<Received> {
    let mut payload: i32 = 0;
    let mut part = libc::iovec {
        iov_base: (&raw mut payload).cast(),
        iov_len: size_of::<i32>(),
    };
    // SAFETY (both): plain C structs for which all zeroes is a valid value.
    let mut control: FdControl = unsafe { mem::zeroed() };
    let mut message: libc::msghdr = unsafe { mem::zeroed() };
    message.msg_iov = &raw mut part;
    message.msg_iovlen = 1;
    message.msg_control = (&raw mut control).cast();
    message.msg_controllen = FD_CONTROL_SPACE as _;
    // SAFETY: `message` points at buffers on this stack of the sizes given; the kernel installs
    // any descriptor received close-on-exec.
    let got =
        unsafe { libc::recvmsg(socket.as_raw_fd(), &raw mut message, libc::MSG_CMSG_CLOEXEC) };
    if got < 0 {
        return Err(io::Error::last_os_error());
    }
    // Take the descriptor first, so that it is closed whatever else is wrong with the message.
    let fd = (message.msg_controllen as usize >= FD_CONTROL_LEN
        && control.header.cmsg_level == libc::SOL_SOCKET
        && control.header.cmsg_type == libc::SCM_RIGHTS
        && control.header.cmsg_len as usize == FD_CONTROL_LEN)
        // SAFETY: the kernel just installed this descriptor in this process for us.
        .then(|| unsafe { OwnedFd::from_raw_fd(control.fd) });
    if got == 0 {
        return Ok(Received::Closed);
    }
    let malformed = || io::Error::new(io::ErrorKind::InvalidData, "a malformed message");
    if message.msg_flags & libc::MSG_CTRUNC != 0 || got as usize != size_of::<i32>() {
        return Err(malformed());
    }
    match (payload, fd) {
        (0, Some(fd)) => Ok(Received::Fd(fd)),
        (0, None) => Err(malformed()),
        (errno, _) => Ok(Received::Failed(errno)),
    }
}

/// One bind mount the child makes: a generated file (or an empty directory) over a system one.
#[derive(Debug)]
pub(crate) struct ChildMount {
    source: CString,
    target: CString,
}

impl ChildMount {
    pub(crate) fn new(source: CString, target: CString) -> Self {
        ChildMount { source, target }
    }
}

/// What the hook needs to put the child in its network: the namespaces, the mounts, and the
/// socket to the forwarder.
#[derive(Debug)]
pub(crate) struct ChildNetwork {
    user: OwnedFd,
    net: OwnedFd,
    mounts: Vec<ChildMount>,
    forwarder: OwnedFd,
    /// The generated files' directory, kept until the hook is dropped (after the spawn, when
    /// the child's mounts hold the files).
    _files: tempfile::TempDir,
}

impl ChildNetwork {
    pub(crate) fn new(
        user: OwnedFd,
        net: OwnedFd,
        mounts: Vec<ChildMount>,
        forwarder: OwnedFd,
        files: tempfile::TempDir,
    ) -> Self {
        ChildNetwork {
            user,
            net,
            mounts,
            forwarder,
            _files: files,
        }
    }

    /// Step 1 of the hook: hands the forwarder a pidfd of this child (it serves until the
    /// child is gone), enters the user and network namespaces, and in a mount namespace of its
    /// own puts each generated file over its system one, read-only. System calls only.
    pub(crate) fn join(&self) -> io::Result<()> {
        let zero: libc::c_uint = 0;
        // SAFETY: getpid takes nothing; pidfd_open takes integers and returns a new descriptor.
        let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, libc::getpid(), zero) };
        if pidfd < 0 {
            return Err(io::Error::last_os_error());
        }
        let sent = send_message(self.forwarder.as_raw_fd(), 0, Some(pidfd as RawFd));
        // SAFETY: closes the pidfd made above; the forwarder has its own copy once sent.
        unsafe { libc::close(pidfd as RawFd) };
        if sent != 0 {
            return Err(io::Error::from_raw_os_error(sent));
        }
        for (fd, kind) in [
            (&self.user, libc::CLONE_NEWUSER),
            (&self.net, libc::CLONE_NEWNET),
        ] {
            // SAFETY: a namespace descriptor this hook owns, and its type.
            if unsafe { libc::setns(fd.as_raw_fd(), kind) } != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        // A mount namespace owned by the new user namespace: every mount shared with the
        // parent's becomes a slave of it there (mount_namespaces(7)), so nothing mounted below
        // reaches anyone else.
        // SAFETY: integer argument only.
        if unsafe { libc::unshare(libc::CLONE_NEWNS) } != 0 {
            return Err(io::Error::last_os_error());
        }
        let read_only = libc::MS_BIND
            | libc::MS_REMOUNT
            | libc::MS_RDONLY
            | libc::MS_NOSUID
            | libc::MS_NODEV
            | libc::MS_NOEXEC;
        for mount in &self.mounts {
            // SAFETY: NUL-terminated paths built in the parent; a bind mount reads no data.
            let bound = unsafe {
                libc::mount(
                    mount.source.as_ptr(),
                    mount.target.as_ptr(),
                    std::ptr::null(),
                    libc::MS_BIND,
                    std::ptr::null(),
                )
            };
            if bound != 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: as above; a null source and type with MS_REMOUNT change only the flags.
            let remounted = unsafe {
                libc::mount(
                    std::ptr::null(),
                    mount.target.as_ptr(),
                    std::ptr::null(),
                    read_only,
                    std::ptr::null(),
                )
            };
            if remounted != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(())
    }
}

/// `fd` registered with the current tokio runtime for readiness to read.
pub(crate) fn readable(fd: OwnedFd) -> io::Result<tokio::io::unix::AsyncFd<OwnedFd>> {
    // SAFETY: an `OwnedFd` is open, and always the same descriptor, for as long as the
    // `AsyncFd` owns it, which is what registration requires.
    unsafe { tokio::io::unix::AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }
        .map_err(io::Error::from)
}
