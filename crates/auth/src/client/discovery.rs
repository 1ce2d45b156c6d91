//! From an upstream's URL (and its 401 challenge) to its authorization server's endpoints:
//! protected resource metadata (RFC 9728), then authorization server metadata (RFC 8414, or
//! OpenID Connect Discovery), as the MCP authorization spec (2025-11-25) orders them.
//!
//! Everything here is the upstream's or its authorization server's word. Every URL is fetched
//! through the [`Fetcher`]'s rules; the metadata must be about this very upstream (`resource`)
//! and come from the very server it names (`issuer`); the server must support S256 PKCE; and
//! every endpoint used later must be https (plain http only to loopback with
//! `allow_loopback`) without a fragment.

use serde::Deserialize;
use url::{Host, Url};

use super::ClientError;
use super::challenge::{Challenge, parse_www_authenticate};
use crate::fetch::{Destinations, Fetcher, Reach, shown};
use crate::metadata::{
    MetadataOrder, ProtectedResourceMetadata, WELL_KNOWN, authorization_server_metadata_urls,
    resource_metadata_url,
};

/// Metadata documents are a few kilobytes; anything far larger is not metadata.
const METADATA_LIMIT: usize = 64 * 1024;

/// An authorization server's metadata (RFC 8414 §2): what the client uses of it, checked.
/// Only discovery builds one.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AuthorizationServerMetadata {
    /// Exactly the URL the protected resource metadata named.
    pub issuer: String,
    /// Absent for a server that offers no grant through the browser.
    pub authorization_endpoint: Option<Url>,
    pub token_endpoint: Url,
    pub revocation_endpoint: Option<Url>,
    /// Kept for dynamic client registration; not used here.
    pub registration_endpoint: Option<Url>,
    pub grant_types_supported: Option<Vec<String>>,
    pub scopes_supported: Option<Vec<String>>,
    /// Includes `S256`, or discovery would have failed.
    pub code_challenge_methods_supported: Vec<String>,
    pub token_endpoint_auth_methods_supported: Option<Vec<String>>,
}

/// The document as served: every member optional, so that what is missing gets its own error.
#[derive(Deserialize)]
pub(crate) struct RawAuthorizationServerMetadata {
    issuer: String,
    authorization_endpoint: Option<String>,
    token_endpoint: Option<String>,
    revocation_endpoint: Option<String>,
    registration_endpoint: Option<String>,
    grant_types_supported: Option<Vec<String>>,
    scopes_supported: Option<Vec<String>>,
    code_challenge_methods_supported: Option<Vec<String>>,
    token_endpoint_auth_methods_supported: Option<Vec<String>>,
}

/// What discovery found for one upstream, every check passed. Only [`discover`] builds one.
#[derive(Debug, Clone)]
pub struct Discovered {
    resource: String,
    resource_metadata_url: Url,
    resource_metadata: ProtectedResourceMetadata,
    authorization_server_metadata_url: Url,
    authorization_server: AuthorizationServerMetadata,
    scopes: Vec<String>,
}

impl Discovered {
    /// The upstream's canonical URI: the `resource` to ask tokens for (RFC 8707).
    pub fn resource(&self) -> &str {
        &self.resource
    }

    /// The scopes to ask for (the MCP spec's scope selection): the challenge's `scope`, else
    /// the metadata's `scopes_supported`; empty when neither names any.
    pub fn scopes(&self) -> &[String] {
        &self.scopes
    }

    pub fn resource_metadata(&self) -> &ProtectedResourceMetadata {
        &self.resource_metadata
    }

    pub fn resource_metadata_url(&self) -> &Url {
        &self.resource_metadata_url
    }

    pub fn authorization_server(&self) -> &AuthorizationServerMetadata {
        &self.authorization_server
    }

    pub fn authorization_server_metadata_url(&self) -> &Url {
        &self.authorization_server_metadata_url
    }
}

/// Asks `upstream` (its MCP endpoint URL) without a token for its challenge, as an MCP client
/// opening its event stream: a 401 (or 403) with a `Bearer` challenge is what
/// [`discover`] should start from. `None` when it answers otherwise (it lets the stream open
/// without a token, say), or cannot be reached: discovery then tries the well-known URLs.
/// The body is never read.
pub async fn probe_challenge(upstream: &Url, reach: Reach) -> Option<Challenge> {
    let fetcher = Fetcher::upstream(reach).with_timeout(PROBE_TIMEOUT);
    match fetcher.probe(upstream).await {
        Ok(fetched)
            if matches!(fetched.status.as_u16(), 401 | 403)
                && fetched.www_authenticate.is_some() =>
        {
            let challenge = parse_www_authenticate(fetched.www_authenticate.as_deref()?);
            tracing::debug!(upstream = %shown(upstream), metadata = ?challenge.resource_metadata.as_ref().map(shown), "the upstream's challenge");
            Some(challenge)
        }
        Ok(fetched) => {
            tracing::debug!(upstream = %shown(upstream), status = fetched.status.as_u16(), "no challenge from the upstream");
            None
        }
        Err(error) => {
            tracing::debug!(upstream = %shown(upstream), %error, "the upstream could not be probed");
            None
        }
    }
}

/// A probe waits this long for the status line.
const PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Discovers the authorization server of `upstream` (its MCP endpoint URL), using its 401
/// challenge when there was one, through a fetcher with `reach`.
pub async fn discover(
    upstream: &Url,
    challenge: Option<&Challenge>,
    reach: Reach,
) -> Result<Discovered, ClientError> {
    discover_with(&Fetcher::upstream(reach), upstream, challenge).await
}

/// [`discover`] through `fetcher` (another deadline, or extra trusted CAs).
pub async fn discover_with(
    fetcher: &Fetcher,
    upstream: &Url,
    challenge: Option<&Challenge>,
) -> Result<Discovered, ClientError> {
    let reach = reach_of(fetcher);
    let resource = canonical_resource(upstream)?;
    let (resource_metadata_url, resource_metadata) =
        fetch_resource_metadata(fetcher, upstream, &resource, challenge).await?;
    let issuer = resource_metadata
        .authorization_servers
        .first()
        .ok_or_else(|| ClientError::NoAuthorizationServer {
            url: shown(&resource_metadata_url),
        })?
        .clone();
    let (authorization_server_metadata_url, authorization_server) =
        fetch_authorization_server_metadata(fetcher, &issuer, reach).await?;
    let scopes = challenge
        .and_then(|challenge| challenge.scope.clone())
        .filter(|scopes| !scopes.is_empty())
        .unwrap_or_else(|| resource_metadata.scopes_supported.clone());
    tracing::info!(
        upstream = %shown(upstream),
        issuer = ?issuer,
        resource_metadata = %shown(&resource_metadata_url),
        "discovered the upstream's authorization server"
    );
    Ok(Discovered {
        resource,
        resource_metadata_url,
        resource_metadata,
        authorization_server_metadata_url,
        authorization_server,
        scopes,
    })
}

pub(crate) fn reach_of(fetcher: &Fetcher) -> Reach {
    match fetcher.destinations() {
        Destinations::Upstream(reach) => reach,
        Destinations::Configured { allow_http } => Reach {
            allow_loopback: allow_http,
        },
    }
}

/// The canonical URI of an MCP server (MCP authorization spec, RFC 8707): scheme and host
/// lowercase (the URL parser does that), the default port dropped, no fragment; the path kept
/// as it is, except that a bare `/` is dropped; the query kept.
pub fn canonical_resource(upstream: &Url) -> Result<String, ClientError> {
    if !matches!(upstream.scheme(), "http" | "https") || !upstream.has_host() {
        return Err(ClientError::UnsupportedUrl {
            url: shown(upstream),
            what: "a scheme other than http or https",
        });
    }
    if !upstream.username().is_empty() || upstream.password().is_some() {
        return Err(ClientError::UnsupportedUrl {
            url: shown(upstream),
            what: "credentials",
        });
    }
    let mut canonical = upstream.origin().ascii_serialization();
    if upstream.path() != "/" {
        canonical.push_str(upstream.path());
    }
    if let Some(query) = upstream.query() {
        canonical.push('?');
        canonical.push_str(query);
    }
    Ok(canonical)
}

/// The protected resource metadata: at the challenge's `resource_metadata` if it named one
/// (and nowhere else: the server said where), else at the path-suffixed well-known URL and
/// then at the root one (RFC 9728 §3.1, MCP). Only a missing document (an error status) moves
/// on; the document must be about `resource`.
async fn fetch_resource_metadata(
    fetcher: &Fetcher,
    upstream: &Url,
    resource: &str,
    challenge: Option<&Challenge>,
) -> Result<(Url, ProtectedResourceMetadata), ClientError> {
    let candidates = match challenge.and_then(|challenge| challenge.resource_metadata.clone()) {
        Some(url) => vec![url],
        None => well_known_resource_metadata_urls(upstream)?,
    };
    let Some((url, document)) = first_document::<ProtectedResourceMetadata>(
        fetcher,
        &candidates,
        "protected resource metadata",
        "protected resource metadata document",
    )
    .await?
    else {
        return Err(ClientError::ResourceMetadataNotFound {
            resource: resource.to_owned(),
            tried: tried(&candidates),
        });
    };
    Ok((url.clone(), about_resource(url, document, resource)?))
}

/// The protected resource metadata `document` found at `url`, if it is about `resource`.
pub(crate) fn about_resource(
    url: &Url,
    document: ProtectedResourceMetadata,
    resource: &str,
) -> Result<ProtectedResourceMetadata, ClientError> {
    let found = Url::parse(&document.resource)
        .ok()
        .and_then(|found| canonical_resource(&found).ok());
    if found.as_deref() != Some(resource) {
        return Err(ClientError::ResourceMismatch {
            url: shown(url),
            expected: resource.to_owned(),
            found: document.resource,
        });
    }
    Ok(document)
}

/// The first of `candidates` that answers with a success status, parsed as `T`. An error
/// status means "not here" and moves on (logged at debug, naming `what`); a transport error or
/// a document that does not parse (as a `document`) stops the search: the server answered, and
/// answered wrong. `None` when no candidate had one.
async fn first_document<'a, T: serde::de::DeserializeOwned>(
    fetcher: &Fetcher,
    candidates: &'a [Url],
    what: &'static str,
    document: &'static str,
) -> Result<Option<(&'a Url, T)>, ClientError> {
    for candidate in candidates {
        let fetched = fetcher.get(candidate, METADATA_LIMIT).await?;
        if !fetched.status.is_success() {
            tracing::debug!(
                url = %shown(candidate),
                status = fetched.status.as_u16(),
                "no {what} here"
            );
            continue;
        }
        return Ok(Some((
            candidate,
            parse_document(candidate, &fetched.body, document)?,
        )));
    }
    Ok(None)
}

/// The path-suffixed well-known URL of `upstream` when it has a path, then the root one.
pub(crate) fn well_known_resource_metadata_urls(upstream: &Url) -> Result<Vec<Url>, ClientError> {
    let (suffixed, _) =
        resource_metadata_url(upstream).map_err(|what| ClientError::UnsupportedUrl {
            url: shown(upstream),
            what,
        })?;
    let root = format!("{}{WELL_KNOWN}", upstream.origin().ascii_serialization());
    let mut urls = Vec::new();
    for candidate in [suffixed, root] {
        let url = Url::parse(&candidate).map_err(|error| ClientError::InvalidUrl {
            url: candidate.clone(),
            reason: error.to_string(),
        })?;
        if !urls.contains(&url) {
            urls.push(url);
        }
    }
    Ok(urls)
}

/// The authorization server's metadata, in the MCP spec's order (RFC 8414 first). The first
/// document found decides: it must name exactly `issuer` (RFC 8414 §3.3), or one server's
/// metadata could stand in for another's.
pub(crate) async fn fetch_authorization_server_metadata(
    fetcher: &Fetcher,
    issuer: &str,
    reach: Reach,
) -> Result<(Url, AuthorizationServerMetadata), ClientError> {
    let issuer_url = Url::parse(issuer).map_err(|error| ClientError::InvalidUrl {
        url: issuer.to_owned(),
        reason: error.to_string(),
    })?;
    if issuer_url.query().is_some() || issuer_url.fragment().is_some() {
        // RFC 8414 §2: an issuer identifier has no query or fragment.
        return Err(ClientError::UnsupportedUrl {
            url: shown(&issuer_url),
            what: "a query or fragment (it is an issuer)",
        });
    }
    let candidates =
        authorization_server_metadata_urls(issuer, &issuer_url, MetadataOrder::OAuthFirst);
    let Some((url, raw)) = first_document::<RawAuthorizationServerMetadata>(
        fetcher,
        &candidates,
        "authorization server metadata",
        "authorization server metadata document",
    )
    .await?
    else {
        return Err(ClientError::MetadataNotFound {
            issuer: issuer.to_owned(),
            tried: tried(&candidates),
        });
    };
    Ok((url.clone(), from_issuer(url, raw, issuer, reach)?))
}

/// The authorization server metadata found at `url`, if it names exactly `issuer`, checked.
pub(crate) fn from_issuer(
    url: &Url,
    raw: RawAuthorizationServerMetadata,
    issuer: &str,
    reach: Reach,
) -> Result<AuthorizationServerMetadata, ClientError> {
    if raw.issuer != issuer {
        return Err(ClientError::IssuerMismatch {
            url: shown(url),
            expected: issuer.to_owned(),
            found: raw.issuer,
        });
    }
    checked_metadata(raw, reach)
}

fn checked_metadata(
    raw: RawAuthorizationServerMetadata,
    reach: Reach,
) -> Result<AuthorizationServerMetadata, ClientError> {
    let issuer = raw.issuer;
    let code_challenge_methods_supported = raw.code_challenge_methods_supported.unwrap_or_default();
    if !code_challenge_methods_supported
        .iter()
        .any(|method| method == "S256")
    {
        return Err(ClientError::NoPkce { issuer });
    }
    let endpoint = |name: &'static str, value: Option<String>| {
        value
            .map(|value| checked_endpoint(name, &value, reach))
            .transpose()
    };
    let token_endpoint = endpoint("token_endpoint", raw.token_endpoint)?.ok_or_else(|| {
        ClientError::MissingEndpoint {
            issuer: issuer.clone(),
            endpoint: "token_endpoint",
        }
    })?;
    Ok(AuthorizationServerMetadata {
        authorization_endpoint: endpoint("authorization_endpoint", raw.authorization_endpoint)?,
        token_endpoint,
        revocation_endpoint: endpoint("revocation_endpoint", raw.revocation_endpoint)?,
        registration_endpoint: endpoint("registration_endpoint", raw.registration_endpoint)?,
        grant_types_supported: raw.grant_types_supported,
        scopes_supported: raw.scopes_supported,
        code_challenge_methods_supported,
        token_endpoint_auth_methods_supported: raw.token_endpoint_auth_methods_supported,
        issuer,
    })
}

/// An endpoint from the metadata: a URL, https (plain http only to a loopback host with
/// `allow_loopback`), without fragment (RFC 6749 §3.1) or credentials. Where it leads is
/// checked again by the fetcher when it is used; the authorization endpoint is never fetched
/// by us (the person's browser goes there), so this is its only check.
pub(crate) fn checked_endpoint(
    name: &'static str,
    value: &str,
    reach: Reach,
) -> Result<Url, ClientError> {
    let url = Url::parse(value).map_err(|error| ClientError::InvalidUrl {
        url: value.to_owned(),
        reason: error.to_string(),
    })?;
    let refuse = |reason| ClientError::InvalidEndpoint {
        endpoint: name,
        url: shown(&url),
        reason,
    };
    match url.scheme() {
        "https" => {}
        "http" if reach.allow_loopback && is_loopback_host(&url) => {}
        "http" => {
            return Err(refuse(
                "it must use https (plain http only to loopback, with `allow_loopback`)",
            ));
        }
        _ => return Err(refuse("it must use https")),
    }
    if url.fragment().is_some() {
        return Err(refuse("it has a fragment"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(refuse("it has credentials"));
    }
    Ok(url)
}

fn is_loopback_host(url: &Url) -> bool {
    match url.host() {
        Some(Host::Ipv4(address)) => address.is_loopback(),
        Some(Host::Ipv6(address)) => address.is_loopback(),
        Some(Host::Domain(domain)) => domain == "localhost",
        None => false,
    }
}

/// A JSON document, its error without the document's values (serde's messages quote them).
pub(crate) fn parse_document<T: serde::de::DeserializeOwned>(
    url: &Url,
    body: &[u8],
    what: &'static str,
) -> Result<T, ClientError> {
    serde_json::from_slice(body).map_err(|error| ClientError::InvalidDocument {
        url: shown(url),
        what,
        reason: json_error(&error),
    })
}

/// A JSON error as its kind and position only: serde_json's message may quote a value, and a
/// value may be a token.
pub(crate) fn json_error(error: &serde_json::Error) -> String {
    let message = error.to_string();
    if message.starts_with("missing field") {
        // Names the field, never a value.
        return message;
    }
    let kind = match error.classify() {
        serde_json::error::Category::Io => "unreadable",
        serde_json::error::Category::Syntax => "not JSON",
        serde_json::error::Category::Data => "a member missing or of the wrong type",
        serde_json::error::Category::Eof => "cut short",
    };
    format!("{kind} (line {}, column {})", error.line(), error.column())
}

fn tried(candidates: &[Url]) -> String {
    candidates
        .iter()
        .map(|candidate| format!("`{}`", shown(candidate)))
        .collect::<Vec<_>>()
        .join(", ")
}
