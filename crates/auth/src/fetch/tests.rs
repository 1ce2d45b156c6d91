//! The URL rules of every fetch: scheme, credentials, redirects.
#![expect(clippy::unwrap_used, reason = "tests")]

use super::*;

fn url(text: &str) -> Url {
    Url::parse(text).unwrap()
}

#[test]
fn https_always_and_http_only_when_allowed() {
    let cases = [
        ("https://idp.example.com/jwks", false, true),
        ("https://idp.example.com/jwks", true, true),
        ("http://127.0.0.1:9000/jwks", true, true),
        ("http://127.0.0.1:9000/jwks", false, false),
        ("ftp://idp.example.com/jwks", true, false),
        ("file:///etc/jwks.json", true, false),
        ("https://user:secret@idp.example.com/jwks", false, false),
        ("https://user@idp.example.com/jwks", false, false),
    ];
    for (text, allow_http, allowed) in cases {
        assert_eq!(
            check_url(&url(text), allow_http).is_ok(),
            allowed,
            "{text} allow_http={allow_http}"
        );
    }
}

#[test]
fn an_http_url_is_insecure_and_says_how_to_allow_it() {
    let error = check_url(&url("http://idp.example.com"), false).unwrap_err();
    assert_eq!(
        error.to_string(),
        "`http://idp.example.com/` must use https: plain http is allowed only with `allow_http` (loopback issuers)"
    );
}

#[test]
fn redirects_keep_their_scheme() {
    let https = url("https://idp.example.com/.well-known/openid-configuration");
    assert_eq!(
        redirect_target(&https, Some("/realms/a/.well-known/openid-configuration"))
            .unwrap()
            .as_str(),
        "https://idp.example.com/realms/a/.well-known/openid-configuration"
    );
    assert_eq!(
        redirect_target(&https, Some("https://other.example.com/x"))
            .unwrap()
            .as_str(),
        "https://other.example.com/x"
    );
    assert!(matches!(
        redirect_target(&https, Some("http://idp.example.com/x")),
        Err(AuthError::Redirect { .. })
    ));
    let http = url("http://127.0.0.1:9000/x");
    assert!(matches!(
        redirect_target(&http, Some("https://127.0.0.1:9001/x")),
        Err(AuthError::Redirect { .. })
    ));
    assert!(matches!(
        redirect_target(&https, None),
        Err(AuthError::Fetch { .. })
    ));
}

#[test]
fn only_real_redirects_are_followed() {
    for (status, followed) in [
        (StatusCode::MOVED_PERMANENTLY, true),
        (StatusCode::FOUND, true),
        (StatusCode::SEE_OTHER, true),
        (StatusCode::TEMPORARY_REDIRECT, true),
        (StatusCode::PERMANENT_REDIRECT, true),
        (StatusCode::NOT_MODIFIED, false),
        (StatusCode::MULTIPLE_CHOICES, false),
        (StatusCode::OK, false),
    ] {
        assert_eq!(is_followed_redirect(status), followed, "{status}");
    }
}
