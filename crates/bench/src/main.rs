//! Calls a cheap tool (`echo` of the fixture server) N times directly and through Portcullis,
//! with the same rmcp client, the same upstream binary and in the same run, at several
//! concurrency levels; reports p50/p99 latency, calls per second, and Portcullis's memory.
//!
//! `cargo build --release -p portcullis -p portcullis-fixture` first; then
//! `cargo run --release -p portcullis-bench -- [--calls N] [--concurrency 1,32]`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use rmcp::model::CallToolRequestParams;
use rmcp::service::{Peer, RoleClient, RunningService, ServiceExt};
use rmcp::transport::TokioChildProcess;

#[derive(Parser)]
#[command(about = "Direct versus through-Portcullis latency of a cheap MCP tool call")]
struct Args {
    /// Calls measured per concurrency level and path.
    #[arg(long, default_value_t = 20_000)]
    calls: usize,
    /// Concurrent callers sharing one client connection, comma separated.
    #[arg(long, value_delimiter = ',', default_value = "1,32")]
    concurrency: Vec<usize>,
    /// Directory holding the release binaries.
    #[arg(long, default_value = "target/release")]
    bin_dir: PathBuf,
}

/// One measured run.
struct Measure {
    p50: Duration,
    p99: Duration,
    calls_per_sec: f64,
}

type Client = RunningService<RoleClient, ()>;

async fn connect(program: &Path, args: &[String]) -> anyhow::Result<(Client, Option<u32>)> {
    let mut command = tokio::process::Command::new(program);
    command.args(args).stderr(std::process::Stdio::null());
    let transport = TokioChildProcess::new(command)
        .with_context(|| format!("cannot start `{}`", program.display()))?;
    let pid = transport.id();
    let client = ().serve(transport).await.context("handshake failed")?;
    // Portcullis answers its first list once its upstream is up: measure after that.
    let tools = client.list_all_tools().await.context("tools/list failed")?;
    if !tools.iter().any(|t| t.name == "echo") {
        bail!("no `echo` tool on `{}`", program.display());
    }
    Ok((client, pid))
}

async fn call(peer: &Peer<RoleClient>) -> anyhow::Result<Duration> {
    let mut arguments = serde_json::Map::new();
    arguments.insert("text".into(), serde_json::Value::String("ping".into()));
    let started = Instant::now();
    let result = peer
        .call_tool(CallToolRequestParams::new("echo").with_arguments(arguments))
        .await?;
    let elapsed = started.elapsed();
    if result.is_error == Some(true) {
        bail!("echo failed: {:?}", result.content);
    }
    Ok(elapsed)
}

async fn measure(client: &Client, calls: usize, concurrency: usize) -> anyhow::Result<Measure> {
    for _ in 0..500 {
        call(client.peer()).await?;
    }
    let per_task = calls.div_ceil(concurrency);
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        let peer = client.peer().clone();
        tasks.push(tokio::spawn(async move {
            let mut samples = Vec::with_capacity(per_task);
            for _ in 0..per_task {
                samples.push(call(&peer).await?);
            }
            anyhow::Ok(samples)
        }));
    }
    let mut samples = Vec::with_capacity(per_task * concurrency);
    for task in tasks {
        samples.extend(task.await??);
    }
    let wall = started.elapsed();
    samples.sort_unstable();
    let at = |q: f64| {
        let index = ((samples.len() as f64 - 1.0) * q).round() as usize;
        samples.get(index).copied().unwrap_or_default()
    };
    Ok(Measure {
        p50: at(0.50),
        p99: at(0.99),
        calls_per_sec: samples.len() as f64 / wall.as_secs_f64(),
    })
}

/// A field of /proc/PID/status in KiB (VmRSS now, VmHWM peak).
fn memory_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
}

fn micros(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e6
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let fixture = std::path::absolute(args.bin_dir.join("portcullis-fixture"))?;
    let portcullis = std::path::absolute(args.bin_dir.join("portcullis"))?;
    for binary in [&fixture, &portcullis] {
        if !binary.is_file() {
            bail!(
                "`{}` is missing: run `cargo build --release -p portcullis -p portcullis-fixture`",
                binary.display()
            );
        }
    }
    let scratch = tempfile::tempdir()?;
    let config = scratch.path().join("portcullis.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nnamespacing = \"passthrough\"\n\n[[upstream]]\nname = \"fixture\"\ncommand = [{:?}, \"--scratch\", {:?}]\n",
            fixture.display().to_string(),
            scratch.path().join("work").display().to_string()
        ),
    )?;
    let fixture_args = vec![
        "--scratch".to_owned(),
        scratch.path().join("direct").display().to_string(),
    ];
    let (direct, _) = connect(&fixture, &fixture_args).await?;
    let portcullis_args = vec![
        "serve".to_owned(),
        "--config".to_owned(),
        config.display().to_string(),
    ];
    let (through, pid) = connect(&portcullis, &portcullis_args).await?;
    let pid = pid.context("no pid for portcullis")?;
    let idle_rss = memory_kib(pid, "VmRSS:");

    println!(
        "{} calls of `echo` per row over stdio; latency per call as the client sees it",
        args.calls
    );
    println!(
        "| callers | path | p50 µs | p99 µs | calls/s | added p50 µs | added p99 µs | throughput vs direct |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- |");
    for &concurrency in &args.concurrency {
        let base = measure(&direct, args.calls, concurrency).await?;
        let via = measure(&through, args.calls, concurrency).await?;
        println!(
            "| {concurrency} | direct | {:.1} | {:.1} | {:.0} | | | |",
            micros(base.p50),
            micros(base.p99),
            base.calls_per_sec
        );
        println!(
            "| {concurrency} | portcullis | {:.1} | {:.1} | {:.0} | {:.1} | {:.1} | {:.0} % |",
            micros(via.p50),
            micros(via.p99),
            via.calls_per_sec,
            micros(via.p50) - micros(base.p50),
            micros(via.p99) - micros(base.p99),
            100.0 * via.calls_per_sec / base.calls_per_sec
        );
    }
    let mib = |kib: Option<u64>| {
        kib.map_or("n/a".to_owned(), |k| {
            format!("{:.1} MiB", k as f64 / 1024.0)
        })
    };
    println!(
        "portcullis memory: idle VmRSS {}, after load VmRSS {}, peak VmHWM {}",
        mib(idle_rss),
        mib(memory_kib(pid, "VmRSS:")),
        mib(memory_kib(pid, "VmHWM:"))
    );
    direct.cancel().await.ok();
    through.cancel().await.ok();
    Ok(())
}
