//! Progress notifications from one upstream, routed back to the client that made the call.
//!
//! rmcp's client gives every request it sends its own progress token, so the upstream never sees
//! the client's token: the route is keyed by the token rmcp chose, per upstream connection, and
//! the client's own token is put back on the way out.

use std::collections::HashMap;
use std::sync::Mutex;

use rmcp::model::{ProgressNotificationParam, ProgressToken};
use rmcp::service::{Peer, RoleServer};

struct Route {
    token: ProgressToken,
    peer: Peer<RoleServer>,
    /// Whether the upstream has sent progress for this call at all.
    reported: bool,
}

/// The calls of one upstream whose clients asked for progress.
#[derive(Default)]
pub struct ProgressRoutes {
    routes: Mutex<HashMap<ProgressToken, Route>>,
}

/// Removes the route when the call ends.
pub struct ProgressGuard<'a> {
    routes: &'a ProgressRoutes,
    key: ProgressToken,
}

impl ProgressGuard<'_> {
    /// True when the upstream has reported progress for this call: more may be on its way.
    pub fn reported(&self) -> bool {
        self.routes
            .routes
            .lock()
            .ok()
            .and_then(|routes| routes.get(&self.key).map(|r| r.reported))
            .unwrap_or(false)
    }
}

impl Drop for ProgressGuard<'_> {
    fn drop(&mut self) {
        if let Ok(mut routes) = self.routes.routes.lock() {
            routes.remove(&self.key);
        }
    }
}

impl ProgressRoutes {
    /// Routes progress for `upstream_token` to `peer` under the client's `token`.
    pub fn register(
        &self,
        upstream_token: ProgressToken,
        token: ProgressToken,
        peer: Peer<RoleServer>,
    ) -> ProgressGuard<'_> {
        if let Ok(mut routes) = self.routes.lock() {
            routes.insert(
                upstream_token.clone(),
                Route {
                    token,
                    peer,
                    reported: false,
                },
            );
        }
        ProgressGuard {
            routes: self,
            key: upstream_token,
        }
    }

    /// Forwards an upstream's progress to the client that owns the call; drops unknown tokens.
    pub async fn forward(&self, mut params: ProgressNotificationParam) {
        let route = self.routes.lock().ok().and_then(|mut routes| {
            routes.get_mut(&params.progress_token).map(|r| {
                r.reported = true;
                (r.token.clone(), r.peer.clone())
            })
        });
        let Some((token, peer)) = route else {
            tracing::debug!("progress for an unknown or finished call dropped");
            return;
        };
        params.progress_token = token;
        if let Some(message) = &params.message {
            let (message, _) = crate::secrets::Secrets::global().redact_text(message);
            params.message = Some(message);
        }
        if let Err(error) = peer.notify_progress(params).await {
            tracing::debug!(%error, "could not forward progress to the client");
        }
    }
}
