//! The configured upstreams as one owner: their handles in configuration order, how exposed
//! names map onto them, their supervisors, and whether every one has started (or failed) once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use portcullis_config::{Instance, PerUser, Upstream};
use portcullis_core::{IdentityEnvelope, Namespacing, UpstreamName};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::instances::{InstanceParts, Instances};
use crate::upstream::{UpstreamHandle, UpstreamState};

/// How ready one upstream is, for start-up messages and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamStatus {
    Starting,
    Ready {
        tools: usize,
        protocol: String,
    },
    Down {
        reason: String,
    },
    /// `instance = "per_user"`: started for each identity on its first request.
    PerUser {
        running: usize,
    },
}

pub(crate) struct Upstreams {
    namespacing: Namespacing,
    names: Vec<UpstreamName>,
    handles: Vec<Arc<UpstreamHandle>>,
    /// Set once every upstream has started or failed at least once; until then requests wait,
    /// so a client that lists right after connecting sees every upstream that can start.
    first_settled: AtomicBool,
    settled: Notify,
    /// The supervisors, joined by [`Upstreams::stop`] so their last records are written.
    supervisors: Mutex<Vec<JoinHandle<()>>>,
    /// Each identity's own instances of the per-user upstreams.
    instances: Instances,
}

impl Upstreams {
    /// Starts supervising each of `handles` until `shutdown`; requests wait until each has
    /// started or failed once, or `settle_within` has passed.
    /// Builds a handle for each of `specs` and starts supervising it. A per-user upstream's
    /// handle is its template: never started itself, its instances are, from
    /// `instance_parts`, one per identity on its first request (see `instances.rs`).
    pub(crate) fn start(
        specs: &[Upstream],
        instance_parts: InstanceParts,
        shutdown: &CancellationToken,
    ) -> Arc<Self> {
        let handles: Vec<Arc<UpstreamHandle>> = specs
            .iter()
            .map(|spec| {
                UpstreamHandle::new(
                    spec.clone(),
                    &instance_parts.inherited,
                    instance_parts.exposure.clone(),
                    instance_parts.sessions.clone(),
                    instance_parts.recorder.clone(),
                    instance_parts
                        .credentials
                        .service_source(spec.name.as_str()),
                )
            })
            .collect();
        // Requests wait for every upstream's first start, at most twice the longest timeout.
        let settle_within = specs
            .iter()
            .map(|spec| spec.start_timeout)
            .max()
            .unwrap_or_default()
            * 2;
        let supervisors = handles
            .iter()
            .filter(|upstream| per_user(upstream).is_none())
            .map(|upstream| tokio::spawn(upstream.clone().supervise(shutdown.child_token())))
            .collect();
        let upstreams = Arc::new(Upstreams {
            namespacing: instance_parts.exposure.namespacing,
            names: handles.iter().map(|u| u.name().clone()).collect(),
            handles,
            first_settled: AtomicBool::new(false),
            settled: Notify::new(),
            supervisors: Mutex::new(supervisors),
            instances: Instances::new(instance_parts, shutdown.child_token()),
        });
        let watcher = upstreams.clone();
        tokio::spawn(async move {
            watcher.settle(settle_within).await;
            watcher.first_settled.store(true, Ordering::Release);
            watcher.settled.notify_waiters();
        });
        if let Some(check_every) = upstreams.idle_check_interval() {
            let reaper = Arc::downgrade(&upstreams);
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                loop {
                    let Some(upstreams) = reaper.upgrade() else {
                        return;
                    };
                    upstreams.sweep_instances();
                    drop(upstreams);
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(check_every) => {}
                    }
                }
            });
        }
        upstreams
    }

    /// Stops the idle instances, and deletes the expired state of identities whose instance is
    /// not running.
    fn sweep_instances(&self) {
        self.instances.stop_idle(|index| {
            self.handles
                .get(index)
                .and_then(|handle| per_user(handle))
                .map(|per_user| per_user.idle)
        });
        for (index, handle) in self.handles.iter().enumerate() {
            if let Some(per_user) = per_user(handle) {
                self.instances.expire_states(index, per_user);
            }
        }
    }

    /// How often idle instances are looked for: a quarter of the shortest idle time, between
    /// one and thirty seconds; `None` without per-user upstreams.
    fn idle_check_interval(&self) -> Option<Duration> {
        self.handles
            .iter()
            .filter_map(|handle| per_user(handle))
            .map(|per_user| per_user.idle / 4)
            .min()
            .map(|quarter| quarter.clamp(Duration::from_secs(1), Duration::from_secs(30)))
    }

    /// The upstreams as `envelope` reaches them, in configuration order: a per-user
    /// upstream's entry is that identity's own instance, started if it is not running.
    pub(crate) fn serving(&self, envelope: &IdentityEnvelope) -> Vec<Arc<UpstreamHandle>> {
        self.handles
            .iter()
            .enumerate()
            .map(|(index, handle)| self.as_seen_by(index, handle, envelope))
            .collect()
    }

    fn as_seen_by(
        &self,
        index: usize,
        handle: &Arc<UpstreamHandle>,
        envelope: &IdentityEnvelope,
    ) -> Arc<UpstreamHandle> {
        match per_user(handle) {
            None => handle.clone(),
            Some(per_user) => self.instances.of(index, handle, per_user, envelope),
        }
    }

    /// Like [`Upstreams::resolve`], with a per-user upstream as `envelope`'s own instance.
    pub(crate) fn resolve_as<'n>(
        &self,
        envelope: &IdentityEnvelope,
        exposed: &'n str,
    ) -> Option<(Arc<UpstreamHandle>, &'n str)> {
        let name = self.namespacing.resolve(&self.names, exposed)?;
        let handle = self.handles.get(name.upstream)?;
        Some((self.as_seen_by(name.upstream, handle, envelope), name.local))
    }

    /// Like [`Upstreams::resolve_uri`], with a per-user upstream as `envelope`'s own instance.
    pub(crate) fn resolve_uri_as<'n>(
        &self,
        envelope: &IdentityEnvelope,
        exposed: &'n str,
    ) -> Option<(Arc<UpstreamHandle>, &'n str)> {
        let name = self.namespacing.resolve_uri(&self.names, exposed)?;
        let handle = self.handles.get(name.upstream)?;
        Some((self.as_seen_by(name.upstream, handle, envelope), name.local))
    }

    /// The per-user upstreams whose instance `envelope` cannot have until it authorises
    /// Portcullis there (their templates).
    pub(crate) fn awaiting_grant(&self, envelope: &IdentityEnvelope) -> Vec<&Arc<UpstreamHandle>> {
        self.handles
            .iter()
            .filter(|handle| {
                per_user(handle).is_some() && self.instances.awaits_grant(handle, envelope)
            })
            .collect()
    }

    /// Waits until every shared upstream has started or failed once, then until each of
    /// `envelope`'s own instances has (each bounded by twice its start timeout).
    pub(crate) async fn ready_for(&self, envelope: &IdentityEnvelope) {
        self.first_settle().await;
        if !self.handles.iter().any(|handle| per_user(handle).is_some()) {
            return;
        }
        for handle in self.serving(envelope) {
            if per_user(&handle).is_none() {
                continue;
            }
            let deadline = tokio::time::Instant::now() + handle.spec.start_timeout * 2;
            while matches!(**handle.state.load(), UpstreamState::Starting)
                && tokio::time::Instant::now() < deadline
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }

    pub(crate) fn namespacing(&self) -> Namespacing {
        self.namespacing
    }

    /// Reads the lists of every running upstream and instance again (their pins changed).
    pub(crate) async fn refresh_catalogs(&self) {
        let mut handles: Vec<Arc<UpstreamHandle>> = self.handles.to_vec();
        handles.extend(self.instances.handles());
        for handle in handles {
            if let Some(connection) = handle.connection() {
                handle.refresh_catalog(&connection).await;
            }
        }
    }

    /// Every upstream, in configuration order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Arc<UpstreamHandle>> {
        self.handles.iter()
    }

    /// The upstream and its own name of an exposed tool or prompt name, if any.
    pub(crate) fn resolve<'n>(&self, exposed: &'n str) -> Option<(&Arc<UpstreamHandle>, &'n str)> {
        let name = self.namespacing.resolve(&self.names, exposed)?;
        Some((self.handles.get(name.upstream)?, name.local))
    }

    /// The upstream and its own URI of an exposed resource URI, if any.
    pub(crate) fn resolve_uri<'n>(
        &self,
        exposed: &'n str,
    ) -> Option<(&Arc<UpstreamHandle>, &'n str)> {
        let name = self.namespacing.resolve_uri(&self.names, exposed)?;
        Some((self.handles.get(name.upstream)?, name.local))
    }

    /// Each upstream's name and status, in configuration order; a per-user upstream's is how
    /// many instances run.
    pub(crate) fn status(&self) -> Vec<(UpstreamName, UpstreamStatus)> {
        self.handles
            .iter()
            .enumerate()
            .map(|(index, upstream)| {
                let status = match per_user(upstream) {
                    Some(_) => UpstreamStatus::PerUser {
                        running: self.instances.count(index),
                    },
                    None => status_of(upstream),
                };
                (upstream.name().clone(), status)
            })
            .collect()
    }

    /// Each upstream's name and status as `envelope` reaches it: a per-user upstream's is that
    /// of the identity's own instance (started if it is not running).
    pub(crate) fn status_as(
        &self,
        envelope: &IdentityEnvelope,
    ) -> Vec<(UpstreamName, UpstreamStatus)> {
        self.serving(envelope)
            .iter()
            .map(|upstream| (upstream.name().clone(), status_of(upstream)))
            .collect()
    }

    /// Waits until every upstream has either started or failed once, up to `limit`.
    pub(crate) async fn settle(&self, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        while tokio::time::Instant::now() < deadline {
            if self
                .status()
                .iter()
                .all(|(_, status)| *status != UpstreamStatus::Starting)
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until every upstream has started or failed once (immediately after that).
    pub(crate) async fn first_settle(&self) {
        if self.first_settled.load(Ordering::Acquire) {
            return;
        }
        let notified = self.settled.notified();
        if self.first_settled.load(Ordering::Acquire) {
            return;
        }
        notified.await;
    }

    /// Waits (at most `limit`) until each supervisor has recorded its upstream's stop; the
    /// caller has cancelled their shutdown token.
    pub(crate) async fn stopped(&self, limit: Duration) {
        let mut supervisors = self
            .supervisors
            .lock()
            .map(|mut supervisors| std::mem::take(&mut *supervisors))
            .unwrap_or_default();
        supervisors.extend(self.instances.supervisors());
        if tokio::time::timeout(limit, futures::future::join_all(supervisors))
            .await
            .is_err()
        {
            tracing::warn!("some upstreams did not stop in time; their stop may not be recorded");
        }
    }
}

/// The per-user settings of `handle`'s upstream, if it runs once per identity.
fn per_user(handle: &UpstreamHandle) -> Option<&PerUser> {
    match &handle.spec.instance {
        Instance::PerUser(per_user) => Some(per_user),
        Instance::Shared => None,
    }
}

fn status_of(upstream: &UpstreamHandle) -> UpstreamStatus {
    match &**upstream.state.load() {
        UpstreamState::Starting => UpstreamStatus::Starting,
        UpstreamState::Ready(connection) => UpstreamStatus::Ready {
            tools: connection.catalog.load().tools.len(),
            protocol: connection.protocol_version.to_string(),
        },
        UpstreamState::Down { reason } | UpstreamState::Waiting { reason } => {
            UpstreamStatus::Down {
                reason: reason.clone(),
            }
        }
    }
}
