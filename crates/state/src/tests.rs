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
