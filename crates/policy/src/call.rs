//! The whole decision on one tool call, as one pure function that `serve` and `explain` share:
//! may this identity see the tool, may it call it with these arguments, and must a person
//! approve it first.
//!
//! The order is the gateway's: a tool that is not listable is unknown to a call (hidden under
//! any name, so nothing about other identities' tools leaks); then the call check; then the
//! rules Portcullis adds after the policy, whatever it says: once a session has received
//! untrusted content, a side effect, or a read that can carry data out over the network, needs
//! a person's approval.

use std::collections::BTreeSet;

use portcullis_core::{Effect, IdentityEnvelope, Surface};
use serde_json::{Map, Value};

use crate::{Action, ApprovalRule, Decision, Facts, PolicyEngine, Request, Target, Verdict};

/// Everything the decision on one call reads, as plain values.
#[derive(Debug, Clone, Copy)]
pub struct CallInput<'a> {
    pub envelope: &'a IdentityEnvelope,
    pub upstream: &'a str,
    pub surface: Surface,
    /// The tool as its upstream names it.
    pub tool: &'a str,
    /// Its effective effect (config's, narrowed by the upstream's annotations).
    pub effect: Effect,
    /// The scopes config says the tool requires.
    pub required_scopes: &'a BTreeSet<String>,
    /// The call's arguments; `None` when deciding whether it may be listed.
    pub arguments: Option<&'a Map<String, Value>>,
    /// The call's facts, `tainted` included.
    pub facts: Facts,
    /// Whether the call can carry data out over the network (see the gateway's `Reach`).
    pub reaches_network: bool,
    /// Whether the client can be asked for more scopes (HTTP with bearer tokens): then a tool
    /// whose scopes the identity lacks is listed, and its call gets the step-up challenge.
    pub can_step_up: bool,
    /// Seconds since the Unix epoch.
    pub now: u64,
}

/// Why a tool is not listable for an identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hidden {
    /// The policy does not let this identity list it.
    ByPolicy(Decision),
    /// It requires scopes the identity lacks, and no step-up can add them.
    MissingScopes(Vec<String>),
}

/// The decision on one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallDecision {
    /// Not listable, so unknown to this identity under any name.
    Hidden(Hidden),
    /// Denied by the call check: the reason a client may read, and the decision.
    Denied { reason: String, decision: Decision },
    /// It may run now.
    Allowed(Decision),
    /// It may run once a person approves it, under `rule` (the policy's; `Required` when it
    /// is Portcullis's taint rule, not the policy, that asks: `because_tainted`).
    NeedsApproval {
        decision: Decision,
        rule: ApprovalRule,
        because_tainted: bool,
    },
}

impl CallDecision {
    /// The policy decision behind this one (none for scopes no step-up can add).
    pub fn decision(&self) -> Option<&Decision> {
        match self {
            CallDecision::Hidden(Hidden::ByPolicy(decision))
            | CallDecision::Denied { decision, .. }
            | CallDecision::Allowed(decision)
            | CallDecision::NeedsApproval { decision, .. } => Some(decision),
            CallDecision::Hidden(Hidden::MissingScopes(_)) => None,
        }
    }
}

/// Whether `input`'s tool may be listed for its identity: `Ok` with the list decision, or why
/// not. `input.arguments` and the call facts are not read.
pub fn decide_listing(engine: &PolicyEngine, input: &CallInput<'_>) -> Result<Decision, Hidden> {
    let missing = missing_scopes(input);
    if !input.can_step_up && !missing.is_empty() {
        return Err(Hidden::MissingScopes(missing));
    }
    let listed = engine.decide(&request(input, Action::ListTool));
    if listed.verdict == Verdict::Deny {
        return Err(Hidden::ByPolicy(listed));
    }
    Ok(listed)
}

/// The decision on one call (see the module docs for the order).
pub fn decide_call(engine: &PolicyEngine, input: &CallInput<'_>) -> CallDecision {
    if let Err(hidden) = decide_listing(engine, input) {
        return CallDecision::Hidden(hidden);
    }
    decide_visible_call(engine, input)
}

/// The decision on one call whose list check ([`decide_listing`]) already passed under this
/// same engine and identity: [`decide_call`] less its first step, for a caller that holds
/// that proof (the gateway's resolve stage), so the policy is not asked the same twice.
pub fn decide_visible_call(engine: &PolicyEngine, input: &CallInput<'_>) -> CallDecision {
    let decision = engine.decide(&request(input, Action::CallTool));
    match decision.verdict {
        Verdict::Allow
            if input.facts.tainted
                && (input.effect.is_side_effecting() || input.reaches_network) =>
        {
            CallDecision::NeedsApproval {
                decision,
                rule: ApprovalRule::Required,
                because_tainted: true,
            }
        }
        Verdict::Allow => CallDecision::Allowed(decision),
        Verdict::ApprovalRequired(rule) => CallDecision::NeedsApproval {
            decision,
            rule,
            because_tainted: false,
        },
        Verdict::Deny => {
            let missing = missing_scopes(input);
            let mut reason = decision.deny_reason();
            if !missing.is_empty() {
                reason = format!("{reason} (missing: `{}`)", missing.join("`, `"));
            }
            CallDecision::Denied { reason, decision }
        }
    }
}

/// The tool's required scopes the identity does not hold, in order.
fn missing_scopes(input: &CallInput<'_>) -> Vec<String> {
    input
        .required_scopes
        .iter()
        .filter(|scope| !input.envelope.scopes().contains(*scope))
        .cloned()
        .collect()
}

fn request<'a>(input: &CallInput<'a>, action: Action) -> Request<'a> {
    let call = action == Action::CallTool;
    Request {
        envelope: input.envelope,
        action,
        upstream: input.upstream,
        surface: input.surface,
        target: Target::Tool {
            name: input.tool,
            effect: input.effect,
            required_scopes: input.required_scopes,
            arguments: if call { input.arguments } else { None },
        },
        now: input.now,
        facts: if call { input.facts } else { Facts::default() },
    }
}
