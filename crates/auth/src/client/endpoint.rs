//! Requests to the authorization server's token and revocation endpoints, all through the
//! fetcher: the HTTP client oauth2 is handed, our own form POSTs (revocation, token exchange),
//! client authentication for the latter, and what either kind of request gets back, turned
//! into [`Tokens`] or a [`ClientError`] that carries no secret.

use axum::http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use oauth2::basic::{BasicErrorResponse, BasicTokenType};
use oauth2::{
    ExtraTokenFields, HttpRequest, HttpResponse, RequestTokenError, StandardTokenResponse,
    TokenResponse,
};
use serde::{Deserialize, Serialize};
use url::{Url, form_urlencoded};

use super::discovery::json_error;
use super::flow::Tokens;
use super::{ClientError, Secret};
use crate::FetchError;
use crate::fetch::{Fetched, Fetcher, shown};

/// Token responses hold a few tokens (a JWT access token, perhaps an ID token) of a few
/// kilobytes each.
const TOKEN_LIMIT: usize = 128 * 1024;
/// Longest `error_description` kept in an error.
const MAX_DESCRIPTION_LEN: usize = 200;
/// Longest `error` code kept in an error.
const MAX_CODE_LEN: usize = 64;

/// Why a request oauth2 made through us got no OAuth answer.
#[derive(Debug, thiserror::Error)]
pub(crate) enum EndpointFailure {
    #[error(transparent)]
    Fetch(FetchError),
    /// An error status without an OAuth error document (a proxy's 502, an HTML page).
    #[error("`{url}` answered with http status {status}")]
    Status { url: String, status: u16 },
}

/// The HTTP client oauth2 is given. A named type owning its (cheaply cloned) fetcher, with a
/// boxed `Send` future, rather than a closure borrowing it: the compiler cannot prove such a
/// closure's future `Send` for every lifetime, and the gateway runs these calls on a
/// multi-threaded runtime.
pub(crate) struct Oauth2Http(pub(crate) Fetcher);

type Oauth2Future<'c> = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<HttpResponse, EndpointFailure>> + Send + 'c>,
>;

impl<'c> oauth2::AsyncHttpClient<'c> for Oauth2Http {
    type Error = EndpointFailure;
    type Future = Oauth2Future<'c>;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(send_for_oauth2(&self.0, request))
    }
}

/// Its request (always a form POST to the token endpoint) sent by the fetcher, under the
/// fetcher's rules.
async fn send_for_oauth2(
    fetcher: &Fetcher,
    request: HttpRequest,
) -> Result<HttpResponse, EndpointFailure> {
    let url = Url::parse(&request.uri().to_string()).map_err(|error| {
        EndpointFailure::Fetch(FetchError::InvalidUrl {
            url: request.uri().path().to_owned(),
            reason: error.to_string(),
        })
    })?;
    let (parts, body) = request.into_parts();
    let fetched = fetcher
        .post_form(&url, &parts.headers, body, TOKEN_LIMIT)
        .await
        .map_err(EndpointFailure::Fetch)?;
    if !fetched.status.is_success() && !is_oauth_error(&fetched.body) {
        return Err(EndpointFailure::Status {
            url: shown(&url),
            status: fetched.status.as_u16(),
        });
    }
    let mut response = HttpResponse::new(fetched.body.to_vec());
    *response.status_mut() = fetched.status;
    if let Some(content_type) = fetched.content_type {
        response.headers_mut().insert(CONTENT_TYPE, content_type);
    }
    Ok(response)
}

/// How the client authenticates at the token and revocation endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ClientAuth {
    /// No secret: `client_id` in the body (a public client; PKCE protects the code).
    Public,
    /// `client_secret_basic` (RFC 6749 §2.3.1), the default of RFC 8414.
    Basic,
    /// `client_secret_post`, when the server offers it and not Basic.
    Body,
}

/// The client's identity as its own form POSTs send it.
pub(crate) struct Credentials<'a> {
    pub(crate) client_id: &'a str,
    pub(crate) client_secret: Option<&'a Secret>,
    pub(crate) auth: ClientAuth,
}

/// A form POST of ours (revocation, token exchange), the client authenticated as oauth2
/// would (id and secret form-encoded before Basic, RFC 6749 §2.3.1).
pub(crate) async fn post_form(
    fetcher: &Fetcher,
    url: &Url,
    credentials: &Credentials<'_>,
    mut params: Vec<(&'static str, String)>,
) -> Result<Fetched, ClientError> {
    let mut headers = HeaderMap::new();
    headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
    match (credentials.auth, credentials.client_secret) {
        (ClientAuth::Basic, Some(secret)) => {
            let encode = |text: &str| form_urlencoded::byte_serialize(text.as_bytes()).collect();
            let id: String = encode(credentials.client_id);
            let secret: String = encode(secret.expose());
            let mut value = HeaderValue::try_from(format!(
                "Basic {}",
                STANDARD.encode(format!("{id}:{secret}"))
            ))
            .map_err(|_| ClientError::InvalidUrl {
                url: shown(url),
                reason: "the client credentials do not fit in a header".to_owned(),
            })?;
            value.set_sensitive(true);
            headers.insert(AUTHORIZATION, value);
        }
        (ClientAuth::Body, Some(secret)) => {
            params.push(("client_id", credentials.client_id.to_owned()));
            params.push(("client_secret", secret.expose().to_owned()));
        }
        _ => params.push(("client_id", credentials.client_id.to_owned())),
    }
    let body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish()
        .into_bytes();
    Ok(fetcher.post_form(url, &headers, body, TOKEN_LIMIT).await?)
}

/// RFC 8693 §2.2.1: the token response of a token exchange, with the type of what was issued.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub(crate) struct ExchangeFields {
    #[serde(default)]
    issued_token_type: Option<String>,
}

impl ExtraTokenFields for ExchangeFields {}

/// The token types we accept from a token exchange: an access token, which a JWT may be.
const USABLE_ISSUED_TYPES: &[&str] = &[
    "urn:ietf:params:oauth:token-type:access_token",
    "urn:ietf:params:oauth:token-type:jwt",
];

/// The answer to a token exchange: the tokens, or why there are none.
pub(crate) fn exchange_response(
    url: &Url,
    fetched: &Fetched,
    secrets: &[&str],
) -> Result<Tokens, ClientError> {
    if fetched.status != StatusCode::OK {
        return Err(refusal(url, fetched, secrets));
    }
    let response: StandardTokenResponse<ExchangeFields, BasicTokenType> =
        serde_json::from_slice(&fetched.body).map_err(|error| {
            ClientError::InvalidTokenResponse {
                url: shown(url),
                reason: json_error(&error),
            }
        })?;
    if let Some(issued) = &response.extra_fields().issued_token_type
        && !USABLE_ISSUED_TYPES.contains(&issued.as_str())
    {
        return Err(ClientError::InvalidTokenResponse {
            url: shown(url),
            reason: format!(
                "it issued {:?}, not an access token",
                printable(issued, MAX_CODE_LEN * 2)
            ),
        });
    }
    tokens(url, &response)
}

/// The tokens of a successful token response.
pub(crate) fn tokens<R: TokenResponse<TokenType = BasicTokenType>>(
    url: &Url,
    response: &R,
) -> Result<Tokens, ClientError> {
    if response.access_token().secret().is_empty() {
        return Err(ClientError::InvalidTokenResponse {
            url: shown(url),
            reason: "an empty `access_token`".to_owned(),
        });
    }
    let token_type = match response.token_type() {
        BasicTokenType::Bearer => "Bearer".to_owned(),
        other => other.as_ref().to_owned(),
    };
    Ok(Tokens {
        access_token: Secret::new(response.access_token().secret().clone()),
        refresh_token: response
            .refresh_token()
            .map(|token| Secret::new(token.secret().clone())),
        expires_in: response.expires_in(),
        scopes: response
            .scopes()
            .map(|scopes| scopes.iter().map(|scope| scope.to_string()).collect()),
        token_type,
    })
}

/// An oauth2 request's failure as ours.
pub(crate) fn from_oauth2(
    url: &Url,
    error: RequestTokenError<EndpointFailure, BasicErrorResponse>,
    secrets: &[&str],
) -> ClientError {
    match error {
        RequestTokenError::ServerResponse(response) => oauth_error(
            url,
            response.error().as_ref(),
            response.error_description().map(String::as_str),
            secrets,
        ),
        RequestTokenError::Request(EndpointFailure::Fetch(error)) => ClientError::Fetch(error),
        RequestTokenError::Request(EndpointFailure::Status { url, status }) => {
            ClientError::Status { url, status }
        }
        // The body (which may hold a token) is dropped; the error names the member at fault.
        RequestTokenError::Parse(error, _body) => {
            let path = error.path().to_string();
            let reason = json_error(error.inner());
            ClientError::InvalidTokenResponse {
                url: shown(url),
                reason: match path.as_str() {
                    "." => reason,
                    path => format!("at `{path}`: {reason}"),
                },
            }
        }
        RequestTokenError::Other(message) => ClientError::InvalidTokenResponse {
            url: shown(url),
            reason: scrubbed(&message, secrets, MAX_DESCRIPTION_LEN),
        },
    }
}

/// An answer other than 200: the OAuth error it carries, or its status.
pub(crate) fn refusal(url: &Url, fetched: &Fetched, secrets: &[&str]) -> ClientError {
    match serde_json::from_slice::<BasicErrorResponse>(&fetched.body) {
        Ok(response) => oauth_error(
            url,
            response.error().as_ref(),
            response.error_description().map(String::as_str),
            secrets,
        ),
        Err(_) => ClientError::Status {
            url: shown(url),
            status: fetched.status.as_u16(),
        },
    }
}

/// An OAuth error response (RFC 6749 §5.2). `invalid_grant` means the grant itself is gone;
/// everything else is a refusal of this request.
pub(crate) fn oauth_error(
    url: &Url,
    code: &str,
    description: Option<&str>,
    secrets: &[&str],
) -> ClientError {
    let error = scrubbed(code, secrets, MAX_CODE_LEN);
    let description = description
        .map(|description| scrubbed(description, secrets, MAX_DESCRIPTION_LEN))
        .filter(|description| !description.is_empty());
    if code == "invalid_grant" {
        ClientError::ReauthorizationRequired {
            url: shown(url),
            error,
            description,
        }
    } else {
        ClientError::Refused {
            url: shown(url),
            error,
            description,
        }
    }
}

/// Whether an error body is an OAuth error document.
fn is_oauth_error(body: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .is_some_and(|document| {
            document
                .get("error")
                .is_some_and(serde_json::Value::is_string)
        })
}

/// Text the authorization server wrote, fit for an error: every secret the request carried
/// cut out (a server may echo what it was sent), then printable ASCII only, and short.
pub(crate) fn scrubbed(text: &str, secrets: &[&str], limit: usize) -> String {
    let mut text = text.to_owned();
    for secret in secrets {
        // Shorter strings are not secrets worth the false positives.
        if secret.len() >= 4 {
            text = text.replace(secret, "[redacted]");
        }
    }
    printable(&text, limit)
}

fn printable(text: &str, limit: usize) -> String {
    let mut kept: String = text
        .chars()
        .map(|c| {
            if c.is_ascii() && !c.is_ascii_control() {
                c
            } else {
                '?'
            }
        })
        .take(limit)
        .collect();
    if text.chars().count() > limit {
        kept.push('…');
    }
    kept
}
