//! The decide stage: one Cedar check serves list and call, each decision logged with the
//! identity that asked.
//!
//! A call is decided as "may this identity see the tool" first, then "may it call it": a tool
//! hidden from an identity's list is unknown to it, under any name and in either era, because
//! the same check runs on both paths. A call that passes yields a [`Ruling`], which the
//! pipeline alone binds into a permit for the call's action.
//!
//! The [`Decider`] owns what deciding reads: the policy, how exposed names map onto the
//! upstreams, the users' grants (a tool their grant cannot call is hidden), the clock, and who
//! may step up. It records nothing: evidence is the pipeline's.

use std::sync::Arc;

use portcullis_core::IdentityEnvelope;
use portcullis_core::clock::Clock;
use portcullis_policy::{
    Action, ApprovalRule, CallDecision, CallInput, Decision, Facts, Hidden, PolicyEngine, Request,
    Target, Verdict, decide_call, decide_listing, decide_visible_call,
};
use serde_json::{Map, Value};

use crate::approval::Reach;
use crate::credentials::Credentials;
use crate::metrics::Metrics;
use crate::policy::PolicyStore;
use crate::upstream::UpstreamHandle;
use crate::upstreams::Upstreams;

/// Decides lists, reads and calls for an identity.
pub(crate) struct Decider {
    pub policy: Arc<PolicyStore>,
    pub upstreams: Arc<Upstreams>,
    pub credentials: Arc<Credentials>,
    pub clock: Arc<dyn Clock>,
    pub metrics: Arc<Metrics>,
    /// Who sessions act as when no bearer token names them.
    pub local_identity: Arc<IdentityEnvelope>,
    /// Set when HTTP sessions must present a bearer token (and so can step up).
    pub authenticated: bool,
}

/// What policy rules on a call it does not refuse; the pipeline binds it to the call's action
/// (`Authorized::bound`), and only the pipeline can.
#[derive(Debug)]
pub(crate) enum Ruling {
    Allowed(Decision),
    NeedsApproval {
        decision: Decision,
        /// What the answer may cover (the strictest `@approval` rule of the permits).
        rule: ApprovalRule,
        /// Policy allowed the call outright; approval is asked because the session is tainted.
        because_tainted: bool,
    },
}

/// What the call check is asked about: the tool (seen by this identity), the arguments, the
/// facts they and the session give.
pub(crate) struct CallQuestion<'a> {
    pub upstream: &'a UpstreamHandle,
    pub visible: VisibleTool<'a>,
    pub arguments: Option<&'a Map<String, Value>>,
    pub facts: Facts,
    pub reach: &'a Reach,
}

/// Proof that the list check passed for this tool; only [`Decider::visible_tool`] makes one.
#[derive(Debug, Clone)]
pub(crate) struct VisibleTool<'a> {
    tool: &'a str,
    /// The policy it passed under: while that is still the policy in force, the call check
    /// need not ask it again.
    policy: Arc<PolicyEngine>,
}

/// Why a call does not run.
#[derive(Debug)]
pub(crate) enum Refusal {
    /// The identity may not see the tool: it is answered as unknown, like a tool that does not
    /// exist, so that nothing about other identities' tools leaks.
    Hidden,
    /// Policy denies the call; `reason` is safe to show the client.
    Denied { reason: String, decision: Decision },
    /// Policy allows a prompt or resource read only with a person's approval, which
    /// Portcullis asks for tool calls only: it is not answered.
    ApprovalUnavailable { decision: Decision },
}

impl Refusal {
    /// The decision behind a refusal, when policy made one (a hidden entry has none to show).
    pub(crate) fn decision(&self) -> Option<&Decision> {
        match self {
            Refusal::Hidden => None,
            Refusal::Denied { decision, .. } | Refusal::ApprovalUnavailable { decision } => {
                Some(decision)
            }
        }
    }

    /// Why a prompt, resource, completion or subscription was refused, as recorded.
    pub(crate) fn read_reason(&self) -> &'static str {
        match self {
            Refusal::Hidden => "hidden from this identity",
            Refusal::Denied { .. } => "refused by policy",
            Refusal::ApprovalUnavailable { .. } => {
                "policy requires approval, which is asked for tool calls only"
            }
        }
    }

    /// The answer to a refused prompt, resource, completion or subscription: hidden and
    /// denied ones are `unknown`, like ones that do not exist; Portcullis asks for approval of
    /// tool calls only, so one that needs it is refused.
    pub(crate) fn read_error(self, unknown: rmcp::ErrorData) -> rmcp::ErrorData {
        match self {
            Refusal::Hidden | Refusal::Denied { .. } => unknown,
            Refusal::ApprovalUnavailable { .. } => rmcp::ErrorData::invalid_request(
                "policy requires a person's approval for this, and portcullis asks for approval of tool calls only",
                None,
            ),
        }
    }
}

/// What a list or read is about, by the upstream's own name.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Listed<'a> {
    Tool(&'a str),
    Prompt(&'a str),
    Resource(&'a str),
}

/// A list entry by the name the client sees.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Exposed<'a> {
    Tool(&'a str),
    Prompt(&'a str),
    /// A resource URI or URI template.
    Resource(&'a str),
}

impl Decider {
    fn decide(
        &self,
        envelope: &IdentityEnvelope,
        action: Action,
        upstream: &UpstreamHandle,
        target: Target<'_>,
    ) -> Decision {
        let policy = self.policy.current();
        policy.decide(&Request {
            envelope,
            action,
            upstream: upstream.name().as_str(),
            surface: upstream.spec.surface,
            target,
            now: self.clock.unix_secs(),
            facts: Facts::default(),
        })
    }

    /// Whether the identity may see an entry of `upstream`'s catalog, by its exposed name. A
    /// name that does not resolve back to that upstream is hidden (fail closed).
    pub(crate) fn sees(
        &self,
        envelope: &IdentityEnvelope,
        upstream: &UpstreamHandle,
        exposed: Exposed<'_>,
    ) -> bool {
        let resolved = match exposed {
            Exposed::Tool(name) | Exposed::Prompt(name) => self.upstreams.resolve(name),
            Exposed::Resource(uri) => self.upstreams.resolve_uri(uri),
        };
        resolved.is_some_and(|(named, local)| {
            let entry = match exposed {
                Exposed::Tool(_) => Listed::Tool(local),
                Exposed::Prompt(_) => Listed::Prompt(local),
                Exposed::Resource(_) => Listed::Resource(local),
            };
            named.name() == upstream.name() && self.may_see(envelope, upstream, entry)
        })
    }

    /// The scopes a call of the exposed tool `exposed` needs that `envelope` was not granted,
    /// for step-up authorization over HTTP. `None` when nothing is missing, and also when the
    /// tool does not exist or is hidden from this identity: a challenge naming its scopes would
    /// reveal it.
    pub(crate) fn missing_scopes(
        &self,
        envelope: &IdentityEnvelope,
        exposed: &str,
    ) -> Option<Vec<String>> {
        let (upstream, local) = self.upstreams.resolve_as(envelope, exposed)?;
        let connection = upstream.connection()?;
        if !connection.catalog.load().tool_names.contains(local)
            || !self.may_see(envelope, &upstream, Listed::Tool(local))
        {
            return None;
        }
        let rules = upstream.spec.tool_rules(local);
        let missing = rules
            .scopes
            .iter()
            .any(|scope| !envelope.scopes().contains(scope));
        missing.then(|| rules.scopes.iter().cloned().collect())
    }

    /// Whether a client acting as `envelope` can be asked for more scopes: only a bearer-token
    /// identity (HTTP with `[http.auth]`) gets the 403 step-up challenge; the local identity
    /// (stdio, or HTTP without `[http.auth]`) holds exactly what config gives it.
    fn steps_up(&self, envelope: &IdentityEnvelope) -> bool {
        self.authenticated && !std::ptr::eq(envelope, Arc::as_ptr(&self.local_identity))
    }

    /// Whether the identity may see (list, and so ask for) this entry.
    fn may_see(
        &self,
        envelope: &IdentityEnvelope,
        upstream: &UpstreamHandle,
        entry: Listed<'_>,
    ) -> bool {
        self.may_see_under(&self.policy.current(), envelope, upstream, entry)
    }

    /// [`Decider::may_see`], a tool's list check made under `policy`.
    fn may_see_under(
        &self,
        policy: &PolicyEngine,
        envelope: &IdentityEnvelope,
        upstream: &UpstreamHandle,
        entry: Listed<'_>,
    ) -> bool {
        let (action, decision) = match entry {
            Listed::Tool(name) => {
                let rules = upstream.spec.tool_rules(name);
                // `hide_tools`: a tool the user's grant cannot call is not shown.
                if let Some(granted) = self
                    .credentials
                    .visible_scopes(envelope, upstream.name().as_str())
                    && !rules.upstream_scopes.is_subset(&granted)
                {
                    return false;
                }
                let input = self.call_input(envelope, upstream, name, &rules, None);
                match decide_listing(policy, &input) {
                    Ok(decision) | Err(Hidden::ByPolicy(decision)) => (Action::ListTool, decision),
                    // Where no step-up can add scopes (stdio, HTTP without bearer tokens), no
                    // call of it could ever run: not listed, and like every unlisted tool,
                    // unknown to calls.
                    Err(Hidden::MissingScopes(missing)) => {
                        tracing::debug!(
                            target: "portcullis::decision",
                            user = %envelope.user(),
                            upstream = %upstream.name(),
                            tool = name,
                            missing = %missing.join(" "),
                            "hidden from this identity: it lacks the tool's scopes and cannot step up"
                        );
                        return false;
                    }
                }
            }
            Listed::Prompt(name) => (
                Action::GetPrompt,
                self.decide(
                    envelope,
                    Action::GetPrompt,
                    upstream,
                    Target::Prompt { name },
                ),
            ),
            Listed::Resource(uri) => (
                Action::ReadResource,
                self.decide(
                    envelope,
                    Action::ReadResource,
                    upstream,
                    Target::Resource { uri },
                ),
            ),
        };
        let visible = decision.verdict != Verdict::Deny;
        if !visible || !decision.errors.is_empty() {
            tracing::debug!(
                target: "portcullis::decision",
                user = %envelope.user(),
                tenant = envelope.tenant().unwrap_or(""),
                action = action.cedar_name(),
                upstream = %upstream.name(),
                entry = ?entry,
                decision = %decision,
                "hidden from this identity"
            );
        }
        visible
    }

    /// Decides a prompt get or resource read; `Err` carries the deny reason for the client.
    pub(crate) fn authorize_read(
        &self,
        envelope: &IdentityEnvelope,
        upstream: &UpstreamHandle,
        entry: Listed<'_>,
    ) -> Result<Decision, Refusal> {
        let (action, target) = match entry {
            Listed::Prompt(name) => (Action::GetPrompt, Target::Prompt { name }),
            Listed::Resource(uri) => (Action::ReadResource, Target::Resource { uri }),
            Listed::Tool(_) => return Err(Refusal::Hidden),
        };
        let decision = self.decide(envelope, action, upstream, target);
        self.log_decision(envelope, action, upstream, &entry, &decision);
        match decision.verdict {
            Verdict::Allow => Ok(decision),
            Verdict::ApprovalRequired(_) => Err(Refusal::ApprovalUnavailable { decision }),
            Verdict::Deny => Err(Refusal::Hidden),
        }
    }

    /// The first half of a call's decision: may this identity see the tool at all. Decided
    /// before anything else about the call (even whether its upstream is up), so that a hidden
    /// tool is answered exactly like one that does not exist.
    pub(crate) fn visible_tool<'a>(
        &self,
        envelope: &IdentityEnvelope,
        upstream: &UpstreamHandle,
        tool: &'a str,
    ) -> Result<VisibleTool<'a>, Refusal> {
        let policy = self.policy.engine();
        if self.may_see_under(&policy, envelope, upstream, Listed::Tool(tool)) {
            return Ok(VisibleTool { tool, policy });
        }
        tracing::info!(
            target: "portcullis::decision",
            user = %envelope.user(),
            client = envelope.client().unwrap_or(""),
            tenant = envelope.tenant().unwrap_or(""),
            action = "call_tool",
            upstream = %upstream.name(),
            tool,
            decision = "deny",
            "denied: the tool is not visible to this identity"
        );
        Err(Refusal::Hidden)
    }

    /// The second half: may it call the tool with these arguments. Whatever policy says, a
    /// side effect of a session that received untrusted content needs approval.
    pub(crate) fn authorize_call(
        &self,
        envelope: &IdentityEnvelope,
        call: CallQuestion<'_>,
    ) -> Result<Ruling, Refusal> {
        let CallQuestion {
            upstream,
            visible,
            arguments,
            facts,
            reach,
        } = call;
        let tool = visible.tool;
        let rules = upstream.spec.tool_rules(tool);
        let mut input = self.call_input(envelope, upstream, tool, &rules, arguments);
        input.facts = facts;
        input.reaches_network = matches!(reach, Reach::Network { .. });
        let current = self.policy.current();
        let outcome = if Arc::ptr_eq(&visible.policy, &current) {
            // Its list check passed under this very policy when the call was resolved.
            decide_visible_call(&current, &input)
        } else {
            decide_call(&current, &input)
        };
        if let Some(decision) = outcome.decision() {
            self.log_decision(
                envelope,
                Action::CallTool,
                upstream,
                &Listed::Tool(tool),
                decision,
            );
        }
        match outcome {
            CallDecision::Hidden(_) => Err(Refusal::Hidden),
            CallDecision::Allowed(decision) => Ok(Ruling::Allowed(decision)),
            CallDecision::NeedsApproval {
                decision,
                rule,
                because_tainted,
            } => {
                if because_tainted {
                    tracing::info!(
                        target: "portcullis::decision",
                        user = %envelope.user(),
                        upstream = %upstream.name(),
                        tool,
                        network = input.reaches_network,
                        "approval required: the session received untrusted content"
                    );
                }
                Ok(Ruling::NeedsApproval {
                    decision,
                    rule,
                    because_tainted,
                })
            }
            CallDecision::Denied { reason, decision } => Err(Refusal::Denied { reason, decision }),
        }
    }

    /// The plain values a call (or, with no arguments, a listing) of `tool` is decided on.
    fn call_input<'a>(
        &self,
        envelope: &'a IdentityEnvelope,
        upstream: &'a UpstreamHandle,
        tool: &'a str,
        rules: &'a portcullis_core::ToolRules,
        arguments: Option<&'a Map<String, Value>>,
    ) -> CallInput<'a> {
        CallInput {
            envelope,
            upstream: upstream.name().as_str(),
            surface: upstream.spec.surface,
            tool,
            effect: upstream.effect_of(tool),
            required_scopes: &rules.scopes,
            arguments,
            facts: Facts::default(),
            reaches_network: false,
            can_step_up: self.steps_up(envelope),
            now: self.clock.unix_secs(),
        }
    }

    fn log_decision(
        &self,
        envelope: &IdentityEnvelope,
        action: Action,
        upstream: &UpstreamHandle,
        entry: &Listed<'_>,
        decision: &Decision,
    ) {
        let name = match entry {
            Listed::Tool(name) | Listed::Prompt(name) | Listed::Resource(name) => *name,
        };
        self.metrics
            .decided(action.cedar_name(), decision.verdict.as_str());
        let policies = decision.policy_ids().join(",");
        macro_rules! record {
            ($level:ident, $message:literal) => {
                tracing::$level!(
                    target: "portcullis::decision",
                    user = %envelope.user(),
                    client = envelope.client().unwrap_or(""),
                    tenant = envelope.tenant().unwrap_or(""),
                    mode = ?envelope.mode(),
                    action = action.cedar_name(),
                    upstream = %upstream.name(),
                    name,
                    decision = decision.verdict.as_str(),
                    policies,
                    policy_version = self.policy.version(),
                    errors = ?decision.errors,
                    $message
                )
            };
        }
        match decision.verdict {
            Verdict::Allow => record!(info, "allowed"),
            Verdict::ApprovalRequired(_) => record!(info, "approval required"),
            Verdict::Deny => record!(warn, "denied"),
        }
    }
}
