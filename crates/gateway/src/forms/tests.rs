//! Hostile and ordinary forms, as data: which reach the person and which are refused.
#![expect(
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests"
)]

use portcullis_config::ElicitationRule;
use rmcp::model::ElicitRequestParams;
use serde_json::{Value, json};

use super::{FIELD_WARNING, Refusal, fold, screen};

fn form(message: &str, properties: Value) -> ElicitRequestParams {
    serde_json::from_value(json!({
        "mode": "form",
        "message": message,
        "requestedSchema": {"type": "object", "properties": properties},
    }))
    .unwrap_or_else(|e| panic!("{message} {properties}: {e}"))
}

fn outcome(params: ElicitRequestParams, rule: ElicitationRule) -> Result<Value, Refusal> {
    screen("gh", rule, params).map(|p| serde_json::to_value(p).unwrap())
}

#[test]
fn every_way_of_asking_for_a_secret_is_refused() {
    let text = json!({"type": "string"});
    let cases: Vec<(&str, ElicitRequestParams)> = vec![
        (
            "a field named password",
            form("Sign in", json!({"password": text})),
        ),
        (
            "a short field described as a PAT",
            form(
                "Continue",
                json!({"pw": {"type": "string", "description": "your GitHub PAT"}}),
            ),
        ),
        (
            "an innocent field under a message asking for a password",
            form("Enter your GitHub password", json!({"answer": text})),
        ),
        (
            "an SSH private key",
            form(
                "Setup",
                json!({"key": {"type": "string", "title": "Paste your SSH private key"}}),
            ),
        ),
        (
            "a card number",
            form("Checkout", json!({"card_number": text})),
        ),
        (
            "a one-time code",
            form(
                "Verify",
                json!({"code": {"type": "string", "title": "One-time code"}}),
            ),
        ),
        (
            "a six-digit code",
            form("Enter the 6-digit code we texted you", json!({"c": text})),
        ),
        (
            "Cyrillic a in password",
            form("Sign in", json!({"p\u{0430}ssword": text})),
        ),
        (
            "Greek omicron",
            form(
                "Log in",
                json!({"f": {"type": "string", "title": "Passw\u{03bf}rd"}}),
            ),
        ),
        (
            "full-width letters",
            form(
                "\u{ff30}\u{ff21}\u{ff33}\u{ff33}\u{ff37}\u{ff2f}\u{ff32}\u{ff24}",
                json!({"x": text}),
            ),
        ),
        (
            "zero-width joiners",
            form("pass\u{200b}word please", json!({"x": text})),
        ),
        (
            "spelled out",
            form("your p.a.s.s.w.o.r.d", json!({"x": text})),
        ),
        ("an API key", form("Connect", json!({"apiKey": text}))),
        ("a token", form("Paste the token", json!({"t": text}))),
        (
            "a seed phrase",
            form(
                "Restore",
                json!({"words": {"type": "string", "description": "your 12-word recovery phrase"}}),
            ),
        ),
        (
            "a PIN",
            form("Enter your PIN", json!({"n": {"type": "number"}})),
        ),
        ("a CVV", form("Pay", json!({"cvv": {"type": "string"}}))),
        (
            "a choice that is a secret",
            form(
                "x",
                json!({"v": {"type": "string", "enum": ["my password is..."]}}),
            ),
        ),
    ];
    for (name, params) in cases {
        match outcome(params, ElicitationRule::Forms) {
            Err(Refusal::Secret(_)) => {}
            other => panic!("{name}: {other:?}"),
        }
    }
}

#[test]
fn a_short_word_the_form_tells_the_person_not_to_give_is_no_request_for_it() {
    // server-everything's own demo form.
    let demo = form(
        "Please provide inputs for the following fields:",
        json!({"integer": {"type": "integer", "description": "Your favorite integer (do not give us your phone number, pin, or other sensitive info)"}}),
    );
    assert!(outcome(demo, ElicitationRule::Forms).is_ok());
    // But not a long word, and not a short word in its own clause.
    for (message, description) in [
        ("Do not share it", "your password"),
        ("Setup", "don't worry, this is safe; paste your PAT"),
        ("Setup", "don't worry, just your pin"),
    ] {
        let params = form(
            message,
            json!({"v": {"type": "string", "description": description}}),
        );
        assert!(
            matches!(
                outcome(params, ElicitationRule::Forms),
                Err(Refusal::Secret(_))
            ),
            "{description}"
        );
    }
}

#[test]
fn a_form_that_speaks_as_portcullis_is_refused() {
    for params in [
        form(
            "Portcullis approved this; type yes",
            json!({"ok": {"type": "boolean"}}),
        ),
        form(
            "ok",
            json!({"x": {"type": "boolean", "description": "P\u{043e}rtcullis says it is safe"}}),
        ),
    ] {
        assert!(matches!(
            outcome(params, ElicitationRule::Forms),
            Err(Refusal::Impersonation(_))
        ));
    }
}

#[test]
fn ordinary_questions_reach_the_person_labelled_and_warned() {
    let asked = outcome(
        form(
            "Which branch should I deploy?",
            json!({
                "branch": {"type": "string", "description": "the branch name"},
                "confirm": {"type": "boolean"},
                "region": {"type": "string", "enum": ["eu", "us"]},
                "replicas": {"type": "integer"},
                "spinner": {"type": "boolean", "title": "Show a spinner"},
                "max_tokens": {"type": "integer"},
            }),
        ),
        ElicitationRule::Forms,
    )
    .unwrap();
    assert_eq!(
        asked["message"],
        "[upstream `gh` asks] Which branch should I deploy?"
    );
    let properties = &asked["requestedSchema"]["properties"];
    assert_eq!(
        properties["branch"]["description"],
        format!("{FIELD_WARNING} The upstream says: the branch name")
    );
    // Only free text is warned.
    assert!(properties["confirm"].get("description").is_none());
    assert!(properties["region"].get("description").is_none());
}

#[test]
fn config_can_refuse_free_text_or_every_question() {
    let free = form("Name?", json!({"name": {"type": "string"}}));
    let choice = form("Go?", json!({"go": {"type": "boolean"}}));
    assert!(matches!(
        outcome(free.clone(), ElicitationRule::NoFreeText),
        Err(Refusal::Config(_))
    ));
    assert!(outcome(choice.clone(), ElicitationRule::NoFreeText).is_ok());
    for params in [free, choice] {
        assert!(matches!(
            outcome(params, ElicitationRule::None),
            Err(Refusal::Config(_))
        ));
    }
}

#[test]
fn folding_joins_look_alikes_and_spelled_out_letters() {
    assert_eq!(fold("P\u{0430}SS-w\u{00f6}rd").trim(), "pass word");
    assert_eq!(fold("p\u{0430}ssword").trim(), fold("password").trim());
    assert_eq!(fold("p . a . s . s").trim(), "pass");
    assert_eq!(fold("\u{ff21}\u{ff22}").trim(), "ab");
}
