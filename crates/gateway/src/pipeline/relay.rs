//! The requests relayed to the upstream that owns them, as they are: resource subscriptions,
//! the log level, completions (the stages that apply to them: resolve, decide on the entry,
//! check the roots, record a refusal), and the one way a request that needs no input rounds is
//! forwarded and its answer redacted of every secret Portcullis holds.

use std::sync::Arc;

use portcullis_core::IdentityEnvelope;
use rmcp::ErrorData as McpError;
#[expect(
    deprecated,
    reason = "session-era clients still subscribe and set log levels"
)]
use rmcp::model::SetLevelRequestParams;
use rmcp::model::{
    CompleteRequestParams, CompleteResult, Reference, ServerResult, SubscribeRequestParams,
    UnsubscribeRequestParams,
};
use rmcp::service::{RequestContext, RoleServer};

use super::execute::{Outbound, forward, unexpected};
use crate::authorize::Listed;
use crate::evidence::request_context;
use crate::server::{PortcullisServer, asker_for, listener_for, progress_of};
use crate::upstream::{CallRoute, Connection, UpstreamHandle};

impl PortcullisServer {
    /// Whether policy lets `envelope` read `entry` of `upstream` (a subscription, a
    /// completion); a refusal is recorded and answered like the entry's absence (`unknown`),
    /// or as needing an approval that is not asked for reads.
    async fn decided_read(
        &self,
        envelope: &IdentityEnvelope,
        method: &str,
        upstream: &UpstreamHandle,
        entry: Listed<'_>,
        unknown: McpError,
    ) -> Result<(), McpError> {
        let Err(refusal) = self
            .gateway
            .decider
            .authorize_read(envelope, upstream, entry)
        else {
            return Ok(());
        };
        let name = match entry {
            Listed::Tool(name) | Listed::Prompt(name) | Listed::Resource(name) => name,
        };
        self.record_refused(
            envelope,
            method,
            Some(upstream),
            name,
            refusal.read_reason(),
        )
        .await;
        Err(refusal.read_error(unknown))
    }

    /// The upstream that owns an exposed resource URI, its connection and its own URI.
    async fn resource_owner(
        &self,
        context: &RequestContext<RoleServer>,
        envelope: &IdentityEnvelope,
        method: &str,
        exposed: &str,
    ) -> Result<(Arc<UpstreamHandle>, Arc<Connection>, String), McpError> {
        let resolved = self.resolve_resource(envelope, exposed);
        let unknown =
            || McpError::resource_not_found(format!("unknown resource `{exposed}`"), None);
        let Some((owner, local)) = resolved else {
            self.record_refused(envelope, method, None, exposed, "no such resource")
                .await;
            return Err(unknown());
        };
        let upstream = &*owner;
        self.decided_read(
            envelope,
            method,
            upstream,
            Listed::Resource(&local),
            unknown(),
        )
        .await?;
        if let Err(denied) = self.check_resource_uri(envelope, upstream, &local) {
            let reason = format!("outside the roots: {denied}");
            self.record_refused(envelope, method, Some(upstream), &local, &reason)
                .await;
            return Err(McpError::invalid_params(
                format!("portcullis refused `{exposed}`: {denied}"),
                None,
            ));
        }
        let connection = match self.ready(upstream, context, envelope) {
            Ok(connection) => connection,
            Err(message) => {
                self.record_refused(envelope, method, Some(upstream), &local, &message)
                    .await;
                return Err(McpError::internal_error(message, None));
            }
        };
        Ok((owner, connection, local))
    }

    /// Forwards a request that needs no input rounds (prompts, resources, completion).
    pub(crate) async fn forward(
        &self,
        upstream: &UpstreamHandle,
        connection: &Connection,
        context: &RequestContext<RoleServer>,
        request: Outbound,
    ) -> Result<ServerResult, McpError> {
        let route = CallRoute {
            session: self.session,
            client_roots: self.offered_roots(),
            request: self
                .envelope(context)
                .ok()
                .map(|envelope| request_context(&envelope, self.session)),
            asker: asker_for(context),
            listener: listener_for(context),
            log_level: self.log_level_for(context),
        };
        let answer = forward(
            upstream,
            connection,
            &route,
            progress_of(context),
            &context.ct,
            request,
        )
        .await
        .map_err(|error| error.into_mcp(upstream));
        // No secret Portcullis holds goes back in a resource, a prompt or a completion either.
        let secrets = crate::secrets::Secrets::global();
        let (answer, found) = match answer {
            Ok(result) => redact_result(secrets, result),
            Err(error) => match secrets.redact(error) {
                Ok((error, found)) => (Err(error), found),
                Err(found) => (Err(refused_error()), found),
            },
        };
        if !found.is_empty() {
            tracing::warn!(
                upstream = %upstream.name(),
                secrets = %found.join(", "),
                "the upstream's answer held secrets Portcullis holds; they were redacted"
            );
        }
        answer
    }

    /// `resources/subscribe`: held by the owning upstream (watched, for a stateless one).
    pub(crate) async fn subscribe_as(
        &self,
        request: SubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        let envelope = self.envelope(&context)?;
        self.gateway.upstreams.ready_for(&envelope).await;
        let (upstream, connection, local) = self
            .resource_owner(&context, &envelope, "resources/subscribe", &request.uri)
            .await?;
        // Recorded before the upstream hears of it: an update it sends as soon as it has
        // subscribed finds the subscriber. Undone if the upstream refuses.
        let added = self.gateway.sessions.subscribe(
            request.uri.clone(),
            self.session,
            context.peer.clone(),
        );
        let held = if connection.is_stateless() {
            upstream
                .watch_resource(&connection, &local)
                .await
                .map_err(|message| McpError::internal_error(message, None))
        } else {
            let params = SubscribeRequestParams::new(local);
            let forwarded = Outbound::Subscribe(params);
            self.forward(&upstream, &connection, &context, forwarded)
                .await
                .map(drop)
        };
        if held.is_err() && added {
            self.gateway
                .sessions
                .unsubscribe(&request.uri, self.session);
        }
        held
    }

    /// `resources/unsubscribe`, passed on when no session holds the subscription any more.
    pub(crate) async fn unsubscribe_as(
        &self,
        request: UnsubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        let envelope = self.envelope(&context)?;
        let (upstream, connection, local) = self
            .resource_owner(&context, &envelope, "resources/unsubscribe", &request.uri)
            .await?;
        // The upstream keeps the subscription while any session still holds it.
        if self
            .gateway
            .sessions
            .unsubscribe(&request.uri, self.session)
        {
            if connection.is_stateless() {
                upstream.unwatch_resource(&local);
                return Ok(());
            }
            let params = UnsubscribeRequestParams::new(local);
            let forwarded = Outbound::Unsubscribe(params);
            self.forward(&upstream, &connection, &context, forwarded)
                .await?;
        }
        Ok(())
    }

    /// `logging/setLevel`, passed on to every session-era upstream that offers logging.
    #[expect(
        deprecated,
        reason = "session-era clients still subscribe and set log levels"
    )]
    pub(crate) async fn set_level_as(
        &self,
        request: SetLevelRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        let envelope = self.envelope(&context)?;
        self.gateway.upstreams.ready_for(&envelope).await;
        for upstream in self.gateway.upstreams.serving(&envelope) {
            let Some(connection) = upstream.connection() else {
                continue;
            };
            let advertises = connection.offers_logging();
            if advertises && !connection.is_stateless() {
                let params = SetLevelRequestParams::new(request.level);
                let forwarded = Outbound::SetLevel(params);
                if let Err(error) = self
                    .forward(&upstream, &connection, &context, forwarded)
                    .await
                {
                    tracing::info!(upstream = %upstream.name(), error = %error.message, "upstream refused the log level");
                }
            }
        }
        Ok(())
    }

    /// `completion/complete` of a prompt or resource argument, decided like its entry.
    pub(crate) async fn complete_as(
        &self,
        mut request: CompleteRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CompleteResult, McpError> {
        let envelope = self.envelope(&context)?;
        let upstreams = &self.gateway.upstreams;
        upstreams.ready_for(&envelope).await;
        let resolved = match &request.r#ref {
            Reference::Prompt(prompt) => upstreams.resolve_as(&envelope, &prompt.name),
            Reference::Resource(resource) => upstreams.resolve_uri_as(&envelope, &resource.uri),
            _ => None,
        }
        .map(|(upstream, local)| (upstream, local.to_owned()));
        let unknown = || McpError::invalid_params("unknown completion reference", None);
        let method = "completion/complete";
        let Some((upstream, local)) = resolved else {
            let sent = match &request.r#ref {
                Reference::Prompt(prompt) => prompt.name.clone(),
                Reference::Resource(resource) => resource.uri.clone(),
                _ => String::new(),
            };
            self.record_refused(&envelope, method, None, &sent, "no such prompt or resource")
                .await;
            return Err(unknown());
        };
        let upstream = &*upstream;
        let entry = match &request.r#ref {
            Reference::Prompt(_) => Listed::Prompt(&local),
            _ => Listed::Resource(&local),
        };
        self.decided_read(&envelope, method, upstream, entry, unknown())
            .await?;
        match &mut request.r#ref {
            Reference::Prompt(prompt) => prompt.name = local,
            Reference::Resource(resource) => resource.uri = local,
            _ => {
                return Err(McpError::invalid_params(
                    "unknown completion reference",
                    None,
                ));
            }
        }
        let connection = self
            .ready(upstream, &context, &envelope)
            .map_err(|message| McpError::internal_error(message, None))?;
        request.meta = None;
        let request = Outbound::Complete(request);
        match self
            .forward(upstream, &connection, &context, request)
            .await?
        {
            ServerResult::CompleteResult(result) => Ok(result),
            _ => Err(unexpected(upstream)),
        }
    }
}

fn refused_error() -> McpError {
    McpError::internal_error("the upstream's error held a secret portcullis holds", None)
}

/// An upstream's answer to a resource read, prompt get, completion or input round, its secrets
/// redacted by its own type (a redacted value that no longer reads as its type is refused,
/// never passed on unredacted); other answers carry no upstream text.
fn redact_result(
    secrets: &crate::secrets::Secrets,
    result: ServerResult,
) -> (Result<ServerResult, McpError>, Vec<String>) {
    let refused =
        || McpError::internal_error("the upstream's answer held a secret portcullis holds", None);
    macro_rules! redact {
        ($variant:ident, $value:expr) => {
            match secrets.redact($value) {
                Ok((value, found)) => (Ok(ServerResult::$variant(value)), found),
                Err(found) => (Err(refused()), found),
            }
        };
    }
    match result {
        ServerResult::ReadResourceResult(value) => redact!(ReadResourceResult, value),
        ServerResult::GetPromptResult(value) => redact!(GetPromptResult, value),
        ServerResult::CompleteResult(value) => redact!(CompleteResult, value),
        ServerResult::InputRequiredResult(value) => redact!(InputRequiredResult, value),
        other => (Ok(other), Vec::new()),
    }
}
