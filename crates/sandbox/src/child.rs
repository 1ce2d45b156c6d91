//! The only unsafe code in Portcullis: the hook that runs in the child between `fork` and `exec`,
//! and the raw system calls that probe the kernel and read limits.
//!
//! INVARIANT: [`ChildHook::enter`] runs in a child forked from a multi-threaded parent, where
//! another thread may have held the allocator's or any other lock at the fork. It therefore
//! allocates nothing, takes no lock and touches no shared state: it reads data built in the
//! parent and makes system calls, in this order (each later step relies on the earlier ones):
//!
//! 1. `setrlimit` for each limit (soft = hard, so the program cannot raise it again);
//! 2. `close_range(3, ~0, CLOSE_RANGE_CLOEXEC)`: every inherited descriptor >= 3 is closed at
//!    `exec`. Marking instead of closing keeps std's exec-error pipe and the ruleset descriptor
//!    usable until then; the program itself starts with none of them;
//! 3. `prctl(PR_SET_NO_NEW_PRIVS)`, then `landlock_restrict_self` with the ruleset built in the
//!    parent (landlock requires no_new_privs, and so does seccomp for an unprivileged user);
//! 4. the seccomp programs, last, so that the filter cannot refuse the calls above.
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

/// Everything the child needs, built in the parent.
#[derive(Debug)]
pub(crate) struct ChildHook {
    limits: Vec<ChildLimit>,
    ruleset: OwnedFd,
    programs: Vec<ChildProgram>,
}

impl ChildHook {
    pub(crate) fn new(
        limits: Vec<ChildLimit>,
        ruleset: OwnedFd,
        programs: Vec<ChildProgram>,
    ) -> Self {
        ChildHook {
            limits,
            ruleset,
            programs,
        }
    }

    /// Runs in the child after `fork`. See the module's invariant: system calls only.
    fn enter(&self) -> io::Result<()> {
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
