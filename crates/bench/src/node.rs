//! The Node client case: the official MCP TypeScript SDK client (`tests/node/bench.mjs`) calls
//! `echo` over streamable HTTP, directly, through Portcullis and through supergateway, in
//! rounds of changing order.
//!
//! Why it exists: Node's HTTP client waits for the peer's delayed ACK when an answer arrives in
//! several small writes on a socket without `TCP_NODELAY`, which cost every call through
//! Portcullis about 44 ms once. rmcp's client does not show that stall, so only a Node client
//! can keep it from coming back unseen.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};

use crate::measure::{Samples, Summary};

/// Where the Node client lives: `node` (22, from the npm package) and `bench.mjs`.
pub(crate) struct NodeClient {
    node: PathBuf,
    script: PathBuf,
}

impl NodeClient {
    /// The client in `dir` (`tests/node`, after `scripts/setup.sh`).
    pub(crate) fn in_dir(dir: &Path) -> anyhow::Result<Self> {
        let node = dir.join("node_modules/node/bin/node");
        let script = dir.join("bench.mjs");
        for path in [&node, &script] {
            if !path.is_file() {
                bail!(
                    "`{}` is missing: run scripts/setup.sh, or give --node-client the tests/node directory",
                    path.display()
                );
            }
        }
        Ok(Self { node, script })
    }

    /// `calls` calls from one fresh client to `url`, one after another.
    async fn run(&self, url: &str, calls: usize) -> anyhow::Result<Samples> {
        let output = tokio::process::Command::new(&self.node)
            .arg(&self.script)
            .args(["--http", url, "--calls", &calls.to_string()])
            .kill_on_drop(true)
            .output()
            .await
            .with_context(|| format!("cannot run `{}`", self.node.display()))?;
        if !output.status.success() {
            bail!(
                "the Node client failed: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        let parsed: serde_json::Value =
            serde_json::from_slice(&output.stdout).context("the Node client printed no JSON")?;
        let durations: Vec<Duration> = parsed
            .get("micros")
            .and_then(serde_json::Value::as_array)
            .context("the Node client printed no `micros`")?
            .iter()
            .filter_map(serde_json::Value::as_u64)
            .map(Duration::from_micros)
            .collect();
        // The calls ran one after another, so together they took their sum.
        let wall = durations.iter().sum();
        Ok(Samples::new(durations, wall))
    }
}

/// Each route's figures for the Node client, the direct route first.
pub(crate) struct NodeFigures {
    pub routes: Vec<(&'static str, Summary)>,
}

/// `calls` calls per route in `rounds` rounds, each round in another order and with a fresh
/// client per route.
pub(crate) async fn measure(
    client: &NodeClient,
    routes: &[(&'static str, String)],
    calls: usize,
    rounds: usize,
) -> anyhow::Result<NodeFigures> {
    let rounds = rounds.clamp(1, calls.max(1));
    let mut samples: Vec<Samples> = routes.iter().map(|_| Samples::default()).collect();
    for round in 0..rounds {
        let share = calls / rounds + usize::from(round < calls % rounds);
        if share == 0 {
            continue;
        }
        for turn in 0..routes.len() {
            let index = (round + turn) % routes.len();
            if let (Some((_, url)), Some(route_samples)) =
                (routes.get(index), samples.get_mut(index))
            {
                route_samples.extend(client.run(url, share).await?);
            }
        }
    }
    Ok(NodeFigures {
        routes: routes
            .iter()
            .zip(samples)
            .map(|((name, _), samples)| (*name, samples.summary()))
            .collect(),
    })
}
