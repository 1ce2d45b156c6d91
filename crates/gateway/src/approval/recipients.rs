//! The recipients each user has approved a call to: a recipient named before is not "new",
//! which policy and the change request read. Kept in a file of the state directory
//! (`known-recipients.json` beside the evidence log, mode 0600: who writes to whom is
//! personal), so a restart does not make every recipient new again and every send ask; or,
//! when replicas share state, in the database, so that a recipient approved through one
//! replica is not new on another.
//!
//! A file that cannot be read or parsed, and a database that cannot be reached, count as
//! knowing nobody (every recipient new: more questions, never fewer), and say so in the log.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Mutex;

use super::kept;

type ByUser = BTreeMap<String, BTreeSet<String>>;

pub(crate) enum KnownRecipients {
    /// In this process, kept in `file` (`None`: in memory only).
    Local {
        by_user: Mutex<ByUser>,
        file: Option<PathBuf>,
    },
    /// In the shared state's database, read at every decision (no copy here could hold what
    /// another replica learnt).
    Shared(portcullis_state::Store),
}

impl Default for KnownRecipients {
    /// Nobody known, in memory only.
    fn default() -> Self {
        Self::Local {
            by_user: Mutex::default(),
            file: None,
        }
    }
}

impl KnownRecipients {
    /// The recipients kept in `file`, kept there from now on.
    pub(crate) fn open(file: PathBuf) -> Self {
        let by_user: ByUser = kept::read(
            &file,
            "the known recipients cannot be read; every recipient counts as new",
        );
        Self::Local {
            by_user: Mutex::new(by_user),
            file: Some(file),
        }
    }

    /// Decisions are synchronous: the database is waited for on this thread
    /// (`portcullis_state::wait`).
    pub(crate) fn is_known(&self, user: &str, recipient: &str) -> bool {
        match self {
            Self::Local { by_user, .. } => by_user
                .lock()
                .ok()
                .and_then(|users| users.get(user).map(|known| known.contains(recipient)))
                .unwrap_or(false),
            Self::Shared(store) => {
                let asked = [recipient.to_owned()];
                match portcullis_state::wait(store.known_recipients(user, &asked)) {
                    Ok(known) => known.contains(recipient),
                    Err(error) => {
                        tracing::warn!(%error, "the known recipients cannot be read; the recipient counts as new");
                        false
                    }
                }
            }
        }
    }

    /// Remembers `recipients` of `user` (an approved call named them), and keeps them.
    pub(crate) fn remember(&self, user: &str, recipients: &[String]) {
        match self {
            Self::Local { by_user, file } => {
                let Ok(mut users) = by_user.lock() else {
                    return;
                };
                let known = users.entry(user.to_owned()).or_default();
                let before = known.len();
                known.extend(recipients.iter().cloned());
                if known.len() == before {
                    return;
                }
                if let Some(file) = file
                    && let Err(error) = kept::write(file, &*users)
                {
                    tracing::warn!(file = %file.display(), %error, "the known recipients could not be kept; they are known until portcullis stops");
                }
            }
            Self::Shared(store) => {
                if recipients.is_empty() {
                    return;
                }
                if let Err(error) =
                    portcullis_state::wait(store.remember_recipients(user, recipients))
                {
                    tracing::warn!(%error, "the known recipients could not be kept; they stay new");
                }
            }
        }
    }
}
