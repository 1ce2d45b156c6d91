//! Which requests need a token, and which scopes a tool call needs.
#![expect(clippy::unwrap_used, reason = "tests")]

use std::collections::{BTreeMap, BTreeSet};

use axum::http::Method;
use serde_json::json;

use super::*;
use crate::cli::{AuthConfig, AuthResource};

fn messages(body: &serde_json::Value) -> Messages {
    Messages::parse(body.to_string().as_bytes())
}

fn call(tool: &str) -> serde_json::Value {
    json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": tool, "arguments": {}}})
}

fn request(method: &str) -> serde_json::Value {
    json!({"jsonrpc": "2.0", "id": 1, "method": method})
}

#[test]
fn messages_are_read_from_one_message_or_a_batch() {
    assert_eq!(
        messages(&call("echo")).0,
        vec![Message {
            method: Some("tools/call".to_owned()),
            tool: Some("echo".to_owned())
        }]
    );
    let batch = messages(&json!([request("ping"), call("send_message")]));
    assert_eq!(batch.0.len(), 2);
    assert_eq!(Messages::parse(b"not json"), Messages::default());
    assert_eq!(Messages::parse(b""), Messages::default());
    // A response of the client's (to an elicitation, say) has no method.
    let response = messages(&json!({"jsonrpc": "2.0", "id": 0, "result": {}}));
    assert_eq!(response.0.first().unwrap().method, None);
}

#[test]
fn only_session_setup_and_lists_are_public() {
    let public: &[serde_json::Value] = &[
        request("initialize"),
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        request("ping"),
        request("tools/list"),
        request("resources/list"),
        request("prompts/list"),
        request("server/discover"),
        json!([request("ping"), request("tools/list")]),
    ];
    for body in public {
        assert!(is_public(true, &Method::POST, &messages(body)), "{body}");
        assert!(!is_public(false, &Method::POST, &messages(body)), "{body}");
    }
    let private: &[serde_json::Value] = &[
        call("echo"),
        request("resources/read"),
        request("prompts/get"),
        request("completion/complete"),
        json!({"jsonrpc": "2.0", "id": 0, "result": {}}),
        json!([request("ping"), call("echo")]),
        json!([]),
        json!("initialize"),
    ];
    for body in private {
        assert!(!is_public(true, &Method::POST, &messages(body)), "{body}");
    }
    assert!(!is_public(true, &Method::POST, &Messages::parse(b"{{{")));
    assert!(is_public(true, &Method::GET, &Messages::default()));
    assert!(is_public(true, &Method::DELETE, &Messages::default()));
    assert!(!is_public(false, &Method::GET, &Messages::default()));
    assert!(!is_public(true, &Method::PUT, &messages(&request("ping"))));
}

fn config(tool_scopes: &[(&str, &str)]) -> AuthConfig {
    let mut scopes = BTreeMap::<String, BTreeSet<String>>::new();
    for (tool, scope) in tool_scopes {
        scopes
            .entry((*tool).to_owned())
            .or_default()
            .insert((*scope).to_owned());
    }
    AuthConfig {
        issuer: "http://127.0.0.1:1".to_owned(),
        allow_http: true,
        resource: AuthResource::Auto,
        tool_scopes: scopes,
        record: None,
        public_lists: false,
    }
}

fn granted(scopes: &[&str]) -> BTreeSet<String> {
    scopes.iter().map(|scope| (*scope).to_owned()).collect()
}

#[test]
fn a_tool_call_needs_every_scope_of_its_tool() {
    let config = config(&[
        ("send_message", "mail.send"),
        ("delete_file", "files.write"),
        ("delete_file", "admin"),
    ]);
    let send = messages(&call("send_message"));
    assert!(missing_scopes(&config, &send, &granted(&["mail.send"])).is_empty());
    assert_eq!(
        missing_scopes(&config, &send, &granted(&["mail.read"])),
        granted(&["mail.send"])
    );
    // Unscoped tools and other methods need nothing.
    assert!(missing_scopes(&config, &messages(&call("echo")), &granted(&[])).is_empty());
    assert!(missing_scopes(&config, &messages(&request("tools/list")), &granted(&[])).is_empty());
    // The challenge names everything the request needs, not only what is missing.
    let delete = messages(&call("delete_file"));
    assert_eq!(
        missing_scopes(&config, &delete, &granted(&["files.write"])),
        granted(&["admin", "files.write"])
    );
    let batch = messages(&json!([call("echo"), call("send_message")]));
    assert_eq!(
        missing_scopes(&config, &batch, &granted(&[])),
        granted(&["mail.send"])
    );
}

#[test]
fn the_record_keeps_the_audience_of_the_token() {
    let payload = URL_SAFE_NO_PAD.encode(json!({"aud": "http://127.0.0.1:9/mcp"}).to_string());
    assert_eq!(
        audience(&format!("e30.{payload}.sig")),
        vec!["http://127.0.0.1:9/mcp"]
    );
    let payload = URL_SAFE_NO_PAD.encode(json!({"aud": ["a", "b"]}).to_string());
    assert_eq!(audience(&format!("e30.{payload}.sig")), vec!["a", "b"]);
    assert!(audience("opaque").is_empty());
}
