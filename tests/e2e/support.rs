//! The harness: real processes (Portcullis, official MCP clients and servers, our fixture) with
//! scratch directories, loopback ports, bounded waits, and clean-up on drop.
#![allow(
    dead_code,
    reason = "helpers are shared by test modules that each use a subset"
)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The longest any single client driver run may take before the test fails.
pub const DRIVER_TIMEOUT: Duration = Duration::from_secs(90);

pub fn repo_root() -> PathBuf {
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
pub fn bin(name: &str) -> PathBuf {
    let path = target_dir().join("debug").join(name);
    assert!(
        path.is_file(),
        "`{}` is missing: run `cargo build --workspace` first (scripts/test.sh does)",
        path.display()
    );
    path
}

/// A file installed by `scripts/setup.sh` under `tests/node/node_modules`.
pub fn node_module(path: &str) -> PathBuf {
    let full = repo_root().join("tests/node/node_modules").join(path);
    assert!(
        full.exists(),
        "`{}` is missing: run scripts/setup.sh",
        full.display()
    );
    full
}

pub fn everything_server() -> Vec<String> {
    vec![
        "node".into(),
        node_module("@modelcontextprotocol/server-everything/dist/index.js")
            .display()
            .to_string(),
        "stdio".into(),
    ]
}

pub fn filesystem_server(root: &Path) -> Vec<String> {
    vec![
        "node".into(),
        node_module("@modelcontextprotocol/server-filesystem/dist/index.js")
            .display()
            .to_string(),
        root.display().to_string(),
    ]
}

pub fn fixture_server(scratch: &Path, extra: &[&str]) -> Vec<String> {
    let mut argv = vec![
        bin("portcullis-fixture").display().to_string(),
        "--scratch".into(),
        scratch.display().to_string(),
    ];
    argv.extend(extra.iter().map(|s| (*s).to_owned()));
    argv
}

/// A TOML array of strings.
pub fn toml_array(items: &[String]) -> String {
    let quoted: Vec<String> = items
        .iter()
        .map(|s| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\"")))
        .collect();
    format!("[{}]", quoted.join(", "))
}

/// A scratch directory with a config in it.
pub struct Scratch {
    pub dir: tempfile::TempDir,
}

impl Scratch {
    pub fn new() -> Self {
        Self {
            dir: tempfile::Builder::new()
                .prefix("portcullis-e2e-")
                .tempdir()
                .unwrap_or_else(|e| panic!("cannot create a temp dir: {e}")),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A subdirectory, created.
    pub fn sub(&self, name: &str) -> PathBuf {
        let path = self.path().join(name);
        std::fs::create_dir_all(&path).unwrap_or_else(|e| panic!("mkdir {name}: {e}"));
        path
    }

    pub fn config(&self, body: &str) -> PathBuf {
        let path = self.path().join("portcullis.toml");
        std::fs::write(&path, body).unwrap_or_else(|e| panic!("write config: {e}"));
        path
    }
}

/// A running `portcullis serve --listen` process; killed on drop. Its stderr is kept.
pub struct Portcullis {
    child: Child,
    pub url: String,
    pub port: u16,
    log: Arc<Mutex<String>>,
}

impl Portcullis {
    /// Starts Portcullis on a free loopback port and waits until it serves.
    pub fn http(config: &Path) -> Self {
        Self::http_with_env(config, &[])
    }

    pub fn http_with_env(config: &Path, env: &[(&str, &str)]) -> Self {
        let mut child = Command::new(bin("portcullis"))
            .args(["serve", "--config"])
            .arg(config)
            .args(["--listen", "127.0.0.1:0"])
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

    pub fn log(&self) -> String {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Waits until the log contains `needle`, up to `limit`.
    pub fn wait_for_log(&self, needle: &str, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if self.log().contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }
}

impl Drop for Portcullis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The command that runs Portcullis over stdio with `config`, for a client to launch.
pub fn portcullis_stdio(config: &Path) -> Vec<String> {
    vec![
        bin("portcullis").display().to_string(),
        "serve".into(),
        "--config".into(),
        config.display().to_string(),
    ]
}

/// Where a client driver connects.
pub enum Target<'a> {
    Http(&'a str),
    Stdio(&'a [String]),
}

fn run_driver(mut command: Command, target: &Target<'_>, args: &[&str]) -> Value {
    command.args(args);
    match target {
        Target::Http(url) => {
            command.args(["--http", url]);
        }
        Target::Stdio(argv) => {
            command.arg("--stdio").arg("--").args(argv.iter());
        }
    }
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start the client driver: {e}"));
    let mut stdout = child.stdout.take().unwrap_or_else(|| panic!("no stdout"));
    let mut stderr = child.stderr.take().unwrap_or_else(|| panic!("no stderr"));
    let out_thread = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let err_thread = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let deadline = Instant::now() + DRIVER_TIMEOUT;
    let status = loop {
        if let Ok(Some(status)) = child.try_wait() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("client driver {args:?} did not finish within {DRIVER_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let out = out_thread.join().unwrap_or_default();
    let err = err_thread.join().unwrap_or_default();
    assert!(
        status.success(),
        "client driver {args:?} failed ({status}):\nstdout: {out}\nstderr: {err}"
    );
    serde_json::from_str(out.trim()).unwrap_or_else(|e| {
        panic!("client driver {args:?} printed no JSON ({e}):\nstdout: {out}\nstderr: {err}")
    })
}

/// Runs the official TypeScript SDK client driver and returns its observations.
pub fn ts_client(target: &Target<'_>, args: &[&str]) -> Value {
    let mut command = Command::new("node");
    command.arg(repo_root().join("tests/node/client.mjs"));
    run_driver(command, target, args)
}

/// Runs the official Python SDK client driver and returns its observations.
pub fn py_client(target: &Target<'_>, args: &[&str]) -> Value {
    let python = repo_root().join(".venv/bin/python");
    assert!(
        python.is_file(),
        "the Python venv is missing: run scripts/setup.sh"
    );
    let mut command = Command::new(python);
    command.arg(repo_root().join("tests/py/client.py"));
    run_driver(command, target, args)
}

/// Names in a list of objects with a `name` field.
pub fn names(list: &Value) -> Vec<String> {
    list.as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|item| item.get("name").and_then(Value::as_str).map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// All text in a tool result's content.
pub fn result_text(result: &Value) -> String {
    result
        .get("content")
        .and_then(Value::as_array)
        .map(|blocks| {
            blocks
                .iter()
                .filter_map(|b| b.get("text").and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default()
}

/// Sends one raw HTTP request to loopback and returns the status code.
pub fn raw_http_status(port: u16, request: &str) -> u16 {
    let mut stream = TcpStream::connect(("127.0.0.1", port))
        .unwrap_or_else(|e| panic!("cannot connect to 127.0.0.1:{port}: {e}"));
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    stream
        .write_all(request.as_bytes())
        .unwrap_or_else(|e| panic!("cannot send: {e}"));
    let mut first = String::new();
    let _ = BufReader::new(stream).read_line(&mut first);
    first
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status line in `{first}`"))
}
