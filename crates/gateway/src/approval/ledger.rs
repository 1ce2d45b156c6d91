//! Approvals waiting for a person outside the client: on the approval page, or in a terminal
//! (`portcullis approve ID`). Each is bound to one action's fingerprint and one user, and runs
//! its call at most once: the identical retry that finds it approved claims it (approved
//! becomes used, under the file's lock or in one conditional statement of the database), and
//! any other call finds nothing.
//!
//! A single process keeps the ledger in a file of the state directory
//! (`pending-approvals.json` beside the evidence log, mode 0600), read and rewritten whole
//! under an exclusive lock on a lock file beside it, so that the serving processes and
//! `portcullis approve` in a terminal see one ledger, and a restart loses no approval. A file
//! that cannot be read or parsed is an error: no approval is taken from it and none is added to
//! it (nothing runs on doubt).
//!
//! Replicas sharing state keep it in the database instead ([`Ledger::shared`], `shared.rs`):
//! the page's link may reach another replica than the one that opened the approval, and the
//! identical retry a third. The database decides what must happen once (one decision, one
//! claim); the rules stay here (who may approve, how much of a request is kept). A database
//! that cannot be reached is an error, as an unreadable file is.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use portcullis_credentials::private_file::{self, Access};
use serde::{Deserialize, Serialize};

use super::kept;

mod shared;

/// The longest change request the ledger keeps whole (bytes); a longer one keeps its two
/// halves' ends, saying what was left out, so that a call with huge arguments cannot make
/// every approval rewrite megabytes.
const REQUEST_KEPT: usize = 1 << 20;

/// The most approvals one user may have waiting at once: a model cannot fill the ledger.
const WAITING_PER_USER: usize = 64;

/// Where one approval stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Standing {
    /// Nobody has decided yet.
    Waiting,
    /// A person approved it; the identical retry may run once.
    Approved { by: String, at: u64 },
    /// A person declined it: final.
    Declined { by: String, at: u64 },
    /// Its call was let run (once).
    Used { at: u64 },
}

/// One approval as the ledger keeps it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Pending {
    /// Unguessable (128 random bits, hex): the page's link names it.
    pub id: String,
    /// The action it approves (see `approval::fingerprint`).
    pub fingerprint: String,
    /// Who the call acts as.
    pub user: String,
    /// The tool as the client names it.
    pub tool: String,
    /// The change request in full: every value whole but those named like secrets.
    pub request: String,
    /// Four eyes (`@approval("other")`): the call's subject, who may not approve it; only an
    /// approver enrolled under another name may, on the page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_by: Option<String>,
    /// Seconds since the epoch.
    pub created: u64,
    pub expires: u64,
    #[serde(flatten)]
    pub standing: Standing,
}

impl Pending {
    fn live(&self, now: u64) -> bool {
        self.expires > now && !matches!(self.standing, Standing::Used { .. })
    }
}

/// What the ledger keeps: its entries, in the order they were opened.
#[derive(Default, Serialize, Deserialize)]
struct Book {
    approvals: Vec<Pending>,
}

/// An approval that is asked of a person for the first time.
pub(crate) struct NewPending<'a> {
    pub fingerprint: &'a str,
    pub user: &'a str,
    pub tool: &'a str,
    pub request: String,
    pub ttl: Duration,
    /// Four eyes: the subject who may not approve it.
    pub not_by: Option<String>,
}

/// Why the ledger could not answer.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("the pending approvals in {file} cannot be read: {error}")]
    Unreadable { file: String, error: String },
    #[error("the pending approvals in {file} cannot be kept: {error}")]
    Unwritable { file: String, error: String },
    /// The shared database did not answer; the detail (never the connection string) is
    /// logged where it happened, and kept here for `Debug`, not shown to the client.
    #[error("the shared approval state is unreachable")]
    Shared(String),
    #[error("no approval `{0}` is waiting (unknown, expired, or already decided)")]
    NotWaiting(String),
    #[error(
        "{0} approvals of this user already wait for a person; approve or deny them (`portcullis approvals`), or let them expire, first"
    )]
    TooMany(usize),
    #[error(
        "approval `{0}` needs someone other than `{1}` (four eyes): another approver, on the approval page"
    )]
    NeedsAnother(String, String),
    #[error("approval `{0}` is for `{1}`: only they may approve it")]
    NotTheirs(String, String),
    #[error("approval `{0}` cannot be approved by {1}, which may only deny")]
    DenialOnly(String, String),
}

/// Who decides an approval.
#[derive(Debug, Clone)]
pub enum DecidedBy {
    /// An enrolled approver, by name, whose passkey's assertion verified.
    Passkey(String),
    /// A person signed in on the approval page with the issuer of `[http.auth]`.
    SignedIn(SignedIn),
    /// Someone at a terminal (`portcullis approve`), not identified further.
    Terminal,
    /// The page's deny button, or the client's decline: a denial only.
    Other(&'static str),
}

/// Who signed in on the approval page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedIn {
    /// As the ledger names the user an approval is for (`subject (issuer)`).
    pub user: String,
    pub subject: String,
    /// Whether they are in the configured approvers group.
    pub approver: bool,
}

impl DecidedBy {
    /// As the ledger and the evidence name them.
    pub fn by(&self) -> String {
        match self {
            DecidedBy::Passkey(name) => format!("passkey {name}"),
            DecidedBy::SignedIn(signed_in) => format!("signed-in {}", signed_in.subject),
            DecidedBy::Terminal => "terminal".to_owned(),
            DecidedBy::Other(what) => (*what).to_owned(),
        }
    }

    /// Why this decider may not approve `entry`, if they may not. A passkey or a terminal
    /// approves any call but a four-eyes one, which only a passkey enrolled under another
    /// name does. A signed-in person approves only their own calls; a four-eyes call, only
    /// someone else in the approvers group. A denial-only decider approves nothing.
    pub(crate) fn may_not_approve(&self, entry: &Pending) -> Option<LedgerError> {
        let id = entry.id.clone();
        match (entry.not_by.as_deref(), self) {
            (None, DecidedBy::Passkey(_) | DecidedBy::Terminal) => None,
            (None, DecidedBy::SignedIn(signed_in)) if signed_in.user == entry.user => None,
            (None, DecidedBy::SignedIn(_)) => Some(LedgerError::NotTheirs(id, entry.user.clone())),
            (Some(subject), DecidedBy::Passkey(name)) if !name.eq_ignore_ascii_case(subject) => {
                None
            }
            (Some(subject), DecidedBy::SignedIn(signed_in))
                if signed_in.approver && signed_in.subject != subject =>
            {
                None
            }
            (Some(subject), _) => Some(LedgerError::NeedsAnother(id, subject.to_owned())),
            (None, DecidedBy::Other(what)) => Some(LedgerError::DenialOnly(id, (*what).to_owned())),
        }
    }
}

/// The pending approvals of one state directory, or of every replica sharing a database.
pub struct Ledger {
    kept: Kept,
}

/// Where the ledger is kept: chosen once, when it is made.
enum Kept {
    File(FileLedger),
    Shared(portcullis_state::Store),
}

/// The ledger file and the lock file beside it.
struct FileLedger {
    file: PathBuf,
    lock: PathBuf,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

/// 128 random bits in hex: an approval's id. Hex, so that an id never starts with `-` and
/// reads as an option where a command takes it (`portcullis approve ID`).
fn new_id() -> Result<String, String> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|error| error.to_string())?;
    Ok(bytes.iter().map(|byte| format!("{byte:02x}")).collect())
}

/// `request` whole when it is at most [`REQUEST_KEPT`] bytes, else its first and last halves
/// of that, with what is between counted.
fn kept_request(request: String) -> String {
    if request.len() <= REQUEST_KEPT {
        return request;
    }
    let half = REQUEST_KEPT / 2;
    let head_end = (0..=half)
        .rev()
        .find(|&i| request.is_char_boundary(i))
        .unwrap_or(0);
    let tail_start = (request.len() - half..request.len())
        .find(|&i| request.is_char_boundary(i))
        .unwrap_or(request.len());
    format!(
        "{}\n…[{} bytes of the request not kept here: the call's arguments are longer than the page shows; deny it unless you know what it does]…\n{}",
        request.get(..head_end).unwrap_or(""),
        tail_start - head_end,
        request.get(tail_start..).unwrap_or("")
    )
}

impl Ledger {
    /// The ledger kept in `file` (created on first use).
    pub fn at(file: PathBuf) -> Self {
        let lock = file.with_extension("lock");
        Self {
            kept: Kept::File(FileLedger { file, lock }),
        }
    }

    /// The ledger file of a state directory whose evidence log is `evidence`.
    pub fn beside(evidence: &Path) -> Self {
        Self::at(evidence.with_file_name("pending-approvals.json"))
    }

    /// The ledger in the database replicas share. Its methods wait for the database on the
    /// calling thread (`portcullis_state::wait`): call them off the async threads, on a
    /// multi-threaded runtime, as the file's.
    pub fn shared(store: portcullis_state::Store) -> Self {
        Self {
            kept: Kept::Shared(store),
        }
    }

    /// The ledger's file; `None` when it is in the shared database.
    pub fn file(&self) -> Option<&Path> {
        match &self.kept {
            Kept::File(ledger) => Some(&ledger.file),
            Kept::Shared(_) => None,
        }
    }

    /// Where the ledger is, in words (never the connection string).
    pub fn kept_in(&self) -> String {
        match &self.kept {
            Kept::File(ledger) => ledger.file.display().to_string(),
            Kept::Shared(_) => "the shared database".to_owned(),
        }
    }

    /// The live approval of `user` for the action `fingerprint`, if one was opened: waiting,
    /// approved or declined.
    pub(crate) fn find(
        &self,
        user: &str,
        fingerprint: &str,
    ) -> Result<Option<Pending>, LedgerError> {
        match &self.kept {
            Kept::File(ledger) => ledger.find(user, fingerprint),
            Kept::Shared(store) => shared::find(store, user, fingerprint),
        }
    }

    /// Opens an approval for `new`, or returns the live one already open for the same user
    /// and action.
    pub(crate) fn open(&self, new: NewPending<'_>) -> Result<Pending, LedgerError> {
        match &self.kept {
            Kept::File(ledger) => ledger.open(new),
            Kept::Shared(store) => shared::open(store, new),
        }
    }

    /// The live approval `id`.
    pub fn get(&self, id: &str) -> Result<Option<Pending>, LedgerError> {
        match &self.kept {
            Kept::File(ledger) => ledger.get(id),
            Kept::Shared(store) => shared::get(store, id),
        }
    }

    /// Every live approval, oldest first.
    pub fn list(&self) -> Result<Vec<Pending>, LedgerError> {
        match &self.kept {
            Kept::File(ledger) => ledger.list(),
            Kept::Shared(store) => shared::list(store),
        }
    }

    /// A person's decision on the waiting approval `id`: approved or declined, by `decider`.
    /// A four-eyes approval is approved only by another approver's passkey.
    pub fn decide(
        &self,
        id: &str,
        approve: bool,
        decider: DecidedBy,
    ) -> Result<Pending, LedgerError> {
        match &self.kept {
            Kept::File(ledger) => ledger.decide(id, approve, decider),
            Kept::Shared(store) => shared::decide(store, id, approve, &decider),
        }
    }

    /// Claims the approved approval `id` for the action `fingerprint`: true at most once, and
    /// only for that action; the approval is then used.
    pub(crate) fn claim(&self, id: &str, fingerprint: &str) -> Result<bool, LedgerError> {
        match &self.kept {
            Kept::File(ledger) => ledger.claim(id, fingerprint),
            Kept::Shared(store) => shared::claim(store, id, fingerprint),
        }
    }
}

impl FileLedger {
    /// Runs `change` on the book under the exclusive lock; writes it back when `change` says
    /// it changed something.
    fn with_book<T>(
        &self,
        change: impl FnOnce(&mut Book, u64) -> (T, bool),
    ) -> Result<T, LedgerError> {
        let unwritable = |error: std::io::Error| LedgerError::Unwritable {
            file: self.file.display().to_string(),
            error: error.to_string(),
        };
        if let Some(dir) = self.file.parent() {
            std::fs::create_dir_all(dir).map_err(unwritable)?;
        }
        // Created 0600 without following a link planted at its path; an existing one must be
        // a regular file, of any mode (earlier versions created it with the umask's).
        let _lock = private_file::lock(&self.lock, Access::AnyMode)
            .map_err(|error| unwritable(error.into()))?;
        let mut book = self.read()?;
        let now = now();
        let before = book.approvals.len();
        book.approvals.retain(|entry| entry.live(now));
        let (answer, changed) = change(&mut book, now);
        if changed || book.approvals.len() != before {
            kept::write(&self.file, &book).map_err(unwritable)?;
        }
        Ok(answer)
    }

    fn read(&self) -> Result<Book, LedgerError> {
        let unreadable = |error: String| LedgerError::Unreadable {
            file: self.file.display().to_string(),
            error,
        };
        // Approvals are taken only from a regular file nobody but its owner can reach, never
        // through a symbolic link: whoever can write the ledger could approve anything.
        match private_file::read(&self.file, Access::OwnerOnly) {
            Ok(Some(bytes)) => {
                serde_json::from_slice(&bytes).map_err(|e| unreadable(e.to_string()))
            }
            Ok(None) => Ok(Book::default()),
            Err(error) => Err(unreadable(error.to_string())),
        }
    }

    /// The live approval of `user` for the action `fingerprint`, if one was opened: waiting,
    /// approved or declined.
    fn find(&self, user: &str, fingerprint: &str) -> Result<Option<Pending>, LedgerError> {
        self.with_book(|book, _| {
            let found = book
                .approvals
                .iter()
                .find(|entry| entry.user == user && entry.fingerprint == fingerprint)
                .cloned();
            (found, false)
        })
    }

    /// Opens an approval for `new`, or returns the live one already open for the same user
    /// and action.
    fn open(&self, new: NewPending<'_>) -> Result<Pending, LedgerError> {
        let id = new_id().map_err(|error| LedgerError::Unwritable {
            file: self.file.display().to_string(),
            error,
        })?;
        self.with_book(|book, now| {
            if let Some(open) = book
                .approvals
                .iter()
                .find(|entry| entry.user == new.user && entry.fingerprint == new.fingerprint)
            {
                return (Ok(open.clone()), false);
            }
            let waiting = book
                .approvals
                .iter()
                .filter(|entry| entry.user == new.user && entry.standing == Standing::Waiting)
                .count();
            if waiting >= WAITING_PER_USER {
                return (Err(LedgerError::TooMany(waiting)), false);
            }
            let entry = Pending {
                id,
                fingerprint: new.fingerprint.to_owned(),
                user: new.user.to_owned(),
                tool: new.tool.to_owned(),
                request: kept_request(new.request),
                not_by: new.not_by,
                created: now,
                expires: now.saturating_add(new.ttl.as_secs()),
                standing: Standing::Waiting,
            };
            book.approvals.push(entry.clone());
            (Ok(entry), true)
        })?
    }

    /// The live approval `id`.
    fn get(&self, id: &str) -> Result<Option<Pending>, LedgerError> {
        self.with_book(|book, _| {
            let found = book.approvals.iter().find(|entry| entry.id == id).cloned();
            (found, false)
        })
    }

    /// Every live approval, oldest first.
    fn list(&self) -> Result<Vec<Pending>, LedgerError> {
        self.with_book(|book, _| (book.approvals.clone(), false))
    }

    /// A person's decision on the waiting approval `id`: approved or declined, by `decider`.
    /// A four-eyes approval is approved only by another approver's passkey.
    fn decide(&self, id: &str, approve: bool, decider: DecidedBy) -> Result<Pending, LedgerError> {
        self.with_book(|book, now| {
            let Some(entry) = book
                .approvals
                .iter_mut()
                .find(|entry| entry.id == id && entry.standing == Standing::Waiting)
            else {
                return (Err(LedgerError::NotWaiting(id.to_owned())), false);
            };
            if let Some(refused) = approve.then(|| decider.may_not_approve(entry)).flatten() {
                return (Err(refused), false);
            }
            let by = decider.by();
            entry.standing = if approve {
                Standing::Approved { by, at: now }
            } else {
                Standing::Declined { by, at: now }
            };
            (Ok(entry.clone()), true)
        })?
    }

    /// Claims the approved approval `id` for the action `fingerprint`: true at most once, and
    /// only for that action; the approval is then used.
    fn claim(&self, id: &str, fingerprint: &str) -> Result<bool, LedgerError> {
        self.with_book(|book, now| {
            let Some(entry) = book.approvals.iter_mut().find(|entry| {
                entry.id == id
                    && entry.fingerprint == fingerprint
                    && matches!(entry.standing, Standing::Approved { .. })
            }) else {
                return (false, false);
            };
            entry.standing = Standing::Used { at: now };
            (true, true)
        })
    }
}

#[cfg(test)]
mod tests {
    #![expect(clippy::unwrap_used, reason = "tests")]

    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    fn ledger() -> (tempfile::TempDir, Ledger) {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::beside(&dir.path().join("state/evidence.jsonl"));
        (dir, ledger)
    }

    fn new<'a>(fingerprint: &'a str, user: &'a str, not_by: Option<&str>) -> NewPending<'a> {
        NewPending {
            fingerprint,
            user,
            tool: "fx.send",
            request: "send it".to_owned(),
            ttl: Duration::from_secs(60),
            not_by: not_by.map(str::to_owned),
        }
    }

    #[test]
    fn an_approval_is_claimed_once_by_its_own_action_and_user_only() {
        let (_dir, ledger) = ledger();
        let opened = ledger.open(new("sha256:a", "alice", None)).unwrap();
        // The same action of the same user finds the same approval; nothing is approved yet.
        assert_eq!(
            ledger.open(new("sha256:a", "alice", None)).unwrap().id,
            opened.id
        );
        assert!(ledger.find("bob", "sha256:a").unwrap().is_none());
        assert!(!ledger.claim(&opened.id, "sha256:a").unwrap());
        ledger
            .decide(&opened.id, true, DecidedBy::Terminal)
            .unwrap();
        assert!(!ledger.claim(&opened.id, "sha256:b").unwrap());
        assert!(ledger.claim(&opened.id, "sha256:a").unwrap());
        assert!(!ledger.claim(&opened.id, "sha256:a").unwrap());
        // Used, it is gone: the next identical call is asked anew.
        assert!(ledger.find("alice", "sha256:a").unwrap().is_none());
        assert!(matches!(
            ledger.decide(&opened.id, true, DecidedBy::Terminal),
            Err(LedgerError::NotWaiting(_))
        ));
    }

    #[test]
    fn four_eyes_take_another_approvers_passkey() {
        let (_dir, ledger) = ledger();
        let opened = ledger
            .open(new("sha256:a", "alice", Some("alice")))
            .unwrap();
        for decider in [
            DecidedBy::Terminal,
            DecidedBy::Passkey("alice".into()),
            DecidedBy::Passkey("ALICE".into()),
            DecidedBy::Other("the client"),
        ] {
            assert!(matches!(
                ledger.decide(&opened.id, true, decider),
                Err(LedgerError::NeedsAnother(..))
            ));
        }
        let approved = ledger
            .decide(&opened.id, true, DecidedBy::Passkey("bob".into()))
            .unwrap();
        assert!(
            matches!(&approved.standing, Standing::Approved { by, .. } if by == "passkey bob"),
            "{approved:?}"
        );
    }

    fn signed_in(subject: &str, approver: bool) -> DecidedBy {
        DecidedBy::SignedIn(SignedIn {
            user: format!("{subject} (https://id.example)"),
            subject: subject.to_owned(),
            approver,
        })
    }

    #[test]
    fn a_signed_in_person_approves_their_own_call_and_four_eyes_take_an_approver() {
        let (_dir, ledger) = ledger();
        let own = ledger
            .open(new("sha256:a", "alice (https://id.example)", None))
            .unwrap();
        // Someone else, even an approver, does not approve alice's own call; nor does a
        // denial-only decider.
        for decider in [signed_in("bob", true), DecidedBy::Other("the client")] {
            assert!(
                ledger.decide(&own.id, true, decider).is_err(),
                "approved by another"
            );
        }
        let approved = ledger
            .decide(&own.id, true, signed_in("alice", false))
            .unwrap();
        assert!(
            matches!(&approved.standing, Standing::Approved { by, .. } if by == "signed-in alice"),
            "{approved:?}"
        );

        let four_eyes = ledger
            .open(new("sha256:b", "alice (https://id.example)", Some("alice")))
            .unwrap();
        for decider in [signed_in("alice", true), signed_in("bob", false)] {
            assert!(matches!(
                ledger.decide(&four_eyes.id, true, decider),
                Err(LedgerError::NeedsAnother(..))
            ));
        }
        assert!(
            ledger
                .decide(&four_eyes.id, true, signed_in("carol", true))
                .is_ok()
        );
    }

    #[test]
    fn a_user_cannot_fill_the_ledger_and_a_huge_request_is_kept_by_its_ends() {
        let (_dir, ledger) = ledger();
        for n in 0..WAITING_PER_USER {
            ledger
                .open(new(&format!("sha256:{n}"), "alice", None))
                .unwrap();
        }
        assert!(matches!(
            ledger.open(new("sha256:more", "alice", None)),
            Err(LedgerError::TooMany(_))
        ));
        assert!(ledger.open(new("sha256:more", "bob", None)).is_ok());
        let huge = format!("start{}end", "é".repeat(REQUEST_KEPT));
        let kept = kept_request(huge);
        assert!(kept.len() < REQUEST_KEPT + 300);
        assert!(kept.starts_with("start") && kept.ends_with("end"));
        assert!(kept.contains("bytes of the request not kept here"));
    }

    #[test]
    fn an_unreadable_ledger_approves_nothing_and_takes_nothing() {
        let (_dir, ledger) = ledger();
        std::fs::create_dir_all(ledger.file().unwrap().parent().unwrap()).unwrap();
        std::fs::write(ledger.file().unwrap(), "{not json").unwrap();
        std::fs::set_permissions(
            ledger.file().unwrap(),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        let error = ledger.find("alice", "sha256:a").unwrap_err();
        assert!(matches!(error, LedgerError::Unreadable { .. }), "{error}");
        assert!(!error.to_string().contains("refusing"), "{error}");
        assert!(ledger.open(new("sha256:a", "alice", None)).is_err());
        assert!(ledger.claim("x", "sha256:a").is_err());
        // And the file is left as it was, for a person to look at.
        assert_eq!(
            std::fs::read_to_string(ledger.file().unwrap()).unwrap(),
            "{not json"
        );
    }

    #[test]
    fn a_ledger_others_can_reach_or_a_link_is_refused_and_left_alone() {
        let (dir, ledger) = ledger();
        std::fs::create_dir_all(ledger.file().unwrap().parent().unwrap()).unwrap();
        std::fs::write(ledger.file().unwrap(), "{\"approvals\": []}").unwrap();
        std::fs::set_permissions(
            ledger.file().unwrap(),
            std::fs::Permissions::from_mode(0o666),
        )
        .unwrap();
        let error = ledger.list().unwrap_err();
        assert!(matches!(error, LedgerError::Unreadable { .. }), "{error}");
        assert!(error.to_string().contains("mode 0666"), "{error}");
        assert!(ledger.open(new("sha256:a", "alice", None)).is_err());

        std::fs::remove_file(ledger.file().unwrap()).unwrap();
        let elsewhere = dir.path().join("elsewhere.json");
        std::fs::write(&elsewhere, "{\"approvals\": []}").unwrap();
        std::fs::set_permissions(&elsewhere, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::os::unix::fs::symlink(&elsewhere, ledger.file().unwrap()).unwrap();
        let error = ledger.list().unwrap_err();
        assert!(error.to_string().contains("symbolic link"), "{error}");
        assert!(ledger.open(new("sha256:a", "alice", None)).is_err());
        assert_eq!(
            std::fs::read_to_string(&elsewhere).unwrap(),
            "{\"approvals\": []}"
        );
    }

    #[test]
    fn a_planted_link_as_the_lock_file_is_not_followed() {
        let (dir, ledger) = ledger();
        std::fs::create_dir_all(ledger.file().unwrap().parent().unwrap()).unwrap();
        let target = dir.path().join("not-created");
        std::os::unix::fs::symlink(&target, ledger.file().unwrap().with_extension("lock")).unwrap();
        let error = ledger.open(new("sha256:a", "alice", None)).unwrap_err();
        assert!(matches!(error, LedgerError::Unwritable { .. }), "{error}");
        assert!(error.to_string().contains("symbolic link"), "{error}");
        assert!(!target.exists());
    }

    #[test]
    fn a_lock_file_an_earlier_version_made_with_the_umask_is_still_used() {
        let (_dir, ledger) = ledger();
        std::fs::create_dir_all(ledger.file().unwrap().parent().unwrap()).unwrap();
        let lock = ledger.file().unwrap().with_extension("lock");
        std::fs::write(&lock, "").unwrap();
        std::fs::set_permissions(&lock, std::fs::Permissions::from_mode(0o664)).unwrap();
        ledger.open(new("sha256:a", "alice", None)).unwrap();
        assert_eq!(ledger.list().unwrap().len(), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_shared_ledger_keeps_four_eyes_and_one_claim_across_replicas() {
        let mut postgres = portcullis_test_support::TestPostgres::start();
        let connect = |replica: &'static str| {
            let url = postgres.url();
            async move { crate::test_store(&url, replica).await }
        };
        let (a, b) = (
            Ledger::shared(connect("a").await),
            Ledger::shared(connect("b").await),
        );
        assert_eq!(a.file(), None);
        let opened = a.open(new("sha256:a", "alice", Some("alice"))).unwrap();
        assert_eq!(
            b.open(new("sha256:a", "alice", None)).unwrap().id,
            opened.id
        );
        // Four eyes, decided through the other replica: alice herself, a terminal or a
        // denial-only decider do not approve; another approver's passkey does.
        for decider in [
            DecidedBy::Terminal,
            DecidedBy::Passkey("ALICE".into()),
            signed_in("alice", true),
            DecidedBy::Other("the client"),
        ] {
            assert!(matches!(
                b.decide(&opened.id, true, decider),
                Err(LedgerError::NeedsAnother(..))
            ));
        }
        assert_eq!(
            a.get(&opened.id).unwrap().map(|entry| entry.standing),
            Some(Standing::Waiting)
        );
        let approved = b
            .decide(&opened.id, true, DecidedBy::Passkey("bob".into()))
            .unwrap();
        assert!(
            matches!(&approved.standing, Standing::Approved { by, .. } if by == "passkey bob"),
            "{approved:?}"
        );
        assert!(matches!(
            a.decide(&opened.id, false, DecidedBy::Terminal),
            Err(LedgerError::NotWaiting(_))
        ));
        // A signed-in person approves only their own call, wherever it was opened.
        let own = a
            .open(new("sha256:b", "bob (https://id.example)", None))
            .unwrap();
        assert!(matches!(
            b.decide(&own.id, true, signed_in("carol", true)),
            Err(LedgerError::NotTheirs(..))
        ));
        // A huge request is kept by its ends, as in the file.
        let huge = NewPending {
            request: format!("start{}end", "x".repeat(REQUEST_KEPT * 2)),
            ..new("sha256:c", "alice", None)
        };
        let kept = a.open(huge).unwrap();
        assert!(kept.request.len() < REQUEST_KEPT + 300);
        // Claimed once, through either replica.
        assert!(!b.claim(&opened.id, "sha256:other").unwrap());
        assert!(b.claim(&opened.id, "sha256:a").unwrap());
        assert!(!a.claim(&opened.id, "sha256:a").unwrap());
        assert!(a.find("alice", "sha256:a").unwrap().is_none());

        // The database away: every operation is an error naming no password, and nothing is
        // opened, decided or claimed.
        let waiting = a.open(new("sha256:d", "alice", None)).unwrap();
        postgres.pause();
        let errors = [
            b.decide(&waiting.id, true, DecidedBy::Terminal)
                .unwrap_err(),
            b.find("alice", "sha256:d").unwrap_err(),
            b.open(new("sha256:e", "alice", None)).unwrap_err(),
            b.claim(&waiting.id, "sha256:d").unwrap_err(),
        ];
        for error in &errors {
            assert!(matches!(error, LedgerError::Shared(_)), "{error}");
            assert!(!error.to_string().contains(postgres.password()), "{error}");
        }
        postgres.resume();
        assert_eq!(
            a.get(&waiting.id).unwrap().map(|entry| entry.standing),
            Some(Standing::Waiting)
        );
        assert!(a.find("alice", "sha256:e").unwrap().is_none());
    }
}
