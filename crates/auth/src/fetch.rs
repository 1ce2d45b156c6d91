//! Bounded HTTP GETs of the issuer's public documents: metadata and keys.
//!
//! Every fetch has one deadline covering connect, redirects and body; bodies have a size limit;
//! redirects stay on their scheme. TLS is rustls with ring, whose provider is handed to the
//! client here rather than installed process-wide, and the platform's certificate verifier
//! (on Linux it loads the system's root certificates, where `SSL_CERT_FILE` and `SSL_CERT_DIR`
//! are honoured). No proxy is read from the environment: the issuer is reached directly.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::http::header::{ACCEPT, LOCATION, USER_AGENT};
use axum::http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty, LengthLimitError, Limited};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::CertificateDer;
use rustls_platform_verifier::Verifier;
use url::Url;

use crate::AuthError;

/// Redirects followed per fetch; providers redirect rarely, and never in loops we should chase.
const MAX_REDIRECTS: usize = 3;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const USER_AGENT_VALUE: &str = concat!("portcullis/", env!("CARGO_PKG_VERSION"));

type PlainClient = Client<HttpConnector, Empty<Bytes>>;
type TlsClient = Client<HttpsConnector<HttpConnector>, Empty<Bytes>>;

/// A fetched document: its status, and its body when the status was a success.
#[derive(Debug)]
pub(crate) struct Fetched {
    pub(crate) status: StatusCode,
    pub(crate) body: Bytes,
}

pub(crate) struct Fetcher {
    /// Only with `allow_http`: otherwise no code path can speak plain HTTP.
    plain: Option<PlainClient>,
    /// Why https is unavailable (no system root certificates), reported on the first https
    /// fetch rather than at start, so that a loopback `http` issuer works without them.
    tls: Result<TlsClient, String>,
    allow_http: bool,
    timeout: Duration,
}

impl Fetcher {
    /// `extra_roots` are trusted beside the platform's roots (tests' own CA).
    pub(crate) fn new(
        allow_http: bool,
        timeout: Duration,
        extra_roots: Vec<CertificateDer<'static>>,
    ) -> Self {
        let plain = allow_http.then(|| {
            let mut http = HttpConnector::new();
            http.set_connect_timeout(Some(CONNECT_TIMEOUT));
            Client::builder(TokioExecutor::new()).build(http)
        });
        Self {
            plain,
            tls: tls_client(extra_roots),
            allow_http,
            timeout,
        }
    }

    /// GETs `url`, following at most a few same-scheme redirects, within the deadline. A body
    /// over `limit` bytes is an error, not a truncation.
    pub(crate) async fn get(&self, url: &Url, limit: usize) -> Result<Fetched, AuthError> {
        match tokio::time::timeout(self.timeout, self.follow(url, limit)).await {
            Ok(result) => result,
            Err(_elapsed) => Err(AuthError::Timeout {
                url: url.to_string(),
                secs: self.timeout.as_secs(),
            }),
        }
    }

    async fn follow(&self, url: &Url, limit: usize) -> Result<Fetched, AuthError> {
        let mut current = url.clone();
        for _ in 0..=MAX_REDIRECTS {
            check_url(&current, self.allow_http)?;
            let response = self.send(&current).await?;
            let status = response.status();
            if is_followed_redirect(status) {
                let location = response
                    .headers()
                    .get(LOCATION)
                    .and_then(|location| location.to_str().ok());
                current = redirect_target(&current, location)?;
                continue;
            }
            if !status.is_success() {
                return Ok(Fetched {
                    status,
                    body: Bytes::new(),
                });
            }
            let body = match Limited::new(response.into_body(), limit).collect().await {
                Ok(collected) => collected.to_bytes(),
                Err(error) if error.downcast_ref::<LengthLimitError>().is_some() => {
                    return Err(AuthError::TooLarge {
                        url: current.to_string(),
                        limit,
                    });
                }
                Err(error) => {
                    return Err(AuthError::Fetch {
                        url: current.to_string(),
                        reason: error_chain(error.as_ref()),
                    });
                }
            };
            return Ok(Fetched { status, body });
        }
        Err(AuthError::TooManyRedirects {
            url: url.to_string(),
            limit: MAX_REDIRECTS,
        })
    }

    async fn send(
        &self,
        url: &Url,
    ) -> Result<axum::http::Response<hyper::body::Incoming>, AuthError> {
        let request = Request::get(url.as_str())
            .header(ACCEPT, "application/json")
            .header(USER_AGENT, USER_AGENT_VALUE)
            .body(Empty::new())
            .map_err(|error| AuthError::InvalidUrl {
                url: url.to_string(),
                reason: error.to_string(),
            })?;
        let sent = if url.scheme() == "https" {
            let client = self.tls.as_ref().map_err(|reason| AuthError::Tls {
                reason: reason.clone(),
            })?;
            client.request(request).await
        } else {
            let client = self.plain.as_ref().ok_or_else(|| AuthError::InsecureUrl {
                url: url.to_string(),
            })?;
            client.request(request).await
        };
        sent.map_err(|error| AuthError::Fetch {
            url: url.to_string(),
            reason: error_chain(&error),
        })
    }
}

/// The scheme rule for every URL we fetch: https, or http only when allowed; never with
/// credentials in it (they would end up in errors and logs).
pub(crate) fn check_url(url: &Url, allow_http: bool) -> Result<(), AuthError> {
    match url.scheme() {
        "https" => {}
        "http" if allow_http => {}
        "http" => {
            return Err(AuthError::InsecureUrl {
                url: url.to_string(),
            });
        }
        _ => {
            return Err(AuthError::UnsupportedUrl {
                url: url.to_string(),
                what: "a scheme other than http or https",
            });
        }
    }
    if !url.has_host() {
        return Err(AuthError::InvalidUrl {
            url: url.to_string(),
            reason: "no host".to_owned(),
        });
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(AuthError::UnsupportedUrl {
            url: url.to_string(),
            what: "credentials",
        });
    }
    Ok(())
}

/// Where a redirect leads, if we follow it: only to the scheme it came from, so that an https
/// document is never served over http by way of a redirect (nor the other way round).
pub(crate) fn redirect_target(current: &Url, location: Option<&str>) -> Result<Url, AuthError> {
    let next = location
        .and_then(|location| current.join(location).ok())
        .ok_or_else(|| AuthError::Fetch {
            url: current.to_string(),
            reason: "a redirect without a valid location".to_owned(),
        })?;
    if next.scheme() != current.scheme() {
        return Err(AuthError::Redirect {
            from: current.to_string(),
            to: next.to_string(),
        });
    }
    Ok(next)
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

fn tls_client(extra_roots: Vec<CertificateDer<'static>>) -> Result<TlsClient, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Verifier::new_with_extra_roots(extra_roots, Arc::clone(&provider))
        .map_err(|error| format!("the system's root certificates could not be loaded: {error}"))?;
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| error.to_string())?
        // The platform's verifier (its roots, and on macOS and Windows its own checks); the
        // `dangerous` in the name is rustls's for any verifier other than its built-in one.
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    let mut http = HttpConnector::new();
    // The TLS connector below refuses plain http; this connector only opens the TCP stream.
    http.enforce_http(false);
    http.set_connect_timeout(Some(CONNECT_TIMEOUT));
    let connector = HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_only()
        .enable_http1()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new()).build(connector))
}

/// An error with its causes: hyper's own message ("client error (Connect)") says little.
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests;
