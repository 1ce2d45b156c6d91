//! Which calls may go on with the grant the store holds, and which must ask first.
#![expect(
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests"
)]

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use portcullis_core::{IdentityEnvelope, ToolRules};
use portcullis_credentials::{CredentialStore, Grant, StoreKey};

use super::{Credentials, Readiness, SecretValue, key_for, now};

const KEY: &str = "a credential store key of at least thirty-two bytes";
const TOKEN: &str = "the-access-token-value";

fn config(dir: &Path, credential: &str) -> portcullis_config::Config {
    portcullis_config::parse(
        &dir.join("portcullis.toml"),
        &format!(
            r#"
[credentials]
store = "credentials.enc"
key_env = "KEY"

[[upstream]]
name = "mail"
url = "https://mail.example/mcp"
tools.send = {{ effect = "send", upstream_scopes = ["mail.send"] }}

[upstream.credential]
kind = "oauth"
issuer = "https://login.example"
client_id = "portcullis"
scopes = ["mail.read"]
{credential}
"#
        ),
    )
    .unwrap()
}

fn credentials(dir: &Path, credential: &str) -> Credentials {
    let env = |name: &str| (name == "KEY").then(|| KEY.to_owned());
    Credentials::start(
        &config(dir, credential),
        &env,
        Duration::from_secs(60),
        None,
    )
    .unwrap()
}

fn envelope(client: &str) -> IdentityEnvelope {
    portcullis_test_support::alice().client(client).envelope()
}

/// Stores alice's grant with `scopes`, consented by `desktop`, expiring at `expires_at`.
fn store_grant(dir: &Path, scopes: &[&str], refresh: bool, expires_at: Option<u64>) {
    let store = CredentialStore::open(
        &dir.join("credentials.enc"),
        StoreKey::from_secret_text("KEY", KEY).unwrap(),
    )
    .unwrap();
    store
        .put(
            key_for(&envelope("desktop"), "mail"),
            grant(scopes, refresh, expires_at),
        )
        .unwrap();
}

/// Alice's grant with `scopes`, consented by `desktop`, expiring at `expires_at`.
fn grant(scopes: &[&str], refresh: bool, expires_at: Option<u64>) -> Grant {
    Grant {
        access_token: SecretValue::new(TOKEN),
        refresh_token: refresh.then(|| SecretValue::new("the-refresh-token")),
        token_type: "Bearer".to_owned(),
        expires_at,
        scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
        resource: "https://mail.example/mcp".to_owned(),
        authorization_server: "https://login.example".to_owned(),
        consented_clients: BTreeSet::from(["desktop".to_owned()]),
        obtained_at: now(),
    }
}

fn needs(readiness: Readiness) -> (Vec<String>, String) {
    match readiness {
        Readiness::NeedsGrant { scopes, why } => (scopes, why),
        Readiness::Ready { evidence, .. } => panic!("ready: {evidence}"),
        Readiness::NotNeeded => panic!("not needed"),
        Readiness::Failed(message) => panic!("failed: {message}"),
    }
}

#[tokio::test]
async fn a_grant_serves_the_client_that_consented_and_no_other() {
    let dir = tempfile::tempdir().unwrap();
    let credentials = credentials(dir.path(), "");
    let read = ToolRules::default();
    // Nothing stored: ask, for the configured scopes.
    let (scopes, why) = needs(
        credentials
            .readiness(&envelope("desktop"), "mail", "echo", &read)
            .await,
    );
    assert_eq!(scopes, ["mail.read"]);
    assert!(why.contains("not authorised"), "{why}");

    store_grant(dir.path(), &["mail.read"], true, Some(now() + 3600));
    match credentials
        .readiness(&envelope("desktop"), "mail", "echo", &read)
        .await
    {
        Readiness::Ready { evidence, .. } => {
            assert!(evidence.starts_with("delegated sha256:"), "{evidence}");
            assert!(evidence.ends_with("scopes mail.read"), "{evidence}");
            assert!(!evidence.contains(TOKEN));
        }
        _ => panic!("the consenting client's call is ready"),
    }
    // The same user through another client: that client has its own consent to get.
    let (_, why) = needs(
        credentials
            .readiness(&envelope("cli-tool"), "mail", "echo", &read)
            .await,
    );
    assert!(why.contains("client `cli-tool`"), "{why}");
}

#[tokio::test]
async fn missing_scopes_are_asked_for_with_those_already_granted() {
    let dir = tempfile::tempdir().unwrap();
    let credentials = credentials(dir.path(), "");
    store_grant(dir.path(), &["mail.read", "calendar.read"], true, None);
    let config = config(dir.path(), "");
    let send = config.upstreams[0].tool_rules("send");
    let (scopes, why) = needs(
        credentials
            .readiness(&envelope("desktop"), "mail", "send", &send)
            .await,
    );
    assert_eq!(scopes, ["calendar.read", "mail.read", "mail.send"]);
    assert!(why.contains("needs mail.send"), "{why}");
    // What the upstream said a tool needs (a 403) is asked for next time.
    let echo = ToolRules::default();
    assert!(matches!(
        credentials
            .readiness(&envelope("desktop"), "mail", "echo", &echo)
            .await,
        Readiness::Ready { .. }
    ));
    credentials.learn_scopes("mail", "echo", &["mail.archive".to_owned()]);
    let (scopes, _) = needs(
        credentials
            .readiness(&envelope("desktop"), "mail", "echo", &echo)
            .await,
    );
    assert!(scopes.contains(&"mail.archive".to_owned()), "{scopes:?}");
}

#[tokio::test]
async fn an_expired_grant_without_a_refresh_token_asks_again() {
    let dir = tempfile::tempdir().unwrap();
    let credentials = credentials(dir.path(), "");
    store_grant(
        dir.path(),
        &["mail.read"],
        false,
        Some(now().saturating_sub(10)),
    );
    let (_, why) = needs(
        credentials
            .readiness(&envelope("desktop"), "mail", "echo", &ToolRules::default())
            .await,
    );
    assert!(why.contains("expired"), "{why}");
    // With a refresh token it is refreshed at send time instead.
    store_grant(
        dir.path(),
        &["mail.read"],
        true,
        Some(now().saturating_sub(10)),
    );
    assert!(matches!(
        credentials
            .readiness(&envelope("desktop"), "mail", "echo", &ToolRules::default())
            .await,
        Readiness::Ready { .. }
    ));
}

#[test]
fn hidden_tools_follow_the_grants_scopes() {
    let dir = tempfile::tempdir().unwrap();
    let plain = credentials(dir.path(), "");
    assert_eq!(plain.visible_scopes(&envelope("desktop"), "mail"), None);
    let hiding = credentials(dir.path(), "hide_tools = true");
    assert_eq!(
        hiding.visible_scopes(&envelope("desktop"), "mail"),
        Some(BTreeSet::new())
    );
    store_grant(dir.path(), &["mail.read"], true, None);
    assert_eq!(
        hiding.visible_scopes(&envelope("desktop"), "mail"),
        Some(BTreeSet::from(["mail.read".to_owned()]))
    );
}

#[test]
fn a_missing_secret_stops_the_start_naming_its_variable_and_a_fresh_store_keys_itself() {
    let dir = tempfile::tempdir().unwrap();
    let with_secret = config(dir.path(), "client_secret_env = \"MAIL_SECRET\"");
    let env = |name: &str| (name == "KEY").then(|| KEY.to_owned());
    let error = Credentials::start(&with_secret, &env, Duration::from_secs(60), None)
        .err()
        .unwrap();
    assert!(error.contains("`MAIL_SECRET`"), "{error}");
    // Without the key variable, a fresh store gets a key file of its own beside it...
    let no_key = |_: &str| None;
    let plain = config(dir.path(), "");
    assert!(Credentials::start(&plain, &no_key, Duration::from_secs(60), None).is_ok());
    let key_file = dir.path().join("credentials.key");
    assert!(key_file.is_file());
    // ... but an existing store whose key is in neither cannot be read: no start.
    std::fs::remove_file(&key_file).unwrap();
    std::fs::write(dir.path().join("credentials.enc"), b"PCRED1").unwrap();
    let error = Credentials::start(&plain, &no_key, Duration::from_secs(60), None)
        .err()
        .unwrap();
    assert!(
        error.contains("`KEY`") && error.contains("store"),
        "{error}"
    );
    assert!(
        !key_file.exists(),
        "a new key was made for an existing store"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_grants_in_the_database_under_one_key_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let postgres = portcullis_test_support::TestPostgres::start();
    let connect = |replica: &'static str| {
        let url = postgres.url();
        async move { crate::test_store(&url, replica).await }
    };
    let (a, b) = (connect("a").await, connect("b").await);
    let config = config(dir.path(), "hide_tools = true");
    // No key in the environment: a key file would be this replica's own, so none is made.
    let no_key = |_: &str| None;
    let refused = Credentials::start(&config, &no_key, Duration::from_secs(60), Some(&a))
        .err()
        .unwrap();
    assert!(
        refused.contains("`KEY`") && refused.contains("the same on every replica"),
        "{refused}"
    );
    assert!(!dir.path().join("credentials.key").exists());
    assert!(!dir.path().join("credentials.enc").exists());

    let env = |name: &str| (name == "KEY").then(|| KEY.to_owned());
    let replica = |store: &portcullis_state::Store| {
        Credentials::start(&config, &env, Duration::from_secs(60), Some(store))
    };
    let (first, second) = (replica(&a).unwrap(), replica(&b).unwrap());
    let read = ToolRules::default();
    needs(
        first
            .readiness(&envelope("desktop"), "mail", "echo", &read)
            .await,
    );
    // Stored through the first (as its sign-in does), ready on the second, and its scopes
    // are what the second's lists show.
    let stored = a.grants(StoreKey::from_secret_text("KEY", KEY).unwrap());
    let whose = key_for(&envelope("desktop"), "mail");
    stored
        .put(&whose, &grant(&["mail.read"], true, Some(now() + 3600)))
        .await
        .unwrap();
    assert!(matches!(
        second
            .readiness(&envelope("desktop"), "mail", "echo", &read)
            .await,
        Readiness::Ready { .. }
    ));
    assert_eq!(
        second.visible_scopes(&envelope("desktop"), "mail"),
        Some(BTreeSet::from(["mail.read".to_owned()]))
    );
    // Removed through the first: the second asks again at once.
    assert!(stored.remove(&whose).await.unwrap());
    let (_, why) = needs(
        second
            .readiness(&envelope("desktop"), "mail", "echo", &read)
            .await,
    );
    assert!(why.contains("not authorised"), "{why}");
    assert_eq!(
        second.visible_scopes(&envelope("desktop"), "mail"),
        Some(BTreeSet::new())
    );
    // The database away: nothing is ready, and the reason names no secret.
    let mut postgres = postgres;
    postgres.pause();
    match second
        .readiness(&envelope("desktop"), "mail", "echo", &read)
        .await
    {
        Readiness::Failed(message) => {
            assert!(!message.contains(postgres.password()) && !message.contains(KEY));
        }
        _ => panic!("ready without the database"),
    }
    postgres.resume();
}
