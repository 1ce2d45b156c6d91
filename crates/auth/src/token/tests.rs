//! Tokens from the header to the envelope: the bearer scheme, the unverified JWT header, and
//! each claim rule, as tables.
#![expect(clippy::unwrap_used, reason = "tests")]

use portcullis_core::ClaimNames;
use serde_json::json;

use super::*;

const NOW: u64 = 1_800_000_000;
const ISSUER: &str = "https://idp.example.com";
const RESOURCE: &str = "https://mcp.example.com/mcp";

fn settings() -> ResourceServerSettings {
    ResourceServerSettings {
        issuer: ISSUER.to_owned(),
        resource: RESOURCE.to_owned(),
        required_scopes: BTreeSet::new(),
        scopes_supported: Vec::new(),
        claims: ClaimNames::default(),
        leeway_secs: 30,
        allow_http: false,
    }
}

fn claims() -> Value {
    json!({
        "iss": ISSUER,
        "sub": "alice",
        "aud": RESOURCE,
        "exp": NOW + 600,
        "iat": NOW - 10,
        "scope": "mcp files.read",
        "client_id": "cli-1",
        "groups": ["eng", "ops"],
        "tenant": "acme",
    })
}

/// `claims()` with `changes` applied.
fn claims_with(changes: &[(&str, Option<Value>)]) -> Map<String, Value> {
    let Value::Object(mut claims) = claims() else {
        unreachable!("an object")
    };
    for (name, value) in changes {
        match value {
            Some(value) => claims.insert((*name).to_owned(), value.clone()),
            None => claims.remove(*name),
        };
    }
    claims
}

/// Claims to change: a value sets the claim, `None` removes it.
type Changes = Vec<(&'static str, Option<Value>)>;

/// What an accepted envelope must show.
type Check = fn(&IdentityEnvelope) -> bool;

fn set(values: &[&str]) -> BTreeSet<String> {
    values.iter().map(|value| (*value).to_owned()).collect()
}

fn segment(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(value.to_string())
}

#[test]
fn the_bearer_scheme_is_case_insensitive_and_exact() {
    let long = format!("Bearer {}", "a".repeat(MAX_TOKEN_BYTES + 1));
    let cases: [(Option<&str>, Result<&str, RejectReason>); 11] = [
        (Some("Bearer abc.def.ghi"), Ok("abc.def.ghi")),
        (Some("bearer abc.def.ghi"), Ok("abc.def.ghi")),
        (Some("BEARER abc.def.ghi"), Ok("abc.def.ghi")),
        (Some("  Bearer   abc.def.ghi  "), Ok("abc.def.ghi")),
        (None, Err(RejectReason::MissingToken)),
        (Some("Basic YWxpY2U6c2VjcmV0"), Err(RejectReason::NotBearer)),
        (Some(""), Err(RejectReason::NotBearer)),
        (Some("Bearerabc.def.ghi"), Err(RejectReason::NotBearer)),
        (Some("Bearer"), Err(RejectReason::Malformed)),
        (Some("Bearer abc def"), Err(RejectReason::Malformed)),
        (Some(long.as_str()), Err(RejectReason::Malformed)),
    ];
    for (header, expected) in cases {
        let found = bearer_token(header).map(|token| token.as_str());
        assert_eq!(
            found,
            expected,
            "{:?}",
            header.map(|h| h.get(..40).unwrap_or(h))
        );
    }
}

#[test]
fn a_bearer_token_does_not_show_itself() {
    let token = bearer_token(Some("Bearer secret-token-text")).unwrap();
    assert_eq!(format!("{token:?}"), "BearerToken([redacted])");
}

#[test]
fn only_asymmetric_algorithms_with_a_key_id_pass_the_header() {
    let payload = segment(&json!({}));
    let token = |header: Value| format!("{}.{payload}.c2ln", segment(&header));
    let cases = [
        (json!({"alg": "ES256", "kid": "k"}), Ok(Algorithm::ES256)),
        (json!({"alg": "RS256", "kid": "k"}), Ok(Algorithm::RS256)),
        (json!({"alg": "PS512", "kid": "k"}), Ok(Algorithm::PS512)),
        (json!({"alg": "EdDSA", "kid": "k"}), Ok(Algorithm::EdDSA)),
        (
            json!({"alg": "none", "kid": "k"}),
            Err(RejectReason::DisallowedAlgorithm),
        ),
        (
            json!({"alg": "None", "kid": "k"}),
            Err(RejectReason::DisallowedAlgorithm),
        ),
        (
            json!({"alg": "HS256", "kid": "k"}),
            Err(RejectReason::DisallowedAlgorithm),
        ),
        (
            json!({"alg": "HS512", "kid": "k"}),
            Err(RejectReason::DisallowedAlgorithm),
        ),
        (
            json!({"alg": "ES512", "kid": "k"}),
            Err(RejectReason::DisallowedAlgorithm),
        ),
        (
            json!({"alg": "es256", "kid": "k"}),
            Err(RejectReason::DisallowedAlgorithm),
        ),
        (json!({"alg": "ES256"}), Err(RejectReason::MissingKeyId)),
        (
            json!({"alg": "ES256", "kid": ""}),
            Err(RejectReason::Malformed),
        ),
        (
            json!({"alg": "ES256", "kid": 7}),
            Err(RejectReason::Malformed),
        ),
        (json!({"kid": "k"}), Err(RejectReason::Malformed)),
        (json!(["ES256"]), Err(RejectReason::Malformed)),
    ];
    for (header, expected) in cases {
        let text = token(header.clone());
        let found = unverified_header(bearer_token(Some(&format!("Bearer {text}"))).unwrap())
            .map(|header| header.algorithm);
        assert_eq!(found, expected, "{header}");
    }
    for text in ["abc", "a.b", "a.b.c.d", "!!!.e30.c2ln", "e30.e30.c2ln"] {
        let found = unverified_header(bearer_token(Some(&format!("Bearer {text}"))).unwrap());
        assert!(found.is_err(), "{text}");
    }
}

#[test]
fn valid_claims_become_the_envelope() {
    let envelope = envelope(&claims_with(&[]), &settings(), NOW).unwrap();
    assert_eq!(envelope.user().issuer, ISSUER);
    assert_eq!(envelope.user().subject, "alice");
    assert_eq!(envelope.client(), Some("cli-1"));
    assert_eq!(envelope.mode(), ActingMode::Delegated);
    assert_eq!(envelope.groups(), &set(&["eng", "ops"]));
    assert_eq!(envelope.tenant(), Some("acme"));
    assert_eq!(envelope.scopes(), &set(&["files.read", "mcp"]));
    assert!(!envelope.may_use_credential("anything"));
    // The acceptance window, leeway included: iat - 30 to exp + 30.
    assert!(envelope.is_valid_at(NOW));
    assert!(envelope.is_valid_at(NOW - 40));
    assert!(!envelope.is_valid_at(NOW - 41));
    assert!(envelope.is_valid_at(NOW + 629));
    assert!(!envelope.is_valid_at(NOW + 630));
}

#[test]
fn the_claims_are_read_in_each_documented_shape() {
    let cases: Vec<(Changes, Check)> = vec![
        (vec![("aud", Some(json!(["other", RESOURCE])))], |_| true),
        (vec![("groups", Some(json!("eng  ops")))], |e| {
            e.groups() == &set(&["eng", "ops"])
        }),
        (vec![("groups", None), ("tenant", None)], |e| {
            e.groups().is_empty() && e.tenant().is_none()
        }),
        (
            vec![("scope", None), ("scp", Some(json!(["a", "b"])))],
            |e| e.scopes() == &set(&["a", "b"]),
        ),
        (vec![("scope", None), ("scp", Some(json!("a b")))], |e| {
            e.scopes() == &set(&["a", "b"])
        }),
        (vec![("scp", Some(json!(["files.read", "mcp"])))], |e| {
            e.scopes() == &set(&["files.read", "mcp"])
        }),
        (vec![("scope", None)], |e| e.scopes().is_empty()),
        (
            vec![("client_id", None), ("azp", Some(json!("web")))],
            |e| e.client() == Some("web"),
        ),
        (vec![("client_id", None)], |e| e.client().is_none()),
        (vec![("exp", Some(json!(1_800_000_600.9)))], |e| {
            !e.is_valid_at(NOW + 630)
        }),
        (vec![("nbf", Some(json!(NOW + 20)))], |e| e.is_valid_at(NOW)),
        (vec![("iat", None)], |e| e.is_valid_at(0)),
    ];
    for (changes, check) in cases {
        let envelope = envelope(&claims_with(&changes), &settings(), NOW);
        assert!(
            envelope.as_ref().is_ok_and(check),
            "{changes:?}: {envelope:?}"
        );
    }
}

#[test]
fn each_broken_claim_rejects_the_token() {
    let invalid = |name: &str| RejectReason::InvalidClaim(name.to_owned());
    let cases: Vec<(Changes, RejectReason)> = vec![
        (
            vec![("iss", Some(json!("https://evil.example.com")))],
            RejectReason::WrongIssuer,
        ),
        (
            vec![("iss", Some(json!(format!("{ISSUER}/"))))],
            RejectReason::WrongIssuer,
        ),
        (vec![("iss", None)], RejectReason::MissingClaim("iss")),
        (vec![("iss", Some(json!([ISSUER])))], invalid("iss")),
        (
            vec![("aud", Some(json!("https://other.example.com/mcp")))],
            RejectReason::WrongAudience,
        ),
        (
            vec![("aud", Some(json!(format!("{RESOURCE}/"))))],
            RejectReason::WrongAudience,
        ),
        (
            vec![("aud", Some(json!(["a", "b"])))],
            RejectReason::WrongAudience,
        ),
        (vec![("aud", Some(json!([])))], RejectReason::WrongAudience),
        (vec![("aud", None)], RejectReason::MissingClaim("aud")),
        (vec![("aud", Some(json!([RESOURCE, 7])))], invalid("aud")),
        (
            vec![("aud", Some(json!({"resource": RESOURCE})))],
            invalid("aud"),
        ),
        (vec![("exp", None)], RejectReason::MissingClaim("exp")),
        (vec![("exp", Some(json!(NOW - 30)))], RejectReason::Expired),
        (vec![("exp", Some(json!(NOW - 31)))], RejectReason::Expired),
        (vec![("exp", Some(json!("1900000000")))], invalid("exp")),
        (vec![("exp", Some(json!(-1)))], invalid("exp")),
        (vec![("exp", Some(json!(null)))], invalid("exp")),
        (
            vec![("nbf", Some(json!(NOW + 31)))],
            RejectReason::NotYetValid,
        ),
        (vec![("nbf", Some(json!("soon")))], invalid("nbf")),
        (
            vec![("iat", Some(json!(NOW + 31)))],
            RejectReason::NotYetValid,
        ),
        (vec![("iat", Some(json!(true)))], invalid("iat")),
        (vec![("sub", None)], RejectReason::MissingClaim("sub")),
        (
            vec![("sub", Some(json!("")))],
            RejectReason::MissingClaim("sub"),
        ),
        (vec![("sub", Some(json!(42)))], invalid("sub")),
        (vec![("groups", Some(json!(["eng", 1])))], invalid("groups")),
        (
            vec![("groups", Some(json!({"eng": true})))],
            invalid("groups"),
        ),
        (vec![("groups", Some(json!(null)))], invalid("groups")),
        (vec![("tenant", Some(json!(["acme"])))], invalid("tenant")),
        (vec![("client_id", Some(json!(7)))], invalid("client_id")),
        (
            vec![("client_id", None), ("azp", Some(json!(["web"])))],
            invalid("azp"),
        ),
        (vec![("scope", Some(json!(["mcp"])))], invalid("scope")),
        (vec![("scp", Some(json!(["mcp"])))], invalid("scope")),
        (
            vec![("scope", None), ("scp", Some(json!([1])))],
            invalid("scp"),
        ),
    ];
    for (changes, expected) in cases {
        let found = envelope(&claims_with(&changes), &settings(), NOW);
        assert_eq!(found.err(), Some(expected), "{changes:?}");
    }
}

#[test]
fn the_claim_names_come_from_the_settings() {
    let settings = ResourceServerSettings {
        claims: ClaimNames {
            groups: "roles".to_owned(),
            tenant: "org".to_owned(),
            client: "azp".to_owned(),
        },
        ..settings()
    };
    let claims = claims_with(&[
        ("roles", Some(json!(["admin"]))),
        ("org", Some(json!("initech"))),
        ("azp", Some(json!("web"))),
    ]);
    let envelope = envelope(&claims, &settings, NOW).unwrap();
    assert_eq!(envelope.groups(), &set(&["admin"]));
    assert_eq!(envelope.tenant(), Some("initech"));
    assert_eq!(envelope.client(), Some("web"));
}
