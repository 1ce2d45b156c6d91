//! Where the protected resource metadata lives (RFC 9728 §3.1) and what it says.
#![expect(clippy::unwrap_used, reason = "tests")]

use super::*;

#[test]
fn the_metadata_url_inserts_the_well_known_path_before_the_resource_path() {
    let cases = [
        (
            "http://127.0.0.1:8787/mcp",
            "http://127.0.0.1:8787/.well-known/oauth-protected-resource/mcp",
            Some("/.well-known/oauth-protected-resource/mcp"),
        ),
        (
            "https://mcp.example.com",
            "https://mcp.example.com/.well-known/oauth-protected-resource",
            None,
        ),
        (
            "https://mcp.example.com/",
            "https://mcp.example.com/.well-known/oauth-protected-resource",
            None,
        ),
        (
            "https://mcp.example.com:443/tenant/a/mcp",
            "https://mcp.example.com/.well-known/oauth-protected-resource/tenant/a/mcp",
            Some("/.well-known/oauth-protected-resource/tenant/a/mcp"),
        ),
        (
            "http://[::1]:9000/mcp",
            "http://[::1]:9000/.well-known/oauth-protected-resource/mcp",
            Some("/.well-known/oauth-protected-resource/mcp"),
        ),
        (
            "https://mcp.example.com/mcp?v=1",
            "https://mcp.example.com/.well-known/oauth-protected-resource/mcp?v=1",
            Some("/.well-known/oauth-protected-resource/mcp"),
        ),
    ];
    for (resource, url, path) in cases {
        let resource_url = Url::parse(resource).unwrap();
        let (found_url, found_path) = metadata_location(&resource_url).unwrap();
        assert_eq!(found_url, url, "{resource}");
        assert_eq!(found_path.as_deref(), path, "{resource}");
    }
}

#[test]
fn resources_that_cannot_be_served_are_refused() {
    for resource in [
        "https://mcp.example.com/mcp#part",
        "ftp://mcp.example.com/mcp",
        "urn:example:mcp",
        "http://127.0.0.1:8787/:id",
        "http://127.0.0.1:8787/mcp/*rest",
    ] {
        let resource_url = Url::parse(resource).unwrap();
        assert!(
            matches!(
                metadata_location(&resource_url),
                Err(AuthError::UnsupportedUrl { .. })
            ),
            "{resource}"
        );
    }
}

#[test]
fn the_document_names_the_resource_its_issuer_and_scopes() {
    let settings = ResourceServerSettings {
        issuer: "https://idp.example.com".to_owned(),
        resource: "https://mcp.example.com/mcp".to_owned(),
        required_scopes: Default::default(),
        scopes_supported: vec!["mcp".to_owned(), "files.read".to_owned()],
        claims: Default::default(),
        leeway_secs: 30,
        allow_http: false,
    };
    let endpoint = MetadataEndpoint::new(&settings).unwrap();
    assert_eq!(
        String::from_utf8(endpoint.body.to_vec()).unwrap(),
        r#"{"resource":"https://mcp.example.com/mcp","authorization_servers":["https://idp.example.com"],"scopes_supported":["mcp","files.read"],"bearer_methods_supported":["header"]}"#
    );

    let settings = ResourceServerSettings {
        scopes_supported: Vec::new(),
        ..settings
    };
    let endpoint = MetadataEndpoint::new(&settings).unwrap();
    assert_eq!(
        String::from_utf8(endpoint.body.to_vec()).unwrap(),
        r#"{"resource":"https://mcp.example.com/mcp","authorization_servers":["https://idp.example.com"],"bearer_methods_supported":["header"]}"#
    );
}
