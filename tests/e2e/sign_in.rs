//! The approval page with `[http.auth.approval]`, end to end: Portcullis over HTTP as the
//! resource server of a real OpenID provider (`tests/node/oidc.mjs`), the official TypeScript
//! client calling with a user's bearer token and getting the page's link (it shows no form), and
//! the person signing in on the page in Chromium at the same provider. Only the call's own user
//! approves it; for a four-eyes call, only another member of the approvers group. A plain HTTP
//! client holding the link (an agent) approves nothing: no sign-in, no approval.

use serde_json::Value;

use crate::ladder::{get, pending_link, port};
use crate::passkey::passkey;
use crate::support::{
    Auth, Config, OpenIdProvider, Portcullis, Scratch, Target, Tool, Upstream, fixture_policy,
    free_port, raw_http, result_text, ts_client,
};

const SEND: &str = r#"{"to":"eve@evil.example","subject":"q3","body":"the numbers"}"#;
/// The page's client at the provider.
const CLIENT: &str = "portcullis-approvals";

struct Setup {
    provider: OpenIdProvider,
    portcullis: Portcullis,
    scratch: Scratch,
    work: std::path::PathBuf,
}

fn setup(policy: &str) -> Setup {
    let scratch = Scratch::new();
    let work = scratch.sub("work");
    let port = free_port();
    let resource = format!("http://127.0.0.1:{port}/mcp");
    let provider = OpenIdProvider::start_with(&resource, &["--approval-client", CLIENT]);
    let fx = Upstream::fixture("fx", &work).trusted().tool(
        "send_message",
        Tool::send().recipients(&["/to"]).irreversible(),
    );
    let auth = Auth::new(&provider.issuer, &resource)
        .required_scopes(&["mcp"])
        .approval_sign_in(CLIENT, "approvers");
    let config = scratch.config(
        Config::new()
            .approval_timeout_secs(120)
            .policy(fixture_policy(policy))
            .http_auth(auth)
            .upstream(fx),
    );
    let portcullis = Portcullis::http_on(&config, &format!("127.0.0.1:{port}"), &[]);
    Setup {
        provider,
        portcullis,
        scratch,
        work,
    }
}

impl Setup {
    /// `fx.send_message` as alice, from a client that shows no form.
    fn send(&self) -> Value {
        let bearer = format!("Authorization: Bearer {}", self.provider.token("alice"));
        ts_client(
            &Target::Http(&self.portcullis.url),
            &[
                "--scenario",
                "call",
                "--tool",
                "fx.send_message",
                "--args",
                SEND,
                "--header",
                &bearer,
            ],
        )
    }

    fn sent(&self) -> usize {
        std::fs::read_to_string(self.work.join("outbox.jsonl"))
            .unwrap_or_default()
            .lines()
            .count()
    }

    /// Who approved, as the evidence names them.
    fn approved_by(&self) -> Vec<String> {
        std::fs::read_to_string(self.scratch.path().join("state/evidence.jsonl"))
            .unwrap_or_default()
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .map(|line| line["record"]["event"].clone())
            .filter(|event| event["kind"] == "approval" && event["answer"] == "approved")
            .map(|event| event["by"].as_str().unwrap_or_default().to_owned())
            .collect()
    }
}

/// Opens `link` in Chromium and signs in at the provider as `account`; then `then`.
fn signed_in_as(link: &str, account: &str, then: &[&str]) -> crate::passkey::Run {
    let fill = format!("account={account}");
    let mut steps = vec![
        "--open",
        link,
        "--click",
        "Sign in to approve",
        "--fill",
        &fill,
        "--click",
        "Continue",
        "--expect",
        "(consent)",
        "--click",
        "Continue",
    ];
    steps.extend_from_slice(then);
    passkey(&steps)
}

/// A plain HTTP client holding the link: it reads the page, and approves nothing with the
/// page's token, a made-up cookie, the passkey endpoints, or a forged return from the issuer.
fn an_agent_with_the_link_approves_nothing(link: &str) {
    let (status, page) = get(link);
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("Sign in to approve"), "{page}");
    assert!(
        !page.contains("/confirm"),
        "an approve form before sign-in: {page}"
    );
    let token = page
        .split("name=\"token\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or("");
    let port = port(link);
    let path = &link[link.find("/approvals/").unwrap_or(0)..];
    let origin = format!("http://localhost:{port}");
    let form = format!("token={token}");
    for cookie in ["", "Cookie: portcullis-approver=made-up\r\n"] {
        let (status, answer) = raw_http(
            port,
            &format!(
                "POST {path}/confirm HTTP/1.1\r\nHost: localhost:{port}\r\nOrigin: {origin}\r\n{cookie}Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{form}",
                form.len()
            ),
        );
        assert_eq!(status, 403, "{answer}");
    }
    let (status, answer) = raw_http(
        port,
        &format!(
            "POST {path}/challenge HTTP/1.1\r\nHost: localhost:{port}\r\nOrigin: {origin}\r\nx-portcullis-token: {token}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        ),
    );
    assert_eq!(status, 403, "passkeys approve nothing here: {answer}");
    // Starting a sign-in only sends the agent to the provider, whose sign-in it cannot
    // complete; a made-up return is refused.
    let (status, started) = raw_http(
        port,
        &format!(
            "GET {path}/sign-in HTTP/1.1\r\nHost: localhost:{port}\r\nConnection: close\r\n\r\n"
        ),
    );
    assert_eq!(status, 303, "{started}");
    assert!(started.contains("prompt=login"), "{started}");
    let state = started
        .split("state=")
        .nth(1)
        .and_then(|rest| rest.split(['&', '\r']).next())
        .unwrap_or("");
    let (status, forged) = raw_http(
        port,
        &format!(
            "GET /approvals/signed-in?code=forged&state={state} HTTP/1.1\r\nHost: localhost:{port}\r\nConnection: close\r\n\r\n"
        ),
    );
    assert_eq!(
        status, 400,
        "a return without the browser's binding: {forged}"
    );
}

#[test]
fn only_the_calls_own_user_signed_in_at_the_issuer_approves_it() {
    let setup = setup("approval.cedar");
    let asked = setup.send();
    let (link, id) = pending_link(&asked["result"]);
    an_agent_with_the_link_approves_nothing(&link);

    // Bob signs in: he may not approve alice's call.
    let bob = signed_in_as(&link, "bob", &["--expect", "cannot approve this"]);
    assert!(bob.ok, "{}", bob.stderr);
    let again = setup.send();
    assert_eq!(pending_link(&again["result"]).1, id, "{again}");
    assert_eq!(setup.sent(), 0);

    // Alice signs in and approves; the identical call then runs, once.
    let alice = signed_in_as(
        &link,
        "alice",
        &[
            "--expect",
            "Signed in as alice",
            "--click",
            "Approve as alice",
            "--expect",
            "Approved.",
        ],
    );
    assert!(alice.ok, "{}", alice.stderr);
    let ran = setup.send();
    assert_eq!(
        result_text(&ran["result"]),
        "sent message to `eve@evil.example`",
        "{ran}"
    );
    assert_eq!(setup.sent(), 1);
    assert_eq!(setup.approved_by(), vec!["signed-in alice".to_owned()]);
    let next = setup.send();
    let (next_link, next_id) = pending_link(&next["result"]);
    assert_ne!(next_id, id, "the approval covered a second call");
    assert_eq!(setup.sent(), 1);

    // The page's Deny button, in the browser (its form's POST carries the page's origin):
    // the identical call is then refused, and nothing runs.
    let denied = passkey(&[
        "--open", &next_link, "--click", "Deny", "--expect", "Denied.",
    ]);
    assert!(denied.ok, "{}", denied.stderr);
    let refused = setup.send();
    assert_eq!(refused["result"]["isError"], true, "{refused}");
    assert!(
        result_text(&refused["result"]).contains("declined"),
        "{refused}"
    );
    assert_eq!(setup.sent(), 1);
}

#[test]
fn four_eyes_on_the_page_take_another_member_of_the_approvers_group() {
    let setup = setup("approval-other.cedar");
    let asked = setup.send();
    let (link, _) = pending_link(&asked["result"]);
    // Alice, whose call it is, cannot approve it, even signed in.
    let alice = signed_in_as(&link, "alice", &["--expect", "cannot approve this"]);
    assert!(alice.ok, "{}", alice.stderr);
    assert_eq!(setup.sent(), 0);
    // Carol, an approver, can.
    let carol = signed_in_as(
        &link,
        "carol",
        &["--click", "Approve as carol", "--expect", "Approved."],
    );
    assert!(carol.ok, "{}", carol.stderr);
    let ran = setup.send();
    assert_eq!(
        result_text(&ran["result"]),
        "sent message to `eve@evil.example`",
        "{ran}"
    );
    assert_eq!(setup.approved_by(), vec!["signed-in carol".to_owned()]);
}
