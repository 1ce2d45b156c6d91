//! The change request's text and form, how answers read, and the stateless approvals' once-only
//! claims.
#![expect(
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests"
)]

use std::time::Duration;

use portcullis_core::{ArgumentPointer, Effect, Hints, IdentityEnvelope, Surface, ToolRules};
use rmcp::model::{CallToolResult, ElicitRequestParams, ElicitResult, ElicitationAction};
use serde_json::json;

use super::*;

fn alice() -> IdentityEnvelope {
    portcullis_test_support::alice()
        .client("desktop")
        .tenant("acme")
        .envelope()
}

fn rules() -> ToolRules {
    ToolRules {
        effect: Some(Effect::Send),
        recipients: vec![
            ArgumentPointer::parse("/to").unwrap(),
            ArgumentPointer::parse("/cc/*").unwrap(),
        ],
        tenant_argument: Some(ArgumentPointer::parse("/workspace").unwrap()),
        reversible: Some(false),
        ..ToolRules::default()
    }
}

#[test]
fn the_change_request_says_what_who_where_to_whom_and_why() {
    let envelope = alice();
    let rules = rules();
    let long = "x".repeat(1000);
    let arguments = json!({
        "to": "bob@example.com",
        "body": long,
        "api_key": "hidden-value-48210",
        "workspace": "globex",
    });
    let arguments = arguments.as_object().unwrap();
    let recipients = [("bob@example.com".to_owned(), true)];
    let policies = ["side-effects-need-approval".to_owned()];
    let tainted = ["web".to_owned()];
    let change = ChangeRequest {
        envelope: &envelope,
        upstream: "mail",
        surface: "http_api",
        exposed: "mail.send",
        effect: Effect::Send,
        rules: &rules,
        arguments: Some(arguments),
        recipients: &recipients,
        target_tenant: Some("globex"),
        policies: &policies,
        tainted_by: &tainted,
        reach: &Reach::Local,
        paths: &[],
        offer: &Offer::this_call_only(),
        definition_change: None,
    };
    let text = change.message();
    for expected in [
        "`mail.send` (sends outside: visible to others) on upstream `mail`, surface http_api",
        "  to: \"bob@example.com\"",
        "As: alice (issuer https://idp.example), tenant acme, through client desktop",
        "Crosses into tenant or workspace `globex` (this session's: acme)",
        "Sends to or acts on: bob@example.com (new)",
        "Can be undone: no",
        "untrusted upstream `web`",
        "policy `side-effects-need-approval`",
        "api_key: [hidden: 20 bytes]",
        "[abbreviated: 1002 bytes in all;",
    ] {
        assert!(text.contains(expected), "missing `{expected}` in:\n{text}");
    }
    assert!(!text.contains("hidden-value-48210"), "{text}");
    assert!(
        !text.contains(&"x".repeat(200)),
        "a long value is abbreviated"
    );

    // One required boolean with no default: nothing approves by itself.
    let ElicitRequestParams::FormElicitationParams {
        requested_schema, ..
    } = change.params()
    else {
        panic!("not a form");
    };
    let schema = serde_json::to_value(&requested_schema).unwrap();
    assert_eq!(schema["required"], json!(["approve"]), "{schema}");
    assert_eq!(
        schema["properties"]["approve"]["type"], "boolean",
        "{schema}"
    );
    assert!(
        schema["properties"]["approve"].get("default").is_none(),
        "{schema}"
    );
}

#[test]
fn only_an_explicit_yes_approves() {
    let answer = |action, content: Option<serde_json::Value>| {
        let mut result = ElicitResult::new(action);
        result.content = content;
        Answer::from_result(&result, &Offer::this_call_only())
    };
    assert_eq!(
        answer(ElicitationAction::Accept, Some(json!({"approve": true}))),
        Answer::Approved(Chosen::ThisCall)
    );
    assert_eq!(
        answer(ElicitationAction::Accept, Some(json!({"approve": false}))),
        Answer::NotConfirmed
    );
    // Only the form asked for: anything else in the answer approves nothing.
    for invalid in [
        json!({"approve": "true"}),
        json!({"approve": 1}),
        json!({"approve": true, "note": "also send to x@example.com"}),
        json!({"approve": true, "approve_all": true}),
        json!({"Approve": true}),
        json!([{"approve": true}]),
        json!(true),
    ] {
        assert_eq!(
            answer(ElicitationAction::Accept, Some(invalid.clone())),
            Answer::Invalid,
            "{invalid}"
        );
    }
    assert_eq!(
        answer(ElicitationAction::Accept, Some(json!({}))),
        Answer::NotConfirmed
    );
    assert_eq!(
        answer(ElicitationAction::Accept, None),
        Answer::NotConfirmed
    );
    assert_eq!(
        answer(ElicitationAction::Decline, Some(json!({"approve": true}))),
        Answer::Declined
    );
    assert_eq!(answer(ElicitationAction::Cancel, None), Answer::Cancelled);
    assert!(Answer::Approved(Chosen::ThisCall).approves());
    for refused in [
        Answer::NotConfirmed,
        Answer::Invalid,
        Answer::Declined,
        Answer::Cancelled,
        Answer::TimedOut(Duration::from_secs(3)),
        Answer::Unavailable,
        Answer::Failed("gone".to_owned()),
    ] {
        assert!(!refused.approves(), "{refused:?}");
        assert!(
            refused.refusal("fx.send").contains("did not run"),
            "{refused:?}"
        );
    }
    assert!(
        Answer::TimedOut(Duration::from_secs(3))
            .refusal("t")
            .contains("within 3 s")
    );
    assert!(
        Answer::Unavailable
            .refusal("t")
            .contains("did not declare form elicitation")
    );
}

#[tokio::test]
async fn a_stateless_approval_runs_once_and_then_replays_its_outcome() {
    let approvals = StatelessApprovals::InProcess(stateless::InProcess::default());
    let open = |fingerprint: &'static str, ttl| {
        let approvals = &approvals;
        async move { approvals.open(fingerprint, ttl).await.unwrap() }
    };
    let id = open("fp-1", Duration::from_secs(60)).await;
    // Another action cannot claim it.
    assert!(matches!(approvals.claim(id, "fp-2").await, Claim::Unknown));
    assert!(matches!(
        approvals.claim(id + 100, "fp-1").await,
        Claim::Unknown
    ));
    assert!(matches!(approvals.claim(id, "fp-1").await, Claim::Open));
    // Claimed once: a second claim while it runs finds it running, not open.
    assert!(matches!(approvals.claim(id, "fp-1").await, Claim::Running));
    approvals
        .finish(id, Some(CallToolResult::success(Vec::new())))
        .await;
    assert!(matches!(
        approvals.claim(id, "fp-1").await,
        Claim::Ran(Some(_))
    ));
    // A refused or unfinished one replays nothing.
    let other = open("fp-3", Duration::from_secs(60)).await;
    assert!(matches!(approvals.claim(other, "fp-3").await, Claim::Open));
    approvals.finish(other, None).await;
    assert!(matches!(
        approvals.claim(other, "fp-3").await,
        Claim::Ran(None)
    ));
    // Expired before it was answered.
    let expired = open("fp-4", Duration::ZERO).await;
    assert!(matches!(
        approvals.claim(expired, "fp-4").await,
        Claim::Unknown
    ));
}

#[test]
fn recipients_and_target_tenants_come_from_the_configured_arguments() {
    let rules = rules();
    let arguments =
        json!({"to": "b@x", "cc": ["c@x", "b@x"], "workspace": "globex", "other": "o@x"});
    let arguments = arguments.as_object();
    assert_eq!(recipients(&rules, arguments), ["b@x", "c@x"]);
    assert_eq!(target_tenant(&rules, arguments).as_deref(), Some("globex"));
    assert!(recipients(&ToolRules::default(), arguments).is_empty());
    assert_eq!(target_tenant(&ToolRules::default(), arguments), None);

    let known = KnownRecipients::default();
    assert!(!known.is_known("alice", "b@x"));
    known.remember("alice", &["b@x".to_owned()]);
    assert!(known.is_known("alice", "b@x"));
    assert!(!known.is_known("bob", "b@x"), "known per user");
}

#[test]
fn taint_is_kept_per_key() {
    let taints = Taints::default();
    assert!(taints.of("session 1").is_empty());
    taints.mark("session 1", "web").unwrap();
    taints.mark("session 1", "mail").unwrap();
    taints.mark("session 1", "web").unwrap();
    assert_eq!(taints.of("session 1"), ["mail", "web"]);
    assert!(taints.of("session 2").is_empty());
    taints.mark("session 2", "web").unwrap();
    taints.remember_hosts("session 1", ["example.com".to_owned()]);
    // A session that ended is forgotten, and only it.
    taints.forget("session 1");
    assert!(taints.of("session 1").is_empty());
    assert!(!taints.has_read("session 1", "example.com"));
    assert_eq!(taints.of("session 2"), ["web"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stateless_clients_taint_is_shared_by_the_replicas_and_a_sessions_is_not() {
    let mut postgres = portcullis_test_support::TestPostgres::start();
    let connect = |replica: &'static str| {
        let url = postgres.url();
        async move { crate::test_store(&url, replica).await }
    };
    let (one, other) = (
        Taints::shared(connect("a").await),
        Taints::shared(connect("b").await),
    );
    let client = format!("{CLIENT_TAINT_KEY}issuer\nalice\ndesktop");
    one.mark(&client, "web").unwrap();
    one.mark("session 1", "web").unwrap();
    one.remember_hosts(&client, ["docs.example".to_owned()]);
    // The other replica sees the client's taint and hosts; a session (this process's own
    // number, which another replica also hands out) stays where it is.
    assert_eq!(other.of(&client), ["web"]);
    assert!(other.has_read(&client, "docs.example"));
    assert!(other.of("session 1").is_empty());
    // The database away: tainted by the unknown, every host new, and a mark that cannot be
    // kept is an error (its content is then withheld).
    postgres.pause();
    let fresh = format!("{CLIENT_TAINT_KEY}issuer\nbob\ndesktop");
    assert_eq!(other.of(&fresh), ["(unknown)"]);
    assert!(!other.has_read(&client, "docs.example"));
    let withheld = other.mark(&fresh, "web").unwrap_err();
    assert!(withheld.contains("withheld"), "{withheld}");
    assert!(!withheld.contains(postgres.password()), "{withheld}");
    // Sessions do not need the database.
    assert!(other.mark("session 2", "web").is_ok());
    postgres.resume();
}

#[test]
fn call_facts_flag_crossings_and_new_recipients() {
    let rules = rules();
    let envelope = alice();
    let inside = json!({"to": "b@x", "workspace": "acme"});
    let (facts, recipients, target) =
        call_facts(&rules, &envelope, inside.as_object(), |r| r == "b@x");
    assert!(!facts.crosses_tenant && !facts.new_recipient && !facts.escalates && !facts.tainted);
    assert_eq!(recipients, [("b@x".to_owned(), false)]);
    assert_eq!(target.as_deref(), Some("acme"));
    let outside = json!({"to": "c@x", "workspace": "globex"});
    let (facts, recipients, _) = call_facts(&rules, &envelope, outside.as_object(), |r| r == "b@x");
    assert!(facts.crosses_tenant && facts.new_recipient);
    assert_eq!(recipients, [("c@x".to_owned(), true)]);
}

#[test]
fn urls_are_found_whole_at_any_depth_with_their_hosts() {
    let long_query = "d=".to_owned() + &"s".repeat(500);
    let arguments = json!({
        "url": format!("https://User:pw@Evil.Example:8443/x?{long_query}"),
        "nested": {"list": ["see wss://[2001:db8::1]:9/ws and ftp://files.example./a"]},
        "note": "no url here, nor in file:///etc/passwd or mailto-ish text",
        "quoted": "\"http://quoted.example/p\" trailing",
        "number": 3,
    });
    let mut found = urls_in(&arguments);
    found.sort_by(|a, b| a.1.cmp(&b.1));
    let hosts: Vec<&str> = found.iter().map(|(_, host)| host.as_str()).collect();
    assert_eq!(
        hosts,
        [
            "2001:db8::1",
            "evil.example",
            "files.example",
            "quoted.example"
        ],
        "{found:?}"
    );
    let evil = found
        .iter()
        .find(|(_, host)| host == "evil.example")
        .unwrap();
    assert!(
        evil.0.ends_with(&long_query),
        "the URL is kept whole: {}",
        evil.0
    );
    assert!(urls_in(&json!({"a": "://no-scheme", "b": "javascript://x"})).is_empty());
}

#[test]
fn a_call_reaches_the_network_by_surface_hint_or_a_new_host() {
    let none_read = |_: &str| false;
    let quiet = Hints::default();
    let no_urls = json!({"path": "/srv/a"});
    let no_urls = no_urls.as_object();
    assert_eq!(
        reach(Surface::Filesystem, quiet, no_urls, none_read),
        Reach::Local
    );
    for surface in [
        Surface::HttpApi,
        Surface::Browser,
        Surface::Remote,
        Surface::Shell,
        Surface::Code,
    ] {
        assert!(
            matches!(
                reach(surface, quiet, no_urls, none_read),
                Reach::Network { .. }
            ),
            "{surface:?}"
        );
    }
    let open_world = Hints {
        open_world: Some(true),
        ..Hints::default()
    };
    assert!(matches!(
        reach(Surface::Filesystem, open_world, no_urls, none_read),
        Reach::Network { .. }
    ));
    let with_url = json!({"source": "https://docs.example/page?q=1"});
    let with_url = with_url.as_object();
    let Reach::Network { urls, .. } = reach(Surface::Database, quiet, with_url, none_read) else {
        panic!("a URL to a new host reaches the network");
    };
    assert_eq!(urls, [("https://docs.example/page?q=1".to_owned(), true)]);
    // A host the session already read is not new.
    let read = |host: &str| host == "docs.example";
    assert_eq!(
        reach(Surface::Database, quiet, with_url, read),
        Reach::Local
    );

    let taints = Taints::default();
    assert!(!taints.has_read("session 1", "docs.example"));
    taints.remember_hosts("session 1", ["docs.example".to_owned()]);
    assert!(taints.has_read("session 1", "docs.example"));
    assert!(!taints.has_read("session 2", "docs.example"), "per key");
}

#[test]
fn the_change_request_shows_every_url_whole() {
    let envelope = alice();
    let rules = ToolRules::default();
    let url = format!("https://collect.example/?data={}", "q".repeat(400));
    let arguments = json!({ "url": url });
    let reach = Reach::Network {
        why: "its arguments name a host this session has not read".to_owned(),
        urls: vec![(url.clone(), true)],
    };
    let change = ChangeRequest {
        envelope: &envelope,
        upstream: "web",
        surface: "unspecified",
        exposed: "web.fetch",
        effect: Effect::Read,
        rules: &rules,
        arguments: arguments.as_object(),
        recipients: &[],
        target_tenant: None,
        policies: &[],
        tainted_by: &["web".to_owned()],
        reach: &reach,
        paths: &[],
        offer: &Offer::this_call_only(),
        definition_change: None,
    };
    let text = change.message();
    assert!(
        text.contains(&format!(
            "  {url} (host collect.example, a host this session has not read)"
        )),
        "{text}"
    );
    assert!(
        text.contains("Reaches the network: its arguments name a host"),
        "{text}"
    );
}

/// One case of the change request's text: what varies from a plain send, and what the person
/// must (and must not) read.
struct TextCase {
    name: &'static str,
    arguments: serde_json::Value,
    target_tenant: Option<&'static str>,
    recipients: &'static [(&'static str, bool)],
    tainted_by: &'static [&'static str],
    reversible: Option<bool>,
    escalates: bool,
    shows: &'static [&'static str],
    hides: &'static [&'static str],
}

/// A `to` of fifty addresses, the attacker's last (over 1 kB: abbreviated as an argument).
fn fifty_addresses() -> String {
    let mut addresses: Vec<String> = (0..49)
        .map(|n| format!("colleague{n}@corp.example"))
        .collect();
    addresses.push("attacker@evil.example".to_owned());
    addresses.join(", ")
}

/// A 20 kB body whose last line asks for a wire transfer, with a link in its middle.
fn wire_transfer_body() -> String {
    let filler = "Quarterly numbers attached. ".repeat(350);
    format!(
        "Dear team,\n{filler} Details: https://pay.example/approve?ref=4711 {filler}\nAlso wire 90,000 EUR to account DE02 1203 0000 0000 2020 51 today."
    )
}

#[test]
fn the_change_request_text_case_by_case() {
    let cases = [
        TextCase {
            name: "no arguments",
            arguments: json!({}),
            target_tenant: None,
            recipients: &[],
            tainted_by: &[],
            reversible: None,
            escalates: false,
            shows: &["with no arguments", "Can be undone: not known"],
            hides: &["Crosses into", "Sends to", "Caution", "Changes privileges"],
        },
        TextCase {
            name: "same tenant is no crossing",
            arguments: json!({"workspace": "acme"}),
            target_tenant: Some("acme"),
            recipients: &[],
            tainted_by: &[],
            reversible: Some(true),
            escalates: false,
            shows: &[
                "with these exact arguments:",
                "  workspace: \"acme\"",
                "Can be undone: yes",
            ],
            hides: &["Crosses into"],
        },
        TextCase {
            name: "known and new recipients",
            arguments: json!({"to": "bob@x", "cc": ["eve@x"]}),
            target_tenant: None,
            recipients: &[("bob@x", false), ("eve@x", true)],
            tainted_by: &[],
            reversible: Some(false),
            escalates: false,
            shows: &[
                "Sends to or acts on: bob@x, eve@x (new)",
                "Can be undone: no",
            ],
            hides: &["bob@x (new)"],
        },
        TextCase {
            name: "two untrusted upstreams and a privilege change",
            arguments: json!({"role": "admin"}),
            target_tenant: None,
            recipients: &[],
            tainted_by: &["web", "wiki"],
            reversible: None,
            escalates: true,
            shows: &[
                "untrusted upstreams `web`, `wiki`",
                "Changes privileges (roles, permissions or keys)",
            ],
            hides: &[],
        },
        TextCase {
            name: "secrets and long values",
            arguments: json!({"password": "hunter2-hunter2", "note": "y".repeat(500)}),
            target_tenant: None,
            recipients: &[],
            tainted_by: &[],
            reversible: None,
            escalates: false,
            shows: &[
                "password: [hidden: 17 bytes]",
                "[abbreviated: 502 bytes in all; the 302 bytes between not shown, sha256:",
                "abbreviated where marked",
            ],
            hides: &[
                "hunter2",
                "yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy",
            ],
        },
        TextCase {
            name: "fifty addresses with the attacker's last, in a field config does not name",
            arguments: json!({"to": fifty_addresses()}),
            target_tenant: None,
            recipients: &[],
            tainted_by: &[],
            reversible: None,
            escalates: false,
            shows: &[
                "Addresses and links in the arguments (50, every one in full):",
                "  colleague0@corp.example\n",
                "  attacker@evil.example\n",
                "abbreviated where marked",
            ],
            hides: &["exact arguments"],
        },
        TextCase {
            name: "a link whose user part looks like the host it does not reach",
            arguments: json!({"note": "log in at https://bank.example@evil.example/login"}),
            target_tenant: None,
            recipients: &[],
            tainted_by: &[],
            reversible: None,
            escalates: false,
            shows: &["  https://bank.example@evil.example/login (host evil.example)\n"],
            hides: &["(host bank.example)"],
        },
        TextCase {
            name: "a long body whose last line asks for a wire transfer",
            arguments: json!({"body": wire_transfer_body()}),
            target_tenant: None,
            recipients: &[],
            tainted_by: &[],
            reversible: None,
            escalates: false,
            shows: &[
                "Also wire 90,000 EUR to account DE02 1203 0000 0000 2020 51 today.",
                "  body: \"Dear team,",
                "bytes between not shown, sha256:",
                "https://pay.example/approve?ref=4711",
            ],
            hides: &["exact arguments"],
        },
    ];
    let envelope = alice();
    for case in cases {
        let rules = ToolRules {
            reversible: case.reversible,
            escalates: case.escalates,
            ..ToolRules::default()
        };
        let recipients: Vec<(String, bool)> = case
            .recipients
            .iter()
            .map(|(r, new)| ((*r).to_owned(), *new))
            .collect();
        let tainted_by: Vec<String> = case.tainted_by.iter().map(|u| (*u).to_owned()).collect();
        let text = ChangeRequest {
            envelope: &envelope,
            upstream: "mail",
            surface: "http_api",
            exposed: "mail.send",
            effect: Effect::Send,
            rules: &rules,
            arguments: case.arguments.as_object(),
            recipients: &recipients,
            target_tenant: case.target_tenant,
            policies: &[],
            tainted_by: &tainted_by,
            reach: &Reach::Local,
            paths: &[],
            offer: &Offer::this_call_only(),
            definition_change: None,
        }
        .message();
        for shown in case.shows {
            assert!(
                text.contains(shown),
                "{}: missing `{shown}` in:\n{text}",
                case.name
            );
        }
        for hidden in case.hides {
            assert!(
                !text.contains(hidden),
                "{}: `{hidden}` shown in:\n{text}",
                case.name
            );
        }
        assert!(
            text.ends_with("Anything but an explicit yes leaves it undone."),
            "{}",
            case.name
        );
    }
}

#[test]
fn the_fingerprint_changes_with_every_part_of_the_action() {
    let base = Fingerprinted {
        issuer: "https://idp.example",
        subject: "alice",
        upstream: "mail",
        tool: "send",
        definition: "sha256:d",
        arguments: "hmac-sha256:a",
        policy: "sha256:p1",
    };
    let print = fingerprint(&base);
    assert_eq!(print, fingerprint(&base), "deterministic");
    let variants = [
        Fingerprinted {
            issuer: "https://other.example",
            ..base
        },
        Fingerprinted {
            subject: "bob",
            ..base
        },
        Fingerprinted {
            upstream: "files",
            ..base
        },
        Fingerprinted {
            tool: "delete",
            ..base
        },
        Fingerprinted {
            definition: "sha256:e",
            ..base
        },
        Fingerprinted {
            arguments: "hmac-sha256:b",
            ..base
        },
        Fingerprinted {
            policy: "sha256:p2",
            ..base
        },
        // A part cannot slide into the next one.
        Fingerprinted {
            upstream: "mail\nsend",
            tool: "",
            ..base
        },
    ];
    for variant in variants {
        assert_ne!(fingerprint(&variant), print);
    }
}

/// The fingerprint of the action whose six text parts are `parts`.
fn print(parts: &[String], policy: u64) -> String {
    let policy = format!("sha256:p{policy}");
    fingerprint(&Fingerprinted {
        issuer: &parts[0],
        subject: &parts[1],
        upstream: &parts[2],
        tool: &parts[3],
        definition: &parts[4],
        arguments: &parts[5],
        policy: &policy,
    })
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(3000))]

    /// Two actions have one fingerprint only if every part is the same: parts drawn from a
    /// small alphabet with newlines, quotes and brackets, so that one part sliding into the
    /// next would be found.
    #[test]
    fn actions_share_a_fingerprint_only_when_every_part_is_equal(
        a in proptest::collection::vec("[ab\\n\"\\[,]{0,3}", 6),
        b in proptest::collection::vec("[ab\\n\"\\[,]{0,3}", 6),
        versions in (0u64..3, 0u64..3),
    ) {
        let same = a == b && versions.0 == versions.1;
        proptest::prop_assert_eq!(print(&a, versions.0) == print(&b, versions.1), same);
    }

    /// The same text cut into parts at other newlines is another action, with another
    /// fingerprint (a digest of the parts joined by newlines would not tell them apart).
    #[test]
    fn parts_cut_elsewhere_are_another_action(
        a in proptest::collection::vec("[ab\\n]{0,4}", 6),
        picks in proptest::collection::vec(proptest::prelude::any::<u16>(), 5),
    ) {
        let joined = a.join("\n");
        let mut newlines: Vec<usize> = joined.match_indices('\n').map(|(at, _)| at).collect();
        let mut cuts = Vec::new();
        for pick in picks {
            if newlines.is_empty() {
                break;
            }
            cuts.push(newlines.remove(usize::from(pick) % newlines.len()));
        }
        proptest::prop_assume!(cuts.len() == 5);
        cuts.sort_unstable();
        let mut b = Vec::new();
        let mut start = 0;
        for cut in cuts {
            b.push(joined[start..cut].to_owned());
            start = cut + 1;
        }
        b.push(joined[start..].to_owned());
        proptest::prop_assert_eq!(print(&a, 1) == print(&b, 1), a == b);
    }
}

#[test]
fn addresses_are_found_whole_at_any_depth_each_once() {
    let arguments = json!({
        "to": "Bob <bob@corp.example>, eve@evil.example.",
        "cc": ["bob@corp.example", {"bcc": "mallory+x@evil.example"}],
        "note": "not an address: @handle, user@, a@b@c",
    });
    assert_eq!(
        addresses_in(&arguments),
        [
            "bob@corp.example",
            "eve@evil.example",
            "mallory+x@evil.example",
        ]
    );
}

#[test]
fn the_change_request_names_each_path_resolved_with_what_becomes_of_it() {
    let envelope = alice();
    let rules = ToolRules::default();
    let paths = [
        NamedPath {
            pointer: "/path".to_owned(),
            resolved: "/srv/work/report.txt".into(),
            exists: true,
            is_directory: false,
        },
        NamedPath {
            pointer: "/copies/0".to_owned(),
            resolved: "/srv/work/new.txt".into(),
            exists: false,
            is_directory: false,
        },
    ];
    let text_for = |effect| {
        ChangeRequest {
            envelope: &envelope,
            upstream: "files",
            surface: "filesystem",
            exposed: "files.act",
            effect,
            rules: &rules,
            arguments: None,
            recipients: &[],
            target_tenant: None,
            policies: &[],
            tainted_by: &[],
            reach: &Reach::Local,
            paths: &paths,
            offer: &Offer::this_call_only(),
            definition_change: None,
        }
        .message()
    };
    for (effect, existing, new) in [
        (
            Effect::Write,
            "exists; it is overwritten or changed",
            "new; it is created",
        ),
        (
            Effect::Destructive,
            "exists; it is deleted or overwritten",
            "does not exist yet",
        ),
        (Effect::Read, "exists", "does not exist yet"),
        (
            Effect::Unknown,
            "exists; it may be changed or deleted",
            "does not exist yet",
        ),
    ] {
        let text = text_for(effect);
        for expected in [
            "Files it names, resolved as the upstream will see them:".to_owned(),
            format!("  /srv/work/report.txt (/path): {existing}\n"),
            format!("  /srv/work/new.txt (/copies/0): {new}\n"),
        ] {
            assert!(
                text.contains(&expected),
                "{effect:?}: missing `{expected}` in:\n{text}"
            );
        }
    }
}

#[test]
fn known_recipients_are_kept_across_a_restart_and_a_bad_file_knows_nobody() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("known-recipients.json");
    let known = KnownRecipients::open(file.clone());
    assert!(!known.is_known("alice", "bob@corp.example"));
    known.remember("alice", &["bob@corp.example".to_owned()]);
    assert!(known.is_known("alice", "bob@corp.example"));
    drop(known);

    let reopened = KnownRecipients::open(file.clone());
    assert!(reopened.is_known("alice", "bob@corp.example"));
    assert!(
        !reopened.is_known("mallory", "bob@corp.example"),
        "per user"
    );
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);

    std::fs::write(&file, "{ not json").unwrap();
    let corrupt = KnownRecipients::open(file);
    assert!(
        !corrupt.is_known("alice", "bob@corp.example"),
        "an unreadable file counts as knowing nobody"
    );
}
