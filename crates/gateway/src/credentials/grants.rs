//! Where the delegated grants are kept: the encrypted file (`[credentials] store`: one
//! process, and `portcullis login` beside it), or the shared state's database (`[state]
//! backend = "postgres"`: every replica). One interface over both, so the credential code has
//! one path: every use reads the grant where it is kept now (no copy in this process could
//! outlive its removal elsewhere), and a refresh reads it again once it holds the lock.

use portcullis_credentials::{CredentialKey, CredentialStore, Grant};
use portcullis_state::{GrantChange, SharedGrants};

#[derive(Clone)]
pub(crate) enum GrantStore {
    Local(CredentialStore),
    Shared(SharedGrants),
}

impl GrantStore {
    /// `key`'s grant as it is kept now.
    pub(crate) async fn get(&self, key: &CredentialKey) -> Result<Option<Grant>, String> {
        match self {
            Self::Local(store) => store.get(key).map_err(|error| error.to_string()),
            Self::Shared(grants) => grants.get(key).await.map_err(shared),
        }
    }

    /// [`GrantStore::get`] for code that cannot wait asynchronously (what a list shows,
    /// whether a per-user instance can start). The file is read on this thread, as always; the
    /// database is waited for on it too (`portcullis_state::wait`), and the callers take an
    /// error as no grant (they show less and start nothing, never more).
    pub(crate) fn get_now(&self, key: &CredentialKey) -> Result<Option<Grant>, String> {
        match self {
            Self::Local(store) => store.get(key).map_err(|error| error.to_string()),
            Self::Shared(grants) => portcullis_state::wait(grants.get(key)).map_err(shared),
        }
    }

    /// Stores `grant` for `key`, replacing any it had.
    pub(crate) async fn put(&self, key: &CredentialKey, grant: Grant) -> Result<(), String> {
        match self {
            Self::Local(store) => store
                .put(key.clone(), grant)
                .map_err(|error| error.to_string()),
            Self::Shared(grants) => grants.put(key, &grant).await.map_err(shared),
        }
    }

    /// Deletes `key`'s grant, if any.
    pub(crate) async fn remove(&self, key: &CredentialKey) -> Result<(), String> {
        match self {
            Self::Local(store) => store.remove(key).map(drop).map_err(|e| e.to_string()),
            Self::Shared(grants) => grants.remove(key).await.map(drop).map_err(shared),
        }
    }

    /// Reads `key`'s grant afresh, lets `change` look at it (and refresh it), and applies
    /// what `change` decided; `change`'s value, or `None` when there is no grant. The caller
    /// holds this process's refresh lock; in the database the row's lock also keeps other
    /// replicas out until the change is written.
    pub(crate) async fn update<T, F, Fut>(
        &self,
        key: &CredentialKey,
        change: F,
    ) -> Result<Option<T>, String>
    where
        F: FnOnce(Grant) -> Fut,
        Fut: Future<Output = (GrantChange, T)>,
    {
        match self {
            Self::Local(_) => {
                let Some(grant) = self.get(key).await? else {
                    return Ok(None);
                };
                let (decided, value) = change(grant).await;
                match decided {
                    GrantChange::Keep => {}
                    GrantChange::Replace(grant) => self.put(key, grant).await?,
                    GrantChange::Remove => self.remove(key).await?,
                }
                Ok(Some(value))
            }
            Self::Shared(grants) => grants.update(key, change).await.map_err(shared),
        }
    }
}

/// A database error as the credential code passes it on, towards the client: that the shared
/// grants could not be used. The detail (no `portcullis_state` error holds the connection
/// string or a token) is for the operator, in the log.
fn shared(error: portcullis_state::StoreError) -> String {
    tracing::warn!(%error, "the shared grants in the database could not be used");
    "the shared grants in the database could not be used (portcullis's log says why)".to_owned()
}
