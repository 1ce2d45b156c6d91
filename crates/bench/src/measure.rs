//! Timed calls of `echo` through one client connection, and the percentiles of their durations.

use std::time::{Duration, Instant};

use anyhow::bail;
use rmcp::model::CallToolRequestParams;
use rmcp::service::{Peer, RoleClient};

#[cfg(test)]
mod tests;

/// Every call's duration, and the wall time the calls took together.
#[derive(Default)]
pub(crate) struct Samples {
    durations: Vec<Duration>,
    wall: Duration,
}

impl Samples {
    pub(crate) fn new(durations: Vec<Duration>, wall: Duration) -> Self {
        Self { durations, wall }
    }

    /// Adds another batch, as if its calls had run right after this one's.
    pub(crate) fn extend(&mut self, other: Samples) {
        self.durations.extend(other.durations);
        self.wall += other.wall;
    }

    /// Sorts the durations once and reads the figures off them.
    pub(crate) fn summary(mut self) -> Summary {
        self.durations.sort_unstable();
        let wall_secs = self.wall.as_secs_f64();
        Summary {
            calls: self.durations.len(),
            p50: percentile(&self.durations, 0.50),
            p99: percentile(&self.durations, 0.99),
            calls_per_sec: if wall_secs > 0.0 {
                self.durations.len() as f64 / wall_secs
            } else {
                0.0
            },
        }
    }
}

/// Latency and throughput of one path at one concurrency.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Summary {
    pub calls: usize,
    pub p50: Duration,
    pub p99: Duration,
    pub calls_per_sec: f64,
}

/// The nearest-rank percentile of sorted samples: the smallest sample with at least a share
/// `quantile` of all samples at or below it. Zero for no samples.
pub(crate) fn percentile(sorted: &[Duration], quantile: f64) -> Duration {
    let rank = (quantile * sorted.len() as f64).ceil() as usize;
    sorted
        .get(rank.saturating_sub(1))
        .copied()
        .unwrap_or_default()
}

/// One call of `echo`, timed from just before the request is handed to the client until its
/// result is back.
async fn timed_call(peer: &Peer<RoleClient>) -> anyhow::Result<Duration> {
    let mut arguments = serde_json::Map::new();
    arguments.insert("text".into(), serde_json::Value::String("ping".into()));
    let request = CallToolRequestParams::new("echo").with_arguments(arguments);
    let started = Instant::now();
    let result = peer.call_tool(request).await?;
    let elapsed = started.elapsed();
    if result.is_error == Some(true) {
        bail!("`echo` answered with an error: {:?}", result.content);
    }
    Ok(elapsed)
}

/// Makes `calls` calls from `concurrency` tasks that share `peer`, each task calling one
/// after another; the remainder of an uneven split goes to the first tasks.
pub(crate) async fn run_calls(
    peer: &Peer<RoleClient>,
    calls: usize,
    concurrency: usize,
) -> anyhow::Result<Samples> {
    run_callers(vec![peer.clone(); concurrency.max(1)], calls).await
}

/// Makes `calls` calls from one task per caller (several may share a client), each task
/// calling one after another; the remainder of an uneven split goes to the first tasks.
pub(crate) async fn run_callers(
    callers: Vec<Peer<RoleClient>>,
    calls: usize,
) -> anyhow::Result<Samples> {
    let count = callers.len().max(1);
    let started = Instant::now();
    let tasks: Vec<_> = callers
        .into_iter()
        .enumerate()
        .map(|(index, peer)| {
            let task_calls = calls / count + usize::from(index < calls % count);
            tokio::spawn(async move {
                let mut durations = Vec::with_capacity(task_calls);
                for _ in 0..task_calls {
                    durations.push(timed_call(&peer).await?);
                }
                anyhow::Ok(durations)
            })
        })
        .collect();
    let mut durations = Vec::with_capacity(calls);
    for task in tasks {
        durations.extend(task.await??);
    }
    Ok(Samples {
        durations,
        wall: started.elapsed(),
    })
}
