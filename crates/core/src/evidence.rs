//! Evidence record values: what Portcullis writes down about every action, as plain data.
//!
//! The gateway fills these and `portcullis-audit` puts them on disk; nothing here does I/O,
//! reads a clock or makes an id. Time (`time_ms`), request ids and digests are parameters, so a
//! record says exactly what its caller saw. No secret belongs in any field: the identity is a
//! summary of the envelope (which carries none), arguments arrive already redacted, and a
//! credential is named by its fingerprint only.
//!
//! The schema is versioned (`SCHEMA_VERSION`, written into every record). A field added later
//! must be optional so that old records still read; renaming or removing one is a new version.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

use crate::identity::{ActingMode, IdentityEnvelope};

/// The version of the record schema this crate writes.
pub const SCHEMA_VERSION: u32 = 1;

/// One entry of the evidence log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvidenceRecord {
    /// `SCHEMA_VERSION` when written by this build.
    pub schema: u32,
    /// When it happened, in milliseconds since the Unix epoch, by the caller's clock.
    pub time_ms: u64,
    pub event: Event,
}

impl EvidenceRecord {
    /// A record of the current schema version.
    pub fn new(time_ms: u64, event: Event) -> Self {
        Self {
            schema: SCHEMA_VERSION,
            time_ms,
            event,
        }
    }

    /// The request this record belongs to, if it belongs to one.
    pub fn request(&self) -> Option<&RequestContext> {
        match &self.event {
            Event::List(list) => Some(&list.request),
            Event::CallIntent(intent) => Some(&intent.request),
            Event::CallOutcome(outcome) => Some(&outcome.request),
            Event::ResourceRead(read) => Some(&read.request),
            Event::PromptGet(get) => Some(&get.request),
            Event::ElicitationRelayed(elicitation) => Some(&elicitation.request),
            Event::Approval(approval) => Some(&approval.request),
            Event::Refused(refused) => Some(&refused.request),
            Event::UpstreamStarted(_)
            | Event::UpstreamStopped(_)
            | Event::UpstreamCrashed(_)
            | Event::Reload(_)
            | Event::SandboxStarted(_)
            | Event::DefinitionChanged(_)
            | Event::Checkpoint(_) => None,
        }
    }

    /// The identity the record was made for: the request's, or a sandbox's.
    pub fn identity(&self) -> Option<&IdentitySummary> {
        match &self.event {
            Event::SandboxStarted(sandbox) => sandbox.identity.as_ref(),
            _ => self.request().map(|request| &request.identity),
        }
    }

    /// The upstream the record is about, if any.
    pub fn upstream(&self) -> Option<&str> {
        match &self.event {
            Event::CallIntent(intent) => Some(&intent.tool.upstream),
            Event::CallOutcome(outcome) => Some(&outcome.tool.upstream),
            Event::ResourceRead(read) => Some(&read.upstream),
            Event::PromptGet(get) => Some(&get.upstream),
            Event::ElicitationRelayed(elicitation) => Some(&elicitation.upstream),
            Event::Approval(approval) => Some(&approval.tool.upstream),
            Event::UpstreamStarted(lifecycle)
            | Event::UpstreamStopped(lifecycle)
            | Event::UpstreamCrashed(lifecycle) => Some(&lifecycle.upstream),
            Event::SandboxStarted(sandbox) => Some(&sandbox.upstream),
            Event::DefinitionChanged(changed) => Some(&changed.upstream),
            Event::Refused(refused) => Some(refused.upstream.as_str()).filter(|u| !u.is_empty()),
            Event::List(_) | Event::Reload(_) | Event::Checkpoint(_) => None,
        }
    }

    /// The tool (upstream's own name) a call record is about.
    pub fn tool(&self) -> Option<&ToolRef> {
        match &self.event {
            Event::CallIntent(intent) => Some(&intent.tool),
            Event::CallOutcome(outcome) => Some(&outcome.tool),
            Event::Approval(approval) => Some(&approval.tool),
            _ => None,
        }
    }

    /// The decision recorded, if the record carries one.
    pub fn decision(&self) -> Option<&DecisionSummary> {
        match &self.event {
            Event::CallIntent(intent) => Some(&intent.decision),
            Event::ResourceRead(read) => Some(&read.decision),
            Event::PromptGet(get) => Some(&get.decision),
            _ => None,
        }
    }

    /// The outcome recorded, if the record carries one.
    pub fn outcome(&self) -> Option<&Outcome> {
        match &self.event {
            Event::CallOutcome(outcome) => Some(&outcome.outcome),
            Event::ResourceRead(read) => Some(&read.outcome),
            Event::PromptGet(get) => Some(&get.outcome),
            _ => None,
        }
    }
}

/// What happened. Serialized with a `kind` tag in snake case (`call_intent`, …).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Event {
    /// A list request answered (tools, prompts, resources or resource templates).
    List(ListEvent),
    /// A tool call decided, written before the upstream is called.
    CallIntent(CallIntent),
    /// What a call produced, written after it ends (including not running at all).
    CallOutcome(CallOutcome),
    ResourceRead(ResourceRead),
    PromptGet(PromptGet),
    /// An upstream's own elicitation relayed to the person.
    ElicitationRelayed(ElicitationRelayed),
    /// Portcullis's own approval request for a call: asked, and how it was answered.
    Approval(Approval),
    UpstreamStarted(UpstreamLifecycle),
    UpstreamStopped(UpstreamLifecycle),
    UpstreamCrashed(UpstreamLifecycle),
    /// A config or policy reload, applied or refused.
    Reload(Reload),
    SandboxStarted(SandboxStarted),
    /// An upstream's definition (tool, prompt, resource template) that differs from its pin,
    /// or was pinned at first sight: what changed and whether it is quarantined.
    DefinitionChanged(DefinitionChanged),
    /// A request naming something (a completion reference, a resource subscription) refused
    /// before any upstream heard of it.
    Refused(Refused),
    /// Written by the evidence log itself every N records; never by a caller.
    Checkpoint(Checkpoint),
}

impl Event {
    /// The `kind` tag this event is written with.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::List(_) => "list",
            Event::CallIntent(_) => "call_intent",
            Event::CallOutcome(_) => "call_outcome",
            Event::ResourceRead(_) => "resource_read",
            Event::PromptGet(_) => "prompt_get",
            Event::ElicitationRelayed(_) => "elicitation_relayed",
            Event::Approval(_) => "approval",
            Event::UpstreamStarted(_) => "upstream_started",
            Event::UpstreamStopped(_) => "upstream_stopped",
            Event::UpstreamCrashed(_) => "upstream_crashed",
            Event::Reload(_) => "reload",
            Event::SandboxStarted(_) => "sandbox_started",
            Event::DefinitionChanged(_) => "definition_changed",
            Event::Refused(_) => "refused",
            Event::Checkpoint(_) => "checkpoint",
        }
    }
}

/// Which request, in which session, for whom.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestContext {
    /// Portcullis's id for the request (the same id its log lines and spans carry).
    pub request_id: String,
    /// The downstream session, when the era has one.
    pub session: Option<String>,
    pub identity: IdentitySummary,
    /// The tool of Portcullis's own a call came through (`portcullis.call_tool`); absent for a
    /// call by the tool's own name and for every other request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<String>,
}

/// The parts of an identity envelope worth recording. No credential names (they are grants,
/// recorded with the sandbox or the call that used one) and no lifetime.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentitySummary {
    pub issuer: String,
    pub subject: String,
    pub client: Option<String>,
    #[serde(deserialize_with = "acting_mode")]
    pub mode: ActingMode,
    pub groups: BTreeSet<String>,
    pub tenant: Option<String>,
    pub scopes: BTreeSet<String>,
}

impl From<&IdentityEnvelope> for IdentitySummary {
    fn from(envelope: &IdentityEnvelope) -> Self {
        Self {
            issuer: envelope.user().issuer.clone(),
            subject: envelope.user().subject.clone(),
            client: envelope.client().map(str::to_owned),
            mode: envelope.mode(),
            groups: envelope.groups().clone(),
            tenant: envelope.tenant().map(str::to_owned),
            scopes: envelope.scopes().clone(),
        }
    }
}

// `ActingMode` is `Serialize` only (an envelope is never read back from the wire); a recorded
// one is read back by the audit reader, so it is parsed here, by the same snake-case names.
fn acting_mode<'de, D: Deserializer<'de>>(deserializer: D) -> Result<ActingMode, D::Error> {
    let name = String::deserialize(deserializer)?;
    match name.as_str() {
        "delegated" => Ok(ActingMode::Delegated),
        "service" => Ok(ActingMode::Service),
        "both" => Ok(ActingMode::Both),
        other => Err(serde::de::Error::custom(format!(
            "unknown acting mode `{other}`"
        ))),
    }
}

/// A tool as its upstream names it, with the hash of the definition Portcullis pinned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolRef {
    pub upstream: String,
    pub tool: String,
    /// The caller's digest of the tool definition it listed (empty when not pinned yet).
    pub definition_hash: String,
}

/// Arguments as recorded: the redacted value and the caller's digest of them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Arguments {
    /// The arguments after the configured redactions.
    pub redacted: JsonValue,
    /// The caller's digest of the arguments (say in the docs which form it hashes).
    pub digest: String,
}

/// What policy decided, by name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecisionSummary {
    /// `allow`, `approval_required` or `deny` (the policy crate's verdict names).
    pub verdict: String,
    /// The `@id`s of the determining policies.
    pub policies: Vec<String>,
    /// The policy version in force (its digest), when known.
    pub policy_version: Option<String>,
}

/// How a request ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Outcome {
    /// The upstream answered. `is_error` is a tool error (the upstream's own failure report).
    Result {
        digest: String,
        size: u64,
        is_error: bool,
    },
    /// Something at or beyond the upstream failed: the message the client got.
    Error {
        message: String,
    },
    /// It never reached the upstream: denied, declined, approval refused, or the log failed.
    NotRun {
        reason: String,
    },
    Cancelled,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListEvent {
    pub request: RequestContext,
    /// `tools`, `prompts`, `resources` or `resource_templates`.
    pub list: String,
    /// How many entries the identity was shown in this page.
    pub returned: u64,
    pub duration_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallIntent {
    pub request: RequestContext,
    pub tool: ToolRef,
    pub arguments: Arguments,
    pub decision: DecisionSummary,
    /// Approval state, once approvals exist (`None`: not applicable yet).
    pub approval: Option<String>,
    /// Fingerprint of the credential the call will use; never the credential.
    pub credential: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallOutcome {
    pub request: RequestContext,
    pub tool: ToolRef,
    /// The `seq` of the intent record, joining the two.
    pub intent_seq: Option<u64>,
    pub outcome: Outcome,
    pub duration_ms: u64,
    /// What secrets Portcullis holds were found in the upstream's answer and redacted before
    /// it went on, by what they are (never their values); absent when none were.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub redacted: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceRead {
    pub request: RequestContext,
    pub upstream: String,
    /// The upstream's own URI.
    pub uri: String,
    pub decision: DecisionSummary,
    pub outcome: Outcome,
    pub duration_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PromptGet {
    pub request: RequestContext,
    pub upstream: String,
    pub prompt: String,
    pub arguments: Arguments,
    pub decision: DecisionSummary,
    pub outcome: Outcome,
    pub duration_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refused {
    pub request: RequestContext,
    /// The MCP method, e.g. `completion/complete`, `resources/subscribe`.
    pub method: String,
    /// The upstream the name resolved to; empty when it resolved to none.
    pub upstream: String,
    /// The name or URI as the upstream knows it, or as the client sent it when it resolved
    /// to nothing (cut to a bounded length by the caller).
    pub name: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ElicitationRelayed {
    pub request: RequestContext,
    pub upstream: String,
    /// `accept`, `decline` or `cancel`, or why the person was not asked.
    pub response: String,
    pub duration_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approval {
    pub request: RequestContext,
    pub tool: ToolRef,
    /// The action the approval is bound to: a digest of identity, upstream, tool, pinned
    /// definition, arguments and the digest of the policy text in force.
    pub fingerprint: String,
    /// Why it was asked: the determining policies, and `untrusted content` when the session's
    /// taint required it.
    pub reasons: Vec<String>,
    /// `asked`, or the answer: `approved`, `approved_for_session` (and for calls like it in
    /// this session), `scoped` (not asked: a session-scoped answer covered it; the intent
    /// names which), `declined`, `cancelled`, `not_confirmed` (accepted without a yes),
    /// `invalid`, `timed_out`, `unanswered` (a form not answered in time: the next rung
    /// follows), `pending` (the person was given the approval page), `unavailable` (the client
    /// cannot be asked), `failed`, or `replayed` (a retry given the recorded outcome instead
    /// of a second run).
    pub answer: String,
    /// The untrusted upstreams the session had received content from.
    pub tainted_by: Vec<String>,
    pub duration_ms: u64,
    /// Where the person was reached: `form` (form elicitation in the client), `url` (the
    /// client opened the approval page's link), `pending` (the link handed back in a tool
    /// result, for an identical retry), `page` (a retry that found its approval decided on
    /// the page or in a terminal). Absent in records written before the ladder existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rung: Option<String>,
    /// Who decided outside the client: `passkey NAME` on the approval page, `terminal`
    /// (`portcullis approve` or `deny`), `page` (denied on the page).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpstreamLifecycle {
    pub upstream: String,
    /// What a person needs to know: the exit status, the error, the restart delay.
    pub detail: Option<String>,
}

/// One definition compared with its pin (see the gateway's `pins.rs`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DefinitionChanged {
    pub upstream: String,
    /// `tool`, `prompt` or `resource_template`.
    pub entry: String,
    /// The upstream's own name (a template's URI template).
    pub name: String,
    /// `changed`, `new` (not pinned, its upstream pinned), `unpinned` (its upstream never
    /// pinned, under `strict`, or its pins could not be written), `removed` (pinned, no longer
    /// listed), or `matches` (quarantined before, listed again: its definition now matches its
    /// pin, accepted or changed back), or `accepted` (a person approved a call of it, shown
    /// the change, which pinned it as listed).
    pub change: String,
    /// The pinned definition's digest, if there is a pin.
    pub pinned: Option<String>,
    /// The listed definition's digest, if it is listed.
    pub listed: Option<String>,
    /// Whether it is hidden and refused until accepted.
    pub quarantined: bool,
    /// The difference, as lines of the definitions' JSON (`-` pinned, `+` listed), bounded.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub diff: String,
    /// `accepted`: who accepted it (the user whose approval of a call of it did).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accepted_by: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reload {
    /// `config` or `policy`.
    pub target: String,
    /// False when the reload was refused and the previous version stays in force.
    pub applied: bool,
    /// The version now in force (a digest), when known.
    pub version: Option<String>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxStarted {
    pub upstream: String,
    /// Whose grants the sandbox was compiled from; `None`: config's grants, the same for every
    /// identity.
    pub identity: Option<IdentitySummary>,
    /// The caller's digest of the compiled sandbox profile; `none` when not contained.
    pub profile: String,
    /// `Some(false)`: config opted this upstream out of containment (`contain = false`) and it
    /// runs with Portcullis's own access. Optional so that records written before it existed
    /// (all of them contained) still read.
    pub contained: Option<bool>,
}

/// A point in the chain worth anchoring elsewhere: records `from_seq..=to_seq` end in `head`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The first seq after the previous checkpoint (0 for the first one).
    pub from_seq: u64,
    /// The seq of the record just before this checkpoint.
    pub to_seq: u64,
    /// That record's hash (also this checkpoint's `prev`).
    pub head: String,
    /// Ed25519 signature over the three fields above, in hex, by the log's signing key: anyone
    /// given its public key can check it (`portcullis audit verify --public-key`). Empty in a
    /// checkpoint written before signatures existed.
    #[serde(default)]
    pub signature: String,
}

/// A JSON value as recorded. Object keys are kept in a `BTreeMap`, so a record's bytes never
/// depend on whether serde_json's `preserve_order` feature is on (cedar-policy turns it on in
/// the binary, not in this crate's tests).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum JsonValue {
    Null,
    Bool(bool),
    Integer(i64),
    Unsigned(u64),
    Float(f64),
    String(String),
    Array(Vec<JsonValue>),
    Object(BTreeMap<String, JsonValue>),
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Result {
                size,
                is_error: false,
                ..
            } => write!(f, "ok ({size} bytes)"),
            Outcome::Result {
                size,
                is_error: true,
                ..
            } => write!(f, "tool error ({size} bytes)"),
            Outcome::Error { message } => write!(f, "error: {message}"),
            Outcome::NotRun { reason } => write!(f, "not run: {reason}"),
            Outcome::Cancelled => f.write_str("cancelled"),
        }
    }
}

#[cfg(test)]
mod tests;
