//! The running mediator: the owners a request reads (upstreams, the decider, evidence,
//! approvals, sessions) built from config, and what outlives one client.

use std::collections::BTreeMap;
use std::sync::Arc;

use portcullis_config::{Config, StateBackend};
use portcullis_core::{IdentityEnvelope, UpstreamName};
use portcullis_policy::PolicyEngine;
use tokio_util::sync::CancellationToken;

use crate::authorize::{Decider, Exposed};
use crate::credentials::Credentials;
use crate::error::GatewayError;
use crate::evidence::Evidence;
use crate::instances::InstanceParts;
use crate::metrics::Metrics;
use crate::pins::{PinBook, Review};
use crate::policy::PolicyStore;
use crate::recorder::Recorder;
use crate::sandbox::{ContainmentReport, containment_reports};
use crate::sessions::Sessions;
use crate::upstream::Exposure;
use crate::upstreams::{UpstreamStatus, Upstreams};
use crate::{approval, arguments, pending};

/// How often a replica tells the others which policy it serves; one not heard from for three
/// of these is no longer compared.
const REPLICA_HEARTBEAT: std::time::Duration = std::time::Duration::from_secs(10);

/// The running mediator: configured upstreams and what sessions share.
pub struct Gateway {
    pub(crate) page_size: usize,
    /// Whether an identity's tool list is the search tools (`tool_search.rs`).
    pub(crate) tool_search: portcullis_config::ToolSearch,
    /// What each identity may see of each list, decided once per policy version and catalog.
    pub(crate) visibility: crate::listing::Visibility,
    /// The upstreams, how exposed names map onto them, and their supervisors.
    pub(crate) upstreams: Arc<Upstreams>,
    pub(crate) sessions: Arc<Sessions>,
    pub(crate) pending: Arc<pending::PendingCalls>,
    /// Decides what each identity sees and may call. It holds who sessions act as when no
    /// bearer token names them (stdio, unauthenticated loopback HTTP), and whether HTTP
    /// sessions must present one: an HTTP request's identity then comes from its token only
    /// and never falls back to the local identity (stdio still acts as the local identity).
    pub(crate) decider: Decider,
    /// Where every call's intent and outcome are recorded, and the clock they are stamped
    /// with (the one clock every comparison with the time of day reads).
    pub(crate) evidence: Evidence,
    pub(crate) shutdown: CancellationToken,
    /// Approvals asked and answered, recipients known, sessions' taint, and the sealed state
    /// stateless clients carry.
    pub(crate) approvals: approval::Approvals,
    /// Each call's arguments against its tool's input schema (compiled schemas cached).
    pub(crate) argument_check: arguments::ArgumentCheck,
    /// Each HTTP upstream's credentials: users' delegated grants, or service authority.
    pub(crate) credentials: Arc<Credentials>,
    /// The pins every upstream's listings are compared with.
    pub(crate) pins: Arc<PinBook>,
    /// How each upstream is contained, as `portcullis check` reports it, worked out once at
    /// start (from config and the inherited environment, which the gateway does not keep):
    /// what the console shows.
    pub(crate) containment: Vec<(UpstreamName, ContainmentReport)>,
}

/// The tools an upstream shows an identity, each with what cleaning removed from its texts and
/// why it is flagged, if anything; or why the upstream is not ready.
pub type Visible = Result<Vec<(String, Option<String>)>, String>;

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
    /// The pins every upstream's listings are compared with (see [`crate::pins::PinBook`]).
    pub pins: Arc<PinBook>,
    pub shutdown: CancellationToken,
}

impl Gateway {
    /// Starts supervising every upstream and watching the policy files, with the state
    /// replicas share kept in this process (`[state] backend = "local"`).
    pub fn start(config: &Config, parts: GatewayParts) -> Result<Arc<Self>, GatewayError> {
        Self::start_with(config, parts, None)
    }

    /// As [`Gateway::start`], with the state replicas share in `store`, the database
    /// `[state] backend = "postgres"` names (connected and migrated by the caller).
    pub fn start_shared(
        config: &Config,
        parts: GatewayParts,
        store: portcullis_state::Store,
    ) -> Result<Arc<Self>, GatewayError> {
        Self::start_with(config, parts, Some(store))
    }

    fn start_with(
        config: &Config,
        parts: GatewayParts,
        shared: Option<portcullis_state::Store>,
    ) -> Result<Arc<Self>, GatewayError> {
        // INVARIANT: shared state is used exactly when config asks for it, and with the key
        // every replica shares: without it, fingerprints and sealed states would differ per
        // replica, and a retry reaching another replica would never find its approval.
        let shared_arguments = match (&config.state, &shared, &parts.state_key) {
            (StateBackend::Local, None, _) => None,
            (StateBackend::Postgres { .. }, Some(_), Some(key)) => {
                Some(portcullis_audit::SharedArgumentKey::derive(key))
            }
            (StateBackend::Postgres { url_env, .. }, _, _) => {
                return Err(GatewayError::State(format!(
                    "config keeps shared state in the database named by `{url_env}`, but no database connection and shared requestState key were handed to the gateway"
                )));
            }
            (StateBackend::Local, Some(_), _) => {
                return Err(GatewayError::State(
                    "a database was handed to the gateway, but config keeps state local".to_owned(),
                ));
            }
        };
        let GatewayParts {
            inherited,
            policy,
            recorder,
            state_key,
            credentials,
            pins,
            shutdown,
        } = parts;
        let recorder = recorder.reads_without_evidence(config.evidence.reads_without_evidence);
        let containment = containment_reports(config, &inherited);
        let sessions = Arc::new(Sessions::default());
        let exposure = Exposure {
            namespacing: config.namespacing,
            text_limit: config.text_limit,
            upstreams: config.upstreams.iter().map(|u| u.name.clone()).collect(),
            pins: pins.clone(),
        };
        let instance_parts = InstanceParts {
            inherited,
            exposure,
            sessions: Arc::downgrade(&sessions),
            recorder: recorder.clone(),
            credentials: credentials.clone(),
        };
        let upstreams = Upstreams::start(&config.upstreams, instance_parts, &shutdown);
        let policy = Arc::new(PolicyStore::new(config.policy.clone(), policy));
        let metrics = Arc::new(Metrics::default());
        let gateway = Arc::new(Self {
            page_size: config.page_size,
            tool_search: config.tool_search,
            visibility: crate::listing::Visibility::default(),
            decider: Decider {
                policy: policy.clone(),
                upstreams: upstreams.clone(),
                credentials: credentials.clone(),
                clock: recorder.clock(),
                metrics: metrics.clone(),
                local_identity: Arc::new(config.local_identity.clone()),
                authenticated: config.http.auth.is_some(),
            },
            evidence: Evidence {
                recorder,
                metrics,
                policy,
                shared_arguments,
            },
            upstreams,
            sessions,
            approvals: approval::Approvals::new(config, state_key, shared.clone())
                .map_err(GatewayError::Random)?,
            argument_check: arguments::ArgumentCheck::default(),
            pending: Arc::default(),
            shutdown,
            credentials,
            pins,
            containment,
        });
        gateway.watch_policy();
        gateway.watch_pins();
        if let Some(store) = shared {
            gateway.watch_replicas(store);
        }
        Ok(gateway)
    }

    /// Tells the other replicas, through the shared state, which policy this one serves
    /// (its content digest), at start and every [`REPLICA_HEARTBEAT`], and logs each change in
    /// which replicas serve another: a call is decided by the policy of the replica it
    /// reaches, so a replica left on an old policy must not go unnoticed.
    fn watch_replicas(self: &Arc<Self>, store: portcullis_state::Store) {
        let policy = self.evidence.policy.clone();
        let shutdown = self.shutdown.child_token();
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(REPLICA_HEARTBEAT);
            let mut reported = Vec::new();
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = ticker.tick() => {}
                }
                let ours = policy.current().digest().to_owned();
                match store.announce(&ours, REPLICA_HEARTBEAT * 3).await {
                    Ok(others) if others != reported => {
                        for other in &others {
                            tracing::warn!(
                                replica = other.replica,
                                their_policy = other.policy_digest,
                                our_policy = ours,
                                "another replica serves a different policy: calls are decided by whichever replica they reach"
                            );
                        }
                        if others.is_empty() {
                            tracing::info!(policy = ours, "every replica serves the same policy");
                        }
                        reported = others;
                    }
                    Ok(_) => {}
                    Err(error) => {
                        tracing::warn!(%error, "this replica's policy could not be announced to the others");
                    }
                }
            }
        });
    }

    /// Watches the pins file: when another process (`portcullis pins accept`) replaces it, the
    /// pins are read again (recorded as a reload; a file that cannot be read leaves the pins in
    /// force) and every running upstream's lists are read again and compared with them.
    /// Under shared state it watches the database's pins instead: another replica's
    /// acceptance, or pins readable again after an outage, has every listing compared anew.
    fn watch_pins(self: &Arc<Self>) {
        let pins = self.pins.clone();
        let weak = Arc::downgrade(self);
        let shutdown = self.shutdown.child_token();
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(crate::policy::POLL);
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = ticker.tick() => {}
                }
                let Some(outcome) = pins.reload_if_replaced() else {
                    continue;
                };
                let Some(gateway) = weak.upgrade() else {
                    return;
                };
                let outcome = outcome
                    .map(|()| gateway.evidence.policy.version())
                    .map_err(|error| error.to_string());
                let applied = outcome.is_ok();
                gateway.evidence.record_reload("pins", outcome).await;
                if applied {
                    gateway.upstreams.refresh_catalogs().await;
                }
            }
        });
    }

    /// The pins listings are compared with.
    pub fn pins(&self) -> &PinBook {
        &self.pins
    }

    /// Each configured upstream's listing compared with its pins, or why it is not ready.
    pub fn pin_reviews(&self) -> Vec<(UpstreamName, Result<Review, String>)> {
        self.upstreams
            .iter()
            .map(|upstream| {
                let review = match upstream.connection() {
                    None => Err(upstream.unavailable_reason()),
                    Some(connection) => Ok(connection.catalog.load().review.clone()),
                };
                (upstream.name().clone(), review)
            })
            .collect()
    }

    /// Watches the policy files: every reload attempt is recorded, and since a policy change
    /// can change every identity's lists, the clients are told.
    fn watch_policy(self: &Arc<Self>) {
        let store = self.evidence.policy.clone();
        let weak = Arc::downgrade(self);
        tokio::spawn(store.watch(
            self.shutdown.child_token(),
            async move |outcome: Result<u64, String>| {
                let Some(gateway) = weak.upgrade() else {
                    return;
                };
                let applied = outcome.is_ok();
                gateway.evidence.record_reload("policy", outcome).await;
                if applied {
                    gateway.sessions.broadcast_list_changed().await;
                }
            },
        ));
    }

    /// The upstreams' credentials (the sign-in pages are served from them).
    pub fn credentials(&self) -> &Arc<Credentials> {
        &self.credentials
    }

    /// Each upstream's name and status, in configuration order.
    pub fn status(&self) -> Vec<(UpstreamName, UpstreamStatus)> {
        self.upstreams.status()
    }

    /// Each upstream's name and status as `envelope` reaches it, once its own instances (of
    /// per-user upstreams) have started or failed.
    pub async fn status_as(
        &self,
        envelope: &IdentityEnvelope,
    ) -> Vec<(UpstreamName, UpstreamStatus)> {
        self.upstreams.ready_for(envelope).await;
        self.upstreams.status_as(envelope)
    }

    /// The exposed tools each upstream offers `envelope`, by the same check as `tools/list`
    /// (a per-user upstream's own instance for `envelope` is started and waited for), each
    /// with what cleaning removed from its texts, if anything; an upstream that is not ready
    /// gives its reason instead.
    pub async fn visible_tools(&self, envelope: &IdentityEnvelope) -> Vec<(UpstreamName, Visible)> {
        self.upstreams.ready_for(envelope).await;
        self.upstreams
            .serving(envelope)
            .iter()
            .map(|upstream| {
                let tools = match upstream.connection() {
                    None => Err(upstream.unavailable_reason()),
                    Some(connection) => {
                        let catalog = connection.catalog.load();
                        Ok(catalog
                            .tools
                            .iter()
                            .filter(|tool| {
                                self.decider
                                    .sees(envelope, upstream, Exposed::Tool(&tool.name))
                            })
                            .map(|tool| {
                                let name = tool.name.as_ref();
                                let notes: Vec<String> = [
                                    catalog
                                        .cleaned
                                        .get(name)
                                        .map(|removed| format!("its texts cleaned: {removed}")),
                                    catalog.flagged.get(name).cloned(),
                                ]
                                .into_iter()
                                .flatten()
                                .collect();
                                (
                                    name.to_owned(),
                                    (!notes.is_empty()).then(|| notes.join("; ")),
                                )
                            })
                            .collect())
                    }
                };
                (upstream.name().clone(), tools)
            })
            .collect()
    }

    /// Whether this process can serve calls now: its evidence log is open (a call whose intent
    /// cannot be recorded does not run) and its shared state answers. `Err` says which not.
    pub async fn readiness(&self) -> Result<(), &'static str> {
        if self.evidence.recorder.log().is_none() {
            return Err("no evidence log");
        }
        self.approvals.stateless.reachable().await
    }

    /// Records, at start, the outcome of every call whose intent is in the log and whose
    /// outcome is not (see `Evidence::record_lost_outcomes`); how many.
    pub async fn record_lost_outcomes(&self) -> Result<usize, String> {
        self.evidence.record_lost_outcomes().await
    }

    /// Waits until every upstream has either started or failed once, up to `limit`.
    pub async fn settle(&self, limit: std::time::Duration) {
        self.upstreams.settle(limit).await;
    }

    /// Stops every upstream and waits (at most `limit`) until each has recorded its stop.
    pub async fn stop(&self, limit: std::time::Duration) {
        self.shutdown.cancel();
        self.upstreams.stopped(limit).await;
        // What was only written is synced, and the head file names the last record.
        if let Err(error) = self.evidence.recorder.flush().await {
            tracing::error!(%error, "the evidence log could not be flushed at stop");
        }
    }
}
