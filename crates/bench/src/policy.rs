//! The decide stage alone: the two Cedar checks of a call (may this identity see the tool, then
//! may it call it), timed in process against the shipped schema and default policy, for the
//! same `echo` call the routes make, asked anew and asked again.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use portcullis_core::{
    ActingMode, Effect, EnvelopeParts, IdentityEnvelope, LOCAL_ISSUER, Surface, UserId,
};
use portcullis_policy::{
    Action, Facts, PolicyEngine, Request, SHIPPED_POLICY, SHIPPED_SCHEMA, Source, Target, Verdict,
};

use crate::measure::{Samples, Summary};

/// What the decide stage costs: questions Cedar answers for the first time, and the same
/// questions asked again (answered from the policy's memo, as a call repeated by one identity is).
pub(crate) struct PolicyFigures {
    anew: Summary,
    again: Summary,
}

/// Decides `decisions` calls of `echo` (a read), each by a different user so that Cedar answers
/// every one, then the same calls again; fails if the shipped policy does not allow the call,
/// since then it measured a deny.
pub(crate) fn measure_policy(decisions: usize) -> anyhow::Result<PolicyFigures> {
    let engine = PolicyEngine::load(
        &Source {
            name: "portcullis.cedarschema".to_owned(),
            text: SHIPPED_SCHEMA.to_owned(),
        },
        &[Source {
            name: "default.cedar".to_owned(),
            text: SHIPPED_POLICY.to_owned(),
        }],
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    // Two answers per user, fewer in all than the memo keeps (4,096), so the second pass finds
    // every answer kept.
    let envelopes: Vec<IdentityEnvelope> = (0..decisions.min(2000))
        .map(|n| {
            IdentityEnvelope::new(EnvelopeParts {
                user: UserId {
                    issuer: LOCAL_ISSUER.to_owned(),
                    subject: format!("user{n}"),
                },
                client: None,
                mode: ActingMode::Delegated,
                groups: BTreeSet::from(["eng".to_owned()]),
                tenant: Some("acme".to_owned()),
                scopes: BTreeSet::from(["files.read".to_owned()]),
                usable_credentials: BTreeSet::new(),
                forbidden_credentials: BTreeSet::new(),
                lifetime: None,
            })
        })
        .collect();
    let required = BTreeSet::new();
    let arguments: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(r#"{"text":"ping"}"#)?;
    let request = |envelope, action, arguments| Request {
        envelope,
        action,
        upstream: "fixture",
        surface: Surface::Unspecified,
        target: Target::Tool {
            name: "echo",
            effect: Effect::Read,
            required_scopes: &required,
            arguments,
        },
        now: 1_796_083_200,
        facts: Facts::default(),
    };
    let pass = |count: usize| -> anyhow::Result<Summary> {
        let mut durations = Vec::with_capacity(count);
        let started = Instant::now();
        for envelope in envelopes.iter().cycle().take(count) {
            let list = request(envelope, Action::ListTool, None);
            let call = request(envelope, Action::CallTool, Some(&arguments));
            let begun = Instant::now();
            let visible = engine.decide(&list).verdict;
            let callable = engine.decide(&call).verdict;
            durations.push(begun.elapsed());
            if visible != Verdict::Allow || callable != Verdict::Allow {
                anyhow::bail!(
                    "the shipped policy did not allow `echo`: the measurement would be of a deny"
                );
            }
        }
        Ok(Samples::new(durations, started.elapsed()).summary())
    };
    let anew = pass(envelopes.len())?;
    let again = pass(decisions)?;
    Ok(PolicyFigures { anew, again })
}

impl PolicyFigures {
    pub(crate) fn json(&self) -> serde_json::Value {
        let micros = |summary: &Summary| {
            serde_json::json!({
                "decisions": summary.calls,
                "p50": summary.p50.as_secs_f64() * 1e6,
                "p99": summary.p99.as_secs_f64() * 1e6,
            })
        };
        serde_json::json!({ "anew": micros(&self.anew), "again": micros(&self.again) })
    }

    /// Lines for the tables.
    pub(crate) fn describe(&self, direct_p50: Option<Duration>) -> String {
        let micros = |d: Duration| d.as_secs_f64() * 1e6;
        let mut text = String::new();
        for (summary, how) in [
            (&self.anew, "asked anew, a different user each"),
            (&self.again, "asked again, from the memo"),
        ] {
            text.push_str(&format!(
                "Policy, in process (list check + call check of `echo` under the shipped default policy, {how}, {} calls): p50 {:.1} µs, p99 {:.1} µs",
                summary.calls,
                micros(summary.p50),
                micros(summary.p99)
            ));
            if let Some(direct) = direct_p50 {
                text.push_str(&format!(
                    "; {:.0} % of the direct stdio call's p50 ({:.1} µs) in this run",
                    100.0 * micros(summary.p50) / micros(direct).max(f64::MIN_POSITIVE),
                    micros(direct)
                ));
            }
            text.push('\n');
        }
        text
    }
}
