//! The resource server end to end against a real identity provider on loopback: discovery,
//! keys and their rotation, every rejection, the metadata router and the middleware, and the
//! token kept out of everything a person reads.
#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "tests"
)]

pub(crate) mod idp;

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::Extension;
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, Request, StatusCode};
use axum::routing::get;
use axum::{Router, middleware};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use jsonwebtoken::Algorithm;
use portcullis_core::{ActingMode, ClaimNames, IdentityEnvelope, ResourceServerSettings};
use serde_json::{Value, json};

use self::idp::{Idp, RSA_PUBLIC_PEM, TestKey, sign_hmac};
use crate::server::Timing;
use crate::{
    AuthError, BearerError, FetchError, RejectReason, Rejection, ResourceServer, require_bearer,
};

const NOW: u64 = 1_800_000_000;
const RESOURCE: &str = "http://127.0.0.1:8787/mcp";
const METADATA_URL: &str = "http://127.0.0.1:8787/.well-known/oauth-protected-resource/mcp";
/// Every test finishes well within this, or fails instead of hanging.
const TEST_LIMIT: Duration = Duration::from_secs(30);

pub(crate) async fn bounded<F: Future>(future: F) -> F::Output {
    tokio::time::timeout(TEST_LIMIT, future)
        .await
        .expect("the test took too long")
}

fn settings(issuer: &str) -> ResourceServerSettings {
    ResourceServerSettings {
        issuer: issuer.to_owned(),
        resource: RESOURCE.to_owned(),
        required_scopes: BTreeSet::from(["mcp".to_owned()]),
        scopes_supported: vec!["mcp".to_owned(), "files.read".to_owned()],
        claims: ClaimNames::default(),
        leeway_secs: 30,
        allow_http: true,
    }
}

fn claims(issuer: &str, now: u64) -> Value {
    json!({
        "iss": issuer,
        "sub": "alice",
        "aud": [RESOURCE, "https://other.example.com"],
        "exp": now + 600,
        "iat": now - 10,
        "scope": "mcp files.read",
        "client_id": "cli-1",
        "groups": ["eng", "ops"],
        "tenant": "acme",
    })
}

fn changed(mut claims: Value, changes: &[(&str, Option<Value>)]) -> Value {
    let object = claims.as_object_mut().unwrap();
    for (name, value) in changes {
        match value {
            Some(value) => object.insert((*name).to_owned(), value.clone()),
            None => object.remove(*name),
        };
    }
    claims
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

async fn discover(idp: &Idp) -> ResourceServer {
    bounded(ResourceServer::discover(settings(&idp.issuer)))
        .await
        .unwrap()
}

async fn rejection(server: &ResourceServer, header: Option<&str>) -> Rejection {
    bounded(server.authenticate(header, NOW))
        .await
        .expect_err("the token should be rejected")
}

#[tokio::test]
async fn a_valid_token_becomes_its_envelope() {
    let ec = TestKey::ec();
    let idp = Idp::start(&[&ec]).await;
    let server = discover(&idp).await;
    let token = ec.sign(&claims(&idp.issuer, NOW));

    let envelope = bounded(server.authenticate(Some(&bearer(&token)), NOW))
        .await
        .unwrap();

    assert_eq!(envelope.user().issuer, idp.issuer);
    assert_eq!(envelope.user().subject, "alice");
    assert_eq!(envelope.client(), Some("cli-1"));
    assert_eq!(envelope.mode(), ActingMode::Delegated);
    let set = |values: &[&str]| {
        values
            .iter()
            .map(|v| (*v).to_owned())
            .collect::<BTreeSet<_>>()
    };
    assert_eq!(envelope.groups(), &set(&["eng", "ops"]));
    assert_eq!(envelope.tenant(), Some("acme"));
    assert_eq!(envelope.scopes(), &set(&["files.read", "mcp"]));
    assert!(envelope.is_valid_at(NOW));
    assert!(!envelope.is_valid_at(NOW + 630));
    assert!(!envelope.may_use_credential("mail"));
}

#[tokio::test]
async fn every_accepted_algorithm_verifies() {
    let (ec, rsa, ed) = (TestKey::ec(), TestKey::rsa(), TestKey::ed());
    let idp = Idp::start(&[&ec, &rsa, &ed]).await;
    let server = discover(&idp).await;
    let claims = claims(&idp.issuer, NOW);
    for (name, token) in [
        ("ES256", ec.sign(&claims)),
        ("RS256", rsa.sign(&claims)),
        ("PS256", rsa.sign_as(rsa.kid, Algorithm::PS256, &claims)),
        ("RS512", rsa.sign_as(rsa.kid, Algorithm::RS512, &claims)),
        ("EdDSA", ed.sign(&claims)),
    ] {
        let outcome = bounded(server.authenticate(Some(&bearer(&token)), NOW)).await;
        assert!(outcome.is_ok(), "{name}: {outcome:?}");
    }
    assert_eq!(idp.state.jwks_fetches(), 1);
}

#[tokio::test]
async fn a_request_without_a_token_gets_the_bare_challenge() {
    let ec = TestKey::ec();
    let idp = Idp::start(&[&ec]).await;
    let server = discover(&idp).await;

    let rejection = rejection(&server, None).await;

    assert_eq!(rejection.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(rejection.error(), None);
    assert_eq!(rejection.reason(), &RejectReason::MissingToken);
    assert_eq!(
        server.www_authenticate(&rejection),
        format!("Bearer resource_metadata=\"{METADATA_URL}\"")
    );
}

#[tokio::test]
async fn each_invalid_token_is_rejected_with_its_reason() {
    let (ec, rsa, other) = (TestKey::ec(), TestKey::rsa(), TestKey::other());
    let idp = Idp::start(&[&ec, &rsa]).await;
    let server = discover(&idp).await;
    let valid = claims(&idp.issuer, NOW);
    let with = |changes: &[(&str, Option<Value>)]| changed(valid.clone(), changes);
    let segment = |value: Value| URL_SAFE_NO_PAD.encode(value.to_string());

    let genuine = ec.sign(&valid);
    let forged_payload = ec.sign(&with(&[("sub", Some(json!("mallory")))]));
    let spliced = {
        let mut genuine = genuine.split('.');
        let mut forged = forged_payload.split('.');
        let (header, _, signature) = (genuine.next(), genuine.next(), genuine.next());
        let payload = forged.nth(1);
        format!(
            "{}.{}.{}",
            header.unwrap(),
            payload.unwrap(),
            signature.unwrap()
        )
    };
    let unsigned = format!(
        "{}.{}.",
        segment(json!({"alg": "none", "typ": "JWT", "kid": ec.kid})),
        segment(valid.clone())
    );

    let cases: Vec<(&str, String, RejectReason)> = vec![
        (
            "another scheme",
            "Basic YWxpY2U6c2VjcmV0".to_owned(),
            RejectReason::NotBearer,
        ),
        ("garbage", bearer("garbage"), RejectReason::Malformed),
        (
            "garbage in three parts",
            bearer("a.b.c"),
            RejectReason::Malformed,
        ),
        (
            "wrong audience",
            bearer(&ec.sign(&with(&[(
                "aud",
                Some(json!("https://other.example.com/mcp")),
            )]))),
            RejectReason::WrongAudience,
        ),
        (
            "expired",
            bearer(&ec.sign(&with(&[("exp", Some(json!(NOW - 31)))]))),
            RejectReason::Expired,
        ),
        (
            "not valid yet",
            bearer(&ec.sign(&with(&[("nbf", Some(json!(NOW + 31)))]))),
            RejectReason::NotYetValid,
        ),
        (
            "wrong issuer",
            bearer(&ec.sign(&with(&[("iss", Some(json!("https://evil.example.com")))]))),
            RejectReason::WrongIssuer,
        ),
        (
            "signed by a key the issuer does not own",
            bearer(&other.sign_as(ec.kid, Algorithm::ES256, &valid)),
            RejectReason::BadSignature,
        ),
        (
            "payload swapped under a signature",
            bearer(&spliced),
            RejectReason::BadSignature,
        ),
        (
            "alg none",
            bearer(&unsigned),
            RejectReason::DisallowedAlgorithm,
        ),
        (
            "HS256 keyed with the issuer's public key",
            bearer(&sign_hmac(RSA_PUBLIC_PEM, rsa.kid, &valid)),
            RejectReason::DisallowedAlgorithm,
        ),
        (
            "ES256 naming the RSA key",
            bearer(&ec.sign_as(rsa.kid, Algorithm::ES256, &valid)),
            RejectReason::KeyMismatch,
        ),
        (
            "RS256 naming the EC key",
            bearer(&rsa.sign_as(ec.kid, Algorithm::RS256, &valid)),
            RejectReason::KeyMismatch,
        ),
        (
            "no kid",
            bearer(&ec.sign_without_kid(&valid)),
            RejectReason::MissingKeyId,
        ),
        (
            "no subject",
            bearer(&ec.sign(&with(&[("sub", None)]))),
            RejectReason::MissingClaim("sub"),
        ),
        (
            "groups of the wrong type",
            bearer(&ec.sign(&with(&[("groups", Some(json!(7)))]))),
            RejectReason::InvalidClaim("groups".to_owned()),
        ),
    ];
    for (name, header, reason) in cases {
        let rejection = rejection(&server, Some(&header)).await;
        assert_eq!(rejection.reason(), &reason, "{name}");
        assert_eq!(rejection.status(), StatusCode::UNAUTHORIZED, "{name}");
        let expected_error =
            (reason != RejectReason::NotBearer).then_some(BearerError::InvalidToken);
        assert_eq!(rejection.error(), expected_error, "{name}");
    }
    // None of them named an unknown key, so none of them made the issuer's keys be fetched.
    assert_eq!(idp.state.jwks_fetches(), 1);

    let expired = rejection(
        &server,
        Some(&bearer(&ec.sign(&with(&[("exp", Some(json!(NOW - 31)))])))),
    )
    .await;
    assert_eq!(
        server.www_authenticate(&expired),
        format!(
            "Bearer resource_metadata=\"{METADATA_URL}\", error=\"invalid_token\", \
             error_description=\"the token has expired\""
        )
    );
}

#[tokio::test]
async fn insufficient_scope_is_a_403_naming_the_scopes_needed() {
    let ec = TestKey::ec();
    let idp = Idp::start(&[&ec]).await;
    let server = discover(&idp).await;
    let token = ec.sign(&changed(
        claims(&idp.issuer, NOW),
        &[("scope", Some(json!("files.read")))],
    ));

    let rejection = rejection(&server, Some(&bearer(&token))).await;

    assert_eq!(rejection.status(), StatusCode::FORBIDDEN);
    assert_eq!(rejection.error(), Some(BearerError::InsufficientScope));
    assert_eq!(rejection.required_scopes(), ["mcp"]);
    assert_eq!(
        server.www_authenticate(&rejection),
        format!(
            "Bearer resource_metadata=\"{METADATA_URL}\", error=\"insufficient_scope\", scope=\"mcp\""
        )
    );
}

#[tokio::test]
async fn a_new_key_is_fetched_once_and_unknown_keys_are_rate_limited() {
    let (ec, other) = (TestKey::ec(), TestKey::other());
    let idp = Idp::start(&[&ec]).await;
    let server = discover(&idp).await;
    assert_eq!(idp.state.jwks_fetches(), 1);
    let claims = claims(&idp.issuer, NOW);

    // The issuer rotates a new key in; the first token signed with it makes us fetch it.
    idp.state.publish(&[&ec, &other]);
    let rotated = bearer(&other.sign(&claims));
    assert!(
        bounded(server.authenticate(Some(&rotated), NOW))
            .await
            .is_ok()
    );
    assert_eq!(idp.state.jwks_fetches(), 2);

    // Made-up keys within the rate-limit window: rejected without asking the issuer again.
    for kid in ["ec-3", "ec-4", "ec-5"] {
        let made_up = bearer(&other.sign_as(kid, Algorithm::ES256, &claims));
        let rejection = rejection(&server, Some(&made_up)).await;
        assert_eq!(rejection.reason(), &RejectReason::UnknownKey);
    }
    assert_eq!(idp.state.jwks_fetches(), 2);

    // Known keys keep working from the cache.
    assert!(
        bounded(server.authenticate(Some(&rotated), NOW))
            .await
            .is_ok()
    );
    assert!(
        bounded(server.authenticate(Some(&bearer(&ec.sign(&claims))), NOW))
            .await
            .is_ok()
    );
    assert_eq!(idp.state.jwks_fetches(), 2);
}

#[tokio::test]
async fn a_key_the_issuer_stops_publishing_stops_being_trusted() {
    let (ec, other) = (TestKey::ec(), TestKey::other());
    let idp = Idp::start(&[&ec]).await;
    let timing = Timing {
        fetch_timeout: Duration::from_secs(5),
        refresh_interval: Duration::ZERO,
        key_set_max_age: Duration::ZERO,
    };
    let server = bounded(ResourceServer::discover_with(
        settings(&idp.issuer),
        timing,
        Vec::new(),
    ))
    .await
    .unwrap();
    let claims = claims(&idp.issuer, NOW);
    let old = bearer(&ec.sign(&claims));

    // The issuer rotates the old key out. The cached set is aged, so the next use of the old
    // key is still honoured but refreshes the set in the background.
    idp.state.publish(&[&other]);
    assert!(bounded(server.authenticate(Some(&old), NOW)).await.is_ok());
    bounded(async {
        loop {
            match server.authenticate(Some(&old), NOW).await {
                Err(rejection) if rejection.reason() == &RejectReason::UnknownKey => break,
                _ => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    })
    .await;
    assert!(idp.state.jwks_fetches() >= 2);
    let new = bearer(&other.sign(&claims));
    assert!(bounded(server.authenticate(Some(&new), NOW)).await.is_ok());
}

#[tokio::test]
async fn discovery_requires_the_metadata_to_name_the_configured_issuer() {
    let ec = TestKey::ec();
    let idp = Idp::start(&[&ec]).await;
    for advertised in [
        "https://evil.example.com".to_owned(),
        format!("{}/", idp.issuer),
    ] {
        *idp.state.advertised_issuer.lock().unwrap() = Some(advertised.clone());
        let error = bounded(ResourceServer::discover(settings(&idp.issuer)))
            .await
            .unwrap_err();
        assert!(
            matches!(&error, AuthError::IssuerMismatch { found, .. } if *found == advertised),
            "{error}"
        );
        assert_eq!(
            error.to_string(),
            format!(
                "the metadata at `{0}/.well-known/openid-configuration` names issuer \
                 `{advertised}`, not the configured `{0}`",
                idp.issuer
            )
        );
    }
    assert_eq!(idp.state.jwks_fetches(), 0);
}

#[tokio::test]
async fn discovery_falls_back_to_rfc_8414() {
    let ec = TestKey::ec();
    let idp = Idp::start(&[&ec]).await;
    idp.state.no_oidc.store(true, Ordering::SeqCst);

    let server = discover(&idp).await;

    assert_eq!(idp.state.oidc_fetches.load(Ordering::SeqCst), 1);
    assert_eq!(idp.state.oauth_fetches.load(Ordering::SeqCst), 1);
    let token = ec.sign(&claims(&idp.issuer, NOW));
    assert!(
        bounded(server.authenticate(Some(&bearer(&token)), NOW))
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn an_http_issuer_is_refused_unless_allowed() {
    let ec = TestKey::ec();
    let idp = Idp::start(&[&ec]).await;
    let settings = ResourceServerSettings {
        allow_http: false,
        ..settings(&idp.issuer)
    };

    let error = bounded(ResourceServer::discover(settings))
        .await
        .unwrap_err();

    assert!(
        matches!(error, AuthError::Fetch(FetchError::InsecureUrl { .. })),
        "{error}"
    );
    assert_eq!(idp.state.oidc_fetches.load(Ordering::SeqCst), 0);
    assert_eq!(idp.state.oauth_fetches.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn an_https_issuer_is_discovered_only_with_a_trusted_certificate() {
    let ec = TestKey::ec();
    let idp = Idp::start_tls(&[&ec]).await;
    let settings = ResourceServerSettings {
        allow_http: false,
        ..settings(&idp.issuer)
    };

    // The test CA is none of the platform's roots: the handshake fails, nothing is fetched.
    let error = bounded(ResourceServer::discover(settings.clone()))
        .await
        .unwrap_err();
    assert!(
        matches!(&error, AuthError::Fetch(FetchError::Fetch { reason, .. }) if reason.contains("certificate"))
            || matches!(error, AuthError::Fetch(FetchError::Tls { .. })),
        "{error}"
    );
    assert_eq!(idp.state.oidc_fetches.load(Ordering::SeqCst), 0);

    // Trusted, it works end to end: metadata, keys and a token, all over https.
    let server = bounded(ResourceServer::discover_with(
        settings,
        Timing::default(),
        idp::test_ca(),
    ))
    .await
    .unwrap();
    assert_eq!(idp.state.jwks_fetches(), 1);
    let token = ec.sign(&claims(&idp.issuer, NOW));
    assert!(
        bounded(server.authenticate(Some(&bearer(&token)), NOW))
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn discovery_is_bounded_and_follows_only_same_scheme_redirects() {
    let ec = TestKey::ec();
    let idp = Idp::start(&[&ec]).await;
    let timing = Timing {
        fetch_timeout: Duration::from_millis(300),
        ..Timing::default()
    };
    let discover_at = |path: &str| {
        let issuer = format!("{}{path}", idp.issuer);
        async move {
            bounded(ResourceServer::discover_with(
                settings(&issuer),
                timing,
                Vec::new(),
            ))
            .await
        }
    };

    let error = discover_at("/slow").await.unwrap_err();
    assert!(
        matches!(error, AuthError::Fetch(FetchError::Timeout { .. })),
        "{error}"
    );
    let error = discover_at("/huge").await.unwrap_err();
    assert!(
        matches!(
            error,
            AuthError::Fetch(FetchError::TooLarge { limit: 65536, .. })
        ),
        "{error}"
    );
    let error = discover_at("/garbage").await.unwrap_err();
    assert!(
        matches!(error, AuthError::InvalidDocument { .. }),
        "{error}"
    );
    let error = discover_at("/upgraded").await.unwrap_err();
    assert!(
        matches!(error, AuthError::Fetch(FetchError::Redirect { .. })),
        "{error}"
    );
    let error = discover_at("/looping").await.unwrap_err();
    assert!(
        matches!(error, AuthError::Fetch(FetchError::TooManyRedirects { .. })),
        "{error}"
    );
    let error = discover_at("/nowhere").await.unwrap_err();
    assert!(
        matches!(error, AuthError::MetadataNotFound { .. }),
        "{error}"
    );

    // A redirect on the same scheme is followed; the document then names the issuer asked for.
    *idp.state.advertised_issuer.lock().unwrap() = Some(format!("{}/moved", idp.issuer));
    assert!(discover_at("/moved").await.is_ok());

    // An issuer that publishes no usable key is an error at start, not a 401 on every request.
    *idp.state.advertised_issuer.lock().unwrap() = None;
    idp.state.publish(&[]);
    let error = discover_at("").await.unwrap_err();
    assert!(matches!(error, AuthError::NoUsableKeys { .. }), "{error}");

    // Nothing listening.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    let error = bounded(ResourceServer::discover_with(
        settings(&closed),
        timing,
        Vec::new(),
    ))
    .await
    .unwrap_err();
    assert!(
        matches!(error, AuthError::Fetch(FetchError::Fetch { .. })),
        "{error}"
    );
}

#[tokio::test]
async fn the_metadata_url_and_document_are_exact() {
    let ec = TestKey::ec();
    let idp = Idp::start(&[&ec]).await;
    let server = discover(&idp).await;

    assert_eq!(server.metadata_url(), METADATA_URL);
    assert_eq!(
        serde_json::to_value(server.metadata()).unwrap(),
        json!({
            "resource": RESOURCE,
            "authorization_servers": [idp.issuer],
            "scopes_supported": ["mcp", "files.read"],
            "bearer_methods_supported": ["header"],
        })
    );
}

/// The route behind the middleware: who the request is, and whether the token got through.
async fn whoami(
    Extension(envelope): Extension<Arc<IdentityEnvelope>>,
    headers: HeaderMap,
) -> String {
    format!(
        "{} {} {} authorization={}",
        envelope.user().subject,
        envelope.tenant().unwrap_or("-"),
        envelope
            .groups()
            .iter()
            .cloned()
            .collect::<Vec<_>>()
            .join(","),
        if headers.contains_key(AUTHORIZATION) {
            "present"
        } else {
            "absent"
        }
    )
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

async fn get_with(base: &str, path: &str, authorization: &[&str]) -> Reply {
    let client: Client<HttpConnector, Empty<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let mut request = Request::get(format!("{base}{path}"));
    for value in authorization {
        request = request.header(AUTHORIZATION, *value);
    }
    let response = bounded(client.request(request.body(Empty::new()).unwrap()))
        .await
        .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = bounded(response.into_body().collect())
        .await
        .unwrap()
        .to_bytes();
    Reply {
        status,
        headers,
        body: String::from_utf8(body.to_vec()).unwrap(),
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test]
async fn the_middleware_attaches_the_envelope_or_challenges() {
    let ec = TestKey::ec();
    let idp = Idp::start(&[&ec]).await;
    let server = discover(&idp).await;
    let app = Router::new()
        .route("/mcp", get(whoami))
        .layer(middleware::from_fn_with_state(
            server.clone(),
            require_bearer,
        ))
        .merge(server.metadata_router());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let serving = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    // The metadata, at both paths, without a token.
    let expected_metadata = json!({
        "resource": RESOURCE,
        "authorization_servers": [idp.issuer],
        "scopes_supported": ["mcp", "files.read"],
        "bearer_methods_supported": ["header"],
    });
    for path in [
        "/.well-known/oauth-protected-resource/mcp",
        "/.well-known/oauth-protected-resource",
    ] {
        let reply = get_with(&base, path, &[]).await;
        assert_eq!(reply.status, StatusCode::OK, "{path}");
        assert_eq!(reply.headers[CONTENT_TYPE], "application/json");
        let document: Value = serde_json::from_str(&reply.body).unwrap();
        assert_eq!(document, expected_metadata, "{path}");
    }

    // No token: the bare challenge, and no error code in the body either.
    let reply = get_with(&base, "/mcp", &[]).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        reply.headers[WWW_AUTHENTICATE],
        format!("Bearer resource_metadata=\"{METADATA_URL}\"").as_str()
    );
    assert_eq!(
        reply.body,
        r#"{"error_description":"this resource needs a bearer token"}"#
    );

    // A bad token.
    let reply = get_with(&base, "/mcp", &["Bearer not-a-token"]).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        reply.headers[WWW_AUTHENTICATE],
        format!(
            "Bearer resource_metadata=\"{METADATA_URL}\", error=\"invalid_token\", \
             error_description=\"the token is not a well-formed signed jwt\""
        )
        .as_str()
    );
    assert_eq!(
        reply.body,
        r#"{"error":"invalid_token","error_description":"the token is not a well-formed signed jwt"}"#
    );

    // A good token: the inner handler sees the envelope, and not the token.
    let token = ec.sign(&claims(&idp.issuer, now()));
    let reply = get_with(&base, "/mcp", &[&bearer(&token)]).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body, "alice acme eng,ops authorization=absent");

    // The same token twice: refused, not picked from.
    let reply = get_with(&base, "/mcp", &[&bearer(&token), &bearer(&token)]).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);

    // A valid token without the scope every request needs.
    let narrow = ec.sign(&changed(
        claims(&idp.issuer, now()),
        &[("scope", Some(json!("files.read")))],
    ));
    let reply = get_with(&base, "/mcp", &[&bearer(&narrow)]).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert_eq!(
        reply.headers[WWW_AUTHENTICATE],
        format!("Bearer resource_metadata=\"{METADATA_URL}\", error=\"insufficient_scope\", scope=\"mcp\"")
            .as_str()
    );
    assert_eq!(
        reply.body,
        r#"{"error":"insufficient_scope","error_description":"the token lacks a scope this resource needs"}"#
    );

    serving.abort();
}

#[tokio::test]
async fn the_token_appears_in_no_rejection() {
    let (ec, rsa, other) = (TestKey::ec(), TestKey::rsa(), TestKey::other());
    let idp = Idp::start(&[&ec, &rsa]).await;
    let server = discover(&idp).await;
    let valid = claims(&idp.issuer, NOW);
    let with = |changes: &[(&str, Option<Value>)]| changed(valid.clone(), changes);
    let tokens = [
        ec.sign(&with(&[("exp", Some(json!(NOW - 60)))])),
        ec.sign(&with(&[("scope", Some(json!("files.read")))])),
        ec.sign(&with(&[("tenant", Some(json!(["tenant-claim-value"])))])),
        other.sign_as(ec.kid, Algorithm::ES256, &valid),
        sign_hmac(RSA_PUBLIC_PEM, rsa.kid, &valid),
        "not-a-token".to_owned(),
    ];
    for token in &tokens {
        let rejection = rejection(&server, Some(&bearer(token))).await;
        let shown = format!(
            "{rejection}\n{rejection:?}\n{}\n{}\n{server:?}",
            rejection.description(),
            server.www_authenticate(&rejection)
        );
        for part in std::iter::once(token.as_str()).chain(token.split('.')) {
            assert!(
                !shown.contains(part),
                "token text `{part}` is shown:\n{shown}"
            );
        }
        assert!(!shown.contains("tenant-claim-value"), "{shown}");
    }
}
