//! Tool search (`[server] tool_search`): for an identity that may see many tools, the tool
//! list is three tools of Portcullis's own instead, `portcullis.search_tools` (ranked, compact
//! results), `portcullis.describe_tool` (one tool's definition as it would be listed) and
//! `portcullis.call_tool` (a call by name). The tools themselves stay callable by name.
//!
//! INVARIANT: search and describe read only the entries `listing.rs` decided this identity
//! may see (the same `Seen` a list page is cut from, so visible, pinned and cleaned): a tool
//! it cannot see is never found, and describing one is answered as an unknown tool.
//! INVARIANT: `portcullis.call_tool` hands its inner name and arguments to the very pipeline a
//! direct call runs (`call_tool_as`): resolve, roots, decide, approve, credentials, evidence;
//! nothing here decides a call. The inner name cannot be one of these three tools again: the
//! `portcullis` namespace is reserved, so it resolves to no upstream and is unknown.

mod rank;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use portcullis_config::ToolSearch;
use portcullis_core::IdentityEnvelope;
use rmcp::ErrorData as McpError;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, JsonObject, Tool,
    ToolAnnotations,
};
use rmcp::service::{RequestContext, RoleServer};
use serde_json::{Value, json};

pub(crate) use rank::ToolIndex;

use crate::authorize::Exposed;
use crate::listing::Seen;
use crate::server::PortcullisServer;
use crate::upstream::Catalog;

pub(crate) const SEARCH_TOOLS: &str = "portcullis.search_tools";
pub(crate) const DESCRIBE_TOOL: &str = "portcullis.describe_tool";
pub(crate) const CALL_TOOL: &str = "portcullis.call_tool";

/// Results a search returns when the client names no `limit`, and at most.
const DEFAULT_LIMIT: usize = 10;
const MAX_LIMIT: usize = 50;

/// One of Portcullis's search tools.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SearchTool {
    Search,
    Describe,
    Call,
}

/// How a call reached the pipeline: by its own name, or through `portcullis.call_tool`
/// (which its evidence records say).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Route {
    Direct,
    CallTool,
}

impl Route {
    /// What the evidence records of a call say it came through, if not its own name.
    pub(crate) fn via(self) -> Option<&'static str> {
        match self {
            Route::Direct => None,
            Route::CallTool => Some(CALL_TOOL),
        }
    }
}

impl SearchTool {
    /// The search tool `name` names, when tool search is not off.
    pub(crate) fn named(mode: ToolSearch, name: &str) -> Option<Self> {
        if mode == ToolSearch::Off {
            return None;
        }
        match name {
            SEARCH_TOOLS => Some(Self::Search),
            DESCRIBE_TOOL => Some(Self::Describe),
            CALL_TOOL => Some(Self::Call),
            _ => None,
        }
    }
}

/// Whether an identity that may see `visible` tools is listed the search tools.
pub(crate) fn searching(mode: ToolSearch, visible: usize) -> bool {
    match mode {
        ToolSearch::Off => false,
        ToolSearch::On => true,
        ToolSearch::Auto { above } => visible > above,
    }
}

/// The three tools as listed.
pub(crate) fn search_tools() -> Vec<Tool> {
    let read_only = ToolAnnotations::new()
        .read_only(true)
        .destructive(false)
        .open_world(false);
    vec![
        Tool::new(
            SEARCH_TOOLS,
            "Search the tools available to you by what they do. Returns the best matches, each with its name, a one-line summary and its parameter names; use portcullis.describe_tool for a tool's full input schema and portcullis.call_tool to call it.",
            schema(json!({
                "type": "object",
                "properties": {
                    "query": {"type": "string", "description": "What you want to do, in a few words"},
                    "limit": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "description": "How many results at most (default 10)"}
                },
                "required": ["query"]
            })),
        )
        .annotate(read_only.clone()),
        Tool::new(
            DESCRIBE_TOOL,
            "The full definition of one tool found with portcullis.search_tools: its description, input schema and annotations.",
            schema(json!({
                "type": "object",
                "properties": {"name": {"type": "string", "description": "The tool's name as search returned it"}},
                "required": ["name"]
            })),
        )
        .annotate(read_only),
        Tool::new(
            CALL_TOOL,
            "Call a tool found with portcullis.search_tools by its name, with arguments matching its input schema. The call is checked, approved and recorded exactly as a direct call of that tool.",
            schema(json!({
                "type": "object",
                "properties": {
                    "name": {"type": "string", "description": "The tool's name as search returned it"},
                    "arguments": {"type": "object", "description": "The tool's arguments"}
                },
                "required": ["name"]
            })),
        ),
    ]
}

fn schema(value: Value) -> Arc<JsonObject> {
    Arc::new(match value {
        Value::Object(map) => map,
        _ => JsonObject::new(),
    })
}

/// `portcullis.call_tool`'s request as the call it names: its `name` and `arguments`, with
/// everything else of the request (its `_meta`, a stateless retry's `requestState` and
/// `inputResponses`) kept, so a retry continues the same inner call.
pub(crate) fn inner_call(
    mut request: CallToolRequestParams,
) -> Result<CallToolRequestParams, McpError> {
    let mut arguments = request.arguments.take().unwrap_or_default();
    let Some(Value::String(name)) = arguments.remove("name") else {
        return Err(McpError::invalid_params(
            format!("`{CALL_TOOL}` needs `name`, the name of the tool to call"),
            None,
        ));
    };
    request.arguments = match arguments.remove("arguments") {
        None | Some(Value::Null) => None,
        Some(Value::Object(inner)) => Some(inner),
        Some(_) => {
            return Err(McpError::invalid_params(
                format!("`{CALL_TOOL}` takes the tool's `arguments` as an object"),
                None,
            ));
        }
    };
    request.name = name.into();
    Ok(request)
}

fn string_argument<'a>(request: &'a CallToolRequestParams, key: &str) -> Result<&'a str, McpError> {
    request
        .arguments
        .as_ref()
        .and_then(|arguments| arguments.get(key))
        .and_then(Value::as_str)
        .ok_or_else(|| {
            McpError::invalid_params(format!("`{}` needs `{key}`, a string", request.name), None)
        })
}

fn json_result(value: &Value) -> CallToolResponse {
    CallToolResponse::Complete(CallToolResult::success(vec![ContentBlock::text(
        value.to_string(),
    )]))
}

impl PortcullisServer {
    /// What `envelope` may see of the tools (`listing.rs`'s kept decisions).
    pub(crate) async fn seen_tools(&self, envelope: &IdentityEnvelope) -> Arc<Seen> {
        self.seen(envelope, ("tools", |c: &Catalog| &c.tools), |entry| {
            Exposed::Tool(&entry.name)
        })
        .await
    }

    /// `portcullis.search_tools`: the best matches among the tools `envelope` may see,
    /// recorded as a list is.
    pub(crate) async fn search(
        &self,
        envelope: &IdentityEnvelope,
        request: &CallToolRequestParams,
        context: &RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let started = std::time::Instant::now();
        let query = string_argument(request, "query")?;
        let limit = match request.arguments.as_ref().and_then(|a| a.get("limit")) {
            None | Some(Value::Null) => DEFAULT_LIMIT,
            Some(limit) => limit
                .as_u64()
                .and_then(|n| usize::try_from(n).ok())
                .filter(|n| (1..=MAX_LIMIT).contains(n))
                .ok_or_else(|| {
                    McpError::invalid_params(
                        format!("`limit` is a whole number from 1 to {MAX_LIMIT}"),
                        None,
                    )
                })?,
        };
        let seen = self.seen_tools(envelope).await;
        self.taint_by_definitions(context, envelope, &seen)?;
        let tools: Vec<Value> = index_of(&seen)
            .search(query, limit)
            .into_iter()
            .map(|hit| json!({"name": hit.name, "summary": hit.summary, "parameters": hit.parameters}))
            .collect();
        self.record_list(envelope, SEARCH_TOOLS, tools.len(), started)
            .await?;
        Ok(json_result(&json!({ "tools": tools })))
    }

    /// `portcullis.describe_tool`: one tool's definition as it would be listed, if `envelope`
    /// may see it; any other name is answered as a call of an unknown tool is. Recorded as a
    /// list is (a refusal when nothing is shown).
    pub(crate) async fn describe(
        &self,
        envelope: &IdentityEnvelope,
        request: &CallToolRequestParams,
        context: &RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let started = std::time::Instant::now();
        let name = string_argument(request, "name")?;
        let seen = self.seen_tools(envelope).await;
        self.taint_by_definitions(context, envelope, &seen)?;
        let definition = seen
            .entries()
            .filter_map(|(catalog, index)| catalog.tools.get(index))
            .find(|tool| tool.name == name)
            .and_then(|tool| serde_json::to_value(tool).ok());
        let Some(definition) = definition else {
            // Hidden and nonexistent alike.
            self.record_refused(
                envelope,
                DESCRIBE_TOOL,
                None,
                name,
                "not a tool this identity may see",
            )
            .await;
            return Err(McpError::invalid_params(
                format!("unknown tool `{name}`"),
                None,
            ));
        };
        self.record_list(envelope, DESCRIBE_TOOL, 1, started)
            .await?;
        Ok(json_result(&definition))
    }

    /// The tools list of an identity listed the search tools: those three, and the sign-in
    /// tools of per-user upstreams it has not authorised (they are not in any catalog).
    pub(crate) fn search_tools_list(&self, envelope: &IdentityEnvelope) -> Vec<Tool> {
        let mut tools = search_tools();
        tools.extend(self.sign_in_tools(envelope));
        tools
    }

    /// Whether an identity that sees `seen` is listed the search tools.
    pub(crate) fn lists_search_tools(&self, seen: &Seen) -> bool {
        searching(self.gateway.tool_search, seen.len())
    }
}

/// The index of an identity's visible tools, built at its first search and kept with them.
fn index_of(seen: &Seen) -> &ToolIndex {
    seen.index(|seen| {
        ToolIndex::new(
            seen.entries()
                .filter_map(|(catalog, index)| catalog.tools.get(index)),
        )
    })
}
