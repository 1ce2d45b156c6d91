//! The pins in force for each upstream, shared by every replica: one row per upstream holding
//! the gateway's pins document for it (JSON text this crate does not interpret) and a version
//! that grows at every write.
//!
//! First sight is insert-if-absent, so the first replica to list an upstream pins it and every
//! later one compares with those pins instead of writing its own. An acceptance reads and
//! rewrites the row under its lock, so two acceptances at once (through two replicas, or
//! `portcullis pins accept` beside them) both stay.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::{OPERATION_LIMIT, Store, StoreError, bounded};

/// How long an acceptance waits for another one of the same upstream. The server gives up
/// before [`OPERATION_LIMIT`] ends the wait here (as for grants).
const LOCK_WAIT: Duration = Duration::from_secs(4);

/// One upstream's pins as the database holds them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredPins {
    /// The pins document, as the gateway wrote it.
    pub document: String,
    /// Grows by one at every write of the row.
    pub version: i64,
}

impl Store {
    /// Every upstream's pins version: what a replica compares to notice another's write
    /// without reading every document.
    pub async fn pins_versions(&self) -> Result<BTreeMap<String, i64>, StoreError> {
        let client = self.client().await?;
        let rows =
            bounded(client.query("SELECT upstream, version FROM upstream_pins", &[])).await?;
        Ok(rows.iter().map(|row| (row.get(0), row.get(1))).collect())
    }

    /// Every upstream's pins.
    pub async fn all_pins(&self) -> Result<BTreeMap<String, StoredPins>, StoreError> {
        let client = self.client().await?;
        let rows = bounded(client.query(
            "SELECT upstream, pins::text, version FROM upstream_pins",
            &[],
        ))
        .await?;
        Ok(rows
            .iter()
            .map(|row| {
                let stored = StoredPins {
                    document: row.get(1),
                    version: row.get(2),
                };
                (row.get(0), stored)
            })
            .collect())
    }

    /// `upstream`'s pins, if it has any.
    pub async fn upstream_pins(&self, upstream: &str) -> Result<Option<StoredPins>, StoreError> {
        let client = self.client().await?;
        let row = bounded(client.query_opt(
            "SELECT pins::text, version FROM upstream_pins WHERE upstream = $1",
            &[&upstream],
        ))
        .await?;
        Ok(row.map(|row| StoredPins {
            document: row.get(0),
            version: row.get(1),
        }))
    }

    /// Records `document` as `upstream`'s pins only if it has none (first sight, or a pins
    /// file seeding the database): whether it was recorded. `false`: another replica's pins
    /// were there first, and they stay.
    pub async fn pin_first(&self, upstream: &str, document: &str) -> Result<bool, StoreError> {
        let client = self.client().await?;
        let inserted = bounded(client.execute(
            "INSERT INTO upstream_pins (upstream, pins, written_by)
             VALUES ($1, $2::text::json, $3)
             ON CONFLICT (upstream) DO NOTHING",
            &[&upstream, &document, &self.replica],
        ))
        .await?;
        Ok(inserted > 0)
    }

    /// Reads `upstream`'s pins under its row's lock (`None`: it has none yet), hands them to
    /// `change`, and writes the document `change` returns before the lock is released.
    /// Returns `change`'s value and the version written, or `change`'s error (nothing is
    /// written).
    ///
    /// INVARIANT: acceptances of one upstream at once take turns, and each reads the row only
    /// once it holds the lock, so the second changes what the first wrote instead of writing
    /// over it. An upstream without a row gets one inside this transaction first: a second
    /// acceptance waits on that insert as it would on the lock.
    pub async fn change_pins<T, E>(
        &self,
        upstream: &str,
        change: impl FnOnce(Option<&str>) -> Result<(String, T), E>,
    ) -> Result<Result<(T, i64), E>, StoreError> {
        let mut client = self.client().await?;
        let transaction = bounded(client.transaction()).await?;
        bounded(transaction.batch_execute(&format!(
            "SET LOCAL lock_timeout = {}",
            LOCK_WAIT.as_millis()
        )))
        .await?;
        let created = bounded(transaction.execute(
            "INSERT INTO upstream_pins (upstream, pins, version, written_by)
             VALUES ($1, '{}'::json, 0, $2)
             ON CONFLICT (upstream) DO NOTHING",
            &[&upstream, &self.replica],
        ))
        .await?;
        let row = bounded(transaction.query_one(
            "SELECT pins::text FROM upstream_pins WHERE upstream = $1 FOR UPDATE",
            &[&upstream],
        ))
        .await?;
        let before: String = row.get(0);
        let (document, value) = match change((created == 0).then_some(before.as_str())) {
            Ok(changed) => changed,
            // Dropping the transaction rolls it back: the row created for it goes too.
            Err(error) => return Ok(Err(error)),
        };
        let row = bounded(transaction.query_one(
            "UPDATE upstream_pins
             SET pins = $2::text::json, version = version + 1, written_by = $3, written_at = now()
             WHERE upstream = $1
             RETURNING version",
            &[&upstream, &document, &self.replica],
        ))
        .await?;
        let version: i64 = row.get(0);
        bounded(transaction.commit()).await?;
        Ok(Ok((value, version)))
    }
}

// `OPERATION_LIMIT` bounds every statement; the lock wait must end first (see `LOCK_WAIT`).
const _: () = assert!(LOCK_WAIT.as_millis() < OPERATION_LIMIT.as_millis());
