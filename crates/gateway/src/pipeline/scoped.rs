//! Scoped answers in the approval stage (`approval/scope.rs`): what a call is as a scope reads
//! it, whether an answer a person gave before covers it, and what an approval's intent record
//! says (a session scope chosen is remembered here).

use portcullis_policy::ApprovalRule;

use super::decide::Facts;
use super::{CallContext, Resolved};
use crate::approval::{Answer, Asker, CallShape, Chosen, Holder, ScopeId};
use crate::server::PortcullisServer;

/// What scoped answers read of a call under `rule`.
pub(super) fn call_shape<'a>(
    resolved: &'a Resolved<'_>,
    facts: &'a Facts,
    rule: ApprovalRule,
) -> CallShape<'a> {
    CallShape {
        upstream: resolved.upstream.name().as_str(),
        tool: resolved.local,
        rule,
        effect: facts.effect,
        reach: &facts.reach,
        paths: &facts.paths,
        recipients: &facts.recipients,
        target_tenant: facts.target_tenant.as_deref(),
    }
}

/// Whose answers a call's scoped answers are: its session (or stateless user and client), and
/// its user.
fn asker<'a>(call: &'a CallContext<'_>, user: &'a str) -> Asker<'a> {
    Asker {
        key: &call.taint_key,
        holder: if call.stateless {
            Holder::Client
        } else {
            Holder::Session
        },
        user,
    }
}

impl PortcullisServer {
    /// The scoped answer this session's person gave before that covers `shape`, if any.
    pub(super) fn covering_answer(
        &self,
        call: &CallContext<'_>,
        shape: &CallShape<'_>,
    ) -> Option<ScopeId> {
        let user = call.envelope.user().to_string();
        let now = self.gateway.decider.clock.unix_secs();
        let covered = self
            .gateway
            .approvals
            .scoped
            .covers(&asker(call, &user), shape, now);
        if let Some(id) = &covered {
            tracing::info!(scope = %id, tool = %call.request.name, "approved by a scoped answer: not asked");
        }
        covered
    }

    /// What the intent record says of the approval `answer` gave the call `fingerprint`; a
    /// session scope it chose is remembered first.
    pub(super) fn approval_note(
        &self,
        call: &CallContext<'_>,
        answer: &Answer,
        fingerprint: &str,
    ) -> String {
        match answer {
            Answer::Covered(id) => format!("approved by scoped answer {id}"),
            Answer::Approved(Chosen::Session(scope)) => {
                let user = call.envelope.user().to_string();
                let now = self.gateway.decider.clock.unix_secs();
                match self.gateway.approvals.scoped.remember(
                    &asker(call, &user),
                    scope.clone(),
                    fingerprint,
                    now,
                ) {
                    Some(id) => {
                        format!("approved {fingerprint} and for this session as scoped answer {id}")
                    }
                    None => format!("approved {fingerprint}"),
                }
            }
            _ => format!("approved {fingerprint}"),
        }
    }
}
