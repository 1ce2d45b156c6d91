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
    LoggingMessageNotificationParam, Root,
};
use rmcp::service::{NotificationContext, RequestContext, RoleClient};

use super::{CallRoute, UpstreamHandle};

/// Handles one upstream connection's requests and notifications towards Portcullis.
pub(crate) struct RelayClient {
    upstream: Weak<UpstreamHandle>,
    /// Notifications of this upstream being passed on right now (see [`MAX_IN_FLIGHT`]).
    in_flight: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    /// Notifications dropped since the last warning, and when that was.
    dropped: std::sync::Arc<std::sync::Mutex<(u64, Option<Instant>)>>,
}

/// Notifications of one upstream passed on at once. rmcp runs each in a task of its own; a
/// flooding upstream (progress or log lines faster than the client reads them) would
/// otherwise pile up tasks and the messages they hold without bound. Beyond this they are
/// dropped, and the drop logged (once a second).
const MAX_IN_FLIGHT: usize = 64;

/// Holds one of the `MAX_IN_FLIGHT` places while a notification is passed on.
struct InFlight(std::sync::Arc<std::sync::atomic::AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

impl RelayClient {
    pub(crate) fn new(upstream: Weak<UpstreamHandle>) -> Self {
        Self {
            upstream,
            in_flight: std::sync::Arc::default(),
            dropped: std::sync::Arc::default(),
        }
    }

    /// A place to pass on one notification, or `None` (and the drop counted) when the upstream
    /// already has [`MAX_IN_FLIGHT`] on their way.
    fn admit(&self, upstream: &UpstreamHandle) -> Option<InFlight> {
        use std::sync::atomic::Ordering;
        if self.in_flight.fetch_add(1, Ordering::AcqRel) < MAX_IN_FLIGHT {
            return Some(InFlight(self.in_flight.clone()));
        }
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
        if let Ok(mut dropped) = self.dropped.lock() {
            dropped.0 += 1;
            let due = dropped
                .1
                .is_none_or(|at| at.elapsed() >= std::time::Duration::from_secs(1));
            if due {
                tracing::warn!(
                    upstream = %upstream.name(),
                    dropped = dropped.0,
                    "the upstream sends notifications faster than they can be passed on; these were dropped"
                );
                *dropped = (0, Some(Instant::now()));
            }
        }
        None
    }
}

/// An upstream's question made ready for the person (see `forms.rs`): labelled with who asks,
/// its free-text fields warned, or refused (`Err`, the reason for the evidence) when it asks
/// for a secret, speaks as Portcullis, or config does not let this upstream ask it.
pub(crate) fn screen_elicitation(
    upstream: &UpstreamHandle,
    params: ElicitRequestParams,
) -> Result<ElicitRequestParams, String> {
    let name = upstream.name().as_str();
    // A question may quote what the upstream was sent: no secret Portcullis holds goes on.
    let params = match crate::secrets::Secrets::global().redact(params) {
        Ok((params, _)) => params,
        Err(_) => {
            return Err(format!(
                "refused: upstream `{name}` asked a question holding a secret portcullis holds"
            ));
        }
    };
    crate::forms::screen(name, upstream.spec.elicitation, params).map_err(|refusal| {
        let reason = refusal.describe(name);
        tracing::warn!(upstream = name, %reason, "an upstream's question was not relayed");
        reason
    })
}

/// How an answer to an elicitation is recorded.
pub(crate) fn action_name(action: &ElicitationAction) -> &'static str {
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
    #[expect(
        deprecated,
        reason = "roots are deprecated upstream but session-era servers still ask for them"
    )]
    fn get_info(&self) -> ClientConfig {
        ClientConfig::new(
            ClientCapabilities::builder()
                .enable_elicitation()
                .enable_roots()
                .build(),
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
        let screened = match screen_elicitation(&upstream, request) {
            Ok(screened) => screened,
            Err(refusal) => {
                upstream
                    .record_elicitation(route.request.as_ref(), &refusal, started)
                    .await;
                return Ok(declined());
            }
        };
        tracing::info!(upstream = %name, session = route.session, request = route.request.as_ref().map(|r| r.request_id.as_str()), "relaying the upstream's elicitation to the client");
        let answer = route.asker.ask(screened).await;
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
        params: CreateMessageRequestParams,
        _context: RequestContext<RoleClient>,
    ) -> Result<CreateMessageResult, McpError> {
        // Sampling lets an upstream spend the user's model on prompts of its choosing: refused
        // unless config allows it for this upstream, and then relayed only to the session-era
        // client whose call is running (which shows it to the person as its own request).
        let refused = |why: &str| {
            Err(McpError::invalid_request(
                format!("portcullis does not relay this upstream's sampling requests: {why}"),
                None,
            ))
        };
        let Some(upstream) = self.upstream.upgrade() else {
            return refused("the upstream is gone");
        };
        if !upstream.spec.sampling {
            tracing::warn!(upstream = %upstream.name(), "upstream sampling request refused (config does not allow it)");
            return refused("config does not allow it");
        }
        let route = match upstream.route_for_upstream_request() {
            Ok(route) => route,
            Err(why) => return refused(why),
        };
        let Some(peer) = route.listener.as_ref().filter(|peer| {
            peer.peer_info()
                .is_some_and(|info| info.capabilities.sampling.is_some())
        }) else {
            return refused("the calling client is stateless or did not declare sampling");
        };
        tracing::info!(upstream = %upstream.name(), session = route.session, "relaying the upstream's sampling request to the client");
        peer.create_message(params).await.map_err(|error| {
            McpError::internal_error(format!("the client did not answer: {error}"), None)
        })
    }

    #[expect(
        deprecated,
        reason = "roots are deprecated upstream but still asked for by session-era servers"
    )]
    async fn list_roots(
        &self,
        _context: RequestContext<RoleClient>,
    ) -> Result<ListRootsResult, McpError> {
        // The effective roots only: never the client's own list, which may be wider.
        let Some(upstream) = self.upstream.upgrade() else {
            return Ok(ListRootsResult::default());
        };
        let route = upstream.route_for_upstream_request().ok();
        Ok(ListRootsResult::new(
            upstream
                .root_answer(route.as_ref())
                .into_iter()
                .map(Root::new)
                .collect(),
        ))
    }

    async fn on_progress(
        &self,
        params: ProgressNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        let Some(upstream) = self.upstream.upgrade() else {
            return;
        };
        match self.admit(&upstream) {
            Some(_place) => upstream.progress.forward(params).await,
            // Dropped, and so settled: the call's answer does not wait for it.
            None => upstream.progress.settle(&params.progress_token),
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
        let Some(_place) = self.admit(&upstream) else {
            return;
        };
        // No secret Portcullis holds goes on in it.
        let mut params = params;
        crate::secrets::Secrets::global().redact_json(&mut params.data);
        if let Some(logger) = &params.logger {
            // Named as the upstream's, so that no line can pass for Portcullis's own.
            params.logger = Some(format!("{}/{logger}", upstream.name()));
        } else {
            params.logger = Some(upstream.name().to_string());
        }
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
