//! What stateless clients have been exposed to, shared by every replica: a client without a
//! session reaches any replica, and content an untrusted upstream sent it through one must
//! make its side effects need approval through all. Keys are the gateway's (user and client).

use crate::{Store, StoreError, bounded, prepared};

impl Store {
    /// Notes that content from the untrusted `upstream` reached the client `key`.
    pub async fn taint_client(&self, key: &str, upstream: &str) -> Result<(), StoreError> {
        let client = self.client().await?;
        let statement = prepared(
            &client,
            "INSERT INTO client_taint (holder_key, upstream) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        )
        .await?;
        bounded(client.execute(&statement, &[&key, &upstream]))
            .await
            .map(drop)
    }

    /// The untrusted upstreams whose content reached the client `key`, in name order.
    pub async fn client_taint(&self, key: &str) -> Result<Vec<String>, StoreError> {
        let client = self.client().await?;
        let statement = prepared(
            &client,
            "SELECT upstream FROM client_taint WHERE holder_key = $1 ORDER BY upstream",
        )
        .await?;
        let rows = bounded(client.query(&statement, &[&key])).await?;
        Ok(rows.iter().map(|row| row.get(0)).collect())
    }

    /// Notes that calls of the client `key` reached `hosts`.
    pub async fn remember_client_hosts(
        &self,
        key: &str,
        hosts: &[String],
    ) -> Result<(), StoreError> {
        let client = self.client().await?;
        let statement = prepared(
            &client,
            "INSERT INTO client_host (holder_key, host)
             SELECT $1, host FROM unnest($2::text[]) AS host ON CONFLICT DO NOTHING",
        )
        .await?;
        bounded(client.execute(&statement, &[&key, &hosts]))
            .await
            .map(drop)
    }

    /// Whether a call of the client `key` reached `host` before.
    pub async fn client_reached(&self, key: &str, host: &str) -> Result<bool, StoreError> {
        let client = self.client().await?;
        let statement = prepared(
            &client,
            "SELECT 1 FROM client_host WHERE holder_key = $1 AND host = $2",
        )
        .await?;
        let row = bounded(client.query_opt(&statement, &[&key, &host])).await?;
        Ok(row.is_some())
    }
}
