//! Command-line arguments, parsed once into a validated [`Config`].

use std::{net::SocketAddr, num::NonZeroUsize, path::PathBuf, str::FromStr, time::Duration};

use clap::Parser;

/// Raw command-line flags, as clap parses them.
#[derive(Debug, Parser)]
#[command(
    name = "portcullis-fixture",
    version,
    about = "A small MCP server for Portcullis's tests"
)]
pub struct Args {
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

    /// Split `tools/list` into pages of N tools, linked by cursors (default: one page).
    #[arg(long, value_name = "N")]
    page_size: Option<NonZeroUsize>,
}

/// How the process behaves before it answers anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartMode {
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
pub enum Transport {
    Stdio,
    Http(SocketAddr),
}

/// Validated configuration for one run.
#[derive(Debug, Clone)]
pub struct Config {
    pub scratch: PathBuf,
    pub transport: Transport,
    pub name: String,
    pub start_mode: StartMode,
    pub tools_delay: Duration,
    pub extra_tools: usize,
    pub page_size: Option<NonZeroUsize>,
}

impl Args {
    /// Checks what clap cannot: the listen address must be loopback.
    pub fn into_config(self) -> Result<Config, String> {
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
            page_size: self.page_size,
        })
    }
}

#[cfg(test)]
mod tests;
