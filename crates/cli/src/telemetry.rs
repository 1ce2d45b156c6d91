//! Logs and spans: `tracing` to stderr (text on a terminal, JSON when asked) and, when the
//! environment names an OpenTelemetry collector, the same spans exported over OTLP.
//!
//! A tool call runs in a `tools/call` span carrying the evidence log's `request_id` and the
//! intent record's `evidence_seq`, so a trace, a log line and an evidence record join up.
//! Export is on when `OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is
//! set (HTTP with JSON by default; the standard `OTEL_*` variables tune it).

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::LogFormat;

/// Libraries whose debug logs print whole requests (arguments, headers), and the exporter's
/// own (which would feed back into the spans it exports): capped at `warn` whatever
/// `PORTCULLIS_LOG` says, so that no log level puts a secret in the log or a trace.
const QUIET_LIBRARIES: &[&str] = &[
    "rmcp",
    "hyper",
    "hyper_util",
    "h2",
    "reqwest",
    "tower",
    "tower_http",
    "axum",
    "rustls",
    "opentelemetry",
    "opentelemetry_sdk",
    "opentelemetry_otlp",
    "opentelemetry_http",
];

const ENDPOINT_VARIABLES: &[&str] = &[
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
];

/// What must be flushed before the process exits.
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Exports the spans still buffered (bounded by the SDK's export timeout).
    pub fn shutdown(self) {
        if let Some(provider) = self.provider
            && let Err(error) = provider.shutdown()
        {
            eprintln!("portcullis: could not export the last spans: {error}");
        }
    }
}

fn filter() -> EnvFilter {
    let mut filter =
        EnvFilter::try_from_env("PORTCULLIS_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    for library in QUIET_LIBRARIES {
        if let Ok(directive) = format!("{library}=warn").parse() {
            filter = filter.add_directive(directive);
        }
    }
    filter
}

/// The span exporter, when the environment names a collector and `export` is asked for.
fn provider(export: bool) -> Option<SdkTracerProvider> {
    let wanted = export
        && ENDPOINT_VARIABLES
            .iter()
            .any(|name| std::env::var_os(name).is_some_and(|value| !value.is_empty()));
    if !wanted {
        return None;
    }
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .build();
    match exporter {
        Ok(exporter) => Some(
            SdkTracerProvider::builder()
                .with_batch_exporter(exporter)
                .with_resource(Resource::builder().with_service_name("portcullis").build())
                .build(),
        ),
        Err(error) => {
            eprintln!("portcullis: spans will not be exported: {error}");
            None
        }
    }
}

/// Installs the global subscriber: logs to stderr (stdout carries MCP in stdio mode) and, for
/// `export`, spans to the collector the environment names.
pub fn init(format: LogFormat, export: bool) -> Telemetry {
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let logs = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    let logs = match format {
        LogFormat::Text => logs.boxed(),
        LogFormat::Json => logs.json().boxed(),
    };
    let provider = provider(export);
    let spans = provider
        .as_ref()
        .map(|provider| tracing_opentelemetry::layer().with_tracer(provider.tracer("portcullis")));
    tracing_subscriber::registry()
        .with(filter())
        .with(logs)
        .with(spans)
        .init();
    Telemetry { provider }
}
