//! The approval stage: asks the person (or, for a stateless retry, takes their answer) and
//! records the request and the answer. Only an explicit yes turns the pending approval into a
//! permit.

use std::time::Instant;

use portcullis_core::Effect;
use rmcp::model::{
    CallToolResponse, CallToolResult, ElicitRequest, ElicitResult, InputRequest, InputRequests,
    InputRequiredResult,
};

use super::decide::Decided;
use super::{CallContext, Resolved, Stop};
use crate::approval::{self, APPROVAL_KEY, Answer, ChangeRequest, Claim};
use crate::authorize::{Authorized, CallPermit, PendingApproval};
use crate::evidence::{ApprovalRecord, CallRecord, summary};
use crate::server::{PortcullisServer, declares_form_elicitation};
use crate::state::SealedRound;

/// Proof that a person approved the action. Its field is private to this module: nothing but
/// the approval stage can mint one, and a `PendingApproval` becomes a permit only with one.
#[derive(Debug)]
pub(crate) struct Granted {
    _private: (),
}

/// The proof of approval, when `answer` approves.
fn granted(answer: &Answer) -> Option<Granted> {
    answer.approves().then_some(Granted { _private: () })
}

/// Where the approval stage leaves a call that may run.
pub(super) struct Approved {
    pub permit: CallPermit,
    pub effect: Effect,
    /// What the intent record says of the approval (`approved <fingerprint>`), if one was asked.
    pub note: Option<String>,
    /// The stateless approval whose outcome is kept for a retry.
    pub stateless: Option<u64>,
}

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

impl PortcullisServer {
    /// The approval stage: a call policy allowed outright goes on; one that needs approval is
    /// asked of the person, with the change request for exactly this action.
    pub(super) async fn approve_stage(
        &self,
        call: &CallContext<'_>,
        resolved: &Resolved<'_>,
        decided: Decided,
        record: &CallRecord,
    ) -> Result<Approved, Stop> {
        let gateway = &self.gateway;
        let arguments = call.request.arguments.as_ref();
        let approved = match decided.authorized {
            Authorized::Permit(permit) => Approved {
                permit,
                effect: decided.effect,
                note: None,
                stateless: None,
            },
            Authorized::NeedsApproval(pending) => {
                let policies: Vec<String> = pending
                    .decision()
                    .policy_ids()
                    .into_iter()
                    .map(str::to_owned)
                    .collect();
                let change = ChangeRequest {
                    envelope: call.envelope,
                    upstream: resolved.upstream.name().as_str(),
                    surface: resolved.upstream.spec.surface.as_str(),
                    exposed: &call.request.name,
                    effect: decided.effect,
                    rules: &decided.rules,
                    arguments,
                    recipients: &decided.recipients,
                    target_tenant: decided.target_tenant.as_deref(),
                    policies: &policies,
                    tainted_by: &decided.tainted_by,
                    reach: &decided.reach,
                };
                match self.approve(call, pending, &change, record).await {
                    Approval::Granted {
                        permit,
                        fingerprint,
                        stateless,
                    } => {
                        let approved: Vec<String> =
                            decided.recipients.iter().map(|(r, _)| r.clone()).collect();
                        gateway
                            .known_recipients
                            .remember(&call.envelope.user().to_string(), &approved);
                        Approved {
                            permit,
                            effect: decided.effect,
                            note: Some(format!("approved {fingerprint}")),
                            stateless,
                        }
                    }
                    Approval::Refused { answer, decision } => {
                        let refusal = answer.refusal(&call.request.name);
                        return Err(Stop::Refused {
                            message: refusal.clone(),
                            recorded: refusal,
                            decision,
                        });
                    }
                    Approval::Ask(required) => {
                        return Err(Stop::Answer(Box::new(CallToolResponse::InputRequired(
                            required,
                        ))));
                    }
                    Approval::Replayed(result) => {
                        return Err(Stop::Answer(Box::new(CallToolResponse::Complete(*result))));
                    }
                }
            }
        };
        // The hosts of a call let run (allowed, or approved with its URLs shown) are no longer
        // new to this session.
        let value = serde_json::Value::Object(arguments.cloned().unwrap_or_default());
        gateway.taints.remember_hosts(
            &call.taint_key,
            approval::urls_in(&value).into_iter().map(|(_, host)| host),
        );
        Ok(approved)
    }

    /// The approval stage: asks the person (or, for a stateless retry, takes their answer)
    /// and records the request and the answer.
    async fn approve(
        &self,
        call: &CallContext<'_>,
        pending: PendingApproval,
        change: &ChangeRequest<'_>,
        record: &CallRecord,
    ) -> Approval {
        let request = call.request;
        let context = call.context;
        let bound_to = call.bound_to.as_str();
        let claimed = call.claimed_approval;
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
                    match granted(&answer) {
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
        match granted(&answer) {
            Some(granted) => Approval::Granted {
                permit: pending.grant(granted),
                fingerprint,
                stateless: None,
            },
            None => refused(answer),
        }
    }
}
