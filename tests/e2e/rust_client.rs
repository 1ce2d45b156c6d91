//! rmcp's own client (the official Rust SDK) driving Portcullis over stdio: the quickest real
//! client for the fault and environment tests.

use std::path::Path;

use rmcp::model::{CallToolRequestParams, CallToolResult, Tool};
use rmcp::service::{Peer, RoleClient, RunningService, ServiceExt};
use rmcp::transport::TokioChildProcess;
use serde_json::Value;

use crate::support::bin;

pub(crate) type Client = RunningService<RoleClient, ()>;

/// Starts Portcullis over stdio with `config` and connects to it.
pub(crate) async fn connect(config: &Path, env: &[(&str, &str)]) -> Client {
    let mut command = tokio::process::Command::new(bin("portcullis"));
    command
        .args(["serve", "--config"])
        .arg(config)
        .envs(env.iter().copied())
        .stderr(std::process::Stdio::inherit());
    let transport =
        TokioChildProcess::new(command).unwrap_or_else(|e| panic!("cannot start portcullis: {e}"));
    ().serve(transport)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to portcullis: {e}"))
}

pub(crate) async fn tool_names(client: &Client) -> Vec<String> {
    let tools: Vec<Tool> = client
        .list_all_tools()
        .await
        .unwrap_or_else(|e| panic!("tools/list failed: {e}"));
    tools.into_iter().map(|t| t.name.to_string()).collect()
}

/// Waits until the tool list satisfies `done`, up to `limit`; returns the last list.
pub(crate) async fn wait_for_tools(
    client: &Client,
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

/// Calls `name` through any rmcp client (a `RunningService` derefs to its peer).
pub(crate) async fn call(
    client: &Peer<RoleClient>,
    name: &str,
    arguments: Value,
) -> CallToolResult {
    let arguments = match arguments {
        Value::Object(map) => map,
        _ => serde_json::Map::new(),
    };
    client
        .call_tool(CallToolRequestParams::new(name.to_owned()).with_arguments(arguments))
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
