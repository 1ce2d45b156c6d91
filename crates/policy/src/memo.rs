//! Decisions already made by one loaded policy, so that the same question is put to Cedar once.
//!
//! Key design decision: a decision is kept under the SHA-256 of everything that reaches Cedar
//! for it (the action, the identity's issuer, subject, tenant, groups and scopes, the upstream
//! and its surface, the target with its effect and required scopes, the facts, and the time
//! when a policy reads it), never under a part of it: Cedar is deterministic over its request
//! and entities, so an equal key is an equal question. A call's arguments reach Cedar only as
//! tags; when any policy reads tags, decisions are not kept at all. The memo belongs to one
//! [`PolicyEngine`](crate::PolicyEngine): a reloaded policy is a new engine with an empty memo.

use std::collections::HashMap;
use std::sync::Mutex;

use sha2::{Digest as _, Sha256};

use crate::decision::Decision;
use crate::engine::{Facts, Request, Target};

/// Decisions kept at most; past it the memo starts again empty, so a client asking many
/// different questions costs evaluations, never memory.
pub(crate) const MEMO_LIMIT: usize = 4096;

/// See the module documentation.
#[derive(Debug, Default)]
pub(crate) struct Memo {
    decisions: Mutex<HashMap<[u8; 32], Decision>>,
}

impl Memo {
    /// The decision kept for `key`, or the one `decide` makes, kept.
    pub(crate) fn get_or_decide(
        &self,
        key: [u8; 32],
        decide: impl FnOnce() -> Decision,
    ) -> Decision {
        if let Some(decision) = self.lock().get(&key) {
            return decision.clone();
        }
        // Decided without the lock: two callers asking the same new question at once both
        // evaluate, and keep equal decisions.
        let decision = decide();
        let mut decisions = self.lock();
        if decisions.len() >= MEMO_LIMIT {
            decisions.clear();
        }
        decisions.insert(key, decision.clone());
        decision
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Decision>> {
        // A panic while holding the lock leaves a map of whole decisions: still sound.
        self.decisions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The key of `request`: the digest of every part of it that reaches Cedar (arguments aside:
/// see the module documentation), each part length-prefixed so that no two requests encode
/// alike. `now` is included only when `with_time`.
pub(crate) fn key(request: &Request<'_>, with_time: bool) -> [u8; 32] {
    let mut hasher = Sha256::new();
    let mut put = |bytes: &[u8]| {
        hasher.update((bytes.len() as u64).to_le_bytes());
        hasher.update(bytes);
    };
    // Destructured whole, so that a field added to a request or its facts does not compile
    // until it is keyed here too.
    let Request {
        envelope,
        action,
        upstream,
        surface,
        target,
        now,
        facts:
            Facts {
                crosses_tenant,
                new_recipient,
                escalates,
                tainted,
            },
    } = *request;
    // INVARIANT: these are every part of the envelope `PolicyEngine::principal` and
    // `engine::context` read.
    put(action.cedar_name().as_bytes());
    put(envelope.user().issuer.as_bytes());
    put(envelope.user().subject.as_bytes());
    match envelope.tenant() {
        Some(tenant) => {
            put(b"tenant");
            put(tenant.as_bytes());
        }
        None => put(b"no tenant"),
    }
    for set in [envelope.groups(), envelope.scopes()] {
        put(&(set.len() as u64).to_le_bytes());
        for member in set {
            put(member.as_bytes());
        }
    }
    put(upstream.as_bytes());
    put(surface.as_str().as_bytes());
    match target {
        Target::Tool {
            name,
            effect,
            required_scopes,
            arguments: _,
        } => {
            put(b"tool");
            put(name.as_bytes());
            put(effect.as_str().as_bytes());
            put(&(required_scopes.len() as u64).to_le_bytes());
            for scope in required_scopes {
                put(scope.as_bytes());
            }
        }
        Target::Prompt { name } => {
            put(b"prompt");
            put(name.as_bytes());
        }
        Target::Resource { uri } => {
            put(b"resource");
            put(uri.as_bytes());
        }
    }
    put(&[
        u8::from(crosses_tenant),
        u8::from(new_recipient),
        u8::from(escalates),
        u8::from(tainted),
    ]);
    if with_time {
        put(&now.to_le_bytes());
    }
    hasher.finalize().into()
}
