//! Protected Resource Metadata (RFC 9728): the document that tells an MCP client which
//! authorization server issues tokens for this resource, where it is served, and the router
//! that serves it.

use axum::Router;
use axum::body::Bytes;
use axum::http::header::{ACCESS_CONTROL_ALLOW_ORIGIN, CONTENT_TYPE};
use axum::response::IntoResponse;
use axum::routing::get;
use portcullis_core::ResourceServerSettings;
use serde::Serialize;
use url::Url;

use crate::AuthError;

/// The well-known path of the metadata (RFC 9728 §3).
pub(crate) const WELL_KNOWN: &str = "/.well-known/oauth-protected-resource";

/// The metadata document (RFC 9728 §2), as served.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProtectedResourceMetadata {
    pub resource: String,
    pub authorization_servers: Vec<String>,
    /// Omitted when empty: an empty list would tell a client to ask for no scope at all.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub scopes_supported: Vec<String>,
    /// Only the `Authorization` header: tokens in a body or query end up in logs.
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

/// The metadata URL of a resource (RFC 9728 §3.1): `/.well-known/oauth-protected-resource`
/// inserted between the host and the path, so `http://host:port/mcp` has its metadata at
/// `http://host:port/.well-known/oauth-protected-resource/mcp`. Also returns the route path.
pub(crate) fn metadata_location(resource: &Url) -> Result<(String, Option<String>), AuthError> {
    let refuse = |what| AuthError::UnsupportedUrl {
        url: resource.to_string(),
        what,
    };
    if !matches!(resource.scheme(), "http" | "https") || !resource.has_host() {
        return Err(refuse("a scheme other than http or https"));
    }
    if resource.fragment().is_some() {
        // RFC 8707 §2: a resource indicator has no fragment.
        return Err(refuse("a fragment"));
    }
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

#[cfg(test)]
mod tests;
