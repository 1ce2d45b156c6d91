//! `[state]`: where the state several replicas must share lives: this process (`local`, the
//! default) or a PostgreSQL database (`postgres`) whose connection string config names only
//! by the environment variable that holds it (it carries a password), and the certificate
//! authority that signed the database's certificate when it is not one the system trusts.

use std::path::{Path, PathBuf};

use serde_spanned::Spanned;

use crate::checks::is_env_name;
use crate::error::Reporter;
use crate::raw::RawState;

/// Where shared state lives.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum StateBackend {
    /// In this process and in files beside the evidence log: one replica.
    #[default]
    Local,
    /// In PostgreSQL, shared by every replica that names the same database.
    Postgres {
        /// The environment variable holding the connection string.
        url_env: String,
        /// A PEM file of the certificate authority that signed the database server's
        /// certificate, trusted beside the system's roots (the connection string must then
        /// ask for TLS: `sslmode=require`). Resolved against the config's directory.
        ca_file: Option<PathBuf>,
    },
}

/// `[state]`, checked against `[server] state_key_env` (`has_state_key`): replicas must seal
/// `requestState` with one key, or a retry reaching another replica would be refused.
pub(crate) fn state_backend(
    report: &mut Reporter<'_>,
    raw: Option<&Spanned<RawState>>,
    has_state_key: bool,
    base_dir: &Path,
) -> StateBackend {
    let Some(spanned) = raw else {
        return StateBackend::Local;
    };
    let raw = spanned.get_ref();
    let backend = raw.backend.as_ref();
    match backend.map(|b| b.get_ref().as_str()) {
        None | Some("local") => {
            if let Some(url_env) = &raw.url_env {
                report.at(
                    Some(url_env.span()),
                    "`url_env` names the database of `backend = \"postgres\"`; the local backend has none: remove it, or set `backend = \"postgres\"`",
                );
            }
            if let Some(ca_file) = &raw.ca_file {
                report.at(
                    Some(ca_file.span()),
                    "`ca_file` is for the database of `backend = \"postgres\"`; the local backend has none: remove it, or set `backend = \"postgres\"`",
                );
            }
            StateBackend::Local
        }
        Some("postgres") => {
            if !has_state_key {
                report.at(
                    Some(spanned.span()),
                    "replicas sharing state in postgres must seal `requestState` with one key: set `[server] state_key_env` to the variable holding it (at least 32 bytes), the same on every replica",
                );
            }
            match &raw.url_env {
                None => {
                    report.at(
                        Some(spanned.span()),
                        "`backend = \"postgres\"` needs `url_env`, the environment variable holding the connection string (`postgres://USER:PASSWORD@HOST:PORT/DATABASE`)",
                    );
                    StateBackend::Local
                }
                // Not echoed: what stands here instead of a name is likely the connection
                // string itself, password and all.
                Some(name) if !is_env_name(name.get_ref()) => {
                    report.at(
                        Some(name.span()),
                        "`url_env` is not an environment variable name (its value is not shown: it may be a connection string); put the connection string in a variable and name that variable here",
                    );
                    StateBackend::Local
                }
                Some(name) => StateBackend::Postgres {
                    url_env: name.get_ref().clone(),
                    ca_file: ca_file(report, raw.ca_file.as_ref(), base_dir),
                },
            }
        }
        Some(other) => {
            report.at(
                backend.map(Spanned::span),
                format!("unknown state backend `{other}`; use `local` or `postgres`"),
            );
            StateBackend::Local
        }
    }
}

/// `ca_file`, resolved against the config's directory; an empty one is refused.
fn ca_file(
    report: &mut Reporter<'_>,
    raw: Option<&Spanned<String>>,
    base_dir: &Path,
) -> Option<PathBuf> {
    let file = raw?;
    if file.get_ref().trim().is_empty() {
        report.at(
            Some(file.span()),
            "`ca_file` is empty; give the path of a PEM file holding the certificate authority that signed the database's certificate",
        );
        return None;
    }
    Some(base_dir.join(file.get_ref()))
}
