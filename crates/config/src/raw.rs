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
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawServer {
    pub namespacing: Option<Spanned<String>>,
    pub page_size: Option<Spanned<i64>>,
    pub call_timeout_secs: Option<Spanned<i64>>,
    pub start_timeout_secs: Option<Spanned<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHttp {
    pub listen: Option<Spanned<String>>,
    pub allowed_hosts: Option<Vec<Spanned<String>>>,
    pub allowed_origins: Option<Vec<Spanned<String>>>,
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
}
