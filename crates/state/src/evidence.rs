//! Each replica's evidence chain in the shared database: a copy, line for line, of the
//! replica's log, made before any record is acknowledged to the gateway, so that the evidence
//! of every call a client was answered for survives losing the replica.
//!
//! One task per replica copies: woken by each append, it reads every complete line the log
//! holds past what was copied (`portcullis_audit::Shipping`, which checks each as the
//! verifier does), inserts them and the signed head after them in one statement, and then
//! answers every append those lines cover (group commit). After a failure, and at start, it
//! resumes from the head the database holds, so what a replica killed between its write and
//! the copy left in its log is copied when it starts again.

use std::path::PathBuf;
use std::sync::Arc;

use portcullis_audit::{
    Head, Problem, ProblemKind, PublicKey, Shipment, Shipping, StoredChain, VerifyReport,
};
use tokio::sync::{Notify, watch};

use crate::{OPERATION_LIMIT, Store, StoreError, bounded, prepared};

/// At most this many lines go into one copy.
const MAX_COPY: usize = 1000;

/// How many rows one read of a chain fetches.
const PAGE: i64 = 10_000;

/// A replica's chain row as the database holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct CopiedChain {
    replica: String,
    /// The public key (hex) the replica registered: its checkpoints' and heads' signatures
    /// verify under it. Whoever can write the database can replace it too.
    public_key: String,
    /// The head of what was copied, the signed JSON of a log's head file.
    head: String,
    /// The process (`host:pid`) that copied last.
    written_by: String,
}

/// One replica's chain in the database, verified.
#[derive(Debug, Clone)]
pub struct ChainReport {
    pub replica: String,
    /// The process (`host:pid`) that copied last, when the chain's row is there.
    pub written_by: Option<String>,
    pub report: VerifyReport,
}

impl Store {
    /// Verifies every replica's chain in the database with the verifier of files: each
    /// record's hash and seq, the chain, the checkpoints, every line naming its replica, and
    /// the head copied with the lines (so rows cut from the end show), its signature and the
    /// checkpoints' checked against the public key the replica registered. An error: the
    /// database could not be read; everything wrong with the evidence is in the reports.
    pub async fn verify_evidence(&self) -> Result<Vec<ChainReport>, StoreError> {
        let chains = self.evidence_chains().await?;
        let mut reports = Vec::new();
        for replica in self.evidence_replicas().await? {
            let chain = chains.iter().find(|chain| chain.replica == replica);
            let lines = self.evidence_lines(&replica).await?;
            let public_key = chain.map(|chain| PublicKey::parse(&chain.public_key));
            let stored = StoredChain {
                replica: replica.clone(),
                // An unreadable head is reported as missing: truncation cannot be checked.
                head: chain.and_then(|chain| serde_json::from_str(&chain.head).ok()),
                public_key: public_key.clone().and_then(Result::ok),
            };
            let mut report = portcullis_audit::verify_stored(lines, &stored);
            if let Some(Err(why)) = public_key
                && report.problem.is_none()
            {
                report.problem = Some(Problem {
                    kind: ProblemKind::Forged,
                    seq: None,
                    line: None,
                    detail: format!(
                        "the public key registered for it is unreadable ({why}), so no signature can be checked"
                    ),
                });
            }
            reports.push(ChainReport {
                replica,
                written_by: chain.map(|chain| chain.written_by.clone()),
                report,
            });
        }
        Ok(reports)
    }

    /// Every replica's chain row, by replica name.
    async fn evidence_chains(&self) -> Result<Vec<CopiedChain>, StoreError> {
        let client = self.client().await?;
        let rows = bounded(client.query(
            "SELECT replica, public_key, head, written_by FROM evidence_chain ORDER BY replica",
            &[],
        ))
        .await?;
        Ok(rows
            .iter()
            .map(|row| CopiedChain {
                replica: row.get(0),
                public_key: row.get(1),
                head: row.get(2),
                written_by: row.get(3),
            })
            .collect())
    }

    /// The names of the replicas with records in the database, chain or no chain row.
    pub async fn evidence_replicas(&self) -> Result<Vec<String>, StoreError> {
        let client = self.client().await?;
        let rows = bounded(client.query(
            "SELECT DISTINCT replica FROM evidence_record
             UNION SELECT replica FROM evidence_chain ORDER BY 1",
            &[],
        ))
        .await?;
        Ok(rows.iter().map(|row| row.get(0)).collect())
    }

    /// The lines of `replica`'s chain in the order of their `seq` column, as its log holds
    /// them (the verifier checks that each line's own seq agrees).
    pub async fn evidence_lines(&self, replica: &str) -> Result<Vec<Vec<u8>>, StoreError> {
        let client = self.client().await?;
        let mut lines = Vec::new();
        let mut after = -1_i64;
        loop {
            let rows = bounded(client.query(
                "SELECT seq, line FROM evidence_record WHERE replica = $1 AND seq > $2
                 ORDER BY seq LIMIT $3",
                &[&replica, &after, &PAGE],
            ))
            .await?;
            let Some(last) = rows.last() else {
                return Ok(lines);
            };
            after = last.get(0);
            lines.extend(rows.iter().map(|row| row.get::<_, String>(1).into_bytes()));
        }
    }

    /// The head of `replica`'s chain as copied, or `None` when nothing was.
    async fn evidence_head(&self, replica: &str) -> Result<Option<Head>, StoreError> {
        let client = self.client().await?;
        let row = bounded(client.query_opt(
            "SELECT head FROM evidence_chain WHERE replica = $1",
            &[&replica],
        ))
        .await?;
        row.map(|row| {
            serde_json::from_str(&row.get::<_, String>(0)).map_err(|error| {
                StoreError::Evidence(format!(
                    "the head of replica `{replica}` in the database is unreadable: {error}"
                ))
            })
        })
        .transpose()
    }

    /// Inserts `shipment`'s lines of `replica`'s chain and replaces its head, in one
    /// statement (a data-modifying `WITH`), so atomic: the head never names a line that is
    /// not there. One statement, prepared once per connection, is one round trip to the
    /// server, where a transaction of two statements was six: every call waits for two
    /// copies (its intent's and its outcome's).
    async fn copy_evidence(
        &self,
        replica: &str,
        public_key: &str,
        shipment: &Shipment,
    ) -> Result<(), StoreError> {
        let client = self.client().await?;
        let seqs = shipment
            .lines
            .iter()
            .map(|(seq, _)| i64::try_from(*seq))
            .collect::<Result<Vec<i64>, _>>()
            .map_err(|_| StoreError::Evidence("a seq beyond the database's range".to_owned()))?;
        let lines: Vec<&str> = shipment
            .lines
            .iter()
            .map(|(_, line)| line.as_str())
            .collect();
        let head = serde_json::to_string(&shipment.head)
            .map_err(|error| StoreError::Evidence(error.to_string()))?;
        // The key is registered with the first copy and never replaced by a later one.
        let copy = prepared(
            &client,
            "WITH copied AS (
                 INSERT INTO evidence_record (replica, seq, line)
                 SELECT $1, seq, line FROM unnest($2::bigint[], $3::text[]) AS copied (seq, line)
             )
             INSERT INTO evidence_chain (replica, public_key, head, written_by)
             VALUES ($1, $4, $5, $6)
             ON CONFLICT (replica) DO UPDATE
             SET head = excluded.head, written_by = excluded.written_by, updated_at = now()",
        )
        .await?;
        bounded(client.execute(
            &copy,
            &[&replica, &seqs, &lines, &public_key, &head, &self.replica],
        ))
        .await
        .map(drop)
    }
}

/// What the copier has done: how many records of the chain are in the database, and how
/// many copies failed (with the last reason).
#[derive(Debug, Clone, Default)]
struct Copied {
    next_seq: u64,
    failures: u64,
    last_failure: String,
}

/// Copies one replica's evidence log into the database as it is written. Dropping it stops
/// the copying task.
#[derive(Debug)]
pub struct EvidenceCopier {
    copied: watch::Receiver<Copied>,
    wake: Arc<Notify>,
}

impl EvidenceCopier {
    /// Starts copying the log at `log`, whose key's public half is `public_key` (its chain
    /// is that of replica `public_key.replica_name()`): first whatever it holds past what the
    /// database has (the records a replica killed before copying them left behind), before
    /// this returns; then each record as it is appended. Refused when the log and the
    /// database disagree (see `Shipping::resume`).
    pub async fn start(
        store: Store,
        log: PathBuf,
        public_key: PublicKey,
    ) -> Result<Self, StoreError> {
        let mut copier = Copier {
            store,
            log,
            replica: public_key.replica_name(),
            public_key: public_key.to_string(),
            cursor: None,
        };
        let (sender, copied) = watch::channel(Copied::default());
        let wake = Arc::new(Notify::new());
        // The backlog first, so that a failure stops start-up with its reason.
        while let Some(next_seq) = copier.copy_once().await? {
            sender.send_modify(|copied| copied.next_seq = next_seq);
        }
        tokio::spawn(copier.run(sender, Arc::clone(&wake)));
        Ok(Self { copied, wake })
    }

    /// Returns once the record `seq` (and every one before it) is committed in the database.
    /// An error: it was not, within the operation limit, or a copy failed meanwhile; the
    /// action it records must not go ahead.
    pub async fn copied(&self, seq: u64) -> Result<(), StoreError> {
        let mut copied = self.copied.clone();
        let failures = copied.borrow().failures;
        self.wake.notify_one();
        let waited = tokio::time::timeout(
            OPERATION_LIMIT,
            copied.wait_for(|copied| copied.next_seq > seq || copied.failures > failures),
        )
        .await;
        match waited {
            Ok(Ok(copied)) if copied.next_seq > seq => Ok(()),
            Ok(Ok(copied)) => Err(StoreError::Evidence(copied.last_failure.clone())),
            Ok(Err(_)) => Err(StoreError::Evidence("the copying task stopped".to_owned())),
            Err(_) => Err(StoreError::Evidence(format!(
                "record {seq} was not copied within {} s",
                OPERATION_LIMIT.as_secs()
            ))),
        }
    }
}

/// The copying task's own state.
struct Copier {
    store: Store,
    log: PathBuf,
    replica: String,
    public_key: String,
    /// Where copying goes on; `None` after a failure, until it resumes from the database.
    cursor: Option<Shipping>,
}

impl Copier {
    async fn run(mut self, sender: watch::Sender<Copied>, wake: Arc<Notify>) {
        loop {
            tokio::select! {
                () = wake.notified() => {}
                () = sender.closed() => return,
            }
            // Until nothing is left: whatever woke it meanwhile is in the log already.
            loop {
                match self.copy_once().await {
                    Ok(Some(next_seq)) => sender.send_modify(|copied| copied.next_seq = next_seq),
                    Ok(None) => break,
                    Err(error) => {
                        tracing::error!(replica = %self.replica, %error, "evidence not copied to the database; calls stop until it is");
                        self.cursor = None;
                        sender.send_modify(|copied| {
                            copied.failures += 1;
                            copied.last_failure = error.to_string();
                        });
                        break;
                    }
                }
            }
        }
    }

    /// Copies what the log holds past the cursor (at most [`MAX_COPY`] lines); the chain's
    /// length in the database after it, or `None` when there was nothing to copy.
    async fn copy_once(&mut self) -> Result<Option<u64>, StoreError> {
        let cursor = match &mut self.cursor {
            Some(cursor) => cursor,
            None => {
                let head = self.store.evidence_head(&self.replica).await?;
                let cursor = Shipping::resume(&self.log, &self.replica, head.as_ref())
                    .map_err(|error| StoreError::Evidence(error.to_string()))?;
                self.cursor.insert(cursor)
            }
        };
        let shipment = cursor
            .next(MAX_COPY)
            .map_err(|error| StoreError::Evidence(error.to_string()))?;
        if shipment.lines.is_empty() {
            return Ok(None);
        }
        self.store
            .copy_evidence(&self.replica, &self.public_key, &shipment)
            .await?;
        Ok(Some(shipment.head.next_seq))
    }
}
