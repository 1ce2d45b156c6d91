//! The `greet` prompt and completion of its `name` argument from a fixed list.

use rmcp::{
    ErrorData as McpError,
    handler::server::wrapper::Parameters,
    model::{ArgumentInfo, CompleteResult, CompletionInfo, PromptMessage, Role},
    prompt, prompt_router,
};
use schemars::JsonSchema;
use serde::Deserialize;

use crate::server::FixtureServer;

const GREET: &str = "greet";
/// Values offered when completing `greet`'s `name`.
const KNOWN_NAMES: [&str; 3] = ["alice", "bob", "carol"];

#[derive(Debug, Deserialize, JsonSchema)]
pub(crate) struct GreetArgs {
    /// Who to greet.
    name: String,
}

#[prompt_router(vis = "pub(crate)")]
impl FixtureServer {
    /// Ask the model to greet someone by name.
    #[prompt(name = "greet")]
    async fn greet(&self, Parameters(args): Parameters<GreetArgs>) -> Vec<PromptMessage> {
        vec![PromptMessage::new_text(
            Role::User,
            format!("Please greet {} warmly.", args.name),
        )]
    }
}

/// Completes an argument of the prompt named `prompt`.
pub(crate) fn complete(prompt: &str, argument: &ArgumentInfo) -> Result<CompleteResult, McpError> {
    if prompt != GREET {
        return Err(McpError::invalid_params(
            format!("no prompt `{prompt}`"),
            None,
        ));
    }
    if argument.name != "name" {
        return Ok(CompleteResult::default());
    }
    let values: Vec<String> = KNOWN_NAMES
        .iter()
        .filter(|name| name.starts_with(argument.value.as_str()))
        .map(|name| (*name).to_owned())
        .collect();
    let completion = CompletionInfo::with_all_values(values)
        .map_err(|error| McpError::internal_error(error, None))?;
    Ok(CompleteResult::new(completion))
}
