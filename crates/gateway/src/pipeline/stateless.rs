//! Stateless (2026-07-28) calls across the client's retries: a call runs in its own task so that
//! it can wait for answers; a retry with a parked call's `requestState` feeds it, once.

use std::sync::atomic::Ordering;

use rmcp::ErrorData as McpError;
use rmcp::model::{CallToolRequestParams, CallToolResponse, InputRequiredResult};
use rmcp::service::{RequestContext, RoleServer};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::execute::{UpstreamCall, tool_error};
use crate::ask::{Asker, Question};
use crate::pending::PendingCall;
use crate::server::{NEXT_SESSION, PortcullisServer, declares_elicitation, progress_of};
use crate::state::SealedRound;
use crate::upstream::CallRoute;

pub(super) fn invalid_state() -> McpError {
    McpError::invalid_params(
        "requestState is invalid, expired, already used, or was issued for another request (or by another replica, which holds the call it names)",
        None,
    )
}

impl PortcullisServer {
    /// A stateless retry that answers an upstream's questions: the answers go to the call
    /// parked for them, taken out once.
    pub(super) async fn resume_stateless(
        &self,
        id: &str,
        request: &CallToolRequestParams,
        bound_to: &str,
        context: &RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let answers = request.input_responses.clone().ok_or_else(|| {
            McpError::invalid_params("a retry with requestState needs inputResponses", None)
        })?;
        // Capabilities are read per request: answers to an upstream's questions come only from
        // a retry that declares the elicitation they answer.
        if !declares_elicitation(context) {
            return Err(McpError::invalid_params(
                "a retry with inputResponses must declare the elicitation capability it answers",
                None,
            ));
        }
        let mut pending = self
            .gateway
            .pending
            .take(id, bound_to)
            .ok_or_else(invalid_state)?;
        if let Some(reply) = pending.answer.take() {
            let _ = reply.send(answers);
        }
        self.await_stateless(pending, bound_to, context).await
    }

    /// A stateless client's call: it runs in its own task so that it can wait for answers
    /// across the client's retries.
    pub(super) async fn start_stateless(
        &self,
        call: UpstreamCall,
        bound_to: &str,
        context: &RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let (questions_tx, questions) = mpsc::channel(1);
        let cancel = CancellationToken::new();
        // Capabilities are read per request: a client that did not declare elicitation on
        // this one is not asked.
        let asker = if declares_elicitation(context) {
            Asker::Bridge(questions_tx)
        } else {
            Asker::Nobody
        };
        let route = CallRoute {
            session: NEXT_SESSION.fetch_add(1, Ordering::Relaxed),
            // A stateless request has no session to ask for roots: config's roots alone.
            client_roots: None,
            request: Some(call.record().request().clone()),
            asker,
            listener: None,
            log_level: self.log_level_for(context),
        };
        let progress = progress_of(context);
        let task_cancel = cancel.clone();
        let task = {
            let gateway = self.gateway.clone();
            tokio::spawn(
                async move { call.run(&gateway, &route, progress, &task_cancel).await }
                    .in_current_span(),
            )
        };
        let pending = PendingCall {
            task,
            questions,
            answer: None,
            cancel,
        };
        self.await_stateless(pending, bound_to, context).await
    }

    async fn await_stateless(
        &self,
        mut pending: PendingCall,
        bound_to: &str,
        context: &RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        enum Event {
            Done(Result<Result<CallToolResponse, McpError>, tokio::task::JoinError>),
            Asked(Option<Question>),
            Cancelled,
        }
        let event = tokio::select! {
            joined = &mut pending.task => Event::Done(joined),
            question = pending.questions.recv() => Event::Asked(question),
            _ = context.ct.cancelled() => Event::Cancelled,
        };
        match event {
            Event::Done(joined) => joined.unwrap_or_else(|error| {
                tracing::error!(%error, "a call task ended abnormally");
                Ok(tool_error("the call ended abnormally".to_owned()))
            }),
            Event::Asked(Some(Question { requests, answer })) => {
                pending.answer = Some(answer);
                let Some(id) = self.gateway.pending.park(pending, bound_to) else {
                    return Ok(tool_error(
                        "the call could not wait for your answer (no randomness for its reference); it was cancelled".to_owned(),
                    ));
                };
                let state = self
                    .gateway
                    .approvals
                    .states
                    .seal(&SealedRound::Pending { id }, bound_to);
                Ok(CallToolResponse::InputRequired(InputRequiredResult::new(
                    Some(requests),
                    Some(state),
                )))
            }
            Event::Asked(None) => (&mut pending.task)
                .await
                .unwrap_or_else(|_| Ok(tool_error("the call ended abnormally".to_owned()))),
            Event::Cancelled => {
                pending.cancel.cancel();
                Ok(tool_error("the request was cancelled".to_owned()))
            }
        }
    }
}
