//! One request on its way to an upstream: timeout, cancellation, progress routed back, and the
//! upstream's input-required rounds answered by the person through the caller's [`Asker`].
//!
//! Every failure at or beyond the upstream becomes a [`ForwardError`]; the server turns it into a
//! tool error that names the upstream (clients show those to the person) or, for the upstream's
//! own JSON-RPC errors, passes it through unchanged.

use std::sync::Arc;
use std::time::{Duration, Instant};

use portcullis_config::Taint;
use portcullis_core::Namespacing;
use portcullis_core::evidence::RequestContext;
use rmcp::ErrorData as McpError;
use rmcp::ServiceError;
use rmcp::model::{
    CallToolRequest, CallToolRequestParams, CallToolResponse, CallToolResult, ClientRequest,
    ContentBlock, GetExtensions, InputRequest, InputRequests, InputRequiredResult, InputResponses,
    JsonObject, ProgressToken, RequestId, ResultType, ServerResult,
};
use rmcp::service::{Peer, PeerRequestOptions, RoleServer};
use tokio_util::sync::CancellationToken;

use super::permit::{CallAction, CallPermit};
use crate::ask::Asker;
use crate::attach::{AttachFailure, Attachment};
use crate::evidence::{CallRecord, DurableIntent, outcome_of};
use crate::progress::ProgressTarget;
use crate::upstream::screen_elicitation;
use crate::upstream::{CallRoute, Canceller, Connection, UpstreamHandle};

/// How many input-required rounds Portcullis drives for one call before giving up.
const MAX_INPUT_ROUNDS: usize = 10;

/// Why a forwarded request produced no answer.
pub(crate) enum ForwardError {
    Cancelled,
    Timeout(Duration),
    /// Its `max_concurrent_calls` were all in flight for the whole call timeout; nothing was sent.
    Busy(Duration),
    Service(ServiceError),
}

impl ForwardError {
    /// The message for the client; upstream protocol errors pass through unchanged.
    pub(crate) fn into_mcp(self, upstream: &UpstreamHandle) -> McpError {
        match self {
            ForwardError::Service(ServiceError::McpError(error)) => error,
            other => McpError::internal_error(other.describe(upstream), None),
        }
    }

    pub(crate) fn describe(&self, upstream: &UpstreamHandle) -> String {
        let name = upstream.name();
        match self {
            ForwardError::Cancelled => "the request was cancelled".to_owned(),
            ForwardError::Timeout(limit) => format!(
                "upstream `{name}` did not answer within {}s; the request was cancelled",
                limit.as_secs()
            ),
            ForwardError::Busy(limit) => format!(
                "upstream `{name}` had {} calls in flight (its `max_concurrent_calls`) for {}s; the request was not sent",
                upstream.spec.max_concurrent_calls.unwrap_or_default(),
                limit.as_secs()
            ),
            ForwardError::Service(ServiceError::McpError(error)) => {
                format!("upstream `{name}` returned an error: {}", error.message)
            }
            ForwardError::Service(
                ServiceError::TransportClosed | ServiceError::TransportSend(_),
            ) => format!(
                "upstream `{name}` closed the connection during the request; it is being restarted"
            ),
            ForwardError::Service(ServiceError::UnexpectedResponse) => {
                format!("upstream `{name}` sent a response that is not valid for this request")
            }
            ForwardError::Service(error) => format!("upstream `{name}` failed: {error}"),
        }
    }
}

pub(crate) fn unexpected(upstream: &UpstreamHandle) -> McpError {
    McpError::internal_error(
        ForwardError::Service(ServiceError::UnexpectedResponse).describe(upstream),
        None,
    )
}

pub(crate) fn tool_error(message: String) -> CallToolResponse {
    // A message may quote an upstream's words (an error text): no secret goes back in it.
    let (message, _) = crate::secrets::Secrets::global().redact_text(&message);
    CallToolResponse::Complete(CallToolResult::error(vec![ContentBlock::text(message)]))
}

/// Sends `notifications/cancelled` upstream for a request abandoned before its answer.
struct AbandonGuard {
    canceller: Canceller,
    id: Option<RequestId>,
    /// The request's credential: its cancellation is that user's too, and an upstream that
    /// wants a token refuses a notification without one.
    attachment: Option<Attachment>,
}

impl Drop for AbandonGuard {
    fn drop(&mut self) {
        if let Some(id) = self.id.take() {
            self.canceller.cancelled(id, self.attachment.take());
        }
    }
}

/// A `tools/call` as sent upstream. Its field is private to this module, and only
/// [`UpstreamCall`] (permit and durable intent in hand) makes one.
///
/// ```compile_fail,E0423
/// fn forge(request: rmcp::model::CallToolRequest) -> portcullis_gateway::ToolCall {
///     portcullis_gateway::ToolCall(request)
/// }
/// ```
pub struct ToolCall(CallToolRequest);

impl ToolCall {
    fn new(params: CallToolRequestParams, attachment: Option<&Attachment>) -> Self {
        let mut request = CallToolRequest::new(params);
        if let Some(attachment) = attachment {
            request.extensions.insert(attachment.clone());
        }
        Self(request)
    }
}

/// Every request Portcullis sends an upstream on a client's behalf. A read, a prompt or the
/// rest carry their own typed parameters, so none of them can carry a `tools/call`; a call is
/// a [`ToolCall`], which only an [`UpstreamCall`] makes.
#[expect(
    deprecated,
    reason = "session-era clients still subscribe and set log levels"
)]
pub(crate) enum Outbound {
    Call(ToolCall),
    Read(rmcp::model::ReadResourceRequestParams),
    Prompt(rmcp::model::GetPromptRequestParams),
    Subscribe(rmcp::model::SubscribeRequestParams),
    Unsubscribe(rmcp::model::UnsubscribeRequestParams),
    SetLevel(rmcp::model::SetLevelRequestParams),
    Complete(rmcp::model::CompleteRequestParams),
}

impl Outbound {
    #[expect(
        deprecated,
        reason = "session-era clients still subscribe and set log levels"
    )]
    fn into_request(self) -> ClientRequest {
        use rmcp::model::{
            CompleteRequest, GetPromptRequest, ReadResourceRequest, SetLevelRequest,
            SubscribeRequest, UnsubscribeRequest,
        };
        match self {
            Outbound::Call(ToolCall(request)) => ClientRequest::CallToolRequest(request),
            Outbound::Read(params) => {
                ClientRequest::ReadResourceRequest(ReadResourceRequest::new(params))
            }
            Outbound::Prompt(params) => {
                ClientRequest::GetPromptRequest(GetPromptRequest::new(params))
            }
            Outbound::Subscribe(params) => {
                ClientRequest::SubscribeRequest(SubscribeRequest::new(params))
            }
            Outbound::Unsubscribe(params) => {
                ClientRequest::UnsubscribeRequest(UnsubscribeRequest::new(params))
            }
            Outbound::SetLevel(params) => {
                ClientRequest::SetLevelRequest(SetLevelRequest::new(params))
            }
            Outbound::Complete(params) => {
                ClientRequest::CompleteRequest(CompleteRequest::new(params))
            }
        }
    }
}

/// Forwards one request with the call timeout, cancellation, and progress routed back.
pub(crate) async fn forward(
    upstream: &UpstreamHandle,
    connection: &Connection,
    route: &CallRoute,
    progress: Option<(ProgressToken, Peer<RoleServer>)>,
    cancel: &CancellationToken,
    request: Outbound,
) -> Result<ServerResult, ForwardError> {
    let timeout = upstream.spec.call_timeout;
    let _permit = tokio::select! {
        _ = cancel.cancelled() => return Err(ForwardError::Cancelled),
        permit = upstream.call_permit(timeout) => permit.ok_or(ForwardError::Busy(timeout))?,
    };
    let _inflight = upstream.track_call(route.clone());
    let mut request = request.into_request();
    let attachment = request.extensions().get::<Attachment>().cloned();
    let target = progress.map(|(token, client)| ProgressTarget::new(token, client));
    if let Some(target) = &target {
        ProgressTarget::attach(target, &mut request);
    }
    let handle = connection
        .send(request, request_options(connection, route))
        .await
        .map_err(ForwardError::Service)?;
    let mut abandon = AbandonGuard {
        canceller: connection.canceller(),
        id: Some(handle.id.clone()),
        attachment,
    };
    let progress_route = target.map(|target| {
        upstream
            .progress
            .hold(handle.progress_token.clone(), target)
    });
    let outcome = tokio::select! {
        _ = cancel.cancelled() => Err(ForwardError::Cancelled),
        outcome = tokio::time::timeout(timeout, handle.await_response()) => match outcome {
            Ok(answer) => answer.map_err(ForwardError::Service),
            Err(_) => {
                upstream.report_timeout();
                Err(ForwardError::Timeout(timeout))
            }
        },
    };
    if outcome.is_ok() {
        abandon.id = None;
        if let Some(route) = &progress_route {
            // Progress the upstream sent before its answer reaches the client before it.
            route.settled(PROGRESS_SETTLE_LIMIT).await;
        }
    }
    outcome.map(mark_complete)
}

/// The longest a call's answer waits for progress sent before it to reach the client: a bound
/// for a client that stopped reading its progress, not the time progress takes.
const PROGRESS_SETTLE_LIMIT: Duration = Duration::from_secs(2);

/// Per-request metadata for the upstream: the client's log-level opt-in, which a stateless
/// upstream needs on each request (a session-era one got `logging/setLevel`).
fn request_options(connection: &Connection, route: &CallRoute) -> PeerRequestOptions {
    let mut options = PeerRequestOptions::no_options();
    if let (true, Some(level)) = (connection.is_stateless(), route.log_level) {
        let mut meta = rmcp::model::RequestMetaObject::default();
        meta.set_log_level(level);
        options.meta = Some(meta);
    }
    options
}

/// Session-era upstreams omit `resultType`, which stateless clients require on a final result
/// (rmcp strips it again for session-era clients).
fn mark_complete(mut result: ServerResult) -> ServerResult {
    let result_type = match &mut result {
        ServerResult::CallToolResult(r) => &mut r.result_type,
        ServerResult::ReadResourceResult(r) => &mut r.result_type,
        ServerResult::GetPromptResult(r) => &mut r.result_type,
        ServerResult::CompleteResult(r) => &mut r.result_type,
        _ => return result,
    };
    result_type.get_or_insert(ResultType::COMPLETE);
    result
}

/// A call's answer with every secret Portcullis holds redacted (see `secrets.rs`), and what
/// was found.
fn redact_answer(
    answer: Result<CallToolResponse, McpError>,
) -> (Result<CallToolResponse, McpError>, Vec<String>) {
    let secrets = crate::secrets::Secrets::global();
    let unreadable = || {
        tool_error(
            "the upstream's answer held a secret portcullis holds and could not be shown without it"
                .to_owned(),
        )
    };
    match answer {
        Ok(CallToolResponse::Complete(result)) => match secrets.redact(result) {
            Ok((result, found)) => (Ok(CallToolResponse::Complete(result)), found),
            Err(found) => (Ok(unreadable()), found),
        },
        Ok(CallToolResponse::InputRequired(required)) => match secrets.redact(required) {
            Ok((required, found)) => (Ok(CallToolResponse::InputRequired(required)), found),
            Err(found) => (Ok(unreadable()), found),
        },
        Ok(other) => (Ok(other), Vec::new()),
        Err(error) => match secrets.redact(error) {
            Ok((error, found)) => (Err(error), found),
            Err(found) => (Ok(unreadable()), found),
        },
    }
}

/// What an upstream call is made of, besides its permit and its durable intent.
pub struct CallParts {
    /// Its evidence, the intent already written; the outcome is written when it ends.
    pub record: CallRecord,
    pub upstream: Arc<UpstreamHandle>,
    pub connection: Arc<Connection>,
    /// The tool as its upstream names it.
    pub local: String,
    pub arguments: Option<JsonObject>,
    pub namespacing: Namespacing,
    /// Answers a stateless client sent without a `requestState` of Portcullis's: relayed to the
    /// upstream on the first round, which decides what they mean (they approve nothing here).
    pub first_responses: Option<InputResponses>,
    /// The session's taint key: a result from an untrusted upstream taints it.
    pub taint_key: String,
    /// The credential its requests carry, looked up as each is sent (`None`: the upstream
    /// takes none from Portcullis, or only its service credential).
    pub attachment: Option<Attachment>,
}

/// One tool call on its way to an upstream: the only thing a `tools/call` is sent from (see
/// [`Outbound::Call`]). Its fields are private to this module, and [`UpstreamCall::new`] wants
/// a permit for exactly this action and the proof that its intent is durable.
///
/// Outside this module it cannot be assembled but by `new` (the fields are private; the
/// error is E0451 whether the code is in another module of this crate or another crate):
///
/// ```compile_fail,E0451
/// use portcullis_gateway::{CallParts, CallPermit, DurableIntent, UpstreamCall};
/// fn forge(permit: CallPermit, intent: DurableIntent, parts: CallParts) -> UpstreamCall {
///     UpstreamCall { permit, intent, parts }
/// }
/// ```
pub struct UpstreamCall {
    permit: CallPermit,
    intent: DurableIntent,
    parts: CallParts,
}

/// A permit for another upstream, tool, arguments or definition: the parts come back, so that
/// the call's outcome can be recorded as not run.
pub struct NotPermitted {
    pub parts: Box<CallParts>,
}

impl UpstreamCall {
    /// The call `parts` describe, if `permit` allows exactly that action (`definition`: the
    /// digest of the definition the client was shown) and `intent` is its durable intent.
    pub fn new(
        permit: CallPermit,
        intent: DurableIntent,
        parts: CallParts,
        definition: &str,
    ) -> Result<Self, NotPermitted> {
        let action = CallAction::new(
            parts.upstream.name().as_str(),
            &parts.local,
            parts.arguments.as_ref(),
            definition,
        );
        if permit.action() != &action {
            return Err(NotPermitted {
                parts: Box::new(parts),
            });
        }
        Ok(Self {
            permit,
            intent,
            parts,
        })
    }

    /// Its evidence record.
    pub fn record(&self) -> &CallRecord {
        &self.parts.record
    }

    /// Runs the call to completion, answering the upstream's input rounds through `route`,
    /// and records its outcome before the answer goes back.
    pub async fn run(
        self,
        gateway: &crate::gateway::Gateway,
        route: &CallRoute,
        progress: Option<(ProgressToken, Peer<RoleServer>)>,
        cancel: &CancellationToken,
    ) -> Result<CallToolResponse, McpError> {
        let record = self.parts.record.clone();
        let upstream = self.parts.upstream.clone();
        let taint_key = self.parts.taint_key.clone();
        let answer = self.run_rounds(gateway, route, progress, cancel).await;
        // No secret Portcullis holds goes back, however the upstream wrote it in its answer.
        let (answer, redacted) = redact_answer(answer);
        if !redacted.is_empty() {
            tracing::warn!(
                upstream = %upstream.name(),
                secrets = %redacted.join(", "),
                "the upstream's answer held secrets Portcullis holds; they were redacted"
            );
        }
        // INVARIANT: the outcome is durable before the answer goes back; an answer whose
        // outcome cannot be recorded is withheld (the client is told the call ran).
        if let Err(message) = gateway
            .evidence
            .record_outcome(&record, outcome_of(&answer), redacted)
            .await
        {
            return Ok(tool_error(message));
        }
        // Whatever an untrusted upstream answered may have been written to steer the model:
        // its result, and its error too (an error's message is the upstream's own words).
        if upstream.spec.taint == Taint::Session
            && matches!(answer, Ok(CallToolResponse::Complete(_)) | Err(_))
            && let Err(withheld) = gateway
                .approvals
                .taints
                .mark(&taint_key, upstream.name().as_str())
        {
            return Ok(tool_error(withheld));
        }
        answer
    }

    async fn run_rounds(
        self,
        gateway: &crate::gateway::Gateway,
        route: &CallRoute,
        progress: Option<(ProgressToken, Peer<RoleServer>)>,
        cancel: &CancellationToken,
    ) -> Result<CallToolResponse, McpError> {
        let upstream = &*self.parts.upstream;
        tracing::debug!(
            upstream = %upstream.name(),
            tool = %self.parts.local,
            policies = ?self.permit.decision().policy_ids(),
            intent = ?self.intent.seq(),
            "forwarding an allowed call"
        );
        let mut upstream_state = None;
        let mut input_responses = self.parts.first_responses.clone();
        for _round in 0..MAX_INPUT_ROUNDS {
            let mut params = CallToolRequestParams::new(self.parts.local.clone());
            params.arguments = self.parts.arguments.clone();
            params.request_state = upstream_state.take();
            params.input_responses = input_responses.take();
            let request = ToolCall::new(params, self.parts.attachment.as_ref());
            let outcome = forward(
                upstream,
                &self.parts.connection,
                route,
                progress.clone(),
                cancel,
                Outbound::Call(request),
            )
            .await
            .and_then(call_response);
            let response = match outcome {
                Ok(response) => response,
                // The upstream's own protocol errors (bad arguments, unknown tool) pass through.
                Err(ForwardError::Service(ServiceError::McpError(error))) => return Err(error),
                Err(error) => return Ok(tool_error(self.failure(gateway, &error))),
            };
            match response {
                CallToolResponse::Complete(mut result) => {
                    for block in &mut result.content {
                        if let ContentBlock::ResourceLink(link) = block {
                            link.uri = self
                                .parts
                                .namespacing
                                .expose_uri(upstream.name(), &link.uri);
                        }
                    }
                    return Ok(CallToolResponse::Complete(result));
                }
                CallToolResponse::InputRequired(required) => {
                    upstream_state = required.request_state.clone();
                    match answer_inputs(
                        upstream,
                        &route.asker,
                        route.request.as_ref(),
                        &upstream.root_answer(Some(route)),
                        required,
                    )
                    .await
                    {
                        Ok(responses) => input_responses = Some(responses),
                        Err(message) => return Ok(tool_error(message)),
                    }
                }
                CallToolResponse::Task(_) | _ => {
                    return Ok(tool_error(format!(
                        "upstream `{}` answered with a task, which portcullis does not relay",
                        upstream.name()
                    )));
                }
            }
        }
        Ok(tool_error(format!(
            "upstream `{}` asked for input more than {MAX_INPUT_ROUNDS} times",
            upstream.name()
        )))
    }
}

impl UpstreamCall {
    /// What the client is told of a call that failed at or beyond the upstream: what the
    /// credential says (and the scopes it lacked, learnt), else what the transport says.
    fn failure(&self, gateway: &crate::gateway::Gateway, error: &ForwardError) -> String {
        let upstream = &*self.parts.upstream;
        let message = match self.parts.attachment.as_ref().and_then(Attachment::failure) {
            Some(failure) => {
                if let AttachFailure::InsufficientScope(scopes) = &failure {
                    gateway.credentials.learn_scopes(
                        upstream.name().as_str(),
                        &self.parts.local,
                        scopes,
                    );
                }
                failure.describe(upstream.name().as_str())
            }
            None => error.describe(upstream),
        };
        tracing::warn!(upstream = %upstream.name(), tool = %self.parts.local, %message, "call failed");
        message
    }
}

/// A `tools/call` answer as the client gets it; any other kind of result is unexpected.
fn call_response(result: ServerResult) -> Result<CallToolResponse, ForwardError> {
    match result {
        ServerResult::CallToolResult(result) => Ok(CallToolResponse::Complete(result)),
        ServerResult::InputRequiredResult(result) => Ok(CallToolResponse::InputRequired(result)),
        ServerResult::CreateTaskResult(result) => Ok(CallToolResponse::Task(result)),
        ServerResult::EmptyResult(_) => Ok(CallToolResponse::Complete(CallToolResult::success(
            Vec::new(),
        ))),
        _ => Err(ForwardError::Service(ServiceError::UnexpectedResponse)),
    }
}

/// Why an upstream's question under a key of Portcullis's own is not relayed.
pub(crate) const RESERVED_KEY_REFUSAL: &str =
    "refused: the upstream asked under a key reserved for portcullis's own questions";

/// Whether an input key is Portcullis's own (`portcullis.…`, in any letter case): an upstream's
/// question under it could pass for Portcullis's approval or sign-in at a stateless client.
pub(crate) fn is_reserved_key(key: &str) -> bool {
    key.get(..11)
        .is_some_and(|prefix| prefix.eq_ignore_ascii_case("portcullis."))
}

/// Answers an upstream's input-required round: its questions go to the person, labelled.
pub(crate) async fn answer_inputs(
    upstream: &UpstreamHandle,
    asker: &Asker,
    request_context: Option<&RequestContext>,
    roots: &[String],
    required: InputRequiredResult,
) -> Result<InputResponses, String> {
    let started = Instant::now();
    let mut responses = InputResponses::new();
    let mut questions = InputRequests::new();
    for (key, request) in required.input_requests.unwrap_or_default() {
        if is_reserved_key(&key) {
            // A question under Portcullis's own key would pose as Portcullis (its approval).
            upstream
                .record_elicitation(request_context, RESERVED_KEY_REFUSAL, started)
                .await;
            responses.insert(key, serde_json::json!({ "action": "decline" }));
            continue;
        }
        match request {
            InputRequest::Elicitation(mut request) => {
                match screen_elicitation(upstream, request.params) {
                    Ok(params) => {
                        request.params = params;
                        questions.insert(key, InputRequest::Elicitation(request));
                    }
                    Err(refusal) => {
                        upstream
                            .record_elicitation(request_context, &refusal, started)
                            .await;
                        responses.insert(key, serde_json::json!({ "action": "decline" }));
                    }
                }
            }
            // Roots are Portcullis's to answer, never the client's to widen.
            InputRequest::ListRoots(_) => {
                let roots: Vec<serde_json::Value> = roots
                    .iter()
                    .map(|uri| serde_json::json!({ "uri": uri }))
                    .collect();
                responses.insert(key, serde_json::json!({ "roots": roots }));
            }
            // Sampling would let an upstream spend the user's model on prompts of its choosing.
            InputRequest::CreateMessage(_) | _ => {
                return Err(format!(
                    "upstream `{}` asked for input that portcullis does not relay (sampling)",
                    upstream.name()
                ));
            }
        }
    }
    if questions.is_empty() {
        return Ok(responses);
    }
    let keys: Vec<String> = questions.keys().cloned().collect();
    let answers = asker.ask_all(questions).await;
    for key in &keys {
        let response = match &answers {
            Ok(_) if matches!(asker, Asker::Nobody) => {
                "declined: the client cannot be asked (no elicitation capability)".to_owned()
            }
            Ok(answers) => answers
                .get(key)
                .and_then(|answer| answer.get("action"))
                .and_then(serde_json::Value::as_str)
                .unwrap_or("cancel")
                .to_owned(),
            Err(error) => format!("not answered: {error}"),
        };
        upstream
            .record_elicitation(request_context, &response, started)
            .await;
    }
    responses.extend(answers?);
    Ok(responses)
}
