//! Rejections as the client sees them: status, error code, and the exact challenge.

use super::*;

const METADATA_URL: &str = "http://127.0.0.1:8787/.well-known/oauth-protected-resource/mcp";

#[test]
fn each_reason_has_its_status_and_error_code() {
    let cases = [
        (RejectReason::MissingToken, 401, None),
        (RejectReason::NotBearer, 401, None),
        (RejectReason::Malformed, 401, Some("invalid_token")),
        (
            RejectReason::DisallowedAlgorithm,
            401,
            Some("invalid_token"),
        ),
        (RejectReason::MissingKeyId, 401, Some("invalid_token")),
        (RejectReason::UnknownKey, 401, Some("invalid_token")),
        (RejectReason::KeyMismatch, 401, Some("invalid_token")),
        (RejectReason::BadSignature, 401, Some("invalid_token")),
        (RejectReason::WrongIssuer, 401, Some("invalid_token")),
        (RejectReason::WrongAudience, 401, Some("invalid_token")),
        (RejectReason::Expired, 401, Some("invalid_token")),
        (RejectReason::NotYetValid, 401, Some("invalid_token")),
        (
            RejectReason::MissingClaim("sub"),
            401,
            Some("invalid_token"),
        ),
        (
            RejectReason::InvalidClaim("groups".to_owned()),
            401,
            Some("invalid_token"),
        ),
        (
            RejectReason::InsufficientScope,
            403,
            Some("insufficient_scope"),
        ),
    ];
    for (reason, status, error) in cases {
        let rejection = Rejection::new(reason.clone());
        assert_eq!(rejection.status().as_u16(), status, "{reason:?}");
        assert_eq!(
            rejection.error().map(BearerError::as_str),
            error,
            "{reason:?}"
        );
        let description = rejection.description();
        assert!(!description.ends_with('.'), "{description}");
        assert_eq!(description.to_lowercase(), description);
    }
}

#[test]
fn no_token_gets_the_bare_challenge() {
    let rejection = Rejection::new(RejectReason::MissingToken);
    assert_eq!(
        rejection.www_authenticate(METADATA_URL),
        "Bearer resource_metadata=\"http://127.0.0.1:8787/.well-known/oauth-protected-resource/mcp\""
    );
}

#[test]
fn an_invalid_token_gets_the_code_and_description() {
    let rejection = Rejection::new(RejectReason::Expired);
    assert_eq!(
        rejection.www_authenticate(METADATA_URL),
        "Bearer resource_metadata=\"http://127.0.0.1:8787/.well-known/oauth-protected-resource/mcp\", \
         error=\"invalid_token\", error_description=\"the token has expired\""
    );
}

#[test]
fn insufficient_scope_names_the_scopes_needed() {
    let rejection = Rejection::insufficient_scope(vec!["files.read".to_owned(), "mcp".to_owned()]);
    assert_eq!(rejection.required_scopes(), ["files.read", "mcp"]);
    assert_eq!(
        rejection.www_authenticate(METADATA_URL),
        "Bearer resource_metadata=\"http://127.0.0.1:8787/.well-known/oauth-protected-resource/mcp\", \
         error=\"insufficient_scope\", scope=\"files.read mcp\""
    );
}

#[test]
fn configured_names_cannot_break_out_of_the_quotes() {
    let rejection = Rejection::new(RejectReason::InvalidClaim("te\"nant\\\r\n".to_owned()));
    assert_eq!(
        rejection.www_authenticate("http://h/.well-known/oauth-protected-resource"),
        "Bearer resource_metadata=\"http://h/.well-known/oauth-protected-resource\", \
         error=\"invalid_token\", error_description=\"the token's `tenant` claim has the wrong type\""
    );
}
