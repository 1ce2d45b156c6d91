//! Sealing the `requestState` that stateless clients carry between input-required rounds.
//!
//! The state comes back from an untrusted party. It is sealed with HMAC under a key generated at
//! start, bound to the exposed tool name, and expires; a value that fails any check is refused.

use std::time::Duration;

use rmcp::model::{RequestStateCodec, SealOptions};
use serde::{Deserialize, Serialize};

/// How long a client may take to answer an input-required round.
const ROUND_TTL: Duration = Duration::from_secs(600);

/// What Portcullis needs back on the retry.
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SealedRound {
    /// A tool call waiting in Portcullis for the answers.
    Pending { id: String },
    /// A prompt or resource request: the upstream's own state, opaque to Portcullis.
    Upstream { state: Option<String> },
    /// A tool call waiting for the person's approval (an entry of `StatelessApprovals`).
    Approval { id: u64 },
    /// A tool call waiting for the person to authorise an upstream (a sign-in flow's id).
    Authorize { flow: String },
    /// A tool call whose approval waits on the approval page (a ledger entry's id): the retry
    /// finds the person's decision there (a decline in the client declines it).
    Page { id: String },
}

#[derive(Debug)]
pub enum StateError {
    Invalid,
}

pub struct StateSealer {
    codec: RequestStateCodec,
}

impl StateSealer {
    /// A sealer with a fresh random key; states from an earlier run are refused.
    pub(crate) fn generate() -> Result<Self, String> {
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).map_err(|e| e.to_string())?;
        Self::with_key(key.to_vec())
    }

    /// A sealer with a key from config (at least 32 bytes), shared by the processes that
    /// hold it, so that each accepts the others' states.
    pub fn with_key(key: Vec<u8>) -> Result<Self, String> {
        if key.len() < 32 {
            return Err("the requestState key must be at least 32 bytes".to_owned());
        }
        let codec = RequestStateCodec::try_new(key).map_err(|e| e.to_string())?;
        Ok(Self { codec })
    }

    pub fn seal(&self, round: &SealedRound, bound_to: &str) -> String {
        self.seal_for(round, bound_to, ROUND_TTL)
    }

    /// Seals `round` for `ttl` instead of the default ten minutes.
    pub(crate) fn seal_for(&self, round: &SealedRound, bound_to: &str, ttl: Duration) -> String {
        let payload = serde_json::to_vec(round).unwrap_or_default();
        self.codec.seal_with(
            &payload,
            &SealOptions::new()
                .associated_data(bound_to.as_bytes())
                .ttl(ttl),
        )
    }

    pub fn open(&self, sealed: &str, bound_to: &str) -> Result<SealedRound, StateError> {
        let payload = self
            .codec
            .open_with(sealed, bound_to.as_bytes())
            .map_err(|_| StateError::Invalid)?;
        serde_json::from_slice(&payload).map_err(|_| StateError::Invalid)
    }
}
