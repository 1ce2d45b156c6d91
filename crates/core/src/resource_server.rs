//! What Portcullis expects of the bearer tokens its HTTP clients present: the settings of its
//! OAuth 2.1 resource server, as validated configuration hands them to the token validator.

use std::collections::BTreeSet;

/// The names of the token claims that carry an identity's groups, tenant and client.
///
/// The subject is always `sub` and the issuer `iss`; scopes are read from `scope` (a
/// space-separated string, RFC 9068) or `scp` (an array), whichever the token has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimNames {
    /// An array of strings, or a space-separated string.
    pub groups: String,
    /// A string.
    pub tenant: String,
    /// The OAuth client the token was issued to (`client_id` in RFC 9068, `azp` in OIDC).
    pub client: String,
}

impl Default for ClaimNames {
    fn default() -> Self {
        Self {
            groups: "groups".to_owned(),
            tenant: "tenant".to_owned(),
            client: "client_id".to_owned(),
        }
    }
}

/// Portcullis as an OAuth 2.1 resource server (MCP authorization; RFC 9728, RFC 8707).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceServerSettings {
    /// The authorization server's issuer identifier; its metadata is discovered from it
    /// (OpenID Connect discovery, then RFC 8414) and must name exactly this issuer.
    pub issuer: String,
    /// Portcullis's own canonical resource URI (RFC 8707): a token's audience must contain it.
    pub resource: String,
    /// Scopes every request needs; a token without them gets 403 `insufficient_scope`.
    pub required_scopes: BTreeSet<String>,
    /// Scopes advertised in the protected resource metadata.
    pub scopes_supported: Vec<String>,
    pub claims: ClaimNames,
    /// Clock skew tolerated on `exp` and `nbf`, in seconds.
    pub leeway_secs: u64,
    /// Whether the issuer and its metadata may be fetched over plain `http://`. Config allows
    /// it only for loopback issuers (tests, a provider on the same machine).
    pub allow_http: bool,
}
