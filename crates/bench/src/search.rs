//! Tool search over a large catalog (`--tool-search DIR`): the fixture serves `DIR/catalog.json`
//! as one upstream behind Portcullis, once with `tool_search = "off"` and once with `"on"`, over
//! stdio. Reports the size of the tool list each way (bytes, and tokens estimated as bytes / 4:
//! JSON schemas are mostly short ASCII words and punctuation, for which common tokenizers give
//! 3 to 4 bytes a token, so the estimate errs low), recall of `portcullis.search_tools` at 1 and
//! at 5 for the queries of `DIR/queries.json`, and the latency of a search as a client sees it
//! (p50/p99 over every query of every round, the first search, which builds the index, apart),
//! beside a `tools/call` of the fixture's `echo` through the same Portcullis.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use rmcp::RoleClient;
use rmcp::model::CallToolRequestParams;
use rmcp::service::RunningService;
use serde_json::{Value, json};

use crate::measure::percentile;
use crate::route::{Binaries, spawn_stdio, toml_string};

/// The upstream's name: its tools are exposed as `catalog.NAME`.
const UPSTREAM: &str = "catalog";
/// Results a search is asked for.
const LIMIT: usize = 5;
/// Calls of `echo` for the reference latency.
const ECHO_CALLS: usize = 200;

/// One query and the catalog's tools (their own names) that answer it.
struct Query {
    query: String,
    answers: Vec<String>,
}

pub(crate) struct SearchFigures {
    pub catalog_tools: usize,
    pub listed_off: usize,
    pub list_bytes_off: usize,
    pub listed_on: usize,
    pub list_bytes_on: usize,
    pub queries: usize,
    pub found_at_1: usize,
    pub found_at_5: usize,
    pub result_bytes_mean: usize,
    pub first_search: Duration,
    pub searches: usize,
    pub search_p50: Duration,
    pub search_p99: Duration,
    pub echo_p50: Duration,
    pub echo_p99: Duration,
    /// The queries not found at 5, with what was found instead.
    pub misses: Vec<(String, Vec<String>)>,
}

pub(crate) async fn measure_search(
    binaries: &Binaries,
    dir: &Path,
    rounds: usize,
) -> anyhow::Result<SearchFigures> {
    let catalog = dir.join("catalog.json");
    let catalog_tools = read_json(&catalog)?
        .get("tools")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    let queries = read_queries(&dir.join("queries.json"))?;
    let scratch = tempfile::tempdir().context("cannot make a scratch directory")?;

    let off = start(binaries, scratch.path(), &catalog, "off").await?;
    let listed = wait_for_catalog(&off, catalog_tools).await?;
    let list_bytes_off = serde_json::to_vec(&listed)?.len();
    off.cancel().await.ok();

    let on = start(binaries, scratch.path(), &catalog, "on").await?;
    let search_tools = on.list_all_tools().await?;
    let list_bytes_on = serde_json::to_vec(&search_tools)?.len();
    // Wait until the upstream serves: a search for a query's answer finds it.
    let probe = queries.first().context("no queries")?;
    let deadline = Instant::now() + Duration::from_secs(60);
    let first_search = loop {
        let started = Instant::now();
        let found = search(&on, &probe.query).await?;
        let elapsed = started.elapsed();
        if !found.is_empty() {
            break elapsed;
        }
        if Instant::now() > deadline {
            bail!("Portcullis found nothing for `{}` after 60 s", probe.query);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };

    let mut latencies = Vec::new();
    let mut found_at_1 = 0;
    let mut found_at_5 = 0;
    let mut result_bytes = 0;
    let mut misses = Vec::new();
    for round in 0..rounds.max(1) {
        for query in &queries {
            let started = Instant::now();
            let (found, bytes) = search_sized(&on, &query.query).await?;
            latencies.push(started.elapsed());
            if round > 0 {
                continue;
            }
            result_bytes += bytes;
            let hit = |name: &String| {
                query
                    .answers
                    .iter()
                    .any(|answer| *name == format!("{UPSTREAM}.{answer}"))
            };
            found_at_1 += usize::from(found.first().is_some_and(hit));
            if found.iter().take(LIMIT).any(hit) {
                found_at_5 += 1;
            } else {
                misses.push((query.query.clone(), found));
            }
        }
    }
    latencies.sort_unstable();
    let mut echoes = Vec::with_capacity(ECHO_CALLS);
    for _ in 0..ECHO_CALLS {
        let started = Instant::now();
        let arguments = json!({"text": "x"})
            .as_object()
            .cloned()
            .unwrap_or_default();
        on.call_tool(
            CallToolRequestParams::new(format!("{UPSTREAM}.echo")).with_arguments(arguments),
        )
        .await?;
        echoes.push(started.elapsed());
    }
    echoes.sort_unstable();
    on.cancel().await.ok();
    Ok(SearchFigures {
        catalog_tools,
        listed_off: listed.len(),
        list_bytes_off,
        listed_on: search_tools.len(),
        list_bytes_on,
        queries: queries.len(),
        found_at_1,
        found_at_5,
        result_bytes_mean: result_bytes / queries.len().max(1),
        first_search,
        searches: latencies.len(),
        search_p50: percentile(&latencies, 0.50),
        search_p99: percentile(&latencies, 0.99),
        echo_p50: percentile(&echoes, 0.50),
        echo_p99: percentile(&echoes, 0.99),
        misses,
    })
}

fn read_json(file: &Path) -> anyhow::Result<Value> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("cannot read `{}`", file.display()))?;
    serde_json::from_str(&text).with_context(|| format!("`{}` is not JSON", file.display()))
}

fn read_queries(file: &Path) -> anyhow::Result<Vec<Query>> {
    let queries = read_json(file)?;
    let queries = queries
        .get("queries")
        .and_then(Value::as_array)
        .with_context(|| format!("`{}` has no `queries` list", file.display()))?;
    Ok(queries
        .iter()
        .map(|query| Query {
            query: query
                .get("query")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            answers: query
                .get("answers")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|answer| answer.as_str().map(str::to_owned))
                .collect(),
        })
        .collect())
}

/// Portcullis over stdio with the fixture serving `catalog` as its one upstream.
async fn start(
    binaries: &Binaries,
    scratch: &Path,
    catalog: &Path,
    mode: &str,
) -> anyhow::Result<RunningService<RoleClient, ()>> {
    let dir = scratch.join(mode);
    let work = dir.join("upstream");
    std::fs::create_dir_all(&work)?;
    let command = [
        binaries.fixture.display().to_string(),
        "--scratch".to_owned(),
        work.display().to_string(),
        "--catalog".to_owned(),
        catalog.display().to_string(),
    ]
    .iter()
    .map(|arg| toml_string(arg))
    .collect::<anyhow::Result<Vec<_>>>()?;
    let config = dir.join("portcullis.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\ntool_search = {}\n\n[[upstream]]\nname = \"{UPSTREAM}\"\ncommand = [{}]\nroots = [{}]\ntrusted = true\ntools.echo = {{ effect = \"read\" }}\n",
            toml_string(mode)?,
            command.join(", "),
            toml_string(&work.display().to_string())?,
        ),
    )?;
    let mut portcullis = tokio::process::Command::new(&binaries.portcullis);
    portcullis.arg("serve").arg("--config").arg(&config);
    Ok(spawn_stdio(portcullis, &binaries.portcullis).await?.0)
}

/// Lists until the whole catalog is there (the upstream has started); the tools listed.
async fn wait_for_catalog(
    client: &RunningService<RoleClient, ()>,
    catalog_tools: usize,
) -> anyhow::Result<Vec<rmcp::model::Tool>> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let tools = client.list_all_tools().await?;
        if tools.len() >= catalog_tools {
            return Ok(tools);
        }
        if Instant::now() > deadline {
            bail!(
                "Portcullis listed {} of {catalog_tools} tools after 60 s",
                tools.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn search(
    client: &RunningService<RoleClient, ()>,
    query: &str,
) -> anyhow::Result<Vec<String>> {
    Ok(search_sized(client, query).await?.0)
}

/// The names a search found, best first, and the size of its result's text.
async fn search_sized(
    client: &RunningService<RoleClient, ()>,
    query: &str,
) -> anyhow::Result<(Vec<String>, usize)> {
    let arguments = json!({"query": query, "limit": LIMIT});
    let result = client
        .call_tool(
            CallToolRequestParams::new("portcullis.search_tools")
                .with_arguments(arguments.as_object().cloned().unwrap_or_default()),
        )
        .await?;
    let text: String = result
        .content
        .iter()
        .filter_map(|block| block.as_text().map(|t| t.text.clone()))
        .collect();
    let found: Value = serde_json::from_str(&text).context("a search answered no JSON")?;
    let names = found
        .get("tools")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|tool| tool.get("name").and_then(Value::as_str).map(str::to_owned))
        .collect();
    Ok((names, text.len()))
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}

impl SearchFigures {
    pub(crate) fn table(&self) -> String {
        let tokens = |bytes: usize| bytes / 4;
        let share = |n: usize| 100.0 * n as f64 / self.queries.max(1) as f64;
        let mut out = format!(
            "\n| tools/list | tools | bytes | tokens (bytes / 4) |\n| --- | --- | --- | --- |\n\
             | tool_search = \"off\" | {} | {} | {} |\n\
             | tool_search = \"on\" | {} | {} | {} |\n\
             | one search result (mean, limit {LIMIT}) | | {} | {} |\n",
            self.listed_off,
            self.list_bytes_off,
            tokens(self.list_bytes_off),
            self.listed_on,
            self.list_bytes_on,
            tokens(self.list_bytes_on),
            self.result_bytes_mean,
            tokens(self.result_bytes_mean),
        );
        out.push_str(&format!(
            "\n| catalog | queries | recall@1 | recall@5 |\n| --- | --- | --- | --- |\n\
             | {} tools | {} | {:.0} % ({}) | {:.0} % ({}) |\n",
            self.catalog_tools,
            self.queries,
            share(self.found_at_1),
            self.found_at_1,
            share(self.found_at_5),
            self.found_at_5,
        ));
        out.push_str(&format!(
            "\n| latency (client round trip, stdio) | calls | p50 | p99 |\n| --- | --- | --- | --- |\n\
             | portcullis.search_tools | {} | {:.2} ms | {:.2} ms |\n\
             | first search (builds the index) | 1 | {:.2} ms | |\n\
             | tools/call `echo` (reference) | {ECHO_CALLS} | {:.2} ms | {:.2} ms |\n",
            self.searches,
            ms(self.search_p50),
            ms(self.search_p99),
            ms(self.first_search),
            ms(self.echo_p50),
            ms(self.echo_p99),
        ));
        if !self.misses.is_empty() {
            out.push_str("\nNot found in the first 5:\n");
            for (query, found) in &self.misses {
                out.push_str(&format!("- `{query}`: {}\n", found.join(", ")));
            }
        }
        out
    }

    pub(crate) fn json(&self) -> Value {
        json!({
            "catalog_tools": self.catalog_tools,
            "listed_off": self.listed_off,
            "list_bytes_off": self.list_bytes_off,
            "listed_on": self.listed_on,
            "list_bytes_on": self.list_bytes_on,
            "queries": self.queries,
            "found_at_1": self.found_at_1,
            "found_at_5": self.found_at_5,
            "result_bytes_mean": self.result_bytes_mean,
            "first_search_ms": ms(self.first_search),
            "searches": self.searches,
            "search_p50_ms": ms(self.search_p50),
            "search_p99_ms": ms(self.search_p99),
            "echo_p50_ms": ms(self.echo_p50),
            "echo_p99_ms": ms(self.echo_p99),
            "misses": self.misses.iter().map(|(query, _)| query).collect::<Vec<_>>(),
        })
    }
}
