//! Stateless approvals and their once-only claims, shared by every replica.

use std::time::Duration;

use crate::{Store, StoreError, bounded, prepared};

/// What a retry's reference to an approval finds in the database.
#[derive(Debug, Clone, PartialEq)]
pub enum StoredClaim {
    /// This claim is the one: the approval was waiting, and its call may now run (once).
    Open,
    /// Its call already ran: the recorded result, when the call finished in one answer.
    Ran(Option<serde_json::Value>),
    /// Another claim is running its call now (or its replica stopped while it ran).
    Running,
    /// No such approval (expired, or never issued), or it was for another action.
    Unknown,
}

impl Store {
    /// Opens an approval of the action `fingerprint`, answerable for `ttl`; its id. Approvals
    /// that expired unclaimed, and claims past the time their outcome is kept, are removed.
    pub async fn open_approval(&self, fingerprint: &str, ttl: Duration) -> Result<u64, StoreError> {
        let client = self.client().await?;
        let statement = prepared(
            &client,
            "DELETE FROM stateless_approval a WHERE a.expires_at < now() AND NOT EXISTS (
                 SELECT 1 FROM approval_claim c WHERE c.approval_id = a.id AND c.kept_until > now())",
        )
        .await?;
        bounded(client.execute(&statement, &[])).await?;
        let statement = prepared(
            &client,
            "INSERT INTO stateless_approval (fingerprint, opened_by, expires_at)
             VALUES ($1, $2, now() + make_interval(secs => $3)) RETURNING id",
        )
        .await?;
        let row = bounded(client.query_one(
            &statement,
            &[&fingerprint, &self.replica, &ttl.as_secs_f64()],
        ))
        .await?;
        u64::try_from(row.get::<_, i64>(0))
            .map_err(|_| StoreError::Failed("the database handed out a negative id".to_owned()))
    }

    /// Claims approval `id` for the action `fingerprint`. The insert is the claim: the
    /// primary key lets one claim in, ever, so exactly one replica runs the call; a retry
    /// finds the outcome (kept for `keep`) or that it is still running.
    pub async fn claim_approval(
        &self,
        id: u64,
        fingerprint: &str,
        keep: Duration,
    ) -> Result<StoredClaim, StoreError> {
        let Ok(id) = i64::try_from(id) else {
            return Ok(StoredClaim::Unknown);
        };
        let client = self.client().await?;
        let statement = prepared(
            &client,
            "INSERT INTO approval_claim (approval_id, fingerprint, claimed_by, kept_until)
             SELECT id, fingerprint, $3, now() + make_interval(secs => $4)
             FROM stateless_approval
             WHERE id = $1 AND fingerprint = $2 AND expires_at > now()
             ON CONFLICT DO NOTHING RETURNING approval_id",
        )
        .await?;
        let claimed = bounded(client.query_opt(
            &statement,
            &[&id, &fingerprint, &self.replica, &keep.as_secs_f64()],
        ))
        .await?;
        if claimed.is_some() {
            return Ok(StoredClaim::Open);
        }
        let statement = prepared(
            &client,
            "SELECT finished, result FROM approval_claim
             WHERE approval_id = $1 AND fingerprint = $2 AND kept_until > now()",
        )
        .await?;
        let earlier = bounded(client.query_opt(&statement, &[&id, &fingerprint])).await?;
        Ok(match earlier {
            None => StoredClaim::Unknown,
            Some(row) if row.get::<_, bool>(0) => StoredClaim::Ran(row.get(1)),
            Some(_) => StoredClaim::Running,
        })
    }

    /// Notes how approval `id`'s call ended: its result when it finished in one answer.
    pub async fn finish_approval(
        &self,
        id: u64,
        result: Option<serde_json::Value>,
    ) -> Result<(), StoreError> {
        let Ok(id) = i64::try_from(id) else {
            return Ok(());
        };
        let client = self.client().await?;
        let statement = prepared(
            &client,
            "UPDATE approval_claim SET finished = true, result = $2 WHERE approval_id = $1",
        )
        .await?;
        bounded(client.execute(&statement, &[&id, &result]))
            .await
            .map(drop)
    }
}
