//! The resolve stage: the exposed name to one upstream, its own tool name and the definition
//! the client was shown. A hidden tool gets the same answer as one that does not exist, whether
//! or not its upstream is up: nothing about what other identities may see leaks through a name.
//! A tool visible to the identity but quarantined (its definition differs from its pin) goes
//! on only to have its new definition accepted by a person approving the call; where nobody
//! can be asked it is refused as unknown too, with why.

use super::{CallContext, Resolved, Stop};
use crate::evidence::CallRecord;
use crate::server::PortcullisServer;

impl PortcullisServer {
    pub(super) fn resolve_stage<'r>(
        &self,
        call: &CallContext<'r>,
        record: &mut CallRecord,
    ) -> Result<Resolved<'r>, Stop> {
        let gateway = &self.gateway;
        let exposed: &'r str = &call.request.name;
        // A name that resolves to no upstream is refused like any other unknown tool, and
        // recorded as the client sent it.
        let Some((upstream, local)) = self.resolve_tool(call.envelope, exposed) else {
            return Err(Stop::Unknown("no such tool"));
        };
        record.resolve(
            upstream.name().as_str(),
            local,
            upstream.spec.tool_rules(local).redact,
        );
        let Ok(visible) = gateway
            .decider
            .visible_tool(call.envelope, &upstream, local)
        else {
            return Err(Stop::Unknown("hidden from this identity"));
        };
        let connection = self
            .ready(&upstream, call.context, call.envelope)
            .map_err(|message| Stop::Refused {
                message: message.clone(),
                recorded: message,
                decision: gateway.evidence.summary(None),
            })?;
        let (definition, digest, changed) = match connection.listed_tool(exposed) {
            Some((definition, digest)) => (definition, digest, None),
            // A tool quarantined for a change to its definition (`pins.rs`) is not listed; a
            // call of it goes on only to ask a person to accept the definition it has now (the
            // decide stage makes it need approval), else it is as unknown as any other, with
            // why and what to do.
            None => match connection.catalog.load().quarantined.get(exposed) {
                Some(quarantined) => match &quarantined.tool {
                    Some(tool) => (
                        tool.clone(),
                        crate::evidence::definition_digest(tool),
                        Some(quarantined.clone()),
                    ),
                    None => return Err(Stop::Quarantined(quarantined.message.clone())),
                },
                None => return Err(Stop::Unknown("no such tool")),
            },
        };
        record.set_definition(digest);
        let definition_digest = record.definition_digest().to_owned();
        Ok(Resolved {
            upstream,
            local,
            visible,
            connection,
            definition,
            definition_digest,
            changed,
        })
    }
}
