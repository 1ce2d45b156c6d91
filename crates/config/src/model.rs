//! The validated configuration model, built once from the raw TOML by [`parse`].

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use portcullis_core::{
    ActingMode, ArgumentPointer, ClaimNames, Effect, EnvelopeParts, HostPort, IdentityEnvelope,
    LOCAL_ISSUER, Namespacing, RESERVED_NAMESPACE, ResourceServerSettings, Surface, ToolRules,
    UpstreamName, UserId,
};
use serde_spanned::Spanned;

use crate::checks::{address, is_env_name, is_loopback_authority, scope_list};
use crate::credential::{
    CredentialSettings, UpstreamCredential, credential_settings, upstream_credential,
};
use crate::error::{ConfigErrors, Reporter};
use crate::instance::{Instance, instance};
use crate::launcher::{Launcher, launcher};
use crate::raw::{
    RawConfig, RawConnect, RawHttp, RawHttpAuth, RawLimit, RawLimits, RawLocalIdentity, RawPolicy,
    RawSandbox, RawServer, RawUpstream,
};
use crate::remote::{Remote, remote, remote_only_keys};
use crate::sign_in::{ApprovalSignIn, approval_sign_in};
use crate::state::{StateBackend, state_backend};

/// Default time an upstream call may take before Portcullis gives up and cancels it.
pub(crate) const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(60);
/// Default time an upstream may take to start and finish its handshake.
pub(crate) const DEFAULT_START_TIMEOUT: Duration = Duration::from_secs(30);
/// How often an upstream's lists are read again when it announces nothing.
pub(crate) const DEFAULT_RELIST: Duration = Duration::from_secs(60);
/// How long a person has to answer an approval request unless config says otherwise.
pub(crate) const DEFAULT_APPROVAL_TIMEOUT: Duration = Duration::from_secs(300);

/// How long a client that declared form elicitation has to answer before the person is given
/// the approval page instead, unless config says otherwise.
pub(crate) const DEFAULT_FORM_WAIT: Duration = Duration::from_secs(60);

/// Where the approval page listens unless config says otherwise: loopback, a port of the
/// system's choosing (each link names it).
pub(crate) const DEFAULT_APPROVAL_PAGE: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 0);
/// How long a person's "for this session" answer lasts at most, by default.
pub(crate) const DEFAULT_APPROVAL_SCOPE: Duration = Duration::from_secs(3600);
/// The longest `approval_scope_secs`: a day. An answer is about what a person meant to do
/// now, not a standing grant (that is what policy is for).
const MAX_APPROVAL_SCOPE_SECS: i64 = 86_400;
/// How many tools an identity may see before `tool_search = "auto"` lists the search tools in
/// their place: about where a catalog's schemas start to cost a model tens of thousands of
/// tokens per turn.
pub const DEFAULT_TOOL_SEARCH_THRESHOLD: usize = 40;
/// Default number of list entries per page sent to the client.
pub(crate) const DEFAULT_PAGE_SIZE: usize = 100;
/// Default streamable HTTP listener: loopback only.
pub(crate) const DEFAULT_LISTEN: &str = "127.0.0.1:8787";
/// Default clock skew tolerated on a bearer token's `exp` and `nbf`.
pub(crate) const DEFAULT_LEEWAY_SECS: u64 = 30;
/// The evidence log, relative to the configuration's directory, when config names none.
pub(crate) const DEFAULT_EVIDENCE: &str = "state/evidence.jsonl";
/// The user of the local identity when config names none.
pub(crate) const DEFAULT_LOCAL_USER: &str = "local";
/// A contained upstream's address space unless config says otherwise: a ceiling against a
/// runaway, not a budget (runtimes such as V8 reserve far more address space than they use).
pub const DEFAULT_MEMORY_MB: u64 = 8192;
/// The largest file a contained upstream may write unless config says otherwise, so that one
/// runaway write cannot fill the disk with a single file.
pub const DEFAULT_FILE_SIZE_MB: u64 = 1024;
/// Open descriptors of a contained upstream unless config says otherwise: the usual soft limit,
/// which programs are written for.
pub const DEFAULT_OPEN_FILES: u64 = 1024;

/// A validated Portcullis configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file this configuration came from; relative paths in it are relative to its directory.
    pub file: PathBuf,
    pub namespacing: Namespacing,
    pub page_size: usize,
    /// Whether clients see Portcullis's search tools in place of the tools (`tool_search`).
    pub tool_search: ToolSearch,
    /// The longest text (description, title, prompt text) of an upstream's lists a client is
    /// shown, in characters (`text_limit`); longer ones are cut, saying so.
    pub text_limit: usize,
    pub http: HttpSettings,
    /// In configuration order; at least one, names unique.
    pub upstreams: Vec<Upstream>,
    /// Who a stdio session acts as (and an HTTP session when `[http.auth]` is absent).
    pub local_identity: IdentityEnvelope,
    pub policy: PolicySettings,
    pub evidence: EvidenceSettings,
    pub approval: ApprovalSettings,
    pub credentials: CredentialSettings,
    /// Where the state replicas share lives (`[state]`): this process, or PostgreSQL.
    pub state: StateBackend,
    /// Where launcher packages are installed (`[server] packages`, relative to this file);
    /// `None`: the user's data directory (`portcullis-launch` decides).
    pub packages: Option<PathBuf>,
}

/// `[server] tool_search`: whether a client's tool list is the tools an identity may see, or
/// Portcullis's three search tools over them (`portcullis.search_tools`, `describe_tool`,
/// `call_tool`). Visibility and the call pipeline are the same either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToolSearch {
    /// `"off"` (the default, so an existing configuration lists what it listed before): the
    /// tools themselves; the search tools are unknown.
    Off,
    /// `"auto"`: the search tools for an identity that may see more than `above` tools
    /// (`tool_search_threshold`), the tools themselves for any other.
    Auto { above: usize },
    /// `"on"`: the search tools for every identity.
    On,
}

/// How Portcullis asks a person to approve a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalSettings {
    /// How long a person has to answer; unanswered means not approved. Default 300 s.
    pub timeout: Duration,
    /// How long a "for this session" answer lasts at most (`approval_scope_secs`, default
    /// 3600 s; it also ends with its session); `None` (`0`): no answer covers more than its
    /// own call.
    pub scope: Option<Duration>,
    /// The environment variable holding the key that seals `requestState` (at least 32
    /// bytes), so that several Portcullis processes accept each other's states; `None`: a
    /// key generated at each start.
    pub state_key_env: Option<String>,
    /// How long a client that declared form elicitation has to answer before the person is
    /// sent to the approval page instead (the same pending approval). Default 60 s.
    pub form_wait: Duration,
    /// Where the approval page listens (loopback; port 0: one of the system's choosing);
    /// `None` (`approval_page = "off"`): no page, so a client that cannot show a form cannot
    /// have a call approved.
    pub page: Option<SocketAddr>,
}

/// Where the evidence log is, and what happens when it cannot be written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvidenceSettings {
    /// The log file; its head file sits beside it. Default: `state/evidence.jsonl` next to the
    /// configuration.
    pub file: PathBuf,
    /// Whether read-only tool calls may still run while the log cannot be written (side
    /// effects never do). Default: no.
    pub reads_without_evidence: bool,
    /// How far a call's intent has gone before the upstream hears of the call.
    pub durability: Durability,
}

/// `[server] durability`: what a call's intent record has survived before the call runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// `"process"` (the default): written to the log file, so it survives Portcullis being
    /// killed; synced to the disk within 10 ms, for power loss.
    #[default]
    Process,
    /// `"disk"`: written and synced, so it survives power loss before the call runs.
    Disk,
}

/// Where the Cedar schema and policies are; `None` and empty mean the shipped ones.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PolicySettings {
    pub schema: Option<PathBuf>,
    /// Files, or directories whose `*.cedar` files are read in name order.
    pub policies: Vec<PathBuf>,
}

/// The streamable HTTP downstream transport.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// A loopback address unless `auth` is configured (an open MCP endpoint on a network would
    /// hand the local identity's tools to anyone who can reach it).
    pub listen: SocketAddr,
    /// `Host` header values accepted, against DNS rebinding. Empty means loopback names only.
    pub allowed_hosts: Vec<String>,
    /// `Origin` header values accepted from browsers. Empty means the listener's own loopback
    /// origins only.
    pub allowed_origins: Vec<String>,
    /// Bearer-token authentication (OAuth 2.1 resource server); without it every HTTP session
    /// acts as the local identity, which is why the listener must then be loopback.
    pub auth: Option<ResourceServerSettings>,
    /// Where Prometheus metrics are served in HTTP mode (`GET /metrics`), if anywhere:
    /// loopback only, since nothing authenticates a scrape.
    pub metrics: Option<SocketAddr>,
    /// Session-era HTTP sessions kept open at most; a new one beyond is refused (503), so that
    /// no client can make Portcullis hold memory without bound.
    pub max_sessions: usize,
    /// Of those, how many one client may hold: an authenticated one by its token's user and
    /// client id, an unauthenticated one by its address. A new session beyond closes that
    /// client's least recently used one.
    pub max_sessions_per_client: usize,
    /// A session unused this long is closed and its memory returned.
    pub session_idle: Duration,
    /// `[http.auth.approval]`: the approval page signs people in with `auth`'s issuer.
    pub approval_sign_in: Option<ApprovalSignIn>,
}

/// Session-era HTTP sessions kept at most, by default.
pub(crate) const DEFAULT_MAX_SESSIONS: usize = 256;
/// Session-era HTTP sessions one client may hold, by default.
pub(crate) const DEFAULT_MAX_SESSIONS_PER_CLIENT: usize = 32;
/// The longest text of an upstream's lists shown to a client, by default (characters).
pub(crate) const DEFAULT_TEXT_LIMIT: usize = 4096;

/// How long an unused HTTP session is kept, by default.
pub(crate) const DEFAULT_SESSION_IDLE: Duration = Duration::from_secs(120);

/// One upstream MCP server.
#[derive(Debug, Clone)]
pub struct Upstream {
    pub name: UpstreamName,
    pub transport: UpstreamTransport,
    pub call_timeout: Duration,
    pub start_timeout: Duration,
    /// The most calls in flight to it at once (`max_concurrent_calls`); a call beyond waits
    /// for one to end, within its call timeout. `None`: no limit but the upstream's own.
    pub max_concurrent_calls: Option<usize>,
    /// How often its lists are read again and compared with its pins, whether or not it
    /// announced a change (`[server] relist_secs`): a definition changed without notice is
    /// quarantined within this long.
    pub relist: Duration,
    pub surface: Surface,
    /// Rules for the upstream's tools, by the upstream's own tool name.
    pub tools: BTreeMap<String, ToolRules>,
    /// The effect of the tools `tools` does not classify (`effect = …` on the upstream).
    pub default_effect: Option<Effect>,
    /// Whether its tool results, resources and prompts are trusted content (`trusted`); it
    /// sets the default of `taint`, and nothing else.
    pub trusted: bool,
    /// What its content does to the session that reads it (`taint`): by default `Session`
    /// for an untrusted upstream, `None` for a trusted one.
    pub taint: Taint,
    /// Whether its definitions are pinned (`pinning`, else `[server] pinning`).
    pub pinning: Pinning,
    /// Whether its tool annotations may classify tools config leaves unclassified. Without
    /// this, annotations can only make a tool more restricted.
    pub trust_hints: bool,
    /// Whether its sampling requests are relayed to the client (default: refused).
    pub sampling: bool,
    /// Which of its own questions (elicitations) reach the person.
    pub elicitation: ElicitationRule,
    /// The directories granted to this upstream (`roots`), joined to the configuration's
    /// directory but not resolved. A contained stdio upstream may read and write beneath them
    /// and nowhere else.
    pub roots: Vec<PathBuf>,
    /// Narrower roots for some identities (`[[upstream.roots_for]]`). When there are any, an
    /// identity's roots are those of the entries naming its user or one of its groups (within
    /// `roots`), and an identity no entry names has none. The sandbox is the upstream's: one
    /// process serves every identity, so the kernel holds it to `roots` (and an upstream that
    /// asks for roots outside any call is told those), and Portcullis's check holds each call
    /// to its identity's own.
    pub roots_for: Vec<RootsFor>,
    /// Whether path arguments are checked against the roots before a call is forwarded
    /// (default yes, when the upstream has roots; `check_paths = false` leaves it to the
    /// sandbox alone, for tests of the sandbox).
    pub check_paths: bool,
    /// How the upstream reads a path starting with `~`.
    pub tilde: TildeRule,
    /// How a `url` upstream is authorised (`[upstream.credential]`); `None`: no credential
    /// is ever sent to it.
    pub credential: Option<UpstreamCredential>,
    /// One instance for everyone, or one per identity (`instance = "per_user"`).
    pub instance: Instance,
}

/// Roots granted to one user or one group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootsFor {
    pub grantee: Grantee,
    pub roots: Vec<PathBuf>,
}

/// Who a `roots_for` entry is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grantee {
    /// A user, by subject.
    User(String),
    Group(String),
}

impl Grantee {
    /// Whether the identity with `subject` in `groups` is this grantee.
    pub fn names(&self, subject: &str, groups: &BTreeSet<String>) -> bool {
        match self {
            Grantee::User(user) => user == subject,
            Grantee::Group(group) => groups.contains(group),
        }
    }
}

/// Whether an upstream's definitions (tools, prompts, resource templates) are pinned, and what
/// becomes of one that is not (`pinning`). A changed definition is quarantined in either pinning
/// mode: hidden from lists and refused by name until a person accepts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pinning {
    /// `tofu` (the default): an upstream seen for the first time has its definitions recorded;
    /// once it has pins, a new definition is quarantined like a changed one.
    Tofu,
    /// `strict`: nothing is recorded without a person; every unpinned definition is
    /// quarantined, those of an upstream never pinned included.
    Strict,
    /// `off`: nothing is pinned, compared or quarantined.
    Off,
}

impl Pinning {
    pub fn as_str(self) -> &'static str {
        match self {
            Pinning::Tofu => "tofu",
            Pinning::Strict => "strict",
            Pinning::Off => "off",
        }
    }
}

/// What content from an upstream does to the session that reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Taint {
    /// `session`: the session is tainted: its side effects (and its reads that can reach the
    /// network) need a person's approval from then on, naming this upstream as the cause.
    Session,
    /// `none`: its content taints nothing.
    None,
}

impl Taint {
    pub fn as_str(self) -> &'static str {
        match self {
            Taint::Session => "session",
            Taint::None => "none",
        }
    }
}

/// Which of an upstream's own questions (elicitations) reach the person. Whatever the rule, a
/// form that asks for a secret is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ElicitationRule {
    /// Forms and links (the default).
    #[default]
    Forms,
    /// No form with a free-text field (a string without a fixed set of values): yes/no,
    /// numbers and choices only. Links too.
    NoFreeText,
    /// None: every question is declined without asking.
    None,
}

/// How an upstream reads a leading `~` in a path argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TildeRule {
    /// Refused: Portcullis cannot know how the upstream reads it (the default).
    Deny,
    /// A file or directory named `~`.
    Literal,
    /// The home directory given (the upstream's `HOME` in `env`).
    Expand(PathBuf),
}

impl Upstream {
    /// What config says about one of this upstream's tools (nothing: the upstream's default
    /// effect, else unknown).
    pub fn tool_rules(&self, tool: &str) -> ToolRules {
        self.tools.get(tool).cloned().unwrap_or_else(|| ToolRules {
            effect: self.default_effect,
            ..ToolRules::default()
        })
    }
}

/// How Portcullis reaches an upstream.
#[derive(Debug, Clone)]
#[expect(
    clippy::large_enum_variant,
    reason = "built once per configured upstream; boxing would only add indirection"
)]
pub enum UpstreamTransport {
    /// A child process speaking MCP on stdin and stdout.
    Stdio {
        /// What its command line asks to run when the program is a launcher (`npx`, `uvx`,
        /// `docker run`, ...): Portcullis installs the package (or runs the image) itself.
        launcher: Option<Launcher>,
        /// The program: resolved against the configuration's directory when it contains a `/`,
        /// otherwise looked up on the child's own `PATH` (from `env` or `inherit_env`; without
        /// one, `/bin:/usr/bin`), as `execvp` does.
        program: PathBuf,
        args: Vec<String>,
        /// Variables set explicitly for the child.
        env: BTreeMap<String, String>,
        /// Names of Portcullis's own variables copied into the child. Nothing else is inherited.
        inherit_env: Vec<String>,
        cwd: PathBuf,
        /// How the child is contained (`[upstream.sandbox]`).
        containment: Containment,
    },
    /// A streamable HTTP server.
    Http { url: String, remote: Remote },
}

/// Whether a stdio upstream runs in a sandbox, and what that sandbox grants besides the roots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Containment {
    /// The default: the upstream may reach its roots, what it needs to run, and these grants.
    Contained(SandboxGrants),
    /// `contain = false`: the upstream runs with all of Portcullis's own access. Logged as a
    /// warning and recorded in the evidence log at every start.
    Uncontained,
    /// A container launcher (`docker run`, `podman run`): contained by its engine, with the
    /// options `portcullis-launch` sets; the engine's client itself is not landlocked (it only
    /// talks to the engine's socket).
    Container,
}

/// What config grants a contained upstream besides its roots.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SandboxGrants {
    /// Extra paths it may read (and execute), joined to the configuration's directory.
    pub read_only: Vec<PathBuf>,
    /// TCP ports it may connect to, on any address (`tcp_connect = [443]`).
    pub tcp_connect: Vec<u16>,
    /// Host names and the port on each it may connect to (`tcp_connect =
    /// ["api.github.com:443"]`): the upstream then has a network of its own in which only these
    /// names resolve, and Portcullis forwards each connection to what the name resolves to.
    /// Never beside `tcp_connect` ports, which that network could not reach. Both empty: no
    /// network at all.
    pub tcp_connect_hosts: Vec<HostPort>,
    /// TCP ports it may bind (0: an ephemeral port).
    pub tcp_bind: Vec<u16>,
    /// Whether it may create unix sockets.
    pub unix_sockets: bool,
    pub limits: SandboxLimits,
}

/// Resource limits of a contained upstream; `None` keeps Portcullis's own limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SandboxLimits {
    /// Bytes of address space (`memory_mb`; default [`DEFAULT_MEMORY_MB`]).
    pub memory_bytes: Option<u64>,
    /// Processes and threads of the user (`processes`; default none: the kernel counts every
    /// process of the user, not only the upstream's, so any fixed default could stop an
    /// upstream on a busy desktop).
    pub processes: Option<u64>,
    /// Bytes one file may grow to (`file_size_mb`; default [`DEFAULT_FILE_SIZE_MB`]).
    pub file_size_bytes: Option<u64>,
    /// Open file descriptors (`open_files`; default [`DEFAULT_OPEN_FILES`]).
    pub open_files: Option<u64>,
}

impl Default for SandboxLimits {
    fn default() -> Self {
        Self {
            memory_bytes: Some(DEFAULT_MEMORY_MB * MIB),
            processes: None,
            file_size_bytes: Some(DEFAULT_FILE_SIZE_MB * MIB),
            open_files: Some(DEFAULT_OPEN_FILES),
        }
    }
}

const MIB: u64 = 1024 * 1024;

/// Parses and validates a configuration; `file` names it in messages and anchors relative paths.
pub fn parse(file: &Path, text: &str) -> Result<Config, ConfigErrors> {
    let mut report = Reporter::new(file, text);
    let raw: RawConfig = match toml::from_str(text) {
        Ok(raw) => raw,
        Err(error) => {
            let single = single_upstream_tables(text);
            if single.is_empty() {
                report.at(error.span(), error.message().trim_end().to_owned());
            }
            // TOML's own words ("invalid type: map, expected a sequence", "duplicate key")
            // do not say what is wrong with `[upstream]`.
            for offset in single {
                report.at(
                    Some(offset..offset),
                    "`[upstream]` is a single table; every upstream is an entry of a list, written `[[upstream]]` (double brackets), one per upstream",
                );
            }
            return report.finish(unreachable_config(file));
        }
    };
    let base_dir = file.parent().unwrap_or(Path::new("")).to_path_buf();

    let namespacing = namespacing(&mut report, &raw.server);
    let page_size = bounded(
        &mut report,
        raw.server.page_size.as_ref(),
        "page_size",
        1,
        10_000,
    )
    .map_or(DEFAULT_PAGE_SIZE, |n| n as usize);
    let text_limit = bounded(
        &mut report,
        raw.server.text_limit.as_ref(),
        "text_limit",
        64,
        1_000_000,
    )
    .map_or(DEFAULT_TEXT_LIMIT, |n| n as usize);
    let tool_search = tool_search(&mut report, &raw.server);
    let call_timeout = seconds(
        &mut report,
        raw.server.call_timeout_secs.as_ref(),
        "call_timeout_secs",
        DEFAULT_CALL_TIMEOUT,
    );
    let start_timeout = seconds(
        &mut report,
        raw.server.start_timeout_secs.as_ref(),
        "start_timeout_secs",
        DEFAULT_START_TIMEOUT,
    );
    let relist = seconds(
        &mut report,
        raw.server.relist_secs.as_ref(),
        "relist_secs",
        DEFAULT_RELIST,
    );
    let defaults = UpstreamDefaults {
        call_timeout,
        start_timeout,
        relist,
        pinning: pinning(&mut report, raw.server.pinning.as_ref(), Pinning::Tofu),
    };
    let http = http_settings(&mut report, raw.http.as_ref());
    let local_identity = local_identity(&mut report, raw.identity.local.as_ref());
    let policy = policy_settings(&mut report, raw.policy.as_ref(), &base_dir);
    let evidence = evidence_settings(&mut report, &raw.server, &base_dir);
    let approval = approval_settings(&mut report, &raw.server);
    if approval.page.is_none() && http.approval_sign_in.is_some() {
        report.at(
            None,
            "`[http.auth.approval]` signs people in on the approval page, but `approval_page = \"off\"`: turn the page on, or remove the table",
        );
    }

    let credentials = credential_settings(&mut report, raw.credentials.as_ref(), &base_dir);
    let state = state_backend(
        &mut report,
        raw.state.as_ref(),
        approval.state_key_env.is_some(),
        &base_dir,
    );
    let mut upstreams = Vec::with_capacity(raw.upstreams.len());
    let mut seen = BTreeSet::new();
    for spanned in &raw.upstreams {
        let upstream = spanned.get_ref();
        if let Some(parsed) = parse_upstream(&mut report, upstream, &base_dir, defaults) {
            if !seen.insert(parsed.name.clone()) {
                report.at(
                    Some(upstream.name.span()),
                    format!(
                        "upstream `{}` is defined twice; upstream names must be unique",
                        parsed.name
                    ),
                );
            }
            upstreams.push(parsed);
        }
    }
    if raw.upstreams.is_empty() {
        report.at(
            None,
            "no upstream is configured; add at least one `[[upstream]]` table with a `name` and a `command` or `url`",
        );
    }
    if namespacing == Namespacing::Passthrough && raw.upstreams.len() > 1 {
        let span = raw.server.namespacing.as_ref().map(Spanned::span);
        report.at(
            span,
            format!(
                "`passthrough` keeps tool names unchanged and so serves exactly one upstream, but {} are configured; use `prefixed`",
                raw.upstreams.len()
            ),
        );
    }
    let packages = raw.server.packages.as_ref().and_then(|dir| {
        if dir.get_ref().trim().is_empty() {
            report.at(Some(dir.span()), "`packages` is empty; give a directory");
            return None;
        }
        Some(base_dir.join(dir.get_ref()))
    });
    report.finish(Config {
        file: file.to_path_buf(),
        namespacing,
        page_size,
        tool_search,
        text_limit,
        http,
        upstreams,
        local_identity,
        policy,
        evidence,
        approval,
        credentials,
        state,
        packages,
    })
}

/// Where the text has a `[upstream]` header line (with single brackets).
fn single_upstream_tables(text: &str) -> Vec<usize> {
    let mut offset = 0;
    let mut found = Vec::new();
    for line in text.split_inclusive('\n') {
        let code = line.split('#').next().unwrap_or("");
        let inner = code
            .trim()
            .strip_prefix('[')
            .and_then(|rest| rest.strip_suffix(']'))
            .map(str::trim);
        if inner == Some("upstream") {
            found.push(offset + (line.len() - line.trim_start().len()));
        }
        offset += line.len();
    }
    found
}

/// `[server] namespacing`: how exposed names are made.
fn namespacing(report: &mut Reporter<'_>, server: &RawServer) -> Namespacing {
    match server.namespacing.as_ref() {
        None => Namespacing::Prefixed,
        Some(value) => match value.get_ref().as_str() {
            "prefixed" => Namespacing::Prefixed,
            "passthrough" => Namespacing::Passthrough,
            other => {
                report.at(
                    Some(value.span()),
                    format!("unknown namespacing `{other}`; use `prefixed` or `passthrough`"),
                );
                Namespacing::Prefixed
            }
        },
    }
}

/// `[server] tool_search` and `tool_search_threshold` (which only `auto` reads, so it is refused
/// beside any other mode rather than ignored).
fn tool_search(report: &mut Reporter<'_>, server: &RawServer) -> ToolSearch {
    let threshold = server.tool_search_threshold.as_ref();
    let above = bounded(report, threshold, "tool_search_threshold", 1, 100_000)
        .map_or(DEFAULT_TOOL_SEARCH_THRESHOLD, |n| n as usize);
    let mode = match server
        .tool_search
        .as_ref()
        .map(|v| (v, v.get_ref().as_str()))
    {
        None | Some((_, "off")) => ToolSearch::Off,
        Some((_, "auto")) => ToolSearch::Auto { above },
        Some((_, "on")) => ToolSearch::On,
        Some((spanned, other)) => {
            report.at(
                Some(spanned.span()),
                format!("unknown tool_search `{other}`; use `off`, `auto` or `on`"),
            );
            ToolSearch::Off
        }
    };
    if let Some(threshold) = threshold
        && !matches!(mode, ToolSearch::Auto { .. })
    {
        report.at(
            Some(threshold.span()),
            "`tool_search_threshold` applies only to `tool_search = \"auto\"`; remove it or set `tool_search = \"auto\"`",
        );
    }
    mode
}

/// `[server] evidence`, `reads_without_evidence` and `durability`.
fn evidence_settings(
    report: &mut Reporter<'_>,
    server: &RawServer,
    base_dir: &Path,
) -> EvidenceSettings {
    EvidenceSettings {
        file: match &server.evidence {
            Some(path) if path.get_ref().is_empty() => {
                report.at(
                    Some(path.span()),
                    "`evidence` is empty; give the log's path",
                );
                base_dir.join(DEFAULT_EVIDENCE)
            }
            Some(path) => base_dir.join(path.get_ref()),
            None => base_dir.join(DEFAULT_EVIDENCE),
        },
        reads_without_evidence: server.reads_without_evidence.unwrap_or(false),
        durability: match server
            .durability
            .as_ref()
            .map(|v| (v, v.get_ref().as_str()))
        {
            None | Some((_, "process")) => Durability::Process,
            Some((_, "disk")) => Durability::Disk,
            Some((spanned, other)) => {
                report.at(
                    Some(spanned.span()),
                    format!("unknown durability `{other}`; use `process` or `disk`"),
                );
                Durability::Process
            }
        },
    }
}

/// `[server] approval_page`: a loopback address, or "off".
fn approval_page(report: &mut Reporter<'_>, server: &RawServer) -> Option<SocketAddr> {
    let Some(value) = server.approval_page.as_ref() else {
        return Some(DEFAULT_APPROVAL_PAGE);
    };
    if value.get_ref() == "off" {
        return None;
    }
    address(
        report,
        value,
        "127.0.0.1:0",
        |addr| addr.ip().is_loopback(),
        "is not a loopback address; the approval page is for the person at this machine (or \"off\")",
    )
}

/// `[server] approval_timeout_secs`, `approval_form_wait_secs`, `approval_page`,
/// `approval_scope_secs` and `state_key_env`.
fn approval_settings(report: &mut Reporter<'_>, server: &RawServer) -> ApprovalSettings {
    ApprovalSettings {
        form_wait: seconds(
            report,
            server.approval_form_wait_secs.as_ref(),
            "approval_form_wait_secs",
            DEFAULT_FORM_WAIT,
        ),
        page: approval_page(report, server),
        timeout: seconds(
            report,
            server.approval_timeout_secs.as_ref(),
            "approval_timeout_secs",
            DEFAULT_APPROVAL_TIMEOUT,
        ),
        scope: match server.approval_scope_secs.as_ref() {
            None => Some(DEFAULT_APPROVAL_SCOPE),
            Some(value) => bounded(
                report,
                Some(value),
                "approval_scope_secs",
                0,
                MAX_APPROVAL_SCOPE_SECS,
            )
            .filter(|secs| *secs > 0)
            .map(Duration::from_secs),
        },
        state_key_env: server.state_key_env.as_ref().and_then(|name| {
            let valid = !name.get_ref().is_empty()
                && name
                    .get_ref()
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                report.at(
                    Some(name.span()),
                    format!("`{}` is not an environment variable name", name.get_ref()),
                );
            }
            valid.then(|| name.get_ref().clone())
        }),
    }
}

fn unreachable_config(file: &Path) -> Config {
    Config {
        file: file.to_path_buf(),
        namespacing: Namespacing::Prefixed,
        page_size: DEFAULT_PAGE_SIZE,
        tool_search: ToolSearch::Off,
        text_limit: DEFAULT_TEXT_LIMIT,
        http: default_http(),
        upstreams: Vec::new(),
        local_identity: local_identity(&mut Reporter::new(file, ""), None),
        policy: PolicySettings::default(),
        evidence: EvidenceSettings {
            file: PathBuf::from(DEFAULT_EVIDENCE),
            reads_without_evidence: false,
            durability: Durability::Process,
        },
        approval: ApprovalSettings {
            form_wait: DEFAULT_FORM_WAIT,
            page: Some(DEFAULT_APPROVAL_PAGE),
            timeout: DEFAULT_APPROVAL_TIMEOUT,
            scope: Some(DEFAULT_APPROVAL_SCOPE),
            state_key_env: None,
        },
        credentials: credential_settings(&mut Reporter::new(file, ""), None, Path::new("")),
        state: StateBackend::Local,
        packages: None,
    }
}

/// The highest `max_concurrent_calls` (tokio's semaphore holds far more; a limit this high is
/// a typo for no limit, which is said by leaving the key out).
const MAX_CONCURRENT_CALLS: i64 = 10_000;

/// What `[server]` sets for every upstream that does not say otherwise.
#[derive(Clone, Copy)]
struct UpstreamDefaults {
    call_timeout: Duration,
    start_timeout: Duration,
    relist: Duration,
    pinning: Pinning,
}

/// `pinning`: `tofu`, `strict` or `off`; `default` when absent.
fn pinning(
    report: &mut Reporter<'_>,
    value: Option<&Spanned<String>>,
    default: Pinning,
) -> Pinning {
    match value.map(|v| (v, v.get_ref().as_str())) {
        None => default,
        Some((_, "tofu")) => Pinning::Tofu,
        Some((_, "strict")) => Pinning::Strict,
        Some((_, "off")) => Pinning::Off,
        Some((spanned, other)) => {
            report.at(
                Some(spanned.span()),
                format!("unknown pinning `{other}`; use `tofu`, `strict` or `off`"),
            );
            default
        }
    }
}

fn parse_upstream(
    report: &mut Reporter<'_>,
    upstream: &RawUpstream,
    base_dir: &Path,
    defaults: UpstreamDefaults,
) -> Option<Upstream> {
    let name = match UpstreamName::new(upstream.name.get_ref()) {
        // The tools of an upstream named so would be exposed as `portcullis.TOOL`, where
        // Portcullis's own tools are: one of them could be shadowed.
        Ok(name) if name.as_str().eq_ignore_ascii_case(RESERVED_NAMESPACE) => {
            report.at(
                Some(upstream.name.span()),
                format!(
                    "upstream name `{name}` is reserved: portcullis's own tools are named `{RESERVED_NAMESPACE}.…`; choose another name"
                ),
            );
            None
        }
        Ok(name) => Some(name),
        Err(error) => {
            report.at(Some(upstream.name.span()), error.to_string());
            None
        }
    };
    let call_timeout = seconds(
        report,
        upstream.call_timeout_secs.as_ref(),
        "call_timeout_secs",
        defaults.call_timeout,
    );
    let start_timeout = seconds(
        report,
        upstream.start_timeout_secs.as_ref(),
        "start_timeout_secs",
        defaults.start_timeout,
    );
    let max_concurrent_calls = bounded(
        report,
        upstream.max_concurrent_calls.as_ref(),
        "max_concurrent_calls",
        1,
        MAX_CONCURRENT_CALLS,
    )
    .and_then(|n| usize::try_from(n).ok());
    let transport = transport(report, upstream, base_dir);
    let surface = surface(report, upstream);
    let default_effect = upstream
        .effect
        .as_ref()
        .and_then(|effect| effect_of(report, effect, "the upstream's tools"));
    let tools = tool_rules(report, upstream, default_effect);
    let credential =
        upstream_credential(report, upstream.credential.as_ref(), upstream.url.is_some());
    let roots = paths(report, &upstream.roots, base_dir, "root");
    let roots_for = roots_for(report, upstream, base_dir);
    let tilde = tilde_rule(report, upstream);
    let elicitation = elicitation_rule(report, upstream);
    let instance = instance(
        report,
        upstream,
        transport.as_ref(),
        credential.as_ref(),
        base_dir,
    );
    Some(Upstream {
        name: name?,
        transport: transport?,
        call_timeout,
        start_timeout,
        max_concurrent_calls,
        relist: defaults.relist,
        surface,
        tools,
        default_effect,
        trusted: upstream.trusted.unwrap_or(false),
        taint: taint(report, upstream),
        pinning: pinning(report, upstream.pinning.as_ref(), defaults.pinning),
        trust_hints: upstream.trust_hints.unwrap_or(false),
        sampling: upstream.sampling.unwrap_or(false),
        elicitation,
        roots,
        roots_for,
        check_paths: upstream.check_paths.unwrap_or(true),
        tilde,
        credential,
        instance,
    })
}

/// How the upstream is reached: a `command` (stdio) or a `url` (streamable HTTP), and none of
/// the other kind's keys.
fn transport(
    report: &mut Reporter<'_>,
    upstream: &RawUpstream,
    base_dir: &Path,
) -> Option<UpstreamTransport> {
    match (&upstream.command, &upstream.url) {
        (Some(command), None) => stdio_transport(report, upstream, command, base_dir),
        (None, Some(url)) => {
            for (present, key) in [
                (!upstream.env.is_empty(), "env"),
                (!upstream.inherit_env.is_empty(), "inherit_env"),
                (upstream.cwd.is_some(), "cwd"),
            ] {
                if present {
                    report.at(
                        Some(url.span()),
                        format!("`{key}` applies only to a `command` upstream, not to a `url` one"),
                    );
                }
            }
            if let Some(sandbox) = &upstream.sandbox {
                report.at(
                Some(sandbox.span()),
                "`sandbox` applies only to a `command` upstream: a `url` upstream runs elsewhere, so there is no process to contain",
            );
            }
            let remote = remote(report, upstream, url, base_dir);
            http_url(report, url).map(|url| UpstreamTransport::Http { url, remote })
        }
        (Some(command), Some(_)) => {
            report.at(
                Some(command.span()),
                "an upstream has either a `command` (stdio) or a `url` (streamable HTTP), not both",
            );
            None
        }
        (None, None) => {
            report.at(
                Some(upstream.name.span()),
                "this upstream has neither a `command` (stdio) nor a `url` (streamable HTTP)",
            );
            None
        }
    }
}

/// The upstream's execution surface (`surface`), unspecified when not given.
fn surface(report: &mut Reporter<'_>, upstream: &RawUpstream) -> Surface {
    match &upstream.surface {
        None => Surface::Unspecified,
        Some(surface) => Surface::from_name(surface.get_ref()).unwrap_or_else(|| {
            report.at(
                Some(surface.span()),
                format!(
                    "unknown surface `{}`; use one of {}",
                    surface.get_ref(),
                    names(Surface::NAMED.iter().map(|s| s.as_str()))
                ),
            );
            Surface::Unspecified
        }),
    }
}

/// What `~` in a path argument means for this upstream (`tilde`).
fn tilde_rule(report: &mut Reporter<'_>, upstream: &RawUpstream) -> TildeRule {
    match upstream.tilde.as_ref().map(|t| (t, t.get_ref().as_str())) {
        None | Some((_, "deny")) => TildeRule::Deny,
        Some((_, "literal")) => TildeRule::Literal,
        Some((spanned, "expand")) => match upstream.env.get("HOME") {
            Some(home) if Path::new(home).is_absolute() => TildeRule::Expand(PathBuf::from(home)),
            _ => {
                report.at(
                Some(spanned.span()),
                "`tilde = \"expand\"` needs an absolute `HOME` in this upstream's `env`, the home it expands `~` to",
            );
                TildeRule::Deny
            }
        },
        Some((spanned, other)) => {
            report.at(
                Some(spanned.span()),
                format!("unknown tilde rule `{other}`; use `deny`, `literal` or `expand`"),
            );
            TildeRule::Deny
        }
    }
}

/// What the upstream's content does to a session (`taint`): by default what `trusted` implies.
/// Both explicit combinations against `trusted` are allowed: `trusted = true` with `taint =
/// "session"` is only stricter, and `trusted = false` with `taint = "none"` is a choice
/// `portcullis check` warns about.
fn taint(report: &mut Reporter<'_>, upstream: &RawUpstream) -> Taint {
    match upstream.taint.as_ref().map(|t| (t, t.get_ref().as_str())) {
        None if upstream.trusted == Some(true) => Taint::None,
        None | Some((_, "session")) => Taint::Session,
        Some((_, "none")) => Taint::None,
        Some((spanned, other)) => {
            report.at(
                Some(spanned.span()),
                format!("unknown taint `{other}`; use `session` or `none`"),
            );
            Taint::Session
        }
    }
}

/// Which of the upstream's own elicitations are relayed (`elicitation`).
fn elicitation_rule(report: &mut Reporter<'_>, upstream: &RawUpstream) -> ElicitationRule {
    match upstream
        .elicitation
        .as_ref()
        .map(|e| (e, e.get_ref().as_str()))
    {
        None | Some((_, "forms")) => ElicitationRule::Forms,
        Some((_, "no_free_text")) => ElicitationRule::NoFreeText,
        Some((_, "none")) => ElicitationRule::None,
        Some((spanned, other)) => {
            report.at(
                Some(spanned.span()),
                format!(
                    "unknown elicitation rule `{other}`; use `forms`, `no_free_text` or `none`"
                ),
            );
            ElicitationRule::None
        }
    }
}

fn stdio_transport(
    report: &mut Reporter<'_>,
    upstream: &RawUpstream,
    command: &Spanned<Vec<String>>,
    base_dir: &Path,
) -> Option<UpstreamTransport> {
    let Some((program, args)) = command.get_ref().split_first() else {
        report.at(
            Some(command.span()),
            "`command` is empty; give the program and its arguments, e.g. `[\"node\", \"server.js\"]`",
        );
        return None;
    };
    if program.is_empty() {
        report.at(Some(command.span()), "the program in `command` is empty");
        return None;
    }
    let program = if program.contains('/') {
        base_dir.join(program)
    } else {
        PathBuf::from(program)
    };
    let mut ok = true;
    for (present, key) in remote_only_keys(upstream) {
        if present {
            report.at(
                Some(command.span()),
                format!("`{key}` applies only to a `url` upstream, not to a `command` one"),
            );
            ok = false;
        }
    }
    for key in upstream.env.keys() {
        if !is_env_name(key) {
            report.at(
                Some(upstream.name.span()),
                format!("`env` key `{key}` is not a valid environment variable name"),
            );
            ok = false;
        }
    }
    for key in &upstream.inherit_env {
        if !is_env_name(key.get_ref()) {
            report.at(
                Some(key.span()),
                format!(
                    "`{}` is not a valid environment variable name",
                    key.get_ref()
                ),
            );
            ok = false;
        }
    }
    let cwd = upstream.cwd.as_ref().map_or_else(
        || base_dir.to_path_buf(),
        |cwd| base_dir.join(cwd.get_ref()),
    );
    let containment = containment(report, upstream.sandbox.as_ref(), base_dir);
    let launcher = launcher(command.get_ref()).unwrap_or_else(|message| {
        report.at(Some(command.span()), message);
        ok = false;
        None
    });
    ok.then(|| UpstreamTransport::Stdio {
        program,
        launcher,
        args: args.to_vec(),
        env: upstream.env.clone(),
        inherit_env: upstream
            .inherit_env
            .iter()
            .map(|k| k.get_ref().clone())
            .collect(),
        cwd,
        containment,
    })
}

/// `[upstream.sandbox]`: contained unless `contain = false`, which refuses any grant beside it
/// (it would grant nothing, and a reader would think it does).
fn containment(
    report: &mut Reporter<'_>,
    raw: Option<&Spanned<RawSandbox>>,
    base_dir: &Path,
) -> Containment {
    let Some(raw) = raw.map(Spanned::get_ref) else {
        return Containment::Contained(SandboxGrants::default());
    };
    if raw
        .contain
        .as_ref()
        .is_some_and(|contain| !contain.get_ref())
    {
        let grants = [
            ("read_only", raw.read_only.as_ref().map(Spanned::span)),
            ("tcp_connect", raw.tcp_connect.as_ref().map(Spanned::span)),
            ("tcp_bind", raw.tcp_bind.as_ref().map(Spanned::span)),
            ("unix_sockets", raw.unix_sockets.as_ref().map(Spanned::span)),
            ("limits", raw.limits.as_ref().map(Spanned::span)),
        ];
        for (key, span) in grants {
            if let Some(span) = span {
                report.at(
                    Some(span),
                    format!(
                        "`{key}` has no effect with `contain = false` (the upstream runs uncontained); remove one of them"
                    ),
                );
            }
        }
        return Containment::Uncontained;
    }
    let read_only = raw
        .read_only
        .as_ref()
        .map(|list| paths(report, list.get_ref(), base_dir, "read-only path"))
        .unwrap_or_default();
    let ports = |report: &mut Reporter<'_>, list: &Option<Spanned<Vec<Spanned<i64>>>>, min| {
        let mut ports = Vec::new();
        for port in list.iter().flat_map(|list| list.get_ref()) {
            match u16::try_from(*port.get_ref()) {
                Ok(value) if i64::from(value) >= min => ports.push(value),
                _ => report.at(
                    Some(port.span()),
                    format!(
                        "port {} is not a TCP port; it must be between {min} and 65535",
                        port.get_ref()
                    ),
                ),
            }
        }
        ports
    };
    // Binding port 0 asks for an ephemeral port.
    let tcp_bind = ports(report, &raw.tcp_bind, 0);
    let (tcp_connect, tcp_connect_hosts) = connect_grants(report, raw.tcp_connect.as_ref());
    Containment::Contained(SandboxGrants {
        read_only,
        tcp_connect,
        tcp_connect_hosts,
        tcp_bind,
        unix_sockets: raw.unix_sockets.as_ref().is_some_and(|u| *u.get_ref()),
        limits: raw
            .limits
            .as_ref()
            .map_or_else(SandboxLimits::default, |limits| {
                sandbox_limits(report, limits.get_ref())
            }),
    })
}

/// `tcp_connect = [443, "api.github.com:443"]`: ports on any address, and host names with a
/// port. Not both kinds in one list: a host-name grant gives the upstream a network of its own
/// where nothing but the named hosts is reachable, so a port on any address would grant nothing
/// while reading as if it did.
fn connect_grants(
    report: &mut Reporter<'_>,
    raw: Option<&Spanned<Vec<Spanned<RawConnect>>>>,
) -> (Vec<u16>, Vec<HostPort>) {
    let mut ports = Vec::new();
    let mut hosts = Vec::new();
    let mut first_port = None;
    let mut first_host = None;
    for entry in raw.iter().flat_map(|list| list.get_ref()) {
        match entry.get_ref() {
            // Connecting to port 0 means nothing.
            RawConnect::Port(port) => match u16::try_from(*port) {
                Ok(value) if value >= 1 => {
                    first_port.get_or_insert(value);
                    ports.push(value);
                }
                _ => report.at(
                    Some(entry.span()),
                    format!("port {port} is not a TCP port; it must be between 1 and 65535"),
                ),
            },
            RawConnect::Host(text) if text.parse::<i64>().is_ok() => report.at(
                Some(entry.span()),
                format!(
                    "`\"{text}\"` is a port written as a string; write `{text}` without quotes"
                ),
            ),
            RawConnect::Host(text) => match HostPort::parse(text) {
                Ok(grant) => {
                    first_host.get_or_insert((grant.clone(), entry.span()));
                    hosts.push(grant);
                }
                Err(error) => report.at(Some(entry.span()), error.to_string()),
            },
        }
    }
    if let (Some(port), Some((host, span))) = (first_port, first_host) {
        report.at(
            Some(span),
            format!(
                "`tcp_connect` grants both a port on any address (`{port}`) and a host name (`{host}`); a host name gives the upstream a network of its own in which only the named hosts are reachable, so name the host of every port instead (`\"db.example:{port}\"`)"
            ),
        );
    }
    (ports, hosts)
}

/// `limits = { … }`: each a number in range or `"inherit"` (Portcullis's own limit); the ones
/// not given keep their defaults.
fn sandbox_limits(report: &mut Reporter<'_>, raw: &RawLimits) -> SandboxLimits {
    let defaults = SandboxLimits::default();
    let mut limit = |value: &Option<Spanned<RawLimit>>,
                     key: &str,
                     (min, max): (i64, i64),
                     unit: u64,
                     default: Option<u64>| {
        let Some(value) = value else {
            return default;
        };
        match value.get_ref() {
            RawLimit::Number(n) if (min..=max).contains(n) => {
                u64::try_from(*n).ok().map(|n| n * unit)
            }
            RawLimit::Word(word) if word == "inherit" => None,
            RawLimit::Number(n) => {
                report.at(
                    Some(value.span()),
                    format!("`{key}` is {n}; it must be between {min} and {max}, or `\"inherit\"`"),
                );
                default
            }
            RawLimit::Word(word) => {
                report.at(
                    Some(value.span()),
                    format!(
                        "`{key}` is `{word}`; give a number, or `\"inherit\"` to keep Portcullis's own limit"
                    ),
                );
                default
            }
        }
    };
    SandboxLimits {
        memory_bytes: limit(
            &raw.memory_mb,
            "memory_mb",
            (64, 16_777_216),
            MIB,
            defaults.memory_bytes,
        ),
        processes: limit(
            &raw.processes,
            "processes",
            (1, 4_194_304),
            1,
            defaults.processes,
        ),
        file_size_bytes: limit(
            &raw.file_size_mb,
            "file_size_mb",
            (1, 16_777_216),
            MIB,
            defaults.file_size_bytes,
        ),
        open_files: limit(
            &raw.open_files,
            "open_files",
            (16, 1_048_576),
            1,
            defaults.open_files,
        ),
    }
}

/// Paths joined to the configuration's directory (lexically: nothing is resolved here).
/// `[[upstream.roots_for]]`: each names a user or a group, not both, and roots within the
/// upstream's (checked lexically here; resolved, the check narrows to the upstream's anyway).
fn roots_for(report: &mut Reporter<'_>, upstream: &RawUpstream, base_dir: &Path) -> Vec<RootsFor> {
    let mut entries = Vec::new();
    if !upstream.roots_for.is_empty() && upstream.roots.is_empty() {
        report.at(
            Some(upstream.name.span()),
            "`roots_for` narrows the upstream's `roots`, and it has none",
        );
    }
    let granted = paths(
        &mut Reporter::new(Path::new(""), ""),
        &upstream.roots,
        base_dir,
        "root",
    );
    for spanned in &upstream.roots_for {
        let raw = spanned.get_ref();
        let grantee = match (&raw.user, &raw.group) {
            (Some(user), None) if !user.get_ref().is_empty() => {
                Grantee::User(user.get_ref().clone())
            }
            (None, Some(group)) if !group.get_ref().is_empty() => {
                Grantee::Group(group.get_ref().clone())
            }
            _ => {
                report.at(
                    Some(spanned.span()),
                    "a `roots_for` entry names exactly one non-empty `user` or `group`",
                );
                continue;
            }
        };
        let roots = paths(report, &raw.roots, base_dir, "root");
        for (root, raw_root) in roots.iter().zip(&raw.roots) {
            if !granted.iter().any(|allowed| root.starts_with(allowed)) {
                report.at(
                    Some(raw_root.span()),
                    format!(
                        "`{}` is not within the upstream's `roots`; `roots_for` can only narrow them",
                        raw_root.get_ref()
                    ),
                );
            }
        }
        entries.push(RootsFor { grantee, roots });
    }
    entries
}

fn paths(
    report: &mut Reporter<'_>,
    raw: &[Spanned<String>],
    base_dir: &Path,
    what: &str,
) -> Vec<PathBuf> {
    raw.iter()
        .filter_map(|path| {
            if path.get_ref().is_empty() {
                report.at(Some(path.span()), format!("a {what} is empty"));
                None
            } else {
                Some(base_dir.join(path.get_ref()))
            }
        })
        .collect()
}

fn http_url(report: &mut Reporter<'_>, url: &Spanned<String>) -> Option<String> {
    let text = url.get_ref();
    let rest = text
        .strip_prefix("http://")
        .or_else(|| text.strip_prefix("https://"));
    match rest {
        Some(rest)
            if !rest.is_empty()
                && !rest.starts_with('/')
                && !text.contains(char::is_whitespace) =>
        {
            Some(text.clone())
        }
        _ => {
            report.at(
                Some(url.span()),
                format!("`{text}` is not an http:// or https:// URL with a host"),
            );
            None
        }
    }
}

/// `[http]` when the file has none: loopback, no authentication.
fn default_http() -> HttpSettings {
    HttpSettings {
        listen: SocketAddr::from(([127, 0, 0, 1], 8787)),
        allowed_hosts: Vec::new(),
        allowed_origins: Vec::new(),
        auth: None,
        metrics: None,
        max_sessions: DEFAULT_MAX_SESSIONS,
        max_sessions_per_client: DEFAULT_MAX_SESSIONS_PER_CLIENT,
        session_idle: DEFAULT_SESSION_IDLE,
        approval_sign_in: None,
    }
}

fn http_settings(report: &mut Reporter<'_>, http: Option<&Spanned<RawHttp>>) -> HttpSettings {
    let Some(http) = http.map(Spanned::get_ref) else {
        return default_http();
    };
    let default_listen = default_http().listen;
    let auth = http
        .auth
        .as_ref()
        .and_then(|auth| resource_server(report, auth.get_ref()));
    let listen = http
        .listen
        .as_ref()
        .and_then(|listen| {
            address(
                report,
                listen,
                DEFAULT_LISTEN,
                |addr| addr.ip().is_loopback() || http.auth.is_some(),
                "is not a loopback address; without `[http.auth]` every client would act as the local identity, so Portcullis listens on loopback only",
            )
        })
        .unwrap_or(default_listen);
    let strings = |values: &Option<Vec<Spanned<String>>>| -> Vec<String> {
        values
            .iter()
            .flatten()
            .map(|value| value.get_ref().clone())
            .collect()
    };
    for origin in http.allowed_origins.iter().flatten() {
        let value = origin.get_ref();
        if value != "null" && !value.contains("://") {
            report.at(
                Some(origin.span()),
                format!("origin `{value}` needs a scheme, e.g. `http://localhost:3000`"),
            );
        }
    }
    let metrics = http.metrics.as_ref().and_then(|metrics| {
        address(
            report,
            metrics,
            "127.0.0.1:9464",
            |addr| addr.ip().is_loopback(),
            "is not a loopback address; nothing authenticates a metrics scrape, so metrics are served on loopback only",
        )
    });
    let max_sessions = bounded(
        report,
        http.max_sessions.as_ref(),
        "max_sessions",
        1,
        100_000,
    )
    .map_or(DEFAULT_MAX_SESSIONS, |n| n as usize);
    let max_sessions_per_client = bounded(
        report,
        http.max_sessions_per_client.as_ref(),
        "max_sessions_per_client",
        1,
        100_000,
    )
    .map_or(DEFAULT_MAX_SESSIONS_PER_CLIENT, |n| n as usize);
    let session_idle = seconds(
        report,
        http.session_idle_secs.as_ref(),
        "session_idle_secs",
        DEFAULT_SESSION_IDLE,
    );
    let approval_sign_in = http
        .auth
        .as_ref()
        .and_then(|auth| auth.get_ref().approval.as_ref())
        .and_then(|raw| approval_sign_in(report, raw));
    HttpSettings {
        listen,
        allowed_hosts: strings(&http.allowed_hosts),
        allowed_origins: strings(&http.allowed_origins),
        auth,
        metrics,
        max_sessions,
        max_sessions_per_client,
        session_idle,
        approval_sign_in,
    }
}

/// `[http.auth]`: the issuer and resource must be URLs; a plain `http://` issuer only on
/// loopback, since its metadata and keys decide who may call anything.
fn resource_server(
    report: &mut Reporter<'_>,
    auth: &RawHttpAuth,
) -> Option<ResourceServerSettings> {
    let issuer = http_url(report, &auth.issuer)?;
    let allow_http = match issuer.strip_prefix("http://") {
        None => false,
        Some(rest) if is_loopback_authority(rest) => true,
        Some(_) => {
            report.at(
                Some(auth.issuer.span()),
                format!(
                    "issuer `{issuer}` uses plain http on a non-loopback host; its keys decide who may call anything, so use https"
                ),
            );
            return None;
        }
    };
    let resource = http_url(report, &auth.resource)?;
    let required_scopes: BTreeSet<String> = scope_list(report, &auth.required_scopes);
    let scopes_supported = match &auth.scopes_supported {
        Some(scopes) => scope_list(report, scopes).into_iter().collect(),
        None => required_scopes.iter().cloned().collect(),
    };
    let defaults = ClaimNames::default();
    let claim = |value: &Option<Spanned<String>>, default: String| {
        value.as_ref().map_or(default, |v| v.get_ref().clone())
    };
    let leeway_secs = bounded(report, auth.leeway_secs.as_ref(), "leeway_secs", 0, 300)
        .unwrap_or(DEFAULT_LEEWAY_SECS);
    Some(ResourceServerSettings {
        issuer,
        resource,
        required_scopes,
        scopes_supported,
        claims: ClaimNames {
            groups: claim(&auth.claims.groups, defaults.groups),
            tenant: claim(&auth.claims.tenant, defaults.tenant),
            client: claim(&auth.claims.client, defaults.client),
        },
        leeway_secs,
        allow_http,
    })
}

fn names<'a>(values: impl Iterator<Item = &'a str>) -> String {
    values
        .map(|v| format!("`{v}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Parses argument pointers, reporting each one that is not.
fn pointers(report: &mut Reporter<'_>, raw: &[Spanned<String>]) -> Vec<ArgumentPointer> {
    raw.iter()
        .filter_map(|pointer| {
            ArgumentPointer::parse(pointer.get_ref())
                .map_err(|problem| report.at(Some(pointer.span()), problem))
                .ok()
        })
        .collect()
}

/// An `effect = "…"` value, reported when it names no effect.
fn effect_of(report: &mut Reporter<'_>, effect: &Spanned<String>, of: &str) -> Option<Effect> {
    let parsed = Effect::from_name(effect.get_ref());
    if parsed.is_none() {
        report.at(
            Some(effect.span()),
            format!(
                "unknown effect `{}` for {of}; use one of {}",
                effect.get_ref(),
                names(Effect::NAMED.iter().map(|e| e.as_str()))
            ),
        );
    }
    parsed
}

/// Per-tool rules; `default_effect` (the upstream's `effect`) classifies the tools that do not
/// name one, including those config does not list (see `Upstream::tool_rules`).
fn tool_rules(
    report: &mut Reporter<'_>,
    upstream: &RawUpstream,
    default_effect: Option<Effect>,
) -> BTreeMap<String, ToolRules> {
    let mut rules = BTreeMap::new();
    for (tool, raw) in &upstream.tools {
        let raw_rules = raw.get_ref();
        let effect = raw_rules
            .effect
            .as_ref()
            .and_then(|effect| effect_of(report, effect, &format!("tool `{tool}`")));
        let scopes = scope_list(report, &raw_rules.scopes);
        let redact = pointers(report, &raw_rules.redact);
        let recipients = pointers(report, &raw_rules.recipients);
        let tenant_argument = pointers(report, raw_rules.tenant_argument.as_slice())
            .into_iter()
            .next();
        rules.insert(
            tool.clone(),
            ToolRules {
                effect: effect.or(default_effect),
                scopes,
                redact,
                recipients,
                tenant_argument,
                escalates: raw_rules.escalates.unwrap_or(false),
                reversible: raw_rules.reversible,
                paths: pointers(report, &raw_rules.paths),
                upstream_scopes: scope_list(report, &raw_rules.upstream_scopes),
            },
        );
    }
    rules
}

/// `[identity.local]`, or a user named `local` with no groups, tenant or scopes.
fn local_identity(
    report: &mut Reporter<'_>,
    raw: Option<&Spanned<RawLocalIdentity>>,
) -> IdentityEnvelope {
    let strings = |values: &[Spanned<String>]| -> BTreeSet<String> {
        values.iter().map(|v| v.get_ref().clone()).collect()
    };
    let Some(raw) = raw.map(Spanned::get_ref) else {
        return IdentityEnvelope::new(EnvelopeParts {
            user: UserId {
                issuer: LOCAL_ISSUER.to_owned(),
                subject: DEFAULT_LOCAL_USER.to_owned(),
            },
            client: None,
            mode: ActingMode::Delegated,
            groups: BTreeSet::new(),
            tenant: None,
            scopes: BTreeSet::new(),
            usable_credentials: BTreeSet::new(),
            forbidden_credentials: BTreeSet::new(),
            lifetime: None,
        });
    };
    for value in std::iter::once(&raw.user)
        .chain(&raw.groups)
        .chain(&raw.tenant)
        .chain(&raw.credentials)
        .chain(&raw.forbidden_credentials)
    {
        if value.get_ref().trim().is_empty() {
            report.at(
                Some(value.span()),
                "an identity name is empty; give a user, group, tenant or credential name",
            );
        }
    }
    IdentityEnvelope::new(EnvelopeParts {
        user: UserId {
            issuer: LOCAL_ISSUER.to_owned(),
            subject: raw.user.get_ref().clone(),
        },
        client: None,
        mode: ActingMode::Delegated,
        groups: strings(&raw.groups),
        tenant: raw.tenant.as_ref().map(|t| t.get_ref().clone()),
        scopes: scope_list(report, &raw.scopes),
        usable_credentials: strings(&raw.credentials),
        forbidden_credentials: strings(&raw.forbidden_credentials),
        lifetime: None,
    })
}

/// `[policy]`: paths relative to the configuration's directory.
fn policy_settings(
    report: &mut Reporter<'_>,
    raw: Option<&Spanned<RawPolicy>>,
    base_dir: &Path,
) -> PolicySettings {
    let Some(raw) = raw.map(Spanned::get_ref) else {
        return PolicySettings::default();
    };
    let schema = raw.schema.as_ref().map(|s| base_dir.join(s.get_ref()));
    let policies = match &raw.policies {
        None => Vec::new(),
        Some(list) => {
            if list.get_ref().is_empty() {
                report.at(
                    Some(list.span()),
                    "`policies` is empty; list policy files or directories, or remove the key to use the shipped policy",
                );
            }
            paths(report, list.get_ref(), base_dir, "policy path")
        }
    };
    PolicySettings { schema, policies }
}

fn bounded(
    report: &mut Reporter<'_>,
    value: Option<&Spanned<i64>>,
    key: &str,
    min: i64,
    max: i64,
) -> Option<u64> {
    let value = value?;
    let n = *value.get_ref();
    if (min..=max).contains(&n) {
        u64::try_from(n).ok()
    } else {
        report.at(
            Some(value.span()),
            format!("`{key}` is {n}; it must be between {min} and {max}"),
        );
        None
    }
}

fn seconds(
    report: &mut Reporter<'_>,
    value: Option<&Spanned<i64>>,
    key: &str,
    default: Duration,
) -> Duration {
    bounded(report, value, key, 1, 86_400).map_or(default, Duration::from_secs)
}
