//! The fixture binary over stdio, driven with raw JSON-RPC lines in both protocol eras.
#![expect(clippy::unwrap_used, reason = "tests")]
#![expect(clippy::panic, reason = "tests")]

use std::{
    io::{BufRead, BufReader, Write},
    process::{Child, ChildStdin, Command, Stdio},
    sync::mpsc::{Receiver, RecvTimeoutError, channel},
    time::Duration,
};

use serde_json::{Value, json};

const TIMEOUT: Duration = Duration::from_secs(20);

/// One running fixture: its stdin, and its stdout lines through a channel (so reads time out).
struct Fixture {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    scratch: tempfile::TempDir,
}

impl Fixture {
    fn start(args: &[&str]) -> Self {
        let scratch = tempfile::tempdir().unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_portcullis-fixture"))
            .arg("--scratch")
            .arg(scratch.path())
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (sender, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        let stdin = child.stdin.take();
        Self {
            child,
            stdin,
            lines,
            scratch,
        }
    }

    fn send(&mut self, message: &Value) {
        let stdin = self.stdin.as_mut().unwrap();
        writeln!(stdin, "{message}").unwrap();
        stdin.flush().unwrap();
    }

    fn next_line(&self) -> Option<String> {
        match self.lines.recv_timeout(TIMEOUT) {
            Ok(line) => Some(line),
            Err(RecvTimeoutError::Disconnected) => None,
            Err(RecvTimeoutError::Timeout) => panic!("no output within {TIMEOUT:?}"),
        }
    }

    fn next_message(&self) -> Value {
        let line = self.next_line().unwrap();
        serde_json::from_str(&line).unwrap_or_else(|error| panic!("{error}: {line}"))
    }

    /// Sends a request and returns its response, collecting what came before it.
    fn request(&mut self, id: u64, method: &str, params: Value) -> (Value, Vec<Value>) {
        self.send(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}));
        let mut before = Vec::new();
        loop {
            let message = self.next_message();
            if message.get("id") == Some(&json!(id)) && message.get("method").is_none() {
                return (message, before);
            }
            before.push(message);
        }
    }

    fn initialize(&mut self, capabilities: Value) {
        let (response, _) = self.request(
            0,
            "initialize",
            json!({
                "protocolVersion": "2025-11-25",
                "capabilities": capabilities,
                "clientInfo": {"name": "test", "version": "1"},
            }),
        );
        assert_eq!(
            response.pointer("/result/protocolVersion"),
            Some(&json!("2025-11-25"))
        );
        self.send(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
    }

    fn exit_code(mut self) -> Option<i32> {
        drop(self.stdin.take());
        self.child.wait().unwrap().code()
    }
}

fn text(response: &Value) -> String {
    response
        .pointer("/result/content/0/text")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

fn is_error(response: &Value) -> bool {
    response.pointer("/result/isError") == Some(&json!(true))
}

fn stateless_meta() -> Value {
    json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientInfo": {"name": "test", "version": "1"},
        "io.modelcontextprotocol/clientCapabilities": {"elicitation": {"form": {}}},
    })
}

#[test]
fn session_era_tools_work_on_the_scratch_directory() {
    let mut fixture = Fixture::start(&["--name", "named"]);
    fixture.initialize(json!({}));
    let call = |name: &str, arguments: Value| json!({"name": name, "arguments": arguments});

    let (response, _) = fixture.request(
        1,
        "tools/call",
        call("write_file", json!({"path": "d/a.txt", "content": "hi"})),
    );
    assert!(!is_error(&response), "{response}");
    let (response, _) = fixture.request(
        2,
        "tools/call",
        call("read_file", json!({"path": "d/a.txt"})),
    );
    assert_eq!(text(&response), "hi");
    for path in ["../a.txt", "/etc/passwd", ""] {
        let (response, _) =
            fixture.request(3, "tools/call", call("read_file", json!({"path": path})));
        assert!(is_error(&response), "{path}: {response}");
    }
    let (response, _) = fixture.request(
        4,
        "tools/call",
        call(
            "send_message",
            json!({"to": "bob", "subject": "s", "body": "b"}),
        ),
    );
    assert!(!is_error(&response), "{response}");
    let (response, _) = fixture.request(
        5,
        "tools/call",
        call("delete_file", json!({"path": "d/a.txt"})),
    );
    assert!(!is_error(&response), "{response}");
    assert!(!fixture.scratch.path().join("d/a.txt").exists());

    let outbox = std::fs::read_to_string(fixture.scratch.path().join("outbox.jsonl")).unwrap();
    let line: Value = serde_json::from_str(outbox.trim()).unwrap();
    assert_eq!(line, json!({"to": "bob", "subject": "s", "body": "b"}));
    assert_eq!(fixture.exit_code(), Some(0));
}

#[test]
fn session_era_ask_elicits_and_add_tool_notifies() {
    let mut fixture = Fixture::start(&[]);
    fixture.initialize(json!({"elicitation": {}}));
    fixture.send(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"name": "ask", "arguments": {"question": "Proceed?"}}}));
    let elicitation = fixture.next_message();
    assert_eq!(
        elicitation.get("method"),
        Some(&json!("elicitation/create"))
    );
    assert_eq!(
        elicitation.pointer("/params/message"),
        Some(&json!("Proceed?"))
    );
    let id = elicitation.get("id").cloned().unwrap();
    fixture.send(&json!({"jsonrpc": "2.0", "id": id,
        "result": {"action": "accept", "content": {"confirm": true}}}));
    let response = fixture.next_message();
    assert_eq!(text(&response), "answer: accept confirm=true");

    let (response, before) = fixture.request(
        2,
        "tools/call",
        json!({"name": "add_tool", "arguments": {"name": "late"}}),
    );
    assert!(!is_error(&response), "{response}");
    assert!(
        before.iter().any(
            |message| message.get("method") == Some(&json!("notifications/tools/list_changed"))
        )
    );
    let (response, _) = fixture.request(3, "tools/list", json!({}));
    let names: Vec<&str> = response
        .pointer("/result/tools")
        .and_then(Value::as_array)
        .unwrap()
        .iter()
        .filter_map(|tool| tool.get("name").and_then(Value::as_str))
        .collect();
    assert!(names.contains(&"late"), "{names:?}");
}

#[test]
fn stateless_era_discovers_and_asks_in_two_rounds() {
    let mut fixture = Fixture::start(&[]);
    let (response, _) = fixture.request(1, "server/discover", json!({"_meta": stateless_meta()}));
    assert_eq!(
        response.pointer("/result/_meta/io.modelcontextprotocol~1serverInfo/name"),
        Some(&json!("portcullis-fixture"))
    );
    let ask = json!({"name": "ask", "arguments": {"question": "Send?"}, "_meta": stateless_meta()});
    let (response, _) = fixture.request(2, "tools/call", ask);
    assert_eq!(
        response.pointer("/result/resultType"),
        Some(&json!("input_required"))
    );
    assert_eq!(
        response.pointer("/result/inputRequests/confirm/method"),
        Some(&json!("elicitation/create"))
    );
    let state = response.pointer("/result/requestState").cloned().unwrap();
    let retry = json!({
        "name": "ask",
        "arguments": {"question": "Send?"},
        "_meta": stateless_meta(),
        "requestState": state,
        "inputResponses": {"confirm": {"action": "decline"}},
    });
    let (response, _) = fixture.request(3, "tools/call", retry);
    assert_eq!(text(&response), "answer: decline");
}

#[test]
fn slow_reports_progress_and_logs_cancellation() {
    let mut fixture = Fixture::start(&[]);
    fixture.initialize(json!({}));
    let (response, before) = fixture.request(1, "tools/call",
        json!({"name": "slow", "arguments": {"ms": 40, "steps": 4}, "_meta": {"progressToken": "p"}}));
    assert!(!is_error(&response), "{response}");
    assert_eq!(before.len(), 4, "{before:?}");

    fixture.send(&json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
        "params": {"name": "slow", "arguments": {"ms": 60_000}}}));
    std::thread::sleep(Duration::from_millis(200));
    fixture.send(
        &json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
        "params": {"requestId": 2}}),
    );
    let log = fixture.scratch.path().join("cancelled.log");
    let mut waited = Duration::ZERO;
    while std::fs::read_to_string(&log).unwrap_or_default() != "cancelled\n" {
        assert!(waited < TIMEOUT, "cancelled.log was not written");
        std::thread::sleep(Duration::from_millis(50));
        waited += Duration::from_millis(50);
    }
}

#[test]
fn misbehaving_tools_and_start_modes() {
    let mut fixture = Fixture::start(&[]);
    fixture.initialize(json!({}));
    fixture.send(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"name": "garbage", "arguments": {}}}));
    assert_eq!(fixture.next_line().as_deref(), Some("this is not json {{{"));
    fixture.send(&json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
        "params": {"name": "crash", "arguments": {}}}));
    assert_eq!(fixture.next_line(), None);
    assert_eq!(fixture.exit_code(), Some(7));

    let fixture = Fixture::start(&["--start-mode", "crash"]);
    assert_eq!(fixture.next_line(), None);
    assert_eq!(fixture.exit_code(), Some(3));
}
