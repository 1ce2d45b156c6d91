//! The HTTP client of a `url` upstream: TLS by rustls (the system's roots plus the upstream's
//! `ca_file`), and the request headers config names, their values read from Portcullis's
//! environment at start, registered as secrets and marked sensitive.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue};
use portcullis_config::Remote;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;

/// The reqwest client for one upstream's connection, built at each start (so a replaced
/// `ca_file` counts at the next one). The error says what is wrong in plain words.
pub(crate) fn http_client(
    remote: &Remote,
    max_concurrent_calls: Option<usize>,
    environment: &BTreeMap<String, String>,
) -> Result<reqwest::Client, String> {
    let tls = tls_client(remote.ca_file.as_deref())?;
    // Connections are kept for reuse, at most as many idle ones as calls may be in flight, and
    // every answer is sent without waiting for more (no Nagle delay behind a delayed ACK).
    reqwest::Client::builder()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(max_concurrent_calls.unwrap_or(IDLE_CONNECTIONS))
        .pool_idle_timeout(IDLE_CONNECTION)
        .tls_backend_preconfigured(tls)
        .default_headers(headers(remote, environment)?)
        .build()
        .map_err(|error| format!("its HTTP client could not be built: {error}"))
}

/// A TLS client that verifies servers against the system's roots and the certificate
/// authority in `ca_file` (a PEM file), for an https upstream or the shared-state database.
pub fn tls_client(ca_file: Option<&Path>) -> Result<rustls::ClientConfig, String> {
    let extra_roots = match ca_file {
        None => Vec::new(),
        Some(file) => CertificateDer::pem_file_iter(file)
            .and_then(|certificates| certificates.collect::<Result<Vec<_>, _>>())
            .map_err(|error| {
                format!(
                    "its `ca_file` `{}` is not a readable PEM file of certificates: {error}",
                    file.display()
                )
            })?,
    };
    portcullis_auth::tls_client_config(extra_roots)
}

/// How long an unused connection to an upstream is kept open.
const IDLE_CONNECTION: Duration = Duration::from_secs(60);

/// Idle connections kept per upstream host when its calls are not limited (else one per call
/// it may have in flight).
const IDLE_CONNECTIONS: usize = 32;

/// The configured headers with their values; a variable that is not set stops the start.
fn headers(remote: &Remote, environment: &BTreeMap<String, String>) -> Result<HeaderMap, String> {
    let mut map = HeaderMap::new();
    for header in &remote.headers {
        let Some(value) = environment.get(&header.env) else {
            return Err(format!(
                "its header `{}` comes from the environment variable `{}`, which is not set",
                header.name, header.env
            ));
        };
        // Whatever leaves for an upstream may come back in what it answers: known from now on.
        crate::secrets::Secrets::global().register(&format!("the `{}` header", header.name), value);
        let name = HeaderName::from_bytes(header.name.as_bytes())
            .map_err(|_| format!("`{}` is not an HTTP header name", header.name))?;
        let mut value = HeaderValue::from_str(&format!("{}{value}", header.prefix)).map_err(|_| {
            format!(
                "the value of `{}` cannot be sent in the `{}` header (it holds a line break or another control character)",
                header.env, header.name
            )
        })?;
        value.set_sensitive(true);
        map.insert(name, value);
    }
    Ok(map)
}

/// Why a request could not be sent, in plain words: the TLS reason when there is one (an
/// authority this machine does not trust, a certificate for another name, an expired one),
/// otherwise the innermost cause (refused, reset, no such host).
pub(crate) fn unsent_reason(error: &reqwest::Error) -> String {
    if let Some(tls) = tls_error(error) {
        return certificate_reason(tls);
    }
    let mut innermost: &(dyn std::error::Error + 'static) = error;
    while let Some(cause) = innermost.source() {
        innermost = cause;
    }
    format!("it could not be reached: {innermost}")
}

/// The rustls error somewhere in `error`'s causes. It travels inside `io::Error`s, whose
/// `source` skips what they wrap, so those are opened with `get_ref`.
fn tls_error<'e>(error: &'e (dyn std::error::Error + 'static)) -> Option<&'e rustls::Error> {
    if let Some(tls) = error.downcast_ref::<rustls::Error>() {
        return Some(tls);
    }
    let wrapped = error
        .downcast_ref::<std::io::Error>()
        .and_then(std::io::Error::get_ref)
        .map(|inner| inner as &(dyn std::error::Error + 'static));
    wrapped.or_else(|| error.source()).and_then(tls_error)
}

fn certificate_reason(error: &rustls::Error) -> String {
    use rustls::CertificateError as Certificate;
    let rustls::Error::InvalidCertificate(certificate) = error else {
        return format!("the TLS handshake failed: {error}");
    };
    match certificate {
        Certificate::UnknownIssuer => "its TLS certificate was issued by an authority this machine does not trust; for a private authority, name its PEM file in the upstream's `ca_file`".to_owned(),
        Certificate::NotValidForName | Certificate::NotValidForNameContext { .. } => {
            format!("its TLS certificate is not valid for the host name in its URL ({certificate})")
        }
        Certificate::Expired | Certificate::ExpiredContext { .. } => {
            "its TLS certificate has expired".to_owned()
        }
        other => format!("its TLS certificate was refused: {other}"),
    }
}
