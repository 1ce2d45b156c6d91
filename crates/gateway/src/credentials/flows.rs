//! Authorization code flows in progress: one per sign-in link handed to a person.
//!
//! A flow is opened for one user and one client, and names the authorization request (its
//! PKCE verifier and single-use `state`). The link a person opens names the flow by an id of
//! its own (256 random bits), never by the `state`, which only the authorization server
//! sends back. A flow ends once: completed by its callback, declined on the consent page, or
//! expired.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use portcullis_auth::PendingAuthorization;
use portcullis_credentials::CredentialKey;
use tokio::sync::watch;
use url::Url;

/// How a flow ended: what was authorised, or why nothing was.
pub type FlowOutcome = Result<String, String>;

/// What a flow is for.
pub(crate) struct FlowRequest {
    pub key: CredentialKey,
    /// The MCP client whose consent this is.
    pub client: String,
    pub scopes: Vec<String>,
    pub authorization_url: Url,
    /// Portcullis's own pages, `http://ADDR`.
    pub base: String,
}

pub(crate) struct Flow {
    pub request: FlowRequest,
    /// Taken by the one callback that completes the flow.
    pending: Mutex<Option<PendingAuthorization>>,
    opened: Instant,
    done: watch::Sender<Option<FlowOutcome>>,
}

impl Flow {
    pub(crate) fn take_pending(&self) -> Option<PendingAuthorization> {
        self.pending.lock().ok().and_then(|mut slot| slot.take())
    }

    pub(crate) fn finish(&self, outcome: FlowOutcome) {
        // The first ending stands.
        self.done.send_if_modified(|slot| {
            if slot.is_some() {
                return false;
            }
            *slot = Some(outcome);
            true
        });
    }

    pub(crate) fn watch(&self) -> watch::Receiver<Option<FlowOutcome>> {
        self.done.subscribe()
    }

    pub(crate) fn outcome(&self) -> Option<FlowOutcome> {
        self.done.borrow().clone()
    }
}

/// A flow as its opener sees it: the link to hand to the person, and its ending.
pub struct Started {
    pub id: String,
    pub url: String,
    done: watch::Receiver<Option<FlowOutcome>>,
}

impl Started {
    /// Waits at most `limit` for the flow to end; `None`: it did not.
    pub async fn wait(&mut self, limit: Duration) -> Option<FlowOutcome> {
        let ended = tokio::time::timeout(limit, self.done.wait_for(Option::is_some)).await;
        match ended {
            Ok(Ok(outcome)) => outcome.clone(),
            _ => None,
        }
    }
}

pub(crate) struct Flows {
    lifetime: Duration,
    open: Mutex<HashMap<String, Arc<Flow>>>,
}

fn random_id() -> String {
    let mut bytes = [0u8; 32];
    // Without randomness there is no unguessable link: the flow id is then unusable, and
    // `take_by_state` never matches it.
    if getrandom::fill(&mut bytes).is_err() {
        return String::new();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Flows {
    pub(crate) fn new(lifetime: Duration) -> Self {
        Self {
            lifetime,
            open: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn open(
        &self,
        request: FlowRequest,
        pending: PendingAuthorization,
    ) -> Result<Started, String> {
        let id = random_id();
        if id.is_empty() {
            return Err("no randomness is available for a sign-in link".to_owned());
        }
        let url = format!("{}/oauth/start/{id}", request.base);
        let (done, receiver) = watch::channel(None);
        let flow = Arc::new(Flow {
            pending: Mutex::new(Some(pending)),
            request,
            opened: Instant::now(),
            done,
        });
        let mut open = self
            .open
            .lock()
            .map_err(|_| "the sign-in table is unusable".to_owned())?;
        self.prune(&mut open);
        open.insert(id.clone(), flow);
        Ok(Started {
            id,
            url,
            done: receiver,
        })
    }

    /// A flow by the id in its link, while it lasts.
    pub(crate) fn get(&self, id: &str) -> Option<Arc<Flow>> {
        let mut open = self.open.lock().ok()?;
        self.prune(&mut open);
        open.get(id).cloned()
    }

    /// The flow whose authorization request carried `state`, once: its verifier is taken.
    pub(crate) fn take_by_state(&self, state: &str) -> Option<Arc<Flow>> {
        let mut open = self.open.lock().ok()?;
        self.prune(&mut open);
        open.values()
            .find(|flow| {
                flow.pending
                    .lock()
                    .ok()
                    .is_some_and(|slot| slot.as_ref().is_some_and(|p| p.matches_state(state)))
            })
            .cloned()
    }

    /// Ends flows past their lifetime, telling whoever waits.
    fn prune(&self, open: &mut HashMap<String, Arc<Flow>>) {
        open.retain(|_, flow| {
            let live = flow.opened.elapsed() < self.lifetime;
            if !live {
                flow.finish(Err("the sign-in link expired".to_owned()));
            }
            live
        });
    }
}
