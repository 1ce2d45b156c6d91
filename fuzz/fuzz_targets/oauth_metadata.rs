//! The metadata an upstream and its authorization server serve, read as discovery reads it:
//! RFC 9728 protected resource metadata (accepted only about the upstream itself) and RFC 8414
//! authorization server metadata (accepted only from the issuer named, with S256 PKCE, and
//! every endpoint https, or plain http to loopback when allowed, without fragment or
//! credentials). The same bytes go through both.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_auth::Reach;
use portcullis_auth::fuzzing::{authorization_server_metadata, resource_metadata};
use url::{Host, Url};

const RESOURCE: &str = "https://mcp.example/mcp";
const ISSUER: &str = "https://auth.example/tenant";

fn assert_endpoint(url: &Url, reach: Reach) {
    let loopback = match url.host() {
        Some(Host::Ipv4(address)) => address.is_loopback(),
        Some(Host::Ipv6(address)) => address.is_loopback(),
        Some(Host::Domain(domain)) => domain == "localhost",
        None => false,
    };
    assert!(
        url.scheme() == "https" || (url.scheme() == "http" && reach.allow_loopback && loopback),
        "{url}"
    );
    assert!(url.fragment().is_none(), "{url}");
    assert!(
        url.username().is_empty() && url.password().is_none(),
        "{url}"
    );
}

fuzz_target!(|data: &[u8]| {
    let at =
        Url::parse("https://mcp.example/.well-known/oauth-protected-resource/mcp").expect("a URL");
    if let Ok(document) = resource_metadata(&at, data, RESOURCE) {
        let about = Url::parse(&document.resource).expect("a URL");
        assert_eq!(about.host_str(), Some("mcp.example"), "{about}");
        assert_eq!(about.scheme(), "https", "{about}");
        assert_eq!(about.path(), "/mcp", "{about}");
        assert!(about.query().is_none(), "{about}");
    }
    let at = Url::parse("https://auth.example/.well-known/oauth-authorization-server/tenant")
        .expect("a URL");
    let reach = Reach {
        allow_loopback: data.len() % 2 == 1,
    };
    match authorization_server_metadata(&at, data, ISSUER, reach) {
        Ok(metadata) => {
            assert_eq!(metadata.issuer, ISSUER);
            assert!(
                metadata
                    .code_challenge_methods_supported
                    .iter()
                    .any(|m| m == "S256")
            );
            let endpoints = [
                metadata.authorization_endpoint.as_ref(),
                Some(&metadata.token_endpoint),
                metadata.revocation_endpoint.as_ref(),
                metadata.registration_endpoint.as_ref(),
            ];
            for endpoint in endpoints.into_iter().flatten() {
                assert_endpoint(endpoint, reach);
            }
        }
        Err(error) => {
            let _ = error.to_string();
        }
    }
});
