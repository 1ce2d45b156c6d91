//! How the command line becomes concurrency levels and their numbers of calls.

use clap::Parser;

use super::Args;

fn levels(arguments: &[&str]) -> anyhow::Result<Vec<(usize, usize)>> {
    let args =
        Args::try_parse_from(std::iter::once("portcullis-bench").chain(arguments.iter().copied()))?;
    Ok(args
        .levels()?
        .into_iter()
        .map(|level| (level.concurrency, level.calls))
        .collect())
}

#[test]
fn defaults_are_fewer_calls_for_one_caller() -> anyhow::Result<()> {
    assert_eq!(levels(&[])?, vec![(1, 20_000), (32, 50_000)]);
    Ok(())
}

#[test]
fn one_number_of_calls_applies_to_every_level() -> anyhow::Result<()> {
    assert_eq!(
        levels(&["--calls", "300", "--concurrency", "1,4,8"])?,
        vec![(1, 300), (4, 300), (8, 300)]
    );
    Ok(())
}

#[test]
fn a_list_of_calls_pairs_with_the_levels() -> anyhow::Result<()> {
    assert_eq!(levels(&["--calls", "10,20"])?, vec![(1, 10), (32, 20)]);
    assert!(levels(&["--calls", "10,20,30"]).is_err());
    Ok(())
}

#[test]
fn zero_callers_is_refused() {
    assert!(levels(&["--concurrency", "0"]).is_err());
}
