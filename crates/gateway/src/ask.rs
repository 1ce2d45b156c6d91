//! Asking the person at the client a question on an upstream's behalf, in either protocol era.
//!
//! A session-era client is asked with a blocking `elicitation/create`. A stateless client cannot
//! receive requests: the question is handed over a [`Question`] channel to the request that is
//! waiting, which returns it as an input-required result and takes the answer from the retry.

use rmcp::model::{ElicitRequestParams, ElicitResult, ElicitationAction};
use rmcp::service::{Peer, RoleServer};
use tokio::sync::{mpsc, oneshot};

/// One question for a stateless client, and where its answer goes.
pub struct Question {
    pub params: ElicitRequestParams,
    pub answer: oneshot::Sender<ElicitResult>,
}

/// Who can answer questions for a call.
#[derive(Clone)]
pub enum Asker {
    /// A session-era client that declared elicitation.
    Client(Peer<RoleServer>),
    /// A stateless client, reached through the request that waits for the call.
    Bridge(mpsc::Sender<Question>),
    /// A client that cannot be asked: every question is declined.
    Nobody,
}

impl Asker {
    /// Asks `params` (already labelled with who asks) and returns the person's answer.
    pub async fn ask(&self, params: ElicitRequestParams) -> Result<ElicitResult, String> {
        match self {
            Asker::Client(peer) => peer
                .create_elicitation(params)
                .await
                .map_err(|error| format!("the client did not answer: {error}")),
            Asker::Bridge(questions) => {
                let (answer, answered) = oneshot::channel();
                questions
                    .send(Question { params, answer })
                    .await
                    .map_err(|_| {
                        "the client's request ended before it could be asked".to_owned()
                    })?;
                // A question that is never answered (expired, abandoned) counts as cancelled.
                Ok(answered
                    .await
                    .unwrap_or_else(|_| ElicitResult::new(ElicitationAction::Cancel)))
            }
            Asker::Nobody => Ok(ElicitResult::new(ElicitationAction::Decline)),
        }
    }
}
