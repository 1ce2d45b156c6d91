//! The writer: open or continue a log, and append records with group commit.
//!
//! The end of the chain (what the next record chains on, and the file) is held under one lock,
//! and whoever holds it writes: an append that must only be written ([`Durability::Process`],
//! and [`EvidenceLog::append_written`]) encodes and writes its record itself, in the caller,
//! with no hand-off to another thread; it is answered as soon as its `write` returned. One
//! thread does everything that waits for the disk: the appends that must be synced
//! ([`Durability::Disk`]), which it takes in batches (up to `max_batch`), writes in one `write`
//! and answers after the one `fdatasync` that follows, and the sync of whatever was written
//! without one, `sync_interval` at the latest after its first write. For one interval after
//! each sync it waits with a deadline, so a write in that time need not wake it. It syncs
//! without the lock, so writers do not wait for the disk. The head file, which only detects records cut from the
//! end, is replaced after a sync at most every `head_interval`, never on the path of an
//! append. The lock is what assigns the sequence (seq, prev): records are chained in the order
//! they are written.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read, Seek, SeekFrom, Write};
use std::num::NonZeroU64;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, mpsc};
use std::time::{Duration, Instant};

use portcullis_core::evidence::{Checkpoint, Event, EvidenceRecord};
use tokio::sync::oneshot;

use crate::error::AuditError;
use crate::format::{self, Head, head_path, head_tmp_path};
use crate::key::LogKey;

/// How far a record has gone when [`EvidenceLog::append`] returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// Written to the file (`write(2)` returned: the kernel holds it), not yet synced. It
    /// survives Portcullis being killed at any moment; it survives the machine losing power
    /// once the sync that follows within `sync_interval` is done.
    #[default]
    Process,
    /// Written and `fdatasync`ed: it survives the machine losing power (as far as the
    /// filesystem and the drive keep the promise of a sync).
    Disk,
}

/// How the log is written.
#[derive(Debug, Clone)]
pub struct Options {
    /// Write a checkpoint record after every this many records; `None` for none.
    pub checkpoint_every: Option<NonZeroU64>,
    /// At most this many appends share one write (bounds the latency of the first in a batch).
    pub max_batch: usize,
    /// What [`EvidenceLog::append`] waits for. [`EvidenceLog::append_written`] waits for the
    /// write only, whatever this says.
    pub durability: Durability,
    /// A written record is synced at most this long after it was written.
    pub sync_interval: Duration,
    /// The head file is replaced at most this often (after a sync), and when the log closes:
    /// records cut from the end of the log since its last replacement go unnoticed.
    pub head_interval: Duration,
    /// The replica whose chain this log is, when several replicas each keep one (shared state
    /// in PostgreSQL): every line then names it, and a log whose lines name another (or none)
    /// is not continued. `None`: one process, and the lines name nobody (no bytes added).
    pub replica: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            checkpoint_every: NonZeroU64::new(1000),
            max_batch: 512,
            durability: Durability::Process,
            sync_interval: Duration::from_millis(10),
            head_interval: Duration::from_secs(1),
            replica: None,
        }
    }
}

/// What an acknowledged append gets back: where its record sits in the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    pub seq: u64,
    pub hash: String,
}

/// Counters since the log was opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    /// Lines written, checkpoints included.
    pub records: u64,
    /// `fdatasync`s of the log.
    pub syncs: u64,
    /// Replacements of the head file.
    pub heads: u64,
    /// How many records of the log (from its first, checkpoints included) the last sync made
    /// durable: every record with a smaller seq survives power loss.
    pub synced: u64,
    /// The log's length in bytes as of that sync.
    pub synced_end: u64,
}

#[derive(Default)]
struct Counters {
    records: AtomicU64,
    syncs: AtomicU64,
    heads: AtomicU64,
    synced: AtomicU64,
    synced_end: AtomicU64,
}

/// What the writer is asked.
#[expect(
    clippy::large_enum_variant,
    reason = "appends are nearly every message: boxing them would cost an allocation per record to shrink the rare flush"
)]
enum Message {
    /// An append that waits for its sync.
    Append(Pending),
    /// Sync what was written, replace the head file, then answer.
    Flush(oneshot::Sender<Result<(), AuditError>>),
    /// A record was written with nothing waiting to sync it: it is due within `sync_interval`.
    Wake,
}

struct Pending {
    record: EvidenceRecord,
    reply: oneshot::Sender<Result<Receipt, AuditError>>,
}

/// An open evidence log. Cheap to clone; every clone appends to the same chain. When the last
/// clone is dropped the writer finishes what it was given and exits.
#[derive(Clone)]
pub struct EvidenceLog {
    path: Arc<Path>,
    queue: mpsc::Sender<Message>,
    chain: Arc<Mutex<Chain>>,
    counters: Arc<Counters>,
    key: Arc<LogKey>,
    durability: Durability,
}

impl std::fmt::Debug for EvidenceLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EvidenceLog")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl EvidenceLog {
    /// Create the log (mode 0600) or continue an existing one.
    ///
    /// An existing log is continued only if its tail agrees with its head file: the record
    /// the head names is where the head says, with the hash it says, and every complete line
    /// after it chains on. A final line without its newline lies beyond the head, so it was
    /// never acknowledged; it is cut off (and logged) before writing continues. Anything else
    /// refuses, so that new records are never chained onto a tampered or truncated log.
    pub fn open(path: impl AsRef<Path>, options: Options) -> Result<Self, AuditError> {
        let path = path.as_ref();
        let head_path = head_path(path);
        let dir = directory_of(path);
        let dir_file = File::open(&dir).map_err(|error| AuditError::io("open", &dir, error))?;

        let created = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path);
        // INVARIANT: the key comes first: nothing of an existing log is trusted until its MACs
        // verify under it.
        let key = Arc::new(LogKey::for_log(path)?);
        let (file, head) = match created {
            Ok(file) => {
                if head_path.exists() {
                    let _ = fs::remove_file(path);
                    return Err(AuditError::unusable(
                        path,
                        "the log is missing but its head file exists, so records were removed",
                    ));
                }
                (file, Head::empty())
            }
            Err(error) if error.kind() == ErrorKind::AlreadyExists => {
                let mut file = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(path)
                    .map_err(|error| AuditError::io("open", path, error))?;
                let head = match read_head(path)? {
                    Some(head) => {
                        check_head_signature(&head, &key, path)?;
                        head
                    }
                    // Only a log that never finished its first batch may lack a head.
                    None if file_len(&file, path)? == 0 => Head::empty(),
                    None => {
                        return Err(AuditError::unusable(
                            path,
                            format!("its head file `{}` is missing", head_path.display()),
                        ));
                    }
                };
                let head = recover_tail(&mut file, path, head, &key, options.replica.as_deref())?;
                (file, head)
            }
            Err(error) => return Err(AuditError::io("create", path, error)),
        };

        let counters = Arc::new(Counters::default());
        counters.synced.store(head.next_seq, Ordering::Relaxed);
        counters.synced_end.store(head.end, Ordering::Relaxed);
        let file = Arc::new(file);
        let chain = Arc::new(Mutex::new(Chain {
            key: Arc::clone(&key),
            path: path.to_path_buf(),
            file: Arc::clone(&file),
            head: head.clone(),
            checkpoint_every: options.checkpoint_every,
            replica: options.replica.clone(),
            counters: Arc::clone(&counters),
            unsynced_since: None,
            watched_until: None,
            failure: None,
        }));
        let mut writer = Writer {
            chain: Arc::clone(&chain),
            key: Arc::clone(&key),
            head_path,
            head_tmp: head_tmp_path(path),
            file,
            dir: dir_file,
            synced: head.clone(),
            head_named: head.next_seq,
            timing: Timing {
                sync_interval: options.sync_interval,
                head_interval: options.head_interval,
            },
            counters: Arc::clone(&counters),
            head_written: Instant::now(),
        };
        // The head is written now, so the new log's existence and any recovered tail are durable
        // before the first append.
        writer
            .file
            .sync_data()
            .map_err(|error| AuditError::io("sync", path, error))?;
        writer
            .write_head()
            .map_err(|error| AuditError::io("write the head file of", path, error))?;

        let (queue, receiver) = mpsc::channel();
        let max_batch = options.max_batch.max(1);
        std::thread::Builder::new()
            .name("evidence-log".to_owned())
            .spawn(move || writer.run(&receiver, max_batch))
            .map_err(|error| AuditError::io("start the writer for", path, error))?;
        Ok(Self {
            path: Arc::from(path),
            queue,
            chain,
            counters,
            key,
            durability: options.durability,
        })
    }

    /// The keyed digest of a call's arguments as sent (see `redact`): `hmac-sha256:<hex>`.
    pub fn digest_arguments(&self, arguments: &serde_json::Value) -> String {
        self.key.digest_arguments(arguments)
    }

    /// Append a record; returns once it is as durable as the log's [`Durability`] says:
    /// written (`Process`), or written and `fdatasync`ed (`Disk`). Either way every record
    /// before it is at least as far.
    ///
    /// An error means the record was not acknowledged: it may or may not be on disk, and the
    /// action it describes must not go ahead. After one failed write or sync every later
    /// append fails too, until the log is reopened.
    pub async fn append(&self, record: EvidenceRecord) -> Result<Receipt, AuditError> {
        self.send(record, self.durability == Durability::Disk).await
    }

    /// Append a record; returns once it is written, whatever the log's [`Durability`]: it
    /// is synced with the next batch that needs a sync, or within `sync_interval`. For what
    /// nothing waits on (an outcome, once the call ran), so that it costs no sync of its own.
    pub async fn append_written(&self, record: EvidenceRecord) -> Result<Receipt, AuditError> {
        self.send(record, false).await
    }

    async fn send(&self, record: EvidenceRecord, synced: bool) -> Result<Receipt, AuditError> {
        if matches!(record.event, Event::Checkpoint(_)) {
            return Err(AuditError::ReservedKind);
        }
        if !synced {
            // Written here and now: a `write(2)` to the page cache, no thread hand-off.
            let (written, wake) = self
                .chain
                .lock()
                .map_err(|_| self.closed_by("a writer panicked while it held the log"))?
                .append(&record);
            if wake {
                // The writer thread syncs it in time; gone, the record is still written.
                let _ = self.queue.send(Message::Wake);
            }
            return written;
        }
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Message::Append(Pending { record, reply }))
            .map_err(|_| self.writer_gone())?;
        answer.await.map_err(|_| self.writer_gone())?
    }

    /// Makes every record appended so far durable and the head file name the last of them;
    /// for a graceful stop, and for whoever reads the files next.
    pub async fn flush(&self) -> Result<(), AuditError> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Message::Flush(reply))
            .map_err(|_| self.writer_gone())?;
        answer.await.map_err(|_| self.writer_gone())?
    }

    /// The log's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Counters since the log was opened.
    pub fn stats(&self) -> Stats {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        Stats {
            records: load(&self.counters.records),
            syncs: load(&self.counters.syncs),
            heads: load(&self.counters.heads),
            synced: load(&self.counters.synced),
            synced_end: load(&self.counters.synced_end),
        }
    }

    fn writer_gone(&self) -> AuditError {
        self.closed_by("its writer stopped")
    }

    fn closed_by(&self, reason: &str) -> AuditError {
        AuditError::Closed {
            path: self.path.display().to_string(),
            reason: reason.to_owned(),
        }
    }
}

/// The end of the chain and the file: what whoever writes next holds (under the log's lock).
struct Chain {
    /// Keys every line's MAC.
    key: Arc<LogKey>,
    path: PathBuf,
    file: Arc<File>,
    /// The chain as of the last write: what the next record chains on.
    head: Head,
    checkpoint_every: Option<NonZeroU64>,
    /// The replica every line names (`Options::replica`).
    replica: Option<String>,
    counters: Arc<Counters>,
    /// When the first write not yet synced was made.
    unsynced_since: Option<Instant>,
    /// Until when the writer thread looks at `unsynced_since` again by itself (it waits with
    /// a deadline for one interval after each sync): a write made before then need not wake it.
    /// Read and set under the lock, like `unsynced_since`, so a write either is seen by the
    /// writer deciding how to wait or finds the time passed and wakes it.
    watched_until: Option<Instant>,
    /// Why the log refuses records, once a write or sync failed (kept: no retry, since a
    /// retried write could land after records written behind it, and a half-written one would
    /// be chained onto).
    failure: Option<String>,
}

impl Chain {
    /// Writes one record that waits for its write alone; `true` beside the answer when it is
    /// the first written since the last sync (the writer thread must then be told to sync it).
    fn append(&mut self, record: &EvidenceRecord) -> (Result<Receipt, AuditError>, bool) {
        if let Some(reason) = &self.failure {
            return (Err(self.closed(reason)), false);
        }
        match self.write(&[record]) {
            Ok(receipts) => {
                let wake = self.unsynced_since.is_none()
                    && self
                        .watched_until
                        .is_none_or(|until| until <= Instant::now());
                self.unsynced_since.get_or_insert_with(Instant::now);
                let receipt = receipts
                    .into_iter()
                    .next()
                    .ok_or_else(|| self.failed("a write acknowledged no record"));
                (receipt, wake)
            }
            Err(reason) => {
                let error = self.failed(&reason);
                self.fail(reason);
                (Err(error), false)
            }
        }
    }

    fn closed(&self, reason: &str) -> AuditError {
        AuditError::Closed {
            path: self.path.display().to_string(),
            reason: reason.to_owned(),
        }
    }

    fn failed(&self, reason: &str) -> AuditError {
        AuditError::WriteFailed {
            path: self.path.display().to_string(),
            reason: reason.to_owned(),
        }
    }

    /// Logs a failure and keeps it: every later append is refused.
    fn fail(&mut self, reason: String) {
        tracing::error!(
            path = %self.path.display(),
            %reason,
            "evidence log write failed; refusing further records"
        );
        self.failure = Some(reason);
    }

    /// The records (and any checkpoints due) encoded and written at the end of the log. The
    /// chain moves only when the write succeeded.
    fn write(&mut self, records: &[&EvidenceRecord]) -> Result<Vec<Receipt>, String> {
        let mut next = self.head.clone();
        let mut bytes = Vec::new();
        let mut receipts = Vec::with_capacity(records.len());
        let mut lines = 0_u64;
        for record in records {
            let replica = self.replica.as_deref();
            let encoded = format::encode(next.next_seq, replica, &next.hash, record, |hash| {
                self.key.chain_mac(hash)
            })
            .map_err(|error| format!("cannot encode a record: {error}"))?;
            receipts.push(Receipt {
                seq: next.next_seq,
                hash: encoded.hash.clone(),
            });
            push_line(&mut next, &mut bytes, encoded);
            lines += 1;
            if let Some(every) = self.checkpoint_every
                && next.next_seq - next.checkpoint_from >= every.get()
            {
                let checkpoint = EvidenceRecord::new(
                    // The time of the record it follows: the log keeps no clock of its own.
                    record.time_ms,
                    Event::Checkpoint(Checkpoint {
                        from_seq: next.checkpoint_from,
                        to_seq: next.next_seq - 1,
                        head: next.hash.clone(),
                        signature: self.key.sign_checkpoint(
                            next.checkpoint_from,
                            next.next_seq - 1,
                            &next.hash,
                        ),
                    }),
                );
                let encoded =
                    format::encode(next.next_seq, replica, &next.hash, &checkpoint, |hash| {
                        self.key.chain_mac(hash)
                    })
                    .map_err(|error| format!("cannot encode a checkpoint: {error}"))?;
                push_line(&mut next, &mut bytes, encoded);
                next.checkpoint_from = next.next_seq;
                lines += 1;
            }
        }
        self.file
            .write_all_at(&bytes, self.head.end)
            .map_err(|error| format!("write failed: {error}"))?;
        self.head = next;
        self.counters.records.fetch_add(lines, Ordering::Relaxed);
        Ok(receipts)
    }
}

/// The thread that waits for the disk (see the module docs).
struct Writer {
    chain: Arc<Mutex<Chain>>,
    /// Keys the head's signature.
    key: Arc<LogKey>,
    head_path: PathBuf,
    head_tmp: PathBuf,
    /// The log's file, shared with the chain: synced without its lock.
    file: Arc<File>,
    dir: File,
    /// The chain as of the last sync: what the head file may name.
    synced: Head,
    /// The `next_seq` the head file names now.
    head_named: u64,
    timing: Timing,
    counters: Arc<Counters>,
    /// When the head file was last replaced.
    head_written: Instant,
}

#[derive(Clone, Copy)]
struct Timing {
    sync_interval: Duration,
    head_interval: Duration,
}

/// An answer held until the sync that makes its record durable.
type Held = (oneshot::Sender<Result<Receipt, AuditError>>, Receipt);

impl Writer {
    /// The chain, locked; a writer that panicked while holding it left it as it was, and the
    /// failure that follows (if any) is kept in it.
    fn chain(&self) -> std::sync::MutexGuard<'_, Chain> {
        self.chain.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn run(&mut self, queue: &mpsc::Receiver<Message>, max_batch: usize) {
        loop {
            // Decided under the chain's lock (see `Chain::watched_until`).
            let deadline = {
                let chain = self.chain();
                match chain.unsynced_since {
                    Some(since) => Some(since + self.timing.sync_interval),
                    None => chain.watched_until.filter(|until| *until > Instant::now()),
                }
            };
            let next = match deadline {
                None => queue
                    .recv()
                    .map_err(|_| mpsc::RecvTimeoutError::Disconnected),
                Some(deadline) => {
                    queue.recv_timeout(deadline.saturating_duration_since(Instant::now()))
                }
            };
            let first = match next {
                Ok(Message::Append(first)) => Some(first),
                Ok(Message::Flush(reply)) => {
                    let _ = reply.send(self.flush());
                    continue;
                }
                // A record was written: the next wait is bounded by its sync's deadline.
                Ok(Message::Wake) => continue,
                Err(mpsc::RecvTimeoutError::Timeout) => None,
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            };
            let mut held: Vec<Held> = Vec::new();
            let mut flushes = Vec::new();
            if let Some(first) = first {
                let mut batch = vec![first];
                while batch.len() < max_batch {
                    match queue.try_recv() {
                        Ok(Message::Append(pending)) => batch.push(pending),
                        // Answered after this batch is written, so it covers it.
                        Ok(Message::Flush(reply)) => {
                            flushes.push(reply);
                            break;
                        }
                        Ok(Message::Wake) => {}
                        Err(_) => break,
                    }
                }
                let mut chain = self.chain();
                if let Some(reason) = &chain.failure {
                    for pending in batch {
                        let _ = pending.reply.send(Err(chain.closed(reason)));
                    }
                    continue;
                }
                let records: Vec<&EvidenceRecord> =
                    batch.iter().map(|pending| &pending.record).collect();
                match chain.write(&records) {
                    Ok(receipts) => {
                        chain.unsynced_since.get_or_insert_with(Instant::now);
                        held.extend(batch.into_iter().map(|pending| pending.reply).zip(receipts));
                    }
                    Err(reason) => {
                        for pending in batch {
                            let _ = pending.reply.send(Err(chain.failed(&reason)));
                        }
                        chain.fail(reason);
                        continue;
                    }
                }
            }
            let (failed, due) = {
                let chain = self.chain();
                (
                    chain.failure.is_some(),
                    chain
                        .unsynced_since
                        .is_some_and(|since| since.elapsed() >= self.timing.sync_interval),
                )
            };
            if !failed && (!held.is_empty() || due) {
                match self.sync() {
                    Ok(()) => {
                        for (reply, receipt) in held {
                            let _ = reply.send(Ok(receipt));
                        }
                        if self.head_written.elapsed() >= self.timing.head_interval {
                            self.replace_head();
                        }
                    }
                    Err(reason) => {
                        let mut chain = self.chain();
                        for (reply, _) in held {
                            let _ = reply.send(Err(chain.failed(&reason)));
                        }
                        chain.fail(reason);
                    }
                }
            }
            for reply in flushes {
                let _ = reply.send(self.flush());
            }
        }
        // Every handle is gone: what was written is synced and the head names it.
        let _ = self.flush();
    }

    /// Syncs what is written and not yet synced, and replaces the head file if it names less.
    fn flush(&mut self) -> Result<(), AuditError> {
        let unsynced = {
            let chain = self.chain();
            if let Some(reason) = &chain.failure {
                return Err(chain.closed(reason));
            }
            chain.unsynced_since.is_some()
        };
        if unsynced && let Err(reason) = self.sync() {
            let mut chain = self.chain();
            let error = chain.failed(&reason);
            chain.fail(reason);
            return Err(error);
        }
        if self.synced.next_seq != self.head_named {
            self.replace_head();
        }
        let chain = self.chain();
        match &chain.failure {
            Some(reason) => Err(chain.failed(reason)),
            None => Ok(()),
        }
    }

    /// `fdatasync`s what was written: everything up to the chain's end as it was when the sync
    /// began is durable from now on. The chain's lock is not held while the disk works; a
    /// record written meanwhile is left for the next sync, due `sync_interval` after this one
    /// began at the latest.
    fn sync(&mut self) -> Result<(), String> {
        let began = Instant::now();
        let head = self.chain().head.clone();
        self.file
            .sync_data()
            .map_err(|error| format!("fdatasync failed: {error}"))?;
        {
            let mut chain = self.chain();
            chain.unsynced_since = (chain.head.next_seq != head.next_seq).then_some(began);
            // Calls come in runs: for one interval from now, a write need not wake the writer.
            chain.watched_until = Some(Instant::now() + self.timing.sync_interval);
        }
        self.synced = head;
        self.counters.syncs.fetch_add(1, Ordering::Relaxed);
        self.counters
            .synced
            .store(self.synced.next_seq, Ordering::Relaxed);
        self.counters
            .synced_end
            .store(self.synced.end, Ordering::Relaxed);
        Ok(())
    }

    /// Replaces the head file with the chain as of the last sync; a failure is kept like a
    /// failed write (the log refuses further records).
    fn replace_head(&mut self) {
        match self.write_head() {
            Ok(()) => {
                self.head_named = self.synced.next_seq;
                self.head_written = Instant::now();
                self.counters.heads.fetch_add(1, Ordering::Relaxed);
            }
            Err(error) => self
                .chain()
                .fail(format!("cannot replace the head file: {error}")),
        }
    }

    /// Replace the head file atomically and durably with the chain as of the last sync (a
    /// head never names a record that is not durable, or a power loss would leave a log
    /// shorter than its head).
    fn write_head(&self) -> std::io::Result<()> {
        let mut head = self.synced.clone();
        head.signature = Some(self.key.sign_head(&head.signed_fields()));
        let mut bytes = serde_json::to_vec(&head)?;
        bytes.push(b'\n');
        let mut tmp = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&self.head_tmp)?;
        tmp.write_all(&bytes)?;
        tmp.sync_all()?;
        drop(tmp);
        fs::rename(&self.head_tmp, &self.head_path)?;
        // The rename is durable only once the directory is.
        self.dir.sync_all()
    }
}

/// Cuts what follows `offset` (`bytes` of `what`) off the log, durably, and says so.
fn cut_tail(
    file: &File,
    path: &Path,
    offset: u64,
    bytes: usize,
    what: &str,
) -> Result<(), AuditError> {
    tracing::warn!(path = %path.display(), offset, bytes, what, "cutting the end off the evidence log");
    file.set_len(offset)
        .and_then(|()| file.sync_data())
        .map_err(|error| AuditError::io("truncate the end of", path, error))
}

fn push_line(head: &mut Head, bytes: &mut Vec<u8>, encoded: format::Encoded) {
    let start = head.end;
    // A line's length fits in u64 on every platform Portcullis builds for.
    let len = u64::try_from(encoded.line.len()).unwrap_or(u64::MAX);
    bytes.extend_from_slice(&encoded.line);
    head.last_start = start;
    head.end = start.saturating_add(len);
    head.next_seq += 1;
    head.hash = encoded.hash;
}

fn directory_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn file_len(file: &File, path: &Path) -> Result<u64, AuditError> {
    file.metadata()
        .map(|metadata| metadata.len())
        .map_err(|error| AuditError::io("read", path, error))
}

/// The head file of the log `log`, or `None` when there is none.
pub(crate) fn read_head(log: &Path) -> Result<Option<Head>, AuditError> {
    let head_path = format::head_path(log);
    let text = match fs::read(&head_path) {
        Ok(text) => text,
        Err(error) if error.kind() == ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(AuditError::io("read", &head_path, error)),
    };
    // The version first, so that an older head gets the message about its version.
    let version = serde_json::from_slice::<serde_json::Value>(&text)
        .ok()
        .and_then(|value| value.get("version").and_then(serde_json::Value::as_u64));
    if version == Some(1) {
        return Err(AuditError::unusable(
            log,
            format!(
                "it was written by an earlier Portcullis, whose records carry no MAC, and is not continued. Keep it where it is safe (`portcullis audit verify` still checks its chain) and let a new log start: `mv {0} {0}.v1 && mv {0}.head {0}.v1.head`",
                log.display()
            ),
        ));
    }
    let head: Head = serde_json::from_slice(&text).map_err(|error| {
        AuditError::unusable(log, format!("its head file is not readable: {error}"))
    })?;
    if head.version != format::HEAD_VERSION {
        return Err(AuditError::unusable(
            log,
            format!("its head file has unknown version {}", head.version),
        ));
    }
    Ok(Some(head))
}

/// Check that the log's tail agrees with `head` and chains on; cut a torn final line. Returns
/// the head of the log as it now ends.
fn recover_tail(
    file: &mut File,
    path: &Path,
    head: Head,
    key: &LogKey,
    replica: Option<&str>,
) -> Result<Head, AuditError> {
    let len = file_len(file, path)?;
    if len < head.end {
        return Err(AuditError::unusable(
            path,
            format!(
                "it is {len} bytes long but its head file says {} bytes ({} records) were written, so records were removed",
                head.end, head.next_seq
            ),
        ));
    }
    let mut tail = Vec::new();
    file.seek(SeekFrom::Start(head.last_start))
        .and_then(|_| file.read_to_end(&mut tail))
        .map_err(|error| AuditError::io("read", path, error))?;

    let mut current = head.clone();
    let mut offset = head.last_start;
    let mut rest = tail.as_slice();
    let mut first = head.next_seq > 0;
    while !rest.is_empty() {
        // Zeros past the head: a power loss after the file grew but before its data reached
        // the disk (some filesystems show the new length with zeros in it). No record is
        // zeros, and nothing past the head was ever acknowledged as synced.
        if offset >= head.end && rest.iter().all(|byte| *byte == 0) {
            cut_tail(
                file,
                path,
                offset,
                rest.len(),
                "zero bytes, left by a power loss",
            )?;
            break;
        }
        let Some(newline) = rest.iter().position(|byte| *byte == b'\n') else {
            // A final line without its newline: the writer died inside a write that was never
            // acknowledged (the head does not reach it). Cut it so the chain continues cleanly.
            if offset < head.end {
                return Err(AuditError::unusable(
                    path,
                    format!("its last acknowledged record (at byte {offset}) is cut short"),
                ));
            }
            cut_tail(
                file,
                path,
                offset,
                rest.len(),
                "a torn, unacknowledged final line",
            )?;
            break;
        };
        let (line, after) = rest.split_at(newline);
        rest = after.get(1..).unwrap_or_default();
        let line_len = u64::try_from(line.len())
            .unwrap_or(u64::MAX)
            .saturating_add(1);
        let decoded = format::decode(line).map_err(|reason| {
            AuditError::unusable(
                path,
                format!("the line at byte {offset} is malformed: {reason}"),
            )
        })?;
        if !decoded.hash_matches {
            return Err(AuditError::unusable(
                path,
                format!("record {} does not match its hash", decoded.seq),
            ));
        }
        // INVARIANT: a record is continued from only if this log's key wrote it: a record
        // appended with a recomputed SHA-256 but no key is never adopted.
        if decoded.mac.as_deref() != Some(key.chain_mac(&decoded.hash).as_str()) {
            return Err(AuditError::unusable(
                path,
                format!(
                    "record {} was not written with this log's key (its MAC is {}): it was forged, or the log was written by an earlier version without keyed records; move the log aside (`portcullis audit verify` still reads it) and start a new one",
                    decoded.seq,
                    if decoded.mac.is_some() {
                        "wrong"
                    } else {
                        "missing"
                    }
                ),
            ));
        }
        // INVARIANT: one log is one replica's chain: a log written as another replica (or as
        // one process, naming none) is not continued under this name, or its chain would mix
        // two, and a replica's database copy would not match its file.
        if decoded.replica.as_deref() != replica {
            return Err(AuditError::unusable(
                path,
                format!(
                    "its records were written {}, and this process writes {}: give each replica its own evidence log (move this one aside to start a new one)",
                    decoded.replica.as_deref().map_or_else(
                        || "by a single process (no replica)".to_owned(),
                        |name| format!("by replica `{name}`")
                    ),
                    replica.map_or_else(
                        || "as a single process".to_owned(),
                        |name| format!("as replica `{name}`")
                    ),
                ),
            ));
        }
        if first {
            // The record the head names must be exactly where and what the head says.
            first = false;
            if decoded.seq + 1 != head.next_seq
                || decoded.hash != head.hash
                || offset.saturating_add(line_len) != head.end
            {
                return Err(AuditError::unusable(
                    path,
                    format!(
                        "the record at byte {offset} is not the one its head file names (record {})",
                        head.next_seq.saturating_sub(1)
                    ),
                ));
            }
        } else {
            if decoded.seq != current.next_seq || decoded.prev != current.hash {
                return Err(AuditError::unusable(
                    path,
                    format!(
                        "the record at byte {offset} (seq {}) does not follow record {}",
                        decoded.seq,
                        current.next_seq.saturating_sub(1)
                    ),
                ));
            }
            current.last_start = offset;
            current.end = offset.saturating_add(line_len);
            current.next_seq += 1;
            current.hash = decoded.hash;
            if is_checkpoint(&decoded.record) {
                current.checkpoint_from = current.next_seq;
            }
        }
        offset = offset.saturating_add(line_len);
    }
    if first && head.next_seq > 0 {
        return Err(AuditError::unusable(
            path,
            "the record its head file names is missing",
        ));
    }
    Ok(current)
}

/// A head file must carry this log's signature: one rewritten without the key (to hide
/// records cut from the end, say) is refused.
pub(crate) fn check_head_signature(
    head: &Head,
    key: &LogKey,
    log: &Path,
) -> Result<(), AuditError> {
    if head.signature.as_deref().is_some_and(|signature| {
        key.public_key()
            .checks_head(&head.signed_fields(), signature)
    }) {
        return Ok(());
    }
    Err(AuditError::unusable(
        log,
        "its head file was not signed with this log's key: it was forged or rewritten; keep the log and its head for inspection, move them aside, and let a new log start",
    ))
}

pub(crate) fn is_checkpoint(record: &serde_json::Value) -> bool {
    record
        .get("event")
        .and_then(|event| event.get("kind"))
        .and_then(serde_json::Value::as_str)
        == Some("checkpoint")
}
