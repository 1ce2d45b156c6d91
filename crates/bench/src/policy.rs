//! The decide stage alone: the two Cedar checks every call costs in the gateway (may this
//! identity see the tool, then may it call it), timed in process against the shipped schema and
//! default policy, for the same `echo` call the routes make.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use portcullis_core::{
    ActingMode, Effect, EnvelopeParts, IdentityEnvelope, LOCAL_ISSUER, Surface, UserId,
};
use portcullis_policy::{
    Action, Facts, PolicyEngine, Request, SHIPPED_POLICY, SHIPPED_SCHEMA, Source, Target, Verdict,
};

use crate::measure::{Samples, Summary};

/// Decides `decisions` calls of `echo` (a read) and returns the time each call's two checks
/// took; fails if the shipped policy does not allow the call, since then it measured a deny.
pub(crate) fn measure_policy(decisions: usize) -> anyhow::Result<Summary> {
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
    let envelope = IdentityEnvelope::new(EnvelopeParts {
        user: UserId {
            issuer: LOCAL_ISSUER.to_owned(),
            subject: "alice".to_owned(),
        },
        client: None,
        mode: ActingMode::Delegated,
        groups: BTreeSet::from(["eng".to_owned()]),
        tenant: Some("acme".to_owned()),
        scopes: BTreeSet::from(["files.read".to_owned()]),
        usable_credentials: BTreeSet::new(),
        forbidden_credentials: BTreeSet::new(),
        lifetime: None,
    });
    let required = BTreeSet::new();
    let arguments: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(r#"{"text":"ping"}"#)?;
    let request = |action, arguments| Request {
        envelope: &envelope,
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
    let list = request(Action::ListTool, None);
    let call = request(Action::CallTool, Some(&arguments));
    let mut durations = Vec::with_capacity(decisions);
    let started = Instant::now();
    for _ in 0..decisions {
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
}

/// One line for the tables.
pub(crate) fn describe(summary: &Summary, direct_p50: Option<Duration>) -> String {
    let micros = |d: Duration| d.as_secs_f64() * 1e6;
    let mut line = format!(
        "Policy, in process (list check + call check of `echo` under the shipped default policy, {} calls): p50 {:.1} µs, p99 {:.1} µs",
        summary.calls,
        micros(summary.p50),
        micros(summary.p99)
    );
    if let Some(direct) = direct_p50 {
        line.push_str(&format!(
            "; {:.0} % of the direct stdio call's p50 ({:.1} µs) in this run",
            100.0 * micros(summary.p50) / micros(direct).max(f64::MIN_POSITIVE),
            micros(direct)
        ));
    }
    line
}
