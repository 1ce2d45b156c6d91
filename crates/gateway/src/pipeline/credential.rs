//! The credential stage: the call goes on with the credential it will carry, or the person is
//! first sent to authorise the upstream (a sign-in link through URL elicitation, or
//! `portcullis login` when the client cannot open one). It comes before approval: a person
//! asked to approve a call that then cannot be sent would have approved nothing.

use portcullis_auth::InboundToken;
use portcullis_core::{IdentityEnvelope, ToolRules};
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, ElicitRequest, ElicitRequestParams, ElicitResult,
    ElicitationAction, InputRequest, InputRequests, InputRequiredResult,
};

use super::decide::Decided;
use super::{CallContext, Resolved, Stop};
use crate::attach::Attachment;
use crate::credentials::{FlowOutcome, Readiness};
use crate::evidence::{CallRecord, summary};
use crate::server::{PortcullisServer, declares_url_elicitation};
use crate::state::SealedRound;
use crate::upstream::UpstreamHandle;

/// Where the credential stage ends.
enum CredentialStage {
    /// Go on, with this credential (and its note for the evidence), or none.
    Ready(Option<(Attachment, String)>),
    /// A stateless client is sent to sign in: the input-required result to return.
    Ask(InputRequiredResult),
    /// Nothing runs, for this reason.
    Refused(String),
}

/// The input key under which a stateless client is sent to sign in.
const AUTHORIZE_KEY: &str = "portcullis.authorize";

fn url_elicitation(message: String, url: String, elicitation_id: String) -> ElicitRequestParams {
    ElicitRequestParams::UrlElicitationParams {
        meta: None,
        message,
        url,
        elicitation_id,
    }
}

impl PortcullisServer {
    /// The credential stage: the credential the call will carry (and its note for the
    /// evidence), none, or a stop (the person sent to sign in, or why nothing can be sent).
    pub(super) async fn credential_stage(
        &self,
        call: &CallContext<'_>,
        resolved: &Resolved<'_>,
        decided: &Decided,
        record: &mut CallRecord,
    ) -> Result<Option<(Attachment, String)>, Stop> {
        let credential = match self.credential_for(call, resolved, &decided.rules).await {
            CredentialStage::Ready(credential) => credential,
            CredentialStage::Ask(required) => {
                return Err(Stop::Answer(Box::new(CallToolResponse::InputRequired(
                    required,
                ))));
            }
            CredentialStage::Refused(message) => {
                return Err(Stop::Refused {
                    recorded: message.clone(),
                    message,
                    decision: summary(&self.gateway, Some(decided.authorized.decision())),
                });
            }
        };
        if self
            .gateway
            .credentials
            .is_service(resolved.upstream.name().as_str())
        {
            record.acting_with_service();
        }
        Ok(credential)
    }

    /// Whether the call can carry a credential now, or the person is first sent to authorise
    /// the upstream (a sign-in link through URL elicitation, or `portcullis login` when the
    /// client cannot open one).
    async fn credential_for(
        &self,
        call: &CallContext<'_>,
        resolved: &Resolved<'_>,
        rules: &ToolRules,
    ) -> CredentialStage {
        let envelope = call.envelope;
        let upstream: &UpstreamHandle = &resolved.upstream;
        let local = resolved.local;
        let request = call.request;
        let context = call.context;
        let bound_to = call.bound_to.as_str();
        let authorizing = call.authorizing.clone();
        let credentials = &self.gateway.credentials;
        let name = upstream.name().as_str();
        // An HTTP client's own token, for an upstream that takes it exchanged (RFC 8693).
        let inbound = context
            .extensions
            .get::<http::request::Parts>()
            .and_then(|parts| parts.extensions.get::<InboundToken>())
            .cloned();
        let exchanged = match &inbound {
            Some(InboundToken(token)) => {
                credentials
                    .exchanged(envelope, name, local, rules, token)
                    .await
            }
            None => None,
        };
        let readiness =
            exchanged.unwrap_or_else(|| credentials.readiness(envelope, name, local, rules));
        let (needed, why) = match readiness {
            Readiness::NotNeeded => return CredentialStage::Ready(None),
            Readiness::Ready {
                attachment,
                evidence,
            } => return CredentialStage::Ready(Some((attachment, evidence))),
            Readiness::Failed(message) => {
                return CredentialStage::Refused(format!(
                    "`{}` cannot be sent to upstream `{name}`: {message}; the call did not run",
                    request.name
                ));
            }
            Readiness::NeedsGrant { scopes, why } => {
                tracing::info!(user = %envelope.user(), upstream = name, tool = local, %why, "a grant is needed first");
                (scopes, why)
            }
        };
        let timeout = self.gateway.approval_timeout;
        // A stateless retry after the person was sent to sign in: wait for that flow.
        if let Some(flow) = authorizing {
            // The retry must itself declare the URL elicitation it answers.
            if !declares_url_elicitation(context) {
                return CredentialStage::Refused(format!(
                    "`{}` needs your authorisation at upstream `{name}`, and the retry answering the sign-in does not declare URL elicitation; the call did not run",
                    request.name
                ));
            }
            let answer = request
                .input_responses
                .as_ref()
                .and_then(|responses| responses.get(AUTHORIZE_KEY))
                .and_then(|value| serde_json::from_value::<ElicitResult>(value.clone()).ok());
            let accepted = answer.is_some_and(|a| a.action == ElicitationAction::Accept);
            if !accepted {
                return CredentialStage::Refused(format!(
                    "`{}` needs your authorisation at upstream `{name}`, which you did not give; the call did not run",
                    request.name
                ));
            }
            let outcome = self.gateway.credentials.wait_for(&flow, timeout).await;
            return self.after_flow(envelope, upstream, local, rules, request, outcome);
        }
        if !declares_url_elicitation(context) {
            return CredentialStage::Refused(format!(
                "`{}` needs your authorisation at upstream `{name}` ({why}), and this client cannot open a sign-in link (no URL elicitation); run `portcullis login {name}` in a terminal, or use a client that can; the call did not run",
                request.name
            ));
        }
        let mut started = match credentials.begin(envelope, name, needed.clone()).await {
            Ok(started) => started,
            Err(message) => {
                return CredentialStage::Refused(format!(
                    "`{}` needs your authorisation at upstream `{name}`, but no sign-in could be started: {message}; the call did not run",
                    request.name
                ));
            }
        };
        let message = format!(
            "Portcullis: sign in to authorise upstream `{name}` for this client ({}). {why}.",
            if needed.is_empty() {
                "no particular scopes".to_owned()
            } else {
                format!("scopes: {}", needed.join(" "))
            }
        );
        if Self::is_stateless(context) {
            let state = self.gateway.states.seal_for(
                &SealedRound::Authorize {
                    flow: started.id.clone(),
                },
                bound_to,
                timeout,
            );
            let mut questions = InputRequests::new();
            questions.insert(
                AUTHORIZE_KEY.to_owned(),
                InputRequest::Elicitation(ElicitRequest::new(url_elicitation(
                    message,
                    started.url.clone(),
                    String::new(),
                ))),
            );
            return CredentialStage::Ask(InputRequiredResult::new(Some(questions), Some(state)));
        }
        let params = url_elicitation(message, started.url.clone(), started.id.clone());
        let answer = tokio::time::timeout(timeout, context.peer.create_elicitation(params)).await;
        match answer {
            Ok(Ok(result)) if result.action == ElicitationAction::Accept => {}
            Ok(Ok(_)) => {
                return CredentialStage::Refused(format!(
                    "`{}` needs your authorisation at upstream `{name}`, which you declined; the call did not run",
                    request.name
                ));
            }
            Ok(Err(error)) => {
                return CredentialStage::Refused(format!(
                    "`{}` needs your authorisation at upstream `{name}`, but the client did not answer: {error}; the call did not run",
                    request.name
                ));
            }
            Err(_) => {
                return CredentialStage::Refused(format!(
                    "`{}` needs your authorisation at upstream `{name}`, which was not given within {}s; the call did not run",
                    request.name,
                    timeout.as_secs()
                ));
            }
        }
        let outcome = started.wait(timeout).await;
        self.after_flow(envelope, upstream, local, rules, request, outcome)
    }

    /// After a sign-in flow: the grant it stored is what the call carries.
    fn after_flow(
        &self,
        envelope: &IdentityEnvelope,
        upstream: &UpstreamHandle,
        local: &str,
        rules: &ToolRules,
        request: &CallToolRequestParams,
        outcome: Option<FlowOutcome>,
    ) -> CredentialStage {
        let name = upstream.name().as_str();
        match outcome {
            None => CredentialStage::Refused(format!(
                "`{}` needs your authorisation at upstream `{name}`, and the sign-in did not finish in time; the call did not run",
                request.name
            )),
            Some(Err(why)) => CredentialStage::Refused(format!(
                "`{}` was not authorised at upstream `{name}`: {why}; the call did not run",
                request.name
            )),
            Some(Ok(_)) => match self
                .gateway
                .credentials
                .readiness(envelope, name, local, rules)
            {
                Readiness::Ready {
                    attachment,
                    evidence,
                } => CredentialStage::Ready(Some((attachment, evidence))),
                Readiness::NotNeeded => CredentialStage::Ready(None),
                Readiness::Failed(why) | Readiness::NeedsGrant { why, .. } => {
                    CredentialStage::Refused(format!(
                        "`{}` is still not authorised at upstream `{name}` after the sign-in ({why}); the call did not run",
                        request.name
                    ))
                }
            },
        }
    }
}
