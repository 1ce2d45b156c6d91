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
use crate::evidence::CallRecord;
use crate::server::{PortcullisServer, declares_url_elicitation};
use crate::state::SealedRound;
use crate::upstream::UpstreamHandle;

/// Where the credential stage ends.
pub(super) enum CredentialStage {
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

/// Asks a session-era client to open the sign-in link; `Err` completes the refusal's sentence.
async fn ask_sign_in(
    context: &rmcp::service::RequestContext<rmcp::service::RoleServer>,
    params: ElicitRequestParams,
    timeout: std::time::Duration,
) -> Result<(), String> {
    match tokio::time::timeout(timeout, context.peer.create_elicitation(params)).await {
        Ok(Ok(result)) if result.action == ElicitationAction::Accept => Ok(()),
        Ok(Ok(_)) => Err(", which you declined".to_owned()),
        Ok(Err(error)) => Err(format!(", but the client did not answer: {error}")),
        Err(_) => Err(format!(
            ", which was not given within {}s",
            timeout.as_secs()
        )),
    }
}

/// A stateless retry after the person was sent to sign in answers it only if it declares the
/// URL elicitation it answers and accepted; `Err` completes the refusal's sentence.
fn resumed_sign_in(call: &CallContext<'_>) -> Result<(), String> {
    if !declares_url_elicitation(call.context) {
        return Err(
            ", and the retry answering the sign-in does not declare URL elicitation".to_owned(),
        );
    }
    let accepted = call
        .request
        .input_responses
        .as_ref()
        .and_then(|responses| responses.get(AUTHORIZE_KEY))
        .and_then(|value| serde_json::from_value::<ElicitResult>(value.clone()).ok())
        .is_some_and(|answer| answer.action == ElicitationAction::Accept);
    if accepted {
        Ok(())
    } else {
        Err(", which you did not give".to_owned())
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
        let credential = match self
            .credential_for(call, resolved, &decided.about.rules)
            .await
        {
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
                    decision: self
                        .gateway
                        .evidence
                        .summary(Some(decided.authorized.decision())),
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
        let name = resolved.upstream.name().as_str();
        match self.readiness(call, resolved, rules).await {
            Readiness::NotNeeded => CredentialStage::Ready(None),
            Readiness::Ready {
                attachment,
                evidence,
            } => CredentialStage::Ready(Some((attachment, evidence))),
            Readiness::Failed(message) => CredentialStage::Refused(format!(
                "`{}` cannot be sent to upstream `{name}`: {message}; the call did not run",
                call.request.name
            )),
            Readiness::NeedsGrant { scopes, why } => {
                tracing::info!(user = %call.envelope.user(), upstream = name, tool = resolved.local, %why, "a grant is needed first");
                let upstream: &UpstreamHandle = &resolved.upstream;
                self.sign_in(call, (upstream, resolved.local), rules, scopes, &why)
                    .await
            }
        }
    }

    /// What the user holds for this upstream: an HTTP client's own token exchanged (RFC 8693)
    /// for an upstream that takes it so, else the grant in the store.
    async fn readiness(
        &self,
        call: &CallContext<'_>,
        resolved: &Resolved<'_>,
        rules: &ToolRules,
    ) -> Readiness {
        let credentials = &self.gateway.credentials;
        let name = resolved.upstream.name().as_str();
        let inbound = call
            .context
            .extensions
            .get::<http::request::Parts>()
            .and_then(|parts| parts.extensions.get::<InboundToken>())
            .cloned();
        let exchanged = match &inbound {
            Some(InboundToken(token)) => {
                credentials
                    .exchanged(call.envelope, name, resolved.local, rules, token)
                    .await
            }
            None => None,
        };
        match exchanged {
            Some(readiness) => readiness,
            None => {
                credentials
                    .readiness(call.envelope, name, resolved.local, rules)
                    .await
            }
        }
    }

    /// The person is sent to sign in: a stateless client gets the link as an input-required
    /// round (and its retry waits for the flow), a session-era one is asked with a URL
    /// elicitation and the flow is awaited.
    pub(super) async fn sign_in(
        &self,
        call: &CallContext<'_>,
        (upstream, local): (&UpstreamHandle, &str),
        rules: &ToolRules,
        needed: Vec<String>,
        why: &str,
    ) -> CredentialStage {
        let (envelope, request, context) = (call.envelope, call.request, call.context);
        let name = upstream.name().as_str();
        let refused = |rest: String| {
            CredentialStage::Refused(format!(
                "`{}` needs your authorisation at upstream `{name}`{rest}; the call did not run",
                request.name
            ))
        };
        let timeout = self.gateway.approvals.timeout;
        if let Some(flow) = &call.authorizing {
            return match resumed_sign_in(call) {
                Ok(()) => {
                    let outcome = self.gateway.credentials.wait_for(flow, timeout).await;
                    self.after_flow(envelope, upstream, local, rules, request, outcome)
                        .await
                }
                Err(rest) => refused(rest),
            };
        }
        if !declares_url_elicitation(context) {
            return refused(format!(
                " ({why}), and this client cannot open a sign-in link (no URL elicitation); run `portcullis login {name}` in a terminal, or use a client that can"
            ));
        }
        let credentials = &self.gateway.credentials;
        let mut started = match credentials.begin(envelope, name, needed.clone()).await {
            Ok(started) => started,
            Err(message) => {
                return refused(format!(", but no sign-in could be started: {message}"));
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
            let state = self.gateway.approvals.states.seal_for(
                &SealedRound::Authorize {
                    flow: started.id.clone(),
                },
                &call.bound_to,
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
        if let Err(rest) = ask_sign_in(context, params, timeout).await {
            return refused(rest);
        }
        let outcome = started.wait(timeout).await;
        self.after_flow(envelope, upstream, local, rules, request, outcome)
            .await
    }

    /// After a sign-in flow: the grant it stored is what the call carries.
    async fn after_flow(
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
                .await
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
