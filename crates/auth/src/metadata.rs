//! Protected Resource Metadata (RFC 9728): the document that tells an MCP client which
//! authorization server issues tokens for this resource, where it is served, and the router
//! that serves it; and where an authorization server's own metadata lives (RFC 8414, OpenID
//! Connect Discovery), for the resource server and the client alike.

use axum::Router;
use axum::body::Bytes;
use axum::http::header::{ACCESS_CONTROL_ALLOW_ORIGIN, CONTENT_TYPE};
use axum::response::IntoResponse;
use axum::routing::get;
use portcullis_core::ResourceServerSettings;
use serde::{Deserialize, Serialize};
use url::Url;

use crate::AuthError;

/// The well-known path of the metadata (RFC 9728 §3).
pub(crate) const WELL_KNOWN: &str = "/.well-known/oauth-protected-resource";

/// The metadata document (RFC 9728 §2), as served, and as read from an upstream (where every
/// member but `resource` may be missing, and unknown members are ignored).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProtectedResourceMetadata {
    pub resource: String,
    #[serde(default)]
    pub authorization_servers: Vec<String>,
    /// Omitted when empty: an empty list would tell a client to ask for no scope at all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes_supported: Vec<String>,
    /// Only the `Authorization` header: tokens in a body or query end up in logs.
    #[serde(default)]
    pub bearer_methods_supported: Vec<String>,
}

/// The document, where it lives, and its bytes, computed once.
#[derive(Debug, Clone)]
pub(crate) struct MetadataEndpoint {
    pub(crate) document: ProtectedResourceMetadata,
    /// Where clients fetch it: the `resource_metadata` of every challenge.
    pub(crate) url: String,
    /// The path-suffixed route (RFC 9728 §3.1); `None` when the resource has no path.
    pub(crate) suffixed_path: Option<String>,
    body: Bytes,
}

impl MetadataEndpoint {
    pub(crate) fn new(settings: &ResourceServerSettings) -> Result<Self, AuthError> {
        let resource = Url::parse(&settings.resource).map_err(|error| AuthError::InvalidUrl {
            url: settings.resource.clone(),
            reason: error.to_string(),
        })?;
        let (url, suffixed_path) = metadata_location(&resource)?;
        let document = ProtectedResourceMetadata {
            resource: settings.resource.clone(),
            authorization_servers: vec![settings.issuer.clone()],
            scopes_supported: settings.scopes_supported.clone(),
            bearer_methods_supported: vec!["header".to_owned()],
        };
        let body = serde_json::to_vec(&document)
            .map(Bytes::from)
            .map_err(|error| AuthError::InvalidDocument {
                url: url.clone(),
                what: "protected resource metadata",
                reason: error.to_string(),
            })?;
        Ok(Self {
            document,
            url,
            suffixed_path,
            body,
        })
    }

    /// A router serving the document at the well-known path, and at the path-suffixed one
    /// that RFC 9728 §3.1 derives from the resource. Both, because clients differ in which
    /// they try first; neither needs a token.
    pub(crate) fn router<S>(&self) -> Router<S>
    where
        S: Clone + Send + Sync + 'static,
    {
        let body = self.body.clone();
        let serve = move || {
            let body = body.clone();
            async move {
                (
                    // A public document: browser-based clients (the MCP Inspector) read it
                    // cross-origin.
                    [
                        (CONTENT_TYPE, "application/json"),
                        (ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
                    ],
                    body,
                )
                    .into_response()
            }
        };
        let router = Router::new().route(WELL_KNOWN, get(serve.clone()));
        match &self.suffixed_path {
            Some(path) => router.route(path, get(serve)),
            None => router,
        }
    }
}

/// Where the resource server serves the metadata of `resource`: its URL and the route path
/// (see [`resource_metadata_url`]).
pub(crate) fn metadata_location(resource: &Url) -> Result<(String, Option<String>), AuthError> {
    let refuse = |what| AuthError::UnsupportedUrl {
        url: resource.to_string(),
        what,
    };
    // The router takes the path as a route: a segment that axum reads as a capture or a
    // wildcard would make it panic, so such a resource is refused here instead.
    if resource
        .path_segments()
        .into_iter()
        .flatten()
        .any(|segment| segment.starts_with([':', '*']) || segment.contains(['{', '}']))
    {
        return Err(refuse("a path segment starting with `:` or `*`"));
    }
    resource_metadata_url(resource).map_err(refuse)
}

/// The metadata URL of a resource (RFC 9728 §3.1): `/.well-known/oauth-protected-resource`
/// inserted between the host and the path, so `http://host:port/mcp` has its metadata at
/// `http://host:port/.well-known/oauth-protected-resource/mcp`. Also returns the path-suffixed
/// route path (`None` for a resource without a path). The error says what the resource must
/// not have.
pub(crate) fn resource_metadata_url(
    resource: &Url,
) -> Result<(String, Option<String>), &'static str> {
    if !matches!(resource.scheme(), "http" | "https") || !resource.has_host() {
        return Err("a scheme other than http or https");
    }
    if resource.fragment().is_some() {
        // RFC 8707 §2: a resource indicator has no fragment.
        return Err("a fragment");
    }
    let path = match resource.path() {
        // "Any terminating slash following the host component MUST be removed."
        "/" => None,
        path => Some(format!("{WELL_KNOWN}{path}")),
    };
    let query = resource
        .query()
        .map(|query| format!("?{query}"))
        .unwrap_or_default();
    let url = format!(
        "{}{}{query}",
        resource.origin().ascii_serialization(),
        path.as_deref().unwrap_or(WELL_KNOWN)
    );
    Ok((url, path))
}

/// Which authorization server metadata location is tried first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MetadataOrder {
    /// OpenID Connect discovery (path appended), RFC 8414, then OpenID Connect with the path
    /// inserted: the resource server's order, for issuers that are usually OpenID providers.
    OpenIdFirst,
    /// RFC 8414, then OpenID Connect with the path inserted, then appended: the order the MCP
    /// authorization spec (2025-11-25) prescribes for clients.
    OAuthFirst,
}

/// The metadata locations of an issuer, in `order`. For an issuer without a path the two
/// OpenID Connect forms are the same URL, tried once.
pub(crate) fn authorization_server_metadata_urls(
    issuer_text: &str,
    issuer: &Url,
    order: MetadataOrder,
) -> Vec<Url> {
    let origin = issuer.origin().ascii_serialization();
    let path = issuer.path().trim_end_matches('/');
    let oauth = format!("{origin}/.well-known/oauth-authorization-server{path}");
    let oidc_appended = format!(
        "{}/.well-known/openid-configuration",
        issuer_text.trim_end_matches('/')
    );
    let oidc_inserted =
        (!path.is_empty()).then(|| format!("{origin}/.well-known/openid-configuration{path}"));
    let candidates = match order {
        MetadataOrder::OpenIdFirst => [Some(oidc_appended), Some(oauth), oidc_inserted],
        MetadataOrder::OAuthFirst => [Some(oauth), oidc_inserted, Some(oidc_appended)],
    };
    let mut urls: Vec<Url> = Vec::new();
    for candidate in candidates.iter().flatten() {
        if let Ok(url) = Url::parse(candidate)
            && !urls.contains(&url)
        {
            urls.push(url);
        }
    }
    urls
}

#[cfg(test)]
mod tests;
