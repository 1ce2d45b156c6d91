//! The clients that hear about list changes, across sessions and eras.

use std::sync::Mutex;

use rmcp::service::{Peer, RoleServer, SubscriptionSendError, SubscriptionSink};

/// The clients that can be told when lists change: session-era peers, and stateless clients
/// holding a `subscriptions/listen` request open.
#[derive(Default)]
pub struct Sessions {
    peers: Mutex<Vec<Peer<RoleServer>>>,
    pub(crate) listeners: Mutex<Vec<SubscriptionSink>>,
}

impl Sessions {
    /// Adds a session-era client once it has initialized.
    pub fn register(&self, peer: Peer<RoleServer>) {
        if let Ok(mut peers) = self.peers.lock() {
            peers.retain(|p| !p.is_transport_closed());
            peers.push(peer);
        }
    }

    /// Tells every connected session-era client that tools, prompts and resources may have
    /// changed.
    pub async fn broadcast_list_changed(&self) {
        let peers: Vec<Peer<RoleServer>> = match self.peers.lock() {
            Ok(mut peers) => {
                peers.retain(|p| !p.is_transport_closed());
                peers.clone()
            }
            Err(_) => return,
        };
        for peer in peers {
            let _ = peer.notify_tool_list_changed().await;
            let _ = peer.notify_prompt_list_changed().await;
            let _ = peer.notify_resource_list_changed().await;
        }
        let listeners: Vec<SubscriptionSink> = match self.listeners.lock() {
            Ok(listeners) => listeners.clone(),
            Err(_) => return,
        };
        for sink in listeners {
            // A sink refuses kinds its client did not ask for; only a closed one is dropped.
            let outcomes = [
                sink.notify_tool_list_changed().await,
                sink.notify_prompt_list_changed().await,
                sink.notify_resource_list_changed().await,
            ];
            if outcomes
                .iter()
                .any(|o| matches!(o, Err(SubscriptionSendError::SubscriptionClosed)))
                && let Ok(mut listeners) = self.listeners.lock()
            {
                listeners.retain(|s| s.id() != sink.id());
            }
        }
    }
}
