//! Where evidence goes: the open evidence log (if any), its copy in the database replicas
//! share (if state is kept there), and the clock every record is stamped with. Shared by the
//! gateway and each upstream's supervisor; the records themselves are built in `evidence.rs`.

use std::sync::Arc;
use std::time::Instant;

use portcullis_audit::EvidenceLog;
use portcullis_core::clock::Clock;
use portcullis_core::evidence::{Event, EvidenceRecord};
use portcullis_state::EvidenceCopier;

/// The evidence log and the clock. Cloning shares both.
#[derive(Clone)]
pub struct Recorder {
    /// `None` only for a gateway that serves no calls (`portcullis tools`): without a log, no
    /// call runs.
    log: Option<EvidenceLog>,
    /// With shared state in PostgreSQL: what copies the log's records into the database.
    /// An append is acknowledged only once its record is committed there too.
    copier: Option<Arc<EvidenceCopier>>,
    clock: Arc<dyn Clock>,
    /// Whether reads may run while the log cannot be written (config's
    /// `reads_without_evidence`).
    reads_without_evidence: bool,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("log", &self.log.as_ref().map(EvidenceLog::path))
            .field("copied", &self.copier.is_some())
            .field("clock", &self.clock)
            .field("reads_without_evidence", &self.reads_without_evidence)
            .finish()
    }
}

impl Recorder {
    pub fn new(log: Option<EvidenceLog>, clock: Arc<dyn Clock>) -> Self {
        Self {
            log,
            copier: None,
            clock,
            reads_without_evidence: false,
        }
    }

    /// This recorder, acknowledging each record only once `copier` has committed it to the
    /// database replicas share (where evidence survives losing this replica).
    pub fn copying_to(self, copier: EvidenceCopier) -> Self {
        Self {
            copier: Some(Arc::new(copier)),
            ..self
        }
    }

    /// This recorder, letting reads run while the log cannot be written when `allowed`.
    pub(crate) fn reads_without_evidence(self, allowed: bool) -> Self {
        Self {
            reads_without_evidence: allowed,
            ..self
        }
    }

    /// Whether reads may run while the log cannot be written.
    pub(crate) fn lets_reads_run_unrecorded(&self) -> bool {
        self.reads_without_evidence
    }

    pub(crate) fn log(&self) -> Option<&EvidenceLog> {
        self.log.as_ref()
    }

    /// The clock records are stamped with, for an owner that reads the time without recording.
    pub(crate) fn clock(&self) -> Arc<dyn Clock> {
        self.clock.clone()
    }

    /// Appends `event`, stamped now; its seq once written (synced within the log's
    /// `sync_interval`, or with the next intent that waits for a sync) and, with shared state
    /// in PostgreSQL, committed there.
    pub(crate) async fn append(&self, event: Event) -> Result<u64, String> {
        self.append_as(event, false).await
    }

    /// Appends `event` that something is about to act on (a call's intent); its seq once as
    /// durable as config's `durability` says: written (`process`) or synced (`disk`), and,
    /// with shared state in PostgreSQL, committed there.
    pub(crate) async fn append_before_acting(&self, event: Event) -> Result<u64, String> {
        self.append_as(event, true).await
    }

    async fn append_as(&self, event: Event, before_acting: bool) -> Result<u64, String> {
        let Some(log) = &self.log else {
            return Err("no evidence log is open".to_owned());
        };
        let record = EvidenceRecord::new(self.clock.unix_millis(), event);
        let appended = if before_acting {
            log.append(record).await
        } else {
            log.append_written(record).await
        };
        let receipt = appended.map_err(|error| error.to_string())?;
        // INVARIANT: with replicas, a record is acknowledged (an intent lets its call run, an
        // outcome its answer go) only once the database holds it and every one before it:
        // the evidence of what a client was answered for survives losing this replica. No
        // work here for a single process (no copier).
        if let Some(copier) = &self.copier {
            copier
                .copied(receipt.seq)
                .await
                .map_err(|error| error.to_string())?;
        }
        Ok(receipt.seq)
    }

    /// Makes every record so far durable and the head file name it (a graceful stop).
    pub(crate) async fn flush(&self) -> Result<(), String> {
        match &self.log {
            Some(log) => log.flush().await.map_err(|error| error.to_string()),
            None => Ok(()),
        }
    }
}

/// Milliseconds since `started`.
pub(crate) fn elapsed_ms(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)
}
