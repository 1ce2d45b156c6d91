//! A read's way through the upstream's input-required rounds (`prompts/get` and
//! `resources/read` may ask the person something before they answer): a session-era client is
//! asked directly and the upstream retried; a stateless (2026-07-28) client gets the round,
//! labelled, with the upstream's own state sealed inside Portcullis's and bound to the same
//! request, and retries itself.

use rmcp::ErrorData as McpError;
use rmcp::model::{InputRequest, InputRequiredResult, InputResponses, JsonObject, ServerResult};
use rmcp::service::{RequestContext, RoleServer};

use super::execute::{Outbound, answer_inputs, is_reserved_key};
use crate::evidence::request_context;
use crate::server::{PortcullisServer, asker_for, binding, declares_elicitation};
use crate::state::{SealedRound, StateError};
use crate::upstream::{Connection, UpstreamHandle, screen_elicitation};

/// How many input-required rounds Portcullis drives for one prompt or resource request.
const MAX_INPUT_ROUNDS: usize = 10;

/// What a prompt or resource request asks, as its input rounds bind it: the name (or URI) and
/// arguments its sealed state is bound to, and what a stateless retry brings back.
pub(crate) struct Asked<'a> {
    pub name: &'a str,
    pub arguments: Option<&'a JsonObject>,
    /// The `requestState` of a retry.
    pub state: Option<&'a str>,
    /// Its `inputResponses`.
    pub responses: Option<InputResponses>,
}

/// Where a prompt or resource request ended: an answer, or a round for a stateless client.
pub(crate) enum Rounds {
    Done(Box<ServerResult>),
    Ask(InputRequiredResult),
}

impl PortcullisServer {
    /// The upstream's own state a stateless retry carries, sealed in ours and bound to the same
    /// request. Capabilities are read per request: answers come only from a retry that declares
    /// the elicitation they answer.
    fn resumed_state(
        &self,
        context: &RequestContext<RoleServer>,
        sealed: &str,
        bound_to: &str,
        answers: bool,
    ) -> Result<Option<String>, McpError> {
        if answers && !declares_elicitation(context) {
            return Err(McpError::invalid_params(
                "a retry with inputResponses must declare the elicitation capability it answers",
                None,
            ));
        }
        let round = self
            .gateway
            .approvals
            .states
            .open(sealed, bound_to)
            .map_err(|StateError::Invalid| {
                McpError::invalid_params(
                    "requestState is invalid, expired, or was issued for another request",
                    None,
                )
            })?;
        match round {
            SealedRound::Upstream { state } => Ok(state),
            _ => Err(McpError::invalid_params(
                "requestState was issued for another request",
                None,
            )),
        }
    }

    /// Forwards a prompt or resource request through the upstream's input-required rounds: a
    /// session-era client is asked directly and the upstream retried; a stateless client gets
    /// the round (labelled), with the upstream's state sealed inside ours, and retries itself.
    pub(crate) async fn input_rounds(
        &self,
        (upstream, connection): (&UpstreamHandle, &Connection),
        context: &RequestContext<RoleServer>,
        asked: Asked<'_>,
        build: impl Fn(Option<String>, Option<InputResponses>) -> Outbound,
    ) -> Result<Rounds, McpError> {
        let envelope = self.envelope(context)?;
        let bound_to = binding(envelope.user(), asked.name, asked.arguments);
        let (sealed, mut responses) = (asked.state, asked.responses);
        let mut state = match sealed {
            Some(sealed) => self.resumed_state(context, sealed, &bound_to, responses.is_some())?,
            None => None,
        };
        let asker = asker_for(context);
        let evidence_request = self
            .envelope(context)
            .ok()
            .map(|envelope| request_context(&envelope, self.session));
        for _round in 0..MAX_INPUT_ROUNDS {
            match self
                .forward(
                    upstream,
                    connection,
                    context,
                    build(state.take(), responses.take()),
                )
                .await?
            {
                ServerResult::InputRequiredResult(mut required) => {
                    if Self::is_stateless(context) && declares_elicitation(context) {
                        relabel(upstream, &mut required)?;
                        let upstream_state = required.request_state.take();
                        required.request_state = Some(self.gateway.approvals.states.seal(
                            &SealedRound::Upstream {
                                state: upstream_state,
                            },
                            &bound_to,
                        ));
                        return Ok(Rounds::Ask(required));
                    }
                    state = required.request_state.clone();
                    responses = Some(
                        answer_inputs(
                            upstream,
                            &asker,
                            evidence_request.as_ref(),
                            &upstream.root_answer_for(
                                self.offered_roots().as_ref(),
                                evidence_request.as_ref(),
                            ),
                            required,
                        )
                        .await
                        .map_err(|message| McpError::internal_error(message, None))?,
                    );
                }
                other => return Ok(Rounds::Done(Box::new(other))),
            }
        }
        Err(McpError::internal_error(
            format!(
                "upstream `{}` asked for input too many times",
                upstream.name()
            ),
            None,
        ))
    }
}

/// Labels an upstream's round for a stateless client; only questions for the person pass:
/// roots are Portcullis's to answer and sampling is refused.
fn relabel(upstream: &UpstreamHandle, required: &mut InputRequiredResult) -> Result<(), McpError> {
    for (key, request) in required.input_requests.iter_mut().flatten() {
        if is_reserved_key(key) {
            return Err(McpError::invalid_request(
                format!(
                    "upstream `{}` asked under a key reserved for portcullis's own questions; not relayed",
                    upstream.name()
                ),
                None,
            ));
        }
        let InputRequest::Elicitation(elicit) = request else {
            return Err(McpError::internal_error(
                format!(
                    "upstream `{}` asked for input that portcullis does not relay",
                    upstream.name()
                ),
                None,
            ));
        };
        elicit.params = screen_elicitation(upstream, elicit.params.clone())
            .map_err(|refusal| McpError::invalid_request(refusal, None))?;
    }
    Ok(())
}
