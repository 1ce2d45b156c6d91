//! The replicas of one deployment, each with the policy it serves.

use std::time::Duration;

use crate::{Store, StoreError, bounded};

/// A replica, seen recently, that serves another policy than the one announcing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtherPolicy {
    pub replica: String,
    pub policy_digest: String,
}

impl Store {
    /// Notes that this replica serves the policy `policy_digest` now, and returns the other
    /// replicas seen within `recent` that serve another one. Replicas not seen for a day are
    /// forgotten.
    pub async fn announce(
        &self,
        policy_digest: &str,
        recent: Duration,
    ) -> Result<Vec<OtherPolicy>, StoreError> {
        let client = self.client().await?;
        bounded(client.execute(
            "INSERT INTO replica (name, policy_digest, seen_at) VALUES ($1, $2, now())
             ON CONFLICT (name) DO UPDATE SET policy_digest = excluded.policy_digest, seen_at = now()",
            &[&self.replica, &policy_digest],
        ))
        .await?;
        bounded(client.execute(
            "DELETE FROM replica WHERE seen_at < now() - interval '1 day'",
            &[],
        ))
        .await?;
        let rows = bounded(client.query(
            "SELECT name, policy_digest FROM replica
             WHERE name <> $1 AND policy_digest <> $2 AND seen_at > now() - make_interval(secs => $3)
             ORDER BY name",
            &[&self.replica, &policy_digest, &recent.as_secs_f64()],
        ))
        .await?;
        Ok(rows
            .iter()
            .map(|row| OtherPolicy {
                replica: row.get(0),
                policy_digest: row.get(1),
            })
            .collect())
    }
}
