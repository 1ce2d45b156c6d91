//! Why a resource server could not be set up: its settings, or its issuer's metadata and keys.
//!
//! These errors happen at start (and are logged on a failed key refresh), never per request: a
//! request that fails gets a [`crate::Rejection`]. They name URLs, never a token.

/// The resource server could not be set up from its settings and its issuer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    #[error("`{url}` is not a valid url: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error(
        "`{url}` must use https: plain http is allowed only with `allow_http` (loopback issuers)"
    )]
    InsecureUrl { url: String },
    #[error("`{url}` must not contain {what}")]
    UnsupportedUrl { url: String, what: &'static str },
    #[error("fetching `{url}` failed: {reason}")]
    Fetch { url: String, reason: String },
    #[error("fetching `{url}` took longer than {secs} s")]
    Timeout { url: String, secs: u64 },
    #[error("`{url}` answered with more than {limit} bytes")]
    TooLarge { url: String, limit: usize },
    #[error("`{from}` redirected to `{to}`, which changes the scheme")]
    Redirect { from: String, to: String },
    #[error("`{url}` redirected more than {limit} times")]
    TooManyRedirects { url: String, limit: usize },
    #[error("`{url}` answered with http status {status}")]
    Status { url: String, status: u16 },
    #[error("no authorization server metadata found for issuer `{issuer}` (tried {tried})")]
    MetadataNotFound { issuer: String, tried: String },
    #[error("`{url}` is not a valid {what}: {reason}")]
    InvalidDocument {
        url: String,
        what: &'static str,
        reason: String,
    },
    #[error("the metadata at `{url}` names issuer `{found}`, not the configured `{expected}`")]
    IssuerMismatch {
        url: String,
        expected: String,
        found: String,
    },
    #[error("the metadata at `{url}` has no `jwks_uri`")]
    NoJwksUri { url: String },
    #[error("the key set at `{url}` has no key usable for verifying tokens")]
    NoUsableKeys { url: String },
    #[error("https is unavailable: {reason}")]
    Tls { reason: String },
}
