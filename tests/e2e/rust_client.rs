//! rmcp's own client (the official Rust SDK) driving Portcullis over stdio: the quickest real
//! client for the fault and environment tests, and the pieces the tests' own rmcp client
//! handlers share.

use std::path::Path;
use std::time::Duration;

use rmcp::model::{
    CallToolRequestParams, CallToolResult, ClientCapabilities, ClientConfig, ElicitRequestParams,
    Implementation, Tool,
};
use rmcp::service::{Peer, RoleClient, RunningService, ServiceExt};
use rmcp::transport::TokioChildProcess;
use serde_json::Value;

use crate::support::bin;

pub(crate) type Client = RunningService<RoleClient, ()>;

/// `portcullis serve --config <config>`, for an rmcp client to start over stdio.
pub(crate) fn serve_command(config: &Path) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(bin("portcullis"));
    command.args(["serve", "--config"]).arg(config);
    command
}

/// Starts Portcullis over stdio with `config` and connects to it.
pub(crate) async fn connect(config: &Path, env: &[(&str, &str)]) -> Client {
    let mut command = serve_command(config);
    command
        .envs(env.iter().copied())
        .stderr(std::process::Stdio::inherit());
    let transport =
        TokioChildProcess::new(command).unwrap_or_else(|e| panic!("cannot start portcullis: {e}"));
    ().serve(transport)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to portcullis: {e}"))
}

/// What a client handler's `get_info` answers: its `capabilities` (JSON) and its name.
pub(crate) fn client_info(capabilities: Value, name: &str) -> ClientConfig {
    ClientConfig::new(
        serde_json::from_value::<ClientCapabilities>(capabilities).unwrap_or_default(),
        Implementation::new(name, "1"),
    )
}

/// The message of a question put to the person: a form or a link.
pub(crate) fn question(request: &ElicitRequestParams) -> String {
    match request {
        ElicitRequestParams::FormElicitationParams { message, .. }
        | ElicitRequestParams::UrlElicitationParams { message, .. } => message.clone(),
        _ => String::new(),
    }
}

/// Waits until Portcullis lists some tool (its upstreams have started); a list that fails
/// counts as none yet. Fails the test after `limit`.
pub(crate) async fn wait_until_listed(client: &Peer<RoleClient>, limit: Duration) {
    let deadline = tokio::time::Instant::now() + limit;
    while client
        .list_all_tools()
        .await
        .map(|t| t.is_empty())
        .unwrap_or(true)
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no tools within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub(crate) async fn tool_names(client: &Peer<RoleClient>) -> Vec<String> {
    let tools: Vec<Tool> = client
        .list_all_tools()
        .await
        .unwrap_or_else(|e| panic!("tools/list failed: {e}"));
    tools.into_iter().map(|t| t.name.to_string()).collect()
}

/// Waits until the tool list satisfies `done`, up to `limit`; returns the last list.
pub(crate) async fn wait_for_tools(
    client: &Peer<RoleClient>,
    limit: std::time::Duration,
    done: impl Fn(&[String]) -> bool,
) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let names = tool_names(client).await;
        if done(&names) || tokio::time::Instant::now() > deadline {
            return names;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// A `tools/call` of `name` with `arguments` (a JSON object; anything else: none).
pub(crate) fn request(name: &str, arguments: Value) -> CallToolRequestParams {
    let arguments = match arguments {
        Value::Object(map) => map,
        _ => serde_json::Map::new(),
    };
    CallToolRequestParams::new(name.to_owned()).with_arguments(arguments)
}

/// Calls `name` through any rmcp client (a `RunningService` derefs to its peer).
pub(crate) async fn call(
    client: &Peer<RoleClient>,
    name: &str,
    arguments: Value,
) -> CallToolResult {
    client
        .call_tool(request(name, arguments))
        .await
        .unwrap_or_else(|e| panic!("tools/call {name} failed at the protocol level: {e}"))
}

pub(crate) fn text(result: &CallToolResult) -> String {
    result
        .content
        .iter()
        .filter_map(|block| block.as_text().map(|t| t.text.clone()))
        .collect::<Vec<_>>()
        .join("\n")
}
