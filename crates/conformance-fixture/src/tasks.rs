//! The tasks extension (SEP-2663): the tools that run as tasks, and the task store behind
//! `tasks/get`, `tasks/update` and `tasks/cancel`.
//!
//! A task-supporting call from a client that declared the extension returns a task handle at
//! once; the work runs on in the background (or waits for input), and the client polls. A task
//! stays readable for its whole `ttlMs`; older ones are dropped when a new one is made.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rmcp::ErrorData as McpError;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CancelTaskParams, ClientCapabilities,
    CreateTaskResult, DetailedTask, GetTaskParams, GetTaskResult, InputRequests, JsonObject, Task,
    TaskPayload, UpdateTaskParams,
};
use rmcp::service::{RequestContext, RoleServer};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::rounds::{elicit, from_json, input_required, response, text};

/// How long a task stays readable after it was made.
const TTL: Duration = Duration::from_secs(600);
/// How often a client should poll.
const POLL_INTERVAL: Duration = Duration::from_millis(200);
/// The longest `slow_compute` sleeps, whatever it is asked: the fixture must end its work.
const LONGEST_COMPUTE: Duration = Duration::from_secs(120);
/// How long `failing_job` and `protocol_error_job` work before they fail.
const FAILING_JOB_TIME: Duration = Duration::from_millis(500);

/// How a tool relates to the tasks extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TaskSupport {
    /// Runs as a task for a client that declared the extension, synchronously otherwise.
    Optional,
    /// Runs only as a task: a client without the extension gets -32021.
    Required,
}

/// The task-support of the tools this module answers, or `None` for any other tool.
fn task_support(tool: &str) -> Option<TaskSupport> {
    match tool {
        "slow_compute" => Some(TaskSupport::Optional),
        "failing_job"
        | "protocol_error_job"
        | "confirm_delete"
        | "multi_input"
        | "test_tool_with_task" => Some(TaskSupport::Required),
        _ => None,
    }
}

/// Whether this module answers the tool (including `greet`, the sync-only tool of the tasks
/// scenarios).
pub(crate) fn answers(tool: &str) -> bool {
    tool == "greet" || task_support(tool).is_some()
}

/// One task: its metadata, what it holds now, and how to stop its work.
struct Entry {
    created: Instant,
    created_at: String,
    updated_at: String,
    payload: TaskPayload,
    /// Input requests not answered yet, for tasks that wait for input.
    pending: InputRequests,
    /// What the finished task says, once every pending request has an answer.
    answered_text: String,
    cancel: CancellationToken,
}

impl Entry {
    fn is_terminal(&self) -> bool {
        self.payload.status().is_terminal()
    }

    fn task(&self, id: &str) -> Task {
        Task::new(
            id,
            self.payload.status(),
            self.created_at.clone(),
            self.updated_at.clone(),
        )
        .with_ttl_ms(millis(TTL))
        .with_poll_interval_ms(millis(POLL_INTERVAL))
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// A wire-shaped object, or an empty one if the value is not an object.
fn object(value: Value) -> JsonObject {
    match value {
        Value::Object(object) => object,
        _ => JsonObject::new(),
    }
}

/// The text result a finished task inlines.
fn text_result(text: &str, is_error: bool) -> JsonObject {
    object(json!({ "content": [{ "type": "text", "text": text }], "isError": is_error }))
}

/// The task store, shared by every session.
#[derive(Default)]
pub(crate) struct Tasks {
    next_id: AtomicU64,
    entries: Mutex<HashMap<String, Entry>>,
}

impl Tasks {
    /// Answers a call of one of this module's tools.
    pub(crate) fn call(
        self: &Arc<Self>,
        request: &CallToolRequestParams,
        context: &RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let tool = request.name.as_ref();
        let argument = |key: &str| request.arguments.as_ref().and_then(|a| a.get(key)).cloned();
        let declared = context
            .client_capabilities()
            .is_some_and(|capabilities| capabilities.supports_tasks());
        match task_support(tool) {
            None => {
                let name = argument("name");
                return text(format!(
                    "Hello, {}!",
                    name.as_ref().and_then(Value::as_str).unwrap_or("World")
                ));
            }
            Some(TaskSupport::Required) if !declared => {
                return Err(McpError::missing_required_client_capability(
                    ClientCapabilities::builder().enable_tasks().build(),
                ));
            }
            Some(_) => {}
        }
        let seconds = argument("seconds").and_then(|s| s.as_f64()).unwrap_or(0.0);
        let compute_time = Duration::try_from_secs_f64(seconds)
            .unwrap_or_default()
            .min(LONGEST_COMPUTE);
        match tool {
            "slow_compute" if !declared => text(format!("computed in {seconds}s")),
            "slow_compute" => Ok(self.run(compute_time, move || TaskPayload::Completed {
                result: text_result(&format!("computed in {seconds}s"), false),
            })),
            "failing_job" => Ok(self.run(FAILING_JOB_TIME, || TaskPayload::Completed {
                result: text_result("the job failed, as it always does", true),
            })),
            "protocol_error_job" => Ok(self.run(FAILING_JOB_TIME, || TaskPayload::Failed {
                error: object(json!({ "code": -32603,
                    "message": "the job crashed, as it always does" })),
            })),
            "confirm_delete" => {
                let filename = argument("filename")
                    .and_then(|f| f.as_str().map(str::to_owned))
                    .unwrap_or_default();
                let question = elicit(
                    "confirm",
                    &format!("Delete `{filename}`?"),
                    "confirm",
                    "boolean",
                );
                self.wait_for_input(question, format!("deleted `{filename}`"))
            }
            "multi_input" => {
                let mut questions = object(elicit("first", "First answer?", "name", "string"));
                questions.extend(object(elicit("second", "Second answer?", "name", "string")));
                self.wait_for_input(Value::Object(questions), "both answers received".to_owned())
            }
            _ => self.escalate(request),
        }
    }

    /// `test_tool_with_task`: asks for a name in an input-required round, then runs as a task
    /// whose result names it.
    fn escalate(
        self: &Arc<Self>,
        request: &CallToolRequestParams,
    ) -> Result<CallToolResponse, McpError> {
        let Some(answer) = response(request, "user_name") else {
            let question = elicit("user_name", "What is your name?", "name", "string");
            return input_required(question, None).map(CallToolResponse::InputRequired);
        };
        let name = answer
            .pointer("/content/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        Ok(self.run(Duration::ZERO, move || TaskPayload::Completed {
            result: text_result(&format!("Hello, {name}!"), false),
        }))
    }

    /// Stores a new task holding `payload` (and, for one that waits for input, its pending
    /// requests and the text it completes with); returns its id, handle and cancel token.
    fn create(
        &self,
        payload: TaskPayload,
        pending: InputRequests,
        answered_text: String,
    ) -> (String, Task, CancellationToken) {
        let id = format!("task-{}", self.next_id.fetch_add(1, Ordering::Relaxed) + 1);
        let stamp = now();
        let entry = Entry {
            created: Instant::now(),
            created_at: stamp.clone(),
            updated_at: stamp,
            payload,
            pending,
            answered_text,
            cancel: CancellationToken::new(),
        };
        let task = entry.task(&id);
        let cancel = entry.cancel.clone();
        if let Ok(mut entries) = self.entries.lock() {
            entries.retain(|_, old| old.created.elapsed() < TTL);
            // INVARIANT: the task is in the store before its handle is returned, so an
            // immediate `tasks/get` finds it (durable create).
            entries.insert(id.clone(), entry);
        }
        (id, task, cancel)
    }

    /// Makes a working task that settles to `outcome()` after `work`, unless cancelled first.
    fn run(
        self: &Arc<Self>,
        work: Duration,
        outcome: impl FnOnce() -> TaskPayload + Send + 'static,
    ) -> CallToolResponse {
        let (id, task, cancel) =
            self.create(TaskPayload::Working, InputRequests::new(), String::new());
        let tasks = Arc::clone(self);
        tokio::spawn(async move {
            tokio::select! {
                () = cancel.cancelled() => {}
                () = tokio::time::sleep(work) => tasks.settle(&id, outcome()),
            }
        });
        CallToolResponse::Task(CreateTaskResult::new(task))
    }

    /// Makes a task that waits for answers to `questions`, then completes saying `done`.
    fn wait_for_input(&self, questions: Value, done: String) -> Result<CallToolResponse, McpError> {
        let input_requests: InputRequests = from_json(questions)?;
        let payload = TaskPayload::InputRequired {
            input_requests: input_requests.clone(),
        };
        let (_, task, _) = self.create(payload, input_requests, done);
        Ok(CallToolResponse::Task(CreateTaskResult::new(task)))
    }

    /// Puts a task in its final state, unless it already is in one (a cancel came first).
    fn settle(&self, id: &str, payload: TaskPayload) {
        if let Ok(mut entries) = self.entries.lock()
            && let Some(entry) = entries.get_mut(id)
            && !entry.is_terminal()
        {
            entry.payload = payload;
            entry.updated_at = now();
        }
    }

    fn unknown(id: &str) -> McpError {
        McpError::invalid_params(format!("unknown task `{id}`"), None)
    }

    /// `tasks/get`: the task as it is now, its result or error inlined once it has one.
    pub(crate) fn get(&self, request: &GetTaskParams) -> Result<GetTaskResult, McpError> {
        let entries = self
            .entries
            .lock()
            .map_err(|_| McpError::internal_error("the task store is poisoned", None))?;
        let entry = entries
            .get(&request.task_id)
            .ok_or_else(|| Self::unknown(&request.task_id))?;
        let task = entry.task(&request.task_id);
        Ok(GetTaskResult::new(DetailedTask::new(
            task,
            entry.payload.clone(),
        )))
    }

    /// `tasks/update`: records the answers to pending input requests (unknown keys are
    /// ignored); the task completes when none is left.
    pub(crate) fn update(&self, request: &UpdateTaskParams) -> Result<(), McpError> {
        let mut entries = self
            .entries
            .lock()
            .map_err(|_| McpError::internal_error("the task store is poisoned", None))?;
        let entry = entries
            .get_mut(&request.task_id)
            .ok_or_else(|| Self::unknown(&request.task_id))?;
        if entry.is_terminal() {
            return Ok(());
        }
        let before = entry.pending.len();
        entry
            .pending
            .retain(|key, _| !request.input_responses.contains_key(key));
        if entry.pending.len() == before {
            return Ok(());
        }
        entry.payload = if entry.pending.is_empty() {
            TaskPayload::Completed {
                result: text_result(&entry.answered_text, false),
            }
        } else {
            TaskPayload::InputRequired {
                input_requests: entry.pending.clone(),
            }
        };
        entry.updated_at = now();
        Ok(())
    }

    /// `tasks/cancel`: stops a task that is still running or waiting; a finished one stays as
    /// it is (the same acknowledgement either way).
    pub(crate) fn cancel(&self, request: &CancelTaskParams) -> Result<(), McpError> {
        let mut entries = self
            .entries
            .lock()
            .map_err(|_| McpError::internal_error("the task store is poisoned", None))?;
        let entry = entries
            .get_mut(&request.task_id)
            .ok_or_else(|| Self::unknown(&request.task_id))?;
        if !entry.is_terminal() {
            entry.payload = TaskPayload::Cancelled;
            entry.pending = BTreeMap::new();
            entry.updated_at = now();
            entry.cancel.cancel();
        }
        Ok(())
    }
}
