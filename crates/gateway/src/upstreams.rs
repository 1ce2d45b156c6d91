//! The configured upstreams as one owner: their handles in configuration order, how exposed
//! names map onto them, their supervisors, and whether every one has started (or failed) once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use portcullis_core::{Namespacing, UpstreamName};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::upstream::{UpstreamHandle, UpstreamState};

/// How ready one upstream is, for start-up messages and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamStatus {
    Starting,
    Ready { tools: usize, protocol: String },
    Down { reason: String },
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
}

impl Upstreams {
    /// Starts supervising each of `handles` until `shutdown`; requests wait until each has
    /// started or failed once, or `settle_within` has passed.
    pub(crate) fn start(
        namespacing: Namespacing,
        handles: Vec<Arc<UpstreamHandle>>,
        shutdown: &CancellationToken,
        settle_within: Duration,
    ) -> Arc<Self> {
        let supervisors = handles
            .iter()
            .map(|upstream| tokio::spawn(upstream.clone().supervise(shutdown.child_token())))
            .collect();
        let upstreams = Arc::new(Upstreams {
            namespacing,
            names: handles.iter().map(|u| u.name().clone()).collect(),
            handles,
            first_settled: AtomicBool::new(false),
            settled: Notify::new(),
            supervisors: Mutex::new(supervisors),
        });
        let watcher = upstreams.clone();
        tokio::spawn(async move {
            watcher.settle(settle_within).await;
            watcher.first_settled.store(true, Ordering::Release);
            watcher.settled.notify_waiters();
        });
        upstreams
    }

    pub(crate) fn namespacing(&self) -> Namespacing {
        self.namespacing
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

    /// Each upstream's name and status, in configuration order.
    pub(crate) fn status(&self) -> Vec<(UpstreamName, UpstreamStatus)> {
        self.handles
            .iter()
            .map(|upstream| {
                let status = match &**upstream.state.load() {
                    UpstreamState::Starting => UpstreamStatus::Starting,
                    UpstreamState::Ready(connection) => UpstreamStatus::Ready {
                        tools: connection.catalog.load().tools.len(),
                        protocol: connection.protocol_version.to_string(),
                    },
                    UpstreamState::Down { reason } => UpstreamStatus::Down {
                        reason: reason.clone(),
                    },
                };
                (upstream.name().clone(), status)
            })
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
        let supervisors = self
            .supervisors
            .lock()
            .map(|mut supervisors| std::mem::take(&mut *supervisors))
            .unwrap_or_default();
        if tokio::time::timeout(limit, futures::future::join_all(supervisors))
            .await
            .is_err()
        {
            tracing::warn!("some upstreams did not stop in time; their stop may not be recorded");
        }
    }
}
