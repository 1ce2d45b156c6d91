//! Listing a large catalog (the fixture with `--extra-tools N`) a page at a time, directly and
//! through Portcullis under a policy that hides half of it: the first complete listing after
//! start, then repeated ones, and a first page alone.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use rmcp::RoleClient;
use rmcp::service::RunningService;

use crate::route::{Binaries, spawn_stdio, toml_string};

/// The shipped schema, which the policy below is checked against.
const SCHEMA: &str = include_str!("../../../config/portcullis.cedarschema");

/// Every tool is listed but those whose name ends in an odd digit: half of `extra_0` ..
/// `extra_{N-1}` (and of no fixture tool, whose names end in letters).
const POLICY: &str = r#"
@id("list-tools")
permit (principal, action == Portcullis::Action::"list_tool", resource);

@id("hide-the-odd")
forbid (principal, action == Portcullis::Action::"list_tool", resource)
when {
  resource.name like "*1" || resource.name like "*3" || resource.name like "*5" ||
  resource.name like "*7" || resource.name like "*9"
};
"#;

/// Medians of the repeated listings, in milliseconds, and what each listing held.
pub(crate) struct ListFigures {
    pub tools: usize,
    pub direct_listed: usize,
    pub through_listed: usize,
    pub direct_all_ms: f64,
    pub through_cold_all_ms: f64,
    pub through_all_ms: f64,
    pub through_first_page_ms: f64,
}

pub(crate) async fn measure_list(
    binaries: &Binaries,
    tools: usize,
    repetitions: usize,
) -> anyhow::Result<ListFigures> {
    let scratch = tempfile::tempdir().context("cannot make a scratch directory")?;
    let work = scratch.path().join("upstream");
    std::fs::create_dir_all(&work)?;
    let extra = tools.to_string();
    let fixture_args = [
        "--scratch",
        &work.display().to_string(),
        "--extra-tools",
        &extra,
    ]
    .map(str::to_owned);

    let mut direct = tokio::process::Command::new(&binaries.fixture);
    direct.args(&fixture_args);
    let (direct, _) = spawn_stdio(direct, &binaries.fixture).await?;

    let config = write_config(scratch.path(), binaries, (&work, &fixture_args))?;
    let mut through = tokio::process::Command::new(&binaries.portcullis);
    through.arg("serve").arg("--config").arg(&config);
    let (through, _) = spawn_stdio(through, &binaries.portcullis).await?;

    let direct_listed = direct.list_all_tools().await?.len();
    // The first complete listing after start: every decision is made here. Earlier ones,
    // while the upstream still starts, list less (and are decided against another catalog).
    let expected = tools / 2 + (direct_listed - tools);
    let deadline = Instant::now() + Duration::from_secs(60);
    let (cold, through_listed) = loop {
        let (elapsed, listed) = timed_all(&through).await?;
        if listed >= expected {
            break (elapsed, listed);
        }
        if Instant::now() > deadline {
            bail!("Portcullis listed {listed} of {expected} tools after 60 s");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let mut direct_all = Vec::new();
    let mut through_all = Vec::new();
    let mut first_page = Vec::new();
    for _ in 0..repetitions {
        direct_all.push(timed_all(&direct).await?.0);
        through_all.push(timed_all(&through).await?.0);
        let started = Instant::now();
        through.list_tools(None).await?;
        first_page.push(started.elapsed());
    }
    direct.cancel().await.ok();
    through.cancel().await.ok();
    Ok(ListFigures {
        tools,
        direct_listed,
        through_listed,
        direct_all_ms: median_ms(direct_all),
        through_cold_all_ms: cold.as_secs_f64() * 1e3,
        through_all_ms: median_ms(through_all),
        through_first_page_ms: median_ms(first_page),
    })
}

async fn timed_all(client: &RunningService<RoleClient, ()>) -> anyhow::Result<(Duration, usize)> {
    let started = Instant::now();
    let listed = client.list_all_tools().await?.len();
    Ok((started.elapsed(), listed))
}

fn median_ms(mut samples: Vec<Duration>) -> f64 {
    samples.sort();
    samples
        .get(samples.len() / 2)
        .map_or(0.0, |median| median.as_secs_f64() * 1e3)
}

fn write_config(
    scratch: &Path,
    binaries: &Binaries,
    (work, fixture_args): (&Path, &[String]),
) -> anyhow::Result<std::path::PathBuf> {
    std::fs::write(scratch.join("schema.cedarschema"), SCHEMA)?;
    std::fs::write(scratch.join("list.cedar"), POLICY)?;
    let mut command = vec![toml_string(&binaries.fixture.display().to_string())?];
    for arg in fixture_args {
        command.push(toml_string(arg)?);
    }
    let work = toml_string(&work.display().to_string())?;
    let config = scratch.join("portcullis-list.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nnamespacing = \"passthrough\"\n\n[policy]\nschema = \"schema.cedarschema\"\npolicies = [\"list.cedar\"]\n\n\
             [[upstream]]\nname = \"fixture\"\ncommand = [{}]\nroots = [{work}]\n",
            command.join(", ")
        ),
    )?;
    Ok(config)
}

impl ListFigures {
    pub(crate) fn table(&self) -> String {
        format!(
            "\n| tools upstream | listed direct | listed through Portcullis | direct, all pages | through, first complete listing | through, all pages (again) | through, first page |\n\
             | --- | --- | --- | --- | --- | --- | --- |\n\
             | {} | {} | {} | {:.1} ms | {:.1} ms | {:.1} ms | {:.2} ms |\n",
            self.tools,
            self.direct_listed,
            self.through_listed,
            self.direct_all_ms,
            self.through_cold_all_ms,
            self.through_all_ms,
            self.through_first_page_ms
        )
    }
}

impl ListFigures {
    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "tools": self.tools,
            "direct_listed": self.direct_listed,
            "through_listed": self.through_listed,
            "direct_all_ms": self.direct_all_ms,
            "through_cold_all_ms": self.through_cold_all_ms,
            "through_all_ms": self.through_all_ms,
            "through_first_page_ms": self.through_first_page_ms,
        })
    }
}
