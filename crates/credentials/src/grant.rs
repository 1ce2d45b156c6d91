//! What is stored: whose credential (`CredentialKey`), the credential (`Grant`), and what of it
//! may be shown (`GrantSummary`).

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::Secret;

/// Whose credential: the user (issuer and subject of the inbound identity) and the upstream
/// it is for. Issuer and subject together, because a subject is unique only within its issuer.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialKey {
    pub issuer: String,
    pub subject: String,
    pub upstream: String,
}

/// A delegated OAuth credential: the tokens an authorization server issued to Portcullis for
/// one user and one upstream, and what they were issued for.
///
/// `Debug` shows the tokens only as fingerprints (through `Secret`). Not `Serialize`: a grant
/// is written only into the encrypted file.
#[derive(Debug, Clone)]
pub struct Grant {
    pub access_token: Secret,
    pub refresh_token: Option<Secret>,
    /// As the token endpoint said, normally `Bearer`.
    pub token_type: String,
    /// Unix seconds; `None` when the authorization server gave no lifetime.
    pub expires_at: Option<u64>,
    /// The scopes granted (which may be fewer than those asked for).
    pub scopes: BTreeSet<String>,
    /// The RFC 8707 resource the token is for: the upstream's canonical URI. Kept so a token
    /// is never sent to a server it was not issued for.
    pub resource: String,
    /// The issuer URL of the authorization server that issued it (and that refreshes it).
    pub authorization_server: String,
    /// The MCP client ids the user consented to use this credential through.
    pub consented_clients: BTreeSet<String>,
    /// Unix seconds.
    pub obtained_at: u64,
}

impl Grant {
    /// What may be shown or recorded about this grant.
    pub fn summary(&self) -> GrantSummary {
        GrantSummary {
            access_token: self.access_token.fingerprint(),
            refresh_token: self.refresh_token.as_ref().map(Secret::fingerprint),
            token_type: self.token_type.clone(),
            expires_at: self.expires_at,
            scopes: self.scopes.clone(),
            resource: self.resource.clone(),
            authorization_server: self.authorization_server.clone(),
            consented_clients: self.consented_clients.clone(),
            obtained_at: self.obtained_at,
        }
    }

    /// Whether the access token expires at or before `now + margin_secs` (refresh it first).
    /// A grant without an expiry never does: the authorization server said nothing, and the
    /// upstream's 401 is then what tells us. `now` is the caller's clock.
    pub fn expires_within(&self, now: u64, margin_secs: u64) -> bool {
        self.expires_at
            .is_some_and(|expires_at| expires_at <= now.saturating_add(margin_secs))
    }
}

/// A grant without its secrets: the tokens' fingerprints (`sha256:<16 hex>`), scopes, expiry,
/// resource, authorization server, consented clients. Safe for logs, evidence and
/// `portcullis` output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GrantSummary {
    pub access_token: String,
    pub refresh_token: Option<String>,
    pub token_type: String,
    pub expires_at: Option<u64>,
    pub scopes: BTreeSet<String>,
    pub resource: String,
    pub authorization_server: String,
    pub consented_clients: BTreeSet<String>,
    pub obtained_at: u64,
}
