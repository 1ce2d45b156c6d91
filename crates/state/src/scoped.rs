//! The session-scoped answers of stateless clients, shared by every replica: a client without
//! a session reaches any replica, and the answer a person gave through one covers the calls
//! like it through the others. The pattern is the gateway's (JSON here); whether it covers a
//! call is the gateway's to decide.

use crate::{Store, StoreError, bounded, prepared};

/// A scoped answer as it is kept.
#[derive(Debug, Clone, PartialEq)]
pub struct ScopedAnswer {
    pub id: String,
    /// The stateless user and client that chose it.
    pub holder_key: String,
    /// The user whose calls it covers.
    pub user: String,
    /// The gateway's pattern.
    pub scope: serde_json::Value,
    /// The approved call it came from.
    pub fingerprint: String,
    /// Unix seconds, by the gateway's clock.
    pub approved_at: i64,
    pub expires_at: i64,
}

impl Store {
    /// The answers `holder_key` chose for `user` that are unexpired at `now`, oldest first.
    pub async fn scoped_answers(
        &self,
        holder_key: &str,
        user: &str,
        now: i64,
    ) -> Result<Vec<ScopedAnswer>, StoreError> {
        let client = self.client().await?;
        let statement = prepared(
            &client,
            "SELECT id, scope, fingerprint, approved_at, expires_at FROM scoped_answer
             WHERE holder_key = $1 AND user_name = $2 AND expires_at > $3
             ORDER BY approved_at, id",
        )
        .await?;
        let rows = bounded(client.query(&statement, &[&holder_key, &user, &now])).await?;
        Ok(rows
            .iter()
            .map(|row| ScopedAnswer {
                id: row.get(0),
                holder_key: holder_key.to_owned(),
                user: user.to_owned(),
                scope: row.get(1),
                fingerprint: row.get(2),
                approved_at: row.get(3),
                expires_at: row.get(4),
            })
            .collect())
    }

    /// Keeps `answer`; answers expired at its `approved_at` are removed. An id kept before is
    /// an error (the answer is not kept: the person is asked again, never less).
    pub async fn keep_scoped_answer(&self, answer: &ScopedAnswer) -> Result<(), StoreError> {
        let client = self.client().await?;
        let statement =
            prepared(&client, "DELETE FROM scoped_answer WHERE expires_at <= $1").await?;
        bounded(client.execute(&statement, &[&answer.approved_at])).await?;
        let statement = prepared(
            &client,
            "INSERT INTO scoped_answer
                 (id, holder_key, user_name, scope, fingerprint, approved_at, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .await?;
        bounded(client.execute(
            &statement,
            &[
                &answer.id,
                &answer.holder_key,
                &answer.user,
                &answer.scope,
                &answer.fingerprint,
                &answer.approved_at,
                &answer.expires_at,
            ],
        ))
        .await
        .map(drop)
    }
}
