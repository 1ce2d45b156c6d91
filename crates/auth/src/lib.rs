//! Portcullis as an OAuth 2.1 resource server (MCP authorization, 2025-06-18 and 2025-11-25):
//! it discovers its issuer, validates the bearer tokens its HTTP clients present, maps their
//! claims to an identity envelope, and serves the protected resource metadata (RFC 9728) that
//! tells clients where to get a token. And as an OAuth client of an upstream's authorization
//! server (`client`): discovery from the upstream's 401, PKCE, grants, revocation and token
//! exchange, every URL the upstream supplied fetched under rules that keep it off private,
//! loopback and metadata addresses.
//!
//! Key design decision: the token's own header never decides how it is checked. Keys come
//! only from the issuer's JWKS (never from `jwk`, `jku` or `x5u` in the token), each key fixes
//! the asymmetric algorithms it verifies, and jsonwebtoken is used for the signature alone:
//! issuer, audience, lifetime and every claim's type are checked here, against the caller's
//! clock, and a claim of an unexpected type rejects the token.
#![forbid(unsafe_code)]

mod client;
mod error;
mod fetch;
#[doc(hidden)]
pub mod fuzzing;
mod keys;
mod metadata;
mod middleware;
mod rejection;
mod server;
mod sign_in;
mod token;

pub use client::{
    AddressRange, AuthorizationServerMetadata, Challenge, ClientError, ClientRegistration,
    Discovered, Fetcher, OAuthClient, PendingAuthorization, Reach, Revoked, Secret, TokenHint,
    Tokens, canonical_resource, discover, discover_with, parse_www_authenticate, probe_challenge,
};
pub use error::{AuthError, FetchError};
pub use fetch::tls_client_config;
pub use metadata::ProtectedResourceMetadata;
pub use middleware::{InboundToken, require_bearer};
pub use rejection::{BearerError, RejectReason, Rejection};
pub use server::ResourceServer;
pub use sign_in::{SignIn, SignInError};

#[cfg(test)]
mod tests;
