//! Calls that wait for a stateless client's answer between two of its requests.
//!
//! The call keeps running in its own task; the client holds only a sealed reference to it. Each
//! reference is accepted once: taking a call out of the table is what answering it means, so a
//! replayed `requestState` finds nothing. Unanswered calls are cancelled after [`PENDING_TTL`].
//!
//! A reference is 128 random bits, and a call is taken only with the binding (user, tool,
//! arguments) it was parked under: replicas share the key that seals `requestState`, so a
//! reference one replica issued may reach another, which must find nothing there (never a call
//! of its own that happens to carry the same number, someone else's).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rmcp::ErrorData as McpError;
use rmcp::model::{CallToolResponse, InputResponses};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::ask::Question;

/// How long a stateless client may take to answer before the waiting call is cancelled.
pub(crate) const PENDING_TTL: Duration = Duration::from_secs(600);

/// A call running in the background for a stateless client.
pub(crate) struct PendingCall {
    pub task: JoinHandle<Result<CallToolResponse, McpError>>,
    pub questions: mpsc::Receiver<Question>,
    /// Where the answers to the questions last shown to the client go.
    pub answer: Option<oneshot::Sender<InputResponses>>,
    pub cancel: CancellationToken,
}

impl Drop for PendingCall {
    fn drop(&mut self) {
        // A call nobody waits for any more must not go on acting.
        if !self.task.is_finished() {
            self.cancel.cancel();
        }
    }
}

/// A parked call and the binding of the request that may answer it.
struct Parked {
    call: PendingCall,
    bound_to: String,
}

#[derive(Default)]
pub(crate) struct PendingCalls {
    calls: Mutex<HashMap<String, Parked>>,
}

/// 128 random bits in hex: a parked call's reference.
fn new_reference() -> Option<String> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).ok()?;
    Some(bytes.iter().map(|byte| format!("{byte:02x}")).collect())
}

impl PendingCalls {
    /// Parks a call until the client answers with a request bound to `bound_to`; returns its
    /// reference, or `None` when no reference can be made (the call is then dropped, and so
    /// cancelled).
    pub(crate) fn park(self: &Arc<Self>, call: PendingCall, bound_to: &str) -> Option<String> {
        let id = new_reference()?;
        let parked = Parked {
            call,
            bound_to: bound_to.to_owned(),
        };
        self.calls.lock().ok()?.insert(id.clone(), parked);
        let table = Arc::downgrade(self);
        let expiring = id.clone();
        tokio::spawn(async move {
            tokio::time::sleep(PENDING_TTL).await;
            if let Some(table) = table.upgrade() {
                let expired = table
                    .calls
                    .lock()
                    .ok()
                    .and_then(|mut calls| calls.remove(&expiring));
                if expired.is_some() {
                    tracing::info!(
                        pending = %expiring,
                        "a call waiting for the client's answer expired and was cancelled"
                    );
                }
            }
        });
        Some(id)
    }

    /// Takes the call parked as `id` out, if a request bound to `bound_to` parked it: at most
    /// once per reference.
    pub(crate) fn take(&self, id: &str, bound_to: &str) -> Option<PendingCall> {
        let mut calls = self.calls.lock().ok()?;
        if calls.get(id)?.bound_to != bound_to {
            return None;
        }
        calls.remove(id).map(|parked| parked.call)
    }
}

#[cfg(test)]
mod tests {
    #![expect(clippy::unwrap_used, reason = "tests")]

    use super::*;

    fn waiting_call() -> PendingCall {
        PendingCall {
            task: tokio::spawn(std::future::pending()),
            questions: mpsc::channel(1).1,
            answer: None,
            cancel: CancellationToken::new(),
        }
    }

    #[tokio::test]
    async fn a_parked_call_is_taken_once_and_only_by_a_request_bound_like_the_one_that_parked_it() {
        let table = Arc::new(PendingCalls::default());
        let alices = table.park(waiting_call(), "alice\nmail.send\n{}").unwrap();
        let bobs = table.park(waiting_call(), "bob\nmail.send\n{}").unwrap();
        // References are unguessable and never reused, so one issued by another replica (which
        // shares the sealing key) names nothing here rather than someone else's call.
        assert_eq!(alices.len(), 32);
        assert_ne!(alices, bobs);
        assert!(table.take("1", "alice\nmail.send\n{}").is_none());
        // Bob's request cannot take Alice's call, which stays for her.
        assert!(table.take(&alices, "bob\nmail.send\n{}").is_none());
        assert!(table.take(&alices, "alice\nmail.send\n{}").is_some());
        assert!(table.take(&alices, "alice\nmail.send\n{}").is_none());
        assert!(table.take(&bobs, "bob\nmail.send\n{}").is_some());
    }
}
