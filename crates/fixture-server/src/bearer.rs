//! Bearer tokens in the HTTP mode (`--auth-issuer`): the fixture as an OAuth-protected upstream
//! that validates the token it is called with and records what it received.
//!
//! Validation is Portcullis's own resource server (`portcullis-auth`): issuer discovery, the
//! issuer's JWKS, audience = this server's resource, expiry, with its `require_bearer`
//! middleware and its RFC 9728 metadata router, so 401 challenges carry the
//! `resource_metadata` an OAuth client discovers the authorization server from. Nothing of
//! that is reimplemented here. This module only adds what an upstream decides itself: which
//! requests pass without a token (`--public-lists`), which scopes a `tools/call` of a tool
//! needs (403 `insufficient_scope`), and the record.
//!
//! Two layers around `/mcp`, outer first:
//! - [`authenticate`] reads the JSON-RPC messages of the body, lets a public request without
//!   an `Authorization` header through, and hands every other one to `require_bearer`. A
//!   request that carries a token is always checked, public or not: a bad token is refused
//!   even on `ping`, so a client learns of it at once. It notes the token's digest and
//!   audience first, because `require_bearer` removes the header (no tool, `headers`
//!   included, can see or echo the token).
//! - [`after_authentication`] checks the tool scopes against the identity `require_bearer`
//!   attached, and records the request.

use std::{
    collections::BTreeSet,
    path::Path,
    sync::Arc,
    time::{SystemTime, UNIX_EPOCH},
};

use anyhow::Context as _;
use axum::{
    Router,
    body::Body,
    extract::{Request, State},
    http::{Method, StatusCode, header::AUTHORIZATION},
    middleware::Next,
    response::{IntoResponse, Response},
};
use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use portcullis_auth::{ResourceServer, require_bearer};
use portcullis_core::{ClaimNames, IdentityEnvelope, ResourceServerSettings};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use tokio::{fs::File, io::AsyncWriteExt as _, sync::Mutex};

use crate::cli::AuthConfig;

/// Largest request body read to classify a request; rmcp's own default limit.
const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

/// Methods that only set up or describe a session; with `--public-lists` they need no token.
/// Everything else (tool calls, reads, prompts, completions, answers to the server's requests)
/// does.
const PUBLIC_METHODS: &[&str] = &[
    "initialize",
    "ping",
    "tools/list",
    "resources/list",
    "resources/templates/list",
    "prompts/list",
    "server/discover",
    "subscriptions/listen",
];

/// The token checks of one server, shared by its requests.
pub(crate) struct Guard {
    server: ResourceServer,
    config: AuthConfig,
    record: Option<Mutex<File>>,
}

impl Guard {
    /// Discovers the issuer (fails if it cannot) and opens the record file for appending.
    pub(crate) async fn start(config: &AuthConfig, resource: String) -> anyhow::Result<Arc<Self>> {
        let scopes_supported: BTreeSet<&String> = config.tool_scopes.values().flatten().collect();
        let settings = ResourceServerSettings {
            issuer: config.issuer.clone(),
            resource,
            // Per tool below, not for every request.
            required_scopes: BTreeSet::new(),
            scopes_supported: scopes_supported.into_iter().cloned().collect(),
            claims: ClaimNames::default(),
            // An expired token is refused at once: the refresh tests use tokens of 2 s.
            leeway_secs: 0,
            allow_http: config.allow_http,
        };
        let server = ResourceServer::discover(settings)
            .await
            .with_context(|| format!("cannot use `{}` as the token issuer", config.issuer))?;
        let record = match &config.record {
            Some(path) => Some(Mutex::new(open_record(path).await?)),
            None => None,
        };
        tracing::info!(
            issuer = %config.issuer,
            resource = %server.settings().resource,
            metadata = %server.metadata_url(),
            "bearer tokens required"
        );
        Ok(Arc::new(Self {
            server,
            config: config.clone(),
            record,
        }))
    }

    /// The protected resource metadata (RFC 9728), served without a token.
    pub(crate) fn metadata_router(&self) -> Router {
        self.server.metadata_router()
    }

    async fn record(&self, line: Value) -> std::io::Result<()> {
        let Some(file) = &self.record else {
            return Ok(());
        };
        let mut text = line.to_string();
        text.push('\n');
        let mut file = file.lock().await;
        file.write_all(text.as_bytes()).await?;
        file.flush().await
    }
}

async fn open_record(path: &Path) -> anyhow::Result<File> {
    tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .await
        .with_context(|| format!("cannot open the record file `{}`", path.display()))
}

/// One JSON-RPC message of a request body: its method and, for `tools/call`, the tool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Message {
    pub(crate) method: Option<String>,
    pub(crate) tool: Option<String>,
}

/// The messages of a request body: one, a batch, or none (not JSON-RPC, or no body).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Messages(pub(crate) Vec<Message>);

impl Messages {
    pub(crate) fn parse(body: &[u8]) -> Self {
        let message = |value: &Value| {
            let method = value.get("method").and_then(Value::as_str);
            let tool = match method {
                Some("tools/call") => value
                    .get("params")
                    .and_then(|params| params.get("name"))
                    .and_then(Value::as_str),
                _ => None,
            };
            Message {
                method: method.map(str::to_owned),
                tool: tool.map(str::to_owned),
            }
        };
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Array(items)) => Self(items.iter().map(message).collect()),
            Ok(value @ Value::Object(_)) => Self(vec![message(&value)]),
            _ => Self::default(),
        }
    }
}

/// Whether a request may pass without a token: only with `--public-lists`, and only session
/// set-up and description. GET (the server's own stream) and DELETE (end of the session)
/// carry no request of the client's; a POST passes when every message in it is public.
pub(crate) fn is_public(public_lists: bool, method: &Method, messages: &Messages) -> bool {
    if !public_lists {
        return false;
    }
    if method == Method::GET || method == Method::DELETE {
        return true;
    }
    method == Method::POST
        && !messages.0.is_empty()
        && messages.0.iter().all(|message| {
            message.method.as_deref().is_some_and(|name| {
                PUBLIC_METHODS.contains(&name) || name.starts_with("notifications/")
            })
        })
}

/// The scopes the tool calls among `messages` need, when `granted` lacks any of them (all of
/// them then, for the challenge's `scope`); empty when the token suffices.
pub(crate) fn missing_scopes(
    config: &AuthConfig,
    messages: &Messages,
    granted: &BTreeSet<String>,
) -> BTreeSet<String> {
    let needed: BTreeSet<String> = messages
        .0
        .iter()
        .filter_map(|message| message.tool.as_ref())
        .filter_map(|tool| config.tool_scopes.get(tool))
        .flatten()
        .cloned()
        .collect();
    if needed.is_subset(granted) {
        BTreeSet::new()
    } else {
        needed
    }
}

/// Marks a public request let through without a token.
#[derive(Debug, Clone, Copy)]
struct Unauthenticated;

/// What the record keeps of the raw token, taken before `require_bearer` removes it: its
/// digest, and its audience (read unverified here, recorded only once the token is accepted).
#[derive(Debug, Clone)]
struct SeenToken {
    sha256: String,
    audience: Vec<String>,
}

impl SeenToken {
    fn from_request(request: &Request) -> Option<Self> {
        let header = request.headers().get(AUTHORIZATION)?.to_str().ok()?.trim();
        let (scheme, token) = header.split_once(' ')?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return None;
        }
        let token = token.trim();
        let digest = Sha256::digest(token.as_bytes());
        let sha256 = digest.iter().map(|byte| format!("{byte:02x}")).collect();
        Some(Self {
            sha256,
            audience: audience(token),
        })
    }
}

/// The `aud` claim of a JWT as a list (a single string is one audience).
fn audience(token: &str) -> Vec<String> {
    let claims = token
        .split('.')
        .nth(1)
        .and_then(|payload| URL_SAFE_NO_PAD.decode(payload).ok())
        .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok());
    match claims.as_ref().and_then(|claims| claims.get("aud")) {
        Some(Value::String(audience)) => vec![audience.clone()],
        Some(Value::Array(audiences)) => audiences
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    }
}

/// The outer layer: classify, then either pass a public request or authenticate.
pub(crate) async fn authenticate(
    State(guard): State<Arc<Guard>>,
    request: Request,
    next: Next,
) -> Response {
    let (parts, body) = request.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_BODY_BYTES).await else {
        return (StatusCode::PAYLOAD_TOO_LARGE, "request body too large").into_response();
    };
    let messages = Messages::parse(&bytes);
    let mut request = Request::from_parts(parts, Body::from(bytes));
    let has_token = request.headers().contains_key(AUTHORIZATION);
    if !has_token && is_public(guard.config.public_lists, request.method(), &messages) {
        request.extensions_mut().insert(Unauthenticated);
        return next.run(request).await;
    }
    if let Some(seen) = SeenToken::from_request(&request) {
        request.extensions_mut().insert(seen);
    }
    request.extensions_mut().insert(messages);
    require_bearer(State(guard.server.clone()), request, next).await
}

/// The inner layer, reached only through `require_bearer` (or as a public request): the tool
/// scopes, and the record.
pub(crate) async fn after_authentication(
    State(guard): State<Arc<Guard>>,
    request: Request,
    next: Next,
) -> Response {
    if request.extensions().get::<Unauthenticated>().is_some() {
        return next.run(request).await;
    }
    // INVARIANT: `require_bearer` lets a request through only with its identity attached.
    let Some(envelope) = request.extensions().get::<Arc<IdentityEnvelope>>().cloned() else {
        tracing::error!("bug: a request passed the bearer check without an identity");
        return (StatusCode::INTERNAL_SERVER_ERROR, "no identity").into_response();
    };
    let messages = request
        .extensions()
        .get::<Messages>()
        .cloned()
        .unwrap_or_default();
    let seen = request.extensions().get::<SeenToken>().cloned();
    let missing = missing_scopes(&guard.config, &messages, envelope.scopes());
    let outcome = if missing.is_empty() {
        "accepted"
    } else {
        "insufficient_scope"
    };
    let lines = record_lines(
        request.method(),
        &messages,
        &envelope,
        seen.as_ref(),
        outcome,
    );
    for line in lines {
        if let Err(error) = guard.record(line).await {
            // Loud: a test reading the record must not see a silently missing line.
            tracing::error!(%error, "cannot write the record");
            return (StatusCode::INTERNAL_SERVER_ERROR, "cannot write the record").into_response();
        }
    }
    if !missing.is_empty() {
        return guard
            .server
            .insufficient_scope(missing.into_iter().collect());
    }
    next.run(request).await
}

/// One line per message (one with `method: null` for a request without any, like GET).
fn record_lines(
    http_method: &Method,
    messages: &Messages,
    envelope: &IdentityEnvelope,
    seen: Option<&SeenToken>,
    outcome: &str,
) -> Vec<Value> {
    let none = [Message {
        method: None,
        tool: None,
    }];
    let messages = if messages.0.is_empty() {
        none.as_slice()
    } else {
        messages.0.as_slice()
    };
    let at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs());
    messages
        .iter()
        .map(|message| {
            json!({
                "method": message.method,
                "tool": message.tool,
                "sub": envelope.user().subject,
                "iss": envelope.user().issuer,
                "aud": seen.map(|seen| seen.audience.clone()).unwrap_or_default(),
                "scope": envelope.scopes(),
                "client_id": envelope.client(),
                "token_sha256": seen.map(|seen| seen.sha256.clone()),
                "http_method": http_method.as_str(),
                "outcome": outcome,
                "at": at,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests;
