//! Against a real PostgreSQL of the test's own (`portcullis_test_support::TestPostgres`).
#![expect(clippy::unwrap_used, clippy::panic, reason = "tests")]

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use portcullis_credentials::{CredentialKey, Grant, Secret, StoreKey};
use portcullis_test_support::TestPostgres;

use super::*;

const TTL: Duration = Duration::from_secs(60);

/// Connections in the clear, as to a database that is not asked for TLS.
fn plain() -> Tls {
    Tls::new(portcullis_test_support::tls_client(None), false)
}

async fn store(postgres: &TestPostgres, replica: &str) -> Store {
    Store::connect(&postgres.url(), replica, plain())
        .await
        .unwrap_or_else(|e| panic!("connect: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_starting_together_apply_each_migration_once() {
    let postgres = TestPostgres::start();
    let url = postgres.url();
    let starts = ["a", "b", "c"].map(|replica| {
        let url = url.clone();
        tokio::spawn(async move { Store::connect(&url, replica, plain()).await })
    });
    for start in starts {
        start.await.unwrap().unwrap_or_else(|e| panic!("{e}"));
    }
    let store = store(&postgres, "d").await;
    let client = store.client().await.unwrap();
    let versions: Vec<i32> = client
        .query(
            "SELECT version FROM portcullis_schema ORDER BY version",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    let shipped: Vec<i32> = migrate::MIGRATIONS
        .iter()
        .map(|(version, _)| *version)
        .collect();
    assert_eq!(versions, shipped);
    assert_eq!(shipped.last(), Some(&SCHEMA_VERSION));

    // A version the database lacks below its highest (migrations that landed in another
    // order than their numbers) is applied at the next start.
    client
        .batch_execute("DROP TABLE replica; DELETE FROM portcullis_schema WHERE version = 2")
        .await
        .unwrap();
    drop(
        Store::connect(&url, "f", plain())
            .await
            .unwrap_or_else(|e| panic!("{e}")),
    );
    let replicas_table = client
        .query_one("SELECT to_regclass('replica') IS NOT NULL", &[])
        .await
        .unwrap();
    assert!(
        replicas_table.get::<_, bool>(0),
        "version 2 was applied again"
    );

    // A schema from a newer build is refused, not used.
    client
        .execute(
            "INSERT INTO portcullis_schema (version) VALUES ($1)",
            &[&(SCHEMA_VERSION + 1)],
        )
        .await
        .unwrap();
    let refused = Store::connect(&url, "e", plain()).await.unwrap_err();
    assert!(
        matches!(refused, StoreError::SchemaTooNew { found, .. } if found == SCHEMA_VERSION + 1),
        "{refused}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approval_is_claimed_once_whichever_replica_the_retries_reach() {
    let postgres = TestPostgres::start();
    let replicas = [
        store(&postgres, "a").await,
        store(&postgres, "b").await,
        store(&postgres, "c").await,
    ];
    let [a, b, c] = &replicas;
    let id = a.open_approval("fp-1", TTL).await.unwrap();

    // The same retry reaching all three at once: exactly one claim is let in.
    let claims = futures_join(&replicas, id, "fp-1").await;
    assert_eq!(
        claims.iter().filter(|c| **c == StoredClaim::Open).count(),
        1,
        "{claims:?}"
    );
    assert!(
        claims
            .iter()
            .all(|c| matches!(c, StoredClaim::Open | StoredClaim::Running)),
        "{claims:?}"
    );
    // Still running: another replica's claim is refused.
    assert_eq!(
        b.claim_approval(id, "fp-1", TTL).await.unwrap(),
        StoredClaim::Running
    );
    // Finished: every replica replays the outcome and none runs it again.
    let result = serde_json::json!({"content": [{"type": "text", "text": "sent"}]});
    a.finish_approval(id, Some(result.clone())).await.unwrap();
    assert_eq!(
        c.claim_approval(id, "fp-1", TTL).await.unwrap(),
        StoredClaim::Ran(Some(result))
    );

    // Another action's fingerprint, an id never issued: nothing.
    let other = a.open_approval("fp-2", TTL).await.unwrap();
    assert_eq!(
        b.claim_approval(other, "fp-1", TTL).await.unwrap(),
        StoredClaim::Unknown
    );
    assert_eq!(
        b.claim_approval(other + 1000, "fp-2", TTL).await.unwrap(),
        StoredClaim::Unknown
    );
    assert_eq!(
        b.claim_approval(u64::MAX, "fp-2", TTL).await.unwrap(),
        StoredClaim::Unknown
    );
    // The wrong fingerprint did not use it up.
    assert_eq!(
        c.claim_approval(other, "fp-2", TTL).await.unwrap(),
        StoredClaim::Open
    );

    // Expired before its answer came: refused.
    let brief = a
        .open_approval("fp-3", Duration::from_millis(200))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        b.claim_approval(brief, "fp-3", TTL).await.unwrap(),
        StoredClaim::Unknown
    );
}

/// The same claim made by every replica at once.
async fn futures_join(replicas: &[Store], id: u64, fingerprint: &str) -> Vec<StoredClaim> {
    let tasks: Vec<_> = replicas
        .iter()
        .map(|store| {
            let store = store.clone();
            let fingerprint = fingerprint.to_owned();
            tokio::spawn(async move { store.claim_approval(id, &fingerprint, TTL).await })
        })
        .collect();
    let mut claims = Vec::new();
    for task in tasks {
        claims.push(task.await.unwrap().unwrap());
    }
    claims
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_database_fails_closed_and_no_error_shows_the_password() {
    let mut postgres = TestPostgres::start();
    let store = store(&postgres, "a").await;
    let id = store.open_approval("fp", TTL).await.unwrap();
    postgres.pause();
    let started = std::time::Instant::now();
    let claim = store.claim_approval(id, "fp", TTL).await.unwrap_err();
    let open = store.open_approval("fp", TTL).await.unwrap_err();
    assert!(
        started.elapsed() < OPERATION_LIMIT * 3,
        "{:?}",
        started.elapsed()
    );
    let refused = Store::connect(&postgres.url(), "b", plain())
        .await
        .unwrap_err();
    for error in [&claim, &open, &refused] {
        let shown = format!("{error} {error:?}");
        assert!(!shown.contains(postgres.password()), "{shown}");
    }
    assert!(matches!(refused, StoreError::Unreachable(_)), "{refused}");
    assert!(!format!("{store:?}").contains(postgres.password()));

    // Back up: the claim the outage refused was never made, so it can be made now, once.
    postgres.resume();
    assert_eq!(
        store.claim_approval(id, "fp", TTL).await.unwrap(),
        StoredClaim::Open
    );

    let garbled = format!("{}?port=notaport", postgres.url());
    let invalid = Store::connect(&garbled, "c", plain()).await.unwrap_err();
    assert!(matches!(invalid, StoreError::InvalidUrl), "{invalid}");
    assert!(!format!("{invalid} {invalid:?}").contains(postgres.password()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_serving_another_policy_is_reported() {
    let postgres = TestPostgres::start();
    let (a, b, c) = (
        store(&postgres, "a").await,
        store(&postgres, "b").await,
        store(&postgres, "c").await,
    );
    assert!(a.announce("sha256:one", TTL).await.unwrap().is_empty());
    assert!(b.announce("sha256:one", TTL).await.unwrap().is_empty());
    let differs = c.announce("sha256:two", TTL).await.unwrap();
    let named: Vec<&str> = differs.iter().map(|o| o.replica.as_str()).collect();
    assert_eq!(named, ["a", "b"]);
    assert_eq!(
        a.announce("sha256:one", TTL).await.unwrap(),
        [OtherPolicy {
            replica: "c".to_owned(),
            policy_digest: "sha256:two".to_owned()
        }]
    );
    // Once c serves the same policy again (a reload), nobody differs.
    assert!(c.announce("sha256:one", TTL).await.unwrap().is_empty());
    assert!(a.announce("sha256:one", TTL).await.unwrap().is_empty());
    // A replica not seen recently is not counted.
    c.announce("sha256:three", TTL).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        a.announce("sha256:one", Duration::from_millis(50))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(a.announce("sha256:one", TTL).await.unwrap().len(), 1);
}

/// A replica's evidence log in `dir`, its chain copied into the database by `store`, with
/// `records` appended and copied; the log, its copier and its replica name.
async fn replica_evidence(
    store: &Store,
    dir: &std::path::Path,
    records: u64,
) -> (portcullis_audit::EvidenceLog, EvidenceCopier, String) {
    let path = dir.join("evidence.jsonl");
    let public_key = portcullis_audit::LogKey::for_log(&path)
        .unwrap()
        .public_key();
    let options = portcullis_audit::Options {
        replica: Some(public_key.replica_name()),
        // A checkpoint within the test's records, so that its signature is checked too.
        checkpoint_every: std::num::NonZeroU64::new(4),
        ..portcullis_audit::Options::default()
    };
    let log = portcullis_audit::EvidenceLog::open(&path, options).unwrap();
    let copier = EvidenceCopier::start(store.clone(), path, public_key)
        .await
        .unwrap();
    for n in 0..records {
        let receipt = log.append(started(n)).await.unwrap();
        copier.copied(receipt.seq).await.unwrap();
    }
    (log, copier, public_key.replica_name())
}

fn started(n: u64) -> portcullis_core::evidence::EvidenceRecord {
    use portcullis_core::evidence::{Event, EvidenceRecord, UpstreamLifecycle};
    EvidenceRecord::new(
        1_700_000_000_000 + n,
        Event::UpstreamStarted(UpstreamLifecycle {
            upstream: format!("up{n}"),
            detail: None,
        }),
    )
}

/// Each replica's chain's verdict: `(replica, first problem as text)`, `None` when intact.
async fn verdicts(store: &Store) -> Vec<(String, Option<String>)> {
    store
        .verify_evidence()
        .await
        .unwrap()
        .into_iter()
        .map(|chain| {
            (
                chain.replica,
                chain.report.problem.map(|problem| problem.to_string()),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_replicas_evidence_chain_verifies_in_the_database_and_tampering_is_found() {
    let postgres = TestPostgres::start();
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let stores = [
        store(&postgres, "host:1").await,
        store(&postgres, "host:2").await,
    ];
    let (_log_a, _copier_a, a) = replica_evidence(&stores[0], dirs[0].path(), 10).await;
    let (log_b, copier_b, b) = replica_evidence(&stores[1], dirs[1].path(), 6).await;
    let mut names = [a.clone(), b.clone()];
    names.sort();
    let intact: Vec<_> = names.iter().map(|name| (name.clone(), None)).collect();
    assert_eq!(verdicts(&stores[0]).await, intact);
    let reports = stores[0].verify_evidence().await.unwrap();
    let report_a = &reports
        .iter()
        .find(|chain| chain.replica == a)
        .unwrap()
        .report;
    // Ten records and two checkpoints (after every four), all named by the copied head, the
    // checkpoints' and the head's signatures checked against the key A registered.
    assert_eq!((report_a.records, report_a.checkpoints), (12, 2));
    assert_eq!(report_a.acknowledged, Some(12));
    assert!(report_a.signer.is_some());

    let client = stores[0].client().await.unwrap();
    let tamper = |sql: &'static str| {
        let client = &client;
        let a = a.clone();
        async move { client.execute(sql, &[&a]).await.unwrap() }
    };
    let problem_of_a = |verdicts: Vec<(String, Option<String>)>| {
        let other_intact = verdicts
            .iter()
            .any(|(name, problem)| *name == b && problem.is_none());
        assert!(other_intact, "{verdicts:?}");
        verdicts
            .into_iter()
            .find(|(name, _)| *name == a)
            .and_then(|(_, problem)| problem)
            .unwrap_or_else(|| panic!("tampering with replica {a}'s rows went unnoticed"))
    };

    // A changed row: one record's text edited in place.
    let original: String = client
        .query_one(
            "SELECT line FROM evidence_record WHERE replica = $1 AND seq = 2",
            &[&a],
        )
        .await
        .unwrap()
        .get(0);
    tamper("UPDATE evidence_record SET line = replace(line, '\"up2\"', '\"upX\"') WHERE replica = $1 AND seq = 2").await;
    let changed = problem_of_a(verdicts(&stores[0]).await);
    assert!(changed.starts_with("edited record at seq 2"), "{changed}");
    client
        .execute(
            "UPDATE evidence_record SET line = $2 WHERE replica = $1 AND seq = 2",
            &[&a, &original],
        )
        .await
        .unwrap();
    assert_eq!(verdicts(&stores[0]).await, intact);

    // Two rows swapped: the lines of seq 5 and 6 exchanged.
    tamper(
        "UPDATE evidence_record AS r SET line = o.line FROM evidence_record AS o
         WHERE r.replica = $1 AND o.replica = $1 AND r.seq IN (5, 6) AND o.seq = 11 - r.seq",
    )
    .await;
    let swapped = problem_of_a(verdicts(&stores[0]).await);
    assert!(
        swapped.starts_with("reordered records at seq 5")
            && swapped.contains("seq 5 appears later"),
        "{swapped}"
    );
    tamper(
        "UPDATE evidence_record AS r SET line = o.line FROM evidence_record AS o
         WHERE r.replica = $1 AND o.replica = $1 AND r.seq IN (5, 6) AND o.seq = 11 - r.seq",
    )
    .await;
    assert_eq!(verdicts(&stores[0]).await, intact);

    // B's head put back to an earlier one (genuinely signed), hiding the record after it.
    let head_of = |replica: String| {
        let client = &client;
        async move {
            client
                .query_one(
                    "SELECT head FROM evidence_chain WHERE replica = $1",
                    &[&replica],
                )
                .await
                .unwrap()
                .get::<_, String>(0)
        }
    };
    let earlier = head_of(b.clone()).await;
    let receipt = log_b.append(started(6)).await.unwrap();
    copier_b.copied(receipt.seq).await.unwrap();
    let later = head_of(b.clone()).await;
    let put_back = |head: String| {
        let client = &client;
        let b = b.clone();
        async move {
            client
                .execute(
                    "UPDATE evidence_chain SET head = $2 WHERE replica = $1",
                    &[&b, &head],
                )
                .await
                .unwrap()
        }
    };
    put_back(earlier).await;
    let rolled_back = verdicts(&stores[0])
        .await
        .into_iter()
        .find(|(name, _)| *name == b)
        .and_then(|(_, problem)| problem)
        .unwrap();
    assert!(
        rolled_back.starts_with("inserted record at seq 7")
            && rolled_back.contains("1 records lie past the stored head"),
        "{rolled_back}"
    );
    put_back(later).await;
    assert_eq!(verdicts(&stores[0]).await, intact);

    // A deleted row in the middle, then the last one: both found, the second by the head.
    let kept: Vec<(i64, String)> = client
        .query(
            "SELECT seq, line FROM evidence_record WHERE replica = $1 AND seq IN (3, 11)",
            &[&a],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    tamper("DELETE FROM evidence_record WHERE replica = $1 AND seq = 3").await;
    let deleted = problem_of_a(verdicts(&stores[0]).await);
    assert!(
        deleted.starts_with("deleted record at seq 3")
            && deleted.contains("expected seq 3, found seq 4"),
        "{deleted}"
    );
    for (seq, line) in &kept {
        client
            .execute(
                "INSERT INTO evidence_record (replica, seq, line) VALUES ($1, $2, $3)
                 ON CONFLICT DO NOTHING",
                &[&a, seq, line],
            )
            .await
            .unwrap();
    }
    assert_eq!(verdicts(&stores[0]).await, intact);
    tamper("DELETE FROM evidence_record WHERE replica = $1 AND seq = 11").await;
    let cut = problem_of_a(verdicts(&stores[0]).await);
    assert!(
        cut.starts_with("truncated log") && cut.contains("12 records were acknowledged"),
        "{cut}"
    );
    // The head rewritten to hide the cut: its signature no longer verifies.
    let head: String = client
        .query_one("SELECT head FROM evidence_chain WHERE replica = $1", &[&a])
        .await
        .unwrap()
        .get(0);
    let mut head: portcullis_audit::Head = serde_json::from_str(&head).unwrap();
    head.next_seq = 11;
    client
        .execute(
            "UPDATE evidence_chain SET head = $2 WHERE replica = $1",
            &[&a, &serde_json::to_string(&head).unwrap()],
        )
        .await
        .unwrap();
    let rewritten = problem_of_a(verdicts(&stores[0]).await);
    assert!(rewritten.starts_with("forged"), "{rewritten}");
    // A row moved into the other replica's chain does not pass as its own.
    let (seq, line) = kept.last().unwrap();
    client
        .execute(
            "INSERT INTO evidence_record (replica, seq, line) VALUES ($1, 6, $2)
             ON CONFLICT (replica, seq) DO UPDATE SET line = excluded.line",
            &[&b, line],
        )
        .await
        .unwrap();
    assert_eq!(*seq, 11);
    let moved = store(&postgres, "host:3")
        .await
        .verify_evidence()
        .await
        .unwrap()
        .into_iter()
        .find(|chain| chain.replica == b)
        .and_then(|chain| chain.report.problem)
        .unwrap();
    assert!(
        moved.to_string().contains(&format!(
            "it names replica `{a}`, in the chain of replica `{b}`"
        )),
        "{moved}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_replica_copies_what_its_log_holds_beyond_the_database() {
    let postgres = TestPostgres::start();
    let dir = tempfile::tempdir().unwrap();
    let store = store(&postgres, "host:1").await;
    let (log, copier, name) = replica_evidence(&store, dir.path(), 3).await;
    // Written, not copied: as when a replica is killed between its write and the copy.
    drop(copier);
    for n in 3..6 {
        log.append_written(started(n)).await.unwrap();
    }
    log.flush().await.unwrap();
    drop(log);
    let path = dir.path().join("evidence.jsonl");
    let public_key = portcullis_audit::LogKey::existing(&path)
        .unwrap()
        .public_key();
    let _copier = EvidenceCopier::start(store.clone(), path.clone(), public_key)
        .await
        .unwrap();
    let reports = store.verify_evidence().await.unwrap();
    let [chain] = reports.as_slice() else {
        panic!("{reports:?}")
    };
    assert_eq!(
        (chain.replica.as_str(), chain.report.records),
        (name.as_str(), 7)
    );
    assert!(chain.report.is_intact(), "{}", chain.report);

    // A log that lost records the database holds (replaced, or its unsynced end gone with
    // the power) is refused: new records would fork the chain.
    let bytes = std::fs::read(&path).unwrap();
    let whole = bytes.strip_suffix(b"\n").unwrap();
    let cut = whole.iter().rposition(|byte| *byte == b'\n').unwrap();
    std::fs::write(&path, whole.get(..=cut).unwrap()).unwrap();
    let refused = EvidenceCopier::start(store.clone(), path, public_key)
        .await
        .unwrap_err();
    assert!(
        refused
            .to_string()
            .contains("new records would fork the chain"),
        "{refused}"
    );
}

const KEY_TEXT: &str = "the credential store key every replica shares 0123";
const ACCESS_TOKEN: &str = "at-SECRET-ACCESS-TOKEN-4b1e77";
const REFRESH_TOKEN: &str = "rt-SECRET-REFRESH-TOKEN-90c2aa";

fn key(text: &str) -> StoreKey {
    StoreKey::from_secret_text("PORTCULLIS_CREDENTIAL_KEY", text).unwrap()
}

fn alice() -> CredentialKey {
    CredentialKey {
        issuer: "https://id.example".to_owned(),
        subject: "alice".to_owned(),
        upstream: "mail".to_owned(),
    }
}

fn grant(access_token: &str, refresh_token: &str) -> Grant {
    Grant {
        access_token: Secret::new(access_token),
        refresh_token: Some(Secret::new(refresh_token)),
        token_type: "Bearer".to_owned(),
        expires_at: Some(1_900_000_000),
        scopes: BTreeSet::from(["mail.read".to_owned()]),
        resource: "https://mail.example/mcp".to_owned(),
        authorization_server: "https://id.example".to_owned(),
        consented_clients: BTreeSet::from(["desktop".to_owned()]),
        obtained_at: 1_899_999_000,
    }
}

/// The grants of replica `replica`, under the shared key.
async fn grants(postgres: &TestPostgres, replica: &str) -> SharedGrants {
    store(postgres, replica).await.grants(key(KEY_TEXT))
}

/// Every row of the grants table as PostgreSQL prints it, bytes and all.
async fn table_text(postgres: &TestPostgres) -> String {
    let store = store(postgres, "reader").await;
    let client = store.client().await.unwrap();
    let rows = client
        .query(
            "SELECT t::text, encode(t.sealed, 'escape') FROM delegated_grant t",
            &[],
        )
        .await
        .unwrap();
    rows.iter()
        .map(|row| format!("{} {}", row.get::<_, String>(0), row.get::<_, String>(1)))
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grant_is_sealed_at_rest_and_a_removal_is_seen_by_every_replica() {
    let postgres = TestPostgres::start();
    let (a, b) = (grants(&postgres, "a").await, grants(&postgres, "b").await);
    a.put(&alice(), &grant(ACCESS_TOKEN, REFRESH_TOKEN))
        .await
        .unwrap();

    // The other replica reads what the first stored.
    let seen = b.get(&alice()).await.unwrap().unwrap();
    assert_eq!(seen.access_token.expose(), ACCESS_TOKEN);
    assert_eq!(
        seen.refresh_token.as_ref().map(Secret::expose),
        Some(REFRESH_TOKEN)
    );
    assert_eq!(seen.summary(), grant(ACCESS_TOKEN, REFRESH_TOKEN).summary());

    // At rest: no token and no key text in any column, however it is printed.
    let table = table_text(&postgres).await;
    assert!(
        table.contains("alice") && table.contains("PGRNT1"),
        "{table}"
    );
    for secret in [ACCESS_TOKEN, REFRESH_TOKEN, KEY_TEXT] {
        assert!(
            !table.contains(secret),
            "`{secret}` is in the table: {table}"
        );
    }
    assert!(!format!("{a:?}").contains(KEY_TEXT));

    // Removed through one replica: gone for the other at its next use, and nothing to
    // refresh there either.
    assert!(a.remove(&alice()).await.unwrap());
    assert!(b.get(&alice()).await.unwrap().is_none());
    let refreshed = b
        .update(&alice(), |_| async { (GrantChange::Keep, ()) })
        .await
        .unwrap();
    assert!(refreshed.is_none(), "a removed grant was handed out");
    assert!(!b.remove(&alice()).await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grant_under_another_key_or_moved_to_another_user_does_not_open() {
    let postgres = TestPostgres::start();
    let a = grants(&postgres, "a").await;
    a.put(&alice(), &grant(ACCESS_TOKEN, REFRESH_TOKEN))
        .await
        .unwrap();
    // A replica configured with another key reads nothing, and says so without a secret.
    let other = store(&postgres, "b")
        .await
        .grants(key("not the key the others share, 0123456789abcdef"));
    let refused = other.get(&alice()).await.unwrap_err();
    assert!(matches!(refused, StoreError::Grant(_)), "{refused}");
    let shown = format!("{refused} {refused:?}");
    for secret in [ACCESS_TOKEN, REFRESH_TOKEN, KEY_TEXT, postgres.password()] {
        assert!(!shown.contains(secret), "{shown}");
    }
    // Whoever can write the table cannot give alice's grant to mallory.
    let store = store(&postgres, "c").await;
    store
        .client()
        .await
        .unwrap()
        .execute("UPDATE delegated_grant SET subject = 'mallory'", &[])
        .await
        .unwrap();
    let mallory = CredentialKey {
        subject: "mallory".to_owned(),
        ..alice()
    };
    assert!(matches!(
        a.get(&mallory).await.unwrap_err(),
        StoreError::Grant(_)
    ));
}

/// A token endpoint that rotates refresh tokens: each may be spent once.
#[derive(Default)]
struct TokenEndpoint {
    spent: std::sync::Mutex<Vec<String>>,
    refreshes: AtomicUsize,
}

impl TokenEndpoint {
    /// The grant refreshed with `grant`'s refresh token, or `None` if it was spent before.
    async fn refresh(&self, grant: &Grant) -> Option<Grant> {
        let token = grant.refresh_token.as_ref()?.expose().to_owned();
        let n = self.refreshes.fetch_add(1, Ordering::SeqCst) + 1;
        {
            let mut spent = self.spent.lock().unwrap();
            if spent.contains(&token) {
                return None;
            }
            spent.push(token);
        }
        // Slow enough that the other replica's refresh arrives while this one runs.
        tokio::time::sleep(Duration::from_millis(300)).await;
        Some(grant_for(n))
    }
}

fn grant_for(n: usize) -> Grant {
    grant(&format!("at-{n}"), &format!("rt-{n}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_refreshing_at_once_spend_the_refresh_token_once() {
    let postgres = TestPostgres::start();
    let replicas = [grants(&postgres, "a").await, grants(&postgres, "b").await];
    replicas[0]
        .put(&alice(), &grant("at-0", "rt-0"))
        .await
        .unwrap();
    let endpoint = Arc::new(TokenEndpoint::default());

    // Both were refused with `at-0` and refresh at once, as the gateway does: under the lock,
    // a grant whose token is no longer the one sent was refreshed by the other; keep it.
    let tasks = replicas.clone().map(|grants| {
        let endpoint = endpoint.clone();
        tokio::spawn(async move {
            grants
                .update(&alice(), |stored| async move {
                    if stored.access_token.expose() != "at-0" {
                        let token = stored.access_token.expose().to_owned();
                        return (GrantChange::Keep, Some(token));
                    }
                    match endpoint.refresh(&stored).await {
                        Some(fresh) => {
                            let token = fresh.access_token.expose().to_owned();
                            (GrantChange::Replace(fresh), Some(token))
                        }
                        None => (GrantChange::Remove, None),
                    }
                })
                .await
        })
    });
    let mut tokens = Vec::new();
    for task in tasks {
        tokens.push(task.await.unwrap().unwrap().unwrap());
    }
    assert_eq!(endpoint.refreshes.load(Ordering::SeqCst), 1, "{tokens:?}");
    assert_eq!(tokens, [Some("at-1".to_owned()), Some("at-1".to_owned())]);
    let stored = replicas[1].get(&alice()).await.unwrap().unwrap();
    assert_eq!(
        stored.refresh_token.as_ref().map(Secret::expose),
        Some("rt-1")
    );

    // The database away: no grant is handed out, and no refresh runs (fail closed, bounded).
    let mut postgres = postgres;
    postgres.pause();
    let started = std::time::Instant::now();
    assert!(replicas[1].get(&alice()).await.is_err());
    let ran = AtomicUsize::new(0);
    let refreshed = replicas[1]
        .update(&alice(), |_| async {
            ran.fetch_add(1, Ordering::SeqCst);
            (GrantChange::Keep, ())
        })
        .await;
    assert!(refreshed.is_err());
    assert_eq!(
        ran.load(Ordering::SeqCst),
        0,
        "a refresh ran without the row's lock"
    );
    assert!(
        started.elapsed() < OPERATION_LIMIT * 3,
        "{:?}",
        started.elapsed()
    );
    postgres.resume();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recipient_approved_through_one_replica_is_known_to_every_replica() {
    let postgres = TestPostgres::start();
    let (a, b) = (store(&postgres, "a").await, store(&postgres, "b").await);
    let named = ["bob@corp.example".to_owned(), "eve@evil.example".to_owned()];
    assert!(
        b.known_recipients("alice", &named)
            .await
            .unwrap()
            .is_empty()
    );
    a.remember_recipients("alice", &named[..1]).await.unwrap();
    // Again, through the other replica: no error, nothing twice.
    b.remember_recipients("alice", &named[..1]).await.unwrap();
    b.remember_recipients("alice", &[]).await.unwrap();
    let known = b.known_recipients("alice", &named).await.unwrap();
    assert_eq!(known, BTreeSet::from(["bob@corp.example".to_owned()]));
    // Per user: mallory has approved nobody.
    assert!(
        b.known_recipients("mallory", &named)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scoped_answer_kept_through_one_replica_is_read_by_another_until_it_expires() {
    let postgres = TestPostgres::start();
    let (a, b) = (store(&postgres, "a").await, store(&postgres, "b").await);
    let answer = ScopedAnswer {
        id: "scope-1".to_owned(),
        holder_key: "client alice desktop".to_owned(),
        user: "alice".to_owned(),
        scope: serde_json::json!({"tool": "write_file", "directories": {"/path": "/work/drafts"}}),
        fingerprint: "fp-1".to_owned(),
        approved_at: 1_000,
        expires_at: 4_600,
    };
    a.keep_scoped_answer(&answer).await.unwrap();
    assert_eq!(
        b.scoped_answers("client alice desktop", "alice", 2_000)
            .await
            .unwrap(),
        std::slice::from_ref(&answer)
    );
    // Another client of alice's, another user: none.
    assert!(
        b.scoped_answers("client alice cli", "alice", 2_000)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        b.scoped_answers("client alice desktop", "mallory", 2_000)
            .await
            .unwrap()
            .is_empty()
    );
    // Expired: none, and the next answer kept removes it.
    assert!(
        b.scoped_answers("client alice desktop", "alice", 4_600)
            .await
            .unwrap()
            .is_empty()
    );
    // The same id twice is refused (that answer is then not kept, and asked again).
    assert!(b.keep_scoped_answer(&answer).await.is_err());
    let later = ScopedAnswer {
        id: "scope-2".to_owned(),
        approved_at: 5_000,
        expires_at: 8_600,
        ..answer
    };
    b.keep_scoped_answer(&later).await.unwrap();
    let client = a.client().await.unwrap();
    let ids: Vec<String> = client
        .query("SELECT id FROM scoped_answer", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(ids, ["scope-2"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_tainted_through_one_replica_is_tainted_on_every_replica() {
    let postgres = TestPostgres::start();
    let (a, b) = (store(&postgres, "a").await, store(&postgres, "b").await);
    let key = "client alice desktop";
    assert!(b.client_taint(key).await.unwrap().is_empty());
    a.taint_client(key, "web").await.unwrap();
    a.taint_client(key, "web").await.unwrap();
    b.taint_client(key, "mail").await.unwrap();
    assert_eq!(a.client_taint(key).await.unwrap(), ["mail", "web"]);
    assert!(b.client_taint("client alice cli").await.unwrap().is_empty());

    assert!(!b.client_reached(key, "docs.example").await.unwrap());
    a.remember_client_hosts(key, &["docs.example".to_owned()])
        .await
        .unwrap();
    a.remember_client_hosts(key, &[]).await.unwrap();
    assert!(b.client_reached(key, "docs.example").await.unwrap());
    assert!(
        !b.client_reached("client bob desktop", "docs.example")
            .await
            .unwrap()
    );
}

/// Connections to a database at `url` verified against `ca` (none: no authority at all).
async fn connect_tls(url: &str, ca: Option<&std::path::Path>) -> Result<Store, StoreError> {
    let tls = Tls::new(portcullis_test_support::tls_client(ca), ca.is_some());
    Store::connect(url, "t", tls).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_to_the_database_is_verified_and_never_falls_back_to_the_clear() {
    let postgres = TestPostgres::start_with_tls();
    let ca = postgres.ca_file();
    let required = format!("{}?sslmode=require", postgres.url());
    // Verified against the authority that signed the server's certificate: connected, and the
    // server says the connection is encrypted.
    let store = connect_tls(&required, Some(&ca))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let client = store.client().await.unwrap();
    let encrypted: bool = client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(encrypted);

    // A server whose certificate no trusted authority signed, or signed for another name, is
    // not talked to; neither refusal shows the password.
    let unknown = connect_tls(&required, None).await.unwrap_err();
    let misnamed = format!(
        "postgres://portcullis:{}@db.example:{}/postgres?sslmode=require&hostaddr=127.0.0.1",
        postgres.password(),
        postgres
            .url()
            .rsplit_once(':')
            .map(|(_, rest)| rest.split('/').next().unwrap_or_default())
            .unwrap_or_default()
    );
    let wrong_name = connect_tls(&misnamed, Some(&ca)).await.unwrap_err();
    for (refused, why) in [
        (&unknown, "UnknownIssuer"),
        (&wrong_name, "not valid for name"),
    ] {
        assert!(matches!(refused, StoreError::Unreachable(_)), "{refused}");
        let shown = format!("{refused} {refused:?}");
        assert!(shown.contains(why), "{shown}");
        assert!(!shown.contains(postgres.password()), "{shown}");
    }

    // An authority given for a connection string that does not ask for TLS is a mistake the
    // start refuses, rather than connecting in the clear.
    let clear = connect_tls(&postgres.url(), Some(&ca)).await.unwrap_err();
    assert!(matches!(clear, StoreError::TlsNotAsked), "{clear}");

    // A server that does not speak TLS is refused when TLS is asked for.
    let plain_server = TestPostgres::start();
    let refused = connect_tls(
        &format!("{}?sslmode=require", plain_server.url()),
        Some(&ca),
    )
    .await
    .unwrap_err();
    assert!(matches!(refused, StoreError::Unreachable(_)), "{refused}");
}

fn ledger_entry<'a>(id: &'a str, fingerprint: &'a str, user: &'a str) -> NewLedgerEntry<'a> {
    NewLedgerEntry {
        id,
        fingerprint,
        user,
        tool: "fx.send",
        request: "send it",
        not_by: None,
        ttl: TTL,
    }
}

/// Opens `new` through `store`, which must open it anew.
async fn opened_new(store: &Store, new: &NewLedgerEntry<'_>) -> LedgerEntry {
    match store.ledger_open(new, 64).await.unwrap() {
        Opened::New(entry) => entry,
        other => panic!("not opened anew: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ledger_approval_opened_on_one_replica_is_decided_on_another_and_claimed_once() {
    let postgres = TestPostgres::start();
    let (a, b) = (store(&postgres, "a").await, store(&postgres, "b").await);
    let opened = opened_new(&a, &ledger_entry("id-1", "sha256:a", "alice")).await;
    assert_eq!(opened.standing, LedgerStanding::Waiting);
    assert!(opened.expires >= opened.created + 60, "{opened:?}");
    // The same action of the same user, through the other replica, finds it.
    let again = b
        .ledger_open(&ledger_entry("id-2", "sha256:a", "alice"), 64)
        .await
        .unwrap();
    assert_eq!(again, Opened::Found(opened.clone()));
    assert_eq!(b.ledger_get("id-1").await.unwrap(), Some(opened.clone()));
    assert_eq!(
        b.ledger_list().await.unwrap(),
        std::slice::from_ref(&opened)
    );
    assert_eq!(
        b.ledger_find("alice", "sha256:a").await.unwrap(),
        Some(opened.clone())
    );
    assert_eq!(b.ledger_find("bob", "sha256:a").await.unwrap(), None);
    // Not approved yet: nothing to claim.
    assert!(!a.ledger_claim("id-1", "sha256:a").await.unwrap());

    let decided = b.ledger_decide("id-1", true, "terminal").await.unwrap();
    assert!(
        matches!(&decided, Some(LedgerEntry { standing: LedgerStanding::Approved { by, .. }, .. }) if by == "terminal"),
        "{decided:?}"
    );
    // Decided once: a second decision, through either replica, finds nothing waiting.
    assert_eq!(a.ledger_decide("id-1", false, "page").await.unwrap(), None);
    assert!(!b.ledger_claim("id-1", "sha256:other").await.unwrap());

    // Eight claims at once across both replicas: exactly one gets it.
    let claims: Vec<_> = (0..8)
        .map(|n| {
            let store = if n % 2 == 0 { a.clone() } else { b.clone() };
            tokio::spawn(async move { store.ledger_claim("id-1", "sha256:a").await })
        })
        .collect();
    let mut won = 0;
    for claim in claims {
        won += usize::from(claim.await.unwrap().unwrap());
    }
    assert_eq!(won, 1, "claimed more than once, or never");
    // Used: gone from every read; the next identical call opens a new approval.
    assert_eq!(a.ledger_get("id-1").await.unwrap(), None);
    assert_eq!(b.ledger_find("alice", "sha256:a").await.unwrap(), None);
    assert!(b.ledger_list().await.unwrap().is_empty());
    assert_eq!(
        b.ledger_decide("id-1", true, "terminal").await.unwrap(),
        None
    );
    let next = opened_new(&b, &ledger_entry("id-3", "sha256:a", "alice")).await;
    assert_eq!(next.id, "id-3");

    // Two deciders at once, one per replica: one decides, the other finds it decided.
    let decisions: Vec<_> = [(a.clone(), true), (b.clone(), false)]
        .into_iter()
        .map(|(store, approve)| {
            tokio::spawn(async move { store.ledger_decide("id-3", approve, "page").await })
        })
        .collect();
    let mut decided = 0;
    for decision in decisions {
        decided += usize::from(decision.await.unwrap().unwrap().is_some());
    }
    assert_eq!(decided, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ledger_limits_each_users_waiting_approvals_and_forgets_expired_ones() {
    let postgres = TestPostgres::start();
    let (a, b) = (store(&postgres, "a").await, store(&postgres, "b").await);
    // Twelve distinct actions of carol opened at once through both replicas, under a limit
    // of five: five are opened, the rest refused; the same action opened at once through
    // both is one approval.
    let opens: Vec<_> = (0..12)
        .map(|n| {
            let store = if n % 2 == 0 { a.clone() } else { b.clone() };
            tokio::spawn(async move {
                let (id, fingerprint) = (format!("c-{n}"), format!("sha256:{n}"));
                store
                    .ledger_open(&ledger_entry(&id, &fingerprint, "carol"), 5)
                    .await
            })
        })
        .collect();
    let mut outcomes = Vec::new();
    for open in opens {
        outcomes.push(open.await.unwrap().unwrap());
    }
    let new = outcomes
        .iter()
        .filter(|o| matches!(o, Opened::New(_)))
        .count();
    assert_eq!(new, 5, "{outcomes:?}");
    assert!(
        outcomes
            .iter()
            .all(|o| matches!(o, Opened::New(_) | Opened::TooMany(5))),
        "{outcomes:?}"
    );
    // Another user is not held back by carol's.
    opened_new(&a, &ledger_entry("d-1", "sha256:0", "dave")).await;
    let same: Vec<_> = ["e-a", "e-b"]
        .into_iter()
        .zip([a.clone(), b.clone()])
        .map(|(id, store)| {
            tokio::spawn(async move {
                store
                    .ledger_open(&ledger_entry(id, "sha256:same", "erin"), 5)
                    .await
            })
        })
        .collect();
    let mut ids = BTreeSet::new();
    for open in same {
        match open.await.unwrap().unwrap() {
            Opened::New(entry) | Opened::Found(entry) => ids.insert(entry.id),
            Opened::TooMany(n) => panic!("too many: {n}"),
        };
    }
    assert_eq!(ids.len(), 1, "{ids:?}");
    // A decided approval no longer counts as waiting.
    let carols: Vec<String> = b
        .ledger_list()
        .await
        .unwrap()
        .into_iter()
        .filter(|entry| entry.user == "carol")
        .map(|entry| entry.id)
        .collect();
    assert_eq!(carols.len(), 5);
    let first = carols.first().unwrap();
    b.ledger_decide(first, false, "page")
        .await
        .unwrap()
        .unwrap();
    opened_new(&a, &ledger_entry("c-more", "sha256:more", "carol")).await;

    // Expired: found by nothing, decided and claimed by nothing, and replaced when the
    // action is asked again.
    let brief = NewLedgerEntry {
        ttl: Duration::from_secs(1),
        ..ledger_entry("f-1", "sha256:brief", "frank")
    };
    opened_new(&a, &brief).await;
    let approved_brief = NewLedgerEntry {
        ttl: Duration::from_secs(1),
        ..ledger_entry("f-2", "sha256:approved", "frank")
    };
    opened_new(&a, &approved_brief).await;
    b.ledger_decide("f-2", true, "terminal")
        .await
        .unwrap()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    assert_eq!(b.ledger_get("f-1").await.unwrap(), None);
    assert_eq!(b.ledger_find("frank", "sha256:brief").await.unwrap(), None);
    assert!(
        b.ledger_list()
            .await
            .unwrap()
            .iter()
            .all(|entry| entry.user != "frank")
    );
    assert_eq!(
        b.ledger_decide("f-1", true, "terminal").await.unwrap(),
        None
    );
    assert!(!b.ledger_claim("f-2", "sha256:approved").await.unwrap());
    let renewed = opened_new(&b, &ledger_entry("f-3", "sha256:brief", "frank")).await;
    assert_eq!(renewed.standing, LedgerStanding::Waiting);
    // Opening removed the expired rows.
    let client = a.client().await.unwrap();
    let left = client
        .query_one(
            "SELECT count(*) FROM approval_ledger WHERE id IN ('f-1', 'f-2')",
            &[],
        )
        .await
        .unwrap()
        .get::<_, i64>(0);
    assert_eq!(left, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ledger_with_its_database_unreachable_decides_and_claims_nothing() {
    let mut postgres = TestPostgres::start();
    let store = store(&postgres, "a").await;
    opened_new(&store, &ledger_entry("id-1", "sha256:a", "alice")).await;
    postgres.pause();
    let errors = [
        store
            .ledger_decide("id-1", true, "terminal")
            .await
            .unwrap_err(),
        store.ledger_claim("id-1", "sha256:a").await.unwrap_err(),
        store
            .ledger_open(&ledger_entry("id-2", "sha256:b", "alice"), 64)
            .await
            .unwrap_err(),
    ];
    for error in &errors {
        let shown = format!("{error} {error:?}");
        assert!(!shown.contains(postgres.password()), "{shown}");
    }
    postgres.resume();
    // Nothing was decided during the outage: still waiting, nothing to claim.
    let entry = store.ledger_get("id-1").await.unwrap().unwrap();
    assert_eq!(entry.standing, LedgerStanding::Waiting);
    assert!(!store.ledger_claim("id-1", "sha256:a").await.unwrap());
    assert_eq!(store.ledger_get("id-2").await.unwrap(), None);
}

/// `document` (a JSON object of names) with `name` added.
fn with_name(document: Option<&str>, name: &str) -> String {
    let mut names: serde_json::Map<String, serde_json::Value> = document
        .map(|text| serde_json::from_str(text).unwrap())
        .unwrap_or_default();
    names.insert(name.to_owned(), serde_json::Value::Bool(true));
    serde_json::Value::Object(names).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acceptances_through_two_replicas_at_once_are_all_kept() {
    let postgres = TestPostgres::start();
    let (a, b) = (store(&postgres, "a").await, store(&postgres, "b").await);
    // A change that fails writes nothing, not even the row made to lock.
    let refused: Result<Result<((), i64), &str>, StoreError> =
        a.change_pins("mail", |_| Err("no")).await;
    assert_eq!(refused.unwrap(), Err("no"));
    assert_eq!(a.upstream_pins("mail").await.unwrap(), None);

    let changes = (0..10).map(|n| {
        let store = if n % 2 == 0 { a.clone() } else { b.clone() };
        tokio::spawn(async move {
            store
                .change_pins("mail", |before| {
                    // Long enough for the others to read the row meanwhile, were it not locked.
                    std::thread::sleep(Duration::from_millis(20));
                    Ok::<_, ()>((with_name(before, &format!("tool{n}")), before.is_none()))
                })
                .await
        })
    });
    let mut first = 0;
    for change in changes {
        let (was_absent, _) = change.await.unwrap().unwrap().unwrap();
        first += usize::from(was_absent);
    }
    assert_eq!(first, 1, "only the first acceptance found no pins");
    let stored = b.upstream_pins("mail").await.unwrap().unwrap();
    let names: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&stored.document).unwrap();
    assert_eq!(names.len(), 10, "{names:?}");
    assert_eq!(stored.version, 10);
    assert_eq!(
        a.pins_versions().await.unwrap(),
        std::collections::BTreeMap::from([("mail".to_owned(), 10)])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_replica_to_pin_an_upstream_wins_and_its_text_is_kept() {
    let postgres = TestPostgres::start();
    let (a, b) = (store(&postgres, "a").await, store(&postgres, "b").await);
    // Text `jsonb` would rewrite (key order, a number's form): a digest must still match.
    let first = r#"{"tool": {"send": {"z": 1, "a": 1e2, "b": 1.50}}}"#;
    assert!(a.pin_first("mail", first).await.unwrap());
    assert!(!b.pin_first("mail", r#"{"tool": {}}"#).await.unwrap());
    let stored = b.upstream_pins("mail").await.unwrap().unwrap();
    assert_eq!(stored.document, first);
    assert_eq!(stored.version, 1);
    assert_eq!(b.all_pins().await.unwrap().get("mail"), Some(&stored));
    assert_eq!(b.upstream_pins("files").await.unwrap(), None);
    // An acceptance changes the first sight's pins, not a fresh document.
    let ((), version) = b
        .change_pins("mail", |before| {
            assert_eq!(before, Some(first));
            Ok::<_, ()>((r#"{"tool": {}}"#.to_owned(), ()))
        })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(version, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pins_in_an_unreachable_database_are_an_error_and_nothing_is_written() {
    let mut postgres = TestPostgres::start();
    let store = store(&postgres, "a").await;
    assert!(store.pin_first("mail", "{}").await.unwrap());
    postgres.pause();
    let mut called = false;
    let errors = [
        store.upstream_pins("mail").await.map(drop).unwrap_err(),
        store.all_pins().await.map(drop).unwrap_err(),
        store.pins_versions().await.map(drop).unwrap_err(),
        store.pin_first("files", "{}").await.map(drop).unwrap_err(),
        store
            .change_pins("mail", |_| {
                called = true;
                Ok::<_, ()>(("{\"x\": 1}".to_owned(), ()))
            })
            .await
            .map(drop)
            .unwrap_err(),
    ];
    for error in &errors {
        assert!(!format!("{error} {error:?}").contains(postgres.password()));
    }
    assert!(!called, "no change is made on pins nobody could read");
    postgres.resume();
    let stored = store.upstream_pins("mail").await.unwrap().unwrap();
    assert_eq!((stored.document.as_str(), stored.version), ("{}", 1));
    assert_eq!(store.upstream_pins("files").await.unwrap(), None);
}
