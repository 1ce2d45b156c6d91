//! Progress notifications from one upstream, routed back to the client that made the call.
//!
//! rmcp's client gives every request it sends its own progress token, so the upstream never sees
//! the client's token: the route is keyed by the token rmcp chose, per upstream connection, and
//! the client's own token is put back on the way out. The route is opened by the upstream's
//! transport as it writes the request ([`Counting`]), so progress the upstream sends at once
//! always finds it.
//!
//! rmcp passes each notification on in a task of its own, so progress the upstream sent just
//! before its answer may still be on its way when the answer is back. The upstream's
//! transport counts each progress notification as it arrives, in the order the upstream sent
//! it ([`ProgressRoutes::arrived`], by [`Counting`]); a call's answer waits until every one
//! counted before it has been passed on or dropped ([`ProgressGuard::settled`]): an order,
//! not a guess at a delay.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use rmcp::model::{
    ClientRequest, GetExtensions, GetMeta, JsonRpcMessage, ProgressNotificationParam,
    ProgressToken, ServerJsonRpcMessage, ServerNotification,
};
use rmcp::service::{Peer, RoleClient, RoleServer, TxJsonRpcMessage};
use rmcp::transport::Transport;
use tokio::sync::Notify;

use crate::upstream::UpstreamHandle;

/// The client's progress token and the client, for one call.
pub struct ProgressTarget {
    token: ProgressToken,
    peer: Peer<RoleServer>,
}

/// Put on a request to an upstream ([`ProgressTarget::attach`]): the route its progress takes,
/// opened by the upstream's transport before the request is written ([`Counting`]), so that no
/// progress can come back before its route exists.
#[derive(Clone)]
struct RouteTo(Weak<ProgressTarget>);

impl ProgressTarget {
    /// A target for the progress of a call asked with `token` by `peer`; the call holds it
    /// until its answer has gone out.
    pub fn new(token: ProgressToken, peer: Peer<RoleServer>) -> Arc<Self> {
        Arc::new(Self { token, peer })
    }

    /// Marks `request` so that its progress is routed to `target`.
    pub fn attach(target: &Arc<Self>, request: &mut ClientRequest) {
        request
            .extensions_mut()
            .insert(RouteTo(Arc::downgrade(target)));
    }
}

struct Route {
    target: Weak<ProgressTarget>,
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

/// Held by the call until its answer has gone out; removes the route when dropped.
pub struct ProgressGuard<'a> {
    routes: &'a ProgressRoutes,
    key: ProgressToken,
    _target: Arc<ProgressTarget>,
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
    /// Opens the route of a request the upstream's transport is about to write, if the call
    /// asked for progress and still waits for its answer.
    fn open(&self, request: &ClientRequest) {
        let Some(RouteTo(target)) = request.extensions().get::<RouteTo>() else {
            return;
        };
        let Some(upstream_token) = request.get_meta().get_progress_token() else {
            return;
        };
        if let Ok(mut routes) = self.routes.lock() {
            // Routes of calls that ended before their request was written go here.
            routes.retain(|_, route| route.target.strong_count() > 0);
            if target.strong_count() > 0 {
                routes.insert(
                    upstream_token,
                    Route {
                        target: target.clone(),
                        arrived: 0,
                        settled: 0,
                    },
                );
            }
        }
    }

    /// Holds the route of the call sent with `upstream_token` to `target` until the guard
    /// is dropped.
    pub fn hold(
        &self,
        upstream_token: ProgressToken,
        target: Arc<ProgressTarget>,
    ) -> ProgressGuard<'_> {
        ProgressGuard {
            routes: self,
            key: upstream_token,
            _target: target,
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
        let target = self.routes.lock().ok().and_then(|routes| {
            routes
                .get(&params.progress_token)
                .and_then(|route| route.target.upgrade())
        });
        let Some(target) = target else {
            tracing::debug!("progress for an unknown or finished call dropped");
            return;
        };
        params.progress_token = target.token.clone();
        if let Some(message) = &params.message {
            let (message, _) = crate::secrets::Secrets::global().redact_text(message);
            params.message = Some(message);
        }
        if let Err(error) = target.peer.notify_progress(params).await {
            tracing::debug!(%error, "could not forward progress to the client");
        }
    }
}

/// An upstream's transport that opens a call's progress route before its request is written
/// and counts each progress notification it receives ([`ProgressRoutes::arrived`]) before
/// handing it on: the order the upstream sent its progress and its answer in, kept for
/// [`ProgressGuard::settled`].
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
        if let JsonRpcMessage::Request(request) = &item
            && let Some(upstream) = self.upstream.upgrade()
        {
            upstream.progress.open(&request.request);
        }
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

#[cfg(test)]
mod tests {
    #![expect(clippy::panic, reason = "tests")]

    use rmcp::ClientHandler;
    use rmcp::model::{CallToolRequest, CallToolRequestParams, NumberOrString};
    use rmcp::service::NotificationContext;
    use tokio::sync::mpsc;

    use super::*;

    /// The client of the call: keeps the progress it is told about.
    struct Told(mpsc::UnboundedSender<ProgressNotificationParam>);
    impl ClientHandler for Told {
        async fn on_progress(
            &self,
            params: ProgressNotificationParam,
            _context: NotificationContext<RoleClient>,
        ) {
            let _ = self.0.send(params);
        }
    }

    async fn client() -> (
        Peer<RoleServer>,
        mpsc::UnboundedReceiver<ProgressNotificationParam>,
        impl Send,
    ) {
        let (told, heard) = mpsc::unbounded_channel();
        let (peer, running) = crate::test_peer(Told(told)).await;
        (peer, heard, running)
    }

    fn token(n: i64) -> ProgressToken {
        ProgressToken(NumberOrString::Number(n))
    }

    /// A request as rmcp hands it to the upstream's transport: with its own progress token.
    fn request(upstream_token: i64) -> ClientRequest {
        let mut request =
            ClientRequest::CallToolRequest(CallToolRequest::new(CallToolRequestParams::new("t")));
        request
            .get_meta_mut()
            .set_progress_token(token(upstream_token));
        request
    }

    #[tokio::test]
    async fn progress_sent_at_once_reaches_the_client_before_the_caller_holds_its_route() {
        let (peer, mut heard, _running) = client().await;
        let routes = ProgressRoutes::default();
        let mine = ProgressToken(NumberOrString::String("mine".into()));
        let target = ProgressTarget::new(mine.clone(), peer);
        let mut request = request(7);
        ProgressTarget::attach(&target, &mut request);

        // The transport writes the request; the upstream answers with progress at once,
        // before the task that sent the request has held its route.
        routes.open(&request);
        routes.arrived(&token(7));
        routes
            .forward(ProgressNotificationParam::new(token(7), 1.0))
            .await;
        let guard = routes.hold(token(7), target);
        guard.settled(Duration::from_secs(5)).await;

        let progress = tokio::time::timeout(Duration::from_secs(5), heard.recv())
            .await
            .unwrap_or_else(|_| panic!("no progress reached the client"))
            .unwrap_or_else(|| panic!("the client is gone"));
        assert_eq!(
            progress.progress_token, mine,
            "the client's own token goes back"
        );
        assert_eq!(progress.progress, 1.0);
    }

    #[tokio::test]
    async fn a_route_is_only_kept_while_its_call_waits() {
        let (peer, _heard, _running) = client().await;
        let routes = ProgressRoutes::default();
        let count = |routes: &ProgressRoutes| routes.routes.lock().map(|r| r.len()).unwrap_or(0);

        // A request whose call gave up before it was written opens nothing.
        let gone = ProgressTarget::new(token(1), peer.clone());
        let mut request_one = request(1);
        ProgressTarget::attach(&gone, &mut request_one);
        drop(gone);
        routes.open(&request_one);
        assert_eq!(count(&routes), 0);

        // A request with no target (the client asked for no progress) opens nothing.
        routes.open(&request(2));
        assert_eq!(count(&routes), 0);

        // A held route ends with its call; one whose call ended before the write is pruned
        // by the next.
        let held = ProgressTarget::new(token(3), peer.clone());
        let mut request_three = request(3);
        ProgressTarget::attach(&held, &mut request_three);
        routes.open(&request_three);
        let raced = ProgressTarget::new(token(4), peer.clone());
        let mut request_four = request(4);
        ProgressTarget::attach(&raced, &mut request_four);
        routes.open(&request_four);
        assert_eq!(count(&routes), 2);
        drop(raced);
        let guard = routes.hold(token(3), held);
        let fifth = ProgressTarget::new(token(5), peer);
        let mut request_five = request(5);
        ProgressTarget::attach(&fifth, &mut request_five);
        routes.open(&request_five);
        assert_eq!(
            count(&routes),
            2,
            "the route of the call that ended is pruned"
        );
        drop(guard);
        assert_eq!(count(&routes), 1);
    }
}
