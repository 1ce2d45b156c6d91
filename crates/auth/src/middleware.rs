//! The axum middleware that puts the resource server in front of a route: a request passes
//! with its identity envelope attached, or gets the challenge.

use axum::extract::{Request, State};
use axum::http::header::{AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::server::log_rejection;
use crate::token::Claimed;
use crate::{RejectReason, Rejection, ResourceServer, Secret};

/// Authenticates each request's bearer token. On success the `Arc<IdentityEnvelope>` is put
/// in the request's extensions and the `Authorization` header is removed, so nothing behind
/// this layer can read or forward the token (MCP forbids token passthrough). On rejection the
/// response is the status, the `WWW-Authenticate` challenge and a small JSON body
/// `{"error", "error_description"}` (`error` absent when no token was sent).
///
/// Use with `axum::middleware::from_fn_with_state(resource_server, require_bearer)`.
pub async fn require_bearer(
    State(server): State<ResourceServer>,
    mut request: Request,
    next: Next,
) -> Response {
    let header = authorization(request.headers()).map(|header| header.map(str::to_owned));
    let outcome = match &header {
        Ok(header) => server.authenticate(header.as_deref(), now_secs()).await,
        Err(rejection) => {
            log_rejection(rejection, &Claimed::default());
            Err(rejection.clone())
        }
    };
    match outcome {
        Ok(envelope) => {
            request.headers_mut().remove(AUTHORIZATION);
            request.extensions_mut().insert(envelope);
            if let Some(token) = header.ok().flatten().as_deref().and_then(bearer_token) {
                request
                    .extensions_mut()
                    .insert(InboundToken(Secret::new(token)));
            }
            next.run(request).await
        }
        Err(rejection) => rejection_response(&server, &rejection),
    }
}

/// The bearer token a request was authenticated with, kept in the request's extensions for
/// the one use MCP allows: exchanging it (RFC 8693) for a token whose audience is an upstream.
/// It is never forwarded, and its `Debug` is a fingerprint.
#[derive(Debug, Clone)]
pub struct InboundToken(pub Secret);

/// The token of an `Authorization: Bearer` header (the scheme is case-insensitive).
fn bearer_token(header: &str) -> Option<&str> {
    let (scheme, token) = header.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|token| !token.is_empty())
}

impl ResourceServer {
    /// The 403 `insufficient_scope` challenge for a request that needs more than the token
    /// grants (step-up authorization): the caller decided which scopes the request needs.
    pub fn insufficient_scope(&self, needed: Vec<String>) -> Response {
        let rejection = Rejection::insufficient_scope(needed);
        log_rejection(&rejection, &Claimed::default());
        rejection_response(self, &rejection)
    }
}

/// The one `Authorization` header of a request. Two of them are refused rather than one
/// picked: which one a proxy in front of us saw is unknowable.
fn authorization(headers: &HeaderMap) -> Result<Option<&str>, Rejection> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    match (values.next(), values.next()) {
        (None, _) => Ok(None),
        (Some(value), None) => value
            .to_str()
            .map(Some)
            .map_err(|_| Rejection::new(RejectReason::Malformed)),
        (Some(_), Some(_)) => Err(Rejection::new(RejectReason::Malformed)),
    }
}

fn rejection_response(server: &ResourceServer, rejection: &Rejection) -> Response {
    let challenge = HeaderValue::from_str(&server.www_authenticate(rejection))
        .unwrap_or_else(|_| HeaderValue::from_static("Bearer"));
    let mut body = serde_json::Map::new();
    if let Some(error) = rejection.error() {
        body.insert("error".to_owned(), error.as_str().into());
    }
    body.insert(
        "error_description".to_owned(),
        rejection.description().into(),
    );
    (
        rejection.status(),
        [
            (WWW_AUTHENTICATE, challenge),
            (CONTENT_TYPE, HeaderValue::from_static("application/json")),
            (CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        serde_json::Value::Object(body).to_string(),
    )
        .into_response()
}

/// The wall clock in seconds since the epoch (a broken one reads as the far future, so that
/// every token looks expired rather than none).
fn now_secs() -> u64 {
    use portcullis_core::clock::Clock as _;
    portcullis_core::clock::SystemClock.unix_secs()
}
