//! Scoped answers end to end: a person who approves a write "for this session" is not asked
//! again for a write like it (same tool, same directory), and is asked for one that differs,
//! in both eras (the official TypeScript client in a session, answering `elicitation/create`;
//! the official Python client at 2026-07-28, answering input-required results, whose answers
//! are kept per user and client); under `@approval("once")` no scope is offered, and one sent
//! anyway approves nothing.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::support::{
    Config, Identity, Portcullis, Scratch, Target, Tool, Upstream, fixture_policy,
    portcullis_stdio, py_client, result_text, ts_client,
};

const FOR_THE_SESSION: &str = r#"{"approve":true,"scope":"session"}"#;

/// A fixture `fx` whose `write_file` writes in `work`, under `policy`.
fn setup(policy: &str) -> (Scratch, PathBuf, PathBuf) {
    let scratch = Scratch::new();
    let work = scratch.sub("work");
    let fx = Upstream::fixture("fx", &work).tool("write_file", Tool::write());
    let config = scratch.config(
        Config::new()
            .approval_timeout_secs(5)
            .identity(Identity::user("alice"))
            .policy(fixture_policy(policy))
            .upstream(fx),
    );
    (scratch, config, work)
}

fn write(path: &str) -> String {
    json!({"path": path, "content": "q3"}).to_string()
}

/// What the evidence says of approvals: each answer, and each approved intent's note.
fn evidence(scratch: &Scratch) -> (Vec<String>, Vec<String>) {
    let events: Vec<Value> = std::fs::read_to_string(scratch.path().join("state/evidence.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .map(|line| line["record"]["event"].clone())
        .collect();
    let strings = |kind: &str, field: &str| -> Vec<String> {
        events
            .iter()
            .filter(|e| e["kind"] == kind)
            .filter_map(|e| e[field].as_str().map(str::to_owned))
            .collect()
    };
    (
        strings("approval", "answer"),
        strings("call_intent", "approval"),
    )
}

fn asked(observed: &Value) -> Vec<Value> {
    observed["elicitations"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn written(work: &Path, path: &str) -> bool {
    work.join(path).exists()
}

#[test]
fn a_session_scoped_approval_covers_the_next_write_like_it_and_not_another_in_a_session() {
    let (scratch, config, work) = setup("approval.cedar");
    let argv = portcullis_stdio(&config);
    let first = write("drafts/one.txt");
    let like_it = write("drafts/two.txt");
    let elsewhere = write("final/three.txt");
    // One session: the first write asked and approved for the session; the second not asked;
    // the third, in another directory, asked again.
    let observed = ts_client(
        &Target::Stdio(&argv),
        &[
            "--scenario",
            "elicit",
            "--tool",
            "fx.write_file",
            "--args",
            &first,
            "--then",
            &like_it,
            "--then",
            &elsewhere,
            "--answer",
            "accept",
            "--content",
            FOR_THE_SESSION,
        ],
    );
    let results = observed["results"].as_array().cloned().unwrap_or_default();
    assert_eq!(results.len(), 3, "{observed}");
    for result in &results {
        assert!(
            result_text(result).starts_with("wrote 2 bytes"),
            "{observed}"
        );
    }
    assert!(written(&work, "drafts/one.txt") && written(&work, "drafts/two.txt"));
    assert!(written(&work, "final/three.txt"));
    let questions = asked(&observed);
    assert_eq!(
        questions.len(),
        2,
        "the write like the first was not asked: {observed}"
    );
    let root = work.canonicalize().unwrap_or_else(|e| panic!("{e}"));
    let session = &questions[0]["requestedSchema"]["properties"]["scope"]["oneOf"][1];
    assert!(
        session["title"].as_str().unwrap_or_default().contains(&format!(
            "For this session: calls of `write_file` on `fx`, whose files are directly in `{}/drafts`",
            root.display()
        )),
        "{observed}"
    );
    assert!(
        questions[1]["message"]
            .as_str()
            .unwrap_or_default()
            .contains(&format!("{}/final`", root.display())),
        "the second question offers the new directory: {observed}"
    );
    let (answers, notes) = evidence(&scratch);
    assert_eq!(
        answers.iter().filter(|a| *a == "scoped").count(),
        1,
        "{answers:?}"
    );
    assert_eq!(
        answers
            .iter()
            .filter(|a| *a == "approved_for_session")
            .count(),
        2,
        "{answers:?}"
    );
    assert!(
        notes
            .iter()
            .any(|n| n.starts_with("approved by scoped answer scope-")),
        "{notes:?}"
    );
    // The next session (over stdio, the next process) is asked again: a session's answers
    // end with it.
    let next = ts_client(
        &Target::Stdio(&argv),
        &[
            "--scenario",
            "elicit",
            "--tool",
            "fx.write_file",
            "--args",
            &write("drafts/four.txt"),
            "--answer",
            "decline",
        ],
    );
    assert_eq!(asked(&next).len(), 1, "{next}");
    assert!(!written(&work, "drafts/four.txt"));
}

#[test]
fn a_session_scoped_approval_covers_the_next_write_like_it_at_2026_07_28() {
    let (scratch, config, work) = setup("approval.cedar");
    let portcullis = Portcullis::http(&config);
    let http = Target::Http(&portcullis.url);
    let call = |args: &str| {
        py_client(
            &http,
            &[
                "--scenario",
                "elicit",
                "--mode",
                "2026-07-28",
                "--tool",
                "fx.write_file",
                "--args",
                args,
                "--answer",
                "accept",
                "--content",
                FOR_THE_SESSION,
            ],
        )
    };
    // Stateless requests share no session: the answer is kept for this user and client.
    let first = call(&write("drafts/one.txt"));
    assert_eq!(asked(&first).len(), 1, "{first}");
    assert_eq!(asked(&first)[0]["via"], "input_required", "{first}");
    assert!(written(&work, "drafts/one.txt"), "{first}");
    let like_it = call(&write("drafts/two.txt"));
    assert!(asked(&like_it).is_empty(), "not asked: {like_it}");
    assert!(written(&work, "drafts/two.txt"), "{like_it}");
    let elsewhere = call(&write("final/three.txt"));
    assert_eq!(asked(&elsewhere).len(), 1, "asked again: {elsewhere}");
    assert!(written(&work, "final/three.txt"), "{elsewhere}");
    let (answers, notes) = evidence(&scratch);
    assert_eq!(
        answers.iter().filter(|a| *a == "scoped").count(),
        1,
        "{answers:?}"
    );
    assert!(
        notes
            .iter()
            .any(|n| n.starts_with("approved by scoped answer scope-")),
        "{notes:?}"
    );
    // A stateless client's answers are kept beside the evidence log, for a restart.
    assert!(
        std::fs::read_to_string(scratch.path().join("state/scoped-answers.json"))
            .is_ok_and(|kept| kept.contains("drafts")),
        "kept"
    );
}

#[test]
fn an_approval_once_policy_never_offers_a_scope_and_one_sent_anyway_approves_nothing() {
    let (scratch, config, work) = setup("approval-once.cedar");
    let argv = portcullis_stdio(&config);
    let observed = ts_client(
        &Target::Stdio(&argv),
        &[
            "--scenario",
            "elicit",
            "--tool",
            "fx.write_file",
            "--args",
            &write("drafts/one.txt"),
            "--then",
            &write("drafts/two.txt"),
            "--answer",
            "accept",
            "--content",
            FOR_THE_SESSION,
        ],
    );
    let questions = asked(&observed);
    assert_eq!(questions.len(), 2, "each write asked: {observed}");
    for question in &questions {
        assert!(
            question["requestedSchema"]["properties"]
                .get("scope")
                .is_none(),
            "{observed}"
        );
        assert!(
            !question["message"]
                .as_str()
                .unwrap_or_default()
                .contains("for the rest of this session"),
            "{observed}"
        );
    }
    for result in observed["results"].as_array().into_iter().flatten() {
        assert!(
            result_text(result).contains("does not match the form"),
            "{observed}"
        );
    }
    assert!(!written(&work, "drafts/one.txt") && !written(&work, "drafts/two.txt"));
    let (answers, _) = evidence(&scratch);
    assert_eq!(
        answers.iter().filter(|a| *a == "invalid").count(),
        2,
        "{answers:?}"
    );
}
