//! The client side of an upstream connection: what Portcullis does with the notifications and
//! requests an upstream sends back (progress, list changes, its own elicitations, sampling).

use std::sync::Weak;
use std::time::Instant;

use rmcp::ClientHandler;
use rmcp::ErrorData as McpError;
use rmcp::model::{
    ClientCapabilities, ClientConfig, ElicitRequestParams, ElicitResult, ElicitationAction,
    Implementation, ProgressNotificationParam, ResourceUpdatedNotificationParam,
};
#[expect(
    deprecated,
    reason = "sampling and roots types are deprecated upstream; we still answer them"
)]
use rmcp::model::{
    CreateMessageRequestParams, CreateMessageResult, ListRootsResult,
    LoggingMessageNotificationParam,
};
use rmcp::service::{NotificationContext, RequestContext, RoleClient};

use crate::upstream::{CallRoute, UpstreamHandle};

/// Handles one upstream connection's requests and notifications towards Portcullis.
pub struct RelayClient {
    upstream: Weak<UpstreamHandle>,
}

impl RelayClient {
    pub fn new(upstream: Weak<UpstreamHandle>) -> Self {
        Self { upstream }
    }
}

/// Labels an upstream's own question so the person sees who asks: it is the upstream speaking,
/// not Portcullis, and an answer to it approves nothing on Portcullis's side.
pub fn label_elicitation(upstream: &str, params: ElicitRequestParams) -> ElicitRequestParams {
    let label = |message: String| format!("[upstream `{upstream}` asks] {message}");
    match params {
        ElicitRequestParams::FormElicitationParams {
            meta,
            message,
            requested_schema,
        } => ElicitRequestParams::FormElicitationParams {
            meta,
            message: label(message),
            requested_schema,
        },
        ElicitRequestParams::UrlElicitationParams {
            meta,
            message,
            url,
            elicitation_id,
        } => ElicitRequestParams::UrlElicitationParams {
            meta,
            message: label(message),
            url,
            elicitation_id,
        },
        other => other,
    }
}

/// How an answer to an elicitation is recorded.
pub fn action_name(action: &ElicitationAction) -> &'static str {
    match action {
        ElicitationAction::Accept => "accept",
        ElicitationAction::Decline => "decline",
        ElicitationAction::Cancel => "cancel",
        _ => "unknown",
    }
}

fn declined() -> ElicitResult {
    ElicitResult::new(ElicitationAction::Decline)
}

impl ClientHandler for RelayClient {
    fn get_info(&self) -> ClientConfig {
        ClientConfig::new(
            ClientCapabilities::builder().enable_elicitation().build(),
            Implementation::new("portcullis", env!("CARGO_PKG_VERSION")),
        )
    }

    async fn create_elicitation(
        &self,
        request: ElicitRequestParams,
        _context: RequestContext<RoleClient>,
    ) -> Result<ElicitResult, McpError> {
        let Some(upstream) = self.upstream.upgrade() else {
            return Ok(declined());
        };
        let name = upstream.name().to_string();
        let started = Instant::now();
        let route = match upstream.route_for_upstream_request() {
            Ok(route) => route,
            Err(why) => {
                // No request to attribute it to, so nothing to record it under: logged only.
                tracing::warn!(upstream = %name, why, "upstream elicitation declined");
                return Ok(declined());
            }
        };
        tracing::info!(upstream = %name, session = route.session, request = route.request.as_ref().map(|r| r.request_id.as_str()), "relaying the upstream's elicitation to the client");
        let answer = route.asker.ask(label_elicitation(&name, request)).await;
        let response = match &answer {
            Ok(result) => action_name(&result.action).to_owned(),
            Err(error) => format!("not answered: {error}"),
        };
        upstream
            .record_elicitation(route.request.as_ref(), &response, started)
            .await;
        answer.map_err(|error| McpError::internal_error(error, None))
    }

    #[expect(
        deprecated,
        reason = "sampling is deprecated upstream but still sent by session-era servers"
    )]
    async fn create_message(
        &self,
        _params: CreateMessageRequestParams,
        _context: RequestContext<RoleClient>,
    ) -> Result<CreateMessageResult, McpError> {
        // Sampling would let an upstream spend the user's model on prompts of its choosing.
        Err(McpError::invalid_request(
            "portcullis does not relay sampling requests from upstreams",
            None,
        ))
    }

    #[expect(
        deprecated,
        reason = "roots are deprecated upstream but still asked for by session-era servers"
    )]
    async fn list_roots(
        &self,
        _context: RequestContext<RoleClient>,
    ) -> Result<ListRootsResult, McpError> {
        Ok(ListRootsResult::default())
    }

    async fn on_progress(
        &self,
        params: ProgressNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        if let Some(upstream) = self.upstream.upgrade() {
            upstream.progress.forward(params).await;
        }
    }

    async fn on_resource_updated(
        &self,
        params: ResourceUpdatedNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        if let Some(upstream) = self.upstream.upgrade() {
            upstream.resource_updated(&params.uri).await;
        }
    }

    #[expect(
        deprecated,
        reason = "logging is deprecated upstream but still sent by servers"
    )]
    async fn on_logging_message(
        &self,
        params: LoggingMessageNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        let Some(upstream) = self.upstream.upgrade() else {
            return;
        };
        // A log line belongs to the session whose call is running; with none, or several, it
        // stays in Portcullis's own log.
        match upstream.route_for_upstream_notification() {
            Some(CallRoute {
                listener: Some(peer),
                ..
            }) => {
                let _ = peer.notify_logging_message(params).await;
            }
            _ => {
                tracing::debug!(upstream = %upstream.name(), data = %params.data, "upstream log message")
            }
        }
    }

    async fn on_tool_list_changed(&self, _context: NotificationContext<RoleClient>) {
        self.refresh().await;
    }

    async fn on_prompt_list_changed(&self, _context: NotificationContext<RoleClient>) {
        self.refresh().await;
    }

    async fn on_resource_list_changed(&self, _context: NotificationContext<RoleClient>) {
        self.refresh().await;
    }
}

impl RelayClient {
    async fn refresh(&self) {
        let Some(upstream) = self.upstream.upgrade() else {
            return;
        };
        if let Some(connection) = upstream.connection() {
            // Re-listing from inside the notification handler would wait on the same connection.
            tokio::spawn(async move { upstream.refresh_catalog(&connection).await });
        }
    }
}
