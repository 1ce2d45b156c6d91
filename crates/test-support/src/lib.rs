//! What Portcullis's unit tests share, so that each crate's tests build the same things the
//! same way. Dev-only: crates take it as a dev-dependency, and nothing in it may be used by
//! code that ships.
#![forbid(unsafe_code)]
#![expect(
    clippy::panic,
    reason = "test support: a server that cannot start fails the test that wanted it"
)]

mod client;
mod haproxy;
mod postgres;
mod upstream;

pub use client::{Answers, TestClient};
pub use haproxy::HaProxy;
pub use postgres::{TestPostgres, tls_client};
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

/// Whether `done` holds within `limit`, asking every 50 ms.
pub fn wait_until(limit: std::time::Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + limit;
    while std::time::Instant::now() < deadline {
        if done() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    done()
}

/// A loopback port that was free a moment ago (for a config that must name its own URL).
///
/// Chosen below the kernel's ephemeral range (`ip_local_port_range`), where ports bound to 0
/// and the source ports of outgoing connections come from: a port taken from that range and
/// released could be handed to someone else before Portcullis binds it (seen: "Address already
/// in use"). Below it, only another test's pick can collide, and picks are spread at random.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static PICKS: AtomicU64 = AtomicU64::new(0);
    let ephemeral_low: u16 = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse().ok())
        .unwrap_or(32768);
    let (low, high) = (10_000_u16, ephemeral_low.max(10_100));
    for _ in 0..200 {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.subsec_nanos().into())
            ^ (u64::from(std::process::id()) << 20)
            ^ PICKS.fetch_add(0x9E37_79B9, Ordering::Relaxed);
        let port = low + u16::try_from(seed % u64::from(high - low)).unwrap_or(0);
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port below the ephemeral range after 200 tries")
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
