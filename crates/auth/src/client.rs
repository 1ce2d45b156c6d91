//! Portcullis as an OAuth client of an upstream MCP server's authorization server (MCP
//! authorization, 2025-11-25): discovery from the upstream's 401, then delegated tokens for it.
//!
//! Key design decision: everything an upstream supplies is hostile input. Its challenge, its
//! protected resource metadata and the authorization server metadata that points to decide
//! which URLs Portcullis fetches, so every fetch goes through one [`Fetcher`] that refuses
//! private, loopback, link-local (cloud metadata) and other non-public addresses after
//! resolving the name, and connects to the address it checked. The metadata must be about this
//! very upstream and come from the very server it names; the server must support S256 PKCE; a
//! client registration is only ever used with the issuer it was made with. No token, code,
//! verifier or client secret reaches an error, a log line or a `Debug`.
//!
//! A typical use:
//!
//! ```text
//! let challenge = parse_www_authenticate(header);           // from the upstream's 401
//! let discovered = discover(&upstream, Some(&challenge), reach).await?;
//! let client = OAuthClient::new(&discovered, registration, reach)?;
//! let (url, pending) = client.authorization_request(discovered.scopes(), discovered.resource())?;
//! // ... the person's browser comes back with `code` and `state` ...
//! if pending.matches_state(&state) {
//!     let tokens = client.exchange_code(pending, &code, discovered.resource()).await?;
//! }
//! ```

mod challenge;
pub(crate) mod discovery;
mod endpoint;
mod error;
mod flow;
mod secret;

pub use self::challenge::{Challenge, parse_www_authenticate};
pub use self::discovery::{
    AuthorizationServerMetadata, Discovered, canonical_resource, discover, discover_with,
    probe_challenge,
};
pub use self::error::ClientError;
pub use self::flow::{
    ClientRegistration, OAuthClient, PendingAuthorization, Revoked, TokenHint, Tokens,
};
pub use crate::fetch::{AddressRange, Fetcher, Reach};
pub use portcullis_credentials::Secret;

#[cfg(test)]
mod tests;
