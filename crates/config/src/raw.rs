//! The configuration file as written: serde structs that mirror the TOML, with spans for messages.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_spanned::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    #[serde(default)]
    pub server: RawServer,
    #[serde(default)]
    pub http: Option<Spanned<RawHttp>>,
    #[serde(default, rename = "upstream")]
    pub upstreams: Vec<Spanned<RawUpstream>>,
    #[serde(default)]
    pub identity: RawIdentities,
    pub policy: Option<Spanned<RawPolicy>>,
    #[serde(default)]
    pub credentials: Option<Spanned<RawCredentials>>,
    pub state: Option<Spanned<RawState>>,
}

/// `[state]`: where replicas' shared state lives.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawState {
    pub backend: Option<Spanned<String>>,
    pub url_env: Option<Spanned<String>>,
    pub ca_file: Option<Spanned<String>>,
}

/// `[credentials]`: the store of delegated credentials and the OAuth callback listener.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCredentials {
    pub store: Option<Spanned<String>>,
    pub key_env: Option<Spanned<String>>,
    pub callback: Option<Spanned<String>>,
}

/// `[upstream.credential]`: how an HTTP upstream is authorised.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCredential {
    pub kind: Spanned<String>,
    pub issuer: Option<Spanned<String>>,
    pub client_id: Option<Spanned<String>>,
    pub client_secret_env: Option<Spanned<String>>,
    #[serde(default)]
    pub scopes: Vec<Spanned<String>>,
    pub loopback: Option<Spanned<bool>>,
    pub exchange: Option<Spanned<bool>>,
    pub hide_tools: Option<Spanned<bool>>,
    pub env: Option<Spanned<String>>,
    pub header: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawIdentities {
    pub local: Option<Spanned<RawLocalIdentity>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLocalIdentity {
    pub user: Spanned<String>,
    #[serde(default)]
    pub groups: Vec<Spanned<String>>,
    pub tenant: Option<Spanned<String>>,
    #[serde(default)]
    pub scopes: Vec<Spanned<String>>,
    #[serde(default)]
    pub credentials: Vec<Spanned<String>>,
    #[serde(default)]
    pub forbidden_credentials: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPolicy {
    pub schema: Option<Spanned<String>>,
    pub policies: Option<Spanned<Vec<Spanned<String>>>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawServer {
    pub namespacing: Option<Spanned<String>>,
    pub page_size: Option<Spanned<i64>>,
    pub text_limit: Option<Spanned<i64>>,
    pub call_timeout_secs: Option<Spanned<i64>>,
    pub start_timeout_secs: Option<Spanned<i64>>,
    /// How often every upstream's lists are read again, announced change or not.
    pub relist_secs: Option<Spanned<i64>>,
    pub evidence: Option<Spanned<String>>,
    pub reads_without_evidence: Option<bool>,
    pub durability: Option<Spanned<String>>,
    pub approval_timeout_secs: Option<Spanned<i64>>,
    pub approval_form_wait_secs: Option<Spanned<i64>>,
    pub approval_page: Option<Spanned<String>>,
    pub approval_scope_secs: Option<Spanned<i64>>,
    pub state_key_env: Option<Spanned<String>>,
    pub packages: Option<Spanned<String>>,
    pub pinning: Option<Spanned<String>>,
    pub tool_search: Option<Spanned<String>>,
    pub tool_search_threshold: Option<Spanned<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHttp {
    pub listen: Option<Spanned<String>>,
    pub allowed_hosts: Option<Vec<Spanned<String>>>,
    pub allowed_origins: Option<Vec<Spanned<String>>>,
    pub auth: Option<Spanned<RawHttpAuth>>,
    pub metrics: Option<Spanned<String>>,
    pub max_sessions: Option<Spanned<i64>>,
    pub max_sessions_per_client: Option<Spanned<i64>>,
    pub session_idle_secs: Option<Spanned<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHttpAuth {
    pub issuer: Spanned<String>,
    pub resource: Spanned<String>,
    #[serde(default)]
    pub required_scopes: Vec<Spanned<String>>,
    pub scopes_supported: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    pub claims: RawClaims,
    pub leeway_secs: Option<Spanned<i64>>,
    pub approval: Option<Spanned<RawApprovalSignIn>>,
}

/// `[http.auth.approval]`: the approval page signs people in with the same issuer.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawApprovalSignIn {
    pub client_id: Spanned<String>,
    pub client_secret_env: Option<Spanned<String>>,
    pub approvers_group: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawClaims {
    pub groups: Option<Spanned<String>>,
    pub tenant: Option<Spanned<String>>,
    pub client: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawUpstream {
    pub name: Spanned<String>,
    pub command: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default)]
    pub inherit_env: Vec<Spanned<String>>,
    pub cwd: Option<Spanned<String>>,
    pub url: Option<Spanned<String>>,
    pub call_timeout_secs: Option<Spanned<i64>>,
    pub start_timeout_secs: Option<Spanned<i64>>,
    /// The most calls in flight to this upstream at once; more wait for one to end.
    pub max_concurrent_calls: Option<Spanned<i64>>,
    pub surface: Option<Spanned<String>>,
    pub effect: Option<Spanned<String>>,
    pub trusted: Option<bool>,
    pub taint: Option<Spanned<String>>,
    pub trust_hints: Option<bool>,
    pub sampling: Option<bool>,
    pub elicitation: Option<Spanned<String>>,
    #[serde(default)]
    pub tools: BTreeMap<String, Spanned<RawToolRules>>,
    #[serde(default)]
    pub roots: Vec<Spanned<String>>,
    #[serde(default)]
    pub roots_for: Vec<Spanned<RawRootsFor>>,
    pub check_paths: Option<bool>,
    pub tilde: Option<Spanned<String>>,
    pub sandbox: Option<Spanned<RawSandbox>>,
    pub credential: Option<Spanned<RawCredential>>,
    /// A `url` upstream's extra certificate authority (PEM), besides the system's roots.
    pub ca_file: Option<Spanned<String>>,
    /// A `url` upstream may use plain http to a host that is not loopback.
    pub insecure_http: Option<Spanned<bool>>,
    /// A `url` upstream's request headers, each from an environment variable.
    #[serde(default)]
    pub headers: BTreeMap<String, Spanned<RawHeader>>,
    /// `shared` (the default) or `per_user`: one instance per identity.
    pub instance: Option<Spanned<String>>,
    pub instance_idle_secs: Option<Spanned<i64>>,
    pub instance_state: Option<Spanned<String>>,
    pub instance_state_days: Option<Spanned<i64>>,
    /// Overrides `[server] pinning` for this upstream.
    pub pinning: Option<Spanned<String>>,
}

/// One `[upstream.headers]` entry: `{ env = "NAME", prefix = "Bearer " }`. A bare string is
/// read too, only to be refused with a message saying where the value belongs.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum RawHeader {
    FromEnv(RawHeaderFromEnv),
    Literal(
        #[expect(
            dead_code,
            reason = "read only to be refused: a secret is never echoed"
        )]
        String,
    ),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHeaderFromEnv {
    pub env: String,
    pub prefix: Option<String>,
}

/// `[[upstream.roots_for]]`: roots for the identities a user or group names.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRootsFor {
    pub user: Option<Spanned<String>>,
    pub group: Option<Spanned<String>>,
    pub roots: Vec<Spanned<String>>,
}

/// `[upstream.sandbox]`: what a stdio upstream may reach besides its roots. Every key is an
/// `Option` so that `contain = false` can name the grants it makes meaningless.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSandbox {
    pub contain: Option<Spanned<bool>>,
    pub read_only: Option<Spanned<Vec<Spanned<String>>>>,
    pub tcp_connect: Option<Spanned<Vec<Spanned<RawConnect>>>>,
    pub tcp_bind: Option<Spanned<Vec<Spanned<i64>>>>,
    pub unix_sockets: Option<Spanned<bool>>,
    pub limits: Option<Spanned<RawLimits>>,
}

/// One `tcp_connect` entry: a port (`443`, on any address) or a host and port
/// (`"api.github.com:443"`).
#[derive(Debug)]
pub(crate) enum RawConnect {
    Port(i64),
    Host(String),
}

impl<'de> Deserialize<'de> for RawConnect {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = RawConnect;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a port number (`443`) or a host and port (`\"api.github.com:443\"`)")
            }

            fn visit_i64<E: serde::de::Error>(self, value: i64) -> Result<RawConnect, E> {
                Ok(RawConnect::Port(value))
            }

            fn visit_u64<E: serde::de::Error>(self, value: u64) -> Result<RawConnect, E> {
                Ok(RawConnect::Port(i64::try_from(value).unwrap_or(i64::MAX)))
            }

            fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<RawConnect, E> {
                Ok(RawConnect::Host(value.to_owned()))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLimits {
    pub memory_mb: Option<Spanned<RawLimit>>,
    pub processes: Option<Spanned<RawLimit>>,
    pub file_size_mb: Option<Spanned<RawLimit>>,
    pub open_files: Option<Spanned<RawLimit>>,
}

/// A limit: a number, or a word (`"inherit"`).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum RawLimit {
    Number(i64),
    Word(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawToolRules {
    pub effect: Option<Spanned<String>>,
    #[serde(default)]
    pub scopes: Vec<Spanned<String>>,
    #[serde(default)]
    pub redact: Vec<Spanned<String>>,
    #[serde(default)]
    pub recipients: Vec<Spanned<String>>,
    pub tenant_argument: Option<Spanned<String>>,
    pub escalates: Option<bool>,
    pub reversible: Option<bool>,
    #[serde(default)]
    pub paths: Vec<Spanned<String>>,
    #[serde(default)]
    pub upstream_scopes: Vec<Spanned<String>>,
}
