//! A line from a client, as the stdio transport decodes it (both eras: `initialize`,
//! `tools/call`, the 2026-07-28 form with `_meta`, `requestState` and `inputResponses`), and a
//! decoded call's arguments checked against a listed tool's schema. A decoded message nests no
//! deeper than the transport allows, and JSON within that depth is never refused for depth; it
//! encodes and decodes to itself; arguments pass the check only if they declare no member the
//! schema does not list; a `requestState` Portcullis did not seal never opens.
#![no_main]

use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use portcullis_gateway::fuzzing::{ArgumentCheck, StateSealer, client_line};
use rmcp::model::{ClientJsonRpcMessage, ClientRequest, JsonRpcMessage, Tool};
use serde_json::{Value, json};

/// The transport's limit on nesting (`stdio::MAX_DEPTH`).
const MAX_DEPTH: usize = 64;

struct Fixed {
    tool: Tool,
    check: ArgumentCheck,
    sealer: StateSealer,
}

fn fixed() -> &'static Fixed {
    static FIXED: OnceLock<Fixed> = OnceLock::new();
    FIXED.get_or_init(|| {
        let schema = json!({
            "type": "object",
            "properties": {
                "path": {"type": "string", "pattern": "^/"},
                "content": {"type": "string", "maxLength": 65536},
                "mode": {"enum": ["create", "overwrite"]},
            },
            "required": ["path"],
        });
        let Value::Object(schema) = schema else {
            unreachable!("an object")
        };
        Fixed {
            tool: Tool::new("write_file", "Writes a file.", Arc::new(schema)),
            check: ArgumentCheck::default(),
            sealer: StateSealer::with_key(vec![7; 32]).expect("a 32-byte key"),
        }
    })
}

/// The nesting depth of a JSON value (a scalar is 0).
fn depth(value: &Value) -> usize {
    match value {
        Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        Value::Object(members) => 1 + members.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

fuzz_target!(|data: &[u8]| {
    let decoded = client_line(data);
    let json = serde_json::from_slice::<Value>(data).ok();
    if let Some(json) = &json
        && depth(json) <= MAX_DEPTH
    {
        assert!(
            !matches!(decoded, Err((_, reason)) if reason.contains("nested too deeply")),
            "refused for a depth within the limit"
        );
    }
    let Ok(Some(message)) = decoded else {
        return;
    };
    let encoded = serde_json::to_value(&message).expect("a decoded message encodes");
    assert!(depth(&encoded) <= MAX_DEPTH, "decoded past the depth limit");
    // Decoded once more, it is stable. Not from the first decoding: a line that repeats a
    // member (`{"name":…,"name":…}`) can fail rmcp's typed decoding and be kept whole, and its
    // encoding, repeats gone, then decodes typed (run of 2026-12-06, SECURITY.md).
    let again = |value: &Value| {
        let message: ClientJsonRpcMessage =
            serde_json::from_value(value.clone()).expect("an encoded message decodes");
        serde_json::to_value(&message).expect("encodes")
    };
    let normal = again(&encoded);
    assert_eq!(
        again(&normal),
        normal,
        "a message does not decode to itself"
    );

    let JsonRpcMessage::Request(request) = message else {
        return;
    };
    let ClientRequest::CallToolRequest(call) = request.request else {
        return;
    };
    let fixed = fixed();
    let arguments = call.params.arguments.as_ref();
    if fixed.check.check(&fixed.tool, arguments).is_ok() {
        let arguments = arguments.expect("`path` is required");
        assert!(
            arguments
                .keys()
                .all(|name| ["path", "content", "mode"].contains(&name.as_str())),
            "an undeclared argument passed"
        );
        assert!(arguments.get("path").is_some_and(Value::is_string));
    }
    if let Some(state) = &call.params.request_state {
        assert!(
            fixed.sealer.open(state, &call.params.name).is_err(),
            "a made-up requestState opened"
        );
    }
});
