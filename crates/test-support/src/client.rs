//! A client for in-process tests: a person who answers every approval form one way (or a client
//! that declares no elicitation at all), and remembers what each form said.

use std::sync::{Arc, Mutex, PoisonError};

use rmcp::ClientHandler;
use rmcp::ErrorData as McpError;
use rmcp::model::{
    ClientCapabilities, ClientConfig, ElicitRequestParams, ElicitResult, ElicitationAction,
    Implementation,
};
use rmcp::service::{RequestContext, RoleClient};

/// What the person does with a form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answers {
    /// The client declares no elicitation: nobody can be asked.
    Unable,
    /// Every field set to `true` (an approval's `approve`).
    Accept,
    Decline,
}

/// The test client; clones share what was asked.
#[derive(Debug, Clone)]
pub struct TestClient {
    answers: Answers,
    asked: Arc<Mutex<Vec<String>>>,
}

impl TestClient {
    pub fn new(answers: Answers) -> Self {
        TestClient {
            answers,
            asked: Arc::default(),
        }
    }

    /// The message of every form asked so far, in order.
    pub fn asked(&self) -> Vec<String> {
        self.asked
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl ClientHandler for TestClient {
    fn get_info(&self) -> ClientConfig {
        let capabilities = match self.answers {
            Answers::Unable => ClientCapabilities::default(),
            Answers::Accept | Answers::Decline => {
                serde_json::from_value(serde_json::json!({"elicitation": {"form": {}}}))
                    .unwrap_or_default()
            }
        };
        ClientConfig::new(capabilities, Implementation::new("test-client", "1"))
    }

    async fn create_elicitation(
        &self,
        request: ElicitRequestParams,
        _context: RequestContext<RoleClient>,
    ) -> Result<ElicitResult, McpError> {
        let ElicitRequestParams::FormElicitationParams {
            message,
            requested_schema,
            ..
        } = request
        else {
            return Ok(ElicitResult::new(ElicitationAction::Decline));
        };
        self.asked
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(message);
        Ok(match self.answers {
            Answers::Accept => {
                let content = requested_schema
                    .properties
                    .keys()
                    .map(|field| (field.clone(), serde_json::Value::Bool(true)))
                    .collect();
                ElicitResult::new(ElicitationAction::Accept)
                    .with_content(serde_json::Value::Object(content))
            }
            Answers::Decline | Answers::Unable => ElicitResult::new(ElicitationAction::Decline),
        })
    }
}
