//! `[credentials]` and `[upstream.credential]`: how Portcullis authorises itself to an HTTP
//! upstream, and where it keeps what it obtains.
//!
//! Config names secrets only by the environment variable that holds them (`client_secret_env`,
//! `env`, `key_env`): no secret is ever written in the file, so a config shown in a log, a
//! ticket or `portcullis check` shows none.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde_spanned::Spanned;

use crate::checks::{address, is_env_name, is_loopback_authority, scope_list};
use crate::error::Reporter;
use crate::raw::{RawCredential, RawCredentials};

/// The store's file unless config says otherwise, beside the configuration.
const DEFAULT_STORE: &str = "state/credentials.enc";
/// The variable holding the store's key unless config says otherwise.
pub const DEFAULT_KEY_ENV: &str = "PORTCULLIS_CREDENTIAL_KEY";
/// Where authorization servers send a person back unless config says otherwise.
const DEFAULT_CALLBACK: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 8790);

/// Where delegated credentials are kept, and where a person's browser comes back to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialSettings {
    /// The encrypted store (mode 0600). Default `state/credentials.enc` beside the config.
    pub store: PathBuf,
    /// The environment variable holding the store's key (at least 32 bytes of text).
    pub key_env: String,
    /// The loopback listener for OAuth redirects (`http://ADDR/oauth/callback`) and the pages
    /// a person opens from the client. Loopback only: it is reached by the person's browser
    /// on this machine, and it is the redirect URI registered at the authorization servers.
    pub callback: SocketAddr,
}

impl CredentialSettings {
    /// The redirect URI registered at the authorization servers.
    pub fn redirect_uri(&self) -> String {
        format!("http://{}/oauth/callback", self.callback)
    }
}

/// How an HTTP upstream is authorised, if at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamCredential {
    /// `kind = "oauth"`: each user's own grant at the upstream's authorization server,
    /// obtained through the authorization code flow (or token exchange) and kept per user.
    Delegated(Delegation),
    /// `kind = "api_key"` or `"client_credentials"`: the upstream acts with service
    /// authority, the same for every user; the envelope and every record say so.
    Service(ServiceCredential),
}

/// Portcullis's registration at an upstream's authorization server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthClient {
    /// The authorization server Portcullis is registered with. Discovery must lead there:
    /// the registration (its secret above all) is never sent to a server an upstream merely
    /// names.
    pub issuer: String,
    pub client_id: String,
    /// The variable holding the client secret; `None`: a public client (PKCE only).
    pub client_secret_env: Option<String>,
    /// Whether discovery may use plain http to loopback addresses (tests only). Otherwise
    /// every metadata document and endpoint is https on a public address.
    pub loopback: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delegation {
    pub client: OAuthClient,
    /// Scopes asked for at every grant; tools' `upstream_scopes` are added when a call
    /// needs them.
    pub scopes: BTreeSet<String>,
    /// Exchange the client's own token (RFC 8693) for one whose audience is the upstream,
    /// instead of sending the person through the authorization code flow. HTTP sessions with
    /// `[http.auth]` only.
    pub exchange: bool,
    /// Hide the tools whose `upstream_scopes` the user's grant lacks.
    pub hide_tools: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceCredential {
    /// A key from the environment, sent as `Authorization: Bearer KEY` (or as the value of
    /// `header`).
    ApiKey { env: String, header: Option<String> },
    /// A token from the client credentials grant, for the scopes given.
    ClientCredentials {
        client: OAuthClient,
        scopes: BTreeSet<String>,
    },
}

impl UpstreamCredential {
    /// The variables Portcullis must read at start for this credential.
    pub fn secret_variables(&self) -> Vec<&str> {
        let name = match self {
            Self::Delegated(delegation) => delegation.client.client_secret_env.as_deref(),
            Self::Service(ServiceCredential::ApiKey { env, .. }) => Some(env.as_str()),
            Self::Service(ServiceCredential::ClientCredentials { client, .. }) => {
                client.client_secret_env.as_deref()
            }
        };
        name.into_iter().collect()
    }
}

pub(crate) fn credential_settings(
    report: &mut Reporter<'_>,
    raw: Option<&Spanned<RawCredentials>>,
    base_dir: &Path,
) -> CredentialSettings {
    let raw = raw.map(Spanned::get_ref);
    let store = match raw.and_then(|raw| raw.store.as_ref()) {
        Some(path) if path.get_ref().is_empty() => {
            report.at(
                Some(path.span()),
                "`store` is empty; give the credential store's path",
            );
            base_dir.join(DEFAULT_STORE)
        }
        Some(path) => base_dir.join(path.get_ref()),
        None => base_dir.join(DEFAULT_STORE),
    };
    let key_env = raw
        .and_then(|raw| raw.key_env.as_ref())
        .and_then(|name| env_name(report, name))
        .unwrap_or_else(|| DEFAULT_KEY_ENV.to_owned());
    let callback = raw
        .and_then(|raw| raw.callback.as_ref())
        .and_then(|callback| {
            address(
                report,
                callback,
                "127.0.0.1:8790",
                |addr| addr.ip().is_loopback() && addr.port() != 0,
                "is not a loopback address with a port; the callback is registered at authorization servers and opened by a browser on this machine, so it is a fixed loopback address",
            )
        })
        .unwrap_or(DEFAULT_CALLBACK);
    CredentialSettings {
        store,
        key_env,
        callback,
    }
}

/// `[upstream.credential]` of a `url` upstream (`is_http`); a stdio upstream gets its
/// secrets through `env` and `inherit_env`, into its own environment only.
pub(crate) fn upstream_credential(
    report: &mut Reporter<'_>,
    raw: Option<&Spanned<RawCredential>>,
    is_http: bool,
) -> Option<UpstreamCredential> {
    let spanned = raw?;
    let raw = spanned.get_ref();
    if !is_http {
        report.at(
            Some(spanned.span()),
            "`credential` applies only to a `url` upstream; give a `command` upstream its secrets with `env` or `inherit_env`, which reach that child alone",
        );
        return None;
    }
    let scopes = scope_list(report, &raw.scopes);
    let flag = |value: &Option<Spanned<bool>>| value.as_ref().is_some_and(|v| *v.get_ref());
    let kind = raw.kind.get_ref().as_str();
    let span_of = |value: &Option<Spanned<bool>>| value.as_ref().map(Spanned::span);
    match raw.kind.get_ref().as_str() {
        "oauth" => {
            refuse(
                report,
                kind,
                &[
                    ("env", raw.env.as_ref().map(Spanned::span)),
                    ("header", raw.header.as_ref().map(Spanned::span)),
                ],
            );
            let client = oauth_client(report, raw, spanned)?;
            Some(UpstreamCredential::Delegated(Delegation {
                client,
                scopes,
                exchange: flag(&raw.exchange),
                hide_tools: flag(&raw.hide_tools),
            }))
        }
        "client_credentials" => {
            refuse(
                report,
                kind,
                &[
                    ("env", raw.env.as_ref().map(Spanned::span)),
                    ("header", raw.header.as_ref().map(Spanned::span)),
                    ("exchange", span_of(&raw.exchange)),
                    ("hide_tools", span_of(&raw.hide_tools)),
                ],
            );
            let client = oauth_client(report, raw, spanned)?;
            if client.client_secret_env.is_none() {
                report.at(
                    Some(spanned.span()),
                    "`kind = \"client_credentials\"` needs `client_secret_env`: the grant authenticates the client itself",
                );
                return None;
            }
            Some(UpstreamCredential::Service(
                ServiceCredential::ClientCredentials { client, scopes },
            ))
        }
        "api_key" => api_key(report, raw, spanned),
        other => {
            report.at(
                Some(raw.kind.span()),
                format!(
                    "unknown credential kind `{other}`; use `oauth` (each user's own grant), `client_credentials` or `api_key` (service authority)"
                ),
            );
            None
        }
    }
}

/// Each of `keys` that is set is reported as not applying to `kind`.
fn refuse(report: &mut Reporter<'_>, kind: &str, keys: &[(&str, Option<std::ops::Range<usize>>)]) {
    for (key, span) in keys {
        if let Some(span) = span {
            report.at(
                Some(span.clone()),
                format!("`{key}` does not apply to `kind = \"{kind}\"`"),
            );
        }
    }
}

/// `kind = "api_key"`: the key's variable and, when not `Authorization: Bearer`, its header.
fn api_key(
    report: &mut Reporter<'_>,
    raw: &RawCredential,
    spanned: &Spanned<RawCredential>,
) -> Option<UpstreamCredential> {
    let span_of = |value: &Option<Spanned<bool>>| value.as_ref().map(Spanned::span);
    refuse(
        report,
        "api_key",
        &[
            ("issuer", raw.issuer.as_ref().map(Spanned::span)),
            ("client_id", raw.client_id.as_ref().map(Spanned::span)),
            (
                "client_secret_env",
                raw.client_secret_env.as_ref().map(Spanned::span),
            ),
            ("loopback", span_of(&raw.loopback)),
            ("exchange", span_of(&raw.exchange)),
            ("hide_tools", span_of(&raw.hide_tools)),
        ],
    );
    if !raw.scopes.is_empty() {
        report.at(
            Some(spanned.span()),
            "`scopes` does not apply to `kind = \"api_key\"`: a key has whatever authority it was issued with",
        );
    }
    let Some(env) = raw.env.as_ref() else {
        report.at(
            Some(spanned.span()),
            "`kind = \"api_key\"` needs `env`, the environment variable holding the key",
        );
        return None;
    };
    let env = env_name(report, env)?;
    let header = raw.header.as_ref().and_then(|header| {
        let name = header.get_ref();
        let valid =
            !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if !valid {
            report.at(
                Some(header.span()),
                format!("`{}` is not an HTTP header name", header.get_ref()),
            );
        }
        valid.then(|| header.get_ref().to_ascii_lowercase())
    });
    Some(UpstreamCredential::Service(ServiceCredential::ApiKey {
        env,
        header,
    }))
}

fn oauth_client(
    report: &mut Reporter<'_>,
    raw: &RawCredential,
    spanned: &Spanned<RawCredential>,
) -> Option<OAuthClient> {
    let Some(client_id) = raw.client_id.as_ref() else {
        report.at(
            Some(spanned.span()),
            "this credential needs `client_id`, Portcullis's registration at the upstream's authorization server",
        );
        return None;
    };
    if client_id.get_ref().is_empty() {
        report.at(Some(client_id.span()), "`client_id` is empty");
        return None;
    }
    let Some(issuer) = raw.issuer.as_ref() else {
        report.at(
            Some(spanned.span()),
            "this credential needs `issuer`, the authorization server Portcullis is registered with (its secret is never sent to a server the upstream merely names)",
        );
        return None;
    };
    let loopback = raw.loopback.as_ref().is_some_and(|v| *v.get_ref());
    let issuer_ok = match issuer.get_ref().strip_prefix("http://") {
        Some(rest) => loopback && is_loopback_authority(rest),
        None => issuer.get_ref().starts_with("https://"),
    };
    if !issuer_ok {
        report.at(
            Some(issuer.span()),
            format!(
                "issuer `{}` must be an https URL (plain http only on loopback with `loopback = true`, for tests)",
                issuer.get_ref()
            ),
        );
        return None;
    }
    let client_secret_env = match raw.client_secret_env.as_ref() {
        Some(name) => Some(env_name(report, name)?),
        None => None,
    };
    Some(OAuthClient {
        issuer: issuer.get_ref().clone(),
        client_id: client_id.get_ref().clone(),
        client_secret_env,
        loopback,
    })
}

pub(crate) fn env_name(report: &mut Reporter<'_>, name: &Spanned<String>) -> Option<String> {
    if is_env_name(name.get_ref()) {
        Some(name.get_ref().clone())
    } else {
        report.at(
            Some(name.span()),
            format!("`{}` is not an environment variable name", name.get_ref()),
        );
        None
    }
}
