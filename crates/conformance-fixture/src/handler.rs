//! The server handler: lists from the catalog, answers, and the scenarios that talk back to the
//! client (logging, progress, elicitation, sampling, input-required rounds) in both eras.
#![expect(
    deprecated,
    reason = "logging, sampling and resource subscriptions are deprecated but still in the suite"
)]

use std::sync::Mutex;
use std::time::Duration;

use rmcp::ErrorData as McpError;
use rmcp::ServerHandler;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, CompleteRequestParams, CompleteResult,
    CreateMessageRequestParams, ElicitRequestParams, GetPromptRequestParams, GetPromptResponse,
    GetPromptResult, Implementation, InputRequiredResult, ListPromptsResult,
    ListResourceTemplatesResult, ListResourcesResult, ListToolsResult, LoggingLevel,
    LoggingMessageNotificationParam, PaginatedRequestParams, ProgressNotificationParam,
    ProtocolVersion, ReadResourceRequestParams, ReadResourceResponse, ReadResourceResult,
    RequestStateCodec, SamplingMessage, ServerCapabilities, ServerConfig, SetLevelRequestParams,
    SubscribeRequestParams, SubscriptionFilter, UnsubscribeRequestParams,
};
use rmcp::service::{RequestContext, RoleServer, SubscriptionContext, SubscriptionSink};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::catalog;

pub struct Conformance {
    codec: RequestStateCodec,
    /// Extra tools and prompts added by the list-change triggers.
    added: Mutex<usize>,
    /// Open `subscriptions/listen` streams (stateless clients hear list changes there).
    listeners: Mutex<Vec<SubscriptionSink>>,
}

impl Conformance {
    pub fn new() -> anyhow::Result<Self> {
        let key: Vec<u8> = (0u8..32)
            .map(|i| i.wrapping_mul(37).wrapping_add(11))
            .collect();
        Ok(Self {
            codec: RequestStateCodec::try_new(key).map_err(|e| anyhow::anyhow!("{e}"))?,
            added: Mutex::new(0),
            listeners: Mutex::new(Vec::new()),
        })
    }
}

fn from_json<T: DeserializeOwned>(value: Value) -> Result<T, McpError> {
    serde_json::from_value(value)
        .map_err(|e| McpError::internal_error(format!("fixture data does not parse: {e}"), None))
}

fn text(text: impl Into<String>) -> Result<CallToolResponse, McpError> {
    from_json::<CallToolResult>(json!({ "content": [{ "type": "text", "text": text.into() }] }))
        .map(CallToolResponse::Complete)
}

fn input_required(requests: Value, state: Option<&str>) -> Result<CallToolResponse, McpError> {
    let mut result = json!({ "resultType": "input_required", "inputRequests": requests });
    if let (Some(state), Some(object)) = (state, result.as_object_mut()) {
        object.insert("requestState".to_owned(), json!(state));
    }
    from_json::<InputRequiredResult>(result).map(CallToolResponse::InputRequired)
}

fn elicit(key: &str, message: &str, field: &str, kind: &str) -> Value {
    json!({ key: { "method": "elicitation/create", "params": { "mode": "form", "message": message,
        "requestedSchema": { "type": "object", "properties": { field: { "type": kind } },
            "required": [field] } } } })
}

fn merge(parts: &[Value]) -> Value {
    let mut all = serde_json::Map::new();
    for part in parts {
        if let Some(object) = part.as_object() {
            all.extend(object.clone());
        }
    }
    Value::Object(all)
}

fn is_stateless(context: &RequestContext<RoleServer>) -> bool {
    context
        .protocol_version()
        .is_some_and(|v| v.as_str() >= ProtocolVersion::V_2026_07_28.as_str())
}

fn response<'a>(request: &'a CallToolRequestParams, key: &str) -> Option<&'a Value> {
    request.input_responses.as_ref()?.get(key)
}

impl Conformance {
    fn added_count(&self) -> usize {
        self.added.lock().map(|n| *n).unwrap_or(0)
    }

    /// Adds a tool and a prompt, and tells every listener (either era) that the lists changed.
    async fn change_lists(
        &self,
        context: &RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        if let Ok(mut added) = self.added.lock() {
            *added += 1;
        }
        let listeners = self.listeners.lock().map(|l| l.clone()).unwrap_or_default();
        for sink in listeners {
            let _ = sink.notify_tool_list_changed().await;
            let _ = sink.notify_prompt_list_changed().await;
        }
        if !is_stateless(context) {
            let _ = context.peer.notify_tool_list_changed().await;
            let _ = context.peer.notify_prompt_list_changed().await;
        }
        text("lists changed")
    }

    async fn input_rounds(
        &self,
        request: &CallToolRequestParams,
        context: &RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let state = request.request_state.as_deref();
        match request.name.as_ref() {
            "test_input_required_result_elicitation" => {
                match response(request, "user_name").and_then(|r| r.pointer("/content/name")) {
                    Some(name) => text(format!("Hello, {}!", name.as_str().unwrap_or_default())),
                    None => input_required(
                        elicit("user_name", "What is your name?", "name", "string"),
                        None,
                    ),
                }
            }
            "test_input_required_result_sampling" => match response(request, "capital_question") {
                Some(answer) => text(format!(
                    "The model said: {}",
                    answer
                        .pointer("/content/text")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                )),
                None => input_required(
                    json!({ "capital_question": { "method": "sampling/createMessage", "params": {
                        "messages": [{ "role": "user", "content": { "type": "text",
                            "text": "What is the capital of France?" } }], "maxTokens": 100 } } }),
                    None,
                ),
            },
            "test_input_required_result_list_roots" => match response(request, "client_roots") {
                Some(roots) => text(format!(
                    "roots: {}",
                    roots.get("roots").cloned().unwrap_or_default()
                )),
                None => input_required(
                    json!({ "client_roots": { "method": "roots/list", "params": {} } }),
                    None,
                ),
            },
            "test_input_required_result_request_state" => {
                match (response(request, "confirm"), state) {
                    (Some(_), Some("confirm-state-1")) => text("state-ok: confirmed"),
                    (Some(_), _) => Err(McpError::invalid_params(
                        "requestState is missing or wrong",
                        None,
                    )),
                    (None, _) => input_required(
                        elicit("confirm", "Please confirm", "ok", "boolean"),
                        Some("confirm-state-1"),
                    ),
                }
            }
            "test_input_required_result_multiple_inputs" => {
                let keys = ["user_name", "greeting", "client_roots"];
                if keys.iter().all(|k| response(request, k).is_some()) && state == Some("multi-1") {
                    text("all inputs received")
                } else {
                    input_required(
                        merge(&[
                            elicit("user_name", "What is your name?", "name", "string"),
                            json!({ "greeting": { "method": "sampling/createMessage", "params": {
                                "messages": [{ "role": "user", "content": { "type": "text",
                                    "text": "Generate a greeting" } }], "maxTokens": 50 } },
                                "client_roots": { "method": "roots/list", "params": {} } }),
                        ]),
                        Some("multi-1"),
                    )
                }
            }
            "test_input_required_result_multi_round" => match state {
                Some("round-1") if response(request, "step1").is_some() => input_required(
                    elicit(
                        "step2",
                        "Step 2: What is your favorite color?",
                        "color",
                        "string",
                    ),
                    Some("round-2"),
                ),
                Some("round-2") if response(request, "step2").is_some() => text("both rounds done"),
                _ => input_required(
                    elicit("step1", "Step 1: What is your name?", "name", "string"),
                    Some("round-1"),
                ),
            },
            "test_input_required_result_tampered_state" => match state {
                Some(sealed) => match self.codec.open(sealed) {
                    Ok(_) => text("state verified"),
                    Err(_) => Err(McpError::invalid_params(
                        "requestState failed its integrity check",
                        None,
                    )),
                },
                None => {
                    let sealed = self.codec.seal(b"tamper-check");
                    input_required(
                        elicit("confirm", "Please confirm", "ok", "boolean"),
                        Some(&sealed),
                    )
                }
            },
            "test_input_required_result_capabilities" => {
                let capabilities = context.client_capabilities().unwrap_or_default();
                match response(request, "answer") {
                    Some(_) => text("answered"),
                    None if capabilities.elicitation.is_some() => {
                        input_required(elicit("answer", "Your name?", "name", "string"), None)
                    }
                    None if capabilities.sampling.is_some() => input_required(
                        json!({ "answer": { "method": "sampling/createMessage", "params": {
                            "messages": [{ "role": "user", "content": { "type": "text", "text": "Hi" } }],
                            "maxTokens": 10 } } }),
                        None,
                    ),
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
                        rmcp::model::ErrorCode(-32021),
                        "this tool needs the sampling capability",
                        Some(json!({ "requiredCapabilities": { "sampling": {} } })),
                    ))
                }
            }
            "test_streaming_elicitation" => match response(request, "answer") {
                Some(_) => text("streamed"),
                None => input_required(elicit("answer", "Stream?", "ok", "boolean"), None),
            },
            other => Err(McpError::invalid_params(
                format!("unknown tool `{other}`"),
                None,
            )),
        }
    }

    async fn talk_back(
        &self,
        request: &CallToolRequestParams,
        context: &RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let peer = &context.peer;
        match request.name.as_ref() {
            "test_tool_with_logging" | "test_logging_tool" => {
                for (index, message) in [
                    "Tool execution started",
                    "Tool processing data",
                    "Tool execution completed",
                ]
                .iter()
                .enumerate()
                {
                    if index > 0 {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    let _ = peer
                        .notify_logging_message(LoggingMessageNotificationParam::new(
                            LoggingLevel::Info,
                            json!(message),
                        ))
                        .await;
                }
                text("Tool with logging executed successfully")
            }
            "test_tool_with_progress" => {
                let token = context.meta.get_progress_token();
                for (index, progress) in [0.0, 50.0, 100.0].into_iter().enumerate() {
                    if index > 0 {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    if let Some(token) = &token {
                        let _ = peer
                            .notify_progress(
                                ProgressNotificationParam::new(token.clone(), progress)
                                    .with_total(100.0),
                            )
                            .await;
                    }
                }
                text("Tool with progress executed successfully")
            }
            "test_sampling" if is_stateless(context) => match response(request, "answer") {
                Some(answer) => text(format!(
                    "LLM response: {}",
                    answer
                        .pointer("/content/text")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                )),
                None => input_required(
                    json!({ "answer": { "method": "sampling/createMessage", "params": {
                        "messages": [{ "role": "user", "content": { "type": "text",
                            "text": request.arguments.as_ref().and_then(|a| a.get("prompt")).cloned().unwrap_or_default() } }],
                        "maxTokens": 100 } } }),
                    None,
                ),
            },
            "test_sampling" => {
                let prompt = request
                    .arguments
                    .as_ref()
                    .and_then(|a| a.get("prompt"))
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let params =
                    CreateMessageRequestParams::new(vec![SamplingMessage::user_text(prompt)], 100);
                match peer.create_message(params).await {
                    Ok(answer) => text(format!(
                        "LLM response: {}",
                        serde_json::to_value(&answer.message.content)
                            .ok()
                            .and_then(|c| c.get("text").and_then(Value::as_str).map(str::to_owned))
                            .unwrap_or_default()
                    )),
                    Err(error) => Ok(CallToolResponse::Complete(CallToolResult::error(vec![
                        rmcp::model::ContentBlock::text(format!("sampling failed: {error}")),
                    ]))),
                }
            }
            name => {
                let message = if name == "test_elicitation" {
                    request
                        .arguments
                        .as_ref()
                        .and_then(|a| a.get("message"))
                        .and_then(Value::as_str)
                        .unwrap_or("Please provide your information")
                        .to_owned()
                } else {
                    "Please review and update the form fields".to_owned()
                };
                let form = json!({ "mode": "form", "message": message,
                    "requestedSchema": catalog::elicitation_schema(name) });
                let report = |answer: &Value| {
                    let action = answer
                        .get("action")
                        .and_then(Value::as_str)
                        .unwrap_or_default();
                    let content = answer.get("content").cloned().unwrap_or(Value::Null);
                    if name == "test_elicitation" {
                        text(format!("User response: action={action}, content={content}"))
                    } else {
                        text(format!(
                            "Elicitation completed: action={action}, content={content}"
                        ))
                    }
                };
                // A stateless client (or mediator) is asked through an input-required round.
                if is_stateless(context) {
                    return match response(request, "answer") {
                        Some(answer) => report(answer),
                        None => input_required(
                            json!({ "answer": { "method": "elicitation/create", "params": form } }),
                            None,
                        ),
                    };
                }
                let params: ElicitRequestParams = from_json(form)?;
                match peer.create_elicitation(params).await {
                    Ok(answer) => report(&serde_json::to_value(answer).unwrap_or_default()),
                    Err(error) => Ok(CallToolResponse::Complete(CallToolResult::error(vec![
                        rmcp::model::ContentBlock::text(format!("elicitation failed: {error}")),
                    ]))),
                }
            }
        }
    }
}

impl ServerHandler for Conformance {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_tool_list_changed()
                .enable_resources()
                .enable_resources_subscribe()
                .enable_prompts()
                .enable_prompts_list_changed()
                .enable_completions()
                .enable_logging()
                .build(),
        )
        .with_server_info(Implementation::new(
            "portcullis-conformance-fixture",
            env!("CARGO_PKG_VERSION"),
        ))
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        let mut tools = catalog::tools();
        if let Some(list) = tools.as_array_mut() {
            for n in 0..self.added_count() {
                list.push(json!({ "name": format!("added_tool_{n}"), "description": "Added by a list-change trigger", "inputSchema": { "type": "object", "properties": {} } }));
            }
        }
        Ok(ListToolsResult::with_all_items(from_json(tools)?))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        if let Some(result) = catalog::simple_result(&request.name) {
            return from_json::<CallToolResult>(result).map(CallToolResponse::Complete);
        }
        if matches!(
            request.name.as_ref(),
            "test_trigger_tool_change" | "test_trigger_prompt_change"
        ) {
            return self.change_lists(&context).await;
        }
        let diagnostic = matches!(
            request.name.as_ref(),
            "test_missing_capability" | "test_streaming_elicitation"
        );
        if request.name.starts_with("test_input_required_result_") || diagnostic {
            if !is_stateless(&context) {
                return text("input-required results need protocol 2026-07-28");
            }
            return self.input_rounds(&request, &context).await;
        }
        self.talk_back(&request, &context).await
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, McpError> {
        Ok(ListResourcesResult::with_all_items(from_json(
            catalog::resources(),
        )?))
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, McpError> {
        Ok(ListResourceTemplatesResult::with_all_items(from_json(
            catalog::templates(),
        )?))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, McpError> {
        match catalog::read(&request.uri) {
            Some(result) => {
                from_json::<ReadResourceResult>(result).map(ReadResourceResponse::Complete)
            }
            None => Err(McpError::resource_not_found(
                format!("unknown resource `{}`", request.uri),
                Some(json!({ "uri": request.uri })),
            )),
        }
    }

    fn accepted_subscription_filter(
        &self,
        requested: &SubscriptionFilter,
    ) -> Option<SubscriptionFilter> {
        Some(requested.clone())
    }

    async fn listen(&self, context: SubscriptionContext) -> Result<(), McpError> {
        if let Ok(mut listeners) = self.listeners.lock() {
            listeners.push(context.sink().clone());
        }
        context.cancelled().await;
        Ok(())
    }

    async fn subscribe(
        &self,
        _request: SubscribeRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        Ok(())
    }

    async fn unsubscribe(
        &self,
        _request: UnsubscribeRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        Ok(())
    }

    async fn list_prompts(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, McpError> {
        let mut prompts = catalog::prompts();
        if let Some(list) = prompts.as_array_mut() {
            for n in 0..self.added_count() {
                list.push(json!({ "name": format!("added_prompt_{n}"), "description": "Added by a list-change trigger" }));
            }
        }
        Ok(ListPromptsResult::with_all_items(from_json(prompts)?))
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, McpError> {
        if request.name == "test_input_required_result_prompt" {
            let answered = request
                .input_responses
                .as_ref()
                .is_some_and(|r| r.contains_key("user_context"));
            if !answered {
                let required = json!({ "resultType": "input_required", "inputRequests":
                    elicit("user_context", "What context should the prompt use?", "context", "string") });
                return from_json::<InputRequiredResult>(required)
                    .map(GetPromptResponse::InputRequired);
            }
            let result = json!({ "messages": [{ "role": "user", "content": { "type": "text",
                "text": "Prompt with the context you gave." } }] });
            return from_json::<GetPromptResult>(result).map(GetPromptResponse::Complete);
        }
        let arguments = request.arguments.clone().unwrap_or_default();
        match catalog::prompt(&request.name, &arguments) {
            Some(result) => from_json::<GetPromptResult>(result).map(GetPromptResponse::Complete),
            None => Err(McpError::invalid_params(
                format!("unknown prompt `{}`", request.name),
                None,
            )),
        }
    }

    async fn complete(
        &self,
        _request: CompleteRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CompleteResult, McpError> {
        from_json(json!({ "completion": { "values": [], "total": 0, "hasMore": false } }))
    }

    async fn set_level(
        &self,
        _request: SetLevelRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        Ok(())
    }
}
