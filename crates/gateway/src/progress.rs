//! Progress notifications: upstream tokens are Portcullis's own, mapped back to the client's.
//!
//! Clients choose progress tokens per session, so two sessions may use the same one; the upstream
//! sees a fresh token per call and the notification is routed back by it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use rmcp::model::{NumberOrString, ProgressNotificationParam, ProgressToken};
use rmcp::service::{Peer, RoleServer};

struct Route {
    token: ProgressToken,
    peer: Peer<RoleServer>,
}

#[derive(Default)]
pub struct ProgressRoutes {
    next: AtomicU64,
    routes: Mutex<HashMap<u64, Route>>,
}

/// Removes the route when the call ends.
pub struct ProgressGuard<'a> {
    routes: &'a ProgressRoutes,
    key: u64,
}

impl Drop for ProgressGuard<'_> {
    fn drop(&mut self) {
        if let Ok(mut routes) = self.routes.routes.lock() {
            routes.remove(&self.key);
        }
    }
}

impl ProgressRoutes {
    /// Allocates the upstream token for a call whose client asked for progress.
    pub fn register(
        &self,
        token: ProgressToken,
        peer: Peer<RoleServer>,
    ) -> (ProgressToken, ProgressGuard<'_>) {
        let key = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        if let Ok(mut routes) = self.routes.lock() {
            routes.insert(key, Route { token, peer });
        }
        let upstream_token =
            ProgressToken(NumberOrString::String(format!("portcullis-{key}").into()));
        (upstream_token, ProgressGuard { routes: self, key })
    }

    /// Forwards an upstream's progress to the client that owns the token; drops unknown tokens.
    pub async fn forward(&self, mut params: ProgressNotificationParam) {
        let key = match &params.progress_token.0 {
            NumberOrString::String(text) => text
                .strip_prefix("portcullis-")
                .and_then(|n| n.parse::<u64>().ok()),
            NumberOrString::Number(_) => None,
        };
        let route = key.and_then(|key| {
            self.routes
                .lock()
                .ok()
                .and_then(|routes| routes.get(&key).map(|r| (r.token.clone(), r.peer.clone())))
        });
        let Some((token, peer)) = route else {
            tracing::debug!("progress for an unknown or finished call dropped");
            return;
        };
        params.progress_token = token;
        if let Err(error) = peer.notify_progress(params).await {
            tracing::debug!(%error, "could not forward progress to the client");
        }
    }
}
