//! The configs the tests write, built from typed pieces (`Config`, its `Upstream`s and their
//! `Tool` rules, the local `Identity`, `[http.auth]` and upstream `Credential`s) and rendered as
//! TOML; and the commands of the upstream servers the tests front.

use std::fmt;
use std::path::Path;

use super::*;

pub(crate) fn everything_server() -> Vec<String> {
    vec![
        "node".into(),
        node_module("@modelcontextprotocol/server-everything/dist/index.js")
            .display()
            .to_string(),
        "stdio".into(),
    ]
}

pub(crate) fn filesystem_server(root: &Path) -> Vec<String> {
    vec![
        "node".into(),
        node_module("@modelcontextprotocol/server-filesystem/dist/index.js")
            .display()
            .to_string(),
        root.display().to_string(),
    ]
}

fn fixture_server(scratch: &Path) -> Vec<String> {
    vec![
        bin("portcullis-fixture").display().to_string(),
        "--scratch".into(),
        scratch.display().to_string(),
    ]
}

/// A policy file of `fixtures/policy`.
pub(crate) fn fixture_policy(name: &str) -> PathBuf {
    repo_root().join("fixtures/policy").join(name)
}

/// The policy Portcullis ships.
pub(crate) fn shipped_policy() -> PathBuf {
    repo_root().join("config/policies/default.cedar")
}

/// A whole config: `[server]`, `[identity.local]`, `[policy]`, `[http]`, `[credentials]` and
/// the upstreams; a table nothing was set in is left out. Its `Display` is the TOML.
#[derive(Debug, Clone, Default)]
pub(crate) struct Config {
    server: Table,
    identity: Table,
    policies: Vec<String>,
    http: Table,
    auth: Table,
    credentials: Table,
    state: Table,
    upstreams: Vec<Upstream>,
    /// Whether every upstream added is trusted (see [`Config::relay`]).
    trust_all: bool,
}

impl Config {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// A config for the tests of the relay itself: `fixtures/policy/permit-all.cedar` allows
    /// everything, so that they exercise the pipe and not the policy, and every upstream is
    /// trusted content, so that an earlier answer does not make later calls ask for approval
    /// (tests/e2e/approval.rs covers that).
    pub(crate) fn relay() -> Self {
        Self {
            trust_all: true,
            ..Self::default()
        }
        .policy(fixture_policy("permit-all.cedar"))
    }

    pub(crate) fn upstream(mut self, upstream: Upstream) -> Self {
        let upstream = if self.trust_all {
            upstream.trusted()
        } else {
            upstream
        };
        self.upstreams.push(upstream);
        self
    }

    /// `[identity.local]`: who a stdio session acts as.
    pub(crate) fn identity(self, identity: Identity) -> Self {
        Self {
            identity: identity.0,
            ..self
        }
    }

    /// One more policy file or directory.
    pub(crate) fn policy(mut self, path: impl AsRef<Path>) -> Self {
        self.policies.push(path.as_ref().display().to_string());
        self
    }

    pub(crate) fn approval_timeout_secs(self, secs: u64) -> Self {
        self.server("approval_timeout_secs", secs.to_string())
    }

    /// How long a form may go unanswered before the approval page follows.
    pub(crate) fn approval_form_wait_secs(self, secs: u64) -> Self {
        self.server("approval_form_wait_secs", secs.to_string())
    }

    /// No answer covers more than its own call (`approval_scope_secs = 0`): the form asks a
    /// plain yes or no.
    pub(crate) fn no_scoped_approvals(self) -> Self {
        self.server("approval_scope_secs", "0".into())
    }

    /// `[server] durability`: `process` or `disk`.
    pub(crate) fn durability(self, mode: &str) -> Self {
        self.server("durability", toml_string(mode))
    }

    /// No approval page: the client's own form is the only way to approve.
    pub(crate) fn approval_page_off(self) -> Self {
        self.server("approval_page", toml_string("off"))
    }

    /// The evidence log, relative to the config's directory.
    pub(crate) fn evidence(self, file: &str) -> Self {
        self.server("evidence", toml_string(file))
    }

    /// Where launcher packages are installed, relative to the config's directory.
    pub(crate) fn packages(self, dir: &str) -> Self {
        self.server("packages", toml_string(dir))
    }

    /// How often every upstream's lists are read again (`[server] relist_secs`).
    pub(crate) fn relist_secs(self, secs: u64) -> Self {
        self.server("relist_secs", secs.to_string())
    }

    pub(crate) fn page_size(self, size: u64) -> Self {
        self.server("page_size", size.to_string())
    }

    /// Tools, prompts and resources keep their upstream's names (no `upstream.` prefix).
    pub(crate) fn passthrough_names(self) -> Self {
        self.server("namespacing", toml_string("passthrough"))
    }

    /// `[server] tool_search`: `off`, `auto` or `on`.
    pub(crate) fn tool_search(self, mode: &str) -> Self {
        self.server("tool_search", toml_string(mode))
    }

    /// `[server] tool_search_threshold` (with `tool_search = "auto"`).
    pub(crate) fn tool_search_threshold(self, tools: u64) -> Self {
        self.server("tool_search_threshold", tools.to_string())
    }

    pub(crate) fn state_key_env(self, variable: &str) -> Self {
        self.server("state_key_env", toml_string(variable))
    }

    /// `[state] ca_file`: the authority that signed the database's certificate.
    pub(crate) fn state_ca_file(self, ca_file: &Path) -> Self {
        Self {
            state: self
                .state
                .with("ca_file", toml_string(&ca_file.display().to_string())),
            ..self
        }
    }

    /// `[state]`: shared in postgres, whose connection string is in `url_env`.
    pub(crate) fn shared_state(self, url_env: &str) -> Self {
        Self {
            state: self
                .state
                .with("backend", toml_string("postgres"))
                .with("url_env", toml_string(url_env)),
            ..self
        }
    }

    /// `[http] allowed_hosts`: the `Host` values accepted (a load balancer's, say).
    pub(crate) fn allowed_hosts(self, hosts: &[&str]) -> Self {
        self.http("allowed_hosts", toml_array(hosts))
    }

    pub(crate) fn max_sessions(self, sessions: u64) -> Self {
        self.http("max_sessions", sessions.to_string())
    }

    pub(crate) fn max_sessions_per_client(self, sessions: u64) -> Self {
        self.http("max_sessions_per_client", sessions.to_string())
    }

    pub(crate) fn session_idle_secs(self, secs: u64) -> Self {
        self.http("session_idle_secs", secs.to_string())
    }

    /// Where Prometheus metrics are served.
    pub(crate) fn metrics(self, address: &str) -> Self {
        self.http("metrics", toml_string(address))
    }

    /// `[http.auth]`: HTTP clients bring bearer tokens.
    pub(crate) fn http_auth(self, auth: Auth) -> Self {
        Self {
            auth: auth.0,
            ..self
        }
    }

    /// `[credentials]`: the encrypted store of delegated grants and the variable with its key.
    pub(crate) fn credential_store(self, file: &str, key_env: &str) -> Self {
        Self {
            credentials: self
                .credentials
                .with("store", toml_string(file))
                .with("key_env", toml_string(key_env)),
            ..self
        }
    }

    /// Where the OAuth callback listens (`[credentials]`).
    pub(crate) fn credential_callback(self, address: &str) -> Self {
        Self {
            credentials: self.credentials.with("callback", toml_string(address)),
            ..self
        }
    }

    fn server(self, key: &str, value: String) -> Self {
        Self {
            server: self.server.with(key, value),
            ..self
        }
    }

    fn http(self, key: &str, value: String) -> Self {
        Self {
            http: self.http.with(key, value),
            ..self
        }
    }
}

impl fmt::Display for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.server.section("server"))?;
        f.write_str(&self.identity.section("identity.local"))?;
        if !self.policies.is_empty() {
            write!(f, "[policy]\npolicies = {}\n\n", toml_array(&self.policies))?;
        }
        f.write_str(&self.http.section("http"))?;
        f.write_str(&self.auth.section("http.auth"))?;
        f.write_str(&self.credentials.section("credentials"))?;
        f.write_str(&self.state.section("state"))?;
        self.upstreams
            .iter()
            .try_for_each(|upstream| write!(f, "{upstream}"))
    }
}

/// One `[[upstream]]`.
#[derive(Debug, Clone)]
pub(crate) struct Upstream {
    keys: Table,
    command: Vec<String>,
    sandbox: Table,
    roots_for: Vec<String>,
}

impl Upstream {
    /// A stdio upstream running `argv`.
    pub(crate) fn command<S: Into<String>>(name: &str, argv: impl IntoIterator<Item = S>) -> Self {
        Self {
            command: argv.into_iter().map(Into::into).collect(),
            ..Self::named(name)
        }
    }

    /// Our fixture working in `scratch`: contained, it can use nothing but its scratch
    /// directory (its one root), and its working directory is that directory too, so that
    /// Portcullis resolves its relative path arguments as the fixture does.
    pub(crate) fn fixture(name: &str, scratch: &Path) -> Self {
        let upstream = Self::command(name, fixture_server(scratch)).roots(&[scratch]);
        upstream.set("cwd", toml_string(&scratch.display().to_string()))
    }

    /// A streamable HTTP upstream.
    pub(crate) fn url(name: &str, url: &str) -> Self {
        Self::named(name).set("url", toml_string(url))
    }

    fn named(name: &str) -> Self {
        Self {
            keys: Table::default().with("name", toml_string(name)),
            command: Vec::new(),
            sandbox: Table::default(),
            roots_for: Vec::new(),
        }
    }

    /// The certificate authorities (PEM) trusted for its https URL, besides the system's.
    pub(crate) fn ca_file(self, file: &Path) -> Self {
        self.set("ca_file", toml_string(&file.display().to_string()))
    }

    /// A request header whose value is read from the environment variable `env`.
    pub(crate) fn header_from_env(self, name: &str, env: &str) -> Self {
        let value = Table::default().with("env", toml_string(env)).inline();
        self.set(&format!("headers.{name}"), value)
    }

    /// More arguments for its program (the fixture's start mode, say).
    pub(crate) fn args(mut self, args: &[&str]) -> Self {
        self.command
            .extend(args.iter().map(|arg| (*arg).to_owned()));
        self
    }

    /// Its results, resources and prompts are trusted content: they do not taint the session.
    pub(crate) fn trusted(self) -> Self {
        self.set("trusted", "true".into())
    }

    /// Its definitions are pinned or not (`pinning`: `tofu`, `strict`, `off`).
    pub(crate) fn pinning(self, mode: &str) -> Self {
        self.set("pinning", toml_string(mode))
    }

    /// Runs with all of Portcullis's own access (`contain = false`).
    pub(crate) fn uncontained(self) -> Self {
        self.sandbox("contain", "false".into())
    }

    /// The sandbox lets it connect to these TCP ports.
    pub(crate) fn tcp_connect(self, ports: &[u16]) -> Self {
        let ports: Vec<String> = ports.iter().map(u16::to_string).collect();
        self.sandbox("tcp_connect", format!("[{}]", ports.join(", ")))
    }

    /// The sandbox lets it read these paths (relative to the config's directory).
    pub(crate) fn read_only(self, paths: &[&str]) -> Self {
        self.sandbox("read_only", toml_array(paths))
    }

    /// Portcullis does not check path arguments against the roots: the sandbox alone does.
    pub(crate) fn without_path_check(self) -> Self {
        self.set("check_paths", "false".into())
    }

    /// A variable set in its environment.
    pub(crate) fn env(self, name: &str, value: &str) -> Self {
        self.set(&format!("env.{name}"), toml_string(value))
    }

    /// Portcullis's own variables copied into its environment.
    pub(crate) fn inherit_env(self, names: &[&str]) -> Self {
        self.set("inherit_env", toml_array(names))
    }

    pub(crate) fn roots(self, roots: &[&Path]) -> Self {
        self.set("roots", path_array(roots))
    }

    /// Narrower roots for the members of `group`.
    pub(crate) fn roots_for_group(self, group: &str, roots: &[&Path]) -> Self {
        self.roots_for("group", group, roots)
    }

    /// Narrower roots for `user`.
    pub(crate) fn roots_for_user(self, user: &str, roots: &[&Path]) -> Self {
        self.roots_for("user", user, roots)
    }

    /// One instance per identity (`instance = "per_user"`).
    pub(crate) fn per_user(self) -> Self {
        self.set("instance", toml_string("per_user"))
    }

    pub(crate) fn instance_idle_secs(self, secs: u64) -> Self {
        self.set("instance_idle_secs", secs.to_string())
    }

    pub(crate) fn instance_state_days(self, days: u64) -> Self {
        self.set("instance_state_days", days.to_string())
    }

    pub(crate) fn surface(self, surface: &str) -> Self {
        self.set("surface", toml_string(surface))
    }

    pub(crate) fn call_timeout_secs(self, secs: u64) -> Self {
        self.set("call_timeout_secs", secs.to_string())
    }

    pub(crate) fn max_concurrent_calls(self, calls: u64) -> Self {
        self.set("max_concurrent_calls", calls.to_string())
    }

    pub(crate) fn start_timeout_secs(self, secs: u64) -> Self {
        self.set("start_timeout_secs", secs.to_string())
    }

    /// What config says about its tool `name`.
    pub(crate) fn tool(self, name: &str, rules: Tool) -> Self {
        self.set(&format!("tools.{name}"), rules.0.inline())
    }

    /// How it is authorised (`[upstream.credential]`).
    pub(crate) fn credential(self, credential: Credential) -> Self {
        self.set("credential", credential.0.inline())
    }

    fn roots_for(mut self, grantee: &str, name: &str, roots: &[&Path]) -> Self {
        let entry = Table::default()
            .with(grantee, toml_string(name))
            .with("roots", path_array(roots));
        self.roots_for.push(entry.inline());
        self
    }

    fn set(self, key: &str, value: String) -> Self {
        Self {
            keys: self.keys.with(key, value),
            ..self
        }
    }

    fn sandbox(self, key: &str, value: String) -> Self {
        Self {
            sandbox: self.sandbox.with(key, value),
            ..self
        }
    }
}

impl fmt::Display for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut keys = self.keys.clone();
        if !self.command.is_empty() {
            keys.set("command", toml_array(&self.command));
        }
        if !self.sandbox.is_empty() {
            keys.set("sandbox", self.sandbox.inline());
        }
        if !self.roots_for.is_empty() {
            keys.set("roots_for", format!("[{}]", self.roots_for.join(", ")));
        }
        write!(f, "[[upstream]]\n{}\n", keys.lines())
    }
}

/// The rules for one tool of an upstream, starting from its effect.
#[derive(Debug, Clone)]
pub(crate) struct Tool(Table);

impl Tool {
    pub(crate) fn read() -> Self {
        Self::effect("read")
    }

    pub(crate) fn write() -> Self {
        Self::effect("write")
    }

    pub(crate) fn send() -> Self {
        Self::effect("send")
    }

    pub(crate) fn destructive() -> Self {
        Self::effect("destructive")
    }

    fn effect(effect: &str) -> Self {
        Self(Table::default().with("effect", toml_string(effect)))
    }

    /// Scopes the caller needs.
    pub(crate) fn scopes(self, scopes: &[&str]) -> Self {
        Self(self.0.with("scopes", toml_array(scopes)))
    }

    /// Scopes the upstream's credential needs for it.
    pub(crate) fn upstream_scopes(self, scopes: &[&str]) -> Self {
        Self(self.0.with("upstream_scopes", toml_array(scopes)))
    }

    /// Arguments (JSON pointers) naming whom it sends to or acts on.
    pub(crate) fn recipients(self, pointers: &[&str]) -> Self {
        Self(self.0.with("recipients", toml_array(pointers)))
    }

    /// Arguments (JSON pointers) kept out of the evidence.
    pub(crate) fn redact(self, pointers: &[&str]) -> Self {
        Self(self.0.with("redact", toml_array(pointers)))
    }

    /// What it does cannot be undone (`reversible = false`).
    pub(crate) fn irreversible(self) -> Self {
        Self(self.0.with("reversible", "false".into()))
    }
}

/// `[identity.local]`.
#[derive(Debug, Clone)]
pub(crate) struct Identity(Table);

impl Identity {
    pub(crate) fn user(user: &str) -> Self {
        Self(Table::default().with("user", toml_string(user)))
    }

    pub(crate) fn groups(self, groups: &[&str]) -> Self {
        Self(self.0.with("groups", toml_array(groups)))
    }

    pub(crate) fn tenant(self, tenant: &str) -> Self {
        Self(self.0.with("tenant", toml_string(tenant)))
    }

    pub(crate) fn scopes(self, scopes: &[&str]) -> Self {
        Self(self.0.with("scopes", toml_array(scopes)))
    }
}

/// `[http.auth]`: Portcullis as a resource server of `issuer`.
#[derive(Debug, Clone)]
pub(crate) struct Auth(Table);

impl Auth {
    pub(crate) fn new(issuer: &str, resource: &str) -> Self {
        Self(
            Table::default()
                .with("issuer", toml_string(issuer))
                .with("resource", toml_string(resource)),
        )
    }

    pub(crate) fn required_scopes(self, scopes: &[&str]) -> Self {
        Self(self.0.with("required_scopes", toml_array(scopes)))
    }

    /// Clock skew tolerated on a token's `exp` and `nbf`.
    pub(crate) fn leeway_secs(self, secs: u64) -> Self {
        Self(self.0.with("leeway_secs", secs.to_string()))
    }

    /// `[http.auth.approval]`: the approval page signs people in as the public client
    /// `client_id`; members of `approvers_group` approve others' four-eyes calls.
    pub(crate) fn approval_sign_in(self, client_id: &str, approvers_group: &str) -> Self {
        let table = Table::default()
            .with("client_id", toml_string(client_id))
            .with("approvers_group", toml_string(approvers_group));
        Self(self.0.with("approval", table.inline()))
    }
}

/// An upstream's `credential`, starting from its kind.
#[derive(Debug, Clone)]
pub(crate) struct Credential(Table);

impl Credential {
    /// Each user's own grant.
    pub(crate) fn oauth() -> Self {
        Self::kind("oauth")
    }

    /// One grant for Portcullis itself, acting for everyone.
    pub(crate) fn client_credentials() -> Self {
        Self::kind("client_credentials")
    }

    /// An API key from the variable `env`.
    pub(crate) fn api_key(env: &str) -> Self {
        Self(Self::kind("api_key").0.with("env", toml_string(env)))
    }

    fn kind(kind: &str) -> Self {
        Self(Table::default().with("kind", toml_string(kind)))
    }

    pub(crate) fn issuer(self, issuer: &str) -> Self {
        Self(self.0.with("issuer", toml_string(issuer)))
    }

    pub(crate) fn client_id(self, id: &str) -> Self {
        Self(self.0.with("client_id", toml_string(id)))
    }

    pub(crate) fn client_secret_env(self, variable: &str) -> Self {
        Self(self.0.with("client_secret_env", toml_string(variable)))
    }

    pub(crate) fn scopes(self, scopes: &[&str]) -> Self {
        Self(self.0.with("scopes", toml_array(scopes)))
    }

    /// The person signs in through Portcullis's loopback callback.
    pub(crate) fn loopback(self) -> Self {
        Self(self.0.with("loopback", "true".into()))
    }

    /// The client's own token is exchanged for one for the upstream.
    pub(crate) fn exchange(self) -> Self {
        Self(self.0.with("exchange", "true".into()))
    }

    /// Tools the grant cannot call are not listed.
    pub(crate) fn hide_tools(self) -> Self {
        Self(self.0.with("hide_tools", "true".into()))
    }

    /// The header an API key is sent in (default: `Authorization: Bearer`).
    pub(crate) fn header(self, header: &str) -> Self {
        Self(self.0.with("header", toml_string(header)))
    }
}

/// TOML keys with their values already rendered, in the order first set; setting a key again
/// replaces its value.
#[derive(Debug, Clone, Default)]
struct Table(Vec<(String, String)>);

impl Table {
    fn set(&mut self, key: &str, value: String) {
        match self.0.iter_mut().find(|(k, _)| k == key) {
            Some(entry) => entry.1 = value,
            None => self.0.push((key.to_owned(), value)),
        }
    }

    fn with(mut self, key: &str, value: String) -> Self {
        self.set(key, value);
        self
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// One `key = value` line each.
    fn lines(&self) -> String {
        self.0.iter().map(|(k, v)| format!("{k} = {v}\n")).collect()
    }

    /// `{ key = value, ... }`.
    fn inline(&self) -> String {
        let pairs: Vec<String> = self.0.iter().map(|(k, v)| format!("{k} = {v}")).collect();
        format!("{{ {} }}", pairs.join(", "))
    }

    /// `[header]` and its lines; nothing when the table is empty.
    fn section(&self, header: &str) -> String {
        if self.is_empty() {
            String::new()
        } else {
            format!("[{header}]\n{}\n", self.lines())
        }
    }
}

fn path_array(paths: &[&Path]) -> String {
    let paths: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    toml_array(&paths)
}

/// A TOML array of strings.
fn toml_array<S: AsRef<str>>(items: &[S]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| toml_string(s.as_ref())).collect();
    format!("[{}]", quoted.join(", "))
}

/// A TOML basic string.
fn toml_string(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}
