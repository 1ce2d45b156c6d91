//! The check stage, before policy and before any person is asked: the arguments against the
//! tool's input schema (nobody approves a call its upstream would refuse), then path arguments
//! against the effective roots (paths outside never reach the upstream, whatever policy says).

use portcullis_core::ToolRules;

use super::{CallContext, Resolved, Stop};
use crate::evidence::summary;
use crate::paths::Grantor;
use crate::server::PortcullisServer;

impl PortcullisServer {
    pub(super) fn check_stage(
        &self,
        call: &CallContext<'_>,
        resolved: &Resolved<'_>,
    ) -> Result<(), Stop> {
        let arguments = call.request.arguments.as_ref();
        let refused = |denied: &str, recorded: String| {
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
                decision: summary(&self.gateway, None),
            }
        };
        if let Err(mismatch) = self
            .gateway
            .argument_check
            .check(&resolved.definition, arguments)
        {
            return Err(refused(&mismatch, format!("arguments: {mismatch}")));
        }
        let Some(guard) = resolved.upstream.paths.as_ref() else {
            return Ok(());
        };
        let rules: ToolRules = resolved.upstream.spec.tool_rules(resolved.local);
        let pointers: Vec<String> = rules.paths.iter().map(ToString::to_string).collect();
        // A stateless request has no session whose client offered roots: config's alone.
        let client_roots = if call.stateless {
            None
        } else {
            self.offered_roots()
        };
        let who = Grantor {
            subject: &call.envelope.user().subject,
            groups: call.envelope.groups(),
        };
        guard
            .check(
                &resolved.definition,
                &pointers,
                arguments,
                client_roots.as_ref(),
                who,
            )
            .map_err(|denied| refused(&denied, format!("outside the roots: {denied}")))
    }
}
