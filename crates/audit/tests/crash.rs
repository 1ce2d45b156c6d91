//! Crash test, in both durability modes: a child process appends under load and prints every
//! seq it got acknowledged; the parent SIGKILLs it mid-stream and checks that every
//! acknowledged record is in the file, the file verifies, and it can be continued.
//!
//! The child is this same test binary, run with `CRASH_CHILD_LOG` set. SIGKILL keeps what the
//! kernel already holds, so this proves the order (acknowledged only after written, in either
//! mode), not power-loss durability, which rests on `fdatasync`: the unit tests simulate a
//! power loss by keeping only what the last sync covered (`what_a_power_loss_keeps_…`).
#![expect(clippy::unwrap_used, clippy::panic, reason = "tests")]

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use portcullis_audit::{Durability, EvidenceLog, Options, verify};
use portcullis_core::evidence::{Event, EvidenceRecord, UpstreamLifecycle};

const CHILD_ENV: &str = "CRASH_CHILD_LOG";
/// `disk` in the child: `Durability::Disk`; otherwise `Process`.
const MODE_ENV: &str = "CRASH_CHILD_DURABILITY";

fn options() -> Options {
    Options {
        durability: match std::env::var(MODE_ENV).as_deref() {
            Ok("disk") => Durability::Disk,
            _ => Durability::Process,
        },
        ..Options::default()
    }
}
const WRITERS: u64 = 16;

fn record(writer: u64, n: u64) -> EvidenceRecord {
    EvidenceRecord::new(
        n,
        Event::UpstreamStarted(UpstreamLifecycle {
            upstream: format!("writer{writer}"),
            detail: Some(format!("append {n} {}", "x".repeat(200))),
        }),
    )
}

/// In the child: append forever from several tasks, printing `ack SEQ` after each.
#[test]
fn crash_child() {
    let Ok(path) = std::env::var(CHILD_ENV) else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    runtime.block_on(async move {
        let log = EvidenceLog::open(&path, options()).unwrap();
        let tasks: Vec<_> = (0..WRITERS)
            .map(|writer| {
                let log = log.clone();
                tokio::spawn(async move {
                    for n in 0.. {
                        let receipt = log.append(record(writer, n)).await.unwrap();
                        // One `write` per line: a line reaches the pipe whole or not at all.
                        let mut out = std::io::stdout().lock();
                        writeln!(out, "ack {}", receipt.seq).unwrap();
                        out.flush().unwrap();
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
    });
}

#[test]
fn sigkill_under_load_loses_no_acknowledged_record_when_only_written() {
    sigkill_under_load("process");
}

#[test]
fn sigkill_under_load_loses_no_acknowledged_record_when_synced() {
    sigkill_under_load("disk");
}

fn sigkill_under_load(mode: &str) {
    if std::env::var_os(CHILD_ENV).is_some() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("evidence.jsonl");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["crash_child", "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, &path)
        .env(MODE_ENV, mode)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());

    let mut acknowledged = BTreeSet::new();
    let mut line = String::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while acknowledged.len() < 3000 {
        assert!(
            Instant::now() < deadline,
            "child too slow: {} acks",
            acknowledged.len()
        );
        line.clear();
        if stdout.read_line(&mut line).unwrap() == 0 {
            panic!("child exited early after {} acks", acknowledged.len());
        }
        if let Some(seq) = line.strip_suffix('\n').and_then(|l| l.strip_prefix("ack ")) {
            acknowledged.insert(seq.parse::<u64>().unwrap());
        }
    }
    // SIGKILL, mid-stream: the child is appending from every task.
    child.kill().unwrap();
    // Acks the child printed before it died are still in the pipe; they count too. A line
    // without its newline was never fully printed, so it is not counted.
    loop {
        line.clear();
        if stdout.read_line(&mut line).unwrap() == 0 {
            break;
        }
        if let Some(seq) = line.strip_suffix('\n').and_then(|l| l.strip_prefix("ack ")) {
            acknowledged.insert(seq.parse::<u64>().unwrap());
        }
    }
    child.wait().unwrap();

    let report = verify(&path, None).unwrap();
    eprintln!(
        "{mode}: after SIGKILL with {} acks: {report}",
        acknowledged.len()
    );
    assert!(report.is_intact(), "{report}");
    // The head file lags by design (it is replaced at most once a second); the records past
    // it are the chain's, and every acknowledged one is among them.
    assert!(
        report.records > *acknowledged.last().unwrap(),
        "an acknowledged record is past the end: {report}"
    );
    let in_file: BTreeSet<u64> = portcullis_audit::read(&path, portcullis_audit::Filter::default())
        .unwrap()
        .map(|entry| entry.unwrap().seq)
        .collect();
    let missing: Vec<&u64> = acknowledged.difference(&in_file).collect();
    assert!(missing.is_empty(), "acknowledged but missing: {missing:?}");

    // The log continues after the crash (a torn tail, if any, is cut on open).
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let receipt = runtime.block_on(async {
        let log = EvidenceLog::open(&path, Options::default()).unwrap();
        log.append(record(0, 0)).await.unwrap()
    });
    assert_eq!(receipt.seq, report.records);
    let report = verify(&path, None).unwrap();
    assert_eq!((report.problem, report.torn_tail), (None, None));
}
