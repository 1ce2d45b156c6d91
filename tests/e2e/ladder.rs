//! The approval ladder past the client's own form, end to end: a client that cannot show a
//! form (the official TypeScript and Python SDK clients without elicitation, in both eras)
//! gets the approval page's link in a tool error; the link alone approves nothing (a plain
//! HTTP client that fetches it and posts to it approves nothing); `portcullis approve` refuses
//! without a terminal and approves at one; then the identical call runs once, and no other
//! call is covered. A client that declares forms and never answers falls to the page with the
//! same approval, and a denial there is final. The side effect is the fixture's outbox.

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

use crate::passkey::passkey;
use crate::support::{
    Config, Identity, Portcullis, Scratch, Target, Tool, Upstream, bin, fixture_policy, py_client,
    raw_http, result_text, ts_call, ts_client,
};

const SEND: &str = r#"{"to":"eve@evil.example","subject":"q3","body":"the numbers"}"#;
const OTHER_SEND: &str = r#"{"to":"mallory@evil.example","subject":"q3","body":"the numbers"}"#;

struct Setup {
    scratch: Scratch,
    config: PathBuf,
    work: PathBuf,
}

fn setup(form_wait_secs: u64) -> Setup {
    setup_with(form_wait_secs, "approval.cedar")
}

fn setup_with(form_wait_secs: u64, policy: &str) -> Setup {
    let scratch = Scratch::new();
    let work = scratch.sub("work");
    let fx = Upstream::fixture("fx", &work).trusted().tool(
        "send_message",
        Tool::send().recipients(&["/to"]).irreversible(),
    );
    let config = scratch.config(
        Config::new()
            .approval_timeout_secs(120)
            .approval_form_wait_secs(form_wait_secs)
            .identity(Identity::user("alice").tenant("acme"))
            .policy(fixture_policy(policy))
            .upstream(fx),
    );
    Setup {
        scratch,
        config,
        work,
    }
}

impl Setup {
    /// One line per send that ran.
    fn sent(&self) -> usize {
        std::fs::read_to_string(self.work.join("outbox.jsonl"))
            .unwrap_or_default()
            .lines()
            .count()
    }

    /// The approval records: (answer, rung, by).
    fn approvals(&self) -> Vec<(String, String, String)> {
        std::fs::read_to_string(self.scratch.path().join("state/evidence.jsonl"))
            .unwrap_or_default()
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .map(|line| line["record"]["event"].clone())
            .filter(|event| event["kind"] == "approval")
            .map(|event| {
                let field = |name: &str| event[name].as_str().unwrap_or("").to_owned();
                (field("answer"), field("rung"), field("by"))
            })
            .collect()
    }

    /// `portcullis VERB --config CONFIG ID` with no terminal.
    fn without_terminal(&self, verb: &str, id: &str) -> Output {
        Command::new(bin("portcullis"))
            .args([verb, "--config"])
            .arg(&self.config)
            .arg(id)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// `portcullis VERB --config CONFIG ID` at a terminal (a pseudo-terminal from `script`),
    /// typing `typed`.
    fn at_terminal(&self, verb: &str, id: &str, typed: &str) -> Output {
        let line = format!(
            "{} {verb} --config {} {id}",
            bin("portcullis").display(),
            self.config.display()
        );
        let mut child = at_a_terminal(&line);
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(typed.as_bytes())
                .unwrap_or_else(|e| panic!("{e}"));
        }
        child.wait_with_output().unwrap_or_else(|e| panic!("{e}"))
    }
}

/// The shell command `line` started at a pseudo-terminal (`script`), its three streams piped.
fn at_a_terminal(line: &str) -> std::process::Child {
    Command::new("script")
        .args(["-qec", line, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run script(1): {e}"))
}

/// The identical call again: approval `id` still waits (the same link), and nothing was sent.
fn still_waits(setup: &Setup, target: &Target<'_>, id: &str) {
    let again = ts_call(target, "fx.send_message", SEND);
    assert_eq!(pending_link(&again["result"]).1, id);
    assert_eq!(setup.sent(), 0);
}

/// The identical call again, once approved: it runs (and is the `sent`th send).
fn runs(setup: &Setup, target: &Target<'_>, sent: usize) {
    let ran = ts_call(target, "fx.send_message", SEND);
    assert_eq!(
        result_text(&ran["result"]),
        "sent message to `eve@evil.example`",
        "{ran}"
    );
    assert_eq!(setup.sent(), sent);
}

/// The approval's link and id in a pending tool error.
pub(crate) fn pending_link(result: &Value) -> (String, String) {
    let text = result_text(result);
    assert_eq!(result["isError"], true, "{result}");
    let start = text
        .find("http://localhost:")
        .unwrap_or_else(|| panic!("no link in {text}"));
    let link: String = text[start..]
        .chars()
        .take_while(|c| !c.is_whitespace())
        .collect();
    let id = link
        .rsplit('/')
        .next()
        .unwrap_or_else(|| panic!("no id in {link}"))
        .to_owned();
    (link, id)
}

/// The page's port in its link.
pub(crate) fn port(link: &str) -> u16 {
    link.trim_start_matches("http://localhost:")
        .split('/')
        .next()
        .and_then(|port| port.parse().ok())
        .unwrap_or_else(|| panic!("no port in {link}"))
}

pub(crate) fn get(link: &str) -> (u16, String) {
    let path = &link[link.find("/approvals/").unwrap_or(0)..];
    raw_http(
        port(link),
        &format!(
            "GET {path} HTTP/1.1\r\nHost: localhost:{}\r\nConnection: close\r\n\r\n",
            port(link)
        ),
    )
}

fn post(link: &str, suffix: &str, origin: &str, body: &str) -> (u16, String) {
    let path = &link[link.find("/approvals/").unwrap_or(0)..];
    raw_http(
        port(link),
        &format!(
            "POST {path}{suffix} HTTP/1.1\r\nHost: localhost:{}\r\nOrigin: {origin}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            port(link),
            body.len()
        ),
    )
}

/// What a plain HTTP client holding the link can do: read the page, and nothing that approves.
fn the_link_alone_approves_nothing(link: &str) {
    let (status, page) = get(link);
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("eve@evil.example"), "{page}");
    let origin = format!("http://localhost:{}", port(link));
    let token = page
        .split("name=\"token\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or("");
    // A made-up passkey answer, with or without the page's token, approves nothing; neither
    // does one from another origin, or a request for another host.
    for (suffix, from, body) in [
        ("/approve", origin.as_str(), r#"{"id":"x","response":{}}"#),
        ("/challenge", "http://evil.example", ""),
    ] {
        let (status, answer) = post(link, suffix, from, body);
        assert!(
            status == 403 || status == 404,
            "{suffix}: {status} {answer}"
        );
    }
    let forged = raw_http(
        port(link),
        &format!(
            "POST {}/approve HTTP/1.1\r\nHost: localhost:{}\r\nOrigin: {origin}\r\nx-portcullis-token: {token}\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}",
            &link[link.find("/approvals/").unwrap_or(0)..],
            port(link)
        ),
    );
    assert_eq!(forged.0, 403, "{forged:?}");
    // Another reader loading the page (an agent holding the link) does not spoil the token of
    // the page the person has open: it still gets to the passkey step (here: nobody enrolled).
    let _ = get(link);
    let challenge = raw_http(
        port(link),
        &format!(
            "POST {}/challenge HTTP/1.1\r\nHost: localhost:{}\r\nOrigin: {origin}\r\nx-portcullis-token: {token}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            &link[link.find("/approvals/").unwrap_or(0)..],
            port(link)
        ),
    );
    assert_eq!(challenge.0, 503, "{challenge:?}");
    assert!(challenge.1.contains("enrol"), "{challenge:?}");
    let rebound = raw_http(
        port(link),
        &format!(
            "GET {} HTTP/1.1\r\nHost: attacker.example:{}\r\nConnection: close\r\n\r\n",
            &link[link.find("/approvals/").unwrap_or(0)..],
            port(link)
        ),
    );
    assert_eq!(rebound.0, 421, "{rebound:?}");
}

#[test]
fn a_client_without_forms_gets_the_link_and_only_the_identical_retry_runs_once() {
    let setup = setup(60);
    let portcullis = Portcullis::http(&setup.config);
    let http = Target::Http(&portcullis.url);
    let first = ts_call(&http, "fx.send_message", SEND);
    let (link, id) = pending_link(&first["result"]);
    let text = result_text(&first["result"]);
    assert!(text.contains("make exactly the same call again"), "{text}");
    assert!(text.contains(&format!("portcullis approve {id}")), "{text}");
    assert_eq!(setup.sent(), 0);

    the_link_alone_approves_nothing(&link);
    // Without a terminal, the command approves nothing either.
    let refused = setup.without_terminal("approve", &id);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("interactive terminal"),
        "{refused:?}"
    );
    // The identical retry finds the same approval still waiting: the same link, nothing run.
    still_waits(&setup, &http, &id);

    // At a terminal, after reading the request, the person approves.
    let approved = setup.at_terminal("approve", &id, "approve\n");
    let shown = String::from_utf8_lossy(&approved.stdout);
    assert!(approved.status.success(), "{approved:?}");
    assert!(
        shown.contains("eve@evil.example") && shown.contains("Approved."),
        "{shown}"
    );

    // Another call is not covered: it gets its own approval.
    let other = ts_call(&http, "fx.send_message", OTHER_SEND);
    assert_ne!(pending_link(&other["result"]).1, id);
    assert_eq!(setup.sent(), 0);
    // The identical call runs, once; the next identical one needs a new approval.
    let ran = ts_call(&http, "fx.send_message", SEND);
    assert_eq!(
        result_text(&ran["result"]),
        "sent message to `eve@evil.example`",
        "{ran}"
    );
    let after = ts_call(&http, "fx.send_message", SEND);
    assert_ne!(pending_link(&after["result"]).1, id);
    assert_eq!(setup.sent(), 1);

    let approvals = setup.approvals();
    assert!(
        approvals.contains(&("approved".into(), "pending".into(), "terminal".into())),
        "{approvals:?}"
    );
    assert!(
        approvals
            .iter()
            .filter(|(answer, rung, _)| answer == "pending" && rung == "pending")
            .count()
            >= 4,
        "{approvals:?}"
    );
}

#[test]
fn the_python_client_gets_the_link_in_both_eras_and_a_denial_is_final() {
    let setup = setup(60);
    let portcullis = Portcullis::http(&setup.config);
    let http = Target::Http(&portcullis.url);
    for era in ["legacy", "2026-07-28"] {
        let args = if era == "2026-07-28" {
            OTHER_SEND
        } else {
            SEND
        };
        let call = |_: ()| {
            py_client(
                &http,
                &[
                    "--scenario",
                    "call",
                    "--tool",
                    "fx.send_message",
                    "--args",
                    args,
                    "--mode",
                    era,
                ],
            )
        };
        let first = call(());
        let (_, id) = pending_link(&first["result"]);
        let denied = setup.at_terminal("deny", &id, "");
        assert!(denied.status.success(), "{era}: {denied:?}");
        let retried = call(());
        let text = result_text(&retried["result"]);
        assert!(text.contains("the person declined it"), "{era}: {text}");
        assert_eq!(setup.sent(), 0, "{era}");
    }
}

#[test]
fn a_client_that_declares_forms_and_never_answers_falls_to_the_page() {
    let setup = setup(1);
    let portcullis = Portcullis::http(&setup.config);
    let http = Target::Http(&portcullis.url);
    let never = ts_client(
        &http,
        &[
            "--scenario",
            "elicit",
            "--tool",
            "fx.send_message",
            "--args",
            SEND,
            "--answer",
            "never",
        ],
    );
    let (_, id) = pending_link(&never["result"]);
    assert_eq!(setup.sent(), 0);
    let approvals = setup.approvals();
    for expected in [
        ("asked", "form", ""),
        ("unanswered", "form", ""),
        ("pending", "pending", ""),
    ] {
        let expected = (
            expected.0.to_owned(),
            expected.1.to_owned(),
            expected.2.to_owned(),
        );
        assert!(
            approvals.contains(&expected),
            "{expected:?} in {approvals:?}"
        );
    }
    // Approved in the terminal, the identical call from the same client runs, asking nothing.
    assert!(
        setup
            .at_terminal("approve", &id, "approve\n")
            .status
            .success()
    );
    let ran = ts_client(
        &http,
        &[
            "--scenario",
            "elicit",
            "--tool",
            "fx.send_message",
            "--args",
            SEND,
            "--answer",
            "never",
        ],
    );
    assert_eq!(
        result_text(&ran["result"]),
        "sent message to `eve@evil.example`",
        "{ran}"
    );
    assert_eq!(
        ran["elicitations"].as_array().map_or(0, Vec::len),
        0,
        "{ran}"
    );
    assert_eq!(setup.sent(), 1);
}

/// `portcullis approver enroll --name NAME` at a terminal, its one-time link opened in
/// Chromium with the virtual authenticator kept in `authenticator`.
fn enrol(setup: &Setup, name: &str, authenticator: &Path) {
    let line = format!(
        "{} approver enroll --config {} --name {name}",
        bin("portcullis").display(),
        setup.config.display()
    );
    let mut child = at_a_terminal(&line);
    let stdout = child.stdout.take().unwrap_or_else(|| panic!("no stdout"));
    let mut lines = BufReader::new(stdout).lines();
    let link = lines
        .by_ref()
        .map_while(Result::ok)
        .find_map(|line| {
            line.trim()
                .starts_with("http://localhost:")
                .then(|| line.trim().to_owned())
        })
        .unwrap_or_else(|| panic!("enroll printed no link"));
    let run = passkey(&[
        "--authenticator",
        &authenticator.display().to_string(),
        "--open",
        &link,
        "--click",
        "Enrol passkey",
        "--expect",
        "Passkey enrolled",
    ]);
    assert!(run.ok, "enrolment failed: {}", run.stderr);
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let status = child.wait().unwrap_or_else(|e| panic!("{e}"));
    assert!(status.success(), "enroll: {rest:?}");
    assert!(
        rest.iter()
            .any(|line| line.contains(&format!("Enrolled `{name}`"))),
        "{rest:?}"
    );
}

/// Tries to approve the page at `link` with the passkey in `authenticator`, giving up soon:
/// for the cases that must not approve.
fn approve_briefly(link: &str, authenticator: &Path) -> crate::passkey::Run {
    passkey(&[
        "--timeout-ms",
        "8000",
        "--authenticator",
        &authenticator.display().to_string(),
        "--open",
        link,
        "--click",
        "Approve with your passkey",
        "--expect",
        "Approved.",
    ])
}

/// Approves the page at `link` in Chromium with the passkey in `authenticator`.
fn approve_in_browser(link: &str, authenticator: &Path) -> crate::passkey::Run {
    passkey(&[
        "--authenticator",
        &authenticator.display().to_string(),
        "--open",
        link,
        "--click",
        "Approve with your passkey",
        "--expect",
        "Approved.",
    ])
}

#[test]
fn the_page_in_chromium_approves_only_with_the_enrolled_passkey() {
    let setup = setup(60);
    let enrolled = setup.scratch.path().join("authenticator.json");
    enrol(&setup, "alice", &enrolled);
    let portcullis = Portcullis::http(&setup.config);
    let http = Target::Http(&portcullis.url);

    // Rung 3: the link comes back; a browser without the enrolled passkey approves nothing.
    let first = ts_call(&http, "fx.send_message", SEND);
    let (link, id) = pending_link(&first["result"]);
    let stranger = setup.scratch.path().join("stranger.json");
    let refused = approve_briefly(&link, &stranger);
    assert!(
        !refused.ok,
        "a passkey that was never enrolled approved: {:?}",
        refused.report
    );
    still_waits(&setup, &http, &id);
    // With the enrolled passkey it is approved, and the identical call runs once.
    let approved = approve_in_browser(&link, &enrolled);
    assert!(approved.ok, "{}", approved.stderr);
    runs(&setup, &http, 1);

    // Rung 2: a client that opens links opens the page; the call waits and runs once the
    // person approved there, in the same request.
    let opened = ts_client(
        &http,
        &[
            "--scenario",
            "call",
            "--tool",
            "fx.send_message",
            "--args",
            OTHER_SEND,
            "--approve-url",
            &enrolled.display().to_string(),
        ],
    );
    assert_eq!(
        result_text(&opened["result"]),
        "sent message to `mallory@evil.example`",
        "{opened}"
    );
    assert_eq!(opened["elicitations"][0]["mode"], "url", "{opened}");
    assert_eq!(setup.sent(), 2);
    let approvals = setup.approvals();
    assert!(
        approvals
            .iter()
            .any(|(answer, rung, by)| answer == "approved"
                && rung == "pending"
                && by == "passkey alice"),
        "{approvals:?}"
    );
    assert!(
        approvals.contains(&("asked".into(), "url".into(), String::new())),
        "{approvals:?}"
    );

    // Rung 2 in the stateless era: an input-required round sends the client to the page; its
    // retry finds the approval there and the call runs.
    let stateless = py_client(
        &http,
        &[
            "--scenario",
            "call",
            "--tool",
            "fx.send_message",
            "--args",
            r#"{"to":"trent@evil.example","subject":"q3","body":"the numbers"}"#,
            "--mode",
            "2026-07-28",
            "--approve-url",
            &enrolled.display().to_string(),
        ],
    );
    assert_eq!(
        result_text(&stateless["result"]),
        "sent message to `trent@evil.example`",
        "{stateless}"
    );
    assert_eq!(stateless["elicitations"][0]["mode"], "url", "{stateless}");
    assert_eq!(
        stateless["elicitations"][0]["via"], "input_required",
        "{stateless}"
    );
    assert_eq!(setup.sent(), 3);
}

#[test]
fn four_eyes_needs_another_approvers_passkey() {
    let setup = setup_with(60, "approval-other.cedar");
    let (alice, bob) = (
        setup.scratch.path().join("alice.json"),
        setup.scratch.path().join("bob.json"),
    );
    enrol(&setup, "alice", &alice);
    enrol(&setup, "bob", &bob);
    let portcullis = Portcullis::http(&setup.config);
    let http = Target::Http(&portcullis.url);
    // The caller's own client is not asked, even though it could show the form.
    let asked = ts_client(
        &http,
        &[
            "--scenario",
            "elicit",
            "--tool",
            "fx.send_message",
            "--args",
            SEND,
            "--content",
            r#"{"approve":true}"#,
        ],
    );
    assert_eq!(
        asked["elicitations"].as_array().map_or(0, Vec::len),
        0,
        "{asked}"
    );
    let (link, id) = pending_link(&asked["result"]);
    // Neither the terminal nor the caller's own passkey approves it.
    let terminal = setup.at_terminal("approve", &id, "approve\n");
    assert!(!terminal.status.success(), "{terminal:?}");
    assert!(
        String::from_utf8_lossy(&terminal.stderr).contains("someone other than `alice`")
            || String::from_utf8_lossy(&terminal.stdout).contains("someone other than `alice`"),
        "{terminal:?}"
    );
    assert!(!approve_briefly(&link, &alice).ok);
    still_waits(&setup, &http, &id);
    // Bob's passkey approves it; the identical call then runs once.
    let approved = approve_in_browser(&link, &bob);
    assert!(approved.ok, "{}", approved.stderr);
    runs(&setup, &http, 1);
    assert!(
        setup
            .approvals()
            .iter()
            .any(|(answer, _, by)| answer == "approved" && by == "passkey bob"),
        "{:?}",
        setup.approvals()
    );
}

#[test]
fn a_pending_approval_outlives_the_process_that_asked() {
    let setup = setup(60);
    // Over stdio each client starts its own Portcullis, which ends with it.
    let argv = crate::support::portcullis_stdio(&setup.config);
    let stdio = Target::Stdio(&argv);
    let first = ts_call(&stdio, "fx.send_message", SEND);
    let (_, id) = pending_link(&first["result"]);
    assert!(
        setup
            .at_terminal("approve", &id, "approve\n")
            .status
            .success()
    );
    // A new process (a restart, or another client's) finds the approval and runs the call once.
    runs(&setup, &stdio, 1);
    let again = ts_call(&stdio, "fx.send_message", SEND);
    assert_ne!(pending_link(&again["result"]).1, id);
    assert_eq!(setup.sent(), 1);
}
