//! A `url` upstream's connection beyond its URL: plain http only to loopback (or where the
//! config says the network is trusted), an extra certificate authority for https, and request
//! headers whose values come from environment variables, never from the file.

use std::path::{Path, PathBuf};

use serde_spanned::Spanned;

use crate::checks::{is_env_name, is_loopback_authority};
use crate::error::Reporter;
use crate::raw::{RawHeader, RawUpstream};

/// How a `url` upstream is reached besides its URL.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Remote {
    /// A PEM file of certificate authorities trusted for this upstream, besides the system's.
    pub ca_file: Option<PathBuf>,
    /// Headers sent with every request to it, in name order.
    pub headers: Vec<EnvHeader>,
}

/// A request header whose value is `prefix` followed by the value of the variable `env`, read
/// from Portcullis's environment when the upstream starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvHeader {
    /// Lower case, as HTTP/2 sends it.
    pub name: String,
    pub env: String,
    pub prefix: String,
}

/// Headers Portcullis or the transport sets itself: a header table must not replace them.
pub(crate) const RESERVED_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "content-type",
    "accept",
    "connection",
    "transfer-encoding",
    "te",
    "upgrade",
    "mcp-session-id",
    "mcp-protocol-version",
    "last-event-id",
];

/// The keys of a `url` upstream that a `command` upstream must not have.
pub(crate) fn remote_only_keys(upstream: &RawUpstream) -> [(bool, &'static str); 3] {
    [
        (upstream.ca_file.is_some(), "ca_file"),
        (upstream.insecure_http.is_some(), "insecure_http"),
        (!upstream.headers.is_empty(), "headers"),
    ]
}

/// The URL's scheme checked against `insecure_http`, `ca_file` resolved against the config's
/// directory, and every header checked.
pub(crate) fn remote(
    report: &mut Reporter<'_>,
    upstream: &RawUpstream,
    url: &Spanned<String>,
    base_dir: &Path,
) -> Remote {
    let text = url.get_ref();
    let plain = text.strip_prefix("http://");
    let insecure = upstream.insecure_http.as_ref();
    match (plain, insecure.map(|flag| *flag.get_ref())) {
        (Some(rest), None | Some(false)) if !is_loopback_authority(rest) => report.at(
            Some(url.span()),
            format!(
                "`{text}` is plain http to a host that is not loopback: anyone on the way can read and change the calls and the credentials they carry; use https, or set `insecure_http = true` if this network is trusted"
            ),
        ),
        (Some(rest), Some(true)) if is_loopback_authority(rest) => report.at(
            insecure.map(Spanned::span),
            "`insecure_http` is for plain http to a host that is not loopback; this URL is loopback, so remove it",
        ),
        (None, Some(_)) => report.at(
            insecure.map(Spanned::span),
            "`insecure_http` is for a plain http:// URL; this upstream uses https, so remove it",
        ),
        _ => {}
    }
    let ca_file = upstream.ca_file.as_ref().and_then(|file| {
        if plain.is_some() {
            report.at(
                Some(file.span()),
                "`ca_file` is for an https:// URL; this upstream uses plain http",
            );
            return None;
        }
        if file.get_ref().trim().is_empty() {
            report.at(
                Some(file.span()),
                "`ca_file` is empty; give a PEM file's path",
            );
            return None;
        }
        Some(base_dir.join(file.get_ref()))
    });
    let has_authorization = upstream.credential.is_some();
    let headers = upstream
        .headers
        .iter()
        .filter_map(|(name, value)| header(report, name, value, has_authorization))
        .collect();
    Remote { ca_file, headers }
}

fn header(
    report: &mut Reporter<'_>,
    name: &str,
    value: &Spanned<RawHeader>,
    has_credential: bool,
) -> Option<EnvHeader> {
    let lower = name.to_ascii_lowercase();
    let mut refuse = |message: String| {
        report.at(Some(value.span()), message);
        None
    };
    let is_token = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if !is_token {
        return refuse(format!("`{name}` is not an HTTP header name"));
    }
    if RESERVED_HEADERS.contains(&lower.as_str()) {
        return refuse(format!(
            "header `{name}` is set by portcullis or the transport itself; remove it"
        ));
    }
    if lower == "authorization" && has_credential {
        return refuse(format!(
            "header `{name}` would replace the token of this upstream's `credential`; keep one of the two"
        ));
    }
    match value.get_ref() {
        RawHeader::Literal(_) => refuse(format!(
            "header `{name}` is written in the file; its value belongs in an environment variable: `{name} = {{ env = \"NAME\" }}` (with `prefix = \"Bearer \"` if it needs one)"
        )),
        RawHeader::FromEnv(from) if !is_env_name(&from.env) => refuse(format!(
            "`{}` is not an environment variable name (letters, digits and `_`, not starting with a digit)",
            from.env
        )),
        RawHeader::FromEnv(from)
            if from
                .prefix
                .as_deref()
                .is_some_and(|prefix| prefix.contains(['\r', '\n', '\0'])) =>
        {
            refuse(format!("the prefix of header `{name}` holds a line break"))
        }
        RawHeader::FromEnv(from) => Some(EnvHeader {
            name: lower,
            env: from.env.clone(),
            prefix: from.prefix.clone().unwrap_or_default(),
        }),
    }
}
