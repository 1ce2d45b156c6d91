//! The schema's versions and how a database is brought up to date.

use crate::{StoreError, bounded};

/// Every migration, in order: version, SQL. A shipped migration is never edited (a database
/// that applied it would not apply it again); a change is a new one.
pub(crate) const MIGRATIONS: &[(i32, &str)] = &[
    (
        1,
        include_str!("../migrations/0001_stateless_approvals.sql"),
    ),
    (2, include_str!("../migrations/0002_replicas.sql")),
    (
        3,
        include_str!("../migrations/0003_shared_session_state.sql"),
    ),
    (4, include_str!("../migrations/0004_evidence.sql")),
    (5, include_str!("../migrations/0005_approval_ledger.sql")),
    (6, include_str!("../migrations/0006_pins.sql")),
];

/// The schema version this build brings a database to.
pub const SCHEMA_VERSION: i32 = 6;

/// The first version with the replicas' evidence tables.
pub(crate) const EVIDENCE_SINCE: i32 = 4;

/// The advisory lock migrations hold (transaction-scoped): "portcull" in ASCII, so that
/// another program's locks on the same database are unlikely to collide with it.
const MIGRATION_LOCK: i64 = 0x706f_7274_6375_6c6c;

/// The schema version the database is at (0: none), without changing anything.
pub(crate) async fn version(client: &tokio_postgres::Client) -> Result<i32, StoreError> {
    let exists =
        bounded(client.query_one("SELECT to_regclass('portcullis_schema') IS NOT NULL", &[]))
            .await?;
    if !exists.get::<_, bool>(0) {
        return Ok(0);
    }
    let row = bounded(client.query_one(
        "SELECT coalesce(max(version), 0) FROM portcullis_schema",
        &[],
    ))
    .await?;
    Ok(row.get(0))
}

/// Applies the migrations the database lacks, in one transaction under [`MIGRATION_LOCK`]:
/// replicas starting together wait for each other, and the second finds the work done. A
/// failure rolls everything back, so a schema is never half-applied.
/// Each shipped version the database has not applied is applied, not only those above its
/// highest: migrations developed side by side may land in either order.
pub(crate) async fn migrate(client: &mut tokio_postgres::Client) -> Result<(), StoreError> {
    let transaction = bounded(client.transaction()).await?;
    bounded(transaction.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])).await?;
    bounded(transaction.batch_execute(
        "CREATE TABLE IF NOT EXISTS portcullis_schema (
             version integer PRIMARY KEY,
             applied_at timestamptz NOT NULL DEFAULT now()
         )",
    ))
    .await?;
    let applied: Vec<i32> =
        bounded(transaction.query("SELECT version FROM portcullis_schema", &[]))
            .await?
            .iter()
            .map(|row| row.get(0))
            .collect();
    if let Some(found) = applied
        .iter()
        .copied()
        .filter(|v| *v > SCHEMA_VERSION)
        .max()
    {
        return Err(StoreError::SchemaTooNew {
            found,
            known: SCHEMA_VERSION,
        });
    }
    for (version, sql) in MIGRATIONS
        .iter()
        .filter(|(version, _)| !applied.contains(version))
    {
        bounded(transaction.batch_execute(sql)).await?;
        bounded(transaction.execute(
            "INSERT INTO portcullis_schema (version) VALUES ($1)",
            &[version],
        ))
        .await?;
    }
    bounded(transaction.commit()).await
}
