//! The recipients each user has approved a call to: a recipient named before is not "new",
//! which policy and the change request read. Kept in a file of the state directory
//! (`known-recipients.json` beside the evidence log, mode 0600: who writes to whom is
//! personal), so a restart does not make every recipient new again and every send ask.
//!
//! A file that cannot be read or parsed counts as knowing nobody (every recipient new: more
//! questions, never fewer), and says so in the log.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Mutex;

use super::kept;

type ByUser = BTreeMap<String, BTreeSet<String>>;

#[derive(Default)]
pub(crate) struct KnownRecipients {
    by_user: Mutex<ByUser>,
    /// Where they are kept (`None`: in memory only).
    file: Option<PathBuf>,
}

impl KnownRecipients {
    /// The recipients kept in `file`, kept there from now on.
    pub(crate) fn open(file: PathBuf) -> Self {
        let by_user: ByUser = kept::read(
            &file,
            "the known recipients cannot be read; every recipient counts as new",
        );
        Self {
            by_user: Mutex::new(by_user),
            file: Some(file),
        }
    }
    pub(crate) fn is_known(&self, user: &str, recipient: &str) -> bool {
        self.by_user
            .lock()
            .ok()
            .and_then(|users| users.get(user).map(|known| known.contains(recipient)))
            .unwrap_or(false)
    }

    /// Remembers `recipients` of `user` (an approved call named them), and keeps them.
    pub(crate) fn remember(&self, user: &str, recipients: &[String]) {
        let Ok(mut users) = self.by_user.lock() else {
            return;
        };
        let known = users.entry(user.to_owned()).or_default();
        let before = known.len();
        known.extend(recipients.iter().cloned());
        if known.len() == before {
            return;
        }
        if let Some(file) = &self.file
            && let Err(error) = kept::write(file, &*users)
        {
            tracing::warn!(file = %file.display(), %error, "the known recipients could not be kept; they are known until portcullis stops");
        }
    }
}
