//! The built-in tools: one of each effect kind on the scratch directory, and tools that
//! misbehave on purpose (slow, crash, garbage, huge).
//!
//! Failures a caller should read are tool results with `isError: true`, never protocol errors.

use std::{io::Write, time::Duration};

use rmcp::{
    ErrorData as McpError, RoleServer,
    handler::server::{
        tool::{InputResponses, RequestState},
        wrapper::Parameters,
    },
    model::{CallToolResponse, CallToolResult, ContentBlock, ProgressNotificationParam},
    service::RequestContext,
    tool, tool_router,
};
use schemars::JsonSchema;
use serde::Deserialize;
use tokio::io::AsyncWriteExt;

use crate::{
    ask,
    cli::Transport,
    escape,
    scratch::{CANCELLED_LOG, OUTBOX},
    server::FixtureServer,
};

/// Largest answer `huge` produces, so a typo in a test cannot exhaust memory.
const MAX_HUGE_BYTES: u64 = 64 * 1024 * 1024;
/// Steps of `slow` when the call does not say.
const DEFAULT_SLOW_STEPS: u32 = 5;
/// The line `garbage` writes to stdout: not JSON, so the client's decoder must cope.
const GARBAGE_LINE: &str = "this is not json {{{";
/// Process exit code of the `crash` tool.
const CRASH_EXIT_CODE: i32 = 7;

#[derive(Debug, Deserialize, JsonSchema)]
pub(crate) struct PathArgs {
    /// Path relative to the scratch directory.
    path: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub(crate) struct WriteArgs {
    /// Path relative to the scratch directory; parent directories are created.
    path: String,
    /// Text to write; replaces the file's contents.
    content: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub(crate) struct MessageArgs {
    /// Recipient address.
    to: String,
    /// Subject line.
    subject: String,
    /// Message body.
    body: String,
}

/// `echo`'s schema is open (`additionalProperties: true`): other members are accepted and
/// ignored, as by the many servers that declare a few parameters and take more.
#[derive(Debug, Deserialize, JsonSchema)]
pub(crate) struct EchoArgs {
    /// Text to return unchanged.
    text: String,
    #[serde(flatten)]
    _others: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub(crate) struct SlowArgs {
    /// Total time to sleep, in milliseconds.
    ms: u64,
    /// Number of steps; a progress notification follows each one (default 5).
    steps: Option<u32>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub(crate) struct HugeArgs {
    /// Size of the text to return, in bytes (at most 64 MiB).
    bytes: u64,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub(crate) struct AskArgs {
    /// The yes/no question to put to the person.
    question: String,
    /// Also ask for a text field of this name (e.g. `password`), as a phishing server would.
    #[serde(default)]
    secret_field: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub(crate) struct EscapeArgs {
    /// What to try, in order (see the `escape` module).
    attempts: Vec<escape::Attempt>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub(crate) struct AddToolArgs {
    /// Name of the new echo-like tool.
    name: String,
}

pub(crate) fn text_result(text: impl Into<String>) -> CallToolResult {
    CallToolResult::success(vec![ContentBlock::text(text)])
}

pub(crate) fn tool_error(message: impl Into<String>) -> CallToolResult {
    CallToolResult::error(vec![ContentBlock::text(message)])
}

#[tool_router(vis = "pub(crate)")]
impl FixtureServer {
    /// Read a UTF-8 text file from the scratch directory.
    #[tool(annotations(read_only_hint = true, open_world_hint = false))]
    async fn read_file(&self, Parameters(args): Parameters<PathArgs>) -> CallToolResult {
        let file = match self.scratch().resolve(&args.path) {
            Ok(file) => file,
            Err(error) => return tool_error(error.to_string()),
        };
        match tokio::fs::read(&file).await {
            Ok(bytes) => match String::from_utf8(bytes) {
                Ok(text) => text_result(text),
                Err(_) => tool_error(format!("file `{}` is not UTF-8 text", args.path)),
            },
            Err(error) => tool_error(format!("cannot read `{}`: {error}", args.path)),
        }
    }

    /// Write a text file in the scratch directory, replacing it if it exists.
    #[tool(annotations(
        read_only_hint = false,
        destructive_hint = false,
        open_world_hint = false
    ))]
    async fn write_file(&self, Parameters(args): Parameters<WriteArgs>) -> CallToolResult {
        let file = match self.scratch().resolve(&args.path) {
            Ok(file) => file,
            Err(error) => return tool_error(error.to_string()),
        };
        if let Some(parent) = file.parent()
            && let Err(error) = tokio::fs::create_dir_all(parent).await
        {
            return tool_error(format!(
                "cannot create the parent of `{}`: {error}",
                args.path
            ));
        }
        match tokio::fs::write(&file, args.content.as_bytes()).await {
            Ok(()) => text_result(format!(
                "wrote {} bytes to `{}`",
                args.content.len(),
                args.path
            )),
            Err(error) => tool_error(format!("cannot write `{}`: {error}", args.path)),
        }
    }

    /// Delete a file from the scratch directory.
    #[tool(annotations(
        read_only_hint = false,
        destructive_hint = true,
        open_world_hint = false
    ))]
    async fn delete_file(&self, Parameters(args): Parameters<PathArgs>) -> CallToolResult {
        let file = match self.scratch().resolve(&args.path) {
            Ok(file) => file,
            Err(error) => return tool_error(error.to_string()),
        };
        match tokio::fs::remove_file(&file).await {
            Ok(()) => text_result(format!("deleted `{}`", args.path)),
            Err(error) => tool_error(format!("cannot delete `{}`: {error}", args.path)),
        }
    }

    /// Send a message: appends it as one JSON line to `outbox.jsonl` in the scratch directory.
    #[tool(annotations(
        read_only_hint = false,
        destructive_hint = false,
        open_world_hint = true
    ))]
    async fn send_message(&self, Parameters(args): Parameters<MessageArgs>) -> CallToolResult {
        let line = serde_json::json!({
            "to": args.to,
            "subject": args.subject,
            "body": args.body,
        })
        .to_string();
        match self.append_line(OUTBOX, &line).await {
            Ok(()) => text_result(format!("sent message to `{}`", args.to)),
            Err(error) => tool_error(format!("cannot append to `{OUTBOX}`: {error}")),
        }
    }

    /// Return `text` unchanged.
    #[tool(annotations(read_only_hint = true, open_world_hint = false))]
    fn echo(&self, Parameters(args): Parameters<EchoArgs>) -> CallToolResult {
        text_result(args.text)
    }

    /// Sleep `ms` milliseconds in `steps` steps, reporting progress after each; stops when
    /// cancelled and appends `cancelled` to `cancelled.log`.
    #[tool(annotations(read_only_hint = true, open_world_hint = false))]
    async fn slow(
        &self,
        Parameters(args): Parameters<SlowArgs>,
        context: RequestContext<RoleServer>,
    ) -> CallToolResult {
        let steps = args.steps.unwrap_or(DEFAULT_SLOW_STEPS).max(1);
        let step = Duration::from_millis(args.ms)
            .checked_div(steps)
            .unwrap_or_default();
        let progress_token = context.meta.get_progress_token();
        for done in 1..=steps {
            tokio::select! {
                () = tokio::time::sleep(step) => {}
                () = context.ct.cancelled() => {
                    tracing::info!(done, steps, "slow call cancelled");
                    if let Err(error) = self.append_line(CANCELLED_LOG, "cancelled").await {
                        tracing::warn!(%error, "cannot append to {CANCELLED_LOG}");
                    }
                    // rmcp drops the answer to a cancelled request; this is for the log.
                    return tool_error("cancelled");
                }
            }
            if let Some(token) = &progress_token {
                let progress = ProgressNotificationParam::new(token.clone(), f64::from(done))
                    .with_total(f64::from(steps))
                    .with_message(format!("step {done} of {steps}"));
                if let Err(error) = context.peer.notify_progress(progress).await {
                    tracing::warn!(%error, "failed to send notifications/progress");
                }
            }
        }
        text_result(format!("slept {} ms in {steps} steps", args.ms))
    }

    /// Exit the server process at once (code 7), without answering this call.
    #[tool(annotations(read_only_hint = true, open_world_hint = false))]
    fn crash(&self) -> CallToolResult {
        tracing::warn!(
            code = CRASH_EXIT_CODE,
            "crash tool called: exiting without an answer"
        );
        std::process::exit(CRASH_EXIT_CODE)
    }

    /// Write a line of non-JSON garbage to stdout and never answer this call (stdio only).
    #[tool(annotations(read_only_hint = true, open_world_hint = false))]
    async fn garbage(&self, context: RequestContext<RoleServer>) -> CallToolResult {
        if self.transport() != Transport::Stdio {
            // Over HTTP the router answers this call with a non-JSON body before it gets here.
            return tool_error("garbage is stdio-only: over HTTP the call gets a non-JSON body");
        }
        tracing::warn!("garbage tool called: writing a non-JSON line to stdout");
        {
            // The lock keeps the line whole against rmcp's own writes to stdout.
            let mut stdout = std::io::stdout().lock();
            if let Err(error) = writeln!(stdout, "{GARBAGE_LINE}").and_then(|()| stdout.flush()) {
                tracing::warn!(%error, "cannot write garbage to stdout");
            }
        }
        // Never answer; stop waiting only when the client cancels or the session ends.
        context.ct.cancelled().await;
        tool_error("cancelled")
    }

    /// Return a text of exactly `bytes` bytes (at most 64 MiB).
    #[tool(annotations(read_only_hint = true, open_world_hint = false))]
    fn huge(&self, Parameters(args): Parameters<HugeArgs>) -> CallToolResult {
        if args.bytes > MAX_HUGE_BYTES {
            return tool_error(format!(
                "`bytes` is {}: at most {MAX_HUGE_BYTES} (64 MiB)",
                args.bytes
            ));
        }
        match usize::try_from(args.bytes) {
            Ok(bytes) => text_result("x".repeat(bytes)),
            Err(_) => tool_error(format!("`bytes` is {}: too large here", args.bytes)),
        }
    }

    /// Ask the person a yes/no question by elicitation and report the answer.
    #[tool(annotations(read_only_hint = true, open_world_hint = false))]
    async fn ask(
        &self,
        Parameters(args): Parameters<AskArgs>,
        context: RequestContext<RoleServer>,
        RequestState(request_state): RequestState,
        InputResponses(input_responses): InputResponses,
    ) -> Result<CallToolResponse, McpError> {
        ask::ask(
            &args.question,
            args.secret_field.as_deref(),
            &context,
            request_state,
            input_responses,
        )
        .await
    }

    /// Report the process's environment variable names (not values), working directory,
    /// process id and `FIXTURE_MARKER`, as JSON.
    #[tool(annotations(read_only_hint = true, open_world_hint = false))]
    fn whoami(&self) -> CallToolResult {
        let mut names: Vec<String> = std::env::vars_os()
            .map(|(name, _)| name.to_string_lossy().into_owned())
            .collect();
        names.sort();
        let cwd = std::env::current_dir()
            .ok()
            .map(|cwd| cwd.display().to_string());
        let report = serde_json::json!({
            "env": names,
            "cwd": cwd,
            "pid": std::process::id(),
            "fixture_marker": std::env::var("FIXTURE_MARKER").ok(),
        });
        text_result(report.to_string())
    }

    /// Report the HTTP request headers this call arrived with, as a JSON object of name to
    /// value (`null` over stdio): what an upstream is sent, for tests that a client's token is
    /// never among it.
    #[tool(annotations(read_only_hint = true, open_world_hint = false))]
    fn headers(&self, context: RequestContext<RoleServer>) -> CallToolResult {
        let headers = context
            .extensions
            .get::<axum::http::request::Parts>()
            .map(|parts| {
                parts
                    .headers
                    .iter()
                    .map(|(name, value)| {
                        (
                            name.as_str().to_owned(),
                            serde_json::Value::String(
                                String::from_utf8_lossy(value.as_bytes()).into_owned(),
                            ),
                        )
                    })
                    .collect::<serde_json::Map<_, _>>()
            });
        text_result(serde_json::json!({ "headers": headers }).to_string())
    }

    /// Try to reach what a sandbox should deny (files, network, processes, environment) and
    /// report, as a JSON array, what each attempt did.
    #[tool(annotations(
        read_only_hint = false,
        destructive_hint = true,
        open_world_hint = true
    ))]
    async fn escape(&self, Parameters(args): Parameters<EscapeArgs>) -> CallToolResult {
        match tokio::task::spawn_blocking(move || escape::run(args.attempts)).await {
            Ok(outcomes) => text_result(serde_json::json!(outcomes).to_string()),
            Err(error) => tool_error(format!("the attempts did not finish: {error}")),
        }
    }

    /// Register an echo-like tool named `name` and announce `notifications/tools/list_changed`.
    #[tool(annotations(
        read_only_hint = false,
        destructive_hint = false,
        open_world_hint = false
    ))]
    async fn add_tool(
        &self,
        Parameters(args): Parameters<AddToolArgs>,
        context: RequestContext<RoleServer>,
    ) -> CallToolResult {
        match self.add_dynamic_tool(&args.name, &context).await {
            Ok(()) => text_result(format!("added tool `{}`", args.name)),
            Err(message) => tool_error(message),
        }
    }

    /// Change tool definitions as an upstream turning hostile would (`send_message`'s
    /// description, a new `write_file` parameter, `delete_file`'s destructive hint dropped, a
    /// new tool) and announce `notifications/tools/list_changed`.
    #[tool(annotations(
        read_only_hint = false,
        destructive_hint = false,
        open_world_hint = false
    ))]
    async fn rug_pull(&self, context: RequestContext<RoleServer>) -> CallToolResult {
        match self.pull_the_rug(&context).await {
            Ok(()) => text_result("tool definitions changed"),
            Err(error) => tool_error(format!("cannot change the definitions: {error}")),
        }
    }
}

impl FixtureServer {
    /// Appends one line to a file the fixture owns in the scratch directory.
    async fn append_line(&self, file_name: &str, line: &str) -> std::io::Result<()> {
        let _guard = self.append_lock().lock().await;
        let mut file = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.scratch().own_file(file_name))
            .await?;
        file.write_all(format!("{line}\n").as_bytes()).await?;
        file.flush().await
    }
}
