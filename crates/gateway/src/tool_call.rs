//! `tools/call`, end to end, in both eras: resolve, decide, approve, record, run.
//!
//! INVARIANT: the upstream hears of a call only with a `CallPermit` (policy allowed it, or a
//! person approved exactly this action) and after its intent record is durable. A stateless
//! client's retry either feeds answers to a call already running (its `requestState` names a
//! parked call) or claims an approval, once; nothing else in a retry runs anything.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use portcullis_core::{IdentityEnvelope, ToolRules};
use rmcp::ErrorData as McpError;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ElicitRequest, ElicitRequestParams,
    ElicitResult, ElicitationAction, InputRequest, InputRequests, InputRequiredResult,
};
use rmcp::service::{RequestContext, RoleServer};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::approval::{self, APPROVAL_KEY, Answer, ChangeRequest, Claim};
use crate::ask::{Asker, Question};
use crate::attach::Attachment;
use crate::authorize::{Authorized, CallPermit, PendingApproval, Refusal};
use crate::call::{UpstreamCall, tool_error};
use crate::credentials::{FlowOutcome, Readiness};
use crate::evidence::{ApprovalRecord, CallRecord, summary};
use crate::paths::Grantor;
use crate::pending::PendingCall;
use crate::server::{
    NEXT_SESSION, PortcullisServer, asker_for, binding, declares_elicitation,
    declares_form_elicitation, declares_url_elicitation, listener_for, progress_of,
};
use crate::state::{SealedRound, StateError};
use crate::upstream::{CallRoute, UpstreamHandle};
use portcullis_auth::InboundToken;

/// What the approval stage ends in.
enum Approval {
    /// Approved: the call may run, once.
    Granted {
        permit: CallPermit,
        fingerprint: String,
        /// The stateless approval whose outcome is kept for a retry.
        stateless: Option<u64>,
    },
    /// Not approved, for the reason `answer` gives; nothing runs.
    Refused {
        answer: Answer,
        decision: portcullis_core::evidence::DecisionSummary,
    },
    /// A stateless client is asked: the input-required result to return.
    Ask(InputRequiredResult),
    /// A retry of a call that already ran under this approval: its recorded result.
    Replayed(Box<CallToolResult>),
}

/// Why the check stage refused a call.
enum Refused {
    /// The arguments do not match the tool's input schema.
    Arguments(String),
    /// A path argument is outside the effective roots.
    Roots(String),
}

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

fn invalid_state() -> McpError {
    McpError::invalid_params(
        "requestState is invalid, expired, already used, or was issued for another request",
        None,
    )
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
                "client {}\n{}\n{}",
                user.issuer,
                user.subject,
                envelope.client().unwrap_or("")
            )
        } else {
            format!("session {}", self.session)
        }
    }

    /// `tools/call` for `envelope`, inside the call's span.
    pub(crate) async fn call_tool_as(
        &self,
        envelope: Arc<IdentityEnvelope>,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        self.gateway.first_settle().await;
        let stateless = Self::is_stateless(&context);
        if !stateless && (request.request_state.is_some() || request.input_responses.is_some()) {
            return Err(McpError::invalid_params(
                "requestState and inputResponses are for stateless (2026-07-28) requests",
                None,
            ));
        }
        let bound_to = binding(envelope.user(), &request.name, request.arguments.as_ref());
        let mut claimed_approval = None;
        let mut authorizing = None;
        if let Some(sealed) = request.request_state.as_deref() {
            match self.gateway.states.open(sealed, &bound_to) {
                Ok(SealedRound::Pending { id }) => {
                    return self
                        .resume_stateless(id, &request, &bound_to, &context)
                        .await;
                }
                Ok(SealedRound::Approval { id }) => claimed_approval = Some(id),
                Ok(SealedRound::Authorize { flow }) => authorizing = Some(flow),
                Ok(SealedRound::Upstream { .. }) | Err(StateError::Invalid) => {
                    return Err(invalid_state());
                }
            }
        }

        let unknown = || McpError::invalid_params(format!("unknown tool `{}`", request.name), None);
        let arguments = request.arguments.as_ref();
        let gateway = &self.gateway;
        let hidden = summary(gateway, None);
        // A name that resolves to no upstream is refused like any other unknown tool, and
        // recorded like every other refused request: the evidence shows what was attempted.
        let Some((upstream, local)) = self.resolve_tool(&request.name) else {
            let record = CallRecord::unresolved(&envelope, self.session, &request.name);
            tracing::Span::current().record("request_id", record.request().request_id.as_str());
            gateway
                .record_refusal(record, arguments, hidden, "no such tool")
                .await;
            return Err(unknown());
        };
        let mut record = CallRecord::new(&envelope, self.session, upstream, local);
        tracing::Span::current().record("request_id", record.request().request_id.as_str());
        // A hidden tool gets the same answer as one that does not exist, whether or not its
        // upstream is up: nothing about what other identities may see leaks through a name.
        let Ok(visible) = gateway.visible_tool(&envelope, upstream, local) else {
            gateway
                .record_refusal(record, arguments, hidden, "hidden from this identity")
                .await;
            return Err(unknown());
        };
        let connection = match self.ready(upstream) {
            Ok(connection) => connection,
            Err(message) => {
                gateway
                    .record_refusal(record, arguments, hidden, &message)
                    .await;
                return Ok(tool_error(message));
            }
        };
        let checked = {
            let catalog = connection.catalog.load();
            let Some(definition) = catalog.tools.iter().find(|t| t.name == request.name) else {
                gateway
                    .record_refusal(record, arguments, hidden, "no such tool")
                    .await;
                return Err(unknown());
            };
            record.set_definition(definition);
            // Arguments the tool does not accept are refused before policy and before any
            // person is asked: nobody approves a call its upstream would refuse.
            if let Err(mismatch) = gateway.argument_check.check(definition, arguments) {
                Some(Refused::Arguments(mismatch))
            } else {
                // Paths outside the effective roots never reach the upstream, whatever policy
                // says.
                upstream.paths.as_ref().and_then(|guard| {
                    let pointers: Vec<String> = upstream
                        .spec
                        .tool_rules(local)
                        .paths
                        .iter()
                        .map(ToString::to_string)
                        .collect();
                    let client_roots = if stateless {
                        None
                    } else {
                        self.offered_roots()
                    };
                    guard
                        .check(
                            definition,
                            &pointers,
                            arguments,
                            client_roots.as_ref(),
                            Grantor {
                                subject: &envelope.user().subject,
                                groups: envelope.groups(),
                            },
                        )
                        .err()
                        .map(Refused::Roots)
                })
            }
        };
        if let Some(refused) = checked {
            let (denied, recorded) = match &refused {
                Refused::Arguments(why) => (why, format!("arguments: {why}")),
                Refused::Roots(why) => (why, format!("outside the roots: {why}")),
            };
            tracing::warn!(
                target: "portcullis::decision",
                user = %envelope.user(),
                upstream = %upstream.name(),
                tool = local,
                %denied,
                "denied: {recorded}"
            );
            let message = format!(
                "portcullis refused `{}`: {denied}; the call did not run",
                request.name
            );
            gateway
                .record_refusal(record, arguments, hidden, &recorded)
                .await;
            return Ok(tool_error(message));
        }

        let taint_key = self.taint_key(&context, &envelope);
        let tainted_by = gateway.taints.of(&taint_key);
        let rules = upstream.spec.tool_rules(local);
        let user_key = envelope.user().to_string();
        let (mut facts, recipients, target_tenant) =
            approval::call_facts(&rules, &envelope, arguments, |recipient| {
                gateway.known_recipients.is_known(&user_key, recipient)
            });
        facts.tainted = !tainted_by.is_empty();
        let effect = upstream.effect_of(local);
        let hints = connection
            .catalog
            .load()
            .hints
            .get(local)
            .copied()
            .unwrap_or_default();
        let reach = approval::reach(upstream.spec.surface, hints, arguments, |host| {
            gateway.taints.has_read(&taint_key, host)
        });
        let authorized =
            match gateway.authorize_call(&envelope, upstream, visible, arguments, facts, &reach) {
                Ok(authorized) => authorized,
                Err(refusal) => {
                    let (decision, answer) = match refusal {
                        Refusal::Hidden => (hidden, Err(unknown())),
                        Refusal::Denied { reason, decision } => (
                            summary(gateway, Some(&decision)),
                            Ok(tool_error(format!(
                                "portcullis refused `{}` for {}: {reason}; the call did not run",
                                request.name,
                                envelope.user().subject
                            ))),
                        ),
                        // Calls are never refused for approval: they ask for it.
                        Refusal::ApprovalUnavailable { decision } => (
                            summary(gateway, Some(&decision)),
                            Ok(tool_error(format!(
                                "`{}` cannot be approved here; the call did not run",
                                request.name
                            ))),
                        ),
                    };
                    let reason = match &answer {
                        Err(_) => "hidden from this identity",
                        Ok(_) => "refused by policy",
                    };
                    gateway
                        .record_refusal(record, arguments, decision, reason)
                        .await;
                    return answer;
                }
            };

        // Credentials before approval: a person asked to approve a call that then cannot be
        // sent would have approved nothing.
        let credential = match self
            .credential_stage(
                &envelope,
                upstream,
                local,
                &rules,
                &request,
                &context,
                &bound_to,
                authorizing,
            )
            .await
        {
            CredentialStage::Ready(credential) => credential,
            CredentialStage::Ask(required) => {
                return Ok(CallToolResponse::InputRequired(required));
            }
            CredentialStage::Refused(message) => {
                let decision = summary(gateway, Some(authorized.decision()));
                gateway
                    .record_refusal(record, arguments, decision, &message)
                    .await;
                return Ok(tool_error(message));
            }
        };
        let (attachment, credential_note) = credential.unzip();
        if gateway.credentials.is_service(upstream.name().as_str()) {
            record.acting_with_service();
        }

        let (permit, approval_note, stateless_approval) = match authorized {
            Authorized::Permit(permit) => (permit, None, None),
            Authorized::NeedsApproval(pending) => {
                let change = ChangeRequest {
                    envelope: &envelope,
                    upstream: upstream.name().as_str(),
                    surface: upstream.spec.surface.as_str(),
                    exposed: &request.name,
                    effect,
                    rules: &rules,
                    arguments,
                    recipients: &recipients,
                    target_tenant: target_tenant.as_deref(),
                    policies: &pending
                        .decision()
                        .policy_ids()
                        .into_iter()
                        .map(str::to_owned)
                        .collect::<Vec<_>>(),
                    tainted_by: &tainted_by,
                    reach: &reach,
                };
                let outcome = self
                    .approve(
                        pending,
                        &change,
                        &record,
                        &request,
                        &context,
                        &bound_to,
                        claimed_approval,
                    )
                    .await;
                match outcome {
                    Approval::Granted {
                        permit,
                        fingerprint,
                        stateless,
                    } => {
                        let approved: Vec<String> =
                            recipients.iter().map(|(r, _)| r.clone()).collect();
                        gateway.known_recipients.remember(&user_key, &approved);
                        (permit, Some(format!("approved {fingerprint}")), stateless)
                    }
                    Approval::Refused { answer, decision } => {
                        gateway
                            .record_refusal(
                                record,
                                arguments,
                                decision,
                                &answer.refusal(&request.name),
                            )
                            .await;
                        return Ok(tool_error(answer.refusal(&request.name)));
                    }
                    Approval::Ask(required) => {
                        return Ok(CallToolResponse::InputRequired(required));
                    }
                    Approval::Replayed(result) => {
                        return Ok(CallToolResponse::Complete(*result));
                    }
                }
            }
        };

        // The hosts of a call let run (allowed, or approved with its URLs shown) are no longer
        // new to this session.
        let value = serde_json::Value::Object(arguments.cloned().unwrap_or_default());
        gateway.taints.remember_hosts(
            &taint_key,
            approval::urls_in(&value).into_iter().map(|(_, host)| host),
        );

        // INVARIANT: the intent is durable before the upstream hears of the call.
        if let Err(message) = gateway
            .record_intent(
                &mut record,
                arguments,
                summary(gateway, Some(permit.decision())),
                effect,
                approval_note,
                credential_note,
            )
            .await
        {
            if let Some(id) = stateless_approval {
                gateway.approvals.finish(id, None);
            }
            return Ok(tool_error(message));
        }
        let call = UpstreamCall {
            record,
            permit,
            upstream: upstream.clone(),
            connection,
            local: local.to_owned(),
            arguments: request.arguments.clone(),
            namespacing: self.gateway.namespacing,
            // Answers a stateless client sent without a `requestState` of Portcullis's go to
            // the upstream on the first round, which decides what they mean (they approve
            // nothing here).
            first_responses: request
                .request_state
                .is_none()
                .then(|| request.input_responses.clone())
                .flatten(),
            taint_key,
            attachment,
        };
        if stateless {
            let answer = self.start_stateless(call, &bound_to, &context).await;
            if let Some(id) = stateless_approval {
                let result = match &answer {
                    Ok(CallToolResponse::Complete(result)) => Some(result.clone()),
                    _ => None,
                };
                gateway.approvals.finish(id, result);
            }
            return answer;
        }
        let route = CallRoute {
            session: self.session,
            client_roots: self.offered_roots(),
            request: Some(call.record.request().clone()),
            asker: asker_for(&context),
            listener: listener_for(&context),
            log_level: self.log_level_for(&context),
        };
        call.run(&self.gateway, &route, progress_of(&context), &context.ct)
            .await
    }

    /// The credential stage: the call goes on with the credential it will carry, or the
    /// person is first sent to authorise the upstream (a sign-in link through URL
    /// elicitation, or `portcullis login` when the client cannot open one).
    #[expect(clippy::too_many_arguments, reason = "one call's whole context")]
    async fn credential_stage(
        &self,
        envelope: &IdentityEnvelope,
        upstream: &UpstreamHandle,
        local: &str,
        rules: &ToolRules,
        request: &CallToolRequestParams,
        context: &RequestContext<RoleServer>,
        bound_to: &str,
        authorizing: Option<String>,
    ) -> CredentialStage {
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

    /// The approval stage: asks the person (or, for a stateless retry, takes their answer)
    /// and records the request and the answer.
    #[expect(clippy::too_many_arguments, reason = "one call's whole context")]
    async fn approve(
        &self,
        pending: PendingApproval,
        change: &ChangeRequest<'_>,
        record: &CallRecord,
        request: &CallToolRequestParams,
        context: &RequestContext<RoleServer>,
        bound_to: &str,
        claimed: Option<u64>,
    ) -> Approval {
        let gateway = &self.gateway;
        let started = Instant::now();
        let fingerprint = gateway.fingerprint(record, request.arguments.as_ref());
        let mut reasons: Vec<String> = change.policies.to_vec();
        if pending.because_tainted {
            reasons.push("untrusted content".to_owned());
        }
        let decision = summary(gateway, Some(pending.decision()));
        let note = |answer: &'static str| ApprovalRecord {
            fingerprint: &fingerprint,
            reasons: &reasons,
            tainted_by: change.tainted_by,
            answer,
            started,
        };
        let refused = |answer: Answer| Approval::Refused {
            answer,
            decision: decision.clone(),
        };

        if let Some(id) = claimed {
            // A stateless retry: the answer travels with it. Capabilities are read per
            // request, so the retry must itself declare the form elicitation it answers; one
            // that does not approves nothing (and leaves the approval open for one that does).
            if !declares_form_elicitation(context) {
                return refused(Answer::Failed(
                    "the retry answering it does not declare form elicitation; retry with the capabilities the first request declared".to_owned(),
                ));
            }
            return match gateway.approvals.claim(id, &fingerprint) {
                Claim::Open => {
                    let answer = request
                        .input_responses
                        .as_ref()
                        .and_then(|responses| responses.get(APPROVAL_KEY))
                        .and_then(|value| serde_json::from_value::<ElicitResult>(value.clone()).ok())
                        .map_or(Answer::Cancelled, |result| Answer::from_result(&result));
                    if let Err(message) = gateway.record_approval(record, note(answer.as_str())).await {
                        gateway.approvals.finish(id, None);
                        return refused(Answer::Failed(message));
                    }
                    match answer.granted() {
                        Some(granted) => Approval::Granted {
                            permit: pending.grant(granted),
                            fingerprint,
                            stateless: Some(id),
                        },
                        None => {
                            gateway.approvals.finish(id, None);
                            refused(answer)
                        }
                    }
                }
                Claim::Ran(Some(result)) => {
                    let _ = gateway.record_approval(record, note("replayed")).await;
                    Approval::Replayed(result)
                }
                Claim::Ran(None) | Claim::Running | Claim::Unknown => {
                    refused(Answer::Failed(
                        "its requestState is expired, already used, or for another action; call again without it to be asked anew".to_owned(),
                    ))
                }
            };
        }

        // Capabilities are read per request: a client that did not declare elicitation on
        // this one cannot be asked.
        if !declares_form_elicitation(context) {
            let _ = gateway
                .record_approval(record, note(Answer::Unavailable.as_str()))
                .await;
            return refused(Answer::Unavailable);
        }
        if let Err(message) = gateway.record_approval(record, note("asked")).await {
            return refused(Answer::Failed(message));
        }
        let timeout = gateway.approval_timeout;
        if Self::is_stateless(context) {
            let id = gateway.approvals.open(&fingerprint, timeout);
            let state = gateway
                .states
                .seal_for(&SealedRound::Approval { id }, bound_to, timeout);
            let mut questions = InputRequests::new();
            questions.insert(
                APPROVAL_KEY.to_owned(),
                InputRequest::Elicitation(ElicitRequest::new(change.params())),
            );
            return Approval::Ask(InputRequiredResult::new(Some(questions), Some(state)));
        }
        let answer =
            match tokio::time::timeout(timeout, context.peer.create_elicitation(change.params()))
                .await
            {
                Err(_) => Answer::TimedOut(timeout),
                Ok(Err(error)) => Answer::Failed(format!("the client did not answer: {error}")),
                Ok(Ok(result)) => Answer::from_result(&result),
            };
        if let Err(message) = gateway.record_approval(record, note(answer.as_str())).await {
            return refused(Answer::Failed(message));
        }
        match answer.granted() {
            Some(granted) => Approval::Granted {
                permit: pending.grant(granted),
                fingerprint,
                stateless: None,
            },
            None => refused(answer),
        }
    }

    /// A stateless retry that answers an upstream's questions: the answers go to the call
    /// parked for them, taken out once.
    async fn resume_stateless(
        &self,
        id: u64,
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
        let mut pending = self.gateway.pending.take(id).ok_or_else(invalid_state)?;
        if let Some(reply) = pending.answer.take() {
            let _ = reply.send(answers);
        }
        self.await_stateless(pending, bound_to, context).await
    }

    /// A stateless client's call: it runs in its own task so that it can wait for answers
    /// across the client's retries.
    async fn start_stateless(
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
            request: Some(call.record.request().clone()),
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
                let id = self.gateway.pending.park(pending);
                let state = self
                    .gateway
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
