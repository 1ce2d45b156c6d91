//! `prompts/get` and `resources/read` through the stages that apply to them, in order:
//!
//! 1. resolve: the exposed name or URI to one upstream and its own name;
//! 2. decide: may this identity read it (the same check that filters the lists, so a hidden
//!    name answers exactly like an unknown one; it comes before the checks, which would
//!    otherwise tell the two apart);
//! 3. check: in a session that read untrusted content, no host it has not reached yet; a
//!    `file:` URI inside the effective roots;
//! 4. the read itself, through the upstream's input rounds, and its record before the answer
//!    goes back (an answer that cannot be recorded is withheld).
//!
//! A stage that ends the read returns a [`ReadStop`]; [`PortcullisServer::stop_read`] is the
//! one place a stop becomes its record and its error. Reads are never offered for approval: a
//! read that policy allows only with approval is refused. The types here carry typed read
//! parameters only (`Outbound::Read`, `Outbound::Prompt`): no `tools/call` can pass.

use std::sync::Arc;
use std::time::Instant;

use portcullis_core::IdentityEnvelope;
use portcullis_core::evidence::{Event, Outcome, PromptGet, ResourceRead};
use portcullis_policy::Decision;
use rmcp::ErrorData as McpError;
use rmcp::model::{
    GetPromptRequestParams, GetPromptResponse, InputRequiredResult, InputResponses,
    ReadResourceRequestParams, ReadResourceResponse, ResourceContents, ServerResult,
};
use rmcp::service::{RequestContext, RoleServer};

use super::execute::{Outbound, unexpected};
use crate::authorize::{Listed, Refusal};
use crate::evidence::{read_outcome, recorded_name, request_context};
use crate::gateway::Gateway;
use crate::pipeline::rounds::{Asked, Rounds};
use crate::recorder::elapsed_ms;
use crate::server::PortcullisServer;
use crate::upstream::{Connection, UpstreamHandle};

/// One kind of read: what differs between a prompt get and a resource read.
pub(crate) trait Read {
    type Response: ReadResponse;
    /// Why a name that resolves to nothing is refused, as recorded.
    const NO_SUCH: &'static str;

    /// The name (prompt) or URI (resource) as the client sent it.
    fn exposed(&self) -> &str;
    /// The upstream and its own name for it, if the name resolves.
    fn resolve(
        &self,
        server: &PortcullisServer,
        envelope: &IdentityEnvelope,
    ) -> Option<(Arc<UpstreamHandle>, String)>;
    /// What policy is asked about.
    fn listed(local: &str) -> Listed<'_>;
    /// Whether the upstream offers it (a resource URI may match a template: always `true`).
    fn offered(connection: &Connection, local: &str) -> bool;
    /// The answer for a name that is unknown (or hidden).
    fn unknown(&self) -> McpError;
    /// The parts that may name hosts (the URI, or the arguments).
    fn hosts_in(&self, local: &str) -> serde_json::Value;
    /// Its evidence event.
    fn event(
        &self,
        gateway: &Gateway,
        target: &Target,
        decision: Option<&Decision>,
        outcome: Outcome,
    ) -> Event;
    /// What its input rounds bind a sealed state to and what a stateless retry brings back.
    fn asked(&self) -> Asked<'_>;
    /// The request for one round, under the upstream's own name.
    fn outbound(
        &self,
        local: &str,
        state: Option<String>,
        responses: Option<InputResponses>,
    ) -> Outbound;
    /// The final answer from the upstream's result, as the client knows the names.
    fn answer(
        gateway: &Gateway,
        upstream: &UpstreamHandle,
        result: ServerResult,
    ) -> Result<Self::Response, McpError>;

    /// What the record says of an answer; `None` for a round still waiting for the person
    /// (its retry records it).
    fn outcome(answer: &Result<Self::Response, McpError>) -> Option<Outcome> {
        match answer {
            Ok(response) => response.complete().map(|result| read_outcome(Ok(result))),
            Err(error) => Some(read_outcome::<()>(Err(error))),
        }
    }
}

/// What a read's records name: who asked, when it started, and the upstream and name it
/// resolved to (empty upstream and the name as sent when it resolved to nothing).
pub(crate) struct Target {
    pub request: portcullis_core::evidence::RequestContext,
    pub started: Instant,
    pub upstream: String,
    pub name: String,
}

/// Why a read ends before it reaches the upstream.
pub(crate) enum ReadStop {
    /// Unknown to this identity (no such name, or hidden from it): the reason is recorded.
    Unknown(&'static str),
    /// Refused by policy: hidden ones are unknown; one that needs approval is refused.
    Policy(Refusal),
    /// Refused with its error, recorded with its reason under its decision.
    Refused(Box<RefusedRead>),
}

/// A read refused by a check.
pub(crate) struct RefusedRead {
    error: McpError,
    recorded: String,
    decision: Option<Decision>,
}

impl ReadStop {
    fn refused(error: McpError, recorded: String, decision: Decision) -> Self {
        Self::Refused(Box::new(RefusedRead {
            error,
            recorded,
            decision: Some(decision),
        }))
    }
}

impl PortcullisServer {
    /// A prompt get or resource read, through every stage.
    pub(crate) async fn read_as<R: Read>(
        &self,
        read: &R,
        context: &RequestContext<RoleServer>,
    ) -> Result<R::Response, McpError> {
        let envelope = self.envelope(context)?;
        self.gateway.upstreams.ready_for(&envelope).await;
        let resolved = read.resolve(self, &envelope);
        let mut target = Target {
            request: request_context(&envelope, self.session),
            started: Instant::now(),
            upstream: String::new(),
            name: recorded_name(read.exposed()),
        };
        let Some((upstream, local)) = resolved else {
            return Err(self
                .stop_read(read, &target, ReadStop::Unknown(R::NO_SUCH))
                .await);
        };
        let upstream = &*upstream;
        target.upstream = upstream.name().to_string();
        target.name.clone_from(&local);
        let (decision, connection) =
            match self.read_stages(read, &envelope, upstream, &local, context) {
                Ok(ready) => ready,
                Err(stop) => return Err(self.stop_read(read, &target, stop).await),
            };
        let answer = self
            .fetch(read, (upstream, &connection), &local, context)
            .await;
        // INVARIANT: a read's answer goes back only once recorded (unless config lets reads
        // run without evidence).
        if let Some(outcome) = R::outcome(&answer) {
            self.gateway
                .evidence
                .record_read(read.event(&self.gateway, &target, Some(&decision), outcome))
                .await
                .map_err(|message| McpError::internal_error(message, None))?;
        }
        // A final result (not a round still waiting for the person) reached the session, or
        // an error, whose message is the upstream's own words.
        if answer
            .as_ref()
            .map_or(true, |response| response.complete().is_some())
        {
            self.taint_if_untrusted(context, &envelope, upstream)
                .map_err(|withheld| McpError::internal_error(withheld, None))?;
        }
        answer
    }

    /// Decide, then check, then find the upstream ready and offering it: the decision and the
    /// connection, or why the read stops.
    fn read_stages<R: Read>(
        &self,
        read: &R,
        envelope: &IdentityEnvelope,
        upstream: &UpstreamHandle,
        local: &str,
        context: &RequestContext<RoleServer>,
    ) -> Result<(Decision, Arc<Connection>), ReadStop> {
        let decision = self
            .gateway
            .decider
            .authorize_read(envelope, upstream, R::listed(local))
            .map_err(ReadStop::Policy)?;
        if let Err(why) = self.check_open_world(context, envelope, &read.hosts_in(local)) {
            return Err(ReadStop::refused(
                McpError::invalid_request(
                    format!("portcullis refused `{}`: {why}", read.exposed()),
                    None,
                ),
                format!("untrusted content: {why}"),
                decision,
            ));
        }
        // A `file:` URI outside the effective roots never reaches the upstream, exactly as a
        // path argument of a tool call would not: the kernel is the second line, not the only.
        if matches!(R::listed(local), Listed::Resource(_))
            && let Err(denied) = self.check_resource_uri(envelope, upstream, local)
        {
            return Err(ReadStop::refused(
                McpError::invalid_params(
                    format!(
                        "portcullis refused to read `{}`: {denied}; nothing was read",
                        read.exposed()
                    ),
                    None,
                ),
                format!("outside the roots: {denied}"),
                decision,
            ));
        }
        let connection = match self.ready(upstream, context, envelope) {
            Ok(connection) => connection,
            Err(message) => {
                return Err(ReadStop::refused(
                    McpError::internal_error(message.clone(), None),
                    message,
                    decision,
                ));
            }
        };
        if !R::offered(&connection, local) {
            return Err(ReadStop::Unknown(R::NO_SUCH));
        }
        if matches!(R::listed(local), Listed::Resource(_))
            && let Some(template) = connection.catalog.load().quarantined_template(local)
        {
            let why = format!(
                "it matches the resource template `{template}` of upstream `{}`, quarantined because its definition differs from its pin; a person can review it with `portcullis pins diff --config <config> {}` and accept it with `portcullis pins accept --config <config> {}`",
                upstream.name(),
                upstream.name(),
                upstream.name()
            );
            return Err(ReadStop::refused(
                McpError::invalid_params(
                    format!(
                        "portcullis refused to read `{}`: {why}; nothing was read",
                        read.exposed()
                    ),
                    None,
                ),
                "quarantined: its resource template differs from its pin".to_owned(),
                decision,
            ));
        }
        Ok((decision, connection))
    }

    /// Reads from the upstream (after every check passed), through its input rounds.
    pub(crate) async fn fetch<R: Read>(
        &self,
        read: &R,
        (upstream, connection): (&UpstreamHandle, &Connection),
        local: &str,
        context: &RequestContext<RoleServer>,
    ) -> Result<R::Response, McpError> {
        let rounds = self
            .input_rounds(
                (upstream, connection),
                context,
                read.asked(),
                |state, responses| read.outbound(local, state, responses),
            )
            .await?;
        match rounds {
            Rounds::Ask(required) => Ok(R::Response::ask(required)),
            Rounds::Done(result) => R::answer(&self.gateway, upstream, *result),
        }
    }

    /// The one place a stopped read becomes its record and its error. Nothing was read, so a
    /// failure to record does not change the answer.
    async fn stop_read<R: Read>(&self, read: &R, target: &Target, stop: ReadStop) -> McpError {
        let (error, recorded, decision) = match stop {
            ReadStop::Unknown(reason) => (read.unknown(), reason.to_owned(), None),
            ReadStop::Policy(refusal) => {
                let decision = refusal.decision().cloned();
                (
                    refusal.read_error(read.unknown()),
                    "refused by policy".to_owned(),
                    decision,
                )
            }
            ReadStop::Refused(refused) => {
                let RefusedRead {
                    error,
                    recorded,
                    decision,
                } = *refused;
                (error, recorded, decision)
            }
        };
        let not_run = Outcome::NotRun { reason: recorded };
        let _ = self
            .gateway
            .evidence
            .record_read(read.event(&self.gateway, target, decision.as_ref(), not_run))
            .await;
        error
    }
}

/// `prompts/get`.
impl Read for GetPromptRequestParams {
    type Response = GetPromptResponse;
    const NO_SUCH: &'static str = "no such prompt";

    fn offered(connection: &Connection, local: &str) -> bool {
        connection.catalog.load().prompt_names.contains(local)
    }

    fn exposed(&self) -> &str {
        &self.name
    }

    fn resolve(
        &self,
        server: &PortcullisServer,
        envelope: &IdentityEnvelope,
    ) -> Option<(Arc<UpstreamHandle>, String)> {
        server
            .resolve_tool(envelope, &self.name)
            .map(|(upstream, local)| (upstream, local.to_owned()))
    }

    fn listed(local: &str) -> Listed<'_> {
        Listed::Prompt(local)
    }

    fn unknown(&self) -> McpError {
        McpError::invalid_params(format!("unknown prompt `{}`", self.name), None)
    }

    fn hosts_in(&self, _local: &str) -> serde_json::Value {
        serde_json::Value::Object(
            self.arguments
                .clone()
                .map(|arguments| arguments.into_iter().collect())
                .unwrap_or_default(),
        )
    }

    fn event(
        &self,
        gateway: &Gateway,
        target: &Target,
        decision: Option<&Decision>,
        outcome: Outcome,
    ) -> Event {
        Event::PromptGet(PromptGet {
            request: target.request.clone(),
            upstream: target.upstream.clone(),
            prompt: target.name.clone(),
            arguments: gateway.evidence.arguments(self.arguments.as_ref(), &[]),
            decision: gateway.evidence.summary(decision),
            outcome,
            duration_ms: elapsed_ms(target.started),
        })
    }

    fn asked(&self) -> Asked<'_> {
        Asked {
            name: &self.name,
            arguments: self.arguments.as_ref(),
            state: self.request_state.as_deref(),
            responses: self.input_responses.clone(),
        }
    }

    fn outbound(
        &self,
        local: &str,
        state: Option<String>,
        responses: Option<InputResponses>,
    ) -> Outbound {
        let mut params = GetPromptRequestParams::new(local.to_owned());
        params.arguments = self.arguments.clone();
        params.request_state = state;
        params.input_responses = responses;
        Outbound::Prompt(params)
    }

    fn answer(
        _gateway: &Gateway,
        upstream: &UpstreamHandle,
        result: ServerResult,
    ) -> Result<GetPromptResponse, McpError> {
        match result {
            ServerResult::GetPromptResult(result) => {
                // What a prompt says reaches the model: nothing hidden in it either.
                let mut value = serde_json::to_value(&result).map_err(|_| unexpected(upstream))?;
                let removed = crate::hygiene::strip_texts(&mut value);
                if removed > 0 {
                    tracing::warn!(upstream = %upstream.name(), removed, "hidden or control characters removed from a prompt's text");
                }
                let cleaned = serde_json::from_value(value).map_err(|_| unexpected(upstream))?;
                Ok(GetPromptResponse::Complete(cleaned))
            }
            _ => Err(unexpected(upstream)),
        }
    }
}

/// `resources/read`.
impl Read for ReadResourceRequestParams {
    type Response = ReadResourceResponse;
    const NO_SUCH: &'static str = "no such resource";

    fn offered(_connection: &Connection, _local: &str) -> bool {
        true
    }

    fn exposed(&self) -> &str {
        &self.uri
    }

    fn resolve(
        &self,
        server: &PortcullisServer,
        envelope: &IdentityEnvelope,
    ) -> Option<(Arc<UpstreamHandle>, String)> {
        server.resolve_resource(envelope, &self.uri)
    }

    fn listed(local: &str) -> Listed<'_> {
        Listed::Resource(local)
    }

    fn unknown(&self) -> McpError {
        McpError::resource_not_found(format!("unknown resource `{}`", self.uri), None)
    }

    fn hosts_in(&self, local: &str) -> serde_json::Value {
        serde_json::Value::String(local.to_owned())
    }

    fn event(
        &self,
        gateway: &Gateway,
        target: &Target,
        decision: Option<&Decision>,
        outcome: Outcome,
    ) -> Event {
        Event::ResourceRead(ResourceRead {
            request: target.request.clone(),
            upstream: target.upstream.clone(),
            uri: target.name.clone(),
            decision: gateway.evidence.summary(decision),
            outcome,
            duration_ms: elapsed_ms(target.started),
        })
    }

    fn asked(&self) -> Asked<'_> {
        Asked {
            name: &self.uri,
            arguments: None,
            state: self.request_state.as_deref(),
            responses: self.input_responses.clone(),
        }
    }

    fn outbound(
        &self,
        local: &str,
        state: Option<String>,
        responses: Option<InputResponses>,
    ) -> Outbound {
        let mut params = ReadResourceRequestParams::new(local.to_owned());
        params.request_state = state;
        params.input_responses = responses;
        Outbound::Read(params)
    }

    fn answer(
        gateway: &Gateway,
        upstream: &UpstreamHandle,
        result: ServerResult,
    ) -> Result<ReadResourceResponse, McpError> {
        exposed_contents(gateway, upstream, result)
    }
}

/// The two answers a read can give: its final result, or a round for a stateless client to
/// answer and retry.
pub(crate) trait ReadResponse {
    type Complete: serde::Serialize;
    /// A round for a stateless client.
    fn ask(required: InputRequiredResult) -> Self;
    /// The final result; `None` for a round still waiting for the person.
    fn complete(&self) -> Option<&Self::Complete>;
}

macro_rules! read_response {
    ($response:ty, $complete:ty) => {
        impl ReadResponse for $response {
            type Complete = $complete;

            fn ask(required: InputRequiredResult) -> Self {
                Self::InputRequired(required)
            }

            fn complete(&self) -> Option<&$complete> {
                match self {
                    Self::Complete(result) => Some(result),
                    _ => None,
                }
            }
        }
    };
}

read_response!(GetPromptResponse, rmcp::model::GetPromptResult);
read_response!(ReadResourceResponse, rmcp::model::ReadResourceResult);

/// A read result whose contents name the resource as the client knows it.
pub(crate) fn exposed_contents(
    gateway: &Gateway,
    upstream: &UpstreamHandle,
    result: ServerResult,
) -> Result<ReadResourceResponse, McpError> {
    let ServerResult::ReadResourceResult(mut result) = result else {
        return Err(unexpected(upstream));
    };
    for contents in &mut result.contents {
        match contents {
            ResourceContents::TextResourceContents { uri, .. }
            | ResourceContents::BlobResourceContents { uri, .. } => {
                *uri = gateway
                    .upstreams
                    .namespacing()
                    .expose_uri(upstream.name(), uri);
            }
            _ => {}
        }
    }
    Ok(ReadResourceResponse::Complete(result))
}
