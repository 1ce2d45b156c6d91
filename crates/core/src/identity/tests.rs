//! Identity envelope cases.

use std::collections::BTreeSet;

use super::*;

fn set(values: &[&str]) -> BTreeSet<String> {
    values.iter().map(|v| (*v).to_owned()).collect()
}

fn envelope(usable: &[&str], forbidden: &[&str], lifetime: Option<(u64, u64)>) -> IdentityEnvelope {
    IdentityEnvelope::new(EnvelopeParts {
        user: UserId {
            issuer: LOCAL_ISSUER.to_owned(),
            subject: "alice".to_owned(),
        },
        client: None,
        mode: ActingMode::Delegated,
        groups: set(&["eng"]),
        tenant: Some("acme".to_owned()),
        scopes: set(&["files.read", "files.write"]),
        usable_credentials: set(usable),
        forbidden_credentials: set(forbidden),
        lifetime,
    })
}

#[test]
fn a_credential_both_allowed_and_forbidden_is_forbidden() {
    let envelope = envelope(&["mail", "files"], &["mail"], None);
    assert!(envelope.may_use_credential("files"));
    assert!(!envelope.may_use_credential("mail"));
    assert!(!envelope.may_use_credential("unlisted"));
}

#[test]
fn scopes_are_all_or_nothing() {
    let envelope = envelope(&[], &[], None);
    assert!(envelope.has_scopes(&set(&["files.read"])));
    assert!(envelope.has_scopes(&set(&[])));
    assert!(!envelope.has_scopes(&set(&["files.read", "mail.send"])));
}

#[test]
fn lifetime_bounds_are_half_open() {
    let envelope = envelope(&[], &[], Some((100, 200)));
    assert!(!envelope.is_valid_at(99));
    assert!(envelope.is_valid_at(100));
    assert!(envelope.is_valid_at(199));
    assert!(!envelope.is_valid_at(200));
    assert!(self::envelope(&[], &[], None).is_valid_at(u64::MAX));
}
