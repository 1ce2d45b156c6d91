//! The only unsafe code in Portcullis: the hook that runs in the child between `fork` and `exec`,
//! the raw system calls that probe the kernel and read limits, and (in [`netns`]) the network
//! namespace of host-name grants and the descriptors passed around it.
//!
//! INVARIANT: [`ChildHook::enter`] runs in a child forked from a multi-threaded parent, where
//! another thread may have held the allocator's or any other lock at the fork. It therefore
//! allocates nothing, takes no lock and touches no shared state: it reads data built in the
//! parent and makes system calls, in this order (each later step relies on the earlier ones):
//!
//! 0. only when host names are granted ([`netns::ChildNetwork::join`]): a pidfd of the child
//!    sent to the forwarder, `setns` into the user and network namespaces made in the parent,
//!    `unshare` of a mount namespace, and the generated resolver files bind-mounted read-only
//!    over the system's. First, because the namespace calls need the capabilities that step 3
//!    drops and the filter of step 5 refuses them, and the pidfd needs a free descriptor;
//! 1. `setrlimit` for each limit (soft = hard, so the program cannot raise it again);
//! 2. `close_range(3, ~0, CLOSE_RANGE_CLOEXEC)`: every inherited descriptor >= 3 is closed at
//!    `exec`. Marking instead of closing keeps std's exec-error pipe and the ruleset descriptor
//!    usable until then; the program itself starts with none of them;
//! 3. every capability dropped: with `CAP_SETPCAP` (Portcullis running as root) the bounding
//!    set emptied and the securebits set and locked so that no `exec` gives root's capabilities
//!    back; then the ambient set cleared and the effective, permitted and inheritable sets set to
//!    nothing (`capset`);
//! 4. `prctl(PR_SET_NO_NEW_PRIVS)`, then `landlock_restrict_self` with the ruleset built in the
//!    parent (landlock requires no_new_privs, and so does seccomp for an unprivileged user);
//! 5. the seccomp programs, last, so that the filter cannot refuse the calls above.
//!
//! A failing step makes the hook return the errno; std then fails the spawn with it and the
//! program never runs.

use std::ffi::c_void;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::process::Command;
use std::ptr;

use crate::profile::Limit;
use crate::support::LandlockSupport;

pub(crate) mod netns;

/// `LANDLOCK_CREATE_RULESET_VERSION` (uapi `linux/landlock.h`).
const LANDLOCK_CREATE_RULESET_VERSION: libc::c_uint = 1;

/// The resource argument of `setrlimit`: an unsigned enum in glibc, an int elsewhere.
#[cfg(target_env = "gnu")]
type RawResource = libc::__rlimit_resource_t;
#[cfg(not(target_env = "gnu"))]
type RawResource = libc::c_int;

fn raw_resource(limit: Limit) -> RawResource {
    match limit {
        Limit::AddressSpace => libc::RLIMIT_AS,
        Limit::Processes => libc::RLIMIT_NPROC,
        Limit::FileSize => libc::RLIMIT_FSIZE,
        Limit::OpenFiles => libc::RLIMIT_NOFILE,
    }
}

/// One `setrlimit` the child makes, converted in the parent.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ChildLimit {
    resource: RawResource,
    value: u64,
}

impl ChildLimit {
    pub(crate) fn new(limit: Limit, value: u64) -> Self {
        ChildLimit {
            resource: raw_resource(limit),
            value,
        }
    }
}

/// One compiled seccomp program and its length as the kernel takes it.
#[derive(Debug, Clone)]
pub(crate) struct ChildProgram {
    instructions: Vec<libc::sock_filter>,
    length: libc::c_ushort,
}

impl ChildProgram {
    /// `None` if the program is empty or longer than `sock_fprog` can say.
    pub(crate) fn new(instructions: Vec<libc::sock_filter>) -> Option<Self> {
        let length = libc::c_ushort::try_from(instructions.len()).ok()?;
        (length > 0).then_some(ChildProgram {
            instructions,
            length,
        })
    }
}

#[cfg(test)]
impl ChildProgram {
    pub(crate) fn instructions(&self) -> &[libc::sock_filter] {
        &self.instructions
    }
}

/// What the child drops of its capabilities, found in the parent.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ChildCapabilities {
    /// The highest capability number the kernel knows (`/proc/sys/kernel/cap_last_cap`).
    pub last: u32,
    /// Portcullis holds `CAP_SETPCAP` (it runs as root), for the warnings. The child decides
    /// for itself whether it can empty its bounding set (it may have changed user since): one
    /// without `CAP_SETPCAP` gains no capability at `exec` under no_new_privs anyway.
    pub setpcap: bool,
}

/// `struct __user_cap_header_struct` (uapi `linux/capability.h`).
#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

/// `struct __user_cap_data_struct`.
#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// `_LINUX_CAPABILITY_VERSION_3`: 64-bit sets, as two `CapData`.
const CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// `SECBIT_NOROOT` and `SECBIT_NO_CAP_AMBIENT_RAISE`, each with its lock, and the lock of
/// `SECBIT_KEEP_CAPS` (uapi `linux/securebits.h`): root gets no capability at `exec`, none can
/// be raised into the ambient set, and no later call can undo either.
const SECUREBITS: libc::c_ulong = (1 << 0) | (1 << 1) | (1 << 5) | (1 << 6) | (1 << 7);

/// Everything the child needs, built in the parent.
#[derive(Debug)]
pub(crate) struct ChildHook {
    network: Option<netns::ChildNetwork>,
    limits: Vec<ChildLimit>,
    capabilities: ChildCapabilities,
    ruleset: OwnedFd,
    programs: Vec<ChildProgram>,
}

impl ChildHook {
    pub(crate) fn new(
        network: Option<netns::ChildNetwork>,
        limits: Vec<ChildLimit>,
        capabilities: ChildCapabilities,
        ruleset: OwnedFd,
        programs: Vec<ChildProgram>,
    ) -> Self {
        ChildHook {
            network,
            limits,
            capabilities,
            ruleset,
            programs,
        }
    }

    /// Drops every capability of the child (step 3 of the module's list).
    fn drop_capabilities(&self) -> io::Result<()> {
        let zero: libc::c_ulong = 0;
        let mut header = CapHeader {
            version: CAPABILITY_VERSION_3,
            pid: 0,
        };
        let mut held = [CapData {
            effective: 0,
            permitted: 0,
            inheritable: 0,
        }; 2];
        // SAFETY: a version-3 header and room for two data structs, both on the stack.
        if unsafe {
            libc::syscall(
                libc::SYS_capget,
                &mut header as *mut CapHeader,
                held.as_mut_ptr(),
            )
        } != 0
        {
            return Err(io::Error::last_os_error());
        }
        // Whether this process (not the parent: the child may have changed user first) holds
        // CAP_SETPCAP, which emptying the bounding set and locking the securebits need.
        let setpcap = held[0].effective & (1 << 8) != 0;
        if setpcap {
            for capability in 0..=self.capabilities.last {
                // SAFETY: integer arguments only.
                if unsafe {
                    libc::prctl(
                        libc::PR_CAPBSET_DROP,
                        libc::c_ulong::from(capability),
                        zero,
                        zero,
                        zero,
                    )
                } != 0
                {
                    return Err(io::Error::last_os_error());
                }
            }
            // SAFETY: integer arguments only.
            if unsafe { libc::prctl(libc::PR_SET_SECUREBITS, SECUREBITS, zero, zero, zero) } != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        // SAFETY: integer arguments only.
        if unsafe {
            libc::prctl(
                libc::PR_CAP_AMBIENT,
                libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
                zero,
                zero,
                zero,
            )
        } != 0
        {
            return Err(io::Error::last_os_error());
        }
        let data = [CapData {
            effective: 0,
            permitted: 0,
            inheritable: 0,
        }; 2];
        // SAFETY: both pointers are valid for the call: a version-3 header and two data
        // structs on the stack; the kernel writes to the header only on a version mismatch.
        let set = unsafe {
            libc::syscall(
                libc::SYS_capset,
                &mut header as *mut CapHeader,
                data.as_ptr(),
            )
        };
        if set != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Runs in the child after `fork`. See the module's invariant: system calls only.
    fn enter(&self) -> io::Result<()> {
        if let Some(network) = &self.network {
            network.join()?;
        }
        for limit in &self.limits {
            let value = libc::rlimit {
                rlim_cur: limit.value,
                rlim_max: limit.value,
            };
            // SAFETY: `value` is a valid rlimit on the stack; setrlimit only reads it.
            if unsafe { libc::setrlimit(limit.resource, &value) } != 0 {
                return Err(io::Error::last_os_error());
            }
        }

        // SAFETY: close_range takes no pointers; with CLOSE_RANGE_CLOEXEC it only sets the
        // close-on-exec flag of this process's descriptors from 3 up.
        let marked = unsafe {
            libc::syscall(
                libc::SYS_close_range,
                3 as libc::c_uint,
                libc::c_uint::MAX,
                libc::CLOSE_RANGE_CLOEXEC,
            )
        };
        if marked != 0 {
            return Err(io::Error::last_os_error());
        }

        self.drop_capabilities()?;

        // SAFETY: PR_SET_NO_NEW_PRIVS takes integer arguments only. They are passed as unsigned
        // longs, as the variadic prctl reads them (the kernel refuses non-zero unused ones).
        let zero: libc::c_ulong = 0;
        if unsafe {
            libc::prctl(
                libc::PR_SET_NO_NEW_PRIVS,
                1 as libc::c_ulong,
                zero,
                zero,
                zero,
            )
        } != 0
        {
            return Err(io::Error::last_os_error());
        }

        // SAFETY: the descriptor is a landlock ruleset owned by this hook and open until exec;
        // flags 0 restrict the calling (only) thread.
        let restricted = unsafe {
            libc::syscall(
                libc::SYS_landlock_restrict_self,
                self.ruleset.as_raw_fd(),
                0 as libc::c_uint,
            )
        };
        if restricted != 0 {
            return Err(io::Error::last_os_error());
        }

        for program in &self.programs {
            let fprog = libc::sock_fprog {
                len: program.length,
                // The kernel copies the program and never writes through this pointer.
                filter: program.instructions.as_ptr().cast_mut(),
            };
            // SAFETY: `fprog` points at `length` valid instructions that outlive the call; the
            // kernel copies them. Flags 0: this thread, which is the child's only one.
            let installed = unsafe {
                libc::syscall(
                    libc::SYS_seccomp,
                    libc::SECCOMP_SET_MODE_FILTER,
                    0 as libc::c_uint,
                    &fprog as *const libc::sock_fprog,
                )
            };
            if installed != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(())
    }
}

/// Registers the hook on `command`. It runs in every child this command spawns.
pub(crate) fn install(hook: ChildHook, command: &mut Command) {
    use std::os::unix::process::CommandExt as _;
    // SAFETY: `pre_exec` requires the closure to be safe to run between fork and exec in a
    // multi-threaded parent; `ChildHook::enter` only makes system calls on data it owns
    // (see the module's invariant).
    unsafe {
        command.pre_exec(move || hook.enter());
    }
}

/// The landlock ABI version, or why there is none.
pub(crate) fn landlock_support() -> LandlockSupport {
    // SAFETY: with a null attribute, size 0 and LANDLOCK_CREATE_RULESET_VERSION the kernel reads
    // nothing and only returns the ABI version.
    let version = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            ptr::null::<c_void>(),
            0 as libc::size_t,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    if let Ok(abi) = u32::try_from(version)
        && abi > 0
    {
        return LandlockSupport::Abi(abi);
    }
    match io::Error::last_os_error().raw_os_error() {
        Some(libc::EOPNOTSUPP) => LandlockSupport::NotEnabled,
        _ => LandlockSupport::NotBuilt,
    }
}

/// Whether the kernel takes seccomp filters whose action is an errno.
pub(crate) fn seccomp_errno_available() -> bool {
    let action: u32 = libc::SECCOMP_RET_ERRNO;
    // SAFETY: SECCOMP_GET_ACTION_AVAIL reads one u32 from the pointer, which is valid.
    let answer = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_GET_ACTION_AVAIL,
            0 as libc::c_uint,
            &action as *const u32,
        )
    };
    answer == 0
}

/// This process's soft and hard value of one limit (no limit is `u64::MAX`).
pub(crate) fn current_limit(limit: Limit) -> io::Result<(u64, u64)> {
    let mut value = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `value` is a valid rlimit on the stack for getrlimit to fill.
    if unsafe { libc::getrlimit(raw_resource(limit), &mut value) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // `rlim_t` is u64 on every architecture seccompiler supports, and RLIM_INFINITY is u64::MAX.
    Ok((value.rlim_cur, value.rlim_max))
}
