//! The server handler: lists from the catalog, answers from it, and sends each tool that talks
//! back to the client (`talk_back.rs`) or asks for input in rounds (`rounds.rs`) on its way.
#![expect(
    deprecated,
    reason = "logging and resource subscriptions are deprecated in 2026-07-28 but still in the suite"
)]

use std::sync::Arc;

use rmcp::ErrorData as McpError;
use rmcp::ServerHandler;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, CancelTaskParams,
    CompleteRequestParams, CompleteResult, GetPromptRequestParams, GetPromptResponse,
    GetPromptResult, GetSkillRequestParams, GetSkillResult, GetTaskParams, GetTaskResult,
    Implementation, ListPromptsResult, ListResourceTemplatesResult, ListResourcesResult,
    ListSkillsResult, ListToolsResult, PaginatedRequestParams, ReadResourceDirectoryRequestParams,
    ReadResourceDirectoryResult, ReadResourceRequestParams, ReadResourceResponse,
    ReadResourceResult, RequestStateCodec, ServerCapabilities, ServerConfig, SetLevelRequestParams,
    SubscribeRequestParams, SubscriptionFilter, Tool, UnsubscribeRequestParams, UpdateTaskParams,
};
use rmcp::service::{RequestContext, RoleServer, SubscriptionContext};
use serde_json::{Value, json};

use crate::catalog;
use crate::lists::ListChanges;
use crate::rounds::{self, elicit, finished, from_json, input_required, text};
use crate::skills;
use crate::talk_back::{self, is_stateless};
use crate::tasks::{self, Tasks};

/// The key that seals `requestState` for the tampered-state scenario. A fixed key is fine here:
/// the fixture guards nothing, and a fixed key keeps sealed states valid across restarts.
const STATE_KEY_SEED: u8 = 11;

/// The conformance fixture. Clones share their state, so every HTTP session sees one server.
#[derive(Clone)]
pub(crate) struct Conformance {
    codec: Arc<RequestStateCodec>,
    lists: Arc<ListChanges>,
    tasks: Arc<Tasks>,
}

impl Conformance {
    pub(crate) fn new() -> anyhow::Result<Self> {
        let key: Vec<u8> = (0u8..32)
            .map(|i| i.wrapping_mul(37).wrapping_add(STATE_KEY_SEED))
            .collect();
        let codec = RequestStateCodec::try_new(key)
            .map_err(|e| anyhow::anyhow!("cannot make the request-state codec: {e}"))?;
        Ok(Self {
            codec: Arc::new(codec),
            lists: Arc::new(ListChanges::default()),
            tasks: Arc::new(Tasks::default()),
        })
    }

    /// Adds a tool and a prompt; tells stateless listeners and, in the session era, the caller.
    async fn change_lists(
        &self,
        context: &RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        self.lists.change().await;
        if !is_stateless(context) {
            let _ = context.peer.notify_tool_list_changed().await;
            let _ = context.peer.notify_prompt_list_changed().await;
        }
        text("lists changed")
    }
}

/// Whether a tool belongs to the input-required scenarios (2026-07-28 only).
fn asks_in_rounds(tool: &str) -> bool {
    tool.starts_with("test_input_required_result_")
        || matches!(
            tool,
            "test_missing_capability" | "test_streaming_elicitation"
        )
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
                .enable_tasks()
                .enable_skills_with_directory_read()
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
        tools.extend(self.lists.added_tools());
        Ok(ListToolsResult::with_all_items(from_json(Value::Array(
            tools,
        ))?))
    }

    /// Lets rmcp's HTTP transport check a call's `Mcp-Param-*` headers against the tool's
    /// `x-mcp-header` annotations (SEP-2243).
    fn get_tool(&self, name: &str) -> Option<Tool> {
        let tool = catalog::tools()
            .into_iter()
            .find(|tool| tool.get("name").and_then(Value::as_str) == Some(name))?;
        serde_json::from_value(tool).ok()
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        if let Some(result) = catalog::simple_result(&request.name) {
            return finished::<CallToolResult>(result).map(CallToolResponse::Complete);
        }
        match request.name.as_ref() {
            "test_trigger_tool_change" | "test_trigger_prompt_change" => {
                self.change_lists(&context).await
            }
            "test_tool_with_logging" | "test_logging_tool" => talk_back::log(&context).await,
            "test_tool_with_progress" => talk_back::progress(&context).await,
            "test_sampling" => talk_back::sampling(&request, &context).await,
            "test_elicitation"
            | "test_elicitation_sep1034_defaults"
            | "test_elicitation_sep1330_enums" => talk_back::elicitation(&request, &context).await,
            name if tasks::answers(name) => self.tasks.call(&request, &context),
            name if asks_in_rounds(name) => {
                if is_stateless(&context) {
                    rounds::answer(&self.codec, &request, &context)
                } else {
                    text("input-required results need protocol 2026-07-28")
                }
            }
            other => Err(McpError::invalid_params(
                format!("unknown tool `{other}`"),
                None,
            )),
        }
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, McpError> {
        let mut resources = catalog::resources();
        resources.extend(skills::resources());
        Ok(ListResourcesResult::with_all_items(from_json(
            Value::Array(resources),
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
        if let Some(result) = skills::read(&request.uri) {
            return result.map(ReadResourceResponse::Complete);
        }
        match catalog::read(&request.uri) {
            Some(result) => {
                finished::<ReadResourceResult>(result).map(ReadResourceResponse::Complete)
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
        self.lists.listen(context.sink().clone());
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
        prompts.extend(self.lists.added_prompts());
        Ok(ListPromptsResult::with_all_items(from_json(Value::Array(
            prompts,
        ))?))
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, McpError> {
        if request.name == catalog::INPUT_REQUIRED_PROMPT {
            let answered = request
                .input_responses
                .as_ref()
                .is_some_and(|r| r.contains_key("user_context"));
            if !answered {
                let question = elicit(
                    "user_context",
                    "What context should the prompt use?",
                    "context",
                    "string",
                );
                return input_required(question, None).map(GetPromptResponse::InputRequired);
            }
            let result = json!({ "messages": [{ "role": "user", "content": { "type": "text",
                "text": "Prompt with the context you gave." } }] });
            return finished::<GetPromptResult>(result).map(GetPromptResponse::Complete);
        }
        let arguments = request.arguments.clone().unwrap_or_default();
        match catalog::prompt(&request.name, &arguments) {
            Some(result) => finished::<GetPromptResult>(result).map(GetPromptResponse::Complete),
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
        finished(json!({ "completion": { "values": [], "total": 0, "hasMore": false } }))
    }

    async fn list_skills(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListSkillsResult, McpError> {
        skills::list()
    }

    async fn get_skill(
        &self,
        request: GetSkillRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<GetSkillResult, McpError> {
        skills::get(&request.uri)
    }

    async fn read_resource_directory(
        &self,
        request: ReadResourceDirectoryRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceDirectoryResult, McpError> {
        skills::read_directory(&request.uri)
    }

    async fn get_task(
        &self,
        request: GetTaskParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<GetTaskResult, McpError> {
        self.tasks.get(&request)
    }

    async fn update_task(
        &self,
        request: UpdateTaskParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        self.tasks.update(&request)
    }

    async fn cancel_task(
        &self,
        request: CancelTaskParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        self.tasks.cancel(&request)
    }

    async fn set_level(
        &self,
        _request: SetLevelRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        Ok(())
    }
}
