//! The recipients each user has approved a call to, shared by every replica: a recipient
//! approved through one is not new on another.

use std::collections::BTreeSet;

use crate::{Store, StoreError, bounded, prepared};

impl Store {
    /// Which of `recipients` `user` has approved a call to before.
    pub async fn known_recipients(
        &self,
        user: &str,
        recipients: &[String],
    ) -> Result<BTreeSet<String>, StoreError> {
        let client = self.client().await?;
        let statement = prepared(
            &client,
            "SELECT recipient FROM known_recipient WHERE user_name = $1 AND recipient = ANY($2)",
        )
        .await?;
        let rows = bounded(client.query(&statement, &[&user, &recipients])).await?;
        Ok(rows.iter().map(|row| row.get(0)).collect())
    }

    /// Remembers that `user` approved a call to `recipients`.
    pub async fn remember_recipients(
        &self,
        user: &str,
        recipients: &[String],
    ) -> Result<(), StoreError> {
        let client = self.client().await?;
        let statement = prepared(
            &client,
            "INSERT INTO known_recipient (user_name, recipient)
             SELECT $1, recipient FROM unnest($2::text[]) AS recipient
             ON CONFLICT DO NOTHING",
        )
        .await?;
        bounded(client.execute(&statement, &[&user, &recipients]))
            .await
            .map(drop)
    }
}
