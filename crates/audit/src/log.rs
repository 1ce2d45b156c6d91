//! The writer: open or continue a log, and append records with group commit.
//!
//! One thread owns the file. It takes every append that is waiting (up to `max_batch`), writes
//! them in one `write`, `fdatasync`s the log once, replaces the head file, and only then answers
//! each append of the batch. Appends that arrive while it syncs wait for the next batch, so under
//! load one sync serves many records. A thread rather than a tokio task because `fdatasync`
//! blocks for as long as the disk takes, and because the sequence (seq, prev) must be assigned
//! by exactly one owner in the order records are written.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read, Seek, SeekFrom, Write};
use std::num::NonZeroU64;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, mpsc};

use portcullis_core::evidence::{Checkpoint, Event, EvidenceRecord};
use tokio::sync::oneshot;

use crate::error::AuditError;
use crate::format::{self, Head, head_path, head_tmp_path};
use crate::key::LogKey;

/// How the log is written.
#[derive(Debug, Clone)]
pub struct Options {
    /// Write a checkpoint record after every this many records; `None` for none.
    pub checkpoint_every: Option<NonZeroU64>,
    /// At most this many appends share one sync (bounds the latency of the first in a batch).
    pub max_batch: usize,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            checkpoint_every: NonZeroU64::new(1000),
            max_batch: 512,
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
    /// Batches made durable; each is one `fdatasync` of the log and one head replacement.
    pub syncs: u64,
}

#[derive(Default)]
struct Counters {
    records: AtomicU64,
    syncs: AtomicU64,
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
    queue: mpsc::Sender<Pending>,
    counters: Arc<Counters>,
    key: Arc<LogKey>,
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

        let mut writer = Writer {
            key: Arc::clone(&key),
            path: path.to_path_buf(),
            head_path,
            head_tmp: head_tmp_path(path),
            file,
            dir: dir_file,
            head,
            checkpoint_every: options.checkpoint_every,
            counters: Arc::new(Counters::default()),
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
        })
    }

    /// The keyed digest of a call's arguments as sent (see `redact`): `hmac-sha256:<hex>`.
    pub fn digest_arguments(&self, arguments: &serde_json::Value) -> String {
        self.key.digest_arguments(arguments)
    }

    /// Append a record; returns once it is durable (written and `fdatasync`ed, head replaced).
    ///
    /// An error means the record was not acknowledged: it may or may not be on disk, and the
    /// action it describes must not go ahead. After one failed write every later append fails
    /// too, until the log is reopened.
    pub async fn append(&self, record: EvidenceRecord) -> Result<Receipt, AuditError> {
        if matches!(record.event, Event::Checkpoint(_)) {
            return Err(AuditError::ReservedKind);
        }
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Pending { record, reply })
            .map_err(|_| self.writer_gone())?;
        answer.await.map_err(|_| self.writer_gone())?
    }

    /// The log's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Counters since the log was opened.
    pub fn stats(&self) -> Stats {
        Stats {
            records: self.counters.records.load(Ordering::Relaxed),
            syncs: self.counters.syncs.load(Ordering::Relaxed),
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
    /// The chain as of the last durable batch.
    head: Head,
    checkpoint_every: Option<NonZeroU64>,
    counters: Arc<Counters>,
}

impl Writer {
    fn run(&mut self, queue: &mpsc::Receiver<Pending>, max_batch: usize) {
        let mut failure: Option<String> = None;
        while let Ok(first) = queue.recv() {
            let mut batch = vec![first];
            while batch.len() < max_batch {
                match queue.try_recv() {
                    Ok(pending) => batch.push(pending),
                    Err(_) => break,
                }
            }
            if let Some(reason) = &failure {
                for pending in batch {
                    let _ = pending.reply.send(Err(AuditError::Closed {
                        path: self.path.display().to_string(),
                        reason: reason.clone(),
                    }));
                }
                continue;
            }
            let records: Vec<&EvidenceRecord> =
                batch.iter().map(|pending| &pending.record).collect();
            match self.commit(&records) {
                Ok(receipts) => {
                    for (pending, receipt) in batch.into_iter().zip(receipts) {
                        // The caller may have given up waiting; the record stays written.
                        let _ = pending.reply.send(Ok(receipt));
                    }
                }
                Err(reason) => {
                    tracing::error!(
                        path = %self.path.display(),
                        %reason,
                        "evidence log write failed; refusing further records"
                    );
                    for pending in batch {
                        let _ = pending.reply.send(Err(AuditError::WriteFailed {
                            path: self.path.display().to_string(),
                            reason: reason.clone(),
                        }));
                    }
                    // INVARIANT: no retry. A retried batch could land after records that were
                    // queued behind it, and a half-written one would be chained onto.
                    failure = Some(reason);
                }
            }
        }
    }

    /// Write the records (and any checkpoints due), sync, replace the head. The head moves only
    /// when all of it succeeded.
    fn commit(&mut self, records: &[&EvidenceRecord]) -> Result<Vec<Receipt>, String> {
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
        self.file
            .sync_data()
            .map_err(|error| format!("fdatasync failed: {error}"))?;
        let previous = std::mem::replace(&mut self.head, next);
        if let Err(error) = self.write_head() {
            self.head = previous;
            return Err(format!("cannot replace the head file: {error}"));
        }
        self.counters.records.fetch_add(lines, Ordering::Relaxed);
        self.counters.syncs.fetch_add(1, Ordering::Relaxed);
        Ok(receipts)
    }

    /// Replace the head file atomically and durably.
    fn write_head(&self) -> std::io::Result<()> {
        let mut head = self.head.clone();
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
        let Some(newline) = rest.iter().position(|byte| *byte == b'\n') else {
            // A final line without its newline: the writer died inside a write that was never
            // acknowledged (the head does not reach it). Cut it so the chain continues cleanly.
            if offset < head.end {
                return Err(AuditError::unusable(
                    path,
                    format!("its last acknowledged record (at byte {offset}) is cut short"),
                ));
            }
            tracing::warn!(
                path = %path.display(),
                offset,
                bytes = rest.len(),
                "cutting a torn, unacknowledged final line off the evidence log"
            );
            file.set_len(offset)
                .and_then(|()| file.sync_data())
                .map_err(|error| AuditError::io("truncate the torn tail of", path, error))?;
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
