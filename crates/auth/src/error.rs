//! Why a resource server could not be set up (its settings, or its issuer's metadata and keys),
//! and why a fetch was refused or failed.
//!
//! `AuthError`s happen at start (and are logged on a failed key refresh), never per request: a
//! request that fails gets a [`crate::Rejection`]. They name URLs, never a token.

use std::net::IpAddr;
use std::time::Duration;

use crate::AddressRange;

/// The resource server could not be set up from its settings and its issuer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    #[error("`{url}` is not a valid url: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("`{url}` must not contain {what}")]
    UnsupportedUrl { url: String, what: &'static str },
    #[error(transparent)]
    Fetch(#[from] FetchError),
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
}

/// A fetch that was refused or failed: which rule refused which URL, or what went wrong on the
/// way. URLs are shown without query, fragment or credentials; no request body, header or
/// response body is ever part of one, so no token or secret is either.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    #[error("`{url}` is not a valid url: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("`{url}` must use https: {allowed}")]
    InsecureUrl { url: String, allowed: &'static str },
    #[error("`{url}` must not contain {what}")]
    UnsupportedUrl { url: String, what: &'static str },
    #[error("refused `{url}`: `{host}` is the name of a cloud metadata service")]
    MetadataHost { url: String, host: String },
    #[error("refused `{url}`: it leads to {address}, {range}")]
    ForbiddenAddress {
        url: String,
        address: IpAddr,
        range: AddressRange,
    },
    #[error("refused `{url}`: plain http is allowed only to loopback, and it leads to {address}")]
    PlainHttpNotLoopback { url: String, address: IpAddr },
    #[error("`{host}` in `{url}` could not be resolved: {reason}")]
    Resolve {
        url: String,
        host: String,
        reason: String,
    },
    #[error("fetching `{url}` failed: {reason}")]
    Fetch { url: String, reason: String },
    #[error("fetching `{url}` took longer than {limit:?}")]
    Timeout { url: String, limit: Duration },
    #[error("`{url}` answered with more than {limit} bytes")]
    TooLarge { url: String, limit: usize },
    #[error("`{from}` redirected to `{to}`, which changes the scheme")]
    Redirect { from: String, to: String },
    #[error(
        "`{url}` answered a post with a redirect, which is not followed: it would carry the \
         request's credentials elsewhere"
    )]
    RedirectedPost { url: String },
    #[error("`{url}` redirected more than {limit} times")]
    TooManyRedirects { url: String, limit: usize },
    #[error("https is unavailable: {reason}")]
    Tls { reason: String },
}
