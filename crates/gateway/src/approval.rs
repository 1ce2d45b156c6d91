//! The approval stage: a person asked, in their own client, right before a side effect, with a
//! specific change request bound to that exact action.
//!
//! The request says what will happen (tool and arguments, a long value as its two ends with the
//! size and digest of what is between, secret-named ones hidden, every address and link whole,
//! each path resolved), acting as whom, where, to whom it sends, whether it can be
//! undone, and why approval is needed (the policies, and untrusted content the session read).
//! The form has one required yes/no field with no default: only an accept whose content says
//! `approve: true` approves. When a narrow pattern of calls like this one can be offered
//! (`approval/scope.rs`), a second field lets the person choose that the answer also covers
//! those for the rest of the session; a later call it covers runs without asking. Declined, cancelled, unanswered within the timeout, a client that
//! cannot be asked, or anything else: the call does not run.
//!
//! An approval is bound to a fingerprint of the action (identity, upstream, tool, pinned
//! definition, arguments, the digest of the policy text). A stateless client carries a sealed reference to
//! an entry of [`StatelessApprovals`]; each entry runs its call at most once, and a retry of
//! the same request after the call ran gets the recorded outcome instead of a second run.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use rmcp::model::{ElicitResult, ElicitationAction};

mod facts;
mod kept;
pub(crate) mod ledger;
pub(crate) mod quirks;
mod recipients;
mod request;
mod scope;
mod stateless;

pub use facts::{Reach, call_facts, reach};
pub(crate) use facts::{addresses_in, urls_in};
pub(crate) use recipients::KnownRecipients;
use request::{APPROVE_FIELD, SCOPE_FIELD};
pub(crate) use request::{ChangeRequest, Fingerprinted, NamedPath, fingerprint};
pub(crate) use scope::{Asker, CallShape, Chosen, Holder, Offer, ScopeId, ScopedAnswers};
pub(crate) use stateless::{Claim, StatelessApprovals, unavailable};

/// What the gateway keeps of people's answers and of what sessions read: the one owner of
/// approval state.
pub(crate) struct Approvals {
    /// Approvals handed to stateless clients, waiting for their answers.
    pub stateless: StatelessApprovals,
    /// Recipients each user has had approved, so that a new one can be told apart.
    pub known_recipients: KnownRecipients,
    /// The answers people let cover calls like the one they approved, for a session.
    pub scoped: ScopedAnswers,
    /// Which untrusted upstreams each session (or stateless user and client) has read.
    pub taints: Taints,
    /// How long a person has to answer an approval (or sign-in) request.
    pub timeout: Duration,
    /// Seals the `requestState` a stateless client carries between rounds (approvals,
    /// sign-ins and an upstream's own rounds), bound to the request it belongs to.
    pub states: crate::state::StateSealer,
    /// Approvals waiting for a person on the approval page or in a terminal.
    pub ledger: ledger::Ledger,
    /// How long a client that declared form elicitation has to answer before the person is
    /// sent to the page instead.
    pub form_wait: Duration,
    /// Where the approval page answers (`http://localhost:PORT`), once it listens; unset when
    /// there is no page.
    pub page: std::sync::OnceLock<String>,
    /// The passkeys enrolled to approve on the page (`approvers.json` of the state
    /// directory).
    pub approvers_file: std::path::PathBuf,
}

impl Approvals {
    /// Nothing asked yet; `requestState` sealed with `state_key`, or a key of this process's
    /// own; stateless approvals, the approval page's ledger, known recipients, and stateless
    /// clients' scoped answers and taint in `shared`, the database replicas share, or in this
    /// process (the ledger, recipients and answers kept in the state directory). `Err`: no key could be made.
    pub(crate) fn new(
        config: &portcullis_config::Config,
        state_key: Option<Vec<u8>>,
        shared: Option<portcullis_state::Store>,
    ) -> Result<Self, String> {
        let known_recipients = match &shared {
            Some(store) => KnownRecipients::Shared(store.clone()),
            None => {
                KnownRecipients::open(config.evidence.file.with_file_name("known-recipients.json"))
            }
        };
        let scoped = match &shared {
            Some(store) => ScopedAnswers::shared(config.approval.scope, store.clone()),
            None => ScopedAnswers::open(
                config.evidence.file.with_file_name("scoped-answers.json"),
                config.approval.scope,
            ),
        };
        let taints = match &shared {
            Some(store) => Taints::shared(store.clone()),
            None => Taints::default(),
        };
        let ledger = match &shared {
            Some(store) => ledger::Ledger::shared(store.clone()),
            None => ledger::Ledger::beside(&config.evidence.file),
        };
        Ok(Self {
            stateless: match shared {
                Some(store) => StatelessApprovals::Shared(store),
                None => StatelessApprovals::InProcess(stateless::InProcess::default()),
            },
            known_recipients,
            scoped,
            taints,
            timeout: config.approval.timeout,
            ledger,
            form_wait: config.approval.form_wait,
            page: std::sync::OnceLock::new(),
            approvers_file: config.evidence.file.with_file_name("approvers.json"),
            states: match state_key {
                Some(key) => crate::state::StateSealer::with_key(key),
                None => crate::state::StateSealer::generate(),
            }?,
        })
    }
}

/// The key of Portcullis's own question in a stateless client's `inputRequests`.
pub(crate) const APPROVAL_KEY: &str = "portcullis.approval";

/// How the person answered, or why they could not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Answer {
    /// Yes, for this call only or also for the session scope that was offered.
    Approved(Chosen),
    /// Not asked: a session-scoped answer the person gave before covers this call.
    Covered(ScopeId),
    /// Accepted the form without saying yes.
    NotConfirmed,
    /// Accepted with content that is not the form asked for (other members, another type, a
    /// scope that was not offered).
    Invalid,
    Declined,
    Cancelled,
    TimedOut(Duration),
    /// The client cannot show a form (it did not declare form elicitation on this request).
    Unavailable,
    /// Asking failed (the client went away, or answered with an error).
    Failed(String),
}

impl Answer {
    /// The answer in an `elicitation/create` result (or a stateless retry's response) to the
    /// form made with `offer`.
    pub(crate) fn from_result(result: &ElicitResult, offer: &Offer) -> Self {
        match result.action {
            ElicitationAction::Accept => match result.content.as_ref() {
                None | Some(serde_json::Value::Null) => Answer::NotConfirmed,
                Some(serde_json::Value::Object(content)) if content.is_empty() => {
                    Answer::NotConfirmed
                }
                Some(serde_json::Value::Object(content)) => Self::from_content(content, offer),
                Some(_) => Answer::Invalid,
            },
            ElicitationAction::Decline => Answer::Declined,
            _ => Answer::Cancelled,
        }
    }

    /// Exactly the form asked for: `approve`, a boolean, and `scope` only when the form had it,
    /// one of the values it offered. Anything beside them (extra members, a string "true", a
    /// scope not offered) is not an answer to this form, so it approves nothing: what a person
    /// saw and what an agent filled in must not differ.
    fn from_content(content: &serde_json::Map<String, serde_json::Value>, offer: &Offer) -> Self {
        if content
            .keys()
            .any(|key| key != APPROVE_FIELD && key != SCOPE_FIELD)
        {
            return Answer::Invalid;
        }
        let chosen = match content.get(SCOPE_FIELD) {
            None => Some(Chosen::ThisCall),
            Some(value) => value.as_str().and_then(|value| offer.choose(value)),
        };
        match (
            content.get(APPROVE_FIELD).map(serde_json::Value::as_bool),
            chosen,
        ) {
            (Some(Some(true)), Some(chosen)) => Answer::Approved(chosen),
            (Some(Some(false)), Some(_)) => Answer::NotConfirmed,
            _ => Answer::Invalid,
        }
    }

    /// Whether this answer approves (only the approval stage turns that into a `Granted`).
    pub(crate) fn approves(&self) -> bool {
        matches!(self, Answer::Approved(_) | Answer::Covered(_))
    }

    /// The answer as recorded in the evidence.
    pub(crate) fn as_str(&self) -> &'static str {
        match self {
            Answer::Approved(Chosen::ThisCall) => "approved",
            Answer::Approved(Chosen::Session(_)) => "approved_for_session",
            Answer::Covered(_) => "scoped",
            Answer::NotConfirmed => "not_confirmed",
            Answer::Invalid => "invalid",
            Answer::Declined => "declined",
            Answer::Cancelled => "cancelled",
            Answer::TimedOut(_) => "timed_out",
            Answer::Unavailable => "unavailable",
            Answer::Failed(_) => "failed",
        }
    }

    /// The tool error the client gets when the answer is not a yes.
    pub(crate) fn refusal(&self, tool: &str) -> String {
        let why = match self {
            Answer::Approved(_) | Answer::Covered(_) => return format!("`{tool}` was approved"),
            Answer::NotConfirmed => {
                "the approval form was submitted without a yes".to_owned()
            }
            Answer::Invalid => {
                "the approval answer does not match the form it was asked with (only `approve`, a yes or no, may be in it, and `scope` when the form offered one)".to_owned()
            }
            Answer::Declined => "the person declined it".to_owned(),
            Answer::Cancelled => "the person cancelled the approval request".to_owned(),
            Answer::TimedOut(limit) => format!(
                "nobody answered the approval request within {} s",
                limit.as_secs()
            ),
            Answer::Unavailable => "it needs a person's approval and this client cannot show approval requests (it did not declare form elicitation)".to_owned(),
            Answer::Failed(error) => format!("the approval request could not be asked ({error})"),
        };
        format!("portcullis did not run `{tool}`: {why}; the call did not run")
    }
}

/// How a stateless client's taint key starts (`PortcullisServer::taint_key`: user and
/// client); a session-era session's is its id, this process's own.
pub(crate) const CLIENT_TAINT_KEY: &str = "client ";

/// The untrusted upstreams whose content each session has received, by a key the caller
/// makes: a session-era session's id, or a stateless client's user and client (stateless
/// requests share no session, so their taint is kept per user and client, which can only
/// over-taint). With shared state, a stateless client's is also kept in the database: it may
/// reach any replica next.
#[derive(Default)]
pub(crate) struct Taints {
    by_key: Mutex<HashMap<String, BTreeSet<String>>>,
    /// The hosts each key's calls reached (allowed, or approved by the person), by the same key.
    hosts_read: Mutex<HashMap<String, BTreeSet<String>>>,
    shared: Option<portcullis_state::Store>,
}

impl Taints {
    /// Taints whose stateless clients' are kept in `store` too, shared by the replicas.
    pub(crate) fn shared(store: portcullis_state::Store) -> Self {
        Self {
            shared: Some(store),
            ..Self::default()
        }
    }

    /// The database `key`'s taint is kept in, if it is a stateless client's and kept in one.
    fn shared_for(&self, key: &str) -> Option<&portcullis_state::Store> {
        self.shared
            .as_ref()
            .filter(|_| key.starts_with(CLIENT_TAINT_KEY))
    }

    /// Notes that `upstream`'s content is about to reach `key`. `Err` when a stateless
    /// client's taint could not be kept where every replica reads it: the caller withholds
    /// the content (fail closed: otherwise another replica would let its side effects run
    /// unasked).
    pub(crate) fn mark(&self, key: &str, upstream: &str) -> Result<(), String> {
        if let Ok(mut keys) = self.by_key.lock() {
            let new = keys
                .entry(key.to_owned())
                .or_default()
                .insert(upstream.to_owned());
            if new {
                tracing::info!(
                    upstream,
                    "the session received content from an untrusted upstream; its side effects now need approval"
                );
            }
        }
        match self.shared_for(key) {
            Some(store) => portcullis_state::wait(store.taint_client(key, upstream)).map_err(|error| {
                tracing::warn!(upstream, %error, "the client's taint could not be kept in the shared state; the content is withheld");
                format!("what upstream `{upstream}` sent is withheld: portcullis could not note in its shared state that this client read it (the log says why)")
            }),
            None => Ok(()),
        }
    }

    /// Forgets `key`'s taint and hosts: its session ended.
    pub(crate) fn forget(&self, key: &str) {
        if let Ok(mut keys) = self.by_key.lock() {
            keys.remove(key);
        }
        if let Ok(mut keys) = self.hosts_read.lock() {
            keys.remove(key);
        }
    }

    /// Notes that a call of `key` that reaches `hosts` was let run.
    pub(crate) fn remember_hosts(&self, key: &str, hosts: impl IntoIterator<Item = String>) {
        let hosts: Vec<String> = hosts.into_iter().collect();
        if let Some(store) = self.shared_for(key)
            && !hosts.is_empty()
            && let Err(error) = portcullis_state::wait(store.remember_client_hosts(key, &hosts))
        {
            tracing::warn!(%error, "the hosts a client reached could not be kept in the shared state; they stay new elsewhere");
        }
        if let Ok(mut keys) = self.hosts_read.lock() {
            keys.entry(key.to_owned()).or_default().extend(hosts);
        }
    }

    /// Whether a call of `key` reached `host` before. A poisoned table or an unreadable
    /// database knows none (fail closed: every host is new).
    pub(crate) fn has_read(&self, key: &str, host: &str) -> bool {
        let here = self
            .hosts_read
            .lock()
            .ok()
            .and_then(|keys| keys.get(key).map(|hosts| hosts.contains(host)))
            .unwrap_or(false);
        here || self.shared_for(key).is_some_and(|store| {
            portcullis_state::wait(store.client_reached(key, host)).unwrap_or_else(|error| {
                tracing::warn!(%error, "the hosts a client reached cannot be read; the host counts as new");
                false
            })
        })
    }

    /// The untrusted upstreams `key` has read, in name order. A poisoned table, or a database
    /// that cannot be read, counts as tainted by everything unknown (fail closed).
    pub(crate) fn of(&self, key: &str) -> Vec<String> {
        let mut upstreams: BTreeSet<String> = match self.by_key.lock() {
            Ok(keys) => keys.get(key).cloned().unwrap_or_default(),
            Err(_) => return vec!["(unknown)".to_owned()],
        };
        if let Some(store) = self.shared_for(key) {
            match portcullis_state::wait(store.client_taint(key)) {
                Ok(shared) => upstreams.extend(shared),
                Err(error) => {
                    tracing::warn!(%error, "the client's taint cannot be read from the shared state; it counts as tainted");
                    upstreams.insert("(unknown)".to_owned());
                }
            }
        }
        upstreams.into_iter().collect()
    }
}

#[cfg(test)]
use facts::{recipients, target_tenant};
#[cfg(test)]
mod tests;
