//! PyPI packages: each version in a virtual environment of its own, made with the Python on
//! Portcullis's PATH and installed with its pip, whose installation report gives the version
//! and the archive's SHA-256.

use std::path::Path;
use std::process::Command;

use portcullis_config::Package;
use serde_json::Value;

use crate::lock::{Locked, Registry};
use crate::run::{field, read_json, run};
use crate::{LaunchError, install_dir};

pub(crate) fn install(
    upstream: &str,
    package: &Package,
    locked: Option<&Locked>,
    packages: &Path,
) -> Result<Locked, LaunchError> {
    let requested = package.requested_or_latest();
    let area = packages.join(Registry::Pypi.name());
    std::fs::create_dir_all(&area).map_err(|error| {
        LaunchError::upstream(
            upstream,
            format!("cannot create {}: {error}", area.display()),
        )
    })?;
    let version = match (locked, &package.requested) {
        (Some(locked), _) => locked.version.clone(),
        (None, Some(version)) => version.clone(),
        (None, None) => latest(upstream, package, &area)?,
    };
    let mut installed = Locked {
        upstream: upstream.to_owned(),
        registry: Registry::Pypi,
        name: package.name.clone(),
        requested: requested.to_owned(),
        version,
        integrity: String::new(),
        entry: format!(
            "bin/{}",
            package.command.as_deref().unwrap_or(&package.name)
        ),
    };
    // What the registry said becomes a path: it must be a plain name.
    if let Some(bad) = crate::lock::unsafe_entry(&installed) {
        return Err(LaunchError::upstream(upstream, bad));
    }
    // A virtual environment holds its own path: it is made where it stays.
    let dir = install_dir(packages, &installed);
    let _ = std::fs::remove_dir_all(&dir);
    let outcome = pip_install(upstream, &installed, &dir).and_then(|integrity| {
        installed.integrity = integrity;
        if !dir.join(&installed.entry).is_file() {
            return Err(LaunchError::upstream(
                upstream,
                format!("PyPI package `{}` installed no command `{}`", installed.name, installed.entry.trim_start_matches("bin/")),
            ));
        }
        match locked {
            Some(locked) if locked.integrity != installed.integrity => Err(LaunchError::upstream(
                upstream,
                format!(
                    "the registry's {}=={} ({}) is not what the lock file recorded ({}): not installed; if the change is expected, delete its entry from the lock file and prepare again",
                    installed.name, installed.version, installed.integrity, locked.integrity
                ),
            )),
            _ => Ok(()),
        }
    });
    if let Err(error) = outcome {
        let _ = std::fs::remove_dir_all(&dir);
        return Err(error);
    }
    Ok(installed)
}

/// A new virtual environment at `dir` with `name==version` installed: the archive's SHA-256.
fn pip_install(upstream: &str, package: &Locked, dir: &Path) -> Result<String, LaunchError> {
    venv(upstream, dir)?;
    let report = dir.join(".portcullis-install.json");
    let spec = format!("{}=={}", package.name, package.version);
    run(
        upstream,
        &format!("pip install {spec}"),
        Command::new(dir.join("bin/python"))
            .args([
                "-m",
                "pip",
                "install",
                "--no-input",
                "--disable-pip-version-check",
                "--quiet",
            ])
            .arg("--report")
            .arg(&report)
            .arg(&spec),
    )?;
    let report = read_json(upstream, &report)?;
    let entry = report_entry(&report, &package.name).ok_or_else(|| {
        LaunchError::upstream(upstream, format!("pip's report does not name {spec}"))
    })?;
    let archive = ["download_info", "archive_info"];
    let sha256 = field(entry, &[archive[0], archive[1], "hashes", "sha256"])
        .or_else(|| {
            field(entry, &[archive[0], archive[1], "hash"])
                .and_then(|h| h.strip_prefix("sha256=").map(str::to_owned))
        })
        .ok_or_else(|| {
            LaunchError::upstream(upstream, format!("pip's report gives no SHA-256 of {spec}"))
        })?;
    Ok(format!("sha256:{sha256}"))
}

/// The newest version pip would install, asked without installing (a dry run in a throwaway
/// environment).
fn latest(upstream: &str, package: &Package, area: &Path) -> Result<String, LaunchError> {
    let scratch = area.join(format!(".resolve-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    let outcome = venv(upstream, &scratch).and_then(|()| {
        let report = scratch.join("report.json");
        run(
            upstream,
            &format!("pip resolving {}", package.name),
            Command::new(scratch.join("bin/python"))
                .args([
                    "-m",
                    "pip",
                    "install",
                    "--dry-run",
                    "--no-input",
                    "--disable-pip-version-check",
                    "--quiet",
                ])
                .arg("--report")
                .arg(&report)
                .arg(&package.name),
        )?;
        let report = read_json(upstream, &report)?;
        report_entry(&report, &package.name)
            .and_then(|entry| field(entry, &["metadata", "version"]))
            .ok_or_else(|| {
                LaunchError::upstream(
                    upstream,
                    format!("pip found no version of `{}`", package.name),
                )
            })
    });
    let _ = std::fs::remove_dir_all(&scratch);
    outcome
}

fn venv(upstream: &str, dir: &Path) -> Result<(), LaunchError> {
    run(
        upstream,
        "making a Python virtual environment",
        Command::new("python3").args(["-m", "venv"]).arg(dir),
    )
    .map(drop)
}

/// The report's entry for `name` (names compared as PyPI normalises them).
fn report_entry<'r>(report: &'r Value, name: &str) -> Option<&'r Value> {
    let normal = |n: &str| n.to_ascii_lowercase().replace(['_', '.'], "-");
    report.get("install")?.as_array()?.iter().find(|entry| {
        field(entry, &["metadata", "name"]).is_some_and(|n| normal(&n) == normal(name))
    })
}
