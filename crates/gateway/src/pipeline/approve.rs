//! The approval stage: asks the person (or, for a stateless retry, takes their answer) and
//! records the request and the answer. Only an explicit yes turns the pending approval into a
//! permit.
//!
//! The person is reached on the first rung of a ladder this request's client can climb
//! (`ladder.rs`): a form in the client; else the approval page, opened by the client (URL
//! elicitation) or handed back as a link in a tool result for an identical retry. A form not
//! answered within `approval_form_wait_secs` falls to the page with the same approval; a
//! decline is final. Every rung is recorded.

use std::time::Instant;

use portcullis_core::Effect;
use portcullis_policy::ApprovalRule;
use rmcp::model::{CallToolResponse, ElicitResult};

use super::asking::{Approval, Asking};
use super::decide::{Decided, Facts};
use super::ladder::Ladder;
use super::permit::{Authorized, CallAction, CallPermit, PendingApproval};
use super::{CallContext, Resolved, Stop, scoped};
use crate::approval::quirks::Rung;
use crate::approval::{self, APPROVAL_KEY, Answer, CallShape, ChangeRequest, Claim, Offer};
use crate::evidence::CallRecord;
use crate::server::{PortcullisServer, declares_form_elicitation};
use crate::state::SealedRound;

/// Where the approval stage leaves a call that may run.
pub(super) struct Approved {
    pub permit: CallPermit,
    pub effect: Effect,
    /// What the intent record says of the approval (`approved <fingerprint>`), if one was asked.
    pub note: Option<String>,
    /// The stateless approval whose outcome is kept for a retry.
    pub stateless: Option<u64>,
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
        let Decided {
            authorized,
            about: facts,
        } = decided;
        let approved = match authorized {
            Authorized::Permit(permit) => Approved {
                permit,
                effect: facts.effect,
                note: None,
                stateless: None,
            },
            Authorized::NeedsApproval(pending) => {
                self.ask_approval(call, resolved, &facts, pending, record)
                    .await?
            }
        };
        // The hosts of a call let run (allowed, or approved with its URLs shown) are no longer
        // new to this session.
        let value = serde_json::Value::Object(arguments.cloned().unwrap_or_default());
        gateway.approvals.taints.remember_hosts(
            &call.taint_key,
            approval::urls_in(&value).into_iter().map(|(_, host)| host),
        );
        Ok(approved)
    }

    /// A call that needs approval: the change request for exactly this action, asked; the
    /// permit when approved (and its recipients then known), else the stop.
    async fn ask_approval(
        &self,
        call: &CallContext<'_>,
        resolved: &Resolved<'_>,
        facts: &Facts,
        pending: PendingApproval,
        record: &CallRecord,
    ) -> Result<Approved, Stop> {
        let arguments = call.request.arguments.as_ref();
        let policies: Vec<String> = pending
            .decision()
            .policy_ids()
            .into_iter()
            .map(str::to_owned)
            .collect();
        // Scoped answers (`approval/scope.rs`, `pipeline/scoped.rs`): the call as a scope reads
        // it, and what the form may offer besides this call.
        let shape = scoped::call_shape(resolved, facts, pending.rule);
        let offer = Offer::for_call(&shape, self.gateway.approvals.scoped.lasts());
        let definition_change = resolved.changed.as_ref().map(|quarantined| {
            format!(
                "{}. The lines of its definition that differ (- as accepted, + as listed now):\n{}",
                quarantined.change.why(),
                quarantined.change.recorded_diff()
            )
        });
        let change = ChangeRequest {
            envelope: call.envelope,
            upstream: resolved.upstream.name().as_str(),
            surface: resolved.upstream.spec.surface.as_str(),
            exposed: &call.request.name,
            effect: facts.effect,
            rules: &facts.rules,
            arguments,
            recipients: &facts.recipients,
            target_tenant: facts.target_tenant.as_deref(),
            policies: &policies,
            tainted_by: &facts.tainted_by,
            reach: &facts.reach,
            paths: &facts.paths,
            offer: &offer,
            definition_change: definition_change.as_deref(),
        };
        let shown = CallAction::new(
            resolved.upstream.name().as_str(),
            resolved.local,
            arguments,
            &resolved.definition_digest,
        );
        match self
            .approve(call, pending, &change, &shown, record, &shape)
            .await
        {
            Approval::Granted {
                permit,
                fingerprint,
                stateless,
                answer,
            } => {
                if let Some(quarantined) = &resolved.changed {
                    self.accept_definition(call, resolved, quarantined).await?;
                }
                let approved: Vec<String> =
                    facts.recipients.iter().map(|(r, _)| r.clone()).collect();
                self.gateway
                    .approvals
                    .known_recipients
                    .remember(&call.envelope.user().to_string(), &approved);
                Ok(Approved {
                    permit,
                    effect: facts.effect,
                    note: Some(self.approval_note(call, &answer, &fingerprint)),
                    stateless,
                })
            }
            // Nobody could be asked to accept a changed definition: refused as quarantined.
            Approval::Refused {
                answer: Answer::Unavailable,
                ..
            } if let Some(quarantined) = &resolved.changed => {
                Err(Stop::Quarantined(quarantined.message.clone()))
            }
            Approval::Refused { answer, decision } => {
                let refusal = answer.refusal(&call.request.name);
                Err(Stop::Refused {
                    message: quarantined_first(resolved, refusal.clone()),
                    recorded: refusal,
                    decision,
                })
            }
            Approval::Ask(required) => Err(Stop::Answer(Box::new(
                CallToolResponse::InputRequired(required),
            ))),
            Approval::Replayed(result) => {
                Err(Stop::Answer(Box::new(CallToolResponse::Complete(*result))))
            }
            Approval::Pending { message, decision } => Err(Stop::Refused {
                message: quarantined_first(resolved, message),
                recorded: "not run yet: its approval is pending on the approval page".to_owned(),
                decision,
            }),
        }
    }

    /// The approval stage: asks the person on the first rung their client can climb (or, for
    /// a stateless retry, takes their answer), and records the request and the answer.
    async fn approve(
        &self,
        call: &CallContext<'_>,
        pending: PendingApproval,
        change: &ChangeRequest<'_>,
        shown: &CallAction,
        record: &CallRecord,
        shape: &CallShape<'_>,
    ) -> Approval {
        let gateway = &self.gateway;
        let mut reasons: Vec<String> = change.policies.to_vec();
        if pending.because_tainted {
            reasons.push("untrusted content".to_owned());
        }
        if pending.because_changed {
            reasons.push("changed definition".to_owned());
        }
        let asking = Asking {
            fingerprint: gateway
                .evidence
                .fingerprint(record, call.request.arguments.as_ref()),
            reasons,
            tainted_by: change.tainted_by,
            offer: change.offer,
            started: Instant::now(),
            decision: gateway.evidence.summary(Some(pending.decision())),
        };
        if let Some(id) = call.claimed_approval {
            return self
                .approve_retry(call, pending, shown, record, &asking, id)
                .await;
        }
        // Scoped answers: a call a session-scoped answer covers runs without asking, and its
        // approval record says so (`scoped`; the intent names the scoped answer).
        if let Some(id) = self.covering_answer(call, shape) {
            let answer = Answer::Covered(id);
            if let Err(message) = gateway
                .evidence
                .record_approval(record, asking.note(answer.as_str()))
                .await
            {
                return asking.refused(Answer::Failed(message));
            }
            return asking.conclude(pending, shown, answer, None);
        }
        if let Some(id) = &call.on_page
            && self.declined_in_client(call, id, record, &asking).await
        {
            return asking.refused(Answer::Declined);
        }
        let pending = match self
            .decided_on_page(call, pending, shown, record, &asking)
            .await
        {
            Ok(approval) => return approval,
            Err(pending) => pending,
        };
        // Capabilities are read per request (and checked against what the client is known
        // to do): a client that did not declare a rung on this one is not asked on it.
        let mut ladder = Ladder::of(call.context, gateway.approvals.page.get().is_some());
        // Four eyes: the caller's own client cannot be the one that approves.
        ladder.form &= pending.rule != ApprovalRule::Other;
        if ladder.form && call.stateless {
            return self.ask_stateless(call, change, record, &asking).await;
        }
        if ladder.form {
            match self
                .ask_form(call, change, record, &asking, ladder.page)
                .await
            {
                Ok(Some(answer)) => return asking.conclude(pending, shown, answer, None),
                Ok(None) => {}
                Err(failure) => return asking.refused(failure),
            }
        }
        self.ask_on_page(call, change, pending, shown, record, &asking, ladder)
            .await
    }

    /// A stateless client is asked with an input-required result; its retry carries the answer.
    async fn ask_stateless(
        &self,
        call: &CallContext<'_>,
        change: &ChangeRequest<'_>,
        record: &CallRecord,
        asking: &Asking<'_>,
    ) -> Approval {
        let approvals = &self.gateway.approvals;
        let id = match approvals
            .stateless
            .open(&asking.fingerprint, approvals.timeout)
            .await
        {
            Ok(id) => id,
            Err(message) => return asking.refused(Answer::Failed(message)),
        };
        self.ask_round(
            call,
            record,
            asking,
            (Rung::Form, SealedRound::Approval { id }),
            change.params(),
        )
        .await
    }

    /// A session-era client is asked with a form. `Ok(None)`: it did not answer within the
    /// form wait (or could not be asked) and the page `follows`, so the next rung is tried;
    /// `Err`: the asking could not be recorded.
    async fn ask_form(
        &self,
        call: &CallContext<'_>,
        change: &ChangeRequest<'_>,
        record: &CallRecord,
        asking: &Asking<'_>,
        follows: bool,
    ) -> Result<Option<Answer>, Answer> {
        self.record_rung(record, asking, "asked", Rung::Form, None)
            .await?;
        let approvals = &self.gateway.approvals;
        // Without a page the form is the only rung: it has the whole approval timeout.
        let wait = if follows {
            approvals.form_wait.min(approvals.timeout)
        } else {
            approvals.timeout
        };
        let asked = call.context.peer.create_elicitation(change.params());
        let answer = match tokio::time::timeout(wait, asked).await {
            Ok(Ok(result)) => Answer::from_result(&result, asking.offer),
            Err(_) if !follows => Answer::TimedOut(wait),
            Ok(Err(error)) if !follows => {
                Answer::Failed(format!("the client did not answer: {error}"))
            }
            Err(_) | Ok(Err(_)) => {
                tracing::info!(tool = %call.request.name, "the client did not answer the approval form; the approval page follows");
                self.record_rung(record, asking, "unanswered", Rung::Form, None)
                    .await?;
                return Ok(None);
            }
        };
        self.record_rung(record, asking, answer.as_str(), Rung::Form, None)
            .await?;
        Ok(Some(answer))
    }

    /// A stateless retry: the answer travels with it, for the approval `id` its sealed
    /// `requestState` names. Capabilities are read per request, so the retry must itself
    /// declare the form elicitation it answers; one that does not approves nothing (and leaves
    /// the approval open for one that does).
    async fn approve_retry(
        &self,
        call: &CallContext<'_>,
        pending: PendingApproval,
        shown: &CallAction,
        record: &CallRecord,
        asking: &Asking<'_>,
        id: u64,
    ) -> Approval {
        let gateway = &self.gateway;
        if !declares_form_elicitation(call.context) {
            return asking.refused(Answer::Failed(
                "the retry answering it does not declare form elicitation; retry with the capabilities the first request declared".to_owned(),
            ));
        }
        match gateway.approvals.stateless.claim(id, &asking.fingerprint).await {
            Claim::Open => {
                let answer = call
                    .request
                    .input_responses
                    .as_ref()
                    .and_then(|responses| responses.get(APPROVAL_KEY))
                    .and_then(|value| serde_json::from_value::<ElicitResult>(value.clone()).ok())
                    .map_or(Answer::Cancelled, |result| {
                        Answer::from_result(&result, asking.offer)
                    });
                if let Err(message) = gateway
                    .evidence.record_approval(record, asking.note(answer.as_str()))
                    .await
                {
                    gateway.approvals.stateless.finish(id, None).await;
                    return asking.refused(Answer::Failed(message));
                }
                let approval = asking.conclude(pending, shown, answer, Some(id));
                if !matches!(approval, Approval::Granted { .. }) {
                    gateway.approvals.stateless.finish(id, None).await;
                }
                approval
            }
            Claim::Ran(Some(result)) => {
                let _ = gateway.evidence.record_approval(record, asking.note("replayed")).await;
                Approval::Replayed(result)
            }
            Claim::Unavailable => asking.refused(Answer::Failed(approval::unavailable())),
            Claim::Ran(None) | Claim::Running | Claim::Unknown => asking.refused(Answer::Failed(
                "its requestState is expired, already used, or for another action; call again without it to be asked anew".to_owned(),
            )),
        }
    }
}

/// What a call of a quarantined tool is told beside the approval's own message: that it is
/// quarantined, and how else to accept it.
fn quarantined_first(resolved: &Resolved<'_>, message: String) -> String {
    match &resolved.changed {
        Some(quarantined) => format!("{}. {message}", quarantined.message),
        None => message,
    }
}

impl PortcullisServer {
    /// A person approved a call of a quarantined tool, shown its changed definition: that
    /// definition, exactly, becomes its pin, the acceptance is recorded with who gave it, and
    /// the upstream's lists are read again so that the tool is listed. `Err`: the pin could
    /// not be written or recorded, so the call does not run.
    async fn accept_definition(
        &self,
        call: &CallContext<'_>,
        resolved: &Resolved<'_>,
        quarantined: &crate::pins::Quarantined,
    ) -> Result<(), Stop> {
        let gateway = &self.gateway;
        let refused = |why: String| Stop::Refused {
            message: format!(
                "portcullis did not run `{}`: the person accepted its definition, but {why}; the call did not run",
                call.request.name
            ),
            recorded: format!("the accepted definition {why}"),
            decision: gateway.evidence.summary(None),
        };
        let (pins, upstream, change) = (
            gateway.pins.clone(),
            resolved.upstream.name().clone(),
            quarantined.change.clone(),
        );
        tokio::task::spawn_blocking(move || pins.accept_change(&upstream, &change))
            .await
            .map_err(|error| refused(format!("could not be pinned ({error})")))?
            .map_err(|error| refused(format!("could not be pinned ({error})")))?;
        gateway
            .evidence
            .record_accepted(
                resolved.upstream.name(),
                &quarantined.change,
                &call.envelope.user().to_string(),
            )
            .await
            .map_err(|error| refused(format!("its acceptance could not be recorded ({error})")))?;
        tracing::info!(upstream = %resolved.upstream.name(), tool = resolved.local, "a person accepted the tool's changed definition with a call of it");
        // Read again apart from this call: the call runs on the definition just accepted.
        let (handle, connection) = (resolved.upstream.clone(), resolved.connection.clone());
        tokio::spawn(async move { handle.refresh_catalog(&connection).await });
        Ok(())
    }
}
