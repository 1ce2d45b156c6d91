//! The approval page's ledger, shared by every replica: approvals waiting for a person
//! outside the client (on the page, or `portcullis approve ID` in a terminal). The page's link
//! may reach another replica than the one that opened the approval, and the identical retry a
//! third: each reads and changes the one row here.
//!
//! Every change is decided by the database: `decide` and `claim` are single conditional
//! updates (only a waiting approval is decided, only an approved one is used, both only while
//! unexpired), so two replicas cannot both decide one or both run its call; `open` runs in a
//! transaction under an advisory lock on the user, so the user's live approval of an action is
//! found rather than doubled and the waiting limit cannot be raced past. Expired and used
//! approvals are ignored by every read and removed when an approval is opened. Which decider may
//! approve (four eyes) and how much of a request is kept are the gateway's rules: this module
//! stores what it is given. Times are Unix seconds by the database's clock, so that an approval
//! expires at the same moment on every replica.

use std::time::Duration;

use tokio_postgres::Row;

use crate::{Store, StoreError, bounded};

/// The database's clock in Unix seconds.
const NOW: &str = "floor(extract(epoch FROM now()))::bigint";

/// The columns a [`LedgerEntry`] is read from, in [`entry`]'s order.
const COLUMNS: &str = "id, fingerprint, user_name, tool, request, not_by, created, expires, state, decided_by, decided_at, used_at";

/// The class of the advisory locks `open` takes on a user (the two-key form: apart from the
/// migrations' single-key lock).
const USER_LOCK_CLASS: i32 = 0x6c65_6467; // "ledg"

/// Where an approval stands, as the ledger keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LedgerStanding {
    Waiting,
    Approved { by: String, at: i64 },
    Declined { by: String, at: i64 },
    Used { at: i64 },
}

/// One approval as the database keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerEntry {
    pub id: String,
    pub fingerprint: String,
    pub user: String,
    pub tool: String,
    pub request: String,
    pub not_by: Option<String>,
    /// Unix seconds, by the database's clock.
    pub created: i64,
    pub expires: i64,
    pub standing: LedgerStanding,
}

/// An approval to open: its id (made by the gateway) and what it is for.
#[derive(Debug, Clone)]
pub struct NewLedgerEntry<'a> {
    pub id: &'a str,
    pub fingerprint: &'a str,
    pub user: &'a str,
    pub tool: &'a str,
    pub request: &'a str,
    pub not_by: Option<&'a str>,
    pub ttl: Duration,
}

/// What `open` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Opened {
    /// The user's live approval of this action, opened before (through any replica).
    Found(LedgerEntry),
    /// A new approval, waiting.
    New(LedgerEntry),
    /// The user already has this many approvals waiting: none was opened.
    TooMany(usize),
}

/// A row as a [`LedgerEntry`]; a standing the schema does not allow is an error.
fn entry(row: &Row) -> Result<LedgerEntry, StoreError> {
    let state: String = row.get(8);
    let by = || row.get::<_, Option<String>>(9).unwrap_or_default();
    let at = || row.get::<_, Option<i64>>(10).unwrap_or_default();
    let standing = match state.as_str() {
        "waiting" => LedgerStanding::Waiting,
        "approved" => LedgerStanding::Approved { by: by(), at: at() },
        "declined" => LedgerStanding::Declined { by: by(), at: at() },
        "used" => LedgerStanding::Used {
            at: row.get::<_, Option<i64>>(11).unwrap_or_default(),
        },
        _ => {
            return Err(StoreError::Failed(
                "an approval in the ledger has a standing this build does not know".to_owned(),
            ));
        }
    };
    Ok(LedgerEntry {
        id: row.get(0),
        fingerprint: row.get(1),
        user: row.get(2),
        tool: row.get(3),
        request: row.get(4),
        not_by: row.get(5),
        created: row.get(6),
        expires: row.get(7),
        standing,
    })
}

fn entries(rows: &[Row]) -> Result<Vec<LedgerEntry>, StoreError> {
    rows.iter().map(entry).collect()
}

impl Store {
    /// The live approval (unexpired, not used) of `user` for the action `fingerprint`:
    /// waiting, approved or declined.
    pub async fn ledger_find(
        &self,
        user: &str,
        fingerprint: &str,
    ) -> Result<Option<LedgerEntry>, StoreError> {
        let client = self.client().await?;
        let row = bounded(client.query_opt(
            &format!(
                "SELECT {COLUMNS} FROM approval_ledger
                 WHERE user_name = $1 AND fingerprint = $2 AND state <> 'used' AND expires > {NOW}"
            ),
            &[&user, &fingerprint],
        ))
        .await?;
        row.as_ref().map(entry).transpose()
    }

    /// Opens `new`, or finds the user's live approval of the same action; refuses when the
    /// user has `waiting_limit` approvals waiting. Under the user's advisory lock, in one
    /// transaction: two replicas opening the same action at once open one approval. Expired
    /// and used approvals are removed first.
    pub async fn ledger_open(
        &self,
        new: &NewLedgerEntry<'_>,
        waiting_limit: usize,
    ) -> Result<Opened, StoreError> {
        let mut client = self.client().await?;
        // Others' dead approvals, skipping any a concurrent statement holds: no wait, and no
        // two replicas pruning the same rows in opposite orders.
        bounded(client.execute(
            &format!(
                "DELETE FROM approval_ledger WHERE id IN (
                     SELECT id FROM approval_ledger WHERE expires <= {NOW} OR state = 'used'
                     FOR UPDATE SKIP LOCKED)"
            ),
            &[],
        ))
        .await?;
        let transaction = bounded(client.transaction()).await?;
        bounded(transaction.execute(
            "SELECT pg_advisory_xact_lock($1, hashtext($2))",
            &[&USER_LOCK_CLASS, &new.user],
        ))
        .await?;
        // This user's, under their lock: an expired approval of this action is not found, and
        // makes room for a new one.
        bounded(transaction.execute(
            &format!(
                "DELETE FROM approval_ledger
                 WHERE user_name = $1 AND (expires <= {NOW} OR state = 'used')"
            ),
            &[&new.user],
        ))
        .await?;
        let found = bounded(transaction.query_opt(
            &format!(
                "SELECT {COLUMNS} FROM approval_ledger WHERE user_name = $1 AND fingerprint = $2"
            ),
            &[&new.user, &new.fingerprint],
        ))
        .await?;
        if let Some(found) = found {
            bounded(transaction.commit()).await?;
            return Ok(Opened::Found(entry(&found)?));
        }
        let waiting = bounded(transaction.query_one(
            "SELECT count(*) FROM approval_ledger WHERE user_name = $1 AND state = 'waiting'",
            &[&new.user],
        ))
        .await?
        .get::<_, i64>(0);
        let waiting = usize::try_from(waiting).unwrap_or(usize::MAX);
        if waiting >= waiting_limit {
            bounded(transaction.commit()).await?;
            return Ok(Opened::TooMany(waiting));
        }
        let opened = bounded(transaction.query_one(
            &format!(
                "INSERT INTO approval_ledger
                     (id, fingerprint, user_name, tool, request, not_by, created, expires, state, opened_by)
                 VALUES ($1, $2, $3, $4, $5, $6, {NOW}, {NOW} + $7, 'waiting', $8)
                 RETURNING {COLUMNS}"
            ),
            &[
                &new.id,
                &new.fingerprint,
                &new.user,
                &new.tool,
                &new.request,
                &new.not_by,
                &i64::try_from(new.ttl.as_secs()).unwrap_or(i64::MAX / 2),
                &self.replica,
            ],
        ))
        .await?;
        let opened = entry(&opened)?;
        bounded(transaction.commit()).await?;
        Ok(Opened::New(opened))
    }

    /// The live approval `id`.
    pub async fn ledger_get(&self, id: &str) -> Result<Option<LedgerEntry>, StoreError> {
        let client = self.client().await?;
        let row = bounded(client.query_opt(
            &format!(
                "SELECT {COLUMNS} FROM approval_ledger
                 WHERE id = $1 AND state <> 'used' AND expires > {NOW}"
            ),
            &[&id],
        ))
        .await?;
        row.as_ref().map(entry).transpose()
    }

    /// Every live approval, oldest first.
    pub async fn ledger_list(&self) -> Result<Vec<LedgerEntry>, StoreError> {
        let client = self.client().await?;
        let rows = bounded(client.query(
            &format!(
                "SELECT {COLUMNS} FROM approval_ledger
                 WHERE state <> 'used' AND expires > {NOW} ORDER BY opened_at, id"
            ),
            &[],
        ))
        .await?;
        entries(&rows)
    }

    /// Decides the waiting approval `id` (approved or declined, by `by`), in one conditional
    /// statement: only a waiting, unexpired approval is decided, so of two deciders at once
    /// one decides and the other finds nothing (`None`: unknown, expired or already decided).
    /// Whether `by` may approve it is the caller's to check first, on what it read: the
    /// fields that rule reads (user, not_by) never change once opened.
    pub async fn ledger_decide(
        &self,
        id: &str,
        approve: bool,
        by: &str,
    ) -> Result<Option<LedgerEntry>, StoreError> {
        let state = if approve { "approved" } else { "declined" };
        let client = self.client().await?;
        let row = bounded(client.query_opt(
            &format!(
                "UPDATE approval_ledger SET state = $2, decided_by = $3, decided_at = {NOW}
                 WHERE id = $1 AND state = 'waiting' AND expires > {NOW}
                 RETURNING {COLUMNS}"
            ),
            &[&id, &state, &by],
        ))
        .await?;
        row.as_ref().map(entry).transpose()
    }

    /// Claims the approved approval `id` for the action `fingerprint`: true at most once,
    /// whichever replicas try at once (one conditional update; the approval is then used),
    /// and only for that action, while unexpired.
    pub async fn ledger_claim(&self, id: &str, fingerprint: &str) -> Result<bool, StoreError> {
        let client = self.client().await?;
        let claimed = bounded(client.query_opt(
            &format!(
                "UPDATE approval_ledger SET state = 'used', used_at = {NOW}
                 WHERE id = $1 AND fingerprint = $2 AND state = 'approved' AND expires > {NOW}
                 RETURNING id"
            ),
            &[&id, &fingerprint],
        ))
        .await?;
        Ok(claimed.is_some())
    }
}
