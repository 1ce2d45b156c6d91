//! `portcullis-fixture`: a small MCP server that Portcullis's tests run as an upstream.
//!
//! It has a tool of each effect kind (read, write, destructive, send) working on a scratch
//! directory, tools and start modes that misbehave on purpose (slow, crash, hang, garbage,
//! huge answers), elicitation in both protocol eras, resources, a prompt, completions, and a
//! paginated, changeable tool list, and a hostile tool (`escape`) that tries to leave its
//! sandbox. It serves stdio, or streamable HTTP with `--listen`, optionally as an OAuth-protected
//! resource that validates bearer tokens and records what it received (`--auth-issuer`).
//! Logs go to stderr only: in stdio mode stdout carries nothing but MCP messages.
#![forbid(unsafe_code)]

mod ask;
mod bearer;
mod cli;
mod escape;
mod http;
mod prompts;
mod resources;
mod scratch;
mod server;
mod start;
mod tools;

use std::{process::ExitCode, time::Duration};

use anyhow::Context as _;
use clap::Parser as _;
use rmcp::ServiceExt as _;

use crate::{
    cli::{Args, Config, Transport},
    scratch::Scratch,
    server::FixtureServer,
};

/// How long tasks may take to finish once the session has ended.
const RUNTIME_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(1);

fn main() -> ExitCode {
    init_tracing();
    let config = match Args::parse().into_config() {
        Ok(config) => config,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::from(2);
        }
    };
    start::apply(config.start_mode, config.transport);
    match run(&config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("portcullis_fixture=info,rmcp=warn")
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
}

fn run(config: &Config) -> anyhow::Result<()> {
    let scratch = Scratch::open(&config.scratch).with_context(|| {
        format!(
            "cannot use `{}` as the scratch directory",
            config.scratch.display()
        )
    })?;
    tracing::info!(scratch = %scratch.root().display(), "starting");
    let server = FixtureServer::new(config, scratch);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let result = runtime.block_on(async move {
        match config.transport {
            Transport::Stdio => serve_stdio(server).await,
            Transport::Http(address) => http::serve(server, address, config.auth.as_ref()).await,
        }
    });
    // A read of stdin that never returns must not keep the process alive after the session.
    runtime.shutdown_timeout(RUNTIME_SHUTDOWN_TIMEOUT);
    result
}

async fn serve_stdio(server: FixtureServer) -> anyhow::Result<()> {
    let running = server
        .serve(rmcp::transport::stdio())
        .await
        .context("MCP session did not start")?;
    let reason = running.waiting().await.context("MCP session failed")?;
    tracing::info!(?reason, "stdio session ended");
    Ok(())
}
