//! Scoped answers: which calls a proposed pattern covers, when none is offered, how the form
//! and its answers read, and what the store keeps across a restart.
#![expect(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "tests"
)]

use std::os::unix::fs::PermissionsExt as _;
use std::time::Duration;

use rmcp::model::{ElicitRequestParams, ElicitResult, ElicitationAction};
use serde_json::json;

use super::*;
use crate::approval::{Answer, ChangeRequest};

/// A call's facts, owned, so that each case can change one of them.
#[derive(Clone)]
struct Call {
    upstream: &'static str,
    tool: &'static str,
    rule: ApprovalRule,
    effect: Effect,
    reach: Reach,
    /// Resolved paths, each under pointer `/path` (then `/copies/N`), with whether it is a
    /// directory.
    paths: Vec<(&'static str, bool)>,
    recipients: Vec<&'static str>,
    tenant: Option<&'static str>,
}

/// A write of one file in `/srv/work`, under `@approval("required")`.
fn write() -> Call {
    Call {
        upstream: "fx",
        tool: "write_file",
        rule: ApprovalRule::Required,
        effect: Effect::Write,
        reach: Reach::Local,
        paths: vec![("/srv/work/report.txt", false)],
        recipients: Vec::new(),
        tenant: None,
    }
}

impl Call {
    fn with<T>(&self, then: impl FnOnce(&CallShape<'_>) -> T) -> T {
        let paths: Vec<NamedPath> = self
            .paths
            .iter()
            .enumerate()
            .map(|(n, (path, is_directory))| NamedPath {
                pointer: if n == 0 {
                    "/path".to_owned()
                } else {
                    format!("/copies/{}", n - 1)
                },
                resolved: PathBuf::from(path),
                exists: true,
                is_directory: *is_directory,
            })
            .collect();
        let recipients: Vec<(String, bool)> = self
            .recipients
            .iter()
            .map(|r| ((*r).to_owned(), false))
            .collect();
        then(&CallShape {
            upstream: self.upstream,
            tool: self.tool,
            rule: self.rule,
            effect: self.effect,
            reach: &self.reach,
            paths: &paths,
            recipients: &recipients,
            target_tenant: self.tenant,
        })
    }

    fn proposed(&self) -> Option<Scope> {
        self.with(Scope::propose)
    }
}

#[test]
fn a_pattern_covers_calls_like_the_approved_one_and_no_other() {
    let approved = Call {
        recipients: vec!["bob@acme.example"],
        tenant: Some("acme"),
        ..write()
    };
    let scope = approved.proposed().unwrap();
    let change = |edit: fn(&mut Call)| {
        let mut call = approved.clone();
        edit(&mut call);
        call
    };
    let cases: [(&str, Call, bool); 14] = [
        ("the same call", approved.clone(), true),
        (
            "another file in the same directory",
            change(|c| c.paths = vec![("/srv/work/q3.txt", false)]),
            true,
        ),
        (
            "fewer recipients",
            change(|c| c.recipients = Vec::new()),
            true,
        ),
        (
            "a path that resolved elsewhere (`..`, or a link followed)",
            change(|c| c.paths = vec![("/srv/secrets/keys.txt", false)]),
            false,
        ),
        (
            "a link resolved out of the directory",
            change(|c| c.paths = vec![("/etc/passwd", false)]),
            false,
        ),
        (
            "a file in a directory below",
            change(|c| c.paths = vec![("/srv/work/sub/x.txt", false)]),
            false,
        ),
        ("no path at all", change(|c| c.paths = Vec::new()), false),
        (
            "a second path argument",
            change(|c| c.paths.push(("/srv/work/b.txt", false))),
            false,
        ),
        (
            "a new recipient",
            change(|c| c.recipients = vec!["bob@acme.example", "eve@evil.example"]),
            false,
        ),
        (
            "another tenant",
            change(|c| c.tenant = Some("globex")),
            false,
        ),
        ("no tenant", change(|c| c.tenant = None), false),
        ("another tool", change(|c| c.tool = "append_file"), false),
        ("another upstream", change(|c| c.upstream = "web"), false),
        (
            "a call that itself reaches a new host",
            change(|c| {
                c.reach = Reach::Network {
                    why: "its arguments name a host this session has not read".to_owned(),
                    urls: vec![("https://evil.example/x".to_owned(), true)],
                };
            }),
            false,
        ),
    ];
    for (name, call, expected) in cases {
        assert_eq!(call.with(|shape| scope.covers(shape)), expected, "{name}");
    }
    // Under a stricter rule a call is never covered, whatever the pattern.
    let once = change(|c| c.rule = ApprovalRule::Once);
    assert!(!once.with(|shape| scope.covers(shape)));
    assert_eq!(
        scope.words(),
        "calls of `write_file` on `fx`, whose files are directly in `/srv/work`, sending only to bob@acme.example, in tenant or workspace `acme`; their other arguments may differ"
    );
}

#[test]
fn a_directory_argument_pins_the_directory_itself() {
    let listing = Call {
        paths: vec![("/srv/work", true)],
        ..write()
    };
    let scope = listing.proposed().unwrap();
    let inside = Call {
        paths: vec![("/srv/work/report.txt", false)],
        ..listing.clone()
    };
    let sibling = Call {
        paths: vec![("/srv/other", true)],
        ..listing.clone()
    };
    assert!(inside.with(|shape| scope.covers(shape)));
    assert!(!sibling.with(|shape| scope.covers(shape)));
}

#[test]
fn no_scope_is_offered_where_an_answer_must_cover_one_call() {
    let cases: [(&str, Call); 8] = [
        (
            "@approval(\"once\")",
            Call {
                rule: ApprovalRule::Once,
                ..write()
            },
        ),
        (
            "@approval(\"other\")",
            Call {
                rule: ApprovalRule::Other,
                ..write()
            },
        ),
        (
            "a send",
            Call {
                effect: Effect::Send,
                ..write()
            },
        ),
        (
            "a deletion",
            Call {
                effect: Effect::Destructive,
                ..write()
            },
        ),
        (
            "a physical effect",
            Call {
                effect: Effect::Physical,
                ..write()
            },
        ),
        (
            "an effect config does not describe",
            Call {
                effect: Effect::Unknown,
                ..write()
            },
        ),
        (
            "a new host",
            Call {
                reach: Reach::Network {
                    why: "its arguments name a host this session has not read".to_owned(),
                    urls: vec![("https://evil.example/?d=q3".to_owned(), true)],
                },
                ..write()
            },
        ),
        (
            "a pattern that constrains nothing",
            Call {
                paths: Vec::new(),
                ..write()
            },
        ),
    ];
    for (name, call) in cases {
        assert_eq!(call.proposed(), None, "{name}");
        let offer = call.with(|shape| Offer::for_call(shape, Some(Duration::from_secs(3600))));
        assert_eq!(offer, Offer::this_call_only(), "{name}");
    }
    // A host reached before is not new: the pattern is offered.
    let known_host = Call {
        reach: Reach::Network {
            why: "its upstream's surface is http_api".to_owned(),
            urls: vec![("https://api.acme.example/v1".to_owned(), false)],
        },
        ..write()
    };
    assert!(known_host.proposed().is_some());
    // `approval_scope_secs = 0`: nothing is offered.
    assert_eq!(
        write().with(|shape| Offer::for_call(shape, None)),
        Offer::this_call_only()
    );
}

fn offered() -> Offer {
    write().with(|shape| Offer::for_call(shape, Some(Duration::from_secs(3600))))
}

fn answer(offer: &Offer, content: serde_json::Value) -> Answer {
    let mut result = ElicitResult::new(ElicitationAction::Accept);
    result.content = Some(content);
    Answer::from_result(&result, offer)
}

#[test]
fn the_form_offers_the_scope_and_an_answer_may_choose_only_what_was_offered() {
    let offer = offered();
    let scope = write().proposed().unwrap();
    let envelope = portcullis_test_support::alice().envelope();
    let rules = portcullis_core::ToolRules::default();
    let change = ChangeRequest {
        envelope: &envelope,
        upstream: "fx",
        surface: "filesystem",
        exposed: "fx.write_file",
        effect: Effect::Write,
        rules: &rules,
        arguments: None,
        recipients: &[],
        target_tenant: None,
        policies: &[],
        tainted_by: &[],
        reach: &Reach::Local,
        paths: &[],
        offer: &offer,
        definition_change: None,
    };
    assert!(
        change.message().contains("for the rest of this session (at most 60 min): calls of `write_file` on `fx`, whose files are directly in `/srv/work`"),
        "{}",
        change.message()
    );
    let ElicitRequestParams::FormElicitationParams {
        requested_schema, ..
    } = change.params()
    else {
        panic!("not a form");
    };
    let schema = serde_json::to_value(&requested_schema).unwrap();
    assert_eq!(schema["required"], json!(["approve"]), "{schema}");
    assert_eq!(schema["properties"]["scope"]["default"], "once", "{schema}");
    let choices = &schema["properties"]["scope"]["oneOf"];
    assert_eq!(
        choices[0],
        json!({"const": "once", "title": "Only this call"})
    );
    assert_eq!(choices[1]["const"], "session");
    assert!(
        choices[1]["title"]
            .as_str()
            .unwrap()
            .starts_with("For this session: calls of `write_file`"),
        "{schema}"
    );

    let cases = [
        (json!({"approve": true}), Answer::Approved(Chosen::ThisCall)),
        (
            json!({"approve": true, "scope": "once"}),
            Answer::Approved(Chosen::ThisCall),
        ),
        (
            json!({"approve": true, "scope": "session"}),
            Answer::Approved(Chosen::Session(scope)),
        ),
        (
            json!({"approve": false, "scope": "session"}),
            Answer::NotConfirmed,
        ),
        (json!({"scope": "session"}), Answer::Invalid),
        (
            json!({"approve": true, "scope": "forever"}),
            Answer::Invalid,
        ),
        (json!({"approve": true, "scope": true}), Answer::Invalid),
        (
            json!({"approve": true, "scope": "session", "note": "x"}),
            Answer::Invalid,
        ),
    ];
    for (content, expected) in cases {
        assert_eq!(answer(&offer, content.clone()), expected, "{content}");
    }
    // A form without the scope field: a scope sent anyway is not an answer to it.
    let plain = Offer::this_call_only();
    for content in [
        json!({"approve": true, "scope": "session"}),
        json!({"approve": true, "scope": "once"}),
    ] {
        assert_eq!(
            answer(&plain, content.clone()),
            Answer::Invalid,
            "{content}"
        );
    }
    let ElicitRequestParams::FormElicitationParams {
        requested_schema, ..
    } = ChangeRequest {
        offer: &plain,
        definition_change: None,
        ..change
    }
    .params()
    else {
        panic!("not a form");
    };
    let schema = serde_json::to_value(&requested_schema).unwrap();
    assert!(schema["properties"].get("scope").is_none(), "{schema}");
    assert_eq!(
        Answer::Approved(Chosen::Session(write().proposed().unwrap())).as_str(),
        "approved_for_session"
    );
}

const NOW: u64 = 1_796_083_200;

fn asker(key: &'static str, holder: Holder, user: &'static str) -> Asker<'static> {
    Asker { key, holder, user }
}

#[test]
fn a_scoped_answer_covers_its_session_and_user_until_it_ends() {
    let dir = tempfile::tempdir().unwrap();
    let store = ScopedAnswers::open(
        dir.path().join("scoped-answers.json"),
        Some(Duration::from_secs(600)),
    );
    let alice = asker("session 1", Holder::Session, "alice");
    let scope = write().proposed().unwrap();
    let id = store.remember(&alice, scope, "sha256:abc", NOW).unwrap();
    let covers = |asker: &Asker<'_>, call: &Call, now: u64| {
        call.with(|shape| store.covers(asker, shape, now))
    };
    let like = Call {
        paths: vec![("/srv/work/q3.txt", false)],
        ..write()
    };
    assert_eq!(covers(&alice, &like, NOW + 1), Some(id.clone()));
    assert_eq!(
        covers(
            &asker("session 2", Holder::Session, "alice"),
            &like,
            NOW + 1
        ),
        None,
        "another session"
    );
    assert_eq!(
        covers(&asker("session 1", Holder::Session, "bob"), &like, NOW + 1),
        None,
        "another user"
    );
    assert_eq!(covers(&alice, &like, NOW + 600), None, "expired");
    let elsewhere = Call {
        paths: vec![("/srv/other/q3.txt", false)],
        ..write()
    };
    assert_eq!(covers(&alice, &elsewhere, NOW + 1), None, "another pattern");
    store.forget_session("session 1");
    assert_eq!(covers(&alice, &like, NOW + 1), None, "the session ended");
}

#[test]
fn a_clients_scoped_answers_survive_a_restart_and_a_sessions_do_not() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("scoped-answers.json");
    let lasts = Some(Duration::from_secs(600));
    let client = asker("client i\nalice\ndesktop", Holder::Client, "alice");
    let session = asker("session 1", Holder::Session, "alice");
    {
        let store = ScopedAnswers::open(file.clone(), lasts);
        store
            .remember(&client, write().proposed().unwrap(), "sha256:a", NOW)
            .unwrap();
        store
            .remember(&session, write().proposed().unwrap(), "sha256:b", NOW)
            .unwrap();
    }
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let restarted = ScopedAnswers::open(file.clone(), lasts);
    assert!(
        write()
            .with(|shape| restarted.covers(&client, shape, NOW + 1))
            .is_some()
    );
    // Session ids are the process's own: a new process's `session 1` is another session.
    assert!(
        write()
            .with(|shape| restarted.covers(&session, shape, NOW + 1))
            .is_none()
    );

    // A file that cannot be parsed holds nothing: everything is asked again.
    std::fs::write(&file, "{ not json").unwrap();
    let corrupt = ScopedAnswers::open(file.clone(), lasts);
    assert!(
        write()
            .with(|shape| corrupt.covers(&client, shape, NOW + 1))
            .is_none()
    );

    // Turned off: nothing is read, remembered or covered.
    let off = ScopedAnswers::open(file, None);
    assert_eq!(off.lasts(), None);
    assert!(
        off.remember(&client, write().proposed().unwrap(), "sha256:c", NOW)
            .is_none()
    );
}
