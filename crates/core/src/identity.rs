//! The identity envelope: who a session acts as, fixed when the session authenticates.
//!
//! Nothing an upstream returns can change an envelope: it has no setters, and the gateway holds
//! it behind an `Arc` per session. It carries no secret (credentials appear as names of what
//! may be used), so it can be logged and recorded whole.

use std::collections::BTreeSet;
use std::fmt;

use serde::Serialize;

/// Whose authority a call is made with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ActingMode {
    /// The user's own authority, delegated to Portcullis.
    Delegated,
    /// A service's authority, configured per upstream.
    Service,
    /// Both, each for the upstreams configured so.
    Both,
}

/// A user as an identity provider names them: issuer and subject together.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct UserId {
    pub issuer: String,
    pub subject: String,
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.subject, self.issuer)
    }
}

/// The issuer name of identities that come from Portcullis's own configuration (stdio).
pub const LOCAL_ISSUER: &str = "portcullis:local";

/// Who a session acts as. Built once; read-only afterwards.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IdentityEnvelope {
    user: UserId,
    client: Option<String>,
    mode: ActingMode,
    groups: BTreeSet<String>,
    tenant: Option<String>,
    scopes: BTreeSet<String>,
    /// Names of credentials the executor may use for this identity, and those it may not.
    usable_credentials: BTreeSet<String>,
    forbidden_credentials: BTreeSet<String>,
    /// Validity in seconds since the Unix epoch (not before, expires); `None` for the local
    /// identity, which lives as long as the process.
    lifetime: Option<(u64, u64)>,
}

/// The parts of an envelope, for its single constructor.
#[derive(Debug, Clone)]
pub struct EnvelopeParts {
    pub user: UserId,
    pub client: Option<String>,
    pub mode: ActingMode,
    pub groups: BTreeSet<String>,
    pub tenant: Option<String>,
    pub scopes: BTreeSet<String>,
    pub usable_credentials: BTreeSet<String>,
    pub forbidden_credentials: BTreeSet<String>,
    pub lifetime: Option<(u64, u64)>,
}

impl IdentityEnvelope {
    pub fn new(parts: EnvelopeParts) -> Self {
        let EnvelopeParts {
            user,
            client,
            mode,
            groups,
            tenant,
            scopes,
            usable_credentials,
            forbidden_credentials,
            lifetime,
        } = parts;
        // A credential both allowed and forbidden is forbidden.
        let usable_credentials = usable_credentials
            .difference(&forbidden_credentials)
            .cloned()
            .collect();
        Self {
            user,
            client,
            mode,
            groups,
            tenant,
            scopes,
            usable_credentials,
            forbidden_credentials,
            lifetime,
        }
    }

    pub fn user(&self) -> &UserId {
        &self.user
    }
    pub fn client(&self) -> Option<&str> {
        self.client.as_deref()
    }
    pub fn mode(&self) -> ActingMode {
        self.mode
    }
    pub fn groups(&self) -> &BTreeSet<String> {
        &self.groups
    }
    pub fn tenant(&self) -> Option<&str> {
        self.tenant.as_deref()
    }
    pub fn scopes(&self) -> &BTreeSet<String> {
        &self.scopes
    }

    /// True when the executor may use the named credential for this identity.
    pub fn may_use_credential(&self, name: &str) -> bool {
        self.usable_credentials.contains(name) && !self.forbidden_credentials.contains(name)
    }

    /// True when every scope in `required` was granted.
    pub fn has_scopes<'a>(&self, required: impl IntoIterator<Item = &'a String>) -> bool {
        required
            .into_iter()
            .all(|scope| self.scopes.contains(scope))
    }

    /// True when the envelope is valid at `now` (seconds since the epoch; the caller's clock).
    pub fn is_valid_at(&self, now: u64) -> bool {
        self.lifetime
            .is_none_or(|(not_before, expires)| not_before <= now && now < expires)
    }
}

#[cfg(test)]
mod tests;
