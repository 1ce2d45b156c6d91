//! The recipients each user has approved a call to, shared by every replica: a recipient
//! approved through one is not new on another.

use std::collections::BTreeSet;

use crate::{Store, StoreError, bounded};

impl Store {
    /// Which of `recipients` `user` has approved a call to before.
    pub async fn known_recipients(
        &self,
        user: &str,
        recipients: &[String],
    ) -> Result<BTreeSet<String>, StoreError> {
        let client = self.client().await?;
        let rows = bounded(client.query(
            "SELECT recipient FROM known_recipient WHERE user_name = $1 AND recipient = ANY($2)",
            &[&user, &recipients],
        ))
        .await?;
        Ok(rows.iter().map(|row| row.get(0)).collect())
    }

    /// Remembers that `user` approved a call to `recipients`.
    pub async fn remember_recipients(
        &self,
        user: &str,
        recipients: &[String],
    ) -> Result<(), StoreError> {
        let client = self.client().await?;
        bounded(client.execute(
            "INSERT INTO known_recipient (user_name, recipient)
             SELECT $1, recipient FROM unnest($2::text[]) AS recipient
             ON CONFLICT DO NOTHING",
            &[&user, &recipients],
        ))
        .await
        .map(drop)
    }
}
