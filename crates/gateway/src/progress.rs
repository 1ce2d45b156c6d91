//! Progress notifications from one upstream, routed back to the client that made the call.
//!
//! rmcp's client gives every request it sends its own progress token, so the upstream never sees
//! the client's token: the route is keyed by the token rmcp chose, per upstream connection, and
//! the client's own token is put back on the way out.
//!
//! rmcp passes each notification on in a task of its own, so progress the upstream sent just
//! before its answer may still be on its way when the answer is back. The upstream's
//! transport counts each progress notification as it arrives, in the order the upstream sent
//! it ([`ProgressRoutes::arrived`], by [`Counting`]); a call's answer waits until every one
//! counted before it has been passed on or dropped ([`ProgressGuard::settled`]): an order,
//! not a guess at a delay.

use std::collections::HashMap;
use std::sync::{Mutex, Weak};
use std::time::Duration;

use rmcp::model::{
    JsonRpcMessage, ProgressNotificationParam, ProgressToken, ServerJsonRpcMessage,
    ServerNotification,
};
use rmcp::service::{Peer, RoleClient, RoleServer, TxJsonRpcMessage};
use rmcp::transport::Transport;
use tokio::sync::Notify;

use crate::upstream::UpstreamHandle;

struct Route {
    token: ProgressToken,
    peer: Peer<RoleServer>,
    /// Progress notifications of this call the upstream's transport received.
    arrived: u64,
    /// Of those, how many were passed on to the client or dropped.
    settled: u64,
}

/// The calls of one upstream whose clients asked for progress.
#[derive(Default)]
pub struct ProgressRoutes {
    routes: Mutex<HashMap<ProgressToken, Route>>,
    /// Woken each time a notification is settled.
    settling: Notify,
}

/// Removes the route when the call ends.
pub struct ProgressGuard<'a> {
    routes: &'a ProgressRoutes,
    key: ProgressToken,
}

impl ProgressGuard<'_> {
    /// Whether every progress notification of this call that arrived has been settled.
    fn is_settled(&self) -> bool {
        self.routes
            .routes
            .lock()
            .ok()
            .and_then(|routes| routes.get(&self.key).map(|r| r.settled >= r.arrived))
            .unwrap_or(true)
    }

    /// Waits until every progress notification of this call that arrived before now has
    /// reached the client (or been dropped), at most `limit` (a bound for a client that
    /// stopped reading, not a guess at the time it takes).
    pub async fn settled(&self, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let woken = self.routes.settling.notified();
            if self.is_settled() {
                return;
            }
            if tokio::time::timeout_at(deadline, woken).await.is_err() {
                tracing::debug!("progress of a finished call still on its way; answering");
                return;
            }
        }
    }
}

impl Drop for ProgressGuard<'_> {
    fn drop(&mut self) {
        if let Ok(mut routes) = self.routes.routes.lock() {
            routes.remove(&self.key);
        }
    }
}

impl ProgressRoutes {
    /// Routes progress for `upstream_token` to `peer` under the client's `token`.
    pub fn register(
        &self,
        upstream_token: ProgressToken,
        token: ProgressToken,
        peer: Peer<RoleServer>,
    ) -> ProgressGuard<'_> {
        if let Ok(mut routes) = self.routes.lock() {
            routes.insert(
                upstream_token.clone(),
                Route {
                    token,
                    peer,
                    arrived: 0,
                    settled: 0,
                },
            );
        }
        ProgressGuard {
            routes: self,
            key: upstream_token,
        }
    }

    /// Counts a progress notification for `upstream_token` as the transport receives it,
    /// before rmcp passes it on.
    pub fn arrived(&self, upstream_token: &ProgressToken) {
        if let Ok(mut routes) = self.routes.lock()
            && let Some(route) = routes.get_mut(upstream_token)
        {
            route.arrived += 1;
        }
    }

    /// Counts a progress notification for `upstream_token` as passed on or dropped.
    pub fn settle(&self, upstream_token: &ProgressToken) {
        if let Ok(mut routes) = self.routes.lock()
            && let Some(route) = routes.get_mut(upstream_token)
        {
            route.settled += 1;
        }
        self.settling.notify_waiters();
    }

    /// Forwards an upstream's progress to the client that owns the call; drops unknown tokens.
    pub async fn forward(&self, params: ProgressNotificationParam) {
        let upstream_token = params.progress_token.clone();
        self.pass_on(params).await;
        self.settle(&upstream_token);
    }

    async fn pass_on(&self, mut params: ProgressNotificationParam) {
        let route = self.routes.lock().ok().and_then(|routes| {
            routes
                .get(&params.progress_token)
                .map(|r| (r.token.clone(), r.peer.clone()))
        });
        let Some((token, peer)) = route else {
            tracing::debug!("progress for an unknown or finished call dropped");
            return;
        };
        params.progress_token = token;
        if let Some(message) = &params.message {
            let (message, _) = crate::secrets::Secrets::global().redact_text(message);
            params.message = Some(message);
        }
        if let Err(error) = peer.notify_progress(params).await {
            tracing::debug!(%error, "could not forward progress to the client");
        }
    }
}

/// An upstream's transport that counts each progress notification it receives
/// ([`ProgressRoutes::arrived`]) before handing it on: the order the upstream sent its
/// progress and its answer in, kept for [`ProgressGuard::settled`].
pub(crate) struct Counting<T> {
    inner: T,
    upstream: Weak<UpstreamHandle>,
}

impl<T> Counting<T> {
    pub(crate) fn new(inner: T, upstream: Weak<UpstreamHandle>) -> Self {
        Self { inner, upstream }
    }
}

impl<T: Transport<RoleClient>> Transport<RoleClient> for Counting<T> {
    type Error = T::Error;

    fn send(
        &mut self,
        item: TxJsonRpcMessage<RoleClient>,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
        self.inner.send(item)
    }

    async fn receive(&mut self) -> Option<ServerJsonRpcMessage> {
        let message = self.inner.receive().await?;
        if let JsonRpcMessage::Notification(notification) = &message
            && let ServerNotification::ProgressNotification(progress) = &notification.notification
            && let Some(upstream) = self.upstream.upgrade()
        {
            upstream.progress.arrived(&progress.params.progress_token);
        }
        Some(message)
    }

    fn close(&mut self) -> impl Future<Output = Result<(), Self::Error>> + Send {
        self.inner.close()
    }
}
