//! Prometheus metrics: calls, decisions, call latency, upstream health and the evidence log,
//! rendered in OpenMetrics text (served on `GET /metrics` of a loopback listener of their own,
//! `http.rs`).
//!
//! Labels are upstream names, actions, verdicts and outcome kinds only: never users, tools or
//! arguments, so a scrape reveals nothing of who did what and the number of series stays
//! bounded by the config.

use portcullis_audit::EvidenceLog;
use portcullis_core::evidence::Outcome;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::upstreams::{UpstreamStatus, Upstreams};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    upstream: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabels {
    action: String,
    verdict: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpstreamLabels {
    upstream: String,
}

type LatencyFamily = Family<UpstreamLabels, Histogram, fn() -> Histogram>;

/// The metrics of one Portcullis process.
pub(crate) struct Metrics {
    registry: Registry,
    calls: Family<CallLabels, Counter>,
    decisions: Family<DecisionLabels, Counter>,
    latency: LatencyFamily,
    upstream_up: Family<UpstreamLabels, Gauge>,
    upstream_failures: Family<UpstreamLabels, Gauge>,
    evidence_records: Gauge,
    evidence_syncs: Gauge,
}

fn latency_histogram() -> Histogram {
    // 0.5 ms to about 16 s.
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("portcullis");
        let calls = Family::<CallLabels, Counter>::default();
        registry.register(
            "calls",
            "Tool calls by upstream and outcome (result, tool_error, error, not_run, cancelled)",
            calls.clone(),
        );
        let decisions = Family::<DecisionLabels, Counter>::default();
        registry.register(
            "decisions",
            "Policy decisions by action and verdict",
            decisions.clone(),
        );
        let latency: LatencyFamily = Family::new_with_constructor(latency_histogram);
        registry.register(
            "call_duration_seconds",
            "Duration of tool calls that reached their upstream, decision to outcome",
            latency.clone(),
        );
        let upstream_up = Family::<UpstreamLabels, Gauge>::default();
        registry.register(
            "upstream_up",
            "1 when the upstream is ready, 0 when starting or down",
            upstream_up.clone(),
        );
        let upstream_failures = Family::<UpstreamLabels, Gauge>::default();
        registry.register(
            "upstream_failures",
            "Times the upstream failed to start, crashed or hung since Portcullis started",
            upstream_failures.clone(),
        );
        let evidence_records = Gauge::default();
        registry.register(
            "evidence_records",
            "Evidence records written since Portcullis started (checkpoints included)",
            evidence_records.clone(),
        );
        let evidence_syncs = Gauge::default();
        registry.register(
            "evidence_syncs",
            "Evidence batches made durable since Portcullis started",
            evidence_syncs.clone(),
        );
        Self {
            registry,
            calls,
            decisions,
            latency,
            upstream_up,
            upstream_failures,
            evidence_records,
            evidence_syncs,
        }
    }
}

impl Metrics {
    /// Counts a decision of `action` (a Cedar action name) with `verdict`.
    pub(crate) fn decided(&self, action: &str, verdict: &str) {
        self.decisions
            .get_or_create(&DecisionLabels {
                action: action.to_owned(),
                verdict: verdict.to_owned(),
            })
            .inc();
    }

    /// Counts a finished call of `upstream`; `seconds` is its duration when it ran.
    pub(crate) fn called(&self, upstream: &str, outcome: &Outcome, seconds: f64) {
        let kind = match outcome {
            Outcome::Result {
                is_error: false, ..
            } => "result",
            Outcome::Result { is_error: true, .. } => "tool_error",
            Outcome::Error { .. } => "error",
            Outcome::NotRun { .. } => "not_run",
            Outcome::Cancelled => "cancelled",
        };
        self.calls
            .get_or_create(&CallLabels {
                upstream: upstream.to_owned(),
                outcome: kind.to_owned(),
            })
            .inc();
        if !matches!(outcome, Outcome::NotRun { .. }) {
            self.latency
                .get_or_create(&UpstreamLabels {
                    upstream: upstream.to_owned(),
                })
                .observe(seconds);
        }
    }

    /// The text of a scrape, with the gauges read from `upstreams` and `log` now.
    pub(crate) fn render(
        &self,
        upstreams: &Upstreams,
        log: Option<&EvidenceLog>,
    ) -> Result<String, std::fmt::Error> {
        for (name, status) in upstreams.status() {
            let labels = UpstreamLabels {
                upstream: name.to_string(),
            };
            let up = i64::from(matches!(status, UpstreamStatus::Ready { .. }));
            self.upstream_up.get_or_create(&labels).set(up);
        }
        for upstream in upstreams.iter() {
            let labels = UpstreamLabels {
                upstream: upstream.name().to_string(),
            };
            let failures = i64::try_from(upstream.failures()).unwrap_or(i64::MAX);
            self.upstream_failures.get_or_create(&labels).set(failures);
        }
        if let Some(log) = log {
            let stats = log.stats();
            self.evidence_records
                .set(i64::try_from(stats.records).unwrap_or(i64::MAX));
            self.evidence_syncs
                .set(i64::try_from(stats.syncs).unwrap_or(i64::MAX));
        }
        let mut text = String::new();
        encode(&mut text, &self.registry)?;
        Ok(text)
    }
}
