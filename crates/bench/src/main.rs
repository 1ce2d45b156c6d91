//! Calls a cheap tool (`echo` of the fixture server) N times directly and through Portcullis,
//! with the same rmcp client, the same upstream binary and in the same run, at several
//! concurrency levels; reports p50/p99 latency, calls per second, CPU per call, and
//! Portcullis's memory.
//!
//! The key decision: the two routes are measured in alternating rounds inside one process, so
//! that the machine's noise (shared cores, frequency changes) falls on both alike and the
//! difference between them means something. Timings are never asserted anywhere.
//!
//! `cargo build --release -p portcullis-mcp -p portcullis-fixture` first; then
//! `cargo run --release -p portcullis-bench -- [--calls N] [--concurrency 1,32] [--transport stdio|http]`.
//! `--tool-search fixtures/tool-search` measures tool search over a large catalog instead
//! (`search.rs`).
#![forbid(unsafe_code)]

mod listing;
mod measure;
mod node;
mod policy;
mod process;
mod relay;
mod replicas;
mod report;
mod route;
mod search;
mod sessions;
#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;

use crate::measure::{Samples, run_calls};
use crate::report::{Level, Memory, RouteFigures, Row};
use crate::route::{Binaries, Route, Transport};

#[derive(Parser)]
#[command(about = "Direct versus through-Portcullis latency of a cheap MCP tool call")]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    /// Calls measured per route at each concurrency level: one number for every level, or one
    /// per level [default: 20000 with one caller, 50000 with more].
    #[arg(long, value_delimiter = ',')]
    calls: Vec<usize>,
    /// Concurrent callers sharing one client connection, comma separated.
    #[arg(long, value_delimiter = ',', default_value = "1,32")]
    concurrency: Vec<usize>,
    /// Transports to measure, comma separated; with `http` both hops are streamable HTTP.
    #[arg(long, value_delimiter = ',', default_value = "stdio")]
    transport: Vec<Transport>,
    /// Rounds per level; the routes take turns, each round a share of the calls.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Unmeasured calls per route before each level.
    #[arg(long, default_value_t = 1000)]
    warmup: usize,
    /// Directory holding `portcullis` and `portcullis-fixture` [default: this program's own].
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// Decisions timed for the policy figure (the list and call checks of one call each).
    #[arg(long, default_value_t = 20000)]
    policy_decisions: usize,
    /// The `tests/node` directory (after scripts/setup.sh), which holds `bench.mjs`, Node 22 and
    /// supergateway: measures the official TypeScript SDK client over HTTP too, and puts the
    /// peer proxy supergateway beside Portcullis on the `http-stdio` routes.
    #[arg(long, value_name = "DIR")]
    node_client: Option<PathBuf>,
    /// Calls per route for the Node client case.
    #[arg(long, default_value_t = 2000)]
    node_calls: usize,
    /// Portcullis's `[server] durability`: `process` (intents written before the call) or
    /// `disk` (intents synced before the call); unset, the config leaves it out (a build from
    /// before the setting takes the config too). The evidence log is in the scratch
    /// directory, under the system's temporary directory: say which filesystem that is.
    #[arg(long, value_parser = ["process", "disk"])]
    durability: Option<String>,
    /// Also list a catalog of this many extra tools through Portcullis, a page at a time,
    /// under a policy that hides half of them, beside the direct listing.
    #[arg(long, value_name = "N")]
    list_tools: Option<usize>,
    /// Also open this many session-era HTTP clients on Portcullis at once, and report its
    /// memory with them open and after they closed.
    #[arg(long, value_name = "N")]
    sessions: Option<usize>,
    /// Also measure replicas sharing PostgreSQL behind HAProxy, one topology per number given
    /// (e.g. `1,3`), beside the fixture served over HTTP directly: needs Debian's `postgresql`
    /// and `haproxy` (scripts/setup.sh installs them).
    #[arg(long, value_delimiter = ',', value_name = "N,...")]
    replicas: Vec<usize>,
    /// Clients (each its own session) calling through the replicas at once.
    #[arg(long, default_value_t = 16)]
    replica_clients: usize,
    /// Calls per route in the replicas case.
    #[arg(long, default_value_t = 6000)]
    replica_calls: usize,
    /// Measure tool search instead of calls: the catalog (`catalog.json`) and the queries with
    /// their answers (`queries.json`) in DIR, e.g. `fixtures/tool-search`; `--rounds` times
    /// the queries.
    #[arg(long, value_name = "DIR")]
    tool_search: Option<PathBuf>,
    /// Also measure two floors beside Portcullis in the same rounds: a byte relay (`pipe`, on
    /// stdio) and a bare rmcp proxy (`rmcp`, on stdio and http-stdio), each in front of a
    /// fixture of its own (`relay.rs`).
    #[arg(long)]
    floors: bool,
    /// Print JSON instead of the tables.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Serve a floor in front of COMMAND (the benchmark starts itself so for `--floors`).
    #[command(hide = true)]
    Relay {
        #[arg(long, value_enum)]
        kind: relay::Kind,
        /// Serve streamable HTTP on a free loopback port (announced on stdout), not stdio.
        #[arg(long)]
        listen: bool,
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
}

impl Args {
    /// Portcullis's settings for the call routes.
    fn settings(&self) -> route::Settings<'_> {
        route::Settings {
            durability: self.durability.as_deref(),
            sessions: None,
        }
    }

    /// Pairs each concurrency level with its number of calls.
    fn levels(&self) -> anyhow::Result<Vec<Level>> {
        if self.concurrency.contains(&0) {
            bail!("a concurrency of 0 callers measures nothing");
        }
        if self.calls.len() > 1 && self.calls.len() != self.concurrency.len() {
            bail!(
                "`--calls` has {} numbers but `--concurrency` {} levels: give one number, or one per level",
                self.calls.len(),
                self.concurrency.len()
            );
        }
        let levels = self
            .concurrency
            .iter()
            .enumerate()
            .map(|(index, &concurrency)| {
                let default = if concurrency == 1 { 20_000 } else { 50_000 };
                let calls = match self.calls.as_slice() {
                    [every] => *every,
                    list => list.get(index).copied().unwrap_or(default),
                };
                Level { concurrency, calls }
            });
        Ok(levels.collect())
    }
}

/// What one route accumulates over the rounds of one level.
#[derive(Default)]
struct Tally {
    samples: Samples,
    client_cpu: Duration,
    server_cpu: Duration,
    proxy_cpu: Duration,
    proxy_switches: u64,
}

impl Tally {
    fn figures(self) -> RouteFigures {
        let samples = self.samples.summary();
        let per_call = |cpu: Duration| {
            if samples.calls == 0 {
                0.0
            } else {
                cpu.as_secs_f64() * 1e6 / samples.calls as f64
            }
        };
        RouteFigures {
            cpu_client_us: per_call(self.client_cpu),
            cpu_servers_us: per_call(self.server_cpu),
            cpu_proxy_us: per_call(self.proxy_cpu),
            switches_proxy: if samples.calls == 0 {
                0.0
            } else {
                self.proxy_switches as f64 / samples.calls as f64
            },
            samples,
        }
    }
}

/// CPU used so far by the client, the route's servers, and its proxy.
struct CpuReading {
    client: Duration,
    servers: Duration,
    proxy: Duration,
    /// The proxy's context switches so far (see `process::context_switches`).
    proxy_switches: u64,
}

fn read_cpu(route: &Route) -> anyhow::Result<CpuReading> {
    let of = |pid: u32| {
        process::cpu_time(pid).with_context(|| format!("cannot read `/proc/{pid}/stat`"))
    };
    let mut servers = Duration::ZERO;
    for &pid in &route.server_pids {
        servers += of(pid)?;
    }
    Ok(CpuReading {
        client: process::own_cpu_time().context("cannot read our own CPU time")?,
        servers,
        proxy: route.proxy_pid.map(of).transpose()?.unwrap_or_default(),
        proxy_switches: route
            .proxy_pid
            .and_then(process::context_switches)
            .unwrap_or_default(),
    })
}

/// One batch of calls on one route, added to its tally.
async fn batch(
    route: &Route,
    calls: usize,
    concurrency: usize,
    tally: &mut Tally,
) -> anyhow::Result<()> {
    let before = read_cpu(route)?;
    let samples = run_calls(route.client.peer(), calls, concurrency).await?;
    let after = read_cpu(route)?;
    tally.samples.extend(samples);
    tally.client_cpu += after.client.saturating_sub(before.client);
    tally.server_cpu += after.servers.saturating_sub(before.servers);
    tally.proxy_cpu += after.proxy.saturating_sub(before.proxy);
    tally.proxy_switches += after.proxy_switches.saturating_sub(before.proxy_switches);
    Ok(())
}

/// Warms every route up, then measures them in rounds, each round in another order.
async fn measure_level(
    routes: &[&Route],
    level: Level,
    rounds: usize,
    warmup: usize,
) -> anyhow::Result<Vec<RouteFigures>> {
    for route in routes {
        run_calls(route.client.peer(), warmup, level.concurrency).await?;
    }
    let rounds = rounds.clamp(1, level.calls.max(1));
    let mut tallies: Vec<Tally> = routes.iter().map(|_| Tally::default()).collect();
    for round in 0..rounds {
        let calls = level.calls / rounds + usize::from(round < level.calls % rounds);
        // Rotate which route goes first, so none always follows another.
        for turn in 0..routes.len() {
            let index = (round + turn) % routes.len();
            if let (Some(route), Some(tally)) = (routes.get(index), tallies.get_mut(index)) {
                batch(route, calls, level.concurrency, tally).await?;
            }
        }
    }
    Ok(tallies.into_iter().map(Tally::figures).collect())
}

async fn measure_transport(
    transport: Transport,
    binaries: &Binaries,
    args: &Args,
    levels: &[Level],
) -> anyhow::Result<(Vec<Row>, Memory)> {
    let scratch = tempfile::tempdir().context("cannot make a scratch directory")?;
    let max_concurrency = levels.iter().map(|l| l.concurrency).max().unwrap_or(1);
    let direct = route::direct(transport, binaries, scratch.path(), max_concurrency).await?;
    let through = route::through_portcullis(
        transport,
        binaries,
        scratch.path(),
        max_concurrency,
        args.settings(),
    )
    .await?;
    let mut peers = Vec::new();
    if let (Some(node_dir), Transport::HttpStdio) = (&args.node_client, transport) {
        peers.push((
            "supergateway",
            route::through_supergateway(node_dir, binaries, scratch.path(), max_concurrency)
                .await?,
        ));
    }
    if args.floors {
        for kind in route::floors(transport) {
            peers.push((
                kind.name(),
                route::through_floor(kind, transport, binaries, scratch.path(), max_concurrency)
                    .await?,
            ));
        }
    }
    let pid = through.proxy_pid.context("no process id for portcullis")?;
    let idle_rss_kib = process::memory_kib(pid, "VmRSS");
    let idle_anon_kib = process::memory_kib(pid, "RssAnon");

    let mut routes = vec![&direct, &through];
    routes.extend(peers.iter().map(|(_, route)| route));
    let mut rows = Vec::with_capacity(levels.len());
    for &level in levels {
        let mut figures = measure_level(&routes, level, args.rounds, args.warmup)
            .await
            .with_context(|| {
                format!(
                    "measuring {} callers over {}",
                    level.concurrency,
                    transport.name()
                )
            })?
            .into_iter();
        let (Some(direct_figures), Some(through_figures)) = (figures.next(), figures.next()) else {
            bail!("a level measured without its routes");
        };
        rows.push(Row {
            transport,
            level,
            direct: direct_figures,
            through: through_figures,
            peers: peers.iter().map(|(name, _)| *name).zip(figures).collect(),
            portcullis_rss_after_kib: process::memory_kib(pid, "VmRSS"),
        });
    }
    let memory = Memory {
        transport,
        idle_rss_kib,
        idle_anon_kib,
        after_rss_kib: process::memory_kib(pid, "VmRSS"),
        peak_hwm_kib: process::memory_kib(pid, "VmHWM"),
    };
    direct.close().await;
    through.close().await;
    for (_, peer) in peers {
        peer.close().await;
    }
    Ok((rows, memory))
}

/// The Node client case, on HTTP-to-stdio routes of its own: direct, through Portcullis, and
/// through supergateway.
async fn measure_node(
    client: &node::NodeClient,
    node_dir: &std::path::Path,
    binaries: &Binaries,
    args: &Args,
) -> anyhow::Result<node::NodeFigures> {
    let scratch = tempfile::tempdir().context("cannot make a scratch directory")?;
    let transport = Transport::HttpStdio;
    let routes = [
        (
            "direct",
            route::direct(transport, binaries, scratch.path(), 1).await?,
        ),
        (
            "portcullis",
            route::through_portcullis(transport, binaries, scratch.path(), 1, args.settings())
                .await?,
        ),
        (
            "supergateway",
            route::through_supergateway(node_dir, binaries, scratch.path(), 1).await?,
        ),
    ];
    let mut urls = Vec::with_capacity(routes.len());
    for (name, route) in &routes {
        urls.push((
            *name,
            route.url.clone().context("an HTTP route without a URL")?,
        ));
    }
    let figures = node::measure(client, &urls, args.node_calls, args.rounds)
        .await
        .context("measuring the Node client over http")?;
    for (_, route) in routes {
        route.close().await;
    }
    Ok(figures)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(Command::Relay {
        kind,
        listen,
        command,
    }) = &args.command
    {
        return relay::run(*kind, *listen, command).await;
    }
    // rmcp's reqwest clients need a TLS crypto provider (reqwest's provider-free rustls is on
    // for Portcullis's https upstreams).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let levels = args.levels()?;
    let bin_dir = match &args.bin_dir {
        Some(dir) => std::path::absolute(dir)?,
        // `cargo build --release` puts all three binaries in the same directory.
        None => std::env::current_exe()?
            .parent()
            .context("cannot tell the directory of this program")?
            .to_path_buf(),
    };
    let binaries = Binaries {
        fixture: bin_dir.join("portcullis-fixture"),
        portcullis: bin_dir.join("portcullis"),
    };
    for binary in [&binaries.fixture, &binaries.portcullis] {
        if !binary.is_file() {
            bail!(
                "`{}` is missing: run `cargo build --release -p portcullis-mcp -p portcullis-fixture`",
                binary.display()
            );
        }
    }
    if let Some(dir) = &args.tool_search {
        let figures = search::measure_search(&binaries, &std::path::absolute(dir)?, args.rounds)
            .await
            .context("measuring tool search")?;
        if args.json {
            println!("{}", serde_json::to_string_pretty(&figures.json())?);
        } else {
            print!("{}", figures.table());
        }
        return Ok(());
    }
    let load_before = process::load_average();
    let mut rows = Vec::new();
    let mut memory = Vec::new();
    for &transport in &args.transport {
        let (transport_rows, transport_memory) =
            measure_transport(transport, &binaries, &args, &levels).await?;
        rows.extend(transport_rows);
        memory.push(transport_memory);
    }
    let node_figures = match &args.node_client {
        Some(dir) => {
            Some(measure_node(&node::NodeClient::in_dir(dir)?, dir, &binaries, &args).await?)
        }
        None => None,
    };
    let list_figures = match args.list_tools {
        Some(tools) => Some(listing::measure_list(&binaries, tools, args.rounds.max(1)).await?),
        None => None,
    };
    let session_figures = match args.sessions {
        Some(sessions) => {
            Some(sessions::measure_sessions(&binaries, sessions, args.durability.as_deref()).await?)
        }
        None => None,
    };
    let replica_figures = if args.replicas.is_empty() {
        None
    } else {
        Some(
            replicas::measure_replicas(
                &binaries,
                &args.replicas,
                args.replica_clients,
                args.replica_calls,
                args.rounds,
                args.warmup,
            )
            .await
            .context("measuring replicas behind HAProxy")?,
        )
    };
    let policy_figures = policy::measure_policy(args.policy_decisions)?;
    let direct_p50 = rows
        .iter()
        .find(|row| row.transport == Transport::Stdio && row.level.concurrency == 1)
        .map(|row| row.direct.samples.p50);
    let settings = report::Settings {
        durability: args
            .durability
            .clone()
            .unwrap_or_else(|| "the build's default".to_owned()),
        rounds: args.rounds,
        warmup: args.warmup,
        load_before,
        load_after: process::load_average(),
    };
    if args.json {
        let mut value = report::json(&settings, &rows, &memory);
        let policy_value = policy_figures.json();
        if let Some(object) = value.as_object_mut() {
            object.insert("policy_us".to_owned(), policy_value);
            if let Some(figures) = &node_figures {
                object.insert("node_client".to_owned(), report::node_json(figures));
            }
            if let Some(figures) = &list_figures {
                object.insert("list".to_owned(), figures.json());
            }
            if let Some(figures) = &session_figures {
                object.insert("sessions".to_owned(), figures.json());
            }
            if let Some(figures) = &replica_figures {
                object.insert("replicas".to_owned(), figures.json());
            }
        }
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        print!("{}", report::tables(&settings, &rows, &memory));
        if let Some(figures) = &node_figures {
            print!("\n{}", report::node_table(figures));
        }
        if let Some(figures) = &list_figures {
            print!("{}", figures.table());
        }
        if let Some(figures) = &session_figures {
            print!("{}", figures.table());
        }
        if let Some(figures) = &replica_figures {
            print!("{}", figures.table());
        }
        print!("\n{}", policy_figures.describe(direct_p50));
    }
    Ok(())
}
