//! The harness: real processes (Portcullis, official MCP clients and servers, our fixture) with
//! scratch directories, loopback ports, bounded waits, and clean-up on drop.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

mod clients;
mod config;

pub(crate) use clients::*;
pub(crate) use config::*;
pub(crate) use portcullis_test_support::HaProxy;
/// Shared with the unit tests' servers (`portcullis-test-support`).
pub(crate) use portcullis_test_support::{free_port, wait_until};

/// The longest any single client driver run may take before the test fails.
pub(crate) const DRIVER_TIMEOUT: Duration = Duration::from_secs(90);

pub(crate) fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"))
}

/// A workspace binary, built by `cargo build --workspace` before the tests run.
pub(crate) fn bin(name: &str) -> PathBuf {
    let path = target_dir().join("debug").join(name);
    assert!(
        path.is_file(),
        "`{}` is missing: run `cargo build --workspace` first (scripts/test.sh does)",
        path.display()
    );
    path
}

/// A file installed by `scripts/setup.sh` under `tests/node/node_modules`.
pub(crate) fn node_module(path: &str) -> PathBuf {
    let full = repo_root().join("tests/node/node_modules").join(path);
    assert!(
        full.exists(),
        "`{}` is missing: run scripts/setup.sh",
        full.display()
    );
    full
}

/// A scratch directory with a config in it.
pub(crate) struct Scratch {
    pub dir: tempfile::TempDir,
}

impl Scratch {
    pub(crate) fn new() -> Self {
        Self {
            dir: tempfile::Builder::new()
                .prefix("portcullis-e2e-")
                .tempdir()
                .unwrap_or_else(|e| panic!("cannot create a temp dir: {e}")),
        }
    }

    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A subdirectory, created.
    pub(crate) fn sub(&self, name: &str) -> PathBuf {
        let path = self.path().join(name);
        std::fs::create_dir_all(&path).unwrap_or_else(|e| panic!("mkdir {name}: {e}"));
        path
    }

    /// Writes `portcullis.toml`: a [`Config`], or raw text where the text is the test's data.
    pub(crate) fn config(&self, config: impl std::fmt::Display) -> PathBuf {
        let path = self.path().join("portcullis.toml");
        std::fs::write(&path, config.to_string()).unwrap_or_else(|e| panic!("write config: {e}"));
        path
    }
}

/// A running `portcullis serve --listen` process; killed on drop. Its stderr is kept.
pub(crate) struct Portcullis {
    child: Child,
    pub url: String,
    pub port: u16,
    log: Arc<Mutex<String>>,
}

impl Portcullis {
    /// Starts Portcullis on a free loopback port and waits until it serves.
    pub(crate) fn http(config: &Path) -> Self {
        Self::http_with_env(config, &[])
    }

    pub(crate) fn http_with_env(config: &Path, env: &[(&str, &str)]) -> Self {
        Self::http_on(config, "127.0.0.1:0", env)
    }

    /// Starts Portcullis on `listen` (e.g. a port chosen with [`free_port`]).
    pub(crate) fn http_on(config: &Path, listen: &str, env: &[(&str, &str)]) -> Self {
        // This process's own HTTP clients (rmcp's reqwest) need a TLS crypto provider: the
        // workspace build turns on reqwest's provider-free rustls, for Portcullis's https
        // upstreams. Installed once; a second install is refused and harmless.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut child = Command::new(bin("portcullis"))
            .args(["serve", "--config"])
            .arg(config)
            .args(["--listen", listen])
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start portcullis: {e}"));
        let stderr = child.stderr.take().unwrap_or_else(|| panic!("no stderr"));
        let log = Arc::new(Mutex::new(String::new()));
        let (url_tx, url_rx) = std::sync::mpsc::channel();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("portcullis: serving MCP on ") {
                    let _ = url_tx.send(url.trim().to_owned());
                }
                if let Ok(mut log) = sink.lock() {
                    log.push_str(&line);
                    log.push('\n');
                }
            }
        });
        let url = match url_rx.recv_timeout(Duration::from_secs(60)) {
            Ok(url) => url,
            Err(_) => {
                let _ = child.kill();
                let log = log.lock().map(|l| l.clone()).unwrap_or_default();
                panic!("portcullis did not start serving within 60s; its log:\n{log}");
            }
        };
        let port = url
            .rsplit_once(':')
            .and_then(|(_, rest)| rest.split('/').next()?.parse().ok())
            .unwrap_or_else(|| panic!("no port in `{url}`"));
        Self {
            child,
            url,
            port,
            log,
        }
    }

    pub(crate) fn log(&self) -> String {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// The process id, for tests that check nothing else could signal it.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Ends the process with SIGKILL: no shutdown code runs.
    pub(crate) fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Ends the process with SIGTERM, as a service manager would, and waits (at most 20 s)
    /// for it to exit; true when it exited successfully.
    pub(crate) fn terminate(&mut self) -> bool {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// Waits until the log contains `needle`, up to `limit`.
    pub(crate) fn wait_for_log(&self, needle: &str, limit: Duration) -> bool {
        wait_until(limit, || self.log().contains(needle))
    }
}

impl Drop for Portcullis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A real OpenID provider (npm `oidc-provider`, driven by `tests/node/oidc.mjs`) on loopback,
/// with the tokens it issued; stopped when dropped (its stdin closes).
pub(crate) struct OpenIdProvider {
    child: Child,
    pub issuer: String,
    tokens: Value,
    /// Everything the provider printed when it was ready (`tests/node/README.md`).
    pub ready: Value,
}

impl OpenIdProvider {
    /// Starts the provider; its tokens are for `resource`.
    pub(crate) fn start(resource: &str) -> Self {
        Self::start_with(resource, &[])
    }

    /// Starts the provider with `extra` flags (e.g. its upstream mode).
    pub(crate) fn start_with(resource: &str, extra: &[&str]) -> Self {
        let node = node_module("node/bin/node");
        let mut child = Command::new(node)
            .arg(repo_root().join("tests/node/oidc.mjs"))
            .args(["--resource", resource, "--lifetime-secs", "180"])
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start the OpenID provider: {e}"));
        let stdout = child.stdout.take().unwrap_or_else(|| panic!("no stdout"));
        let (line_tx, line_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = line_tx.send(line);
        });
        let line = line_rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("the OpenID provider printed no tokens within 60s"));
        let ready: Value = serde_json::from_str(line.trim())
            .unwrap_or_else(|e| panic!("the OpenID provider printed `{line}`: {e}"));
        Self {
            child,
            issuer: ready["issuer"].as_str().unwrap_or_default().to_owned(),
            tokens: ready["tokens"].clone(),
            ready,
        }
    }

    /// One of the tokens `tests/node/oidc.mjs` documents (`alice`, `bob`, `expired`, ...).
    pub(crate) fn token(&self, name: &str) -> String {
        self.tokens[name]
            .as_str()
            .unwrap_or_else(|| panic!("the provider issued no `{name}` token"))
            .to_owned()
    }
}

impl Drop for OpenIdProvider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `portcullis ARGS --config CONFIG` to its end: whether it succeeded, its stdout and its
/// stderr.
pub(crate) fn portcullis(args: &[&str], config: &Path) -> (bool, String, String) {
    let output = std::process::Command::new(bin("portcullis"))
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .unwrap_or_else(|e| panic!("cannot run portcullis: {e}"));
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}
