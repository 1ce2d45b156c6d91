//! What one approval being asked is, and what asking it ends in: the records it leaves and
//! the one place a person's answer becomes the proof (`Granted`) that turns a pending
//! approval into a permit. Shared by the rungs of the ladder (`approve.rs`: the form and the
//! stateless round; `ladder.rs`: the approval page).

use std::time::Instant;

use rmcp::model::{
    CallToolResult, ElicitRequest, ElicitRequestParams, InputRequest, InputRequests,
    InputRequiredResult,
};

use super::CallContext;
use super::permit::{CallAction, CallPermit, PendingApproval};
use crate::approval::quirks::Rung;
use crate::approval::{APPROVAL_KEY, Answer, Offer};
use crate::evidence::{ApprovalRecord, CallRecord};
use crate::server::PortcullisServer;
use crate::state::SealedRound;

/// Proof that a person approved the action. Its field is private to this module: nothing but
/// `Asking::conclude` can mint one, and a `PendingApproval` becomes a permit only with one.
///
/// ```compile_fail,E0451
/// fn forge(action: portcullis_gateway::CallAction) -> portcullis_gateway::Granted {
///     portcullis_gateway::Granted { action }
/// }
/// ```
#[derive(Debug)]
pub struct Granted {
    /// The action the person was shown and approved.
    action: CallAction,
}

impl Granted {
    pub fn action(&self) -> &CallAction {
        &self.action
    }
}

/// The proof of approval of `shown`, when `answer` approves.
fn granted(answer: &Answer, shown: &CallAction) -> Option<Granted> {
    answer.approves().then(|| Granted {
        action: shown.clone(),
    })
}

/// The permit for `pending`, when `granted` approved its very action.
fn permit(pending: PendingApproval, granted: Granted) -> Result<CallPermit, Answer> {
    pending
        .grant(&granted.action)
        .ok_or_else(|| Answer::Failed("the approval given was for another action".to_owned()))
}

/// One approval being asked: what its records say, and the decision a refusal is under.
pub(super) struct Asking<'a> {
    pub fingerprint: String,
    pub reasons: Vec<String>,
    pub tainted_by: &'a [String],
    /// What the form offers besides this call (scoped answers, `approval/scope.rs`).
    pub offer: &'a Offer,
    pub started: Instant,
    pub decision: portcullis_core::evidence::DecisionSummary,
}

impl Asking<'_> {
    /// The approval record for `answer`.
    pub(super) fn note<'n>(&'n self, answer: &'n str) -> ApprovalRecord<'n> {
        ApprovalRecord {
            fingerprint: &self.fingerprint,
            reasons: &self.reasons,
            tainted_by: self.tainted_by,
            answer,
            started: self.started,
            rung: None,
            by: None,
        }
    }

    /// The approval record for `answer` on `rung`, decided `by` someone outside the client.
    pub(super) fn on<'n>(
        &'n self,
        answer: &'n str,
        rung: Rung,
        by: Option<&'n str>,
    ) -> ApprovalRecord<'n> {
        ApprovalRecord {
            rung: Some(rung.as_str()),
            by,
            ..self.note(answer)
        }
    }

    pub(super) fn refused(&self, answer: Answer) -> Approval {
        Approval::Refused {
            answer,
            decision: self.decision.clone(),
        }
    }

    /// The permit when `answer` approves exactly `shown`; else the refusal.
    pub(super) fn conclude(
        &self,
        pending: PendingApproval,
        shown: &CallAction,
        answer: Answer,
        stateless: Option<u64>,
    ) -> Approval {
        match granted(&answer, shown).map(|granted| permit(pending, granted)) {
            Some(Ok(permit)) => Approval::Granted {
                permit,
                fingerprint: self.fingerprint.clone(),
                stateless,
                answer,
            },
            Some(Err(failure)) => self.refused(failure),
            None => self.refused(answer),
        }
    }
}

/// What the approval stage ends in.
pub(super) enum Approval {
    /// Approved: the call may run, once.
    Granted {
        permit: CallPermit,
        fingerprint: String,
        /// The stateless approval whose outcome is kept for a retry.
        stateless: Option<u64>,
        /// The approving answer (what it covers: scoped answers).
        answer: Answer,
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
    /// Not run yet: the person was given the approval page; the message says where, and that
    /// the identical call retried once they approved runs.
    Pending {
        message: String,
        decision: portcullis_core::evidence::DecisionSummary,
    },
}

impl PortcullisServer {
    /// Records a step of `asking` on `rung` (decided `by` someone outside the client, if so).
    /// `Err`: the refusal, when it cannot be recorded (nothing is asked or run unrecorded).
    pub(super) async fn record_rung(
        &self,
        record: &CallRecord,
        asking: &Asking<'_>,
        answer: &str,
        rung: Rung,
        by: Option<&str>,
    ) -> Result<(), Answer> {
        self.gateway
            .evidence
            .record_approval(record, asking.on(answer, rung, by))
            .await
            .map_err(Answer::Failed)
    }

    /// A stateless client asked `params` on `rung` as an input-required round, its retry
    /// sealed to `round` and bound to this very request.
    pub(super) async fn ask_round(
        &self,
        call: &CallContext<'_>,
        record: &CallRecord,
        asking: &Asking<'_>,
        (rung, round): (Rung, SealedRound),
        params: ElicitRequestParams,
    ) -> Approval {
        if let Err(failure) = self.record_rung(record, asking, "asked", rung, None).await {
            return asking.refused(failure);
        }
        let approvals = &self.gateway.approvals;
        let state = approvals
            .states
            .seal_for(&round, &call.bound_to, approvals.timeout);
        let mut questions = InputRequests::new();
        questions.insert(
            APPROVAL_KEY.to_owned(),
            InputRequest::Elicitation(ElicitRequest::new(params)),
        );
        Approval::Ask(InputRequiredResult::new(Some(questions), Some(state)))
    }
}
