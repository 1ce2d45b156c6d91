//! Command-line arguments, parsed once into a validated [`Config`].

use std::{
    collections::{BTreeMap, BTreeSet},
    net::{IpAddr, SocketAddr},
    num::NonZeroUsize,
    path::PathBuf,
    str::FromStr,
    time::Duration,
};

use clap::Parser;
use url::{Host, Url};

/// Raw command-line flags, as clap parses them.
#[derive(Debug, Parser)]
#[command(
    name = "portcullis-fixture",
    version,
    about = "A small MCP server for Portcullis's tests"
)]
pub(crate) struct Args {
    /// Directory the file tools work in (created if missing).
    #[arg(long, value_name = "DIR")]
    scratch: PathBuf,

    /// Serve streamable HTTP at `http://ADDR/mcp` instead of stdio. Loopback addresses only.
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,

    /// The `serverInfo.name` this server reports.
    #[arg(long, default_value = "portcullis-fixture")]
    name: String,

    /// How the process behaves before it serves: `normal`, `crash`, `hang` or `slow:MS`.
    #[arg(long, value_name = "MODE", default_value = "normal")]
    start_mode: StartMode,

    /// Delay every `tools/list` answer by this many milliseconds.
    #[arg(long, value_name = "N", default_value_t = 0)]
    tools_delay_ms: u64,

    /// Add N trivial tools `extra_0` .. `extra_{N-1}` (for pagination tests).
    #[arg(long, value_name = "N", default_value_t = 0)]
    extra_tools: usize,

    /// Also list the tools of FILE (a `tools/list` result: `{"tools": [...]}`), each answering
    /// a call with its own name: a catalog of realistic definitions, for the tool search
    /// benchmark.
    #[arg(long, value_name = "FILE")]
    catalog: Option<PathBuf>,

    /// Split `tools/list` into pages of N tools, linked by cursors (default: one page).
    #[arg(long, value_name = "N")]
    page_size: Option<NonZeroUsize>,

    /// HTTP only: require bearer tokens (JWT) issued by this OAuth issuer; plain `http` only
    /// for a loopback issuer.
    #[arg(long, value_name = "URL")]
    auth_issuer: Option<String>,

    /// The canonical resource URL tokens must name as audience; `auto` (the default) is
    /// `http://ADDR/mcp` for the bound address.
    #[arg(long, value_name = "URL|auto")]
    auth_resource: Option<String>,

    /// A `tools/call` of TOOL needs SCOPE in the token (repeatable; several scopes for one tool
    /// are all needed).
    #[arg(long = "auth-tool-scope", value_name = "TOOL=SCOPE")]
    auth_tool_scopes: Vec<String>,

    /// Append one JSON line per authenticated request to FILE.
    #[arg(long, value_name = "FILE")]
    auth_record: Option<PathBuf>,

    /// Let initialize, notifications, ping, the lists, server/discover, subscriptions/listen and
    /// GET/DELETE of the session pass without a token.
    #[arg(long)]
    public_lists: bool,
}

/// How the process behaves before it answers anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StartMode {
    /// Serve at once.
    Normal,
    /// Exit with code 3 before answering anything.
    Crash,
    /// Never answer: drain stdin (or leave HTTP connections unanswered) forever.
    Hang,
    /// Sleep this long, then serve.
    Slow(Duration),
}

impl FromStr for StartMode {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "normal" => Ok(Self::Normal),
            "crash" => Ok(Self::Crash),
            "hang" => Ok(Self::Hang),
            _ => {
                let Some(millis) = text.strip_prefix("slow:") else {
                    return Err(format!(
                        "unknown start mode `{text}`: use normal, crash, hang or slow:MS"
                    ));
                };
                millis
                    .parse::<u64>()
                    .map(|millis| Self::Slow(Duration::from_millis(millis)))
                    .map_err(|_| format!("`{millis}` in `{text}` is not a number of milliseconds"))
            }
        }
    }
}

/// Where the server speaks MCP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transport {
    Stdio,
    Http(SocketAddr),
}

/// The canonical URL of this resource server: given, or derived from the bound address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AuthResource {
    /// `http://ADDR/mcp` for the address the listener is bound to (known only after the bind).
    Auto,
    Url(String),
}

/// Bearer-token checks of the HTTP mode (`--auth-issuer`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AuthConfig {
    pub issuer: String,
    /// Whether the issuer may be reached over plain http: only when it is on loopback.
    pub allow_http: bool,
    pub resource: AuthResource,
    /// Scopes a `tools/call` of each tool needs, all of them.
    pub tool_scopes: BTreeMap<String, BTreeSet<String>>,
    pub record: Option<PathBuf>,
    pub public_lists: bool,
}

/// Validated configuration for one run.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub scratch: PathBuf,
    pub transport: Transport,
    pub name: String,
    pub start_mode: StartMode,
    pub tools_delay: Duration,
    pub extra_tools: usize,
    /// The tools of `--catalog`.
    pub catalog: Vec<rmcp::model::Tool>,
    pub page_size: Option<NonZeroUsize>,
    pub auth: Option<AuthConfig>,
}

impl Args {
    /// Checks what clap cannot: the listen address must be loopback, the auth flags go
    /// together and with HTTP.
    pub(crate) fn into_config(self) -> Result<Config, String> {
        let auth = self.auth_config()?;
        if auth.is_some() && self.listen.is_none() {
            return Err("`--auth-issuer` needs `--listen`: tokens exist only over HTTP".to_owned());
        }
        let transport = match self.listen {
            None => Transport::Stdio,
            // A test fixture with file-writing tools must never be reachable from the network.
            Some(address) if address.ip().is_loopback() => Transport::Http(address),
            Some(address) => {
                return Err(format!(
                    "`--listen {address}` is not a loopback address: use 127.0.0.1 or [::1]"
                ));
            }
        };
        Ok(Config {
            scratch: self.scratch,
            transport,
            name: self.name,
            start_mode: self.start_mode,
            tools_delay: Duration::from_millis(self.tools_delay_ms),
            extra_tools: self.extra_tools,
            catalog: match &self.catalog {
                Some(file) => read_catalog(file)?,
                None => Vec::new(),
            },
            page_size: self.page_size,
            auth,
        })
    }

    fn auth_config(&self) -> Result<Option<AuthConfig>, String> {
        let Some(issuer) = &self.auth_issuer else {
            let stray = [
                ("--auth-resource", self.auth_resource.is_some()),
                ("--auth-tool-scope", !self.auth_tool_scopes.is_empty()),
                ("--auth-record", self.auth_record.is_some()),
                ("--public-lists", self.public_lists),
            ];
            return match stray.iter().find(|(_, given)| *given) {
                Some((flag, _)) => Err(format!("`{flag}` needs `--auth-issuer`")),
                None => Ok(None),
            };
        };
        let allow_http = issuer_allows_http(issuer)?;
        let resource = match self.auth_resource.as_deref() {
            None | Some("auto") => AuthResource::Auto,
            Some(url) => AuthResource::Url(url.to_owned()),
        };
        let mut tool_scopes = BTreeMap::<String, BTreeSet<String>>::new();
        for pair in &self.auth_tool_scopes {
            let (tool, scope) = parse_tool_scope(pair)?;
            tool_scopes.entry(tool).or_default().insert(scope);
        }
        Ok(Some(AuthConfig {
            issuer: issuer.clone(),
            allow_http,
            resource,
            tool_scopes,
            record: self.auth_record.clone(),
            public_lists: self.public_lists,
        }))
    }
}

/// Whether the issuer is reached over plain http, which is allowed only on loopback: a token
/// validator that fetches its keys over the network in clear could be fed any key.
fn issuer_allows_http(issuer: &str) -> Result<bool, String> {
    let url = Url::parse(issuer)
        .map_err(|error| format!("`--auth-issuer {issuer}` is not a url: {error}"))?;
    match url.scheme() {
        "https" => Ok(false),
        "http" => {
            let loopback = match url.host() {
                Some(Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
                Some(Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
                Some(Host::Domain(name)) => name == "localhost",
                None => false,
            };
            if loopback {
                Ok(true)
            } else {
                Err(format!(
                    "`--auth-issuer {issuer}`: plain http only for a loopback issuer, use https"
                ))
            }
        }
        other => Err(format!(
            "`--auth-issuer {issuer}`: scheme `{other}`, use https (or http on loopback)"
        )),
    }
}

/// `TOOL=SCOPE`; a scope is one RFC 6749 scope-token (printable ASCII, no space, `"` or `\`).
fn parse_tool_scope(pair: &str) -> Result<(String, String), String> {
    let invalid = |why: &str| format!("`--auth-tool-scope {pair}`: {why}, use TOOL=SCOPE");
    let (tool, scope) = pair.split_once('=').ok_or_else(|| invalid("no `=`"))?;
    if tool.is_empty() {
        return Err(invalid("no tool"));
    }
    let scope_token = |c: char| matches!(c, '!' | '#'..='[' | ']'..='~');
    if scope.is_empty() || !scope.chars().all(scope_token) {
        return Err(invalid("not one scope"));
    }
    Ok((tool.to_owned(), scope.to_owned()))
}

#[cfg(test)]
mod tests;

/// The tools of a `--catalog` file.
fn read_catalog(file: &std::path::Path) -> Result<Vec<rmcp::model::Tool>, String> {
    #[derive(serde::Deserialize)]
    struct Listed {
        tools: Vec<rmcp::model::Tool>,
    }
    let text = std::fs::read_to_string(file)
        .map_err(|e| format!("cannot read `{}`: {e}", file.display()))?;
    serde_json::from_str::<Listed>(&text)
        .map(|listed| listed.tools)
        .map_err(|e| format!("`{}` is not a tools/list result: {e}", file.display()))
}
