//! The reader behind `portcullis audit show|tail`: records in order, filtered, one line each
//! for a person or as stored for a machine.
//!
//! The reader does not check the chain (that is `verify`'s job, and a person reading at 3 AM
//! wants the records even from a damaged log); it skips a torn final line, which was never a
//! record, and reports every other unreadable line as an error in place.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use portcullis_core::evidence::{Event, EvidenceRecord, SCHEMA_VERSION};

use crate::error::AuditError;
use crate::format;

/// One record as read back.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub seq: u64,
    /// The replica whose chain it is in, when several replicas each keep one.
    pub replica: Option<String>,
    /// 1-based line in the log.
    pub line: u64,
    pub record: EvidenceRecord,
    /// The line as stored (without its newline): the `--json` form.
    pub raw: String,
}

/// Which records to show. Every field that is set must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// The user's subject, or `subject@issuer`.
    pub user: Option<String>,
    /// The tool as its upstream names it, or as exposed (`upstream.tool`).
    pub tool: Option<String>,
    /// The verdict: `allow`, `approval_required` or `deny`.
    pub decision: Option<String>,
    /// Only records at or after this time (ms since the Unix epoch).
    pub since_ms: Option<u64>,
}

impl Filter {
    pub fn matches(&self, record: &EvidenceRecord) -> bool {
        let user_matches = self.user.as_ref().is_none_or(|user| {
            record.identity().is_some_and(|identity| {
                *user == identity.subject
                    || *user == format!("{}@{}", identity.subject, identity.issuer)
            })
        });
        let tool_matches = self.tool.as_ref().is_none_or(|tool| {
            record.tool().is_some_and(|called| {
                *tool == called.tool || *tool == format!("{}.{}", called.upstream, called.tool)
            })
        });
        let decision_matches = self.decision.as_ref().is_none_or(|verdict| {
            record
                .decision()
                .is_some_and(|decision| decision.verdict == *verdict)
        });
        let since_matches = self.since_ms.is_none_or(|since| record.time_ms >= since);
        user_matches && tool_matches && decision_matches && since_matches
    }
}

/// Records of the log at `path`, in file order, that match `filter`.
pub fn read(path: impl AsRef<Path>, filter: Filter) -> Result<Records, AuditError> {
    let path = path.as_ref();
    let file = File::open(path).map_err(|error| AuditError::io("open", path, error))?;
    Ok(Records {
        path: path.to_path_buf(),
        reader: BufReader::new(file),
        filter,
        line: 0,
        done: false,
        pending: Vec::new(),
    })
}

/// The last `count` records of the log that match `filter`, oldest first.
pub fn tail(
    path: impl AsRef<Path>,
    filter: Filter,
    count: usize,
) -> Result<Vec<Result<Entry, AuditError>>, AuditError> {
    let mut last = VecDeque::with_capacity(count.min(1024));
    for entry in read(path, filter)? {
        if count == 0 {
            break;
        }
        if last.len() == count {
            last.pop_front();
        }
        last.push_back(entry);
    }
    Ok(last.into())
}

/// An iterator over matching records; an unreadable line is an `Err` in its place.
pub struct Records {
    path: PathBuf,
    reader: BufReader<File>,
    filter: Filter,
    line: u64,
    done: bool,
    /// The start of a line still being written (no newline yet), when the end was reached.
    pending: Vec<u8>,
}

impl std::fmt::Debug for Records {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Records")
            .field("path", &self.path)
            .field("line", &self.line)
            .finish_non_exhaustive()
    }
}

impl Iterator for Records {
    type Item = Result<Entry, AuditError>;

    fn next(&mut self) -> Option<Self::Item> {
        let mut buffer = std::mem::take(&mut self.pending);
        while !self.done {
            match self.reader.read_until(b'\n', &mut buffer) {
                Err(error) => {
                    self.done = true;
                    return Some(Err(AuditError::io("read", &self.path, error)));
                }
                Ok(_) => {
                    // A final line without its newline is a write cut short (or, followed, one
                    // still being written), not a record: kept, in case more of it comes.
                    let Some(line) = buffer.strip_suffix(b"\n") else {
                        self.pending = std::mem::take(&mut buffer);
                        self.done = true;
                        continue;
                    };
                    self.line += 1;
                    let entry = entry(&self.path.display().to_string(), self.line, line);
                    buffer.clear();
                    match entry {
                        Ok(entry) if self.filter.matches(&entry.record) => return Some(Ok(entry)),
                        Ok(_) => {}
                        Err(error) => return Some(Err(error)),
                    }
                }
            }
        }
        None
    }
}

impl Records {
    /// Reads on from where the records ended (`tail --follow`): what was appended since comes
    /// next; a line still being written waits for its newline.
    pub fn more(&mut self) {
        self.done = false;
    }
}

/// The records of a chain kept apart from its file (one replica's, in the shared database),
/// given as its lines in seq order, that match `filter`; `source` names it in errors.
pub fn read_stored(
    source: &str,
    lines: impl IntoIterator<Item = Vec<u8>>,
    filter: &Filter,
) -> Vec<Result<Entry, AuditError>> {
    lines
        .into_iter()
        .zip(1..)
        .map(|(line, line_no)| entry(source, line_no, &line))
        .filter(|entry| {
            entry
                .as_ref()
                .map_or(true, |entry| filter.matches(&entry.record))
        })
        .collect()
}

/// The record on `line` (1-based `line_no` of `source`), or why it is not one.
fn entry(source: &str, line_no: u64, line: &[u8]) -> Result<Entry, AuditError> {
    let malformed = |reason: String| AuditError::Malformed {
        path: source.to_owned(),
        line: line_no,
        reason,
    };
    let decoded = format::decode(line).map_err(malformed)?;
    let schema = decoded
        .record
        .get("schema")
        .and_then(serde_json::Value::as_u64);
    if schema != Some(u64::from(SCHEMA_VERSION)) {
        return Err(malformed(format!(
            "schema version {} is not one this build reads (it reads {SCHEMA_VERSION})",
            schema.map_or_else(|| "missing".to_owned(), |schema| schema.to_string())
        )));
    }
    let record: EvidenceRecord =
        serde_json::from_value(decoded.record).map_err(|error| malformed(error.to_string()))?;
    Ok(Entry {
        seq: decoded.seq,
        replica: decoded.replica,
        line: line_no,
        record,
        raw: String::from_utf8_lossy(line).into_owned(),
    })
}

/// One line for a person: time (UTC), seq, kind, user, what, decision, outcome.
///
/// `2025-01-02 03:04:05.006Z  #12  call_intent  alice  files.write_file  deny [no-writes]  -`
pub fn render_line(entry: &Entry) -> String {
    let record = &entry.record;
    let user = record
        .identity()
        .map_or_else(|| "-".to_owned(), |identity| identity.subject.clone());
    let (what, result) = what_and_result(&record.event);
    let decision = record.decision().map_or_else(
        || "-".to_owned(),
        |decision| {
            if decision.policies.is_empty() {
                decision.verdict.clone()
            } else {
                format!("{} [{}]", decision.verdict, decision.policies.join(", "))
            }
        },
    );
    // A replica's records name it beside the seq, which counts in its own chain.
    let replica = entry
        .replica
        .as_ref()
        .map_or_else(String::new, |replica| format!(" @{replica}"));
    format!(
        "{}  #{}{replica}  {}  {user}  {what}  {decision}  {result}",
        render_time(record.time_ms),
        entry.seq,
        record.event.kind(),
    )
}

fn what_and_result(event: &Event) -> (String, String) {
    match event {
        Event::List(list) => (list.list.clone(), format!("{} shown", list.returned)),
        Event::CallIntent(intent) => (
            format!("{}.{}", intent.tool.upstream, intent.tool.tool),
            intent
                .approval
                .as_ref()
                .map_or_else(|| "-".to_owned(), |approval| format!("approval {approval}")),
        ),
        Event::CallOutcome(outcome) => (
            format!("{}.{}", outcome.tool.upstream, outcome.tool.tool),
            format!("{} in {} ms", outcome.outcome, outcome.duration_ms),
        ),
        Event::ResourceRead(read) => (
            format!("{} {}", read.upstream, read.uri),
            format!("{} in {} ms", read.outcome, read.duration_ms),
        ),
        Event::PromptGet(get) => (
            format!("{}.{}", get.upstream, get.prompt),
            format!("{} in {} ms", get.outcome, get.duration_ms),
        ),
        Event::ElicitationRelayed(elicitation) => {
            (elicitation.upstream.clone(), elicitation.response.clone())
        }
        Event::Approval(approval) => (
            format!("{}.{}", approval.tool.upstream, approval.tool.tool),
            approval_line(approval),
        ),
        Event::UpstreamStarted(lifecycle)
        | Event::UpstreamStopped(lifecycle)
        | Event::UpstreamCrashed(lifecycle) => (
            lifecycle.upstream.clone(),
            lifecycle.detail.clone().unwrap_or_else(|| "-".to_owned()),
        ),
        Event::Reload(reload) => {
            let result = match (&reload.error, reload.applied) {
                (Some(error), _) => format!("refused: {error}"),
                (None, true) => "applied".to_owned(),
                (None, false) => "refused".to_owned(),
            };
            (reload.target.clone(), result)
        }
        Event::SandboxStarted(sandbox) => (
            sandbox.upstream.clone(),
            if sandbox.contained == Some(false) {
                "NOT contained (contain = false)".to_owned()
            } else {
                sandbox.profile.clone()
            },
        ),
        Event::DefinitionChanged(changed) => (
            format!("{} {} {}", changed.upstream, changed.entry, changed.name),
            match (&changed.accepted_by, changed.quarantined) {
                (Some(by), _) => format!("{} by {by}", changed.change),
                (None, true) => format!("{}, quarantined", changed.change),
                (None, false) => changed.change.clone(),
            },
        ),
        Event::Refused(refused) => (
            format!("{} {} {}", refused.method, refused.upstream, refused.name),
            format!("refused: {}", refused.reason),
        ),
        Event::Checkpoint(checkpoint) => (
            format!("seq {}..={}", checkpoint.from_seq, checkpoint.to_seq),
            format!("head {}", checkpoint.head),
        ),
    }
}

/// `YYYY-MM-DD HH:MM:SS.mmmZ` from milliseconds since the Unix epoch.
pub fn render_time(time_ms: u64) -> String {
    let millis = time_ms % 1000;
    let seconds = time_ms / 1000;
    let (hour, minute, second) = (seconds / 3600 % 24, seconds / 60 % 60, seconds % 60);
    let (year, month, day) = civil_from_days(seconds / 86_400);
    let mut text = String::with_capacity(24);
    let _ = write!(
        text,
        "{year:04}-{month:02}-{day:02} {hour:02}:{minute:02}:{second:02}.{millis:03}Z"
    );
    text
}

/// Howard Hinnant's `civil_from_days`, for days since 1970-01-01 (never negative here).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// An approval as one line: the answer, where it was asked, by whom, and the taint behind it.
fn approval_line(approval: &portcullis_core::evidence::Approval) -> String {
    let mut line = format!("approval {}", approval.answer);
    if let Some(rung) = &approval.rung {
        line.push_str(&format!(" ({rung})"));
    }
    if let Some(by) = &approval.by {
        line.push_str(&format!(" by {by}"));
    }
    if !approval.tainted_by.is_empty() {
        line.push_str(&format!(
            " (after untrusted content from {})",
            approval.tainted_by.join(", ")
        ));
    }
    line
}
