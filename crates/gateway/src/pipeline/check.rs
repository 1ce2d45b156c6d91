//! The check stage, before policy and before any person is asked: the arguments against the
//! tool's input schema (nobody approves a call its upstream would refuse), then path arguments
//! against the effective roots (paths outside never reach the upstream, whatever policy says).

use portcullis_core::{IdentityEnvelope, ToolRules};
use portcullis_roots::{CheckedPath, Roots};
use rmcp::model::{JsonObject, Tool};

use super::{CallContext, Resolved, Stop};
use crate::gateway::Gateway;
use crate::paths::Grantor;
use crate::server::PortcullisServer;
use crate::upstream::UpstreamHandle;

impl PortcullisServer {
    /// The paths the arguments name, where each resolved (the approval request shows them),
    /// or the stop.
    pub(super) fn check_stage(
        &self,
        call: &CallContext<'_>,
        resolved: &Resolved<'_>,
    ) -> Result<Vec<CheckedPath>, Stop> {
        // A stateless request has no session whose client offered roots: config's alone.
        let client_roots = if call.stateless {
            None
        } else {
            self.offered_roots()
        };
        let checked = self.gateway.check_arguments(
            call.envelope,
            (&resolved.upstream, resolved.local),
            &resolved.definition,
            call.request.arguments.as_ref(),
            client_roots.as_ref(),
        );
        checked.map_err(|Unchecked { denied, recorded }| {
            tracing::warn!(
                target: "portcullis::decision",
                user = %call.envelope.user(),
                upstream = %resolved.upstream.name(),
                tool = resolved.local,
                denied,
                "denied: {recorded}"
            );
            Stop::Refused {
                message: format!(
                    "portcullis refused `{}`: {denied}; the call did not run",
                    call.request.name
                ),
                recorded,
                decision: self.gateway.evidence.summary(None),
            }
        })
    }
}

/// Why the check stage refuses a call: what the client is told, and what is recorded.
pub(crate) struct Unchecked {
    pub denied: String,
    pub recorded: String,
}

impl Gateway {
    /// The check stage's two checks of `arguments` for `local` of `upstream`, as listed with
    /// `definition`: the input schema, then the paths against the roots this identity has
    /// there (narrowed by `client_roots`, the roots the session's client offered): the paths
    /// checked, where each resolved.
    pub(crate) fn check_arguments(
        &self,
        envelope: &IdentityEnvelope,
        (upstream, local): (&UpstreamHandle, &str),
        definition: &Tool,
        arguments: Option<&JsonObject>,
        client_roots: Option<&Roots>,
    ) -> Result<Vec<CheckedPath>, Unchecked> {
        if let Err(mismatch) = self.argument_check.check(definition, arguments) {
            return Err(Unchecked {
                recorded: format!("arguments: {mismatch}"),
                denied: mismatch,
            });
        }
        let Some(guard) = upstream.paths.as_ref() else {
            return Ok(Vec::new());
        };
        let rules: ToolRules = upstream.spec.tool_rules(local);
        let pointers: Vec<String> = rules.paths.iter().map(ToString::to_string).collect();
        let who = Grantor {
            subject: &envelope.user().subject,
            groups: envelope.groups(),
        };
        guard
            .check(definition, &pointers, arguments, client_roots, who)
            .map_err(|denied| Unchecked {
                recorded: format!("outside the roots: {denied}"),
                denied,
            })
    }

    /// What `portcullis explain` learns from the live catalog about a call of `exposed`:
    /// `Ok(None)` when it is listed and passes the check stage (schema and roots, with config's
    /// roots alone), `Ok(Some(why))` when the check stage refuses it, `Err` when the name is
    /// not listed or its upstream could not be asked (the reason says which).
    pub fn check_listed_call(
        &self,
        envelope: &IdentityEnvelope,
        exposed: &str,
        arguments: Option<&JsonObject>,
    ) -> Result<Option<String>, Catalogued> {
        let (upstream, local) = self
            .upstreams
            .resolve(exposed)
            .ok_or(Catalogued::NotListed)?;
        let connection = upstream
            .connection()
            .ok_or_else(|| Catalogued::Unavailable(upstream.unavailable_reason()))?;
        let (definition, _) = connection
            .listed_tool(exposed)
            .ok_or(Catalogued::NotListed)?;
        Ok(self
            .check_arguments(envelope, (upstream, local), &definition, arguments, None)
            .err()
            .map(|unchecked| unchecked.denied))
    }
}

/// Why the live catalog could not vouch for a tool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Catalogued {
    /// Its upstream answered, and does not list it.
    NotListed,
    /// Its upstream could not be asked, for this reason.
    Unavailable(String),
}
