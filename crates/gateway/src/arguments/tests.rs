//! The argument check against hostile and ordinary schemas.
#![expect(clippy::unwrap_used, reason = "tests")]

use rmcp::model::Tool;
use serde_json::json;

use super::ArgumentCheck;

fn tool(schema: serde_json::Value) -> Tool {
    Tool::new(
        "t",
        "a tool",
        std::sync::Arc::new(schema.as_object().cloned().unwrap()),
    )
}

fn check(schema: serde_json::Value, arguments: serde_json::Value) -> Result<(), String> {
    ArgumentCheck::default().check(&tool(schema), arguments.as_object())
}

#[test]
fn arguments_must_match_the_declared_schema() {
    let mail = json!({
        "type": "object",
        "properties": {
            "to": {"type": "string", "format": "email"},
            "body": {"type": "string", "maxLength": 10},
            "priority": {"enum": ["low", "high"]},
        },
        "required": ["to"],
        "additionalProperties": false,
    });
    // (arguments, expected: None = passes, Some(part of the message))
    let cases = [
        (json!({"to": "a@b.example"}), None),
        (json!({"to": "a@b.example", "priority": "high"}), None),
        (json!({}), Some("missing `to`")),
        (
            json!({"to": 7}),
            Some("at `/to`: expected string, got number"),
        ),
        (
            json!({"to": "a@b.example", "bcc": "x@evil.example"}),
            Some("`bcc` is not declared by the tool"),
        ),
        (
            json!({"to": "a@b.example", "body": "far too long a body"}),
            Some("longer than 10 characters"),
        ),
        (
            json!({"to": "a@b.example", "priority": "urgent"}),
            Some("not one of the values"),
        ),
    ];
    for (arguments, expected) in cases {
        let result = check(mail.clone(), arguments.clone());
        match expected {
            None => assert_eq!(result, Ok(()), "{arguments}"),
            Some(part) => {
                let message = result.unwrap_err();
                assert!(message.contains(part), "{arguments}: {message}");
                assert!(
                    !message.contains("evil"),
                    "no value in the message: {message}"
                );
                assert!(!message.contains("far too long"), "{message}");
            }
        }
    }
}

#[test]
fn a_hostile_schema_loads_nothing_and_cannot_stall_the_check() {
    // A reference to a local file or a URL is not followed: the schema cannot be used.
    for reference in ["file:///etc/passwd", "http://127.0.0.1:9/schema.json"] {
        let refused = check(
            json!({"type": "object", "properties": {"x": {"$ref": reference}}}),
            json!({"x": 1}),
        );
        let message = refused.unwrap_err();
        assert!(message.contains("input schema cannot be used"), "{message}");
        assert!(!message.contains("root:"), "{message}");
    }
    // A pattern that backtracks exponentially elsewhere is linear here.
    let evil =
        json!({"type": "object", "properties": {"x": {"type": "string", "pattern": "^(a+)+$"}}});
    let input = "a".repeat(5000) + "!";
    let refused = check(evil, json!({ "x": input }));
    assert!(refused.unwrap_err().contains("does not match the pattern"));
    // Not a schema at all: refused, not waved through.
    let refused = check(json!({"type": 12}), json!({}));
    assert!(refused.unwrap_err().contains("input schema cannot be used"));
}

#[test]
fn a_schema_that_allows_anything_lets_anything_through() {
    assert_eq!(
        check(json!({"type": "object"}), json!({"any": [1, {"x": null}]})),
        Ok(())
    );
    assert_eq!(check(json!({}), json!({})), Ok(()));
}

#[test]
fn an_argument_the_tool_does_not_declare_is_refused_unless_its_schema_opens_the_object() {
    let declared = json!({"type": "object", "properties": {"path": {"type": "string"}}});
    assert_eq!(check(declared.clone(), json!({"path": "a"})), Ok(()));
    let refused = check(declared, json!({"path": "a", "__exec": "id"})).unwrap_err();
    assert!(
        refused.contains("`__exec` is not declared by the tool"),
        "{refused}"
    );
    // Nested objects are left as written; so are schemas that say how other members stand,
    // or whose top level is a composition, and ones that declare no properties at all.
    let open = [
        json!({"type": "object", "properties": {"o": {"type": "object", "properties": {"a": {}}}}}),
        json!({"type": "object", "properties": {"path": {}}, "additionalProperties": true}),
        json!({"type": "object", "properties": {"path": {}}, "patternProperties": {"^x_": {}}}),
        json!({"type": "object", "properties": {"path": {}}, "allOf": [{"properties": {"extra": {}}}]}),
        json!({"type": "object"}),
    ];
    let arguments = [
        json!({"o": {"a": 1, "b": 2}}),
        json!({"path": "a", "other": 1}),
        json!({"path": "a", "x_more": 1}),
        json!({"path": "a", "extra": 1}),
        json!({"anything": 1}),
    ];
    for (schema, arguments) in open.into_iter().zip(arguments) {
        assert_eq!(check(schema.clone(), arguments), Ok(()), "{schema}");
    }
}
