//! Evidence record cases: the summary of an envelope and the accessors the reader filters on.
//! (Serialized forms are tested in `portcullis-audit`, which has serde_json.)

use std::collections::BTreeSet;

use super::*;
use crate::identity::{EnvelopeParts, UserId};

fn envelope() -> IdentityEnvelope {
    IdentityEnvelope::new(EnvelopeParts {
        user: UserId {
            issuer: "https://idp.example".to_owned(),
            subject: "alice".to_owned(),
        },
        client: Some("cursor".to_owned()),
        mode: ActingMode::Delegated,
        groups: BTreeSet::from(["eng".to_owned()]),
        tenant: Some("acme".to_owned()),
        scopes: BTreeSet::from(["files.read".to_owned()]),
        usable_credentials: BTreeSet::from(["github".to_owned()]),
        forbidden_credentials: BTreeSet::new(),
        lifetime: Some((1, 2)),
    })
}

fn request() -> RequestContext {
    RequestContext {
        request_id: "r1".to_owned(),
        session: None,
        identity: IdentitySummary::from(&envelope()),
        via: None,
    }
}

#[test]
fn summary_keeps_who_and_drops_grants() {
    let summary = IdentitySummary::from(&envelope());
    assert_eq!(
        summary,
        IdentitySummary {
            issuer: "https://idp.example".to_owned(),
            subject: "alice".to_owned(),
            client: Some("cursor".to_owned()),
            mode: ActingMode::Delegated,
            groups: BTreeSet::from(["eng".to_owned()]),
            tenant: Some("acme".to_owned()),
            scopes: BTreeSet::from(["files.read".to_owned()]),
        }
    );
}

#[test]
fn accessors_find_what_filters_need() {
    let tool = ToolRef {
        upstream: "files".to_owned(),
        tool: "write_file".to_owned(),
        definition_hash: "d".to_owned(),
    };
    let record = EvidenceRecord::new(
        5,
        Event::CallIntent(CallIntent {
            request: request(),
            tool: tool.clone(),
            arguments: Arguments {
                redacted: JsonValue::Null,
                digest: "a".to_owned(),
            },
            decision: DecisionSummary {
                verdict: "deny".to_owned(),
                policies: vec!["no-writes".to_owned()],
                policy_version: None,
            },
            approval: None,
            credential: None,
        }),
    );
    assert_eq!(record.schema, SCHEMA_VERSION);
    assert_eq!(record.event.kind(), "call_intent");
    assert_eq!(record.tool(), Some(&tool));
    assert_eq!(record.upstream(), Some("files"));
    assert_eq!(
        record.identity().map(|identity| identity.subject.as_str()),
        Some("alice")
    );
    assert_eq!(
        record.decision().map(|decision| decision.verdict.as_str()),
        Some("deny")
    );
    assert_eq!(record.outcome(), None);

    let lifecycle = EvidenceRecord::new(
        6,
        Event::UpstreamCrashed(UpstreamLifecycle {
            upstream: "files".to_owned(),
            detail: Some("exit status 1".to_owned()),
        }),
    );
    assert_eq!(lifecycle.request(), None);
    assert_eq!(lifecycle.upstream(), Some("files"));
}

#[test]
fn outcomes_read_as_words() {
    let cases = [
        (
            Outcome::Result {
                digest: "x".to_owned(),
                size: 12,
                is_error: false,
            },
            "ok (12 bytes)",
        ),
        (
            Outcome::NotRun {
                reason: "denied".to_owned(),
            },
            "not run: denied",
        ),
        (Outcome::Cancelled, "cancelled"),
    ];
    for (outcome, expected) in cases {
        assert_eq!(outcome.to_string(), expected);
    }
}
