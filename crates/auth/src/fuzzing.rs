//! What the fuzz targets (`fuzz/`, cargo-fuzz) drive: the checks of bearer tokens and of the
//! metadata documents an upstream and its authorization server serve, without a server or a
//! fetch, reachable from outside the crate without becoming its API. Hidden from the
//! documentation; nothing but `fuzz/` uses it.

use std::sync::Arc;

use portcullis_core::{IdentityEnvelope, ResourceServerSettings};
use url::Url;

use crate::client::discovery::{self, RawAuthorizationServerMetadata};
pub use crate::keys::KeySet;
use crate::token;
use crate::{
    AuthorizationServerMetadata, ClientError, ProtectedResourceMetadata, Reach, RejectReason,
    Rejection,
};

/// What [`crate::ResourceServer::authenticate`] decides of an `Authorization` header at
/// `now_secs`, with `keys` as the issuer's key set (a token naming another key is refused as
/// unknown, as after a refresh that did not find it).
pub fn authenticate(
    keys: &KeySet,
    settings: &ResourceServerSettings,
    authorization_header: Option<&str>,
    now_secs: u64,
) -> Result<Arc<IdentityEnvelope>, Rejection> {
    let token = token::bearer_token(authorization_header).map_err(Rejection::new)?;
    let header = token::unverified_header(token).map_err(Rejection::new)?;
    let key = keys
        .get(&header.kid)
        .ok_or_else(|| Rejection::new(RejectReason::UnknownKey))?;
    let claims = key
        .verify(token.as_str(), header.algorithm)
        .map_err(Rejection::new)?;
    token::accepted(&claims, settings, now_secs).0
}

/// The protected resource metadata served at `url` as `body`, read as discovery reads it for
/// the upstream whose canonical URI is `resource`.
pub fn resource_metadata(
    url: &Url,
    body: &[u8],
    resource: &str,
) -> Result<ProtectedResourceMetadata, ClientError> {
    let document = discovery::parse_document(url, body, "protected resource metadata document")?;
    discovery::about_resource(url, document, resource)
}

/// The authorization server metadata served at `url` as `body`, read as discovery reads it
/// for `issuer`.
pub fn authorization_server_metadata(
    url: &Url,
    body: &[u8],
    issuer: &str,
    reach: Reach,
) -> Result<AuthorizationServerMetadata, ClientError> {
    let raw: RawAuthorizationServerMetadata =
        discovery::parse_document(url, body, "authorization server metadata document")?;
    discovery::from_issuer(url, raw, issuer, reach)
}
