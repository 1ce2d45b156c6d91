//! `portcullis pins diff` and `pins accept`: the upstreams started as `tools` starts them, each
//! listing compared with its pins (the gateway's `pins` module), what differs printed as the
//! lines of the definitions' JSON that changed, and what a person accepts recorded.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use clap::Subcommand;
use portcullis_config::{Config, Pinning};
use portcullis_core::UpstreamName;
use portcullis_gateway::Gateway;
use portcullis_gateway::pins::{Change, PinBook, Recording, Review, Status};

#[derive(Subcommand)]
pub(crate) enum PinsCommand {
    /// Start the upstreams and show how what each lists differs from its pins: the lines of
    /// each changed definition's JSON (`-` pinned, `+` listed now).
    Diff {
        #[arg(long)]
        config: PathBuf,
        /// Only this upstream.
        upstream: Option<String>,
    },
    /// Start the upstream and record what it lists now as its pins: all its definitions
    /// (`UPSTREAM`) or those named `TOOL` (`UPSTREAM.TOOL`; a prompt or resource template of
    /// that name too). A running `serve` reads the file again and lists them; under shared
    /// state the database's pins are changed, and every replica lists them.
    Accept {
        #[arg(long)]
        config: PathBuf,
        #[arg(value_name = "UPSTREAM[.TOOL]")]
        target: String,
    },
}

pub(crate) fn run(command: PinsCommand) -> anyhow::Result<()> {
    match command {
        PinsCommand::Diff { config, upstream } => diff(&config, upstream.as_deref()),
        PinsCommand::Accept { config, target } => accept(&config, &target),
    }
}

fn diff(path: &Path, only: Option<&str>) -> anyhow::Result<()> {
    let config = super::launched(path, super::Missing::Fail)?;
    if let Some(name) = only {
        configured(&config, name)?;
    }
    with_reviews(&config, |gateway, reviews| {
        println!("pins: {}", gateway.pins().kept_in());
        for (upstream, review) in reviews {
            if only.is_some_and(|name| name != upstream.as_str()) {
                continue;
            }
            match review {
                Err(reason) => println!("{upstream}: unavailable ({reason})"),
                Ok(review) => print_review(&config, &upstream, &review),
            }
        }
        Ok(())
    })
}

fn print_review(config: &Config, upstream: &UpstreamName, review: &Review) {
    if pinning(config, upstream) == Some(Pinning::Off) {
        println!("{upstream}: not pinned (`pinning = \"off\"`)");
        return;
    }
    if review.changes.is_empty() {
        println!(
            "{upstream}: as pinned ({} definitions)",
            review.definitions.len()
        );
        return;
    }
    println!("{upstream}: {} differ from the pins", review.changes.len());
    for change in &review.changes {
        print_change(change);
    }
}

fn print_change(change: &Change) {
    let state = match (change.status, change.quarantined) {
        (Status::Removed, _) => "no longer listed",
        (_, true) => "quarantined until accepted",
        (Status::Unpinned, false) => "never pinned; `serve` pins it at first sight under tofu",
        (_, false) => "listed",
    };
    println!(
        "  {} `{}`: {} ({state})",
        change.kind.as_str(),
        change.name,
        change.status.as_str()
    );
    if let Some(pin) = &change.pinned {
        println!("    pinned {}", pin.digest);
    }
    if let Some(pin) = &change.listed {
        println!("    listed {}", pin.digest);
    }
    for line in change.diff().lines() {
        println!("    {line}");
    }
}

fn accept(path: &Path, target: &str) -> anyhow::Result<()> {
    let config = super::launched(path, super::Missing::Fail)?;
    let (upstream, name) = match target.split_once('.') {
        Some((upstream, name)) => (upstream, Some(name)),
        None => (target, None),
    };
    let upstream = configured(&config, upstream)?;
    if pinning(&config, &upstream) == Some(Pinning::Off) {
        bail!("pinning is off for upstream `{upstream}`; there is nothing to accept");
    }
    with_reviews(&config, |gateway, reviews| {
        let review = reviews
            .into_iter()
            .find(|(name, _)| *name == upstream)
            .map(|(_, review)| review)
            .context("the upstream was not started")?
            .map_err(|reason| {
                anyhow::anyhow!(
                    "upstream `{upstream}` is not running ({reason}); nothing was accepted"
                )
            })?;
        let accepted = gateway
            .pins()
            .accept(&upstream, name, &review.definitions)?;
        if accepted.is_empty() {
            bail!("`{target}` is neither listed by `{upstream}` nor pinned; nothing was accepted");
        }
        for (kind, local) in accepted {
            let listed = review.definitions.contains_key(&(kind, local.clone()));
            let what = if listed {
                "pinned"
            } else {
                "unpinned (no longer listed)"
            };
            println!("{upstream}: {} `{local}` {what}", kind.as_str());
        }
        println!("recorded in {}", gateway.pins().kept_in());
        Ok(())
    })
}

/// Starts the upstreams (as `portcullis tools` does; nothing is pinned by listing), hands
/// each one's review to `then`, and stops them. Under shared state (`[state] backend =
/// "postgres"`) the pins compared with and accepted are the database's, which every replica
/// serves.
fn with_reviews(
    config: &Config,
    then: impl FnOnce(&Gateway, Vec<(UpstreamName, Result<Review, String>)>) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let engine = super::policy(config)?;
    let pins = PinBook::open(&config.file, Recording::Never)?;
    super::runtime()?.block_on(async move {
        let pins = super::shared_pins(config, pins).await?;
        let (gateway, shutdown) = super::start_to_look_with(config, engine, pins).await?;
        let outcome = then(&gateway, gateway.pin_reviews());
        shutdown.cancel();
        gateway.stop(std::time::Duration::from_secs(5)).await;
        outcome
    })
}

fn configured(config: &Config, name: &str) -> anyhow::Result<UpstreamName> {
    config
        .upstreams
        .iter()
        .find(|upstream| upstream.name.as_str() == name)
        .map(|upstream| upstream.name.clone())
        .with_context(|| format!("no upstream `{name}` in the configuration"))
}

fn pinning(config: &Config, name: &UpstreamName) -> Option<Pinning> {
    config
        .upstreams
        .iter()
        .find(|upstream| &upstream.name == name)
        .map(|upstream| upstream.pinning)
}
