//! The downstream side: one MCP server handler per client session, both protocol eras.
//!
//! Every request resolves the exposed name to one upstream, forwards it there and maps the answer
//! back. Lists are served from each upstream's cached catalog, merged in configuration order and
//! paginated by Portcullis itself, so an upstream that is down simply contributes nothing.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use portcullis_config::ToolSearch;
use portcullis_core::{IdentityEnvelope, UserId};
use portcullis_roots::Roots;

use rmcp::ErrorData as McpError;
use rmcp::model::{
    CacheScope, CallToolRequestParams, CallToolResponse, CompleteRequestParams, CompleteResult,
    GetPromptRequestParams, GetPromptResponse, Implementation, JsonObject, ListPromptsResult,
    ListResourceTemplatesResult, ListResourcesResult, ListToolsResult, PaginatedRequestParams,
    ProgressToken, ProtocolVersion, ReadResourceRequestParams, ReadResourceResponse,
    ServerCapabilities, ServerConfig, SubscribeRequestParams, SubscriptionFilter, Tool,
    UnsubscribeRequestParams,
};
#[expect(
    deprecated,
    reason = "logging and resource subscriptions are deprecated but session-era clients use them"
)]
use rmcp::model::{LoggingLevel, SetLevelRequestParams};
use rmcp::service::{NotificationContext, Peer, RequestContext, RoleServer, SubscriptionContext};
use rmcp::{ServerHandler, ServiceExt};
use tracing::Instrument;

use crate::ask::Asker;
use crate::authorize::Exposed;
use crate::error::GatewayError;
use crate::evidence::{recorded_name, request_context};
use crate::gateway::Gateway;
use crate::listing::{Seen, Serving};
use crate::tool_search::{Route, SearchTool, inner_call};
use portcullis_core::evidence::{Event, Refused};

use crate::upstream::{Catalog, Connection, UpstreamHandle};

/// The server handler for one downstream session.
#[derive(Clone)]
pub struct PortcullisServer {
    pub(crate) gateway: Arc<Gateway>,
    pub(crate) session: u64,
    /// The level this session set with `logging/setLevel` (session era).
    #[expect(
        deprecated,
        reason = "logging is deprecated but clients still opt in to it"
    )]
    log_level: Arc<Mutex<Option<LoggingLevel>>>,
    /// The user a session-era HTTP session was initialized by: later requests of the session
    /// must carry a token for the same user (a session is not shared across users).
    bound_user: Arc<OnceLock<UserId>>,
    /// The roots a session-era client offered (fetched when it initializes and when it says
    /// they changed); `None` when it offers none.
    pub(crate) client_roots: Arc<Mutex<Option<Roots>>>,
    /// Dropped with the session's last handler: what the session's people answered for the
    /// session ends with it.
    _ended: Arc<SessionEnd>,
}

pub(crate) static NEXT_SESSION: AtomicU64 = AtomicU64::new(1);

/// The key a session-era session's taint, reached hosts and scoped answers are kept under.
pub(crate) fn session_key(session: u64) -> String {
    format!("session {session}")
}

/// Forgets what was kept for a session when it ends (its last handler is dropped): its scoped
/// answers, its taint and the hosts it reached, its client for list changes. Session numbers
/// are never reused, so nothing later could have counted on them.
struct SessionEnd {
    gateway: Arc<Gateway>,
    session: u64,
}

impl Drop for SessionEnd {
    fn drop(&mut self) {
        let key = session_key(self.session);
        self.gateway.approvals.scoped.forget_session(&key);
        self.gateway.approvals.taints.forget(&key);
        self.gateway.sessions.forget(self.session);
    }
}

impl PortcullisServer {
    pub fn new(gateway: Arc<Gateway>) -> Self {
        let session = NEXT_SESSION.fetch_add(1, Ordering::Relaxed);
        Self {
            _ended: Arc::new(SessionEnd {
                gateway: Arc::clone(&gateway),
                session,
            }),
            gateway,
            session,
            log_level: Arc::default(),
            bound_user: Arc::default(),
            client_roots: Arc::default(),
        }
    }

    /// Who this request acts as: the envelope the bearer-token check attached to the HTTP
    /// request when authentication is on, else (stdio, or HTTP without `[http.auth]`) the
    /// local identity. Fails closed: an HTTP request without a validated envelope while
    /// authentication is on is refused.
    pub(crate) fn envelope(
        &self,
        context: &RequestContext<RoleServer>,
    ) -> Result<Arc<IdentityEnvelope>, McpError> {
        let over_http = context.extensions.get::<http::request::Parts>();
        let from_token = over_http
            .and_then(|parts| parts.extensions.get::<Arc<IdentityEnvelope>>())
            .cloned();
        let envelope = match (over_http, from_token) {
            (_, Some(envelope)) => envelope,
            // stdio: the local user who started Portcullis.
            (None, None) => self.gateway.decider.local_identity.clone(),
            (Some(_), None) if !self.gateway.decider.authenticated => {
                self.gateway.decider.local_identity.clone()
            }
            (Some(_), None) => {
                tracing::error!(
                    "a request reached the handler without an authenticated identity; refused"
                );
                return Err(McpError::invalid_request(
                    "this request carries no authenticated identity",
                    None,
                ));
            }
        };
        let bound = self.bound_user.get_or_init(|| envelope.user().clone());
        if bound != envelope.user() {
            tracing::warn!(session_user = %bound, request_user = %envelope.user(), "a session was used with another user's token; refused");
            return Err(McpError::invalid_request(
                "this session belongs to another user; start a new session",
                None,
            ));
        }
        Ok(envelope)
    }

    /// Records a list's answer; a list the log cannot record is refused (see `record_list`).
    pub(crate) async fn record_list(
        &self,
        envelope: &IdentityEnvelope,
        list: &str,
        returned: usize,
        started: std::time::Instant,
    ) -> Result<(), McpError> {
        self.gateway
            .evidence
            .record_list(envelope, self.session, list, returned, started)
            .await
            .map_err(|message| McpError::internal_error(message, None))
    }

    /// The upstream and its own URI of an exposed resource URI, if any.
    /// The upstream (as `envelope` reaches it) and its own URI of an exposed resource URI.
    pub(crate) fn resolve_resource(
        &self,
        envelope: &IdentityEnvelope,
        exposed: &str,
    ) -> Option<(Arc<UpstreamHandle>, String)> {
        self.gateway
            .upstreams
            .resolve_uri_as(envelope, exposed)
            .map(|(upstream, local)| (upstream, local.to_owned()))
    }

    /// A prompt get or resource read whose URI or arguments (`value`) hold a URL to a host this
    /// session has not reached, in a session that read untrusted content: that content may have
    /// put data in the URL, and reads are never offered for approval, so it is refused (`Err`
    /// says why). Otherwise its hosts are remembered as reached.
    pub(crate) fn check_open_world(
        &self,
        context: &RequestContext<RoleServer>,
        envelope: &IdentityEnvelope,
        value: &serde_json::Value,
    ) -> Result<(), String> {
        let taints = &self.gateway.approvals.taints;
        let key = self.taint_key(context, envelope);
        let hosts: Vec<String> = crate::approval::urls_in(value)
            .into_iter()
            .map(|(_, host)| host)
            .collect();
        let tainted_by = taints.of(&key);
        if let Some(new) = hosts.iter().find(|host| !taints.has_read(&key, host))
            && !tainted_by.is_empty()
        {
            return Err(format!(
                "this session has received content from untrusted upstream `{}`, and this request names host `{new}`, which it has not reached before: it could carry data out, and portcullis asks for approval of tool calls only",
                tainted_by.join("`, `")
            ));
        }
        taints.remember_hosts(&key, hosts);
        Ok(())
    }

    /// Checks a resource URI of `upstream` (its own form) against the roots this identity has
    /// there, narrowed by the roots this session's client offered. `Err` says why not.
    pub(crate) fn check_resource_uri(
        &self,
        envelope: &IdentityEnvelope,
        upstream: &UpstreamHandle,
        local_uri: &str,
    ) -> Result<(), String> {
        let Some(guard) = upstream.paths.as_ref() else {
            return Ok(());
        };
        guard.check_uri(
            local_uri,
            self.offered_roots().as_ref(),
            crate::paths::Grantor {
                subject: &envelope.user().subject,
                groups: envelope.groups(),
            },
        )
    }

    /// Asks a session-era client that offers roots for them. A client that offers roots but
    /// cannot list them leaves this session with no roots at all (fail closed).
    #[expect(
        deprecated,
        reason = "roots are deprecated upstream but session-era clients still offer them"
    )]
    async fn refresh_client_roots(&self, peer: &Peer<RoleServer>) {
        let offers = peer
            .peer_info()
            .is_some_and(|info| info.capabilities.roots.is_some());
        if !offers {
            return;
        }
        let roots = match tokio::time::timeout(
            std::time::Duration::from_secs(10),
            peer.list_roots(),
        )
        .await
        {
            Ok(Ok(result)) => {
                let uris: Vec<String> = result.roots.into_iter().map(|root| root.uri).collect();
                crate::paths::client_roots(&uris)
            }
            Ok(Err(error)) => {
                tracing::warn!(%error, "the client offers roots but did not list them; its session has none");
                Roots::none()
            }
            Err(_) => {
                tracing::warn!(
                    "the client offers roots but did not list them in time; its session has none"
                );
                Roots::none()
            }
        };
        if let Ok(mut current) = self.client_roots.lock() {
            *current = Some(roots);
        }
    }

    /// The roots this session's client offered, if any.
    pub(crate) fn offered_roots(&self) -> Option<Roots> {
        self.client_roots
            .lock()
            .ok()
            .and_then(|roots| roots.clone())
    }

    /// Content from an upstream whose `taint` is `session` is about to reach this session:
    /// its side effects now need approval. `Err`: the taint could not be kept, and the
    /// content must be withheld (`Taints::mark`).
    pub(crate) fn taint_if_untrusted(
        &self,
        context: &RequestContext<RoleServer>,
        envelope: &IdentityEnvelope,
        upstream: &UpstreamHandle,
    ) -> Result<(), String> {
        if upstream.spec.taint == portcullis_config::Taint::Session {
            self.gateway
                .approvals
                .taints
                .mark(&self.taint_key(context, envelope), upstream.name().as_str())?;
        }
        Ok(())
    }

    /// Definitions nobody accepted (`pinning = "off"`) of an upstream whose content taints,
    /// shown to this session in `seen`: they could steer the model as a result could, so the
    /// session is tainted by that upstream as if it had read one.
    /// `Err`: the taint could not be kept, and the list must be withheld (`Taints::mark`).
    pub(crate) fn taint_by_definitions(
        &self,
        context: &RequestContext<RoleServer>,
        envelope: &IdentityEnvelope,
        seen: &crate::listing::Seen,
    ) -> Result<(), McpError> {
        let mut untrusted = seen.untrusted_definitions().peekable();
        if untrusted.peek().is_none() {
            return Ok(());
        }
        let key = self.taint_key(context, envelope);
        for upstream in untrusted {
            self.gateway
                .approvals
                .taints
                .mark(&key, upstream.as_str())
                .map_err(|withheld| McpError::internal_error(withheld, None))?;
        }
        Ok(())
    }

    /// The upstream (as `envelope` reaches it) and its own name of an exposed tool or prompt
    /// name, if any.
    pub(crate) fn resolve_tool<'a>(
        &self,
        envelope: &IdentityEnvelope,
        exposed: &'a str,
    ) -> Option<(Arc<UpstreamHandle>, &'a str)> {
        self.gateway.upstreams.resolve_as(envelope, exposed)
    }

    pub(crate) fn is_stateless(context: &RequestContext<RoleServer>) -> bool {
        context
            .protocol_version()
            .is_some_and(|v| v.as_str() >= ProtocolVersion::V_2026_07_28.as_str())
    }

    /// The log level this request opted in to: its own `_meta` (stateless era), else the level
    /// the session set.
    #[expect(
        deprecated,
        reason = "logging is deprecated but clients still opt in to it"
    )]
    pub(crate) fn log_level_for(
        &self,
        context: &RequestContext<RoleServer>,
    ) -> Option<LoggingLevel> {
        context
            .meta
            .log_level()
            .or_else(|| self.log_level.lock().ok().and_then(|level| *level))
    }

    /// Records a request naming something that was refused before any upstream heard of it
    /// (`upstream` none: the name resolved to nothing). Nothing ran, so a failure to record
    /// does not change the answer.
    pub(crate) async fn record_refused(
        &self,
        envelope: &IdentityEnvelope,
        method: &str,
        upstream: Option<&UpstreamHandle>,
        name: &str,
        reason: &str,
    ) {
        let event = Event::Refused(Refused {
            request: request_context(envelope, self.session),
            method: method.to_owned(),
            upstream: upstream.map(|u| u.name().to_string()).unwrap_or_default(),
            name: recorded_name(name),
            reason: reason.to_owned(),
        });
        let _ = self.gateway.evidence.record_read(event).await;
    }

    /// One page of a list for this request's identity, recorded: what it may see of every
    /// ready upstream's `items`, by the name `exposed` gives each. Cursors are offsets into the
    /// identity's own filtered list, so a page boundary cannot reveal or skip into what is
    /// hidden; each page is cut from the kept decisions (`seen`).
    async fn list<T: Clone>(
        &self,
        request: Option<&PaginatedRequestParams>,
        context: &RequestContext<RoleServer>,
        (list, items): (&'static str, impl Fn(&Catalog) -> &[T]),
        exposed: impl Fn(&T) -> Exposed<'_>,
    ) -> Result<(Vec<T>, Option<String>), McpError> {
        let started = std::time::Instant::now();
        let envelope = self.envelope(context)?;
        let start = match request.and_then(|r| r.cursor.as_deref()) {
            None => 0,
            Some(cursor) => cursor
                .parse::<usize>()
                .map_err(|_| McpError::invalid_params("invalid cursor", None))?,
        };
        let seen = self.seen(&envelope, (list, &items), exposed).await;
        self.taint_by_definitions(context, &envelope, &seen)?;
        let page_size = self.gateway.page_size;
        let mut entries = seen.entries().skip(start);
        let page: Vec<T> = entries
            .by_ref()
            .take(page_size)
            .filter_map(|(catalog, index)| items(catalog).get(index).cloned())
            .collect();
        let next_cursor = entries
            .next()
            .is_some()
            .then(|| (start + page_size).to_string());
        self.record_list(&envelope, list, page.len(), started)
            .await?;
        Ok((page, next_cursor))
    }

    /// What `envelope` may see of a list (`items` of every ready upstream's catalog, by the
    /// name `exposed` gives each): decided once per identity, policy version and catalog
    /// (`listing.rs`) and kept. The one source of what an identity sees, for list pages and
    /// tool search alike.
    pub(crate) async fn seen<T>(
        &self,
        envelope: &IdentityEnvelope,
        (list, items): (&'static str, impl Fn(&Catalog) -> &[T]),
        exposed: impl Fn(&T) -> Exposed<'_>,
    ) -> Arc<Seen> {
        self.gateway.upstreams.ready_for(envelope).await;
        let serving = self
            .gateway
            .upstreams
            .serving(envelope)
            .into_iter()
            .filter_map(|handle| {
                let catalog = handle.connection()?.catalog.load_full();
                let scopes = self
                    .gateway
                    .credentials
                    .visible_scopes(envelope, handle.name().as_str());
                Some(Serving {
                    handle,
                    catalog,
                    scopes,
                })
            })
            .collect();
        let decider = &self.gateway.decider;
        let second = decider
            .policy
            .current()
            .reads_the_clock()
            .then(|| decider.clock.unix_secs());
        self.gateway.visibility.seen(
            (list, &items),
            envelope,
            (decider.policy.version(), second),
            serving,
            |upstream, entry| decider.sees(envelope, upstream, exposed(entry)),
        )
    }

    /// The upstream's live connection, or why there is none. A down upstream's reason may
    /// carry its own words (its stderr, its handshake's error): from an untrusted upstream
    /// they reach this session as any of its content does, tainting it.
    pub(crate) fn ready(
        &self,
        upstream: &UpstreamHandle,
        context: &RequestContext<RoleServer>,
        envelope: &IdentityEnvelope,
    ) -> Result<Arc<Connection>, String> {
        upstream.connection().ok_or_else(|| {
            // A down upstream's words stay out if this session's taint could not be kept.
            let withheld = upstream
                .is_down()
                .then(|| self.taint_if_untrusted(context, envelope, upstream).err())
                .flatten();
            let reason = withheld.unwrap_or_else(|| upstream.unavailable_reason());
            format!("upstream `{}` is unavailable: {reason}", upstream.name())
        })
    }
}

/// What a sealed `requestState` is bound to: the user, the exposed tool and its exact
/// arguments, so a state cannot be replayed by another identity or for other arguments.
pub(crate) fn binding(user: &UserId, tool: &str, arguments: Option<&JsonObject>) -> String {
    // The canonical digest (keys sorted at every depth), as the approval fingerprint uses:
    // serde_json keeps insertion order in the binary (`preserve_order`, via cedar-policy), so
    // the same arguments sent in another key order must not bind differently.
    let arguments = portcullis_audit::digest_json(&serde_json::Value::Object(
        arguments.cloned().unwrap_or_default(),
    ));
    format!("{}\n{}\n{tool}\n{arguments}", user.issuer, user.subject)
}

/// True when this request's client declared elicitation (per request, never remembered).
pub(crate) fn declares_elicitation(context: &RequestContext<RoleServer>) -> bool {
    context
        .client_capabilities()
        .is_some_and(|caps| caps.elicitation.is_some())
}

/// Whether the client can answer a form (Portcullis's approval request): it declared
/// `elicitation.form`, or an empty `elicitation` (which means forms, for clients older than
/// URL mode). A client that declared only `url` cannot.
pub(crate) fn declares_form_elicitation(context: &RequestContext<RoleServer>) -> bool {
    context.client_capabilities().is_some_and(|caps| {
        caps.elicitation
            .as_ref()
            .is_some_and(|elicitation| elicitation.form.is_some() || elicitation.url.is_none())
    })
}

/// Whether the client declared URL-mode elicitation on this request (2025-11-25 and later:
/// `elicitation.url`); a client that declared only forms cannot be sent a link.
pub(crate) fn declares_url_elicitation(context: &RequestContext<RoleServer>) -> bool {
    context.client_capabilities().is_some_and(|caps| {
        caps.elicitation
            .as_ref()
            .is_some_and(|elicitation| elicitation.url.is_some())
    })
}

/// A session-era client that can hear an upstream's notifications outside this request.
pub(crate) fn listener_for(context: &RequestContext<RoleServer>) -> Option<Peer<RoleServer>> {
    (!PortcullisServer::is_stateless(context)).then(|| context.peer.clone())
}

/// Who answers an upstream's questions during a session-era request.
pub(crate) fn asker_for(context: &RequestContext<RoleServer>) -> Asker {
    if declares_elicitation(context) && !PortcullisServer::is_stateless(context) {
        Asker::Client(context.peer.clone())
    } else {
        Asker::Nobody
    }
}

/// The client's progress token for this request, and where to send progress.
pub(crate) fn progress_of(
    context: &RequestContext<RoleServer>,
) -> Option<(ProgressToken, Peer<RoleServer>)> {
    context
        .meta
        .get_progress_token()
        .map(|token| (token, context.peer.clone()))
}

/// One list handler: the page of every ready upstream's `$field` the request's identity may
/// see (each entry by the name `$exposed` gives it), recorded as the list `$list`.
macro_rules! list_handler {
    ($method:ident, $result:ident, $list:literal, $field:ident, |$entry:ident| $exposed:expr) => {
        async fn $method(
            &self,
            request: Option<PaginatedRequestParams>,
            context: RequestContext<RoleServer>,
        ) -> Result<$result, McpError> {
            let (items, next_cursor) = self
                .list(
                    request.as_ref(),
                    &context,
                    ($list, |c| &c.$field),
                    |$entry| $exposed,
                )
                .await?;
            let mut result = $result::with_all_items(items).with_cache_scope(CacheScope::Private);
            result.next_cursor = next_cursor;
            Ok(result)
        }
    };
}

impl ServerHandler for PortcullisServer {
    #[expect(
        deprecated,
        reason = "logging is deprecated but session-era clients still use it"
    )]
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_tool_list_changed()
                .enable_prompts()
                .enable_prompts_list_changed()
                .enable_resources()
                .enable_resources_list_changed()
                .enable_resources_subscribe()
                .enable_completions()
                .enable_logging()
                .build(),
        )
        .with_server_info(Implementation::new("portcullis", env!("CARGO_PKG_VERSION")))
        .with_instructions(if self.gateway.tool_search == ToolSearch::Off {
            "Portcullis mediates the tools of several MCP servers; names are prefixed by the server that provides them."
        } else {
            "Portcullis mediates the tools of several MCP servers; names are prefixed by the server that provides them. When the tool list shows portcullis.search_tools, search it for the tool a task needs, read its parameters with portcullis.describe_tool, and call it with portcullis.call_tool."
        })
    }

    fn accepted_subscription_filter(
        &self,
        requested: &SubscriptionFilter,
    ) -> Option<SubscriptionFilter> {
        // Only list changes are offered: resource updates are not relayed.
        let mut accepted = requested.clone();
        accepted.resource_subscriptions = None;
        Some(accepted)
    }

    async fn listen(&self, context: SubscriptionContext) -> Result<(), McpError> {
        let sink = context.sink().clone();
        if let Ok(mut listeners) = self.gateway.sessions.listeners.lock() {
            listeners.push(sink.clone());
        }
        context.cancelled().await;
        if let Ok(mut listeners) = self.gateway.sessions.listeners.lock() {
            listeners.retain(|s| s.id() != sink.id());
        }
        Ok(())
    }

    /// The exposed definition of a tool, which rmcp's HTTP transport uses to check a request's
    /// custom headers (`x-mcp-header`) against its arguments before the call is dispatched.
    /// It names no identity, so a per-user upstream's tools are not found here.
    fn get_tool(&self, name: &str) -> Option<Tool> {
        let (upstream, _) = self.gateway.upstreams.resolve(name)?;
        let connection = upstream.connection()?;
        let catalog = connection.catalog.load();
        catalog.tools.iter().find(|tool| tool.name == name).cloned()
    }

    /// A session-era HTTP session belongs to the user who initialized it: bound here, before
    /// any other request of the session can claim it. (Over stdio every request acts as the
    /// local identity: there is no one else to bind.)
    async fn initialize(
        &self,
        request: rmcp::model::InitializeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<rmcp::model::InitializeResult, McpError> {
        if context.extensions.get::<http::request::Parts>().is_some() {
            self.envelope(&context)?;
        }
        context.peer.set_peer_info(request.clone());
        self.negotiate_initialize(&request)
    }

    async fn on_initialized(&self, context: NotificationContext<RoleServer>) {
        self.refresh_client_roots(&context.peer).await;
        self.gateway.sessions.register(self.session, context.peer);
    }

    async fn on_roots_list_changed(&self, context: NotificationContext<RoleServer>) {
        // Later calls are checked against the new roots.
        self.refresh_client_roots(&context.peer).await;
    }

    async fn list_tools(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        let envelope = self.envelope(&context)?;
        if self.gateway.tool_search != ToolSearch::Off {
            let started = std::time::Instant::now();
            let seen = self.seen_tools(&envelope).await;
            if self.lists_search_tools(&seen) {
                // One page: a cursor from an earlier, longer list points at nothing here.
                if request.as_ref().is_some_and(|r| r.cursor.is_some()) {
                    return Err(McpError::invalid_params("invalid cursor", None));
                }
                let tools = self.search_tools_list(&envelope);
                self.record_list(&envelope, "tools", tools.len(), started)
                    .await?;
                return Ok(
                    ListToolsResult::with_all_items(tools).with_cache_scope(CacheScope::Private)
                );
            }
        }
        let (mut tools, next_cursor) = self
            .list(
                request.as_ref(),
                &context,
                ("tools", |c| &c.tools),
                |entry| Exposed::Tool(&entry.name),
            )
            .await?;
        // The sign-in tools of per-user upstreams this identity has not authorised yet, on
        // the last page.
        if next_cursor.is_none() {
            tools.extend(self.sign_in_tools(&envelope));
        }
        let mut result =
            ListToolsResult::with_all_items(tools).with_cache_scope(CacheScope::Private);
        result.next_cursor = next_cursor;
        Ok(result)
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let envelope = self.envelope(&context)?;
        let (request, route) = match SearchTool::named(self.gateway.tool_search, &request.name) {
            Some(SearchTool::Search) => return self.search(&envelope, &request, &context).await,
            Some(SearchTool::Describe) => {
                return self.describe(&envelope, &request, &context).await;
            }
            Some(SearchTool::Call) => (inner_call(request)?, Route::CallTool),
            None => (request, Route::Direct),
        };
        // Every log line of the call carries its evidence request id (and, once written, the
        // intent record's seq), so the log, the evidence and exported spans join up.
        let span = tracing::info_span!(
            "tools/call",
            request_id = tracing::field::Empty,
            evidence_seq = tracing::field::Empty,
            tool = %request.name,
            via = route.via(),
            user = %envelope.user(),
        );
        self.call_tool_as(envelope, request, route, context)
            .instrument(span)
            .await
    }

    list_handler!(
        list_prompts,
        ListPromptsResult,
        "prompts",
        prompts,
        |entry| Exposed::Prompt(&entry.name)
    );

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, McpError> {
        self.read_as(&request, &context).await
    }

    list_handler!(
        list_resources,
        ListResourcesResult,
        "resources",
        resources,
        |entry| Exposed::Resource(&entry.uri)
    );

    list_handler!(
        list_resource_templates,
        ListResourceTemplatesResult,
        "resource_templates",
        templates,
        |entry| Exposed::Resource(&entry.uri_template)
    );

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, McpError> {
        self.read_as(&request, &context).await
    }

    async fn subscribe(
        &self,
        request: SubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        self.subscribe_as(request, context).await
    }

    async fn unsubscribe(
        &self,
        request: UnsubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        self.unsubscribe_as(request, context).await
    }

    #[expect(
        deprecated,
        reason = "session-era clients still subscribe and set log levels"
    )]
    async fn set_level(
        &self,
        request: SetLevelRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        // Stateless upstreams get the level on each of this session's requests; session-era
        // ones hold one level per connection, shared by every session: the latest wins.
        if let Ok(mut level) = self.log_level.lock() {
            *level = Some(request.level);
        }
        self.set_level_as(request, context).await
    }

    async fn complete(
        &self,
        request: CompleteRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CompleteResult, McpError> {
        self.complete_as(request, context).await
    }
}

/// Serves one client over this process's stdin and stdout until it disconnects.
pub async fn serve_stdio(gateway: &Arc<Gateway>) -> Result<(), GatewayError> {
    let server = PortcullisServer::new(gateway.clone());
    let (input, output) = crate::stdio::std_streams();
    let running = server
        .serve_with_ct(
            crate::stdio::StdioTransport::new(input, output),
            gateway.shutdown.child_token(),
        )
        .await
        .map_err(|e| GatewayError::Client(e.to_string()))?;
    running
        .waiting()
        .await
        .map_err(|e| GatewayError::Client(e.to_string()))?;
    Ok(())
}
