//! The `portcullis` command: argument parsing, environment, tracing set-up and exit codes over
//! the library crates. It decides nothing itself.
#![forbid(unsafe_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand, ValueEnum};
use portcullis_config::{
    Config, ServiceCredential, StateBackend, UpstreamCredential, UpstreamTransport,
};
use portcullis_core::clock::{Clock as _, SystemClock};
use portcullis_core::{ActingMode, EnvelopeParts, IdentityEnvelope, LOCAL_ISSUER, UserId};
use portcullis_gateway::pins::{PinBook, Recording};
use portcullis_gateway::{
    Catalogued, ContainmentReport, Credentials, Gateway, GatewayParts, PageSignIn, Reach, Recorder,
    UpstreamStatus, call_facts, containment_reports, discover_issuer, load_policy, reach,
    remove_instance_state, serve_http, serve_metrics, serve_page, serve_stdio,
};
use portcullis_policy::{CallDecision, CallInput, Hidden, PolicyEngine, decide_call};
use tokio_util::sync::CancellationToken;

mod approvals;
mod doctor;
mod environment;
mod explain;
mod import;
mod install;
mod pins;
mod secret;
mod telemetry;

/// jemalloc, with its background threads on (a build-time option, `crates/cli/Cargo.toml`):
/// they give freed memory back to the system once it has gone unused for about 10 s (jemalloc's
/// `dirty_decay_ms`), so the memory of closed sessions does not stay with the process.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
#[command(
    name = "portcullis",
    version,
    about = "An MCP mediator: one MCP server in front of many"
)]
struct Cli {
    /// Log format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Serve MCP to one client over stdio, or to many over streamable HTTP with `--listen`.
    Serve {
        /// The configuration file.
        #[arg(long)]
        config: PathBuf,
        /// Serve streamable HTTP on this loopback address (e.g. 127.0.0.1:8787) instead of stdio.
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Serve streamable HTTP on the address from the configuration's `[http]` table.
        #[arg(long, conflicts_with = "listen")]
        http: bool,
    },
    /// Validate a configuration file with its policies and schema, and say exactly what is
    /// wrong and where.
    Check {
        /// The configuration file.
        #[arg(long)]
        config: PathBuf,
        /// Also start each upstream (contained, as `serve` does), list its tools and stop it:
        /// an upstream that does not start fails the check, with why.
        #[arg(long)]
        start: bool,
    },
    /// List the tools an identity would see, per upstream (starts the upstreams to ask them).
    Tools {
        #[arg(long)]
        config: PathBuf,
        #[command(flatten)]
        identity: AsIdentity,
    },
    /// Read and verify an evidence log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Authorise an upstream for the local identity from a terminal: prints a sign-in link,
    /// waits for the browser to come back, and keeps the grant (the same flow a client's URL
    /// elicitation starts). Needs the callback address free: stop `serve` first, or
    /// authorise from the client.
    Login {
        #[arg(long)]
        config: PathBuf,
        /// The upstream, by its configured name.
        upstream: String,
        /// A scope to ask for beyond the upstream's configured ones (repeatable).
        #[arg(long = "scope", value_name = "S")]
        scopes: Vec<String>,
    },
    /// Revoke (where the authorization server supports RFC 7009) and delete the local
    /// identity's grant for an upstream.
    Logout {
        #[arg(long)]
        config: PathBuf,
        upstream: String,
    },
    /// Install the packages of the config's `npx`/`uvx` upstreams at pinned versions into
    /// Portcullis's package directory (outside the sandbox, as you, with network), and record
    /// each in the lock file beside the config. `serve` does this for what is missing.
    Prepare {
        #[arg(long)]
        config: PathBuf,
    },
    /// Turn MCP clients' configurations into a Portcullis configuration, one upstream per
    /// server; a dry run unless `--write`. Secrets in `env` and headers are never copied:
    /// they become variables to set (listed at the end), in the environment or with
    /// `portcullis secret set`.
    #[command(after_help = import::places_help())]
    Import {
        /// A client (`claude-desktop`, `claude-code`, `cursor`, `vscode`, `windsurf`,
        /// `codex`) or a file of one of their shapes (repeatable); default: every client
        /// whose configuration is found.
        #[arg(long, value_name = "CLIENT|FILE")]
        from: Vec<String>,
        /// The workspace whose `.mcp.json`, `.cursor/mcp.json` and `.vscode/mcp.json` are read
        /// and which `${workspaceFolder}` names (default: the current directory).
        #[arg(long, value_name = "DIR")]
        workspace: Option<PathBuf>,
        /// Write the configuration (default `~/.config/portcullis/portcullis.toml`) instead of
        /// printing it.
        #[arg(long, value_name = "PATH", num_args = 0..=1)]
        write: Option<Option<PathBuf>>,
        /// Replace the file `--write` names if it exists.
        #[arg(long, requires = "write")]
        force: bool,
    },
    /// Put the one Portcullis entry into an MCP client's configuration (every other key kept,
    /// the old file backed up beside it; nothing written when nothing changes). Restart the
    /// client afterwards.
    Install {
        /// `claude-desktop`, `claude-code`, `cursor`, `vscode`, `windsurf` or `codex`.
        #[arg(long)]
        client: String,
        /// The Portcullis configuration the client is to use (default
        /// `~/.config/portcullis/portcullis.toml`, where `import --write` puts it).
        #[arg(long)]
        config: Option<PathBuf>,
        /// The client's file, instead of its usual place.
        #[arg(long)]
        file: Option<PathBuf>,
        /// Also take out of the client the servers the configuration imported: they are
        /// reached through Portcullis now (the backup keeps them).
        #[arg(long)]
        replace: bool,
    },
    /// What this machine gives Portcullis, a line each with OK, WARN or FAIL and the fix: the
    /// kernel's containment, the programs server lines run, the clients' configurations, and
    /// the configuration (checked, its state private, every upstream started).
    Doctor {
        /// The configuration to check (default the one `import --write` writes, if it exists).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Take the Portcullis entry out of an MCP client's configuration (the old file backed up).
    Uninstall {
        #[arg(long)]
        client: String,
        #[arg(long)]
        file: Option<PathBuf>,
    },
    /// Manage the secrets upstreams read (stored encrypted).
    #[command(subcommand)]
    Secret(SecretCommand),
    /// Compare what upstreams list with their pins (`NAME.pins.json` beside the config), and
    /// accept what changed.
    #[command(subcommand)]
    Pins(pins::PinsCommand),
    /// List the approvals waiting for a person (on the approval page or in a terminal).
    Approvals {
        #[arg(long)]
        config: PathBuf,
    },
    /// Approve one waiting call in this terminal, after reading its whole change request
    /// (needs an interactive terminal). The client's identical retry then runs it once.
    Approve {
        #[arg(long)]
        config: PathBuf,
        /// The approval's id, as the link and `portcullis approvals` give it.
        id: String,
    },
    /// The people who approve on the approval page, each with a passkey.
    #[command(subcommand)]
    Approver(ApproverCommand),
    /// Deny one waiting call in this terminal (needs an interactive terminal): it never runs.
    Deny {
        #[arg(long)]
        config: PathBuf,
        id: String,
    },
    /// Show the decision for one tool call and the policies that produced it.
    Explain {
        #[arg(long)]
        config: PathBuf,
        #[command(flatten)]
        identity: AsIdentity,
        /// The tool as the client names it, e.g. `files.write_file`.
        tool: String,
        /// The call's arguments as a JSON object.
        arguments: Option<String>,
        /// Decide it as for a session that has received content from an untrusted upstream.
        #[arg(long)]
        tainted: bool,
        /// Do not start the tool's upstream to check that it lists the tool: decide from
        /// config alone.
        #[arg(long)]
        offline: bool,
    },
}

/// The approvers of this machine: passkeys kept beside the evidence log (`approvers.json`).
#[derive(Subcommand)]
enum ApproverCommand {
    /// Enrol a passkey: prints a one-time link (loopback, for 10 minutes) to open in a
    /// browser on this machine; needs an interactive terminal.
    Enroll {
        #[arg(long)]
        config: PathBuf,
        /// The approver's name, shown in the evidence of what they approve.
        #[arg(long, default_value = "local")]
        name: String,
    },
    /// List who is enrolled.
    List {
        #[arg(long)]
        config: PathBuf,
    },
}

/// Secrets the upstreams read, kept encrypted in the config's credential store.
#[derive(Subcommand)]
enum SecretCommand {
    /// Store the value of variable NAME (read from stdin, without echo on a terminal; never
    /// from the command line). An upstream that inherits NAME, or sends it as a header, gets
    /// it when Portcullis's environment has no NAME. The store is `[credentials] store`,
    /// encrypted with the key in `[credentials] key_env` (default `PORTCULLIS_CREDENTIAL_KEY`).
    Set {
        #[arg(long)]
        config: PathBuf,
        /// The variable's name, e.g. `GITHUB_PERSONAL_ACCESS_TOKEN`.
        name: String,
        /// Refused: a value on the command line is visible to others (`ps`, shell history).
        #[arg(hide = true, trailing_var_arg = true, allow_hyphen_values = true)]
        value: Vec<String>,
    },
}

/// Reading and checking an evidence log.
#[derive(Subcommand)]
enum AuditCommand {
    /// Check the hash chain and the head: say whether the log was edited, cut, reordered, or
    /// had records deleted, inserted or forged, and where. Every record's MAC is checked when
    /// the log's key file (`FILE.key`) is readable; checkpoint and head signatures with it or
    /// with `--public-key`. With `--database`, every replica's chain in the database.
    Verify {
        /// The evidence log (e.g. `state/evidence.jsonl`).
        #[arg(required_unless_present = "database")]
        file: Option<PathBuf>,
        /// The log's public key (64 hex digits, from `audit public-key`), or `@PATH` of a file
        /// holding it: check the signatures without the key file.
        #[arg(long, value_name = "KEY", conflicts_with = "database")]
        public_key: Option<String>,
        #[command(flatten)]
        database: AuditDatabase,
    },
    /// Print the public key that checks a log's signatures (needs the log's key file), to hand
    /// to whoever must verify the log without being able to write it.
    PublicKey {
        /// The evidence log.
        file: PathBuf,
    },
    /// Print the records that match, oldest first (with `--database`: every replica's, by
    /// time, each naming its replica).
    Show {
        #[arg(required_unless_present = "database")]
        file: Option<PathBuf>,
        #[command(flatten)]
        filter: AuditFilter,
        #[command(flatten)]
        database: AuditDatabase,
    },
    /// Print the last matching records.
    Tail {
        file: PathBuf,
        #[command(flatten)]
        filter: AuditFilter,
        /// How many.
        #[arg(short = 'n', long, default_value_t = 20)]
        lines: usize,
        /// Then keep printing the records as they are written, until interrupted.
        #[arg(short = 'f', long)]
        follow: bool,
    },
}

/// Where replicas' evidence is read from instead of a file.
#[derive(clap::Args)]
struct AuditDatabase {
    /// Read the evidence the replicas copied into the database whose connection string this
    /// environment variable holds (as `[state] url_env`; the string is never printed).
    #[arg(long, value_name = "ENV", conflicts_with = "file")]
    database: Option<String>,
    /// The certificate authority (PEM) that signed the database's certificate, trusted
    /// beside the system's roots (as `[state] ca_file`; the connection string must ask for
    /// TLS with `sslmode=require`).
    #[arg(long, value_name = "FILE", requires = "database")]
    database_ca: Option<PathBuf>,
}

impl AuditDatabase {
    /// The database named, connected to read (nothing in it is changed).
    fn connect(
        &self,
        runtime: &tokio::runtime::Runtime,
    ) -> anyhow::Result<portcullis_state::Store> {
        let Some(name) = &self.database else {
            bail!("name an evidence log, or `--database`");
        };
        let url = std::env::var(name).with_context(|| format!("`{name}` is not set"))?;
        let tls = database_tls(self.database_ca.as_deref())?;
        runtime
            .block_on(portcullis_state::Store::connect_to_read(&url, tls))
            .map_err(|error| anyhow::anyhow!("the database named by `{name}`: {error}"))
    }
}

#[derive(clap::Args)]
struct AuditFilter {
    /// Only this user (subject, or `subject@issuer`).
    #[arg(long)]
    user: Option<String>,
    /// Only this tool (`tool` or `upstream.tool`).
    #[arg(long)]
    tool: Option<String>,
    /// Only this decision: `allow`, `approval_required` or `deny`.
    #[arg(long)]
    decision: Option<String>,
    /// Only records since: a duration ago (`90s`, `30m`, `2h`, `1d`) or Unix seconds.
    #[arg(long)]
    since: Option<String>,
    /// One JSON object per line, as stored, instead of text.
    #[arg(long)]
    json: bool,
}

impl AuditFilter {
    fn filter(&self) -> anyhow::Result<portcullis_audit::Filter> {
        let since_ms = self.since.as_deref().map(since_ms).transpose()?;
        if let Some(decision) = &self.decision
            && !["allow", "approval_required", "deny"].contains(&decision.as_str())
        {
            bail!("unknown decision `{decision}`; use `allow`, `approval_required` or `deny`");
        }
        Ok(portcullis_audit::Filter {
            user: self.user.clone(),
            tool: self.tool.clone(),
            decision: self.decision.clone(),
            since_ms,
        })
    }
}

/// `--since`: `N` Unix seconds, or `N` followed by `s`, `m`, `h` or `d` ago.
fn since_ms(text: &str) -> anyhow::Result<u64> {
    let bad =
        || anyhow::anyhow!("`{text}` is neither a duration like `30m` or `2h` nor Unix seconds");
    let (number, unit) = match text.char_indices().last() {
        Some((at, unit)) if unit.is_ascii_alphabetic() => {
            (text.get(..at).ok_or_else(bad)?, Some(unit))
        }
        _ => (text, None),
    };
    let value: u64 = number.parse().map_err(|_| bad())?;
    let seconds = match unit {
        None => return value.checked_mul(1000).ok_or_else(bad),
        Some('s') => value,
        Some('m') => value.checked_mul(60).ok_or_else(bad)?,
        Some('h') => value.checked_mul(3600).ok_or_else(bad)?,
        Some('d') => value.checked_mul(86_400).ok_or_else(bad)?,
        Some(_) => return Err(bad()),
    };
    let now = SystemClock.unix_secs();
    Ok(now.saturating_sub(seconds).saturating_mul(1000))
}

/// A public key as given to `audit verify --public-key`: the hex itself, or `@PATH` of a file.
fn read_public_key(given: &str) -> anyhow::Result<portcullis_audit::PublicKey> {
    let text = match given.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|error| anyhow::anyhow!("cannot read the public key file {path}: {error}"))?,
        None => given.to_owned(),
    };
    portcullis_audit::PublicKey::parse(&text).map_err(anyhow::Error::msg)
}

type AuditEntries = Vec<Result<portcullis_audit::Entry, portcullis_audit::AuditError>>;

/// Prints records, as stored (`json`) or one readable line each; stops at the first error.
fn print(entries: AuditEntries, json: bool) -> anyhow::Result<()> {
    for entry in entries {
        let entry = entry?;
        if json {
            println!("{}", entry.raw);
        } else {
            println!("{}", portcullis_audit::render_line(&entry));
        }
    }
    Ok(())
}

fn audit(command: &AuditCommand) -> anyhow::Result<ExitCode> {
    match command {
        AuditCommand::Verify {
            database,
            file: None,
            ..
        } => {
            let runtime = runtime()?;
            verify_database(&runtime, &database.connect(&runtime)?)
        }
        AuditCommand::Verify {
            file: Some(file),
            public_key,
            ..
        } => {
            let public_key = public_key.as_deref().map(read_public_key).transpose()?;
            let report = portcullis_audit::verify(file, public_key)?;
            print!("{}: {report}", file.display());
            if !report.to_string().ends_with('\n') {
                println!();
            }
            Ok(if report.is_intact() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        AuditCommand::PublicKey { file } => {
            let key = portcullis_audit::LogKey::existing(file).ok_or_else(|| {
                anyhow::anyhow!(
                    "cannot read the key of {} ({}): the public key is derived from it",
                    file.display(),
                    portcullis_audit::key_path(file).display()
                )
            })?;
            println!("{}", key.public_key());
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Show {
            file: Some(file),
            filter,
            ..
        } => {
            print(
                portcullis_audit::read(file, filter.filter()?)?.collect(),
                filter.json,
            )?;
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Show {
            file: None,
            filter,
            database,
        } => {
            print(show_database(database, filter)?, filter.json)?;
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Tail {
            file,
            filter,
            lines,
            follow: false,
        } => {
            print(
                portcullis_audit::tail(file, filter.filter()?, *lines)?,
                filter.json,
            )?;
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Tail {
            file,
            filter,
            lines,
            follow: true,
        } => follow(file, filter, *lines),
    }
}

/// `audit show --database`: every replica's records in the database, in one history by time
/// (each replica's in its own order).
fn show_database(database: &AuditDatabase, filter: &AuditFilter) -> anyhow::Result<AuditEntries> {
    let runtime = runtime()?;
    let store = database.connect(&runtime)?;
    let filter = filter.filter()?;
    let mut entries = Vec::new();
    for replica in runtime.block_on(store.evidence_replicas())? {
        let lines = runtime.block_on(store.evidence_lines(&replica))?;
        entries.extend(portcullis_audit::read_stored(
            &format!("replica {replica} in the database"),
            lines,
            &filter,
        ));
    }
    // One history of the deployment: by time, each replica's in its own order.
    entries.sort_by_key(|entry| {
        entry
            .as_ref()
            .map(|entry| entry.record.time_ms)
            .unwrap_or_default()
    });
    Ok(entries)
}

/// `audit tail --follow`: the last `lines` records, then each new one as it is written.
fn follow(file: &std::path::Path, filter: &AuditFilter, lines: usize) -> anyhow::Result<ExitCode> {
    let mut records = portcullis_audit::read(file, filter.filter()?)?;
    let mut last = std::collections::VecDeque::new();
    for entry in records.by_ref() {
        if last.len() == lines {
            last.pop_front();
        }
        if lines > 0 {
            last.push_back(entry);
        }
    }
    print(last.into(), filter.json)?;
    loop {
        std::thread::sleep(Duration::from_millis(250));
        records.more();
        print(records.by_ref().collect(), filter.json)?;
        std::io::Write::flush(&mut std::io::stdout())?;
    }
}

/// `audit verify --database`: every replica's chain, each with its verdict; success only when
/// every one is intact.
fn verify_database(
    runtime: &tokio::runtime::Runtime,
    store: &portcullis_state::Store,
) -> anyhow::Result<ExitCode> {
    let chains = runtime.block_on(store.verify_evidence())?;
    if chains.is_empty() {
        println!("no replica has copied evidence into the database");
    }
    let mut intact = true;
    for chain in &chains {
        intact &= chain.report.is_intact();
        let written_by = chain
            .written_by
            .as_deref()
            .map_or_else(String::new, |by| format!(" (last copied by {by})"));
        println!("replica {}{written_by}: {}", chain.replica, chain.report);
        if chain.report.signer.is_some() {
            println!(
                "  (the public key is the one the replica registered in the database: compare it with `portcullis audit public-key` of its log)"
            );
        }
    }
    Ok(if intact {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The identity `tools` and `explain` decide for.
#[derive(clap::Args)]
struct AsIdentity {
    /// The user (the token's `sub`, or the local user's name); default: `[identity.local]`,
    /// whose groups, tenant and scopes the other flags then replace when given.
    #[arg(long = "as", value_name = "USER")]
    user: Option<String>,
    /// The user's issuer; default: `[http.auth]`'s issuer, else the local issuer.
    #[arg(long)]
    issuer: Option<String>,
    /// A group the user is in (repeatable).
    #[arg(long = "group", value_name = "G")]
    groups: Vec<String>,
    #[arg(long)]
    tenant: Option<String>,
    /// A scope the user was granted (repeatable).
    #[arg(long = "scope", value_name = "S")]
    scopes: Vec<String>,
}

impl AsIdentity {
    fn envelope(&self, config: &Config) -> IdentityEnvelope {
        let Some(user) = &self.user else {
            let local = &config.local_identity;
            let or_local = |given: &[String], local: &BTreeSet<String>| {
                if given.is_empty() {
                    local.clone()
                } else {
                    given.iter().cloned().collect()
                }
            };
            return IdentityEnvelope::new(EnvelopeParts {
                user: local.user().clone(),
                client: None,
                mode: local.mode(),
                groups: or_local(&self.groups, local.groups()),
                tenant: self
                    .tenant
                    .clone()
                    .or_else(|| local.tenant().map(str::to_owned)),
                scopes: or_local(&self.scopes, local.scopes()),
                usable_credentials: BTreeSet::new(),
                forbidden_credentials: BTreeSet::new(),
                lifetime: None,
            });
        };
        let issuer = self.issuer.clone().unwrap_or_else(|| {
            config
                .http
                .auth
                .as_ref()
                .map_or_else(|| LOCAL_ISSUER.to_owned(), |auth| auth.issuer.clone())
        });
        IdentityEnvelope::new(EnvelopeParts {
            user: UserId {
                issuer,
                subject: user.clone(),
            },
            client: None,
            mode: ActingMode::Delegated,
            groups: self.groups.iter().cloned().collect(),
            tenant: self.tenant.clone(),
            scopes: self.scopes.iter().cloned().collect(),
            usable_credentials: BTreeSet::new(),
            forbidden_credentials: BTreeSet::new(),
            lifetime: None,
        })
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Every reqwest client in this process (the OTLP exporter's among them) needs a TLS crypto
    // provider: reqwest's provider-free rustls is on for the https upstreams, whose own clients
    // are handed one explicitly.
    let _ = rustls::crypto::ring::default_provider().install_default();
    // Spans are exported (OTLP) only by `serve`, and only when the environment names a collector.
    let serving = matches!(cli.command, Command::Serve { .. });
    let telemetry = telemetry::init(cli.log_format, serving);
    let outcome = match cli.command {
        Command::Audit(command) => {
            return audit(&command).unwrap_or_else(|error| {
                eprintln!("portcullis: {error:#}");
                ExitCode::FAILURE
            });
        }
        Command::Check { config, start } => check(&config, start),
        Command::Tools { config, identity } => tools(&config, &identity),
        Command::Explain {
            config,
            identity,
            tool,
            arguments,
            tainted,
            offline,
        } => explain::explain(
            &config,
            &identity,
            (&tool, !offline),
            arguments.as_deref(),
            if tainted {
                Session::Tainted
            } else {
                Session::Fresh
            },
        ),
        Command::Serve {
            config,
            listen,
            http,
        } => serve(&config, listen, http),
        Command::Login {
            config,
            upstream,
            scopes,
        } => login(&config, &upstream, scopes),
        Command::Logout { config, upstream } => logout(&config, &upstream),
        Command::Prepare { config } => prepare(&config),
        Command::Import {
            from,
            workspace,
            write,
            force,
        } => import::run(&import::Request {
            from,
            workspace,
            write,
            force,
        }),
        Command::Install {
            client,
            config,
            file,
            replace,
        } => installed_config(config).and_then(|config| {
            install::install(&install::Request {
                client,
                file,
                config: Some(config),
                replace,
            })
        }),
        Command::Doctor { config } => doctor::run(
            config,
            std::env::var_os("HOME")
                .map(PathBuf::from)
                .filter(|home| home.is_absolute())
                .as_deref(),
        ),
        Command::Uninstall { client, file } => install::uninstall(&install::Request {
            client,
            file,
            config: None,
            replace: false,
        }),
        Command::Approvals { config } => load(&config).and_then(|config| approvals::list(&config)),
        Command::Pins(command) => pins::run(command),
        Command::Approve { config, id } => {
            load(&config).and_then(|config| approvals::decide(&config, &id, true))
        }
        Command::Approver(ApproverCommand::Enroll { config, name }) => {
            load(&config).and_then(|config| approvals::enroll(&config, &name))
        }
        Command::Approver(ApproverCommand::List { config }) => {
            load(&config).and_then(|config| approvals::approvers(&config))
        }
        Command::Deny { config, id } => {
            load(&config).and_then(|config| approvals::decide(&config, &id, false))
        }
        Command::Secret(SecretCommand::Set {
            config,
            name,
            value,
        }) => load(&config).and_then(|config| secret::set(&config, &name, &value)),
    };
    telemetry.shutdown();
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("portcullis: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// What to do about a launcher package that is not prepared yet.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Missing {
    /// Install it now, saying so on stderr (`serve`, `prepare`).
    Install,
    /// Fail, saying to run `portcullis prepare` (`check`, `tools`, `explain`).
    Fail,
}

/// The config with each launcher upstream (`npx`, `uvx`, `docker run`) rewritten to what it
/// runs: a prepared package's entry point, or a container with Portcullis's options.
fn launched(path: &Path, missing: Missing) -> anyhow::Result<Config> {
    let mut config = load(path)?;
    let (lock, packages, _) = prepared(&config, missing)?;
    let search_path = std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".to_owned());
    portcullis_launch::resolve(&mut config, &lock, &packages, &search_path)?;
    Ok(config)
}

/// The config's lock file and package directory, with what is missing installed first when
/// `missing` says so (progress on stderr).
fn prepared(
    config: &Config,
    missing: Missing,
) -> anyhow::Result<(
    portcullis_launch::Lock,
    PathBuf,
    Vec<portcullis_launch::Prepared>,
)> {
    let env = |name: &str| std::env::var(name).ok();
    let packages = match portcullis_launch::packages_dir(config, &env) {
        Ok(dir) => dir,
        // Only a config that runs packages needs the directory.
        Err(_) if !portcullis_launch::runs_packages(config) => PathBuf::new(),
        Err(error) => return Err(error.into()),
    };
    let mut lock = portcullis_launch::Lock::beside(&config.file)?;
    let done = match missing {
        Missing::Install => {
            portcullis_launch::prepare(config, &mut lock, &packages, &mut |line| {
                eprintln!("portcullis: {line}");
            })?
        }
        Missing::Fail => Vec::new(),
    };
    Ok((lock, packages, done))
}

/// `portcullis prepare`: installs what the lock or the package directory lacks, and says what
/// each launcher upstream will run.
fn prepare(path: &Path) -> anyhow::Result<()> {
    let config = load(path)?;
    let (lock, packages, prepared) = prepared(&config, Missing::Install)?;
    for done in &prepared {
        let locked = &done.locked;
        println!(
            "{}: {} {} {} ({}){}",
            done.upstream,
            locked.registry.name(),
            locked.name,
            locked.version,
            locked.integrity,
            if done.installed {
                ", installed"
            } else {
                ", already prepared"
            }
        );
    }
    println!(
        "{}: {} package{} prepared in {}",
        lock.path().display(),
        prepared.len(),
        if prepared.len() == 1 { "" } else { "s" },
        packages.display()
    );
    Ok(())
}

fn load(path: &Path) -> anyhow::Result<Config> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the configuration `{}`", path.display()))?;
    let config =
        portcullis_config::parse(path, &text).map_err(|errors| anyhow::anyhow!("{errors}"))?;
    // Relative paths in the config are relative to its directory, wherever Portcullis was
    // started from: anchor them once, here, so a child's working directory cannot change them.
    let absolute = std::path::absolute(path)
        .with_context(|| format!("cannot resolve `{}`", path.display()))?;
    Ok(if absolute == path {
        config
    } else {
        portcullis_config::parse(&absolute, &text).map_err(|errors| anyhow::anyhow!("{errors}"))?
    })
}

fn policy(config: &Config) -> anyhow::Result<PolicyEngine> {
    load_policy(&config.policy).map_err(|problems| anyhow::anyhow!("{problems}"))
}

fn check(path: &Path, start_upstreams: bool) -> anyhow::Result<()> {
    let config = launched(path, Missing::Fail)?;
    let engine = policy(&config)?;
    let policies = engine.len();
    // A pins file `serve` would refuse fails the check too.
    PinBook::open(&config.file, Recording::Never)?;
    let values = secret::upstream_environment(&config)?;
    let findings = environment::check_environment(&config, &values);
    for warning in &findings.warnings {
        eprintln!("portcullis: warning: {}: {warning}", path.display());
    }
    let mut problems = findings.errors;
    if problems.is_empty() {
        problems = report_containment(&config, &values);
    }
    if !problems.is_empty() {
        bail!(
            "{}",
            problems
                .iter()
                .map(|p| format!("{}: {p}", path.display()))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    if start_upstreams {
        start_each(&config, engine)?;
    }
    println!(
        "{}: ok ({} upstream{}, {} polic{})",
        path.display(),
        config.upstreams.len(),
        if config.upstreams.len() == 1 { "" } else { "s" },
        policies,
        if policies == 1 { "y" } else { "ies" }
    );
    Ok(())
}

/// `check --start`: starts every upstream as `serve` would (no evidence log, no calls), says
/// how each one started, and stops them; fails naming each upstream that did not start.
fn start_each(config: &Config, engine: PolicyEngine) -> anyhow::Result<()> {
    let status = runtime()?.block_on(async move {
        let (gateway, shutdown) = start_to_look(config, engine).await?;
        // A per-user upstream is started as the local identity's own instance.
        let status = gateway.status_as(&config.local_identity).await;
        shutdown.cancel();
        gateway.stop(std::time::Duration::from_secs(5)).await;
        anyhow::Ok(status)
    })?;
    let mut failed = Vec::new();
    for (upstream, status) in status {
        match status {
            UpstreamStatus::Ready { tools, protocol } => {
                println!("{upstream}: started ({tools} tools, protocol {protocol}), stopped");
            }
            UpstreamStatus::Starting => failed.push(format!(
                "{upstream}: still starting when its start timeout ran out"
            )),
            UpstreamStatus::Down { reason } => {
                failed.push(format!("{upstream}: did not start: {reason}"));
            }
            UpstreamStatus::PerUser { .. } => {
                println!("{upstream}: started per identity, on each one's first request");
            }
        }
    }
    if !failed.is_empty() {
        bail!("{}", failed.join("\n"));
    }
    Ok(())
}

/// Prints each upstream's effective sandbox, as it would be if it started now; returns the
/// upstreams that cannot be contained (they would not start).
fn report_containment(config: &Config, values: &BTreeMap<String, String>) -> Vec<String> {
    let mut problems = Vec::new();
    for (name, report) in containment_reports(config, values) {
        match report {
            ContainmentReport::Remote => {
                println!("upstream `{name}`: streamable HTTP, nothing to contain");
                let credential = config
                    .upstreams
                    .iter()
                    .find(|upstream| upstream.name.as_str() == name.as_str())
                    .and_then(|upstream| upstream.credential.as_ref());
                if let Some(credential) = credential {
                    println!("  credential: {}", describe_credential(credential));
                }
            }
            ContainmentReport::Uncontained => println!(
                "upstream `{name}`: NOT CONTAINED (contain = false): it runs with all of Portcullis's own access to files, network and processes"
            ),
            ContainmentReport::Container(command) => {
                println!(
                    "upstream `{name}`: contained by its container engine, not by Portcullis's sandbox; it runs:"
                );
                println!("  {command}");
            }
            ContainmentReport::Contained {
                description,
                digest,
            } => {
                println!("upstream `{name}`: contained");
                if let Some(runs) = launched_command(config, &name) {
                    println!("  runs: {runs}");
                }
                for line in description.lines() {
                    println!("  {line}");
                }
                println!("  profile digest: {digest}");
            }
            ContainmentReport::Unenforceable(error) => problems.push(format!(
                "upstream `{name}` cannot be contained, so it will not start: {error}"
            )),
        }
    }
    problems
}

/// What a launcher upstream (`npx`, `uvx`) runs once prepared: its entry point, by its
/// interpreter, with its arguments.
fn launched_command(config: &Config, name: &portcullis_core::UpstreamName) -> Option<String> {
    let upstream = config.upstreams.iter().find(|u| &u.name == name)?;
    let UpstreamTransport::Stdio {
        launcher: Some(_),
        program,
        args,
        ..
    } = &upstream.transport
    else {
        return None;
    };
    Some(
        std::iter::once(program.display().to_string())
            .chain(args.iter().cloned())
            .collect::<Vec<_>>()
            .join(" "),
    )
}

/// What `check` says of an upstream's credential: its kind, where it comes from, the
/// variables its secrets are read from (never the secrets).
fn describe_credential(credential: &UpstreamCredential) -> String {
    let secret = |variable: &Option<String>| match variable {
        Some(variable) => format!("secret from `{variable}`"),
        None => "public client".to_owned(),
    };
    let scopes = |scopes: &BTreeSet<String>| {
        if scopes.is_empty() {
            "no scopes".to_owned()
        } else {
            scopes.iter().cloned().collect::<Vec<_>>().join(" ")
        }
    };
    match credential {
        UpstreamCredential::Delegated(delegation) => format!(
            "each user's own grant{} at `{}` (client `{}`, {}; asks {}{})",
            if delegation.exchange {
                ", exchanged from the client's token"
            } else {
                ""
            },
            delegation.client.issuer,
            delegation.client.client_id,
            secret(&delegation.client.client_secret_env),
            scopes(&delegation.scopes),
            if delegation.hide_tools {
                "; hides tools the grant cannot call"
            } else {
                ""
            },
        ),
        UpstreamCredential::Service(ServiceCredential::ClientCredentials { client, scopes: s }) => {
            format!(
                "service authority: client credentials at `{}` (client `{}`, {}; {})",
                client.issuer,
                client.client_id,
                secret(&client.client_secret_env),
                scopes(s)
            )
        }
        UpstreamCredential::Service(ServiceCredential::ApiKey { env, header }) => format!(
            "service authority: an API key from `{env}`, sent as `{}`",
            header.as_deref().unwrap_or("authorization: Bearer")
        ),
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Starts the gateway (inside the runtime) with the environment config lets upstreams inherit,
/// and the shared state `shared` holds when config keeps it in a database.
fn start(
    config: &Config,
    engine: PolicyEngine,
    recorder: Recorder,
    pins: PinBook,
    shared: Option<portcullis_state::Store>,
) -> anyhow::Result<(std::sync::Arc<Gateway>, CancellationToken)> {
    let shutdown = CancellationToken::new();
    let state_key = match &config.approval.state_key_env {
        None => None,
        Some(name) => {
            let value = std::env::var(name).with_context(|| {
                format!("config names `{name}` as the requestState key, but it is not set")
            })?;
            if value.len() < 32 {
                bail!("the requestState key in `{name}` must be at least 32 bytes");
            }
            portcullis_gateway::secrets::Secrets::global().register("the requestState key", &value);
            Some(value.into_bytes())
        }
    };
    let credentials = credentials(config, shared.as_ref())?;
    let parts = GatewayParts {
        inherited: secret::upstream_environment(config)?,
        policy: engine,
        recorder,
        state_key,
        credentials,
        pins: Arc::new(pins),
        shutdown: shutdown.clone(),
    };
    let gateway = match shared {
        Some(store) => Gateway::start_shared(config, parts, store)?,
        None => Gateway::start(config, parts)?,
    };
    Ok((gateway, shutdown))
}

/// The database `[state] backend = "postgres"` names, connected and its schema brought up to
/// date; `None` when config keeps state local. The connection string is a secret: registered
/// for redaction before anything could print it, and no message shows it (they name the
/// variable).
async fn shared_state(config: &Config) -> anyhow::Result<Option<portcullis_state::Store>> {
    let StateBackend::Postgres { url_env, ca_file } = &config.state else {
        return Ok(None);
    };
    let url = std::env::var(url_env).with_context(|| {
        format!("config keeps shared state in postgres, named by `{url_env}`, but `{url_env}` is not set")
    })?;
    portcullis_gateway::secrets::Secrets::global().register("the database connection string", &url);
    // The pod's name in Kubernetes (its host name), and the process, since several replicas
    // may share a host.
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let replica = format!("{}:{}", host.trim(), std::process::id());
    let store = portcullis_state::Store::connect(&url, &replica, database_tls(ca_file.as_deref())?)
        .await
        .map_err(|error| anyhow::anyhow!("the database named by `{url_env}`: {error}"))?;
    tracing::info!(
        replica,
        schema = portcullis_state::SCHEMA_VERSION,
        "shared state in postgres"
    );
    Ok(Some(store))
}

/// How connections to the shared-state database are verified when its connection string asks
/// for TLS: the system's roots, and the authority in `ca_file`.
fn database_tls(ca_file: Option<&Path>) -> anyhow::Result<portcullis_state::Tls> {
    let client = portcullis_gateway::tls_client(ca_file)
        .map_err(|error| anyhow::anyhow!("the database's TLS: {error}"))?;
    Ok(portcullis_state::Tls::new(client, ca_file.is_some()))
}

/// The configuration `install` points the client at (checked), and its upstreams' names.
fn installed_config(path: Option<PathBuf>) -> anyhow::Result<(PathBuf, Vec<String>)> {
    let path = match path {
        Some(path) => path,
        None => import::default_path(
            &std::env::var_os("HOME")
                .map(PathBuf::from)
                .context("`HOME` is not set; name the configuration with `--config`")?,
        ),
    };
    let config = load(&path)?;
    let upstreams = config
        .upstreams
        .iter()
        .map(|upstream| upstream.name.to_string())
        .collect();
    Ok((path, upstreams))
}

/// The upstreams' credentials: the secrets config names, read from the environment now, and
/// the grants kept in `shared` state when config keeps state in a database.
fn credentials(
    config: &Config,
    shared: Option<&portcullis_state::Store>,
) -> anyhow::Result<Arc<Credentials>> {
    let read = |name: &str| std::env::var(name).ok();
    Credentials::start(config, &read, config.approval.timeout, shared)
        .map(Arc::new)
        .map_err(|message| anyhow::anyhow!("{message}"))
}

fn login(path: &Path, upstream: &str, scopes: Vec<String>) -> anyhow::Result<()> {
    let config = load(path)?;
    let envelope = config.local_identity.clone();
    runtime()?.block_on(async move {
        // The grant goes where `serve` looks for it: the database, when replicas share one.
        let shared = shared_state(&config).await?;
        let credentials = credentials(&config, shared.as_ref())?;
        let shutdown = CancellationToken::new();
        let address = credentials.settings().callback;
        let serving = credentials
            .listen(shutdown.clone())
            .await
            .with_context(|| {
                format!("cannot listen on the callback address {address} (is `portcullis serve` running? then authorise from your client)")
            })?;
        let scopes = credentials
            .login_scopes(upstream, scopes)
            .map_err(|message| anyhow::anyhow!("{message}"))?;
        let mut started = credentials
            .begin(&envelope, upstream, scopes)
            .await
            .map_err(|message| anyhow::anyhow!("{message}"))?;
        eprintln!("portcullis: open this link in your browser to authorise `{upstream}`:");
        println!("{}", started.url);
        let limit = config.approval.timeout;
        let outcome = started.wait(limit).await;
        shutdown.cancel();
        let _ = serving.await;
        match outcome {
            Some(Ok(done)) => {
                eprintln!("portcullis: {done}");
                Ok(())
            }
            Some(Err(why)) => bail!("not authorised: {why}"),
            None => bail!("the sign-in did not finish within {}s", limit.as_secs()),
        }
    })
}

fn logout(path: &Path, upstream: &str) -> anyhow::Result<()> {
    let config = load(path)?;
    let runtime = runtime()?;
    // Deleted where every replica looks: in the database, when they share one, so that each
    // refuses the grant at its next call.
    let credentials = runtime.block_on(async {
        let shared = shared_state(&config).await?;
        credentials(&config, shared.as_ref())
    })?;
    let envelope = config.local_identity.clone();
    let spec = config
        .upstreams
        .iter()
        .find(|spec| spec.name.as_str() == upstream)
        .ok_or_else(|| anyhow::anyhow!("no upstream is named `{upstream}`"))?;
    // A per-user upstream's state of this identity (its home, its logins) goes with it.
    let state_removed = remove_instance_state(spec, &envelope)
        .with_context(|| format!("cannot delete your state at `{upstream}`"))?;
    if state_removed {
        eprintln!("portcullis: deleted your state directory at `{upstream}`");
    }
    if credentials.takes_delegated(upstream) {
        runtime.block_on(async move {
            let done = credentials
                .logout(&envelope, upstream)
                .await
                .map_err(|message| anyhow::anyhow!("{message}"))?;
            eprintln!("portcullis: {done}");
            anyhow::Ok(())
        })?;
    } else if !state_removed {
        bail!("upstream `{upstream}` keeps no grant and no state of yours");
    }
    Ok(())
}

/// Opens (or continues) the evidence log config names, and the public key of its chain when
/// config keeps state in postgres (the replica's evidence is then copied there, and every line
/// names the replica: the key's `replica_name`). A log that cannot be opened, or whose tail
/// does not verify, stops start-up: nothing may run unrecorded.
fn open_evidence(
    config: &Config,
) -> anyhow::Result<(
    portcullis_audit::EvidenceLog,
    Option<portcullis_audit::PublicKey>,
)> {
    let file = &config.evidence.file;
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the evidence directory `{}`", dir.display()))?;
    }
    let chain = match config.state {
        StateBackend::Local => None,
        StateBackend::Postgres { .. } => Some(
            portcullis_audit::LogKey::for_log(file)
                .with_context(|| format!("cannot open the evidence log `{}`", file.display()))?
                .public_key(),
        ),
    };
    let options = portcullis_audit::Options {
        replica: chain
            .as_ref()
            .map(portcullis_audit::PublicKey::replica_name),
        durability: match config.evidence.durability {
            portcullis_config::Durability::Process => portcullis_audit::Durability::Process,
            portcullis_config::Durability::Disk => portcullis_audit::Durability::Disk,
        },
        ..portcullis_audit::Options::default()
    };
    let log = portcullis_audit::EvidenceLog::open(file, options)
        .with_context(|| format!("cannot open the evidence log `{}`", file.display()))?;
    Ok((log, chain))
}

/// Starts the upstreams only to look at them (`tools`, `explain`): no evidence log is opened,
/// since nothing is called and a running `serve` may own it. Returns once every upstream has
/// started or failed, bounded by the longest start timeout.
async fn start_to_look(
    config: &Config,
    engine: PolicyEngine,
) -> anyhow::Result<(Arc<Gateway>, CancellationToken)> {
    // Looking never pins: only `serve` records first sight, and `pins accept` what a person
    // reviewed.
    let pins = PinBook::open(&config.file, Recording::Never)?;
    start_to_look_with(config, engine, shared_pins(config, pins).await?).await
}

/// `pins`, or under `[state] backend = "postgres"` the pins in the database that `serve`
/// compares with (the file only seeds them), so that what is looked at is what is served.
async fn shared_pins(config: &Config, pins: PinBook) -> anyhow::Result<PinBook> {
    Ok(match shared_state(config).await? {
        Some(store) => pins.share(store).await?,
        None => pins,
    })
}

/// [`start_to_look`] comparing listings with `pins` (`pins diff` and `pins accept` under
/// shared state: the database's).
async fn start_to_look_with(
    config: &Config,
    engine: PolicyEngine,
    pins: PinBook,
) -> anyhow::Result<(Arc<Gateway>, CancellationToken)> {
    // Looking asks nobody for approval, so it needs no shared state (nor the database).
    let config = &Config {
        state: StateBackend::Local,
        ..config.clone()
    };
    let recorder = Recorder::new(None, Arc::new(SystemClock));
    let (gateway, shutdown) = start(config, engine, recorder, pins, None)?;
    let longest = config
        .upstreams
        .iter()
        .map(|u| u.start_timeout)
        .max()
        .unwrap_or_default();
    gateway.settle(longest).await;
    Ok((gateway, shutdown))
}

fn tools(path: &Path, identity: &AsIdentity) -> anyhow::Result<()> {
    let config = launched(path, Missing::Fail)?;
    let engine = policy(&config)?;
    let envelope = identity.envelope(&config);
    let deciding = policy(&config)?;
    runtime()?.block_on(async move {
        let (gateway, shutdown) = start_to_look(&config, engine).await?;
        println!(
            "tools visible to {} (config's classification; what a call with no arguments comes to in a fresh session):",
            envelope.user()
        );
        for (upstream, tools) in gateway.visible_tools(&envelope).await {
            match tools {
                Ok(tools) if tools.is_empty() => println!("  {upstream}: none"),
                Ok(tools) => {
                    println!("  {upstream}:");
                    for (tool, note) in tools {
                        let foreseen =
                            foreseen((&config, &deciding), (identity, &envelope), &tool);
                        match note {
                            None => println!("    {tool}  {foreseen}"),
                            Some(note) => println!("    {tool}  {foreseen} ({note})"),
                        }
                    }
                }
                Err(reason) => println!("  {upstream}: unavailable ({reason})"),
            }
        }
        shutdown.cancel();
        anyhow::Ok(())
    })
}

/// Starts the upstreams as `tools` does (no evidence log, no calls), then asks the live
/// catalog about a call of `tool`: whether it lists it, and whether the check stage passes
/// the arguments (see `Gateway::check_listed_call`).
fn live_check(
    config: &Config,
    envelope: &IdentityEnvelope,
    tool: &str,
    arguments: Option<&serde_json::Map<String, serde_json::Value>>,
) -> anyhow::Result<Result<Option<String>, Catalogued>> {
    let engine = policy(config)?;
    runtime()?.block_on(async move {
        let (gateway, shutdown) = start_to_look(config, engine).await?;
        let listed = gateway.check_listed_call(envelope, tool, arguments);
        shutdown.cancel();
        gateway.stop(std::time::Duration::from_secs(5)).await;
        anyhow::Ok(listed)
    })
}

/// What the session `explain` decides for has read.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Session {
    /// Nothing yet: no recipient approved before, no untrusted content.
    Fresh,
    /// Content from an untrusted upstream.
    Tainted,
}

/// How a call of `local` at `upstream` with `arguments` would be decided for `envelope` (as
/// `identity` names it) by a session that approved no recipient before, `tainted` or not, from
/// config alone (config's classification; the upstream's annotations are not asked), and
/// whether it reaches the network. `serve` decides by the same function.
fn decided_from_config(
    (config, engine): (&Config, &PolicyEngine),
    (identity, envelope): (&AsIdentity, &IdentityEnvelope),
    (upstream, local): (&portcullis_config::Upstream, &str),
    arguments: Option<&serde_json::Map<String, serde_json::Value>>,
    tainted: bool,
) -> (CallDecision, Reach) {
    let rules = upstream.tool_rules(local);
    let (mut facts, _, _) = call_facts(&rules, envelope, arguments, |_| false);
    facts.tainted = tainted;
    let reach = reach(
        upstream.surface,
        portcullis_core::Hints::default(),
        arguments,
        |_| false,
    );
    let input = CallInput {
        envelope,
        upstream: upstream.name.as_str(),
        surface: upstream.surface,
        tool: local,
        effect: rules.effect(),
        required_scopes: &rules.scopes,
        arguments,
        facts,
        reaches_network: matches!(reach, Reach::Network { .. }),
        // Only a bearer-token identity can be asked for more scopes.
        can_step_up: config.http.auth.is_some() && identity.user.is_some(),
        now: SystemClock.unix_secs(),
    };
    (decide_call(engine, &input), reach)
}

/// What a call of `exposed` with no arguments would come to for `envelope`, in a few words,
/// with config's classification of the tool (for `tools`).
fn foreseen(
    (config, engine): (&Config, &PolicyEngine),
    (identity, envelope): (&AsIdentity, &IdentityEnvelope),
    exposed: &str,
) -> String {
    let names: Vec<_> = config.upstreams.iter().map(|u| u.name.clone()).collect();
    let Some((upstream, local)) = config
        .namespacing
        .resolve(&names, exposed)
        .and_then(|n| Some((config.upstreams.get(n.upstream)?, n.local)))
    else {
        return "not a configured upstream's".to_owned();
    };
    let effect = upstream.tool_rules(local).effect();
    let (outcome, _) = decided_from_config(
        (config, engine),
        (identity, envelope),
        (upstream, local),
        None,
        false,
    );
    let comes_to = match outcome {
        CallDecision::Allowed(_) => "runs".to_owned(),
        CallDecision::NeedsApproval { .. } => "asks for approval".to_owned(),
        CallDecision::Denied { reason, .. } => format!("refused: {reason}"),
        CallDecision::Hidden(Hidden::MissingScopes(missing)) => {
            format!("refused: missing scopes {}", missing.join(" "))
        }
        CallDecision::Hidden(Hidden::ByPolicy(_)) => "hidden by policy".to_owned(),
    };
    format!("{effect}; {comes_to}")
}

/// Starts the approval page. One that cannot listen leaves Portcullis serving without it: a
/// client that cannot show an approval form then has no call approved (and the log says why).
async fn serve_approval_page(
    gateway: &Arc<Gateway>,
    address: SocketAddr,
    sign_in: Option<PageSignIn>,
) {
    match serve_page(gateway.clone(), address, sign_in).await {
        Ok((origin, serving)) => {
            eprintln!("portcullis: approval page on {origin}");
            tokio::spawn(async move {
                if let Err(error) = serving.await {
                    tracing::error!(%error, "the approval page stopped");
                }
            });
        }
        Err(error) => {
            tracing::error!(%error, "the approval page cannot listen; clients that cannot show an approval form get no call approved")
        }
    }
}

fn serve(path: &Path, listen: Option<SocketAddr>, http: bool) -> anyhow::Result<()> {
    let mut config = launched(path, Missing::Install)?;
    // INVARIANT: a policy or schema that does not load stops start-up (fail closed).
    let engine = policy(&config)?;
    let findings = environment::check_environment(&config, &secret::upstream_environment(&config)?);
    for problem in findings.errors.iter().chain(&findings.warnings) {
        tracing::warn!("{problem}");
    }
    if let Some(problem) = environment::exposed_state(&config).first() {
        bail!("{problem}");
    }
    if let Some(listen) = listen {
        if !listen.ip().is_loopback() && config.http.auth.is_none() {
            bail!(
                "`{listen}` is not a loopback address; without `[http.auth]` every client would act as the local identity, so Portcullis listens on loopback only"
            );
        }
        config.http.listen = listen;
    }
    // INVARIANT: pins that cannot be read stop start-up: serving against pins nobody can read
    // would serve every changed definition.
    let pins = PinBook::open(&config.file, Recording::FirstSight)?;
    let (evidence, chain) = open_evidence(&config)?;
    tracing::info!(file = %config.evidence.file.display(), "evidence log open");
    runtime()?.block_on(async move {
        // INVARIANT: shared state that cannot be reached stops start-up: a replica on its own
        // state would run a call another replica already ran.
        let shared = shared_state(&config).await?;
        // Under shared state the database keeps the pins, the file seeding it.
        let pins = match &shared {
            Some(store) => pins.share(store.clone()).await?,
            None => pins,
        };
        let mut recorder = Recorder::new(Some(evidence), Arc::new(SystemClock));
        if let (Some(store), Some(chain)) = (&shared, chain) {
            // INVARIANT: evidence that cannot be copied stops start-up; what the log holds
            // beyond the database's copy (a replica killed before copying it) is copied first.
            let copier = portcullis_state::EvidenceCopier::start(
                store.clone(),
                config.evidence.file.clone(),
                chain,
            )
            .await
            .map_err(|error| anyhow::anyhow!("{error}"))?;
            tracing::info!(replica = chain.replica_name(), "evidence copied to the shared database");
            recorder = recorder.copying_to(copier);
        }
        let (gateway, shutdown) = start(&config, engine, recorder, pins, shared)?;
        gateway
            .record_lost_outcomes()
            .await
            .map_err(|error| anyhow::anyhow!("cannot record the outcomes lost before this start: {error}"))?;
        tokio::spawn(stop_on_signal(shutdown.clone()));
        if gateway.credentials().has_delegated() {
            let address = config.credentials.callback;
            let serving = gateway
                .credentials()
                .listen(shutdown.child_token())
                .await
                .with_context(|| format!("cannot listen on the callback address {address}"))?;
            eprintln!("portcullis: sign-in pages on http://{address}/oauth/");
            tokio::spawn(serving);
        }
        let http = listen.is_some() || http;
        // Discovery first: the page's sign-in and every request's token need the issuer.
        let issuer = if http {
            discover_issuer(&config.http).await?
        } else {
            None
        };
        if let Some(page) = config.approval.page {
            // Over stdio the caller is the local identity, which no issuer signs in: the
            // page then approves with passkeys.
            let sign_in = match (&issuer, &config.http.approval_sign_in) {
                (Some(server), Some(sign_in)) => Some(
                    PageSignIn::new(server.clone(), sign_in, &|name| std::env::var(name).ok())
                        .map_err(|error| anyhow::anyhow!("`[http.auth.approval]`: {error}"))?,
                ),
                _ => None,
            };
            serve_approval_page(&gateway, page, sign_in).await;
        }
        if http {
            let (address, serving) = serve_http(gateway.clone(), &config.http, issuer).await?;
            if let Some(metrics) = config.http.metrics {
                let (bound, scraping) = serve_metrics(gateway.clone(), metrics).await?;
                eprintln!("portcullis: metrics on http://{bound}/metrics");
                tokio::spawn(async move {
                    if let Err(error) = scraping.await {
                        tracing::error!(%error, "the metrics endpoint stopped");
                    }
                });
            }
            gateway.settle(Duration::from_secs(10)).await;
            report_upstreams(&gateway);
            let url = format!("http://{address}/mcp");
            eprintln!("portcullis: serving MCP on {url}");
            eprintln!("portcullis: add this to your MCP client's configuration:");
            eprintln!(
                "{{\n  \"mcpServers\": {{\n    \"portcullis\": {{ \"type\": \"http\", \"url\": \"{url}\" }}\n  }}\n}}"
            );
            serving.await?;
        } else {
            serve_stdio(&gateway).await?;
        }
        gateway.stop(Duration::from_secs(5)).await;
        anyhow::Ok(())
    })
}

fn report_upstreams(gateway: &Gateway) {
    for (name, status) in gateway.status() {
        match status {
            UpstreamStatus::Ready { tools, protocol } => {
                eprintln!(
                    "portcullis: upstream `{name}` ready ({tools} tools, protocol {protocol})"
                )
            }
            UpstreamStatus::Starting => eprintln!("portcullis: upstream `{name}` still starting"),
            UpstreamStatus::Down { reason } => {
                eprintln!("portcullis: upstream `{name}` down: {reason}")
            }
            UpstreamStatus::PerUser { .. } => eprintln!(
                "portcullis: upstream `{name}` starts for each identity on its first request"
            ),
        }
    }
}

async fn stop_on_signal(shutdown: CancellationToken) {
    let mut terminate =
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(_) => return,
        };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
    tracing::info!("stopping");
    shutdown.cancel();
}
