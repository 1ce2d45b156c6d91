//! The routes to the fixture's `echo`, over stdio or streamable HTTP: directly, through
//! Portcullis in passthrough mode with that fixture as its single upstream, and through a peer
//! proxy (supergateway, a Node stdio-to-HTTP gateway) with the same fixture behind it.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use rmcp::service::{RoleClient, RunningService, ServiceExt};
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::{StreamableHttpClientTransport, TokioChildProcess};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

use crate::{process, relay};

/// How long a server may take to start and announce its address.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The transport between the client and the server it talks to, and between the proxy and the
/// fixture behind it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Transport {
    /// stdio on both hops.
    Stdio,
    /// Streamable HTTP on both hops.
    Http,
    /// The client over streamable HTTP, the fixture behind the proxy over stdio: how a remote
    /// client reaches a local server (the direct route is the fixture serving HTTP itself).
    HttpStdio,
}

impl Transport {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Stdio => "stdio",
            Self::Http => "http",
            Self::HttpStdio => "http-stdio",
        }
    }
}

/// The two release binaries under test, by absolute path.
pub(crate) struct Binaries {
    pub fixture: PathBuf,
    pub portcullis: PathBuf,
}

/// A connected client and the processes that serve it.
pub(crate) struct Route {
    pub client: RunningService<RoleClient, ()>,
    /// Every server process on this route: the fixture, or the proxy and its upstream fixture.
    pub server_pids: Vec<u32>,
    /// The proxy's own process (Portcullis or the peer), on a route through one.
    pub proxy_pid: Option<u32>,
    /// The URL the client talks to, over HTTP.
    pub url: Option<String>,
    /// HTTP servers started here; `kill_on_drop` stops them with the route.
    _http_servers: Vec<tokio::process::Child>,
}

impl Route {
    /// Closes the client; stdio servers exit when their input closes, HTTP ones are killed.
    pub(crate) async fn close(self) {
        let Self {
            client,
            _http_servers: servers,
            ..
        } = self;
        client.cancel().await.ok();
        drop(servers);
    }
}

/// The fixture, reached without Portcullis.
pub(crate) async fn direct(
    transport: Transport,
    binaries: &Binaries,
    scratch: &Path,
    max_concurrency: usize,
) -> anyhow::Result<Route> {
    let fixture_scratch = scratch.join("direct");
    match transport {
        Transport::Stdio => {
            let mut command = tokio::process::Command::new(&binaries.fixture);
            command.arg("--scratch").arg(&fixture_scratch);
            let (client, pid) = connect_stdio(command, &binaries.fixture).await?;
            Ok(Route {
                client,
                server_pids: vec![pid],
                proxy_pid: None,
                url: None,
                _http_servers: Vec::new(),
            })
        }
        Transport::Http | Transport::HttpStdio => {
            let (fixture, url) = start_http_fixture(binaries, &fixture_scratch).await?;
            let pid = fixture.id().context("the fixture exited at start")?;
            let client = connect_http(&url, max_concurrency).await?;
            Ok(Route {
                client,
                server_pids: vec![pid],
                proxy_pid: None,
                url: Some(url),
                _http_servers: vec![fixture],
            })
        }
    }
}

/// Portcullis in passthrough mode, its single upstream a fixture of its own.
pub(crate) async fn through_portcullis(
    transport: Transport,
    binaries: &Binaries,
    scratch: &Path,
    max_concurrency: usize,
    settings: Settings<'_>,
) -> anyhow::Result<Route> {
    let fixture_scratch = scratch.join("upstream");
    let config = scratch.join(format!("portcullis-{}.toml", transport.name()));
    let mut http_servers = Vec::new();
    let mut server_pids = Vec::new();
    let upstream = if transport == Transport::Http {
        let (fixture, fixture_url) = start_http_fixture(binaries, &fixture_scratch).await?;
        server_pids.push(
            fixture
                .id()
                .context("the upstream fixture exited at start")?,
        );
        http_servers.push(fixture);
        format!("url = {}", toml_string(&fixture_url)?)
    } else {
        // Contained, the fixture can neither create its scratch directory nor use another.
        std::fs::create_dir_all(&fixture_scratch)
            .with_context(|| format!("cannot create `{}`", fixture_scratch.display()))?;
        let scratch_dir = toml_string(&fixture_scratch.display().to_string())?;
        format!(
            "command = [{}, \"--scratch\", {scratch_dir}]\nroots = [{scratch_dir}]",
            toml_string(&binaries.fixture.display().to_string())?,
        )
    };
    std::fs::write(&config, passthrough_config(&upstream, settings))
        .with_context(|| format!("cannot write `{}`", config.display()))?;
    let mut command = tokio::process::Command::new(&binaries.portcullis);
    command.arg("serve").arg("--config").arg(&config);
    if transport == Transport::Stdio {
        let (client, pid) = connect_stdio(command, &binaries.portcullis).await?;
        // The upstream is up once the tool list has come back through Portcullis.
        return Ok(proxied(client, pid, server_pids, None, http_servers));
    }
    command.arg("--listen").arg("127.0.0.1:0");
    let (portcullis, stderr) = spawn_piped(command, Pipe::Stderr, &binaries.portcullis)?;
    let pid = portcullis.id().context("portcullis exited at start")?;
    http_servers.push(portcullis);
    // Portcullis says where it serves on stderr once its upstreams have settled.
    let url = announced_url(stderr, "serving MCP on ").await?;
    let client = connect_http(&url, max_concurrency).await?;
    Ok(proxied(client, pid, server_pids, Some(url), http_servers))
}

/// A route through the proxy `pid`: its process and its children (the upstream it started,
/// once the client's first list came back) count among the route's servers.
fn proxied(
    client: RunningService<RoleClient, ()>,
    pid: u32,
    mut server_pids: Vec<u32>,
    url: Option<String>,
    http_servers: Vec<tokio::process::Child>,
) -> Route {
    server_pids.push(pid);
    server_pids.extend(process::children(pid));
    Route {
        client,
        server_pids,
        proxy_pid: Some(pid),
        url,
        _http_servers: http_servers,
    }
}

/// supergateway (from `node_dir`, the tests/node directory) serving streamable HTTP with
/// sessions, each session a fixture over stdio of its own.
pub(crate) async fn through_supergateway(
    node_dir: &Path,
    binaries: &Binaries,
    scratch: &Path,
    max_concurrency: usize,
) -> anyhow::Result<Route> {
    let node = node_dir.join("node_modules/node/bin/node");
    let gateway = node_dir.join("node_modules/supergateway/dist/index.js");
    if !gateway.is_file() {
        bail!("`{}` is missing: run scripts/setup.sh", gateway.display());
    }
    let fixture_scratch = scratch.join("peer");
    // supergateway runs `--stdio` through a shell: a path with a space would split.
    let fixture = format!(
        "{} --scratch {}",
        binaries.fixture.display(),
        fixture_scratch.display()
    );
    if binaries
        .fixture
        .to_string_lossy()
        .contains(char::is_whitespace)
        || fixture_scratch
            .to_string_lossy()
            .contains(char::is_whitespace)
    {
        bail!("supergateway cannot start a fixture whose path holds a space: {fixture}");
    }
    let port = free_port()?;
    let mut command = tokio::process::Command::new(&node);
    command
        .arg(&gateway)
        .args(["--stdio", &fixture])
        .args(["--outputTransport", "streamableHttp", "--stateful"])
        .args(["--port", &port.to_string(), "--logLevel", "none"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    let gateway_process = command
        .spawn()
        .with_context(|| format!("cannot start `{}`", node.display()))?;
    let pid = gateway_process
        .id()
        .context("supergateway exited at start")?;
    wait_for_port(port).await?;
    let url = format!("http://127.0.0.1:{port}/mcp");
    // Its fixture starts with the client's session.
    let client = connect_http(&url, max_concurrency).await?;
    Ok(proxied(
        client,
        pid,
        Vec::new(),
        Some(url),
        vec![gateway_process],
    ))
}

/// The floors measured on `transport` (`relay.rs`): a byte pipe cannot serve HTTP.
pub(crate) fn floors(transport: Transport) -> Vec<relay::Kind> {
    match transport {
        Transport::Stdio => vec![relay::Kind::Pipe, relay::Kind::Rmcp],
        Transport::HttpStdio => vec![relay::Kind::Rmcp],
        Transport::Http => Vec::new(),
    }
}

/// A floor (`relay.rs`) in front of a fixture of its own over stdio: this program started
/// again as `relay`.
pub(crate) async fn through_floor(
    kind: relay::Kind,
    transport: Transport,
    binaries: &Binaries,
    scratch: &Path,
    max_concurrency: usize,
) -> anyhow::Result<Route> {
    let fixture_scratch = scratch.join(format!("floor-{}-{}", kind.arg(), transport.name()));
    let this = std::env::current_exe().context("cannot tell where this program is")?;
    let mut command = tokio::process::Command::new(&this);
    command.args(["relay", "--kind", kind.arg()]);
    if transport != Transport::Stdio {
        command.arg("--listen");
    }
    command
        .arg("--")
        .arg(&binaries.fixture)
        .arg("--scratch")
        .arg(&fixture_scratch);
    if transport == Transport::Stdio {
        let (client, pid) = connect_stdio(command, &this).await?;
        return Ok(proxied(client, pid, Vec::new(), None, Vec::new()));
    }
    let (relay, stdout) = spawn_piped(command, Pipe::Stdout, &this)?;
    let pid = relay.id().context("the relay exited at start")?;
    let url = announced_url(stdout, "").await?;
    let client = connect_http(&url, max_concurrency).await?;
    Ok(proxied(client, pid, Vec::new(), Some(url), vec![relay]))
}

/// A loopback port no one listens on now (the system's choice, released at once).
fn free_port() -> anyhow::Result<u16> {
    let listener =
        std::net::TcpListener::bind("127.0.0.1:0").context("cannot find a free loopback port")?;
    Ok(listener.local_addr()?.port())
}

/// Waits until something accepts connections on the loopback `port`.
async fn wait_for_port(port: u16) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + START_TIMEOUT;
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        if tokio::time::Instant::now() >= deadline {
            bail!("nothing listened on port {port} within {START_TIMEOUT:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// What the benchmark sets in Portcullis's config besides its upstream.
#[derive(Clone, Copy, Default)]
pub(crate) struct Settings<'a> {
    /// `[server] durability`; unset, the config leaves it out (a build from before the
    /// setting takes the config too).
    pub durability: Option<&'a str>,
    /// `[http] max_sessions` and `max_sessions_per_client`, for many sessions from one address.
    pub sessions: Option<usize>,
}

fn passthrough_config(upstream: &str, settings: Settings<'_>) -> String {
    let durability = settings
        .durability
        .map(|mode| format!("durability = \"{mode}\"\n"))
        .unwrap_or_default();
    let http = settings
        .sessions
        .map(|n| format!("\n[http]\nmax_sessions = {n}\nmax_sessions_per_client = {n}\n"))
        .unwrap_or_default();
    format!(
        "[server]\nnamespacing = \"passthrough\"\n{durability}{http}\n[[upstream]]\nname = \"fixture\"\n{upstream}\n\
         # The shipped default policy decides every call: `echo` is a read, so it runs.\n\
         tools.echo = {{ effect = \"read\" }}\n"
    )
}

/// A TOML basic string: a JSON string literal is one.
pub(crate) fn toml_string(text: &str) -> anyhow::Result<String> {
    Ok(serde_json::to_string(text)?)
}

async fn connect_stdio(
    command: tokio::process::Command,
    program: &Path,
) -> anyhow::Result<(RunningService<RoleClient, ()>, u32)> {
    let (client, pid) = spawn_stdio(command, program).await?;
    check_echo(&client).await?;
    Ok((client, pid))
}

/// A client of the stdio server `command` starts, after its handshake, and the server's pid.
pub(crate) async fn spawn_stdio(
    command: tokio::process::Command,
    program: &Path,
) -> anyhow::Result<(RunningService<RoleClient, ()>, u32)> {
    // Not `TokioChildProcess::new`: it lets the server's log through to our terminal.
    let (transport, _) = TokioChildProcess::builder(command)
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("cannot start `{}`", program.display()))?;
    let pid = transport
        .id()
        .with_context(|| format!("`{}` exited at start", program.display()))?;
    let client = ().serve(transport).await.context("MCP handshake failed")?;
    Ok((client, pid))
}

pub(crate) async fn connect_http(
    url: &str,
    max_concurrency: usize,
) -> anyhow::Result<RunningService<RoleClient, ()>> {
    // rmcp's default of 16 POSTs in flight would cap 32 callers at 16 on both routes alike;
    // allow every caller its own request so the server side is what is measured.
    let config =
        StreamableHttpClientTransportConfig::with_uri(url).max_concurrent_requests(max_concurrency);
    let transport = StreamableHttpClientTransport::from_config(config);
    let client = ()
        .serve(transport)
        .await
        .with_context(|| format!("MCP handshake with `{url}` failed"))?;
    check_echo(&client).await?;
    Ok(client)
}

/// Lists the tools: Portcullis answers its first list once its upstream is up, so measuring
/// starts after that. Also confirms that `echo` is there under that very name.
async fn check_echo(client: &RunningService<RoleClient, ()>) -> anyhow::Result<()> {
    let tools = client.list_all_tools().await.context("tools/list failed")?;
    if !tools.iter().any(|tool| tool.name == "echo") {
        bail!("no `echo` tool in the list");
    }
    Ok(())
}

pub(crate) enum Pipe {
    Stdout,
    Stderr,
}

/// Starts a server whose one piped stream announces its address; the other streams go to null.
pub(crate) fn spawn_piped(
    mut command: tokio::process::Command,
    pipe: Pipe,
    program: &Path,
) -> anyhow::Result<(tokio::process::Child, Box<dyn AsyncRead + Send + Unpin>)> {
    let (stdout, stderr) = match pipe {
        Pipe::Stdout => (Stdio::piped(), Stdio::null()),
        Pipe::Stderr => (Stdio::null(), Stdio::piped()),
    };
    command
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .kill_on_drop(true);
    let mut child = command
        .spawn()
        .with_context(|| format!("cannot start `{}`", program.display()))?;
    let stream: Option<Box<dyn AsyncRead + Send + Unpin>> = match pipe {
        Pipe::Stdout => child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn AsyncRead + Send + Unpin>),
        Pipe::Stderr => child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn AsyncRead + Send + Unpin>),
    };
    let stream = stream.context("no pipe to the server")?;
    Ok((child, stream))
}

/// A fixture serving streamable HTTP on a free loopback port, and its URL (its first stdout line).
async fn start_http_fixture(
    binaries: &Binaries,
    scratch: &Path,
) -> anyhow::Result<(tokio::process::Child, String)> {
    let mut command = tokio::process::Command::new(&binaries.fixture);
    command
        .arg("--scratch")
        .arg(scratch)
        .arg("--listen")
        .arg("127.0.0.1:0");
    let (child, stdout) = spawn_piped(command, Pipe::Stdout, &binaries.fixture)?;
    let url = announced_url(stdout, "").await?;
    Ok((child, url))
}

/// Reads lines until one holds `marker` followed by an `http://` URL, then keeps draining the
/// stream in the background so the server never blocks on a full pipe.
pub(crate) async fn announced_url(
    stream: Box<dyn AsyncRead + Send + Unpin>,
    marker: &str,
) -> anyhow::Result<String> {
    let mut lines = BufReader::new(stream).lines();
    let find = async {
        while let Some(line) = lines.next_line().await? {
            if let Some((_, rest)) = line.split_once(marker)
                && let Some(start) = rest.find("http://")
            {
                let url = rest.get(start..).unwrap_or_default();
                return anyhow::Ok(url.split_whitespace().next().unwrap_or_default().to_owned());
            }
        }
        bail!("the server exited without saying where it listens")
    };
    let url = tokio::time::timeout(START_TIMEOUT, find)
        .await
        .context("the server did not say where it listens in time")??;
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok(url)
}
