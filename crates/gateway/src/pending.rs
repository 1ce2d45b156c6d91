//! Calls that wait for a stateless client's answer between two of its requests.
//!
//! The call keeps running in its own task; the client holds only a sealed reference to it. Each
//! reference is accepted once: taking a call out of the table is what answering it means, so a
//! replayed `requestState` finds nothing. Unanswered calls are cancelled after [`PENDING_TTL`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
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

#[derive(Default)]
pub(crate) struct PendingCalls {
    next: AtomicU64,
    calls: Mutex<HashMap<u64, PendingCall>>,
}

impl PendingCalls {
    /// Parks a call until the client answers; returns its reference.
    pub(crate) fn park(self: &Arc<Self>, call: PendingCall) -> u64 {
        let id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        if let Ok(mut calls) = self.calls.lock() {
            calls.insert(id, call);
        }
        let table = Arc::downgrade(self);
        tokio::spawn(async move {
            tokio::time::sleep(PENDING_TTL).await;
            if let Some(table) = table.upgrade() {
                let expired = table.take(id);
                if expired.is_some() {
                    tracing::info!(
                        pending = id,
                        "a call waiting for the client's answer expired and was cancelled"
                    );
                }
            }
        });
        id
    }

    /// Takes a parked call out: at most once per reference.
    pub(crate) fn take(&self, id: u64) -> Option<PendingCall> {
        self.calls.lock().ok()?.remove(&id)
    }
}
