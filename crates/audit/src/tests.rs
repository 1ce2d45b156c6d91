//! Evidence log cases: round trips, each kind of tampering, reopening, failing closed, group
//! commit, the reader. The crash test is in `tests/crash.rs` (it needs a process to kill).
#![expect(
    clippy::panic,
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "tests"
)]

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::num::NonZeroU64;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use portcullis_core::ActingMode;
use portcullis_core::evidence::*;

use crate::key::{LogKey, PublicKey};

use super::*;

fn identity(subject: &str) -> IdentitySummary {
    IdentitySummary {
        issuer: "portcullis:local".to_owned(),
        subject: subject.to_owned(),
        client: Some("test".to_owned()),
        mode: ActingMode::Delegated,
        groups: BTreeSet::from(["eng".to_owned()]),
        tenant: Some("acme".to_owned()),
        scopes: BTreeSet::new(),
    }
}

fn request(id: u64, subject: &str) -> RequestContext {
    RequestContext {
        request_id: format!("r{id}"),
        session: Some("s1".to_owned()),
        identity: identity(subject),
        via: None,
    }
}

fn tool(name: &str) -> ToolRef {
    ToolRef {
        upstream: "files".to_owned(),
        tool: name.to_owned(),
        definition_hash: "sha256:def".to_owned(),
    }
}

fn intent(id: u64, subject: &str, tool_name: &str, verdict: &str) -> EvidenceRecord {
    EvidenceRecord::new(
        1_735_787_045_006 + id,
        Event::CallIntent(CallIntent {
            request: request(id, subject),
            tool: tool(tool_name),
            arguments: Arguments {
                redacted: JsonValue::Object(BTreeMap::from([(
                    "path".to_owned(),
                    JsonValue::String(format!("/work/{id}.txt")),
                )])),
                digest: "sha256:args".to_owned(),
            },
            decision: DecisionSummary {
                verdict: verdict.to_owned(),
                policies: vec!["default-read".to_owned()],
                policy_version: Some("v1".to_owned()),
            },
            approval: None,
            credential: None,
        }),
    )
}

fn records(count: u64) -> Vec<EvidenceRecord> {
    (0..count)
        .map(|id| intent(id, "alice", "read_file", "allow"))
        .collect()
}

fn no_checkpoints() -> Options {
    Options {
        checkpoint_every: None,
        ..Options::default()
    }
}

async fn write_log(path: &Path, records: Vec<EvidenceRecord>, options: Options) -> Vec<Receipt> {
    let log = EvidenceLog::open(path, options).unwrap();
    let mut receipts = Vec::new();
    for record in records {
        receipts.push(log.append(record).await.unwrap());
    }
    log.flush().await.unwrap();
    receipts
}

fn lines_of(path: &Path) -> Vec<Vec<u8>> {
    let bytes = fs::read(path).unwrap();
    bytes
        .split_inclusive(|byte| *byte == b'\n')
        .map(<[u8]>::to_vec)
        .collect()
}

fn write_lines(path: &Path, lines: &[Vec<u8>]) {
    fs::write(path, lines.concat()).unwrap();
}

fn hash_of(line: &[u8]) -> String {
    format::decode(line.strip_suffix(b"\n").unwrap())
        .unwrap()
        .hash
}

#[test]
fn every_kind_of_record_round_trips() {
    let outcome = Outcome::Result {
        digest: "sha256:r".to_owned(),
        size: 3,
        is_error: false,
    };
    let decision = DecisionSummary {
        verdict: "allow".to_owned(),
        policies: vec![],
        policy_version: None,
    };
    let arguments = Arguments {
        redacted: JsonValue::Array(vec![
            JsonValue::Null,
            JsonValue::Bool(true),
            JsonValue::Integer(-3),
            JsonValue::Unsigned(u64::MAX),
            JsonValue::Float(1.5),
            JsonValue::String("[redacted]".to_owned()),
        ]),
        digest: "sha256:a".to_owned(),
    };
    let lifecycle = UpstreamLifecycle {
        upstream: "files".to_owned(),
        detail: None,
    };
    let events = vec![
        Event::List(ListEvent {
            request: request(1, "alice"),
            list: "tools".to_owned(),
            returned: 4,
            duration_ms: 1,
        }),
        intent(2, "alice", "write_file", "deny").event,
        Event::CallOutcome(CallOutcome {
            request: request(2, "alice"),
            tool: tool("write_file"),
            intent_seq: Some(1),
            outcome: Outcome::NotRun {
                reason: "denied".to_owned(),
            },
            duration_ms: 0,
            redacted: Vec::new(),
        }),
        Event::ResourceRead(ResourceRead {
            request: request(3, "alice"),
            upstream: "files".to_owned(),
            uri: "file:///a".to_owned(),
            decision: decision.clone(),
            outcome: outcome.clone(),
            duration_ms: 2,
        }),
        Event::PromptGet(PromptGet {
            request: request(4, "alice"),
            upstream: "files".to_owned(),
            prompt: "summarize".to_owned(),
            arguments,
            decision,
            outcome: Outcome::Cancelled,
            duration_ms: 2,
        }),
        Event::ElicitationRelayed(ElicitationRelayed {
            request: request(5, "alice"),
            upstream: "files".to_owned(),
            response: "decline".to_owned(),
            duration_ms: 9,
        }),
        Event::Approval(Approval {
            request: request(6, "alice"),
            tool: tool("send_message"),
            fingerprint: "sha256:ab".to_owned(),
            reasons: vec![
                "side-effects-need-approval".to_owned(),
                "untrusted content".to_owned(),
            ],
            answer: "approved".to_owned(),
            tainted_by: vec!["web".to_owned()],
            duration_ms: 1200,
            rung: Some("form".to_owned()),
            by: None,
        }),
        Event::UpstreamStarted(lifecycle.clone()),
        Event::UpstreamStopped(lifecycle.clone()),
        Event::UpstreamCrashed(UpstreamLifecycle {
            detail: Some("exit status 3".to_owned()),
            ..lifecycle
        }),
        Event::Reload(Reload {
            target: "policy".to_owned(),
            applied: false,
            version: None,
            error: Some("default.cedar:3: unexpected token".to_owned()),
        }),
        Event::SandboxStarted(SandboxStarted {
            upstream: "files".to_owned(),
            identity: Some(identity("bob")),
            profile: "sha256:p".to_owned(),
            contained: Some(true),
        }),
        Event::SandboxStarted(SandboxStarted {
            upstream: "shell".to_owned(),
            identity: None,
            profile: "none".to_owned(),
            contained: Some(false),
        }),
        Event::Checkpoint(Checkpoint {
            from_seq: 0,
            to_seq: 9,
            head: GENESIS.to_owned(),
            signature: "ab".repeat(64),
        }),
    ];
    for event in events {
        let kind = event.kind();
        let record = EvidenceRecord::new(7, event);
        let text = serde_json::to_string(&record).unwrap();
        assert!(text.contains(&format!("\"kind\":\"{kind}\"")), "{text}");
        let back: EvidenceRecord = serde_json::from_str(&text).unwrap();
        assert_eq!(back, record, "{kind}");
    }
}

#[test]
fn a_sandbox_record_from_before_the_opt_out_field_still_reads() {
    let text = r#"{"schema":1,"time_ms":7,"event":{"kind":"sandbox_started","upstream":"files","identity":null,"profile":"sha256:p"}}"#;
    let record: EvidenceRecord = serde_json::from_str(text).unwrap();
    let Event::SandboxStarted(sandbox) = record.event else {
        panic!("a sandbox record expected")
    };
    assert_eq!(sandbox.contained, None);
}

#[test]
fn a_line_is_its_body_plus_the_hash_of_the_body() {
    let record = EvidenceRecord::new(
        5,
        Event::UpstreamStarted(UpstreamLifecycle {
            upstream: "files".to_owned(),
            detail: None,
        }),
    );
    let encoded = format::encode(0, None, GENESIS, &record, |_| "ab".repeat(32)).unwrap();
    let line = String::from_utf8(encoded.line.clone()).unwrap();
    let body = format!(
        r#"{{"seq":0,"prev":"{GENESIS}","record":{{"schema":1,"time_ms":5,"event":{{"kind":"upstream_started","upstream":"files","detail":null}}}}}}"#
    );
    assert_eq!(encoded.hash, format::sha256_hex(body.as_bytes()));
    let expected = format!(
        "{},\"hash\":\"{}\",\"mac\":\"{}\"}}\n",
        body.strip_suffix('}').unwrap(),
        encoded.hash,
        "ab".repeat(32)
    );
    assert_eq!(line, expected);
    let decoded = format::decode(encoded.line.strip_suffix(b"\n").unwrap()).unwrap();
    assert!(decoded.hash_matches);
    assert_eq!(decoded.mac.as_deref(), Some("ab".repeat(32).as_str()));
    assert_eq!((decoded.seq, decoded.prev.as_str()), (0, GENESIS));
}

/// MACs as the log's own key makes them: damage done by someone who holds the key, which only
/// the chain's structure can reveal.
fn keyed(path: &Path) -> impl Fn(&str) -> String {
    let key = crate::key::LogKey::existing(path).unwrap();
    move |hash| key.chain_mac(hash)
}

#[tokio::test]
async fn a_record_appended_without_the_key_is_forged_and_never_adopted() {
    let (_dir, path, mut lines) = damaged_copy().await;
    // The attack: a record chained on with a correctly recomputed SHA-256, and a MAC guessed
    // (or none), appended after the head.
    let prev = hash_of(&lines[9]);
    for mac in [Some("00".repeat(32)), None] {
        let mut forged = format::encode(
            10,
            None,
            &prev,
            &intent(10, "mallory", "send", "allow"),
            |_| mac.clone().unwrap_or_default(),
        )
        .unwrap()
        .line;
        if mac.is_none() {
            // The form of a line written before MACs existed.
            let text = String::from_utf8(forged).unwrap();
            let cut = text.find(",\"mac\"").unwrap();
            forged = format!("{}}}\n", &text[..cut]).into_bytes();
        }
        let mut damaged = lines.clone();
        damaged.push(forged);
        write_lines(&path, &damaged);
        assert_problem(&path, ProblemKind::Forged, Some(10), Some(11));
        // Reopening does not promote it into the acknowledged chain: the start fails.
        let error = EvidenceLog::open(&path, Options::default()).err().unwrap();
        assert!(
            error
                .to_string()
                .contains("not written with this log's key"),
            "{error}"
        );
    }
    lines.truncate(10);
    write_lines(&path, &lines);
    assert!(verify(&path, None).unwrap().is_intact());
}

#[tokio::test]
async fn a_head_rewritten_without_the_key_is_forged() {
    let (_dir, path, lines) = damaged_copy().await;
    // Cut the last three records and rewrite the head to match, as before MACs would pass.
    let kept: Vec<Vec<u8>> = lines[..7].to_vec();
    write_lines(&path, &kept);
    let mut head: Head = serde_json::from_slice(&fs::read(head_path(&path)).unwrap()).unwrap();
    head.next_seq = 7;
    head.hash = hash_of(&kept[6]);
    head.end = kept.iter().map(|line| line.len() as u64).sum();
    head.last_start = head.end - kept[6].len() as u64;
    fs::write(head_path(&path), serde_json::to_vec(&head).unwrap()).unwrap();
    assert_problem(&path, ProblemKind::Forged, None, None);
    let error = EvidenceLog::open(&path, Options::default()).err().unwrap();
    assert!(
        error
            .to_string()
            .contains("head file was not signed with this log's key"),
        "{error}"
    );
}

#[tokio::test]
async fn a_log_from_before_keyed_records_is_not_continued_and_says_how_to_move_on() {
    let (_dir, path, _lines) = damaged_copy().await;
    let mut head: serde_json::Value =
        serde_json::from_slice(&fs::read(head_path(&path)).unwrap()).unwrap();
    head["version"] = serde_json::json!(1);
    head.as_object_mut().unwrap().remove("signature");
    fs::write(head_path(&path), serde_json::to_vec(&head).unwrap()).unwrap();
    let error = EvidenceLog::open(&path, Options::default()).err().unwrap();
    let text = error.to_string();
    assert!(
        text.contains("earlier Portcullis") && text.contains(".v1.head"),
        "{text}"
    );
    // The error names the log, not its head file, as what to verify.
    assert!(
        text.contains(&format!("portcullis audit verify {}`", path.display())),
        "{text}"
    );
}

#[tokio::test]
async fn a_written_log_verifies_with_its_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("evidence.jsonl");
    let options = Options {
        checkpoint_every: NonZeroU64::new(4),
        ..Options::default()
    };
    let receipts = write_log(&path, records(10), options).await;
    // Checkpoints after the 4th and 8th record take seq 4 and 9.
    let seqs: Vec<u64> = receipts.iter().map(|receipt| receipt.seq).collect();
    assert_eq!(seqs, [0, 1, 2, 3, 5, 6, 7, 8, 10, 11]);

    let report = verify(&path, None).unwrap();
    assert_eq!(report.problem, None, "{report}");
    assert_eq!(
        (report.records, report.checkpoints, report.acknowledged),
        (12, 2, Some(12))
    );
    assert_eq!(
        report.to_string(),
        "intact\n12 records verified (2 checkpoints), 12 named by the head file; every record's MAC and every signature checked with the log's key"
    );

    let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let head_mode = fs::metadata(head_path(&path)).unwrap().permissions().mode() & 0o777;
    assert_eq!(head_mode, 0o600);
}

/// A log of 12 lines (checkpoints at seq 4 and 9) whose key file has been moved away, as on a
/// machine that was handed the log and its public key only.
async fn handed_over() -> (tempfile::TempDir, PathBuf, PublicKey) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("evidence.jsonl");
    let options = Options {
        checkpoint_every: NonZeroU64::new(4),
        ..Options::default()
    };
    write_log(&path, records(10), options).await;
    let public = LogKey::existing(&path).unwrap().public_key();
    fs::rename(key_path(&path), dir.path().join("elsewhere.key")).unwrap();
    (dir, path, public)
}

#[tokio::test]
async fn a_log_verifies_against_its_public_key_without_the_key_file() {
    let (_dir, path, public) = handed_over().await;
    let report = verify(&path, Some(public)).unwrap();
    assert!(report.is_intact(), "{report}");
    assert_eq!((report.keyed, report.signer), (false, Some(public)));
    assert!(
        report
            .to_string()
            .contains(&format!("checked against public key {public}")),
        "{report}"
    );
    // Without the key or a public key, the report says that nothing keyed was checked.
    let unkeyed = verify(&path, None).unwrap();
    assert_eq!(unkeyed.signer, None);
    assert!(unkeyed.to_string().contains("NOT checked"), "{unkeyed}");
}

#[tokio::test]
async fn a_forged_checkpoint_or_head_fails_against_the_public_key() {
    let (_dir, path, public) = handed_over().await;
    let lines = lines_of(&path);

    // A checkpoint re-signed by someone else (its chain recomputed to match) is forged.
    let mut checkpoint: serde_json::Value =
        serde_json::from_slice(&lines[4][..lines[4].len() - 1]).unwrap();
    let other = LogKey::for_log(&path.with_extension("other")).unwrap();
    checkpoint["record"]["event"]["signature"] =
        serde_json::json!(other.sign_checkpoint(0, 3, &hash_of(&lines[3])));
    let record: EvidenceRecord = serde_json::from_value(checkpoint["record"].clone()).unwrap();
    let mut damaged = lines[..4].to_vec();
    let mut prev = hash_of(&lines[3]);
    damaged.push(
        format::encode(4, None, &prev, &record, |_| "00".repeat(32))
            .unwrap()
            .line,
    );
    prev = hash_of(damaged.last().unwrap());
    for seq in 5..=6 {
        let line = &lines[usize::try_from(seq).unwrap()];
        let value: serde_json::Value = serde_json::from_slice(&line[..line.len() - 1]).unwrap();
        let record: EvidenceRecord = serde_json::from_value(value["record"].clone()).unwrap();
        damaged.push(
            format::encode(seq, None, &prev, &record, |_| "00".repeat(32))
                .unwrap()
                .line,
        );
        prev = hash_of(damaged.last().unwrap());
    }
    write_lines(&path, &damaged);
    let report = verify(&path, Some(public)).unwrap();
    let problem = report.problem.unwrap();
    assert_eq!(
        (problem.kind, problem.seq),
        (ProblemKind::Forged, Some(4)),
        "{problem}"
    );

    // A head rewritten to acknowledge records that were appended (or to hide records cut) is
    // forged: its signature no longer covers what it says.
    write_lines(&path, &lines[..7]);
    let mut head: Head = serde_json::from_slice(&fs::read(head_path(&path)).unwrap()).unwrap();
    head.next_seq = 7;
    head.hash = hash_of(&lines[6]);
    head.end = lines[..7].iter().map(|line| line.len() as u64).sum();
    head.last_start = head.end - lines[6].len() as u64;
    fs::write(head_path(&path), serde_json::to_vec(&head).unwrap()).unwrap();
    let report = verify(&path, Some(public)).unwrap();
    let problem = report.problem.unwrap();
    assert_eq!(
        (problem.kind, problem.seq),
        (ProblemKind::Forged, None),
        "{problem}"
    );
    assert!(
        problem.detail.contains("head file's signature"),
        "{problem}"
    );
}

#[tokio::test]
async fn a_log_checked_against_the_wrong_public_key_is_forged() {
    let (dir, path, _public) = handed_over().await;
    let stranger = LogKey::for_log(&dir.path().join("stranger.jsonl"))
        .unwrap()
        .public_key();
    let problem = verify(&path, Some(stranger)).unwrap().problem.unwrap();
    assert_eq!(
        (problem.kind, problem.seq),
        (ProblemKind::Forged, Some(4)),
        "{problem}"
    );
    // With the key file back but a different public key trusted, the key file is not trusted.
    fs::rename(dir.path().join("elsewhere.key"), key_path(&path)).unwrap();
    let problem = verify(&path, Some(stranger)).unwrap().problem.unwrap();
    assert_eq!(problem.kind, ProblemKind::Forged, "{problem}");
    assert!(
        problem.detail.contains("not the one public key"),
        "{problem}"
    );
}

#[test]
fn a_public_key_is_exactly_64_hex_digits() {
    let key = "ab".repeat(32);
    assert_eq!(
        PublicKey::parse(&format!(" {key}\n")).unwrap().to_string(),
        key
    );
    for bad in [
        "",
        "ab",
        &"zz".repeat(32),
        &"ab".repeat(33),
        &format!("+{}", &key[1..]),
    ] {
        assert!(PublicKey::parse(bad).is_err(), "{bad:?}");
    }
}

/// A log of 10 records without checkpoints, copied so that a test may damage it.
async fn damaged_copy() -> (tempfile::TempDir, PathBuf, Vec<Vec<u8>>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("evidence.jsonl");
    write_log(&path, records(10), no_checkpoints()).await;
    let lines = lines_of(&path);
    assert_eq!(lines.len(), 10);
    (dir, path, lines)
}

fn assert_problem(path: &Path, kind: ProblemKind, seq: Option<u64>, line: Option<u64>) -> Problem {
    let report = verify(path, None).unwrap();
    let problem = report
        .problem
        .clone()
        .unwrap_or_else(|| panic!("not detected: {report}"));
    assert_eq!(
        (problem.kind, problem.seq, problem.line),
        (kind, seq, line),
        "{problem}"
    );
    problem
}

#[tokio::test]
async fn an_edited_field_is_an_edited_record() {
    let (_dir, path, mut lines) = damaged_copy().await;
    let edited = String::from_utf8(lines[5].clone())
        .unwrap()
        .replace("alice", "mallory");
    lines[5] = edited.into_bytes();
    write_lines(&path, &lines);
    let problem = assert_problem(&path, ProblemKind::Edited, Some(5), Some(6));
    assert_eq!(
        problem.to_string(),
        "edited record at seq 5 (line 6): its contents do not match its hash"
    );
}

#[tokio::test]
async fn an_edited_and_rehashed_record_breaks_the_next_link() {
    let (_dir, path, mut lines) = damaged_copy().await;
    let prev = hash_of(&lines[4]);
    lines[5] = format::encode(
        5,
        None,
        &prev,
        &intent(5, "mallory", "read_file", "allow"),
        keyed(&path),
    )
    .unwrap()
    .line;
    write_lines(&path, &lines);
    assert_problem(&path, ProblemKind::Inserted, Some(6), Some(7));
}

#[tokio::test]
async fn a_deleted_line_is_a_deleted_record() {
    let (_dir, path, mut lines) = damaged_copy().await;
    lines.remove(5);
    write_lines(&path, &lines);
    assert_problem(&path, ProblemKind::Deleted, Some(5), Some(6));
}

#[tokio::test]
async fn swapped_lines_are_reordered_records() {
    let (_dir, path, mut lines) = damaged_copy().await;
    lines.swap(5, 6);
    write_lines(&path, &lines);
    let problem = assert_problem(&path, ProblemKind::Reordered, Some(5), Some(6));
    assert!(
        problem.detail.contains("appears later, at line 7"),
        "{problem}"
    );
}

#[tokio::test]
async fn a_forged_line_with_a_wrong_prev_is_an_inserted_record() {
    let (_dir, path, mut lines) = damaged_copy().await;
    let forged = format::encode(
        5,
        None,
        GENESIS,
        &intent(99, "mallory", "send", "allow"),
        keyed(&path),
    )
    .unwrap();
    lines.insert(5, forged.line);
    write_lines(&path, &lines);
    assert_problem(&path, ProblemKind::Inserted, Some(5), Some(6));
}

#[tokio::test]
async fn a_forged_line_that_chains_correctly_repeats_a_seq() {
    let (_dir, path, mut lines) = damaged_copy().await;
    let prev = hash_of(&lines[4]);
    let forged = format::encode(
        5,
        None,
        &prev,
        &intent(99, "mallory", "send", "allow"),
        keyed(&path),
    )
    .unwrap();
    lines.insert(5, forged.line);
    write_lines(&path, &lines);
    // The forgery itself verifies; the genuine seq 5 after it does not fit.
    assert_problem(&path, ProblemKind::Inserted, Some(5), Some(7));
}

#[tokio::test]
async fn removed_last_records_are_a_truncated_log() {
    let (_dir, path, mut lines) = damaged_copy().await;
    lines.truncate(7);
    write_lines(&path, &lines);
    let problem = assert_problem(&path, ProblemKind::Truncated, Some(7), None);
    assert_eq!(
        problem.detail,
        "the head file says 10 records were acknowledged; the log holds 7 complete ones"
    );
}

#[tokio::test]
async fn a_last_line_cut_in_half_is_a_truncated_log() {
    let (_dir, path, mut lines) = damaged_copy().await;
    let last = lines.pop().unwrap();
    lines.push(last[..last.len() / 2].to_vec());
    write_lines(&path, &lines);
    let problem = assert_problem(&path, ProblemKind::Truncated, Some(9), None);
    assert!(
        problem.detail.ends_with("and its last line is cut short"),
        "{problem}"
    );
}

#[tokio::test]
async fn a_rewritten_end_is_a_head_mismatch() {
    let (_dir, path, mut lines) = damaged_copy().await;
    let prev = hash_of(&lines[8]);
    lines[9] = format::encode(
        9,
        None,
        &prev,
        &intent(9, "mallory", "read_file", "allow"),
        keyed(&path),
    )
    .unwrap()
    .line;
    write_lines(&path, &lines);
    assert_problem(&path, ProblemKind::HeadMismatch, Some(9), None);
}

#[tokio::test]
async fn a_missing_head_file_is_reported() {
    let (_dir, path, _lines) = damaged_copy().await;
    fs::remove_file(head_path(&path)).unwrap();
    assert_problem(&path, ProblemKind::HeadMissing, None, None);
}

#[tokio::test]
async fn a_garbage_line_is_malformed() {
    let (_dir, path, mut lines) = damaged_copy().await;
    lines[3] = b"not a record\n".to_vec();
    write_lines(&path, &lines);
    assert_problem(&path, ProblemKind::Malformed, None, Some(4));
}

#[tokio::test]
async fn a_torn_unacknowledged_tail_is_not_tampering_and_reopen_cuts_it() {
    let (_dir, path, mut lines) = damaged_copy().await;
    let length = fs::metadata(&path).unwrap().len();
    let unacknowledged = format::encode(
        10,
        None,
        &hash_of(&lines[9]),
        &intent(10, "alice", "x", "allow"),
        keyed(&path),
    )
    .unwrap()
    .line;
    lines.push(unacknowledged[..40].to_vec());
    write_lines(&path, &lines);

    let report = verify(&path, None).unwrap();
    assert!(report.is_intact(), "{report}");
    assert_eq!(
        report.torn_tail,
        Some(TornTail {
            line: 11,
            offset: length,
            bytes: 40
        })
    );
    assert!(
        report
            .to_string()
            .contains("torn tail, not acknowledged: line 11")
    );

    let receipts = write_log(&path, records(1), no_checkpoints()).await;
    assert_eq!(receipts[0].seq, 10);
    let report = verify(&path, None).unwrap();
    assert_eq!(
        (report.problem, report.torn_tail, report.records),
        (None, None, 11)
    );
}

#[tokio::test]
async fn records_beyond_the_head_are_accepted_and_continued() {
    // A crash between the sync and the head's replacement leaves complete records the head
    // does not name yet: written, never acknowledged, but part of a valid chain.
    let (_dir, path, lines) = damaged_copy().await;
    let head_before = fs::read(head_path(&path)).unwrap();
    write_log(&path, records(2), no_checkpoints()).await;
    fs::write(head_path(&path), head_before).unwrap();
    let report = verify(&path, None).unwrap();
    assert_eq!(
        (report.problem.clone(), report.beyond_head),
        (None, 2),
        "{report}"
    );

    let receipts = write_log(&path, records(1), no_checkpoints()).await;
    assert_eq!(receipts[0].seq, 12);
    let report = verify(&path, None).unwrap();
    assert_eq!(
        (report.problem, report.acknowledged, report.beyond_head),
        (None, Some(13), 0)
    );
    assert_eq!(lines_of(&path)[..10], lines[..]);
}

#[tokio::test]
async fn reopening_continues_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("evidence.jsonl");
    let options = Options {
        checkpoint_every: NonZeroU64::new(3),
        ..Options::default()
    };
    write_log(&path, records(5), options.clone()).await;
    let receipts = write_log(&path, records(5), options.clone()).await;
    // seq 3 and 7 are checkpoints; the count carries over the reopen through the head file.
    let seqs: Vec<u64> = receipts.iter().map(|receipt| receipt.seq).collect();
    assert_eq!(seqs, [6, 8, 9, 10, 12]);
    let report = verify(&path, None).unwrap();
    assert_eq!(report.problem, None, "{report}");
    assert_eq!((report.records, report.checkpoints), (13, 3));
}

#[tokio::test]
async fn a_replicas_log_names_it_on_every_line_and_is_continued_only_as_that_replica() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("evidence.jsonl");
    let as_replica = |name: &str| Options {
        checkpoint_every: NonZeroU64::new(3),
        replica: Some(name.to_owned()),
        ..Options::default()
    };
    write_log(&path, records(4), as_replica("r1")).await;
    write_log(&path, records(1), as_replica("r1")).await;
    let lines = lines_of(&path);
    assert_eq!(lines.len(), 6);
    for (seq, line) in lines.iter().enumerate() {
        let text = String::from_utf8_lossy(line);
        assert!(
            text.starts_with(&format!("{{\"seq\":{seq},\"replica\":\"r1\",\"prev\":")),
            "{text}"
        );
    }
    assert!(verify(&path, None).unwrap().is_intact());
    let entry = read(&path, Filter::default())
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    assert_eq!(entry.replica.as_deref(), Some("r1"));
    assert!(
        render_line(&entry).contains("#0 @r1  call_intent"),
        "{}",
        render_line(&entry)
    );

    // Not continued as another replica, nor as a single process: the chain would mix two.
    for (options, named) in [
        (as_replica("r2"), "as replica `r2`"),
        (Options::default(), "as a single process"),
    ] {
        let refused = EvidenceLog::open(&path, options).unwrap_err().to_string();
        assert!(
            refused.contains("written by replica `r1`") && refused.contains(named),
            "{refused}"
        );
    }
}

#[tokio::test]
async fn reopening_refuses_a_damaged_tail() {
    type Damage = fn(&mut Vec<Vec<u8>>);
    let cases: [(&str, Damage); 3] = [
        ("edited", |lines| {
            let edited = String::from_utf8(lines[9].clone())
                .unwrap()
                .replace("alice", "eve");
            lines[9] = edited.into_bytes();
        }),
        ("truncated", |lines| lines.truncate(8)),
        ("cut", |lines| {
            let last = lines.pop().unwrap();
            lines.push(last[..10].to_vec());
        }),
    ];
    for (name, damage) in cases {
        let (_dir, path, mut lines) = damaged_copy().await;
        damage(&mut lines);
        write_lines(&path, &lines);
        let error = EvidenceLog::open(&path, no_checkpoints()).unwrap_err();
        assert!(
            matches!(error, AuditError::Unusable { .. }),
            "{name}: {error}"
        );
        assert!(
            error.to_string().contains("run `portcullis audit verify"),
            "{name}: {error}"
        );
    }
}

#[tokio::test]
async fn a_log_whose_head_is_gone_is_not_continued() {
    let (_dir, path, _lines) = damaged_copy().await;
    fs::remove_file(head_path(&path)).unwrap();
    let error = EvidenceLog::open(&path, no_checkpoints()).unwrap_err();
    assert!(error.to_string().contains("head file"), "{error}");

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("evidence.jsonl");
    fs::write(head_path(&path), "{}").unwrap();
    let error = EvidenceLog::open(&path, no_checkpoints()).unwrap_err();
    assert!(error.to_string().contains("log is missing"), "{error}");
    assert!(!path.exists());
}

#[tokio::test]
async fn a_failed_write_fails_that_append_and_every_later_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("evidence.jsonl");
    let log = EvidenceLog::open(&path, no_checkpoints()).unwrap();
    log.append(intent(0, "alice", "read_file", "allow"))
        .await
        .unwrap();
    log.flush().await.unwrap();

    // A directory where the head's temporary file goes: the head cannot be replaced, even as
    // root. The record is written (that is all `append` waits for here); the flush that
    // would make the head name it fails, and so does everything after.
    let blocker = dir.path().join("evidence.jsonl.head.tmp");
    fs::create_dir(&blocker).unwrap();
    log.append(intent(1, "alice", "read_file", "allow"))
        .await
        .unwrap();
    let error = log.flush().await.unwrap_err();
    assert!(matches!(error, AuditError::WriteFailed { .. }), "{error}");
    assert!(
        error
            .to_string()
            .starts_with("could not write the evidence log `"),
        "{error}"
    );

    // Even once the cause is gone: no silent recovery, no reordering.
    fs::remove_dir(&blocker).unwrap();
    let error = log
        .append(intent(2, "alice", "read_file", "allow"))
        .await
        .unwrap_err();
    assert!(matches!(error, AuditError::Closed { .. }), "{error}");
    drop(log);

    // The record the head could not name is on disk beyond the head; reopening continues.
    let report = verify(&path, None).unwrap();
    assert_eq!(
        (report.problem, report.acknowledged, report.beyond_head),
        (None, Some(1), 1)
    );
    let receipts = write_log(&path, records(1), no_checkpoints()).await;
    assert_eq!(receipts[0].seq, 2);
}

#[test]
fn a_log_that_cannot_be_created_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    fs::write(&file, "x").unwrap();
    let error = EvidenceLog::open(file.join("evidence.jsonl"), Options::default()).unwrap_err();
    assert!(matches!(error, AuditError::Io { .. }), "{error}");
}

#[tokio::test]
async fn a_checkpoint_cannot_be_appended() {
    let dir = tempfile::tempdir().unwrap();
    let log = EvidenceLog::open(dir.path().join("e.jsonl"), Options::default()).unwrap();
    let forged = EvidenceRecord::new(
        1,
        Event::Checkpoint(Checkpoint {
            from_seq: 0,
            to_seq: 0,
            head: GENESIS.to_owned(),
            signature: String::new(),
        }),
    );
    assert!(matches!(
        log.append(forged).await,
        Err(AuditError::ReservedKind)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_share_syncs() {
    const APPENDS: u64 = 500;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("evidence.jsonl");
    let log = EvidenceLog::open(&path, no_checkpoints()).unwrap();
    let tasks: Vec<_> = (0..APPENDS)
        .map(|id| {
            let log = log.clone();
            tokio::spawn(async move { log.append(intent(id, "alice", "read_file", "allow")).await })
        })
        .collect();
    let mut seqs = BTreeSet::new();
    for task in tasks {
        seqs.insert(task.await.unwrap().unwrap().seq);
    }
    assert_eq!(seqs, (0..APPENDS).collect());
    let stats = log.stats();
    assert_eq!(stats.records, APPENDS);
    assert!(stats.syncs < APPENDS, "{stats:?}");
    eprintln!("{APPENDS} concurrent appends: {stats:?}");

    let entries: Vec<Entry> = read(&path, Filter::default())
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let in_file: Vec<u64> = entries.iter().map(|entry| entry.seq).collect();
    assert_eq!(in_file, (0..APPENDS).collect::<Vec<_>>());
    let ids: BTreeSet<String> = entries
        .iter()
        .filter_map(|entry| {
            entry
                .record
                .request()
                .map(|request| request.request_id.clone())
        })
        .collect();
    assert_eq!(ids, (0..APPENDS).map(|id| format!("r{id}")).collect());
    assert!(verify(&path, None).unwrap().is_intact());
}

#[tokio::test]
async fn the_reader_filters_and_renders_for_a_person() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("evidence.jsonl");
    let outcome = EvidenceRecord::new(
        1_735_787_045_100,
        Event::CallOutcome(CallOutcome {
            request: request(1, "alice"),
            tool: tool("write_file"),
            intent_seq: Some(1),
            outcome: Outcome::NotRun {
                reason: "denied by policy".to_owned(),
            },
            duration_ms: 0,
            redacted: Vec::new(),
        }),
    );
    let crashed = EvidenceRecord::new(
        1_735_787_046_000,
        Event::UpstreamCrashed(UpstreamLifecycle {
            upstream: "files".to_owned(),
            detail: Some("exit status 1".to_owned()),
        }),
    );
    let uncontained = EvidenceRecord::new(
        1_735_787_047_000,
        Event::SandboxStarted(SandboxStarted {
            upstream: "shell".to_owned(),
            identity: None,
            profile: "none".to_owned(),
            contained: Some(false),
        }),
    );
    let all = vec![
        intent(0, "alice", "read_file", "allow"),
        intent(1, "alice", "write_file", "deny"),
        outcome,
        intent(3, "bob", "read_file", "allow"),
        crashed,
        uncontained,
    ];
    write_log(&path, all, no_checkpoints()).await;

    let shown = |filter: Filter| -> Vec<String> {
        read(&path, filter)
            .unwrap()
            .map(|entry| render_line(&entry.unwrap()))
            .collect()
    };
    assert_eq!(
        shown(Filter::default()),
        [
            "2025-01-02 03:04:05.006Z  #0  call_intent  alice  files.read_file  allow [default-read]  -",
            "2025-01-02 03:04:05.007Z  #1  call_intent  alice  files.write_file  deny [default-read]  -",
            "2025-01-02 03:04:05.100Z  #2  call_outcome  alice  files.write_file  -  not run: denied by policy in 0 ms",
            "2025-01-02 03:04:05.009Z  #3  call_intent  bob  files.read_file  allow [default-read]  -",
            "2025-01-02 03:04:06.000Z  #4  upstream_crashed  -  files  -  exit status 1",
            "2025-01-02 03:04:07.000Z  #5  sandbox_started  -  shell  -  NOT contained (contain = false)",
        ]
    );
    let seqs = |filter: Filter| -> Vec<u64> {
        read(&path, filter)
            .unwrap()
            .map(|entry| entry.unwrap().seq)
            .collect()
    };
    let user = |user: &str| Filter {
        user: Some(user.to_owned()),
        ..Filter::default()
    };
    assert_eq!(seqs(user("bob")), [3]);
    assert_eq!(seqs(user("alice@portcullis:local")), [0, 1, 2]);
    let by_tool = Filter {
        tool: Some("files.write_file".to_owned()),
        ..Filter::default()
    };
    assert_eq!(seqs(by_tool), [1, 2]);
    let denied = Filter {
        decision: Some("deny".to_owned()),
        ..Filter::default()
    };
    assert_eq!(seqs(denied), [1]);
    let since = Filter {
        since_ms: Some(1_735_787_045_100),
        ..Filter::default()
    };
    assert_eq!(seqs(since), [2, 4, 5]);

    let last: Vec<u64> = tail(&path, Filter::default(), 2)
        .unwrap()
        .into_iter()
        .map(|entry| entry.unwrap().seq)
        .collect();
    assert_eq!(last, [4, 5]);

    // The JSON form is the line as stored.
    let first = read(&path, Filter::default())
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    assert_eq!(format!("{}\n", first.raw).into_bytes(), lines_of(&path)[0]);
}

#[tokio::test]
async fn the_reader_reports_a_bad_line_in_place_and_goes_on() {
    let (_dir, path, mut lines) = damaged_copy().await;
    lines[2] = b"{\"garbage\":true}\n".to_vec();
    write_lines(&path, &lines);
    let results: Vec<_> = read(&path, Filter::default()).unwrap().collect();
    assert_eq!(results.len(), 10);
    let error = results[2].as_ref().unwrap_err();
    assert!(error.to_string().starts_with("line 3 of `"), "{error}");
    assert!(
        results
            .iter()
            .enumerate()
            .all(|(index, result)| index == 2 || result.is_ok())
    );
}

#[test]
fn times_render_in_utc() {
    let cases = [
        (0, "1970-01-01 00:00:00.000Z"),
        (1_735_787_045_006, "2025-01-02 03:04:05.006Z"),
        (1_709_251_199_999, "2024-02-29 23:59:59.999Z"),
    ];
    for (time_ms, expected) in cases {
        assert_eq!(render_time(time_ms), expected);
    }
}

#[test]
fn json_digests_do_not_depend_on_key_order() {
    let one: serde_json::Value =
        serde_json::from_str(r#"{"b":1,"a":{"y":[1.5,null],"x":"s"}}"#).unwrap();
    let two: serde_json::Value =
        serde_json::from_str(r#"{"a":{"x":"s","y":[1.5,null]},"b":1}"#).unwrap();
    assert_eq!(digest_json(&one), digest_json(&two));
    assert_eq!(
        serde_json::to_string(&recorded_json(&one)).unwrap(),
        r#"{"a":{"x":"s","y":[1.5,null]},"b":1}"#
    );
    assert!(digest_json(&one).starts_with("sha256:"));
    assert_eq!(
        digest_bytes(b""),
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
}

#[test]
fn secret_named_members_and_configured_pointers_are_redacted() {
    let arguments = serde_json::json!({
        "to": "bob@example.com",
        "api_key": "k-123",
        "headers": {"Authorization": "Bearer abc", "Accept": "text/plain"},
        "accounts": [{"name": "a", "password": "p1"}, {"name": "b", "githubToken": "t2"}],
        "max_tokens": 100,
        "body": "dear bob",
        "attachments": [{"name": "x.pdf", "content": "AAAA"}, {"name": "y.pdf", "content": "BBBB"}],
        "items": ["first", "second"],
    });
    let pointers = ["/body", "/attachments/*/content", "/items/1", "/missing/*"]
        .map(|text| portcullis_core::ArgumentPointer::parse(text).unwrap());
    let recorded = serde_json::to_value(redact(&arguments, &pointers)).unwrap();
    assert_eq!(
        recorded,
        serde_json::json!({
            "to": "bob@example.com",
            "api_key": REDACTED,
            "headers": {"Authorization": REDACTED, "Accept": "text/plain"},
            "accounts": [{"name": "a", "password": REDACTED}, {"name": "b", "githubToken": REDACTED}],
            "max_tokens": 100,
            "body": REDACTED,
            "attachments": [{"name": "x.pdf", "content": REDACTED}, {"name": "y.pdf", "content": REDACTED}],
            "items": ["first", REDACTED],
        })
    );
    // Without redactions configured, and with no secret names, nothing changes.
    let plain = serde_json::json!({"to": "bob", "n": [1, 2]});
    assert_eq!(serde_json::to_value(redact(&plain, &[])).unwrap(), plain);
}

#[test]
fn a_shared_argument_key_digests_alike_in_every_process_that_holds_its_secret() {
    let arguments = serde_json::json!({"password": "1234", "to": "bob"});
    let reordered = serde_json::json!({"to": "bob", "password": "1234"});
    let secret = b"a secret every replica holds, 32+ bytes long";
    let one = SharedArgumentKey::derive(secret);
    let two = SharedArgumentKey::derive(secret);
    let digest = one.digest_arguments(&arguments);
    assert!(digest.starts_with("hmac-sha256:"), "{digest}");
    assert_eq!(two.digest_arguments(&reordered), digest);
    // Keyed: neither the plain hash nor another secret's digest.
    assert_ne!(digest.trim_start_matches("hmac-"), digest_json(&arguments));
    assert_ne!(
        SharedArgumentKey::derive(b"another secret, also 32 bytes long..")
            .digest_arguments(&arguments),
        digest
    );
    assert_eq!(format!("{one:?}"), "SharedArgumentKey(..)");
}

#[test]
fn argument_digests_are_keyed_per_log_and_kept_across_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let one = dir.path().join("one.jsonl");
    let two = dir.path().join("two.jsonl");
    let arguments = serde_json::json!({"password": "1234", "to": "bob"});
    let reordered = serde_json::json!({"to": "bob", "password": "1234"});

    let first = LogKey::for_log(&one).unwrap();
    let digest = first.digest_arguments(&arguments);
    assert!(digest.starts_with("hmac-sha256:"), "{digest}");
    assert_eq!(first.digest_arguments(&reordered), digest);
    // Not the plain hash a reader of the log could recompute from guesses.
    assert_ne!(digest.trim_start_matches("hmac-"), digest_json(&arguments));
    assert_ne!(
        first.digest_arguments(&serde_json::json!({"password": "1235", "to": "bob"})),
        digest
    );

    let again = LogKey::for_log(&one).unwrap();
    assert_eq!(again.digest_arguments(&arguments), digest);
    let other = LogKey::for_log(&two).unwrap();
    assert_ne!(other.digest_arguments(&arguments), digest);

    let key_file = key_path(&one);
    assert_eq!(
        fs::metadata(&key_file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(fs::read(&key_file).unwrap().len(), 32);
    fs::write(&key_file, b"short").unwrap();
    assert!(LogKey::for_log(&one).is_err());
}

#[test]
fn pointers_find_every_value_they_name() {
    let value = serde_json::json!({"to": "a@x", "cc": ["b@x", "c@x"], "routes": [{"to": "d@x"}, {"to": 5}]});
    let found = |text: &str| -> Vec<serde_json::Value> {
        values_at(
            &value,
            &portcullis_core::ArgumentPointer::parse(text).unwrap(),
        )
        .into_iter()
        .cloned()
        .collect()
    };
    assert_eq!(found("/to"), [serde_json::json!("a@x")]);
    assert_eq!(
        found("/cc/*"),
        [serde_json::json!("b@x"), serde_json::json!("c@x")]
    );
    assert_eq!(found("/cc/1"), [serde_json::json!("c@x")]);
    assert_eq!(
        found("/routes/*/to"),
        [serde_json::json!("d@x"), serde_json::json!(5)]
    );
    assert!(found("/missing").is_empty());
    assert!(found("/to/deeper").is_empty());
}

/// A power loss keeps what the last `fdatasync` covered, and may leave the file's new length
/// filled with zeros. Simulated by copying the log up to `Stats::synced_end`, zeros after, with
/// its head and key: with no background sync (a long `sync_interval`), `Process` keeps none of
/// the records it acknowledged, `Disk` every one its `append` acknowledged, and none of those
/// only written (`append_written`). Either way the copy opens, its zeros cut, and verifies.
#[tokio::test]
async fn what_a_power_loss_keeps_in_each_durability_mode() {
    for (durability, kept) in [(Durability::Process, 0), (Durability::Disk, 10)] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("evidence.jsonl");
        let options = Options {
            durability,
            sync_interval: std::time::Duration::from_secs(3600),
            head_interval: std::time::Duration::from_secs(3600),
            ..no_checkpoints()
        };
        let log = EvidenceLog::open(&path, options.clone()).unwrap();
        for record in records(10) {
            let receipt = log.append(record).await.unwrap();
            if durability == Durability::Disk {
                assert!(log.stats().synced > receipt.seq, "acknowledged unsynced");
            }
        }
        for record in records(5) {
            log.append_written(record).await.unwrap();
        }
        let stats = log.stats();
        assert_eq!((stats.records, stats.synced), (15, kept), "{durability:?}");

        let copy = dir.path().join("after-power-loss.jsonl");
        let bytes = fs::read(&path).unwrap();
        let synced = usize::try_from(stats.synced_end).unwrap();
        let mut survived = bytes[..synced].to_vec();
        survived.resize(bytes.len(), 0);
        fs::write(&copy, &survived).unwrap();
        fs::copy(head_path(&path), head_path(&copy)).unwrap();
        fs::copy(key_path(&path), key_path(&copy)).unwrap();
        fs::set_permissions(key_path(&copy), fs::Permissions::from_mode(0o600)).unwrap();

        let reopened = EvidenceLog::open(&copy, options).unwrap();
        let receipt = reopened
            .append(intent(99, "alice", "read_file", "allow"))
            .await
            .unwrap();
        assert_eq!(receipt.seq, kept, "{durability:?}");
        reopened.flush().await.unwrap();
        let report = verify(&copy, None).unwrap();
        assert!(report.is_intact(), "{durability:?}: {report}");
        assert_eq!(report.records, kept + 1, "{durability:?}: {report}");
        drop(log);
    }
}

/// Only-written records are synced within `sync_interval` though nothing asks for a sync, and
/// a flush makes the head name them.
/// A record written without waiting for a sync is synced by the writer on its own, whether it
/// was written while the writer still watched after a sync (it was not woken) or after it had
/// stopped watching (it was woken).
#[tokio::test]
async fn an_outcome_written_after_a_synced_intent_is_synced_without_another_append() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("evidence.jsonl");
    let interval = std::time::Duration::from_millis(30);
    let log = EvidenceLog::open(
        &path,
        Options {
            durability: Durability::Disk,
            sync_interval: interval,
            head_interval: std::time::Duration::from_secs(3600),
            ..no_checkpoints()
        },
    )
    .unwrap();
    let mut records = records(4).into_iter();
    // Right after the intent's sync: the writer is still watching.
    log.append(records.next().unwrap()).await.unwrap();
    log.append_written(records.next().unwrap()).await.unwrap();
    synced_to(&log, 2).await;
    // Long after: the writer waits with no deadline and must be woken.
    tokio::time::sleep(interval * 4).await;
    log.append(records.next().unwrap()).await.unwrap();
    tokio::time::sleep(interval * 4).await;
    log.append_written(records.next().unwrap()).await.unwrap();
    synced_to(&log, 4).await;
}

/// Waits until the first `n` records of `log` are synced; fails after 10 s.
async fn synced_to(log: &EvidenceLog, n: u64) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while log.stats().synced < n {
        assert!(
            std::time::Instant::now() < deadline,
            "record {n} never synced"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn written_records_are_synced_within_the_interval_and_a_flush_names_them() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("evidence.jsonl");
    let log = EvidenceLog::open(
        &path,
        Options {
            sync_interval: std::time::Duration::from_millis(20),
            head_interval: std::time::Duration::from_secs(3600),
            ..no_checkpoints()
        },
    )
    .unwrap();
    for record in records(3) {
        log.append(record).await.unwrap();
    }
    synced_to(&log, 3).await;
    assert_eq!(verify(&path, None).unwrap().acknowledged, Some(0));
    log.flush().await.unwrap();
    let report = verify(&path, None).unwrap();
    assert_eq!((report.acknowledged, report.beyond_head), (Some(3), 0));
    assert!(log.stats().heads >= 1);
}
