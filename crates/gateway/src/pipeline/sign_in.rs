//! Signing in to a per-user upstream from the client. Such an upstream's catalog is read with
//! the user's own token, so an identity that has not authorised Portcullis there sees none of
//! its tools, and no call of one could send the person to sign in. In their place it sees one
//! tool of Portcullis's own, `portcullis_sign_in` under the upstream's name: calling it runs
//! the credential stage's sign-in (a URL elicitation, or an input-required round for a
//! stateless client) and nothing else; no request reaches the upstream. Once the grant is
//! stored the tool is gone and the upstream's own tools are listed (the client is told).

use std::sync::Arc;

use portcullis_core::evidence::DecisionSummary;
use rmcp::model::{CallToolResponse, CallToolResult, ContentBlock, Tool, ToolAnnotations};
use serde_json::Map;

use super::credential::CredentialStage;
use super::execute::tool_error;
use super::{CallContext, Stop};
use crate::authorize::Exposed;
use crate::evidence::CallRecord;
use crate::instances::SIGN_IN_TOOL;
use crate::server::PortcullisServer;
use crate::upstream::UpstreamHandle;

impl PortcullisServer {
    /// The sign-in tool of each per-user upstream `call`'s identity must authorise first,
    /// as listed to it (where policy lets it see the tool).
    pub(crate) fn sign_in_tools(&self, envelope: &portcullis_core::IdentityEnvelope) -> Vec<Tool> {
        let gateway = &self.gateway;
        let namespacing = gateway.upstreams.namespacing();
        gateway
            .upstreams
            .awaiting_grant(envelope)
            .into_iter()
            .filter_map(|upstream| {
                let exposed = namespacing.expose(upstream.name(), SIGN_IN_TOOL).ok()?;
                gateway
                    .decider
                    .sees(envelope, upstream, Exposed::Tool(&exposed))
                    .then(|| sign_in_tool(exposed, upstream))
            })
            .collect()
    }

    /// The per-user upstream whose sign-in tool `call` names, if its identity must authorise
    /// it first (or is coming back from doing so, in the stateless era).
    pub(super) fn sign_in_target(&self, call: &CallContext<'_>) -> Option<Arc<UpstreamHandle>> {
        let upstreams = &self.gateway.upstreams;
        let (template, local) = upstreams.resolve(&call.request.name)?;
        if local != SIGN_IN_TOOL {
            // Every other call: no credential store is read here.
            return None;
        }
        let awaiting = call.authorizing.is_some()
            || upstreams
                .awaiting_grant(call.envelope)
                .iter()
                .any(|waiting| waiting.name() == template.name());
        awaiting.then(|| template.clone())
    }

    /// Sends the person to sign in to `upstream`; records the call, which never reaches it.
    pub(super) async fn sign_in_call(
        &self,
        call: &CallContext<'_>,
        mut record: CallRecord,
        upstream: &UpstreamHandle,
    ) -> Result<CallToolResponse, Stop> {
        let name = upstream.name().as_str();
        record.resolve(name, SIGN_IN_TOOL, Vec::new());
        let visible =
            self.gateway
                .decider
                .sees(call.envelope, upstream, Exposed::Tool(&call.request.name));
        if !visible {
            return Err(Stop::Unknown("hidden from this identity"));
        }
        let credentials = &self.gateway.credentials;
        let scopes = credentials
            .login_scopes(name, Vec::new())
            .map_err(|message| self.refused(message))?;
        let rules = upstream.spec.tool_rules(SIGN_IN_TOOL);
        let why = "its tools are listed with your own authorisation";
        let (message, answer) = match self
            .sign_in(call, (upstream, SIGN_IN_TOOL), &rules, scopes, why)
            .await
        {
            CredentialStage::Ask(required) => {
                return Ok(CallToolResponse::InputRequired(required));
            }
            CredentialStage::Refused(message) => (message.clone(), tool_error(message)),
            CredentialStage::Ready(_) => {
                self.gateway.sessions.broadcast_list_changed().await;
                let message = format!(
                    "signed in: Portcullis may use `{name}` on your behalf; its tools are listed now"
                );
                let result = CallToolResult::success(vec![ContentBlock::text(message.clone())]);
                (message, CallToolResponse::Complete(result))
            }
        };
        let decision = DecisionSummary {
            verdict: "allow".to_owned(),
            policies: Vec::new(),
            policy_version: Some(self.gateway.evidence.policy.version().to_string()),
        };
        let reason = format!("portcullis's own sign-in tool, never sent upstream: {message}");
        self.gateway
            .evidence
            .record_refusal(record, call.request.arguments.as_ref(), decision, &reason)
            .await;
        Ok(answer)
    }

    fn refused(&self, message: String) -> Stop {
        Stop::Refused {
            recorded: message.clone(),
            message,
            decision: self.gateway.evidence.summary(None),
        }
    }
}

/// The listed sign-in tool of `upstream`, exposed as `exposed`.
fn sign_in_tool(exposed: String, upstream: &UpstreamHandle) -> Tool {
    let description = format!(
        "Sign in to `{}` so that Portcullis may use it on your behalf: opens its sign-in page. Its tools are listed once you have signed in.",
        upstream.name()
    );
    let mut schema = Map::new();
    schema.insert(
        "type".to_owned(),
        serde_json::Value::String("object".to_owned()),
    );
    Tool::new(exposed, description, Arc::new(schema)).annotate(
        ToolAnnotations::new()
            .read_only(true)
            .destructive(false)
            .open_world(false),
    )
}
