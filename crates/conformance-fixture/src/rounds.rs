//! Input-required results (2026-07-28 multi-round-trip requests): the tool asks the client for
//! elicitation, sampling or roots in its result, and the client retries with the answers in
//! `inputResponses` (and the `requestState` the tool gave it, untouched).

use rmcp::ErrorData as McpError;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ErrorCode, InputRequiredResult,
    RequestStateCodec,
};
use rmcp::service::{RequestContext, RoleServer};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

/// The error code a stateless server answers with when the client lacks a needed capability.
const MISSING_CAPABILITY: ErrorCode = ErrorCode(-32021);

/// Parses a wire-shaped value into an rmcp type; fixture data that does not parse is a bug here.
pub(crate) fn from_json<T: DeserializeOwned>(value: Value) -> Result<T, McpError> {
    serde_json::from_value(value)
        .map_err(|e| McpError::internal_error(format!("fixture data does not parse: {e}"), None))
}

/// Parses a wire-shaped final result, marked `resultType: "complete"`: 2026-07-28 requires the
/// mark on every final result, and rmcp strips it again for session-era peers.
pub(crate) fn finished<T: DeserializeOwned>(mut result: Value) -> Result<T, McpError> {
    if let Some(object) = result.as_object_mut() {
        object.insert("resultType".to_owned(), json!("complete"));
    }
    from_json(result)
}

/// A finished call with one text block.
pub(crate) fn text(text: impl Into<String>) -> Result<CallToolResponse, McpError> {
    finished::<CallToolResult>(json!({ "content": [{ "type": "text", "text": text.into() }] }))
        .map(CallToolResponse::Complete)
}

/// An input-required result asking `requests` (keyed by the name the answer comes back under).
pub(crate) fn input_required(
    requests: Value,
    state: Option<&str>,
) -> Result<InputRequiredResult, McpError> {
    let mut result = json!({ "resultType": "input_required", "inputRequests": requests });
    if let (Some(state), Some(object)) = (state, result.as_object_mut()) {
        object.insert("requestState".to_owned(), json!(state));
    }
    from_json::<InputRequiredResult>(result)
}

fn ask(requests: Value, state: Option<&str>) -> Result<CallToolResponse, McpError> {
    input_required(requests, state).map(CallToolResponse::InputRequired)
}

/// One form elicitation asking for a single required `field` of JSON type `kind`, under `key`.
pub(crate) fn elicit(key: &str, message: &str, field: &str, kind: &str) -> Value {
    json!({ key: { "method": "elicitation/create", "params": { "mode": "form", "message": message,
        "requestedSchema": { "type": "object", "properties": { field: { "type": kind } },
            "required": [field] } } } })
}

/// One sampling request for `prompt`, under `key`.
pub(crate) fn sample(key: &str, prompt: &str, max_tokens: u32) -> Value {
    json!({ key: { "method": "sampling/createMessage", "params": {
        "messages": [{ "role": "user", "content": { "type": "text", "text": prompt } }],
        "maxTokens": max_tokens } } })
}

/// One roots request, under `key`.
fn list_roots(key: &str) -> Value {
    json!({ key: { "method": "roots/list", "params": {} } })
}

/// The input requests of several parts in one object.
fn merge(parts: &[Value]) -> Value {
    let mut all = serde_json::Map::new();
    for part in parts {
        if let Some(object) = part.as_object() {
            all.extend(object.clone());
        }
    }
    Value::Object(all)
}

/// The client's answer to the input request named `key`, if it sent one.
pub(crate) fn response<'a>(request: &'a CallToolRequestParams, key: &str) -> Option<&'a Value> {
    request.input_responses.as_ref()?.get(key)
}

/// The text a sampling answer carries, or nothing.
pub(crate) fn sampled_text(answer: &Value) -> &str {
    answer
        .pointer("/content/text")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// Answers the `test_input_required_result_*` tools and the two that test capability and
/// streaming rules. Only for stateless (2026-07-28) requests.
pub(crate) fn answer(
    codec: &RequestStateCodec,
    request: &CallToolRequestParams,
    context: &RequestContext<RoleServer>,
) -> Result<CallToolResponse, McpError> {
    let state = request.request_state.as_deref();
    match request.name.as_ref() {
        "test_input_required_result_elicitation" => {
            match response(request, "user_name").and_then(|r| r.pointer("/content/name")) {
                Some(name) => text(format!("Hello, {}!", name.as_str().unwrap_or_default())),
                None => ask(
                    elicit("user_name", "What is your name?", "name", "string"),
                    None,
                ),
            }
        }
        "test_input_required_result_sampling" => match response(request, "capital_question") {
            Some(answer) => text(format!("The model said: {}", sampled_text(answer))),
            None => ask(
                sample("capital_question", "What is the capital of France?", 100),
                None,
            ),
        },
        "test_input_required_result_list_roots" => match response(request, "client_roots") {
            Some(roots) => text(format!(
                "roots: {}",
                roots.get("roots").cloned().unwrap_or_default()
            )),
            None => ask(list_roots("client_roots"), None),
        },
        "test_input_required_result_request_state" => match (response(request, "confirm"), state) {
            (Some(_), Some("confirm-state-1")) => text("state-ok: confirmed"),
            (Some(_), _) => Err(McpError::invalid_params(
                "requestState is missing or wrong",
                None,
            )),
            (None, _) => ask(
                elicit("confirm", "Please confirm", "ok", "boolean"),
                Some("confirm-state-1"),
            ),
        },
        "test_input_required_result_multiple_inputs" => {
            let keys = ["user_name", "greeting", "client_roots"];
            if keys.iter().all(|k| response(request, k).is_some()) && state == Some("multi-1") {
                text("all inputs received")
            } else {
                ask(
                    merge(&[
                        elicit("user_name", "What is your name?", "name", "string"),
                        sample("greeting", "Generate a greeting", 50),
                        list_roots("client_roots"),
                    ]),
                    Some("multi-1"),
                )
            }
        }
        "test_input_required_result_multi_round" => match state {
            Some("round-1") if response(request, "step1").is_some() => ask(
                elicit(
                    "step2",
                    "Step 2: What is your favorite color?",
                    "color",
                    "string",
                ),
                Some("round-2"),
            ),
            Some("round-2") if response(request, "step2").is_some() => text("both rounds done"),
            _ => ask(
                elicit("step1", "Step 1: What is your name?", "name", "string"),
                Some("round-1"),
            ),
        },
        "test_input_required_result_tampered_state" => match state {
            Some(sealed) => match codec.open(sealed) {
                Ok(_) => text("state verified"),
                Err(_) => Err(McpError::invalid_params(
                    "requestState failed its integrity check",
                    None,
                )),
            },
            None => {
                let sealed = codec.seal(b"tamper-check");
                ask(
                    elicit("confirm", "Please confirm", "ok", "boolean"),
                    Some(&sealed),
                )
            }
        },
        _ => capability_rules(request, context),
    }
}

/// The tools that test the capability and streaming rules.
fn capability_rules(
    request: &CallToolRequestParams,
    context: &RequestContext<RoleServer>,
) -> Result<CallToolResponse, McpError> {
    match request.name.as_ref() {
        "test_input_required_result_capabilities" => {
            let capabilities = context.client_capabilities().unwrap_or_default();
            match response(request, "answer") {
                Some(_) => text("answered"),
                None if capabilities.elicitation.is_some() => {
                    ask(elicit("answer", "Your name?", "name", "string"), None)
                }
                None if capabilities.sampling.is_some() => ask(sample("answer", "Hi", 10), None),
                None => text("the client declared nothing to ask with"),
            }
        }
        "test_missing_capability" => {
            if context
                .client_capabilities()
                .is_some_and(|c| c.sampling.is_some())
            {
                text("sampling is available")
            } else {
                Err(McpError::new(
                    MISSING_CAPABILITY,
                    "this tool needs the sampling capability",
                    Some(json!({ "requiredCapabilities": { "sampling": {} } })),
                ))
            }
        }
        "test_streaming_elicitation" => match response(request, "answer") {
            Some(_) => text("streamed"),
            None => ask(elicit("answer", "Stream?", "ok", "boolean"), None),
        },
        other => Err(McpError::invalid_params(
            format!("unknown tool `{other}`"),
            None,
        )),
    }
}
