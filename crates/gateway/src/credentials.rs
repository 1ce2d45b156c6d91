//! Credentials for HTTP upstreams: each user's delegated grant (authorization code + PKCE at
//! the upstream's authorization server, kept in the encrypted store), or the upstream's
//! service credential (an API key, a client-credentials token).
//!
//! The stages of a call that touch them:
//! - before approval, [`Credentials::readiness`] says whether the user already has a grant
//!   with the scopes this tool needs and the consent of this client; if not, the call asks the
//!   person to authorise (URL elicitation, or `portcullis login`) and runs nothing meanwhile;
//! - at send time, the [`Attachment`] the call carries looks the token up (refreshing it when
//!   it is about to expire, or once after a 401) for that one request.
//!
//! INVARIANTS: a token or secret is never logged, recorded, returned or put in an error: what
//! leaves this module is a fingerprint and the granted scopes. A grant is stored only for the
//! user and client whose flow it completed (its `state` is single use and bound to both).

mod flows;
mod grants;
mod pages;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use http::HeaderName;
use portcullis_auth::{
    ClientRegistration, OAuthClient, Reach, Revoked, TokenHint, Tokens, canonical_resource,
    discover, probe_challenge,
};
use portcullis_config::{
    Config, CredentialSettings, Delegation, ServiceCredential, UpstreamCredential,
    UpstreamTransport,
};
use portcullis_core::{IdentityEnvelope, ToolRules};
use portcullis_credentials::{CredentialKey, CredentialStore, Grant, StoreKey, store_key};
use portcullis_state::GrantChange;
use tokio::sync::{Mutex, OnceCell};
use url::Url;

use crate::attach::{AttachFailure, Attachment, BoxFuture, CredentialSource};
use grants::GrantStore;

pub use flows::{FlowOutcome, Started};
pub use pages::router;
pub use portcullis_credentials::Secret as SecretValue;

/// A token this close to its expiry is refreshed before it is sent (a quarter of its
/// lifetime for short-lived ones).
const REFRESH_MARGIN_SECS: u64 = 30;

/// Whether `grant` is to be refreshed before it is sent.
fn expiring(grant: &Grant) -> bool {
    let lifetime = grant
        .expires_at
        .map_or(0, |at| at.saturating_sub(grant.obtained_at));
    grant.expires_within(now(), REFRESH_MARGIN_SECS.min(lifetime / 4))
}

/// Reads a variable of Portcullis's own environment (the cli passes `std::env::var`).
pub type EnvReader<'a> = &'a dyn Fn(&str) -> Option<String>;

/// All upstream credentials of one Portcullis.
pub struct Credentials {
    settings: CredentialSettings,
    /// Opened only when some upstream has delegated credentials.
    store: Option<GrantStore>,
    upstreams: BTreeMap<String, Arc<UpstreamAuth>>,
    flows: flows::Flows,
    /// Scopes upstreams said their tools need beyond config's, by (upstream, tool).
    learned: std::sync::Mutex<BTreeMap<(String, String), BTreeSet<String>>>,
}

/// One upstream's way of being authorised.
pub(crate) struct UpstreamAuth {
    name: String,
    /// The upstream's URL: the RFC 8707 resource its tokens are for.
    resource: String,
    kind: AuthKind,
}

enum AuthKind {
    Delegated {
        delegation: Delegation,
        registration: ClientRegistration,
        /// The authorization server, discovered on first need.
        client: OnceCell<Arc<OAuthClient>>,
        /// One refresh at a time in this process: a rotating refresh token must not be spent
        /// twice (between replicas, the shared grant's row lock sees to it).
        refreshing: Mutex<()>,
    },
    ApiKey {
        header: HeaderName,
        value: SecretValue,
    },
    ClientCredentials {
        registration: ClientRegistration,
        loopback: bool,
        scopes: Vec<String>,
        client: OnceCell<Arc<OAuthClient>>,
        cached: Mutex<Option<(SecretValue, Option<u64>)>>,
    },
}

/// Whether a call to an upstream can be sent with a credential.
pub enum Readiness {
    /// The upstream takes no credential from Portcullis.
    NotNeeded,
    /// Ready: the attachment for the request, and what the evidence says about it.
    Ready {
        attachment: Attachment,
        evidence: String,
    },
    /// The user must authorise first, for these scopes.
    NeedsGrant { scopes: Vec<String>, why: String },
    /// Something failed while looking (the store cannot be read).
    Failed(String),
}

fn now() -> u64 {
    use portcullis_core::clock::Clock as _;
    portcullis_core::clock::SystemClock.unix_secs()
}

/// The secret in the environment variable `name` (registered, so that it is redacted from
/// every output), or why it cannot be had.
pub(crate) fn secret(env: EnvReader<'_>, name: &str, what: &str) -> Result<SecretValue, String> {
    match env(name) {
        Some(value) if !value.is_empty() => {
            crate::secrets::Secrets::global().register(what, &value);
            Ok(SecretValue::new(value))
        }
        _ => Err(format!(
            "the environment variable `{name}` ({what}) is not set; Portcullis reads it at start"
        )),
    }
}

/// How upstream `name` is authorised, with its secrets read from the environment now.
fn auth_kind(
    credential: &UpstreamCredential,
    name: &str,
    env: EnvReader<'_>,
    redirect_uri: &Url,
) -> Result<AuthKind, String> {
    let registration = |client: &portcullis_config::OAuthClient| {
        Ok::<_, String>(ClientRegistration {
            issuer: client.issuer.clone(),
            client_id: client.client_id.clone(),
            client_secret: match &client.client_secret_env {
                Some(variable) => Some(secret(
                    env,
                    variable,
                    &format!("the client secret for upstream `{name}`"),
                )?),
                None => None,
            },
            redirect_uri: redirect_uri.clone(),
        })
    };
    Ok(match credential {
        UpstreamCredential::Delegated(delegation) => AuthKind::Delegated {
            registration: registration(&delegation.client)?,
            delegation: delegation.clone(),
            client: OnceCell::new(),
            refreshing: Mutex::new(()),
        },
        UpstreamCredential::Service(ServiceCredential::ApiKey {
            env: variable,
            header,
        }) => {
            let value = secret(env, variable, &format!("the API key for upstream `{name}`"))?;
            let header = match header {
                // `Authorization: Bearer KEY` (the transport writes the scheme).
                None => http::header::AUTHORIZATION,
                Some(header) => HeaderName::from_bytes(header.as_bytes())
                    .map_err(|_| format!("`{header}` is not a header name"))?,
            };
            AuthKind::ApiKey { header, value }
        }
        UpstreamCredential::Service(ServiceCredential::ClientCredentials { client, scopes }) => {
            AuthKind::ClientCredentials {
                registration: registration(client)?,
                loopback: client.loopback,
                scopes: scopes.iter().cloned().collect(),
                client: OnceCell::new(),
                cached: Mutex::new(None),
            }
        }
    })
}

/// Where delegated grants are kept, sealed with the key in config's variable: the encrypted
/// file (whose key may also be the key file beside it), or, with `shared` state, the database.
fn open_store(
    config: &Config,
    env: EnvReader<'_>,
    shared: Option<&portcullis_state::Store>,
) -> Result<GrantStore, String> {
    let variable = &config.credentials.key_env;
    let text = env(variable);
    if let Some(text) = &text {
        crate::secrets::Secrets::global().register("the credential store's key", text);
    }
    let store = &config.credentials.store;
    if let Some(shared) = shared {
        // INVARIANT: replicas seal grants with one key, which only the environment can give
        // them all: a key file beside the store would be each replica's own, and the grants
        // one stored would not open on another.
        let text = text.ok_or_else(|| {
            format!(
                "replicas sharing grants in postgres must hold the credential store key in `{variable}` (at least 32 bytes), the same on every replica; it is not set"
            )
        })?;
        let key = StoreKey::from_secret_text(variable, &text).map_err(|e| e.to_string())?;
        return Ok(GrantStore::Shared(shared.grants(key)));
    }
    let key = store_key(store, variable, text.as_deref()).map_err(|e| e.to_string())?;
    CredentialStore::open(store, key)
        .map(GrantStore::Local)
        .map_err(|e| e.to_string())
}

/// The label a client's consent is kept under.
pub fn client_label(envelope: &IdentityEnvelope) -> String {
    envelope.client().unwrap_or("local").to_owned()
}

pub fn key_for(envelope: &IdentityEnvelope, upstream: &str) -> CredentialKey {
    let user = envelope.user();
    CredentialKey {
        issuer: user.issuer.clone(),
        subject: user.subject.clone(),
        upstream: upstream.to_owned(),
    }
}

impl Credentials {
    /// Reads the secrets config names (client secrets, API keys, the store's key) and opens
    /// the store if any upstream needs it: in the `shared` state's database when there is
    /// one, else the encrypted file. A missing secret is an error naming its variable.
    pub fn start(
        config: &Config,
        env: EnvReader<'_>,
        flow_lifetime: Duration,
        shared: Option<&portcullis_state::Store>,
    ) -> Result<Self, String> {
        let mut upstreams = BTreeMap::new();
        let redirect_uri = || {
            Url::parse(&config.credentials.redirect_uri())
                .map_err(|error| format!("the callback address is not a URL: {error}"))
        };
        for upstream in &config.upstreams {
            let (Some(credential), UpstreamTransport::Http { url, .. }) =
                (&upstream.credential, &upstream.transport)
            else {
                continue;
            };
            let name = upstream.name.as_str();
            let kind = auth_kind(credential, name, env, &redirect_uri()?)?;
            // RFC 8707: tokens are asked for the upstream's canonical URI.
            let resource = Url::parse(url)
                .map_err(|error| error.to_string())
                .and_then(|url| canonical_resource(&url).map_err(|error| error.to_string()))
                .map_err(|error| format!("upstream `{name}`: its URL is no resource: {error}"))?;
            upstreams.insert(
                name.to_owned(),
                Arc::new(UpstreamAuth {
                    name: name.to_owned(),
                    resource,
                    kind,
                }),
            );
        }
        let delegated = upstreams
            .values()
            .any(|auth| matches!(auth.kind, AuthKind::Delegated { .. }));
        let store = if delegated {
            Some(open_store(config, env, shared)?)
        } else {
            None
        };
        Ok(Self {
            settings: config.credentials.clone(),
            store,
            upstreams,
            flows: flows::Flows::new(flow_lifetime),
            learned: std::sync::Mutex::new(BTreeMap::new()),
        })
    }

    /// Serves the sign-in pages and the OAuth callback on config's loopback address until
    /// `shutdown`; the listener is bound before this returns.
    pub async fn listen(
        self: &Arc<Self>,
        shutdown: tokio_util::sync::CancellationToken,
    ) -> std::io::Result<tokio::task::JoinHandle<()>> {
        let listener = tokio::net::TcpListener::bind(self.settings.callback).await?;
        let app = router(self.clone());
        Ok(tokio::spawn(async move {
            let served = axum::serve(crate::listener::no_delay(listener), app)
                .with_graceful_shutdown(async move { shutdown.cancelled().await })
                .await;
            if let Err(error) = served {
                tracing::error!(%error, "the sign-in pages stopped");
            }
        }))
    }

    /// The scopes `portcullis login` asks for: the upstream's configured ones and `extra`.
    pub fn login_scopes(&self, upstream: &str, extra: Vec<String>) -> Result<Vec<String>, String> {
        let auth = self.upstreams.get(upstream).ok_or_else(|| {
            format!("no upstream `{upstream}` with `kind = \"oauth\"` credentials is configured")
        })?;
        let AuthKind::Delegated { delegation, .. } = &auth.kind else {
            return Err(format!(
                "upstream `{upstream}` acts with a service credential; there is nothing to log in to"
            ));
        };
        let mut scopes = delegation.scopes.clone();
        scopes.extend(extra);
        Ok(scopes.into_iter().collect())
    }

    /// Whether any upstream takes delegated grants (then the callback listener runs).
    /// Whether `upstream` takes each user's own delegated grant.
    pub fn takes_delegated(&self, upstream: &str) -> bool {
        self.upstreams
            .get(upstream)
            .is_some_and(|auth| matches!(auth.kind, AuthKind::Delegated { .. }))
    }

    pub fn has_delegated(&self) -> bool {
        self.store.is_some()
    }

    pub fn settings(&self) -> &CredentialSettings {
        &self.settings
    }

    fn store(&self) -> Result<&GrantStore, String> {
        self.store
            .as_ref()
            .ok_or_else(|| "no credential store is open (a bug)".to_owned())
    }

    /// The service credential every request to `upstream` carries, if it acts with service
    /// authority.
    pub fn service_source(&self, upstream: &str) -> Option<Arc<dyn CredentialSource>> {
        let auth = self.upstreams.get(upstream)?;
        match auth.kind {
            AuthKind::Delegated { .. } => None,
            AuthKind::ApiKey { .. } | AuthKind::ClientCredentials { .. } => {
                Some(Arc::new(ServiceSource(auth.clone())))
            }
        }
    }

    /// The delegated credential every request of `envelope`'s own instance of `upstream`
    /// carries (`instance = "per_user"`): that user's stored grant, refreshed as it expires.
    /// `None` when they have not authorised Portcullis for it (or the store cannot be read).
    pub(crate) fn user_source(
        &self,
        envelope: &IdentityEnvelope,
        upstream: &str,
    ) -> Option<Arc<dyn CredentialSource>> {
        let auth = self.upstreams.get(upstream)?;
        if !matches!(auth.kind, AuthKind::Delegated { .. }) {
            return None;
        }
        let key = key_for(envelope, upstream);
        let store = self.store().ok()?;
        store.get_now(&key).ok()??;
        Some(Arc::new(DelegatedSource {
            auth: auth.clone(),
            store: self.store.clone(),
            key,
        }))
    }

    /// Whether `upstream` acts with service authority (for the envelope's records).
    pub fn is_service(&self, upstream: &str) -> bool {
        self.upstreams
            .get(upstream)
            .is_some_and(|auth| !matches!(auth.kind, AuthKind::Delegated { .. }))
    }

    /// The scopes of the user's grant for `upstream`, when the upstream hides tools the
    /// grant cannot call (`hide_tools`); `None`: nothing is hidden for scopes.
    pub fn visible_scopes(
        &self,
        envelope: &IdentityEnvelope,
        upstream: &str,
    ) -> Option<BTreeSet<String>> {
        let auth = self.upstreams.get(upstream)?;
        let AuthKind::Delegated { delegation, .. } = &auth.kind else {
            return None;
        };
        if !delegation.hide_tools {
            return None;
        }
        // An unreadable store hides what needs scopes: failing closed shows less, not more.
        let grant = self
            .store
            .as_ref()
            .and_then(|store| store.get_now(&key_for(envelope, upstream)).ok().flatten());
        Some(grant.map(|grant| grant.scopes).unwrap_or_default())
    }

    /// Whether a call of a tool with `rules` to `upstream` can carry a credential now.
    pub async fn readiness(
        &self,
        envelope: &IdentityEnvelope,
        upstream: &str,
        tool: &str,
        rules: &ToolRules,
    ) -> Readiness {
        let Some(auth) = self.upstreams.get(upstream) else {
            return Readiness::NotNeeded;
        };
        let AuthKind::Delegated { delegation, .. } = &auth.kind else {
            return Readiness::Ready {
                attachment: Attachment::new(Arc::new(ServiceSource(auth.clone()))),
                evidence: format!("service credential of `{upstream}`"),
            };
        };
        let key = key_for(envelope, upstream);
        let grant = match self.store() {
            Ok(store) => store.get(&key).await,
            Err(message) => Err(message),
        };
        let grant = match grant {
            Ok(grant) => grant,
            Err(message) => {
                return Readiness::Failed(format!(
                    "the credential store cannot be read: {message}"
                ));
            }
        };
        let mut needed: BTreeSet<String> = delegation.scopes.clone();
        needed.extend(rules.upstream_scopes.iter().cloned());
        needed.extend(self.learned_scopes(upstream, tool));
        let client = client_label(envelope);
        let why = match &grant {
            None => "you have not authorised Portcullis for it yet".to_owned(),
            Some(grant) if !needed.is_subset(&grant.scopes) => format!(
                "this tool needs {} beyond what you granted",
                needed
                    .difference(&grant.scopes)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(" ")
            ),
            Some(grant) if !grant.consented_clients.contains(&client) => {
                format!("you have not authorised it for the client `{client}`")
            }
            Some(grant) if grant.refresh_token.is_none() && grant.expires_within(now(), 0) => {
                "your authorisation expired".to_owned()
            }
            Some(grant) => {
                let summary = grant.summary();
                return Readiness::Ready {
                    attachment: Attachment::new(Arc::new(DelegatedSource {
                        auth: auth.clone(),
                        store: self.store.clone(),
                        key,
                    })),
                    evidence: format!(
                        "delegated {} scopes {}",
                        grant.access_token.fingerprint(),
                        summary_scopes(&summary.scopes)
                    ),
                };
            }
        };
        // Incremental: what was granted stays asked for, with what this tool adds.
        if let Some(grant) = grant {
            needed.extend(grant.scopes);
        }
        Readiness::NeedsGrant {
            scopes: needed.into_iter().collect(),
            why,
        }
    }

    /// For an upstream with `exchange = true`: the client's own token exchanged (RFC 8693)
    /// for one whose audience is the upstream, narrowed to the scopes this tool needs. `None`
    /// when the upstream does not exchange (the caller goes on with [`Credentials::readiness`]).
    /// The inbound token goes to the authorization server that issued it, never further.
    pub async fn exchanged(
        &self,
        envelope: &IdentityEnvelope,
        upstream: &str,
        tool: &str,
        rules: &ToolRules,
        inbound: &SecretValue,
    ) -> Option<Readiness> {
        let auth = self.upstreams.get(upstream)?;
        let AuthKind::Delegated { delegation, .. } = &auth.kind else {
            return None;
        };
        if !delegation.exchange {
            return None;
        }
        let mut needed: BTreeSet<String> = delegation.scopes.clone();
        needed.extend(rules.upstream_scopes.iter().cloned());
        needed.extend(self.learned_scopes(upstream, tool));
        let needed: Vec<String> = needed.into_iter().collect();
        let client = match auth.oauth_client().await {
            Ok(client) => client,
            Err(message) => return Some(Readiness::Failed(message)),
        };
        let tokens = match client
            .exchange_token(inbound.expose(), &auth.resource, &needed)
            .await
        {
            Ok(tokens) => tokens,
            Err(error) => {
                tracing::warn!(user = %envelope.user(), upstream, %error, "token exchange refused");
                return Some(Readiness::Failed(format!(
                    "the authorization server would not exchange your token for one for `{upstream}`: {error}"
                )));
            }
        };
        let scopes: BTreeSet<String> = tokens
            .scopes
            .clone()
            .unwrap_or_else(|| needed.clone())
            .into_iter()
            .collect();
        let evidence = format!(
            "exchanged {} scopes {}",
            tokens.access_token.fingerprint(),
            summary_scopes(&scopes)
        );
        tracing::info!(user = %envelope.user(), upstream, credential = %evidence, "token exchanged");
        Some(Readiness::Ready {
            attachment: Attachment::new(Arc::new(FixedSource(tokens.access_token))),
            evidence,
        })
    }

    /// Starts an authorization code flow for the user of `envelope` at `upstream`: the page
    /// the person opens (Portcullis's own consent page, which leads to the authorization
    /// server), and a handle that resolves when the flow ends.
    pub async fn begin(
        &self,
        envelope: &IdentityEnvelope,
        upstream: &str,
        scopes: Vec<String>,
    ) -> Result<Started, String> {
        let auth = self
            .upstreams
            .get(upstream)
            .ok_or_else(|| format!("upstream `{upstream}` takes no delegated credential"))?;
        let client = auth.oauth_client().await?;
        let (url, pending) = client
            .authorization_request(&scopes, &auth.resource)
            .map_err(|error| error.to_string())?;
        self.flows.open(
            flows::FlowRequest {
                key: key_for(envelope, upstream),
                client: client_label(envelope),
                scopes,
                authorization_url: url,
                base: format!("http://{}", self.settings.callback),
            },
            pending,
        )
    }

    /// Finishes the flow whose `state` came back with `code`: exchanges the code and keeps
    /// the grant for the user and client that started it.
    pub(crate) async fn complete(&self, state: &str, code: &str) -> Result<String, String> {
        let flow = self
            .flows
            .take_by_state(state)
            .ok_or_else(|| "this sign-in link is unknown, expired or already used".to_owned())?;
        let outcome = self.exchange(&flow, code).await;
        flow.finish(outcome.clone());
        outcome
    }

    async fn exchange(&self, flow: &flows::Flow, code: &str) -> Result<String, String> {
        let upstream = &flow.request.key.upstream;
        let auth = self
            .upstreams
            .get(upstream)
            .ok_or_else(|| format!("upstream `{upstream}` is no longer configured"))?;
        let client = auth.oauth_client().await?;
        let pending = flow
            .take_pending()
            .ok_or_else(|| "this sign-in was already completed".to_owned())?;
        let tokens = client
            .exchange_code(pending, code, &auth.resource)
            .await
            .map_err(|error| format!("the authorization server refused the code: {error}"))?;
        let store = self.store()?;
        let previous = store.get(&flow.request.key).await?;
        let mut consented = previous
            .as_ref()
            .filter(|previous| {
                previous.authorization_server == client.authorization_server().issuer
            })
            .map(|previous| previous.consented_clients.clone())
            .unwrap_or_default();
        consented.insert(flow.request.client.clone());
        let grant = grant_from(
            tokens,
            &flow.request.scopes,
            auth,
            &client.authorization_server().issuer,
            consented,
        );
        let summary = grant.summary();
        let fingerprint = grant.access_token.fingerprint();
        store
            .put(&flow.request.key, grant)
            .await
            .map_err(|error| format!("the grant could not be stored: {error}"))?;
        tracing::info!(
            user = %flow.request.key.subject,
            upstream = %upstream,
            client = %flow.request.client,
            credential = %fingerprint,
            scopes = %summary_scopes(&summary.scopes),
            "delegated grant stored"
        );
        Ok(format!(
            "authorised `{upstream}` for {} ({})",
            flow.request.client,
            summary_scopes(&summary.scopes)
        ))
    }

    pub(crate) fn flows(&self) -> &flows::Flows {
        &self.flows
    }

    /// Waits at most `limit` for the flow `id` to end.
    pub async fn wait_for(&self, id: &str, limit: Duration) -> Option<FlowOutcome> {
        let flow = self.flows.get(id)?;
        let mut done = flow.watch();
        let ended = tokio::time::timeout(limit, done.wait_for(Option::is_some)).await;
        match ended {
            Ok(Ok(outcome)) => outcome.clone(),
            _ => None,
        }
    }

    /// The upstream refused `tool` for lack of `scopes` (403 `insufficient_scope`): the next
    /// call of it asks the person for them (incremental authorisation).
    pub fn learn_scopes(&self, upstream: &str, tool: &str, scopes: &[String]) {
        if let Ok(mut learned) = self.learned.lock() {
            learned
                .entry((upstream.to_owned(), tool.to_owned()))
                .or_default()
                .extend(scopes.iter().cloned());
        }
    }

    fn learned_scopes(&self, upstream: &str, tool: &str) -> BTreeSet<String> {
        self.learned
            .lock()
            .ok()
            .and_then(|learned| {
                learned
                    .get(&(upstream.to_owned(), tool.to_owned()))
                    .cloned()
            })
            .unwrap_or_default()
    }

    /// Revokes (RFC 7009, where the authorization server offers it) and deletes the user's
    /// grant for `upstream`; says what happened.
    pub async fn logout(
        &self,
        envelope: &IdentityEnvelope,
        upstream: &str,
    ) -> Result<String, String> {
        let auth = self
            .upstreams
            .get(upstream)
            .filter(|auth| matches!(auth.kind, AuthKind::Delegated { .. }))
            .ok_or_else(|| format!("upstream `{upstream}` takes no delegated credential"))?;
        let store = self.store()?;
        let key = key_for(envelope, upstream);
        // Revoked and deleted under the grant's lock (in the database, its row's): a refresh
        // through another replica cannot put a new grant in its place in between.
        let deleted = store
            .update(&key, |grant| async move {
                let revoked = auth.revoke(&grant).await;
                let credential = grant.access_token.fingerprint();
                (GrantChange::Remove, (revoked, credential))
            })
            .await?;
        let Some((revoked, credential)) = deleted else {
            return Ok(format!(
                "no grant for `{upstream}` was stored; nothing to do"
            ));
        };
        tracing::info!(user = %key.subject, upstream, %credential, %revoked, "delegated grant deleted");
        Ok(format!("deleted the grant for `{upstream}`; {revoked}"))
    }
}

fn summary_scopes(scopes: &BTreeSet<String>) -> String {
    if scopes.is_empty() {
        "no scopes".to_owned()
    } else {
        scopes.iter().cloned().collect::<Vec<_>>().join(" ")
    }
}

/// A grant from a token response: scopes as the server says, else as asked (RFC 6749 §5.1).
fn grant_from(
    tokens: Tokens,
    asked: &[String],
    auth: &UpstreamAuth,
    issuer: &str,
    consented_clients: BTreeSet<String>,
) -> Grant {
    let now = now();
    Grant {
        access_token: tokens.access_token,
        refresh_token: tokens.refresh_token,
        token_type: tokens.token_type,
        expires_at: tokens.expires_in.map(|lifetime| now + lifetime.as_secs()),
        scopes: tokens
            .scopes
            .unwrap_or_else(|| asked.to_vec())
            .into_iter()
            .collect(),
        resource: auth.resource.clone(),
        authorization_server: issuer.to_owned(),
        consented_clients,
        obtained_at: now,
    }
}

impl UpstreamAuth {
    /// Revokes `grant` at the authorization server (RFC 7009: its refresh token, which takes
    /// the access token with it, else the access token), where it offers that; what happened.
    async fn revoke(&self, grant: &Grant) -> String {
        let client = match self.oauth_client().await {
            Ok(client) => client,
            Err(error) => return format!("revocation not attempted ({error})"),
        };
        let token = grant.refresh_token.as_ref().unwrap_or(&grant.access_token);
        let hint = if grant.refresh_token.is_some() {
            TokenHint::RefreshToken
        } else {
            TokenHint::AccessToken
        };
        match client.revoke(token.expose(), hint).await {
            Ok(Revoked::Revoked) => "revoked at the authorization server".to_owned(),
            Ok(Revoked::NotSupported) => {
                "the authorization server offers no revocation; it stays valid there until it expires".to_owned()
            }
            Err(error) => {
                format!("revocation failed ({error}); it may stay valid there until it expires")
            }
        }
    }

    /// The upstream's authorization server as an OAuth client of it, discovered once (the
    /// upstream's Protected Resource Metadata, then the server's own metadata).
    async fn oauth_client(&self) -> Result<Arc<OAuthClient>, String> {
        let (cell, registration, loopback) = match &self.kind {
            AuthKind::Delegated {
                client,
                registration,
                delegation,
                ..
            } => (client, registration, delegation.client.loopback),
            AuthKind::ClientCredentials {
                client,
                registration,
                loopback,
                ..
            } => (client, registration, *loopback),
            AuthKind::ApiKey { .. } => {
                return Err(format!("upstream `{}` uses an API key", self.name));
            }
        };
        if let Some(client) = cell.get() {
            return Ok(client.clone());
        }
        let name = self.name.clone();
        let upstream = Url::parse(&self.resource)
            .map_err(|error| format!("upstream `{name}` has no valid URL: {error}"))?;
        let registration = registration.clone();
        let init = move || async move {
            let reach = Reach {
                allow_loopback: loopback,
            };
            // The upstream's own 401 first (RFC 9728 §5): its challenge names the metadata;
            // without one, the well-known URLs.
            let challenge = probe_challenge(&upstream, reach).await;
            let discovered = discover(&upstream, challenge.as_ref(), reach).await.map_err(|error| {
                format!(
                    "the authorization server of upstream `{name}` could not be discovered: {error}"
                )
            })?;
            OAuthClient::new(&discovered, registration, reach)
                .map(Arc::new)
                .map_err(|error| {
                    format!("the authorization server of upstream `{name}` cannot be used: {error}")
                })
        };
        cell.get_or_try_init(init).await.cloned()
    }
}

/// The user's delegated grant, looked up when the request is sent.
struct DelegatedSource {
    auth: Arc<UpstreamAuth>,
    store: Option<GrantStore>,
    key: CredentialKey,
}

fn bearer(token: &SecretValue) -> (HeaderName, SecretValue) {
    (
        http::header::AUTHORIZATION,
        SecretValue::new(token.expose().to_owned()),
    )
}

impl DelegatedSource {
    fn reauthorise(&self, why: &str) -> AttachFailure {
        AttachFailure::Reauthorise(why.to_owned())
    }

    fn store(&self) -> Result<&GrantStore, AttachFailure> {
        self.store
            .as_ref()
            .ok_or_else(|| AttachFailure::Failed("no credential store is open".to_owned()))
    }

    /// The grant as it is kept now: one removed anywhere (another replica, `portcullis
    /// logout`) is gone here too.
    async fn stored(&self) -> Result<Grant, AttachFailure> {
        self.store()?
            .get(&self.key)
            .await
            .map_err(|error| AttachFailure::Failed(format!("the credential store: {error}")))?
            .ok_or_else(|| self.reauthorise("your grant was removed"))
    }

    /// Refreshes the grant unless the one stored now is newer than `sent` (another request,
    /// or another replica, refreshed it meanwhile) and not about to expire.
    async fn refresh(&self, sent: Option<&str>) -> Result<Grant, AttachFailure> {
        let AuthKind::Delegated { refreshing, .. } = &self.auth.kind else {
            return Err(AttachFailure::Failed(
                "not a delegated credential".to_owned(),
            ));
        };
        let _one_at_a_time = refreshing.lock().await;
        self.store()?
            .update(&self.key, |grant| self.refreshed(grant, sent))
            .await
            .map_err(|error| AttachFailure::Failed(format!("the credential store: {error}")))?
            .unwrap_or_else(|| Err(self.reauthorise("your grant was removed")))
    }

    /// What becomes of `grant`, read afresh under the refresh lock: kept when it is newer
    /// than `sent` and not expiring, else refreshed at the authorization server (replaced),
    /// or deleted when the server refuses it for good.
    async fn refreshed(
        &self,
        grant: Grant,
        sent: Option<&str>,
    ) -> (GrantChange, Result<Grant, AttachFailure>) {
        let still_sent = sent.is_none_or(|sent| sent == grant.access_token.expose());
        if !still_sent && !expiring(&grant) {
            return (GrantChange::Keep, Ok(grant));
        }
        let Some(refresh_token) = grant.refresh_token.clone() else {
            return (
                GrantChange::Keep,
                Err(self.reauthorise("your grant expired and cannot be refreshed")),
            );
        };
        let client = match self.auth.oauth_client().await {
            Ok(client) => client,
            Err(error) => return (GrantChange::Keep, Err(AttachFailure::Failed(error))),
        };
        let tokens = match client
            .refresh(refresh_token.expose(), &self.auth.resource, None)
            .await
        {
            Ok(tokens) => tokens,
            Err(error) if error.requires_reauthorization() => {
                // The grant is dead at the server: keep nothing that pretends otherwise.
                tracing::warn!(user = %self.key.subject, upstream = %self.key.upstream, "refresh refused: the grant was revoked or expired; deleted");
                return (
                    GrantChange::Remove,
                    Err(self.reauthorise(
                        "the authorization server refused to refresh your grant (revoked or expired)",
                    )),
                );
            }
            Err(error) => {
                return (
                    GrantChange::Keep,
                    Err(AttachFailure::Failed(format!(
                        "the grant for `{}` could not be refreshed: {error}",
                        self.key.upstream
                    ))),
                );
            }
        };
        let asked: Vec<String> = grant.scopes.iter().cloned().collect();
        let mut fresh = grant_from(
            tokens,
            &asked,
            &self.auth,
            &grant.authorization_server,
            grant.consented_clients.clone(),
        );
        // A server that does not rotate refresh tokens sends none back: keep the old one.
        if fresh.refresh_token.is_none() {
            fresh.refresh_token = Some(refresh_token);
        }
        tracing::info!(user = %self.key.subject, upstream = %self.key.upstream, credential = %fresh.access_token.fingerprint(), "delegated grant refreshed");
        (GrantChange::Replace(fresh.clone()), Ok(fresh))
    }
}

impl CredentialSource for DelegatedSource {
    fn header(&self) -> BoxFuture<'_, Result<(HeaderName, SecretValue), AttachFailure>> {
        Box::pin(async move {
            let grant = self.stored().await?;
            let grant = if expiring(&grant) {
                self.refresh(None).await?
            } else {
                grant
            };
            Ok(bearer(&grant.access_token))
        })
    }

    fn rejected<'a>(
        &'a self,
        sent: &'a SecretValue,
    ) -> BoxFuture<'a, Result<Option<(HeaderName, SecretValue)>, AttachFailure>> {
        Box::pin(async move {
            let grant = self.refresh(Some(sent.expose())).await?;
            Ok(Some(bearer(&grant.access_token)))
        })
    }
}

/// A token obtained for this one call (token exchange): nothing to refresh it with.
struct FixedSource(SecretValue);

impl CredentialSource for FixedSource {
    fn header(&self) -> BoxFuture<'_, Result<(HeaderName, SecretValue), AttachFailure>> {
        Box::pin(async move { Ok(bearer(&self.0)) })
    }

    fn rejected<'a>(
        &'a self,
        _sent: &'a SecretValue,
    ) -> BoxFuture<'a, Result<Option<(HeaderName, SecretValue)>, AttachFailure>> {
        Box::pin(async move {
            Err(AttachFailure::Reauthorise(
                "the upstream refused the token exchanged for this call".to_owned(),
            ))
        })
    }
}

/// The upstream's own service credential.
struct ServiceSource(Arc<UpstreamAuth>);

impl ServiceSource {
    async fn client_credentials(&self, force: bool) -> Result<SecretValue, AttachFailure> {
        let AuthKind::ClientCredentials { scopes, cached, .. } = &self.0.kind else {
            return Err(AttachFailure::Failed(
                "not a client credentials grant".to_owned(),
            ));
        };
        let mut cached = cached.lock().await;
        if let Some((token, expires_at)) = cached.as_ref()
            && !force
            && expires_at.is_none_or(|at| at > now() + REFRESH_MARGIN_SECS)
        {
            return Ok(SecretValue::new(token.expose().to_owned()));
        }
        let client = self.0.oauth_client().await.map_err(AttachFailure::Failed)?;
        let tokens = client
            .client_credentials(scopes, &self.0.resource)
            .await
            .map_err(|error| {
                AttachFailure::Failed(format!("no service token for `{}`: {error}", self.0.name))
            })?;
        let token = tokens.access_token;
        let expires_at = tokens.expires_in.map(|lifetime| now() + lifetime.as_secs());
        *cached = Some((SecretValue::new(token.expose().to_owned()), expires_at));
        Ok(token)
    }
}

impl CredentialSource for ServiceSource {
    fn header(&self) -> BoxFuture<'_, Result<(HeaderName, SecretValue), AttachFailure>> {
        Box::pin(async move {
            match &self.0.kind {
                AuthKind::ApiKey { header, value } => {
                    Ok((header.clone(), SecretValue::new(value.expose().to_owned())))
                }
                _ => Ok(bearer(&self.client_credentials(false).await?)),
            }
        })
    }

    fn rejected<'a>(
        &'a self,
        _sent: &'a SecretValue,
    ) -> BoxFuture<'a, Result<Option<(HeaderName, SecretValue)>, AttachFailure>> {
        Box::pin(async move {
            match &self.0.kind {
                // A key is what it is: a refusal is final.
                AuthKind::ApiKey { .. } => Ok(None),
                _ => Ok(Some(bearer(&self.client_credentials(true).await?))),
            }
        })
    }
}
