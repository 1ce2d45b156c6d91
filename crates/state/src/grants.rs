//! Delegated grants shared by every replica: one row per user and upstream, sealed with the
//! credential store key, read afresh at every use (no replica keeps a copy that could outlive
//! a removal), and refreshed under the row's lock.

use std::sync::Arc;
use std::time::Duration;

use portcullis_credentials::{CredentialKey, Grant, StoreKey, open_grant, seal_grant};

use crate::{OPERATION_LIMIT, Store, StoreError, bounded, prepared};

/// How long a refresh waits for another replica's refresh of the same grant. The server gives
/// up on its own before [`OPERATION_LIMIT`] ends the wait here, so a connection is never
/// returned to the pool still queued behind the lock.
const LOCK_WAIT: Duration = Duration::from_secs(4);

/// The delegated grants in the database, sealed and opened with the credential store's key
/// (the same on every replica). Clone it freely.
#[derive(Clone)]
pub struct SharedGrants {
    store: Store,
    key: Arc<StoreKey>,
}

impl std::fmt::Debug for SharedGrants {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedGrants")
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

/// What [`SharedGrants::update`] does with the grant it read, once the caller has looked.
#[derive(Debug)]
pub enum GrantChange {
    /// Leave it (another replica refreshed it meanwhile, or nothing needed doing).
    Keep,
    /// Write this one in its place (refreshed).
    Replace(Grant),
    /// Delete it (the authorization server refused it).
    Remove,
}

impl Store {
    /// The delegated grants in this database, under the credential store key `key`.
    pub fn grants(&self, key: StoreKey) -> SharedGrants {
        SharedGrants {
            store: self.clone(),
            key: Arc::new(key),
        }
    }
}

impl SharedGrants {
    /// `whose` grant as the database holds it now.
    pub async fn get(&self, whose: &CredentialKey) -> Result<Option<Grant>, StoreError> {
        let client = self.store.client().await?;
        let statement = prepared(
            &client,
            "SELECT sealed FROM delegated_grant WHERE issuer = $1 AND subject = $2 AND upstream = $3",
        )
        .await?;
        let row = bounded(client.query_opt(
            &statement,
            &[&whose.issuer, &whose.subject, &whose.upstream],
        ))
        .await?;
        row.map(|row| self.open(whose, row.get(0))).transpose()
    }

    /// Stores `grant` for `whose`, replacing any grant it had.
    pub async fn put(&self, whose: &CredentialKey, grant: &Grant) -> Result<(), StoreError> {
        let sealed = seal_grant(&self.key, whose, grant)?;
        let client = self.store.client().await?;
        let statement = prepared(
            &client,
            "INSERT INTO delegated_grant (issuer, subject, upstream, sealed, written_by)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (issuer, subject, upstream)
             DO UPDATE SET sealed = excluded.sealed, written_by = excluded.written_by, written_at = now()",
        )
        .await?;
        bounded(client.execute(
            &statement,
            &[
                &whose.issuer,
                &whose.subject,
                &whose.upstream,
                &sealed,
                &self.store.replica,
            ],
        ))
        .await
        .map(drop)
    }

    /// Deletes `whose` grant; whether there was one. Every replica's next use finds none.
    pub async fn remove(&self, whose: &CredentialKey) -> Result<bool, StoreError> {
        let client = self.store.client().await?;
        let statement = prepared(
            &client,
            "DELETE FROM delegated_grant WHERE issuer = $1 AND subject = $2 AND upstream = $3",
        )
        .await?;
        let deleted = bounded(client.execute(
            &statement,
            &[&whose.issuer, &whose.subject, &whose.upstream],
        ))
        .await?;
        Ok(deleted > 0)
    }

    /// Reads `whose` grant under its row's lock, hands it to `change` (which may refresh it
    /// at the authorization server meanwhile), and applies what `change` decided before the
    /// lock is released; `change`'s value, or `None` (and `change` not called) when there is
    /// no grant.
    ///
    /// INVARIANT: replicas refreshing one grant at once take turns, and each reads the row
    /// only once it holds the lock, so the second sees what the first wrote (and keeps it)
    /// instead of spending a rotated refresh token a second time. A refresh whose result
    /// cannot be written is rolled back: the caller's call fails, nothing half-written stays.
    pub async fn update<T, F, Fut>(
        &self,
        whose: &CredentialKey,
        change: F,
    ) -> Result<Option<T>, StoreError>
    where
        F: FnOnce(Grant) -> Fut,
        Fut: Future<Output = (GrantChange, T)>,
    {
        let mut client = self.store.client().await?;
        let transaction = bounded(client.transaction()).await?;
        bounded(transaction.batch_execute(&format!(
            "SET LOCAL lock_timeout = {}",
            LOCK_WAIT.as_millis()
        )))
        .await?;
        let row = bounded(transaction.query_opt(
            "SELECT sealed FROM delegated_grant
             WHERE issuer = $1 AND subject = $2 AND upstream = $3 FOR UPDATE",
            &[&whose.issuer, &whose.subject, &whose.upstream],
        ))
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let grant = self.open(whose, row.get(0))?;
        let (decided, value) = change(grant).await;
        match decided {
            GrantChange::Keep => {}
            GrantChange::Replace(grant) => {
                let sealed = seal_grant(&self.key, whose, &grant)?;
                bounded(transaction.execute(
                    "UPDATE delegated_grant SET sealed = $4, written_by = $5, written_at = now()
                     WHERE issuer = $1 AND subject = $2 AND upstream = $3",
                    &[
                        &whose.issuer,
                        &whose.subject,
                        &whose.upstream,
                        &sealed,
                        &self.store.replica,
                    ],
                ))
                .await?;
            }
            GrantChange::Remove => {
                bounded(transaction.execute(
                    "DELETE FROM delegated_grant WHERE issuer = $1 AND subject = $2 AND upstream = $3",
                    &[&whose.issuer, &whose.subject, &whose.upstream],
                ))
                .await?;
            }
        }
        bounded(transaction.commit()).await?;
        Ok(Some(value))
    }

    fn open(&self, whose: &CredentialKey, sealed: &[u8]) -> Result<Grant, StoreError> {
        Ok(open_grant(&self.key, whose, sealed)?)
    }
}

// `OPERATION_LIMIT` bounds every statement; the lock wait must end first (see `LOCK_WAIT`).
const _: () = assert!(LOCK_WAIT.as_millis() < OPERATION_LIMIT.as_millis());
