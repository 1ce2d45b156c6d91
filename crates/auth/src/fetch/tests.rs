//! The URL rules of every fetch: scheme, credentials, redirects, and the addresses a URL an
//! upstream supplied may lead to.
#![expect(clippy::unwrap_used, reason = "tests")]

use std::net::IpAddr;

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
            check_url(&url(text), Destinations::Configured { allow_http }).is_ok(),
            allowed,
            "{text} allow_http={allow_http}"
        );
    }
}

#[test]
fn an_http_url_is_insecure_and_says_how_to_allow_it() {
    let error = check_url(
        &url("http://idp.example.com"),
        Destinations::Configured { allow_http: false },
    )
    .unwrap_err();
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
        Err(FetchError::Redirect { .. })
    ));
    let http = url("http://127.0.0.1:9000/x");
    assert!(matches!(
        redirect_target(&http, Some("https://127.0.0.1:9001/x")),
        Err(FetchError::Redirect { .. })
    ));
    assert!(matches!(
        redirect_target(&https, None),
        Err(FetchError::Fetch { .. })
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

#[test]
fn every_address_outside_the_public_internet_is_in_a_forbidden_range() {
    use AddressRange::*;
    let cases: &[(&str, Option<AddressRange>)] = &[
        ("0.0.0.0", Some(ThisNetwork)),
        ("0.1.2.3", Some(ThisNetwork)),
        ("10.0.0.1", Some(Private)),
        ("172.16.0.1", Some(Private)),
        ("172.31.255.255", Some(Private)),
        ("172.32.0.1", None),
        ("192.168.1.1", Some(Private)),
        ("100.64.0.1", Some(SharedAddressSpace)),
        ("100.127.255.255", Some(SharedAddressSpace)),
        ("100.128.0.1", None),
        ("127.0.0.1", Some(Loopback)),
        ("127.255.0.9", Some(Loopback)),
        ("169.254.169.254", Some(LinkLocal)),
        ("224.0.0.1", Some(Multicast)),
        ("255.255.255.255", Some(Broadcast)),
        ("240.0.0.1", Some(Reserved)),
        ("192.0.0.192", Some(Reserved)),
        ("198.18.0.1", Some(Reserved)),
        ("203.0.113.7", Some(Reserved)),
        ("93.184.215.14", None),
        ("1.1.1.1", None),
        ("::", Some(Unspecified)),
        ("::1", Some(Loopback)),
        ("fe80::1", Some(LinkLocal)),
        ("febf::1", Some(LinkLocal)),
        ("fc00::1", Some(UniqueLocal)),
        ("fd00:ec2::254", Some(UniqueLocal)),
        ("fec0::1", Some(UniqueLocal)),
        ("ff02::1", Some(Multicast)),
        ("2001:db8::1", Some(Reserved)),
        ("100::1", Some(Reserved)),
        // IPv4 in IPv6 clothing is judged as the IPv4 address it reaches.
        ("::ffff:169.254.169.254", Some(LinkLocal)),
        ("::ffff:10.0.0.1", Some(Private)),
        ("::ffff:127.0.0.1", Some(Loopback)),
        ("::ffff:0.0.0.0", Some(ThisNetwork)),
        ("::ffff:1.1.1.1", None),
        ("::10.0.0.1", Some(Private)),
        ("64:ff9b::a9fe:a9fe", Some(LinkLocal)),
        ("2002:a00:1::1", Some(Private)),
        ("2002:101:101::1", None),
        ("2606:4700:4700::1111", None),
    ];
    for (text, expected) in cases {
        let address: IpAddr = text.parse().unwrap();
        assert_eq!(forbidden_range(address), *expected, "{text}");
    }
}

#[test]
fn loopback_needs_allow_loopback_and_plain_http_needs_loopback() {
    let strict = Reach {
        allow_loopback: false,
    };
    let local = Reach {
        allow_loopback: true,
    };
    let loopback: IpAddr = "127.0.0.1".parse().unwrap();
    let public: IpAddr = "93.184.215.14".parse().unwrap();
    let https = url("https://as.example.com/token");
    let http = url("http://as.example.com/token");

    assert!(check_address(&https, public, strict).is_ok());
    assert!(matches!(
        check_address(&https, loopback, strict),
        Err(FetchError::ForbiddenAddress {
            range: AddressRange::Loopback,
            ..
        })
    ));
    assert!(check_address(&https, loopback, local).is_ok());
    assert!(check_address(&http, loopback, local).is_ok());
    assert!(matches!(
        check_address(&http, public, local),
        Err(FetchError::PlainHttpNotLoopback { .. })
    ));
    assert!(matches!(
        check_url(&http, Destinations::Upstream(strict)),
        Err(FetchError::InsecureUrl { .. })
    ));
    assert!(check_url(&http, Destinations::Upstream(local)).is_ok());
}

#[test]
fn metadata_service_names_are_known() {
    for host in [
        "metadata.google.internal",
        "metadata.google.internal.",
        "metadata",
        "instance-data.ec2.internal",
    ] {
        assert!(address::is_metadata_hostname(host), "{host}");
    }
    for host in ["example.com", "metadata.example.com", "internal"] {
        assert!(!address::is_metadata_hostname(host), "{host}");
    }
}

#[test]
fn urls_are_shown_without_query_fragment_or_credentials() {
    assert_eq!(
        shown(&url(
            "https://user:hunter2@as.example.com/cb?code=secret-code&state=s#frag"
        )),
        "https://as.example.com/cb"
    );
    let error = check_url(
        &url("https://user:hunter2@as.example.com/x?code=secret-code"),
        Destinations::Upstream(Reach::default()),
    )
    .unwrap_err()
    .to_string();
    assert!(
        !error.contains("hunter2") && !error.contains("secret-code"),
        "{error}"
    );
}
