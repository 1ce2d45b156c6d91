//! Each stage on its own, against fake upstreams in process (two over HTTP, one stdio upstream
//! relayed to a third): a real gateway built from config text, a real client over an
//! in-memory pipe (whose handshake gives the stages the request context they read), and the
//! upstreams' own record of what reached them. The properties over the whole pipeline are in
//! `tests/properties.rs`.
#![expect(clippy::panic, clippy::indexing_slicing, reason = "tests")]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use portcullis_core::IdentityEnvelope;
use portcullis_core::clock::SystemClock;
use portcullis_core::evidence::{Event, Outcome};
use portcullis_policy::{PolicyEngine, SHIPPED_POLICY, SHIPPED_SCHEMA, Source};
use portcullis_test_support::{Answers, FakeUpstream, TestClient, alice, tool, tool_with_schema};
use rmcp::ServiceExt as _;
use rmcp::model::{CallToolRequestParams, CallToolResponse, JsonObject, RequestId};
use rmcp::service::{Peer, RequestContext, RoleClient, RoleServer, RunningService};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::permit::Authorized;
use super::{Stop, decide::Decided};
use crate::evidence::CallRecord;
use crate::recorder::Recorder;
use crate::server::PortcullisServer;
use crate::{Credentials, Gateway, GatewayParts, UpstreamStatus, load_policy};

/// The shipped default policy, and one more rule: `fake.hidden` is listed to nobody.
const HIDE_ONE: &str = r#"
@id("hide-one")
forbid (principal, action == Portcullis::Action::"list_tool", resource)
when { resource.name == "hidden" };

@id("forbid-one")
@reason("nobody may wipe")
forbid (principal, action == Portcullis::Action::"call_tool", resource)
when { resource.name == "wipe" };
"#;

/// What a test sets up: the gateway, one client session to it, and the fake upstreams.
struct Harness {
    session: Session,
    /// The upstream `fake`, which every stage test calls.
    upstream: FakeUpstream,
    /// The upstream `other`, so that a policy can tell upstreams apart.
    other: FakeUpstream,
    /// The stdio upstream `local` (relayed to the fake), whose path arguments are checked
    /// against its one root.
    local: FakeUpstream,
    /// `local`'s root: a file `notes.txt`, a directory `inside`, and a link `out` to the
    /// directory the root is in.
    root: PathBuf,
    evidence: PathBuf,
    shutdown: CancellationToken,
    _dir: tempfile::TempDir,
}

/// One client session to the harness's gateway, and the person at that client.
struct Session {
    server: PortcullisServer,
    peer: Peer<RoleServer>,
    client: TestClient,
    _service: RunningService<RoleServer, PortcullisServer>,
    _client: RunningService<RoleClient, TestClient>,
}

/// How the harness's gateway records: to its log, or with no log at all (nothing may run).
#[derive(PartialEq)]
enum Log {
    Kept,
    Missing,
}

/// Writes `text` to `path`, or fails the test.
fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

impl Harness {
    async fn start(answers: Answers, log: Log) -> Self {
        let upstream = FakeUpstream::start(vec![
            tool("lookup"),
            tool("send"),
            tool("hidden"),
            tool("wipe"),
            // Each declares `mark`, which the property tests tag their calls with (an argument
            // a schema does not declare is refused).
            tool_with_schema(
                "count",
                json!({
                    "type": "object",
                    "properties": {"n": {"type": "integer"}, "mark": {"type": "string"}},
                    "required": ["n"],
                }),
            ),
            tool_with_schema(
                "save",
                json!({
                    "type": "object",
                    "properties": {
                        "text": {"type": "string"},
                        "n": {"type": "integer"},
                        "mark": {"type": "string"},
                    },
                    "required": ["text"],
                }),
            ),
        ])
        .await
        .unwrap_or_else(|e| panic!("fake upstream: {e}"));
        let other = FakeUpstream::start(vec![tool("lookup"), tool("secret")])
            .await
            .unwrap_or_else(|e| panic!("other upstream: {e}"));
        let local = FakeUpstream::start_stdio(vec![tool_with_schema(
            "read",
            json!({
                "type": "object",
                "properties": {"path": {"type": "string"}, "mark": {"type": "string"}},
                "required": ["path"],
            }),
        )])
        .await
        .unwrap_or_else(|e| panic!("local upstream: {e}"));
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let top = dir.path().canonicalize().unwrap_or_else(|e| panic!("{e}"));
        let root = top.join("root");
        std::fs::create_dir_all(root.join("inside")).unwrap_or_else(|e| panic!("{e}"));
        write(&root.join("notes.txt"), "notes");
        std::os::unix::fs::symlink(&top, root.join("out")).unwrap_or_else(|e| panic!("{e}"));
        let policies = top.join("policies");
        std::fs::create_dir(&policies).unwrap_or_else(|e| panic!("{e}"));
        write(&policies.join("default.cedar"), SHIPPED_POLICY);
        write(&policies.join("test.cedar"), HIDE_ONE);
        let evidence = top.join("evidence.jsonl");
        let config = config_text([&upstream, &other, &local], &evidence, &policies, &root);
        let config = portcullis_config::parse(&top.join("portcullis.toml"), &config)
            .unwrap_or_else(|e| panic!("config: {e}"));
        let log = (log == Log::Kept).then(|| {
            portcullis_audit::EvidenceLog::open(&evidence, portcullis_audit::Options::default())
                .unwrap_or_else(|e| panic!("evidence: {e}"))
        });
        let shutdown = CancellationToken::new();
        let gateway = Gateway::start(
            &config,
            GatewayParts {
                inherited: Default::default(),
                policy: load_policy(&config.policy).unwrap_or_else(|e| panic!("policy: {e}")),
                recorder: Recorder::new(log, Arc::new(SystemClock)),
                state_key: None,
                credentials: Arc::new(
                    Credentials::start(&config, &|_: &str| None, config.approval.timeout, None)
                        .unwrap_or_else(|e| panic!("credentials: {e}")),
                ),
                pins: Arc::new(
                    crate::pins::PinBook::open(&config.file, crate::pins::Recording::FirstSight)
                        .unwrap_or_else(|e| panic!("pins: {e}")),
                ),
                shutdown: shutdown.clone(),
            },
        )
        .unwrap_or_else(|e| panic!("gateway: {e}"));
        wait_ready(&gateway).await;
        Harness {
            session: Session::open(gateway, answers).await,
            upstream,
            other,
            local,
            root,
            evidence,
            shutdown,
            _dir: dir,
        }
    }

    /// Another session to the same gateway, whose person answers `answers`.
    async fn connect(&self, answers: Answers) -> Session {
        Session::open(self.session.server.gateway.clone(), answers).await
    }

    /// Puts exactly `files` (name, Cedar text) in force, as a reload would. The policy files
    /// stay as they are: a test that rewrote them would race the gateway's own reload when it
    /// notices, which may read them half written and put that in force after this.
    fn set_policies(&self, files: &[(&str, &str)]) {
        let source = |(name, text): &(&str, &str)| Source {
            name: (*name).to_owned(),
            text: (*text).to_owned(),
        };
        let schema = source(&("portcullis.cedarschema", SHIPPED_SCHEMA));
        let files: Vec<Source> = files.iter().map(source).collect();
        let engine = PolicyEngine::load(&schema, &files).unwrap_or_else(|e| panic!("policy: {e}"));
        let policy = &self.session.server.gateway.decider.policy;
        policy.put_in_force(engine, "a test changed the policy");
    }

    /// A request context like the session's own for a request it received.
    fn context(&self) -> RequestContext<RoleServer> {
        self.session.context()
    }

    /// The whole call in the harness's first session.
    async fn call(
        &self,
        name: &str,
        arguments: serde_json::Value,
    ) -> Result<CallToolResponse, rmcp::ErrorData> {
        self.session.call(name, arguments).await
    }

    fn person(&self) -> IdentityEnvelope {
        alice().envelope()
    }

    /// Every record in the evidence log so far, read back as `portcullis audit` reads it.
    fn records(&self) -> Vec<portcullis_audit::Entry> {
        records(&self.evidence)
    }

    /// The kinds of the call records written so far (an outcome with its status).
    fn recorded(&self) -> Vec<String> {
        self.records()
            .into_iter()
            .filter_map(|entry| match entry.record.event {
                Event::CallIntent(_) => Some("call_intent".to_owned()),
                Event::CallOutcome(outcome) => Some(match outcome.outcome {
                    Outcome::Result { .. } => "call_outcome:result".to_owned(),
                    Outcome::Error { .. } => "call_outcome:error".to_owned(),
                    Outcome::NotRun { .. } => "call_outcome:not_run".to_owned(),
                    Outcome::Cancelled => "call_outcome:cancelled".to_owned(),
                }),
                _ => None,
            })
            .collect()
    }
}

/// Every record of the evidence log at `path` (none when it was never written).
fn records(path: &Path) -> Vec<portcullis_audit::Entry> {
    if !path.exists() {
        return Vec::new();
    }
    portcullis_audit::read(path, portcullis_audit::Filter::default())
        .unwrap_or_else(|e| panic!("evidence: {e}"))
        .map(|entry| entry.unwrap_or_else(|e| panic!("evidence: {e}")))
        .collect()
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl Session {
    async fn open(gateway: Arc<Gateway>, answers: Answers) -> Self {
        let server = PortcullisServer::new(gateway);
        let client = TestClient::new(answers);
        let (ours, theirs) = tokio::io::duplex(1 << 16);
        let (service, connected) =
            tokio::join!(server.clone().serve(ours), client.clone().serve(theirs));
        let service = service.unwrap_or_else(|e| panic!("session: {e}"));
        let connected = connected.unwrap_or_else(|e| panic!("client: {e}"));
        Session {
            peer: service.peer().clone(),
            server,
            client,
            _service: service,
            _client: connected,
        }
    }

    /// A request context like the session's own for a request it received.
    fn context(&self) -> RequestContext<RoleServer> {
        RequestContext::new(RequestId::Number(1), self.peer.clone())
    }

    /// The whole call, as the session's handler runs it, by the test person.
    async fn call(
        &self,
        name: &str,
        arguments: serde_json::Value,
    ) -> Result<CallToolResponse, rmcp::ErrorData> {
        self.server
            .call_tool_as(
                Arc::new(alice().envelope()),
                request(name, arguments),
                crate::tool_search::Route::Direct,
                self.context(),
            )
            .await
    }
}

fn config_text(
    [fake, other, local]: [&FakeUpstream; 3],
    evidence: &Path,
    policies: &Path,
    root: &Path,
) -> String {
    format!(
        r#"
[server]
evidence = "{evidence}"
# Lists of several pages, so that what a list shows is read across page boundaries.
page_size = 3

[identity.local]
user = "alice"

[policy]
policies = ["{policies}"]

[[upstream]]
name = "fake"
url = "{fake}"
surface = "http_api"
trusted = true
tools.lookup = {{ effect = "read" }}
tools.count = {{ effect = "read" }}
tools.hidden = {{ effect = "read" }}
tools.wipe = {{ effect = "destructive" }}
tools.send = {{ effect = "send" }}
tools.save = {{ effect = "write" }}

[[upstream]]
name = "other"
url = "{other}"
surface = "http_api"
trusted = true
tools.lookup = {{ effect = "read" }}
tools.secret = {{ effect = "read", scopes = ["admin"] }}

# A stdio upstream (bash relaying to the in-process fake), so that path arguments are checked:
# uncontained, as the relay needs the network and the fake needs no protection from it.
[[upstream]]
name = "local"
command = {command:?}
sandbox = {{ contain = false }}
trusted = true
roots = ["{root}"]
tools.read = {{ effect = "read" }}
"#,
        evidence = evidence.display(),
        policies = policies.display(),
        root = root.display(),
        fake = fake.url(),
        other = other.url(),
        command = local.stdio_relay(),
    )
}

async fn wait_ready(gateway: &Gateway) {
    for _ in 0..200 {
        if gateway
            .status()
            .iter()
            .all(|(_, status)| matches!(status, UpstreamStatus::Ready { .. }))
        {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!(
        "the fake upstream did not become ready: {:?}",
        gateway.status()
    );
}

fn request(name: &str, arguments: serde_json::Value) -> CallToolRequestParams {
    let serde_json::Value::Object(arguments) = arguments else {
        panic!("arguments are an object");
    };
    CallToolRequestParams::new(name.to_owned()).with_arguments(arguments)
}

/// The text of a completed call's first content block.
fn error_text(response: &CallToolResponse) -> String {
    match response {
        CallToolResponse::Complete(result) => serde_json::to_value(result)
            .map(|value| {
                value["content"][0]["text"]
                    .as_str()
                    .unwrap_or("")
                    .to_owned()
            })
            .unwrap_or_default(),
        _ => String::new(),
    }
}

fn is_error(response: &CallToolResponse) -> bool {
    matches!(response, CallToolResponse::Complete(result) if result.is_error == Some(true))
}

/// Runs the stages up to and including decide for `name`, as the pipeline would.
fn decided(h: &Harness, name: &str, arguments: serde_json::Value) -> Result<Decided, Stop> {
    let envelope = h.person();
    let request = request(name, arguments);
    let context = h.context();
    let call = h.session.server.call_context(&envelope, &request, &context);
    let mut record = CallRecord::unresolved(&envelope, h.session.server.session, &request.name);
    let resolved = h.session.server.resolve_stage(&call, &mut record)?;
    h.session.server.check_stage(&call, &resolved)?;
    h.session.server.decide_stage(&call, &resolved, &[])
}

fn unknown_reason(stop: Result<Decided, Stop>) -> &'static str {
    match stop {
        Err(Stop::Unknown(reason)) => reason,
        Err(Stop::Refused { recorded, .. }) => panic!("refused, not unknown: {recorded}"),
        Err(Stop::Answer(_)) => panic!("answered, not unknown"),
        Err(Stop::Quarantined(message)) => panic!("quarantined, not unknown: {message}"),
        Ok(_) => panic!("went on, not unknown"),
    }
}

fn refused(stop: Result<Decided, Stop>) -> (String, String) {
    match stop {
        Err(Stop::Refused {
            message, recorded, ..
        }) => (message, recorded),
        Err(Stop::Unknown(reason)) => panic!("unknown, not refused: {reason}"),
        Err(Stop::Answer(_)) => panic!("answered, not refused"),
        Err(Stop::Quarantined(message)) => panic!("quarantined, not refused: {message}"),
        Ok(_) => panic!("went on, not refused"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn resolve_answers_unknown_and_hidden_names_alike() {
    let h = Harness::start(Answers::Accept, Log::Kept).await;
    assert_eq!(
        unknown_reason(decided(&h, "fake.nothing", json!({}))),
        "no such tool"
    );
    assert_eq!(
        unknown_reason(decided(&h, "elsewhere.lookup", json!({}))),
        "no such tool"
    );
    assert_eq!(
        unknown_reason(decided(&h, "fake.hidden", json!({}))),
        "hidden from this identity"
    );
    // Through the whole pipeline the client cannot tell them apart, and each is recorded.
    let missing = h
        .call("fake.nothing", json!({}))
        .await
        .err()
        .map(|e| e.message.to_string());
    let hidden = h
        .call("fake.hidden", json!({}))
        .await
        .err()
        .map(|e| e.message.to_string());
    assert_eq!(missing.as_deref(), Some("unknown tool `fake.nothing`"));
    assert_eq!(hidden.as_deref(), Some("unknown tool `fake.hidden`"));
    assert!(h.upstream.received().is_empty());
    assert_eq!(
        h.recorded(),
        [
            "call_intent",
            "call_outcome:not_run",
            "call_intent",
            "call_outcome:not_run"
        ],
        "each refusal is recorded"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn check_refuses_arguments_the_schema_refuses_before_anyone_decides() {
    let h = Harness::start(Answers::Accept, Log::Kept).await;
    let (message, _) = refused(decided(&h, "fake.count", json!({"n": "seven"})));
    assert!(
        message.contains("portcullis refused `fake.count`"),
        "{message}"
    );
    assert!(decided(&h, "fake.count", json!({"n": 7})).is_ok());
    let answer = h
        .call("fake.count", json!({}))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(is_error(&answer) && error_text(&answer).contains("did not run"));
    assert!(h.upstream.received().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn decide_permits_reads_asks_for_side_effects_and_refuses_what_policy_forbids() {
    let h = Harness::start(Answers::Accept, Log::Kept).await;
    let permit = decided(&h, "fake.lookup", json!({"q": "x"})).map(|d| d.authorized);
    assert!(matches!(permit, Ok(Authorized::Permit(_))));
    let pending = decided(&h, "fake.send", json!({"to": "x"})).map(|d| d.authorized);
    assert!(matches!(pending, Ok(Authorized::NeedsApproval(_))));
    let (message, recorded) = refused(decided(&h, "fake.wipe", json!({})));
    assert!(message.contains("nobody may wipe"), "{message}");
    assert_eq!(recorded, "refused by policy");
    // Deciding reaches nobody.
    assert!(h.upstream.received().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn approve_runs_a_side_effect_only_on_a_yes() {
    let declined = Harness::start(Answers::Decline, Log::Kept).await;
    let answer = declined.call("fake.send", json!({"to": "x"})).await;
    let answer = answer.unwrap_or_else(|e| panic!("{e}"));
    assert!(is_error(&answer), "{}", error_text(&answer));
    assert_eq!(declined.session.client.asked().len(), 1);
    assert!(declined.upstream.received().is_empty());

    let unable = Harness::start(Answers::Unable, Log::Kept).await;
    let answer = unable.call("fake.send", json!({"to": "x"})).await;
    let answer = answer.unwrap_or_else(|e| panic!("{e}"));
    assert!(
        error_text(&answer).contains("cannot show approval requests"),
        "{}",
        error_text(&answer)
    );
    assert!(unable.upstream.received().is_empty());

    let approved = Harness::start(Answers::Accept, Log::Kept).await;
    let answer = approved.call("fake.send", json!({"to": "x"})).await;
    let answer = answer.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(error_text(&answer), "ran send");
    let received = approved.upstream.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].tool, "send");
    assert_eq!(received[0].arguments, json_object(json!({"to": "x"})));
}

#[tokio::test(flavor = "multi_thread")]
async fn nothing_runs_without_a_durable_intent() {
    let h = Harness::start(Answers::Accept, Log::Missing).await;
    // Every stage before it passes: the decision is a permit.
    assert!(matches!(
        decided(&h, "fake.lookup", json!({})).map(|d| d.authorized),
        Ok(Authorized::Permit(_))
    ));
    let answer = h.call("fake.lookup", json!({})).await;
    let text = match &answer {
        Ok(response) => error_text(response),
        Err(error) => error.message.to_string(),
    };
    assert!(answer.as_ref().map_or(true, is_error), "{text}");
    assert!(h.upstream.received().is_empty(), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn execute_sends_the_call_once_and_records_intent_and_outcome() {
    let h = Harness::start(Answers::Accept, Log::Kept).await;
    let answer = h.call("fake.lookup", json!({"q": "rust"})).await;
    let answer = answer.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(error_text(&answer), "ran lookup");
    assert_eq!(
        h.upstream.received(),
        [portcullis_test_support::Received {
            tool: "lookup".to_owned(),
            arguments: json_object(json!({"q": "rust"})),
        }]
    );
    assert_eq!(
        h.recorded(),
        ["call_intent", "call_outcome:result"],
        "intent, then outcome"
    );
}

fn json_object(value: serde_json::Value) -> JsonObject {
    match value {
        serde_json::Value::Object(object) => object,
        _ => panic!("an object"),
    }
}

mod properties;

/// The fingerprints of the approvals asked so far, in order.
fn approval_fingerprints(h: &Harness) -> Vec<String> {
    h.records()
        .into_iter()
        .filter_map(|entry| match entry.record.event {
            Event::Approval(approval) if approval.answer == "asked" => Some(approval.fingerprint),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_approval_is_bound_to_the_policy_text_not_to_how_often_it_was_loaded() {
    let h = Harness::start(Answers::Accept, Log::Kept).await;
    let send = || h.call("fake.send", json!({"to": "x"}));
    send().await.unwrap_or_else(|e| panic!("{e}"));
    // The same text put in force again (a reload, or another replica that loaded it once):
    // the same action has the same fingerprint, so an approval given under it stands.
    h.set_policies(&[("default.cedar", SHIPPED_POLICY), ("test.cedar", HIDE_ONE)]);
    send().await.unwrap_or_else(|e| panic!("{e}"));
    // Another text, which asks the same: another fingerprint, so no approval given under the
    // first text covers a call under this one.
    let stricter =
        format!("{SHIPPED_POLICY}\nforbid (principal, action, resource) when {{ false }};\n");
    h.set_policies(&[("default.cedar", &stricter), ("test.cedar", HIDE_ONE)]);
    send().await.unwrap_or_else(|e| panic!("{e}"));
    let prints = approval_fingerprints(&h);
    assert_eq!(prints.len(), 3, "{prints:?}");
    assert_eq!(prints[0], prints[1]);
    assert_ne!(prints[1], prints[2]);
    assert_eq!(h.upstream.received().len(), 3);
}
