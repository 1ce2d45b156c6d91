//! The verifier: read a whole log and its head file, and name the first thing that is wrong.

use std::convert::Infallible;
use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;

use portcullis_core::evidence::Checkpoint;

use crate::error::AuditError;
use crate::format::{self, GENESIS, Head, head_path};
use crate::key::{LogKey, PublicKey};
use crate::log::{is_checkpoint, read_head};

/// What kind of tampering (or damage) a problem looks like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProblemKind {
    /// A line that is not a record at all.
    Malformed,
    /// A record whose contents no longer match its hash.
    Edited,
    /// A seq is missing and does not appear later.
    Deleted,
    /// A seq is missing here and appears later.
    Reordered,
    /// A record that does not chain from the one before it (a forged `prev`), or a seq that
    /// appears twice.
    Inserted,
    /// The head file says more records were acknowledged than the log holds.
    Truncated,
    /// The record the head file names has a different hash: the end of the log was rewritten.
    HeadMismatch,
    /// The head file is missing or unreadable, so truncation cannot be checked.
    HeadMissing,
    /// A checkpoint whose claims do not match the chain it sits in.
    BadCheckpoint,
    /// A record whose MAC, or a checkpoint or head file whose signature, does not verify:
    /// written by someone without the log's key, however well its SHA-256 chain was recomputed.
    Forged,
}

impl ProblemKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ProblemKind::Malformed => "malformed line",
            ProblemKind::Edited => "edited record",
            ProblemKind::Deleted => "deleted record",
            ProblemKind::Reordered => "reordered records",
            ProblemKind::Inserted => "inserted record",
            ProblemKind::Truncated => "truncated log",
            ProblemKind::HeadMismatch => "head mismatch",
            ProblemKind::HeadMissing => "head file missing",
            ProblemKind::BadCheckpoint => "bad checkpoint",
            ProblemKind::Forged => "forged",
        }
    }
}

/// The first thing found wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub kind: ProblemKind,
    /// The seq concerned: the record at fault, or the first one missing.
    pub seq: Option<u64>,
    /// 1-based line of the log, when the problem is at a line.
    pub line: Option<u64>,
    pub detail: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.kind.as_str())?;
        match (self.seq, self.line) {
            (Some(seq), Some(line)) => write!(f, " at seq {seq} (line {line})")?,
            (Some(seq), None) => write!(f, " at seq {seq}")?,
            (None, Some(line)) => write!(f, " at line {line}")?,
            (None, None) => {}
        }
        write!(f, ": {}", self.detail)
    }
}

/// A final line without its newline, beyond what the head file acknowledges: a write cut short
/// by a crash, not tampering (reopening the log removes it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornTail {
    pub line: u64,
    /// Byte offset where it starts.
    pub offset: u64,
    pub bytes: u64,
}

/// What `verify` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// Whether the log's key was readable, so every record's MAC was checked (without it only
    /// the SHA-256 chain is, which anyone who can write the log can recompute).
    pub keyed: bool,
    /// The public key the checkpoints' and the head's signatures were checked against: the
    /// one given, or else the one derived from the log's key when that is readable.
    pub signer: Option<PublicKey>,
    /// Complete records that verified, checkpoints included (up to the problem, if any).
    pub records: u64,
    pub checkpoints: u64,
    /// How many records the head file names, if it was readable.
    pub acknowledged: Option<u64>,
    /// Records after the head: written since the head file was last replaced (it is replaced
    /// at most once a second, and at a graceful stop), or after a crash.
    pub beyond_head: u64,
    pub torn_tail: Option<TornTail>,
    pub problem: Option<Problem>,
}

impl VerifyReport {
    /// True when nothing is wrong (a torn, unacknowledged tail is not wrong).
    pub fn is_intact(&self) -> bool {
        self.problem.is_none()
    }
}

impl fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.problem {
            Some(problem) => writeln!(f, "TAMPERED OR DAMAGED: {problem}")?,
            None => writeln!(f, "intact")?,
        }
        write!(
            f,
            "{} records verified ({} checkpoints)",
            self.records, self.checkpoints
        )?;
        if let Some(acknowledged) = self.acknowledged {
            write!(f, ", {acknowledged} named by the head file")?;
        }
        if self.beyond_head > 0 {
            write!(
                f,
                ", {} written after the head file's last update (a cut among them would not show)",
                self.beyond_head
            )?;
        }
        match (self.keyed, &self.signer) {
            (true, _) => write!(
                f,
                "; every record's MAC and every signature checked with the log's key"
            )?,
            (false, Some(signer)) => write!(
                f,
                "; checkpoint and head signatures checked against public key {signer}, so every record the head file names is attested (records after it are not)"
            )?,
            (false, None) => write!(
                f,
                "; MACs and signatures NOT checked: the log's key file is not readable here and no --public-key was given, so only the SHA-256 chain was (which whoever can write the log can recompute)"
            )?,
        }
        if let Some(torn) = &self.torn_tail {
            write!(
                f,
                "\ntorn tail, not acknowledged: line {} ({} bytes at byte {}) was cut short by a crash",
                torn.line, torn.bytes, torn.offset
            )?;
        }
        Ok(())
    }
}

/// Verify the log at `path` against its chain and its head file, and its MACs and signatures as
/// far as a key is at hand: the log's key file when readable (its owner), and `public_key`
/// when given (anyone else). An error means the log could not be read at all; everything wrong
/// with its contents is in the report.
pub fn verify(
    path: impl AsRef<Path>,
    public_key: Option<PublicKey>,
) -> Result<VerifyReport, AuditError> {
    let path = path.as_ref();
    let file = File::open(path).map_err(|error| AuditError::io("open", path, error))?;
    let head = match read_head(path) {
        Ok(head) => head,
        Err(AuditError::Io { source, .. }) => {
            return Err(AuditError::io("read", &head_path(path), source));
        }
        // An unreadable head is a finding about the log, not a failure to read it.
        Err(_) => None,
    };
    let mut scan = Scan::new(head);
    // With the log's key (its owner, or anyone who may read `FILE.key`), every record's MAC
    // is checked too; with it or a public key, every signature.
    scan.key = LogKey::existing(path);
    scan.keyed = scan.key.is_some();
    scan.signer = public_key.or_else(|| scan.key.as_ref().map(LogKey::public_key));
    if let (Some(given), Some(key)) = (public_key, &scan.key)
        && key.public_key() != given
    {
        scan.problem = Some(Problem {
            kind: ProblemKind::Forged,
            seq: None,
            line: None,
            detail: format!(
                "the key beside the log is not the one public key {given} belongs to: the log was not written with the key you trust"
            ),
        });
        return Ok(scan.report());
    }
    let mut reader = BufReader::new(file);
    let lines = std::iter::from_fn(move || {
        let mut buffer = Vec::new();
        match reader.read_until(b'\n', &mut buffer) {
            Ok(0) => None,
            Ok(_) => Some(Ok(match buffer.strip_suffix(b"\n") {
                Some(line) => Line::Complete(line.to_vec()),
                None => Line::Torn(buffer),
            })),
            Err(error) => Some(Err(AuditError::io("read", path, error))),
        }
    });
    scan.run(lines)?;
    Ok(scan.finish())
}

/// One replica's chain as kept apart from its file (in the shared database of several
/// replicas): which replica it is, its head as stored with it, and the public key its
/// signatures are checked against.
#[derive(Debug, Clone)]
pub struct StoredChain {
    pub replica: String,
    pub head: Option<Head>,
    pub public_key: Option<PublicKey>,
}

/// Verify a replica's chain kept apart from its file: `lines` are its records in seq order,
/// each exactly as its log holds it (without the newline). The same checks as [`verify`] of a
/// file (the lines' offsets are those they have in the file, which the head names), and every
/// line must name `chain.replica`. Without the log's key no line's MAC is checked; with
/// `chain.public_key`, every signature is.
pub fn verify_stored(
    lines: impl IntoIterator<Item = Vec<u8>>,
    chain: &StoredChain,
) -> VerifyReport {
    let mut scan = Scan::new(chain.head.clone());
    scan.signer = chain.public_key;
    scan.replica = Some(Some(chain.replica.clone()));
    // The lines are at hand: reading them cannot fail.
    let Ok(()) = scan.run(
        lines
            .into_iter()
            .map(|line| Ok::<_, Infallible>(Line::Complete(line))),
    );
    let mut report = scan.finish();
    // INVARIANT: unlike a head file, which lags its log, a stored head is replaced in the
    // transaction that stores the lines it covers: a line past it was added since (by someone
    // who could recompute the chain but not sign a head), or the head was put back to an
    // earlier one to hide what follows.
    if report.problem.is_none() && report.beyond_head > 0 {
        report.problem = Some(Problem {
            kind: ProblemKind::Inserted,
            seq: report.acknowledged,
            line: None,
            detail: format!(
                "{} records lie past the stored head, which is replaced with the records it covers: they were added since, or the head was put back to an earlier one",
                report.beyond_head
            ),
        });
        report.beyond_head = 0;
    }
    report
}

/// A line as read: complete (its newline cut off), or a final one cut short.
pub(crate) enum Line {
    Complete(Vec<u8>),
    Torn(Vec<u8>),
}

impl Line {
    /// Its length in the log, newline included.
    fn len(&self) -> u64 {
        let bytes = match self {
            Line::Complete(line) => line.len().saturating_add(1),
            Line::Torn(line) => line.len(),
        };
        u64::try_from(bytes).unwrap_or(u64::MAX)
    }
}

pub(crate) struct Scan {
    head: Option<Head>,
    line_no: u64,
    offset: u64,
    next_seq: u64,
    prev: String,
    checkpoint_from: u64,
    checkpoints: u64,
    /// The hash and end offset of the record the head names, once seen.
    at_head: Option<(String, u64)>,
    torn_tail: Option<TornTail>,
    problem: Option<Problem>,
    /// A seq found missing: whether it appears later decides deleted or reordered.
    looking_for: Option<u64>,
    /// The log's key, when readable.
    key: Option<LogKey>,
    keyed: bool,
    /// What signatures are checked against.
    signer: Option<PublicKey>,
    /// The replica every line must name: `None` until the first line says (a file), or set
    /// beforehand (a chain kept in the database, whose rows say whose it is).
    replica: Option<Option<String>>,
    /// Where the last complete record starts.
    last_start: u64,
}

impl Scan {
    fn new(head: Option<Head>) -> Self {
        Self {
            head,
            line_no: 0,
            offset: 0,
            next_seq: 0,
            prev: GENESIS.to_owned(),
            checkpoint_from: 0,
            checkpoints: 0,
            at_head: None,
            torn_tail: None,
            problem: None,
            looking_for: None,
            key: None,
            keyed: false,
            signer: None,
            replica: None,
            last_start: 0,
        }
    }

    /// Scans on from the end of the chain `head` names (which was checked before), for the
    /// lines written after it.
    pub(crate) fn resume(head: &Head, key: LogKey, replica: &str) -> Self {
        let mut scan = Self::new(None);
        scan.offset = head.end;
        scan.last_start = head.last_start;
        scan.next_seq = head.next_seq;
        scan.prev.clone_from(&head.hash);
        scan.checkpoint_from = head.checkpoint_from;
        scan.signer = Some(key.public_key());
        scan.key = Some(key);
        scan.keyed = true;
        scan.replica = Some(Some(replica.to_owned()));
        scan
    }

    /// The chain as far as it was scanned.
    pub(crate) fn head(&self) -> Head {
        Head {
            next_seq: self.next_seq,
            hash: self.prev.clone(),
            last_start: self.last_start,
            end: self.offset,
            checkpoint_from: self.checkpoint_from,
            ..Head::empty()
        }
    }

    /// The log's key, when at hand.
    pub(crate) fn key(&self) -> Option<&LogKey> {
        self.key.as_ref()
    }

    /// The first problem found, if any.
    pub(crate) fn problem(&self) -> Option<&Problem> {
        self.problem.as_ref()
    }

    /// Scans `lines` up to the first problem; when it is a missing seq, reads on to tell a
    /// deleted record from reordered ones. An error: a line could not be read.
    fn run<E>(&mut self, mut lines: impl Iterator<Item = Result<Line, E>>) -> Result<(), E> {
        for line in lines.by_ref() {
            self.take(&line?);
            if self.problem.is_some() {
                break;
            }
        }
        if let Some(missing) = self.looking_for {
            self.find_later(missing, lines)?;
        }
        Ok(())
    }

    /// Scans one line (complete or torn) and moves past it.
    pub(crate) fn take(&mut self, line: &Line) {
        match line {
            Line::Complete(bytes) => self.line(bytes),
            Line::Torn(_) => self.torn(line.len()),
        }
        if self.problem.is_none() {
            self.offset = self.offset.saturating_add(line.len());
        }
    }

    fn fail(&mut self, kind: ProblemKind, seq: Option<u64>, detail: impl Into<String>) {
        self.problem = Some(Problem {
            kind,
            seq,
            line: Some(self.line_no),
            detail: detail.into(),
        });
    }

    fn line(&mut self, line: &[u8]) {
        self.line_no += 1;
        let decoded = match format::decode(line) {
            Ok(decoded) => decoded,
            Err(reason) => {
                self.fail(ProblemKind::Malformed, None, reason);
                return;
            }
        };
        let seq = decoded.seq;
        if !decoded.hash_matches {
            self.fail(
                ProblemKind::Edited,
                Some(seq),
                "its contents do not match its hash",
            );
            return;
        }
        if let Some(key) = &self.key
            && decoded.mac.as_deref() != Some(key.chain_mac(&decoded.hash).as_str())
        {
            self.fail(
                ProblemKind::Forged,
                Some(seq),
                if decoded.mac.is_some() {
                    "its MAC does not verify under the log's key: it was not written by this log"
                } else {
                    "it carries no MAC: it was not written by this log (or by an earlier version)"
                },
            );
            return;
        }
        if !self.same_replica(seq, decoded.replica.as_ref()) {
            return;
        }
        if seq > self.next_seq {
            // Deleted or reordered: decided by whether the missing seq turns up later.
            self.looking_for = Some(self.next_seq);
            self.fail(
                ProblemKind::Deleted,
                Some(self.next_seq),
                format!("expected seq {}, found seq {seq}", self.next_seq),
            );
            return;
        }
        if seq < self.next_seq {
            self.fail(
                ProblemKind::Inserted,
                Some(seq),
                format!(
                    "seq {seq} appears again after seq {}",
                    self.next_seq.saturating_sub(1)
                ),
            );
            return;
        }
        if decoded.prev != self.prev {
            let detail = if seq == 0 {
                "the first record does not start from the genesis value".to_owned()
            } else {
                format!(
                    "it does not chain from seq {}: it was inserted, or the record before it replaced",
                    seq - 1
                )
            };
            self.fail(ProblemKind::Inserted, Some(seq), detail);
            return;
        }
        if is_checkpoint(&decoded.record) && !self.checkpoint(seq, &decoded.record) {
            return;
        }
        let end = self
            .offset
            .saturating_add(u64::try_from(line.len()).unwrap_or(u64::MAX))
            .saturating_add(1);
        self.last_start = self.offset;
        if self
            .head
            .as_ref()
            .is_some_and(|head| head.next_seq == seq + 1)
        {
            self.at_head = Some((decoded.hash.clone(), end));
        }
        self.prev = decoded.hash;
        self.next_seq = seq + 1;
    }

    /// Whether the record at `seq`, naming `replica`, belongs to this chain: every line of
    /// a chain names the replica its first line names (or none, as its first does).
    fn same_replica(&mut self, seq: u64, replica: Option<&String>) -> bool {
        let expected = self.replica.get_or_insert_with(|| replica.cloned());
        if expected.as_ref() != replica {
            let named = |replica: Option<&String>| {
                replica.map_or_else(
                    || "no replica".to_owned(),
                    |name| format!("replica `{name}`"),
                )
            };
            let detail = format!(
                "it names {}, in the chain of {}",
                named(replica),
                named(expected.as_ref())
            );
            self.fail(ProblemKind::Inserted, Some(seq), detail);
            return false;
        }
        true
    }

    /// Whether the checkpoint `record` at `seq` covers exactly the records since the last one,
    /// ending in the hash before it, and its signature verifies; counted when it does.
    fn checkpoint(&mut self, seq: u64, record: &serde_json::Value) -> bool {
        let claims = record
            .get("event")
            .cloned()
            .and_then(|event| serde_json::from_value::<Checkpoint>(event).ok());
        let (from, to) = (self.checkpoint_from, seq.saturating_sub(1));
        let Some(claims) = claims.filter(|claims| {
            seq != 0 && (claims.from_seq, claims.to_seq, &claims.head) == (from, to, &self.prev)
        }) else {
            self.fail(
                ProblemKind::BadCheckpoint,
                Some(seq),
                format!("it should cover seq {from} to {to} ending in {}", self.prev),
            );
            return false;
        };
        if let Some(signer) = &self.signer
            && !signer.checks_checkpoint(from, to, &self.prev, &claims.signature)
        {
            self.fail(
                ProblemKind::Forged,
                Some(seq),
                format!("its signature does not verify under public key {signer}"),
            );
            return false;
        }
        self.checkpoints += 1;
        self.checkpoint_from = seq + 1;
        true
    }

    fn torn(&mut self, bytes: u64) {
        self.line_no += 1;
        self.torn_tail = Some(TornTail {
            line: self.line_no,
            offset: self.offset,
            bytes,
        });
    }

    /// Read on after a gap: if the missing seq appears, the records were reordered.
    fn find_later<E>(
        &mut self,
        missing: u64,
        lines: impl Iterator<Item = Result<Line, E>>,
    ) -> Result<(), E> {
        let mut line_no = self.line_no;
        for line in lines {
            line_no += 1;
            let (Line::Complete(bytes) | Line::Torn(bytes)) = &line?;
            if format::decode(bytes).is_ok_and(|decoded| decoded.seq == missing)
                && let Some(problem) = &mut self.problem
            {
                problem.kind = ProblemKind::Reordered;
                problem.detail = format!(
                    "{}; seq {missing} appears later, at line {line_no}",
                    problem.detail
                );
                break;
            }
        }
        Ok(())
    }

    fn finish(mut self) -> VerifyReport {
        if self.problem.is_none() {
            self.check_head();
        }
        self.report()
    }

    fn check_head(&mut self) {
        let records = self.next_seq;
        if let (Some(head), Some(signer)) = (&self.head, &self.signer)
            && !head
                .signature
                .as_deref()
                .is_some_and(|signature| signer.checks_head(&head.signed_fields(), signature))
        {
            self.problem = Some(Problem {
                kind: ProblemKind::Forged,
                seq: None,
                line: None,
                detail: format!(
                    "the head file's signature does not verify under public key {signer}: it was rewritten"
                ),
            });
            return;
        }
        let Some(head) = &self.head else {
            if records > 0 || self.torn_tail.is_some() {
                self.problem = Some(Problem {
                    kind: ProblemKind::HeadMissing,
                    seq: None,
                    line: None,
                    detail: "the head file is missing or unreadable, so records removed from the end would go unnoticed".to_owned(),
                });
            }
            return;
        };
        if head.next_seq > records {
            let cut = if self.torn_tail.is_some() {
                " and its last line is cut short"
            } else {
                ""
            };
            self.problem = Some(Problem {
                kind: ProblemKind::Truncated,
                seq: Some(records),
                line: None,
                detail: format!(
                    "the head file says {} records were acknowledged; the log holds {records} complete ones{cut}",
                    head.next_seq
                ),
            });
            return;
        }
        if head.next_seq == 0 {
            return;
        }
        let named = head.next_seq - 1;
        match &self.at_head {
            Some((hash, end)) if *hash == head.hash && *end == head.end => {}
            _ => {
                self.problem = Some(Problem {
                    kind: ProblemKind::HeadMismatch,
                    seq: Some(named),
                    line: None,
                    detail: format!(
                        "record {named} is not the one the head file names: the end of the log was rewritten"
                    ),
                });
            }
        }
    }

    fn report(self) -> VerifyReport {
        let acknowledged = self.head.as_ref().map(|head| head.next_seq);
        let beyond_head = acknowledged.map_or(0, |acknowledged| {
            if self.problem.is_none() {
                self.next_seq.saturating_sub(acknowledged)
            } else {
                0
            }
        });
        VerifyReport {
            keyed: self.keyed,
            signer: self.signer,
            records: self.next_seq,
            checkpoints: self.checkpoints,
            acknowledged,
            beyond_head,
            torn_tail: self.torn_tail,
            problem: self.problem,
        }
    }
}
