//! The stateless round trip of `ask`, and how answers are reported.
#![expect(clippy::unwrap_used, reason = "tests")]

use serde_json::json;

use super::*;

fn text(response: CallToolResponse) -> (String, bool) {
    let CallToolResponse::Complete(result) = response else {
        return ("<not complete>".into(), true);
    };
    let text = result
        .content
        .first()
        .and_then(|content| content.as_text())
        .map(|content| content.text.clone())
        .unwrap_or_default();
    (text, result.is_error == Some(true))
}

fn responses(answer: serde_json::Value) -> Option<InputResponses> {
    let mut responses = InputResponses::new();
    responses.insert(CONFIRM.to_owned(), answer);
    Some(responses)
}

#[test]
fn state_is_deterministic_and_bound_to_the_question() {
    assert_eq!(state_for("ok?"), state_for("ok?"));
    assert_ne!(state_for("ok?"), state_for("ok!"));
    assert!(state_for("").starts_with(STATE_PREFIX));
}

#[test]
fn first_call_asks_for_input() {
    let response = stateless("ok?", confirm_form("ok?", None).unwrap(), None, None);
    let CallToolResponse::InputRequired(result) = response else {
        unreachable!("expected input_required");
    };
    assert_eq!(result.request_state, Some(state_for("ok?")));
    let requests = serde_json::to_value(result.input_requests).unwrap();
    let field = |pointer: &str| requests.pointer(pointer).cloned().unwrap_or_default();
    assert_eq!(field("/confirm/method"), "elicitation/create");
    assert_eq!(field("/confirm/params/message"), "ok?");
    assert_eq!(
        field("/confirm/params/requestedSchema/properties/confirm/type"),
        "boolean"
    );
}

#[test]
fn retries_report_the_answer() {
    let cases: &[(serde_json::Value, &str)] = &[
        (
            json!({"action": "accept", "content": {"confirm": true}}),
            "answer: accept confirm=true",
        ),
        (
            json!({"action": "accept", "content": {"confirm": false}}),
            "answer: accept confirm=false",
        ),
        (
            json!({"action": "accept"}),
            "answer: accept confirm=missing",
        ),
        (json!({"action": "decline"}), "answer: decline"),
        (json!({"action": "cancel"}), "answer: cancel"),
    ];
    for (answer, expected) in cases {
        let response = stateless(
            "ok?",
            confirm_form("ok?", None).unwrap(),
            Some(state_for("ok?")),
            responses(answer.clone()),
        );
        assert_eq!(text(response), ((*expected).to_owned(), false), "{answer}");
    }
}

#[test]
fn bad_retries_are_tool_errors() {
    let accept = json!({"action": "accept", "content": {"confirm": true}});
    let cases = [
        (Some(state_for("other?")), responses(accept.clone())),
        (None, responses(accept.clone())),
        (Some("forged".to_owned()), responses(accept)),
        (Some(state_for("ok?")), None),
        (
            Some(state_for("ok?")),
            responses(json!({"action": "maybe"})),
        ),
    ];
    for (state, answers) in cases {
        let (_, is_error) = text(stateless(
            "ok?",
            confirm_form("ok?", None).unwrap(),
            state,
            answers,
        ));
        assert!(is_error);
    }
}
