//! The resource server: the issuer discovered once, its keys cached, each bearer token
//! checked against them and mapped to an identity envelope.
//!
//! Keys are published through an `ArcSwap`, so a request whose key is known takes no lock.
//! An unknown `kid` may trigger one JWKS fetch, and fetches are rate-limited: a flood of
//! tokens naming made-up keys cannot make Portcullis hammer the issuer.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use axum::Router;
use portcullis_core::{IdentityEnvelope, ResourceServerSettings, UserId};
use rustls::pki_types::CertificateDer;
use serde::Deserialize;
use tokio::sync::Mutex;
use url::Url;

use crate::fetch::{Destinations, Fetcher, check_url};
use crate::keys::{KeySet, VerificationKey};
use crate::metadata::{
    MetadataEndpoint, MetadataOrder, ProtectedResourceMetadata, authorization_server_metadata_urls,
};
use crate::token::{self, Claimed};
use crate::{AuthError, RejectReason, Rejection};

/// Authorization server metadata is a few kilobytes; anything far larger is not metadata.
const METADATA_LIMIT: usize = 64 * 1024;
/// A JWKS holds a handful of keys of under a kilobyte each.
const JWKS_LIMIT: usize = 256 * 1024;

/// How often and how long the resource server talks to its issuer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timing {
    /// Each fetch, connect to last byte.
    pub(crate) fetch_timeout: Duration,
    /// At most one JWKS refresh per interval, whatever triggers it.
    pub(crate) refresh_interval: Duration,
    /// A key set older than this is refreshed in the background, so that a key the issuer
    /// stopped publishing (rotated out, or revoked) stops being trusted.
    pub(crate) key_set_max_age: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            fetch_timeout: Duration::from_secs(10),
            refresh_interval: Duration::from_secs(10),
            key_set_max_age: Duration::from_secs(15 * 60),
        }
    }
}

/// Portcullis as an OAuth 2.1 resource server for one issuer. Cheap to clone (it is shared).
#[derive(Clone)]
pub struct ResourceServer {
    inner: Arc<Inner>,
}

struct Inner {
    settings: ResourceServerSettings,
    metadata: MetadataEndpoint,
    jwks_uri: Url,
    fetcher: Fetcher,
    keys: ArcSwap<KeySet>,
    /// Held while a refresh runs, so concurrent requests naming the same new key wait for one
    /// fetch instead of starting their own.
    refresh: Arc<Mutex<RefreshState>>,
    timing: Timing,
}

#[derive(Debug, Default)]
struct RefreshState {
    /// The last refresh attempt, successful or not. The fetch made by `discover` does not
    /// count: the first new key after start is fetched at once.
    last_attempt: Option<Instant>,
}

impl fmt::Debug for ResourceServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResourceServer")
            .field("issuer", &self.inner.settings.issuer)
            .field("resource", &self.inner.settings.resource)
            .field("jwks_uri", &self.inner.jwks_uri.as_str())
            .field("n_keys", &self.inner.keys.load().len())
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct AuthorizationServerMetadata {
    issuer: String,
    #[serde(default)]
    jwks_uri: Option<String>,
}

impl ResourceServer {
    /// Discovers the issuer (OpenID Connect discovery, then RFC 8414), requires its metadata
    /// to name exactly the configured issuer, and fetches its keys.
    pub async fn discover(settings: ResourceServerSettings) -> Result<Self, AuthError> {
        Self::discover_with(settings, Timing::default(), Vec::new()).await
    }

    /// `discover` with other timing, and CA certificates trusted beside the platform's.
    pub(crate) async fn discover_with(
        settings: ResourceServerSettings,
        timing: Timing,
        extra_roots: Vec<CertificateDer<'static>>,
    ) -> Result<Self, AuthError> {
        let metadata = MetadataEndpoint::new(&settings)?;
        let issuer = parse_url(&settings.issuer)?;
        let destinations = Destinations::Configured {
            allow_http: settings.allow_http,
        };
        check_url(&issuer, destinations)?;
        if issuer.query().is_some() || issuer.fragment().is_some() {
            // RFC 8414 §2: an issuer identifier has no query or fragment.
            return Err(AuthError::UnsupportedUrl {
                url: settings.issuer.clone(),
                what: "a query or fragment",
            });
        }
        let fetcher = Fetcher::configured(settings.allow_http, timing.fetch_timeout, extra_roots);
        let (metadata_url, document) =
            discover_metadata(&fetcher, &settings.issuer, &issuer).await?;
        // OpenID Connect Discovery §4.3, RFC 8414 §3.3: the document must name exactly the
        // issuer it was fetched for, or one issuer's metadata could stand in for another's.
        if document.issuer != settings.issuer {
            return Err(AuthError::IssuerMismatch {
                url: metadata_url.to_string(),
                expected: settings.issuer.clone(),
                found: document.issuer,
            });
        }
        let jwks_uri = document.jwks_uri.ok_or_else(|| AuthError::NoJwksUri {
            url: metadata_url.to_string(),
        })?;
        let jwks_uri = parse_url(&jwks_uri)?;
        check_url(&jwks_uri, destinations)?;
        let keys = fetch_keys(&fetcher, &jwks_uri).await?;
        if keys.is_empty() {
            return Err(AuthError::NoUsableKeys {
                url: jwks_uri.to_string(),
            });
        }
        tracing::info!(
            issuer = %settings.issuer,
            jwks_uri = %jwks_uri,
            n_keys = keys.len(),
            "discovered the authorization server"
        );
        Ok(Self {
            inner: Arc::new(Inner {
                settings,
                metadata,
                jwks_uri,
                fetcher,
                keys: ArcSwap::from_pointee(keys),
                refresh: Arc::new(Mutex::new(RefreshState::default())),
                timing,
            }),
        })
    }

    pub fn settings(&self) -> &ResourceServerSettings {
        &self.inner.settings
    }

    /// The fetcher of the issuer's documents (and of its other endpoints, for a sign-in).
    pub(crate) fn fetcher(&self) -> &Fetcher {
        &self.inner.fetcher
    }

    /// Where the protected resource metadata is served (RFC 9728 §3.1).
    pub fn metadata_url(&self) -> &str {
        &self.inner.metadata.url
    }

    /// The protected resource metadata document (RFC 9728 §2).
    pub fn metadata(&self) -> &ProtectedResourceMetadata {
        &self.inner.metadata.document
    }

    /// A router that serves the metadata at `/.well-known/oauth-protected-resource` and at
    /// its path-suffixed form; merge it outside any `require_bearer` layer.
    pub fn metadata_router<S>(&self) -> Router<S>
    where
        S: Clone + Send + Sync + 'static,
    {
        self.inner.metadata.router()
    }

    /// The `WWW-Authenticate` value for `rejection`, pointing at this server's metadata.
    pub fn www_authenticate(&self, rejection: &Rejection) -> String {
        rejection.www_authenticate(self.metadata_url())
    }

    /// Checks the bearer token of an `Authorization` header at `now_secs` (seconds since the
    /// epoch) and returns the identity it stands for. Logs the outcome, never the token.
    pub async fn authenticate(
        &self,
        authorization_header: Option<&str>,
        now_secs: u64,
    ) -> Result<Arc<IdentityEnvelope>, Rejection> {
        let (outcome, claimed) = self.check(authorization_header, now_secs).await;
        match &outcome {
            // Values from the token are logged with `?`, escaped: they are the issuer's words,
            // but a log line is no place to trust them.
            Ok(envelope) => tracing::info!(
                user = ?envelope.user().to_string(),
                client = ?envelope.client().unwrap_or("-"),
                "bearer token accepted"
            ),
            Err(rejection) => log_rejection(rejection, &claimed),
        }
        outcome
    }

    /// The checks in order; with the claimed user once the signature holds, for the log.
    async fn check(
        &self,
        authorization_header: Option<&str>,
        now_secs: u64,
    ) -> (Result<Arc<IdentityEnvelope>, Rejection>, Claimed) {
        let verified = async {
            let token = token::bearer_token(authorization_header)?;
            let header = token::unverified_header(token)?;
            let key = self.key(&header.kid).await?;
            key.verify(token.as_str(), header.algorithm)
        };
        match verified.await {
            Ok(claims) => token::accepted(&claims, &self.inner.settings, now_secs),
            Err(reason) => (Err(Rejection::new(reason)), Claimed::default()),
        }
    }

    /// The issuer's key named `kid`: from the cache, or after one rate-limited refresh.
    async fn key(&self, kid: &str) -> Result<Arc<VerificationKey>, RejectReason> {
        let keys = self.inner.keys.load();
        if let Some(key) = keys.get(kid) {
            if keys.fetched_at.elapsed() >= self.inner.timing.key_set_max_age {
                self.refresh_in_background();
            }
            return Ok(key);
        }
        drop(keys);

        let mut state = self.inner.refresh.lock().await;
        // Another request may have fetched the key while this one waited for the lock.
        if let Some(key) = self.inner.keys.load().get(kid) {
            return Ok(key);
        }
        if !self.may_refresh(&state) {
            tracing::debug!(
                kid = ?truncated(kid),
                "unknown signing key; the key set was refreshed too recently to fetch it again"
            );
            return Err(RejectReason::UnknownKey);
        }
        state.last_attempt = Some(Instant::now());
        self.refresh().await;
        drop(state);
        self.inner
            .keys
            .load()
            .get(kid)
            .ok_or(RejectReason::UnknownKey)
    }

    fn may_refresh(&self, state: &RefreshState) -> bool {
        state
            .last_attempt
            .is_none_or(|last| last.elapsed() >= self.inner.timing.refresh_interval)
    }

    /// Refreshes an aged key set without holding up the request that noticed: at most one at
    /// a time, within the same rate limit as the refreshes for unknown keys.
    fn refresh_in_background(&self) {
        let Ok(mut state) = Arc::clone(&self.inner.refresh).try_lock_owned() else {
            return;
        };
        if !self.may_refresh(&state) {
            return;
        }
        state.last_attempt = Some(Instant::now());
        let server = self.clone();
        tokio::spawn(async move {
            server.refresh().await;
            drop(state);
        });
    }

    /// Fetches the JWKS and publishes it. On failure the old keys stay: an unreachable issuer
    /// must not lock out tokens signed with keys we already hold.
    async fn refresh(&self) {
        let uri = &self.inner.jwks_uri;
        match fetch_keys(&self.inner.fetcher, uri).await {
            Ok(keys) => {
                tracing::info!(jwks_uri = %uri, n_keys = keys.len(), "refreshed the issuer's keys");
                self.inner.keys.store(Arc::new(keys));
            }
            Err(error) => {
                tracing::warn!(jwks_uri = %uri, %error, "could not refresh the issuer's keys");
            }
        }
    }
}

/// Logs a rejection with its reason and, once the signature held, who the token claims to be.
pub(crate) fn log_rejection(rejection: &Rejection, claimed: &Claimed) {
    match rejection.reason() {
        // Signs of a forged token rather than a stale or misdirected one.
        RejectReason::DisallowedAlgorithm
        | RejectReason::KeyMismatch
        | RejectReason::BadSignature => tracing::warn!(
            status = rejection.status().as_u16(),
            reason = %rejection.reason(),
            "bearer token rejected"
        ),
        _ => tracing::info!(
            status = rejection.status().as_u16(),
            reason = %rejection.reason(),
            user = ?claimed.user.as_ref().map_or_else(|| "-".to_owned(), UserId::to_string),
            client = ?claimed.client.as_deref().unwrap_or("-"),
            "bearer token rejected"
        ),
    }
}

/// A `kid` for the log: it comes from an unverified token, so its length is bounded here.
fn truncated(kid: &str) -> &str {
    match kid.char_indices().nth(64) {
        Some((end, _)) => kid.get(..end).unwrap_or(kid),
        None => kid,
    }
}

fn parse_url(text: &str) -> Result<Url, AuthError> {
    Url::parse(text).map_err(|error| AuthError::InvalidUrl {
        url: text.to_owned(),
        reason: error.to_string(),
    })
}

/// Fetches the first metadata document that exists. Only a missing document (an error
/// status) moves on to the next location; a network failure or an unreadable document ends
/// discovery, since the next location is on the same host.
async fn discover_metadata(
    fetcher: &Fetcher,
    issuer_text: &str,
    issuer: &Url,
) -> Result<(Url, AuthorizationServerMetadata), AuthError> {
    let candidates =
        authorization_server_metadata_urls(issuer_text, issuer, MetadataOrder::OpenIdFirst);
    for candidate in &candidates {
        let fetched = fetcher.get(candidate, METADATA_LIMIT).await?;
        if !fetched.status.is_success() {
            tracing::debug!(url = %candidate, status = fetched.status.as_u16(), "no metadata here");
            continue;
        }
        let document =
            serde_json::from_slice(&fetched.body).map_err(|error| AuthError::InvalidDocument {
                url: candidate.to_string(),
                what: "authorization server metadata document",
                reason: error.to_string(),
            })?;
        return Ok((candidate.clone(), document));
    }
    Err(AuthError::MetadataNotFound {
        issuer: issuer_text.to_owned(),
        tried: candidates
            .iter()
            .map(|candidate| format!("`{candidate}`"))
            .collect::<Vec<_>>()
            .join(", "),
    })
}

async fn fetch_keys(fetcher: &Fetcher, jwks_uri: &Url) -> Result<KeySet, AuthError> {
    let fetched = fetcher.get(jwks_uri, JWKS_LIMIT).await?;
    if !fetched.status.is_success() {
        return Err(AuthError::Status {
            url: jwks_uri.to_string(),
            status: fetched.status.as_u16(),
        });
    }
    KeySet::parse(&fetched.body, Instant::now()).map_err(|error| AuthError::InvalidDocument {
        url: jwks_uri.to_string(),
        what: "key set (JWKS)",
        reason: error.to_string(),
    })
}
