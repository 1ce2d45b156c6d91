//! Asking the person at the client questions on an upstream's behalf, in either protocol era.
//!
//! A session-era client is asked with a blocking `elicitation/create` per question. A stateless
//! client cannot receive requests: the questions are handed, under the upstream's own keys, over
//! a [`Question`] channel to the request that is waiting, which returns them as an
//! input-required result and takes the answers from the retry.

use rmcp::model::{
    ElicitRequest, ElicitRequestParams, ElicitResult, ElicitationAction, InputRequest,
    InputRequests, InputResponses,
};
use rmcp::service::{Peer, RoleServer};
use tokio::sync::{mpsc, oneshot};

/// The key under which a single question from a session-era upstream travels to a stateless
/// client (an upstream's own input-required rounds keep their keys).
pub(crate) const SINGLE_KEY: &str = "elicitation";

/// Questions for a stateless client (elicitations only), and where the answers go.
pub struct Question {
    pub requests: InputRequests,
    pub answer: oneshot::Sender<InputResponses>,
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

fn declined() -> serde_json::Value {
    serde_json::json!({ "action": "decline" })
}

impl Asker {
    /// Asks one question (already labelled with who asks) and returns the person's answer.
    pub async fn ask(&self, params: ElicitRequestParams) -> Result<ElicitResult, String> {
        if let Asker::Client(peer) = self {
            return peer
                .create_elicitation(params)
                .await
                .map_err(|error| format!("the client did not answer: {error}"));
        }
        let mut requests = InputRequests::new();
        requests.insert(
            SINGLE_KEY.to_owned(),
            InputRequest::Elicitation(ElicitRequest::new(params)),
        );
        let answers = self.ask_all(requests).await?;
        Ok(answers
            .get(SINGLE_KEY)
            .and_then(|value| serde_json::from_value(value.clone()).ok())
            .unwrap_or_else(|| ElicitResult::new(ElicitationAction::Cancel)))
    }

    /// Asks several questions (elicitations, already labelled) and returns the answers by key.
    pub async fn ask_all(&self, requests: InputRequests) -> Result<InputResponses, String> {
        match self {
            Asker::Client(peer) => {
                let mut answers = InputResponses::new();
                for (key, request) in requests {
                    let InputRequest::Elicitation(request) = request else {
                        continue;
                    };
                    let answer = peer
                        .create_elicitation(request.params)
                        .await
                        .map_err(|error| format!("the client did not answer: {error}"))?;
                    answers.insert(
                        key,
                        serde_json::to_value(answer).map_err(|e| e.to_string())?,
                    );
                }
                Ok(answers)
            }
            Asker::Bridge(questions) => {
                let (answer, answered) = oneshot::channel();
                questions
                    .send(Question { requests, answer })
                    .await
                    .map_err(|_| {
                        "the client's request ended before it could be asked".to_owned()
                    })?;
                // Questions that are never answered (expired, abandoned) count as cancelled:
                // the upstream sees no answer and decides what that means.
                Ok(answered.await.unwrap_or_default())
            }
            Asker::Nobody => Ok(requests.into_keys().map(|key| (key, declined())).collect()),
        }
    }
}
