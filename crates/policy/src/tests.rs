//! Policy cases in Cedar terms: the shipped schema and default policy, plus hostile variants.
#![expect(clippy::panic, reason = "tests")]

use std::collections::BTreeSet;

use crate::{Action, Decision, PolicyEngine, PolicyError, Request};

const SCHEMA: &str = include_str!("../../../config/portcullis.cedarschema");
const DEFAULT: &str = include_str!("../../../config/policies/default.cedar");

fn engine(extra: &str) -> PolicyEngine {
    let mut files = vec![("default.cedar".to_owned(), DEFAULT.to_owned())];
    if !extra.is_empty() {
        files.push(("extra.cedar".to_owned(), extra.to_owned()));
    }
    PolicyEngine::load("portcullis.cedarschema", SCHEMA, &files)
        .unwrap_or_else(|e| panic!("policies should load: {e}"))
}

struct Case {
    name: &'static str,
    groups: &'static [&'static str],
    scopes: &'static [&'static str],
    action: Action,
    effect: &'static str,
    required: &'static [&'static str],
    expected: &'static str,
}

fn set(values: &[&str]) -> BTreeSet<String> {
    values.iter().map(|v| (*v).to_owned()).collect()
}

fn decide(engine: &PolicyEngine, case: &Case) -> Decision {
    let groups: Vec<String> = case.groups.iter().map(|g| (*g).to_owned()).collect();
    let scopes = set(case.scopes);
    let required = set(case.required);
    engine.decide(&Request {
        issuer: "https://idp.example",
        subject: "alice",
        groups: &groups,
        tenant: Some("acme"),
        scopes: &scopes,
        action: case.action,
        upstream: "files",
        surface: "filesystem",
        tool: "write_file",
        effect: case.effect,
        required_scopes: &required,
    })
}

#[test]
fn the_shipped_default_policy() {
    let engine = engine(
        r#"
@id("contractors-never-destroy")
forbid (principal in Portcullis::Group::"contractors", action == Portcullis::Action::"call_tool", resource)
when { resource.effect == "destructive" };
"#,
    );
    let cases = [
        Case {
            name: "a read runs",
            groups: &[],
            scopes: &[],
            action: Action::CallTool,
            effect: "read",
            required: &[],
            expected: "allow (reads-run)",
        },
        Case {
            name: "a write needs approval",
            groups: &[],
            scopes: &["files.write"],
            action: Action::CallTool,
            effect: "write",
            required: &["files.write"],
            expected: "allow with approval (side-effects-need-approval)",
        },
        Case {
            name: "an unknown effect is side-effecting",
            groups: &[],
            scopes: &[],
            action: Action::CallTool,
            effect: "unknown",
            required: &[],
            expected: "allow with approval (side-effects-need-approval)",
        },
        Case {
            name: "missing scopes deny",
            groups: &[],
            scopes: &["files.read"],
            action: Action::CallTool,
            effect: "write",
            required: &["files.write"],
            expected: "deny (required-scopes)",
        },
        Case {
            name: "missing scopes deny even a read",
            groups: &[],
            scopes: &[],
            action: Action::CallTool,
            effect: "read",
            required: &["files.read"],
            expected: "deny (required-scopes)",
        },
        Case {
            name: "every tool may be listed",
            groups: &[],
            scopes: &[],
            action: Action::ListTool,
            effect: "destructive",
            required: &["x"],
            expected: "allow (list-every-tool)",
        },
        Case {
            name: "group forbid wins over the approval permit",
            groups: &["contractors"],
            scopes: &[],
            action: Action::CallTool,
            effect: "destructive",
            required: &[],
            expected: "deny (contractors-never-destroy)",
        },
        Case {
            name: "other groups are unaffected",
            groups: &["eng"],
            scopes: &[],
            action: Action::CallTool,
            effect: "destructive",
            required: &[],
            expected: "allow with approval (side-effects-need-approval)",
        },
    ];
    for case in &cases {
        assert_eq!(
            decide(&engine, case).to_string(),
            case.expected,
            "{}",
            case.name
        );
    }
}

#[test]
fn nothing_permitted_is_denied() {
    let engine = PolicyEngine::load("s", SCHEMA, &[]).unwrap_or_else(|e| panic!("{e}"));
    let case = Case {
        name: "empty",
        groups: &[],
        scopes: &[],
        action: Action::CallTool,
        effect: "read",
        required: &[],
        expected: "",
    };
    assert_eq!(
        decide(&engine, &case).to_string(),
        "deny (no policy permits this)"
    );
}

#[test]
fn an_erroring_forbid_still_denies() {
    // Cedar skips a policy whose evaluation errors; Portcullis must not let that allow.
    let engine = engine(
        r#"
@id("overflowing-forbid")
forbid (principal, action == Portcullis::Action::"call_tool", resource)
when { 9223372036854775807 + (if resource.effect == "read" then 1 else 0) > 0 };
"#,
    );
    let case = Case {
        name: "overflow",
        groups: &[],
        scopes: &[],
        action: Action::CallTool,
        effect: "read",
        required: &[],
        expected: "",
    };
    let decision = decide(&engine, &case);
    assert!(
        matches!(&decision, Decision::Deny { errors, .. } if !errors.is_empty()),
        "{decision}"
    );
}

#[test]
fn broken_policies_do_not_load() {
    let broken = |text: &str| {
        PolicyEngine::load(
            "portcullis.cedarschema",
            SCHEMA,
            &[("broken.cedar".to_owned(), text.to_owned())],
        )
    };
    match broken("permit (principal, action, resource") {
        Err(PolicyError::Parse { file, .. }) => assert_eq!(file, "broken.cedar"),
        other => panic!("expected a parse error, got {other:?}"),
    }
    match broken(
        "permit (principal, action == Portcullis::Action::\"call_tool\", resource) when { resource.colour == \"red\" };",
    ) {
        Err(PolicyError::Invalid(message)) => assert!(message.contains("colour"), "{message}"),
        other => panic!("expected a validation error, got {other:?}"),
    }
    match PolicyEngine::load("bad.cedarschema", "namespace {", &[]) {
        Err(PolicyError::Schema { file, .. }) => assert_eq!(file, "bad.cedarschema"),
        other => panic!("expected a schema error, got {other:?}"),
    }
}
