//! The proofs a call carries through the pipeline: the action it is, the permit bound to that
//! action, and a call that waits for a person's approval. Their fields are private to this
//! file; the constructors are visible to the pipeline alone (the decide stage mints a permit
//! for an allowed call; the approve stage turns a pending approval into one only with the
//! `Granted` that a yes yields). Nothing here imports the stages, so every part of the gateway
//! may name these types without a way to make them.

use portcullis_policy::{ApprovalRule, Decision};
use serde_json::{Map, Value};

use crate::authorize::Ruling;

/// Exactly what a call does: the upstream, its own name of the tool, the canonical digest of
/// the arguments (keys sorted at every depth) and the digest of the definition the client was
/// shown. A permit is bound to one; the upstream call is built only for the action its permit
/// names (`UpstreamCall::new`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallAction {
    upstream: String,
    tool: String,
    arguments: String,
    definition: String,
}

impl CallAction {
    pub fn new(
        upstream: &str,
        tool: &str,
        arguments: Option<&Map<String, Value>>,
        definition: &str,
    ) -> Self {
        Self {
            upstream: upstream.to_owned(),
            tool: tool.to_owned(),
            arguments: portcullis_audit::digest_json(&Value::Object(
                arguments.cloned().unwrap_or_default(),
            )),
            definition: definition.to_owned(),
        }
    }
}

/// Proof that policy allowed this call, or a person approved it: bound to the action it
/// allows. Its fields are private to this file.
///
/// ```compile_fail,E0451
/// fn forge(decision: portcullis_policy::Decision, action: portcullis_gateway::CallAction)
///     -> portcullis_gateway::CallPermit {
///     portcullis_gateway::CallPermit { decision, action }
/// }
/// ```
///
/// The names are reachable, so the errors above are about privacy alone:
///
/// ```
/// fn named(
///     _: Option<portcullis_gateway::CallPermit>,
///     _: Option<portcullis_gateway::DurableIntent>,
///     _: Option<portcullis_gateway::Granted>,
///     _: Option<portcullis_gateway::UpstreamCall>,
///     _: Option<portcullis_gateway::ToolCall>,
///     _: Option<portcullis_gateway::CallParts>,
/// ) {}
/// ```
#[derive(Debug)]
pub struct CallPermit {
    decision: Decision,
    action: CallAction,
}

impl CallPermit {
    pub fn decision(&self) -> &Decision {
        &self.decision
    }

    /// The one action this permit allows.
    pub fn action(&self) -> &CallAction {
        &self.action
    }
}

/// A call policy allows only with a person's approval (or that untrusted content made
/// need one). Only [`PendingApproval::grant`] turns it into a [`CallPermit`], and only for
/// the action a person approved.
#[derive(Debug)]
pub(crate) struct PendingApproval {
    decision: Decision,
    action: CallAction,
    /// Policy allowed the call outright; approval is asked because the session is tainted.
    pub because_tainted: bool,
    /// The tool's definition is not the one pinned: approving accepts it (`pins.rs`).
    pub because_changed: bool,
    /// What the answer may cover (the policy's `@approval` rule; `Required` for taint).
    pub rule: ApprovalRule,
}

impl PendingApproval {
    pub(crate) fn decision(&self) -> &Decision {
        &self.decision
    }

    /// The permit, when `approved` (the action of a `Granted`) is this very action; `None`
    /// for an approval of any other.
    pub(super) fn grant(self, approved: &CallAction) -> Option<CallPermit> {
        (approved == &self.action).then_some(CallPermit {
            decision: self.decision,
            action: self.action,
        })
    }
}

/// What the call check allows.
#[derive(Debug)]
pub(crate) enum Authorized {
    Permit(CallPermit),
    NeedsApproval(PendingApproval),
}

impl Authorized {
    /// The permit or pending approval for `action`, as policy ruled on it.
    pub(super) fn bound(ruling: Ruling, action: CallAction) -> Self {
        match ruling {
            Ruling::Allowed(decision) => Authorized::Permit(CallPermit { decision, action }),
            Ruling::NeedsApproval {
                decision,
                rule,
                because_tainted,
            } => Authorized::NeedsApproval(PendingApproval {
                decision,
                action,
                because_tainted,
                because_changed: false,
                rule,
            }),
        }
    }

    /// The same ruling for a tool whose definition differs from its pin: whatever policy
    /// said, a person approves this one call, and that approval accepts the definition. The
    /// answer covers this call only (`once`, or four eyes where policy asked for them), so no
    /// session-scoped answer accepts a changed definition.
    pub(super) fn for_changed_definition(self) -> Self {
        let pending = match self {
            Authorized::Permit(CallPermit { decision, action }) => PendingApproval {
                decision,
                action,
                because_tainted: false,
                because_changed: true,
                rule: ApprovalRule::Once,
            },
            Authorized::NeedsApproval(pending) => PendingApproval {
                because_changed: true,
                rule: match pending.rule {
                    ApprovalRule::Other => ApprovalRule::Other,
                    ApprovalRule::Required | ApprovalRule::Once => ApprovalRule::Once,
                },
                ..pending
            },
        };
        Authorized::NeedsApproval(pending)
    }

    pub(crate) fn decision(&self) -> &Decision {
        match self {
            Authorized::Permit(permit) => permit.decision(),
            Authorized::NeedsApproval(pending) => pending.decision(),
        }
    }
}
