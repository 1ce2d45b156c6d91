//! A world for the host-name tests: this test binary re-executed, to run one test, in a network
//! namespace of its own (loopback alone) and a mount namespace whose `/etc/hosts` the test
//! writes. The names the tests grant then resolve, outside the sandbox, to listeners the test
//! runs on that loopback; nothing reaches the machine's network, and the world ends with the
//! test.
//!
//! As root the world is made directly; unprivileged, inside a user namespace of its own (the
//! caller's user mapped to itself). Run [`As::Nobody`], root's world then drops to `nobody`
//! before the test starts, so the sandbox is prepared by an unprivileged Portcullis.

use std::ffi::CString;
use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::Command;

/// Set in the world's environment: the test runs its body instead of making a world.
const WORLD_ENV: &str = "PORTCULLIS_SANDBOX_WORLD";

/// Resolves in the world to its loopback.
pub(crate) const GRANTED: &str = "granted.portcullis.test";
/// Resolves in the world to its loopback too, so it is only the grant that differs.
pub(crate) const REFUSED: &str = "refused.portcullis.test";
/// Resolves nowhere, not even in the world.
pub(crate) const UNKNOWN: &str = "unknown.portcullis.test";

/// Who the test runs as inside the world.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum As {
    /// Whoever runs the tests.
    Caller,
    /// `nobody` (only when the tests run as root).
    Nobody,
}

/// Whether this process is a world made by [`run`].
pub(crate) fn inside() -> bool {
    std::env::var_os(WORLD_ENV).is_some()
}

/// Who this world's test runs as; fails if that is not who it is.
pub(crate) fn check_user() -> As {
    let user = match std::env::var(WORLD_ENV).as_deref() {
        Ok("nobody") => As::Nobody,
        _ => As::Caller,
    };
    if user == As::Nobody {
        // SAFETY: no arguments; it cannot fail.
        assert_eq!(unsafe { libc::geteuid() }, 65534, "not nobody");
    }
    user
}

/// Runs the test named `test` (its full path in this binary) in a new world, and fails with its
/// output if the test fails there.
pub(crate) fn run(test: &str, user: As) {
    let files = tempfile::tempdir().unwrap();
    fs::set_permissions(files.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let write = |name: &str, text: &str| {
        let path = files.path().join(name);
        fs::write(&path, text).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        path
    };
    let hosts = write(
        "hosts",
        &format!("127.0.0.1 localhost\n127.0.0.1 {GRANTED}\n127.0.0.1 {REFUSED}\n"),
    );
    let nsswitch = write("nsswitch.conf", "hosts: files\n");
    let resolv = write("resolv.conf", "");
    let mounts: Vec<(CString, CString)> = [
        (hosts, "/etc/hosts"),
        (nsswitch, "/etc/nsswitch.conf"),
        (resolv, "/etc/resolv.conf"),
    ]
    .into_iter()
    .filter_map(|(source, target)| {
        let target = fs::canonicalize(target).ok()?;
        Some((c_path(&source), c_path(&target)))
    })
    .collect();
    let root = crate::running_as_root();
    assert!(
        root || user == As::Caller,
        "only root can run a test as nobody"
    );
    // SAFETY (both): no arguments; they cannot fail.
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    let maps: Vec<(CString, Vec<u8>)> = if root {
        Vec::new()
    } else {
        vec![
            (c_path(Path::new("/proc/self/setgroups")), b"deny".to_vec()),
            (
                c_path(Path::new("/proc/self/uid_map")),
                format!("{uid} {uid} 1\n").into_bytes(),
            ),
            (
                c_path(Path::new("/proc/self/gid_map")),
                format!("{gid} {gid} 1\n").into_bytes(),
            ),
        ]
    };
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(
            WORLD_ENV,
            match user {
                As::Caller => "caller",
                As::Nobody => "nobody",
            },
        )
        .stdin(std::process::Stdio::null());
    // SAFETY: the hook only makes system calls on data built above (no allocation).
    unsafe {
        command.pre_exec(move || enter(root, &maps, &mounts, user));
    }
    let output = crate::harness::run_to_end(command);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.contains("1 passed"),
        "the test failed in its world ({}):\nstdout:\n{stdout}\nstderr:\n{stderr}",
        output.status
    );
    drop(files);
}

fn c_path(path: &Path) -> CString {
    CString::new(path.as_os_str().as_encoded_bytes()).unwrap()
}

fn check(ret: libc::c_int) -> std::io::Result<()> {
    if ret < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// The world's `pre_exec` hook: namespaces, the test's resolver files, loopback up, the user.
fn enter(
    root: bool,
    maps: &[(CString, Vec<u8>)],
    mounts: &[(CString, CString)],
    user: As,
) -> std::io::Result<()> {
    // SAFETY (every call): integer arguments, NUL-terminated strings and buffers built before
    // the fork, or structs on this stack.
    unsafe {
        let user_namespace = if root { 0 } else { libc::CLONE_NEWUSER };
        check(libc::unshare(
            user_namespace | libc::CLONE_NEWNET | libc::CLONE_NEWNS,
        ))?;
        for (path, text) in maps {
            let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
            check(fd)?;
            let written = libc::write(fd, text.as_ptr().cast(), text.len());
            libc::close(fd);
            if written < 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
        // As root the new mount namespace still shares its mounts with the machine's: make
        // them private before mounting anything.
        check(libc::mount(
            std::ptr::null(),
            c"/".as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        ))?;
        for (source, target) in mounts {
            check(libc::mount(
                source.as_ptr(),
                target.as_ptr(),
                std::ptr::null(),
                libc::MS_BIND,
                std::ptr::null(),
            ))?;
        }
        let probe = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        check(probe)?;
        let mut request = [0u8; 40];
        request[..2].copy_from_slice(b"lo");
        check(libc::ioctl(probe, libc::SIOCGIFFLAGS, request.as_mut_ptr()))?;
        let flags = i16::from_ne_bytes([request[16], request[17]]) | libc::IFF_UP as i16;
        request[16..18].copy_from_slice(&flags.to_ne_bytes());
        check(libc::ioctl(probe, libc::SIOCSIFFLAGS, request.as_ptr()))?;
        libc::close(probe);
        if user == As::Nobody {
            check(libc::setgroups(0, std::ptr::null()))?;
            check(libc::setgid(65534))?;
            check(libc::setuid(65534))?;
        }
    }
    Ok(())
}
