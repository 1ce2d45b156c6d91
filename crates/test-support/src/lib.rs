//! What Portcullis's unit tests share, so that each crate's tests build the same things the
//! same way. Dev-only: crates take it as a dev-dependency, and nothing in it may be used by
//! code that ships.
#![forbid(unsafe_code)]

mod client;
mod upstream;

pub use client::{Answers, TestClient};
pub use upstream::{FakeUpstream, Received, tool, tool_with_schema};

use std::collections::BTreeSet;

use portcullis_core::{ActingMode, EnvelopeParts, IdentityEnvelope, UserId};

/// The issuer of the test person's tokens.
pub const ISSUER: &str = "https://idp.example";

/// The test person: `alice` of [`ISSUER`], acting for herself (delegated), with no client,
/// groups, tenant, scopes or credentials until a test gives her some.
#[derive(Debug, Clone)]
pub struct Person {
    parts: EnvelopeParts,
}

/// `alice`, as every test that needs someone starts from.
pub fn alice() -> Person {
    person("alice")
}

/// Someone called `subject`, otherwise like [`alice`].
pub fn person(subject: &str) -> Person {
    Person {
        parts: EnvelopeParts {
            user: UserId {
                issuer: ISSUER.to_owned(),
                subject: subject.to_owned(),
            },
            client: None,
            mode: ActingMode::Delegated,
            groups: BTreeSet::new(),
            tenant: None,
            scopes: BTreeSet::new(),
            usable_credentials: BTreeSet::new(),
            forbidden_credentials: BTreeSet::new(),
            lifetime: None,
        },
    }
}

impl Person {
    /// Through this client.
    pub fn client(mut self, client: &str) -> Self {
        self.parts.client = Some(client.to_owned());
        self
    }

    /// In this tenant.
    pub fn tenant(mut self, tenant: &str) -> Self {
        self.parts.tenant = Some(tenant.to_owned());
        self
    }

    /// In these groups (added to any already given).
    pub fn groups<S: AsRef<str>>(mut self, groups: &[S]) -> Self {
        self.parts
            .groups
            .extend(groups.iter().map(|g| g.as_ref().to_owned()));
        self
    }

    /// With these scopes (added to any already given).
    pub fn scopes<S: AsRef<str>>(mut self, scopes: &[S]) -> Self {
        self.parts
            .scopes
            .extend(scopes.iter().map(|s| s.as_ref().to_owned()));
        self
    }

    /// Her identity envelope.
    pub fn envelope(self) -> IdentityEnvelope {
        IdentityEnvelope::new(self.parts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_test_person_is_only_what_the_test_says() {
        let bare = alice().envelope();
        assert_eq!(bare.user().subject, "alice");
        assert_eq!(bare.user().issuer, ISSUER);
        assert_eq!((bare.client(), bare.tenant()), (None, None));
        assert!(bare.groups().is_empty() && bare.scopes().is_empty());
        let dressed = person("bob")
            .client("desktop")
            .tenant("acme")
            .groups(&["eng"])
            .scopes(&["files.read"])
            .envelope();
        assert_eq!(dressed.user().subject, "bob");
        assert_eq!(
            (dressed.client(), dressed.tenant()),
            (Some("desktop"), Some("acme"))
        );
        assert!(dressed.groups().contains("eng") && dressed.scopes().contains("files.read"));
    }
}
