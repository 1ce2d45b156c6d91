//! `instance = "per_user"`: an upstream that runs once per identity (a contained process for a
//! `command`, a connection for a `url`), each with a state directory of its own, so that what a
//! server keeps on disk for one person (a browser profile, a CLI's login, cookies) is never
//! another's.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_spanned::Spanned;

use crate::credential::UpstreamCredential;
use crate::error::Reporter;
use crate::launcher::Launcher;
use crate::model::{Containment, Upstream, UpstreamTransport};
use crate::raw::RawUpstream;

/// Where per-user state lives by default, beside the configuration.
const DEFAULT_STATE: &str = "state/instances";

/// How long an identity's instance is kept without a request, by default.
pub const DEFAULT_INSTANCE_IDLE: Duration = Duration::from_secs(600);

/// How many days an identity's state is kept after its instance last started, by default.
const DEFAULT_STATE_DAYS: u64 = 30;

/// How many instances are started for one upstream across identities.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Instance {
    /// One process or connection serves every identity (the default).
    #[default]
    Shared,
    PerUser(PerUser),
}

/// The settings of a per-identity upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PerUser {
    /// The directory under which each identity's state directory of this upstream is made
    /// (`instance_state`, default `state/instances/<upstream>` beside the config).
    pub state: PathBuf,
    /// An instance without a request for this long is stopped (`instance_idle_secs`); its
    /// state directory stays until the identity logs out or it expires.
    pub idle: Duration,
    /// An identity's state directory whose instance has not started for this long is deleted
    /// (`instance_state_days`, default 30).
    pub expire: Duration,
}

/// The variables that point a program's own state at its home: each is set to a directory
/// under the identity's state directory.
const HOME_VARIABLES: [(&str, &str); 5] = [
    ("HOME", ""),
    ("XDG_CONFIG_HOME", ".config"),
    ("XDG_DATA_HOME", ".local/share"),
    ("XDG_STATE_HOME", ".local/state"),
    ("XDG_CACHE_HOME", ".cache"),
];

impl Upstream {
    /// The upstream as it runs for one identity (`subject`, in `groups`), whose state
    /// directory is `state`: its roots narrowed to the identity's own (`roots_for`) plus
    /// `state`, and for a `command`, its home and XDG directories inside `state`. The sandbox
    /// built from it holds the process to that identity's roots alone.
    pub fn for_identity(&self, subject: &str, groups: &BTreeSet<String>, state: &Path) -> Self {
        let mut instance = self.clone();
        if !self.roots_for.is_empty() {
            instance.roots = self
                .roots_for
                .iter()
                .filter(|entry| entry.grantee.names(subject, groups))
                .flat_map(|entry| entry.roots.iter())
                .filter(|root| self.roots.iter().any(|granted| root.starts_with(granted)))
                .cloned()
                .collect();
            instance.roots_for = Vec::new();
        }
        instance.roots.push(state.to_path_buf());
        if let UpstreamTransport::Stdio { env, .. } = &mut instance.transport {
            for (name, below) in HOME_VARIABLES {
                env.insert(name.to_owned(), state.join(below).display().to_string());
            }
        }
        instance
    }

    /// The directories [`Upstream::for_identity`] points the home variables at, to create
    /// before the instance starts.
    pub fn home_directories(state: &Path) -> impl Iterator<Item = PathBuf> + '_ {
        HOME_VARIABLES
            .iter()
            .map(move |(_, below)| state.join(below))
    }
}

/// Reads `instance`, `instance_idle_secs` and `instance_state`, refusing a per-user upstream
/// whose identities' state could not be kept apart.
pub(crate) fn instance(
    report: &mut Reporter<'_>,
    upstream: &RawUpstream,
    transport: Option<&UpstreamTransport>,
    credential: Option<&UpstreamCredential>,
    base_dir: &Path,
) -> Instance {
    let per_user = match upstream.instance.as_ref() {
        None => false,
        Some(kind) => match kind.get_ref().as_str() {
            "shared" => false,
            "per_user" => true,
            other => {
                report.at(
                    Some(kind.span()),
                    format!("unknown instance `{other}`; use `shared` or `per_user`"),
                );
                false
            }
        },
    };
    if !per_user {
        for (present, key) in [
            (
                upstream.instance_idle_secs.as_ref().map(Spanned::span),
                "instance_idle_secs",
            ),
            (
                upstream.instance_state.as_ref().map(Spanned::span),
                "instance_state",
            ),
        ] {
            if let Some(span) = present {
                report.at(
                    Some(span),
                    format!("`{key}` applies only to an upstream with `instance = \"per_user\"`"),
                );
            }
        }
        return Instance::Shared;
    }
    let span = upstream.instance.as_ref().map(Spanned::span);
    match transport {
        Some(UpstreamTransport::Stdio {
            containment: Containment::Uncontained,
            ..
        }) => report.at(
            span.clone(),
            "`instance = \"per_user\"` keeps each identity's state apart with the sandbox, and this upstream sets `contain = false`: every instance could read every other's state",
        ),
        Some(UpstreamTransport::Stdio {
            containment: Containment::Container,
            ..
        })
        | Some(UpstreamTransport::Stdio {
            launcher: Some(Launcher::Container(_)),
            ..
        }) => report.at(
            span.clone(),
            "`instance = \"per_user\"` is not supported for container launchers yet: the state directory would have to be mounted into each container",
        ),
        Some(UpstreamTransport::Http { .. })
            if !matches!(credential, Some(UpstreamCredential::Delegated(_))) =>
        {
            report.at(
                span.clone(),
                "`instance = \"per_user\"` on a `url` upstream needs `[upstream.credential] kind = \"oauth\"`: each identity's connection carries that identity's own token, and without one every connection would be the same",
            );
        }
        _ => {}
    }
    let idle = positive(
        report,
        upstream.instance_idle_secs.as_ref(),
        "instance_idle_secs",
    )
    .map_or(DEFAULT_INSTANCE_IDLE, Duration::from_secs);
    let days = positive(
        report,
        upstream.instance_state_days.as_ref(),
        "instance_state_days",
    )
    .unwrap_or(DEFAULT_STATE_DAYS);
    let expire = Duration::from_secs(days.saturating_mul(24 * 60 * 60));
    let state = match upstream.instance_state.as_ref() {
        Some(dir) => base_dir.join(dir.get_ref()),
        None => base_dir.join(DEFAULT_STATE).join(upstream.name.get_ref()),
    };
    Instance::PerUser(PerUser {
        state,
        idle,
        expire,
    })
}

/// A positive whole number of `key`, if given (a bad one is reported).
fn positive(report: &mut Reporter<'_>, value: Option<&Spanned<i64>>, key: &str) -> Option<u64> {
    let value = value?;
    match u64::try_from(*value.get_ref()) {
        Ok(number) if number > 0 => Some(number),
        _ => {
            report.at(
                Some(value.span()),
                format!("`{key}` must be a positive whole number"),
            );
            None
        }
    }
}

#[cfg(test)]
mod tests;
