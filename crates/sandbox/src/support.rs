//! What the running kernel can enforce, and whether that is enough for a profile.

use std::fmt;

use crate::child;
use crate::error::SandboxError;
use crate::profile::Profile;

/// What the running kernel can enforce. From [`probe`]; for `portcullis check` and the logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelSupport {
    /// Landlock's state.
    pub landlock: LandlockSupport,
    /// Whether seccomp filters can return an errno (Linux 4.14 with `CONFIG_SECCOMP_FILTER`).
    pub seccomp_filter: bool,
}

/// Landlock's state in the running kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LandlockSupport {
    /// Landlock is enabled, with this ABI version.
    Abi(u32),
    /// Built in, but not enabled at boot (not in the `lsm=` list).
    NotEnabled,
    /// The kernel was built without landlock.
    NotBuilt,
}

impl KernelSupport {
    /// The landlock ABI, if landlock is enabled.
    pub fn landlock_abi(&self) -> Option<u32> {
        match self.landlock {
            LandlockSupport::Abi(abi) => Some(abi),
            LandlockSupport::NotEnabled | LandlockSupport::NotBuilt => None,
        }
    }
}

impl fmt::Display for KernelSupport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.landlock {
            LandlockSupport::Abi(abi) => write!(f, "landlock ABI {abi}")?,
            LandlockSupport::NotEnabled => write!(f, "landlock built in but not enabled at boot")?,
            LandlockSupport::NotBuilt => write!(f, "no landlock")?,
        }
        if self.seccomp_filter {
            write!(f, ", seccomp filters available")
        } else {
            write!(f, ", no seccomp filters")
        }
    }
}

/// Asks the kernel what it can enforce. Cheap: two system calls, no side effects.
pub fn probe() -> KernelSupport {
    KernelSupport {
        landlock: child::landlock_support(),
        seccomp_filter: child::seccomp_errno_available(),
    }
}

/// One thing a profile needs from landlock, with the ABI version that brought it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Requirement {
    /// What it is, as a person reads it ("TCP port rules").
    pub feature: &'static str,
    /// The first landlock ABI that has it.
    pub abi: u32,
}

/// What a profile needs from landlock, oldest ABI first.
///
/// File rules need ABI 3: before it landlock could not refuse `truncate`, so a file outside
/// `read_write` could still be emptied. Signal and abstract unix socket scoping (ABI 6) are asked
/// of every profile: without them the upstream could signal Portcullis or any process of the
/// user, or reach any abstract socket, and seccomp cannot see which process or name is meant.
pub(crate) fn requirements(profile: &Profile) -> Vec<Requirement> {
    let mut needed = vec![Requirement {
        feature: "file rules that cover truncation",
        abi: 3,
    }];
    if profile.grants_tcp() {
        needed.push(Requirement {
            feature: "TCP port rules",
            abi: 4,
        });
    }
    needed.push(Requirement {
        feature: "signal scoping",
        abi: 6,
    });
    needed.push(Requirement {
        feature: "abstract unix socket scoping",
        abi: 6,
    });
    needed
}

/// Checks that the kernel can enforce everything the profile needs; returns the landlock ABI.
/// Pure: the kernel's answer is a parameter, so every refusal can be tested on any machine.
pub(crate) fn check(profile: &Profile, support: &KernelSupport) -> Result<u32, SandboxError> {
    let abi = match support.landlock {
        LandlockSupport::Abi(abi) => abi,
        LandlockSupport::NotEnabled => return Err(SandboxError::LandlockNotEnabled),
        LandlockSupport::NotBuilt => return Err(SandboxError::LandlockNotBuilt),
    };
    let missing: Vec<Requirement> = requirements(profile)
        .into_iter()
        .filter(|requirement| requirement.abi > abi)
        .collect();
    if !missing.is_empty() {
        return Err(SandboxError::LandlockTooOld { abi, missing });
    }
    if !support.seccomp_filter {
        return Err(SandboxError::SeccompUnavailable);
    }
    Ok(abi)
}

/// "this profile needs TCP port rules (ABI 4) and signal scoping (ABI 6), which Linux 6.12 or
/// later has; upgrade the kernel or turn the sandbox off for this upstream".
pub(crate) fn render_missing(missing: &[Requirement]) -> String {
    let parts: Vec<String> = missing
        .iter()
        .map(|requirement| format!("{} (ABI {})", requirement.feature, requirement.abi))
        .collect();
    let listed = match parts.split_last() {
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
        None => String::from("nothing more"),
    };
    let newest = missing.iter().map(|requirement| requirement.abi).max();
    match newest.and_then(linux_release) {
        Some(linux) => format!(
            "this profile needs {listed}, which Linux {linux} or later has; \
             upgrade the kernel or turn the sandbox off for this upstream"
        ),
        None => format!(
            "this profile needs {listed}; upgrade the kernel or turn the sandbox off for this \
             upstream"
        ),
    }
}

/// The Linux release that brought each landlock ABI.
fn linux_release(abi: u32) -> Option<&'static str> {
    match abi {
        1 => Some("5.13"),
        2 => Some("5.19"),
        3 => Some("6.2"),
        4 => Some("6.7"),
        5 => Some("6.10"),
        6 => Some("6.12"),
        7 => Some("6.15"),
        _ => None,
    }
}
