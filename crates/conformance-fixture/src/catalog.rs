//! The tools, resources and prompts the conformance scenarios call, as the wire shows them.

use serde_json::{Value, json};

/// A 1x1 red PNG.
pub(crate) const PNG: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==";
/// A tiny WAV header with no samples.
pub(crate) const WAV: &str = "UklGRiQAAABXQVZFZm10IBAAAAABAAEAQB8AAIA+AAACABAAZGF0YQAAAAA=";

fn no_args() -> Value {
    json!({ "type": "object", "properties": {} })
}

/// The prompt that asks for input before it can be rendered (2026-07-28).
pub(crate) const INPUT_REQUIRED_PROMPT: &str = "test_input_required_result_prompt";

/// The tools, as the wire shows them (the list-change triggers may add more).
pub(crate) fn tools() -> Vec<Value> {
    let simple = [
        ("test_simple_text", "Returns simple text"),
        ("test_image_content", "Returns an image"),
        ("test_audio_content", "Returns audio"),
        ("test_embedded_resource", "Returns an embedded resource"),
        ("test_multiple_content_types", "Returns mixed content"),
        ("test_tool_with_logging", "Logs while it runs"),
        ("test_logging_tool", "Logs while it runs"),
        ("test_error_handling", "Always fails"),
        ("test_tool_with_progress", "Reports progress"),
        ("test_elicitation_sep1034_defaults", "Elicits with defaults"),
        ("test_elicitation_sep1330_enums", "Elicits with enums"),
        (
            "test_input_required_result_elicitation",
            "Input required: elicitation",
        ),
        (
            "test_input_required_result_sampling",
            "Input required: sampling",
        ),
        (
            "test_input_required_result_list_roots",
            "Input required: roots",
        ),
        (
            "test_input_required_result_request_state",
            "Input required with state",
        ),
        (
            "test_input_required_result_multiple_inputs",
            "Input required: several",
        ),
        (
            "test_input_required_result_multi_round",
            "Input required: two rounds",
        ),
        (
            "test_input_required_result_tampered_state",
            "Input required: sealed state",
        ),
        (
            "test_input_required_result_capabilities",
            "Input required: only what the client declared",
        ),
        ("test_missing_capability", "Needs the sampling capability"),
        ("test_trigger_tool_change", "Adds a tool and announces it"),
        (
            "test_trigger_prompt_change",
            "Adds a prompt and announces it",
        ),
        (
            "test_streaming_elicitation",
            "Asks over the response stream",
        ),
        ("test_reconnection", "Answers on its response stream"),
    ];
    let mut tools: Vec<Value> = simple
        .iter()
        .map(|(name, description)| {
            json!({ "name": name, "description": description, "inputSchema": no_args() })
        })
        .collect();
    tools.push(json!({
        "name": "test_sampling",
        "description": "Asks the client's model",
        "inputSchema": { "type": "object", "properties": { "prompt": { "type": "string" } }, "required": ["prompt"] }
    }));
    tools.push(json!({
        "name": "test_elicitation",
        "description": "Asks the user",
        "inputSchema": { "type": "object", "properties": { "message": { "type": "string" } }, "required": ["message"] }
    }));
    tools.push(json!({
        "name": "json_schema_2020_12_tool",
        "description": "Tool with JSON Schema 2020-12 features",
        "inputSchema": {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "$defs": { "address": { "$anchor": "address", "type": "object", "properties": {
                "street": { "type": "string" }, "city": { "type": "string" } } } },
            "properties": { "name": { "type": "string" }, "address": { "$ref": "#/$defs/address" } },
            "additionalProperties": false,
            "allOf": [{ "required": ["name"] }, { "anyOf": [{ "required": ["name"] }, { "required": ["address"] }] }],
            "if": { "properties": { "name": { "const": "home" } } },
            "then": { "required": ["address"] },
            "else": { "properties": { "address": { "type": "object" } } }
        }
    }));
    tools.extend(task_tools());
    tools.push(json!({
        "name": "test_custom_headers",
        "description": "A tool with x-mcp-header annotations",
        "inputSchema": { "type": "object", "properties": {
            "region": { "type": "string", "description": "Plain ASCII string value", "x-mcp-header": "Region" },
            "priority": { "type": "integer", "description": "Integer numeric value", "x-mcp-header": "Priority" },
            "verbose": { "type": "boolean", "description": "Boolean value", "x-mcp-header": "Verbose" },
            "query": { "type": "string", "description": "A value without a header" } } }
    }));
    tools
}

/// The tools of the tasks scenarios (`tasks.rs` answers them).
fn task_tools() -> Vec<Value> {
    let string = json!({ "type": "string" });
    let object = |properties: Value| json!({ "type": "object", "properties": properties });
    vec![
        json!({ "name": "greet", "description": "Greets, synchronously",
            "inputSchema": object(json!({ "name": string })) }),
        json!({ "name": "slow_compute", "description": "Sleeps `seconds`, as a task if the client can",
            "inputSchema": object(json!({ "seconds": { "type": "number" }, "label": string })) }),
        json!({ "name": "failing_job", "description": "A task whose tool fails",
            "inputSchema": no_args() }),
        json!({ "name": "protocol_error_job", "description": "A task that fails with a protocol error",
            "inputSchema": no_args() }),
        json!({ "name": "confirm_delete", "description": "A task that asks for confirmation",
            "inputSchema": object(json!({ "filename": string })) }),
        json!({ "name": "multi_input", "description": "A task that asks two questions at once",
            "inputSchema": no_args() }),
        json!({ "name": "test_tool_with_task", "description": "Asks a name, then runs as a task",
            "inputSchema": no_args() }),
    ]
}

/// The resources, as the wire shows them (the skill's `SKILL.md` comes on top).
pub(crate) fn resources() -> Vec<Value> {
    vec![
        json!({ "uri": "test://static-text", "name": "static-text",
            "description": "A static text resource", "mimeType": "text/plain" }),
        json!({ "uri": "test://static-binary", "name": "static-binary",
            "description": "A static binary resource", "mimeType": "image/png" }),
        json!({ "uri": "test://watched-resource", "name": "watched-resource",
            "description": "A resource to subscribe to", "mimeType": "text/plain" }),
    ]
}

/// The resource templates, as the wire shows them.
pub(crate) fn templates() -> Value {
    json!([{ "uriTemplate": "test://template/{id}/data", "name": "template", "description": "A templated resource", "mimeType": "application/json" }])
}

/// The prompts, as the wire shows them (the list-change triggers may add more).
pub(crate) fn prompts() -> Vec<Value> {
    vec![
        json!({ "name": "test_simple_prompt", "description": "A simple prompt" }),
        json!({ "name": "test_prompt_with_arguments", "description": "A prompt with arguments", "arguments": [
            { "name": "arg1", "description": "First argument", "required": true },
            { "name": "arg2", "description": "Second argument", "required": true } ] }),
        json!({ "name": "test_prompt_with_embedded_resource", "description": "A prompt with a resource", "arguments": [
            { "name": "resourceUri", "description": "The resource to embed", "required": true } ] }),
        json!({ "name": "test_prompt_with_image", "description": "A prompt with an image" }),
        json!({ "name": INPUT_REQUIRED_PROMPT, "description": "A prompt that needs input" }),
    ]
}

/// The content of a finished tool call, when it needs no client interaction.
pub(crate) fn simple_result(name: &str) -> Option<Value> {
    let content = match name {
        "test_simple_text" => {
            json!([{ "type": "text", "text": "This is a simple text response for testing." }])
        }
        "test_image_content" => json!([{ "type": "image", "data": PNG, "mimeType": "image/png" }]),
        "test_audio_content" => json!([{ "type": "audio", "data": WAV, "mimeType": "audio/wav" }]),
        "test_embedded_resource" => json!([{ "type": "resource", "resource": {
            "uri": "test://embedded-resource", "mimeType": "text/plain",
            "text": "This is an embedded resource content." } }]),
        "test_multiple_content_types" => json!([
            { "type": "text", "text": "Multiple content types test:" },
            { "type": "image", "data": PNG, "mimeType": "image/png" },
            { "type": "resource", "resource": { "uri": "test://mixed-content-resource",
                "mimeType": "application/json", "text": "{\"test\":\"data\",\"value\":123}" } }
        ]),
        "json_schema_2020_12_tool" | "test_custom_headers" => {
            json!([{ "type": "text", "text": "ok" }])
        }
        // The SSE-polling scenario hopes this tool closes its response stream before it answers
        // (SEP-1699, a MAY). rmcp gives a handler no handle on its own POST stream, so it answers
        // in the stream, which the suite reports as information, not as a warning.
        "test_reconnection" => json!([{ "type": "text", "text": "Reconnection test completed" }]),
        "test_error_handling" => {
            return Some(json!({ "isError": true, "content": [{ "type": "text",
                "text": "This tool intentionally returns an error for testing" }] }));
        }
        _ => return None,
    };
    Some(json!({ "content": content }))
}

pub(crate) fn read(uri: &str) -> Option<Value> {
    let contents = match uri {
        "test://static-text" => json!([{ "uri": uri, "mimeType": "text/plain",
            "text": "This is the content of the static text resource." }]),
        "test://static-binary" => json!([{ "uri": uri, "mimeType": "image/png", "blob": PNG }]),
        "test://watched-resource" => {
            json!([{ "uri": uri, "mimeType": "text/plain", "text": "watched" }])
        }
        _ => {
            let id = uri
                .strip_prefix("test://template/")?
                .strip_suffix("/data")?;
            let text =
                json!({ "id": id, "templateTest": true, "data": format!("Data for ID: {id}") });
            json!([{ "uri": uri, "mimeType": "application/json", "text": text.to_string() }])
        }
    };
    Some(json!({ "contents": contents }))
}

pub(crate) fn prompt(name: &str, arguments: &serde_json::Map<String, Value>) -> Option<Value> {
    let arg = |key: &str| {
        arguments
            .get(key)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let messages = match name {
        "test_simple_prompt" => json!([{ "role": "user", "content": { "type": "text",
            "text": "This is a simple prompt for testing." } }]),
        "test_prompt_with_arguments" => json!([{ "role": "user", "content": { "type": "text",
            "text": format!("Prompt with arguments: arg1='{}', arg2='{}'", arg("arg1"), arg("arg2")) } }]),
        "test_prompt_with_embedded_resource" => json!([
            { "role": "user", "content": { "type": "resource", "resource": { "uri": arg("resourceUri"),
                "mimeType": "text/plain", "text": "Embedded resource content for testing." } } },
            { "role": "user", "content": { "type": "text", "text": "Please process the embedded resource above." } }
        ]),
        "test_prompt_with_image" => json!([
            { "role": "user", "content": { "type": "image", "data": PNG, "mimeType": "image/png" } },
            { "role": "user", "content": { "type": "text", "text": "Please analyze the image above." } }
        ]),
        _ => return None,
    };
    Some(json!({ "messages": messages }))
}

pub(crate) fn elicitation_schema(tool: &str) -> Value {
    match tool {
        "test_elicitation_sep1034_defaults" => json!({ "type": "object", "properties": {
            "name": { "type": "string", "default": "John Doe" },
            "age": { "type": "integer", "default": 30 },
            "score": { "type": "number", "default": 95.5 },
            "status": { "type": "string", "enum": ["active", "inactive", "pending"], "default": "active" },
            "verified": { "type": "boolean", "default": true } } }),
        "test_elicitation_sep1330_enums" => json!({ "type": "object", "properties": {
            "untitledSingle": { "type": "string", "enum": ["option1", "option2", "option3"] },
            "titledSingle": { "type": "string", "oneOf": [
                { "const": "value1", "title": "First Option" },
                { "const": "value2", "title": "Second Option" },
                { "const": "value3", "title": "Third Option" } ] },
            "legacyEnum": { "type": "string", "enum": ["opt1", "opt2", "opt3"],
                "enumNames": ["Option One", "Option Two", "Option Three"] },
            "untitledMulti": { "type": "array", "items": { "type": "string", "enum": ["option1", "option2", "option3"] } },
            "titledMulti": { "type": "array", "items": { "anyOf": [
                { "const": "value1", "title": "First Choice" },
                { "const": "value2", "title": "Second Choice" },
                { "const": "value3", "title": "Third Choice" } ] } } } }),
        _ => json!({ "type": "object", "properties": {
            "username": { "type": "string", "description": "User's response" },
            "email": { "type": "string", "description": "User's email address" } },
            "required": ["username", "email"] }),
    }
}
