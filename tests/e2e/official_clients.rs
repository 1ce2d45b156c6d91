//! The official TypeScript and Python SDK clients through Portcullis, in front of the official
//! `server-everything` and `server-filesystem` and our fixture, over both downstream transports
//! and, where the client allows, both protocol eras.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::support::{
    Config, Portcullis, Scratch, Target, Upstream, everything_server, filesystem_server, names,
    portcullis_stdio, py_client, result_text, ts_call, ts_client,
};

/// Three upstreams: server-everything, server-filesystem and the fixture on one work directory.
fn three_upstreams(scratch: &Scratch) -> (PathBuf, PathBuf) {
    let work = scratch.sub("work");
    let config = scratch.config(
        Config::relay()
            .upstream(Upstream::command("everything", everything_server()))
            .upstream(Upstream::command("files", filesystem_server(&work)).roots(&[&work]))
            // Unpinned: the list-change test adds a tool at run time and expects it listed,
            // which pinning would quarantine (tests/e2e/pins.rs).
            .upstream(Upstream::fixture("fixture", &work).pinning("off")),
    );
    (config, work)
}

fn strings(list: &Value, key: &str) -> Vec<String> {
    list.as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|i| i.get(key).and_then(Value::as_str).map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn assert_catalog(listing: &Value, who: &str) {
    let tools = names(&listing["tools"]);
    for expected in [
        "everything.echo",
        "everything.trigger-long-running-operation",
        "files.read_text_file",
        "files.write_file",
        "fixture.write_file",
        "fixture.send_message",
    ] {
        assert!(
            tools.contains(&expected.to_owned()),
            "{who}: {expected} missing in {tools:?}"
        );
    }
    assert!(
        tools.iter().all(|t| t.len() <= 128 && t.contains('.')),
        "{who}: every name is namespaced and at most 128 characters: {tools:?}"
    );
    let resources = strings(&listing["resources"], "uri");
    assert!(
        resources
            .iter()
            .any(|u| u.starts_with("everything+demo://")),
        "{who}: {resources:?}"
    );
    let templates = strings(&listing["templates"], "uriTemplate");
    assert!(
        templates.contains(&"fixture+fixture://files/{path}".to_owned()),
        "{who}: {templates:?}"
    );
    let prompts = names(&listing["prompts"]);
    assert!(
        prompts.contains(&"everything.simple-prompt".to_owned()),
        "{who}: {prompts:?}"
    );
    assert!(
        prompts.contains(&"fixture.greet".to_owned()),
        "{who}: {prompts:?}"
    );
}

#[test]
fn every_client_and_era_sees_the_same_namespaced_catalog() {
    let scratch = Scratch::new();
    let (config, _) = three_upstreams(&scratch);
    let portcullis = Portcullis::http(&config);
    let http = Target::Http(&portcullis.url);
    let reference = ts_client(&http, &["--scenario", "list"]);
    assert_eq!(reference["protocol"], "2025-11-25");
    assert_catalog(&reference, "typescript/http");
    for mode in ["legacy", "2026-07-28", "auto"] {
        let listing = py_client(&http, &["--scenario", "list", "--mode", mode]);
        assert_catalog(&listing, mode);
        assert_eq!(
            names(&listing["tools"]),
            names(&reference["tools"]),
            "python {mode} and typescript see the same tools in the same order"
        );
        let expected = if mode == "legacy" {
            "2025-11-25"
        } else {
            "2026-07-28"
        };
        assert_eq!(listing["protocol"], expected, "{mode}");
    }
    // Over stdio, as a desktop client launches it.
    let stdio = portcullis_stdio(&config);
    let listing = ts_client(&Target::Stdio(&stdio), &["--scenario", "list"]);
    assert_eq!(names(&listing["tools"]), names(&reference["tools"]));
}

#[test]
fn a_write_through_one_upstream_is_read_through_another() {
    let scratch = Scratch::new();
    let (config, work) = three_upstreams(&scratch);
    let stdio = portcullis_stdio(&config);
    let target = Target::Stdio(&stdio);
    let wrote = ts_call(
        &target,
        "fixture.write_file",
        r#"{"path":"notes/plan.txt","content":"relayed faithfully"}"#,
    );
    assert_ne!(wrote["result"]["isError"], true, "{wrote}");
    let path = work.join("notes/plan.txt");
    let args = json!({ "path": path.display().to_string() }).to_string();
    for mode in ["legacy", "2026-07-28"] {
        let read = py_client(
            &target,
            &[
                "--scenario",
                "call",
                "--mode",
                mode,
                "--tool",
                "files.read_text_file",
                "--args",
                &args,
            ],
        );
        assert_eq!(
            result_text(&read["result"]),
            "relayed faithfully",
            "{mode}: {read}"
        );
    }
}

#[test]
fn progress_reaches_each_client() {
    let scratch = Scratch::new();
    let (config, _) = three_upstreams(&scratch);
    let portcullis = Portcullis::http(&config);
    let http = Target::Http(&portcullis.url);
    // A session-era upstream (server-everything) to the TypeScript client.
    let call = ts_client(
        &http,
        &[
            "--scenario",
            "call",
            "--tool",
            "everything.trigger-long-running-operation",
            "--args",
            r#"{"duration":1,"steps":4}"#,
            "--progress",
        ],
    );
    let steps: Vec<f64> = call["progress"]
        .as_array()
        .map(|p| p.iter().filter_map(|e| e["progress"].as_f64()).collect())
        .unwrap_or_default();
    assert_eq!(steps, vec![1.0, 2.0, 3.0, 4.0], "{call}");
    // A stateless upstream (the fixture) to a stateless Python client.
    let call = py_client(
        &http,
        &[
            "--scenario",
            "call",
            "--mode",
            "2026-07-28",
            "--tool",
            "fixture.slow",
            "--args",
            r#"{"ms":300,"steps":3}"#,
            "--progress",
        ],
    );
    assert_eq!(call["progress"].as_array().map(Vec::len), Some(3), "{call}");
}

fn elicited_messages(observations: &Value) -> Vec<String> {
    strings(&observations["elicitations"], "message")
}

#[test]
fn upstream_questions_are_labelled_and_answered_in_every_era_combination() {
    let scratch = Scratch::new();
    let (config, _) = three_upstreams(&scratch);
    let portcullis = Portcullis::http(&config);
    let http = Target::Http(&portcullis.url);
    let everything_answer = r#"{"name":"Ada","check":true,"firstLine":"x"}"#;
    // Session-era client, session-era upstream.
    let seen = ts_client(
        &http,
        &[
            "--scenario",
            "elicit",
            "--tool",
            "everything.trigger-elicitation-request",
            "--content",
            everything_answer,
        ],
    );
    let messages = elicited_messages(&seen);
    assert_eq!(messages.len(), 1, "{seen}");
    assert!(
        messages[0].starts_with("[upstream `everything` asks] "),
        "{messages:?}"
    );
    assert!(result_text(&seen["result"]).contains("Ada"), "{seen}");

    for mode in ["legacy", "2026-07-28"] {
        // Both upstream eras: server-everything asks with elicitation/create, the fixture
        // (2026-07-28) with an input-required result.
        let seen = py_client(
            &http,
            &[
                "--scenario",
                "elicit",
                "--mode",
                mode,
                "--tool",
                "everything.trigger-elicitation-request",
                "--content",
                everything_answer,
            ],
        );
        assert!(
            result_text(&seen["result"]).contains("Ada"),
            "{mode}: {seen}"
        );
        assert!(elicited_messages(&seen)[0].starts_with("[upstream `everything` asks] "));
        let seen = py_client(
            &http,
            &[
                "--scenario",
                "elicit",
                "--mode",
                mode,
                "--tool",
                "fixture.ask",
                "--args",
                r#"{"question":"Ship it?"}"#,
                "--content",
                r#"{"confirm":true}"#,
            ],
        );
        assert_eq!(
            result_text(&seen["result"]),
            "answer: accept confirm=true",
            "{mode}: {seen}"
        );
        assert_eq!(
            elicited_messages(&seen),
            vec!["[upstream `fixture` asks] Ship it?".to_owned()]
        );
        // A decline reaches the upstream as a decline.
        let seen = py_client(
            &http,
            &[
                "--scenario",
                "elicit",
                "--mode",
                mode,
                "--tool",
                "fixture.ask",
                "--args",
                r#"{"question":"Ship it?"}"#,
                "--answer",
                "decline",
            ],
        );
        assert_eq!(
            result_text(&seen["result"]),
            "answer: decline",
            "{mode}: {seen}"
        );
    }
}

#[test]
fn resources_prompts_and_completion_pass_through() {
    let scratch = Scratch::new();
    let (config, work) = three_upstreams(&scratch);
    std::fs::write(work.join("readme.txt"), "from the scratch dir").unwrap_or_default();
    let portcullis = Portcullis::http(&config);
    let http = Target::Http(&portcullis.url);
    let read = ts_client(
        &http,
        &[
            "--scenario",
            "read",
            "--uri",
            "fixture+fixture://files/readme.txt",
        ],
    );
    assert_eq!(
        read["result"]["contents"][0]["text"], "from the scratch dir",
        "{read}"
    );
    assert_eq!(
        read["result"]["contents"][0]["uri"],
        "fixture+fixture://files/readme.txt"
    );
    let read = py_client(
        &http,
        &[
            "--scenario",
            "read",
            "--mode",
            "2026-07-28",
            "--uri",
            "everything+demo://resource/dynamic/text/7",
        ],
    );
    assert!(
        read["result"]["contents"][0]["text"]
            .as_str()
            .unwrap_or_default()
            .contains("Resource 7"),
        "{read}"
    );
    let prompt = py_client(
        &http,
        &[
            "--scenario",
            "prompt",
            "--mode",
            "legacy",
            "--name",
            "fixture.greet",
            "--args",
            r#"{"name":"bob"}"#,
        ],
    );
    assert!(
        prompt["result"]["messages"][0]["content"]["text"]
            .as_str()
            .unwrap_or_default()
            .contains("bob"),
        "{prompt}"
    );
    let completion = ts_client(
        &http,
        &[
            "--scenario",
            "complete",
            "--ref-prompt",
            "fixture.greet",
            "--arg",
            "name",
            "--value",
            "ca",
        ],
    );
    assert_eq!(
        completion["result"]["completion"]["values"],
        json!(["carol"]),
        "{completion}"
    );
    let completion = py_client(
        &http,
        &[
            "--scenario",
            "complete",
            "--mode",
            "2026-07-28",
            "--ref-uri",
            "fixture+fixture://files/{path}",
            "--arg",
            "path",
            "--value",
            "read",
        ],
    );
    assert_eq!(
        completion["result"]["completion"]["values"],
        json!(["readme.txt"]),
        "{completion}"
    );
    // An unknown resource is an error, not a guess at another upstream.
    let unknown = std::process::Command::new("node")
        .arg(crate::support::repo_root().join("tests/node/client.mjs"))
        .args([
            "--scenario",
            "read",
            "--uri",
            "demo://resource/dynamic/text/7",
            "--http",
            &portcullis.url,
        ])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(true);
    assert!(!unknown, "an unprefixed URI must not resolve");
}

#[test]
fn list_changes_and_cancellation_reach_the_other_side() {
    let scratch = Scratch::new();
    let (config, work) = three_upstreams(&scratch);
    let portcullis = Portcullis::http(&config);
    let http = Target::Http(&portcullis.url);
    let changed = ts_client(
        &http,
        &[
            "--scenario",
            "list_changed",
            "--tool",
            "fixture.add_tool",
            "--args",
            r#"{"name":"fresh"}"#,
        ],
    );
    assert_eq!(changed["notified"], true, "{changed}");
    assert!(
        names(&changed["tools"]).contains(&"fixture.fresh".to_owned()),
        "{changed}"
    );

    let cancelled = ts_client(
        &http,
        &[
            "--scenario",
            "call",
            "--tool",
            "fixture.slow",
            "--args",
            r#"{"ms":20000,"steps":20}"#,
            "--cancel-after-ms",
            "500",
        ],
    );
    assert_eq!(cancelled["cancelled"], true, "{cancelled}");
    assert!(
        wait_for_file(&work.join("cancelled.log")),
        "the upstream never saw the cancellation"
    );
}

fn wait_for_file(path: &Path) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
        if path.exists() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    false
}
