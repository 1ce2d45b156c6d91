//! One upstream MCP server: connecting (stdio child or streamable HTTP), its cached catalog, and
//! the supervisor that restarts it with backoff when it fails to start, crashes or hangs.
//!
//! The call path reads an upstream's state through an `ArcSwap`: no lock is taken to find out
//! whether an upstream is ready or to read its catalog.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use portcullis_config::{Upstream, UpstreamTransport};
use portcullis_core::evidence::{
    ElicitationRelayed, Event, RequestContext, SandboxStarted, UpstreamLifecycle,
};
use portcullis_core::{Effect, Hints, Namespacing, UpstreamName};
use portcullis_roots::Roots;
#[expect(
    deprecated,
    reason = "logging is deprecated but clients still opt in to it"
)]
use rmcp::model::LoggingLevel;
use rmcp::model::{
    Prompt, ProtocolVersion, Resource, ResourceTemplate, ServerNotification, SubscriptionFilter,
    Tool,
};
use rmcp::service::{
    ClientLifecycleMode, ClientServiceExt, Peer, RoleClient, RoleServer, RunningService,
};
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::{StreamableHttpClientTransport, TokioChildProcess};
use tokio_util::sync::CancellationToken;

use crate::ask::Asker;
use crate::attach::{AttachingClient, Attachment, CredentialSource};
use crate::catalog::Listed;
use crate::paths::{Grantor, PathGuard};
use crate::progress::{Counting, ProgressRoutes};
use crate::recorder::Recorder;
use crate::remote;
use crate::sandbox::{self, StartSandbox};
use crate::sessions::Sessions;
use relay::RelayClient;

mod relay;
mod stderr;

pub(crate) use relay::screen_elicitation;

/// Shortest and longest wait before restarting a failed upstream.
const BACKOFF_MIN: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// An upstream that stayed up this long is considered healthy again: the backoff restarts small.
const STABLE_AFTER: Duration = Duration::from_secs(60);
/// How long a liveness probe after a timed-out call may take before the upstream is restarted.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long after a call ends a notification the upstream sent during it is still attributed.
const NOTIFICATION_GRACE: Duration = Duration::from_millis(500);

/// What the client sees of one upstream's capabilities, already renamed for exposure.
#[derive(Debug, Default)]
pub struct Catalog {
    pub tools: Vec<Tool>,
    pub prompts: Vec<Prompt>,
    pub resources: Vec<Resource>,
    pub templates: Vec<ResourceTemplate>,
    /// The upstream's own names of the tools above: only these are callable.
    pub tool_names: HashSet<String>,
    pub prompt_names: HashSet<String>,
    /// Each tool's annotations as the upstream sent them, by its own name.
    pub hints: HashMap<String, Hints>,
    /// What cleaning removed from the texts of each entry that had anything removed, by its
    /// exposed name or URI (see `hygiene.rs`).
    pub(crate) cleaned: std::collections::BTreeMap<String, crate::hygiene::Removed>,
    /// Why each flagged tool's description may be shadowing others, by its exposed name.
    pub(crate) flagged: std::collections::BTreeMap<String, String>,
    /// The listing compared with the upstream's pins (`pins.rs`).
    pub(crate) review: crate::pins::Review,
    /// The tools taken out of the lists until their definitions are accepted, by exposed name.
    pub(crate) quarantined: std::collections::BTreeMap<String, crate::pins::Quarantined>,
    /// Each listed tool's place in `tools` by exposed name, made at the first look-up (the
    /// catalog is complete by then): a call finds its tool without scanning the list.
    tool_index: std::sync::OnceLock<HashMap<String, usize>>,
    /// The digests of the listed definitions called so far, by place in `tools`: a definition
    /// is digested once per catalog, not per call.
    definition_digests: Mutex<HashMap<usize, String>>,
}

impl Catalog {
    /// The tool listed as `exposed`, and the digest of its definition (what an approval and
    /// the evidence name).
    pub(crate) fn listed(&self, exposed: &str) -> Option<(Tool, String)> {
        let index = *self
            .tool_index
            .get_or_init(|| {
                self.tools
                    .iter()
                    .enumerate()
                    .map(|(index, tool)| (tool.name.to_string(), index))
                    .collect()
            })
            .get(exposed)?;
        let tool = self.tools.get(index)?;
        let digest = self
            .definition_digests
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(index)
            .or_insert_with(|| crate::evidence::definition_digest(tool))
            .clone();
        Some((tool.clone(), digest))
    }
}

/// How an upstream's lists are shown to clients: its names under the configured namespacing,
/// its texts cleaned and cut at `text_limit` characters, its tools' descriptions checked for
/// naming the other upstreams' tools (`upstreams`: every configured name).
#[derive(Debug, Clone)]
pub(crate) struct Exposure {
    pub namespacing: Namespacing,
    pub text_limit: usize,
    pub upstreams: Arc<[UpstreamName]>,
    /// The pins every listing is compared with.
    pub pins: Arc<crate::pins::PinBook>,
}

impl Exposure {
    /// The exposed-name prefixes of every upstream but `own` (`mail.`); none when names are
    /// passed through (one upstream).
    fn others(&self, own: &UpstreamName) -> Vec<String> {
        self.upstreams
            .iter()
            .filter(|name| *name != own)
            .filter_map(|name| self.namespacing.expose(name, "x").ok())
            .filter_map(|exposed| exposed.strip_suffix('x').map(str::to_owned))
            .filter(|prefix| !prefix.is_empty())
            .collect()
    }
}

/// A live connection to an upstream.
pub struct Connection {
    /// Private: a request reaches the upstream only through [`Connection::send`], which takes
    /// what `pipeline::execute::Outbound` makes (a `tools/call` only from an `UpstreamCall`).
    peer: Peer<RoleClient>,
    pub catalog: ArcSwap<Catalog>,
    pub protocol_version: ProtocolVersion,
    /// Cancelled to close the connection (and end a stdio child).
    closer: CancellationToken,
}

impl Connection {
    /// The definition of the tool listed to the client as `exposed`, if the catalog lists it,
    /// and its digest.
    pub(crate) fn listed_tool(&self, exposed: &str) -> Option<(Tool, String)> {
        self.catalog.load().listed(exposed)
    }

    /// Sends one request; the answer comes through the handle.
    pub(crate) async fn send(
        &self,
        request: rmcp::model::ClientRequest,
        options: rmcp::service::PeerRequestOptions,
    ) -> Result<rmcp::service::RequestHandle<RoleClient>, rmcp::ServiceError> {
        self.peer.send_request_with_option(request, options).await
    }

    /// Whether the upstream declared the logging capability.
    pub(crate) fn offers_logging(&self) -> bool {
        self.peer
            .peer_info()
            .is_some_and(|info| info.capabilities.logging.is_some())
    }

    /// What tells the upstream that a request was abandoned.
    pub(crate) fn canceller(&self) -> Canceller {
        Canceller(self.peer.clone())
    }

    /// True when the upstream speaks the stateless era (2026-07-28 or later).
    pub fn is_stateless(&self) -> bool {
        self.protocol_version.as_str() >= ProtocolVersion::V_2026_07_28.as_str()
    }
}

/// Sends `notifications/cancelled` for an abandoned request, and nothing else.
pub(crate) struct Canceller(Peer<RoleClient>);

impl Canceller {
    /// Tells the upstream, in the background, that request `id` was abandoned; the request's
    /// credential goes with it (an upstream that wants a token refuses a notification without).
    pub(crate) fn cancelled(&self, id: rmcp::model::RequestId, attachment: Option<Attachment>) {
        let peer = self.0.clone();
        tokio::spawn(async move {
            let reason = Some("cancelled by portcullis".to_owned());
            let mut notification = rmcp::model::CancelledNotification::new(
                rmcp::model::CancelledNotificationParam::new(Some(id), reason),
            );
            if let Some(attachment) = attachment {
                notification.extensions.insert(attachment);
            }
            let _ = peer
                .send_notification(rmcp::model::ClientNotification::CancelledNotification(
                    notification,
                ))
                .await;
        });
    }
}

/// Where an upstream stands.
pub enum UpstreamState {
    Starting,
    Ready(Arc<Connection>),
    Down {
        reason: String,
    },
    /// Not started, and not retried on its own: it waits for something the identity must do
    /// first (a per-user upstream it has not authorised Portcullis for).
    Waiting {
        reason: String,
    },
}

/// Where the requests an upstream sends back during a call are relayed: the downstream session
/// that made the call.
#[derive(Clone)]
pub struct CallRoute {
    pub session: u64,
    /// The roots the calling client offered (`None`: it offered none, or cannot).
    pub client_roots: Option<Roots>,
    /// The request the upstream's own requests belong to, for their evidence records.
    pub request: Option<RequestContext>,
    pub asker: Asker,
    /// A session-era client, which can be sent notifications (log lines) outside a request.
    pub listener: Option<Peer<RoleServer>>,
    /// The log level the client opted in to; a stateless upstream sends log lines only to
    /// requests that carry one.
    #[expect(
        deprecated,
        reason = "logging is deprecated but clients still opt in to it"
    )]
    pub log_level: Option<LoggingLevel>,
}

/// One configured upstream and everything Portcullis knows about it at run time.
pub struct UpstreamHandle {
    pub spec: Upstream,
    /// What its calls' path arguments are checked against (`None`: not checked).
    pub paths: Option<PathGuard>,
    /// The child's complete environment (stdio only): the explicit `env` plus the inherited names.
    child_env: BTreeMap<String, String>,
    /// A `url` upstream's header values, by variable name (read from Portcullis's environment
    /// at start).
    header_env: BTreeMap<String, String>,
    /// The current start's stderr (stdio only): its last lines explain a failed start.
    stderr: Mutex<Arc<stderr::StderrTail>>,
    exposure: Exposure,
    pub state: ArcSwap<UpstreamState>,
    /// Calls in flight, so that an upstream's own elicitation reaches the session that called it.
    inflight: Mutex<HashMap<u64, CallRoute>>,
    /// The call that finished last, and when: notifications an upstream sent just before its
    /// answer may be handled just after it.
    recent: Mutex<Option<(CallRoute, Instant)>>,
    next_call: AtomicU64,
    /// Failed starts, crashes and hangs since Portcullis started.
    failures: AtomicU64,
    /// Set when a call timed out: the supervisor probes the upstream and restarts it if it hangs.
    suspect: tokio::sync::Notify,
    sessions: Weak<Sessions>,
    /// Where its starts and failures are recorded.
    recorder: Recorder,
    /// Where this upstream's progress notifications go.
    pub progress: ProgressRoutes,
    /// Resource subscriptions held open on a stateless upstream, by its own URI.
    watches: Mutex<HashMap<String, tokio::task::JoinHandle<()>>>,
    /// The service credential every request to an HTTP upstream carries, if it acts with
    /// service authority; a user's delegated token goes only with that user's call.
    service: Option<Arc<dyn CredentialSource>>,
    /// Why it is stopped, when not because Portcullis is (an identity's idle instance).
    stop_reason: std::sync::OnceLock<String>,
    /// One permit per call it may have in flight (`max_concurrent_calls`, else as many as
    /// tokio allows).
    call_permits: tokio::sync::Semaphore,
}

/// Removes a call from the in-flight table when the call ends, however it ends.
pub struct InflightGuard<'a> {
    upstream: &'a UpstreamHandle,
    id: u64,
}

impl Drop for InflightGuard<'_> {
    fn drop(&mut self) {
        let finished = self
            .upstream
            .inflight
            .lock()
            .ok()
            .and_then(|mut inflight| inflight.remove(&self.id));
        if let (Some(route), Ok(mut recent)) = (finished, self.upstream.recent.lock()) {
            *recent = Some((route, Instant::now()));
        }
    }
}

impl UpstreamHandle {
    pub(crate) fn new(
        spec: Upstream,
        inherited: &BTreeMap<String, String>,
        exposure: Exposure,
        sessions: Weak<Sessions>,
        recorder: Recorder,
        service: Option<Arc<dyn CredentialSource>>,
    ) -> Arc<Self> {
        Arc::new(Self {
            call_permits: tokio::sync::Semaphore::new(
                spec.max_concurrent_calls
                    .unwrap_or(tokio::sync::Semaphore::MAX_PERMITS),
            ),
            child_env: sandbox::child_environment(&spec, inherited),
            header_env: header_environment(&spec, inherited),
            stderr: Mutex::default(),
            paths: PathGuard::for_upstream(&spec),
            spec,
            exposure,
            state: ArcSwap::from_pointee(UpstreamState::Starting),
            inflight: Mutex::new(HashMap::new()),
            recent: Mutex::new(None),
            next_call: AtomicU64::new(1),
            failures: AtomicU64::new(0),
            suspect: tokio::sync::Notify::new(),
            sessions,
            progress: ProgressRoutes::default(),
            watches: Mutex::new(HashMap::new()),
            recorder,
            service,
            stop_reason: std::sync::OnceLock::new(),
        })
    }

    /// A place among its calls in flight (`max_concurrent_calls`), waiting for one to end when
    /// all are taken; `None` once `limit` has passed without one.
    pub(crate) async fn call_permit(
        &self,
        limit: Duration,
    ) -> Option<tokio::sync::SemaphorePermit<'_>> {
        // The semaphore is never closed, so acquiring fails only by the timeout.
        tokio::time::timeout(limit, self.call_permits.acquire())
            .await
            .ok()?
            .ok()
    }

    /// Whether a call to it is in flight.
    pub(crate) fn is_busy(&self) -> bool {
        self.inflight
            .lock()
            .map_or(true, |inflight| !inflight.is_empty())
    }

    /// Says why it will be stopped, for the record of its stop (before its shutdown token is
    /// cancelled; without it, Portcullis is stopping).
    pub(crate) fn stopping_because(&self, reason: String) {
        let _ = self.stop_reason.set(reason);
    }

    pub fn name(&self) -> &UpstreamName {
        &self.spec.name
    }

    /// The live connection, if the upstream is ready.
    /// The effect `tool` is treated as: config's rules, narrowed by the upstream's own
    /// annotations (see [`Effect::effective`]); hints are read from the catalog when the
    /// upstream is up, and count for nothing when it is not.
    pub fn effect_of(&self, tool: &str) -> Effect {
        let hints = self
            .connection()
            .and_then(|connection| connection.catalog.load().hints.get(tool).copied())
            .unwrap_or_default();
        Effect::effective(
            self.spec.tool_rules(tool).effect,
            hints,
            self.spec.trust_hints,
        )
    }

    pub fn connection(&self) -> Option<Arc<Connection>> {
        match &**self.state.load() {
            UpstreamState::Ready(connection) => Some(connection.clone()),
            UpstreamState::Starting
            | UpstreamState::Down { .. }
            | UpstreamState::Waiting { .. } => None,
        }
    }

    /// Why the upstream cannot take calls, for the client's error message.
    /// Whether it failed and is waiting to be restarted.
    pub fn is_down(&self) -> bool {
        matches!(**self.state.load(), UpstreamState::Down { .. })
    }

    pub fn unavailable_reason(&self) -> String {
        match &**self.state.load() {
            UpstreamState::Starting => "it is starting".to_owned(),
            UpstreamState::Down { reason } => format!("{reason}; it is being restarted"),
            UpstreamState::Waiting { reason } => reason.clone(),
            UpstreamState::Ready(_) => "it is ready".to_owned(),
        }
    }

    /// The roots (`file://` URIs) to tell this upstream when it asks: its granted roots
    /// narrowed by the calling client's (none for an upstream whose paths are not checked).
    pub fn root_answer(&self, route: Option<&CallRoute>) -> Vec<String> {
        self.root_answer_for(
            route.and_then(|r| r.client_roots.as_ref()),
            route.and_then(|r| r.request.as_ref()),
        )
    }

    /// The same, given the client's roots and the request the question belongs to (whose
    /// identity's roots they are; none known: the upstream's own).
    pub fn root_answer_for(
        &self,
        client_roots: Option<&Roots>,
        request: Option<&RequestContext>,
    ) -> Vec<String> {
        let who = request.map(|request| Grantor {
            subject: &request.identity.subject,
            groups: &request.identity.groups,
        });
        self.paths
            .as_ref()
            .map(|guard| guard.root_uris(client_roots, who))
            .unwrap_or_default()
    }

    /// Failed starts, crashes and hangs since Portcullis started.
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// Registers a call in flight; the guard removes it.
    pub fn track_call(&self, route: CallRoute) -> InflightGuard<'_> {
        let id = self.next_call.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut inflight) = self.inflight.lock() {
            inflight.insert(id, route);
        }
        InflightGuard { upstream: self, id }
    }

    /// The session to relay an upstream's own request to: the only session with a call in
    /// flight. With calls from several sessions in flight the request cannot be attributed, and
    /// relaying it to the wrong person would be worse than refusing it.
    pub fn route_for_upstream_request(&self) -> Result<CallRoute, &'static str> {
        let inflight = self
            .inflight
            .lock()
            .map_err(|_| "the in-flight table is unavailable")?;
        let mut routes = inflight.values();
        let Some(first) = routes.next() else {
            return Err("no call to this upstream is in flight");
        };
        if routes.any(|route| route.session != first.session) {
            return Err(
                "calls from several sessions are in flight, so the request cannot be attributed to one",
            );
        }
        Ok(first.clone())
    }

    /// The session a notification from the upstream (a log line) belongs to: the one with a
    /// call in flight, else the one whose call finished within [`NOTIFICATION_GRACE`].
    pub fn route_for_upstream_notification(&self) -> Option<CallRoute> {
        if let Ok(route) = self.route_for_upstream_request() {
            return Some(route);
        }
        let recent = self.recent.lock().ok()?;
        let (route, finished) = recent.as_ref()?;
        (finished.elapsed() <= NOTIFICATION_GRACE).then(|| route.clone())
    }

    /// Asks the supervisor to check that the upstream still answers.
    pub fn report_timeout(&self) {
        self.suspect.notify_one();
    }

    /// Watches one resource of a stateless upstream, which offers updates only on a
    /// `subscriptions/listen` stream (session-era upstreams take `resources/subscribe`).
    pub async fn watch_resource(
        self: &Arc<Self>,
        connection: &Connection,
        local_uri: &str,
    ) -> Result<(), String> {
        let filter = SubscriptionFilter::builder()
            .resource_subscription(local_uri.to_owned())
            .build();
        let mut subscription = connection.peer.listen(filter).await.map_err(|error| {
            format!(
                "upstream `{}` refused the subscription: {error}",
                self.name()
            )
        })?;
        let upstream = Arc::downgrade(self);
        let task = tokio::spawn(async move {
            while let Ok(Some(notification)) = subscription.next().await {
                let Some(upstream) = upstream.upgrade() else {
                    return;
                };
                if let ServerNotification::ResourceUpdatedNotification(updated) = notification {
                    upstream.resource_updated(&updated.params.uri).await;
                }
            }
        });
        if let Ok(mut watches) = self.watches.lock()
            && let Some(previous) = watches.insert(local_uri.to_owned(), task)
        {
            previous.abort();
        }
        Ok(())
    }

    /// Stops watching a resource; dropping the subscription cancels its listen request.
    pub fn unwatch_resource(&self, local_uri: &str) {
        if let Ok(mut watches) = self.watches.lock()
            && let Some(task) = watches.remove(local_uri)
        {
            task.abort();
        }
    }

    /// The sessions that subscribed to one of this upstream's resources hear of its change.
    pub async fn resource_updated(&self, local_uri: &str) {
        if let Some(sessions) = self.sessions.upgrade() {
            let exposed = self.exposure.namespacing.expose_uri(self.name(), local_uri);
            sessions.resource_updated(&exposed).await;
        }
    }

    /// Re-reads the upstream's lists and tells the clients when they changed.
    pub async fn refresh_catalog(&self, connection: &Connection) {
        let previous = connection.catalog.load_full();
        match self.list(&connection.peer, Some(&previous)).await {
            Ok(catalog) => {
                // Unchanged, the catalog in place stays (decisions kept for it stay valid).
                if catalog.same_lists(&previous)
                    && catalog.review.changes == previous.review.changes
                {
                    return;
                }
                // Several notifications of one change (a tool and a prompt list change, say)
                // each re-read the lists; clients hear of a change once, when there is one.
                // Swapped, not loaded then stored: concurrent re-reads each compare with what
                // they replaced, so only the first of them sees the change.
                let previous = connection.catalog.swap(Arc::new(catalog));
                let changed = !previous.same_lists(&connection.catalog.load());
                if changed && let Some(sessions) = self.sessions.upgrade() {
                    sessions.broadcast_list_changed().await;
                }
            }
            Err(error) => tracing::warn!(
                upstream = %self.name(),
                %error,
                "could not re-read the upstream's lists; keeping the previous ones"
            ),
        }
    }

    /// Runs the upstream until `shutdown`: connect, watch, restart with backoff.
    pub async fn supervise(self: Arc<Self>, shutdown: CancellationToken) {
        let mut backoff = BACKOFF_MIN;
        loop {
            self.state.store(Arc::new(UpstreamState::Starting));
            let started = Instant::now();
            let outcome = tokio::select! {
                _ = shutdown.cancelled() => {
                    self.record(Event::UpstreamStopped(UpstreamLifecycle {
                        upstream: self.name().to_string(),
                        detail: Some(
                            self.stop_reason
                                .get()
                                .cloned()
                                .unwrap_or_else(|| "portcullis is stopping".to_owned()),
                        ),
                    }))
                    .await;
                    return;
                }
                outcome = self.run_once(&shutdown) => outcome,
            };
            if shutdown.is_cancelled() {
                return;
            }
            let outcome = self.explained(outcome).await;
            if started.elapsed() >= STABLE_AFTER {
                backoff = BACKOFF_MIN;
            }
            tracing::warn!(
                upstream = %self.name(),
                reason = %outcome,
                retry_in_ms = backoff.as_millis() as u64,
                "upstream is down; its tools are hidden until it is back"
            );
            self.failures.fetch_add(1, Ordering::Relaxed);
            self.record(Event::UpstreamCrashed(UpstreamLifecycle {
                upstream: self.name().to_string(),
                detail: Some(format!(
                    "{outcome}; restarting in {} ms",
                    backoff.as_millis()
                )),
            }))
            .await;
            self.state
                .store(Arc::new(UpstreamState::Down { reason: outcome }));
            if let Some(sessions) = self.sessions.upgrade() {
                sessions.broadcast_list_changed().await;
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    /// Why a start failed or a running upstream stopped, with what a stdio upstream's stderr
    /// says of it (its last lines, the accesses they report refused).
    async fn explained(&self, reason: String) -> String {
        if !matches!(self.spec.transport, UpstreamTransport::Stdio { .. }) {
            return reason;
        }
        let tail = self.stderr.lock().map(|tail| tail.clone()).ok();
        match tail {
            Some(tail) => match tail.explain(Duration::from_millis(300)).await {
                Some(said) => format!("{reason}; {said}"),
                None => reason,
            },
            None => reason,
        }
    }

    /// Records an event of this upstream. A failure to record is logged: the evidence log
    /// refuses calls by itself once it fails.
    async fn record(&self, event: Event) {
        if self.recorder.log().is_some()
            && let Err(error) = self.recorder.append(event).await
        {
            tracing::error!(upstream = %self.name(), %error, "an upstream event could not be recorded");
        }
    }

    /// Records an elicitation of this upstream relayed to the person (or not: `response` says
    /// why not), for the request it belongs to.
    pub async fn record_elicitation(
        &self,
        request: Option<&RequestContext>,
        response: &str,
        started: Instant,
    ) {
        let Some(request) = request else {
            tracing::warn!(upstream = %self.name(), response, "an elicitation outside any request was not recorded");
            return;
        };
        self.record(Event::ElicitationRelayed(ElicitationRelayed {
            request: request.clone(),
            upstream: self.name().to_string(),
            response: response.to_owned(),
            duration_ms: crate::recorder::elapsed_ms(started),
        }))
        .await;
    }

    /// One life of the upstream; returns why it ended.
    async fn run_once(self: &Arc<Self>, shutdown: &CancellationToken) -> String {
        let start_timeout = self.spec.start_timeout;
        let service = match tokio::time::timeout(start_timeout, self.connect()).await {
            Ok(Ok(service)) => service,
            Ok(Err(reason)) => return reason,
            Err(_) => {
                return format!(
                    "it did not finish its handshake within {}s",
                    start_timeout.as_secs()
                );
            }
        };
        let peer = service.peer().clone();
        let protocol_version = peer
            .peer_info()
            .map(|info| info.protocol_version.clone())
            .unwrap_or_default();
        let catalog = match tokio::time::timeout(start_timeout, self.list(&peer, None)).await {
            Ok(Ok(catalog)) => catalog,
            Ok(Err(error)) => return error.to_string(),
            Err(_) => {
                return format!(
                    "it did not list its tools within {}s",
                    start_timeout.as_secs()
                );
            }
        };
        let n_tools = catalog.tools.len();
        let cleaned = catalog.start_notes();
        let closer = shutdown.child_token();
        let connection = Arc::new(Connection {
            peer,
            catalog: ArcSwap::from_pointee(catalog),
            protocol_version: protocol_version.clone(),
            closer: closer.clone(),
        });
        self.state
            .store(Arc::new(UpstreamState::Ready(connection.clone())));
        tracing::info!(
            upstream = %self.name(),
            protocol = %protocol_version,
            tools = n_tools,
            "upstream is ready"
        );
        self.record(Event::UpstreamStarted(UpstreamLifecycle {
            upstream: self.name().to_string(),
            detail: Some(format!(
                "protocol {protocol_version}, {n_tools} tools{cleaned}"
            )),
        }))
        .await;
        if let Some(sessions) = self.sessions.upgrade() {
            sessions.broadcast_list_changed().await;
        }
        if connection.is_stateless() {
            self.listen_for_changes(&connection).await;
        }
        self.watch(service, &connection).await
    }

    /// Reads the upstream's lists and compares them with its pins (`pins.rs`), recording every
    /// change `previous` (the listing replaced) did not already have.
    async fn list(
        &self,
        peer: &Peer<RoleClient>,
        previous: Option<&Catalog>,
    ) -> Result<Catalog, CatalogError> {
        let mut catalog = fetch_catalog(peer, &self.exposure, self.name()).await?;
        self.exposure
            .pins
            .review(&self.spec, self.exposure.namespacing, &mut catalog);
        let before = previous
            .map(|catalog| catalog.review.changes.as_slice())
            .unwrap_or_default();
        for event in crate::pins::events(self.name(), before, &catalog.review) {
            tracing::warn!(
                upstream = %self.name(),
                entry = %event.name,
                change = %event.change,
                quarantined = event.quarantined,
                "a definition differs from its pin"
            );
            self.record(Event::DefinitionChanged(event)).await;
        }
        Ok(catalog)
    }

    /// A stateless upstream announces list changes only on a `subscriptions/listen` stream
    /// (session-era upstreams notify through the client handler instead).
    async fn listen_for_changes(self: &Arc<Self>, connection: &Arc<Connection>) {
        let filter = SubscriptionFilter::builder()
            .tools_list_changed()
            .prompts_list_changed()
            .resources_list_changed()
            .build();
        let mut subscription = match connection.peer.listen(filter).await {
            Ok(subscription) => subscription,
            Err(error) => {
                tracing::info!(upstream = %self.name(), %error, "upstream offers no list-change subscription");
                return;
            }
        };
        let upstream = Arc::downgrade(self);
        let connection = Arc::downgrade(connection);
        tokio::spawn(async move {
            while let Ok(Some(notification)) = subscription.next().await {
                let changed = matches!(
                    notification,
                    ServerNotification::ToolListChangedNotification(_)
                        | ServerNotification::PromptListChangedNotification(_)
                        | ServerNotification::ResourceListChangedNotification(_)
                );
                let (Some(upstream), Some(connection)) = (upstream.upgrade(), connection.upgrade())
                else {
                    return;
                };
                if changed {
                    upstream.refresh_catalog(&connection).await;
                }
            }
        });
    }

    /// Waits until the connection ends or a hang is detected; returns why.
    async fn watch(
        &self,
        service: RunningService<RoleClient, RelayClient>,
        connection: &Connection,
    ) -> String {
        let cancel = service.cancellation_token();
        let mut waiting = std::pin::pin!(service.waiting());
        // An upstream that changes a definition without announcing it is caught at the next
        // re-read: compared with its pins like any listing.
        let every = self.spec.relist;
        let mut relist = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        relist.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = relist.tick() => {
                    if tokio::time::timeout(PROBE_TIMEOUT, self.refresh_catalog(connection)).await.is_err() {
                        tracing::warn!(upstream = %self.name(), "the upstream did not list within {}s; keeping its previous lists", PROBE_TIMEOUT.as_secs());
                    }
                }
                quit = &mut waiting => {
                    return match quit {
                        Ok(reason) => format!("the connection closed ({reason:?})"),
                        Err(error) => format!("the connection failed: {error}"),
                    };
                }
                _ = connection.closer.cancelled() => {
                    cancel.cancel();
                    let _ = waiting.await;
                    return "it was stopped".to_owned();
                }
                _ = self.suspect.notified() => {
                    let probe = tokio::time::timeout(PROBE_TIMEOUT, connection.peer.list_tools(None)).await;
                    if !matches!(probe, Ok(Ok(_))) {
                        cancel.cancel();
                        let _ = waiting.await;
                        return format!(
                            "a call timed out and it did not answer a liveness probe within {}s",
                            PROBE_TIMEOUT.as_secs()
                        );
                    }
                }
            }
        }
    }

    async fn connect(self: &Arc<Self>) -> Result<RunningService<RoleClient, RelayClient>, String> {
        let relay = RelayClient::new(Arc::downgrade(self));
        let lifecycle = ClientLifecycleMode::Auto {
            preferred_versions: vec![ProtocolVersion::V_2026_07_28],
            legacy_version: Some(ProtocolVersion::V_2025_11_25),
        };
        match &self.spec.transport {
            UpstreamTransport::Stdio {
                program, args, cwd, ..
            } => {
                let mut command = tokio::process::Command::new(program);
                command
                    .args(args)
                    .current_dir(cwd)
                    // INVARIANT: the child sees only the environment that config grants it.
                    .env_clear()
                    .envs(&self.child_env)
                    .kill_on_drop(true)
                    .process_group(0);
                // INVARIANT: a stdio upstream starts in a sandbox prepared for this start, or
                // not at all, unless config opted it out.
                let started = self.contain(&mut command)?;
                let (transport, stderr) = TokioChildProcess::builder(command)
                    .stderr(Stdio::piped())
                    .spawn()
                    .map_err(|error| {
                        format!("it could not be started (`{}`): {error}", program.display())
                    })?;
                self.record(Event::SandboxStarted(started)).await;
                if let Some(stderr) = stderr {
                    let tail = Arc::new(stderr::StderrTail::default());
                    if let Ok(mut current) = self.stderr.lock() {
                        *current = tail.clone();
                    }
                    let name = self.name().clone();
                    tokio::spawn(async move { tail.read(name, stderr).await });
                }
                relay
                    .serve_with_lifecycle(Counting::new(transport, Arc::downgrade(self)), lifecycle)
                    .await
                    .map_err(|error| format!("its handshake failed: {error}"))
            }
            UpstreamTransport::Http { url, remote } => {
                let client =
                    remote::http_client(remote, self.spec.max_concurrent_calls, &self.header_env)?;
                let client = AttachingClient::new(client, self.service.clone());
                let transport = StreamableHttpClientTransport::with_client(
                    client.clone(),
                    StreamableHttpClientTransportConfig::with_uri(url.as_str()),
                );
                relay
                    .serve_with_lifecycle(Counting::new(transport, Arc::downgrade(self)), lifecycle)
                    .await
                    .map_err(|error| match client.unsent() {
                        Some(reason) => format!("`{url}`: {reason}"),
                        None => format!("its handshake failed: {error}"),
                    })
            }
        }
    }
}

/// The values of the variables a `url` upstream's headers name, of those Portcullis inherited.
fn header_environment(
    spec: &Upstream,
    inherited: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let UpstreamTransport::Http { remote, .. } = &spec.transport else {
        return BTreeMap::new();
    };
    remote
        .headers
        .iter()
        .filter_map(|header| Some((header.env.clone(), inherited.get(&header.env)?.clone())))
        .collect()
}

impl UpstreamHandle {
    /// Installs this start's sandbox on `command` and returns the record of it; an error (the
    /// kernel cannot enforce the profile) means the upstream must not start.
    fn contain(&self, command: &mut tokio::process::Command) -> Result<SandboxStarted, String> {
        let sandbox = match sandbox::prepare_start(&self.spec, &self.child_env) {
            // Only the stdio connect path calls this; an HTTP spec here would be a bug, and
            // an uncontained start is never the answer to a bug.
            None => return Err("it has no process to contain (a bug)".to_owned()),
            Some(Ok(StartSandbox::Uncontained)) => {
                tracing::warn!(
                    upstream = %self.name(),
                    "upstream runs NOT contained (`contain = false` in config): it has all of Portcullis's own access to files, network and processes"
                );
                return Ok(SandboxStarted {
                    upstream: self.name().to_string(),
                    identity: None,
                    profile: "none".to_owned(),
                    contained: Some(false),
                });
            }
            Some(Ok(StartSandbox::Container)) => {
                tracing::info!(upstream = %self.name(), "starting the upstream in its container, with Portcullis's container options");
                // The record names the whole command line: the options are the containment.
                let command_line = std::iter::once(command.as_std().get_program())
                    .chain(command.as_std().get_args())
                    .map(|part| part.to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
                    .join(" ");
                return Ok(SandboxStarted {
                    upstream: self.name().to_string(),
                    identity: None,
                    profile: format!(
                        "container {}",
                        portcullis_audit::digest_bytes(command_line.as_bytes())
                    ),
                    contained: Some(true),
                });
            }
            Some(Ok(StartSandbox::Contained(prepared))) => prepared,
            Some(Err(error)) => return Err(format!("it cannot be contained: {error}")),
        };
        for warning in sandbox.warnings() {
            tracing::warn!(upstream = %self.name(), "{warning}");
        }
        let profile = crate::sandbox::profile_digest(&sandbox);
        tracing::info!(upstream = %self.name(), %profile, "starting the upstream contained");
        tracing::debug!(upstream = %self.name(), sandbox = %sandbox.describe(), "its sandbox");
        sandbox.install(command);
        Ok(SandboxStarted {
            upstream: self.name().to_string(),
            identity: None,
            profile,
            contained: Some(true),
        })
    }
}

/// A list the upstream could not give, named.
#[derive(Debug, thiserror::Error)]
#[error("listing its {list} failed: {source}")]
pub(crate) struct CatalogError {
    list: &'static str,
    source: rmcp::ServiceError,
}

/// A list the upstream declared: an upstream that declares the capability and then answers
/// "method not found" (-32601) for one of its lists (templates, typically) has none of that
/// kind, which is not a failure; any other error fails the listing, naming the list.
fn optional<T>(
    upstream: &UpstreamName,
    list: &'static str,
    answer: Result<Vec<T>, rmcp::ServiceError>,
) -> Result<Vec<T>, CatalogError> {
    match answer {
        Ok(items) => Ok(items),
        Err(rmcp::ServiceError::McpError(error))
            if error.code == rmcp::model::ErrorCode::METHOD_NOT_FOUND =>
        {
            tracing::info!(%upstream, list, "the upstream does not implement this list; it has none");
            Ok(Vec::new())
        }
        Err(source) => Err(CatalogError { list, source }),
    }
}

/// Reads every page of the upstream's lists and makes them its catalog (`catalog.rs`).
async fn fetch_catalog(
    peer: &Peer<RoleClient>,
    exposure: &Exposure,
    upstream: &UpstreamName,
) -> Result<Catalog, CatalogError> {
    let capabilities = peer
        .peer_info()
        .map(|info| info.capabilities.clone())
        .unwrap_or_default();
    let mut listed = Listed::default();
    if capabilities.tools.is_some() {
        listed.tools = optional(upstream, "tools", peer.list_all_tools().await)?;
    }
    if capabilities.prompts.is_some() {
        listed.prompts = optional(upstream, "prompts", peer.list_all_prompts().await)?;
    }
    if capabilities.resources.is_some() {
        listed.resources = optional(upstream, "resources", peer.list_all_resources().await)?;
        listed.templates = optional(
            upstream,
            "resource templates",
            peer.list_all_resource_templates().await,
        )?;
    }
    let catalog = Catalog::from_listed(
        listed,
        exposure.namespacing,
        upstream,
        exposure.text_limit,
        &exposure.others(upstream),
    );
    for (entry, removed) in &catalog.cleaned {
        tracing::warn!(%upstream, entry = %entry, %removed, "cleaned what the upstream lists");
    }
    for (tool, why) in &catalog.flagged {
        tracing::warn!(%upstream, tool = %tool, "{why}");
    }
    Ok(catalog)
}
