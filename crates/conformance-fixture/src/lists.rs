//! The tools and prompts that the list-change triggers add, and the listeners told about it.
//!
//! Session-era clients hear `notifications/*/list_changed` on their session; stateless
//! (2026-07-28) clients hear them on a `subscriptions/listen` stream. Both kinds are told.

use std::sync::Mutex;

use rmcp::service::{SubscriptionSendError, SubscriptionSink};
use serde_json::{Value, json};

/// What the triggers added so far, and the open `subscriptions/listen` streams.
#[derive(Default)]
pub(crate) struct ListChanges {
    /// How many times a trigger ran: each run adds one tool and one prompt.
    added: Mutex<usize>,
    listeners: Mutex<Vec<SubscriptionSink>>,
}

impl ListChanges {
    fn added(&self) -> usize {
        self.added.lock().map(|n| *n).unwrap_or(0)
    }

    /// The tools the triggers added, as the wire shows them.
    pub(crate) fn added_tools(&self) -> Vec<Value> {
        (0..self.added())
            .map(|n| {
                json!({ "name": format!("added_tool_{n}"),
                    "description": "Added by a list-change trigger",
                    "inputSchema": { "type": "object", "properties": {} } })
            })
            .collect()
    }

    /// The prompts the triggers added, as the wire shows them.
    pub(crate) fn added_prompts(&self) -> Vec<Value> {
        (0..self.added())
            .map(|n| {
                json!({ "name": format!("added_prompt_{n}"),
                    "description": "Added by a list-change trigger" })
            })
            .collect()
    }

    /// Remembers a `subscriptions/listen` stream until it closes.
    pub(crate) fn listen(&self, sink: SubscriptionSink) {
        if let Ok(mut listeners) = self.listeners.lock() {
            listeners.push(sink);
        }
    }

    /// Adds a tool and a prompt, and tells every open listener that both lists changed.
    pub(crate) async fn change(&self) {
        if let Ok(mut added) = self.added.lock() {
            *added += 1;
        }
        let listeners = self
            .listeners
            .lock()
            .map(|open| open.clone())
            .unwrap_or_default();
        let mut closed = Vec::new();
        for sink in listeners {
            // A listener that does not accept one of the two kinds still hears the other.
            let tools = sink.notify_tool_list_changed().await;
            let prompts = sink.notify_prompt_list_changed().await;
            if [tools, prompts]
                .iter()
                .any(|sent| matches!(sent, Err(SubscriptionSendError::SubscriptionClosed)))
            {
                closed.push(sink.id().clone());
            }
        }
        if let Ok(mut listeners) = self.listeners.lock() {
            listeners.retain(|open| !closed.contains(open.id()));
        }
    }
}
