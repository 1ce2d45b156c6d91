//! The clients the tests drive Portcullis with: the official TypeScript and Python SDK
//! clients (through their drivers), and raw HTTP on loopback.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::*;

/// The command that runs Portcullis over stdio with `config`, for a client to launch.
pub(crate) fn portcullis_stdio(config: &Path) -> Vec<String> {
    vec![
        bin("portcullis").display().to_string(),
        "serve".into(),
        "--config".into(),
        config.display().to_string(),
    ]
}

/// Where a client driver connects.
pub(crate) enum Target<'a> {
    Http(&'a str),
    Stdio(&'a [String]),
}

fn run_driver(command: Command, target: &Target<'_>, args: &[&str]) -> Value {
    run_driver_expecting(command, target, args, 0)
}

/// Runs a client driver that must exit with `code` (2: its one request was answered with an
/// error, which its JSON holds).
fn run_driver_expecting(
    mut command: Command,
    target: &Target<'_>,
    args: &[&str],
    code: i32,
) -> Value {
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
        status.code() == Some(code),
        "client driver {args:?} exited with {status}, not {code}:\nstdout: {out}\nstderr: {err}"
    );
    serde_json::from_str(out.trim()).unwrap_or_else(|e| {
        panic!("client driver {args:?} printed no JSON ({e}):\nstdout: {out}\nstderr: {err}")
    })
}

/// Runs the official TypeScript SDK client driver and returns its observations.
pub(crate) fn ts_client(target: &Target<'_>, args: &[&str]) -> Value {
    run_driver(ts_command(), target, args)
}

fn ts_command() -> Command {
    let mut command = Command::new("node");
    command.arg(repo_root().join("tests/node/client.mjs"));
    command
}

/// The TypeScript client when its one request must be answered with an error.
pub(crate) fn ts_client_refused(target: &Target<'_>, args: &[&str]) -> Value {
    run_driver_expecting(ts_command(), target, args, 2)
}

/// The TypeScript client's `call` scenario: one call of `tool` with `args` (JSON).
pub(crate) fn ts_call(target: &Target<'_>, tool: &str, args: &str) -> Value {
    ts_client(
        target,
        &["--scenario", "call", "--tool", tool, "--args", args],
    )
}

/// Runs the official Python SDK client driver and returns its observations.
pub(crate) fn py_client(target: &Target<'_>, args: &[&str]) -> Value {
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
pub(crate) fn names(list: &Value) -> Vec<String> {
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
pub(crate) fn result_text(result: &Value) -> String {
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
pub(crate) fn raw_http_status(port: u16, request: &str) -> u16 {
    raw_http(port, request).0
}

/// Sends one raw HTTP request (which should say `Connection: close`) to loopback and returns
/// the status code and the whole response text, headers and body.
pub(crate) fn raw_http(port: u16, request: &str) -> (u16, String) {
    let stream = TcpStream::connect(("127.0.0.1", port))
        .unwrap_or_else(|e| panic!("cannot connect to 127.0.0.1:{port}: {e}"));
    exchange(stream, request)
}

/// As `raw_http`, from another loopback address (`127.0.0.2`, say): another client, as far as
/// an address can tell.
pub(crate) fn raw_http_from(source: std::net::Ipv4Addr, port: u16, request: &str) -> (u16, String) {
    let stream = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .and_then(|runtime| {
            runtime.block_on(async {
                let socket = tokio::net::TcpSocket::new_v4()?;
                socket.bind((source, 0).into())?;
                let stream = socket
                    .connect((std::net::Ipv4Addr::LOCALHOST, port).into())
                    .await?;
                stream.into_std()
            })
        })
        .unwrap_or_else(|e| panic!("cannot connect from {source} to 127.0.0.1:{port}: {e}"));
    let _ = stream.set_nonblocking(false);
    exchange(stream, request)
}

fn exchange(mut stream: TcpStream, request: &str) -> (u16, String) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    stream
        .write_all(request.as_bytes())
        .unwrap_or_else(|e| panic!("cannot send: {e}"));
    let mut response = String::new();
    let mut reader = BufReader::new(stream);
    let _ = reader.read_line(&mut response);
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status line in `{response}`"));
    let _ = reader.read_to_string(&mut response);
    (status, response)
}

/// A stateless (2026-07-28) `tools/call` over HTTP to `port` (with a bearer `token`, when
/// given), declaring form elicitation; with `state`, the retry answering Portcullis's approval
/// with a yes. The JSON-RPC answer.
pub(crate) fn stateless_call(
    port: u16,
    token: Option<&str>,
    tool: &str,
    arguments: &str,
    state: Option<&str>,
) -> Value {
    try_stateless_call(port, token, tool, arguments, state).unwrap_or_else(|why| panic!("{why}"))
}

/// As [`stateless_call`], but a response that is not a 200 with a JSON-RPC answer (a balancer's
/// 502 when the replica it chose died, say) is an `Err` with the response, not a failed test.
pub(crate) fn try_stateless_call(
    port: u16,
    token: Option<&str>,
    tool: &str,
    arguments: &str,
    state: Option<&str>,
) -> Result<Value, String> {
    let mut params = serde_json::json!({
        "name": tool,
        "arguments": serde_json::from_str::<Value>(arguments).unwrap_or_default(),
        "_meta": {
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientInfo": {"name": "raw", "version": "1"},
            "io.modelcontextprotocol/clientCapabilities": {"elicitation": {"form": {}}},
        },
    });
    if let Some(state) = state {
        params["requestState"] = serde_json::json!(state);
        params["inputResponses"] = serde_json::json!({
            "portcullis.approval": {"action": "accept", "content": {"approve": true}}
        });
    }
    let body =
        serde_json::json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": params})
            .to_string();
    let authorization = token
        .map(|token| format!("Authorization: Bearer {token}\r\n"))
        .unwrap_or_default();
    let (status, response) = raw_http(
        port,
        &format!(
            "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nMCP-Protocol-Version: 2026-07-28\r\nMcp-Method: tools/call\r\nMcp-Name: {tool}\r\n{authorization}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    );
    if status != 200 {
        return Err(format!("status {status}: {response}"));
    }
    json_rpc_answer(&response).ok_or_else(|| format!("no JSON-RPC answer in {response}"))
}

/// The JSON-RPC answer in an HTTP response: the body's JSON, or the JSON of its event-stream
/// `data:` line.
fn json_rpc_answer(response: &str) -> Option<Value> {
    response
        .lines()
        .filter_map(|line| line.strip_prefix("data:").map(str::trim).or(Some(line)))
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find(|message| message.get("id").is_some())
}

/// A session-era (2025-11-25) HTTP session driven by raw requests, each on a connection of
/// its own (so a balancer routes every one anew): `initialize`, then `initialized`.
pub(crate) struct RawSession {
    port: u16,
    pub id: String,
}

impl RawSession {
    /// Opens a session on `port`, with the `Authorization` header line `authorization` when
    /// given.
    pub(crate) fn open(port: u16, authorization: Option<&str>) -> Self {
        let initialize = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}"#;
        let (status, response) = session_post(port, None, authorization, initialize);
        assert_eq!(status, 200, "{response}");
        let id = response
            .lines()
            .find_map(|line| {
                let (name, value) = line.split_once(':')?;
                name.eq_ignore_ascii_case("mcp-session-id")
                    .then(|| value.trim().to_owned())
            })
            .unwrap_or_else(|| panic!("no session id in {response}"));
        let session = Self { port, id };
        let (status, response) = session.post(
            authorization,
            r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
        );
        assert_eq!(status, 202, "{response}");
        session
    }

    /// Posts `body` in this session: the status and the whole response.
    pub(crate) fn post(&self, authorization: Option<&str>, body: &str) -> (u16, String) {
        session_post(self.port, Some(&self.id), authorization, body)
    }

    /// A `tools/call` in this session: the status, and the JSON-RPC answer when there is one.
    pub(crate) fn call(
        &self,
        authorization: Option<&str>,
        tool: &str,
        arguments: &str,
    ) -> (u16, Option<Value>) {
        let body = serde_json::json!({
            "jsonrpc": "2.0",
            "id": 2,
            "method": "tools/call",
            "params": {
                "name": tool,
                "arguments": serde_json::from_str::<Value>(arguments).unwrap_or_default(),
            },
        })
        .to_string();
        let (status, response) = self.post(authorization, &body);
        (status, json_rpc_answer(&response))
    }
}

fn session_post(
    port: u16,
    session: Option<&str>,
    authorization: Option<&str>,
    body: &str,
) -> (u16, String) {
    let session = session
        .map(|id| format!("Mcp-Session-Id: {id}\r\n"))
        .unwrap_or_default();
    let authorization = authorization
        .map(|line| format!("{line}\r\n"))
        .unwrap_or_default();
    raw_http(
        port,
        &format!(
            "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nMCP-Protocol-Version: 2025-11-25\r\n{session}{authorization}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    )
}
