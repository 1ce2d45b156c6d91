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
#[derive(Debug, Serialize, Deserialize)]
pub enum SealedRound {
    /// A tool call waiting in Portcullis for the answers.
    Pending { id: u64 },
    /// A prompt or resource request: the upstream's own state, opaque to Portcullis.
    Upstream { state: Option<String> },
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
    pub fn generate() -> Result<Self, String> {
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).map_err(|e| e.to_string())?;
        let codec = RequestStateCodec::try_new(key.to_vec()).map_err(|e| e.to_string())?;
        Ok(Self { codec })
    }

    pub fn seal(&self, round: &SealedRound, bound_to: &str) -> String {
        let payload = serde_json::to_vec(round).unwrap_or_default();
        self.codec.seal_with(
            &payload,
            &SealOptions::new()
                .associated_data(bound_to.as_bytes())
                .ttl(ROUND_TTL),
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
