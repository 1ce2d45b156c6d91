//! Why discovery or a grant failed.
//!
//! Errors name URLs (without query) and the authorization server's error codes; text the
//! server wrote (`error_description`) is kept printable, short, and scrubbed of every secret
//! the request carried. No token, code, verifier or client secret is part of any error.

use crate::FetchError;

/// Discovery, or a request to the authorization server, failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The request never got an answer we could use: a URL refused by the fetcher's rules,
    /// a network failure, a timeout, an oversized body.
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error("`{url}` answered with http status {status}")]
    Status { url: String, status: u16 },
    #[error("`{url}` is not a valid url: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("`{url}` must not contain {what}")]
    UnsupportedUrl { url: String, what: &'static str },
    #[error("`{url}` is not a valid {what}: {reason}")]
    InvalidDocument {
        url: String,
        what: &'static str,
        reason: String,
    },
    #[error("no protected resource metadata found for `{resource}` (tried {tried})")]
    ResourceMetadataNotFound { resource: String, tried: String },
    /// RFC 9728 §3.3: metadata for another resource must not be used for this one, or one
    /// server could send our tokens' audience elsewhere.
    #[error("the protected resource metadata at `{url}` is for `{found}`, not for `{expected}`")]
    ResourceMismatch {
        url: String,
        expected: String,
        found: String,
    },
    #[error("the protected resource metadata at `{url}` names no authorization server")]
    NoAuthorizationServer { url: String },
    #[error("no authorization server metadata found for `{issuer}` (tried {tried})")]
    MetadataNotFound { issuer: String, tried: String },
    #[error("the metadata at `{url}` names issuer `{found}`, not `{expected}`")]
    IssuerMismatch {
        url: String,
        expected: String,
        found: String,
    },
    /// The MCP authorization spec: without S256 PKCE support the client must not proceed.
    #[error(
        "the authorization server `{issuer}` does not support PKCE with S256 \
         (`code_challenge_methods_supported`), which MCP requires"
    )]
    NoPkce { issuer: String },
    #[error("the metadata of `{issuer}` has no `{endpoint}`")]
    MissingEndpoint {
        issuer: String,
        endpoint: &'static str,
    },
    #[error("the `{endpoint}` `{url}` is refused: {reason}")]
    InvalidEndpoint {
        endpoint: &'static str,
        url: String,
        reason: &'static str,
    },
    /// A client registration is only ever used with the authorization server it was made
    /// with: otherwise an upstream could point us at its own server and collect our secret.
    #[error(
        "the client is registered with `{registered}`, but the upstream's authorization server \
         is `{discovered}`"
    )]
    UnregisteredIssuer {
        registered: String,
        discovered: String,
    },
    #[error("`{scope}` is not a valid scope (RFC 6749 §3.3)")]
    InvalidScope { scope: String },
    #[error("`{resource}` is not a valid resource indicator (RFC 8707): {reason}")]
    InvalidResource {
        resource: String,
        reason: &'static str,
    },
    /// The authorization server refused the grant (`invalid_grant`): the code, refresh token
    /// or subject token was revoked, expired or already used. Only a new authorization helps.
    #[error(
        "the authorization server at `{url}` refused the grant (`{error}`{}): it was revoked \
         or has expired, re-authorise",
        suffix(.description)
    )]
    ReauthorizationRequired {
        url: String,
        error: String,
        description: Option<String>,
    },
    /// Any other OAuth error response (`invalid_client`, `invalid_scope`, ...): our
    /// registration or request is wrong, and re-authorising would not help.
    #[error(
        "the authorization server at `{url}` refused the request (`{error}`{})",
        suffix(.description)
    )]
    Refused {
        url: String,
        error: String,
        description: Option<String>,
    },
    #[error("`{url}` answered with an unreadable token response: {reason}")]
    InvalidTokenResponse { url: String, reason: String },
}

impl ClientError {
    /// Whether the grant is gone (revoked or expired) and only a new authorization helps,
    /// as opposed to a transport failure (worth a retry) or a misconfiguration.
    pub fn requires_reauthorization(&self) -> bool {
        matches!(self, Self::ReauthorizationRequired { .. })
    }

    /// Whether the request failed on the way (refused URL, network, timeout, size) rather
    /// than being answered.
    pub fn is_transport(&self) -> bool {
        matches!(self, Self::Fetch(_))
    }
}

fn suffix(description: &Option<String>) -> String {
    description
        .as_deref()
        .map(|description| format!(": {description}"))
        .unwrap_or_default()
}
