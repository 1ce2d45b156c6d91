//! The tools that talk to the client while they run: logging and progress notifications, and
//! sampling and elicitation. A session-era client is asked with a server-to-client request on
//! its session; a stateless (2026-07-28) client, which may not be sent requests, is asked
//! through an input-required result and answers in its retry.
#![expect(
    deprecated,
    reason = "logging and sampling are deprecated in 2026-07-28 but still in the suite"
)]

use std::time::Duration;

use rmcp::ErrorData as McpError;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock,
    CreateMessageRequestParams, ElicitRequestParams, LoggingLevel, LoggingMessageNotificationParam,
    ProgressNotificationParam, SamplingMessage,
};
use rmcp::service::{RequestContext, RoleServer};
use serde_json::{Value, json};

use crate::catalog;
use crate::rounds::{from_json, input_required, response, sample, sampled_text, text};

/// Pause between two notifications, so that the client sees them arrive one by one.
const NOTIFICATION_GAP: Duration = Duration::from_millis(50);

/// The messages `test_tool_with_logging` logs, in order.
const LOG_MESSAGES: [&str; 3] = [
    "Tool execution started",
    "Tool processing data",
    "Tool execution completed",
];

/// Whether this request comes from a stateless (2026-07-28 or later) client.
pub(crate) fn is_stateless(context: &RequestContext<RoleServer>) -> bool {
    context
        .protocol_version()
        .is_some_and(|v| v.as_str() >= rmcp::model::ProtocolVersion::V_2026_07_28.as_str())
}

/// A finished call reporting that the client could not be asked.
fn failed(what: &str, error: impl std::fmt::Display) -> Result<CallToolResponse, McpError> {
    Ok(CallToolResponse::Complete(CallToolResult::error(vec![
        ContentBlock::text(format!("{what} failed: {error}")),
    ])))
}

/// The string argument `key` of a call, if given.
fn argument<'a>(request: &'a CallToolRequestParams, key: &str) -> Option<&'a str> {
    request.arguments.as_ref()?.get(key)?.as_str()
}

/// How severe a level is, least first.
fn severity(level: LoggingLevel) -> u8 {
    match level {
        LoggingLevel::Debug => 0,
        LoggingLevel::Info => 1,
        LoggingLevel::Notice => 2,
        LoggingLevel::Warning => 3,
        LoggingLevel::Error => 4,
        LoggingLevel::Critical => 5,
        LoggingLevel::Alert => 6,
        LoggingLevel::Emergency => 7,
    }
}

/// Whether a message at `level` may be sent. A stateless request sets its own threshold in
/// `_meta` and gets no log messages without one (SEP-2575); the session era logs as before.
fn may_log(context: &RequestContext<RoleServer>, level: LoggingLevel) -> bool {
    if !is_stateless(context) {
        return true;
    }
    context
        .meta
        .log_level()
        .is_some_and(|threshold| severity(level) >= severity(threshold))
}

/// Logs three messages, a little apart.
pub(crate) async fn log(
    context: &RequestContext<RoleServer>,
) -> Result<CallToolResponse, McpError> {
    if !may_log(context, LoggingLevel::Info) {
        return text("Tool with logging executed successfully");
    }
    for (index, message) in LOG_MESSAGES.iter().enumerate() {
        if index > 0 {
            tokio::time::sleep(NOTIFICATION_GAP).await;
        }
        // A client that stopped listening misses the log; the call still succeeds.
        let _ = context
            .peer
            .notify_logging_message(LoggingMessageNotificationParam::new(
                LoggingLevel::Info,
                json!(message),
            ))
            .await;
    }
    text("Tool with logging executed successfully")
}

/// Reports progress 0, 50 and 100 of 100 against the request's progress token, if it has one.
pub(crate) async fn progress(
    context: &RequestContext<RoleServer>,
) -> Result<CallToolResponse, McpError> {
    let token = context.meta.get_progress_token();
    for (index, progress) in [0.0, 50.0, 100.0].into_iter().enumerate() {
        if index > 0 {
            tokio::time::sleep(NOTIFICATION_GAP).await;
        }
        if let Some(token) = &token {
            let _ = context
                .peer
                .notify_progress(
                    ProgressNotificationParam::new(token.clone(), progress).with_total(100.0),
                )
                .await;
        }
    }
    text("Tool with progress executed successfully")
}

/// Asks the client's model the `prompt` argument and returns what it said.
pub(crate) async fn sampling(
    request: &CallToolRequestParams,
    context: &RequestContext<RoleServer>,
) -> Result<CallToolResponse, McpError> {
    let prompt = argument(request, "prompt").unwrap_or_default();
    if is_stateless(context) {
        return match response(request, "answer") {
            Some(answer) => text(format!("LLM response: {}", sampled_text(answer))),
            None => input_required(sample("answer", prompt, 100), None)
                .map(CallToolResponse::InputRequired),
        };
    }
    let params = CreateMessageRequestParams::new(vec![SamplingMessage::user_text(prompt)], 100);
    match context.peer.create_message(params).await {
        Ok(answer) => {
            let content = serde_json::to_value(&answer.message.content).unwrap_or_default();
            text(format!(
                "LLM response: {}",
                sampled_text(&json!({ "content": content }))
            ))
        }
        Err(error) => failed("sampling", error),
    }
}

/// Asks the user to fill in the form that the tool `name` stands for, and reports the answer.
pub(crate) async fn elicitation(
    request: &CallToolRequestParams,
    context: &RequestContext<RoleServer>,
) -> Result<CallToolResponse, McpError> {
    let name = request.name.as_ref();
    let message = if name == "test_elicitation" {
        argument(request, "message").unwrap_or("Please provide your information")
    } else {
        "Please review and update the form fields"
    };
    let form = json!({ "mode": "form", "message": message,
        "requestedSchema": catalog::elicitation_schema(name) });
    if is_stateless(context) {
        return match response(request, "answer") {
            Some(answer) => report(name, answer),
            None => input_required(
                json!({ "answer": { "method": "elicitation/create", "params": form } }),
                None,
            )
            .map(CallToolResponse::InputRequired),
        };
    }
    let params: ElicitRequestParams = from_json(form)?;
    match context.peer.create_elicitation(params).await {
        Ok(answer) => report(name, &serde_json::to_value(answer).unwrap_or_default()),
        Err(error) => failed("elicitation", error),
    }
}

/// The text an elicitation tool answers with: the action the user took and what they entered.
fn report(tool: &str, answer: &Value) -> Result<CallToolResponse, McpError> {
    let action = answer
        .get("action")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let content = answer.get("content").cloned().unwrap_or(Value::Null);
    if tool == "test_elicitation" {
        text(format!("User response: action={action}, content={content}"))
    } else {
        text(format!(
            "Elicitation completed: action={action}, content={content}"
        ))
    }
}
