//! A person signed in at one of Portcullis's own pages (the approval page) by the issuer
//! Portcullis already trusts as a resource server: the authorization code flow with PKCE, for
//! a token whose audience is Portcullis's own resource, checked exactly as a client's bearer
//! token is. So the person on the page is the same identity (user, groups) the MCP calls of
//! that person carry, mapped by the same claims.
//!
//! The token itself never leaves this module: [`SignIn::finish`] returns the identity it
//! stands for and drops it.

use std::sync::Arc;

use portcullis_core::IdentityEnvelope;
use url::Url;

use crate::client::discovery::{fetch_authorization_server_metadata, reach_of};
use crate::client::{ClientError, ClientRegistration, OAuthClient, PendingAuthorization, Secret};
use crate::{Rejection, ResourceServer};

/// Why a sign-in did not yield an identity.
#[derive(Debug, thiserror::Error)]
pub enum SignInError {
    /// The redirect came back from another issuer than the one asked (RFC 9207 `iss`).
    #[error("the sign-in came back from `{found}`, not from the configured issuer")]
    OtherIssuer { found: String },
    /// The code exchange failed (the error names no code, verifier or secret).
    #[error(transparent)]
    Exchange(#[from] ClientError),
    /// The issuer's token is not one Portcullis accepts for its own resource.
    #[error("the issuer's token was refused: {0}")]
    Refused(String),
}

/// Sign-in at a page of Portcullis's, for one registered client at the resource server's own
/// issuer. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct SignIn {
    server: ResourceServer,
    client: OAuthClient,
}

impl SignIn {
    /// Discovers the issuer's authorization and token endpoints (RFC 8414, then OpenID
    /// Connect discovery), under the same fetch rules as the resource server's keys, for the
    /// client `client_id` (confidential with `client_secret`, else public) whose redirect URI
    /// is `redirect_uri`.
    pub async fn discover(
        server: &ResourceServer,
        client_id: String,
        client_secret: Option<Secret>,
        redirect_uri: Url,
    ) -> Result<Self, ClientError> {
        let issuer = server.settings().issuer.clone();
        let fetcher = server.fetcher().clone();
        let (_, metadata) =
            fetch_authorization_server_metadata(&fetcher, &issuer, reach_of(&fetcher)).await?;
        if metadata.authorization_endpoint.is_none() {
            return Err(ClientError::MissingEndpoint {
                issuer,
                endpoint: "authorization_endpoint",
            });
        }
        let registration = ClientRegistration {
            issuer,
            client_id,
            client_secret,
            redirect_uri,
        };
        let client = OAuthClient::for_server(metadata, registration, fetcher)?;
        Ok(Self {
            server: server.clone(),
            client,
        })
    }

    /// Where to send the person's browser, and what to keep until it comes back. The request
    /// asks for Portcullis's own resource and required scopes, and (OpenID Connect's
    /// `prompt=login`) for the person to authenticate again rather than ride on a session
    /// their browser already holds: whoever drives that browser is not thereby the person.
    pub fn begin(&self) -> Result<(Url, PendingAuthorization), ClientError> {
        let settings = self.server.settings();
        let scopes: Vec<String> = settings.required_scopes.iter().cloned().collect();
        self.client
            .authorization_request_with(&scopes, &settings.resource, &[("prompt", "login")])
    }

    /// The identity the code stands for: exchanged with the PKCE verifier, and its token
    /// checked as a bearer token of Portcullis's own resource at `now_secs`. `iss` is the
    /// redirect's `iss` parameter when it had one (RFC 9207); the caller has checked `state`.
    pub async fn finish(
        &self,
        pending: PendingAuthorization,
        code: &str,
        iss: Option<&str>,
        now_secs: u64,
    ) -> Result<Arc<IdentityEnvelope>, SignInError> {
        let issuer = &self.server.settings().issuer;
        if let Some(found) = iss.filter(|found| found != issuer) {
            return Err(SignInError::OtherIssuer {
                found: found.chars().take(200).collect(),
            });
        }
        let tokens = self
            .client
            .exchange_code(pending, code, &self.server.settings().resource)
            .await?;
        if !tokens.token_type.eq_ignore_ascii_case("bearer") {
            return Err(SignInError::Refused(format!(
                "a `{}` token, not a bearer token",
                tokens.token_type.chars().take(40).collect::<String>()
            )));
        }
        let header = format!("Bearer {}", tokens.access_token.expose());
        self.server
            .authenticate(Some(&header), now_secs)
            .await
            .map_err(|rejection: Rejection| SignInError::Refused(rejection.reason().to_string()))
    }
}
