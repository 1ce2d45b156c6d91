//! The token kept out of the logs. Alone in its own test binary: `tracing`'s per-thread
//! subscribers can miss events whose callsites other tests' threads register at the same time.
#![expect(clippy::unwrap_used, reason = "tests")]

#[path = "../src/tests/idp.rs"]
#[expect(dead_code, reason = "shared with the unit tests, which use all of it")]
mod idp;

use std::collections::BTreeSet;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jsonwebtoken::Algorithm;
use portcullis_auth::ResourceServer;
use portcullis_core::{ClaimNames, ResourceServerSettings};
use serde_json::{Value, json};

use self::idp::{Idp, RSA_PUBLIC_PEM, TestKey, sign_hmac};

const NOW: u64 = 1_800_000_000;
const RESOURCE: &str = "http://127.0.0.1:8787/mcp";

/// A `tracing` writer into a shared buffer.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn with(claims: &Value, name: &str, value: Value) -> Value {
    let mut claims = claims.clone();
    claims
        .as_object_mut()
        .unwrap()
        .insert(name.to_owned(), value);
    claims
}

#[tokio::test]
async fn the_token_appears_in_no_log_line() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let (ec, rsa, other) = (TestKey::ec(), TestKey::rsa(), TestKey::other());
    let idp = Idp::start(&[&ec, &rsa]).await;
    let settings = ResourceServerSettings {
        issuer: idp.issuer.clone(),
        resource: RESOURCE.to_owned(),
        required_scopes: BTreeSet::from(["mcp".to_owned()]),
        scopes_supported: vec!["mcp".to_owned()],
        claims: ClaimNames::default(),
        leeway_secs: 30,
        allow_http: true,
    };
    let server = tokio::time::timeout(Duration::from_secs(30), ResourceServer::discover(settings))
        .await
        .unwrap()
        .unwrap();
    let valid = json!({
        "iss": idp.issuer,
        "sub": "alice",
        "aud": RESOURCE,
        "exp": NOW + 600,
        "scope": "mcp",
        "client_id": "cli-1",
        "groups": ["eng"],
    });
    let tokens = [
        ec.sign(&valid),
        ec.sign(&with(&valid, "exp", json!(NOW - 60))),
        ec.sign(&with(&valid, "aud", json!("https://other.example.com"))),
        ec.sign(&with(&valid, "scope", json!("files.read"))),
        ec.sign(&with(
            &valid,
            "groups",
            json!({"secret": "group-claim-value"}),
        )),
        other.sign_as(ec.kid, Algorithm::ES256, &valid),
        other.sign_as("made-up", Algorithm::ES256, &valid),
        sign_hmac(RSA_PUBLIC_PEM, rsa.kid, &valid),
        "not-a-token".to_owned(),
    ];
    for token in &tokens {
        let header = format!("Bearer {token}");
        let _outcome = tokio::time::timeout(
            Duration::from_secs(30),
            server.authenticate(Some(&header), NOW),
        )
        .await
        .unwrap();
    }

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    // The log says who and why,
    assert!(logs.contains("bearer token accepted"), "{logs}");
    assert!(logs.contains("bearer token rejected"), "{logs}");
    assert!(logs.contains("alice"), "{logs}");
    assert!(logs.contains("cli-1"), "{logs}");
    assert!(logs.contains("the token has expired"), "{logs}");
    // and never the token, whole or in part: a logged payload would leak the claims.
    for token in &tokens {
        for part in std::iter::once(token.as_str()).chain(token.split('.')) {
            assert!(
                !logs.contains(part),
                "the logs contain token text `{part}`:\n{logs}"
            );
        }
    }
    assert!(!logs.contains("group-claim-value"), "{logs}");
}
