//! Evidence end to end: every call leaves an intent and an outcome record, whatever its
//! decision; `portcullis audit` reads and verifies the log; a log that cannot be written stops
//! side effects; killing Portcullis under load loses no record of an answered call.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rmcp::ServiceExt;
use rmcp::model::CallToolRequestParams;
use rmcp::transport::StreamableHttpClientTransport;
use serde_json::{Value, json};

use crate::support::{
    Config, Identity, Portcullis, Scratch, Target, Tool, Upstream, bin, fixture_policy,
    portcullis_stdio, repo_root, result_text, ts_call, ts_client,
};

fn audit(args: &[&str]) -> (bool, String, String) {
    let output = Command::new(bin("portcullis"))
        .arg("audit")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run portcullis audit: {e}"));
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// The events of an evidence log, in order.
pub(crate) fn records(log: &Path) -> Vec<Value> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .map(|line| line["record"]["event"].clone())
        .collect()
}

/// alice, under the fixture policy `policy`, and `fx` (untrusted) with a read, a write and a
/// send.
fn config(scratch: &Scratch, work: &Path, policy: &str) -> std::path::PathBuf {
    let fx = Upstream::fixture("fx", work)
        .tool("echo", Tool::read())
        .tool("write_file", Tool::write())
        .tool("send_message", Tool::send().scopes(&["mail.send"]));
    scratch.config(
        Config::new()
            .identity(Identity::user("alice"))
            .policy(fixture_policy(policy))
            .upstream(fx),
    )
}

#[test]
fn every_call_is_recorded_whatever_its_decision_and_audit_reads_it() {
    let scratch = Scratch::new();
    let work = scratch.sub("work");
    let config = config(&scratch, &work, "identity.cedar");
    let argv = portcullis_stdio(&config);
    let stdio = Target::Stdio(&argv);
    let call = |tool: &str, args: &str| ts_call(&stdio, tool, args);
    let listed = ts_client(&stdio, &["--scenario", "list"]);
    assert!(
        listed["tools"].as_array().is_some_and(|t| !t.is_empty()),
        "{listed}"
    );
    let echoed = call("fx.echo", r#"{"text":"recorded"}"#);
    assert_eq!(result_text(&echoed["result"]), "recorded");
    call("fx.write_file", r#"{"path":"w.txt","content":"x"}"#);
    // This policy permits no resource reads: refused, and recorded as not run.
    let read = Command::new("node")
        .arg(repo_root().join("tests/node/client.mjs"))
        .args([
            "--scenario",
            "read",
            "--uri",
            "fx+fixture://readme",
            "--stdio",
            "--",
        ])
        .args(&argv)
        .output()
        .unwrap_or_else(|e| panic!("cannot run the client: {e}"));
    assert!(
        String::from_utf8_lossy(&read.stdout).contains("unknown resource"),
        "{}",
        String::from_utf8_lossy(&read.stdout)
    );
    // An unclassified tool this policy permits nobody but group eng to call: denied.
    call("fx.delete_file", r#"{"path":"w.txt"}"#);

    let log = scratch.path().join("state/evidence.jsonl");
    let events = records(&log);
    let intents: BTreeMap<String, Value> = events
        .iter()
        .filter(|e| e["kind"] == "call_intent")
        .map(|e| {
            (
                e["tool"]["tool"].as_str().unwrap_or("").to_owned(),
                e.clone(),
            )
        })
        .collect();
    assert_eq!(
        intents["echo"]["decision"]["verdict"], "allow",
        "{events:?}"
    );
    assert_eq!(
        intents["echo"]["arguments"]["redacted"],
        json!({"text": "recorded"})
    );
    assert_eq!(intents["echo"]["request"]["identity"]["subject"], "alice");
    assert!(
        intents["echo"]["tool"]["definition_hash"]
            .as_str()
            .is_some_and(|h| h.starts_with("sha256:")),
        "{events:?}"
    );
    assert_eq!(
        intents["write_file"]["decision"]["verdict"],
        "approval_required"
    );
    assert_eq!(intents["delete_file"]["decision"]["verdict"], "deny");
    assert_eq!(intents["delete_file"]["decision"]["policies"], json!([]));
    // Each intent has its outcome: a result for the echo, "not run" for the others.
    let outcomes: BTreeMap<String, Value> = events
        .iter()
        .filter(|e| e["kind"] == "call_outcome")
        .map(|e| {
            (
                e["tool"]["tool"].as_str().unwrap_or("").to_owned(),
                e.clone(),
            )
        })
        .collect();
    assert_eq!(outcomes["echo"]["outcome"]["status"], "result");
    assert!(outcomes["echo"]["intent_seq"].is_u64(), "{events:?}");
    assert_eq!(outcomes["write_file"]["outcome"]["status"], "not_run");
    assert_eq!(outcomes["delete_file"]["outcome"]["status"], "not_run");
    assert!(!work.join("w.txt").exists());
    assert!(
        events.iter().any(|e| e["kind"] == "resource_read"
            && e["uri"] == "fixture://readme"
            && e["outcome"]["status"] == "not_run"),
        "{events:?}"
    );
    // The list, and the upstream's start, are in the evidence too.
    assert!(
        events.iter().any(|e| e["kind"] == "list"
            && e["list"] == "tools"
            && e["returned"].as_u64() > Some(0)),
        "{events:?}"
    );
    assert!(
        events
            .iter()
            .any(|e| e["kind"] == "upstream_started" && e["upstream"] == "fx"),
        "{events:?}"
    );

    let file = log.display().to_string();
    let (ok, out, err) = audit(&["verify", &file]);
    assert!(ok && out.contains("intact"), "{out}{err}");

    // Whoever is handed the log and its public key, but not its key file, checks its
    // signatures; a different public key does not vouch for it.
    let (ok, public, err) = audit(&["public-key", &file]);
    assert!(ok && public.trim().len() == 64, "{public}{err}");
    let key = format!("{file}.key");
    std::fs::rename(&key, format!("{key}.aside")).unwrap_or_else(|e| panic!("{e}"));
    let (ok, out, err) = audit(&["verify", &file, "--public-key", public.trim()]);
    assert!(
        ok && out.contains(&format!("checked against public key {}", public.trim())),
        "{out}{err}"
    );
    let (ok, out, _) = audit(&["verify", &file, "--public-key", &"ab".repeat(32)]);
    assert!(!ok && out.contains("forged"), "{out}");
    let (ok, _, err) = audit(&["public-key", &file]);
    assert!(!ok && err.contains("cannot read the key"), "{err}");
    std::fs::rename(format!("{key}.aside"), &key).unwrap_or_else(|e| panic!("{e}"));

    let (ok, out, err) = audit(&["show", &file, "--decision", "deny"]);
    assert!(ok, "{err}");
    assert!(
        out.contains("delete_file") && !out.contains("echo"),
        "{out}"
    );
    let (ok, out, err) = audit(&["tail", &file, "-n", "1", "--json"]);
    assert!(ok, "{err}");
    let last: Value = serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"));
    // The stdio session's end stopped the upstream, and that is the last record.
    assert_eq!(last["record"]["event"]["kind"], "upstream_stopped", "{out}");

    // An edited record is caught, and named.
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    std::fs::write(&log, text.replacen("\"recorded\"", "\"forged!!\"", 1))
        .unwrap_or_else(|e| panic!("{e}"));
    let (ok, out, _) = audit(&["verify", &file]);
    assert!(!ok, "{out}");
    assert!(out.contains("edited"), "{out}");
}

#[test]
fn audit_tail_follow_prints_the_records_as_they_are_written() {
    use std::io::BufRead as _;
    let scratch = Scratch::new();
    let work = scratch.sub("work");
    let config = config(&scratch, &work, "identity.cedar");
    let argv = portcullis_stdio(&config);
    let stdio = Target::Stdio(&argv);
    let first = ts_call(&stdio, "fx.echo", r#"{"text":"first"}"#);
    assert_eq!(result_text(&first["result"]), "first");
    let log = scratch.path().join("state/evidence.jsonl");
    let mut tail = Command::new(bin("portcullis"))
        .args(["audit", "tail"])
        .arg(&log)
        .args(["--follow", "-n", "1", "--tool", "fx.echo", "--json"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run portcullis audit tail: {e}"));
    let stdout = tail.stdout.take().unwrap_or_else(|| panic!("no stdout"));
    let (lines_tx, lines) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if lines_tx.send(line).is_err() {
                return;
            }
        }
    });
    let next = || {
        lines
            .recv_timeout(Duration::from_secs(15))
            .unwrap_or_else(|e| panic!("audit tail --follow printed nothing: {e}"))
    };
    let kind = |line: &str| {
        serde_json::from_str::<Value>(line).unwrap_or_default()["record"]["event"]["kind"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    // The last matching record (the first call's outcome), then each one written after.
    assert_eq!(kind(&next()), "call_outcome");
    let second = ts_call(&stdio, "fx.echo", r#"{"text":"second"}"#);
    assert_eq!(result_text(&second["result"]), "second");
    assert_eq!(kind(&next()), "call_intent");
    assert_eq!(kind(&next()), "call_outcome");
    let _ = tail.kill();
    let _ = tail.wait();
}

#[test]
fn a_log_that_cannot_be_written_stops_side_effects() {
    let scratch = Scratch::new();
    let work = scratch.sub("work");
    let config = config(&scratch, &work, "permit-all.cedar");
    let portcullis = Portcullis::http(&config);
    let http = Target::Http(&portcullis.url);
    let write = |path: &str| {
        ts_call(
            &http,
            "fx.write_file",
            &format!(r#"{{"path":"{path}","content":"x"}}"#),
        )
    };
    write("first.txt");
    assert!(work.join("first.txt").exists(), "a recorded write runs");
    let prompt = ts_client(
        &http,
        &[
            "--scenario",
            "prompt",
            "--name",
            "fx.greet",
            "--args",
            r#"{"name":"ada"}"#,
        ],
    );
    assert!(prompt.to_string().contains("ada"), "{prompt}");
    let events = records(&scratch.path().join("state/evidence.jsonl"));
    assert!(
        events.iter().any(|e| e["kind"] == "prompt_get"
            && e["prompt"] == "greet"
            && e["outcome"]["status"] == "result"),
        "{events:?}"
    );
    // The head file cannot be replaced any more. Its next replacement (at most a second
    // after the last, after a sync) fails, and the log with it: from then on no write runs.
    std::fs::create_dir(scratch.path().join("state/evidence.jsonl.head.tmp"))
        .unwrap_or_else(|e| panic!("{e}"));
    let started = std::time::Instant::now();
    let (refused, name) = loop {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the log never failed"
        );
        let name = format!("later-{}.txt", started.elapsed().as_millis());
        let answer = write(&name);
        if result_text(&answer["result"]).contains("cannot write its evidence log") {
            break (answer, name);
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(refused["result"]["isError"], true, "{refused}");
    assert!(
        !work.join(&name).exists(),
        "an unrecorded write must not run"
    );
    assert!(
        portcullis
            .log()
            .contains("the evidence log cannot be written")
    );
    // A list is a read: without `reads_without_evidence` it is refused too.
    let listing = Command::new("node")
        .arg(repo_root().join("tests/node/client.mjs"))
        .args(["--scenario", "list", "--http", &portcullis.url])
        .output()
        .unwrap_or_else(|e| panic!("cannot run the client: {e}"));
    let out = String::from_utf8_lossy(&listing.stdout);
    assert!(out.contains("cannot write its evidence log"), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn killing_portcullis_under_load_loses_no_record_of_an_answered_call() {
    killed_under_load("process").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn killing_portcullis_under_load_loses_no_record_of_an_answered_call_when_intents_sync() {
    killed_under_load("disk").await;
}

async fn killed_under_load(durability: &str) {
    let scratch = Scratch::new();
    let work = scratch.sub("work");
    let fx = Upstream::fixture("fx", &work).tool("echo", Tool::read());
    let config = scratch.config(
        Config::new()
            .identity(Identity::user("alice"))
            .policy(fixture_policy("permit-all.cedar"))
            .durability(durability)
            .upstream(fx),
    );
    let mut portcullis = Portcullis::http(&config);
    let client = ()
        .serve(StreamableHttpClientTransport::from_uri(
            portcullis.url.clone(),
        ))
        .await
        .unwrap_or_else(|e| panic!("cannot connect: {e}"));
    let answered = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut callers = Vec::new();
    for caller in 0..8 {
        let peer = client.peer().clone();
        let answered = answered.clone();
        callers.push(tokio::spawn(async move {
            for n in 0.. {
                let text = format!("c{caller}-{n}");
                let params = CallToolRequestParams::new("fx.echo").with_arguments(
                    json!({ "text": text })
                        .as_object()
                        .cloned()
                        .unwrap_or_default(),
                );
                match peer.call_tool(params).await {
                    Ok(result) if result.is_error != Some(true) => {
                        if let Ok(mut answered) = answered.lock() {
                            answered.push(text);
                        }
                    }
                    _ => break,
                }
            }
        }));
    }
    // Let load build up, then kill Portcullis mid-stream.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while answered.lock().map(|a| a.len()).unwrap_or(0) < 300
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    portcullis.kill();
    // Calls in flight at the kill never get an answer (the client may retry them): stop the
    // callers; only what was answered matters.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for caller in &callers {
        caller.abort();
    }
    let answered: Vec<String> = answered.lock().map(|a| a.clone()).unwrap_or_default();
    assert!(
        answered.len() >= 300,
        "only {} calls answered",
        answered.len()
    );

    let log = scratch.path().join("state/evidence.jsonl");
    let (ok, out, err) = audit(&["verify", &log.display().to_string()]);
    assert!(ok, "the log must verify after SIGKILL: {out}{err}");
    let events = records(&log);
    let mut intent_of: BTreeMap<String, String> = BTreeMap::new();
    let mut finished: BTreeSet<String> = BTreeSet::new();
    for event in &events {
        let request = event["request"]["request_id"]
            .as_str()
            .unwrap_or("")
            .to_owned();
        match event["kind"].as_str() {
            Some("call_intent") => {
                if let Some(text) = event["arguments"]["redacted"]["text"].as_str() {
                    intent_of.insert(text.to_owned(), request);
                }
            }
            Some("call_outcome") => {
                finished.insert(request);
            }
            _ => {}
        }
    }
    for text in &answered {
        let request = intent_of
            .get(text)
            .unwrap_or_else(|| panic!("call `{text}` was answered but has no intent record"));
        assert!(
            finished.contains(request),
            "call `{text}` was answered but has no outcome record"
        );
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), client.cancel()).await;
}

/// The value of the metric line that starts with `series` (name and labels), if any.
fn metric(scrape: &str, series: &str) -> Option<f64> {
    scrape
        .lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
}

#[test]
fn the_metrics_endpoint_counts_calls_decisions_and_upstream_health() {
    let scratch = Scratch::new();
    let work = scratch.sub("work");
    let metrics_port = crate::support::free_port();
    // Beside `fx`, an upstream that never starts.
    let fx = Upstream::fixture("fx", &work)
        .tool("echo", Tool::read())
        .tool("send_message", Tool::send().scopes(&["mail.send"]));
    let config = scratch.config(
        Config::new()
            .identity(Identity::user("alice"))
            .metrics(&format!("127.0.0.1:{metrics_port}"))
            .policy(fixture_policy("identity.cedar"))
            .upstream(fx)
            .upstream(Upstream::command("broken", ["false"])),
    );
    let portcullis = Portcullis::http(&config);
    assert!(
        portcullis.log().contains(&format!(
            "metrics on http://127.0.0.1:{metrics_port}/metrics"
        )),
        "{}",
        portcullis.log()
    );
    let http = Target::Http(&portcullis.url);
    for _ in 0..2 {
        let echoed = ts_call(&http, "fx.echo", r#"{"text":"m"}"#);
        assert_eq!(result_text(&echoed["result"]), "m", "{echoed}");
    }
    ts_call(&http, "fx.delete_file", r#"{"path":"m.txt"}"#);
    let (status, scrape) = crate::support::raw_http(
        metrics_port,
        &format!(
            "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:{metrics_port}\r\nConnection: close\r\n\r\n"
        ),
    );
    assert_eq!(status, 200, "{scrape}");
    assert!(scrape.contains("application/openmetrics-text"), "{scrape}");
    let value = |series: &str| {
        metric(&scrape, series).unwrap_or_else(|| panic!("no `{series}` in\n{scrape}"))
    };
    assert_eq!(
        value(r#"portcullis_calls_total{upstream="fx",outcome="result"}"#),
        2.0
    );
    assert_eq!(
        value(r#"portcullis_calls_total{upstream="fx",outcome="not_run"}"#),
        1.0
    );
    assert_eq!(
        value(r#"portcullis_call_duration_seconds_count{upstream="fx"}"#),
        2.0
    );
    assert_eq!(
        value(r#"portcullis_decisions_total{action="call_tool",verdict="allow"}"#),
        2.0
    );
    assert_eq!(
        value(r#"portcullis_decisions_total{action="call_tool",verdict="deny"}"#),
        1.0
    );
    assert_eq!(value(r#"portcullis_upstream_up{upstream="fx"}"#), 1.0);
    assert_eq!(value(r#"portcullis_upstream_up{upstream="broken"}"#), 0.0);
    assert!(value(r#"portcullis_upstream_failures{upstream="broken"}"#) >= 1.0);
    assert!(value("portcullis_evidence_records") >= 6.0, "{scrape}");
    // No identity or tool name is a label.
    assert!(
        !scrape.contains("alice") && !scrape.contains("echo"),
        "{scrape}"
    );
}

/// An OTLP/HTTP collector on loopback: answers every request `{}` and keeps the bodies. It
/// stops by itself after `limit`.
fn collector(limit: Duration) -> (u16, Arc<Mutex<Vec<String>>>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
    let port = listener.local_addr().map_or(0, |a| a.port());
    let _ = listener.set_nonblocking(true);
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let sink = bodies.clone();
    std::thread::spawn(move || {
        let deadline = std::time::Instant::now() + limit;
        while std::time::Instant::now() < deadline {
            let Ok((stream, _)) = listener.accept() else {
                std::thread::sleep(Duration::from_millis(20));
                continue;
            };
            let _ = stream.set_nonblocking(false);
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let mut reader = BufReader::new(stream);
            // Several requests may share one connection.
            loop {
                let mut length = None;
                let mut line = String::new();
                let mut any = false;
                while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
                    any = true;
                    if line == "\r\n" {
                        break;
                    }
                    if let Some((name, value)) = line.split_once(':')
                        && name.eq_ignore_ascii_case("content-length")
                    {
                        length = value.trim().parse::<usize>().ok();
                    }
                    line.clear();
                }
                if !any {
                    break;
                }
                let mut body = vec![0; length.unwrap_or(0)];
                if reader.read_exact(&mut body).is_err() {
                    break;
                }
                if let Ok(mut bodies) = sink.lock() {
                    bodies.push(String::from_utf8_lossy(&body).into_owned());
                }
                let _ = reader.get_mut().write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}",
                );
            }
        }
    });
    (port, bodies)
}

/// The string form of an OTLP JSON attribute value (`intValue` is a string in OTLP JSON).
fn attribute(span: &Value, key: &str) -> Option<String> {
    let value = &span["attributes"]
        .as_array()?
        .iter()
        .find(|a| a["key"] == key)?["value"];
    value["stringValue"]
        .as_str()
        .map(str::to_owned)
        .or_else(|| value["intValue"].as_str().map(str::to_owned))
        .or_else(|| value["intValue"].as_u64().map(|n| n.to_string()))
}

#[test]
fn exported_spans_carry_the_evidence_ids_of_their_call() {
    let scratch = Scratch::new();
    let work = scratch.sub("work");
    let config = config(&scratch, &work, "identity.cedar");
    let (port, bodies) = collector(Duration::from_secs(60));
    let endpoint = format!("http://127.0.0.1:{port}");
    let mut portcullis = Portcullis::http_with_env(
        &config,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ],
    );
    let echoed = ts_call(
        &Target::Http(&portcullis.url),
        "fx.echo",
        r#"{"text":"traced"}"#,
    );
    assert_eq!(result_text(&echoed["result"]), "traced", "{echoed}");
    // A clean stop flushes the spans still buffered.
    assert!(portcullis.terminate(), "{}", portcullis.log());

    let lines: Vec<Value> = std::fs::read_to_string(scratch.path().join("state/evidence.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect();
    let intent = lines
        .iter()
        .find(|l| l["record"]["event"]["kind"] == "call_intent")
        .unwrap_or_else(|| panic!("no call intent: {lines:?}"));
    let request_id = intent["record"]["event"]["request"]["request_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let seq = intent["seq"].as_u64().map(|n| n.to_string());

    let exported = bodies.lock().map(|b| b.clone()).unwrap_or_default();
    let spans: Vec<Value> = exported
        .iter()
        .filter_map(|body| serde_json::from_str::<Value>(body).ok())
        .flat_map(|body| {
            body["resourceSpans"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|r| {
                    r["scopeSpans"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .cloned()
                        .collect::<Vec<_>>()
                })
                .flat_map(|s| {
                    s["spans"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .cloned()
                        .collect::<Vec<_>>()
                })
                .collect::<Vec<_>>()
        })
        .collect();
    let call = spans
        .iter()
        .find(|span| span["name"] == "tools/call")
        .unwrap_or_else(|| {
            panic!(
                "no tools/call span among {} exported bodies: {exported:?}",
                exported.len()
            )
        });
    assert_eq!(
        attribute(call, "request_id").as_deref(),
        Some(request_id.as_str()),
        "{call}"
    );
    assert_eq!(attribute(call, "evidence_seq"), seq, "{call}");
    assert_eq!(
        attribute(call, "tool").as_deref(),
        Some("fx.echo"),
        "{call}"
    );
    // The arguments are not in the trace.
    assert!(
        !exported.iter().any(|body| body.contains("traced")),
        "{exported:?}"
    );
}

#[test]
fn a_call_whose_outcome_cannot_be_recorded_is_withheld_and_recorded_as_lost_at_the_next_start() {
    let scratch = Scratch::new();
    let work = scratch.sub("work");
    let fx = Upstream::fixture("fx", &work).tool("slow", Tool::read());
    let config = scratch.config(
        Config::relay()
            .identity(Identity::user("alice"))
            .upstream(fx),
    );
    let log = scratch.path().join("state/evidence.jsonl");
    let blocker = scratch.path().join("state/evidence.jsonl.head.tmp");
    let mut portcullis = Portcullis::http(&config);
    let url = portcullis.url.clone();
    // The call's intent is recorded; while it runs, the log stops being writable.
    let caller = std::thread::spawn(move || {
        ts_call(&Target::Http(&url), "fx.slow", r#"{"ms":12000,"steps":1}"#)
    });
    // The intent is written (that is what the call waited for).
    let written = || {
        records(&log)
            .iter()
            .any(|e| e["kind"] == "call_intent" && e["tool"]["tool"] == "slow")
    };
    assert!(
        crate::support::wait_until(Duration::from_secs(20), written),
        "no intent: {:?}",
        records(&log)
    );
    // The head file cannot be replaced any more; other calls meanwhile make the log sync and
    // try, and fail it (at most a second after its last replacement), before the slow call
    // ends.
    std::fs::create_dir(&blocker).unwrap_or_else(|e| panic!("{e}"));
    let http = portcullis.url.clone();
    assert!(
        crate::support::wait_until(Duration::from_secs(8), || {
            let echo = ts_call(&Target::Http(&http), "fx.echo", r#"{"text":"tick"}"#);
            result_text(&echo["result"]).contains("cannot write its evidence log")
        }),
        "the log never failed"
    );
    let answered = caller
        .join()
        .unwrap_or_else(|_| panic!("the client panicked"));
    let text = result_text(&answered["result"]);
    assert_eq!(answered["result"]["isError"], true, "{answered}");
    assert!(
        text.contains("ran, but portcullis could not record its outcome"),
        "{answered}"
    );
    assert!(
        !text.contains("done"),
        "the unrecorded answer went back: {text}"
    );
    portcullis.kill();

    // Writable again: at the next start the call has an outcome (the one written before the
    // head could not be replaced, verified and kept, or a lost one).
    std::fs::remove_dir(&blocker).unwrap_or_else(|e| panic!("{e}"));
    let outcomes_of = |seq: &Value| -> Vec<Value> {
        records(&log)
            .into_iter()
            .filter(|e| e["kind"] == "call_outcome" && e["intent_seq"] == *seq)
            .collect()
    };
    let intents = || -> Vec<Value> {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .filter(|line| {
                line["record"]["event"]["kind"] == "call_intent"
                    && line["record"]["event"]["tool"]["tool"] == "slow"
            })
            .collect()
    };
    let mut again = Portcullis::http(&config);
    let first_seq = intents()[0]["seq"].clone();
    assert!(
        crate::support::wait_until(Duration::from_secs(20), || outcomes_of(&first_seq).len()
            == 1),
        "{:?}",
        records(&log)
    );
    // Portcullis killed while a call runs: its outcome is recorded as lost at the next start.
    let url = again.url.clone();
    let caller = std::thread::spawn(move || {
        ts_call(&Target::Http(&url), "fx.slow", r#"{"ms":5000,"steps":1}"#)
    });
    assert!(
        crate::support::wait_until(Duration::from_secs(20), || intents().len() == 2),
        "no second intent"
    );
    again.kill();
    let _ = caller.join();
    let second_seq = intents()[1]["seq"].clone();
    assert!(outcomes_of(&second_seq).is_empty());
    let _third = Portcullis::http(&config);
    assert!(
        crate::support::wait_until(Duration::from_secs(20), || outcomes_of(&second_seq)
            .iter()
            .any(|e| e["outcome"]["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("outcome lost")))),
        "{:?}",
        records(&log)
    );
    let (ok, out, err) = audit(&["verify", &log.display().to_string()]);
    assert!(ok && out.contains("intact"), "{out}{err}");
}
