//! The console on the approval page's listener, end to end: after a call that ran and one that
//! waits for approval, Debian's Chromium (through `tests/node/passkey.mjs`) shows the waiting
//! approval with a link to its page, the activity, the upstream ready and its sandbox profile
//! (with the digest its `sandbox_started` record names); the activity filter by tool narrows
//! the list; no argument value is on any console page. And over plain HTTP: another `Host` is
//! refused, the pages carry the approval page's security headers, and nothing takes a POST.

use std::path::PathBuf;

use serde_json::Value;

use crate::passkey::{Run, passkey};
use crate::support::{
    Config, Identity, Portcullis, Scratch, Target, Tool, Upstream, fixture_policy, raw_http,
    result_text, ts_call,
};

/// A send that needs approval (the policy's `other-side-effects-need-approval`); its values
/// must never be on the console.
const SEND: &str = r#"{"to":"eve@evil.example","subject":"q3","body":"the quarterly numbers"}"#;
const ECHO: &str = r#"{"text":"console-echo-value"}"#;

struct Setup {
    scratch: Scratch,
    portcullis: Portcullis,
    /// `http://localhost:PORT`, as Portcullis prints it at start.
    origin: String,
    port: u16,
}

fn start() -> Setup {
    let scratch = Scratch::new();
    let work = scratch.sub("work");
    let fx = Upstream::fixture("fx", &work)
        .trusted()
        .tool("echo", Tool::read())
        .tool(
            "send_message",
            Tool::send().recipients(&["/to"]).irreversible(),
        );
    let config = scratch.config(
        Config::new()
            .approval_timeout_secs(120)
            .identity(Identity::user("alice").tenant("acme"))
            .policy(fixture_policy("approval.cedar"))
            .upstream(fx),
    );
    let portcullis = Portcullis::http(&config);
    let log = portcullis.log();
    let origin = log
        .lines()
        .find_map(|line| line.strip_prefix("portcullis: approval page on "))
        .map(|origin| origin.trim().to_owned())
        .unwrap_or_else(|| panic!("no approval page in the log:\n{log}"));
    let port = origin
        .trim_start_matches("http://localhost:")
        .parse()
        .unwrap_or_else(|e| panic!("no port in {origin}: {e}"));
    Setup {
        scratch,
        portcullis,
        origin,
        port,
    }
}

impl Setup {
    /// `GET path` with `host` as the `Host`: the status and the whole response.
    fn get(&self, path: &str, host: &str) -> (u16, String) {
        raw_http(
            self.port,
            &format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
        )
    }

    /// The page at `path` as the console serves it to its own host.
    fn page(&self, path: &str) -> String {
        let (status, page) = self.get(path, &format!("localhost:{}", self.port));
        assert_eq!(status, 200, "{page}");
        page
    }

    /// The profile digest the upstream's start was recorded with.
    fn recorded_profile(&self) -> String {
        std::fs::read_to_string(self.scratch.path().join("state/evidence.jsonl"))
            .unwrap_or_default()
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .map(|line| line["record"]["event"].clone())
            .find(|event| event["kind"] == "sandbox_started")
            .and_then(|event| event["profile"].as_str().map(str::to_owned))
            .unwrap_or_else(|| panic!("no sandbox_started record"))
    }
}

/// Runs passkey.mjs (Chromium) with `steps`; on failure, a screenshot in a directory that
/// outlives the test's scratch, named in the failure.
fn browse(steps: &[&str]) -> Run {
    let screenshots: PathBuf = std::env::temp_dir().join(format!(
        "portcullis-console-screenshots-{}",
        std::process::id()
    ));
    let mut args = vec!["--screenshots", screenshots.to_str().unwrap_or("/tmp")];
    args.extend_from_slice(steps);
    let run = passkey(&args);
    assert!(
        run.ok,
        "the console in Chromium: {}\nscreenshots in {}",
        run.stderr,
        screenshots.display()
    );
    run
}

#[test]
fn the_console_in_chromium_shows_what_waits_what_ran_the_upstream_and_its_sandbox() {
    let setup = start();
    let http = Target::Http(&setup.portcullis.url);
    let echoed = ts_call(&http, "fx.echo", ECHO);
    assert!(
        result_text(&echoed["result"]).contains("console-echo-value"),
        "{echoed}"
    );
    let pending = ts_call(&http, "fx.send_message", SEND);
    assert_eq!(pending["result"]["isError"], true, "{pending}");

    let digest = setup.recorded_profile();
    let console = format!("{}/", setup.origin);
    browse(&[
        "--open",
        &console,
        "--expect",
        "Waiting for approval",
        "--expect",
        "waiting",
        "--expect",
        "fx.send_message",
        "--expect",
        "fx.echo",
        "--expect",
        "call_outcome",
        "--expect",
        "ready",
        "--expect",
        "contained",
        "--expect",
        &format!("profile digest: {digest}"),
        "--expect",
        "read and write",
        // The waiting approval links to its own page, where (only) a passkey decides.
        "--click",
        "its page",
        "--expect",
        "Approve fx.send_message?",
    ]);

    // Filtered by tool, the activity shows that tool's records only.
    let filtered = format!("{}/activity?tool=fx.echo&user=&decision=", setup.origin);
    browse(&[
        "--open",
        &filtered,
        "--expect",
        "fx.echo",
        "--expect",
        "allow [reads-run]",
    ]);
    let narrowed = setup.page("/activity?tool=fx.echo&user=&decision=");
    let everything = setup.page("/activity");
    assert!(
        narrowed.contains("fx.echo") && !narrowed.contains("fx.send_message"),
        "{narrowed}"
    );
    assert!(everything.contains("fx.send_message"), "{everything}");
    let nobody = setup.page("/activity?user=mallory");
    assert!(nobody.contains("No record matches."), "{nobody}");

    // No argument value is on any console page (the approval's own page shows them whole).
    for page in [setup.page("/"), everything] {
        for value in ["eve@evil.example", "quarterly", "console-echo-value"] {
            assert!(!page.contains(value), "{value} on the console: {page}");
        }
    }
}

#[test]
fn the_console_answers_only_its_own_host_with_the_page_headers_and_takes_no_post() {
    let setup = start();
    for path in ["/", "/activity?decision=deny"] {
        let page = setup.page(path).to_ascii_lowercase();
        for header in [
            "content-security-policy: default-src 'none'",
            "frame-ancestors 'none'",
            "x-frame-options: deny",
            "cache-control: no-store",
            "referrer-policy: same-origin",
            "refresh: 5",
            "content-type: text/html; charset=utf-8",
        ] {
            assert!(page.contains(header), "{path}: no `{header}` in {page}");
        }
    }
    assert_eq!(setup.get("/", &format!("127.0.0.1:{}", setup.port)).0, 200);
    for host in [
        format!("attacker.example:{}", setup.port),
        "localhost".to_owned(),
    ] {
        let (status, answer) = setup.get("/", &host);
        assert_eq!(status, 421, "{host}: {answer}");
        assert!(!answer.contains("Waiting for approval"), "{answer}");
    }
    let (status, answer) = raw_http(
        setup.port,
        &format!(
            "POST / HTTP/1.1\r\nHost: localhost:{port}\r\nOrigin: http://localhost:{port}\r\n\
             Content-Length: 0\r\nConnection: close\r\n\r\n",
            port = setup.port
        ),
    );
    assert_eq!(status, 405, "{answer}");
}
