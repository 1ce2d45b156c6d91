//! Identity and policy end to end: each identity sees and calls only what policy allows, over
//! stdio (the configured local identity) and over HTTP (bearer tokens from a real OpenID
//! provider), with the official TypeScript and Python SDK clients; bad tokens are refused with
//! the right status and challenge; a broken policy reload keeps the old policy serving.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::support::{
    Auth, Config, Identity, OpenIdProvider, Portcullis, RawSession, Scratch, Target, Tool,
    Upstream, bin, fixture_policy, free_port, names, portcullis_stdio, py_client, raw_http,
    result_text, stateless_call, ts_client,
};

/// The fixture behind Portcullis with its tools classified, under `policy`.
fn fixture_config(work: &Path, policy: &Path) -> Config {
    let fx = Upstream::fixture("fx", work)
        .surface("filesystem")
        .tool("echo", Tool::read())
        .tool("read_file", Tool::read())
        .tool("write_file", Tool::write())
        .tool("delete_file", Tool::destructive().scopes(&["files.write"]))
        .tool("send_message", Tool::send().scopes(&["mail.send"]));
    // Tool search answers (`auto`), but the fixture's few tools are listed themselves: the
    // step-up test calls through `portcullis.call_tool` too.
    Config::new()
        .tool_search("auto")
        .policy(policy)
        .upstream(fx)
}

fn call(target: &Target<'_>, tool: &str, args: &str, header: Option<&str>) -> Value {
    let mut argv = vec!["--scenario", "call", "--tool", tool, "--args", args];
    if let Some(header) = header {
        argv.extend(["--header", header]);
    }
    ts_client(target, &argv)
}

fn tool_error_text(observations: &Value) -> String {
    assert_eq!(
        observations["result"]["isError"],
        Value::Bool(true),
        "expected a tool error: {observations}"
    );
    result_text(&observations["result"])
}

#[test]
fn the_local_identity_sees_and_calls_only_what_policy_allows_in_both_eras() {
    let scratch = Scratch::new();
    let work = scratch.sub("work");
    std::fs::write(work.join("doomed.txt"), "bye").unwrap_or_else(|e| panic!("{e}"));
    let alice = Identity::user("alice")
        .groups(&["eng"])
        .tenant("acme")
        .scopes(&["files.write"]);
    let config =
        scratch.config(fixture_config(&work, &fixture_policy("identity.cedar")).identity(alice));
    let argv = portcullis_stdio(&config);
    let stdio = Target::Stdio(&argv);

    let listing = ts_client(&stdio, &["--scenario", "list"]);
    let tools = names(&listing["tools"]);
    assert!(tools.contains(&"fx.delete_file".to_owned()), "{tools:?}");

    // A read runs.
    let echoed = call(&stdio, "fx.echo", r#"{"text":"hi"}"#, None);
    assert_eq!(result_text(&echoed["result"]), "hi", "{echoed}");

    // A write needs approval, which this client cannot ask for: the approval page's link comes
    // back, and nothing is written.
    let write = call(
        &stdio,
        "fx.write_file",
        r#"{"path":"new.txt","content":"x"}"#,
        None,
    );
    let text = tool_error_text(&write);
    assert!(text.contains("waits for a person's approval"), "{text}");
    assert!(text.contains("did not run"), "{text}");
    assert!(
        !work.join("new.txt").exists(),
        "a refused write must not run"
    );

    // A send without the required scope: over stdio no step-up can add it, so the tool is
    // not listed and is unknown to a call, and nothing is sent.
    assert!(!tools.contains(&"fx.send_message".to_owned()), "{tools:?}");
    let send = call(
        &stdio,
        "fx.send_message",
        r#"{"to":"bob@acme.example","subject":"s","body":"b"}"#,
        None,
    );
    assert!(
        send["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("unknown tool `fx.send_message`")),
        "{send}"
    );
    assert!(
        !work.join("outbox.jsonl").exists(),
        "a denied send must not run"
    );

    // The same refusals for a stateless (2026-07-28) client.
    let stateless = py_client(
        &stdio,
        &[
            "--scenario",
            "call",
            "--mode",
            "2026-07-28",
            "--tool",
            "fx.write_file",
            "--args",
            r#"{"path":"new.txt","content":"x"}"#,
        ],
    );
    let text = tool_error_text(&stateless);
    assert!(text.contains("waits for a person's approval"), "{text}");
    assert!(
        !work.join("new.txt").exists(),
        "a refused write must not run"
    );

    // Group eng may delete.
    let delete = call(&stdio, "fx.delete_file", r#"{"path":"doomed.txt"}"#, None);
    assert_ne!(delete["result"]["isError"], Value::Bool(true), "{delete}");
    assert!(!work.join("doomed.txt").exists());
}

/// The HTTP set-up: a provider, Portcullis as its resource server on a known port.
struct Authenticated {
    provider: OpenIdProvider,
    portcullis: Portcullis,
    work: std::path::PathBuf,
    scratch: Scratch,
}

fn authenticated() -> Authenticated {
    authenticated_with(None)
}

/// The same, with one more upstream.
fn authenticated_with(more: Option<Upstream>) -> Authenticated {
    let scratch = Scratch::new();
    let work = scratch.sub("work");
    let port = free_port();
    let resource = format!("http://127.0.0.1:{port}/mcp");
    let provider = OpenIdProvider::start(&resource);
    let auth = Auth::new(&provider.issuer, &resource)
        .required_scopes(&["mcp"])
        .leeway_secs(0);
    let settings = fixture_config(&work, &fixture_policy("identity.cedar")).http_auth(auth);
    let config = scratch.config(match more {
        Some(upstream) => settings.upstream(upstream),
        None => settings,
    });
    let portcullis = Portcullis::http_on(&config, &format!("127.0.0.1:{port}"), &[]);
    Authenticated {
        provider,
        portcullis,
        work,
        scratch,
    }
}

fn bearer(token: &str) -> String {
    format!("Authorization: Bearer {token}")
}

#[test]
fn two_users_with_real_tokens_see_different_tools_and_forbidden_calls_fail() {
    let setup = authenticated();
    let http = Target::Http(&setup.portcullis.url);
    std::fs::write(setup.work.join("kept.txt"), "keep").unwrap_or_else(|e| panic!("{e}"));

    let alice = bearer(&setup.provider.token("alice"));
    let bob = bearer(&setup.provider.token("bob"));
    let alice_tools =
        names(&ts_client(&http, &["--scenario", "list", "--header", &alice])["tools"]);
    let bob_tools = names(&ts_client(&http, &["--scenario", "list", "--header", &bob])["tools"]);
    assert!(
        alice_tools.contains(&"fx.delete_file".to_owned()),
        "{alice_tools:?}"
    );
    assert!(
        !bob_tools.contains(&"fx.delete_file".to_owned()),
        "{bob_tools:?}"
    );
    assert!(bob_tools.contains(&"fx.echo".to_owned()), "{bob_tools:?}");

    // Bob (tenant globex) calling the tool hidden from him: unknown, as if it did not exist,
    // and the file is untouched.
    let hidden = call(
        &http,
        "fx.delete_file",
        r#"{"path":"kept.txt"}"#,
        Some(&bob),
    );
    let error = hidden["error"]["message"].as_str().unwrap_or_default();
    assert!(error.contains("unknown tool `fx.delete_file`"), "{hidden}");
    assert!(
        setup.work.join("kept.txt").exists(),
        "a hidden tool must not run"
    );
    // The same for a stateless client.
    let stateless = py_client(
        &http,
        &[
            "--scenario",
            "call",
            "--mode",
            "2026-07-28",
            "--header",
            &bob,
            "--tool",
            "fx.delete_file",
            "--args",
            r#"{"path":"kept.txt"}"#,
        ],
    );
    assert!(
        stateless["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("unknown tool")),
        "{stateless}"
    );
    assert!(
        setup.work.join("kept.txt").exists(),
        "a hidden tool must not run"
    );

    // Alice's token carries no `mail.send`: the send is refused (over HTTP with the step-up
    // challenge, see below) and nothing is sent.
    let send = call(
        &http,
        "fx.send_message",
        r#"{"to":"x@acme.example","subject":"s","body":"b"}"#,
        Some(&alice),
    );
    assert!(
        send["result"].is_null(),
        "the send must not succeed: {send}"
    );
    assert!(!setup.work.join("outbox.jsonl").exists());

    // Alice (group eng) may delete.
    let delete = call(
        &http,
        "fx.delete_file",
        r#"{"path":"kept.txt"}"#,
        Some(&alice),
    );
    assert_ne!(delete["result"]["isError"], Value::Bool(true), "{delete}");
    assert!(!setup.work.join("kept.txt").exists());

    // Every decision names the identity in the log and in the evidence; the tokens appear in
    // neither, not even in part.
    let log = setup.portcullis.log();
    assert!(log.contains("alice") && log.contains("bob"), "{log}");
    let evidence = std::fs::read_to_string(setup.scratch.path().join("state/evidence.jsonl"))
        .unwrap_or_else(|e| panic!("no evidence log: {e}"));
    assert!(evidence.contains("\"subject\":\"bob\""), "{evidence}");
    for name in ["alice", "bob"] {
        let token = setup.provider.token(name);
        for part in token.split('.').chain(std::iter::once(token.as_str())) {
            assert!(
                !log.contains(part),
                "the `{name}` token leaked into the log"
            );
            assert!(
                !evidence.contains(part),
                "the `{name}` token leaked into the evidence"
            );
        }
    }
}

const INITIALIZE: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}"#;

fn post(port: u16, authorization: Option<&str>) -> (u16, String) {
    post_body(port, authorization, INITIALIZE)
}

fn post_body(port: u16, authorization: Option<&str>, body: &str) -> (u16, String) {
    let header = authorization
        .map(|h| format!("{h}\r\n"))
        .unwrap_or_default();
    raw_http(
        port,
        &format!(
            "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nMCP-Protocol-Version: 2025-11-25\r\n{header}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    )
}

fn challenge(response: &str) -> String {
    response
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("www-authenticate")
                .then(|| value.trim().to_owned())
        })
        .unwrap_or_default()
}

#[test]
fn bad_tokens_are_refused_with_the_right_status_and_challenge() {
    let setup = authenticated();
    let port = setup.portcullis.port;
    let metadata = format!("http://127.0.0.1:{port}/.well-known/oauth-protected-resource/mcp");

    // The protected resource metadata names the resource and its issuer.
    let (status, response) = raw_http(
        port,
        &format!(
            "GET /.well-known/oauth-protected-resource/mcp HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
        ),
    );
    assert_eq!(status, 200, "{response}");
    assert!(
        response.contains(&format!("\"resource\":\"http://127.0.0.1:{port}/mcp\""))
            && response.contains(&setup.provider.issuer),
        "{response}"
    );

    // No token: 401 with the metadata URL and no error code.
    let (status, response) = post(port, None);
    assert_eq!(status, 401, "{response}");
    let header = challenge(&response);
    assert!(
        header.starts_with("Bearer")
            && header.contains(&format!("resource_metadata=\"{metadata}\"")),
        "{header}"
    );
    assert!(!header.contains("error="), "{header}");

    for name in [
        "wrong_audience",
        "expired",
        "wrong_issuer",
        "bad_signature",
        "alg_none",
    ] {
        let token = setup.provider.token(name);
        let (status, response) = post(port, Some(&bearer(&token)));
        assert_eq!(status, 401, "`{name}`: {response}");
        let header = challenge(&response);
        assert!(
            header.contains("error=\"invalid_token\"")
                && header.contains(&format!("resource_metadata=\"{metadata}\"")),
            "`{name}`: {header}"
        );
        assert!(!response.contains(&token), "`{name}`: the token was echoed");
    }
    let (status, response) = post(port, Some("Authorization: Basic YWxpY2U6cHc="));
    assert_eq!(status, 401, "{response}");

    // A valid token without the required scope: 403 naming the scope.
    let (status, response) = post(port, Some(&bearer(&setup.provider.token("alice_no_mcp"))));
    assert_eq!(status, 403, "{response}");
    let header = challenge(&response);
    assert!(
        header.contains("error=\"insufficient_scope\"") && header.contains("scope=\"mcp\""),
        "{header}"
    );

    // And a good one passes.
    let (status, response) = post(port, Some(&bearer(&setup.provider.token("alice"))));
    assert_eq!(status, 200, "{response}");
    assert!(response.contains("\"portcullis\""), "{response}");
    assert!(
        setup.portcullis.log().contains("token"),
        "rejections are logged"
    );
}

#[test]
fn a_broken_policy_reload_keeps_the_old_policy_and_a_good_one_takes_effect() {
    let scratch = Scratch::new();
    let work = scratch.sub("work");
    let policies = scratch.sub("policies");
    let policy = policies.join("policy.cedar");
    let everything = "@id(\"all\")\npermit (principal, action, resource);\n";
    std::fs::write(&policy, everything).unwrap_or_else(|e| panic!("{e}"));
    // With the scopes its tools need: without them they would not be listed at all.
    let alice = Identity::user("alice").scopes(&["files.write", "mail.send"]);
    let config = scratch.config(fixture_config(&work, &policies).identity(alice));
    let portcullis = Portcullis::http(&config);
    let http = Target::Http(&portcullis.url);
    let listed = || names(&ts_client(&http, &["--scenario", "list"])["tools"]);
    assert!(listed().contains(&"fx.delete_file".to_owned()));

    std::fs::write(&policy, "permit (principal, action, resource")
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        portcullis.wait_for_log("policy reload failed", Duration::from_secs(20)),
        "{}",
        portcullis.log()
    );
    assert!(
        portcullis.log().contains("policy.cedar:1:"),
        "the reload error names the file and line: {}",
        portcullis.log()
    );
    assert!(
        listed().contains(&"fx.delete_file".to_owned()),
        "the old policy keeps serving"
    );

    let hiding = format!(
        "{everything}@id(\"no-deletes\")\nforbid (principal, action, resource) when {{ resource has effect && resource.effect == \"destructive\" }};\n"
    );
    std::fs::write(&policy, hiding).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        portcullis.wait_for_log("policy reloaded", Duration::from_secs(20)),
        "{}",
        portcullis.log()
    );
    let tools = listed();
    assert!(!tools.contains(&"fx.delete_file".to_owned()), "{tools:?}");
    assert!(tools.contains(&"fx.echo".to_owned()), "{tools:?}");
    // Both reloads are in the evidence: the refused one with its problem, then the applied one.
    let evidence = std::fs::read_to_string(scratch.path().join("state/evidence.jsonl"))
        .unwrap_or_else(|e| panic!("no evidence log: {e}"));
    let reloads: Vec<Value> = evidence
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .map(|line| line["record"]["event"].clone())
        .filter(|event| event["kind"] == "reload")
        .collect();
    assert!(
        reloads.iter().any(|r| r["applied"] == Value::Bool(false)
            && r["error"]
                .as_str()
                .is_some_and(|e| e.contains("policy.cedar:1:"))),
        "{reloads:?}"
    );
    assert_eq!(
        reloads.last().map(|r| r["applied"].clone()),
        Some(Value::Bool(true)),
        "{reloads:?}"
    );
}

/// The fixture served over streamable HTTP; killed on drop.
struct HttpFixture(std::process::Child);

impl Drop for HttpFixture {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_clients_token_never_reaches_an_upstream() {
    let scratch = Scratch::new();
    let port = free_port();
    let _upstream = HttpFixture(
        std::process::Command::new(bin("portcullis-fixture"))
            .arg("--scratch")
            .arg(scratch.sub("web"))
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start the fixture: {e}")),
    );
    let web =
        Upstream::url("web", &format!("http://127.0.0.1:{port}/mcp")).tool("headers", Tool::read());
    let setup = authenticated_with(Some(web));
    let http = Target::Http(&setup.portcullis.url);
    let token = setup.provider.token("alice");
    let seen = call(&http, "web.headers", "{}", Some(&bearer(&token)));
    let text = result_text(&seen["result"]);
    let report: Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {seen}"));
    let headers = report["headers"]
        .as_object()
        .unwrap_or_else(|| panic!("the upstream saw no HTTP request: {seen}"));
    assert!(!headers.is_empty(), "{seen}");
    // What the upstream received: no Authorization header, and the token nowhere.
    assert!(
        !headers
            .keys()
            .any(|name| name.eq_ignore_ascii_case("authorization")),
        "{headers:?}"
    );
    assert!(
        !text.contains(&token),
        "the client's token reached the upstream"
    );
    for part in token.split('.') {
        assert!(
            !text.contains(part),
            "a part of the client's token reached the upstream"
        );
    }
}

const SEND_ARGUMENTS: &str = r#"{"to":"x@acme.example","subject":"s","body":"b"}"#;

fn tool_call(tool: &str) -> String {
    format!(
        r#"{{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{{"name":"{tool}","arguments":{SEND_ARGUMENTS}}}}}"#
    )
}

/// The same call made through `portcullis.call_tool`.
fn call_tool_call(tool: &str) -> String {
    format!(
        r#"{{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{{"name":"portcullis.call_tool","arguments":{{"name":"{tool}","arguments":{SEND_ARGUMENTS}}}}}}}"#
    )
}

#[test]
fn a_call_needing_more_scopes_gets_the_step_up_challenge_unless_the_tool_is_hidden() {
    let setup = authenticated();
    let port = setup.portcullis.port;
    let alice = bearer(&setup.provider.token("alice"));
    // Alice's token lacks `mail.send`, which `fx.send_message` requires: 403 naming it (and
    // the server's own `mcp`), so her client can ask for a token that has it.
    // Through `portcullis.call_tool` the challenge is the same.
    for body in [
        tool_call("fx.send_message"),
        call_tool_call("fx.send_message"),
    ] {
        let (status, response) = post_body(port, Some(&alice), &body);
        assert_eq!(status, 403, "{response}");
        let header = challenge(&response);
        assert!(
            header.contains("error=\"insufficient_scope\"")
                && header.contains("scope=\"mail.send mcp\""),
            "{header}"
        );
    }
    assert!(
        !setup.work.join("outbox.jsonl").exists(),
        "the send must not run"
    );
    // A tool hidden from the caller (deletes, from bob of globex) gets no challenge that
    // would reveal its scopes; nor does a tool that does not exist.
    let bob = bearer(&setup.provider.token("bob"));
    for (who, tool) in [(&bob, "fx.delete_file"), (&alice, "fx.no_such_tool")] {
        for body in [tool_call(tool), call_tool_call(tool)] {
            let (status, response) = post_body(port, Some(who), &body);
            assert_ne!(status, 403, "`{tool}`: {response}");
            assert!(
                !challenge(&response).contains("insufficient_scope"),
                "`{tool}`: {response}"
            );
        }
    }
}

#[test]
fn stdio_acts_as_the_local_identity_even_with_http_auth_configured() {
    let scratch = Scratch::new();
    let work = scratch.sub("work");
    // `[http.auth]` governs HTTP clients only; its issuer is never contacted over stdio.
    let config = scratch.config(
        fixture_config(&work, &fixture_policy("identity.cedar"))
            .identity(Identity::user("alice"))
            .http_auth(Auth::new("http://127.0.0.1:1", "http://127.0.0.1:2/mcp")),
    );
    let argv = portcullis_stdio(&config);
    let echoed = call(
        &Target::Stdio(&argv),
        "fx.echo",
        r#"{"text":"local"}"#,
        None,
    );
    assert_eq!(result_text(&echoed["result"]), "local", "{echoed}");
}

#[test]
fn a_hidden_tool_of_a_down_upstream_is_unknown_not_unavailable() {
    let scratch = Scratch::new();
    let work = scratch.sub("work");
    let policy = scratch.path().join("policy.cedar");
    std::fs::write(
        &policy,
        "@id(\"all\")\npermit (principal, action, resource);\n@id(\"hide-down\")\nforbid (principal, action, resource in Portcullis::Upstream::\"down\");\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let crashing = |name: &str| Upstream::fixture(name, &work).args(&["--start-mode", "crash"]);
    let config = scratch.config(
        Config::new()
            .policy(&policy)
            .upstream(crashing("down"))
            .upstream(crashing("shown")),
    );
    let argv = portcullis_stdio(&config);
    let stdio = Target::Stdio(&argv);
    let hidden = call(&stdio, "down.echo", r#"{"text":"x"}"#, None);
    let message = hidden["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("unknown tool `down.echo`"), "{hidden}");
    // The visible upstream's outage is reported as one.
    let shown = call(&stdio, "shown.echo", r#"{"text":"x"}"#, None);
    assert!(tool_error_text(&shown).contains("unavailable"), "{shown}");
    // The crashes are in the evidence, and so are both refused calls.
    let evidence = std::fs::read_to_string(scratch.path().join("state/evidence.jsonl"))
        .unwrap_or_else(|e| panic!("no evidence log: {e}"));
    assert!(
        evidence.contains("\"kind\":\"upstream_crashed\",\"upstream\":\"down\""),
        "{evidence}"
    );
    assert_eq!(
        evidence.matches("\"kind\":\"call_outcome\"").count(),
        2,
        "{evidence}"
    );
}

#[test]
fn an_approval_state_issued_to_one_user_is_refused_for_another() {
    let setup = authenticated();
    let port = setup.portcullis.port;
    let alice = setup.provider.token("alice");
    let bob = setup.provider.token("bob");
    let arguments = r#"{"path":"approved.txt","content":"from alice"}"#;
    let asked = stateless_call(port, Some(&alice), "fx.write_file", arguments, None);
    assert_eq!(asked["result"]["resultType"], "input_required", "{asked}");
    let state = asked["result"]["requestState"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    // Bob carries alice's state, with a yes: refused, nothing written.
    let stolen = stateless_call(port, Some(&bob), "fx.write_file", arguments, Some(&state));
    assert!(
        stolen["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("requestState")),
        "{stolen}"
    );
    assert!(
        !setup.work.join("approved.txt").exists(),
        "bob's transplant ran the write"
    );
    // Alice's own answer runs it.
    let ran = stateless_call(port, Some(&alice), "fx.write_file", arguments, Some(&state));
    assert!(!ran["result"]["isError"].as_bool().unwrap_or(true), "{ran}");
    assert_eq!(
        std::fs::read_to_string(setup.work.join("approved.txt")).unwrap_or_default(),
        "from alice"
    );
}

#[test]
fn a_session_is_its_users_alone() {
    let setup = authenticated();
    let port = setup.portcullis.port;
    let alice = bearer(&setup.provider.token("alice"));
    let bob = bearer(&setup.provider.token("bob"));
    let session = RawSession::open(port, Some(&alice));
    // Bob presenting Alice's session id with his own valid token: the 404 of a session he
    // does not have, whatever he asks (a call, its event stream, to end it); nothing runs.
    let (status, refused) = session.call(Some(&bob), "fx.echo", r#"{"text":"as bob"}"#);
    assert_eq!((status, refused), (404, None));
    for (method, accept) in [("GET", "Accept: text/event-stream\r\n"), ("DELETE", "")] {
        let (status, response) = raw_http(
            port,
            &format!(
                "{method} /mcp HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{accept}MCP-Protocol-Version: 2025-11-25\r\nMcp-Session-Id: {}\r\n{bob}\r\nConnection: close\r\n\r\n",
                session.id
            ),
        );
        assert_eq!(status, 404, "{method}: {response}");
    }
    let evidence = std::fs::read_to_string(setup.scratch.path().join("state/evidence.jsonl"))
        .unwrap_or_default();
    assert!(
        !evidence.contains("as bob"),
        "a call in another user's session was recorded"
    );
    // The session is still Alice's, and works for her.
    let (status, answer) = session.call(Some(&alice), "fx.echo", r#"{"text":"as alice"}"#);
    let answer = answer.unwrap_or_else(|| panic!("status {status}, no answer to alice"));
    assert_eq!(result_text(&answer["result"]), "as alice", "{answer}");
}
