//! Against a real PostgreSQL of the test's own (`portcullis_test_support::TestPostgres`).
#![expect(clippy::unwrap_used, clippy::panic, reason = "tests")]

use std::time::Duration;

use portcullis_test_support::TestPostgres;

use super::*;

const TTL: Duration = Duration::from_secs(60);

async fn store(postgres: &TestPostgres, replica: &str) -> Store {
    Store::connect(&postgres.url(), replica)
        .await
        .unwrap_or_else(|e| panic!("connect: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_starting_together_apply_each_migration_once() {
    let postgres = TestPostgres::start();
    let url = postgres.url();
    let starts = ["a", "b", "c"].map(|replica| {
        let url = url.clone();
        tokio::spawn(async move { Store::connect(&url, replica).await })
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
    assert_eq!(versions, (1..=SCHEMA_VERSION).collect::<Vec<_>>());

    // A schema from a newer build is refused, not used.
    client
        .execute(
            "INSERT INTO portcullis_schema (version) VALUES ($1)",
            &[&(SCHEMA_VERSION + 1)],
        )
        .await
        .unwrap();
    let refused = Store::connect(&url, "e").await.unwrap_err();
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
    let refused = Store::connect(&postgres.url(), "b").await.unwrap_err();
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
    let invalid = Store::connect(&garbled, "c").await.unwrap_err();
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
