//! The `portcullis` command: argument parsing, environment, tracing set-up and exit codes over
//! the library crates. It decides nothing itself.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand, ValueEnum};
use portcullis_config::{Config, UpstreamTransport};
use portcullis_gateway::{Gateway, UpstreamStatus, serve_http};
use tokio_util::sync::CancellationToken;

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
    /// Validate a configuration file and say exactly what is wrong and where.
    Check {
        /// The configuration file.
        #[arg(long)]
        config: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.log_format);
    let outcome = match cli.command {
        Command::Check { config } => check(&config),
        Command::Serve {
            config,
            listen,
            http,
        } => serve(&config, listen, http),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("portcullis: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("PORTCULLIS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,rmcp=warn"));
    // Logs go to stderr: in stdio mode stdout carries the MCP protocol.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
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

/// Checks what only the machine can tell: that programs and working directories exist.
fn check_environment(config: &Config) -> Vec<String> {
    let mut problems = Vec::new();
    for upstream in &config.upstreams {
        if let UpstreamTransport::Stdio { program, cwd, .. } = &upstream.transport {
            if !cwd.is_dir() {
                problems.push(format!(
                    "upstream `{}`: working directory `{}` does not exist",
                    upstream.name,
                    cwd.display()
                ));
            }
            if !program_exists(program) {
                problems.push(format!(
                    "upstream `{}`: program `{}` was not found{}",
                    upstream.name,
                    program.display(),
                    if program.components().count() > 1 {
                        " (relative paths are relative to the configuration's directory)"
                    } else {
                        " on PATH"
                    }
                ));
            }
        }
    }
    problems
}

fn program_exists(program: &Path) -> bool {
    if program.components().count() > 1 {
        return program.is_file();
    }
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
        .unwrap_or(false)
}

fn check(path: &Path) -> anyhow::Result<()> {
    let config = load(path)?;
    let problems = check_environment(&config);
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
    println!(
        "{}: ok ({} upstream{})",
        path.display(),
        config.upstreams.len(),
        if config.upstreams.len() == 1 { "" } else { "s" }
    );
    Ok(())
}

/// The values of Portcullis's own environment that config lets some upstream inherit.
fn inherited_environment(config: &Config) -> BTreeMap<String, String> {
    config
        .upstreams
        .iter()
        .filter_map(|u| match &u.transport {
            UpstreamTransport::Stdio { inherit_env, .. } => Some(inherit_env),
            UpstreamTransport::Http { .. } => None,
        })
        .flatten()
        .filter_map(|name| Some((name.clone(), std::env::var(name).ok()?)))
        .collect()
}

fn serve(path: &Path, listen: Option<SocketAddr>, http: bool) -> anyhow::Result<()> {
    let mut config = load(path)?;
    for problem in check_environment(&config) {
        tracing::warn!("{problem}");
    }
    if let Some(listen) = listen {
        if !listen.ip().is_loopback() {
            bail!(
                "`{listen}` is not a loopback address; Portcullis listens on loopback only until client authentication is configured"
            );
        }
        config.http.listen = listen;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let shutdown = CancellationToken::new();
        let gateway = Gateway::start(&config, &inherited_environment(&config), shutdown.clone())?;
        tokio::spawn(stop_on_signal(shutdown.clone()));
        if listen.is_some() || http {
            let (address, serving) = serve_http(gateway.clone(), &config.http).await?;
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
            gateway.serve_stdio().await?;
            shutdown.cancel();
        }
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
