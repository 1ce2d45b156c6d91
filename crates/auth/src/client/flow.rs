//! The grants: the authorization code flow with PKCE, refresh, client credentials, token
//! exchange (RFC 8693), and revocation (RFC 7009), for one registered client at one
//! discovered authorization server.
//!
//! oauth2 builds PKCE, the authorization URL and the code, refresh and client-credentials
//! requests and reads their answers; revocation and token exchange are form POSTs of ours
//! (oauth2 5 has no token exchange, and refuses any revocation endpoint that is not https,
//! which rules out the loopback servers of tests and local development). Every request goes
//! through the same [`Fetcher`], under the same rules.

use std::fmt;
use std::time::Duration;

use oauth2::basic::BasicClient;
use oauth2::{
    AuthType, AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointMaybeSet,
    EndpointNotSet, EndpointSet, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, RefreshToken,
    Scope, TokenUrl,
};
use url::Url;

use super::challenge::is_scope_token;
use super::discovery::{AuthorizationServerMetadata, Discovered, checked_endpoint, reach_of};
use super::endpoint::{self, ClientAuth, Credentials, Oauth2Http};
use super::secret::constant_time_eq;
use super::{ClientError, Secret};
use crate::fetch::{Fetcher, Reach, shown};

/// Bytes of randomness in `state`: 256 bits, so that guessing it is hopeless (RFC 6749 §10.12).
const STATE_BYTES: u32 = 32;

/// The parameters the authorization URL sets: an authorization endpoint whose own query has
/// one of them is refused, since the server would then see it twice and might take its copy.
const AUTHORIZATION_PARAMS: &[&str] = &[
    "response_type",
    "client_id",
    "state",
    "code_challenge",
    "code_challenge_method",
    "redirect_uri",
    "scope",
    "resource",
];

const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";

/// A client registered with one authorization server.
#[derive(Debug, Clone)]
pub struct ClientRegistration {
    /// The issuer the client is registered with. A discovered server with another issuer is
    /// refused: a registration (its secret above all) is never sent to a server an upstream
    /// merely named.
    pub issuer: String,
    pub client_id: String,
    /// `None` for a public client.
    pub client_secret: Option<Secret>,
    /// Sent exactly as given, in the authorization URL and the code exchange.
    pub redirect_uri: Url,
}

/// Tokens from the token endpoint.
#[derive(Debug, Clone)]
pub struct Tokens {
    pub access_token: Secret,
    /// After a refresh, `None` means the old refresh token stays valid (RFC 6749 §6).
    pub refresh_token: Option<Secret>,
    pub expires_in: Option<Duration>,
    /// The granted scopes when the server said (it must when they differ from those asked for).
    pub scopes: Option<Vec<String>>,
    /// `Bearer`, or the server's other type as it wrote it (lowercased).
    pub token_type: String,
}

/// Which token [`OAuthClient::revoke`] is given (RFC 7009 `token_type_hint`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenHint {
    AccessToken,
    RefreshToken,
}

impl TokenHint {
    fn as_str(self) -> &'static str {
        match self {
            Self::AccessToken => "access_token",
            Self::RefreshToken => "refresh_token",
        }
    }
}

/// What a revocation achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revoked {
    /// The server revoked the token, or did not know it (RFC 7009 §2.2: both are a 200).
    Revoked,
    /// The server has no revocation endpoint, or does not revoke this type of token
    /// (`unsupported_token_type`): the token stays valid until it expires.
    NotSupported,
}

/// An authorization request on its way through the person's browser: the `state` to expect
/// back, and the PKCE verifier for the code exchange. Used once: the exchange takes it.
pub struct PendingAuthorization {
    /// The `state` sent; compare what comes back with [`PendingAuthorization::matches_state`].
    pub state: String,
    verifier: PkceCodeVerifier,
}

impl PendingAuthorization {
    /// Whether `returned` (the redirect's `state`) is ours, compared in constant time.
    pub fn matches_state(&self, returned: &str) -> bool {
        constant_time_eq(&self.state, returned)
    }

    #[cfg(test)]
    pub(crate) fn verifier(&self) -> &str {
        self.verifier.secret()
    }
}

impl fmt::Debug for PendingAuthorization {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PendingAuthorization")
            .field("state", &Secret::new(self.state.as_str()).fingerprint())
            .finish_non_exhaustive()
    }
}

type Oauth2Client = BasicClient<
    EndpointMaybeSet, // authorization
    EndpointNotSet,   // device authorization
    EndpointNotSet,   // introspection
    EndpointNotSet,   // revocation: ours
    EndpointSet,      // token
>;

/// Portcullis as the client of one upstream's authorization server.
pub struct OAuthClient {
    oauth2: Oauth2Client,
    registration: ClientRegistration,
    metadata: AuthorizationServerMetadata,
    auth: ClientAuth,
    fetcher: Fetcher,
}

impl fmt::Debug for OAuthClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuthClient")
            .field("issuer", &self.metadata.issuer)
            .field("client_id", &self.registration.client_id)
            .field("auth", &self.auth)
            .field("token_endpoint", &shown(&self.metadata.token_endpoint))
            .finish_non_exhaustive()
    }
}

impl OAuthClient {
    /// The client for `registration` at the discovered server, its requests under `reach`.
    pub fn new(
        discovered: &Discovered,
        registration: ClientRegistration,
        reach: Reach,
    ) -> Result<Self, ClientError> {
        Self::with_fetcher(discovered, registration, Fetcher::upstream(reach))
    }

    /// [`OAuthClient::new`] with its own fetcher (another deadline, or extra trusted CAs).
    pub fn with_fetcher(
        discovered: &Discovered,
        registration: ClientRegistration,
        fetcher: Fetcher,
    ) -> Result<Self, ClientError> {
        Self::for_server(
            discovered.authorization_server().clone(),
            registration,
            fetcher,
        )
    }

    /// The client for `registration` at the server whose checked `metadata` this is.
    pub(crate) fn for_server(
        metadata: AuthorizationServerMetadata,
        registration: ClientRegistration,
        fetcher: Fetcher,
    ) -> Result<Self, ClientError> {
        if registration.issuer != metadata.issuer {
            return Err(ClientError::UnregisteredIssuer {
                registered: registration.issuer,
                discovered: metadata.issuer,
            });
        }
        // The endpoints were checked by discovery under its fetcher's reach; this client's
        // may be narrower.
        let reach = reach_of(&fetcher);
        let recheck = |name, url: &Url| checked_endpoint(name, url.as_str(), reach);
        recheck("token_endpoint", &metadata.token_endpoint)?;
        if let Some(url) = &metadata.revocation_endpoint {
            recheck("revocation_endpoint", url)?;
        }
        if let Some(url) = &metadata.authorization_endpoint {
            recheck("authorization_endpoint", url)?;
            if url
                .query_pairs()
                .any(|(name, _)| AUTHORIZATION_PARAMS.contains(&name.as_ref()))
            {
                return Err(ClientError::InvalidEndpoint {
                    endpoint: "authorization_endpoint",
                    url: shown(url),
                    reason: "its query sets a parameter of the authorization request",
                });
            }
        }
        if registration.redirect_uri.fragment().is_some() {
            // RFC 6749 §3.1.2.
            return Err(ClientError::UnsupportedUrl {
                url: shown(&registration.redirect_uri),
                what: "a fragment (it is a redirect uri)",
            });
        }
        let auth = client_auth(&registration, &metadata);
        let mut oauth2 = BasicClient::new(ClientId::new(registration.client_id.clone()))
            .set_auth_uri_option(
                metadata
                    .authorization_endpoint
                    .clone()
                    .map(AuthUrl::from_url),
            )
            .set_token_uri(TokenUrl::from_url(metadata.token_endpoint.clone()))
            .set_redirect_uri(RedirectUrl::from_url(registration.redirect_uri.clone()))
            .set_auth_type(match auth {
                ClientAuth::Body => AuthType::RequestBody,
                ClientAuth::Basic | ClientAuth::Public => AuthType::BasicAuth,
            });
        if let Some(secret) = &registration.client_secret {
            oauth2 = oauth2.set_client_secret(ClientSecret::new(secret.expose().to_owned()));
        }
        Ok(Self {
            oauth2,
            registration,
            metadata,
            auth,
            fetcher,
        })
    }

    /// The server this client talks to.
    pub fn authorization_server(&self) -> &AuthorizationServerMetadata {
        &self.metadata
    }

    /// The URL to send the person's browser to, and what to keep until the redirect comes
    /// back: PKCE S256, a random single-use `state`, `resource` (RFC 8707), the registered
    /// `redirect_uri`, and `scope` (space-separated; left out when `scopes` is empty).
    pub fn authorization_request(
        &self,
        scopes: &[String],
        resource: &str,
    ) -> Result<(Url, PendingAuthorization), ClientError> {
        self.authorization_request_with(scopes, resource, &[])
    }

    /// [`OAuthClient::authorization_request`] with more parameters (OpenID Connect's
    /// `prompt`, say); none may be one the request itself sets.
    pub(crate) fn authorization_request_with(
        &self,
        scopes: &[String],
        resource: &str,
        extra: &[(&'static str, &str)],
    ) -> Result<(Url, PendingAuthorization), ClientError> {
        debug_assert!(
            extra
                .iter()
                .all(|(name, _)| !AUTHORIZATION_PARAMS.contains(name))
        );
        let scopes = checked_scopes(scopes)?;
        checked_resource(resource)?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let request = self
            .oauth2
            .authorize_url(|| CsrfToken::new_random_len(STATE_BYTES))
            .map_err(|_| ClientError::MissingEndpoint {
                issuer: self.metadata.issuer.clone(),
                endpoint: "authorization_endpoint",
            })?;
        let mut request = request
            .add_scopes(scopes)
            .set_pkce_challenge(challenge)
            .add_extra_param("resource", resource);
        for (name, value) in extra {
            request = request.add_extra_param(*name, *value);
        }
        let (url, state) = request.url();
        let pending = PendingAuthorization {
            state: state.into_secret(),
            verifier,
        };
        Ok((url, pending))
    }

    /// Exchanges the code the redirect brought back (the caller has checked its `state`)
    /// for tokens, proving the PKCE verifier.
    pub async fn exchange_code(
        &self,
        pending: PendingAuthorization,
        code: &str,
        resource: &str,
    ) -> Result<Tokens, ClientError> {
        checked_resource(resource)?;
        let verifier = pending.verifier.secret().clone();
        let http = Oauth2Http(self.fetcher.clone());
        let answer = self
            .oauth2
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .set_pkce_verifier(pending.verifier)
            .add_extra_param("resource", resource)
            .request_async(&http)
            .await;
        self.token_answer("authorization_code", answer, &[code, &verifier])
    }

    /// New tokens for a refresh token, for `resource`, optionally narrowed to `scopes`.
    pub async fn refresh(
        &self,
        refresh_token: &str,
        resource: &str,
        scopes: Option<&[String]>,
    ) -> Result<Tokens, ClientError> {
        checked_resource(resource)?;
        let scopes = scopes.map(checked_scopes).transpose()?.unwrap_or_default();
        let refresh = RefreshToken::new(refresh_token.to_owned());
        let http = Oauth2Http(self.fetcher.clone());
        let answer = self
            .oauth2
            .exchange_refresh_token(&refresh)
            .add_scopes(scopes)
            .add_extra_param("resource", resource)
            .request_async(&http)
            .await;
        self.token_answer("refresh_token", answer, &[refresh_token])
    }

    /// Tokens for the client itself (no person), for `resource`.
    pub async fn client_credentials(
        &self,
        scopes: &[String],
        resource: &str,
    ) -> Result<Tokens, ClientError> {
        let scopes = checked_scopes(scopes)?;
        checked_resource(resource)?;
        let http = Oauth2Http(self.fetcher.clone());
        let answer = self
            .oauth2
            .exchange_client_credentials()
            .add_scopes(scopes)
            .add_extra_param("resource", resource)
            .request_async(&http)
            .await;
        self.token_answer("client_credentials", answer, &[])
    }

    /// RFC 8693 token exchange: an access token for `resource` in exchange for
    /// `subject_token` (an access token the downstream client presented to Portcullis).
    pub async fn exchange_token(
        &self,
        subject_token: &str,
        resource: &str,
        scopes: &[String],
    ) -> Result<Tokens, ClientError> {
        let scopes = checked_scopes(scopes)?;
        checked_resource(resource)?;
        let url = &self.metadata.token_endpoint;
        let mut params = vec![
            ("grant_type", TOKEN_EXCHANGE.to_owned()),
            ("subject_token", subject_token.to_owned()),
            ("subject_token_type", ACCESS_TOKEN_TYPE.to_owned()),
            ("requested_token_type", ACCESS_TOKEN_TYPE.to_owned()),
            ("resource", resource.to_owned()),
        ];
        if !scopes.is_empty() {
            params.push(("scope", joined(&scopes)));
        }
        let secrets = self.secrets(&[subject_token]);
        let fetched = endpoint::post_form(&self.fetcher, url, &self.credentials(), params).await?;
        let outcome = endpoint::exchange_response(url, &fetched, &secrets);
        self.log_outcome("token_exchange", &outcome);
        outcome
    }

    /// Revokes `token` (RFC 7009). Without a revocation endpoint, [`Revoked::NotSupported`].
    pub async fn revoke(&self, token: &str, hint: TokenHint) -> Result<Revoked, ClientError> {
        let Some(url) = &self.metadata.revocation_endpoint else {
            return Ok(Revoked::NotSupported);
        };
        let params = vec![
            ("token", token.to_owned()),
            ("token_type_hint", hint.as_str().to_owned()),
        ];
        let fetched = endpoint::post_form(&self.fetcher, url, &self.credentials(), params).await?;
        if fetched.status.is_success() {
            tracing::info!(issuer = ?self.metadata.issuer, hint = hint.as_str(), "token revoked");
            return Ok(Revoked::Revoked);
        }
        match endpoint::refusal(url, &fetched, &self.secrets(&[token])) {
            ClientError::Refused { error, .. } if error == "unsupported_token_type" => {
                Ok(Revoked::NotSupported)
            }
            error => Err(error),
        }
    }

    fn credentials(&self) -> Credentials<'_> {
        Credentials {
            client_id: &self.registration.client_id,
            client_secret: self.registration.client_secret.as_ref(),
            auth: self.auth,
        }
    }

    /// The request's secrets and the client secret: none of them may appear in an error.
    fn secrets<'a>(&'a self, request: &[&'a str]) -> Vec<&'a str> {
        let mut secrets = request.to_vec();
        if let Some(secret) = &self.registration.client_secret {
            secrets.push(secret.expose());
        }
        secrets
    }

    fn token_answer(
        &self,
        grant: &'static str,
        answer: Result<
            oauth2::basic::BasicTokenResponse,
            oauth2::RequestTokenError<endpoint::EndpointFailure, oauth2::basic::BasicErrorResponse>,
        >,
        request_secrets: &[&str],
    ) -> Result<Tokens, ClientError> {
        let url = &self.metadata.token_endpoint;
        let outcome = match answer {
            Ok(response) => endpoint::tokens(url, &response),
            Err(error) => Err(endpoint::from_oauth2(
                url,
                error,
                &self.secrets(request_secrets),
            )),
        };
        self.log_outcome(grant, &outcome);
        outcome
    }

    fn log_outcome(&self, grant: &'static str, outcome: &Result<Tokens, ClientError>) {
        match outcome {
            Ok(tokens) => tracing::info!(
                issuer = ?self.metadata.issuer,
                grant,
                expires_in_secs = tokens.expires_in.map(|expires| expires.as_secs()),
                refresh_token = tokens.refresh_token.is_some(),
                "token obtained"
            ),
            Err(error) => tracing::warn!(
                issuer = ?self.metadata.issuer,
                grant,
                %error,
                "no token"
            ),
        }
    }
}

/// Basic unless the server names `client_secret_post` and not Basic (RFC 8414 §2: Basic is
/// the default when it names none).
fn client_auth(
    registration: &ClientRegistration,
    metadata: &AuthorizationServerMetadata,
) -> ClientAuth {
    if registration.client_secret.is_none() {
        return ClientAuth::Public;
    }
    match &metadata.token_endpoint_auth_methods_supported {
        Some(methods)
            if !methods.iter().any(|method| method == "client_secret_basic")
                && methods.iter().any(|method| method == "client_secret_post") =>
        {
            ClientAuth::Body
        }
        _ => ClientAuth::Basic,
    }
}

/// Scopes as oauth2 takes them, each a valid scope token: a space inside one would make two.
fn checked_scopes(scopes: &[String]) -> Result<Vec<Scope>, ClientError> {
    scopes
        .iter()
        .map(|scope| {
            if is_scope_token(scope) {
                Ok(Scope::new(scope.clone()))
            } else {
                Err(ClientError::InvalidScope {
                    scope: scope.escape_debug().to_string(),
                })
            }
        })
        .collect()
}

fn joined(scopes: &[Scope]) -> String {
    scopes
        .iter()
        .map(|scope| scope.as_str())
        .collect::<Vec<_>>()
        .join(" ")
}

/// RFC 8707 §2: an absolute URI without a fragment.
fn checked_resource(resource: &str) -> Result<(), ClientError> {
    let refuse = |reason| ClientError::InvalidResource {
        resource: resource.escape_debug().to_string(),
        reason,
    };
    let url = Url::parse(resource).map_err(|_| refuse("not an absolute uri"))?;
    if url.fragment().is_some() {
        return Err(refuse("it has a fragment"));
    }
    Ok(())
}
