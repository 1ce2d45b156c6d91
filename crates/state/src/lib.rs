//! Portcullis's shared state in PostgreSQL, for several replicas serving one deployment.
//!
//! The key design decision: the database, not a replica, decides what must happen once. An
//! approved stateless call runs only on the replica whose claim the database accepted (a
//! primary key, so a second claim inserts nothing), whichever replica each retry reaches.
//! Nothing here decides policy or talks MCP: the gateway hands in fingerprints and results
//! as plain values. Delegated grants are kept sealed with the credential store key
//! (`portcullis_credentials::seal_grant`): no token is ever in the database in the clear, and
//! a refresh holds the grant's row lock so a rotating refresh token is spent once. Known
//! recipients, and stateless clients' scoped answers and taint, are kept here too: such a
//! client has no session, so no replica of its own. So is the approval page's ledger
//! (`ledger.rs`): an approval opened through one replica is decided on the page or in a
//! terminal through another and claimed by the identical retry through a third, each decision
//! and claim one conditional statement so that it happens once. The pins in force for each
//! upstream (`pins.rs`) are here too, as the gateway's documents: first sight is
//! insert-if-absent (the first replica's pins win) and an acceptance rewrites the row under its
//! lock. Each use reads the database: no replica keeps a copy that could hide what another wrote.
//! Each replica's evidence chain is copied here too (`evidence.rs`), line for
//! line as its log holds it, before a record is acknowledged: the bytes and their verifier are
//! `portcullis-audit`'s, this crate only stores them.
//!
//! The schema is versioned (`migrations/NNNN_*.sql`, compiled in) and brought up to date by
//! [`Store::connect`] in one transaction under an advisory lock, so replicas starting together
//! apply each migration once. A database whose schema is newer than this build knows is
//! refused rather than used.
//!
//! Fail closed: every operation is bounded in time, and an unreachable database or a failed
//! statement is an error the caller turns into "the call did not run" (or "asked again",
//! "tainted", "withheld": never into more than a single process would allow).
#![forbid(unsafe_code)]

mod approvals;
mod evidence;
mod grants;
mod ledger;
mod migrate;
mod pins;
mod recipients;
mod replicas;
mod scoped;
mod taint;

use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::NoTls;
use tokio_postgres::config::SslMode;
use tokio_postgres_rustls::MakeRustlsConnect;

pub use approvals::StoredClaim;
pub use evidence::{ChainReport, EvidenceCopier};
pub use grants::{GrantChange, SharedGrants};
pub use ledger::{LedgerEntry, LedgerStanding, NewLedgerEntry, Opened};
pub use migrate::SCHEMA_VERSION;
pub use pins::StoredPins;
pub use replicas::OtherPolicy;
pub use scoped::ScopedAnswer;

/// How long any one operation (a pooled connection, a statement) may take: past it, the
/// operation fails and the call it guards does not run.
const OPERATION_LIMIT: Duration = Duration::from_secs(5);

/// Connections one replica keeps at most.
const POOL_SIZE: usize = 8;

/// What went wrong. No variant carries the connection string or any part of it.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The connection string does not parse (its text is not repeated: it holds a password).
    #[error("the database connection string is not a valid PostgreSQL URL or key=value string")]
    InvalidUrl,
    /// A certificate authority for the database was given, but the connection string does
    /// not ask for TLS: the connection would be in the clear, which whoever gave the CA did
    /// not mean.
    #[error(
        "a certificate authority for the database is set (`[state] ca_file`), but the connection string does not ask for TLS: add `sslmode=require` to it"
    )]
    TlsNotAsked,
    /// No connection within the limit, or the server refused it.
    #[error("the database is unreachable: {0}")]
    Unreachable(String),
    /// A statement failed or took too long.
    #[error("the database refused an operation: {0}")]
    Failed(String),
    /// A replica's evidence could not be copied, or its log and its copy disagree.
    #[error("the evidence copy in the database: {0}")]
    Evidence(String),
    /// The schema was migrated by a newer Portcullis.
    #[error(
        "the database schema is at version {found}, newer than this portcullis knows ({known}); run the newer portcullis"
    )]
    SchemaTooNew { found: i32, known: i32 },
    /// A stored grant does not open (another key, altered, moved), or one cannot be sealed.
    #[error(transparent)]
    Grant(#[from] portcullis_credentials::SealError),
}

/// How connections are made when the connection string asks for TLS (`sslmode=require`):
/// the client config, whose verifier checks the server's certificate and name (the caller
/// builds it: the system's roots plus the private CA it was given). Without `sslmode=require`
/// connections are in the clear, as on a private network or a unix socket.
pub struct Tls {
    client: rustls::ClientConfig,
    /// Whether a private CA was given: then the connection string must ask for TLS.
    private_ca: bool,
}

impl Tls {
    pub fn new(mut client: rustls::ClientConfig, private_ca: bool) -> Self {
        // PostgreSQL's own protocol name (servers from 17 on check it when a client offers
        // one); never another protocol's.
        client.alpn_protocols = vec![b"postgresql".to_vec()];
        Self { client, private_ca }
    }
}

/// The shared state: a pool of connections to one database, migrated.
#[derive(Clone)]
pub struct Store {
    pool: Pool,
    /// Who this replica is in the rows it writes (`claimed_by`, `opened_by`).
    replica: String,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The pool's own `Debug` would print the connection config, password included.
        f.debug_struct("Store")
            .field("replica", &self.replica)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Connects to the database `url` names (a `postgres://` URL or `key=value` string) as
    /// `replica`, and brings its schema up to date. `url` is a secret: it appears in no error.
    pub async fn connect(url: &str, replica: &str, tls: Tls) -> Result<Self, StoreError> {
        let store = Self::pool(url, replica, tls)?;
        let mut client = store.client().await?;
        migrate::migrate(&mut client).await?;
        Ok(store)
    }

    /// Connects to the database `url` names to read its evidence (`portcullis audit`),
    /// changing nothing: its schema is not migrated, and one that holds no evidence tables
    /// yet is refused.
    pub async fn connect_to_read(url: &str, tls: Tls) -> Result<Self, StoreError> {
        let store = Self::pool(url, "audit", tls)?;
        let client = store.client().await?;
        let found = migrate::version(&client).await?;
        if found < migrate::EVIDENCE_SINCE {
            return Err(StoreError::Evidence(format!(
                "the database holds no evidence: its schema is at version {found}, and replicas copy evidence from version {}",
                migrate::EVIDENCE_SINCE
            )));
        }
        Ok(store)
    }

    /// A pool of connections to `url` (none made yet), writing as `replica`: over TLS
    /// verified by `tls` when `url` says `sslmode=require` (never falling back to the clear),
    /// else in the clear.
    fn pool(url: &str, replica: &str, tls: Tls) -> Result<Self, StoreError> {
        let mut config: tokio_postgres::Config = url.parse().map_err(|_| StoreError::InvalidUrl)?;
        let encrypted = config.get_ssl_mode() == SslMode::Require;
        if tls.private_ca && !encrypted {
            return Err(StoreError::TlsNotAsked);
        }
        config
            .connect_timeout(OPERATION_LIMIT)
            .application_name("portcullis");
        let recycling = ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        };
        let manager = if encrypted {
            Manager::from_config(config, MakeRustlsConnect::new(tls.client), recycling)
        } else {
            Manager::from_config(config, NoTls, recycling)
        };
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(OPERATION_LIMIT))
            .create_timeout(Some(OPERATION_LIMIT))
            .recycle_timeout(Some(OPERATION_LIMIT))
            .build()
            .map_err(|error| StoreError::Unreachable(error.to_string()))?;
        Ok(Self {
            pool,
            replica: replica.to_owned(),
        })
    }

    /// Whether the database answers now (for readiness).
    pub async fn ping(&self) -> Result<(), StoreError> {
        let client = self.client().await?;
        bounded(client.simple_query("SELECT 1")).await.map(drop)
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.pool
            .get()
            .await
            .map_err(|error| StoreError::Unreachable(portcullis_core::causes::with_causes(&error)))
    }
}

/// Waits for `operation` on this thread, for code that cannot wait asynchronously (what a list
/// shows, what a decision reads). Only a multi-threaded runtime can lend its thread
/// (`block_in_place`: the cli's runtime is one); anywhere else this is an error, which callers
/// take as "nothing found", never as permission.
pub fn wait<T>(operation: impl Future<Output = Result<T, StoreError>>) -> Result<T, StoreError> {
    let handle = tokio::runtime::Handle::try_current()
        .ok()
        .filter(|handle| handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread)
        .ok_or_else(|| {
            StoreError::Failed(
                "the shared state is read synchronously from a multi-threaded runtime only"
                    .to_owned(),
            )
        })?;
    tokio::task::block_in_place(|| handle.block_on(operation))
}

/// `sql` prepared once per pooled connection (the pool keeps the statement): every later use
/// is one round trip to the server, where running the text is two (prepare, then run). For
/// what a call waits on.
async fn prepared(
    client: &deadpool_postgres::Object,
    sql: &str,
) -> Result<tokio_postgres::Statement, StoreError> {
    bounded(client.prepare_cached(sql)).await
}

/// Runs one statement within [`OPERATION_LIMIT`].
async fn bounded<T>(
    operation: impl Future<Output = Result<T, tokio_postgres::Error>>,
) -> Result<T, StoreError> {
    match tokio::time::timeout(OPERATION_LIMIT, operation).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(StoreError::Failed(describe(&error))),
        Err(_) => Err(StoreError::Failed(format!(
            "no answer within {} s",
            OPERATION_LIMIT.as_secs()
        ))),
    }
}

/// A database error in words: the server's message when it sent one (never a value of ours:
/// statements take parameters), else the client library's.
fn describe(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => format!("{}: {}", db.code().code(), db.message()),
        None => error.to_string(),
    }
}

#[cfg(test)]
mod tests;
