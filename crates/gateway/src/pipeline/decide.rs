//! The decide stage: what the call's configured arguments say about it (recipients, tenant,
//! privileges), whether this session read untrusted content and whether the call can reach the
//! network, then the policy's decision: a permit, or a pending approval.

use portcullis_core::{Effect, ToolRules};
use portcullis_roots::CheckedPath;

use super::permit::{Authorized, CallAction};
use super::{CallContext, Resolved, Stop};
use crate::approval::{self, NamedPath, Reach};
use crate::authorize::{CallQuestion, Refusal};
use crate::server::PortcullisServer;

/// Where the decide stage leaves a call that may go on: the decision, and what it was made on.
pub(super) struct Decided {
    pub authorized: Authorized,
    pub about: Facts,
}

/// What a call was decided on, which the approval request shows.
pub(super) struct Facts {
    pub rules: ToolRules,
    pub effect: Effect,
    /// Recipients the arguments name, and which of them are new to this user.
    pub recipients: Vec<(String, bool)>,
    pub target_tenant: Option<String>,
    /// The untrusted upstreams whose content this session received.
    pub tainted_by: Vec<String>,
    pub reach: Reach,
    /// The paths the arguments name, where each resolved and whether something is there.
    pub paths: Vec<NamedPath>,
}

impl PortcullisServer {
    pub(super) fn decide_stage(
        &self,
        call: &CallContext<'_>,
        resolved: &Resolved<'_>,
        paths: &[CheckedPath],
    ) -> Result<Decided, Stop> {
        let gateway = &self.gateway;
        let arguments = call.request.arguments.as_ref();
        let upstream = &resolved.upstream;
        let local = resolved.local;
        let tainted_by = gateway.approvals.taints.of(&call.taint_key);
        let rules = upstream.spec.tool_rules(local);
        let user_key = call.envelope.user().to_string();
        let (mut facts, recipients, target_tenant) =
            approval::call_facts(&rules, call.envelope, arguments, |recipient| {
                gateway
                    .approvals
                    .known_recipients
                    .is_known(&user_key, recipient)
            });
        facts.tainted = !tainted_by.is_empty();
        let hints = resolved
            .connection
            .catalog
            .load()
            .hints
            .get(local)
            .copied()
            .unwrap_or_default();
        let reach = approval::reach(upstream.spec.surface, hints, arguments, |host| {
            gateway.approvals.taints.has_read(&call.taint_key, host)
        });
        let action = CallAction::new(
            upstream.name().as_str(),
            local,
            arguments,
            &resolved.definition_digest,
        );
        let question = CallQuestion {
            upstream,
            visible: resolved.visible.clone(),
            arguments,
            facts,
            reach: &reach,
        };
        let ruling = gateway
            .decider
            .authorize_call(call.envelope, question)
            .map_err(|refusal| self.policy_stop(call, refusal))?;
        let mut authorized = Authorized::bound(ruling, action);
        if resolved.changed.is_some() {
            authorized = authorized.for_changed_definition();
        }
        Ok(Decided {
            authorized,
            about: Facts {
                effect: upstream.effect_of(local),
                rules,
                recipients,
                target_tenant,
                tainted_by,
                reach,
                paths: named_paths(paths),
            },
        })
    }

    /// The stop for a call policy refuses: hidden is unknown; denied says why.
    fn policy_stop(&self, call: &CallContext<'_>, refusal: Refusal) -> Stop {
        let gateway = &self.gateway;
        match refusal {
            Refusal::Hidden => Stop::Unknown("hidden from this identity"),
            Refusal::Denied { reason, decision } => Stop::Refused {
                message: format!(
                    "portcullis refused `{}` for {}: {reason}; the call did not run",
                    call.request.name,
                    call.envelope.user().subject
                ),
                recorded: "refused by policy".to_owned(),
                decision: gateway.evidence.summary(Some(&decision)),
            },
            // Calls are never refused for approval: they ask for it.
            Refusal::ApprovalUnavailable { decision } => Stop::Refused {
                message: format!(
                    "`{}` cannot be approved here; the call did not run",
                    call.request.name
                ),
                recorded: "refused by policy".to_owned(),
                decision: gateway.evidence.summary(Some(&decision)),
            },
        }
    }
}

/// The paths a call names as the person is shown them: where each resolved, and whether
/// something is there now.
fn named_paths(paths: &[CheckedPath]) -> Vec<NamedPath> {
    paths
        .iter()
        .map(|checked| NamedPath {
            pointer: checked.pointer.clone(),
            exists: checked.resolved.symlink_metadata().is_ok(),
            is_directory: checked.resolved.is_dir(),
            resolved: checked.resolved.clone(),
        })
        .collect()
}
