//! Bounded HTTP requests: the issuer's public documents for the resource server, and an
//! upstream's metadata and its authorization server's endpoints for the client.
//!
//! One engine for both, told where it may go: to the configured issuer ([`Destinations::
//! Configured`], config already decided where that is), or to wherever an upstream pointed
//! ([`Destinations::Upstream`], public addresses only: see `address.rs`). Each request resolves
//! the host itself, checks every address, and connects to a checked address; there is no
//! second lookup between the check and the connect that a resolver could answer differently.
//! TLS verifies the certificate for the URL's host name (SNI too), not for the address.
//!
//! Every fetch has one deadline covering resolution, connection, redirects and body; bodies
//! have a size limit (an error, not a truncation); a GET follows at most three redirects, each
//! on the scheme it came from and each checked by the same rules; a POST follows none. TLS is
//! rustls with ring, whose provider is handed to the connector here rather than installed
//! process-wide, and the platform's certificate verifier (on Linux it loads the system's root
//! certificates, where `SSL_CERT_FILE` and `SSL_CERT_DIR` are honoured). No proxy is read from
//! the environment. URLs in errors and logs lose their query, fragment and credentials: a
//! query may carry an authorization code.

mod address;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::http::header::{ACCEPT, CONTENT_TYPE, HOST, LOCATION, USER_AGENT, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, HeaderValue, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls_platform_verifier::Verifier;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use url::{Host, Url};

pub use self::address::AddressRange;
use self::address::forbidden_range;
use crate::FetchError;

/// Redirects followed per fetch; providers redirect rarely, and never in loops we should chase.
const MAX_REDIRECTS: usize = 3;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The whole fetch of a document or a token, unless the caller sets another.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
const USER_AGENT_VALUE: &str = concat!("portcullis/", env!("CARGO_PKG_VERSION"));

/// How far requests to URLs an upstream supplied may reach.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reach {
    /// Loopback addresses, and plain http to a host that resolves to loopback only: for local
    /// development and tests. Everything else stays refused.
    pub allow_loopback: bool,
}

/// Where a fetcher may go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Destinations {
    /// The resource server's configured issuer, and what its metadata names: anywhere config
    /// points (an issuer on the private network is normal), over plain http only when
    /// `allow_http` (config allows that only for a loopback issuer).
    Configured { allow_http: bool },
    /// URLs an upstream supplied: public addresses only, https only (see [`Reach`]).
    Upstream(Reach),
}

/// A response: its status, its `Content-Type`, and its body (read for every status but a
/// followed redirect).
#[derive(Debug)]
pub(crate) struct Fetched {
    pub(crate) status: StatusCode,
    pub(crate) content_type: Option<HeaderValue>,
    /// The challenge of a 401 or 403 (`WWW-Authenticate`), when it is text.
    pub(crate) www_authenticate: Option<String>,
    pub(crate) body: Bytes,
}

/// A request the engine sends: a GET of a document, or a form POST to an endpoint.
struct Outgoing<'a> {
    method: Method,
    headers: &'a HeaderMap,
    body: Bytes,
    limit: usize,
    /// Stop at the status and headers: the body is not read (an event stream never ends).
    headers_only: bool,
}

impl Outgoing<'_> {
    /// How much of the body to read; `None`: none of it.
    fn body_limit(&self) -> Option<usize> {
        (!self.headers_only).then_some(self.limit)
    }
}

/// One hop's answer: a redirect to follow, or the response.
enum Hop {
    Redirect(Option<String>),
    Done(Fetched),
}

/// Bounded requests: to the resource server's configured issuer, or (built by
/// [`Fetcher::upstream`]) to URLs an upstream supplied, within [`Reach`]. Cheap to clone.
#[derive(Clone)]
pub struct Fetcher {
    /// Why https is unavailable (no system root certificates), reported on the first https
    /// fetch rather than at start, so that a loopback `http` issuer works without them.
    tls: Result<TlsConnector, String>,
    destinations: Destinations,
    timeout: Duration,
}

impl std::fmt::Debug for Fetcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fetcher")
            .field("destinations", &self.destinations)
            .field("timeout", &self.timeout)
            .field("tls", &self.tls.as_ref().map(|_| "rustls"))
            .finish()
    }
}

impl Fetcher {
    /// The resource server's fetcher. `extra_roots` are trusted beside the platform's roots
    /// (tests' own CA).
    pub(crate) fn configured(
        allow_http: bool,
        timeout: Duration,
        extra_roots: Vec<CertificateDer<'static>>,
    ) -> Self {
        Self {
            tls: tls_connector(extra_roots),
            destinations: Destinations::Configured { allow_http },
            timeout,
        }
    }

    /// A fetcher for URLs an upstream supplied, with a 10 s deadline per fetch.
    pub fn upstream(reach: Reach) -> Self {
        Self {
            tls: tls_connector(Vec::new()),
            destinations: Destinations::Upstream(reach),
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// The same fetcher with another deadline for each fetch (connect to last byte, redirects
    /// included).
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The same fetcher, trusting these CA certificates beside the platform's (a test or
    /// development authorization server's own CA).
    #[must_use]
    pub fn with_extra_roots(mut self, extra_roots: Vec<CertificateDer<'static>>) -> Self {
        self.tls = tls_connector(extra_roots);
        self
    }

    pub(crate) fn destinations(&self) -> Destinations {
        self.destinations
    }

    /// GETs `url`, following at most a few redirects, within the deadline.
    pub(crate) async fn get(&self, url: &Url, limit: usize) -> Result<Fetched, FetchError> {
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        let outgoing = Outgoing {
            method: Method::GET,
            headers: &headers,
            body: Bytes::new(),
            limit,
            headers_only: false,
        };
        self.bounded(url, self.follow(url, &outgoing)).await
    }

    /// GETs `url` as an MCP client opening its event stream would, without a token, and
    /// keeps the status and headers only: an upstream that wants a token answers 401 with
    /// its challenge. No redirect is followed.
    pub(crate) async fn probe(&self, url: &Url) -> Result<Fetched, FetchError> {
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_static("text/event-stream"));
        let outgoing = Outgoing {
            method: Method::GET,
            headers: &headers,
            body: Bytes::new(),
            limit: 0,
            headers_only: true,
        };
        let once = async {
            match self.hop(url, &outgoing).await? {
                Hop::Done(fetched) => Ok(fetched),
                Hop::Redirect(_) => Err(FetchError::Fetch {
                    url: shown(url),
                    reason: "it redirected, and a probe follows no redirect".to_owned(),
                }),
            }
        };
        self.bounded(url, once).await
    }

    /// POSTs a form to `url` with `headers` (`Accept`, client authentication), within the
    /// deadline. A redirect is an error: following it would send the body (a code, a refresh
    /// token, a client secret) wherever its `Location` points.
    pub(crate) async fn post_form(
        &self,
        url: &Url,
        headers: &HeaderMap,
        body: Vec<u8>,
        limit: usize,
    ) -> Result<Fetched, FetchError> {
        let mut headers = headers.clone();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        let outgoing = Outgoing {
            method: Method::POST,
            headers: &headers,
            body: Bytes::from(body),
            limit,
            headers_only: false,
        };
        let once = async {
            match self.hop(url, &outgoing).await? {
                Hop::Done(fetched) => Ok(fetched),
                Hop::Redirect(_) => Err(FetchError::RedirectedPost { url: shown(url) }),
            }
        };
        self.bounded(url, once).await
    }

    async fn bounded<F>(&self, url: &Url, fetch: F) -> Result<Fetched, FetchError>
    where
        F: Future<Output = Result<Fetched, FetchError>>,
    {
        match tokio::time::timeout(self.timeout, fetch).await {
            Ok(result) => result,
            Err(_elapsed) => Err(FetchError::Timeout {
                url: shown(url),
                limit: self.timeout,
            }),
        }
    }

    async fn follow(&self, url: &Url, outgoing: &Outgoing<'_>) -> Result<Fetched, FetchError> {
        let mut current = url.clone();
        for _ in 0..=MAX_REDIRECTS {
            match self.hop(&current, outgoing).await? {
                Hop::Done(fetched) => return Ok(fetched),
                Hop::Redirect(location) => {
                    current = redirect_target(&current, location.as_deref())?;
                }
            }
        }
        Err(FetchError::TooManyRedirects {
            url: shown(url),
            limit: MAX_REDIRECTS,
        })
    }

    /// One request to `url`, every rule checked before anything is sent: scheme, host, and the
    /// addresses it resolves to.
    async fn hop(&self, url: &Url, outgoing: &Outgoing<'_>) -> Result<Hop, FetchError> {
        check_url(url, self.destinations)?;
        let addresses = self.resolve(url).await?;
        let stream = connect(url, &addresses).await?;
        let request = request(url, outgoing)?;
        if url.scheme() == "https" {
            let connector = self.tls.as_ref().map_err(|reason| FetchError::Tls {
                reason: reason.clone(),
            })?;
            let name = server_name(url)?;
            let stream =
                connector
                    .connect(name, stream)
                    .await
                    .map_err(|error| FetchError::Fetch {
                        url: shown(url),
                        reason: portcullis_core::causes::with_causes(&error),
                    })?;
            exchange(url, stream, request, outgoing.body_limit()).await
        } else {
            exchange(url, stream, request, outgoing.body_limit()).await
        }
    }

    /// The addresses to connect to: the URL's literal address, or what its name resolves to,
    /// every one of them allowed.
    async fn resolve(&self, url: &Url) -> Result<Vec<SocketAddr>, FetchError> {
        let port = url.port_or_known_default().unwrap_or(443);
        let addresses: Vec<SocketAddr> = match url.host() {
            Some(Host::Ipv4(address)) => vec![SocketAddr::new(IpAddr::V4(address), port)],
            Some(Host::Ipv6(address)) => vec![SocketAddr::new(IpAddr::V6(address), port)],
            Some(Host::Domain(domain)) => {
                if matches!(self.destinations, Destinations::Upstream(_))
                    && address::is_metadata_hostname(domain)
                {
                    return Err(FetchError::MetadataHost {
                        url: shown(url),
                        host: domain.to_owned(),
                    });
                }
                let resolve_error = |reason: String| FetchError::Resolve {
                    url: shown(url),
                    host: domain.to_owned(),
                    reason,
                };
                let mut resolved: Vec<SocketAddr> = Vec::new();
                for address in tokio::net::lookup_host((domain, port))
                    .await
                    .map_err(|error| resolve_error(error.to_string()))?
                {
                    if !resolved.contains(&address) {
                        resolved.push(address);
                    }
                }
                if resolved.is_empty() {
                    return Err(resolve_error("no address".to_owned()));
                }
                resolved
            }
            None => {
                return Err(FetchError::InvalidUrl {
                    url: shown(url),
                    reason: "no host".to_owned(),
                });
            }
        };
        if let Destinations::Upstream(reach) = self.destinations {
            for address in &addresses {
                check_address(url, address.ip(), reach)?;
            }
        }
        Ok(addresses)
    }
}

/// The address rule for a URL an upstream supplied: no forbidden range (loopback only with
/// `allow_loopback`), and plain http only to loopback.
fn check_address(url: &Url, address: IpAddr, reach: Reach) -> Result<(), FetchError> {
    let range = forbidden_range(address);
    match range {
        Some(AddressRange::Loopback) if reach.allow_loopback => Ok(()),
        Some(range) => Err(FetchError::ForbiddenAddress {
            url: shown(url),
            address,
            range,
        }),
        // A public address: over https only, since `check_url` lets http through only when
        // loopback is allowed, and then only to loopback.
        None if url.scheme() == "https" => Ok(()),
        None => Err(FetchError::PlainHttpNotLoopback {
            url: shown(url),
            address,
        }),
    }
}

/// Connects to the first address that answers; these are the addresses that were checked.
async fn connect(url: &Url, addresses: &[SocketAddr]) -> Result<TcpStream, FetchError> {
    let mut last_error = String::from("no address");
    for address in addresses {
        match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(address)).await {
            Ok(Ok(stream)) => return Ok(stream),
            Ok(Err(error)) => last_error = format!("connecting to {address}: {error}"),
            Err(_elapsed) => last_error = format!("connecting to {address} timed out"),
        }
    }
    Err(FetchError::Fetch {
        url: shown(url),
        reason: last_error,
    })
}

/// The request line and headers for one hop. hyper's connection API sends what it is given:
/// the target in origin form, and `Host` set here.
fn request(url: &Url, outgoing: &Outgoing<'_>) -> Result<Request<Full<Bytes>>, FetchError> {
    let target = match url.query() {
        Some(query) => format!("{}?{query}", url.path()),
        None => url.path().to_owned(),
    };
    let host = match url.port() {
        Some(port) => format!("{}:{port}", url.host_str().unwrap_or_default()),
        None => url.host_str().unwrap_or_default().to_owned(),
    };
    let mut builder = Request::builder()
        .method(outgoing.method.clone())
        .uri(target)
        .header(HOST, host)
        .header(USER_AGENT, USER_AGENT_VALUE);
    for (name, value) in outgoing.headers {
        builder = builder.header(name, value);
    }
    builder
        .body(Full::new(outgoing.body.clone()))
        .map_err(|error| FetchError::InvalidUrl {
            url: shown(url),
            reason: error.to_string(),
        })
}

/// Sends `request` over `stream` and reads the answer, driving the connection meanwhile.
async fn exchange<S>(
    url: &Url,
    stream: S,
    request: Request<Full<Bytes>>,
    limit: Option<usize>,
) -> Result<Hop, FetchError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let failed = |error: &(dyn std::error::Error + 'static)| FetchError::Fetch {
        url: shown(url),
        reason: portcullis_core::causes::with_causes(error),
    };
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|error| failed(&error))?;
    let work = async {
        let response = sender
            .send_request(request)
            .await
            .map_err(|error| failed(&error))?;
        let status = response.status();
        if is_followed_redirect(status) {
            let location = response
                .headers()
                .get(LOCATION)
                .and_then(|location| location.to_str().ok())
                .map(str::to_owned);
            return Ok(Hop::Redirect(location));
        }
        let content_type = response.headers().get(CONTENT_TYPE).cloned();
        let www_authenticate = response
            .headers()
            .get(WWW_AUTHENTICATE)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        let Some(limit) = limit else {
            return Ok(Hop::Done(Fetched {
                status,
                content_type,
                www_authenticate,
                body: Bytes::new(),
            }));
        };
        let body = match Limited::new(response.into_body(), limit).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(error) if error.downcast_ref::<LengthLimitError>().is_some() => {
                return Err(FetchError::TooLarge {
                    url: shown(url),
                    limit,
                });
            }
            Err(error) => return Err(failed(error.as_ref())),
        };
        Ok(Hop::Done(Fetched {
            status,
            content_type,
            www_authenticate,
            body,
        }))
    };
    tokio::pin!(work);
    tokio::select! {
        biased;
        outcome = &mut work => outcome,
        // The connection ended first (closed or failed): the request sees the same end.
        _ = connection => work.await,
    }
}

/// The name TLS verifies the certificate for: the URL's host, never the address it resolved to.
fn server_name(url: &Url) -> Result<ServerName<'static>, FetchError> {
    match url.host() {
        Some(Host::Domain(domain)) => {
            ServerName::try_from(domain.to_owned()).map_err(|error| FetchError::InvalidUrl {
                url: shown(url),
                reason: error.to_string(),
            })
        }
        Some(Host::Ipv4(address)) => Ok(ServerName::IpAddress(IpAddr::V4(address).into())),
        Some(Host::Ipv6(address)) => Ok(ServerName::IpAddress(IpAddr::V6(address).into())),
        None => Err(FetchError::InvalidUrl {
            url: shown(url),
            reason: "no host".to_owned(),
        }),
    }
}

/// The scheme rule for every URL we fetch: https, or http only when the destinations allow it;
/// never with credentials in it (they would end up in errors and logs).
pub(crate) fn check_url(url: &Url, destinations: Destinations) -> Result<(), FetchError> {
    let allowed_http = match destinations {
        Destinations::Configured { allow_http } => allow_http,
        Destinations::Upstream(reach) => reach.allow_loopback,
    };
    match url.scheme() {
        "https" => {}
        "http" if allowed_http => {}
        "http" => {
            return Err(FetchError::InsecureUrl {
                url: shown(url),
                allowed: match destinations {
                    Destinations::Configured { .. } => {
                        "plain http is allowed only with `allow_http` (loopback issuers)"
                    }
                    Destinations::Upstream(_) => {
                        "plain http is allowed only to loopback, with `allow_loopback`"
                    }
                },
            });
        }
        _ => {
            return Err(FetchError::UnsupportedUrl {
                url: shown(url),
                what: "a scheme other than http or https",
            });
        }
    }
    if !url.has_host() {
        return Err(FetchError::InvalidUrl {
            url: shown(url),
            reason: "no host".to_owned(),
        });
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(FetchError::UnsupportedUrl {
            url: shown(url),
            what: "credentials",
        });
    }
    Ok(())
}

/// Where a redirect leads, if we follow it: only to the scheme it came from, so that an https
/// document is never served over http by way of a redirect (nor the other way round). The
/// target is then checked like any URL by the next hop.
pub(crate) fn redirect_target(current: &Url, location: Option<&str>) -> Result<Url, FetchError> {
    let next = location
        .and_then(|location| current.join(location).ok())
        .ok_or_else(|| FetchError::Fetch {
            url: shown(current),
            reason: "a redirect without a valid location".to_owned(),
        })?;
    if next.scheme() != current.scheme() {
        return Err(FetchError::Redirect {
            from: shown(current),
            to: shown(&next),
        });
    }
    Ok(next)
}

/// A URL as errors and logs show it: without query, fragment or credentials, which may carry
/// an authorization code or a password.
pub(crate) fn shown(url: &Url) -> String {
    let mut url = url.clone();
    url.set_query(None);
    url.set_fragment(None);
    // Only fails for URLs that cannot have credentials, which then have none to remove.
    let _ = url.set_username("");
    let _ = url.set_password(None);
    url.to_string()
}

fn is_followed_redirect(status: StatusCode) -> bool {
    matches!(
        status,
        StatusCode::MOVED_PERMANENTLY
            | StatusCode::FOUND
            | StatusCode::SEE_OTHER
            | StatusCode::TEMPORARY_REDIRECT
            | StatusCode::PERMANENT_REDIRECT
    )
}

fn tls_connector(extra_roots: Vec<CertificateDer<'static>>) -> Result<TlsConnector, String> {
    tls_client_config(extra_roots).map(|config| TlsConnector::from(Arc::new(config)))
}

/// The TLS every outbound connection of Portcullis's uses: rustls on ring (handed its provider,
/// never a process-wide one), the platform's verifier with its roots plus `extra_roots`, safe
/// protocol versions only, HTTP/1.1.
pub fn tls_client_config(
    extra_roots: Vec<CertificateDer<'static>>,
) -> Result<rustls::ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Verifier::new_with_extra_roots(extra_roots, Arc::clone(&provider))
        .map_err(|error| format!("the system's root certificates could not be loaded: {error}"))?;
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| error.to_string())?
        // The platform's verifier (its roots, and on macOS and Windows its own checks); the
        // `dangerous` in the name is rustls's for any verifier other than its built-in one.
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

#[cfg(test)]
mod tests;
