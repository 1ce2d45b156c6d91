//! Scoped answers: fewer, better questions. When a person approves a call, Portcullis may offer
//! to let the answer cover calls *like this one* for the rest of the session: the same tool,
//! every path argument resolving in the same directory, no recipient but those approved, the
//! same target tenant; its other arguments may differ. The pattern is proposed from the call's
//! facts, shown in words, and checked against each later call's facts; it is offered only
//! when it constrains something (paths, recipients or tenant).
//!
//! Never offered, and never covering: under an `@approval("once")` or `("other")` rule; for a
//! call whose effect is `destructive`, `send`, `physical` or not described (what cannot be
//! undone, is seen by others, or may be either is approved one call at a time); for a call
//! that reaches a host the session has not reached before (the URL can carry anything out).
//!
//! [`ScopedAnswers`] keeps what people chose, by the session's taint key and the user: a
//! session-era session's answers end with it (`forget_session`) and with the process, a
//! stateless client's (user and client) with their time (`approval_scope_secs`), kept in
//! `scoped-answers.json` beside the evidence log so that a restart does not ask again; when
//! replicas share state, a stateless client's are kept in the database instead
//! ([`ScopedAnswers::shared`]), since its next call may reach any replica. A file or database
//! that cannot be read holds none (ask again, never less).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use portcullis_core::Effect;
use portcullis_policy::ApprovalRule;
use serde::{Deserialize, Serialize};

use super::{NamedPath, Reach, kept};

/// The value of the form's scope field that asks for this call only.
pub(super) const THIS_CALL: &str = "once";
/// The value of the form's scope field that chooses the offered session scope.
pub(super) const SESSION: &str = "session";

/// What a call is, as a scope reads it: who may be asked how, and what its arguments name.
pub(crate) struct CallShape<'a> {
    pub upstream: &'a str,
    /// The tool as its upstream names it.
    pub tool: &'a str,
    pub rule: ApprovalRule,
    pub effect: Effect,
    pub reach: &'a Reach,
    pub paths: &'a [NamedPath],
    /// The recipients the arguments name (with whether each is new, which a scope ignores).
    pub recipients: &'a [(String, bool)],
    pub target_tenant: Option<&'a str>,
}

impl CallShape<'_> {
    /// Whether an answer about this call may cover more than this call (see the module docs).
    fn scopable(&self) -> bool {
        let one_at_a_time = matches!(
            self.effect,
            Effect::Destructive | Effect::Send | Effect::Physical | Effect::Unknown
        );
        let new_host =
            matches!(self.reach, Reach::Network { urls, .. } if urls.iter().any(|(_, new)| *new));
        self.rule.allows_scope() && !one_at_a_time && !new_host
    }
}

/// What a session-scoped answer lets run without asking: this tool, with arguments like these.
/// Only [`Scope::propose`] makes one, from a call's facts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Scope {
    upstream: String,
    tool: String,
    /// Each path argument (by its pointer) and the directory it must resolve in: the parent
    /// of the resolved path, or the path itself when it is a directory.
    directories: BTreeMap<String, PathBuf>,
    /// The recipients a covered call may name; it may name fewer, never another.
    recipients: BTreeSet<String>,
    /// The tenant or workspace a covered call must target (`None`: it names none).
    tenant: Option<String>,
}

impl Scope {
    /// The narrow pattern of calls like `call`, when one may be offered and it constrains
    /// something; `None` otherwise (then only "this call" is asked).
    pub(crate) fn propose(call: &CallShape<'_>) -> Option<Scope> {
        if !call.scopable() {
            return None;
        }
        let scope = Scope::of(call);
        let constrains =
            !scope.directories.is_empty() || !scope.recipients.is_empty() || scope.tenant.is_some();
        constrains.then_some(scope)
    }

    /// The pattern `call`'s facts make, whether or not it may be offered.
    fn of(call: &CallShape<'_>) -> Scope {
        Scope {
            upstream: call.upstream.to_owned(),
            tool: call.tool.to_owned(),
            directories: call
                .paths
                .iter()
                .map(|path| (path.pointer.clone(), directory_of(path).to_path_buf()))
                .collect(),
            recipients: call.recipients.iter().map(|(r, _)| r.clone()).collect(),
            tenant: call.target_tenant.map(str::to_owned),
        }
    }

    /// Whether `call` is like the call this scope was proposed for: the same tool, each path
    /// argument in its directory (the same pointers, no more, no fewer), no other recipient,
    /// the same tenant, and itself a call whose answer could have covered more than itself.
    pub(crate) fn covers(&self, call: &CallShape<'_>) -> bool {
        let other = Scope::of(call);
        call.scopable()
            && self.upstream == other.upstream
            && self.tool == other.tool
            && self.directories == other.directories
            && other.recipients.is_subset(&self.recipients)
            && self.tenant == other.tenant
    }

    /// The pattern in words, as the person is shown it.
    pub(crate) fn words(&self) -> String {
        let mut parts = vec![format!("calls of `{}` on `{}`", self.tool, self.upstream)];
        if !self.directories.is_empty() {
            let directories: BTreeSet<String> = self
                .directories
                .values()
                .map(|d| format!("`{}`", d.display()))
                .collect();
            parts.push(format!(
                "whose files are directly in {}",
                directories.into_iter().collect::<Vec<_>>().join(", ")
            ));
        }
        if !self.recipients.is_empty() {
            let recipients: Vec<&str> = self.recipients.iter().map(String::as_str).collect();
            parts.push(format!("sending only to {}", recipients.join(", ")));
        }
        if let Some(tenant) = &self.tenant {
            parts.push(format!("in tenant or workspace `{tenant}`"));
        }
        format!("{}; their other arguments may differ", parts.join(", "))
    }
}

/// The directory a path argument pins a scope to: the path itself when it is a directory, else
/// the directory it is in (a resolved path is absolute, links followed, so `..` and links that
/// lead elsewhere land elsewhere).
fn directory_of(path: &NamedPath) -> &Path {
    if path.is_directory {
        &path.resolved
    } else {
        path.resolved.parent().unwrap_or(&path.resolved)
    }
}

/// What the approval form offers besides "only this call": a session scope and how long it
/// would last at most, or nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Offer {
    session: Option<(Scope, Duration)>,
}

impl Offer {
    /// The offer for `call`: its session scope when [`Scope::propose`] makes one and scoped
    /// answers last at all (`lasts`, from `approval_scope_secs`; `None`: turned off).
    pub(crate) fn for_call(call: &CallShape<'_>, lasts: Option<Duration>) -> Self {
        Offer {
            session: lasts.and_then(|lasts| Scope::propose(call).map(|scope| (scope, lasts))),
        }
    }

    /// Nothing beyond the one call.
    #[cfg(test)]
    pub(crate) fn this_call_only() -> Self {
        Offer { session: None }
    }

    /// The title of the session choice in the form.
    pub(super) fn session_title(&self) -> Option<String> {
        self.session
            .as_ref()
            .map(|(scope, _)| format!("For this session: {}", scope.words()))
    }

    /// The paragraph of the change request that explains the offer.
    pub(super) fn explained(&self) -> Option<String> {
        self.session.as_ref().map(|(scope, lasts)| {
            format!(
                "You may let this answer also cover calls like it for the rest of this session (at most {} min): {}. Calls that differ are asked again.\n",
                lasts.as_secs().div_ceil(60),
                scope.words()
            )
        })
    }

    /// The person's choice in the form's scope field: `None` when the value was not offered.
    pub(super) fn choose(&self, value: &str) -> Option<Chosen> {
        match (value, &self.session) {
            (THIS_CALL, Some(_)) => Some(Chosen::ThisCall),
            (SESSION, Some((scope, _))) => Some(Chosen::Session(scope.clone())),
            _ => None,
        }
    }
}

/// What an approving answer covers: the one call, or the session scope that was offered (an
/// answer can only choose one through [`Offer::choose`], so only one that was offered).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Chosen {
    ThisCall,
    Session(Scope),
}

/// A recorded scoped answer, by its id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ScopeId(String);

impl std::fmt::Display for ScopeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Whose answers a taint key holds, which says how long they can last.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Holder {
    /// A session-era session: its answers end with it, and so with the process serving it
    /// (session ids are this process's own, so a restart never hands them to another).
    Session,
    /// A stateless client (user and client): its answers last their time, restarts included.
    Client,
}

/// Who chose a scope, and what it covers until when.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Entry {
    id: ScopeId,
    /// The taint key of the session (or stateless user and client) it was chosen in.
    key: String,
    holder: Holder,
    /// The user whose calls it covers (issuer and subject).
    user: String,
    scope: Scope,
    /// Who approved it: the person asked.
    approved_by: String,
    /// Seconds since the Unix epoch.
    approved_at: u64,
    /// The fingerprint of the approved call it came from.
    fingerprint: String,
    expires_at: u64,
}

/// Whose call a scoped answer is asked about.
pub(crate) struct Asker<'a> {
    /// The session's taint key (`CallContext::taint_key`).
    pub key: &'a str,
    pub holder: Holder,
    pub user: &'a str,
}

/// The scoped answers people chose. Owned by `Approvals`.
pub(crate) struct ScopedAnswers {
    /// Those held here: every one, or with `shared` the sessions' only.
    entries: Mutex<Vec<Entry>>,
    /// Where those held here are kept (`None`: in memory, as a session's last no longer).
    file: Option<PathBuf>,
    /// How long one lasts at most; `None`: scoped answers are turned off.
    lasts: Option<Duration>,
    /// Where stateless clients' answers are kept when replicas share state: such a client
    /// reaches any replica, so its answers cannot be one replica's.
    shared: Option<portcullis_state::Store>,
}

impl ScopedAnswers {
    /// The scoped answers kept in `file` that can still be used (a session's ended with the
    /// process that served it), kept there from now on; none at all when `lasts` is `None`.
    pub(crate) fn open(file: PathBuf, lasts: Option<Duration>) -> Self {
        let entries: Vec<Entry> = match lasts {
            Some(_) => kept::read(
                &file,
                "the scoped answers cannot be read; every call they covered is asked again",
            ),
            None => Vec::new(),
        };
        Self {
            entries: Mutex::new(
                entries
                    .into_iter()
                    .filter(|entry| entry.holder == Holder::Client)
                    .collect(),
            ),
            file: Some(file),
            lasts,
            shared: None,
        }
    }

    /// Scoped answers whose stateless clients' are kept in `store`, shared by the replicas;
    /// a session's are held here until it ends. None at all when `lasts` is `None`.
    pub(crate) fn shared(lasts: Option<Duration>, store: portcullis_state::Store) -> Self {
        Self {
            entries: Mutex::default(),
            file: None,
            lasts,
            shared: Some(store),
        }
    }

    /// The database `asker`'s answers are kept in, if they are kept in one.
    fn shared_for(&self, asker: &Asker<'_>) -> Option<&portcullis_state::Store> {
        self.shared
            .as_ref()
            .filter(|_| asker.holder == Holder::Client)
    }

    /// How long a scoped answer may last (`None`: none is offered).
    pub(crate) fn lasts(&self) -> Option<Duration> {
        self.lasts
    }

    /// The recorded scope that covers `call` of `asker` at `now`, if any: the same session (or
    /// stateless user and client), the same user, not expired, and a pattern `call` fits.
    pub(crate) fn covers(
        &self,
        asker: &Asker<'_>,
        call: &CallShape<'_>,
        now: u64,
    ) -> Option<ScopeId> {
        self.lasts?;
        if let Some(store) = self.shared_for(asker) {
            // Unreadable, or a pattern this build cannot read: nothing covers (asked again).
            let kept = portcullis_state::wait(store.scoped_answers(
                asker.key,
                asker.user,
                i64::try_from(now).ok()?,
            ))
            .map_err(|error| tracing::warn!(%error, "the shared scoped answers cannot be read; the call is asked"))
            .ok()?;
            return kept
                .into_iter()
                .find(|answer| {
                    serde_json::from_value::<Scope>(answer.scope.clone())
                        .is_ok_and(|scope| scope.covers(call))
                })
                .map(|answer| ScopeId(answer.id));
        }
        let entries = self.entries.lock().ok()?;
        entries
            .iter()
            .find(|entry| {
                entry.key == asker.key
                    && entry.user == asker.user
                    && entry.expires_at > now
                    && entry.scope.covers(call)
            })
            .map(|entry| entry.id.clone())
    }

    /// Records that `asker` approved the call `fingerprint` for the session `scope`, at `now`,
    /// and keeps it. `None` when scoped answers are turned off or cannot be held.
    pub(crate) fn remember(
        &self,
        asker: &Asker<'_>,
        scope: Scope,
        fingerprint: &str,
        now: u64,
    ) -> Option<ScopeId> {
        let lasts = self.lasts?;
        let expires_at = now.saturating_add(lasts.as_secs());
        if let Some(store) = self.shared_for(asker) {
            let id = scope_id(asker, fingerprint, now, 0);
            let answer = portcullis_state::ScopedAnswer {
                id: id.0.clone(),
                holder_key: asker.key.to_owned(),
                user: asker.user.to_owned(),
                scope: serde_json::to_value(&scope).ok()?,
                fingerprint: fingerprint.to_owned(),
                approved_at: i64::try_from(now).ok()?,
                expires_at: i64::try_from(expires_at).ok()?,
            };
            // Not kept: the next call like it is asked again (never less).
            return portcullis_state::wait(store.keep_scoped_answer(&answer))
                .map_err(|error| tracing::warn!(%error, "the scoped answer could not be kept in the shared state"))
                .ok()
                .map(|()| id);
        }
        let mut entries = self.entries.lock().ok()?;
        entries.retain(|entry| entry.expires_at > now);
        let id = scope_id(asker, fingerprint, now, entries.len());
        entries.push(Entry {
            id: id.clone(),
            key: asker.key.to_owned(),
            holder: asker.holder,
            user: asker.user.to_owned(),
            scope,
            approved_by: asker.user.to_owned(),
            approved_at: now,
            fingerprint: fingerprint.to_owned(),
            expires_at,
        });
        self.keep(&entries);
        Some(id)
    }

    /// Forgets the scoped answers of the session `key` (it closed).
    pub(crate) fn forget_session(&self, key: &str) {
        if let Ok(mut entries) = self.entries.lock() {
            let before = entries.len();
            entries.retain(|entry| entry.key != key);
            if entries.len() != before {
                self.keep(&entries);
            }
        }
    }

    fn keep(&self, entries: &[Entry]) {
        if let Some(file) = &self.file
            && let Err(error) = kept::write(file, &entries)
        {
            tracing::warn!(file = %file.display(), %error, "the scoped answers could not be kept; they hold until portcullis stops");
        }
    }
}

/// The id of the answer `asker` chose when approving `fingerprint` at `now`, the `n`th held.
fn scope_id(asker: &Asker<'_>, fingerprint: &str, now: u64, n: usize) -> ScopeId {
    ScopeId(
        portcullis_audit::digest_bytes(
            format!("{}\n{}\n{fingerprint}\n{now}\n{n}", asker.key, asker.user).as_bytes(),
        )
        .replace("sha256:", "scope-")
        .chars()
        .take(22)
        .collect(),
    )
}

#[cfg(test)]
mod tests;
