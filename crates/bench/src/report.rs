//! The figures of a run, as Markdown tables for people or as JSON, and how they compare with
//! the targets the project tracks.

use std::fmt::Write as _;
use std::time::Duration;

use serde_json::{Value, json};

use crate::measure::Summary;
use crate::route::Transport;

/// Targets the project tracks (see BENCHMARKS.md); reported against, never asserted.
const TARGET_ADDED_P50_US: f64 = 25.0;
const TARGET_ADDED_P99_US: f64 = 100.0;
const TARGET_THROUGHPUT_SHARE: f64 = 0.80;
const TARGET_IDLE_RSS_KIB: u64 = 20 * 1024;

/// One concurrency level and the calls measured per route at it.
#[derive(Clone, Copy)]
pub(crate) struct Level {
    pub concurrency: usize,
    pub calls: usize,
}

/// How the figures were taken.
pub(crate) struct Settings {
    /// Portcullis's `[server] durability`.
    pub durability: String,
    pub rounds: usize,
    pub warmup: usize,
    /// The machine's load averages before and after the run: the noise it ran in.
    pub load_before: Option<String>,
    pub load_after: Option<String>,
}

/// One route's figures at one level. CPU is per call, in microseconds.
pub(crate) struct RouteFigures {
    pub samples: Summary,
    pub cpu_client_us: f64,
    pub cpu_servers_us: f64,
    /// The proxy's own process: Portcullis, or the peer.
    pub cpu_proxy_us: f64,
    /// The proxy's context switches per call (its live threads; `process::context_switches`).
    pub switches_proxy: f64,
}

/// The routes at one level of one transport.
pub(crate) struct Row {
    pub transport: Transport,
    pub level: Level,
    pub direct: RouteFigures,
    pub through: RouteFigures,
    /// Through the peer proxy (supergateway) and the floors (`relay.rs`), those measured.
    pub peers: Vec<(&'static str, RouteFigures)>,
    pub portcullis_rss_after_kib: Option<u64>,
}

impl Row {
    fn added_p50_us(&self) -> f64 {
        self.added(&self.through).p50_us
    }

    fn added_p99_us(&self) -> f64 {
        self.added(&self.through).p99_us
    }

    fn throughput_share(&self) -> f64 {
        self.added(&self.through).throughput_share
    }

    /// What a proxied route adds to the direct one.
    fn added(&self, proxied: &RouteFigures) -> Added {
        let direct = &self.direct.samples;
        Added {
            p50_us: micros(proxied.samples.p50) - micros(direct.p50),
            p99_us: micros(proxied.samples.p99) - micros(direct.p99),
            throughput_share: if direct.calls_per_sec > 0.0 {
                proxied.samples.calls_per_sec / direct.calls_per_sec
            } else {
                0.0
            },
            server_cpu_us: proxied.cpu_servers_us - self.direct.cpu_servers_us,
        }
    }

    /// The proxied routes, by name.
    fn proxied(&self) -> impl Iterator<Item = (&'static str, &RouteFigures)> {
        std::iter::once(("portcullis", &self.through))
            .chain(self.peers.iter().map(|(name, figures)| (*name, figures)))
    }
}

/// What a proxy adds to the direct call.
struct Added {
    p50_us: f64,
    p99_us: f64,
    throughput_share: f64,
    server_cpu_us: f64,
}

/// Portcullis's memory on one transport: after start and one `tools/list`, then after load.
pub(crate) struct Memory {
    pub transport: Transport,
    pub idle_rss_kib: Option<u64>,
    /// Of the idle VmRSS, what is Portcullis's own (heap, stacks) rather than pages of its
    /// program file, which the page cache shares.
    pub idle_anon_kib: Option<u64>,
    pub after_rss_kib: Option<u64>,
    pub peak_hwm_kib: Option<u64>,
}

fn micros(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e6
}

fn mib(kib: Option<u64>) -> String {
    kib.map_or_else(
        || "n/a".to_owned(),
        |k| format!("{:.1} MiB", k as f64 / 1024.0),
    )
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "missed" }
}

/// The three tables (routes, overhead, memory) and the targets, in Markdown.
pub(crate) fn tables(settings: &Settings, rows: &[Row], memory: &[Memory]) -> String {
    let mut out = String::new();
    let levels: Vec<String> = rows
        .iter()
        .filter(|row| Some(row.transport) == rows.first().map(|first| first.transport))
        .map(|row| {
            format!(
                "{} calls with {} caller(s)",
                row.level.calls, row.level.concurrency
            )
        })
        .collect();
    let _ = writeln!(
        out,
        "`echo` per route: {}; {} warm-up calls per route and level; {} alternating rounds.",
        levels.join(", "),
        settings.warmup,
        settings.rounds
    );
    let _ = writeln!(
        out,
        "Portcullis's evidence durability: `{}`.",
        settings.durability
    );
    let _ = writeln!(
        out,
        "Load average (1, 5, 15 min) before: {}; after: {}.",
        settings.load_before.as_deref().unwrap_or("n/a"),
        settings.load_after.as_deref().unwrap_or("n/a")
    );
    let _ = writeln!(
        out,
        "Latency per call as the client sees it. CPU per call: this client; all server processes of the route; Portcullis alone.\n"
    );
    out.push_str("| transport | callers | route | p50 µs | p99 µs | calls/s | CPU µs/call client | servers | proxy |\n");
    out.push_str("| --- | --- | --- | --- | --- | --- | --- | --- | --- |\n");
    for row in rows {
        for (name, figures) in std::iter::once(("direct", &row.direct)).chain(row.proxied()) {
            let proxy_cpu = if name == "direct" {
                String::new()
            } else {
                format!("{:.1}", figures.cpu_proxy_us)
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {:.1} | {:.1} | {:.0} | {:.1} | {:.1} | {} |",
                row.transport.name(),
                row.level.concurrency,
                name,
                micros(figures.samples.p50),
                micros(figures.samples.p99),
                figures.samples.calls_per_sec,
                figures.cpu_client_us,
                figures.cpu_servers_us,
                proxy_cpu
            );
        }
    }

    out.push_str("\n| transport | callers | proxy | added p50 µs | added p99 µs | throughput vs direct | added server CPU µs/call | proxy context switches/call | Portcullis VmRSS after |\n");
    out.push_str("| --- | --- | --- | --- | --- | --- | --- | --- | --- |\n");
    for row in rows {
        for (name, figures) in row.proxied() {
            let added = row.added(figures);
            let _ = writeln!(
                out,
                "| {} | {} | {name} | {:.1} | {:.1} | {:.0} % | {:.1} | {:.1} | {} |",
                row.transport.name(),
                row.level.concurrency,
                added.p50_us,
                added.p99_us,
                100.0 * added.throughput_share,
                added.server_cpu_us,
                figures.switches_proxy,
                mib(row.portcullis_rss_after_kib)
            );
        }
    }

    out.push_str(
        "\n| transport | Portcullis VmRSS idle | of it RssAnon | VmRSS after load | peak VmHWM |\n",
    );
    out.push_str("| --- | --- | --- | --- | --- |\n");
    for entry in memory {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} |",
            entry.transport.name(),
            mib(entry.idle_rss_kib),
            mib(entry.idle_anon_kib),
            mib(entry.after_rss_kib),
            mib(entry.peak_hwm_kib)
        );
    }

    out.push_str("\n| target | transport | callers | now | |\n| --- | --- | --- | --- | --- |\n");
    for row in rows {
        let transport = row.transport.name();
        let callers = row.level.concurrency;
        let added_p50 = row.added_p50_us();
        let added_p99 = row.added_p99_us();
        let share = row.throughput_share();
        let _ = writeln!(
            out,
            "| added p50 ≤ {TARGET_ADDED_P50_US} µs | {transport} | {callers} | {added_p50:.1} µs | {} |",
            verdict(added_p50 <= TARGET_ADDED_P50_US)
        );
        let _ = writeln!(
            out,
            "| added p99 ≤ {TARGET_ADDED_P99_US} µs | {transport} | {callers} | {added_p99:.1} µs | {} |",
            verdict(added_p99 <= TARGET_ADDED_P99_US)
        );
        let _ = writeln!(
            out,
            "| throughput ≥ {:.0} % of direct | {transport} | {callers} | {:.0} % | {} |",
            100.0 * TARGET_THROUGHPUT_SHARE,
            100.0 * share,
            verdict(share >= TARGET_THROUGHPUT_SHARE)
        );
    }
    for entry in memory {
        let met = entry
            .idle_rss_kib
            .is_some_and(|kib| kib <= TARGET_IDLE_RSS_KIB);
        let _ = writeln!(
            out,
            "| idle RSS ≤ {} MiB | {} | | {} | {} |",
            TARGET_IDLE_RSS_KIB / 1024,
            entry.transport.name(),
            mib(entry.idle_rss_kib),
            verdict(met)
        );
    }
    out
}

fn route_json(figures: &RouteFigures) -> Value {
    json!({
        "calls": figures.samples.calls,
        "p50_us": micros(figures.samples.p50),
        "p99_us": micros(figures.samples.p99),
        "calls_per_sec": figures.samples.calls_per_sec,
        "cpu_us_per_call": {
            "client": figures.cpu_client_us,
            "servers": figures.cpu_servers_us,
            "proxy": figures.cpu_proxy_us,
        },
        "proxy_context_switches_per_call": figures.switches_proxy,
    })
}

/// The same figures as one JSON document.
pub(crate) fn json(settings: &Settings, rows: &[Row], memory: &[Memory]) -> Value {
    json!({
        "durability": settings.durability,
        "warmup_calls": settings.warmup,
        "rounds": settings.rounds,
        "load_average_before": settings.load_before,
        "load_average_after": settings.load_after,
        "targets": {
            "added_p50_us": TARGET_ADDED_P50_US,
            "added_p99_us": TARGET_ADDED_P99_US,
            "throughput_share": TARGET_THROUGHPUT_SHARE,
            "idle_rss_kib": TARGET_IDLE_RSS_KIB,
        },
        "rows": rows.iter().map(|row| json!({
            "transport": row.transport.name(),
            "concurrency": row.level.concurrency,
            "direct": route_json(&row.direct),
            "portcullis": route_json(&row.through),
            "peers": row.peers.iter().map(|(name, figures)| (name.to_string(), route_json(figures))).collect::<serde_json::Map<_, _>>(),
            "added_p50_us": row.added_p50_us(),
            "added_p99_us": row.added_p99_us(),
            "throughput_share": row.throughput_share(),
            "portcullis_rss_after_kib": row.portcullis_rss_after_kib,
        })).collect::<Vec<_>>(),
        "memory": memory.iter().map(|entry| json!({
            "transport": entry.transport.name(),
            "idle_rss_kib": entry.idle_rss_kib,
            "idle_anon_kib": entry.idle_anon_kib,
            "after_rss_kib": entry.after_rss_kib,
            "peak_hwm_kib": entry.peak_hwm_kib,
        })).collect::<Vec<_>>(),
    })
}

/// The Node client case as a Markdown table.
pub(crate) fn node_table(figures: &crate::node::NodeFigures) -> String {
    let mut text = String::from(
        "Official TypeScript SDK client over HTTP (fixture behind the proxies over stdio), one caller:\n\n\
         | route | calls | p50 µs | p99 µs | added p50 µs | added p99 µs |\n| --- | --- | --- | --- | --- | --- |\n",
    );
    let direct = figures.routes.first().map(|(_, summary)| *summary);
    for (name, summary) in &figures.routes {
        let added = |of: fn(&Summary) -> Duration| {
            direct.map_or(0.0, |direct| micros(of(summary)) - micros(of(&direct)))
        };
        let _ = writeln!(
            text,
            "| {name} | {} | {:.0} | {:.0} | {:.0} | {:.0} |",
            summary.calls,
            micros(summary.p50),
            micros(summary.p99),
            added(|s| s.p50),
            added(|s| s.p99)
        );
    }
    text
}

/// The Node client case as JSON (microseconds).
pub(crate) fn node_json(figures: &crate::node::NodeFigures) -> Value {
    let routes: serde_json::Map<String, Value> = figures
        .routes
        .iter()
        .map(|(name, summary)| {
            (
                (*name).to_owned(),
                json!({"calls": summary.calls, "p50": micros(summary.p50), "p99": micros(summary.p99)}),
            )
        })
        .collect();
    Value::Object(routes)
}
