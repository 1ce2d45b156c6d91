//! The writer: open or continue a log, and append records with group commit.
//!
//! One thread owns the file. It takes every append that is waiting (up to `max_batch`) and
//! writes them in one `write`. What happens then depends on what the appends asked for
//! ([`Durability`]): one that must be on the disk waits for the `fdatasync` that follows at
//! once, shared by the whole batch; one that must only be written is answered as soon as the
//! `write` returned, and is synced with the next batch that needs a sync, or after
//! `sync_interval` at the latest. The head file, which only detects records cut from the end,
//! is replaced after a sync at most every `head_interval`, never on the path of an append.
//! Appends that arrive while it writes or syncs wait for the next batch, so under load one
//! sync serves many records. A thread rather than a tokio task because `fdatasync` blocks for
//! as long as the disk takes, and because the sequence (seq, prev) must be assigned by exactly
//! one owner in the order records are written.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read, Seek, SeekFrom, Write};
use std::num::NonZeroU64;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
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
}

impl Default for Options {
    fn default() -> Self {
        Self {
            checkpoint_every: NonZeroU64::new(1000),
            max_batch: 512,
            durability: Durability::Process,
            sync_interval: Duration::from_millis(10),
            head_interval: Duration::from_secs(1),
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
    Append(Pending),
    /// Sync what was written, replace the head file, then answer.
    Flush(oneshot::Sender<Result<(), AuditError>>),
}

struct Pending {
    record: EvidenceRecord,
    /// Whether the answer waits for the sync.
    synced: bool,
    reply: oneshot::Sender<Result<Receipt, AuditError>>,
}

/// An open evidence log. Cheap to clone; every clone appends to the same chain. When the last
/// clone is dropped the writer finishes what it was given and exits.
#[derive(Clone)]
pub struct EvidenceLog {
    path: Arc<Path>,
    queue: mpsc::Sender<Message>,
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
                let head = recover_tail(&mut file, path, head, &key)?;
                (file, head)
            }
            Err(error) => return Err(AuditError::io("create", path, error)),
        };

        let counters = Arc::new(Counters::default());
        counters.synced.store(head.next_seq, Ordering::Relaxed);
        counters.synced_end.store(head.end, Ordering::Relaxed);
        let mut writer = Writer {
            key: Arc::clone(&key),
            path: path.to_path_buf(),
            head_path,
            head_tmp: head_tmp_path(path),
            file,
            dir: dir_file,
            synced: head.clone(),
            head_named: head.next_seq,
            head,
            checkpoint_every: options.checkpoint_every,
            timing: Timing {
                sync_interval: options.sync_interval,
                head_interval: options.head_interval,
            },
            counters,
            unsynced_since: None,
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
        let counters = Arc::clone(&writer.counters);
        let max_batch = options.max_batch.max(1);
        std::thread::Builder::new()
            .name("evidence-log".to_owned())
            .spawn(move || writer.run(&receiver, max_batch))
            .map_err(|error| AuditError::io("start the writer for", path, error))?;
        Ok(Self {
            path: Arc::from(path),
            queue,
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
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Message::Append(Pending {
                record,
                synced,
                reply,
            }))
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
        AuditError::Closed {
            path: self.path.display().to_string(),
            reason: "its writer stopped".to_owned(),
        }
    }
}

struct Writer {
    /// Keys every line's MAC and the head's.
    key: Arc<LogKey>,
    path: PathBuf,
    head_path: PathBuf,
    head_tmp: PathBuf,
    file: File,
    dir: File,
    /// The chain as of the last write: what the next record chains on.
    head: Head,
    /// The chain as of the last sync: what the head file may name.
    synced: Head,
    /// The `next_seq` the head file names now.
    head_named: u64,
    checkpoint_every: Option<NonZeroU64>,
    timing: Timing,
    counters: Arc<Counters>,
    /// When the first write not yet synced was made.
    unsynced_since: Option<Instant>,
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
    fn run(&mut self, queue: &mpsc::Receiver<Message>, max_batch: usize) {
        let mut failure: Option<String> = None;
        loop {
            let next = match self.unsynced_since {
                None => queue
                    .recv()
                    .map_err(|_| mpsc::RecvTimeoutError::Disconnected),
                Some(since) => queue.recv_timeout(
                    (since + self.timing.sync_interval).saturating_duration_since(Instant::now()),
                ),
            };
            let first = match next {
                Ok(Message::Append(first)) => Some(first),
                Ok(Message::Flush(reply)) => {
                    let _ = reply.send(self.flush(&mut failure));
                    continue;
                }
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
                        Err(_) => break,
                    }
                }
                if let Some(reason) = &failure {
                    for pending in batch {
                        let _ = pending.reply.send(Err(self.closed(reason)));
                    }
                    continue;
                }
                let records: Vec<&EvidenceRecord> =
                    batch.iter().map(|pending| &pending.record).collect();
                match self.write(&records) {
                    Ok(receipts) => {
                        self.unsynced_since.get_or_insert_with(Instant::now);
                        for (pending, receipt) in batch.into_iter().zip(receipts) {
                            if pending.synced {
                                held.push((pending.reply, receipt));
                            } else {
                                // The caller may have given up waiting; the record stays written.
                                let _ = pending.reply.send(Ok(receipt));
                            }
                        }
                    }
                    Err(reason) => {
                        for pending in batch {
                            let _ = pending.reply.send(Err(self.failed(&reason)));
                        }
                        failure = Some(self.fail(reason));
                        continue;
                    }
                }
            }
            let due = self
                .unsynced_since
                .is_some_and(|since| since.elapsed() >= self.timing.sync_interval);
            if failure.is_none() && (!held.is_empty() || due) {
                match self.sync() {
                    Ok(()) => {
                        for (reply, receipt) in held {
                            let _ = reply.send(Ok(receipt));
                        }
                        if self.head_written.elapsed() >= self.timing.head_interval {
                            self.replace_head(&mut failure);
                        }
                    }
                    Err(reason) => {
                        for (reply, _) in held {
                            let _ = reply.send(Err(self.failed(&reason)));
                        }
                        failure = Some(self.fail(reason));
                    }
                }
            }
            for reply in flushes {
                let _ = reply.send(self.flush(&mut failure));
            }
        }
        // Every handle is gone: what was written is synced and the head names it.
        let _ = self.flush(&mut failure);
    }

    /// Syncs what is written and not yet synced, and replaces the head file if it names less.
    fn flush(&mut self, failure: &mut Option<String>) -> Result<(), AuditError> {
        if let Some(reason) = failure.as_deref() {
            return Err(self.closed(reason));
        }
        if self.unsynced_since.is_some()
            && let Err(reason) = self.sync()
        {
            let error = self.failed(&reason);
            *failure = Some(self.fail(reason));
            return Err(error);
        }
        if self.synced.next_seq != self.head_named {
            self.replace_head(failure);
        }
        match failure.as_deref() {
            Some(reason) => Err(self.failed(reason)),
            None => Ok(()),
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

    /// Logs a failure and returns it, to be kept: no retry. A retried batch could land after
    /// records that were queued behind it, and a half-written one would be chained onto.
    fn fail(&self, reason: String) -> String {
        tracing::error!(
            path = %self.path.display(),
            %reason,
            "evidence log write failed; refusing further records"
        );
        reason
    }

    /// The records (and any checkpoints due) encoded and written at the end of the log. The
    /// chain moves only when the write succeeded.
    fn write(&mut self, records: &[&EvidenceRecord]) -> Result<Vec<Receipt>, String> {
        let mut next = self.head.clone();
        let mut bytes = Vec::new();
        let mut receipts = Vec::with_capacity(records.len());
        let mut lines = 0_u64;
        for record in records {
            let encoded = format::encode(next.next_seq, &next.hash, record, |hash| {
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
                let encoded = format::encode(next.next_seq, &next.hash, &checkpoint, |hash| {
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

    /// `fdatasync`s what was written: it is durable from now on.
    fn sync(&mut self) -> Result<(), String> {
        self.file
            .sync_data()
            .map_err(|error| format!("fdatasync failed: {error}"))?;
        self.synced = self.head.clone();
        self.unsynced_since = None;
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
    fn replace_head(&mut self, failure: &mut Option<String>) {
        match self.write_head() {
            Ok(()) => {
                self.head_named = self.synced.next_seq;
                self.head_written = Instant::now();
                self.counters.heads.fetch_add(1, Ordering::Relaxed);
            }
            Err(error) => {
                *failure = Some(self.fail(format!("cannot replace the head file: {error}")));
            }
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
fn check_head_signature(head: &Head, key: &LogKey, log: &Path) -> Result<(), AuditError> {
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
