//! Replicas behind a load balancer, sharing PostgreSQL: `echo` from several session-era clients
//! through HAProxy in front of each topology asked for (`--replicas 1,3`: one replica, three),
//! and in front of one replica that keeps its state local (what the balancer costs apart from
//! the database), beside the fixture served over HTTP directly, in one run.
//!
//! The key decision: every route is up for the whole run (one PostgreSQL for all replicas, as
//! a deployment has one, and one HAProxy per topology), and the routes take turns round by
//! round, so that the machine's noise falls on each alike. Each client is a session of its
//! own: the balancer spreads sessions over the replicas when they open, and keeps each on its
//! replica (stickiness on `Mcp-Session-Id`), which is how session-era traffic spreads.
//! Each replica records evidence to its file and copies every record into PostgreSQL before
//! the call is answered, as `[state] backend = "postgres"` does: that copy is part of what is
//! measured.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context as _;
use portcullis_test_support::{HaProxy, TestPostgres, free_port};
use rmcp::service::{RoleClient, RunningService};
use serde_json::{Value, json};

use crate::measure::{Samples, Summary, run_callers};
use crate::process;
use crate::route::{self, Binaries};

const URL_ENV: &str = "PORTCULLIS_BENCH_DATABASE_URL";
const KEY_ENV: &str = "PORTCULLIS_BENCH_STATE_KEY";
/// The key the replicas share for sealed state (`[server] state_key_env`): any 32 bytes or more.
const STATE_KEY: &str = "the replicas' shared key for the benchmark run";

/// One way to reach `echo` with `clients` clients, each its own session.
struct Target {
    name: String,
    clients: Vec<RunningService<RoleClient, ()>>,
    /// The processes whose CPU counts against this target (Portcullis's replicas, or the
    /// fixture); PostgreSQL and HAProxy are shared and counted apart.
    pids: Vec<u32>,
}

/// A topology of `replicas` Portcullis processes behind HAProxy, kept alive while measured.
struct Topology {
    balancer: HaProxy,
    _replicas: Vec<tokio::process::Child>,
    pids: Vec<u32>,
}

/// What one target did at one number of clients.
struct Figures {
    name: String,
    summary: Summary,
    /// CPU of the target's own processes per call (µs).
    cpu_per_call_us: f64,
}

pub(crate) struct ReplicaFigures {
    clients: usize,
    calls: usize,
    rounds: usize,
    figures: Vec<Figures>,
    /// CPU PostgreSQL used over the whole run (seconds).
    postgres_cpu_s: f64,
}

/// Measures `calls` calls of `clients` clients on each target, in `rounds` rounds.
pub(crate) async fn measure_replicas(
    binaries: &Binaries,
    counts: &[usize],
    clients: usize,
    calls: usize,
    rounds: usize,
    warmup: usize,
) -> anyhow::Result<ReplicaFigures> {
    let scratch = tempfile::tempdir().context("cannot make a scratch directory")?;
    let postgres = tokio::task::spawn_blocking(TestPostgres::start).await?;
    let url = postgres.url();
    // One replica keeping its state local, behind the same balancer: what the balancer costs
    // apart from the database.
    let mut topologies = vec![(
        "HAProxy → 1 replica, its state local".to_owned(),
        start_topology(binaries, scratch.path(), None, 1).await?,
    )];
    for &count in counts {
        let name = format!(
            "HAProxy → {count} replica{} on PostgreSQL",
            if count == 1 { "" } else { "s" }
        );
        topologies.push((
            name,
            start_topology(binaries, scratch.path(), Some(&url), count).await?,
        ));
    }
    let direct = route::direct(
        route::Transport::HttpStdio,
        binaries,
        scratch.path(),
        clients,
    )
    .await?;
    let direct_url = direct.url.clone().context("an HTTP route without a URL")?;
    let mut targets = vec![Target {
        name: "direct (the fixture over HTTP)".to_owned(),
        clients: open_clients(&direct_url, clients).await?,
        pids: direct.server_pids.clone(),
    }];
    for (name, topology) in &topologies {
        let url = format!("http://127.0.0.1:{}/mcp", topology.balancer.port);
        targets.push(Target {
            name: name.clone(),
            clients: open_clients(&url, clients).await?,
            pids: topology.pids.clone(),
        });
    }
    let postgres_pids = postgres_processes();
    let postgres_before = cpu_of(&postgres_pids);
    for target in &targets {
        run_clients(&target.clients, warmup).await?;
    }
    // Per target: its calls' samples and the CPU its processes used.
    let mut tallies: Vec<(Samples, f64)> =
        targets.iter().map(|_| (Samples::default(), 0.0)).collect();
    let rounds = rounds.max(1);
    for round in 0..rounds {
        let share = calls / rounds + usize::from(round < calls % rounds);
        for turn in 0..targets.len() {
            let index = (round + turn) % targets.len();
            if let (Some(target), Some((samples, cpu))) =
                (targets.get(index), tallies.get_mut(index))
            {
                let before = cpu_of(&target.pids);
                samples.extend(run_clients(&target.clients, share).await?);
                *cpu += cpu_of(&target.pids) - before;
            }
        }
    }
    let postgres_cpu_s = cpu_of(&postgres_pids) - postgres_before;
    let figures = targets
        .iter()
        .zip(tallies)
        .map(|(target, (samples, cpu))| {
            let summary = samples.summary();
            Figures {
                name: target.name.clone(),
                cpu_per_call_us: cpu * 1e6 / summary.calls.max(1) as f64,
                summary,
            }
        })
        .collect();
    for target in targets {
        for client in target.clients {
            client.cancel().await.ok();
        }
    }
    direct.close().await;
    drop(topologies);
    drop(postgres);
    Ok(ReplicaFigures {
        clients,
        calls,
        rounds,
        figures,
        postgres_cpu_s,
    })
}

/// `count` replicas sharing their state in the PostgreSQL at `database` (none: each keeps its
/// own), each with a fixture of its own over stdio, and HAProxy in front of them, once it
/// counts every replica up.
async fn start_topology(
    binaries: &Binaries,
    scratch: &Path,
    database: Option<&str>,
    count: usize,
) -> anyhow::Result<Topology> {
    let kind = if database.is_some() {
        "postgres"
    } else {
        "local"
    };
    let ports: Vec<u16> = (0..count).map(|_| free_port()).collect();
    let backends = ports.clone();
    let balancer = tokio::task::spawn_blocking(move || HaProxy::start(&backends)).await?;
    let mut replicas = Vec::with_capacity(count);
    let mut pids = Vec::with_capacity(count);
    for (index, port) in ports.iter().enumerate() {
        let dir = scratch.join(format!("topology-{count}-{kind}/replica-{index}"));
        std::fs::create_dir_all(dir.join("upstream"))
            .with_context(|| format!("cannot create `{}`", dir.display()))?;
        let config = dir.join("portcullis.toml");
        std::fs::write(
            &config,
            replica_config(binaries, &dir, *port, balancer.port, database.is_some())?,
        )
        .with_context(|| format!("cannot write `{}`", config.display()))?;
        let mut command = tokio::process::Command::new(&binaries.portcullis);
        command
            .arg("serve")
            .arg("--config")
            .arg(&config)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .env(KEY_ENV, STATE_KEY);
        if let Some(url) = database {
            command.env(URL_ENV, url);
        }
        let (child, stderr) =
            route::spawn_piped(command, route::Pipe::Stderr, &binaries.portcullis)?;
        pids.push(child.id().context("a replica exited at start")?);
        route::announced_url(stderr, "serving MCP on ").await?;
        replicas.push(child);
    }
    let balancer = tokio::task::spawn_blocking(move || {
        balancer.wait_until_up(count);
        balancer
    })
    .await?;
    // Each replica's fixture is its child: its CPU is the replica's route's too.
    let children: Vec<u32> = pids
        .iter()
        .flat_map(|&pid| process::children(pid))
        .collect();
    pids.extend(children);
    Ok(Topology {
        balancer,
        _replicas: replicas,
        pids,
    })
}

/// A replica's config: `echo` of its own contained fixture, the state in PostgreSQL when
/// `shared`, the balancer's `Host` accepted, room for every client's session.
fn replica_config(
    binaries: &Binaries,
    dir: &Path,
    port: u16,
    balancer: u16,
    shared: bool,
) -> anyhow::Result<String> {
    let upstream_dir = route::toml_string(&dir.join("upstream").display().to_string())?;
    let state = if shared {
        format!("[state]\nbackend = \"postgres\"\nurl_env = \"{URL_ENV}\"\n\n")
    } else {
        String::new()
    };
    Ok(format!(
        "[server]\nnamespacing = \"passthrough\"\nstate_key_env = \"{KEY_ENV}\"\n\n\
         [http]\nallowed_hosts = [\"127.0.0.1:{port}\", \"127.0.0.1:{balancer}\"]\n\
         max_sessions = 1024\nmax_sessions_per_client = 1024\n\n\
         {state}\
         [[upstream]]\nname = \"fixture\"\ncommand = [{}, \"--scratch\", {upstream_dir}]\n\
         roots = [{upstream_dir}]\ntools.echo = {{ effect = \"read\" }}\n",
        route::toml_string(&binaries.fixture.display().to_string())?,
    ))
}

async fn open_clients(
    url: &str,
    clients: usize,
) -> anyhow::Result<Vec<RunningService<RoleClient, ()>>> {
    let mut opened = Vec::with_capacity(clients);
    for _ in 0..clients {
        opened.push(route::connect_http(url, 1).await?);
    }
    Ok(opened)
}

/// `calls` calls spread over `clients`, each calling one after another, all at once.
async fn run_clients(
    clients: &[RunningService<RoleClient, ()>],
    calls: usize,
) -> anyhow::Result<Samples> {
    run_callers(
        clients.iter().map(|client| client.peer().clone()).collect(),
        calls,
    )
    .await
}

/// The PostgreSQL server processes (the tests' server runs as `postgres` under root).
fn postgres_processes() -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|comm| comm.trim() == "postgres")
        })
        .collect()
}

/// CPU seconds `pids` used so far (a process that ended counts nothing).
fn cpu_of(pids: &[u32]) -> f64 {
    pids.iter()
        .filter_map(|&pid| process::cpu_time(pid))
        .map(|cpu| cpu.as_secs_f64())
        .sum()
}

impl ReplicaFigures {
    pub(crate) fn table(&self) -> String {
        let direct = self.figures.first().map(|f| f.summary.calls_per_sec);
        let mut text = format!(
            "\nReplicas on PostgreSQL behind HAProxy: {} clients (each its own session), {} calls per route in {} rounds.\n\n\
             | route | p50 ms | p99 ms | calls/s | vs direct | CPU of its processes per call µs |\n\
             | --- | --- | --- | --- | --- | --- |\n",
            self.clients, self.calls, self.rounds
        );
        for figures in &self.figures {
            let share = direct.map_or_else(
                || "n/a".to_owned(),
                |direct| format!("{:.0} %", 100.0 * figures.summary.calls_per_sec / direct),
            );
            let _ = writeln!(
                text,
                "| {} | {:.2} | {:.2} | {:.0} | {} | {:.0} |",
                figures.name,
                figures.summary.p50.as_secs_f64() * 1e3,
                figures.summary.p99.as_secs_f64() * 1e3,
                figures.summary.calls_per_sec,
                share,
                figures.cpu_per_call_us,
            );
        }
        let _ = writeln!(
            text,
            "\nPostgreSQL used {:.1} s of CPU over the run (every route's calls).",
            self.postgres_cpu_s
        );
        text
    }

    pub(crate) fn json(&self) -> Value {
        json!({
            "clients": self.clients,
            "calls": self.calls,
            "postgres_cpu_s": self.postgres_cpu_s,
            "routes": self.figures.iter().map(|figures| json!({
                "route": figures.name,
                "p50_ms": figures.summary.p50.as_secs_f64() * 1e3,
                "p99_ms": figures.summary.p99.as_secs_f64() * 1e3,
                "calls_per_sec": figures.summary.calls_per_sec,
                "cpu_per_call_us": figures.cpu_per_call_us,
            })).collect::<Vec<_>>(),
        })
    }
}
