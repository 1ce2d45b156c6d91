//! Approvals handed to stateless clients, and the once-only claim of each: in this process's
//! memory (one replica), or in PostgreSQL (`[state] backend = "postgres"`), where every
//! replica sees the same claims, so an approved call runs once however its retries are spread.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use portcullis_state::{Store, StoredClaim};
use rmcp::model::CallToolResult;

/// How long a stateless approval's outcome is kept for a retry of the same request.
const OUTCOME_KEPT: Duration = Duration::from_secs(600);

/// What a stateless retry's reference to an approval finds.
#[derive(Debug)]
pub(crate) enum Claim {
    /// The approval is waiting for this answer; its call may now run (once).
    Open,
    /// Its call already ran: the recorded result, when the call finished in one answer.
    Ran(Option<Box<CallToolResult>>),
    /// Its call is running now.
    Running,
    /// No such approval (expired, or never issued), or it was for another action.
    Unknown,
    /// The shared state could not be asked: the call does not run (fail closed).
    Unavailable,
}

/// Approvals handed to stateless clients, by the id sealed into their `requestState`.
pub(crate) enum StatelessApprovals {
    /// In this process: one replica.
    InProcess(InProcess),
    /// In the database every replica shares.
    Shared(Store),
}

impl StatelessApprovals {
    /// Whether approvals can be opened and claimed now (for readiness): always in process;
    /// with shared state, whether the database answers (the detail is logged).
    pub(crate) async fn reachable(&self) -> Result<(), &'static str> {
        match self {
            Self::InProcess(_) => Ok(()),
            Self::Shared(store) => store.ping().await.map_err(|error| {
                tracing::warn!(%error, "not ready: the shared state does not answer");
                "the shared state is unreachable"
            }),
        }
    }

    /// Opens an approval for the action `fingerprint`, answerable until `ttl` from now; its
    /// id. `Err`: the shared state is unreachable, so nobody is asked (the call does not run).
    pub(crate) async fn open(&self, fingerprint: &str, ttl: Duration) -> Result<u64, String> {
        match self {
            Self::InProcess(approvals) => Ok(approvals.open(fingerprint, ttl)),
            Self::Shared(store) => store.open_approval(fingerprint, ttl).await.map_err(|error| {
                tracing::error!(%error, "a stateless approval could not be opened in the shared state; the call does not run");
                unavailable()
            }),
        }
    }

    /// Claims approval `id` for the action `fingerprint`. A waiting approval is claimed at
    /// most once, by one replica: it turns running, and whatever the answer, it cannot be
    /// answered again.
    pub(crate) async fn claim(&self, id: u64, fingerprint: &str) -> Claim {
        match self {
            Self::InProcess(approvals) => approvals.claim(id, fingerprint),
            Self::Shared(store) => {
                match store.claim_approval(id, fingerprint, OUTCOME_KEPT).await {
                    Ok(StoredClaim::Open) => Claim::Open,
                    Ok(StoredClaim::Running) => Claim::Running,
                    Ok(StoredClaim::Unknown) => Claim::Unknown,
                    // A result the database holds but that is no longer a tool result (written by
                    // another version) is replayed as nothing, never run again.
                    Ok(StoredClaim::Ran(result)) => Claim::Ran(
                        result
                            .and_then(|value| serde_json::from_value(value).ok())
                            .map(Box::new),
                    ),
                    Err(error) => {
                        tracing::error!(%error, approval = id, "a stateless approval could not be claimed in the shared state; the call does not run");
                        Claim::Unavailable
                    }
                }
            }
        }
    }

    /// Notes how approval `id`'s call ended: its result when it finished in this answer. A
    /// failure to note it leaves the claim running: a retry is refused, never run again.
    pub(crate) async fn finish(&self, id: u64, result: Option<CallToolResult>) {
        match self {
            Self::InProcess(approvals) => approvals.finish(id, result),
            Self::Shared(store) => {
                let result = result.and_then(|result| serde_json::to_value(result).ok());
                if let Err(error) = store.finish_approval(id, result).await {
                    tracing::error!(%error, approval = id, "how a stateless approval's call ended could not be noted in the shared state; its retries will be refused");
                }
            }
        }
    }
}

/// What the client is told when the shared state cannot be reached (the detail is logged).
pub(crate) fn unavailable() -> String {
    "the shared approval state is unreachable".to_owned()
}

enum State {
    Waiting,
    Running,
    Ran(Option<Box<CallToolResult>>),
}

struct Entry {
    fingerprint: String,
    expires: Instant,
    state: State,
}

/// The approvals of one process.
#[derive(Default)]
pub(crate) struct InProcess {
    next: AtomicU64,
    entries: Mutex<HashMap<u64, Entry>>,
}

impl InProcess {
    fn open(&self, fingerprint: &str, ttl: Duration) -> u64 {
        let id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        if let Ok(mut entries) = self.entries.lock() {
            let now = Instant::now();
            entries.retain(|_, entry| entry.expires > now);
            entries.insert(
                id,
                Entry {
                    fingerprint: fingerprint.to_owned(),
                    expires: now + ttl,
                    state: State::Waiting,
                },
            );
        }
        id
    }

    fn claim(&self, id: u64, fingerprint: &str) -> Claim {
        let Ok(mut entries) = self.entries.lock() else {
            return Claim::Unknown;
        };
        let Some(entry) = entries.get_mut(&id) else {
            return Claim::Unknown;
        };
        if entry.fingerprint != fingerprint || entry.expires <= Instant::now() {
            return Claim::Unknown;
        }
        match &entry.state {
            State::Waiting => {
                entry.state = State::Running;
                entry.expires = Instant::now() + OUTCOME_KEPT;
                Claim::Open
            }
            State::Running => Claim::Running,
            State::Ran(result) => Claim::Ran(result.clone()),
        }
    }

    fn finish(&self, id: u64, result: Option<CallToolResult>) {
        if let Ok(mut entries) = self.entries.lock()
            && let Some(entry) = entries.get_mut(&id)
        {
            entry.state = State::Ran(result.map(Box::new));
        }
    }
}
