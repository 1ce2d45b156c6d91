//! `portcullis secret set NAME`, and the lookup that makes a stored secret reach an upstream:
//! the variables an upstream inherits (`inherit_env`) or sends as a header (`headers`) are
//! read from Portcullis's environment, else from the secrets stored in the config's encrypted
//! credential store (`[credentials] store`, keyed by `[credentials] key_env`, the same file
//! and key as the delegated grants).

use std::collections::BTreeMap;
use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::process::{Command, Stdio};

use anyhow::{Context as _, bail};
use portcullis_config::{Config, UpstreamTransport, is_env_name};
use portcullis_credentials::{CredentialStore, Secret, store_key};

/// `portcullis secret set`: the value from stdin (without echo on a terminal), never from the
/// command line, where `ps` and the shell's history would show it to others.
pub(crate) fn set(config: &Config, name: &str, extra: &[String]) -> anyhow::Result<()> {
    // INVARIANT: whatever was given beside the name is never echoed: it may be the secret.
    if !extra.is_empty() {
        bail!(
            "`secret set` takes only the variable's name: the value is read from stdin, never from the command line (other users' `ps` and your shell's history would see it); nothing was stored"
        );
    }
    // Not quoted either: `NAME=value` is a likely slip, and the value may be the secret.
    if name.contains('=') {
        bail!(
            "give only the variable's name: the value is read from stdin, never from the command line; nothing was stored"
        );
    }
    if !is_env_name(name) {
        bail!(
            "the name given is not an environment variable name (letters, digits and `_`, not starting with a digit); nothing was stored"
        );
    }
    let value = read_value(name)?;
    let store = open(config)?;
    store
        .put_secret(name, Secret::new(value))
        .with_context(|| format!("cannot store `{name}`"))?;
    eprintln!(
        "portcullis: `{name}` stored encrypted in `{}`; upstreams read it when `{name}` is not in Portcullis's environment",
        store.path().display()
    );
    Ok(())
}

/// One line from stdin, its line ending removed; on a terminal, asked for with echo off.
fn read_value(name: &str) -> anyhow::Result<String> {
    let stdin = std::io::stdin();
    let terminal = stdin.is_terminal();
    if terminal {
        eprint!("value of `{name}` (not shown): ");
        let _ = std::io::stderr().flush();
        echo(false)?;
    }
    let mut line = String::new();
    let read = stdin.lock().read_line(&mut line);
    if terminal {
        let _ = echo(true);
        eprintln!();
    }
    read.context("cannot read the value from stdin")?;
    let value = line
        .strip_suffix('\n')
        .map(|rest| rest.strip_suffix('\r').unwrap_or(rest))
        .unwrap_or(&line);
    if value.is_empty() {
        bail!("no value was given on stdin; nothing was stored");
    }
    Ok(value.to_owned())
}

/// Turns the terminal's echo off or on (`stty`, on the terminal that is stdin).
fn echo(on: bool) -> anyhow::Result<()> {
    let status = Command::new("stty")
        .arg(if on { "echo" } else { "-echo" })
        .stdin(Stdio::inherit())
        .status()
        .context("cannot run `stty` to turn the terminal's echo off")?;
    if !status.success() {
        bail!("`stty` could not turn the terminal's echo off; pipe the value in instead");
    }
    Ok(())
}

/// The config's credential store, opened with the key its `key_env` holds (else its key file).
fn open(config: &Config) -> anyhow::Result<CredentialStore> {
    let variable = &config.credentials.key_env;
    let text = std::env::var(variable).ok();
    let store = &config.credentials.store;
    let key = store_key(store, variable, text.as_deref())?;
    Ok(CredentialStore::open(store, key)?)
}

/// The names config reads from Portcullis's environment for its upstreams: every
/// `inherit_env` name and every header's variable.
fn upstream_variables(config: &Config) -> Vec<String> {
    config
        .upstreams
        .iter()
        .flat_map(|u| match &u.transport {
            UpstreamTransport::Stdio { inherit_env, .. } => inherit_env.clone(),
            UpstreamTransport::Http { remote, .. } => {
                remote.headers.iter().map(|h| h.env.clone()).collect()
            }
        })
        .collect()
}

/// The values of the upstreams' variables: Portcullis's environment first, then the store
/// (opened only when a variable is missing and the store file exists). Values from the store
/// are registered as secrets, so that whatever an upstream sends back is redacted of them.
/// A store that exists but cannot be read is an error: an upstream would start without its
/// secret.
pub(crate) fn upstream_environment(config: &Config) -> anyhow::Result<BTreeMap<String, String>> {
    let mut values = BTreeMap::new();
    let mut missing = Vec::new();
    for name in upstream_variables(config) {
        match std::env::var(&name) {
            Ok(value) => {
                values.insert(name, value);
            }
            Err(_) => missing.push(name),
        }
    }
    if missing.is_empty() || !config.credentials.store.exists() {
        return Ok(values);
    }
    let store = open(config).with_context(|| {
        format!(
            "`{}` is not in the environment, and the secrets stored in `{}` cannot be read",
            missing.join("`, `"),
            config.credentials.store.display()
        )
    })?;
    for name in missing {
        if let Some(secret) = store.secret(&name)? {
            portcullis_gateway::secrets::Secrets::global()
                .register(&format!("the stored secret `{name}`"), secret.expose());
            values.insert(name, secret.expose().to_owned());
        }
    }
    Ok(values)
}
