//! The clients that hear about list changes, across sessions and eras.

use std::sync::Mutex;

use rmcp::model::ResourceUpdatedNotificationParam;
use rmcp::service::{Peer, RoleServer, SubscriptionSendError, SubscriptionSink};

/// The clients that can be told when lists change: session-era peers, and stateless clients
/// holding a `subscriptions/listen` request open.
#[derive(Default)]
pub(crate) struct Sessions {
    /// Resource subscriptions of session-era clients: exposed URI and the subscriber.
    subscriptions: Mutex<Vec<(String, u64, Peer<RoleServer>)>>,
    /// Session-era clients, by session.
    peers: Mutex<Vec<(u64, Peer<RoleServer>)>>,
    pub(crate) listeners: Mutex<Vec<SubscriptionSink>>,
}

impl Sessions {
    /// Records that `session` subscribed to the exposed `uri`, once however often it asks;
    /// true when it was not subscribed to it before.
    pub(crate) fn subscribe(&self, uri: String, session: u64, peer: Peer<RoleServer>) -> bool {
        let Ok(mut subscriptions) = self.subscriptions.lock() else {
            return false;
        };
        subscriptions.retain(|(_, _, p)| !p.is_transport_closed());
        if subscriptions
            .iter()
            .any(|(u, s, _)| *u == uri && *s == session)
        {
            return false;
        }
        subscriptions.push((uri, session, peer));
        true
    }

    /// Removes `session`'s subscription to `uri`; true when no session is subscribed to it now.
    pub(crate) fn unsubscribe(&self, uri: &str, session: u64) -> bool {
        let Ok(mut subscriptions) = self.subscriptions.lock() else {
            return false;
        };
        subscriptions.retain(|(u, s, _)| !(u == uri && *s == session));
        !subscriptions.iter().any(|(u, _, _)| u == uri)
    }

    /// Tells the sessions subscribed to `uri` (exposed) that it changed.
    pub(crate) async fn resource_updated(&self, uri: &str) {
        let peers: Vec<Peer<RoleServer>> = match self.subscriptions.lock() {
            Ok(subscriptions) => subscriptions
                .iter()
                .filter(|(u, _, p)| u == uri && !p.is_transport_closed())
                .map(|(_, _, p)| p.clone())
                .collect(),
            Err(_) => return,
        };
        for peer in peers {
            let _ = peer
                .notify_resource_updated(ResourceUpdatedNotificationParam::new(uri.to_owned()))
                .await;
        }
    }

    /// Adds a session-era client once it has initialized.
    pub(crate) fn register(&self, session: u64, peer: Peer<RoleServer>) {
        if let Ok(mut peers) = self.peers.lock() {
            peers.retain(|(_, p)| !p.is_transport_closed());
            peers.push((session, peer));
        }
    }

    /// Forgets `session`'s client and subscriptions: it ended.
    pub(crate) fn forget(&self, session: u64) {
        if let Ok(mut peers) = self.peers.lock() {
            peers.retain(|(s, _)| *s != session);
        }
        if let Ok(mut subscriptions) = self.subscriptions.lock() {
            subscriptions.retain(|(_, s, _)| *s != session);
        }
    }

    /// Tells every connected session-era client that tools, prompts and resources may have
    /// changed.
    pub(crate) async fn broadcast_list_changed(&self) {
        let peers: Vec<Peer<RoleServer>> = match self.peers.lock() {
            Ok(mut peers) => {
                peers.retain(|(_, p)| !p.is_transport_closed());
                peers.iter().map(|(_, p)| p.clone()).collect()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_session_is_subscribed_once_however_often_it_asks() {
        let (peer, _running) = crate::test_peer(()).await;
        let sessions = Sessions::default();
        assert!(sessions.subscribe("fx+file:///a".into(), 1, peer.clone()));
        assert!(
            !sessions.subscribe("fx+file:///a".into(), 1, peer.clone()),
            "a second subscription would tell the client of each change twice"
        );
        assert!(sessions.subscribe("fx+file:///a".into(), 2, peer.clone()));
        assert!(sessions.subscribe("fx+file:///b".into(), 1, peer));
        let held = |uri: &str| {
            sessions
                .subscriptions
                .lock()
                .map(|s| s.iter().filter(|(u, _, _)| u == uri).count())
                .unwrap_or(0)
        };
        assert_eq!(held("fx+file:///a"), 2);
        assert!(
            !sessions.unsubscribe("fx+file:///a", 1),
            "session 2 still holds it"
        );
        assert!(sessions.unsubscribe("fx+file:///a", 2));
        assert_eq!(held("fx+file:///b"), 1);
    }
}
