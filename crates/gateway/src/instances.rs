//! The per-identity instances of `instance = "per_user"` upstreams: started on an identity's
//! first request, each from the upstream's spec narrowed to that identity
//! (`Upstream::for_identity`: its own roots and state directory, its home inside it) and, for a
//! `url`, carrying that identity's delegated token from `initialize` on; stopped when idle.
//!
//! INVARIANT: an identity's requests reach only its own instance, and an instance's sandbox
//! grants it its own state directory and no other identity's.

use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::DirBuilderExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use portcullis_config::{Instance, PerUser, Upstream, UpstreamTransport};
use portcullis_core::IdentityEnvelope;
use tokio_util::sync::CancellationToken;

use crate::credentials::Credentials;
use crate::recorder::Recorder;
use crate::sessions::Sessions;
use crate::upstream::{Exposure, UpstreamHandle, UpstreamState};

/// The upstream's own name of the tool Portcullis lists in place of a per-user upstream's
/// catalog while an identity has not authorised it (`pipeline/sign_in.rs`).
pub(crate) const SIGN_IN_TOOL: &str = "portcullis_sign_in";

/// The directory of `envelope`'s state at a per-user upstream: named by a digest of the
/// identity, so that no subject can name a path.
pub fn instance_state_dir(per_user: &PerUser, envelope: &IdentityEnvelope) -> PathBuf {
    let user = envelope.user();
    let digest =
        portcullis_audit::digest_bytes(format!("{}\n{}", user.issuer, user.subject).as_bytes());
    let name = digest.trim_start_matches("sha256:");
    per_user.state.join(name.get(..32).unwrap_or(name))
}

/// Deletes `envelope`'s state at the per-user upstream `spec`; whether there was any.
pub fn remove_instance_state(
    spec: &Upstream,
    envelope: &IdentityEnvelope,
) -> std::io::Result<bool> {
    let Instance::PerUser(per_user) = &spec.instance else {
        return Ok(false);
    };
    match std::fs::remove_dir_all(instance_state_dir(per_user, envelope)) {
        Ok(()) => Ok(true),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(error) => Err(error),
    }
}

/// What building an instance needs besides its spec.
pub(crate) struct InstanceParts {
    pub inherited: BTreeMap<String, String>,
    pub exposure: Exposure,
    pub sessions: Weak<Sessions>,
    pub recorder: Recorder,
    pub credentials: Arc<Credentials>,
}

struct Running {
    handle: Arc<UpstreamHandle>,
    stop: CancellationToken,
    supervisor: tokio::task::JoinHandle<()>,
    last_used: Instant,
}

/// The running instances, by upstream (its place in config) and identity.
pub(crate) struct Instances {
    parts: InstanceParts,
    running: Mutex<HashMap<(usize, PathBuf), Running>>,
    shutdown: CancellationToken,
}

impl Instances {
    pub(crate) fn new(parts: InstanceParts, shutdown: CancellationToken) -> Self {
        Self {
            parts,
            running: Mutex::new(HashMap::new()),
            shutdown,
        }
    }

    /// `envelope`'s instance of the per-user upstream `template` (at `index` in config),
    /// started if it is not running. An instance that cannot start (no state directory; a
    /// `url` whose identity has not authorised Portcullis yet) is a down handle saying why,
    /// which is not kept: the next request tries again.
    pub(crate) fn of(
        &self,
        index: usize,
        template: &UpstreamHandle,
        per_user: &PerUser,
        envelope: &IdentityEnvelope,
    ) -> Arc<UpstreamHandle> {
        let state = instance_state_dir(per_user, envelope);
        let key = (index, state.clone());
        let Ok(mut running) = self.running.lock() else {
            return self.down(template, "its instances cannot be reached".to_owned());
        };
        if let Some(instance) = running.get_mut(&key) {
            instance.last_used = Instant::now();
            return instance.handle.clone();
        }
        let user = envelope.user();
        let spec = template
            .spec
            .for_identity(&user.subject, envelope.groups(), &state);
        let service = match &spec.transport {
            UpstreamTransport::Http { .. } => {
                match self
                    .parts
                    .credentials
                    .user_source(envelope, spec.name.as_str())
                {
                    Some(source) => Some(source),
                    None => {
                        return self.down(
                            template,
                            format!(
                                "it starts for each user with their own authorisation, and you have not authorised Portcullis for it yet: call its `{SIGN_IN_TOOL}` tool, or run `portcullis login {}` in a terminal",
                                spec.name
                            ),
                        );
                    }
                }
            }
            UpstreamTransport::Stdio { .. } => {
                if let Err(error) = create_state(&state) {
                    return self.down(
                        template,
                        format!(
                            "this identity's state directory `{}` cannot be made: {error}",
                            state.display()
                        ),
                    );
                }
                None
            }
        };
        let handle = UpstreamHandle::new(
            spec,
            &self.parts.inherited,
            self.parts.exposure.clone(),
            self.parts.sessions.clone(),
            self.parts.recorder.clone(),
            service,
        );
        let stop = self.shutdown.child_token();
        let supervisor = tokio::spawn(handle.clone().supervise(stop.clone()));
        tracing::info!(upstream = %template.name(), user = %user, "started this identity's own instance");
        running.insert(
            key,
            Running {
                handle: handle.clone(),
                stop,
                supervisor,
                last_used: Instant::now(),
            },
        );
        handle
    }

    /// Whether `envelope` must authorise Portcullis before its instance of the per-user
    /// `template` can start: a `url` whose identity holds no delegated grant for it.
    pub(crate) fn awaits_grant(
        &self,
        template: &UpstreamHandle,
        envelope: &IdentityEnvelope,
    ) -> bool {
        matches!(template.spec.transport, UpstreamTransport::Http { .. })
            && self
                .parts
                .credentials
                .user_source(envelope, template.name().as_str())
                .is_none()
    }

    /// A handle that is not started, for `reason`, with `template`'s spec.
    fn down(&self, template: &UpstreamHandle, reason: String) -> Arc<UpstreamHandle> {
        let handle = UpstreamHandle::new(
            template.spec.clone(),
            &BTreeMap::new(),
            self.parts.exposure.clone(),
            Weak::new(),
            self.parts.recorder.clone(),
            None,
        );
        handle
            .state
            .store(Arc::new(UpstreamState::Waiting { reason }));
        handle
    }

    /// How many instances of the upstream at `index` run.
    pub(crate) fn count(&self, index: usize) -> usize {
        self.running
            .lock()
            .map(|running| running.keys().filter(|(at, _)| *at == index).count())
            .unwrap_or(0)
    }

    /// Stops the instances unused for longer than their upstream's idle time and with no call
    /// in flight; their state directories stay.
    pub(crate) fn stop_idle(&self, idle_of: impl Fn(usize) -> Option<Duration>) {
        let Ok(mut running) = self.running.lock() else {
            return;
        };
        running.retain(|(index, _), instance| {
            let idle = idle_of(*index);
            let keep = instance.handle.is_busy()
                || idle.is_none_or(|idle| instance.last_used.elapsed() < idle);
            if let (false, Some(idle)) = (keep, idle) {
                instance.handle.stopping_because(format!(
                    "this identity's instance was idle for {} s",
                    idle.as_secs()
                ));
                tracing::info!(upstream = %instance.handle.name(), "an identity's instance was idle; stopped");
                instance.stop.cancel();
            }
            keep
        });
    }

    /// Deletes the state directories of the per-user upstream at `index` whose instance is not
    /// running and has not started (nor written there) for `per_user.expire`.
    pub(crate) fn expire_states(&self, index: usize, per_user: &PerUser) {
        let Ok(entries) = std::fs::read_dir(&per_user.state) else {
            return;
        };
        let running: Vec<PathBuf> = self
            .running
            .lock()
            .map(|running| {
                running
                    .keys()
                    .filter(|(at, _)| *at == index)
                    .map(|(_, state)| state.clone())
                    .collect()
            })
            .unwrap_or_default();
        for entry in entries.flatten() {
            let state = entry.path();
            let unused_for = entry
                .metadata()
                .and_then(|metadata| metadata.modified())
                .ok()
                .and_then(|modified| modified.elapsed().ok());
            if running.contains(&state) || unused_for.is_none_or(|age| age < per_user.expire) {
                continue;
            }
            match std::fs::remove_dir_all(&state) {
                Ok(()) => {
                    tracing::info!(state = %state.display(), "an identity's state at a per-user upstream expired; deleted")
                }
                Err(error) => {
                    tracing::warn!(state = %state.display(), %error, "an expired state directory could not be deleted")
                }
            }
        }
    }

    /// Every running instance's handle.
    pub(crate) fn handles(&self) -> Vec<Arc<UpstreamHandle>> {
        self.running
            .lock()
            .map(|running| running.values().map(|i| i.handle.clone()).collect())
            .unwrap_or_default()
    }

    /// The supervisors of every instance, to join at shutdown.
    pub(crate) fn supervisors(&self) -> Vec<tokio::task::JoinHandle<()>> {
        self.running
            .lock()
            .map(|mut running| {
                running
                    .drain()
                    .map(|(_, instance)| instance.supervisor)
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Makes `state` and the home directories inside it, readable by Portcullis's user alone, and
/// marks it used now (its expiry counts from its last start).
fn create_state(state: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true).mode(0o700);
    builder.create(state)?;
    for dir in Upstream::home_directories(state) {
        builder.create(dir)?;
    }
    std::fs::File::open(state)?.set_modified(std::time::SystemTime::now())
}
