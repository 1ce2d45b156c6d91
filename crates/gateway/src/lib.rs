//! The rmcp plumbing of Portcullis: the downstream server (both protocol eras, stdio and
//! streamable HTTP), the upstream pool, and the request path between them.
//!
//! Key design decision: each upstream is supervised on its own and published through an
//! `ArcSwap`, so a request reads which upstreams are ready, and their catalogs, without locks;
//! an upstream that fails to start, crashes or hangs drops out of the lists and is restarted with
//! backoff while the others keep serving.
#![forbid(unsafe_code)]

mod approval;
mod arguments;
mod ask;
mod attach;
mod authorize;
mod call;
mod catalog;
pub mod credentials;
mod evidence;
mod forms;
mod http;
mod listener;
mod metrics;
mod paths;
mod pending;
mod pipeline;
mod policy;
mod progress;
mod recorder;
mod remote;
mod sandbox;
pub mod secrets;
mod server;
mod sessions;
mod state;
mod stdio;
mod upstream;
mod upstreams;

use std::collections::BTreeMap;
use std::sync::Arc;

use portcullis_config::Config;
use portcullis_core::{IdentityEnvelope, UpstreamName};
use portcullis_policy::PolicyEngine;
use rmcp::ServiceExt;
use tokio_util::sync::CancellationToken;

pub use approval::{Reach, call_facts, reach};
// The proofs the request path is built on, public so that their documentation tests show from
// outside that none can be forged (see ARCHITECTURE.md, "The request path").
pub use authorize::{CallAction, CallPermit};
pub use call::{CallParts, ToolCall, UpstreamCall};
pub use credentials::Credentials;
pub use evidence::DurableIntent;
pub use http::serve_http;
pub use metrics::serve_metrics;
pub use pipeline::{Catalogued, Granted};
pub use policy::load_policy;
pub use recorder::Recorder;
pub use sandbox::{ContainmentReport, containment_reports};
pub use server::PortcullisServer;

use policy::PolicyStore;
use sessions::Sessions;
use state::StateSealer;
use upstream::UpstreamHandle;

/// Errors that stop Portcullis from serving.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("could not set up the requestState key: {0}")]
    Random(String),
    #[error("could not listen on `{address}`: {source}")]
    Listen {
        address: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("client authentication cannot start: {0}")]
    Auth(String),
    #[error("the client connection failed: {0}")]
    Client(String),
    #[error("serving failed: {0}")]
    Serve(std::io::Error),
}

/// The running mediator: configured upstreams and what sessions share.
pub struct Gateway {
    page_size: usize,
    /// The upstreams, how exposed names map onto them, and their supervisors.
    upstreams: Arc<upstreams::Upstreams>,
    sessions: Arc<Sessions>,
    pending: Arc<pending::PendingCalls>,
    policy: Arc<PolicyStore>,
    /// Where every call's intent and outcome are recorded, and the clock they are stamped
    /// with (the one clock every comparison with the time of day reads).
    recorder: Recorder,
    /// Who sessions act as when no bearer token names them (stdio, unauthenticated loopback
    /// HTTP).
    local_identity: Arc<IdentityEnvelope>,
    /// Set when HTTP sessions must present a bearer token: an HTTP request's identity then
    /// comes from its token only and never falls back to the local identity (stdio still
    /// acts as the local identity).
    authenticated: bool,
    shutdown: CancellationToken,
    metrics: metrics::Metrics,
    /// Approvals asked and answered, recipients known, sessions' taint, and the sealed state
    /// stateless clients carry.
    approvals: approval::Approvals,
    /// Each call's arguments against its tool's input schema (compiled schemas cached).
    argument_check: arguments::ArgumentCheck,
    /// Each HTTP upstream's credentials: users' delegated grants, or service authority.
    credentials: Arc<Credentials>,
}

/// What a gateway starts from besides its config.
pub struct GatewayParts {
    /// The values of Portcullis's own environment variables that config lets upstreams
    /// inherit.
    pub inherited: BTreeMap<String, String>,
    /// The policy loaded from config's files (see [`load_policy`]).
    pub policy: PolicyEngine,
    /// The opened evidence log (`None`: no call will run) and the clock.
    pub recorder: Recorder,
    /// The `requestState` key shared by replicas, if config names one.
    pub state_key: Option<Vec<u8>>,
    pub credentials: Arc<Credentials>,
    pub shutdown: CancellationToken,
}

/// How ready one upstream is, for start-up messages and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamStatus {
    Starting,
    Ready { tools: usize, protocol: String },
    Down { reason: String },
}

impl Gateway {
    /// Starts supervising every upstream and watching the policy files.
    pub fn start(config: &Config, parts: GatewayParts) -> Result<Arc<Self>, GatewayError> {
        let GatewayParts {
            inherited,
            policy,
            recorder,
            state_key,
            credentials,
            shutdown,
        } = parts;
        let recorder = recorder.reads_without_evidence(config.evidence.reads_without_evidence);
        let sessions = Arc::new(Sessions::default());
        let handles: Vec<Arc<UpstreamHandle>> = config
            .upstreams
            .iter()
            .map(|spec| {
                UpstreamHandle::new(
                    spec.clone(),
                    &inherited,
                    config.namespacing,
                    Arc::downgrade(&sessions),
                    recorder.clone(),
                    credentials.service_source(spec.name.as_str()),
                )
            })
            .collect();
        let longest_start = config
            .upstreams
            .iter()
            .map(|u| u.start_timeout)
            .max()
            .unwrap_or_default();
        let upstreams =
            upstreams::Upstreams::start(config.namespacing, handles, &shutdown, longest_start * 2);
        let gateway = Arc::new(Self {
            page_size: config.page_size,
            upstreams,
            sessions,
            approvals: approval::Approvals {
                stateless: approval::StatelessApprovals::default(),
                known_recipients: approval::KnownRecipients::default(),
                taints: approval::Taints::default(),
                timeout: config.approval.timeout,
                states: match state_key {
                    Some(key) => StateSealer::with_key(key),
                    None => StateSealer::generate(),
                }
                .map_err(GatewayError::Random)?,
            },
            argument_check: arguments::ArgumentCheck::default(),
            pending: Arc::default(),
            policy: Arc::new(PolicyStore::new(config.policy.clone(), policy)),
            recorder,
            local_identity: Arc::new(config.local_identity.clone()),
            authenticated: config.http.auth.is_some(),
            shutdown,
            metrics: metrics::Metrics::default(),
            credentials,
        });
        gateway.watch_policy();
        Ok(gateway)
    }

    /// Watches the policy files: every reload attempt is recorded, and since a policy change
    /// can change every identity's lists, the clients are told.
    fn watch_policy(self: &Arc<Self>) {
        let store = self.policy.clone();
        let weak = Arc::downgrade(self);
        tokio::spawn(store.watch(
            self.shutdown.child_token(),
            async move |outcome: Result<u64, String>| {
                let Some(gateway) = weak.upgrade() else {
                    return;
                };
                let applied = outcome.is_ok();
                gateway.record_reload("policy", outcome).await;
                if applied {
                    gateway.sessions.broadcast_list_changed().await;
                }
            },
        ));
    }

    /// Waits until every upstream has started or failed once (immediately after that).
    pub(crate) async fn first_settle(&self) {
        self.upstreams.first_settle().await;
    }

    /// The upstreams' credentials (the sign-in pages are served from them).
    pub fn credentials(&self) -> &Arc<Credentials> {
        &self.credentials
    }

    /// Each upstream's name and status, in configuration order.
    pub fn status(&self) -> Vec<(UpstreamName, UpstreamStatus)> {
        self.upstreams.status()
    }

    /// The exposed tools each upstream offers `envelope`, by the same check as `tools/list`;
    /// an upstream that is not ready gives its reason instead.
    pub fn visible_tools(
        &self,
        envelope: &IdentityEnvelope,
    ) -> Vec<(UpstreamName, Result<Vec<String>, String>)> {
        self.upstreams
            .iter()
            .map(|upstream| {
                let tools = match upstream.connection() {
                    None => Err(upstream.unavailable_reason()),
                    Some(connection) => Ok(connection
                        .catalog
                        .load()
                        .tools
                        .iter()
                        .filter(|tool| {
                            self.sees(envelope, upstream, authorize::Exposed::Tool(&tool.name))
                        })
                        .map(|tool| tool.name.to_string())
                        .collect()),
                };
                (upstream.name().clone(), tools)
            })
            .collect()
    }

    /// Waits until every upstream has either started or failed once, up to `limit`.
    pub async fn settle(&self, limit: std::time::Duration) {
        self.upstreams.settle(limit).await;
    }

    /// Stops every upstream and waits (at most `limit`) until each has recorded its stop.
    pub async fn stop(&self, limit: std::time::Duration) {
        self.shutdown.cancel();
        self.upstreams.stopped(limit).await;
    }

    /// Serves one client over this process's stdin and stdout until it disconnects.
    pub async fn serve_stdio(self: &Arc<Self>) -> Result<(), GatewayError> {
        let server = PortcullisServer::new(self.clone());
        let running = server
            .serve_with_ct(
                stdio::StdioTransport::new(tokio::io::stdin(), tokio::io::stdout()),
                self.shutdown.child_token(),
            )
            .await
            .map_err(|e| GatewayError::Client(e.to_string()))?;
        running
            .waiting()
            .await
            .map_err(|e| GatewayError::Client(e.to_string()))?;
        Ok(())
    }
}
