//! The client over real loopback HTTP: the fetcher's refusals, discovery against a scripted
//! upstream and authorization server, every grant (asserting on what the server received), and
//! no secret in any error or `Debug`.
#![expect(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]

mod server;

use std::fmt::{Debug, Display};
use std::future::Future;
use std::time::Duration;

use axum::http::StatusCode;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use url::Url;

use self::server::{Received, Reply, Scripted};
use super::*;
use crate::FetchError;
use crate::tests::bounded;
use crate::tests::idp::test_ca;

const PRM_PATH: &str = "/.well-known/oauth-protected-resource/mcp";
const PRM_ROOT: &str = "/.well-known/oauth-protected-resource";
const AS_PATH: &str = "/.well-known/oauth-authorization-server";
const OIDC_PATH: &str = "/.well-known/openid-configuration";
const CLIENT_ID: &str = "portcullis-client";
const CLIENT_SECRET: &str = "client-secret-Zq81";
const REDIRECT_URI: &str = "http://127.0.0.1:9/callback";
const LIMIT: usize = 64 * 1024;

fn local() -> Reach {
    Reach {
        allow_loopback: true,
    }
}

fn strict() -> Reach {
    Reach {
        allow_loopback: false,
    }
}

fn url(text: &str) -> Url {
    Url::parse(text).unwrap()
}

fn prm(resource: &str, issuer: &str) -> Value {
    json!({
        "resource": resource,
        "authorization_servers": [issuer],
        "scopes_supported": ["mcp", "files.read"],
        "bearer_methods_supported": ["header"],
    })
}

fn as_metadata(issuer: &str, base: &str) -> Value {
    json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{base}/authorize"),
        "token_endpoint": format!("{base}/token"),
        "revocation_endpoint": format!("{base}/revoke"),
        "registration_endpoint": format!("{base}/register"),
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials",
            "urn:ietf:params:oauth:grant-type:token-exchange"],
        "scopes_supported": ["mcp", "files.read"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
    })
}

fn token_reply(access: &str, refresh: Option<&str>) -> Reply {
    let mut body = json!({
        "access_token": access,
        "token_type": "bearer",
        "expires_in": 3600,
        "scope": "mcp files.read",
    });
    if let Some(refresh) = refresh {
        body["refresh_token"] = json!(refresh);
    }
    Reply::json(&body)
}

fn oauth_error(code: &str, description: &str) -> Reply {
    Reply::json_status(
        StatusCode::BAD_REQUEST,
        &json!({ "error": code, "error_description": description }),
    )
}

/// An upstream at `{base}/mcp` whose metadata and authorization server share its origin.
async fn world() -> Scripted {
    let server = Scripted::start().await;
    serve_prm(&server, PRM_PATH, &server.base);
    serve_metadata(&server, |_| {});
    server
}

async fn discovered(server: &Scripted) -> Discovered {
    succeeds(discover(&server.url("/mcp"), None, local())).await
}

/// Why discovery of the upstream at `{base}/mcp`, without a challenge, fails.
async fn discovery_error(server: &Scripted) -> ClientError {
    fails(discover(&server.url("/mcp"), None, local())).await
}

/// Serves at `path` the protected resource metadata of the upstream at `{base}/mcp`, naming
/// `issuer` its authorization server.
fn serve_prm(server: &Scripted, path: &str, issuer: &str) {
    let resource = format!("{}/mcp", server.base);
    server.reply(path, Reply::json(&prm(&resource, issuer)));
}

/// Serves the authorization server metadata `world` serves, changed by `edit`.
fn serve_metadata(server: &Scripted, edit: impl FnOnce(&mut Value)) {
    let mut metadata = as_metadata(&server.base, &server.base);
    edit(&mut metadata);
    server.reply(AS_PATH, Reply::json(&metadata));
}

/// Drops `name` from a metadata document.
fn remove(metadata: &mut Value, name: &str) {
    metadata.as_object_mut().unwrap().remove(name);
}

fn registration(server: &Scripted, secret: Option<&str>) -> ClientRegistration {
    ClientRegistration {
        issuer: server.base.clone(),
        client_id: CLIENT_ID.to_owned(),
        client_secret: secret.map(Secret::new),
        redirect_uri: url(REDIRECT_URI),
    }
}

/// A confidential client of what `server` serves now.
async fn client(server: &Scripted) -> (OAuthClient, Discovered) {
    let discovered = discovered(server).await;
    let client = OAuthClient::new(
        &discovered,
        registration(server, Some(CLIENT_SECRET)),
        local(),
    )
    .unwrap();
    (client, discovered)
}

/// The same, after the authorization server metadata is changed by `edit`.
async fn client_with(
    server: &Scripted,
    edit: impl FnOnce(&mut Value),
) -> (OAuthClient, Discovered) {
    serve_metadata(server, edit);
    client(server).await
}

/// The output of a future that must succeed, within the test's time limit.
async fn succeeds<T, E: Debug>(future: impl Future<Output = Result<T, E>>) -> T {
    bounded(future).await.unwrap()
}

/// The error of a future that must fail, within the test's time limit.
async fn fails<T: Debug, E>(future: impl Future<Output = Result<T, E>>) -> E {
    bounded(future).await.unwrap_err()
}

/// Asserts that a value matches a pattern, showing the value (and any context) if not.
macro_rules! assert_matches {
    ($value:expr, $pattern:pat $(if $guard:expr)? $(,)?) => {
        assert!(matches!($value, $pattern $(if $guard)?), "{}", $value)
    };
    ($value:expr, $pattern:pat $(if $guard:expr)?, $($context:tt)+) => {
        assert!(
            matches!($value, $pattern $(if $guard)?),
            "{}: {}",
            format_args!($($context)+),
            $value
        )
    };
}

/// Asserts that neither the `Display` nor the `Debug` of `error` shows `secret`.
#[track_caller]
fn assert_hides(error: &(impl Display + Debug), secret: &str) {
    let shown = error.to_string();
    assert!(!shown.contains(secret), "{shown}");
    assert!(!format!("{error:?}").contains(secret));
}

/// Asserts that `sent` authenticated the confidential client with HTTP Basic.
#[track_caller]
fn assert_basic_auth(sent: &Received) {
    assert_eq!(
        sent.authorization.as_deref(),
        Some(basic(CLIENT_ID, CLIENT_SECRET).as_str())
    );
}

fn scopes(names: &[&str]) -> Vec<String> {
    names.iter().map(|name| (*name).to_owned()).collect()
}

fn basic(id: &str, secret: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{id}:{secret}")))
}

fn query(url: &Url) -> Vec<(String, String)> {
    url.query_pairs().into_owned().collect()
}

fn param<'a>(pairs: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    pairs
        .iter()
        .filter(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The fetcher.

#[tokio::test]
async fn plain_http_is_refused_unless_loopback_is_allowed() {
    let server = world().await;
    let error = fails(Fetcher::upstream(strict()).get(&server.url(PRM_PATH), LIMIT)).await;
    assert_matches!(error, FetchError::InsecureUrl { .. });
    assert!(server.received().is_empty());

    let fetched = succeeds(Fetcher::upstream(local()).get(&server.url(PRM_PATH), LIMIT)).await;
    assert_eq!(fetched.status, StatusCode::OK);
}

#[tokio::test]
async fn forbidden_addresses_are_refused_before_any_connection() {
    // Each of these would hang or fail differently if a connection were tried: with a short
    // deadline, a timeout or a connect error would show it. The refusal names the rule.
    let cases = [
        ("10.0.0.1", AddressRange::Private),
        ("169.254.169.254", AddressRange::LinkLocal),
        ("[fe80::1]", AddressRange::LinkLocal),
        ("[::ffff:169.254.169.254]", AddressRange::LinkLocal),
        ("[::ffff:10.0.0.1]", AddressRange::Private),
        ("0.0.0.0", AddressRange::ThisNetwork),
        ("100.64.0.1", AddressRange::SharedAddressSpace),
        ("192.168.0.1", AddressRange::Private),
        ("172.16.0.1", AddressRange::Private),
        ("[fd00::1]", AddressRange::UniqueLocal),
        ("[::]", AddressRange::Unspecified),
        ("224.0.0.1", AddressRange::Multicast),
        ("255.255.255.255", AddressRange::Broadcast),
    ];
    for reach in [strict(), local()] {
        let fetcher = Fetcher::upstream(reach).with_timeout(Duration::from_millis(500));
        let schemes: &[&str] = if reach.allow_loopback {
            &["https", "http"]
        } else {
            &["https"]
        };
        for scheme in schemes {
            for (host, expected) in cases {
                let target = url(&format!("{scheme}://{host}/latest/meta-data/"));
                let error = fails(fetcher.get(&target, LIMIT)).await;
                assert_matches!(
                    error,
                    FetchError::ForbiddenAddress { range, .. } if range == expected,
                    "{target}"
                );
                assert!(error.to_string().starts_with("refused `"), "{error}");
            }
        }
    }
    let error = fails(Fetcher::upstream(strict()).get(&url("https://127.0.0.1/x"), LIMIT)).await;
    assert_matches!(
        error,
        FetchError::ForbiddenAddress {
            range: AddressRange::Loopback,
            ..
        }
    );
    assert_eq!(
        error.to_string(),
        "refused `https://127.0.0.1/x`: it leads to 127.0.0.1, a loopback address, allowed \
         only with `allow_loopback` (local development)"
    );
}

#[tokio::test]
async fn names_are_checked_by_what_they_resolve_to_and_metadata_names_not_at_all() {
    let server = Scripted::start_tls().await;
    server.reply("/doc", Reply::json(&json!({})));
    let port = server.url("/").port().unwrap();
    let by_name = url(&format!("https://localhost:{port}/doc"));

    let error = fails(Fetcher::upstream(strict()).get(&by_name, LIMIT)).await;
    assert_matches!(
        error,
        FetchError::ForbiddenAddress {
            range: AddressRange::Loopback,
            ..
        }
    );
    assert!(server.received().is_empty());

    // Allowed, the vetted address is the one connected to, and TLS checks the name.
    let fetcher = Fetcher::upstream(local()).with_extra_roots(test_ca());
    let fetched = succeeds(fetcher.get(&by_name, LIMIT)).await;
    assert_eq!(fetched.status, StatusCode::OK);

    for host in ["metadata.google.internal", "metadata", "instance-data"] {
        let error =
            fails(fetcher.get(&url(&format!("https://{host}/computeMetadata/")), LIMIT)).await;
        assert_matches!(error, FetchError::MetadataHost { .. });
    }
}

#[tokio::test]
async fn redirects_are_checked_hop_by_hop() {
    let server = world().await;
    server.reply(
        "/to-metadata",
        Reply::redirect(
            StatusCode::FOUND,
            "http://169.254.169.254/latest/meta-data/",
        ),
    );
    server.reply(
        "/to-private",
        Reply::redirect(StatusCode::TEMPORARY_REDIRECT, "https://10.0.0.1/x"),
    );
    server.reply("/to-loopback", Reply::redirect(StatusCode::FOUND, PRM_PATH));
    let fetcher = Fetcher::upstream(local()).with_timeout(Duration::from_secs(2));

    let error = fails(fetcher.get(&server.url("/to-metadata"), LIMIT)).await;
    assert_matches!(
        &error,
        FetchError::ForbiddenAddress { url, range: AddressRange::LinkLocal, .. }
            if url == "http://169.254.169.254/latest/meta-data/"
    );
    // From http, a redirect to https changes the scheme, refused as such.
    let error = fails(fetcher.get(&server.url("/to-private"), LIMIT)).await;
    assert_matches!(error, FetchError::Redirect { .. });
    let fetched = succeeds(fetcher.get(&server.url("/to-loopback"), LIMIT)).await;
    assert_eq!(fetched.status, StatusCode::OK);

    // Over https, the redirect keeps its scheme and the address rule refuses the hop.
    let tls = Scripted::start_tls().await;
    tls.reply(
        "/to-private",
        Reply::redirect(StatusCode::FOUND, "https://10.0.0.1/x"),
    );
    tls.reply(
        "/to-metadata",
        Reply::redirect(
            StatusCode::MOVED_PERMANENTLY,
            "https://[::ffff:169.254.169.254]/",
        ),
    );
    let fetcher = fetcher.with_extra_roots(test_ca());
    let error = fails(fetcher.get(&tls.url("/to-private"), LIMIT)).await;
    assert_matches!(
        error,
        FetchError::ForbiddenAddress {
            range: AddressRange::Private,
            ..
        }
    );
    let error = fails(fetcher.get(&tls.url("/to-metadata"), LIMIT)).await;
    assert_matches!(
        error,
        FetchError::ForbiddenAddress {
            range: AddressRange::LinkLocal,
            ..
        }
    );
    assert_eq!(tls.paths(), ["/to-private", "/to-metadata"]);
}

#[tokio::test]
async fn at_most_three_redirects_are_followed() {
    let server = world().await;
    for (from, to) in [
        ("/r1", "/r2"),
        ("/r2", "/r3"),
        ("/r3", "/r4"),
        ("/r4", "/doc"),
    ] {
        server.reply(from, Reply::redirect(StatusCode::FOUND, to));
    }
    server.reply("/doc", Reply::json(&json!({"ok": true})));
    let fetcher = Fetcher::upstream(local());

    let fetched = succeeds(fetcher.get(&server.url("/r2"), LIMIT)).await;
    assert_eq!(fetched.status, StatusCode::OK);
    let error = fails(fetcher.get(&server.url("/r1"), LIMIT)).await;
    assert_matches!(error, FetchError::TooManyRedirects { limit: 3, .. });
}

#[tokio::test]
async fn bodies_over_the_limit_are_refused() {
    let server = world().await;
    server.reply(
        "/huge",
        Reply::json(&json!({ "padding": "x".repeat(200 * 1024) })),
    );
    let error = fails(Fetcher::upstream(local()).get(&server.url("/huge"), LIMIT)).await;
    assert_matches!(error, FetchError::TooLarge { limit: LIMIT, .. });
}

#[tokio::test]
async fn errors_show_urls_without_their_query() {
    let server = world().await;
    let with_code = server.url("/cb?code=code-secret-77&state=abc");
    let error = fails(Fetcher::upstream(strict()).get(&with_code, LIMIT)).await;
    assert_hides(&error, "code-secret-77");
}

// ---------------------------------------------------------------------------------------------
// The challenge.

#[test]
fn challenges_are_parsed_with_quoting_escapes_and_several_schemes() {
    let metadata = "https://mcp.example.com/.well-known/oauth-protected-resource/mcp";
    let cases: Vec<(&str, Challenge)> = vec![
        (
            r#"Bearer resource_metadata="https://mcp.example.com/.well-known/oauth-protected-resource/mcp""#,
            Challenge {
                resource_metadata: Some(url(metadata)),
                ..Challenge::default()
            },
        ),
        (
            r#"Bearer error="insufficient_scope", scope="files:read files:write", resource_metadata="https://mcp.example.com/.well-known/oauth-protected-resource/mcp""#,
            Challenge {
                resource_metadata: Some(url(metadata)),
                scope: Some(scopes(&["files:read", "files:write"])),
                error: Some("insufficient_scope".to_owned()),
            },
        ),
        (
            // Several challenges, a token68 one first; scheme and names case-insensitive;
            // a token value; escapes inside a quoted string.
            r#"Basic YWxhZGRpbjpvcGVuc2VzYW1l==, Negotiate, BEARER realm="a \"quoted\" realm, with comma", Error=invalid_token, scope="mcp""#,
            Challenge {
                resource_metadata: None,
                scope: Some(scopes(&["mcp"])),
                error: Some("invalid_token".to_owned()),
            },
        ),
        (
            r#"Basic realm="x", Bearer resource_metadata="https://mcp.example.com/.well-known/oauth-protected-resource/mcp", DPoP algs="ES256""#,
            Challenge {
                resource_metadata: Some(url(metadata)),
                ..Challenge::default()
            },
        ),
        (
            // Escaped characters in a URL.
            r#"Bearer resource_metadata="https://mcp.example.com/.well-known/oauth-protected-resource/m\cp""#,
            Challenge {
                resource_metadata: Some(url(metadata)),
                ..Challenge::default()
            },
        ),
        (
            // The first Bearer challenge counts; a parameter given twice is ambiguous.
            r#"Bearer scope="a", scope="b", error="invalid_token", Bearer scope="c""#,
            Challenge {
                error: Some("invalid_token".to_owned()),
                ..Challenge::default()
            },
        ),
        (
            // A scope list with an invalid token is not read; nor is a relative URL.
            r#"Bearer scope="mcp bad\"scope", resource_metadata="/relative""#,
            Challenge::default(),
        ),
        (
            // Malformed after the first parameter: what came before stands.
            r#"Bearer error="invalid_token", scope="unterminated"#,
            Challenge {
                error: Some("invalid_token".to_owned()),
                ..Challenge::default()
            },
        ),
        ("Basic realm=\"x\"", Challenge::default()),
        ("", Challenge::default()),
        ("Bearer", Challenge::default()),
        (",,, ,", Challenge::default()),
        ("Bearer =x", Challenge::default()),
    ];
    for (header, expected) in cases {
        assert_eq!(parse_www_authenticate(header), expected, "{header}");
    }
}

// ---------------------------------------------------------------------------------------------
// Discovery.

#[test]
fn the_canonical_resource_is_lowercase_without_default_port_or_fragment() {
    for (upstream, canonical) in [
        ("https://MCP.Example.COM/mcp", "https://mcp.example.com/mcp"),
        (
            "HTTPS://mcp.example.com:443/mcp",
            "https://mcp.example.com/mcp",
        ),
        (
            "https://mcp.example.com:8443/mcp",
            "https://mcp.example.com:8443/mcp",
        ),
        (
            "https://mcp.example.com/mcp#part",
            "https://mcp.example.com/mcp",
        ),
        ("https://mcp.example.com/", "https://mcp.example.com"),
        ("https://mcp.example.com", "https://mcp.example.com"),
        (
            "https://mcp.example.com/server/mcp/",
            "https://mcp.example.com/server/mcp/",
        ),
        (
            "https://mcp.example.com/Case/MCP",
            "https://mcp.example.com/Case/MCP",
        ),
        ("http://127.0.0.1:80/mcp", "http://127.0.0.1/mcp"),
    ] {
        assert_eq!(
            canonical_resource(&url(upstream)).unwrap(),
            canonical,
            "{upstream}"
        );
    }
    assert!(canonical_resource(&url("ftp://mcp.example.com/mcp")).is_err());
}

#[tokio::test]
async fn discovery_reads_the_metadata_the_challenge_names() {
    let server = world().await;
    let base = server.base.clone();
    serve_prm(&server, "/custom-prm", &base);
    let header = format!(r#"Bearer resource_metadata="{base}/custom-prm", scope="mcp tools:call""#);
    let challenge = parse_www_authenticate(&header);

    let discovered = succeeds(discover(&server.url("/mcp"), Some(&challenge), local())).await;

    assert_eq!(server.paths(), ["/custom-prm", AS_PATH]);
    assert_eq!(discovered.resource(), format!("{base}/mcp"));
    assert_eq!(discovered.scopes(), scopes(&["mcp", "tools:call"]));
    assert_eq!(
        discovered.resource_metadata_url(),
        &server.url("/custom-prm")
    );
    assert_eq!(
        discovered.authorization_server_metadata_url(),
        &server.url(AS_PATH)
    );
    let metadata = discovered.authorization_server();
    assert_eq!(metadata.issuer, base);
    assert_eq!(metadata.token_endpoint, server.url("/token"));
    assert_eq!(
        metadata.authorization_endpoint,
        Some(server.url("/authorize"))
    );
    assert_eq!(metadata.revocation_endpoint, Some(server.url("/revoke")));
    assert_eq!(
        metadata.registration_endpoint,
        Some(server.url("/register"))
    );
    assert_eq!(
        metadata.scopes_supported.as_deref(),
        Some(scopes(&["mcp", "files.read"]).as_slice())
    );
    assert!(
        metadata
            .grant_types_supported
            .as_ref()
            .unwrap()
            .contains(&"refresh_token".to_owned())
    );
}

#[tokio::test]
async fn the_probe_finds_the_challenge_of_an_upstream_that_wants_a_token() {
    let server = Scripted::start().await;
    let base = server.base.clone();
    serve_prm(&server, "/custom-prm", &base);
    serve_metadata(&server, |_| {});
    let header = format!(r#"Bearer resource_metadata="{base}/custom-prm", scope="mcp""#);
    server.reply("/mcp", Reply::challenge(StatusCode::UNAUTHORIZED, &header));
    let challenge = probe_challenge(&server.url("/mcp"), local()).await.unwrap();
    assert_eq!(challenge.resource_metadata, Some(server.url("/custom-prm")));
    // Only the challenge leads to that metadata: the well-known URLs have none.
    let discovered = succeeds(discover(&server.url("/mcp"), Some(&challenge), local())).await;
    assert_eq!(
        discovered.resource_metadata_url(),
        &server.url("/custom-prm")
    );
    assert_matches!(
        discovery_error(&server).await,
        ClientError::ResourceMetadataNotFound { .. }
    );
    // An upstream that opens the stream without a token, or is unreachable: no challenge,
    // and nothing is fetched but the probe.
    let open = Scripted::start().await;
    open.reply("/mcp", Reply::status(StatusCode::OK));
    assert!(probe_challenge(&open.url("/mcp"), local()).await.is_none());
    assert_eq!(open.paths(), ["/mcp"]);
    assert!(
        probe_challenge(&url("http://127.0.0.1:1/mcp"), local())
            .await
            .is_none()
    );
    // The probe is under the fetcher's rules: a metadata address is never asked.
    assert!(
        probe_challenge(&url("http://169.254.169.254/mcp"), local())
            .await
            .is_none()
    );
}

#[tokio::test]
async fn without_a_challenge_the_path_then_the_root_well_known_url_is_tried() {
    let server = Scripted::start().await;
    let base = server.base.clone();
    serve_prm(&server, PRM_ROOT, &base);
    serve_metadata(&server, |_| {});

    let discovered = discovered(&server).await;

    assert_eq!(server.paths(), [PRM_PATH, PRM_ROOT, AS_PATH]);
    // No scope in a challenge: the metadata's.
    assert_eq!(discovered.scopes(), scopes(&["mcp", "files.read"]));

    let nothing = Scripted::start().await;
    let error = discovery_error(&nothing).await;
    assert_matches!(error, ClientError::ResourceMetadataNotFound { .. });
}

#[tokio::test]
async fn metadata_for_another_resource_is_refused() {
    let server = world().await;
    let base = server.base.clone();
    for resource in [
        format!("{base}/other"),
        format!("{base}/mcp/"),
        "https://evil.example.com/mcp".to_owned(),
        "not a url".to_owned(),
    ] {
        server.reply(PRM_PATH, Reply::json(&prm(&resource, &base)));
        let error = discovery_error(&server).await;
        assert_matches!(
            &error,
            ClientError::ResourceMismatch { found, .. } if *found == resource,
            "{resource}"
        );
    }
    // The same resource written differently is the same resource.
    let port = server.url("/").port().unwrap();
    server.reply(
        PRM_PATH,
        Reply::json(&prm(&format!("HTTP://127.0.0.1:{port}/mcp"), &base)),
    );
    assert!(
        bounded(discover(&server.url("/mcp"), None, local()))
            .await
            .is_ok()
    );
    // No authorization server named.
    server.reply(
        PRM_PATH,
        Reply::json(&json!({ "resource": format!("{base}/mcp") })),
    );
    let error = discovery_error(&server).await;
    assert_matches!(error, ClientError::NoAuthorizationServer { .. });
}

#[tokio::test]
async fn authorization_server_metadata_must_name_exactly_its_issuer() {
    let server = world().await;
    let base = server.base.clone();
    for advertised in [format!("{base}/"), "https://evil.example.com".to_owned()] {
        server.reply(AS_PATH, Reply::json(&as_metadata(&advertised, &base)));
        server.reply(OIDC_PATH, Reply::json(&as_metadata(&base, &base)));
        let error = discovery_error(&server).await;
        assert_matches!(&error, ClientError::IssuerMismatch { found, .. } if *found == advertised);
    }
    // The first document found decides: no falling through to the OpenID one.
    assert!(!server.paths().contains(&OIDC_PATH.to_owned()));
}

#[tokio::test]
async fn a_server_without_s256_is_refused() {
    let server = world().await;
    for methods in [Some(json!(["plain"])), Some(json!([])), None] {
        serve_metadata(&server, |metadata| match methods {
            Some(methods) => metadata["code_challenge_methods_supported"] = methods,
            None => remove(metadata, "code_challenge_methods_supported"),
        });
        let error = discovery_error(&server).await;
        assert_matches!(error, ClientError::NoPkce { .. });
    }
}

#[tokio::test]
async fn authorization_server_metadata_is_looked_for_in_the_mcp_order() {
    // An issuer with a path: RFC 8414 inserted, OpenID inserted, OpenID appended.
    let server = Scripted::start().await;
    let base = server.base.clone();
    let issuer = format!("{base}/tenant1");
    serve_prm(&server, PRM_PATH, &issuer);
    server.reply(
        "/tenant1/.well-known/openid-configuration",
        Reply::json(&as_metadata(&issuer, &base)),
    );
    let discovered = discovered(&server).await;
    assert_eq!(
        server.paths(),
        [
            PRM_PATH,
            "/.well-known/oauth-authorization-server/tenant1",
            "/.well-known/openid-configuration/tenant1",
            "/tenant1/.well-known/openid-configuration",
        ]
    );
    assert_eq!(discovered.authorization_server().issuer, issuer);

    // An issuer without one: RFC 8414, then OpenID.
    let server = Scripted::start().await;
    let base = server.base.clone();
    serve_prm(&server, PRM_PATH, &base);
    server.reply(OIDC_PATH, Reply::json(&as_metadata(&base, &base)));
    self::discovered(&server).await;
    assert_eq!(server.paths(), [PRM_PATH, AS_PATH, OIDC_PATH]);
}

#[tokio::test]
async fn every_url_discovery_follows_is_under_the_fetcher_rules() {
    // A challenge pointing at the metadata service.
    let server = world().await;
    let challenge = parse_www_authenticate(
        r#"Bearer resource_metadata="http://169.254.169.254/latest/meta-data/iam""#,
    );
    let error = fails(discover(&server.url("/mcp"), Some(&challenge), local())).await;
    assert_matches!(
        error,
        ClientError::Fetch(FetchError::ForbiddenAddress {
            range: AddressRange::LinkLocal,
            ..
        })
    );
    assert!(server.received().is_empty());

    // An authorization server on the private network.
    let base = server.base.clone();
    serve_prm(&server, PRM_PATH, "https://10.1.2.3");
    let error = discovery_error(&server).await;
    assert_matches!(
        error,
        ClientError::Fetch(FetchError::ForbiddenAddress {
            range: AddressRange::Private,
            ..
        })
    );

    // Endpoints over plain http to somewhere else, or not http at all.
    serve_prm(&server, PRM_PATH, &base);
    for (name, value) in [
        ("token_endpoint", "http://as.example.com/token"),
        ("authorization_endpoint", "javascript:alert(1)"),
        ("revocation_endpoint", "https://as.example.com/revoke#x"),
    ] {
        serve_metadata(&server, |metadata| metadata[name] = json!(value));
        let error = discovery_error(&server).await;
        assert_matches!(
            &error,
            ClientError::InvalidEndpoint { endpoint, .. } if *endpoint == name,
            "{name}"
        );
    }
    serve_metadata(&server, |metadata| remove(metadata, "token_endpoint"));
    let error = discovery_error(&server).await;
    assert_matches!(error, ClientError::MissingEndpoint { .. });
}

// ---------------------------------------------------------------------------------------------
// The grants.

#[tokio::test]
async fn the_authorization_url_carries_pkce_state_resource_redirect_and_scope() {
    let server = world().await;
    let (client, discovered) = client(&server).await;

    let (authorization_url, pending) = client
        .authorization_request(&scopes(&["mcp", "files.read"]), discovered.resource())
        .unwrap();

    assert_eq!(
        authorization_url.as_str().split('?').next().unwrap(),
        server.url("/authorize").as_str()
    );
    let pairs = query(&authorization_url);
    assert_eq!(param(&pairs, "response_type"), ["code"]);
    assert_eq!(param(&pairs, "client_id"), [CLIENT_ID]);
    assert_eq!(param(&pairs, "code_challenge_method"), ["S256"]);
    assert_eq!(param(&pairs, "redirect_uri"), [REDIRECT_URI]);
    assert_eq!(param(&pairs, "scope"), ["mcp files.read"]);
    assert_eq!(param(&pairs, "resource"), [discovered.resource()]);
    assert_eq!(param(&pairs, "state"), [pending.state.as_str()]);
    // 32 random bytes, base64url: 256 bits.
    assert!(pending.state.len() >= 43, "{}", pending.state);
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(pending.verifier().as_bytes()));
    assert_eq!(param(&pairs, "code_challenge"), [challenge.as_str()]);

    assert!(pending.matches_state(&pending.state.clone()));
    assert!(!pending.matches_state("forged"));
    assert!(!pending.matches_state(""));
    let (_, other) = client
        .authorization_request(&[], discovered.resource())
        .unwrap();
    assert_ne!(other.state, pending.state);
    assert_ne!(other.verifier(), pending.verifier());

    // Scopes that would smuggle another parameter or scope are refused.
    for bad in ["mcp files", "a\"b", ""] {
        let error = client
            .authorization_request(&scopes(&[bad]), discovered.resource())
            .unwrap_err();
        assert_matches!(error, ClientError::InvalidScope { .. });
    }
    let error = client
        .authorization_request(&[], "https://mcp.example.com/mcp#frag")
        .unwrap_err();
    assert_matches!(error, ClientError::InvalidResource { .. });
}

#[tokio::test]
async fn the_code_exchange_sends_the_verifier_and_the_resource() {
    let server = world().await;
    let (client, discovered) = client(&server).await;
    let (_, pending) = client
        .authorization_request(&scopes(&["mcp"]), discovered.resource())
        .unwrap();
    let verifier = pending.verifier().to_owned();
    server.reply("/token", token_reply("at-1", Some("rt-1")));

    let tokens = succeeds(client.exchange_code(pending, "code-1", discovered.resource())).await;

    assert_eq!(tokens.access_token.expose(), "at-1");
    assert_eq!(tokens.refresh_token.as_ref().unwrap().expose(), "rt-1");
    assert_eq!(tokens.expires_in, Some(Duration::from_secs(3600)));
    assert_eq!(tokens.scopes, Some(scopes(&["mcp", "files.read"])));
    assert_eq!(tokens.token_type, "Bearer");
    let sent = server.last("/token");
    assert_eq!(sent.method, "POST");
    assert_eq!(sent.field("grant_type"), Some("authorization_code"));
    assert_eq!(sent.field("code"), Some("code-1"));
    assert_eq!(sent.field("code_verifier"), Some(verifier.as_str()));
    assert_eq!(sent.field("redirect_uri"), Some(REDIRECT_URI));
    assert_eq!(sent.field("resource"), Some(discovered.resource()));
    assert_eq!(sent.field("client_secret"), None);
    assert_basic_auth(&sent);
}

#[tokio::test]
async fn a_refresh_sends_the_token_resource_and_scope() {
    let server = world().await;
    let (client, discovered) = client(&server).await;
    server.reply("/token", token_reply("at-2", None));

    let tokens =
        succeeds(client.refresh("rt-1", discovered.resource(), Some(&scopes(&["mcp"])))).await;

    assert_eq!(tokens.access_token.expose(), "at-2");
    assert!(tokens.refresh_token.is_none());
    let sent = server.last("/token");
    assert_eq!(sent.field("grant_type"), Some("refresh_token"));
    assert_eq!(sent.field("refresh_token"), Some("rt-1"));
    assert_eq!(sent.field("resource"), Some(discovered.resource()));
    assert_eq!(sent.field("scope"), Some("mcp"));

    succeeds(client.refresh("rt-1", discovered.resource(), None)).await;
    assert_eq!(server.last("/token").field("scope"), None);
}

#[tokio::test]
async fn invalid_grant_means_reauthorise_and_is_told_apart_from_the_rest() {
    let server = world().await;
    let (client, discovered) = client(&server).await;
    let resource = discovered.resource();

    server.reply(
        "/token",
        oauth_error("invalid_grant", "refresh token expired"),
    );
    let error = fails(client.refresh("rt-1", resource, None)).await;
    assert!(error.requires_reauthorization(), "{error}");
    assert!(!error.is_transport());
    assert_eq!(
        error.to_string(),
        format!(
            "the authorization server at `{}` refused the grant (`invalid_grant`: refresh token \
             expired): it was revoked or has expired, re-authorise",
            server.url("/token")
        )
    );

    server.reply("/token", oauth_error("invalid_client", "unknown client"));
    let error = fails(client.refresh("rt-1", resource, None)).await;
    assert_matches!(&error, ClientError::Refused { error, .. } if error == "invalid_client");
    assert!(!error.requires_reauthorization());

    server.reply(
        "/token",
        Reply::text(StatusCode::BAD_GATEWAY, "<html>down</html>"),
    );
    let error = fails(client.refresh("rt-1", resource, None)).await;
    assert_matches!(error, ClientError::Status { status: 502, .. });

    server.reply(
        "/token",
        Reply::redirect(StatusCode::TEMPORARY_REDIRECT, "/token2"),
    );
    let error = fails(client.refresh("rt-1", resource, None)).await;
    assert_matches!(error, ClientError::Fetch(FetchError::RedirectedPost { .. }));
    assert!(error.is_transport());
    assert!(!server.paths().contains(&"/token2".to_owned()));

    // Nothing listening: a transport error, not a re-authorisation.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let (gone, _) = client_with(&server, |metadata| {
        metadata["token_endpoint"] = json!(format!("http://{closed}/token"));
    })
    .await;
    let error = fails(gone.refresh("rt-1", resource, None)).await;
    assert!(
        error.is_transport() && !error.requires_reauthorization(),
        "{error}"
    );
}

#[tokio::test]
async fn revocation_sends_the_token_and_its_hint() {
    let server = world().await;
    let (client, _) = client(&server).await;
    server.reply("/revoke", Reply::status(StatusCode::OK));

    let revoked = succeeds(client.revoke("rt-1", TokenHint::RefreshToken)).await;

    assert_eq!(revoked, Revoked::Revoked);
    let sent = server.last("/revoke");
    assert_eq!(sent.method, "POST");
    assert_eq!(sent.field("token"), Some("rt-1"));
    assert_eq!(sent.field("token_type_hint"), Some("refresh_token"));
    assert_basic_auth(&sent);

    succeeds(client.revoke("at-1", TokenHint::AccessToken)).await;
    assert_eq!(
        server.last("/revoke").field("token_type_hint"),
        Some("access_token")
    );

    server.reply(
        "/revoke",
        oauth_error("unsupported_token_type", "access tokens live on"),
    );
    let revoked = succeeds(client.revoke("at-1", TokenHint::AccessToken)).await;
    assert_eq!(revoked, Revoked::NotSupported);

    // No revocation endpoint: nothing is sent.
    let (without, _) =
        client_with(&server, |metadata| remove(metadata, "revocation_endpoint")).await;
    let before = server.received().len();
    let revoked = succeeds(without.revoke("rt-1", TokenHint::RefreshToken)).await;
    assert_eq!(revoked, Revoked::NotSupported);
    assert_eq!(server.received().len(), before);
}

#[tokio::test]
async fn token_exchange_sends_the_rfc_8693_fields() {
    let server = world().await;
    let (client, discovered) = client(&server).await;
    server.reply(
        "/token",
        Reply::json(&json!({
            "access_token": "at-exchanged",
            "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
            "token_type": "Bearer",
            "expires_in": 300,
        })),
    );

    let tokens = succeeds(client.exchange_token(
        "subject-1",
        discovered.resource(),
        &scopes(&["mcp", "files.read"]),
    ))
    .await;

    assert_eq!(tokens.access_token.expose(), "at-exchanged");
    assert_eq!(tokens.expires_in, Some(Duration::from_secs(300)));
    assert_eq!(tokens.token_type, "Bearer");
    let sent = server.last("/token");
    assert_eq!(
        sent.field("grant_type"),
        Some("urn:ietf:params:oauth:grant-type:token-exchange")
    );
    assert_eq!(sent.field("subject_token"), Some("subject-1"));
    assert_eq!(
        sent.field("subject_token_type"),
        Some("urn:ietf:params:oauth:token-type:access_token")
    );
    assert_eq!(
        sent.field("requested_token_type"),
        Some("urn:ietf:params:oauth:token-type:access_token")
    );
    assert_eq!(sent.field("resource"), Some(discovered.resource()));
    assert_eq!(sent.field("scope"), Some("mcp files.read"));
    assert_basic_auth(&sent);

    server.reply(
        "/token",
        oauth_error("invalid_grant", "subject token expired"),
    );
    let error = fails(client.exchange_token("subject-1", discovered.resource(), &[])).await;
    assert!(error.requires_reauthorization(), "{error}");

    server.reply(
        "/token",
        Reply::json(&json!({
            "access_token": "an-id-token",
            "issued_token_type": "urn:ietf:params:oauth:token-type:id_token",
            "token_type": "N_A",
        })),
    );
    let error = fails(client.exchange_token("subject-1", discovered.resource(), &[])).await;
    assert_matches!(error, ClientError::InvalidTokenResponse { .. });
}

#[tokio::test]
async fn client_credentials_send_the_grant_scope_and_resource() {
    let server = world().await;
    let (client, discovered) = client(&server).await;
    server.reply("/token", token_reply("at-machine", None));

    let tokens =
        succeeds(client.client_credentials(&scopes(&["mcp"]), discovered.resource())).await;

    assert_eq!(tokens.access_token.expose(), "at-machine");
    let sent = server.last("/token");
    assert_eq!(sent.field("grant_type"), Some("client_credentials"));
    assert_eq!(sent.field("scope"), Some("mcp"));
    assert_eq!(sent.field("resource"), Some(discovered.resource()));
    assert_basic_auth(&sent);
}

#[tokio::test]
async fn public_clients_and_post_only_servers_authenticate_in_the_body() {
    let server = world().await;
    let discovered = discovered(&server).await;
    server.reply("/token", token_reply("at-1", None));
    server.reply("/revoke", Reply::status(StatusCode::OK));

    let public = OAuthClient::new(&discovered, registration(&server, None), local()).unwrap();
    succeeds(public.refresh("rt-1", discovered.resource(), None)).await;
    succeeds(public.revoke("rt-1", TokenHint::RefreshToken)).await;
    for path in ["/token", "/revoke"] {
        let sent: Received = server.last(path);
        assert_eq!(sent.authorization, None, "{path}");
        assert_eq!(sent.field("client_id"), Some(CLIENT_ID), "{path}");
        assert_eq!(sent.field("client_secret"), None, "{path}");
    }

    let (post, discovered) = client_with(&server, |metadata| {
        metadata["token_endpoint_auth_methods_supported"] = json!(["client_secret_post"]);
    })
    .await;
    succeeds(post.refresh("rt-1", discovered.resource(), None)).await;
    succeeds(post.exchange_token("subject-1", discovered.resource(), &[])).await;
    for sent in server
        .received()
        .iter()
        .rev()
        .filter(|sent| sent.path == "/token")
        .take(2)
    {
        assert_eq!(sent.authorization, None);
        assert_eq!(sent.field("client_id"), Some(CLIENT_ID));
        assert_eq!(sent.field("client_secret"), Some(CLIENT_SECRET));
    }
}

#[tokio::test]
async fn a_registration_is_used_only_with_its_own_issuer() {
    let server = world().await;
    let discovered = discovered(&server).await;
    let mut registration = registration(&server, Some(CLIENT_SECRET));
    registration.issuer = "https://as.example.com".to_owned();

    let error = OAuthClient::new(&discovered, registration, local()).unwrap_err();

    assert_matches!(error, ClientError::UnregisteredIssuer { .. });
    assert_hides(&error, CLIENT_SECRET);

    // An authorization endpoint that presets one of our parameters is refused too.
    let base = server.base.clone();
    serve_metadata(&server, |metadata| {
        metadata["authorization_endpoint"] = json!(format!(
            "{base}/authorize?redirect_uri=https://evil.example.com/cb"
        ));
    });
    let discovered = self::discovered(&server).await;
    let error =
        OAuthClient::new(&discovered, self::registration(&server, None), local()).unwrap_err();
    assert_matches!(error, ClientError::InvalidEndpoint { .. });

    // A client whose fetcher is stricter than discovery's refuses the loopback endpoints.
    serve_metadata(&server, |_| {});
    let discovered = self::discovered(&server).await;
    let error =
        OAuthClient::new(&discovered, self::registration(&server, None), strict()).unwrap_err();
    assert_matches!(error, ClientError::InvalidEndpoint { .. });
}

#[tokio::test]
async fn no_secret_appears_in_any_error_or_debug() {
    let server = world().await;
    let (client, discovered) = client(&server).await;
    let resource = discovered.resource();
    let (_, pending) = client.authorization_request(&[], resource).unwrap();
    let verifier = pending.verifier().to_owned();
    let code = "code-secret-4471";
    let refresh = "rt-secret-9923";
    let subject = "subject-secret-1187";
    let access = "at-secret-5531";
    let secrets = [
        CLIENT_SECRET,
        verifier.as_str(),
        code,
        refresh,
        subject,
        access,
    ];
    let mut shown: Vec<String> = Vec::new();
    let mut show = |error: ClientError| {
        shown.push(error.to_string());
        shown.push(format!("{error:?}"));
    };

    // A server that echoes what it was sent.
    let echo = |sent: &[&str]| format!("got {CLIENT_SECRET} {}", sent.join(" "));
    server.reply(
        "/token",
        oauth_error("invalid_grant", &echo(&[code, &verifier])),
    );
    show(fails(client.exchange_code(pending, code, resource)).await);
    server.reply("/token", oauth_error("invalid_grant", &echo(&[refresh])));
    show(fails(client.refresh(refresh, resource, None)).await);
    server.reply("/token", oauth_error("invalid_grant", &echo(&[subject])));
    show(fails(client.exchange_token(subject, resource, &[])).await);
    server.reply("/revoke", oauth_error("invalid_request", &echo(&[refresh])));
    show(fails(client.revoke(refresh, TokenHint::RefreshToken)).await);
    server.reply(
        "/token",
        Reply::json_status(
            StatusCode::BAD_REQUEST,
            &json!({ "error": echo(&[refresh]) }),
        ),
    );
    show(fails(client.refresh(refresh, resource, None)).await);
    // Token responses we cannot read, with the token in them.
    for body in [
        json!({ "access_token": access, "token_type": 5 }),
        json!({ "access_token": access, "token_type": "bearer", "expires_in": access }),
        json!({ "access_token": [access], "token_type": "bearer" }),
        json!({ "token_type": access }),
    ] {
        server.reply("/token", Reply::json(&body));
        show(fails(client.refresh(refresh, resource, None)).await);
        show(fails(client.exchange_token(subject, resource, &[])).await);
    }
    server.reply(
        "/token",
        Reply::text(
            StatusCode::INTERNAL_SERVER_ERROR,
            &echo(&[refresh, subject]),
        ),
    );
    show(fails(client.refresh(refresh, resource, None)).await);
    show(fails(client.exchange_token(subject, resource, &[])).await);

    // And the values that hold secrets.
    server.reply("/token", token_reply(access, Some(refresh)));
    let tokens = succeeds(client.refresh(refresh, resource, None)).await;
    let (_, pending) = client.authorization_request(&[], resource).unwrap();
    let pending_verifier = pending.verifier().to_owned();
    shown.push(format!("{tokens:?}"));
    shown.push(format!("{pending:?}"));
    shown.push(format!("{client:?}"));
    shown.push(format!("{:?}", registration(&server, Some(CLIENT_SECRET))));

    assert!(shown.len() > 20);
    for text in &shown {
        for secret in secrets.iter().chain([&pending_verifier.as_str()]) {
            assert!(!text.contains(secret), "`{secret}` in {text}");
        }
    }
    assert!(
        shown.iter().any(|text| text.contains("[redacted]")),
        "{shown:#?}"
    );
    assert!(format!("{tokens:?}").contains("Secret(sha256:"));
}
