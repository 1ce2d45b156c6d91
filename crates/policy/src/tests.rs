//! Policy cases in Cedar terms: the shipped schema and default policy, plus the data-driven
//! cases of `fixtures/policy/cases.toml` and hostile variants.
#![expect(clippy::panic, clippy::unwrap_used, reason = "tests")]

use std::collections::BTreeSet;

use expect_test::expect;
use portcullis_core::{Effect, IdentityEnvelope, Surface};
use serde::Deserialize;

use crate::{
    Action, ApprovalRule, Decision, Facts, PolicyEngine, Request, SHIPPED_POLICY, SHIPPED_SCHEMA,
    Source, Target, Verdict,
};

const EXTRA: &str = include_str!("../../../fixtures/policy/extra.cedar");
const CASES: &str = include_str!("../../../fixtures/policy/cases.toml");
/// 2026-12-01T00:00:00Z.
const NOW: u64 = 1_796_083_200;

fn source(name: &str, text: &str) -> Source {
    Source {
        name: name.to_owned(),
        text: text.to_owned(),
    }
}

fn engine_with(files: &[Source]) -> PolicyEngine {
    PolicyEngine::load(&source("portcullis.cedarschema", SHIPPED_SCHEMA), files)
        .unwrap_or_else(|e| panic!("policies should load: {e}"))
}

fn envelope(groups: &[String], tenant: Option<&str>, scopes: &[String]) -> IdentityEnvelope {
    let person = portcullis_test_support::alice()
        .groups(groups)
        .scopes(scopes);
    match tenant {
        Some(tenant) => person.tenant(tenant),
        None => person,
    }
    .envelope()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Cases {
    case: Vec<Case>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    action: String,
    expected: String,
    reason: Option<String>,
    policies: Option<Vec<String>>,
    #[serde(default)]
    groups: Vec<String>,
    tenant: Option<String>,
    #[serde(default)]
    scopes: Vec<String>,
    #[serde(default)]
    required: Vec<String>,
    upstream: Option<String>,
    surface: Option<String>,
    tool: Option<String>,
    effect: Option<String>,
    prompt: Option<String>,
    uri: Option<String>,
    arguments: Option<serde_json::Map<String, serde_json::Value>>,
    now: Option<u64>,
    #[serde(default)]
    crosses_tenant: bool,
    #[serde(default)]
    new_recipient: bool,
    #[serde(default)]
    escalates: bool,
    #[serde(default)]
    tainted: bool,
}

fn run(case: &Case) -> Decision {
    let files: Vec<Source> = case
        .policies
        .clone()
        .unwrap_or_else(|| vec!["default".to_owned(), "extra".to_owned()])
        .iter()
        .map(|name| match name.as_str() {
            "default" => source("default.cedar", SHIPPED_POLICY),
            "extra" => source("extra.cedar", EXTRA),
            other => panic!("unknown policy file `{other}` in case `{}`", case.name),
        })
        .collect();
    let engine = engine_with(&files);
    let envelope = envelope(
        &case.groups,
        Some(case.tenant.as_deref().unwrap_or("acme")),
        &case.scopes,
    );
    let required: BTreeSet<String> = case.required.iter().cloned().collect();
    let action = match case.action.as_str() {
        "list_tool" => Action::ListTool,
        "call_tool" => Action::CallTool,
        "get_prompt" => Action::GetPrompt,
        "read_resource" => Action::ReadResource,
        other => panic!("unknown action `{other}`"),
    };
    let effect = match case.effect.as_deref() {
        None | Some("unknown") => Effect::Unknown,
        Some(name) => Effect::from_name(name).unwrap(),
    };
    let target = if let Some(prompt) = &case.prompt {
        Target::Prompt { name: prompt }
    } else if let Some(uri) = &case.uri {
        Target::Resource { uri }
    } else {
        Target::Tool {
            name: case.tool.as_deref().unwrap_or("write_file"),
            effect,
            required_scopes: &required,
            arguments: case.arguments.as_ref(),
        }
    };
    let request = Request {
        envelope: &envelope,
        action,
        upstream: case.upstream.as_deref().unwrap_or("files"),
        surface: Surface::from_name(case.surface.as_deref().unwrap_or("filesystem")).unwrap(),
        target,
        now: case.now.unwrap_or(NOW),
        facts: Facts {
            crosses_tenant: case.crosses_tenant,
            new_recipient: case.new_recipient,
            escalates: case.escalates,
            tainted: case.tainted,
        },
    };
    // Requests are not validated when decided (for speed): every case checks that the request
    // Portcullis builds fits the schema, so a drift between the two fails here.
    if let Err(error) = engine.conforms(&request) {
        panic!(
            "case `{}`: the request does not fit the schema: {error}",
            case.name
        );
    }
    engine.decide(&request)
}

/// A call of `files.<tool>` by alice, without groups, tenant or scopes, and no arguments.
fn call_without_scopes(engine: &PolicyEngine, tool: &str, effect: Effect) -> Decision {
    let scopes = BTreeSet::new();
    let envelope = envelope(&[], None, &[]);
    engine.decide(&Request {
        envelope: &envelope,
        action: Action::CallTool,
        upstream: "files",
        surface: Surface::Filesystem,
        target: Target::Tool {
            name: tool,
            effect,
            required_scopes: &scopes,
            arguments: None,
        },
        now: NOW,
        facts: Facts::default(),
    })
}

#[test]
fn the_policy_cases() {
    let cases: Cases = toml::from_str(CASES).unwrap();
    assert!(cases.case.len() >= 20, "the case file was read");
    let mut failures = Vec::new();
    for case in &cases.case {
        let decision = run(case);
        if decision.to_string() != case.expected {
            failures.push(format!(
                "{}: expected `{}`, got `{decision}`",
                case.name, case.expected
            ));
        }
        if let Some(reason) = &case.reason
            && decision.deny_reason() != *reason
        {
            failures.push(format!(
                "{}: expected the reason `{reason}`, got `{}`",
                case.name,
                decision.deny_reason()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn an_erroring_forbid_still_denies() {
    // Cedar skips a policy whose evaluation errors; Portcullis must not let that allow.
    let engine = engine_with(&[
        source("default.cedar", SHIPPED_POLICY),
        source(
            "overflow.cedar",
            r#"
@id("overflowing-forbid")
forbid (principal, action == Portcullis::Action::"call_tool", resource)
when { 9223372036854775807 + (if resource.effect == "read" then 1 else 0) > 0 };
"#,
        ),
    ]);
    let decision = call_without_scopes(&engine, "read_file", Effect::Read);
    assert_eq!(decision.verdict, Verdict::Deny, "{decision}");
    assert!(!decision.errors.is_empty(), "{decision}");
    // The client is told it was refused, not the evaluation error (a policy internal).
    assert_eq!(
        decision.deny_reason(),
        "the policy could not be evaluated for this request, so it was refused"
    );
}

#[test]
fn problems_name_the_file_line_and_column() {
    let load = |schema: &str, text: &str| {
        PolicyEngine::load(
            &source("portcullis.cedarschema", schema),
            &[
                source("default.cedar", SHIPPED_POLICY),
                source("broken.cedar", text),
            ],
        )
        .map(|_| ())
        .unwrap_err()
        .to_string()
    };
    expect![[r#"broken.cedar:3:36: unexpected end of input"#]].assert_eq(&load(
        SHIPPED_SCHEMA,
        "// a policy missing its end\n\npermit (principal, action, resource",
    ));
    expect!["broken.cedar:2:80: policy `policy0`: attribute `colour` on entity type `Portcullis::Tool` not found (did you mean `effect`?)"].assert_eq(&load(
        SHIPPED_SCHEMA,
        "\npermit (principal, action == Portcullis::Action::\"call_tool\", resource) when { resource.colour == \"red\" };",
    ));
    expect!["portcullis.cedarschema:1:11: error parsing schema: unexpected token `{` (action declarations require `appliesTo` before the `{ ... }` block)"].assert_eq(&load(
        "namespace {",
        "",
    ));
}

#[test]
fn explanations_name_the_policy_file_and_line() {
    let engine = engine_with(&[source("default.cedar", SHIPPED_POLICY)]);
    let decision = call_without_scopes(&engine, "write_file", Effect::Write);
    let policy = decision.policies.first().unwrap();
    assert_eq!(
        (policy.id.as_str(), policy.file.as_str(), policy.line),
        ("side-effects-need-approval", "default.cedar", 28)
    );
    let text = engine.policy_text(policy).unwrap();
    assert!(text.contains(r#"resource.effect != "read""#), "{text}");
}

#[test]
fn a_request_that_drifted_from_the_schema_is_caught() {
    // The schema without `User.subject`: the requests Portcullis builds no longer fit it.
    let drifted = SHIPPED_SCHEMA.replace("    subject: String,\n", "");
    assert_ne!(drifted, SHIPPED_SCHEMA, "the schema declares `subject`");
    let engine = PolicyEngine::load(&source("drifted.cedarschema", &drifted), &[]).unwrap();
    let scopes = BTreeSet::new();
    let envelope = envelope(&[], None, &[]);
    let request = Request {
        envelope: &envelope,
        action: Action::ListTool,
        upstream: "files",
        surface: Surface::Filesystem,
        target: Target::Tool {
            name: "read_file",
            effect: Effect::Read,
            required_scopes: &scopes,
            arguments: None,
        },
        now: NOW,
        facts: Facts::default(),
    };
    assert!(engine.conforms(&request).is_err());
}

/// One `decide_call` case: name, effect, required scopes, held scopes, can step up, tainted,
/// reaches the network, the expected outcome.
type CallCase<'a> = (
    &'a str,
    Effect,
    &'a BTreeSet<String>,
    &'a [&'a str],
    bool,
    bool,
    bool,
    &'a str,
);

/// The whole call decision (`decide_call`) against the shipped policy: scopes no step-up can
/// add hide the tool; the taint rule asks for side effects and for reads that reach the network.
#[test]
fn the_call_decision_hides_denies_asks_or_allows_in_order() {
    use crate::{
        CallDecision, CallInput, Hidden, decide_call, decide_listing, decide_visible_call,
    };
    let engine = engine_with(&[source("default.cedar", SHIPPED_POLICY)]);
    let needs_write: BTreeSet<String> = ["files.write".to_owned()].into();
    let none = BTreeSet::new();
    // (case, effect, required scopes, held scopes, step-up, tainted, network, expected)
    let cases: [CallCase<'_>; 9] = [
        (
            "a read runs",
            Effect::Read,
            &none,
            &[],
            false,
            false,
            false,
            "allowed",
        ),
        (
            "a write is asked",
            Effect::Write,
            &none,
            &[],
            false,
            false,
            false,
            "asked by policy",
        ),
        (
            "no scope, no step-up: hidden",
            Effect::Read,
            &needs_write,
            &[],
            false,
            false,
            false,
            "hidden by scopes",
        ),
        (
            "no scope, step-up: denied naming it",
            Effect::Read,
            &needs_write,
            &[],
            true,
            false,
            false,
            "denied",
        ),
        (
            "with the scope: runs",
            Effect::Read,
            &needs_write,
            &["files.write"],
            false,
            false,
            false,
            "allowed",
        ),
        (
            "tainted local read runs",
            Effect::Read,
            &none,
            &[],
            false,
            true,
            false,
            "allowed",
        ),
        (
            "tainted network read is asked",
            Effect::Read,
            &none,
            &[],
            false,
            true,
            true,
            "asked for taint",
        ),
        (
            "untainted network read runs",
            Effect::Read,
            &none,
            &[],
            false,
            false,
            true,
            "allowed",
        ),
        (
            "tainted write: policy asks already",
            Effect::Write,
            &none,
            &[],
            false,
            true,
            false,
            "asked by policy",
        ),
    ];
    for (name, effect, required, held, can_step_up, tainted, reaches_network, expected) in cases {
        let held: Vec<String> = held.iter().map(|s| (*s).to_owned()).collect();
        let envelope = envelope(&[], Some("acme"), &held);
        let input = CallInput {
            envelope: &envelope,
            upstream: "files",
            surface: Surface::Filesystem,
            tool: "t",
            effect,
            required_scopes: required,
            arguments: None,
            facts: Facts {
                tainted,
                ..Facts::default()
            },
            reaches_network,
            can_step_up,
            now: NOW,
        };
        let decided = decide_call(&engine, &input);
        // Once the list check passed, the call check alone decides the same.
        if decide_listing(&engine, &input).is_ok() {
            assert_eq!(
                format!("{:?}", decide_visible_call(&engine, &input)),
                format!("{decided:?}"),
                "{name}"
            );
        }
        let got = match decided {
            CallDecision::Hidden(Hidden::MissingScopes(_)) => "hidden by scopes",
            CallDecision::Hidden(Hidden::ByPolicy(_)) => "hidden by policy",
            CallDecision::Denied { reason, .. } => {
                assert!(
                    reason.contains("missing: `files.write`"),
                    "{name}: {reason}"
                );
                "denied"
            }
            CallDecision::Allowed(_) => "allowed",
            CallDecision::NeedsApproval {
                because_tainted: true,
                ..
            } => "asked for taint",
            CallDecision::NeedsApproval { .. } => "asked by policy",
        };
        assert_eq!(got, expected, "{name}");
    }
}

#[test]
fn every_problem_of_every_file_is_reported_in_one_run_naming_the_policy_by_its_id() {
    let problems = PolicyEngine::load(
        &source("portcullis.cedarschema", SHIPPED_SCHEMA),
        &[
            source("default.cedar", SHIPPED_POLICY),
            source(
                "typos.cedar",
                "@id(\"no-red-tools\")\nforbid (principal, action, resource) when { resource.colour == \"red\" };\n\n@id(\"bad-effect\")\npermit (principal, action, resource) when { resource.effect == 3 };\n\npermit (principal, action, resource) when { principal.nickname == \"x\" };\n",
            ),
            source(
                "broken.cedar",
                "permit (principal, action, resource",
            ),
        ],
    )
    .map(|_| ())
    .unwrap_err()
    .to_string();
    expect![[r#"
        broken.cedar:1:36: unexpected end of input
        typos.cedar:2:45: policy `no-red-tools`: attribute `colour` on entity type `Portcullis::Prompt` not found (did you mean `name`?)
        typos.cedar:2:45: policy `no-red-tools`: attribute `colour` on entity type `Portcullis::Resource` not found (did you mean `uri`?)
        typos.cedar:2:45: policy `no-red-tools`: attribute `colour` on entity type `Portcullis::Tool` not found (did you mean `effect`?)
        typos.cedar:5:45: policy `bad-effect`: attribute `effect` on entity type `Portcullis::Prompt` not found (did you mean `name`?)
        typos.cedar:5:45: policy `bad-effect`: attribute `effect` on entity type `Portcullis::Resource` not found (did you mean `uri`?)
        typos.cedar:5:45: policy `bad-effect`: the types Long and String are not compatible (both operands to a `==` expression must have compatible types. Types must be exactly equal to be compatible)
        typos.cedar:7:45: policy `policy2`: attribute `nickname` on entity type `Portcullis::User` not found (did you mean `issuer`?)"#]].assert_eq(&problems);
}

/// A write of `files.write_file` by alice with these facts.
fn write_with(engine: &PolicyEngine, facts: Facts) -> Decision {
    let scopes = BTreeSet::new();
    let envelope = envelope(&[], None, &[]);
    engine.decide(&Request {
        envelope: &envelope,
        action: Action::CallTool,
        upstream: "files",
        surface: Surface::Filesystem,
        target: Target::Tool {
            name: "write_file",
            effect: Effect::Write,
            required_scopes: &scopes,
            arguments: None,
        },
        now: NOW,
        facts,
    })
}

#[test]
fn the_three_approval_rules_load_and_the_strictest_of_the_permits_wins() {
    let engine = engine_with(&[source(
        "rules.cedar",
        r#"
@id("writes-ask")
@approval("required")
permit (principal, action == Portcullis::Action::"call_tool", resource)
when { resource.effect == "write" };

@id("new-recipients-once")
@approval("once")
permit (principal, action == Portcullis::Action::"call_tool", resource)
when { context.new_recipient };

@id("escalations-by-another")
@approval("other")
permit (principal, action == Portcullis::Action::"call_tool", resource)
when { context.escalates };
"#,
    )]);
    let cases = [
        (Facts::default(), ApprovalRule::Required),
        (
            Facts {
                new_recipient: true,
                ..Facts::default()
            },
            ApprovalRule::Once,
        ),
        (
            Facts {
                new_recipient: true,
                escalates: true,
                ..Facts::default()
            },
            ApprovalRule::Other,
        ),
        (
            Facts {
                escalates: true,
                ..Facts::default()
            },
            ApprovalRule::Other,
        ),
    ];
    for (facts, rule) in cases {
        let decision = write_with(&engine, facts);
        assert_eq!(
            decision.verdict,
            Verdict::ApprovalRequired(rule),
            "{facts:?}: {decision}"
        );
    }
    expect!["allow with approval by another person (escalations-by-another, writes-ask)"]
        .assert_eq(
            &write_with(
                &engine,
                Facts {
                    escalates: true,
                    ..Facts::default()
                },
            )
            .to_string(),
        );
    assert!(ApprovalRule::Required.allows_scope());
    assert!(!ApprovalRule::Once.allows_scope() && !ApprovalRule::Other.allows_scope());
}

#[test]
fn an_unknown_approval_value_is_a_load_error_at_its_line() {
    let load = |text: &str| {
        PolicyEngine::load(
            &source("portcullis.cedarschema", SHIPPED_SCHEMA),
            &[source("rules.cedar", text)],
        )
        .map(|_| ())
        .unwrap_err()
        .to_string()
    };
    expect![[r#"rules.cedar:3:1: policy `writes-ask`: `@approval("sometimes")` is not an approval rule; write one of `"required"`, `"once"`, `"other"`"#]].assert_eq(&load(
        "// writes\n@id(\"writes-ask\")\n@approval(\"sometimes\")\npermit (principal, action, resource);",
    ));
    // Written without a value, or in another case: not a rule either.
    expect![[r#"rules.cedar:1:1: policy `policy0`: `@approval("")` is not an approval rule; write one of `"required"`, `"once"`, `"other"`"#]].assert_eq(&load(
        "@approval\npermit (principal, action, resource);",
    ));
    expect![[r#"rules.cedar:2:1: policy `p`: `@approval("Once")` is not an approval rule; write one of `"required"`, `"once"`, `"other"`"#]].assert_eq(&load(
        "@id(\"p\")\n@approval(\"Once\")\npermit (principal, action, resource);",
    ));
}

#[test]
fn the_digest_names_the_texts_loaded_not_where_they_came_from() {
    let permit = "@id(\"p\") permit (principal, action, resource);";
    let here = engine_with(&[source("/etc/a/default.cedar", permit)]);
    let there = engine_with(&[source("/srv/b/other-name.cedar", permit)]);
    assert!(here.digest().starts_with("sha256:"), "{}", here.digest());
    assert_eq!(here.digest(), there.digest());
    let other = engine_with(&[source(
        "/etc/a/default.cedar",
        "@id(\"p\") forbid (principal, action, resource);",
    )]);
    assert_ne!(here.digest(), other.digest());
    // The same texts cut differently between files are another load.
    let split = engine_with(&[source("a.cedar", permit), source("b.cedar", "")]);
    assert_ne!(here.digest(), split.digest());
}

/// Policies that each read one part of a request, so that requests differing in that part
/// alone are decided differently; none reads tags, so decisions are memoised.
const EVERY_PART: &str = r#"
permit (principal, action, resource);
@id("eng-no-writes") forbid (principal in Portcullis::Group::"eng", action == Portcullis::Action::"call_tool", resource) when { resource.effect == "write" };
@id("globex") forbid (principal in Portcullis::Tenant::"globex", action, resource);
@id("bob") forbid (principal, action, resource) when { principal.subject == "bob" };
@id("mail") forbid (principal, action == Portcullis::Action::"call_tool", resource in Portcullis::Upstream::"mail");
@id("shell") forbid (principal, action == Portcullis::Action::"call_tool", resource) when { resource.surface == "shell" };
@id("drop") forbid (principal, action == Portcullis::Action::"call_tool", resource) when { resource.name == "drop_table" };
@id("no-list") forbid (principal, action == Portcullis::Action::"list_tool", resource) when { resource.name == "hidden" };
@id("secret-prompt") forbid (principal, action == Portcullis::Action::"get_prompt", resource) when { resource.name == "secret" };
@id("secret-uri") forbid (principal, action == Portcullis::Action::"read_resource", resource) when { resource.uri like "secret://*" };
@id("scopes") forbid (principal, action == Portcullis::Action::"call_tool", resource) unless { context.scopes.containsAll(context.required_scopes) };
@id("crossing") forbid (principal, action, resource) when { context.crosses_tenant };
@id("recipient") forbid (principal, action, resource) when { context.new_recipient };
@id("escalates") forbid (principal, action, resource) when { context.escalates };
@id("tainted") forbid (principal, action, resource) when { context.tainted };
@id("later") forbid (principal, action, resource) when { context.now >= 1796083210 };
"#;

#[test]
fn memoised_decisions_are_the_decisions_cedar_makes_for_every_part_of_a_request() {
    let engine = engine_with(&[source("every-part.cedar", EVERY_PART)]);
    let plain = portcullis_test_support::alice().envelope();
    let eng = portcullis_test_support::alice().groups(&["eng"]).envelope();
    let globex = portcullis_test_support::alice().tenant("globex").envelope();
    let bob = portcullis_test_support::person("bob").envelope();
    let scoped = portcullis_test_support::alice()
        .scopes(&["files:write"])
        .envelope();
    let no_scopes = BTreeSet::new();
    let write_scope = BTreeSet::from(["files:write".to_owned()]);
    let base = Request {
        envelope: &plain,
        action: Action::CallTool,
        upstream: "files",
        surface: Surface::Filesystem,
        target: Target::Tool {
            name: "write_file",
            effect: Effect::Write,
            required_scopes: &no_scopes,
            arguments: None,
        },
        now: NOW,
        facts: Facts::default(),
    };
    let tool = |name, effect, required_scopes| Target::Tool {
        name,
        effect,
        required_scopes,
        arguments: None,
    };
    let facts = |f: fn(&mut Facts)| {
        let mut facts = Facts::default();
        f(&mut facts);
        facts
    };
    let requests = [
        base,
        Request {
            envelope: &eng,
            ..base
        },
        Request {
            envelope: &globex,
            ..base
        },
        Request {
            envelope: &bob,
            ..base
        },
        Request {
            upstream: "mail",
            ..base
        },
        Request {
            surface: Surface::Shell,
            ..base
        },
        Request {
            target: tool("drop_table", Effect::Write, &no_scopes),
            ..base
        },
        Request {
            target: tool("write_file", Effect::Read, &no_scopes),
            ..Request {
                envelope: &eng,
                ..base
            }
        },
        Request {
            target: tool("write_file", Effect::Write, &write_scope),
            ..base
        },
        Request {
            envelope: &scoped,
            target: tool("write_file", Effect::Write, &write_scope),
            ..base
        },
        Request {
            action: Action::ListTool,
            target: tool("hidden", Effect::Write, &no_scopes),
            ..base
        },
        Request {
            target: tool("hidden", Effect::Write, &no_scopes),
            ..base
        },
        Request {
            action: Action::GetPrompt,
            target: Target::Prompt { name: "secret" },
            ..base
        },
        Request {
            action: Action::GetPrompt,
            target: Target::Prompt { name: "greeting" },
            ..base
        },
        Request {
            action: Action::ReadResource,
            target: Target::Resource { uri: "secret://a" },
            ..base
        },
        Request {
            action: Action::ReadResource,
            target: Target::Resource { uri: "file:///a" },
            ..base
        },
        Request {
            facts: facts(|f| f.crosses_tenant = true),
            ..base
        },
        Request {
            facts: facts(|f| f.new_recipient = true),
            ..base
        },
        Request {
            facts: facts(|f| f.escalates = true),
            ..base
        },
        Request {
            facts: facts(|f| f.tainted = true),
            ..base
        },
        Request {
            now: NOW + 10,
            ..base
        },
    ];
    // Twice through the memo, in order: a part the key left out would answer a later request
    // with an earlier one's decision.
    for round in 0..2 {
        for (n, request) in requests.iter().enumerate() {
            assert_eq!(
                engine.decide(request),
                engine.decide_now(request),
                "request {n}, round {round}"
            );
        }
    }
    let distinct: BTreeSet<String> = requests
        .iter()
        .map(|request| engine.decide_now(request).to_string())
        .collect();
    assert!(
        distinct.len() >= 15,
        "the requests are decided differently: {distinct:?}"
    );
    assert_eq!(
        engine.memoised(),
        requests.len(),
        "each request was kept once"
    );
}

#[test]
fn decisions_are_not_memoised_when_a_policy_reads_the_arguments() {
    let engine = engine_with(&[
        source("default.cedar", SHIPPED_POLICY),
        source("extra.cedar", EXTRA),
    ]);
    let envelope = envelope(&[], Some("acme"), &[]);
    let scopes = BTreeSet::new();
    let send = |to: &str| {
        let arguments = serde_json::json!({ "to": to });
        engine
            .decide(&Request {
                envelope: &envelope,
                action: Action::CallTool,
                upstream: "mail",
                surface: Surface::HttpApi,
                target: Target::Tool {
                    name: "send_email",
                    effect: Effect::Send,
                    required_scopes: &scopes,
                    arguments: arguments.as_object(),
                },
                now: NOW,
                facts: Facts::default(),
            })
            .verdict
    };
    assert_ne!(send("bob@acme.example"), Verdict::Deny);
    assert_eq!(send("x@evil.example"), Verdict::Deny);
    assert_ne!(send("bob@acme.example"), Verdict::Deny);
    assert_eq!(engine.memoised(), 0);
}

#[test]
fn the_memo_is_bounded() {
    let engine = engine_with(&[source("default.cedar", SHIPPED_POLICY)]);
    let envelope = envelope(&[], None, &[]);
    let scopes = BTreeSet::new();
    let names: Vec<String> = (0..crate::memo::MEMO_LIMIT + 10)
        .map(|n| format!("tool_{n}"))
        .collect();
    for name in &names {
        engine.decide(&Request {
            envelope: &envelope,
            action: Action::CallTool,
            upstream: "files",
            surface: Surface::Filesystem,
            target: Target::Tool {
                name,
                effect: Effect::Read,
                required_scopes: &scopes,
                arguments: None,
            },
            now: NOW,
            facts: Facts::default(),
        });
        assert!(engine.memoised() <= crate::memo::MEMO_LIMIT);
    }
    assert!(engine.memoised() > 0);
}
