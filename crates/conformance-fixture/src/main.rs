//! The MCP server that the official conformance suite's server scenarios expect: over stdio (so
//! that Portcullis in passthrough mode fronts it) or over streamable HTTP on a loopback address
//! (so that the suite can run against it directly). The answers are written as the scenarios
//! describe them; the definitions live in `catalog.rs`.
#![forbid(unsafe_code)]

mod catalog;
mod handler;
mod http;
mod lists;
mod rounds;
mod skills;
mod talk_back;
mod tasks;

use std::net::SocketAddr;

use clap::Parser;
use rmcp::ServiceExt;

/// Command-line arguments.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Serve streamable HTTP at `http://ADDRESS/mcp` instead of stdio. Loopback addresses only:
    /// the fixture answers anything and must never be reachable from another machine.
    #[arg(long, value_name = "ADDRESS")]
    listen: Option<SocketAddr>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let fixture = handler::Conformance::new()?;
    match args.listen {
        Some(address) => http::serve(fixture, address).await,
        None => {
            let running = fixture.serve(rmcp::transport::stdio()).await?;
            running.waiting().await?;
            Ok(())
        }
    }
}
