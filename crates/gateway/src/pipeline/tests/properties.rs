//! Properties of the whole pipeline over generated inputs, on the stage tests' harness (a real
//! gateway in front of the fake upstreams, real client sessions): what an identity is shown
//! and what it can call agree, and nothing reaches an upstream unless its decision allowed it
//! and its intent was in the evidence log first.
//!
//! One gateway serves every case of a property (starting one costs more than a hundred
//! cases); each case puts its own policy in force and opens its own sessions, and its calls
//! carry their case's marks so that what earlier cases left in the log and the upstreams'
//! records is told apart. Case counts keep each property to a few seconds.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use portcullis_audit::recorded_json;
use portcullis_core::IdentityEnvelope;
use portcullis_core::evidence::{CallIntent, Event, JsonValue, Outcome};
use portcullis_policy::SHIPPED_POLICY;
use portcullis_test_support::{Answers, ISSUER, Received, person};
use proptest::prelude::*;
use proptest::sample::{select, subsequence};
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use rmcp::ServerHandler as _;
use rmcp::model::{
    CallToolResponse, ClientCapabilities, ErrorCode, Implementation, PaginatedRequestParams,
    ProtocolVersion,
};
use rmcp::service::{RequestContext, RoleServer};
use serde_json::json;

use super::{Harness, Session, records, request};

/// Runs `property` on `cases` generated inputs against one set-up (made by `start`), and
/// fails with the shrunk input of a failure.
fn check<T, S: Strategy>(
    cases: u32,
    start: impl Future<Output = T>,
    strategy: S,
    property: impl AsyncFn(&T, S::Value) -> Result<(), TestCaseError>,
) where
    S::Value: std::fmt::Debug,
{
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("runtime: {e}"));
    let set_up = runtime.block_on(start);
    // Failures are kept in `proptest-regressions/`, as `proptest!` keeps them, and run first.
    let config = Config {
        cases,
        source_file: Some(file!()),
        ..Config::default()
    };
    let outcome = TestRunner::new(config).run(&strategy, |input| {
        runtime.block_on(property(&set_up, input))
    });
    if let Err(failure) = outcome {
        panic!("{failure}");
    }
}

// ---------------------------------------------------------------------------------------------
// Visibility ⇔ callability.

const USERS: [&str; 2] = ["alice", "bob"];
const GROUPS: [&str; 2] = ["eng", "ops"];
const CLIENTS: [&str; 2] = ["desktop", "cli"];
const TENANTS: [&str; 2] = ["acme", "globex"];
const SCOPES: [&str; 2] = ["admin", "files.read"];
/// The harness's tools by their own names (`fake` and `other` both have `lookup`), and the
/// effects config gives them.
const TOOL_NAMES: [&str; 8] = [
    "lookup", "send", "hidden", "wipe", "count", "save", "secret", "read",
];
const EFFECTS: [&str; 4] = ["read", "send", "write", "destructive"];
const UPSTREAMS: [&str; 3] = ["fake", "other", "local"];

/// Every name a client might call: each tool of the upstreams, and names of nothing (a tool
/// another upstream has, a tool no upstream has, an upstream that does not exist).
const NAMES: [&str; 12] = [
    "fake.lookup",
    "fake.send",
    "fake.hidden",
    "fake.wipe",
    "fake.count",
    "fake.save",
    "other.lookup",
    "other.secret",
    "local.read",
    "other.wipe",
    "fake.nothing",
    "nowhere.lookup",
];

/// Who asks: the parts of an identity policy can read.
#[derive(Debug, Clone)]
struct Identity {
    user: &'static str,
    groups: Vec<&'static str>,
    client: Option<&'static str>,
    tenant: Option<&'static str>,
    scopes: Vec<&'static str>,
}

impl Identity {
    fn envelope(&self) -> IdentityEnvelope {
        let mut person = person(self.user).groups(&self.groups).scopes(&self.scopes);
        if let Some(client) = self.client {
            person = person.client(client);
        }
        if let Some(tenant) = self.tenant {
            person = person.tenant(tenant);
        }
        person.envelope()
    }
}

fn identity() -> impl Strategy<Value = Identity> {
    (
        select(&USERS[..]),
        subsequence(&GROUPS[..], 0..=2),
        proptest::option::of(select(&CLIENTS[..])),
        proptest::option::of(select(&TENANTS[..])),
        subsequence(&SCOPES[..], 0..=2),
    )
        .prop_map(|(user, groups, client, tenant, scopes)| Identity {
            user,
            groups,
            client,
            tenant,
            scopes,
        })
}

/// One condition of a generated rule.
#[derive(Debug, Clone)]
enum Condition {
    Tool(&'static str),
    Effect(&'static str),
    Upstream(&'static str),
    Group(&'static str),
    Tenant(&'static str),
    Scope(&'static str),
}

impl Condition {
    fn cedar(&self) -> String {
        match self {
            Condition::Tool(name) => format!("resource.name == \"{name}\""),
            Condition::Effect(effect) => format!("resource.effect == \"{effect}\""),
            Condition::Upstream(name) => format!("resource in Portcullis::Upstream::\"{name}\""),
            Condition::Group(group) => format!("principal in Portcullis::Group::\"{group}\""),
            Condition::Tenant(tenant) => format!("principal in Portcullis::Tenant::\"{tenant}\""),
            Condition::Scope(scope) => format!("context.scopes.contains(\"{scope}\")"),
        }
    }
}

fn condition() -> impl Strategy<Value = Condition> {
    prop_oneof![
        select(&TOOL_NAMES[..]).prop_map(Condition::Tool),
        select(&EFFECTS[..]).prop_map(Condition::Effect),
        select(&UPSTREAMS[..]).prop_map(Condition::Upstream),
        select(&GROUPS[..]).prop_map(Condition::Group),
        select(&TENANTS[..]).prop_map(Condition::Tenant),
        select(&SCOPES[..]).prop_map(Condition::Scope),
    ]
}

/// Whom a generated rule is for.
#[derive(Debug, Clone)]
enum Principal {
    Anyone,
    User(&'static str),
    Group(&'static str),
}

/// A rule of the small grammar: permit or forbid, for anyone, one user or one group, on
/// listing, calling or both, under conditions each maybe negated; a permit may ask approval.
#[derive(Debug, Clone)]
struct Rule {
    permit: bool,
    principal: Principal,
    actions: &'static str,
    approval: Option<&'static str>,
    when: Vec<(bool, Condition)>,
}

impl Rule {
    fn cedar(&self, id: usize) -> String {
        let principal = match self.principal {
            Principal::Anyone => "principal".to_owned(),
            Principal::User(user) => format!("principal == Portcullis::User::\"{ISSUER}|{user}\""),
            Principal::Group(group) => format!("principal in Portcullis::Group::\"{group}\""),
        };
        let approval = match (self.permit, self.approval) {
            (true, Some(rule)) => format!("@approval(\"{rule}\")\n"),
            _ => String::new(),
        };
        let mut when: Vec<String> = self
            .when
            .iter()
            .map(|(negated, condition)| {
                let negation = if *negated { "!" } else { "" };
                format!("{negation}({})", condition.cedar())
            })
            .collect();
        when.push("true".to_owned());
        format!(
            "@id(\"rule-{id}\")\n{approval}{} ({principal}, {}, resource)\nwhen {{ {} }};\n",
            if self.permit { "permit" } else { "forbid" },
            self.actions,
            when.join(" && "),
        )
    }
}

fn rule() -> impl Strategy<Value = Rule> {
    let principal = prop_oneof![
        Just(Principal::Anyone),
        select(&USERS[..]).prop_map(Principal::User),
        select(&GROUPS[..]).prop_map(Principal::Group),
    ];
    let actions = select(
        &[
            "action == Portcullis::Action::\"list_tool\"",
            "action == Portcullis::Action::\"call_tool\"",
            "action in [Portcullis::Action::\"list_tool\", Portcullis::Action::\"call_tool\"]",
        ][..],
    );
    (
        any::<bool>(),
        principal,
        actions,
        proptest::option::of(select(&["required", "once", "other"][..])),
        proptest::collection::vec((any::<bool>(), condition()), 0..=2),
    )
        .prop_map(|(permit, principal, actions, approval, when)| Rule {
            permit,
            principal,
            actions,
            approval,
            when,
        })
}

/// A case: the rules (on the shipped default, or alone), the identities asking, in turn.
#[derive(Debug, Clone)]
struct World {
    on_shipped_default: bool,
    rules: Vec<Rule>,
    identities: Vec<Identity>,
}

fn world() -> impl Strategy<Value = World> {
    (
        any::<bool>(),
        proptest::collection::vec(rule(), 0..=5),
        proptest::collection::vec(identity(), 1..=3),
    )
        .prop_map(|(on_shipped_default, rules, identities)| World {
            on_shipped_default,
            rules,
            identities,
        })
}

/// The protocol eras a request can come in.
const ERAS: [ProtocolVersion; 3] = [
    ProtocolVersion::V_2025_06_18,
    ProtocolVersion::V_2025_11_25,
    ProtocolVersion::V_2026_07_28,
];

/// A request of `session` as it arrives over HTTP for `envelope` (the identity the bearer-token
/// check attaches) in protocol `era`; a stateless request carries its client in `_meta`.
fn context_as(
    session: &Session,
    envelope: &IdentityEnvelope,
    era: &ProtocolVersion,
) -> RequestContext<RoleServer> {
    let mut context = session.context();
    context.meta.set_protocol_version(era.clone());
    if *era >= ProtocolVersion::V_2026_07_28 {
        context
            .meta
            .set_client_info(Implementation::new("test-client", "1"));
        let capabilities: ClientCapabilities =
            serde_json::from_value(json!({"elicitation": {"form": {}}}))
                .unwrap_or_else(|e| panic!("{e}"));
        context.meta.set_client_capabilities(capabilities);
    }
    let (mut parts, ()) = http::Request::new(()).into_parts();
    parts.extensions.insert(Arc::new(envelope.clone()));
    context.extensions.insert(parts);
    context
}

/// Every page of the tools list, as the client sees it.
async fn listed(
    session: &Session,
    envelope: &IdentityEnvelope,
    era: &ProtocolVersion,
) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut cursor = None;
    loop {
        let page = session
            .server
            .list_tools(
                cursor.map(|cursor| PaginatedRequestParams::default().with_cursor(Some(cursor))),
                context_as(session, envelope, era),
            )
            .await
            .unwrap_or_else(|e| panic!("tools/list: {e}"));
        names.extend(page.tools.iter().map(|tool| tool.name.to_string()));
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => return names,
        }
    }
}

/// How many calls the fake upstreams have received so far.
fn reached(h: &Harness) -> usize {
    h.upstream.received().len() + h.other.received().len()
}

/// The property: in every era, a tool is in an identity's list if and only if calling it is
/// not answered "unknown tool", and a tool it is not shown is answered exactly like one that
/// does not exist (so the answer tells nothing of what others see). A call of an unlisted tool
/// never reaches an upstream.
async fn shown_iff_callable(h: &Harness, world: World) -> Result<(), TestCaseError> {
    let generated: String = world
        .rules
        .iter()
        .enumerate()
        .map(|(id, rule)| rule.cedar(id))
        .collect();
    let mut files = vec![("generated.cedar", generated.as_str())];
    if world.on_shipped_default {
        files.push(("default.cedar", SHIPPED_POLICY));
    }
    h.set_policies(&files);
    for identity in &world.identities {
        // A session per identity: a session serves the user it first served, no other.
        let session = h.connect(Answers::Decline).await;
        let envelope = identity.envelope();
        for era in &ERAS {
            let shown = listed(&session, &envelope, era).await;
            let names: BTreeSet<&str> = NAMES
                .iter()
                .copied()
                .chain(shown.iter().map(String::as_str))
                .collect();
            for name in names {
                let before = reached(h);
                let answer = session
                    .server
                    .call_tool(
                        request(name, json!({})),
                        context_as(&session, &envelope, era),
                    )
                    .await;
                let unknown = rmcp::ErrorData::new(
                    ErrorCode::INVALID_PARAMS,
                    format!("unknown tool `{name}`"),
                    None,
                );
                let answered_unknown = answer.as_ref().err() == Some(&unknown);
                prop_assert_eq!(
                    shown.contains(name),
                    !answered_unknown,
                    "`{}` in {} for {:?}: shown {:?}, answered {:?}",
                    name,
                    era,
                    identity,
                    shown,
                    answer.as_ref().map(summary)
                );
                if !shown.contains(name) {
                    prop_assert_eq!(reached(h), before, "`{}` reached its upstream", name);
                }
            }
        }
    }
    Ok(())
}

/// What kind of answer a call got, for a failure's message.
fn summary(response: &CallToolResponse) -> &'static str {
    match response {
        CallToolResponse::Complete(result) if result.is_error == Some(true) => "a tool error",
        CallToolResponse::Complete(_) => "a result",
        _ => "a request for input",
    }
}

#[test]
fn a_tool_is_listed_exactly_when_a_call_to_it_is_not_unknown_in_both_eras() {
    check(
        48,
        Harness::start(Answers::Decline, super::Log::Kept),
        world(),
        shown_iff_callable,
    );
}

// ---------------------------------------------------------------------------------------------
// Intent before upstream.

/// What the person asked answers: yes, no, or there is nobody to ask (the client cannot show
/// a form).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Answer {
    Yes,
    No,
    Nobody,
}

/// How a generated argument `n` is given: as the schemas want it, as text, or not at all.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Number {
    Integer,
    Text,
    Missing,
}

/// Where a generated `path` argument points, from `local`'s root.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Place {
    /// `notes.txt`, a file in the root.
    File,
    /// `inside/new.txt`, a file not made yet.
    New,
    /// `inside/../notes.txt`.
    Back,
    /// `../evidence.jsonl`, beside the root.
    Up,
    /// `out/evidence.jsonl`, through a link to the directory the root is in.
    Link,
    /// `/etc/hostname`.
    Elsewhere,
}

impl Place {
    fn path(self, root: &std::path::Path) -> String {
        let path = match self {
            Place::File => root.join("notes.txt"),
            Place::New => root.join("inside/new.txt"),
            Place::Back => root.join("inside/../notes.txt"),
            Place::Up => root.join("../evidence.jsonl"),
            Place::Link => root.join("out/evidence.jsonl"),
            Place::Elsewhere => "/etc/hostname".into(),
        };
        path.display().to_string()
    }

    fn is_inside(self) -> bool {
        matches!(self, Place::File | Place::New | Place::Back)
    }
}

/// A generated call, with the harness's policy: `lookup`, `count` and `local`'s `read` are
/// reads (allowed); `send` and `save` have side effects (approval); `wipe` is forbidden;
/// `hidden` is hidden; `nothing` does not exist. `count` wants an integer `n` and nothing
/// else; `save` a text `text` and, if given, an integer `n`, nothing else; `read` a `path`
/// and nothing else, inside `local`'s root. The other tools take any object.
#[derive(Debug, Clone)]
struct Call {
    tool: &'static str,
    n: Number,
    text: bool,
    path: Option<Place>,
    answer: Answer,
}

impl Call {
    /// The upstream that has the tool.
    fn upstream(&self) -> &'static str {
        if self.tool == "read" { "local" } else { "fake" }
    }

    /// Whether the harness's policy, schemas and roots let it run, with the person's answer.
    fn may_run(&self) -> bool {
        // A schema that declares properties refuses what it does not declare.
        let schema_passes = match self.tool {
            "count" => self.n == Number::Integer && !self.text && self.path.is_none(),
            "save" => self.text && self.n != Number::Text && self.path.is_none(),
            "read" => self.path.is_some() && self.n == Number::Missing && !self.text,
            _ => true,
        };
        // Only a stdio upstream's paths are checked: an HTTP one's name another machine's.
        let roots_pass = self.tool != "read" || self.path.is_some_and(Place::is_inside);
        let decided = match self.tool {
            "lookup" | "count" | "read" => true,
            "send" | "save" => self.answer == Answer::Yes,
            _ => false,
        };
        schema_passes && roots_pass && decided
    }

    /// Its arguments (a path from `root`), marked `mark` so that its records and the
    /// upstream's are found.
    fn arguments(&self, mark: &str, root: &std::path::Path) -> serde_json::Value {
        let mut arguments = json!({ "mark": mark });
        match self.n {
            Number::Integer => arguments["n"] = json!(7),
            Number::Text => arguments["n"] = json!("seven"),
            Number::Missing => {}
        }
        if self.text {
            arguments["text"] = json!("hello");
        }
        if let Some(place) = self.path {
            arguments["path"] = json!(place.path(root));
        }
        arguments
    }
}

fn call() -> impl Strategy<Value = Call> {
    (
        select(
            &[
                "lookup", "count", "send", "save", "wipe", "hidden", "nothing", "read",
            ][..],
        ),
        select(&[Number::Integer, Number::Text, Number::Missing][..]),
        any::<bool>(),
        proptest::option::of(select(
            &[
                Place::File,
                Place::New,
                Place::Back,
                Place::Up,
                Place::Link,
                Place::Elsewhere,
            ][..],
        )),
        select(&[Answer::Yes, Answer::No, Answer::Nobody][..]),
    )
        .prop_map(|(tool, n, text, path, answer)| Call {
            tool,
            n,
            text,
            path,
            answer,
        })
}

/// The mark of a call's arguments as recorded.
fn mark_of(arguments: &JsonValue) -> Option<&str> {
    match arguments {
        JsonValue::Object(members) => match members.get("mark") {
            Some(JsonValue::String(mark)) => Some(mark),
            _ => None,
        },
        _ => None,
    }
}

/// The intent records in the log now, by mark.
fn intents(evidence: &std::path::Path) -> Vec<(String, CallIntent)> {
    records(evidence)
        .into_iter()
        .filter_map(|entry| match entry.record.event {
            Event::CallIntent(intent) => {
                Some((mark_of(&intent.arguments.redacted)?.to_owned(), intent))
            }
            _ => None,
        })
        .collect()
}

/// What the upstreams saw: each call, the upstream it reached, and the intent records with
/// its mark in the log when it arrived.
type Witnessed = Arc<Mutex<Vec<(&'static str, Received, Vec<CallIntent>)>>>;

/// The harness, a session per kind of answer, what the upstreams `fake` and `local` saw, and
/// how many cases have run (each case's marks start with its number).
struct Watched {
    h: Harness,
    sessions: Vec<(Answer, Session)>,
    witnessed: Witnessed,
    cases: AtomicUsize,
}

impl Watched {
    async fn start() -> Self {
        let h = Harness::start(Answers::Accept, super::Log::Kept).await;
        let mut sessions = Vec::new();
        for (answer, answers) in [
            (Answer::Yes, Answers::Accept),
            (Answer::No, Answers::Decline),
            (Answer::Nobody, Answers::Unable),
        ] {
            sessions.push((answer, h.connect(answers).await));
        }
        let witnessed = Witnessed::default();
        for (name, upstream) in [("fake", &h.upstream), ("local", &h.local)] {
            let (evidence, seen) = (h.evidence.clone(), witnessed.clone());
            upstream.watch(move |received| {
                let mark = received.arguments.get("mark").and_then(|m| m.as_str());
                let logged = intents(&evidence)
                    .into_iter()
                    .filter(|(marked, _)| Some(marked.as_str()) == mark)
                    .map(|(_, intent)| intent)
                    .collect();
                seen.lock().unwrap_or_else(PoisonError::into_inner).push((
                    name,
                    received.clone(),
                    logged,
                ));
            });
        }
        Watched {
            h,
            sessions,
            witnessed,
            cases: AtomicUsize::new(0),
        }
    }
}

/// The property: a call reaches its upstream exactly when its decision allowed it (or a
/// person's yes granted it) and its arguments passed the schema and the roots, and then once,
/// after an intent record naming the same upstream, tool, arguments (redacted form and keyed
/// digest) and an allowing decision was in the log. Every call, run or not, has one intent and
/// one outcome record, `result` exactly when it ran.
async fn intent_before_upstream(watched: &Watched, calls: Vec<Call>) -> Result<(), TestCaseError> {
    let h = &watched.h;
    let case = watched.cases.fetch_add(1, Ordering::Relaxed);
    let marks: Vec<String> = (0..calls.len()).map(|i| format!("{case}.{i}")).collect();
    for (call, mark) in calls.iter().zip(&marks) {
        let session = watched
            .sessions
            .iter()
            .find_map(|(answer, session)| (*answer == call.answer).then_some(session))
            .unwrap_or_else(|| panic!("a session answers {:?}", call.answer));
        // Refusals are answers, not failures of the property: what matters is what reached
        // the upstream and what the log holds.
        let _ = session
            .call(
                &format!("{}.{}", call.upstream(), call.tool),
                call.arguments(mark, &h.root),
            )
            .await;
    }
    let key = portcullis_audit::LogKey::existing(&h.evidence)
        .unwrap_or_else(|| panic!("the evidence log has a key"));
    let seen = watched
        .witnessed
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    let log = records(&h.evidence);
    for (call, mark) in calls.iter().zip(&marks) {
        let arrived: Vec<&(&str, Received, Vec<CallIntent>)> = seen
            .iter()
            .filter(|(_, received, _)| {
                received.arguments.get("mark").and_then(|m| m.as_str()) == Some(mark.as_str())
            })
            .collect();
        prop_assert_eq!(
            arrived.len(),
            usize::from(call.may_run()),
            "{:?} (mark {}) reached the upstream {} times",
            call,
            mark,
            arrived.len()
        );
        if let Some((upstream, received, intents_then)) = arrived.first() {
            prop_assert_eq!(
                (*upstream, received.tool.as_str()),
                (call.upstream(), call.tool)
            );
            prop_assert_eq!(intents_then.len(), 1, "intents in the log on arrival");
            let intent = &intents_then[0];
            let arguments = serde_json::Value::Object(received.arguments.clone());
            prop_assert_eq!(
                (intent.tool.upstream.as_str(), intent.tool.tool.as_str()),
                (call.upstream(), call.tool)
            );
            prop_assert_eq!(&intent.arguments.redacted, &recorded_json(&arguments));
            prop_assert_eq!(&intent.arguments.digest, &key.digest_arguments(&arguments));
            let approved = intent
                .approval
                .as_deref()
                .is_some_and(|note| note.starts_with("approved "));
            prop_assert!(
                intent.decision.verdict == "allow"
                    || (intent.decision.verdict == "approval_required" && approved),
                "ran on {:?} with approval {:?}",
                intent.decision,
                intent.approval
            );
        }
        // Every call is on the record, whether it ran or not.
        let request_ids: Vec<&str> = log
            .iter()
            .filter_map(|entry| match &entry.record.event {
                Event::CallIntent(intent) if mark_of(&intent.arguments.redacted) == Some(mark) => {
                    Some(intent.request.request_id.as_str())
                }
                _ => None,
            })
            .collect();
        prop_assert_eq!(request_ids.len(), 1, "intents of {:?}", call);
        let outcomes: Vec<&Outcome> = log
            .iter()
            .filter_map(|entry| match &entry.record.event {
                Event::CallOutcome(outcome) if outcome.request.request_id == request_ids[0] => {
                    Some(&outcome.outcome)
                }
                _ => None,
            })
            .collect();
        prop_assert_eq!(outcomes.len(), 1, "outcomes of {:?}", call);
        prop_assert_eq!(
            matches!(outcomes[0], Outcome::Result { .. }),
            call.may_run(),
            "{:?} ended {:?}",
            call,
            outcomes[0]
        );
    }
    Ok(())
}

#[test]
fn a_call_reaches_the_upstream_only_allowed_and_after_its_intent_is_logged() {
    check(
        64,
        Watched::start(),
        proptest::collection::vec(call(), 1..=6),
        intent_before_upstream,
    );
}
