//! Passkey approvers with a real browser: Debian's Chromium (headless, a virtual CTAP2
//! authenticator, through `tests/node/passkey.mjs`) enrols a passkey on the one-time page of
//! `portcullis_approver::enrol::serve`, then approves on a test page built here from
//! `CEREMONY_JS`, `begin_assertion` and `finish_assertion`. And what must not approve: a
//! made-up or replayed answer from a plain HTTP client, a browser without the enrolled
//! passkey, an enrolment link used twice.

use std::io::Read as _;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use portcullis_approver::{Approvers, Assertion, CEREMONY_JS, enrol};
use serde_json::{Value, json};
use url::Url;

use crate::support::{DRIVER_TIMEOUT, node_module, raw_http, repo_root};

const CHROMIUM: &str = "/usr/bin/chromium";

/// One browser step's bound; passkey.mjs gives up on the whole run after four of them.
const STEP_TIMEOUT_MS: &str = "20000";

/// What a run of passkey.mjs ended with.
pub(crate) struct Run {
    pub ok: bool,
    pub report: Value,
    pub stderr: String,
}

/// Runs passkey.mjs with `args`, killed if it outlives `DRIVER_TIMEOUT`; a failed step's
/// screenshot goes to `target/browser-screenshots`.
pub(crate) fn passkey(args: &[&str]) -> Run {
    assert!(
        Path::new(CHROMIUM).is_file(),
        "{CHROMIUM} is missing: run scripts/setup.sh, which installs Debian's chromium"
    );
    let mut child = Command::new(node_module("node/bin/node"))
        .arg(repo_root().join("tests/node/passkey.mjs"))
        .args(["--timeout-ms", STEP_TIMEOUT_MS])
        // A failed step leaves a PNG of the page there; its path is in the run's stderr,
        // which the failing assertion prints.
        .arg("--screenshots")
        .arg(repo_root().join("target/browser-screenshots"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start passkey.mjs: {e}"));
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child
            .try_wait()
            .unwrap_or_else(|e| panic!("passkey.mjs: {e}"))
        {
            break status;
        }
        if started.elapsed() > DRIVER_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("passkey.mjs ran longer than {DRIVER_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut stdout = String::new();
    let mut stderr = String::new();
    if let Some(mut out) = child.stdout.take() {
        let _ = out.read_to_string(&mut stdout);
    }
    if let Some(mut err) = child.stderr.take() {
        let _ = err.read_to_string(&mut stderr);
    }
    let report = serde_json::from_str(stdout.trim()).unwrap_or(Value::Null);
    Run {
        ok: status.success(),
        report,
        stderr,
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("no runtime: {e}"))
}

fn loopback_listener(runtime: &tokio::runtime::Runtime) -> (tokio::net::TcpListener, u16) {
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap_or_else(|e| panic!("cannot listen on loopback: {e}"));
    let port = listener
        .local_addr()
        .unwrap_or_else(|e| panic!("no address: {e}"))
        .port();
    (listener, port)
}

fn open_approvers(file: &Path, port: u16) -> Approvers {
    let origin = Url::parse(&format!("http://localhost:{port}"))
        .unwrap_or_else(|e| panic!("bad origin: {e}"));
    Approvers::open(file.to_path_buf(), &origin).unwrap_or_else(|e| panic!("{e}"))
}

/// Enrols `alice` through the one-time page with the authenticator kept in `authenticator`,
/// and returns the page's port.
fn enrol_alice(runtime: &tokio::runtime::Runtime, file: &Path, authenticator: &Path) -> u16 {
    let (listener, port) = loopback_listener(runtime);
    let token = enrol::one_time_token().unwrap_or_else(|e| panic!("{e}"));
    let served = runtime.spawn(enrol::serve(
        listener,
        open_approvers(file, port),
        "alice".to_owned(),
        token.clone(),
        Duration::from_secs(60),
    ));
    let link = format!("http://localhost:{port}/enrol/{token}");
    let run = passkey(&[
        "--authenticator",
        &authenticator.display().to_string(),
        "--open",
        &link,
        "--click",
        "Enrol passkey",
        "--expect",
        "Passkey enrolled for alice",
    ]);
    assert!(run.ok, "the browser did not enrol: {}", run.stderr);
    assert_eq!(run.report["credentials"], 1, "{}", run.report);
    let enrolled = runtime
        .block_on(served)
        .unwrap_or_else(|e| panic!("the page task failed: {e}"));
    assert_eq!(enrolled.unwrap_or_else(|e| panic!("{e}")), "alice");

    // The link is spent: the page is gone, and a second browser run cannot use it.
    let again = passkey(&[
        "--open",
        &link,
        "--click",
        "Enrol passkey",
        "--expect",
        "Passkey enrolled",
    ]);
    assert!(
        !again.ok,
        "a spent enrolment link worked again: {}",
        again.report
    );
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err()
            || raw_http(port, &get_request(&format!("/enrol/{token}"), port)).0 == 404,
        "the spent link still answers"
    );
    port
}

fn get_request(path: &str, port: u16) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: localhost:{port}\r\nConnection: close\r\n\r\n")
}

fn post_request(path: &str, port: u16, body: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: localhost:{port}\r\nOrigin: http://localhost:{port}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// A minimal approval page of the kind the gateway serves: a button that runs
/// `portcullisAssert` against `/options` and `/finish`.
struct ApprovalPage {
    approvers: Approvers,
    pending: Mutex<Option<Assertion>>,
    approved: Mutex<Vec<String>>,
    /// The last answer a browser posted, for the replay test.
    last_answer: Mutex<Option<String>>,
}

const APPROVAL_HTML: &str = "<!doctype html><html><head><meta charset=\"utf-8\">\
    <title>Approve</title><script src=\"/ceremony.js\" defer></script></head><body>\
    <button id=\"approve\" type=\"button\">Approve</button><p id=\"status\"></p></body></html>";

const APPROVAL_JS: &str = r#"
document.getElementById('approve').addEventListener('click', async () => {
  const status = document.getElementById('status');
  const post = async (path, body) => {
    const answer = await fetch(path, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
    const json = await answer.json();
    if (!answer.ok) throw new Error(json.error);
    return json;
  };
  try {
    const options = await post('/options', {});
    const done = await post('/finish', await portcullisAssert(options));
    status.textContent = `Approved by ${done.approved}`;
  } catch (error) {
    status.textContent = `Refused: ${error.name}: ${error.message}`;
  }
});
"#;

fn approval_routes(page: Arc<ApprovalPage>) -> Router {
    Router::new()
        .route(
            "/",
            get(|| async { ([(header::CONTENT_TYPE, "text/html")], APPROVAL_HTML) }),
        )
        .route(
            "/ceremony.js",
            get(|| async {
                let script = format!("{CEREMONY_JS}\n{APPROVAL_JS}");
                ([(header::CONTENT_TYPE, "text/javascript")], script)
            }),
        )
        .route("/options", post(begin_approval))
        .route("/finish", post(finish_approval))
        .with_state(page)
}

async fn begin_approval(State(page): State<Arc<ApprovalPage>>) -> Response {
    match page.approvers.begin_assertion() {
        Ok((options, state)) => {
            *page.pending.lock().unwrap_or_else(|e| e.into_inner()) = Some(state);
            answer(StatusCode::OK, &options)
        }
        Err(error) => answer(StatusCode::CONFLICT, &json!({ "error": error.to_string() })),
    }
}

async fn finish_approval(State(page): State<Arc<ApprovalPage>>, body: Bytes) -> Response {
    let text = String::from_utf8_lossy(&body).into_owned();
    let response: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    *page.last_answer.lock().unwrap_or_else(|e| e.into_inner()) = Some(text);
    let state = page
        .pending
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take();
    let Some(state) = state else {
        return answer(
            StatusCode::CONFLICT,
            &json!({ "error": "nothing to approve" }),
        );
    };
    match page.approvers.finish_assertion(state, &response) {
        Ok(name) => {
            page.approved
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(name.clone());
            answer(StatusCode::OK, &json!({ "approved": name }))
        }
        Err(error) => answer(
            StatusCode::FORBIDDEN,
            &json!({ "error": error.to_string() }),
        ),
    }
}

fn answer(status: StatusCode, body: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn approved(page: &ApprovalPage) -> Vec<String> {
    page.approved
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
}

/// The stored signature counter of the one enrolled passkey.
fn stored_counter(file: &Path) -> u64 {
    let text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{e}"));
    let stored: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}"));
    let approvers = stored["approvers"].as_array().cloned().unwrap_or_default();
    assert_eq!(approvers.len(), 1, "one passkey enrolled: {stored}");
    assert_eq!(approvers[0]["name"], "alice");
    approvers[0]["passkey"]["cred"]["counter"]
        .as_u64()
        .unwrap_or_else(|| panic!("no counter: {stored}"))
}

#[test]
fn an_enrolled_passkey_approves_and_nothing_else_does() {
    let scratch = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let file: PathBuf = scratch.path().join("state/approvers.json");
    let authenticator = scratch.path().join("authenticator.json");
    let runtime = runtime();

    let enrol_port = enrol_alice(&runtime, &file, &authenticator);
    let counter_at_enrolment = stored_counter(&file);

    // The approval page listens on another port of the same host: any port is accepted.
    let (listener, port) = loopback_listener(&runtime);
    assert_ne!(port, enrol_port);
    let page = Arc::new(ApprovalPage {
        approvers: open_approvers(&file, enrol_port),
        pending: Mutex::new(None),
        approved: Mutex::new(Vec::new()),
        last_answer: Mutex::new(None),
    });
    let routes = approval_routes(Arc::clone(&page));
    let server = runtime.spawn(async move { axum::serve(listener, routes).await });
    let page_url = format!("http://localhost:{port}/");

    let run = passkey(&[
        "--authenticator",
        &authenticator.display().to_string(),
        "--open",
        &page_url,
        "--click",
        "Approve",
        "--expect",
        "Approved by alice",
    ]);
    assert!(
        run.ok,
        "the enrolled passkey did not approve: {}",
        run.stderr
    );
    assert_eq!(approved(&page), ["alice"]);
    assert!(
        stored_counter(&file) > counter_at_enrolment,
        "the counter moved on"
    );

    // A plain HTTP client: a made-up answer is refused.
    let made_up = json!({
        "id": "AAAA", "rawId": "AAAA", "type": "public-key",
        "response": {"authenticatorData": "AAAA", "clientDataJSON": "AAAA", "signature": "AAAA"},
    })
    .to_string();
    assert_eq!(raw_http(port, &post_request("/options", port, "{}")).0, 200);
    assert_eq!(
        raw_http(port, &post_request("/finish", port, &made_up)).0,
        403
    );

    // The browser's real answer, replayed: against a fresh challenge, and with none pending.
    let replayed = page
        .last_answer
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
        .unwrap_or_default();
    assert!(
        replayed.contains("signature"),
        "the browser's answer was kept"
    );
    assert_eq!(raw_http(port, &post_request("/options", port, "{}")).0, 200);
    assert_eq!(
        raw_http(port, &post_request("/finish", port, &replayed)).0,
        403
    );
    assert_eq!(
        raw_http(port, &post_request("/finish", port, &replayed)).0,
        409
    );
    assert_eq!(approved(&page), ["alice"], "nothing more was approved");

    // A browser without the enrolled passkey cannot complete the assertion.
    let stranger = scratch.path().join("stranger.json");
    let run = passkey(&[
        "--authenticator",
        &stranger.display().to_string(),
        "--open",
        &page_url,
        "--click",
        "Approve",
        "--expect",
        "Refused: NotAllowedError",
    ]);
    assert!(
        run.ok,
        "the stranger's browser did not end refused: {}",
        run.stderr
    );
    assert_eq!(run.report["credentials"], 0, "{}", run.report);
    assert_eq!(approved(&page), ["alice"], "the stranger approved nothing");

    // The same passkey approves again later: the counter check does not lock it out.
    let run = passkey(&[
        "--authenticator",
        &authenticator.display().to_string(),
        "--open",
        &page_url,
        "--click",
        "Approve",
        "--expect",
        "Approved by alice",
    ]);
    assert!(run.ok, "the second approval failed: {}", run.stderr);
    assert_eq!(approved(&page), ["alice", "alice"]);
    server.abort();
}
