//! Which of an issuer's published keys are loaded, and what each may verify.
#![expect(clippy::unwrap_used, reason = "tests")]

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::json;

use super::*;

/// Key material of the right shape; its value does not matter to the loader.
fn bytes(len: usize) -> String {
    let mut material = vec![0x5a_u8; len];
    if let Some(first) = material.first_mut() {
        *first = 0xc3;
    }
    URL_SAFE_NO_PAD.encode(material)
}

fn ec(kid: &str, crv: &str, len: usize) -> Value {
    json!({"kty": "EC", "kid": kid, "crv": crv, "x": bytes(len), "y": bytes(len)})
}

fn rsa(kid: &str, modulus_len: usize) -> Value {
    json!({"kty": "RSA", "kid": kid, "n": bytes(modulus_len), "e": "AQAB"})
}

fn with(mut key: Value, field: &str, value: Value) -> Value {
    if let Some(object) = key.as_object_mut() {
        object.insert(field.to_owned(), value);
    }
    key
}

fn parse(keys: Vec<Value>) -> KeySet {
    let document = json!({ "keys": keys }).to_string();
    KeySet::parse(document.as_bytes(), Instant::now()).unwrap()
}

#[test]
fn only_asymmetric_signing_keys_with_a_kid_are_loaded() {
    let mut no_kid = rsa("", 256);
    if let Some(object) = no_kid.as_object_mut() {
        object.remove("kid");
    }
    let set = parse(vec![
        ec("ec", "P-256", 32),
        ec("ec384", "P-384", 48),
        with(rsa("rsa", 256), "use", json!("sig")),
        json!({"kty": "OKP", "kid": "ed", "crv": "Ed25519", "x": bytes(32)}),
        json!({"kty": "oct", "kid": "hmac", "k": bytes(32)}),
        with(rsa("enc", 256), "use", json!("enc")),
        no_kid,
        rsa("short", 128),
        ec("p521", "P-521", 66),
        ec("truncated", "P-256", 31),
        with(rsa("ops", 256), "key_ops", json!(["encrypt"])),
        with(rsa("confused", 256), "alg", json!("HS256")),
        with(rsa("oaep", 256), "alg", json!("RSA-OAEP")),
        with(ec("wrong-curve", "P-256", 32), "alg", json!("ES384")),
        json!({"kty": "weird", "kid": "weird"}),
        json!({"not": "a key"}),
        ec("dup", "P-256", 32),
        ec("dup", "P-256", 32),
    ]);
    for kid in ["ec", "ec384", "rsa", "ed"] {
        assert!(set.get(kid).is_some(), "{kid} should be loaded");
    }
    for kid in [
        "hmac",
        "enc",
        "short",
        "p521",
        "truncated",
        "ops",
        "confused",
        "oaep",
        "wrong-curve",
        "weird",
        "dup",
    ] {
        assert!(set.get(kid).is_none(), "{kid} should be skipped");
    }
    assert_eq!(set.len(), 4);
}

#[test]
fn a_document_that_is_not_a_key_set_is_an_error() {
    for body in [r#"{"issuer": "x"}"#, "[]", "not json", r#"{"keys": {}}"#] {
        assert!(
            KeySet::parse(body.as_bytes(), Instant::now()).is_err(),
            "{body}"
        );
    }
    let empty = KeySet::parse(br#"{"keys": []}"#, Instant::now()).unwrap();
    assert!(empty.is_empty());
}

#[test]
fn each_kind_of_key_verifies_only_its_own_algorithms() {
    let all = [
        Algorithm::HS256,
        Algorithm::HS384,
        Algorithm::HS512,
        Algorithm::RS256,
        Algorithm::RS384,
        Algorithm::RS512,
        Algorithm::PS256,
        Algorithm::PS384,
        Algorithm::PS512,
        Algorithm::ES256,
        Algorithm::ES384,
        Algorithm::EdDSA,
    ];
    let cases: [(KeyKind, &[Algorithm]); 4] = [
        (
            KeyKind::Rsa,
            &[
                Algorithm::RS256,
                Algorithm::RS384,
                Algorithm::RS512,
                Algorithm::PS256,
                Algorithm::PS384,
                Algorithm::PS512,
            ],
        ),
        (KeyKind::EcP256, &[Algorithm::ES256]),
        (KeyKind::EcP384, &[Algorithm::ES384]),
        (KeyKind::Ed25519, &[Algorithm::EdDSA]),
    ];
    for (kind, accepted) in cases {
        for algorithm in all {
            assert_eq!(
                kind.verifies(algorithm),
                accepted.contains(&algorithm),
                "{kind:?} {algorithm:?}"
            );
        }
    }
}

#[test]
fn a_declared_algorithm_narrows_the_key() {
    let set = parse(vec![
        with(rsa("rs256", 256), "alg", json!("RS256")),
        rsa("any-rsa", 256),
        ec("ec", "P-256", 32),
    ]);
    let declared = set.get("rs256").unwrap();
    assert_eq!(
        declared.verify("a.b.c", Algorithm::PS256).unwrap_err(),
        RejectReason::KeyMismatch
    );
    assert_ne!(
        declared.verify("a.b.c", Algorithm::RS256).unwrap_err(),
        RejectReason::KeyMismatch
    );
    let undeclared = set.get("any-rsa").unwrap();
    assert_ne!(
        undeclared.verify("a.b.c", Algorithm::PS256).unwrap_err(),
        RejectReason::KeyMismatch
    );
    let ec = set.get("ec").unwrap();
    assert_eq!(
        ec.verify("a.b.c", Algorithm::RS256).unwrap_err(),
        RejectReason::KeyMismatch
    );
    assert_eq!(
        ec.verify("a.b.c", Algorithm::HS256).unwrap_err(),
        RejectReason::KeyMismatch
    );
}
