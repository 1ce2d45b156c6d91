//! A fake upstream MCP server, in process, over streamable HTTP on loopback (or, for a stdio
//! upstream that relays to it, lines over TCP): the tools a test gives it, each call it
//! receives written down, each answered with a text naming the tool.
//! What a unit test of a gateway stage needs to tell "reached the upstream" from "did not".

use std::sync::{Arc, Mutex};

use rmcp::ErrorData as McpError;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, JsonObject,
    ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::{RequestContext, RoleServer};
use rmcp::transport::streamable_http_server::{
    StreamableHttpServerConfig, StreamableHttpService, session::local::LocalSessionManager,
};
use rmcp::{ServerHandler, ServiceExt as _};
use tokio_util::sync::CancellationToken;

/// One call the fake upstream received: the tool, by its own name, and the arguments.
#[derive(Debug, Clone, PartialEq)]
pub struct Received {
    pub tool: String,
    pub arguments: JsonObject,
}

/// What runs as each call arrives, before it is written down and answered.
type Watcher = Box<dyn Fn(&Received) + Send + Sync>;

/// The running fake upstream; dropping it stops it.
pub struct FakeUpstream {
    url: String,
    received: Arc<Mutex<Vec<Received>>>,
    watcher: Arc<Mutex<Option<Watcher>>>,
    shutdown: CancellationToken,
}

impl std::fmt::Debug for FakeUpstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeUpstream")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

#[derive(Clone)]
struct Handler {
    tools: Arc<Vec<Tool>>,
    received: Arc<Mutex<Vec<Received>>>,
    watcher: Arc<Mutex<Option<Watcher>>>,
}

impl FakeUpstream {
    /// Serves `tools` at `http://127.0.0.1:<free port>/mcp`.
    pub async fn start(tools: Vec<Tool>) -> std::io::Result<Self> {
        let (listener, handler, upstream) = Self::listening(tools, "http://", "/mcp").await?;
        let service = StreamableHttpService::new(
            move || Ok(handler.clone()),
            Arc::new(LocalSessionManager::default()),
            StreamableHttpServerConfig::default()
                .with_legacy_session_mode(true)
                .with_cancellation_token(upstream.shutdown.child_token()),
        );
        let app = axum::Router::new().route_service("/mcp", service);
        let stop = upstream.shutdown.clone();
        tokio::spawn(async move {
            // The test that started it is the only client; an error ends the test's calls too.
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await;
        });
        Ok(upstream)
    }

    /// Serves `tools` as a stdio server speaks (one JSON-RPC message a line) to each TCP
    /// connection at `tcp://127.0.0.1:<free port>`: what a test's stdio upstream reaches by
    /// relaying its standard input and output there ([`FakeUpstream::stdio_relay`]), so that
    /// what only stdio upstreams get (the roots check of path arguments) is tested in process.
    pub async fn start_stdio(tools: Vec<Tool>) -> std::io::Result<Self> {
        let (listener, handler, upstream) = Self::listening(tools, "tcp://", "").await?;
        let stop = upstream.shutdown.clone();
        tokio::spawn(async move {
            loop {
                let connection = tokio::select! {
                    () = stop.cancelled() => return,
                    accepted = listener.accept() => accepted,
                };
                let Ok((stream, _)) = connection else { return };
                let (handler, stop) = (handler.clone(), stop.clone());
                tokio::spawn(async move {
                    // A connection that fails its handshake is the gateway's start failing,
                    // which the test sees as an upstream that never becomes ready.
                    if let Ok(running) = handler.serve(stream).await {
                        tokio::select! {
                            () = stop.cancelled() => {}
                            _ = running.waiting() => {}
                        }
                    }
                });
            }
        });
        Ok(upstream)
    }

    /// A stdio upstream's command line that relays its standard input and output to this
    /// upstream's TCP address (bash's `/dev/tcp`), for one started by
    /// [`FakeUpstream::start_stdio`].
    pub fn stdio_relay(&self) -> Vec<String> {
        let address = self.url.trim_start_matches("tcp://").replace(':', "/");
        vec![
            "/bin/bash".to_owned(),
            "-c".to_owned(),
            format!("exec 3<>/dev/tcp/{address}; cat <&3 & exec cat >&3"),
        ]
    }

    /// A listener on a free loopback port, the handler that records each call, and the
    /// upstream as the test holds it, reached at `scheme` + address + `path`.
    async fn listening(
        tools: Vec<Tool>,
        scheme: &str,
        path: &str,
    ) -> std::io::Result<(tokio::net::TcpListener, Handler, Self)> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let received = Arc::new(Mutex::new(Vec::new()));
        let watcher = Arc::new(Mutex::new(None));
        let handler = Handler {
            tools: Arc::new(tools),
            received: received.clone(),
            watcher: watcher.clone(),
        };
        let upstream = FakeUpstream {
            url: format!("{scheme}{address}{path}"),
            received,
            watcher,
            shutdown: CancellationToken::new(),
        };
        Ok((listener, handler, upstream))
    }

    /// Where it listens, as an upstream's `url`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Every call received so far, in order.
    pub fn received(&self) -> Vec<Received> {
        self.received
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Runs `watch` on each call as it arrives, before the upstream answers: what a test
    /// needs to see the world as the upstream saw it at that moment (say, whether the
    /// gateway's evidence log already held the call's intent).
    pub fn watch(&self, watch: impl Fn(&Received) + Send + Sync + 'static) {
        *self
            .watcher
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Box::new(watch));
    }
}

impl Drop for FakeUpstream {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A tool named `name` that takes any object, with no annotations.
pub fn tool(name: &str) -> Tool {
    tool_with_schema(name, serde_json::json!({ "type": "object" }))
}

/// A tool named `name` whose input schema is `schema` (an object schema; anything else is
/// taken as an empty object, which the gateway refuses in a tool definition).
pub fn tool_with_schema(name: &str, schema: serde_json::Value) -> Tool {
    let schema = match schema {
        serde_json::Value::Object(schema) => schema,
        _ => JsonObject::new(),
    };
    Tool::new(
        name.to_owned(),
        format!("{name}, for tests"),
        Arc::new(schema),
    )
}

impl ServerHandler for Handler {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        Ok(ListToolsResult::with_all_items(self.tools.to_vec()))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let tool = request.name.to_string();
        if !self.tools.iter().any(|listed| listed.name == tool) {
            return Err(McpError::invalid_params(format!("no tool `{tool}`"), None));
        }
        let received = Received {
            tool: tool.clone(),
            arguments: request.arguments.unwrap_or_default(),
        };
        if let Some(watch) = self
            .watcher
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_ref()
        {
            watch(&received);
        }
        self.received
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(received);
        Ok(CallToolResult::success(vec![ContentBlock::text(format!("ran {tool}"))]).into())
    }
}
