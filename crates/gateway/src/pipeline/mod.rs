//! `tools/call`, end to end, in both eras, as one pipeline of stages, in this order:
//!
//! 1. `resolve.rs`: the exposed name to one upstream, its own tool name and the listed
//!    definition; a name that is unknown, or hidden from this identity, stops as unknown.
//! 2. `check.rs`: the arguments against the tool's input schema, then path arguments against
//!    the effective roots.
//! 3. `decide.rs`: the call's facts (recipients, tenant, taint, network reach) and the policy's
//!    decision: a `CallPermit`, or a `PendingApproval`.
//! 4. `credential.rs`: the credential the call will carry, or the person sent to sign in first.
//! 5. `approve.rs`: a pending approval asked of the person; only an explicit yes yields the
//!    permit.
//! 6. here: the intent recorded (durable) before the upstream hears of the call, then the call
//!    run (`execute.rs`), whose outcome is recorded before the answer goes back.
//!
//! A stage that ends the call returns a [`Stop`]; [`PortcullisServer::stop`] is the one place a
//! stop becomes its evidence record and its answer.
//!
//! INVARIANT: the upstream hears of a call only with a `CallPermit` (policy allowed it, or a
//! person approved exactly this action) and after its intent record is durable. A stateless
//! client's retry either feeds answers to a call already running (its `requestState` names a
//! parked call) or claims an approval, once; nothing else in a retry runs anything.

mod approve;
mod asking;
mod check;
mod credential;
mod decide;
mod execute;
mod ladder;
mod permit;
pub(crate) mod read;
mod relay;
mod resolve;
mod rounds;
mod scoped;
mod sign_in;
mod stateless;
#[cfg(test)]
mod tests;

use std::sync::Arc;

pub use asking::Granted;
pub use check::Catalogued;
pub use execute::{CallParts, ToolCall, UpstreamCall};
pub use permit::{CallAction, CallPermit};

use portcullis_core::evidence::{DecisionSummary, Outcome};
use portcullis_core::{Effect, IdentityEnvelope};
use rmcp::ErrorData as McpError;
use rmcp::model::{CallToolRequestParams, CallToolResponse, Tool};
use rmcp::service::{RequestContext, RoleServer};

use crate::attach::Attachment;
use crate::authorize::VisibleTool;
use crate::evidence::CallRecord;
use crate::server::{PortcullisServer, asker_for, binding, listener_for, progress_of};
use crate::state::{SealedRound, StateError};
use crate::tool_search::Route;
use crate::upstream::{CallRoute, Connection, UpstreamHandle};
use execute::{NotPermitted, tool_error};

/// One call as the pipeline sees it, built once from the request.
pub(crate) struct CallContext<'r> {
    pub envelope: &'r IdentityEnvelope,
    pub request: &'r CallToolRequestParams,
    pub context: &'r RequestContext<RoleServer>,
    /// The request speaks the stateless era (2026-07-28).
    pub stateless: bool,
    /// What a sealed `requestState` of this call is bound to (user, tool, arguments).
    pub bound_to: String,
    /// The key this session's taint and reached hosts are kept under.
    pub taint_key: String,
    /// A stateless retry's claim on the approval its `requestState` names.
    pub claimed_approval: Option<u64>,
    /// A stateless retry after the client was sent to the approval page: that approval's id.
    pub on_page: Option<String>,
    /// A stateless retry after the person was sent to sign in: the flow it waits for.
    pub authorizing: Option<String>,
}

/// Where the resolve stage leaves a call: the upstream and tool it names, which this identity
/// may see.
pub(crate) struct Resolved<'r> {
    pub upstream: Arc<UpstreamHandle>,
    /// The tool as its upstream names it.
    pub local: &'r str,
    pub visible: VisibleTool<'r>,
    pub connection: Arc<Connection>,
    /// The tool's definition as listed to the client, and its digest.
    pub definition: Tool,
    pub definition_digest: String,
    /// Set when the tool is quarantined (its definition differs from its pin, `pins.rs`):
    /// `definition` is then the one it lists now, which a person's approval of this call
    /// accepts (`approve.rs`); nothing runs without that approval.
    pub changed: Option<crate::pins::Quarantined>,
}

/// Why a call stops before it runs.
pub(crate) enum Stop {
    /// Unknown to this identity: a name that does not exist and one hidden from it get the
    /// same answer, so nothing about what others may see leaks. The reason is recorded.
    Unknown(&'static str),
    /// Visible to this identity but quarantined until a person accepts its changed definition
    /// (`pins.rs`): unknown like the above, with the message saying why and how to accept it.
    Quarantined(String),
    /// Refused with a tool error (clients show those to the person): the message, what the
    /// evidence says, and the decision it was made under.
    Refused {
        message: String,
        recorded: String,
        decision: DecisionSummary,
    },
    /// Not a refusal: an answer the stage already has (a round for a stateless client, or a
    /// retried call's recorded result). Nothing more is recorded for it here.
    Answer(Box<CallToolResponse>),
}

/// A call that may run: its permit, what it carries, and the notes its intent records.
struct Ready<'r> {
    resolved: Resolved<'r>,
    permit: CallPermit,
    effect: Effect,
    attachment: Option<Attachment>,
    credential_note: Option<String>,
    approval_note: Option<String>,
    /// The stateless approval whose outcome is kept for a retry.
    stateless_approval: Option<u64>,
}

impl PortcullisServer {
    /// The key this request's taint is kept under (see `approval::Taints`).
    pub(crate) fn taint_key(
        &self,
        context: &RequestContext<RoleServer>,
        envelope: &IdentityEnvelope,
    ) -> String {
        if Self::is_stateless(context) {
            let user = envelope.user();
            format!(
                "{}{}\n{}\n{}",
                crate::approval::CLIENT_TAINT_KEY,
                user.issuer,
                user.subject,
                envelope.client().unwrap_or("")
            )
        } else {
            crate::server::session_key(self.session)
        }
    }

    /// A call's context, built once from its request.
    fn call_context<'r>(
        &self,
        envelope: &'r IdentityEnvelope,
        request: &'r CallToolRequestParams,
        context: &'r RequestContext<RoleServer>,
    ) -> CallContext<'r> {
        CallContext {
            envelope,
            request,
            context,
            stateless: Self::is_stateless(context),
            bound_to: binding(envelope.user(), &request.name, request.arguments.as_ref()),
            taint_key: self.taint_key(context, envelope),
            claimed_approval: None,
            on_page: None,
            authorizing: None,
        }
    }

    /// `tools/call` for `envelope`, inside the call's span; `route` says whether it came by
    /// its own name or through `portcullis.call_tool` (its records say which).
    pub(crate) async fn call_tool_as(
        &self,
        envelope: Arc<IdentityEnvelope>,
        request: CallToolRequestParams,
        route: Route,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        self.gateway.upstreams.ready_for(&envelope).await;
        let stateless = Self::is_stateless(&context);
        if !stateless && (request.request_state.is_some() || request.input_responses.is_some()) {
            return Err(McpError::invalid_params(
                "requestState and inputResponses are for stateless (2026-07-28) requests",
                None,
            ));
        }
        let mut call = self.call_context(&envelope, &request, &context);
        if let Some(sealed) = request.request_state.as_deref() {
            match self.gateway.approvals.states.open(sealed, &call.bound_to) {
                Ok(SealedRound::Pending { id }) => {
                    return self
                        .resume_stateless(&id, &request, &call.bound_to, &context)
                        .await;
                }
                Ok(SealedRound::Approval { id }) => call.claimed_approval = Some(id),
                Ok(SealedRound::Page { id }) => call.on_page = Some(id),
                Ok(SealedRound::Authorize { flow }) => call.authorizing = Some(flow),
                Ok(SealedRound::Upstream { .. }) | Err(StateError::Invalid) => {
                    return Err(stateless::invalid_state());
                }
            }
        }
        let mut record = CallRecord::unresolved(&envelope, self.session, &request.name);
        record.came_via(route.via());
        tracing::Span::current().record("request_id", record.request().request_id.as_str());
        if let Some(upstream) = self.sign_in_target(&call) {
            return match self.sign_in_call(&call, record.clone(), &upstream).await {
                Ok(answer) => Ok(answer),
                Err(stop) => self.stop(&call, record, stop).await,
            };
        }
        match self.prepare(&call, &mut record).await {
            Ok(ready) => self.execute(&call, record, ready).await,
            Err(stop) => self.stop(&call, record, stop).await,
        }
    }

    /// Every stage before the upstream hears of the call, in order.
    async fn prepare<'r>(
        &self,
        call: &CallContext<'r>,
        record: &mut CallRecord,
    ) -> Result<Ready<'r>, Stop> {
        let resolved = self.resolve_stage(call, record)?;
        let paths = self.check_stage(call, &resolved)?;
        let decided = self.decide_stage(call, &resolved, &paths)?;
        let (attachment, credential_note) = self
            .credential_stage(call, &resolved, &decided, record)
            .await?
            .unzip();
        let approved = self.approve_stage(call, &resolved, decided, record).await?;
        Ok(Ready {
            resolved,
            permit: approved.permit,
            effect: approved.effect,
            attachment,
            credential_note,
            approval_note: approved.note,
            stateless_approval: approved.stateless,
        })
    }

    /// The one place a stopped call becomes its evidence record and its answer.
    async fn stop(
        &self,
        call: &CallContext<'_>,
        record: CallRecord,
        stop: Stop,
    ) -> Result<CallToolResponse, McpError> {
        let arguments = call.request.arguments.as_ref();
        match stop {
            Stop::Unknown(reason) => {
                let decision = self.gateway.evidence.summary(None);
                self.gateway
                    .evidence
                    .record_refusal(record, arguments, decision, reason)
                    .await;
                Err(McpError::invalid_params(
                    format!("unknown tool `{}`", call.request.name),
                    None,
                ))
            }
            Stop::Quarantined(message) => {
                let decision = self.gateway.evidence.summary(None);
                self.gateway
                    .evidence
                    .record_refusal(
                        record,
                        arguments,
                        decision,
                        "quarantined: its definition differs from its pin",
                    )
                    .await;
                Err(McpError::invalid_params(message, None))
            }
            Stop::Refused {
                message,
                recorded,
                decision,
            } => {
                self.gateway
                    .evidence
                    .record_refusal(record, arguments, decision, &recorded)
                    .await;
                Ok(tool_error(message))
            }
            Stop::Answer(response) => Ok(*response),
        }
    }

    /// Records the intent (durable before anything is sent), then runs the call.
    async fn execute(
        &self,
        call: &CallContext<'_>,
        mut record: CallRecord,
        ready: Ready<'_>,
    ) -> Result<CallToolResponse, McpError> {
        let gateway = &self.gateway;
        let Ready {
            resolved,
            permit,
            effect,
            attachment,
            credential_note,
            approval_note,
            stateless_approval,
        } = ready;
        // INVARIANT: the intent is durable before the upstream hears of the call: the upstream
        // call cannot be built without the `DurableIntent` that recording it returns.
        let intent = match gateway
            .evidence
            .record_intent(
                &mut record,
                call.request.arguments.as_ref(),
                gateway.evidence.summary(Some(permit.decision())),
                effect,
                approval_note,
                credential_note,
            )
            .await
        {
            Ok(intent) => intent,
            Err(message) => {
                if let Some(id) = stateless_approval {
                    gateway.approvals.stateless.finish(id, None).await;
                }
                return Ok(tool_error(message));
            }
        };
        let definition = record.definition_digest().to_owned();
        let parts = self.call_parts(call, record, resolved, attachment);
        let upstream_call = match UpstreamCall::new(permit, intent, parts, &definition) {
            Ok(upstream_call) => upstream_call,
            Err(NotPermitted { parts }) => return Ok(self.not_permitted(call, &parts).await),
        };
        if call.stateless {
            let answer = self
                .start_stateless(upstream_call, &call.bound_to, call.context)
                .await;
            if let Some(id) = stateless_approval {
                let result = match &answer {
                    Ok(CallToolResponse::Complete(result)) => Some(result.clone()),
                    _ => None,
                };
                gateway.approvals.stateless.finish(id, result).await;
            }
            return answer;
        }
        let context = call.context;
        let route = CallRoute {
            session: self.session,
            client_roots: self.offered_roots(),
            request: Some(upstream_call.record().request().clone()),
            asker: asker_for(context),
            listener: listener_for(context),
            log_level: self.log_level_for(context),
        };
        upstream_call
            .run(&self.gateway, &route, progress_of(context), &context.ct)
            .await
    }

    /// A permit that does not name the action about to be sent. Unreachable by construction
    /// (the permit was made for these very parts); if it ever happens, nothing runs, and the
    /// intent gets its outcome.
    async fn not_permitted(&self, call: &CallContext<'_>, parts: &CallParts) -> CallToolResponse {
        let reason = "its permit is for another action";
        tracing::error!(tool = %call.request.name, reason, "the call did not run");
        let _ = self
            .gateway
            .evidence
            .record_outcome(
                &parts.record,
                Outcome::NotRun {
                    reason: reason.to_owned(),
                },
                Vec::new(),
            )
            .await;
        tool_error(format!(
            "portcullis could not run `{}`: {reason}; the call did not run",
            call.request.name
        ))
    }

    /// What the upstream call is made of: the resolved tool, the arguments as sent, and where
    /// its answers and taint go.
    fn call_parts(
        &self,
        call: &CallContext<'_>,
        record: CallRecord,
        resolved: Resolved<'_>,
        attachment: Option<Attachment>,
    ) -> CallParts {
        let request = call.request;
        CallParts {
            record,
            upstream: resolved.upstream,
            connection: resolved.connection,
            local: resolved.local.to_owned(),
            arguments: request.arguments.clone(),
            namespacing: self.gateway.upstreams.namespacing(),
            // Answers a stateless client sent without a `requestState` of Portcullis's go to
            // the upstream on the first round, which decides what they mean (they approve
            // nothing here).
            first_responses: request
                .request_state
                .is_none()
                .then(|| request.input_responses.clone())
                .flatten(),
            taint_key: call.taint_key.clone(),
            attachment,
        }
    }
}
