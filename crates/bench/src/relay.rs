//! Two floors for any stdio mediator on this machine, measured beside Portcullis in the same
//! run (`--floors`): what a proxy costs before it decides anything.
//!
//! - `pipe`: one more process between the client and the fixture, copying bytes both ways and
//!   reading none of them. No mediator can add less than this hop.
//! - `rmcp`: a bare MCP proxy on the same rmcp as Portcullis, over stdio or (`--listen`)
//!   streamable HTTP: each message decoded and encoded again on both hops, each request through
//!   rmcp's service loops, and nothing else (no identity, policy, evidence or hygiene).
//!
//! The benchmark starts itself as `portcullis-bench relay --kind KIND -- COMMAND...`; what is
//! left between the `rmcp` floor and Portcullis is Portcullis's own work.

use std::process::Stdio;
use std::sync::Arc;

use anyhow::Context as _;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, ListToolsResult, PaginatedRequestParams,
    ServerCapabilities, ServerConfig,
};
use rmcp::service::{Peer, RequestContext, RoleClient, RoleServer};
use rmcp::transport::TokioChildProcess;
use rmcp::transport::streamable_http_server::{
    StreamableHttpServerConfig, StreamableHttpService, session::local::LocalSessionManager,
};
use rmcp::{ErrorData as McpError, ServerHandler, ServiceExt as _};

/// Which floor to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Kind {
    /// Bytes copied both ways between our stdio and the command's.
    Pipe,
    /// A bare rmcp proxy: stdio to the command over stdio, or HTTP with `--listen`.
    Rmcp,
}

impl Kind {
    /// Its name in the tables.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Pipe => "floor: pipe",
            Self::Rmcp => "floor: rmcp",
        }
    }

    /// Its value for `--kind`.
    pub(crate) fn arg(self) -> &'static str {
        match self {
            Self::Pipe => "pipe",
            Self::Rmcp => "rmcp",
        }
    }
}

/// Runs the floor `kind` in front of `command` until the client goes away.
pub(crate) async fn run(kind: Kind, listen: bool, command: &[String]) -> anyhow::Result<()> {
    let (program, args) = command
        .split_first()
        .context("relay: no command to relay to")?;
    match (kind, listen) {
        (Kind::Pipe, false) => pipe(program, args).await,
        (Kind::Pipe, true) => anyhow::bail!("relay: a pipe cannot serve HTTP"),
        (Kind::Rmcp, listen) => {
            let mut child = tokio::process::Command::new(program);
            child.args(args);
            let (transport, _) = TokioChildProcess::builder(child)
                .stderr(Stdio::null())
                .spawn()
                .with_context(|| format!("relay: cannot start `{program}`"))?;
            let upstream = ().serve(transport).await.context("relay: upstream handshake")?;
            let relay = Relay(upstream.peer().clone());
            if listen {
                serve_http(relay).await
            } else {
                let server = relay
                    .serve(rmcp::transport::stdio())
                    .await
                    .context("relay: client handshake")?;
                server.waiting().await.context("relay: serving")?;
                Ok(())
            }
        }
    }
}

/// Copies our stdin to the command's and its stdout to ours, on blocking threads
/// (`std::io::copy` moves the bytes between the pipes with `splice`).
async fn pipe(program: &str, args: &[String]) -> anyhow::Result<()> {
    let program = program.to_owned();
    let args = args.to_vec();
    tokio::task::spawn_blocking(move || {
        let mut child = std::process::Command::new(&program)
            .args(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("relay: cannot start `{program}`"))?;
        let mut to_child = child.stdin.take().context("relay: no stdin to the child")?;
        let mut from_child = child
            .stdout
            .take()
            .context("relay: no stdout of the child")?;
        let down = std::thread::spawn(move || {
            std::io::copy(&mut std::io::stdin().lock(), &mut to_child).map(drop)
        });
        std::io::copy(&mut from_child, &mut std::io::stdout().lock())?;
        let _ = down.join();
        child.wait()?;
        anyhow::Ok(())
    })
    .await
    .context("relay: the pipe thread")?
}

/// Serves streamable HTTP with sessions on a free loopback port, announced on stdout.
async fn serve_http(relay: Relay) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .context("relay: cannot listen on loopback")?;
    let address = listener.local_addr()?;
    let service = StreamableHttpService::new(
        move || Ok(relay.clone()),
        Arc::new(LocalSessionManager::default()),
        StreamableHttpServerConfig::default().with_legacy_session_mode(true),
    );
    let app = axum::Router::new().route_service("/mcp", service);
    println!("http://{address}/mcp");
    axum::serve(listener, app)
        .await
        .context("relay: serving HTTP")
}

/// Passes `tools/list` and `tools/call` to the upstream as they are.
#[derive(Clone)]
struct Relay(Peer<RoleClient>);

impl ServerHandler for Relay {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }

    async fn list_tools(
        &self,
        request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        self.0
            .list_tools(request)
            .await
            .map_err(|error| McpError::internal_error(error.to_string(), None))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        self.0
            .call_tool_once(request)
            .await
            .map_err(|error| McpError::internal_error(error.to_string(), None))
    }
}
