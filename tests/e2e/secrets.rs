//! No secret in any output: a whole run through Portcullis (real OpenID provider tokens, good
//! and bad; arguments naming secrets and a configured redaction; a secret granted to an
//! upstream's environment; an upstream's elicitation answered; a clean stop) leaves none of
//! the secrets it handled in Portcullis's log, its evidence log, or anything a client got back.

use std::path::Path;

use serde_json::Value;

use crate::support::{
    Auth, Config, OpenIdProvider, Portcullis, Scratch, Target, Tool, Upstream, fixture_policy,
    free_port, raw_http, result_text, ts_client,
};

const ARGUMENT_PASSWORD: &str = "pw-3c1d9e0b7a";
const ARGUMENT_NOTE: &str = "note-5f2e8a61c4";
const UPSTREAM_KEY: &str = "upstream-key-9b7d31e2f0";

fn config(
    scratch: &Scratch,
    work: &Path,
    provider: &OpenIdProvider,
    resource: &str,
) -> std::path::PathBuf {
    let fx = Upstream::fixture("fx", work)
        .env("FIXTURE_API_KEY", UPSTREAM_KEY)
        .tool("echo", Tool::read().redact(&["/note"]))
        .tool("ask", Tool::read())
        .tool("whoami", Tool::read())
        .tool("send_message", Tool::send().scopes(&["mail.send"]));
    let auth = Auth::new(&provider.issuer, resource)
        .required_scopes(&["mcp"])
        .leeway_secs(0);
    scratch.config(
        Config::new()
            .http_auth(auth)
            .policy(fixture_policy("identity.cedar"))
            .upstream(fx),
    )
}

fn initialize_with(port: u16, token: &str) -> String {
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}"#;
    let (status, response) = raw_http(
        port,
        &format!(
            "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    );
    format!("{status}\n{response}")
}

#[test]
fn no_secret_used_in_a_run_appears_in_any_output() {
    let scratch = Scratch::new();
    let work = scratch.sub("work");
    let port = free_port();
    let resource = format!("http://127.0.0.1:{port}/mcp");
    let provider = OpenIdProvider::start(&resource);
    let config = config(&scratch, &work, &provider, &resource);
    // Debug logging: the most Portcullis ever writes about a request.
    let mut portcullis = Portcullis::http_on(
        &config,
        &format!("127.0.0.1:{port}"),
        &[("PORTCULLIS_LOG", "debug")],
    );
    let http = Target::Http(&portcullis.url);
    let alice = provider.token("alice");
    let header = format!("Authorization: Bearer {alice}");
    let mut answers: Vec<String> = Vec::new();
    let mut call = |args: &[&str]| {
        let mut argv = args.to_vec();
        argv.extend(["--header", &header]);
        let seen = ts_client(&http, &argv);
        answers.push(seen.to_string());
        seen
    };

    call(&["--scenario", "list"]);
    let echoed = call(&[
        "--scenario",
        "call",
        "--tool",
        "fx.echo",
        "--args",
        &format!(r#"{{"text":"hello","password":"{ARGUMENT_PASSWORD}","note":"{ARGUMENT_NOTE}"}}"#),
    ]);
    assert_eq!(result_text(&echoed["result"]), "hello", "{echoed}");
    // The upstream got its granted variable (by name; the tool reports no values).
    let whoami = call(&["--scenario", "call", "--tool", "fx.whoami", "--args", "{}"]);
    assert!(
        result_text(&whoami["result"]).contains("FIXTURE_API_KEY"),
        "{whoami}"
    );
    let asked = call(&[
        "--scenario",
        "elicit",
        "--tool",
        "fx.ask",
        "--args",
        r#"{"question":"Proceed?"}"#,
        "--answer",
        "decline",
    ]);
    assert!(result_text(&asked["result"]).contains("decline"), "{asked}");
    // Refused: alice lacks `mail.send`.
    call(&[
        "--scenario",
        "call",
        "--tool",
        "fx.send_message",
        "--args",
        r#"{"to":"a@b","subject":"s","body":"b"}"#,
    ]);
    let bad_tokens = [
        "expired",
        "bad_signature",
        "wrong_audience",
        "wrong_issuer",
        "alg_none",
    ]
    .map(|name| provider.token(name));
    for token in &bad_tokens {
        let response = initialize_with(port, token);
        assert!(response.starts_with("401"), "{response}");
        answers.push(response);
    }

    assert!(
        portcullis.terminate(),
        "portcullis did not stop cleanly:\n{}",
        portcullis.log()
    );
    let log = portcullis.log();
    let evidence_path = scratch.path().join("state/evidence.jsonl");
    let evidence = std::fs::read_to_string(&evidence_path).unwrap_or_default();
    let head = std::fs::read_to_string(scratch.path().join("state/evidence.jsonl.head"))
        .unwrap_or_default();
    let key = std::fs::read(scratch.path().join("state/evidence.jsonl.key")).unwrap_or_default();
    assert_eq!(key.len(), 32);
    let key_hex: String = key.iter().map(|b| format!("{b:02x}")).collect();

    // The run did what the evidence says, so a clean result is not an empty one.
    let events: Vec<Value> = evidence
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .map(|line| line["record"]["event"].clone())
        .collect();
    let echo_intent = events
        .iter()
        .find(|e| e["kind"] == "call_intent" && e["tool"]["tool"] == "echo")
        .unwrap_or_else(|| panic!("no echo intent: {events:?}"));
    assert_eq!(
        echo_intent["arguments"]["redacted"],
        serde_json::json!({"text": "hello", "password": "[redacted]", "note": "[redacted]"})
    );
    assert!(
        echo_intent["arguments"]["digest"]
            .as_str()
            .is_some_and(|d| d.starts_with("hmac-sha256:")),
        "{echo_intent}"
    );
    assert!(
        events.iter().any(|e| e["kind"] == "elicitation_relayed"
            && e["upstream"] == "fx"
            && e["response"] == "decline"
            && e["request"]["identity"]["subject"] == "alice"),
        "{events:?}"
    );
    assert!(
        events
            .iter()
            .any(|e| e["kind"] == "upstream_stopped" && e["upstream"] == "fx"),
        "{events:?}"
    );
    assert!(log.contains("fx.echo") || log.contains("echo"), "{log}");

    let mut secrets: Vec<(String, String)> = vec![
        ("the argument password".into(), ARGUMENT_PASSWORD.into()),
        ("the redacted argument".into(), ARGUMENT_NOTE.into()),
        ("the upstream's granted key".into(), UPSTREAM_KEY.into()),
        ("the digest key".into(), key_hex),
    ];
    for (name, token) in std::iter::once(("alice", &alice)).chain(
        [
            "expired",
            "bad_signature",
            "wrong_audience",
            "wrong_issuer",
            "alg_none",
        ]
        .into_iter()
        .zip(&bad_tokens),
    ) {
        secrets.push((format!("the `{name}` token"), token.clone()));
        // Each part on its own too: a logged signature or payload is a leak as well.
        for part in token.split('.').filter(|part| part.len() >= 16) {
            secrets.push((format!("a part of the `{name}` token"), part.to_owned()));
        }
    }
    let outputs = [
        ("portcullis's log", log.as_str()),
        ("the evidence log", evidence.as_str()),
        ("the evidence head", head.as_str()),
        ("what the clients got", &answers.join("\n")),
    ];
    for (output, text) in outputs {
        assert!(!text.is_empty(), "{output} is empty");
        for (name, secret) in &secrets {
            let line = text.lines().find(|line| line.contains(secret.as_str()));
            assert!(line.is_none(), "{name} appears in {output}: {line:?}");
        }
    }
}
