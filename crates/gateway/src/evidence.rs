//! The record stage of a tool call: an intent record, durable before the upstream is called,
//! and an outcome record after, for every call whatever its decision.
//!
//! INVARIANT: a call runs only after its intent record is acknowledged by the evidence log
//! (written and synced). If the log cannot be written, side effects stop; reads continue only
//! when config says `reads_without_evidence = true`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use portcullis_audit::digest_json;
use portcullis_core::evidence::{
    Approval, Arguments, CallIntent, CallOutcome, DecisionSummary, Event, IdentitySummary,
    ListEvent, Outcome, Reload, RequestContext, ToolRef,
};
use portcullis_core::{ArgumentPointer, Effect, IdentityEnvelope};
use portcullis_policy::Decision;
use rmcp::ErrorData as McpError;
use rmcp::model::{CallToolResponse, JsonObject};

use crate::metrics::Metrics;
use crate::policy::PolicyStore;
use crate::recorder::{Recorder, elapsed_ms};

/// Writes the evidence of what the gateway decides and does: the log and its clock, the call
/// metrics counted as outcomes are recorded, and the policy whose version each record names.
pub(crate) struct Evidence {
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    pub policy: Arc<PolicyStore>,
    /// With shared state: the key approval fingerprints digest arguments with, the same in
    /// every replica (each log's own key differs, and a fingerprint computed by one replica
    /// must be found by another). `None`: the log's key, as for everything it records.
    pub shared_arguments: Option<portcullis_audit::SharedArgumentKey>,
}

static NEXT_REQUEST: AtomicU64 = AtomicU64::new(1);

/// A new request id in `session`, and who the request acts as (a read's or a list's record).
pub(crate) fn request_context(envelope: &IdentityEnvelope, session: u64) -> RequestContext {
    RequestContext {
        request_id: format!("{session}-{}", NEXT_REQUEST.fetch_add(1, Ordering::Relaxed)),
        session: Some(session.to_string()),
        identity: IdentitySummary::from(envelope),
        via: None,
    }
}

/// An approval event's particulars.
pub(crate) struct ApprovalRecord<'a> {
    pub fingerprint: &'a str,
    pub reasons: &'a [String],
    pub tainted_by: &'a [String],
    pub answer: &'a str,
    pub started: Instant,
    /// The rung of the approval ladder the person was reached on, when one was tried.
    pub rung: Option<&'static str>,
    /// Who decided outside the client (`passkey NAME`, `terminal`), when someone did.
    pub by: Option<&'a str>,
}

/// One call's evidence so far: who, which tool, and the intent record's seq once written.
#[derive(Debug, Clone)]
pub struct CallRecord {
    request: RequestContext,
    tool: ToolRef,
    started: Instant,
    intent_seq: Option<u64>,
    /// The tool's configured redactions.
    redact: Vec<ArgumentPointer>,
}

impl CallRecord {
    /// Starts the record of a call of the name the client sent (cut to
    /// [`MAX_RECORDED_NAME`] characters), no upstream yet: the resolve stage names the tool
    /// (`resolve`), and a name that resolves to nothing is recorded as sent.
    pub fn unresolved(envelope: &IdentityEnvelope, session: u64, exposed: &str) -> Self {
        Self {
            request: request_context(envelope, session),
            tool: ToolRef {
                upstream: String::new(),
                tool: recorded_name(exposed),
                definition_hash: String::new(),
            },
            started: Instant::now(),
            intent_seq: None,
            redact: Vec::new(),
        }
    }

    /// Names the tool the call resolved to: `tool` of `upstream`, with the argument pointers
    /// its records redact.
    pub fn resolve(&mut self, upstream: &str, tool: &str, redact: Vec<ArgumentPointer>) {
        self.tool = ToolRef {
            upstream: upstream.to_owned(),
            // Still the client's text when no such tool exists: bounded like any other.
            tool: recorded_name(tool),
            definition_hash: String::new(),
        };
        self.redact = redact;
    }

    /// Notes the tool of Portcullis's own the call came through (`portcullis.call_tool`), if
    /// any: every record of the call says so.
    pub(crate) fn came_via(&mut self, via: Option<&str>) {
        self.request.via = via.map(str::to_owned);
    }

    /// The request the call belongs to.
    pub fn request(&self) -> &RequestContext {
        &self.request
    }

    /// Notes the digest of the tool's definition as listed (as exposed to the client).
    /// The call acts with the upstream's service authority, not the user's: its records say so.
    pub fn acting_with_service(&mut self) {
        self.request.identity.mode = portcullis_core::ActingMode::Service;
    }

    /// Sets the digest of the definition the client was shown ([`definition_digest`]).
    pub fn set_definition(&mut self, digest: String) {
        self.tool.definition_hash = digest;
    }

    /// The digest of the definition the client was shown (empty before `set_definition`).
    pub fn definition_digest(&self) -> &str {
        &self.tool.definition_hash
    }
}

/// The digest of a tool's definition as listed (empty if it cannot be serialized, which a
/// listed tool always can).
pub(crate) fn definition_digest(definition: &rmcp::model::Tool) -> String {
    serde_json::to_value(definition)
        .map(|value| digest_json(&value))
        .unwrap_or_default()
}

/// Proof that a call's intent record is durable, which the upstream call cannot be built
/// without (`UpstreamCall::new`). Its field is private to this module: only
/// [`Gateway::record_intent`] makes one.
///
/// ```compile_fail,E0451
/// fn forge() -> portcullis_gateway::DurableIntent {
///     portcullis_gateway::DurableIntent { seq: Some(1) }
/// }
/// ```
#[derive(Debug)]
pub struct DurableIntent {
    /// The intent's seq; `None` only for a read that config lets run while the log cannot be
    /// written (`reads_without_evidence`).
    seq: Option<u64>,
}

impl DurableIntent {
    pub fn seq(&self) -> Option<u64> {
        self.seq
    }
}

/// The longest name (in characters) recorded for a request that names nothing known: the
/// name comes from the client, and the log should not grow by whatever it chooses to send.
pub(crate) const MAX_RECORDED_NAME: usize = 256;

/// A client-supplied name as recorded: whole up to [`MAX_RECORDED_NAME`] characters, else cut
/// with a marker that gives its length.
pub(crate) fn recorded_name(name: &str) -> String {
    if name.chars().count() <= MAX_RECORDED_NAME {
        return name.to_owned();
    }
    let prefix: String = name.chars().take(MAX_RECORDED_NAME).collect();
    format!("{prefix}… [{} bytes in all]", name.len())
}

impl Evidence {
    /// The decision as recorded.
    pub(crate) fn summary(&self, decision: Option<&Decision>) -> DecisionSummary {
        DecisionSummary {
            verdict: decision.map_or("deny", |d| d.verdict.as_str()).to_owned(),
            policies: decision
                .map(|d| d.policy_ids().into_iter().map(str::to_owned).collect())
                .unwrap_or_default(),
            policy_version: Some(self.policy.version().to_string()),
        }
    }

    /// Arguments as recorded: secrets and the `redact` pointers replaced, and the keyed digest
    /// of the arguments as sent.
    pub(crate) fn arguments(
        &self,
        arguments: Option<&JsonObject>,
        redact: &[ArgumentPointer],
    ) -> Arguments {
        let value = serde_json::Value::Object(arguments.cloned().unwrap_or_default());
        Arguments {
            redacted: portcullis_audit::redact(&value, redact),
            digest: self
                .recorder
                .log()
                .map(|log| log.digest_arguments(&value))
                .unwrap_or_default(),
        }
    }

    async fn append(&self, event: Event) -> Result<u64, String> {
        self.recorder.append(event).await
    }

    /// The fingerprint an approval of this call is bound to: identity, upstream, tool, the
    /// pinned definition, the arguments (by their keyed digest) and the policy text in force.
    pub(crate) fn fingerprint(
        &self,
        record: &CallRecord,
        call_arguments: Option<&JsonObject>,
    ) -> String {
        let arguments = match &self.shared_arguments {
            Some(key) => key.digest_arguments(&serde_json::Value::Object(
                call_arguments.cloned().unwrap_or_default(),
            )),
            None => self.arguments(call_arguments, &[]).digest,
        };
        let identity = &record.request.identity;
        crate::approval::fingerprint(&crate::approval::Fingerprinted {
            issuer: &identity.issuer,
            subject: &identity.subject,
            upstream: &record.tool.upstream,
            tool: &record.tool.tool,
            definition: &record.tool.definition_hash,
            arguments: &arguments,
            policy: self.policy.current().digest(),
        })
    }

    /// Records an approval asked or answered. `Err` carries the message for the client: an
    /// approval that cannot be recorded is not asked, and an answer that cannot be recorded
    /// does not run the call.
    pub(crate) async fn record_approval(
        &self,
        record: &CallRecord,
        approval: ApprovalRecord<'_>,
    ) -> Result<(), String> {
        let event = Event::Approval(Approval {
            request: record.request.clone(),
            tool: record.tool.clone(),
            fingerprint: approval.fingerprint.to_owned(),
            reasons: approval.reasons.to_vec(),
            answer: approval.answer.to_owned(),
            tainted_by: approval.tainted_by.to_vec(),
            duration_ms: elapsed_ms(approval.started),
            rung: approval.rung.map(str::to_owned),
            by: approval.by.map(str::to_owned),
        });
        self.append(event)
            .await
            .map(|_| ())
            .map_err(|error| {
                tracing::error!(request = %record.request.request_id, %error, "an approval could not be recorded");
                format!(
                    "portcullis cannot write its evidence log, so it runs no calls that are not recorded ({error}); the call did not run"
                )
            })
    }

    /// Writes the intent record. `Err` carries the message for the client: the call must not
    /// run (unless it is a read and config lets reads run without evidence).
    pub(crate) async fn record_intent(
        &self,
        record: &mut CallRecord,
        call_arguments: Option<&JsonObject>,
        decision: DecisionSummary,
        effect: Effect,
        approval: Option<String>,
        credential: Option<String>,
    ) -> Result<DurableIntent, String> {
        let event = Event::CallIntent(CallIntent {
            request: record.request.clone(),
            tool: record.tool.clone(),
            arguments: self.arguments(call_arguments, &record.redact),
            decision,
            approval,
            credential,
        });
        match self.recorder.append_before_acting(event).await {
            Ok(seq) => {
                record.intent_seq = Some(seq);
                tracing::Span::current().record("evidence_seq", seq);
                Ok(DurableIntent { seq: Some(seq) })
            }
            Err(error) if effect == Effect::Read && self.recorder.lets_reads_run_unrecorded() => {
                tracing::error!(
                    request = %record.request.request_id,
                    %error,
                    "the evidence log cannot be written; a read runs without evidence because config allows it"
                );
                Ok(DurableIntent { seq: None })
            }
            Err(error) => {
                tracing::error!(
                    request = %record.request.request_id,
                    %error,
                    "the evidence log cannot be written; the call does not run"
                );
                Err(format!(
                    "portcullis cannot write its evidence log, so it runs no calls that are not recorded ({error}); the call did not run"
                ))
            }
        }
    }

    /// Writes the outcome record. `Err` (the log could not be written) is the message for the
    /// client: the call already ran, so its answer cannot go back as if it were recorded; the
    /// failed log refuses every later intent, and the next start records the lost outcome
    /// (`portcullis_audit::EvidenceLog::open` finds intents without one).
    pub(crate) async fn record_outcome(
        &self,
        record: &CallRecord,
        outcome: Outcome,
        redacted: Vec<String>,
    ) -> Result<(), String> {
        self.metrics.called(
            &record.tool.upstream,
            &outcome,
            record.started.elapsed().as_secs_f64(),
        );
        let event = Event::CallOutcome(CallOutcome {
            request: record.request.clone(),
            tool: record.tool.clone(),
            intent_seq: record.intent_seq,
            outcome,
            duration_ms: u64::try_from(record.started.elapsed().as_millis()).unwrap_or(u64::MAX),
            redacted,
        });
        self.append(event)
            .await
            .map(|_| ())
            .map_err(|error| {
                tracing::error!(
                    request = %record.request.request_id,
                    %error,
                    "the outcome of a call could not be recorded"
                );
                format!(
                    "`{}` of upstream `{}` ran, but portcullis could not record its outcome ({error}), so its answer is withheld; the outcome is recorded as lost when the evidence log can be written again",
                    record.tool.tool, record.tool.upstream
                )
            })
    }

    /// Records, at start, the outcome of every call whose intent is in the log and whose
    /// outcome is not: the log could not be written when it ended (its answer was withheld),
    /// or Portcullis stopped while it ran. Such a call may have run; the record says so. Reads
    /// the whole log once.
    pub(crate) async fn record_lost_outcomes(&self) -> Result<usize, String> {
        let Some(log) = self.recorder.log() else {
            return Ok(0);
        };
        let records = portcullis_audit::read(log.path(), portcullis_audit::Filter::default())
            .map_err(|error| error.to_string())?;
        let mut open: std::collections::BTreeMap<u64, CallIntent> = Default::default();
        for entry in records.flatten() {
            match entry.record.event {
                Event::CallIntent(intent) => {
                    open.insert(entry.seq, intent);
                }
                Event::CallOutcome(outcome) => {
                    if let Some(seq) = outcome.intent_seq {
                        open.remove(&seq);
                    }
                }
                _ => {}
            }
        }
        let lost = open.len();
        for (seq, intent) in open {
            let event = Event::CallOutcome(CallOutcome {
                request: intent.request,
                tool: intent.tool,
                intent_seq: Some(seq),
                outcome: Outcome::Error {
                    message: "outcome lost: no outcome was recorded for this call (the evidence log could not be written when it ended, or portcullis stopped while it ran); it may have run".to_owned(),
                },
                duration_ms: 0,
                redacted: Vec::new(),
            });
            self.append(event).await?;
        }
        if lost > 0 {
            tracing::warn!(
                lost,
                "calls whose outcome was never recorded are now recorded as lost"
            );
        }
        Ok(lost)
    }

    /// Records a list request's answer. A list is a read: if the log cannot be written it is
    /// refused (`Err` carries the message) unless config lets reads run without evidence.
    pub(crate) async fn record_list(
        &self,
        envelope: &IdentityEnvelope,
        session: u64,
        list: &str,
        returned: usize,
        started: Instant,
    ) -> Result<(), String> {
        let event = Event::List(ListEvent {
            request: request_context(envelope, session),
            list: list.to_owned(),
            returned: u64::try_from(returned).unwrap_or(u64::MAX),
            duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        });
        self.record_read(event).await
    }

    /// Records a read (a list, a resource read, a prompt get) after it was answered. If the
    /// log cannot be written the answer is withheld (`Err` carries the message) unless config
    /// lets reads run without evidence.
    pub(crate) async fn record_read(&self, event: Event) -> Result<(), String> {
        let kind = event.kind();
        match self.append(event).await {
            Ok(_) => Ok(()),
            Err(error) if self.recorder.lets_reads_run_unrecorded() => {
                tracing::error!(%error, kind, "the evidence log cannot be written; a read is answered without evidence because config allows it");
                Ok(())
            }
            Err(error) => {
                tracing::error!(%error, kind, "the evidence log cannot be written; the read is refused");
                Err(format!(
                    "portcullis cannot write its evidence log, so it answers no unrecorded requests ({error})"
                ))
            }
        }
    }

    /// Records a person's acceptance, with a call of it, of the changed definition `change`
    /// of `upstream` (`by`: who). `Err`: it could not be recorded.
    pub(crate) async fn record_accepted(
        &self,
        upstream: &portcullis_core::UpstreamName,
        change: &crate::pins::Change,
        by: &str,
    ) -> Result<(), String> {
        let digest = |pin: &Option<crate::pins::Pin>| pin.as_ref().map(|pin| pin.digest.clone());
        let event = Event::DefinitionChanged(portcullis_core::evidence::DefinitionChanged {
            upstream: upstream.to_string(),
            entry: change.kind.as_str().to_owned(),
            name: change.name.clone(),
            change: "accepted".to_owned(),
            pinned: digest(&change.pinned),
            listed: digest(&change.listed),
            quarantined: false,
            diff: change.recorded_diff(),
            accepted_by: Some(by.to_owned()),
        });
        self.append(event)
            .await
            .map(|_| ())
            .map_err(|error| error.to_string())
    }

    /// Records a config or policy reload, applied or refused. A failure to record is logged:
    /// the reload itself already happened or did not.
    pub(crate) async fn record_reload(&self, target: &str, outcome: Result<u64, String>) {
        let (applied, version, error) = match outcome {
            Ok(version) => (true, Some(version.to_string()), None),
            Err(problems) => (
                false,
                Some(self.policy.version().to_string()),
                Some(problems),
            ),
        };
        let event = Event::Reload(Reload {
            target: target.to_owned(),
            applied,
            version,
            error,
        });
        if let Err(error) = self.append(event).await {
            tracing::error!(%error, "a reload could not be recorded");
        }
    }

    /// Records a call that does not run: its intent with the decision, and why not.
    pub(crate) async fn record_refusal(
        &self,
        mut record: CallRecord,
        call_arguments: Option<&JsonObject>,
        decision: DecisionSummary,
        reason: &str,
    ) {
        // Nothing runs either way, so a failure to record the intent does not change the answer.
        let _ = self
            .record_intent(
                &mut record,
                call_arguments,
                decision,
                Effect::Unknown,
                None,
                None,
            )
            .await;
        // Nothing ran, so a failure to record changes nothing for the client.
        let _ = self
            .record_outcome(
                &record,
                Outcome::NotRun {
                    reason: reason.to_owned(),
                },
                Vec::new(),
            )
            .await;
    }
}

/// What a finished read produced, as recorded.
pub(crate) fn read_outcome<T: serde::Serialize>(answer: Result<&T, &McpError>) -> Outcome {
    match answer {
        Ok(result) => {
            let value = serde_json::to_value(result).unwrap_or_default();
            let size = serde_json::to_vec(&value).map_or(0, |bytes| bytes.len());
            Outcome::Result {
                digest: digest_json(&value),
                size: u64::try_from(size).unwrap_or(u64::MAX),
                is_error: false,
            }
        }
        Err(error) => Outcome::Error {
            message: error.message.to_string(),
        },
    }
}

/// What a finished call produced, as recorded.
pub(crate) fn outcome_of(result: &Result<CallToolResponse, McpError>) -> Outcome {
    match result {
        Ok(CallToolResponse::Complete(result)) => {
            let value = serde_json::to_value(result).unwrap_or_default();
            let size = serde_json::to_vec(&value).map_or(0, |bytes| bytes.len());
            Outcome::Result {
                digest: digest_json(&value),
                size: u64::try_from(size).unwrap_or(u64::MAX),
                is_error: result.is_error == Some(true),
            }
        }
        Ok(_) => Outcome::Error {
            message: "the call ended waiting for input".to_owned(),
        },
        Err(error) => Outcome::Error {
            message: error.message.to_string(),
        },
    }
}
