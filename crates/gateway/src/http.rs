//! The streamable HTTP downstream transport: loopback by default, `Host` and `Origin` checked
//! against DNS rebinding, both protocol eras served by rmcp's streamable HTTP service, and with
//! `[http.auth]` every request authenticated by its bearer token before rmcp sees it.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use portcullis_auth::{ResourceServer, require_bearer};
use portcullis_config::HttpSettings;
use portcullis_core::IdentityEnvelope;
use rmcp::transport::streamable_http_server::{
    StreamableHttpServerConfig, StreamableHttpService, session::local::LocalSessionManager,
};
use serde::Deserialize;

use crate::error::GatewayError;
use crate::gateway::Gateway;
use crate::server::PortcullisServer;

/// The path of the MCP endpoint.
pub(crate) const MCP_PATH: &str = "/mcp";

/// The resource server of `[http.auth]`, its issuer discovered and its keys fetched; `None`
/// without `[http.auth]`. One that cannot fetch its issuer's keys would accept no token, so
/// this fails rather than serve requests it must refuse (fail closed).
pub async fn discover_issuer(
    settings: &HttpSettings,
) -> Result<Option<ResourceServer>, GatewayError> {
    match &settings.auth {
        None => Ok(None),
        Some(auth) => ResourceServer::discover(auth.clone())
            .await
            .map(Some)
            .map_err(|e| GatewayError::Auth(e.to_string())),
    }
}

/// Binds the listener; returns the bound address and a future that serves until shutdown.
/// `resource_server` (from [`discover_issuer`]) checks every request's bearer token.
pub async fn serve_http(
    gateway: Arc<Gateway>,
    settings: &HttpSettings,
    resource_server: Option<ResourceServer>,
) -> Result<
    (
        std::net::SocketAddr,
        impl Future<Output = Result<(), GatewayError>>,
    ),
    GatewayError,
> {
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .map_err(|source| GatewayError::Listen {
            address: settings.listen,
            source,
        })?;
    let address = listener.local_addr().map_err(GatewayError::Serve)?;
    let port = address.port();

    let shutdown = gateway.shutdown.child_token();
    let config = rebinding_guard(settings, port).with_cancellation_token(shutdown.clone());
    let factory_gateway = gateway.clone();
    let mut sessions = LocalSessionManager::default();
    sessions.session_config.keep_alive = Some(settings.session_idle);
    let sessions = Arc::new(sessions);
    let service = StreamableHttpService::new(
        move || Ok(PortcullisServer::new(factory_gateway.clone())),
        sessions.clone(),
        config,
    );
    let cap = Arc::new(SessionCap {
        sessions,
        max: settings.max_sessions,
        per_client: settings.max_sessions_per_client,
        idle: settings.session_idle,
        seen: std::sync::Mutex::default(),
    });
    let mcp = axum::Router::new()
        .nest_service(MCP_PATH, service)
        .layer(axum::middleware::from_fn_with_state(cap, well_formed));
    let router = match resource_server {
        None => mcp,
        Some(server) => authenticated(mcp, &gateway, server),
    };
    let router = router.merge(probes(gateway.clone()));
    let serving = async move {
        axum::serve(
            crate::listener::no_delay(listener),
            router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
        .map_err(GatewayError::Serve)
    };
    Ok((address, serving))
}

/// The MCP endpoint behind bearer tokens. The token is checked, and stripped, before rmcp sees
/// the request: handlers read the identity envelope from the request's extensions and never
/// the token. Then a call of a tool whose scopes the token lacks gets the step-up challenge.
fn authenticated(
    mcp: axum::Router,
    gateway: &Arc<Gateway>,
    server: ResourceServer,
) -> axum::Router {
    tracing::info!(
        issuer = %server.settings().issuer,
        resource = %server.settings().resource,
        metadata = %server.metadata_url(),
        "clients authenticate with bearer tokens"
    );
    let metadata = server.metadata_router();
    mcp.layer(axum::middleware::from_fn_with_state(
        (gateway.clone(), server.clone()),
        step_up,
    ))
    .layer(axum::middleware::from_fn_with_state(server, require_bearer))
    .merge(metadata)
}

/// The MCP endpoint's settings: session-era sessions kept, and Host and Origin checked.
/// Without a configured list, only the names of this loopback listener are accepted: a browser
/// page served from elsewhere cannot reach it through a rebound DNS name.
fn rebinding_guard(settings: &HttpSettings, port: u16) -> StreamableHttpServerConfig {
    let allowed_hosts = if settings.allowed_hosts.is_empty() {
        vec![
            format!("127.0.0.1:{port}"),
            format!("localhost:{port}"),
            format!("[::1]:{port}"),
            "127.0.0.1".to_owned(),
            "localhost".to_owned(),
            "::1".to_owned(),
        ]
    } else {
        settings.allowed_hosts.clone()
    };
    let allowed_origins = if settings.allowed_origins.is_empty() {
        vec![
            format!("http://127.0.0.1:{port}"),
            format!("http://localhost:{port}"),
            format!("http://[::1]:{port}"),
        ]
    } else {
        settings.allowed_origins.clone()
    };
    let mut config = StreamableHttpServerConfig::default();
    config.legacy_session_mode = true;
    config.allowed_hosts = allowed_hosts;
    config.allowed_origins = allowed_origins;
    config
}

/// The largest request body accepted, as stdio lines are bounded.
const MAX_WIRE_BODY: usize = crate::stdio::MAX_LINE;

/// A POST whose body is not a JSON-RPC text is answered 400 with a JSON-RPC error (id null)
/// here, before rmcp sees it: invalid UTF-8 or not JSON is a parse error (-32700), JSON nested
/// deeper than stdio accepts an invalid request (-32600), a body over 4 MiB 413. Anything else
/// passes on unchanged (rmcp answers what is JSON but not a message).
async fn well_formed(State(cap): State<Arc<SessionCap>>, request: Request, next: Next) -> Response {
    let session = request
        .headers()
        .get(SESSION_HEADER)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    let owner = owner_of(&request);
    if let Some(id) = &session {
        if !cap.owned_by(id, owner.as_deref()) {
            return cap.not_theirs();
        }
        cap.touch(id, request.method() == axum::http::Method::DELETE);
    }
    let client = client_of(&request);
    if request.method() != axum::http::Method::POST {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_WIRE_BODY).await else {
        return (
            axum::http::StatusCode::PAYLOAD_TOO_LARGE,
            "the request body is larger than portcullis accepts (4 MiB)",
        )
            .into_response();
    };
    if let Some(refusal) = malformed(&bytes) {
        return refusal;
    }
    let initialize = session.is_none()
        && serde_json::from_slice::<Probe<'_>>(&bytes)
            .is_ok_and(|probe| probe.method == Some("initialize"));
    if initialize && !cap.room(&client).await {
        return cap.refuse();
    }
    let response = next
        .run(Request::from_parts(parts, axum::body::Body::from(bytes)))
        .await;
    if initialize
        && let Some(id) = response
            .headers()
            .get(SESSION_HEADER)
            .and_then(|value| value.to_str().ok())
    {
        cap.opened(id, client, owner);
    }
    response
}

/// The user an authenticated request acts as (`None` without authentication: then every
/// request acts as the one local identity, and there is no one else to keep a session from).
fn owner_of(request: &Request) -> Option<String> {
    let envelope = request.extensions().get::<Arc<IdentityEnvelope>>()?;
    let user = envelope.user();
    Some(format!("{} {}", user.issuer, user.subject))
}

/// A 400 with a JSON-RPC error (id null) for a body that is not a JSON-RPC text: invalid UTF-8
/// or not JSON is a parse error (-32700), JSON nested deeper than stdio accepts an invalid
/// request (-32600).
fn malformed(bytes: &[u8]) -> Option<Response> {
    let (code, message) = if std::str::from_utf8(bytes).is_err() {
        (-32700, "parse error: the body is not UTF-8")
    } else if crate::stdio::depth(bytes, crate::stdio::MAX_DEPTH) > crate::stdio::MAX_DEPTH {
        (-32600, "invalid request: nested too deeply")
    } else if serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_err() {
        (-32700, "parse error: the body is not JSON")
    } else {
        return None;
    };
    tracing::warn!(
        code,
        reason = message,
        "an HTTP request body is not a JSON-RPC message"
    );
    Some(json_rpc_error(
        axum::http::StatusCode::BAD_REQUEST,
        code,
        message,
        None,
    ))
}

/// An HTTP answer carrying a JSON-RPC error with id null.
fn json_rpc_error(
    status: axum::http::StatusCode,
    code: i32,
    message: &str,
    retry_after: Option<&'static str>,
) -> Response {
    let body = serde_json::json!({
        "jsonrpc": "2.0",
        "id": null,
        "error": {"code": code, "message": message},
    });
    let mut response = (
        status,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response();
    if let Some(seconds) = retry_after {
        response.headers_mut().insert(
            axum::http::header::RETRY_AFTER,
            axum::http::HeaderValue::from_static(seconds),
        );
    }
    response
}

/// Who a session belongs to, for the per-client limit: an authenticated request's user and
/// client id, else the peer's address.
fn client_of(request: &Request) -> String {
    if let Some(envelope) = request.extensions().get::<Arc<IdentityEnvelope>>() {
        let user = envelope.user();
        return format!(
            "{} {} {}",
            user.issuer,
            user.subject,
            envelope.client().unwrap_or("")
        );
    }
    request
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map_or_else(String::new, |info| info.0.ip().to_string())
}

/// The header that names a session-era HTTP session.
const SESSION_HEADER: &str = "mcp-session-id";

/// The limit on session-era HTTP sessions: each holds memory until it ends, and any local
/// process can open one. Sessions unused for `idle` are closed (rmcp's worker stops at the
/// same idle time, but its handle would stay in the manager's map), and a new one beyond
/// `max` is refused.
struct SessionCap {
    sessions: Arc<LocalSessionManager>,
    max: usize,
    per_client: usize,
    idle: std::time::Duration,
    /// When each session was last used, and whose it is, by id.
    seen: std::sync::Mutex<std::collections::HashMap<String, Seen>>,
}

struct Seen {
    at: std::time::Instant,
    client: String,
    /// The user who opened the session, when authenticated ([`owner_of`]).
    owner: Option<String>,
}

impl SessionCap {
    /// Notes a request of session `id` (a `DELETE` ends it).
    fn touch(&self, id: &str, ended: bool) {
        if let Ok(mut seen) = self.seen.lock() {
            if ended {
                seen.remove(id);
            } else if let Some(session) = seen.get_mut(id) {
                session.at = std::time::Instant::now();
            }
        }
    }

    /// The 503 for a session refused because Portcullis holds `max` already.
    fn refuse(&self) -> Response {
        tracing::warn!(
            max_sessions = self.max,
            "a new HTTP session was refused: the session limit is reached"
        );
        json_rpc_error(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            -32000,
            "portcullis holds as many sessions as it may; retry later, or end an unused session",
            Some("30"),
        )
    }

    /// Notes a session just opened by `client`, acting as `owner`.
    fn opened(&self, id: &str, client: String, owner: Option<String>) {
        if let Ok(mut seen) = self.seen.lock() {
            seen.insert(
                id.to_owned(),
                Seen {
                    at: std::time::Instant::now(),
                    client,
                    owner,
                },
            );
        }
    }

    /// Whether a request acting as `owner` may use session `id`: a session opened by one
    /// user is no other's, whatever the request (a call, its event stream, its `DELETE`).
    /// A session not known here passes on (rmcp answers 404 for one it does not hold).
    fn owned_by(&self, id: &str, owner: Option<&str>) -> bool {
        match self.seen.lock() {
            Ok(seen) => seen
                .get(id)
                .is_none_or(|session| session.owner.as_deref() == owner),
            // Fail closed: nobody's session is handed out on doubt.
            Err(_) => false,
        }
    }

    /// The answer to a request in another user's session: the 404 of a session this server
    /// does not hold (so a client starts its own, and the answer confirms nothing).
    fn not_theirs(&self) -> Response {
        tracing::warn!("a request named another user's session; refused as an unknown session");
        (
            axum::http::StatusCode::NOT_FOUND,
            "Not Found: Session not found",
        )
            .into_response()
    }

    /// Makes room for a new session of `client`: closes the sessions idle too long, and, when
    /// `client` already holds its share, its least recently used one (clients that never end
    /// their sessions keep working, and no client holds more than its share). Then says
    /// whether the total allows another.
    async fn room(&self, client: &str) -> bool {
        let closing: Vec<String> = match self.seen.lock() {
            Ok(mut seen) => {
                let mut closing: Vec<String> = seen
                    .iter()
                    .filter(|(_, session)| session.at.elapsed() >= self.idle)
                    .map(|(id, _)| id.clone())
                    .collect();
                for id in &closing {
                    seen.remove(id);
                }
                let mut held: Vec<(&String, std::time::Instant)> = seen
                    .iter()
                    .filter(|(_, session)| session.client == client)
                    .map(|(id, session)| (id, session.at))
                    .collect();
                held.sort_by_key(|(_, at)| *at);
                let over = (held.len() + 1).saturating_sub(self.per_client);
                let evicted: Vec<String> = held
                    .into_iter()
                    .take(over)
                    .map(|(id, _)| id.clone())
                    .collect();
                if !evicted.is_empty() {
                    tracing::info!(
                        closed = evicted.len(),
                        per_client = self.per_client,
                        "a client at its session limit opened another; its least recently used session was closed"
                    );
                }
                for id in &evicted {
                    seen.remove(id);
                }
                closing.extend(evicted);
                closing
            }
            Err(_) => return false,
        };
        for id in closing {
            use rmcp::transport::streamable_http_server::session::SessionManager as _;
            let _ = self.sessions.close_session(&id.into()).await;
        }
        self.sessions.sessions.read().await.len() < self.max
    }
}

/// The largest request body read to look for a tool call's scopes. rmcp itself reads bodies
/// whole; this bounds what an authenticated client can make Portcullis hold.
const MAX_BODY: usize = 64 * 1024 * 1024;

/// Just enough of a JSON-RPC request to tell a tool call and its tool.
#[derive(Deserialize)]
struct Probe<'a> {
    #[serde(borrow)]
    method: Option<&'a str>,
    #[serde(borrow)]
    params: Option<ProbeParams<'a>>,
}

#[derive(Deserialize)]
struct ProbeParams<'a> {
    #[serde(borrow)]
    name: Option<std::borrow::Cow<'a, str>>,
    /// `portcullis.call_tool`'s arguments name the tool it calls.
    #[serde(borrow)]
    arguments: Option<ProbeArguments<'a>>,
}

#[derive(Deserialize)]
struct ProbeArguments<'a> {
    #[serde(borrow)]
    name: Option<std::borrow::Cow<'a, str>>,
}

impl ProbeParams<'_> {
    /// The tool the call runs: its name, or the one `portcullis.call_tool` names.
    fn tool(self, mode: portcullis_config::ToolSearch) -> Option<String> {
        let name = self.name?;
        match crate::tool_search::SearchTool::named(mode, &name) {
            Some(crate::tool_search::SearchTool::Call) => self.arguments?.name,
            Some(_) => None,
            None => Some(name),
        }
        .map(std::borrow::Cow::into_owned)
    }
}

/// Step-up authorization (MCP 2025-11-25): a `tools/call` whose tool needs scopes the token
/// lacks is answered 403 `insufficient_scope` naming them, so the client can ask the person
/// for a token that has them (a call through `portcullis.call_tool` as the call it names).
/// Anything else passes on unchanged; the handler still decides
/// every call, so a body this cannot read is no bypass.
async fn step_up(
    State((gateway, server)): State<(Arc<Gateway>, ResourceServer)>,
    request: Request,
    next: Next,
) -> Response {
    let Some(envelope) = request.extensions().get::<Arc<IdentityEnvelope>>().cloned() else {
        return next.run(request).await;
    };
    if request.method() != axum::http::Method::POST {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let bytes = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(bytes) => bytes,
        Err(_) => {
            return (
                axum::http::StatusCode::PAYLOAD_TOO_LARGE,
                "the request body is larger than portcullis accepts",
            )
                .into_response();
        }
    };
    let tool = serde_json::from_slice::<Probe<'_>>(&bytes)
        .ok()
        .filter(|probe| probe.method == Some("tools/call"))
        .and_then(|probe| probe.params?.tool(gateway.tool_search));
    if let Some(tool) = tool {
        gateway.upstreams.ready_for(&envelope).await;
        if let Some(mut needed) = gateway.decider.missing_scopes(&envelope, &tool) {
            needed.extend(server.settings().required_scopes.iter().cloned());
            needed.sort();
            needed.dedup();
            tracing::info!(
                target: "portcullis::decision",
                user = %envelope.user(),
                tool = %tool,
                needed = %needed.join(" "),
                "step-up: the token lacks scopes this tool needs"
            );
            return server.insufficient_scope(needed);
        }
    }
    next.run(Request::from_parts(parts, axum::body::Body::from(bytes)))
        .await
}

/// A scrape of the metrics.
async fn scrape(State(gateway): State<Arc<Gateway>>) -> Response {
    match gateway
        .evidence
        .metrics
        .render(&gateway.upstreams, gateway.evidence.recorder.log())
    {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// `GET /livez` (the process answers) and `GET /readyz` (it can serve calls: its evidence log
/// is open and its shared state, if any, answers; 503 naming which is not, never why in
/// detail, which goes to the log), for a load balancer or an orchestrator's probes. Beside the
/// MCP endpoint, outside its token and `Host` checks: a probe comes from the orchestrator,
/// carries no token, names the pod's address, and learns nothing but these words.
fn probes(gateway: Arc<Gateway>) -> axum::Router {
    axum::Router::new()
        .route("/livez", get(|| async { "live\n" }))
        .route("/readyz", get(ready))
        .with_state(gateway)
}

async fn ready(State(gateway): State<Arc<Gateway>>) -> Response {
    match gateway.readiness().await {
        Ok(()) => "ready\n".into_response(),
        Err(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n"),
        )
            .into_response(),
    }
}

/// Binds `address` and returns it with the future that serves `GET /metrics` until shutdown.
pub async fn serve_metrics(
    gateway: Arc<Gateway>,
    address: SocketAddr,
) -> Result<(SocketAddr, impl Future<Output = Result<(), GatewayError>>), GatewayError> {
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .map_err(|source| GatewayError::Listen { address, source })?;
    let bound = listener.local_addr().map_err(GatewayError::Serve)?;
    let shutdown = gateway.shutdown.child_token();
    let router = axum::Router::new()
        .route("/metrics", get(scrape))
        .with_state(gateway);
    let serving = async move {
        axum::serve(crate::listener::no_delay(listener), router)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await
            .map_err(GatewayError::Serve)
    };
    Ok((bound, serving))
}

#[cfg(test)]
#[expect(clippy::panic, reason = "tests")]
mod tests {
    use axum::serve::Listener as _;

    #[tokio::test]
    async fn every_accepted_connection_has_no_delay() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let address = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
        let mut listener = crate::listener::no_delay(listener);
        let client = tokio::spawn(async move { tokio::net::TcpStream::connect(address).await });
        let (accepted, _) = listener.accept().await;
        assert!(
            accepted.nodelay().unwrap_or(false),
            "TCP_NODELAY is not set"
        );
        drop(client.await);
    }
}
