//! The ledger in the database replicas share (`portcullis_state::ledger`): each operation is
//! one call to the store, waited for on this thread. The store decides what must happen once
//! (a decision, a claim); the rules are applied here, before it is asked: who may approve
//! (four eyes), how much of a request is kept, how many approvals a user may have waiting.

use portcullis_state::{LedgerEntry, LedgerStanding, NewLedgerEntry, Opened, Store, StoreError};

use super::{
    DecidedBy, LedgerError, NewPending, Pending, Standing, WAITING_PER_USER, kept_request, new_id,
};

/// Waits for `operation`; a database that cannot answer is the ledger's error, its detail
/// logged (it names no connection string: the store's errors never hold one).
fn waited<T>(operation: impl Future<Output = Result<T, StoreError>>) -> Result<T, LedgerError> {
    portcullis_state::wait(operation).map_err(|error| {
        tracing::warn!(%error, "the approval ledger in the shared state cannot be read or kept; nothing is approved from it");
        LedgerError::Shared(error.to_string())
    })
}

/// Seconds as the ledger shows them (the database's clock is never before the epoch).
fn seconds(at: i64) -> u64 {
    u64::try_from(at).unwrap_or(0)
}

impl From<LedgerEntry> for Pending {
    fn from(entry: LedgerEntry) -> Self {
        Pending {
            id: entry.id,
            fingerprint: entry.fingerprint,
            user: entry.user,
            tool: entry.tool,
            request: entry.request,
            not_by: entry.not_by,
            created: seconds(entry.created),
            expires: seconds(entry.expires),
            standing: match entry.standing {
                LedgerStanding::Waiting => Standing::Waiting,
                LedgerStanding::Approved { by, at } => Standing::Approved {
                    by,
                    at: seconds(at),
                },
                LedgerStanding::Declined { by, at } => Standing::Declined {
                    by,
                    at: seconds(at),
                },
                LedgerStanding::Used { at } => Standing::Used { at: seconds(at) },
            },
        }
    }
}

pub(super) fn find(
    store: &Store,
    user: &str,
    fingerprint: &str,
) -> Result<Option<Pending>, LedgerError> {
    Ok(waited(store.ledger_find(user, fingerprint))?.map(Pending::from))
}

/// Opens `new` (its request kept as the file would keep it), or finds the user's live
/// approval of the same action, opened through any replica.
pub(super) fn open(store: &Store, new: NewPending<'_>) -> Result<Pending, LedgerError> {
    let id = new_id().map_err(|error| LedgerError::Unwritable {
        file: "the shared database".to_owned(),
        error,
    })?;
    let request = kept_request(new.request);
    let entry = NewLedgerEntry {
        id: &id,
        fingerprint: new.fingerprint,
        user: new.user,
        tool: new.tool,
        request: &request,
        not_by: new.not_by.as_deref(),
        ttl: new.ttl,
    };
    match waited(store.ledger_open(&entry, WAITING_PER_USER))? {
        Opened::Found(entry) | Opened::New(entry) => Ok(entry.into()),
        Opened::TooMany(waiting) => Err(LedgerError::TooMany(waiting)),
    }
}

pub(super) fn get(store: &Store, id: &str) -> Result<Option<Pending>, LedgerError> {
    Ok(waited(store.ledger_get(id))?.map(Pending::from))
}

pub(super) fn list(store: &Store) -> Result<Vec<Pending>, LedgerError> {
    Ok(waited(store.ledger_list())?
        .into_iter()
        .map(Pending::from)
        .collect())
}

/// Decides the waiting approval `id`. The decider's right to approve is checked on the
/// approval as read (its user and four-eyes subject never change once opened); the decision
/// itself is the store's conditional update, so of two replicas deciding at once one does
/// and the other is told it no longer waits.
pub(super) fn decide(
    store: &Store,
    id: &str,
    approve: bool,
    decider: &DecidedBy,
) -> Result<Pending, LedgerError> {
    let not_waiting = || LedgerError::NotWaiting(id.to_owned());
    let entry = get(store, id)?
        .filter(|entry| entry.standing == Standing::Waiting)
        .ok_or_else(not_waiting)?;
    if let Some(refused) = approve.then(|| decider.may_not_approve(&entry)).flatten() {
        return Err(refused);
    }
    waited(store.ledger_decide(id, approve, &decider.by()))?
        .map(Pending::from)
        .ok_or_else(not_waiting)
}

pub(super) fn claim(store: &Store, id: &str, fingerprint: &str) -> Result<bool, LedgerError> {
    waited(store.ledger_claim(id, fingerprint))
}
